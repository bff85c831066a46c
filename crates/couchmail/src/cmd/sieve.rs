//! `couchmail sieve put|list|show|activate|deactivate|rm`.
//!
//! Scripts are documents of their own; which one runs at delivery is the
//! mailbox's `sieve_active` field, so activating writes the mailbox.
//! Scripts are checked with Pigeonhole's `sievec` before they are stored
//! (see `sieve_check`): a refused script is exit 5 with sievec's
//! line-numbered messages.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use couchmail_directory::{Cascade, ListFilter};
use couchmail_model::{Address, DocKind, Document, Mailbox, SieveName, SieveScript};
use couchmail_store::{ListOptions, Rev};
use serde::Serialize;

use super::mailbox::read as read_mailbox;
use super::{Context, create, fetch, parse, print_removed, remove, write_back, wrong_kind};
use crate::cli::SieveCommand;
use crate::exit::{Exit, Failure};
use crate::output::{self, Table, yes_no};

/// A script as `--json` shows it; `script` only in `show`.
#[derive(Debug, Serialize)]
struct SieveView {
    owner: String,
    name: String,
    active: bool,
    bytes: usize,
    content_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    script: Option<String>,
    rev: String,
}

impl SieveView {
    fn new(script: &SieveScript, rev: &Rev, mailbox: &Mailbox, with_script: bool) -> SieveView {
        SieveView {
            owner: script.owner.to_string(),
            name: script.name.to_string(),
            active: mailbox.sieve_active.as_ref() == Some(&script.name),
            bytes: script.script.len(),
            content_id: script.content_id(),
            script: with_script.then(|| script.script.clone()),
            rev: rev.to_string(),
        }
    }
}

pub async fn run(command: SieveCommand, context: &Context) -> anyhow::Result<()> {
    match command {
        SieveCommand::Put { address, name, file, activate } => {
            let (mailbox, _) = read_mailbox(context, &address).await?;
            let name: SieveName = parse("script name", &name)?;
            let text = read_script(file.as_deref())?;
            let doc = SieveScript { owner: mailbox.address.clone(), name: name.clone(), script: text };
            let id = script_id(&doc.owner, &name);
            let what = format!("sieve script {name} of {}", doc.owner);
            let rev = match context.directory.get(&id).await.with_context(|| format!("cannot read {what}"))? {
                Some(entry) => write_back(context, &Document::Sieve(doc.clone()), &entry.rev, &what).await?,
                None => {
                    create(context, &Document::Sieve(doc.clone()), &what, "run the command again to replace it").await?
                }
            };
            let mailbox = if activate { set_active(context, &address, Some(name)).await? } else { mailbox };
            let view = SieveView::new(&doc, &rev, &mailbox, false);
            if context.json {
                return output::json(&view);
            }
            let state = if view.active { ", active" } else { "" };
            output::note(&format!("stored {what} ({} bytes{state})", view.bytes));
            Ok(())
        }
        SieveCommand::List { address } => {
            let (mailbox, _) = read_mailbox(context, &address).await?;
            let filter = ListFilter {
                kind: DocKind::Sieve,
                domain: None,
                owner: Some(mailbox.address.clone()),
                page: ListOptions::default(),
            };
            let entries = context.directory.list(&filter).await.context("cannot list sieve scripts")?;
            let mut views = Vec::new();
            for entry in entries {
                match &entry.doc {
                    Document::Sieve(script) => views.push(SieveView::new(script, &entry.rev, &mailbox, false)),
                    other => return Err(wrong_kind(&other.id(), other)),
                }
            }
            if context.json {
                return output::json(&views);
            }
            let mut table = Table::new(&["name", "active", "bytes"]);
            for view in &views {
                table.row(vec![view.name.clone(), yes_no(view.active), view.bytes.to_string()]);
            }
            table.print(&format!(
                "{} has no sieve scripts; store one with `couchmail sieve put {} NAME FILE`",
                mailbox.address, mailbox.address
            ))
        }
        SieveCommand::Show { address, name } => {
            let (mailbox, _) = read_mailbox(context, &address).await?;
            let (script, rev) = read(context, &mailbox.address, &name).await?;
            if context.json {
                return output::json(&SieveView::new(&script, &rev, &mailbox, true));
            }
            output::text(&script.script)
        }
        SieveCommand::Activate { address, name } => {
            let (mailbox, _) = read_mailbox(context, &address).await?;
            let (script, _) = read(context, &mailbox.address, &name).await?;
            let mailbox = set_active(context, &address, Some(script.name.clone())).await?;
            if context.json {
                return output::json(
                    &serde_json::json!({ "owner": mailbox.address.to_string(), "active": script.name.to_string() }),
                );
            }
            output::note(&format!("sieve script {} of {} is active", script.name, mailbox.address));
            Ok(())
        }
        SieveCommand::Deactivate { address } => {
            let mailbox = set_active(context, &address, None).await?;
            if context.json {
                return output::json(&serde_json::json!({ "owner": mailbox.address.to_string(), "active": null }));
            }
            output::note(&format!("no sieve script runs for {} now", mailbox.address));
            Ok(())
        }
        SieveCommand::Rm { address, name } => {
            let (mailbox, _) = read_mailbox(context, &address).await?;
            let (script, rev) = read(context, &mailbox.address, &name).await?;
            // The active script cannot vanish from under the mailbox: run none first.
            if mailbox.sieve_active.as_ref() == Some(&script.name) {
                set_active(context, &address, None).await?;
                if !context.json {
                    output::note(&format!("deactivated {} first", script.name));
                }
            }
            let id = script_id(&script.owner, &script.name);
            let what = format!("sieve script {} of {}", script.name, script.owner);
            let removed = remove(context, &id, &rev, Cascade::Refuse, what).await?;
            print_removed(context, &removed)
        }
    }
}

fn script_id(owner: &Address, name: &SieveName) -> String {
    DocKind::Sieve.id(format!("{owner}:{name}"))
}

async fn read(context: &Context, owner: &Address, name: &str) -> anyhow::Result<(SieveScript, Rev)> {
    let name: SieveName = parse("script name", name)?;
    let id = script_id(owner, &name);
    let entry = fetch(context, &id, format!("sieve script {name} of {owner}"), &format!("sieve list {owner}")).await?;
    match entry.doc {
        Document::Sieve(script) => Ok((script, entry.rev)),
        other => Err(wrong_kind(&id, &other)),
    }
}

/// Sets the mailbox's active script and returns the mailbox as written.
async fn set_active(context: &Context, address: &str, name: Option<SieveName>) -> anyhow::Result<Mailbox> {
    let (mut mailbox, rev) = read_mailbox(context, address).await?;
    if mailbox.sieve_active == name {
        return Ok(mailbox);
    }
    mailbox.sieve_active = name;
    let what = format!("mailbox {}", mailbox.address);
    write_back(context, &Document::Mailbox(mailbox.clone()), &rev, &what).await?;
    Ok(mailbox)
}

/// Reads the script from `file`, or from standard input for `-` or nothing.
fn read_script(file: Option<&Path>) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    let source = match file {
        Some(path) if path != Path::new("-") => {
            bytes = std::fs::read(path).map_err(|err| {
                Failure::new(Exit::Invalid, format!("cannot read {}: {err}", path.display()))
                    .hint("name a readable file, or `-` to read standard input")
            })?;
            path.to_owned()
        }
        _ => {
            std::io::stdin().lock().read_to_end(&mut bytes).context("cannot read the script from stdin")?;
            PathBuf::from("standard input")
        }
    };
    String::from_utf8(bytes).map_err(|_| {
        Failure::new(Exit::Invalid, format!("the script in {} is not UTF-8", source.display()))
            .hint("Sieve scripts are UTF-8 text (RFC 5228 §2.1); convert it with iconv")
            .into()
    })
}
