//! The embedded backend: one SQLite file in WAL mode.
//!
//! One table holds every document at its latest revision, tombstones included, keyed by
//! `seq`, the position of the document's latest change in the feed. A write replaces the
//! row and takes a fresh `seq` from SQLite's `AUTOINCREMENT` counter, which never hands out
//! a value twice, so `seq > since` ordered by `seq` is exactly CouchDB's `_changes`: each
//! document once, at its latest revision.
//!
//! Connections: one writer behind a mutex, because SQLite admits one writer at a time
//! anyway and serialising in-process writers here keeps them off the busy handler; plus a
//! small pool of reader connections, because WAL lets readers run beside the writer and
//! reopening a connection per call would cost a file open and a schema parse every time.
//! All SQLite calls block, so they run on Tokio's blocking pool; a write that has started
//! finishes its transaction even if the caller's future is dropped.

use std::fs::{OpenOptions, Permissions};
use std::io::ErrorKind as IoErrorKind;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::revision::next_revision;
use crate::validate::{check_body, check_id};
use crate::{Body, Change, Changes, Error, ErrorKind, ListOptions, RawDoc, Result, Rev, Seq, Store};

/// How long a connection waits for another process's lock before giving up as unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a waiting `changes` looks at the file for writes made by other processes.
///
/// Writes from this process wake waiters at once; this bounds the delay for the CLI's
/// writes while the server runs. The query is one index probe, so polling is cheap.
const POLL_INTERVAL: Duration = Duration::from_millis(15);

/// Reader connections kept open between calls; more are opened under load and closed after.
const MAX_IDLE_READERS: usize = 4;

/// Schema migrations, in order: step `n` (counting from 1) brings `PRAGMA user_version`
/// from `n - 1` to `n`. Append new steps; never edit a released one.
const MIGRATIONS: &[&str] = &[
    // 1: documents at their latest revision. `seq` is the rowid, so the feed is a rowid range
    // scan; AUTOINCREMENT keeps `seq` from ever being reused. `body` is NULL for tombstones.
    "CREATE TABLE documents (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        rev TEXT NOT NULL,
        deleted INTEGER NOT NULL CHECK (deleted IN (0, 1)),
        body TEXT,
        CHECK ((deleted = 1) = (body IS NULL))
    );",
];

/// The schema version this code writes and understands.
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// A store in one SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    shared: Arc<Shared>,
}

/// What the blocking tasks share with the store handle; outlives the handle while a
/// write is still finishing.
struct Shared {
    path: PathBuf,
    writer: Mutex<Connection>,
    idle_readers: Mutex<Vec<Connection>>,
    /// The newest `seq` this process committed: waiters in `changes` watch it.
    last_written: watch::Sender<i64>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    ///
    /// A new file is created with mode 0600: it holds password hashes.
    /// A file written by a newer CouchMail (a schema version this code does not know) is refused.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let path = path.as_ref().to_owned();
        let open_path = path.clone();
        let shared = tokio::task::spawn_blocking(move || Shared::open(open_path)).await.map_err(|join_error| {
            Error::new(ErrorKind::Internal, "opening the store failed").with_source(join_error)
        })??;
        tracing::debug!(path = %path.display(), "opened sqlite store");
        Ok(SqliteStore { path, shared: Arc::new(shared) })
    }

    /// The schema version recorded in the file (`PRAGMA user_version`).
    pub async fn schema_version(&self) -> Result<i64> {
        self.blocking(|shared| {
            shared.with_reader(|connection| {
                connection
                    .pragma_query_value(None, "user_version", |row| row.get(0))
                    .map_err(|error| sqlite_error(&shared.path, "cannot read the schema version", error))
            })
        })
        .await
    }

    /// The schema version this code writes and understands.
    pub fn supported_schema_version() -> i64 {
        SCHEMA_VERSION
    }

    /// Runs `operation` on the blocking pool. Once started it runs to completion, so a
    /// dropped caller never leaves a transaction half done.
    async fn blocking<T, F>(&self, operation: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Shared) -> Result<T> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || operation(&shared)).await.map_err(|join_error| {
            Error::new(ErrorKind::Internal, format!("store task for {} failed", self.path.display()))
                .with_source(join_error)
        })?
    }
}

impl Shared {
    fn open(path: PathBuf) -> Result<Shared> {
        create_private_file(&path)?;
        let mut writer = open_connection(&path)?;
        let journal_mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
            .map_err(|error| sqlite_error(&path, "cannot switch the store to WAL mode", error))?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "store at {} stays in journal mode {journal_mode:?}, not WAL — put it on a local file system",
                    path.display()
                ),
            ));
        }
        migrate(&path, &mut writer)?;
        restrict_side_files(&path);
        let last_seq = max_seq(&path, &writer)?;
        let (last_written, _) = watch::channel(last_seq);
        Ok(Shared { path, writer: Mutex::new(writer), idle_readers: Mutex::new(Vec::new()), last_written })
    }

    /// The writer connection. A panic while it was held cannot leave a transaction open
    /// (rusqlite rolls back on drop), so a poisoned lock is still usable.
    fn writer(&self) -> MutexGuard<'_, Connection> {
        self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn with_reader<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let idle = self.idle_readers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => {
                let connection = open_connection(&self.path)?;
                // Readers never write; this turns a bug into an error instead of a stray write.
                connection
                    .pragma_update(None, "query_only", true)
                    .map_err(|error| sqlite_error(&self.path, "cannot configure a reader", error))?;
                connection
            }
        };
        let result = read(&connection);
        let mut idle_readers = self.idle_readers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle_readers.len() < MAX_IDLE_READERS {
            idle_readers.push(connection);
        }
        result
    }

    fn get(&self, id: &str) -> Result<Option<RawDoc>> {
        self.with_reader(|connection| {
            let row: Option<(String, String)> = connection
                .prepare_cached("SELECT rev, body FROM documents WHERE id = ?1 AND deleted = 0")
                .and_then(|mut statement| {
                    statement.query_row(params![id], |row| Ok((row.get(0)?, row.get(1)?))).optional()
                })
                .map_err(|error| sqlite_error(&self.path, &format!("cannot read document {id:?}"), error))?;
            row.map(|(rev, body)| Ok(RawDoc { id: id.to_owned(), rev: Rev(rev), body: parse_body(id, &body)? }))
                .transpose()
        })
    }

    /// Writes a new revision of `id` (`body` `None`: a tombstone) after checking, in the
    /// same `BEGIN IMMEDIATE` transaction, that `expected` matches the current state.
    fn write(&self, id: &str, expected: Expected<'_>, body: Option<&Body>) -> Result<Rev> {
        let body_text = body.map(serde_json::to_string).transpose().map_err(|error| {
            Error::new(ErrorKind::BadRequest, format!("document {id:?} cannot be encoded")).with_source(error)
        })?;
        let context = || format!("cannot write document {id:?}");
        let mut writer = self.writer();
        let transaction = writer
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|error| sqlite_error(&self.path, &context(), error))?;
        let current: Option<(String, bool)> = transaction
            .prepare_cached("SELECT rev, deleted FROM documents WHERE id = ?1")
            .and_then(|mut statement| statement.query_row(params![id], |row| Ok((row.get(0)?, row.get(1)?))).optional())
            .map_err(|error| sqlite_error(&self.path, &context(), error))?;
        let current = current.map(|(rev, deleted)| (Rev(rev), deleted));
        expected.check(id, current.as_ref())?;
        let previous = current.as_ref().map(|(rev, _)| rev);
        let rev = next_revision(previous, body)?;
        let seq: i64 = transaction
            .prepare_cached(
                "INSERT OR REPLACE INTO documents (id, rev, deleted, body) VALUES (?1, ?2, ?3, ?4) RETURNING seq",
            )
            .and_then(|mut statement| {
                statement.query_row(params![id, rev.0, body.is_none(), body_text], |row| row.get(0))
            })
            .map_err(|error| sqlite_error(&self.path, &context(), error))?;
        transaction.commit().map_err(|error| sqlite_error(&self.path, &context(), error))?;
        drop(writer);
        self.last_written.send_if_modified(|last_written| {
            let newer = seq > *last_written;
            if newer {
                *last_written = seq;
            }
            newer
        });
        Ok(rev)
    }

    fn list(&self, prefix: &str, options: &ListOptions) -> Result<Vec<RawDoc>> {
        // A range on the unique index over `id`, not LIKE: LIKE is case-insensitive for
        // ASCII and treats `%` and `_` in the prefix as wildcards.
        let mut sql = String::from("SELECT id, rev, body FROM documents WHERE deleted = 0");
        let mut bounds: Vec<String> = Vec::new();
        if !prefix.is_empty() {
            bounds.push(prefix.to_owned());
            sql.push_str(&format!(" AND id >= ?{}", bounds.len()));
            if let Some(upper) = prefix_successor(prefix) {
                bounds.push(upper);
                sql.push_str(&format!(" AND id < ?{}", bounds.len()));
            }
        }
        if let Some(start_after) = &options.start_after {
            bounds.push(start_after.clone());
            sql.push_str(&format!(" AND id > ?{}", bounds.len()));
        }
        sql.push_str(" ORDER BY id");
        if let Some(limit) = options.limit {
            sql.push_str(&format!(" LIMIT {}", i64::try_from(limit).unwrap_or(i64::MAX)));
        }
        self.with_reader(|connection| {
            let context = || format!("cannot list documents with prefix {prefix:?}");
            let mut statement =
                connection.prepare_cached(&sql).map_err(|error| sqlite_error(&self.path, &context(), error))?;
            let rows = statement
                .query_map(rusqlite::params_from_iter(bounds.iter()), |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|error| sqlite_error(&self.path, &context(), error))?;
            rows.into_iter()
                .map(|(id, rev, body)| {
                    let body = parse_body(&id, &body)?;
                    Ok(RawDoc { id, rev: Rev(rev), body })
                })
                .collect()
        })
    }

    fn changes_after(&self, since: i64, limit: usize) -> Result<Vec<Change>> {
        self.with_reader(|connection| {
            let context = || format!("cannot read the changes feed after {since}");
            let mut statement = connection
                .prepare_cached("SELECT seq, id, rev, body FROM documents WHERE seq > ?1 ORDER BY seq LIMIT ?2")
                .map_err(|error| sqlite_error(&self.path, &context(), error))?;
            let rows = statement
                .query_map(params![since, i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?, row.get(3)?))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<(i64, String, String, Option<String>)>>>())
                .map_err(|error| sqlite_error(&self.path, &context(), error))?;
            rows.into_iter()
                .map(|(seq, id, rev, body)| {
                    let body = body.map(|body| parse_body(&id, &body)).transpose()?;
                    Ok(Change { seq: Seq(seq.to_string()), id, rev: Rev(rev), body })
                })
                .collect()
        })
    }
}

/// What a write expects to find.
#[derive(Clone, Copy)]
enum Expected<'a> {
    /// `put` without a revision: no live document (a tombstone is fine).
    Absent,
    /// `put` with a revision: the live document at exactly this revision.
    LiveAt(&'a Rev),
    /// `delete`: the live document at exactly this revision; a missing one is not found.
    DeletableAt(&'a Rev),
}

impl Expected<'_> {
    fn check(self, id: &str, current: Option<&(Rev, bool)>) -> Result<()> {
        let live_rev = current.and_then(|(rev, deleted)| (!deleted).then_some(rev));
        match (self, live_rev) {
            (Expected::Absent, None) => Ok(()),
            (Expected::Absent, Some(live)) => Err(Error::new(
                ErrorKind::Conflict,
                format!("document {id:?} already exists at revision {live} — give that revision to update it"),
            )),
            (Expected::LiveAt(given) | Expected::DeletableAt(given), Some(live)) if given == live => Ok(()),
            (Expected::LiveAt(given) | Expected::DeletableAt(given), Some(live)) => Err(Error::new(
                ErrorKind::Conflict,
                format!("document {id:?} is at revision {live}, not {given} — read it again and retry"),
            )),
            (Expected::LiveAt(given), None) => Err(Error::new(
                ErrorKind::Conflict,
                format!("document {id:?} does not exist, so revision {given} is stale — create it without a revision"),
            )),
            (Expected::DeletableAt(_), None) => {
                Err(Error::new(ErrorKind::NotFound, format!("document {id:?} does not exist or is already deleted")))
            }
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, id: &str) -> Result<Option<RawDoc>> {
        let id = id.to_owned();
        self.blocking(move |shared| shared.get(&id)).await
    }

    async fn put(&self, id: &str, rev: Option<&Rev>, body: &Body) -> Result<Rev> {
        check_id(id)?;
        check_body(id, body)?;
        let id = id.to_owned();
        let rev = rev.cloned();
        let body = body.clone();
        self.blocking(move |shared| {
            let expected = match &rev {
                None => Expected::Absent,
                Some(rev) => Expected::LiveAt(rev),
            };
            shared.write(&id, expected, Some(&body))
        })
        .await
    }

    async fn delete(&self, id: &str, rev: &Rev) -> Result<Rev> {
        check_id(id)?;
        let id = id.to_owned();
        let rev = rev.clone();
        self.blocking(move |shared| shared.write(&id, Expected::DeletableAt(&rev), None)).await
    }

    async fn list(&self, prefix: &str, options: &ListOptions) -> Result<Vec<RawDoc>> {
        let prefix = prefix.to_owned();
        let options = options.clone();
        self.blocking(move |shared| shared.list(&prefix, &options)).await
    }

    async fn changes(&self, since: Option<&Seq>, limit: usize, wait: Duration) -> Result<Changes> {
        let since_number = match since {
            None => 0,
            Some(seq) => seq.0.parse::<i64>().ok().filter(|number| *number >= 0).ok_or_else(|| {
                Error::new(
                    ErrorKind::BadRequest,
                    format!("{:?} is not a sequence from this store — pass a last_seq it returned", seq.0),
                )
            })?,
        };
        // CouchDB treats `limit=0` as 1; so do we, rather than answer nothing forever.
        let limit = limit.max(1);
        let deadline = Instant::now() + wait;
        // Subscribe before the first query so that a write committed between the query and
        // the wait still wakes us.
        let mut local_writes = self.shared.last_written.subscribe();
        loop {
            local_writes.mark_unchanged();
            let changes = self.blocking(move |shared| shared.changes_after(since_number, limit)).await?;
            if !changes.is_empty() || Instant::now() >= deadline {
                let last_seq = changes.last().map(|change| change.seq.clone()).or_else(|| since.cloned());
                return Ok(Changes { changes, last_seq });
            }
            let next_poll = (Instant::now() + POLL_INTERVAL).min(deadline);
            tokio::select! {
                // The sender lives as long as `self`, so `changed` cannot fail here.
                _ = local_writes.changed() => {}
                () = tokio::time::sleep_until(next_poll) => {}
            }
        }
    }

    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }
}

/// Creates `path` with mode 0600 if it does not exist, so that the password hashes in it are
/// never readable by others, not even between creation and a later chmod.
fn create_private_file(path: &Path) -> Result<()> {
    match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => {
            // The umask can only remove bits, but be explicit: this file holds secrets.
            std::fs::set_permissions(path, Permissions::from_mode(0o600)).map_err(|error| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("cannot restrict permissions of store at {} — check the file system", path.display()),
                )
                .with_source(error)
            })?;
            tracing::info!(path = %path.display(), "created a new store");
            Ok(())
        }
        Err(error) if error.kind() == IoErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(Error::new(
            ErrorKind::Unavailable,
            format!("cannot create store at {} — check the path and permissions", path.display()),
        )
        .with_source(error)),
    }
}

/// Restricts the WAL and shared-memory files to the owner. SQLite already copies the main
/// file's mode onto them; this also covers files left behind with looser modes.
fn restrict_side_files(path: &Path) {
    for suffix in ["-wal", "-shm"] {
        let mut side_path = path.as_os_str().to_owned();
        side_path.push(suffix);
        let side_path = PathBuf::from(side_path);
        if let Ok(metadata) = std::fs::metadata(&side_path)
            && metadata.permissions().mode() & 0o077 != 0
            && let Err(error) = std::fs::set_permissions(&side_path, Permissions::from_mode(0o600))
        {
            tracing::warn!(path = %side_path.display(), %error, "cannot restrict permissions of a store side file");
        }
    }
}

/// Opens a connection to the existing file at `path`.
///
/// Without `SQLITE_OPEN_CREATE`: the file was created (with its mode) by
/// [`create_private_file`], and a reader opened after someone removed it must fail rather
/// than start a new, empty store. Without `SQLITE_OPEN_URI`: a path is a path.
fn open_connection(path: &Path) -> Result<Connection> {
    let context = "cannot open store";
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags).map_err(|error| sqlite_error(path, context, error))?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(|error| sqlite_error(path, context, error))?;
    // Account data: a committed write must survive a power cut, whatever it costs.
    connection.pragma_update(None, "synchronous", "FULL").map_err(|error| sqlite_error(path, context, error))?;
    Ok(connection)
}

/// Applies the migrations the file lacks, each in its own transaction together with the
/// version bump, so a crash leaves the file at one version or the next.
fn migrate(path: &Path, connection: &mut Connection) -> Result<()> {
    let context = "cannot migrate the store schema";
    loop {
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|error| sqlite_error(path, context, error))?;
        // Read inside the write transaction: another process may be migrating the same file.
        let version: i64 = transaction
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|error| sqlite_error(path, context, error))?;
        if version > SCHEMA_VERSION {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "store at {} has schema version {version}, newer than version {SCHEMA_VERSION} that this CouchMail knows — upgrade CouchMail or restore a backup made for this version",
                    path.display()
                ),
            ));
        }
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        let step_idx = usize::try_from(version).map_err(|_| {
            Error::new(
                ErrorKind::Internal,
                format!("store at {} has negative schema version {version}", path.display()),
            )
        })?;
        transaction.execute_batch(MIGRATIONS[step_idx]).map_err(|error| sqlite_error(path, context, error))?;
        transaction
            .pragma_update(None, "user_version", version + 1)
            .map_err(|error| sqlite_error(path, context, error))?;
        transaction.commit().map_err(|error| sqlite_error(path, context, error))?;
        tracing::info!(path = %path.display(), version = version + 1, "migrated store schema");
    }
}

fn max_seq(path: &Path, connection: &Connection) -> Result<i64> {
    connection
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM documents", [], |row| row.get(0))
        .map_err(|error| sqlite_error(path, "cannot read the changes feed", error))
}

fn parse_body(id: &str, text: &str) -> Result<Body> {
    serde_json::from_str(text).map_err(|error| {
        Error::new(
            ErrorKind::Internal,
            format!("stored body of document {id:?} is not a JSON object — the store is corrupt"),
        )
        .with_source(error)
    })
}

/// The smallest string greater than every string starting with `prefix`, or `None` when
/// there is none. SQLite compares TEXT bytewise, and UTF-8 byte order is code point order,
/// so bumping the last code point that can be bumped gives the exclusive upper bound.
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        // Skip the surrogate range, which `char` cannot hold.
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(next) = char::from_u32(next) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Maps a SQLite failure to an error kind: trouble in the environment (locks, disk, file
/// permissions) is `Unavailable`, for callers to answer "try again later"; anything else is a
/// bug or corruption and `Internal`.
fn sqlite_error(path: &Path, context: &str, error: rusqlite::Error) -> Error {
    let code = match &error {
        rusqlite::Error::SqliteFailure(failure, _) => Some(failure.code),
        _ => None,
    };
    let (kind, advice) = match code {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            (ErrorKind::Unavailable, "another process holds the store locked — retry shortly")
        }
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            (ErrorKind::Unavailable, "check the path and permissions")
        }
        Some(ErrorCode::SystemIoFailure | ErrorCode::DiskFull | ErrorCode::FileLockingProtocolFailed) => {
            (ErrorKind::Unavailable, "check the disk and file system")
        }
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            (ErrorKind::Internal, "the file is not an intact CouchMail store — restore a backup")
        }
        _ => (ErrorKind::Internal, "this is a bug in CouchMail — please report it"),
    };
    Error::new(kind, format!("{context} at {}: {advice}", path.display())).with_source(error)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use super::*;

    #[test]
    fn prefix_successors() {
        assert_eq!(prefix_successor("mailbox:"), Some("mailbox;".to_owned()));
        assert_eq!(prefix_successor("a\u{10FFFF}"), Some("b".to_owned()));
        assert_eq!(prefix_successor("\u{10FFFF}"), None);
        assert_eq!(prefix_successor("a\u{D7FF}"), Some("a\u{E000}".to_owned()));
        assert_eq!(prefix_successor(""), None);
    }

    #[test]
    fn expectations() {
        let rev = Rev("1-aa".to_owned());
        let other = Rev("2-bb".to_owned());
        let kind = |expected: Expected<'_>, current: Option<(Rev, bool)>| {
            expected.check("x", current.as_ref()).err().map(|error| error.kind())
        };
        assert_eq!(kind(Expected::Absent, None), None);
        assert_eq!(kind(Expected::Absent, Some((rev.clone(), true))), None);
        assert_eq!(kind(Expected::Absent, Some((rev.clone(), false))), Some(ErrorKind::Conflict));
        assert_eq!(kind(Expected::LiveAt(&rev), Some((rev.clone(), false))), None);
        assert_eq!(kind(Expected::LiveAt(&rev), Some((other.clone(), false))), Some(ErrorKind::Conflict));
        assert_eq!(kind(Expected::LiveAt(&rev), Some((rev.clone(), true))), Some(ErrorKind::Conflict));
        assert_eq!(kind(Expected::LiveAt(&rev), None), Some(ErrorKind::Conflict));
        assert_eq!(kind(Expected::DeletableAt(&rev), Some((rev.clone(), false))), None);
        assert_eq!(kind(Expected::DeletableAt(&rev), Some((other, false))), Some(ErrorKind::Conflict));
        assert_eq!(kind(Expected::DeletableAt(&rev), Some((rev.clone(), true))), Some(ErrorKind::NotFound));
        assert_eq!(kind(Expected::DeletableAt(&rev), None), Some(ErrorKind::NotFound));
    }
}
