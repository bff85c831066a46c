//! Test helpers shared by CouchMail's crates.
//!
//! [`TempStore`] is a SQLite store in a temporary directory that disappears
//! with it; [`fixtures`] builds valid documents with few words; [`stack`]
//! runs `couchmail up` with real Postfix and Dovecot and speaks SMTP, IMAP
//! and the REST API to it. [`dns`] runs Knot DNS with zones a test writes
//! (a DNS blocklist), and [`netns`] a network namespace with a
//! `resolv.conf` of its own, so that daemons resolve through that server.
#![deny(missing_docs)]

pub mod browser;
pub mod dns;
pub mod fixtures;
pub mod netns;
pub mod ports;
pub mod pouchdb;
pub mod stack;

use std::path::PathBuf;
use std::sync::Arc;

use couchmail_store::SqliteStore;

/// A SQLite store in a temporary directory, removed on drop.
pub struct TempStore {
    /// The store, shareable as `Arc<dyn Store>`.
    pub store: Arc<SqliteStore>,
    /// The database file, for tests that open it a second time.
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TempStore {
    /// Creates an empty store.
    ///
    /// # Panics
    /// When the temporary directory or the database cannot be created: a
    /// broken test environment, not a test failure.
    pub async fn new() -> TempStore {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let path = dir.path().join("couchmail.db");
        let store = SqliteStore::open(&path).await.expect("open a SQLite store in a temporary directory");
        TempStore { store: Arc::new(store), path, _dir: dir }
    }
}
