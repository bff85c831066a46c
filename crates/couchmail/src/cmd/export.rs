//! `couchmail export`: every live document as JSON Lines (the format of
//! [`crate::transfer`]), to standard output or a file created with mode 0600.
//!
//! Without `--include-secrets` mailbox password hashes and API tokens are
//! left out. Stored documents the model refuses are left out too, each with
//! a warning, so that the export can always be imported again.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use super::Context;
use crate::cli::ExportArgs;
use crate::output;
use crate::transfer::{self, Header, Invalid};

/// What `--json` prints when the export went to a file.
#[derive(Debug, Serialize)]
struct ExportSummary {
    output: String,
    documents: usize,
    secrets: bool,
    /// Token documents left out for want of `--include-secrets`.
    tokens_left_out: usize,
    /// Stored documents the model refuses, left out.
    invalid: Vec<Invalid>,
}

pub async fn run(args: ExportArgs, context: &Context) -> anyhow::Result<()> {
    let store = context.directory.store();
    let progress = output::progress(None, "reading documents");
    let (docs, invalid) = transfer::read_all(store.as_ref(), &progress)
        .await
        .with_context(|| format!("cannot read {}", store.describe()))?;
    progress.finish_and_clear();
    for Invalid { id, reason } in &invalid {
        output::note(&format!("warning: left out `{id}`, which the model refuses: {reason}"));
    }

    let header = serde_json::to_string(&Header::new(args.include_secrets)).context("cannot encode the header")?;
    let mut text = header + "\n";
    let (mut n_documents, mut n_tokens_left_out) = (0, 0);
    for doc in &docs {
        let body =
            if args.include_secrets { Some(doc.body.clone()) } else { transfer::without_secrets(&doc.id, &doc.body) };
        match body {
            Some(body) => {
                text.push_str(&transfer::export_line(&doc.id, &body));
                text.push('\n');
                n_documents += 1;
            }
            None => n_tokens_left_out += 1,
        }
    }

    let destination = match args.output.as_deref().filter(|path| *path != Path::new("-")) {
        Some(path) => {
            write_private_file(path, &text)?;
            path.display().to_string()
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
            "standard output".to_owned()
        }
    };
    let summary = ExportSummary {
        output: destination,
        documents: n_documents,
        secrets: args.include_secrets,
        tokens_left_out: n_tokens_left_out,
        invalid,
    };
    if context.json && args.output.as_deref().is_some_and(|path| path != Path::new("-")) {
        return output::json(&summary);
    }
    let mut message = format!("exported {} documents to {}", summary.documents, summary.output);
    if !summary.secrets {
        message.push_str(&format!(
            " without secrets (no password hashes; {} API tokens left out; --include-secrets keeps them)",
            summary.tokens_left_out
        ));
    }
    if !summary.invalid.is_empty() {
        message.push_str(&format!("; {} invalid documents left out", summary.invalid.len()));
    }
    output::note(&message);
    Ok(())
}

/// Writes `text` to `path` with mode 0600, through a temporary file in the
/// same directory that is renamed over `path`, so that a failed export never
/// leaves a truncated file behind and the secrets are never readable by others.
fn write_private_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let file_name = path.file_name().with_context(|| format!("{} names no file", path.display()))?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(file_name);
    temporary_name.push(format!(".{}.tmp", std::process::id()));
    let temporary: PathBuf = path.with_file_name(temporary_name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .with_context(|| format!("cannot create {}", temporary.display()))?;
        file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", temporary.display()))?;
        file.sync_all().with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_output_file_is_private_even_if_it_existed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup.jsonl");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private_file(&path, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left");
    }
}
