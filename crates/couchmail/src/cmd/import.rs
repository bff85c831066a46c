//! `couchmail import FILE`: reads a file written by `couchmail export` into
//! the store. The whole file is validated first (nothing is written if a
//! line is bad); then missing documents are created, differing ones
//! overwritten and equal ones left alone, so a second import changes nothing
//! ([`crate::transfer`] says how and why).

use std::io::Read as _;
use std::path::Path;

use super::Context;
use crate::cli::ImportArgs;
use crate::exit::{Exit, Failure};
use crate::output;
use crate::transfer;

pub async fn run(args: ImportArgs, context: &Context) -> anyhow::Result<()> {
    let (text, name) = read_input(&args.file)?;
    let export = transfer::parse_export(&text).map_err(|errors| {
        Failure::new(Exit::Invalid, format!("cannot import {name}: {errors}"))
            .hint("correct the lines named (or export again), then run the import again")
    })?;
    let n_documents = export.lines.len();
    let docs = export.lines.into_iter().map(|line| (line.id, line.body)).collect();
    let progress = output::progress(Some(n_documents as u64), "importing");
    let applied = transfer::apply(context.directory.store().as_ref(), docs, export.header.secrets, &progress).await;
    progress.finish_and_clear();
    let applied = applied?;
    if context.json {
        return output::json(&applied);
    }
    if applied.unchanged == n_documents {
        output::text(&format!("nothing to change: the store already holds all {n_documents} documents of {name}"))?;
    } else {
        output::text(&format!(
            "imported {n_documents} documents from {name}: {} created, {} updated, {} unchanged",
            applied.created, applied.updated, applied.unchanged
        ))?;
    }
    if !export.header.secrets {
        output::note(
            "the file holds no secrets: existing mailboxes kept their passwords and tokens were left alone; \
             a new mailbox has no password until `couchmail mailbox passwd` sets one",
        );
    }
    Ok(())
}

/// The file's text and a name for messages; `-` is standard input.
fn read_input(path: &Path) -> anyhow::Result<(String, String)> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|err| {
            Failure::new(Exit::Invalid, format!("cannot read standard input: {err}"))
                .hint("give a file written by `couchmail export` (in UTF-8)")
        })?;
        return Ok((text, "standard input".to_owned()));
    }
    let text = std::fs::read_to_string(path).map_err(|err| {
        let exit = if err.kind() == std::io::ErrorKind::NotFound { Exit::NotFound } else { Exit::Invalid };
        Failure::new(exit, format!("cannot read {}: {err}", path.display()))
            .hint("give a file written by `couchmail export`")
    })?;
    Ok((text, path.display().to_string()))
}
