//! CouchMail's document store: one trait with CouchDB's semantics, and the
//! embedded SQLite backend.
//!
//! A store holds JSON documents keyed by `_id` (a [`RawDoc`]).
//! Every write names the revision it replaces, and a stale one is a
//! [`ErrorKind::Conflict`], never a silent overwrite.
//! Deletes leave tombstones so that the changes feed can report them.
//! The changes feed ([`Store::changes`]) lists, after an opaque [`Seq`], each
//! changed document once at its latest revision, in sequence order — what
//! CouchDB's `_changes` does — and can wait for the next change (long-poll).
//!
//! The store knows nothing of mail: typing and validation are
//! `couchmail-model`'s, referential rules `couchmail-directory`'s.
//!
//! Backends: [`SqliteStore`] (embedded, default) and [`CouchStore`] (Apache CouchDB 3.x). The `conformance` module
//! (feature `conformance`) is the test suite every backend must pass.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use couchmail_store::{SqliteStore, Store};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = SqliteStore::open(dir.path().join("couchmail.db")).await.unwrap();
//! let body = serde_json::json!({ "type": "domain", "active": true });
//! let rev = store.put("domain:example.com", None, body.as_object().unwrap()).await.unwrap();
//! let doc = store.get("domain:example.com").await.unwrap().unwrap();
//! assert_eq!(doc.rev, rev);
//! # });
//! ```
#![deny(missing_docs)]

mod couch;
mod error;
mod revision;
mod sqlite;
mod types;
mod validate;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};

pub use couch::{CouchConfig, CouchCredentials, CouchSetup, CouchStore, MangoIndex};
pub use error::{Error, ErrorKind};
pub use sqlite::SqliteStore;
pub use types::{Change, Changes, Conflict, ListOptions, RawDoc, Rev, Seq};

/// A document body: the JSON object without `_id` and `_rev`.
pub type Body = Map<String, Value>;

/// The result of a store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A document store with CouchDB's semantics.
///
/// All methods are cancel-safe: dropping a future either leaves the write
/// done or not done, never half done.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The live document with `id`; `None` if it never existed or is deleted.
    async fn get(&self, id: &str) -> Result<Option<RawDoc>>;

    /// Writes `body` as document `id`.
    ///
    /// `rev` is the revision being replaced: `None` creates the document (or
    /// re-creates a deleted one) and is a conflict if a live one exists; a
    /// revision that is not the current one is a conflict.
    /// `_id`, `_rev` and other `_`-prefixed keys in `body` are refused.
    /// Returns the new revision.
    async fn put(&self, id: &str, rev: Option<&Rev>, body: &Body) -> Result<Rev>;

    /// Deletes document `id` at revision `rev`, leaving a tombstone.
    /// A stale `rev` is a conflict; a missing or deleted document is not found.
    async fn delete(&self, id: &str, rev: &Rev) -> Result<Rev>;

    /// Live documents whose `_id` starts with `prefix`, in `_id` order.
    async fn list(&self, prefix: &str, options: &ListOptions) -> Result<Vec<RawDoc>>;

    /// Changes after `since` (`None`: from the beginning), at most `limit`,
    /// each document once at its latest revision, in sequence order.
    /// When there are none, waits up to `wait` for one before answering empty.
    async fn changes(&self, since: Option<&Seq>, limit: usize, wait: Duration) -> Result<Changes>;

    /// Documents whose replicas disagree: replication accepted concurrent edits made at two
    /// sites, and the store picked a winner that nobody chose. In `_id` order.
    ///
    /// A backend without replication never has any.
    async fn conflicts(&self) -> Result<Vec<Conflict>> {
        Ok(Vec::new())
    }

    /// Ends the conflict on `id` by keeping revision `keep`, which may be the current winner
    /// or one of the losers; every other live revision is deleted. When a loser is kept, its
    /// body is written on top of the winner, so the kept content becomes the document on
    /// every replica once replication carries the change. Returns the document's new
    /// revision.
    ///
    /// `NotFound` when `id` has no conflict or `keep` is not one of its live revisions.
    async fn resolve_conflict(&self, id: &str, keep: &Rev) -> Result<Rev> {
        let _ = keep;
        Err(Error::new(ErrorKind::NotFound, format!("document {id:?} has no conflicting revisions")))
    }

    /// A short description for logs and `couchmail status`, without secrets.
    fn describe(&self) -> String;
}

/// A shared store is a store, so `Arc<SqliteStore>` and `Arc<dyn Store>` can be passed
/// wherever a `Store` is expected.
#[async_trait]
impl<S: Store + ?Sized> Store for Arc<S> {
    async fn get(&self, id: &str) -> Result<Option<RawDoc>> {
        (**self).get(id).await
    }

    async fn put(&self, id: &str, rev: Option<&Rev>, body: &Body) -> Result<Rev> {
        (**self).put(id, rev, body).await
    }

    async fn delete(&self, id: &str, rev: &Rev) -> Result<Rev> {
        (**self).delete(id, rev).await
    }

    async fn list(&self, prefix: &str, options: &ListOptions) -> Result<Vec<RawDoc>> {
        (**self).list(prefix, options).await
    }

    async fn changes(&self, since: Option<&Seq>, limit: usize, wait: Duration) -> Result<Changes> {
        (**self).changes(since, limit, wait).await
    }

    async fn conflicts(&self) -> Result<Vec<Conflict>> {
        (**self).conflicts().await
    }

    async fn resolve_conflict(&self, id: &str, keep: &Rev) -> Result<Rev> {
        (**self).resolve_conflict(id, keep).await
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}
