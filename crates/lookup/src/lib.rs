//! The adapters that let Postfix and Dovecot ask couchmail's in-memory index.
//!
//! Each protocol crate defines a narrow trait and knows nothing of the index;
//! this crate implements those traits over an [`Index`](couchmail_index::Index),
//! so the binary, the tests and the benchmarks share one set of answers.
//!
//! - [`Maps`]: Postfix's lookup tables (`domains`, `alias-domains`, `mailboxes`,
//!   `aliases`, `senders`) for the socketmap server ([`couchmail_socketmap::Lookup`]).
//! - [`IndexSieve`]: users' Sieve scripts for Pigeonhole's dict storage
//!   ([`couchmail_dovecot_dict::SieveScripts`], served through `SieveDict`).
//! - [`Accounts`]: Dovecot's passdb, userdb and user iteration
//!   ([`couchmail_dovecot_auth::AuthLookup`]), with homes laid out by [`MailLayout`].
//! - [`users_to_flush`]: which of Dovecot's cached auth answers a batch of
//!   changed documents (from `Index::subscribe_changes`) makes stale, as a [`Flush`].
//!
//! Every adapter answers a temporary failure while the index is not ready,
//! so mail is deferred and logins fail temporarily, never for good.
//!
//! ```
//! use std::sync::Arc;
//!
//! use couchmail_index::{Index, Snapshot};
//! use couchmail_lookup::Maps;
//! use couchmail_model::Document;
//! use couchmail_socketmap::{Lookup, Reply};
//!
//! let doc = |id: &str, body: serde_json::Value| Document::from_stored(id, body.as_object().unwrap()).unwrap();
//! let index = Arc::new(Index::from_snapshot(Snapshot::from_documents([
//!     doc("domain:example.com", serde_json::json!({ "type": "domain" })),
//!     doc("mailbox:alice@example.com", serde_json::json!({ "type": "mailbox" })),
//!     doc("alias:@example.com", serde_json::json!({ "type": "alias", "targets": ["alice@example.com"] })),
//! ])));
//! let maps = Maps::new(index);
//! assert_eq!(maps.lookup("aliases", "alice+news@example.com"), Reply::ok("alice+news@example.com"));
//! assert_eq!(maps.lookup("aliases", "nobody@example.com"), Reply::ok("alice@example.com"));
//! assert_eq!(maps.lookup("mailboxes", "alice+news@example.com"), Reply::ok("alice+news@example.com"));
//! ```
#![deny(missing_docs)]

mod accounts;
mod flush;
mod maps;
mod sieve;

pub use accounts::{Accounts, MailLayout};
pub use flush::{Flush, users_to_flush};
pub use maps::{MAP_NAMES, Maps, NOT_READY};
pub use sieve::IndexSieve;
