//! `couchmail listing add|list|show|update|rm`: blocklist and allowlist entries (issue #5).
//!
//! A listing is named by its key, `<scope>:<action>:<kind>:<value>`, or by the words `add` took (action,
//! kind, value, and `--domain` or `--mailbox` for the scope). Either way the model normalises it, so
//! `block client 192.0.2.77/24` and `global:block:client:192.0.2.0/24` name the same entry.
//! The semantics are those of the REST API's `/listings`: the same directory, the same rules, the same
//! JSON fields (plus `rev`, as every CLI view has).

use anyhow::Context as _;
use clap::ValueEnum;
use couchmail_directory::{Cascade, Entry, ListFilter};
use couchmail_model::{
    Address, DocKind, Document, DomainName, Listing, ListingAction, ListingKey, ListingKind, ListingScope, ListingValue,
};
use couchmail_store::{ListOptions, Rev};
use serde::Serialize;

use super::{Context, create, fetch, format_time, now_unix, parse, print_removed, remove, write_back, wrong_kind};
use crate::cli::{ListingActionArg, ListingCommand, ListingKindArg, ListingScopeFlags, ListingTarget};
use crate::exit::{Exit, Failure};
use crate::output::{self, Table, or_dash};

/// A listing as `--json` shows it: the REST API's `ListingView` and the revision.
#[derive(Debug, Serialize)]
struct ListingView {
    key: String,
    scope: String,
    action: String,
    kind: String,
    value: String,
    note: String,
    created: Option<u64>,
    rev: String,
}

impl ListingView {
    fn new(listing: &Listing, rev: &Rev) -> ListingView {
        ListingView {
            key: listing.key.to_string(),
            scope: listing.key.scope.to_string(),
            action: listing.key.action.to_string(),
            kind: listing.key.value.kind().to_string(),
            value: listing.key.value.to_string(),
            note: listing.note.clone(),
            created: listing.created,
            rev: rev.to_string(),
        }
    }
}

pub async fn run(command: ListingCommand, context: &Context) -> anyhow::Result<()> {
    match command {
        ListingCommand::Add { action, kind, value, scope, note } => {
            let scope = scope_of(&scope)?;
            let value = parse_value(kind_of(kind), &value)?;
            require_scope(context, &scope).await?;
            let key = ListingKey { scope, action: action_of(action), value };
            let listing = Listing { key: key.clone(), note, created: Some(now_unix()) };
            let rev = create(
                context,
                &Document::Listing(listing.clone()),
                format!("listing {key}"),
                &format!(
                    "`couchmail listing show {key}` shows it; `couchmail listing update {key} --note TEXT` changes its note"
                ),
            )
            .await?;
            print_one(context, &listing, &rev, &format!("added listing {key}"))
        }
        ListingCommand::List { global, domain, mailbox } => {
            let domain: Option<DomainName> = domain.map(|domain| parse("domain", &domain)).transpose()?;
            let owner: Option<Address> = mailbox.map(|address| parse("address", &address)).transpose()?;
            if let Some(domain) = &domain {
                require_scope(context, &ListingScope::Domain(domain.clone())).await?;
            }
            if let Some(owner) = &owner {
                require_scope(context, &ListingScope::Mailbox(owner.clone())).await?;
            }
            let filter = ListFilter { kind: DocKind::Listing, domain, owner, page: ListOptions::default() };
            let entries = context.directory.list(&filter).await.context("cannot list the listings")?;
            let mut views = Vec::new();
            for entry in &entries {
                match &entry.doc {
                    Document::Listing(listing) if !global || listing.key.scope == ListingScope::Global => {
                        views.push(ListingView::new(listing, &entry.rev));
                    }
                    Document::Listing(_) => {}
                    other => return Err(wrong_kind(&other.id(), other)),
                }
            }
            if context.json {
                return output::json(&views);
            }
            let mut table = Table::new(&["scope", "action", "kind", "value", "created", "note"]);
            for view in &views {
                table.row(vec![
                    view.scope.clone(),
                    view.action.clone(),
                    view.kind.clone(),
                    view.value.clone(),
                    or_dash(view.created.map(format_time)),
                    view.note.clone(),
                ]);
            }
            table.print("no listings here; add one with `couchmail listing add block sender spam@bad.example`")
        }
        ListingCommand::Show { target } => {
            let (listing, rev) = read(context, &target).await?;
            print_one(context, &listing, &rev, "")
        }
        ListingCommand::Update { target, note } => {
            let (current, rev) = read(context, &target).await?;
            let listing = Listing { note, ..current };
            let what = format!("listing {}", listing.key);
            let rev = write_back(context, &Document::Listing(listing.clone()), &rev, &what).await?;
            print_one(context, &listing, &rev, &format!("updated {what}"))
        }
        ListingCommand::Rm { target } => {
            let (listing, rev) = read(context, &target).await?;
            let id = DocKind::Listing.id(&listing.key);
            let removed = remove(context, &id, &rev, Cascade::Refuse, format!("listing {}", listing.key)).await?;
            print_removed(context, &removed)
        }
    }
}

fn action_of(action: ListingActionArg) -> ListingAction {
    match action {
        ListingActionArg::Block => ListingAction::Block,
        ListingActionArg::Allow => ListingAction::Allow,
    }
}

fn kind_of(kind: ListingKindArg) -> ListingKind {
    match kind {
        ListingKindArg::Sender => ListingKind::Sender,
        ListingKindArg::SenderDomain => ListingKind::SenderDomain,
        ListingKindArg::Client => ListingKind::Client,
    }
}

/// The scope `--domain`/`--mailbox` name; neither is global.
fn scope_of(flags: &ListingScopeFlags) -> anyhow::Result<ListingScope> {
    Ok(match (&flags.domain, &flags.mailbox) {
        (Some(domain), _) => ListingScope::Domain(parse("domain", domain)?),
        (None, Some(address)) => ListingScope::Mailbox(parse("address", address)?),
        (None, None) => ListingScope::Global,
    })
}

/// Parses and normalises a value of `kind`; a bad one is exit 5 with an example of a good one.
fn parse_value(kind: ListingKind, input: &str) -> anyhow::Result<ListingValue> {
    ListingValue::parse(kind, input).map_err(|err| {
        let example = match kind {
            ListingKind::Sender => "a sender is an address such as spam@bad.example (for a whole domain: `sender-domain`)",
            ListingKind::SenderDomain => "a sender domain is a domain name such as bad.example, which covers its subdomains",
            ListingKind::Client => {
                "a client is an IPv4 or IPv6 address or a CIDR network, such as 192.0.2.7, 192.0.2.0/24 or 2001:db8::/32"
            }
        };
        Failure::new(Exit::Invalid, format!("invalid {kind} `{input}`: {}", err.message)).hint(example).into()
    })
}

/// Checks that the domain or mailbox a scope names exists, so that a typo is "not found" (exit 3) and a
/// domain alias is named for what it is (exit 5); the directory checks again when it writes.
async fn require_scope(context: &Context, scope: &ListingScope) -> anyhow::Result<()> {
    match scope {
        ListingScope::Global => Ok(()),
        ListingScope::Domain(name) => {
            let read = |id: String| async move {
                context.directory.get(&id).await.with_context(|| format!("cannot read domain {name}"))
            };
            if let Some(Entry { doc: Document::Domain(_), .. }) = read(DocKind::Domain.id(name)).await? {
                return Ok(());
            }
            if let Some(Entry { doc: Document::DomainAlias(alias), .. }) = read(DocKind::DomainAlias.id(name)).await? {
                return Err(Failure::new(
                    Exit::Invalid,
                    format!("`{name}` is an alias of `{}`; listings belong to the domain itself", alias.target),
                )
                .hint(format!("use --domain {}: it covers mail to {name} too", alias.target))
                .into());
            }
            Err(Failure::new(Exit::NotFound, format!("domain {name} does not exist"))
                .hint("`couchmail domain list` shows what exists")
                .into())
        }
        ListingScope::Mailbox(address) => {
            fetch(context, &DocKind::Mailbox.id(address), format!("mailbox {address}"), "mailbox list").await?;
            Ok(())
        }
    }
}

/// The key a target names: a key as written, or ACTION KIND VALUE with the scope flags.
fn key_of(target: &ListingTarget) -> anyhow::Result<ListingKey> {
    match target.words.as_slice() {
        [key] => {
            if target.scope.domain.is_some() || target.scope.mailbox.is_some() {
                return Err(Failure::new(Exit::Usage, "a listing key names its scope already")
                    .hint("leave out --domain and --mailbox, or give ACTION KIND VALUE instead of the key")
                    .into());
            }
            // The whole `_id`, as `export` and `status` show documents, is accepted too.
            let text = key.strip_prefix(&DocKind::Listing.id_prefix()).unwrap_or(key);
            ListingKey::parse(text).map_err(|err| {
                Failure::new(Exit::Invalid, format!("invalid listing key `{key}`: {}", err.message))
                    .hint(
                        "write the key as `couchmail listing list` shows it, SCOPE:ACTION:KIND:VALUE, such as \
                         global:block:client:192.0.2.0/24, or give ACTION KIND VALUE",
                    )
                    .into()
            })
        }
        [action, kind, value] => {
            let action = ListingActionArg::from_str(action, false).map_err(|_| {
                Failure::new(Exit::Usage, format!("unknown action `{action}`")).hint("the action is `block` or `allow`")
            })?;
            let kind = ListingKindArg::from_str(kind, false).map_err(|_| {
                Failure::new(Exit::Usage, format!("unknown kind `{kind}`"))
                    .hint("the kind is `sender`, `sender-domain` or `client`")
            })?;
            let kind = kind_of(kind);
            Ok(ListingKey { scope: scope_of(&target.scope)?, action: action_of(action), value: parse_value(kind, value)? })
        }
        _ => Err(Failure::new(Exit::Usage, "a listing is named by its key, or by ACTION KIND VALUE")
            .hint("as in `couchmail listing rm global:block:client:192.0.2.0/24` or `couchmail listing rm block client 192.0.2.0/24`")
            .into()),
    }
}

async fn read(context: &Context, target: &ListingTarget) -> anyhow::Result<(Listing, Rev)> {
    let key = key_of(target)?;
    let id = DocKind::Listing.id(&key);
    let entry = fetch(context, &id, format!("listing {key}"), "listing list").await?;
    match entry.doc {
        Document::Listing(listing) => Ok((listing, entry.rev)),
        other => Err(wrong_kind(&id, &other)),
    }
}

fn print_one(context: &Context, listing: &Listing, rev: &Rev, done: &str) -> anyhow::Result<()> {
    let view = ListingView::new(listing, rev);
    if context.json {
        return output::json(&view);
    }
    if !done.is_empty() {
        output::note(done);
    }
    output::text(&output::fields(&[
        ("key", view.key.clone()),
        ("scope", view.scope.clone()),
        ("action", view.action.clone()),
        ("kind", view.kind.clone()),
        ("value", view.value.clone()),
        ("note", view.note.clone()),
        ("created", or_dash(view.created.map(format_time))),
        ("revision", view.rev.clone()),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::ListingScopeFlags;

    fn target(words: &[&str], domain: Option<&str>, mailbox: Option<&str>) -> ListingTarget {
        ListingTarget {
            words: words.iter().map(|word| (*word).to_owned()).collect(),
            scope: ListingScopeFlags { domain: domain.map(str::to_owned), mailbox: mailbox.map(str::to_owned) },
        }
    }

    fn exit_of(result: anyhow::Result<ListingKey>) -> Exit {
        crate::exit::classify(&result.unwrap_err()).0
    }

    #[test]
    fn a_key_and_the_words_of_add_name_the_same_listing() {
        let by_key = key_of(&target(&["domain:Example.com:block:client:192.0.2.77/24"], None, None)).unwrap();
        let by_words = key_of(&target(&["block", "client", "192.0.2.77/24"], Some("example.COM"), None)).unwrap();
        assert_eq!(by_key, by_words);
        assert_eq!(by_key.to_string(), "domain:example.com:block:client:192.0.2.0/24");
        let by_id = key_of(&target(&["listing:domain:example.com:block:client:192.0.2.0/24"], None, None)).unwrap();
        assert_eq!(by_id, by_key);
        let mailbox = key_of(&target(&["allow", "sender-domain", "Partner.Example"], None, Some("a@example.com")));
        assert_eq!(mailbox.unwrap().to_string(), "mailbox:a@example.com:allow:sender-domain:partner.example");
    }

    #[test]
    fn bad_targets_say_why() {
        assert_eq!(exit_of(key_of(&target(&["global:block:client:nope"], None, None))), Exit::Invalid);
        assert_eq!(exit_of(key_of(&target(&["block", "client", "nope"], None, None))), Exit::Invalid);
        assert_eq!(exit_of(key_of(&target(&["deny", "client", "192.0.2.1"], None, None))), Exit::Usage);
        assert_eq!(exit_of(key_of(&target(&["block", "helo", "x.example"], None, None))), Exit::Usage);
        assert_eq!(exit_of(key_of(&target(&["block", "client"], None, None))), Exit::Usage);
        let scoped_key = target(&["global:block:client:192.0.2.1"], Some("example.com"), None);
        assert_eq!(exit_of(key_of(&scoped_key)), Exit::Usage);
        let err = parse_value(ListingKind::Client, "192.0.2.1/33").unwrap_err();
        assert!(err.to_string().contains("invalid client `192.0.2.1/33`"), "{err}");
        assert!(crate::exit::classify(&err).1.unwrap().contains("192.0.2.0/24"));
    }
}
