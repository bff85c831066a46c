//! CouchMail's write path: typed, validated documents over any [`Store`].
//!
//! [`Directory`] is what the CLI and the REST API call to read and change
//! documents. On top of each document's own rules (`couchmail-model`) it
//! enforces the rules that involve other documents:
//!
//! - a mailbox, alias or domain alias needs an existing (real) domain;
//! - an alias never shadows a mailbox, and a mailbox is never created where an alias is;
//! - alias chains never loop, also through domain aliases and catch-alls;
//! - a Sieve script belongs to an existing mailbox, and `sieve_active` names one of its scripts;
//! - a listing of a domain's scope needs that (real) domain, one of a mailbox's scope that mailbox;
//! - removing a domain or mailbox that others hang off is refused, or cascades on request.
//!
//! These checks read the store itself, not the index, so that they see every
//! committed write; the index re-checks what it can when it applies a
//! change (two racing writers can still pass each other's checks).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use couchmail_directory::Directory;
//! use couchmail_model::{Document, Domain};
//! use couchmail_store::SqliteStore;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = SqliteStore::open(dir.path().join("couchmail.db")).await.unwrap();
//! let directory = Directory::new(Arc::new(store));
//! let domain = Domain {
//!     name: "example.com".parse().unwrap(),
//!     active: true,
//!     quota_default: None,
//!     max_mailboxes: None,
//!     policy: Default::default(),
//! };
//! directory.create(&Document::Domain(domain)).await.unwrap();
//! assert!(directory.get("domain:example.com").await.unwrap().is_some());
//! # });
//! ```
#![deny(missing_docs)]

mod error;
mod rules;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use couchmail_model::{DocKind, Document};
use couchmail_store::{ListOptions, Rev, Store};

pub use error::{Error, ErrorKind};

/// The result of a directory operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A document with the revision it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The typed document.
    pub doc: Document,
    /// Its revision, to hand back when updating or removing it.
    pub rev: Rev,
}

/// What to do with the documents that hang off one being removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cascade {
    /// Refuse the removal, naming what hangs off it.
    #[default]
    Refuse,
    /// Remove them too (and take a removed mailbox out of the aliases that target it).
    Remove,
}

/// Which documents to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    /// Of this kind.
    pub kind: DocKind,
    /// Only those that belong to this domain (for domains and domain aliases: the domain itself, or aliases of it;
    /// for listings: those of the domain's scope and of its mailboxes', global ones left out).
    pub domain: Option<couchmail_model::DomainName>,
    /// Only the Sieve scripts, tokens or listings of this mailbox.
    pub owner: Option<couchmail_model::Address>,
    /// Paging.
    pub page: ListOptions,
}

/// Checks a Sieve script the way the delivery agent will run it (in
/// production: Pigeonhole's `sievec`), before the script is stored.
pub trait ScriptCheck: Send + Sync + 'static {
    /// `Ok` if the script compiles; otherwise the compiler's messages, one a
    /// line, each starting `line N:` where a line is named.
    /// An `Err` of kind [`ErrorKind::Unavailable`] means the check could not run.
    fn check<'a>(&'a self, script: &'a str) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;
}

/// Typed, validated access to the documents of one store.
#[derive(Clone)]
pub struct Directory {
    store: Arc<dyn Store>,
    script_check: Option<Arc<dyn ScriptCheck>>,
}

impl Directory {
    /// A directory over `store`. Sieve scripts are checked only for their
    /// own rules until [`Directory::with_script_check`] adds a compiler.
    pub fn new(store: Arc<dyn Store>) -> Directory {
        Directory { store, script_check: None }
    }

    /// Checks every Sieve script written from now on with `check`.
    pub fn with_script_check(mut self, check: Arc<dyn ScriptCheck>) -> Directory {
        self.script_check = Some(check);
        self
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The document with `_id` `id`. A stored document that no longer
    /// validates is an [`ErrorKind::Corrupt`] error naming the field.
    pub async fn get(&self, id: &str) -> Result<Option<Entry>> {
        rules::get(self, id).await
    }

    /// Creates `doc`; a conflict if it exists.
    pub async fn create(&self, doc: &Document) -> Result<Rev> {
        rules::write(self, doc, None).await
    }

    /// Replaces the document at revision `rev` with `doc`.
    pub async fn update(&self, doc: &Document, rev: &Rev) -> Result<Rev> {
        rules::write(self, doc, Some(rev)).await
    }

    /// Removes document `id` (at revision `rev` when given, which guards
    /// against removing something changed meanwhile). Returns the `_id`s
    /// removed or changed, this one last.
    pub async fn remove(&self, id: &str, rev: Option<&Rev>, cascade: Cascade) -> Result<Vec<String>> {
        rules::remove(self, id, rev, cascade).await
    }

    /// The documents that match `filter`, in `_id` order. Documents that no
    /// longer validate are left out with a logged warning.
    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<Entry>> {
        rules::list(self, filter).await
    }
}
