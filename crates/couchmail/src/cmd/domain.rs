//! `couchmail domain add|list|show|update|rm`.

use couchmail_directory::Cascade;
use couchmail_model::{DocKind, Document, Domain, DomainName, PolicySettings};
use couchmail_store::Rev;
use serde::Serialize;

use super::policy::{self, PolicyView};
use super::{Context, create, fetch, list, parse, remove, require_change, write_back, wrong_kind};
use crate::cli::{DomainCommand, format_size};
use crate::output::{self, Table, or_dash, yes_no};

/// A domain as `--json` shows it.
#[derive(Debug, Serialize)]
struct DomainView {
    name: String,
    name_unicode: String,
    active: bool,
    quota_default: Option<u64>,
    max_mailboxes: Option<u32>,
    /// Greylisting, spam thresholds and sending limits; `null` is inherited from the configuration.
    #[serde(flatten)]
    policy: PolicyView,
    rev: String,
}

impl DomainView {
    fn new(domain: &Domain, rev: &Rev) -> DomainView {
        DomainView {
            name: domain.name.to_string(),
            name_unicode: domain.name.to_unicode(),
            active: domain.active,
            quota_default: domain.quota_default,
            max_mailboxes: domain.max_mailboxes,
            policy: PolicyView::from(&domain.policy),
            rev: rev.to_string(),
        }
    }
}

pub async fn run(command: DomainCommand, context: &Context) -> anyhow::Result<()> {
    match command {
        DomainCommand::Add { domain, quota_default, max_mailboxes, inactive, policy } => {
            let name: DomainName = parse("domain", &domain)?;
            let mut settings = PolicySettings::default();
            policy::apply(&policy, &mut settings)?;
            let doc = Domain { name: name.clone(), active: !inactive, quota_default, max_mailboxes, policy: settings };
            let rev = create(
                context,
                &Document::Domain(doc.clone()),
                format!("domain {name}"),
                &format!("change it with `couchmail domain update {name}`"),
            )
            .await?;
            print_one(context, &doc, &rev, &format!("added domain {name}"))
        }
        DomainCommand::List => {
            let mut views = Vec::new();
            for entry in list(context, DocKind::Domain, None).await? {
                match &entry.doc {
                    Document::Domain(domain) => views.push(DomainView::new(domain, &entry.rev)),
                    other => return Err(wrong_kind(&other.id(), other)),
                }
            }
            if context.json {
                return output::json(&views);
            }
            let mut table = Table::new(&["domain", "active", "quota default", "max mailboxes"]);
            for view in &views {
                let shown = if view.name_unicode != view.name {
                    format!("{} ({})", view.name, view.name_unicode)
                } else {
                    view.name.clone()
                };
                table.row(vec![
                    shown,
                    yes_no(view.active),
                    or_dash(view.quota_default.map(format_size)),
                    or_dash(view.max_mailboxes.map(|n| n.to_string())),
                ]);
            }
            table.print("no domains yet; add one with `couchmail domain add example.com`")
        }
        DomainCommand::Show { domain } => {
            let (doc, rev) = read(context, &domain).await?;
            print_one(context, &doc, &rev, "")
        }
        DomainCommand::Update {
            domain,
            quota_default,
            no_quota_default,
            max_mailboxes,
            no_max_mailboxes,
            active,
            policy,
        } => {
            let changed = quota_default.is_some()
                || no_quota_default
                || max_mailboxes.is_some()
                || no_max_mailboxes
                || active.requested().is_some()
                || !policy.is_empty();
            require_change(changed, "couchmail domain update example.com --quota-default 5G")?;
            let (mut doc, rev) = read(context, &domain).await?;
            policy::apply(&policy, &mut doc.policy)?;
            if let Some(quota) = quota_default {
                doc.quota_default = Some(quota);
            }
            if no_quota_default {
                doc.quota_default = None;
            }
            if let Some(max) = max_mailboxes {
                doc.max_mailboxes = Some(max);
            }
            if no_max_mailboxes {
                doc.max_mailboxes = None;
            }
            if let Some(state) = active.requested() {
                doc.active = state;
            }
            let what = format!("domain {}", doc.name);
            let rev = write_back(context, &Document::Domain(doc.clone()), &rev, &what).await?;
            print_one(context, &doc, &rev, &format!("updated {what}"))
        }
        DomainCommand::Rm { domain, cascade } => {
            let (doc, rev) = read(context, &domain).await?;
            let cascade = if cascade { Cascade::Remove } else { Cascade::Refuse };
            let id = DocKind::Domain.id(&doc.name);
            let removed = remove(context, &id, &rev, cascade, format!("domain {}", doc.name)).await?;
            super::print_removed(context, &removed)
        }
    }
}

async fn read(context: &Context, input: &str) -> anyhow::Result<(Domain, Rev)> {
    let name: DomainName = parse("domain", input)?;
    let id = DocKind::Domain.id(&name);
    let entry = fetch(context, &id, format!("domain {name}"), "domain list").await?;
    match entry.doc {
        Document::Domain(domain) => Ok((domain, entry.rev)),
        other => Err(wrong_kind(&id, &other)),
    }
}

fn print_one(context: &Context, domain: &Domain, rev: &Rev, done: &str) -> anyhow::Result<()> {
    let view = DomainView::new(domain, rev);
    if context.json {
        return output::json(&view);
    }
    if !done.is_empty() {
        output::note(done);
    }
    let mut pairs = vec![("domain", view.name.clone())];
    if view.name_unicode != view.name {
        pairs.push(("unicode", view.name_unicode.clone()));
    }
    pairs.extend([
        ("active", yes_no(view.active)),
        ("quota default", or_dash(view.quota_default.map(format_size))),
        ("max mailboxes", or_dash(view.max_mailboxes.map(|n| n.to_string()))),
    ]);
    pairs.extend(policy::fields(&domain.policy, None));
    pairs.push(("revision", view.rev.clone()));
    output::text(&output::fields(&pairs))
}
