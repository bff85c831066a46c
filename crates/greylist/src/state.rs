//! The state file: triplets and client counters in their own SQLite database, WAL-journalled, mode 0600.
//!
//! Times are milliseconds since the Unix epoch. The engine serialises access behind a mutex, and this module only
//! runs statements; it holds no policy.

use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::error::{Error, ErrorKind};

/// The schema this version writes; each entry of [`MIGRATIONS`] moves a file up by one.
const SCHEMA_VERSION: i64 = 1;

const MIGRATIONS: [&str; 1] = ["
    CREATE TABLE triplets (
        key INTEGER PRIMARY KEY,
        client_network TEXT NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        passed_at INTEGER
    );
    CREATE INDEX triplets_pending ON triplets (first_seen) WHERE passed_at IS NULL;
    CREATE INDEX triplets_passed ON triplets (last_seen) WHERE passed_at IS NOT NULL;
    CREATE TABLE clients (
        client_network TEXT PRIMARY KEY,
        n_passed INTEGER NOT NULL,
        last_seen INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX clients_last_seen ON clients (last_seen);
"];

/// How long a statement waits for a lock held by another connection (a person running `sqlite3` on the file).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One stored triplet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TripletRow {
    pub(crate) first_seen: i64,
    pub(crate) last_seen: i64,
    pub(crate) passed_at: Option<i64>,
}

/// One stored client network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientRow {
    pub(crate) n_passed: i64,
    pub(crate) last_seen: i64,
}

/// How many records of each kind the file holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Triplets seen but not passed yet.
    pub n_pending: u64,
    /// Triplets that passed and are remembered.
    pub n_passed: u64,
    /// Client networks with at least one passed triplet.
    pub n_clients: u64,
}

pub(crate) struct State {
    path: PathBuf,
    connection: Connection,
}

impl State {
    /// Opens the file at `path`, creating it with mode 0600 if needed, and brings its schema up to date.
    pub(crate) fn open(path: &Path) -> Result<State, Error> {
        create_private_file(path)?;
        let shown = path.display();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(path, flags)
            .map_err(|error| Error::state(format!("cannot open greylisting state {shown}"), error))?;
        let mut state = State { path: path.to_path_buf(), connection };
        state.configure()?;
        state.migrate()?;
        restrict_side_files(path);
        Ok(state)
    }

    fn fail(&self, what: &str, error: rusqlite::Error) -> Error {
        Error::state(format!("cannot {what} greylisting state {}", self.path.display()), error)
    }

    fn configure(&self) -> Result<(), Error> {
        let connection = &self.connection;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(|error| self.fail("configure", error))?;
        let journal_mode: String = connection
            .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
            .map_err(|error| self.fail("configure", error))?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %self.path.display(), journal_mode, "greylisting state is not in WAL mode; put it on a local file system");
        }
        // Losing the last writes on a power cut only greylists a few senders again; an fsync per check would
        // cost far more.
        connection.pragma_update(None, "synchronous", "NORMAL").map_err(|error| self.fail("configure", error))
    }

    fn migrate(&mut self) -> Result<(), Error> {
        loop {
            let transaction = self
                .connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|error| Error::state(format!("cannot migrate {}", self.path.display()), error))?;
            let version: i64 = transaction
                .pragma_query_value(None, "user_version", |row| row.get(0))
                .map_err(|error| Error::state(format!("cannot migrate {}", self.path.display()), error))?;
            if version == SCHEMA_VERSION {
                return Ok(());
            }
            let Some(migration) = usize::try_from(version).ok().and_then(|version| MIGRATIONS.get(version)) else {
                return Err(Error::new(
                    ErrorKind::NewerSchema,
                    format!(
                        "greylisting state {} has schema version {version}; this version knows {SCHEMA_VERSION}",
                        self.path.display()
                    ),
                ));
            };
            transaction
                .execute_batch(migration)
                .and_then(|()| transaction.pragma_update(None, "user_version", version + 1))
                .and_then(|()| transaction.commit())
                .map_err(|error| Error::state(format!("cannot migrate {}", self.path.display()), error))?;
            tracing::info!(path = %self.path.display(), version = version + 1, "migrated greylisting state");
        }
    }

    pub(crate) fn counts(&self) -> Result<Counts, Error> {
        let count = |sql: &str| -> Result<u64, Error> {
            let n: i64 =
                self.connection.query_row(sql, [], |row| row.get(0)).map_err(|error| self.fail("count", error))?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        Ok(Counts {
            n_pending: count("SELECT count(*) FROM triplets WHERE passed_at IS NULL")?,
            n_passed: count("SELECT count(*) FROM triplets WHERE passed_at IS NOT NULL")?,
            n_clients: count("SELECT count(*) FROM clients")?,
        })
    }

    pub(crate) fn triplet(&self, key: i64) -> Result<Option<TripletRow>, Error> {
        self.connection
            .prepare_cached("SELECT first_seen, last_seen, passed_at FROM triplets WHERE key = ?1")
            .and_then(|mut statement| {
                statement
                    .query_row([key], |row| {
                        Ok(TripletRow { first_seen: row.get(0)?, last_seen: row.get(1)?, passed_at: row.get(2)? })
                    })
                    .optional()
            })
            .map_err(|error| self.fail("read", error))
    }

    /// Records a new triplet, or starts an existing one over, as first seen `now` and not passed.
    pub(crate) fn start_triplet(&self, key: i64, parts: (&str, &str, &str), now: i64) -> Result<(), Error> {
        let (client_network, sender, recipient) = parts;
        self.connection
            .prepare_cached(
                "INSERT INTO triplets (key, client_network, sender, recipient, first_seen, last_seen, passed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, NULL)
                 ON CONFLICT (key) DO UPDATE SET first_seen = ?5, last_seen = ?5, passed_at = NULL",
            )
            .and_then(|mut statement| statement.execute(params![key, client_network, sender, recipient, now]))
            .map(|_| ())
            .map_err(|error| self.fail("write", error))
    }

    /// Marks a pending triplet passed at `now`, and counts it for its client network, in one transaction.
    ///
    /// A client record older than `client_expired_before` counts from zero again.
    pub(crate) fn pass_triplet(
        &mut self,
        key: i64,
        client_network: &str,
        now: i64,
        client_expired_before: i64,
    ) -> Result<(), Error> {
        let path = self.path.display().to_string();
        let fail = |error| Error::state(format!("cannot write greylisting state {path}"), error);
        let transaction = self.connection.transaction().map_err(fail)?;
        transaction
            .prepare_cached("UPDATE triplets SET passed_at = ?2, last_seen = ?2 WHERE key = ?1")
            .and_then(|mut statement| statement.execute(params![key, now]))
            .map_err(fail)?;
        transaction
            .prepare_cached(
                "INSERT INTO clients (client_network, n_passed, last_seen) VALUES (?1, 1, ?2)
                 ON CONFLICT (client_network) DO UPDATE SET
                     n_passed = CASE WHEN last_seen < ?3 THEN 1 ELSE n_passed + 1 END,
                     last_seen = ?2",
            )
            .and_then(|mut statement| statement.execute(params![client_network, now, client_expired_before]))
            .map_err(fail)?;
        transaction.commit().map_err(fail)
    }

    pub(crate) fn touch_triplet(&self, key: i64, now: i64) -> Result<(), Error> {
        self.connection
            .prepare_cached("UPDATE triplets SET last_seen = ?2 WHERE key = ?1")
            .and_then(|mut statement| statement.execute(params![key, now]))
            .map(|_| ())
            .map_err(|error| self.fail("write", error))
    }

    pub(crate) fn client(&self, client_network: &str) -> Result<Option<ClientRow>, Error> {
        self.connection
            .prepare_cached("SELECT n_passed, last_seen FROM clients WHERE client_network = ?1")
            .and_then(|mut statement| {
                statement
                    .query_row([client_network], |row| Ok(ClientRow { n_passed: row.get(0)?, last_seen: row.get(1)? }))
                    .optional()
            })
            .map_err(|error| self.fail("read", error))
    }

    pub(crate) fn touch_client(&self, client_network: &str, now: i64) -> Result<(), Error> {
        self.connection
            .prepare_cached("UPDATE clients SET last_seen = ?2 WHERE client_network = ?1")
            .and_then(|mut statement| statement.execute(params![client_network, now]))
            .map(|_| ())
            .map_err(|error| self.fail("write", error))
    }

    /// Deletes up to `limit` pending triplets first seen before `pending_before`, up to `limit` passed triplets last
    /// seen before `passed_before`, and up to `limit` clients last seen before `passed_before`.
    /// Returns how many of each went.
    pub(crate) fn delete_expired(
        &self,
        pending_before: i64,
        passed_before: i64,
        limit: i64,
    ) -> Result<(u64, u64, u64), Error> {
        let delete = |sql: &str, before: i64| -> Result<u64, Error> {
            self.connection
                .prepare_cached(sql)
                .and_then(|mut statement| statement.execute(params![before, limit]))
                .map(|n_deleted| n_deleted as u64)
                .map_err(|error| self.fail("purge", error))
        };
        let n_pending = delete(
            "DELETE FROM triplets WHERE key IN (
                 SELECT key FROM triplets WHERE passed_at IS NULL AND first_seen < ?1 LIMIT ?2)",
            pending_before,
        )?;
        let n_passed = delete(
            "DELETE FROM triplets WHERE key IN (
                 SELECT key FROM triplets WHERE passed_at IS NOT NULL AND last_seen < ?1 LIMIT ?2)",
            passed_before,
        )?;
        let n_clients = delete(
            "DELETE FROM clients WHERE client_network IN (
                 SELECT client_network FROM clients WHERE last_seen < ?1 LIMIT ?2)",
            passed_before,
        )?;
        Ok((n_pending, n_passed, n_clients))
    }

    /// Deletes the `n` oldest triplets: pending ones by first sight, then, if that is not enough, passed ones by
    /// last sight. Returns how many went.
    pub(crate) fn evict_oldest_triplets(&self, n: i64) -> Result<u64, Error> {
        let evict = |sql: &str, n: i64| -> Result<u64, Error> {
            self.connection
                .prepare_cached(sql)
                .and_then(|mut statement| statement.execute([n]))
                .map(|n_deleted| n_deleted as u64)
                .map_err(|error| self.fail("evict from", error))
        };
        let n_pending = evict(
            "DELETE FROM triplets WHERE key IN (
                 SELECT key FROM triplets WHERE passed_at IS NULL ORDER BY first_seen LIMIT ?1)",
            n,
        )?;
        let n_left = n - i64::try_from(n_pending).unwrap_or(n);
        let n_passed = if n_left > 0 {
            evict(
                "DELETE FROM triplets WHERE key IN (
                     SELECT key FROM triplets WHERE passed_at IS NOT NULL ORDER BY last_seen LIMIT ?1)",
                n_left,
            )?
        } else {
            0
        };
        Ok(n_pending + n_passed)
    }

    /// Deletes the `n` clients seen least recently. Returns how many went.
    pub(crate) fn evict_oldest_clients(&self, n: i64) -> Result<u64, Error> {
        self.connection
            .prepare_cached(
                "DELETE FROM clients WHERE client_network IN (
                     SELECT client_network FROM clients ORDER BY last_seen LIMIT ?1)",
            )
            .and_then(|mut statement| statement.execute([n]))
            .map(|n_deleted| n_deleted as u64)
            .map_err(|error| self.fail("evict from", error))
    }
}

/// Creates `path` with mode 0600 if it does not exist, so that the addresses in it are never readable by others,
/// not even between creation and a later chmod; an existing file with a looser mode is tightened.
fn create_private_file(path: &Path) -> Result<(), Error> {
    let shown = path.display();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|error| Error::state(format!("cannot create greylisting state {shown}"), error))?;
    let metadata =
        file.metadata().map_err(|error| Error::state(format!("cannot inspect greylisting state {shown}"), error))?;
    if metadata.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %shown, mode = format!("{:o}", metadata.permissions().mode() & 0o777), "greylisting state was readable by others; restricting it to 0600");
        std::fs::set_permissions(path, Permissions::from_mode(0o600))
            .map_err(|error| Error::state(format!("cannot restrict greylisting state {shown}"), error))?;
    }
    Ok(())
}

/// Restricts the WAL and shared-memory files to the owner. SQLite already gives them the main file's mode; this
/// also covers files left behind with looser modes.
fn restrict_side_files(path: &Path) {
    for suffix in ["-wal", "-shm"] {
        let mut side_path = path.as_os_str().to_owned();
        side_path.push(suffix);
        let side_path = PathBuf::from(side_path);
        if let Ok(metadata) = std::fs::metadata(&side_path)
            && metadata.permissions().mode() & 0o077 != 0
            && let Err(error) = std::fs::set_permissions(&side_path, Permissions::from_mode(0o600))
        {
            tracing::warn!(path = %side_path.display(), %error, "cannot restrict a greylisting state side file");
        }
    }
}
