//! The administrative commands, one module per command group, over a
//! [`Directory`].
//!
//! Every command parses its arguments into model types first (so that a bad
//! address is exit 5 before the store is touched), then reads and writes
//! through the directory. Updates read the current document and write it
//! back with the revision they read: a concurrent change makes the write a
//! conflict (exit 4), never a lost update.

mod alias;
mod conflicts;
mod domain;
mod domain_alias;
mod export;
mod import;
mod listing;
mod mailbox;
pub mod migrate;
mod policy;
mod sieve;
mod status;
pub mod token;

use anyhow::Context as _;
use couchmail_directory::{Cascade, Directory, Entry, ErrorKind, ListFilter};
use couchmail_model::{DocKind, Document, DomainName, ValidationError};
use couchmail_store::{ListOptions, Rev};
use std::fmt;
use std::io::{BufRead, IsTerminal};
use std::str::FromStr;

use crate::cli::Command;
use crate::config::Config;
use crate::exit::{CONFLICT_HINT, Exit, Failure};
use crate::sieve_check::SievecCheck;

/// What every command needs.
pub struct Context {
    /// The documents.
    pub directory: Directory,
    /// `--json`
    pub json: bool,
    /// The configuration, for `status`.
    pub config: Config,
}

/// Runs one administrative command (everything but `up`, `render` and `migrate`).
pub async fn run(command: Command, context: &Context) -> anyhow::Result<()> {
    match command {
        Command::Up(_) | Command::Render(_) | Command::Migrate(_) => {
            unreachable!("main runs `up`, `render` and `migrate` itself")
        }
        Command::Status => status::run(context).await,
        Command::Domain(command) => domain::run(command, context).await,
        Command::DomainAlias(command) => domain_alias::run(command, context).await,
        Command::Mailbox(command) => mailbox::run(command, context).await,
        Command::Alias(command) => alias::run(command, context).await,
        Command::Sieve(command) => sieve::run(command, context).await,
        Command::Token(command) => token::run(command, context).await,
        Command::Listing(command) => listing::run(command, context).await,
        Command::Export(args) => export::run(args, context).await,
        Command::Import(args) => import::run(args, context).await,
        Command::Conflicts(command) => conflicts::run(command, context).await,
    }
}

/// Opens the configured store for an administrative command. Unlike `up`,
/// this creates no SQLite file: a missing one means the configuration points
/// somewhere unexpected.
pub async fn open_directory(config: &Config) -> anyhow::Result<Directory> {
    let store = crate::store::open(config, crate::store::Missing::Refuse).await?;
    Ok(Directory::new(store).with_script_check(SievecCheck::for_config(config)))
}

/// Parses a command-line value into a model type: exit 5 naming what and why.
pub fn parse<T>(what: &str, input: &str) -> anyhow::Result<T>
where
    T: FromStr<Err = ValidationError>,
{
    input.parse().map_err(|err: ValidationError| {
        Failure::new(Exit::Invalid, format!("invalid {what} `{input}`: {}", err.message))
            .hint(format!("write a valid {what} and run the command again"))
            .into()
    })
}

/// Reads document `id`, or fails with exit 3 saying how to list what exists.
pub async fn fetch(context: &Context, id: &str, what: impl fmt::Display, list_command: &str) -> anyhow::Result<Entry> {
    match context.directory.get(id).await.with_context(|| format!("cannot read {what}"))? {
        Some(entry) => Ok(entry),
        None => Err(Failure::new(Exit::NotFound, format!("{what} does not exist"))
            .hint(format!("`couchmail {list_command}` shows what exists"))
            .into()),
    }
}

/// Creates `doc`; an existing one is exit 4 pointing at `update`.
pub async fn create(
    context: &Context,
    doc: &Document,
    what: impl fmt::Display,
    update_hint: &str,
) -> anyhow::Result<Rev> {
    match context.directory.create(doc).await {
        Ok(rev) => Ok(rev),
        Err(err) if matches!(err.kind(), ErrorKind::Conflict) => {
            Err(Failure::new(Exit::Conflict, format!("{what} already exists")).hint(update_hint.to_owned()).into())
        }
        Err(err) => Err(anyhow::Error::new(err).context(format!("cannot add {what}"))),
    }
}

/// Writes `doc` back over revision `rev`; a concurrent change is exit 4.
pub async fn write_back(context: &Context, doc: &Document, rev: &Rev, what: impl fmt::Display) -> anyhow::Result<Rev> {
    context.directory.update(doc, rev).await.map_err(|err| conflict_or(err, &what, "update"))
}

/// Removes `id` at `rev`; dependents without `--cascade` are exit 7 saying so.
pub async fn remove(
    context: &Context,
    id: &str,
    rev: &Rev,
    cascade: Cascade,
    what: impl fmt::Display,
) -> anyhow::Result<Vec<String>> {
    match context.directory.remove(id, Some(rev), cascade).await {
        Ok(removed) => Ok(removed),
        Err(err) if matches!(err.kind(), ErrorKind::Refused) && cascade == Cascade::Refuse => {
            Err(Failure::new(Exit::Refused, format!("cannot remove {what}: {err}"))
                .hint("add --cascade to remove what depends on it too, or remove those first")
                .into())
        }
        Err(err) => Err(conflict_or(err, &what, "remove")),
    }
}

fn conflict_or(err: couchmail_directory::Error, what: &dyn fmt::Display, verb: &str) -> anyhow::Error {
    if matches!(err.kind(), ErrorKind::Conflict) {
        Failure::new(Exit::Conflict, format!("{what} was changed by someone else meanwhile; run the command again"))
            .hint(CONFLICT_HINT)
            .into()
    } else {
        anyhow::Error::new(err).context(format!("cannot {verb} {what}"))
    }
}

/// Lists the documents of `kind`, optionally of one domain.
pub async fn list(context: &Context, kind: DocKind, domain: Option<DomainName>) -> anyhow::Result<Vec<Entry>> {
    let filter = ListFilter { kind, domain, owner: None, page: ListOptions::default() };
    context.directory.list(&filter).await.with_context(|| format!("cannot list {kind} documents"))
}

/// Reports what a removal took away: `{"removed": [ids]}` in JSON, one line
/// per document otherwise (the one named last).
pub fn print_removed(context: &Context, removed: &[String]) -> anyhow::Result<()> {
    if context.json {
        return crate::output::json(&serde_json::json!({ "removed": removed }));
    }
    let lines: String = removed.iter().map(|id| format!("removed {id}\n")).collect();
    crate::output::text(&lines)
}

/// A document of the wrong kind under an `_id` is a bug in the directory.
pub fn wrong_kind(id: &str, doc: &Document) -> anyhow::Error {
    anyhow::anyhow!("document {id} is a {} document; this is a bug", doc.kind())
}

/// Fails with exit 2 when an update asks for no change.
pub fn require_change(changed: bool, example: &str) -> anyhow::Result<()> {
    if changed {
        return Ok(());
    }
    Err(Failure::new(Exit::Usage, "nothing to change").hint(format!("say what to change, as in `{example}`")).into())
}

/// Reads one line from standard input, without its line ending.
pub fn read_stdin_line(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).with_context(|| format!("cannot read the {what} from stdin"))?;
    let trimmed = line.strip_suffix('\n').unwrap_or(&line);
    let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
    Ok(trimmed.to_owned())
}

/// Whether standard input is a terminal a person types on.
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// The current time in seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

/// A Unix time as an RFC 3339 UTC timestamp.
pub fn format_time(unix: u64) -> String {
    let formatted = i64::try_from(unix)
        .ok()
        .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
        .and_then(|at| at.format(&time::format_description::well_known::Rfc3339).ok());
    formatted.unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use couchmail_store::SqliteStore;

    use super::*;

    #[test]
    fn parse_names_what_is_wrong() {
        let err = parse::<couchmail_model::Address>("address", "alice").unwrap_err();
        let (exit, hint) = crate::exit::classify(&err);
        assert_eq!(exit, Exit::Invalid);
        assert!(err.to_string().contains("invalid address `alice`"), "{err}");
        assert!(err.to_string().contains('@'), "{err}");
        assert!(hint.unwrap().contains("valid address"));
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    /// A real stale write: read a document, let someone else update it, then
    /// write back with the revision read first.
    #[tokio::test]
    async fn write_back_over_a_stale_revision_is_exit_4() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("db")).await.unwrap();
        let context = Context {
            directory: Directory::new(Arc::new(store)),
            json: false,
            config: Config::load(crate::config::Sources::default()).unwrap(),
        };
        let domain = couchmail_model::Domain {
            name: "example.com".parse().unwrap(),
            active: true,
            quota_default: None,
            max_mailboxes: None,
            policy: couchmail_model::PolicySettings::default(),
        };
        let first_rev = context.directory.create(&Document::Domain(domain.clone())).await.unwrap();
        let meanwhile = couchmail_model::Domain { max_mailboxes: Some(5), ..domain.clone() };
        write_back(&context, &Document::Domain(meanwhile), &first_rev, "domain example.com").await.unwrap();

        let mine = couchmail_model::Domain { active: false, ..domain };
        let err = write_back(&context, &Document::Domain(mine), &first_rev, "domain example.com").await.unwrap_err();
        assert_eq!(crate::exit::classify(&err).0, Exit::Conflict);
        assert!(err.to_string().contains("changed by someone else meanwhile; run the command again"), "{err}");
        // The other writer's change survived.
        let entry = context.directory.get("domain:example.com").await.unwrap().unwrap();
        assert!(matches!(entry.doc, Document::Domain(d) if d.max_mailboxes == Some(5) && d.active));
    }

    #[test]
    fn conflicts_on_write_say_run_again() {
        let err = conflict_or(
            couchmail_directory::Error::new(ErrorKind::Conflict, "stale revision"),
            &"mailbox alice@example.com",
            "update",
        );
        let (exit, _) = crate::exit::classify(&err);
        assert_eq!(exit, Exit::Conflict);
        assert_eq!(
            err.to_string(),
            "mailbox alice@example.com was changed by someone else meanwhile; run the command again"
        );
        let err = conflict_or(couchmail_directory::Error::new(ErrorKind::Unavailable, "down"), &"x", "update");
        assert_eq!(crate::exit::classify(&err).0, Exit::Unavailable);
    }
}
