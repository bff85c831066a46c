//! `couchmail migrate --from STORE_URL --to STORE_URL`: copies every live
//! document, secrets included, from one store to another (SQLite to CouchDB
//! and back), then reads the target again and checks that it holds every
//! source document with an identical body.
//!
//! The target must be empty unless `--into-non-empty` is given; then source
//! documents overwrite those with the same `_id` and the others are kept.
//! Documents are copied as [`crate::transfer::apply`] writes them, so running
//! the command again after an interruption finishes the job. Stored
//! documents the model refuses stop the migration, or are left behind with
//! `--skip-invalid`. Both URLs log in to CouchDB with the `[couchdb]`
//! settings of the configuration.

use std::collections::BTreeMap;

use anyhow::Context as _;
use couchmail_store::{ListOptions, Store};
use serde::Serialize;

use crate::cli::MigrateArgs;
use crate::config::{Config, StoreUrl, redact_userinfo};
use crate::exit::{Exit, Failure};
use crate::output;
use crate::store::{self, Missing};
use crate::transfer::{self, Applied, Invalid};

/// What `migrate` reports.
#[derive(Debug, Serialize)]
struct MigrateSummary {
    from: String,
    to: String,
    /// Source documents copied or found already there.
    documents: usize,
    #[serde(flatten)]
    applied: Applied,
    /// Source documents found identical in the target afterwards.
    verified: usize,
    /// Documents the target holds that the source does not (only with `--into-non-empty`).
    extra_in_target: usize,
    /// Source documents the model refuses, left behind (only with `--skip-invalid`).
    skipped_invalid: Vec<Invalid>,
}

pub async fn run(args: MigrateArgs, config: &Config, json: bool) -> anyhow::Result<()> {
    let from = parse_url("--from", &args.from)?;
    let to = parse_url("--to", &args.to)?;
    if from == to {
        return Err(Failure::new(Exit::Usage, format!("--from and --to both name {from}"))
            .hint("name two different stores")
            .into());
    }
    if let StoreUrl::Sqlite(path) = &from
        && !path.is_file()
    {
        return Err(Failure::new(Exit::Unavailable, format!("the source store {from} does not exist"))
            .hint("check the path given with --from")
            .into());
    }
    let source = store::open_url(&from, &config.couchdb, Missing::Refuse).await?;
    let target = store::open_url(&to, &config.couchdb, Missing::Create).await?;

    let progress = output::progress(None, "reading the source");
    let read = transfer::read_all(source.as_ref(), &progress).await;
    progress.finish_and_clear();
    let (docs, invalid) = read.with_context(|| format!("cannot read {from}"))?;
    if !invalid.is_empty() && !args.skip_invalid {
        let listed: Vec<String> = invalid.iter().map(|Invalid { id, reason }| format!("\n  {id}: {reason}")).collect();
        return Err(Failure::new(
            Exit::Invalid,
            format!("{} documents in {from} are invalid:{}", invalid.len(), listed.concat()),
        )
        .hint("fix or remove them first, or add --skip-invalid to leave them behind")
        .into());
    }
    let target_has_documents = !target
        .list("", &ListOptions { start_after: None, limit: Some(1) })
        .await
        .with_context(|| format!("cannot read {to}"))?
        .is_empty();
    if target_has_documents && !args.into_non_empty {
        return Err(Failure::new(Exit::Refused, format!("the target store {to} already holds documents"))
            .hint(
                "migrate into an empty store, or add --into-non-empty to copy over it (documents with the same _id \
                 are overwritten, the others kept)",
            )
            .into());
    }

    let progress = output::progress(Some(docs.len() as u64), "copying");
    let pairs = docs.iter().map(|doc| (doc.id.clone(), doc.body.clone())).collect();
    let applied = transfer::apply(target.as_ref(), pairs, true, &progress).await;
    progress.finish_and_clear();
    let applied = applied.with_context(|| format!("cannot copy into {to}"))?;

    let (verified, extra_in_target) = verify(&docs, target.as_ref(), &to).await?;
    let summary = MigrateSummary {
        from: from.to_string(),
        to: to.to_string(),
        documents: docs.len(),
        applied,
        verified,
        extra_in_target,
        skipped_invalid: invalid,
    };
    if json {
        return output::json(&summary);
    }
    let mut text = format!(
        "migrated {} documents from {} to {}: {} created, {} updated, {} unchanged; all {} verified identical",
        summary.documents,
        summary.from,
        summary.to,
        applied.created,
        applied.updated,
        applied.unchanged,
        summary.verified
    );
    if summary.extra_in_target > 0 {
        text.push_str(&format!("\nthe target also holds {} documents the source does not", summary.extra_in_target));
    }
    for Invalid { id, reason } in &summary.skipped_invalid {
        text.push_str(&format!("\nleft behind invalid `{id}`: {reason}"));
    }
    output::text(&text)
}

/// Reads the target back and compares: answers how many source documents it
/// holds identically and how many others it holds; any difference is an error.
async fn verify(docs: &[couchmail_store::RawDoc], target: &dyn Store, to: &StoreUrl) -> anyhow::Result<(usize, usize)> {
    let progress = output::progress(None, "verifying");
    let read = transfer::read_all(target, &progress).await;
    progress.finish_and_clear();
    let (valid, invalid) = read.with_context(|| format!("cannot read {to} back"))?;
    let mut copied: BTreeMap<&str, &couchmail_store::Body> =
        valid.iter().map(|doc| (doc.id.as_str(), &doc.body)).collect();
    let mut differing = Vec::new();
    for doc in docs {
        match copied.remove(doc.id.as_str()) {
            Some(body) if *body == doc.body => {}
            _ => differing.push(doc.id.clone()),
        }
    }
    if !differing.is_empty() {
        return Err(Failure::new(
            Exit::Other,
            format!(
                "verification failed: {} documents are missing or different in {to}: {}",
                differing.len(),
                differing.join(", ")
            ),
        )
        .hint("something else wrote to the target meanwhile, or the target changed the documents; run migrate again")
        .into());
    }
    Ok((docs.len(), copied.len() + invalid.len()))
}

/// Parses a store URL given with `flag`: exit 2, never echoing credentials.
fn parse_url(flag: &str, input: &str) -> anyhow::Result<StoreUrl> {
    StoreUrl::parse(input).map_err(|why| {
        Failure::new(Exit::Usage, format!("invalid {flag} `{}`: {why}", redact_userinfo(input)))
            .hint("write sqlite:PATH or couchdb:http://HOST:PORT/DATABASE")
            .into()
    })
}
