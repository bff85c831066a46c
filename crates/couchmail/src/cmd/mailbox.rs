//! `couchmail mailbox add|list|show|update|passwd|rm`.
//!
//! Passwords come from a prompt (twice, on a terminal) or from standard
//! input, never from argv, where other users could read them in `ps`.
//! No output shows a password hash: `has_password` says whether one is set.

use couchmail_directory::{Cascade, Entry};
use couchmail_model::{
    Address, DocKind, Document, DomainName, MIN_PASSWORD_CHARS, Mailbox, Password, PasswordHash, PolicySettings, Role,
};
use couchmail_store::Rev;
use serde::Serialize;

use super::policy::{self, PolicyView};
use super::{
    Context, create, fetch, list, parse, print_removed, read_stdin_line, remove, require_change, stdin_is_terminal,
    write_back, wrong_kind,
};
use crate::cli::{MailboxCommand, format_size};
use crate::exit::{Exit, Failure};
use crate::output::{self, Table, or_dash, yes_no};

/// A mailbox as `--json` shows it: never the hash itself.
#[derive(Debug, Serialize)]
struct MailboxView {
    address: String,
    name: String,
    active: bool,
    quota_bytes: Option<u64>,
    roles: Vec<String>,
    has_password: bool,
    sieve_active: Option<String>,
    /// Greylisting, spam thresholds and sending limits of its own; `null` is the domain's.
    #[serde(flatten)]
    policy: PolicyView,
    rev: String,
}

impl MailboxView {
    fn new(mailbox: &Mailbox, rev: &Rev) -> MailboxView {
        MailboxView {
            address: mailbox.address.to_string(),
            name: mailbox.name.clone(),
            active: mailbox.active,
            quota_bytes: mailbox.quota_bytes,
            roles: mailbox.roles.iter().map(ToString::to_string).collect(),
            has_password: mailbox.password.is_some(),
            sieve_active: mailbox.sieve_active.as_ref().map(ToString::to_string),
            policy: PolicyView::from(&mailbox.policy),
            rev: rev.to_string(),
        }
    }
}

pub async fn run(command: MailboxCommand, context: &Context) -> anyhow::Result<()> {
    match command {
        MailboxCommand::Add { address, name, quota, roles, password_stdin, policy } => {
            let address: Address = parse("address", &address)?;
            let roles = roles.iter().map(|role| parse::<Role>("role", role)).collect::<anyhow::Result<Vec<_>>>()?;
            let mut settings = PolicySettings::default();
            policy::apply(&policy, &mut settings)?;
            let password = if password_stdin { Some(hash(&read_stdin_line("password")?)?) } else { None };
            let has_password = password.is_some();
            let doc = Mailbox {
                address: address.clone(),
                name: name.unwrap_or_default(),
                password,
                active: true,
                quota_bytes: quota,
                roles,
                sieve_active: None,
                policy: settings,
            };
            let rev = create(
                context,
                &Document::Mailbox(doc.clone()),
                format!("mailbox {address}"),
                &format!("change it with `couchmail mailbox update {address}`"),
            )
            .await?;
            print_one(context, &doc, &rev, &format!("added mailbox {address}")).await?;
            if !has_password && !context.json {
                output::note(&format!("it has no password yet: set one with `couchmail mailbox passwd {address}`"));
            }
            Ok(())
        }
        MailboxCommand::List { domain } => {
            let domain: Option<DomainName> = domain.map(|domain| parse("domain", &domain)).transpose()?;
            let mut views = Vec::new();
            for entry in list(context, DocKind::Mailbox, domain).await? {
                match &entry.doc {
                    Document::Mailbox(mailbox) => views.push(MailboxView::new(mailbox, &entry.rev)),
                    other => return Err(wrong_kind(&other.id(), other)),
                }
            }
            if context.json {
                return output::json(&views);
            }
            let mut table = Table::new(&["address", "name", "active", "quota", "password", "roles"]);
            for view in &views {
                table.row(vec![
                    view.address.clone(),
                    view.name.clone(),
                    yes_no(view.active),
                    or_dash(view.quota_bytes.map(format_size)),
                    if view.has_password { "set" } else { "none" }.to_owned(),
                    view.roles.join(","),
                ]);
            }
            table.print("no mailboxes yet; add one with `couchmail mailbox add alice@example.com`")
        }
        MailboxCommand::Show { address } => {
            let (doc, rev) = read(context, &address).await?;
            print_one(context, &doc, &rev, "").await
        }
        MailboxCommand::Update { address, name, quota, no_quota, active, add_roles, remove_roles, policy } => {
            let changed = name.is_some()
                || quota.is_some()
                || no_quota
                || active.requested().is_some()
                || !add_roles.is_empty()
                || !remove_roles.is_empty()
                || !policy.is_empty();
            require_change(changed, "couchmail mailbox update alice@example.com --quota 5G")?;
            let add_roles = parse_roles(&add_roles)?;
            let remove_roles = parse_roles(&remove_roles)?;
            let (mut doc, rev) = read(context, &address).await?;
            if let Some(name) = name {
                doc.name = name;
            }
            if let Some(quota) = quota {
                doc.quota_bytes = Some(quota);
            }
            if no_quota {
                doc.quota_bytes = None;
            }
            if let Some(state) = active.requested() {
                doc.active = state;
            }
            for role in remove_roles {
                let Some(role_idx) = doc.roles.iter().position(|held| *held == role) else {
                    return Err(Failure::new(Exit::Invalid, format!("mailbox {} has no role `{role}`", doc.address))
                        .hint(format!("`couchmail mailbox show {}` lists its roles", doc.address))
                        .into());
                };
                doc.roles.remove(role_idx);
            }
            for role in add_roles {
                if !doc.roles.contains(&role) {
                    doc.roles.push(role);
                }
            }
            policy::apply(&policy, &mut doc.policy)?;
            let what = format!("mailbox {}", doc.address);
            let rev = write_back(context, &Document::Mailbox(doc.clone()), &rev, &what).await?;
            print_one(context, &doc, &rev, &format!("updated {what}")).await
        }
        MailboxCommand::Passwd { address, stdin } => {
            // Read the mailbox first, so nobody types a password for a typo.
            let (mailbox, _) = read(context, &address).await?;
            let plain = if stdin {
                read_stdin_line("password")?
            } else if stdin_is_terminal() {
                prompt_twice(&mailbox.address)?
            } else {
                return Err(Failure::new(
                    Exit::Usage,
                    "standard input is not a terminal, so no password can be asked for",
                )
                .hint(format!("pipe the password in with `couchmail mailbox passwd {} --stdin`", mailbox.address))
                .into());
            };
            let hash = hash(&plain)?;
            // Hashing takes a while: re-read so that only the password changes
            // even if someone edited the mailbox meanwhile.
            let (current, rev) = read(context, &address).await?;
            let doc = Mailbox { password: Some(hash), ..current };
            let what = format!("mailbox {}", doc.address);
            let rev = write_back(context, &Document::Mailbox(doc.clone()), &rev, &what).await?;
            if context.json {
                return output::json(&MailboxView::new(&doc, &rev));
            }
            output::note(&format!("password of {} changed", doc.address));
            Ok(())
        }
        MailboxCommand::Rm { address, cascade } => {
            let (doc, rev) = read(context, &address).await?;
            let cascade = if cascade { Cascade::Remove } else { Cascade::Refuse };
            let id = DocKind::Mailbox.id(&doc.address);
            let removed = remove(context, &id, &rev, cascade, format!("mailbox {}", doc.address)).await?;
            print_removed(context, &removed)
        }
    }
}

/// Reads a mailbox by address.
pub(super) async fn read(context: &Context, input: &str) -> anyhow::Result<(Mailbox, Rev)> {
    let address: Address = parse("address", input)?;
    let id = DocKind::Mailbox.id(&address);
    let entry = fetch(context, &id, format!("mailbox {address}"), "mailbox list").await?;
    match entry.doc {
        Document::Mailbox(mailbox) => Ok((mailbox, entry.rev)),
        other => Err(wrong_kind(&id, &other)),
    }
}

fn parse_roles(inputs: &[String]) -> anyhow::Result<Vec<Role>> {
    inputs.iter().map(|role| parse::<Role>("role", role)).collect()
}

/// Checks the password policy and hashes the password.
fn hash(plain: &str) -> anyhow::Result<PasswordHash> {
    let password = Password::new(plain.to_owned()).map_err(|err| {
        Failure::new(Exit::Invalid, format!("password refused: {}", err.message))
            .hint(format!("choose a password of at least {MIN_PASSWORD_CHARS} characters, without control characters"))
    })?;
    Ok(PasswordHash::new(&password))
}

/// Asks for the password twice on the terminal, without echo.
fn prompt_twice(address: &Address) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let first = rpassword::prompt_password(format!("new password for {address}: "))
        .context("cannot read the password from the terminal")?;
    let second =
        rpassword::prompt_password("again, to be sure: ").context("cannot read the password from the terminal")?;
    if first != second {
        return Err(Failure::new(Exit::Invalid, "the two passwords differ")
            .hint("run the command again and type the same password twice")
            .into());
    }
    Ok(first)
}

async fn print_one(context: &Context, mailbox: &Mailbox, rev: &Rev, done: &str) -> anyhow::Result<()> {
    let view = MailboxView::new(mailbox, rev);
    if context.json {
        return output::json(&view);
    }
    if !done.is_empty() {
        output::note(done);
    }
    // People see what an unset setting inherits, so read the domain's; JSON shows the mailbox's own only.
    let domain_id = DocKind::Domain.id(mailbox.address.domain());
    let domain_policy = match context.directory.get(&domain_id).await? {
        Some(Entry { doc: Document::Domain(domain), .. }) => Some(domain.policy),
        _ => None,
    };
    let mut pairs = vec![
        ("mailbox", view.address.clone()),
        ("name", view.name.clone()),
        ("active", yes_no(view.active)),
        ("quota", or_dash(view.quota_bytes.map(format_size))),
        ("password", if view.has_password { "set" } else { "none" }.to_owned()),
        ("roles", or_dash(Some(view.roles.join(", ")).filter(|roles| !roles.is_empty()))),
        ("sieve active", or_dash(view.sieve_active.clone())),
    ];
    pairs.extend(policy::fields(&mailbox.policy, domain_policy.as_ref()));
    pairs.push(("revision", view.rev.clone()));
    output::text(&output::fields(&pairs))
}
