//! `couchmail alias add|list|show|update|rm`; `@domain` is a catch-all.

use couchmail_directory::Cascade;
use couchmail_model::{Address, Alias, AliasKey, DocKind, Document, DomainName};
use couchmail_store::Rev;
use serde::Serialize;

use super::{Context, create, fetch, list, parse, print_removed, remove, require_change, write_back, wrong_kind};
use crate::cli::AliasCommand;
use crate::exit::{Exit, Failure};
use crate::output::{self, Table, yes_no};

/// An alias as `--json` shows it.
#[derive(Debug, Serialize)]
struct AliasView {
    key: String,
    catch_all: bool,
    targets: Vec<String>,
    active: bool,
    rev: String,
}

impl AliasView {
    fn new(alias: &Alias, rev: &Rev) -> AliasView {
        AliasView {
            key: alias.key.to_string(),
            catch_all: matches!(alias.key, AliasKey::CatchAll(_)),
            targets: alias.targets.iter().map(ToString::to_string).collect(),
            active: alias.active,
            rev: rev.to_string(),
        }
    }
}

pub async fn run(command: AliasCommand, context: &Context) -> anyhow::Result<()> {
    match command {
        AliasCommand::Add { key, targets } => {
            let key: AliasKey = parse("alias", &key)?;
            let targets = parse_targets(&targets)?;
            let doc = Alias { key: key.clone(), targets, active: true };
            let rev = create(
                context,
                &Document::Alias(doc.clone()),
                format!("alias {key}"),
                &format!("change its targets with `couchmail alias update {key} --add-target ADDRESS`"),
            )
            .await?;
            print_one(context, &doc, &rev, &format!("added alias {key}"))
        }
        AliasCommand::List { domain } => {
            let domain: Option<DomainName> = domain.map(|domain| parse("domain", &domain)).transpose()?;
            let mut views = Vec::new();
            for entry in list(context, DocKind::Alias, domain).await? {
                match &entry.doc {
                    Document::Alias(alias) => views.push(AliasView::new(alias, &entry.rev)),
                    other => return Err(wrong_kind(&other.id(), other)),
                }
            }
            if context.json {
                return output::json(&views);
            }
            let mut table = Table::new(&["alias", "active", "targets"]);
            for view in &views {
                table.row(vec![view.key.clone(), yes_no(view.active), view.targets.join(", ")]);
            }
            table.print("no aliases yet; add one with `couchmail alias add info@example.com --to alice@example.com`")
        }
        AliasCommand::Show { key } => {
            let (doc, rev) = read(context, &key).await?;
            print_one(context, &doc, &rev, "")
        }
        AliasCommand::Update { key, add_targets, remove_targets, active } => {
            let changed = !add_targets.is_empty() || !remove_targets.is_empty() || active.requested().is_some();
            require_change(changed, "couchmail alias update info@example.com --add-target carol@example.com")?;
            let add_targets = parse_targets(&add_targets)?;
            let remove_targets = parse_targets(&remove_targets)?;
            let (mut doc, rev) = read(context, &key).await?;
            for target in remove_targets {
                let Some(target_idx) = doc.targets.iter().position(|held| *held == target) else {
                    return Err(Failure::new(Exit::Invalid, format!("alias {} has no target {target}", doc.key))
                        .hint(format!("`couchmail alias show {}` lists its targets", doc.key))
                        .into());
                };
                doc.targets.remove(target_idx);
            }
            for target in add_targets {
                if !doc.targets.contains(&target) {
                    doc.targets.push(target);
                }
            }
            if doc.targets.is_empty() {
                return Err(Failure::new(Exit::Invalid, format!("alias {} would have no target left", doc.key))
                    .hint(format!("remove the alias with `couchmail alias rm {}` instead", doc.key))
                    .into());
            }
            if let Some(state) = active.requested() {
                doc.active = state;
            }
            let what = format!("alias {}", doc.key);
            let rev = write_back(context, &Document::Alias(doc.clone()), &rev, &what).await?;
            print_one(context, &doc, &rev, &format!("updated {what}"))
        }
        AliasCommand::Rm { key } => {
            let (doc, rev) = read(context, &key).await?;
            let id = DocKind::Alias.id(&doc.key);
            let removed = remove(context, &id, &rev, Cascade::Refuse, format!("alias {}", doc.key)).await?;
            print_removed(context, &removed)
        }
    }
}

fn parse_targets(inputs: &[String]) -> anyhow::Result<Vec<Address>> {
    inputs.iter().map(|target| parse::<Address>("target address", target)).collect()
}

async fn read(context: &Context, input: &str) -> anyhow::Result<(Alias, Rev)> {
    let key: AliasKey = parse("alias", input)?;
    let id = DocKind::Alias.id(&key);
    let entry = fetch(context, &id, format!("alias {key}"), "alias list").await?;
    match entry.doc {
        Document::Alias(alias) => Ok((alias, entry.rev)),
        other => Err(wrong_kind(&id, &other)),
    }
}

fn print_one(context: &Context, alias: &Alias, rev: &Rev, done: &str) -> anyhow::Result<()> {
    let view = AliasView::new(alias, rev);
    if context.json {
        return output::json(&view);
    }
    if !done.is_empty() {
        output::note(done);
    }
    let key_label = if view.catch_all { "catch-all" } else { "alias" };
    output::text(&output::fields(&[
        (key_label, view.key.clone()),
        ("active", yes_no(view.active)),
        ("targets", view.targets.join(", ")),
        ("revision", view.rev.clone()),
    ]))
}
