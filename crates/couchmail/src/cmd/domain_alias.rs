//! `couchmail domain-alias add|list|show|rm`.

use couchmail_directory::Cascade;
use couchmail_model::{DocKind, Document, DomainAlias, DomainName};
use couchmail_store::Rev;
use serde::Serialize;

use super::{Context, create, fetch, list, parse, print_removed, remove, wrong_kind};
use crate::cli::DomainAliasCommand;
use crate::output::{self, Table};

/// A domain alias as `--json` shows it.
#[derive(Debug, Serialize)]
struct DomainAliasView {
    name: String,
    target: String,
    rev: String,
}

impl DomainAliasView {
    fn new(alias: &DomainAlias, rev: &Rev) -> DomainAliasView {
        DomainAliasView { name: alias.name.to_string(), target: alias.target.to_string(), rev: rev.to_string() }
    }
}

pub async fn run(command: DomainAliasCommand, context: &Context) -> anyhow::Result<()> {
    match command {
        DomainAliasCommand::Add { alias, target } => {
            let name: DomainName = parse("domain", &alias)?;
            let target: DomainName = parse("target domain", &target)?;
            let doc = DomainAlias { name: name.clone(), target };
            let rev = create(
                context,
                &Document::DomainAlias(doc.clone()),
                format!("domain alias {name}"),
                &format!("remove it first with `couchmail domain-alias rm {name}` to point it elsewhere"),
            )
            .await?;
            print_one(context, &doc, &rev, &format!("added domain alias {name}"))
        }
        DomainAliasCommand::List => {
            let mut views = Vec::new();
            for entry in list(context, DocKind::DomainAlias, None).await? {
                match &entry.doc {
                    Document::DomainAlias(alias) => views.push(DomainAliasView::new(alias, &entry.rev)),
                    other => return Err(wrong_kind(&other.id(), other)),
                }
            }
            if context.json {
                return output::json(&views);
            }
            let mut table = Table::new(&["alias", "target"]);
            for view in &views {
                table.row(vec![view.name.clone(), view.target.clone()]);
            }
            table.print(
                "no domain aliases yet; add one with `couchmail domain-alias add example.net --target example.com`",
            )
        }
        DomainAliasCommand::Show { alias } => {
            let (doc, rev) = read(context, &alias).await?;
            print_one(context, &doc, &rev, "")
        }
        DomainAliasCommand::Rm { alias } => {
            let (doc, rev) = read(context, &alias).await?;
            let id = DocKind::DomainAlias.id(&doc.name);
            let removed = remove(context, &id, &rev, Cascade::Refuse, format!("domain alias {}", doc.name)).await?;
            print_removed(context, &removed)
        }
    }
}

async fn read(context: &Context, input: &str) -> anyhow::Result<(DomainAlias, Rev)> {
    let name: DomainName = parse("domain", input)?;
    let id = DocKind::DomainAlias.id(&name);
    let entry = fetch(context, &id, format!("domain alias {name}"), "domain-alias list").await?;
    match entry.doc {
        Document::DomainAlias(alias) => Ok((alias, entry.rev)),
        other => Err(wrong_kind(&id, &other)),
    }
}

fn print_one(context: &Context, alias: &DomainAlias, rev: &Rev, done: &str) -> anyhow::Result<()> {
    let view = DomainAliasView::new(alias, rev);
    if context.json {
        return output::json(&view);
    }
    if !done.is_empty() {
        output::note(done);
    }
    output::text(&output::fields(&[
        ("domain alias", view.name.clone()),
        ("target", view.target.clone()),
        ("revision", view.rev.clone()),
    ]))
}
