//! `couchmail conflicts list|resolve`: documents that replication between
//! CouchDB sites left with conflicting revisions.
//!
//! CouchDB keeps every concurrent edit and picks the same winner everywhere,
//! but nobody chose it: `list` shows the winner and the losers with the
//! fields they differ in, `resolve ID --keep REV` keeps one revision and
//! discards the others ([`couchmail_store::Store::resolve_conflict`]).
//! An SQLite store never has conflicts, so `list` is empty there.
//!
//! Secret fields are never printed (docs/cli.md): a password hash shows as a
//! fingerprint, `sha256:` and 12 hex digits of its SHA-256, enough to tell
//! two revisions apart.

use std::collections::BTreeSet;

use anyhow::Context as _;
use couchmail_store::{Body, ErrorKind, RawDoc, Rev};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Context;
use crate::cli::ConflictsCommand;
use crate::exit::{Exit, Failure};
use crate::output::{self, Table};
use crate::transfer::SECRET_FIELDS;

#[derive(Debug, Serialize)]
struct RevisionView {
    rev: String,
    body: Body,
}

#[derive(Debug, Serialize)]
struct ConflictView {
    id: String,
    winner: RevisionView,
    losers: Vec<RevisionView>,
    /// The fields whose values are not the same in every revision.
    differs_in: Vec<String>,
}

#[derive(Debug, Serialize)]
struct ResolvedView {
    id: String,
    kept: String,
    rev: String,
}

pub async fn run(command: ConflictsCommand, context: &Context) -> anyhow::Result<()> {
    let store = context.directory.store();
    match command {
        ConflictsCommand::List => {
            let conflicts = store.conflicts().await.context("cannot list the conflicts")?;
            let views: Vec<ConflictView> = conflicts
                .into_iter()
                .map(|conflict| {
                    let differs_in = differing_fields(&conflict.winner, &conflict.losers);
                    ConflictView {
                        id: conflict.id,
                        winner: view(conflict.winner),
                        losers: conflict.losers.into_iter().map(view).collect(),
                        differs_in,
                    }
                })
                .collect();
            if context.json {
                return output::json(&views);
            }
            let mut table = Table::new(&["id", "winner", "losers", "differs in"]);
            for conflict in &views {
                let losers: Vec<&str> = conflict.losers.iter().map(|loser| loser.rev.as_str()).collect();
                table.row(vec![
                    conflict.id.clone(),
                    conflict.winner.rev.clone(),
                    losers.join(" "),
                    conflict.differs_in.join(", "),
                ]);
            }
            table.print("no conflicts")?;
            if !table.is_empty() {
                output::note(
                    "keep one revision with `couchmail conflicts resolve ID --keep REV`; `--json` shows each \
                     revision's fields",
                );
            }
            Ok(())
        }
        ConflictsCommand::Resolve { id, keep } => {
            let kept = Rev(keep);
            let rev = store.resolve_conflict(&id, &kept).await.map_err(|err| {
                if err.kind() == ErrorKind::NotFound {
                    Failure::new(Exit::NotFound, format!("`{id}` has no conflicting revision {kept}: {err}"))
                        .hint("`couchmail conflicts list` shows the documents in conflict and their revisions")
                        .into()
                } else {
                    anyhow::Error::new(err).context(format!("cannot resolve the conflict on `{id}`"))
                }
            })?;
            let resolved = ResolvedView { id, kept: kept.0, rev: rev.0 };
            if context.json {
                return output::json(&resolved);
            }
            output::text(&format!(
                "kept revision {} of {}; every site will have it once replication carries revision {}",
                resolved.kept, resolved.id, resolved.rev
            ))
        }
    }
}

/// A revision as shown: secret fields replaced by fingerprints.
fn view(doc: RawDoc) -> RevisionView {
    let mut body = doc.body;
    for (_, field) in SECRET_FIELDS {
        if let Some(value) = body.get_mut(*field) {
            *value = Value::String(fingerprint(value));
        }
    }
    RevisionView { rev: doc.rev.0, body }
}

/// `sha256:` and the first 12 hex digits of the SHA-256 of the value's JSON.
fn fingerprint(value: &Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    format!("sha256:{}", &hex::encode(digest)[..12])
}

/// The fields that are missing from, or different in, at least one revision.
fn differing_fields(winner: &RawDoc, losers: &[RawDoc]) -> Vec<String> {
    let mut fields = BTreeSet::new();
    for loser in losers {
        for key in winner.body.keys().chain(loser.body.keys()) {
            if winner.body.get(key) != loser.body.get(key) {
                fields.insert(key.clone());
            }
        }
    }
    fields.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn raw(rev: &str, body: Value) -> RawDoc {
        RawDoc { id: "mailbox:a@example.com".into(), rev: Rev(rev.into()), body: body.as_object().unwrap().clone() }
    }

    #[test]
    fn secrets_show_as_fingerprints_that_tell_revisions_apart() {
        let first = view(raw("2-a", json!({"type": "mailbox", "password": "{ARGON2ID}$argon2id$one"})));
        let second = view(raw("2-b", json!({"type": "mailbox", "password": "{ARGON2ID}$argon2id$two"})));
        let shown = serde_json::to_string(&first).unwrap();
        assert!(!shown.contains("argon2id"), "{shown}");
        assert!(first.body["password"].as_str().unwrap().starts_with("sha256:"));
        assert_ne!(first.body["password"], second.body["password"]);
    }

    #[test]
    fn differing_fields_cover_changed_added_and_removed() {
        let winner = raw("2-a", json!({"type": "mailbox", "name": "A", "quota_bytes": 5}));
        let losers = [
            raw("2-b", json!({"type": "mailbox", "name": "B", "quota_bytes": 5})),
            raw("2-c", json!({"type": "mailbox", "name": "A", "active": false})),
        ];
        assert_eq!(differing_fields(&winner, &losers), ["active", "name", "quota_bytes"]);
    }
}
