//! CouchMail's in-memory index: what the mail daemons ask, answered
//! without touching the store.
//!
//! A [`Snapshot`] is an immutable view built from the store's documents:
//! domains, alias domains, mailboxes, aliases and catch-alls, Sieve scripts
//! and API tokens, with the lookups Postfix and Dovecot need
//! ([`Snapshot::resolve_recipient`], [`Snapshot::deliverable_mailbox`],
//! [`Snapshot::sender_logins`], [`Snapshot::active_sieve`], …), and what the
//! policy service asks at RCPT time: whose blocklists and settings apply to a
//! recipient ([`Snapshot::recipient_scope`], [`RecipientScope`]), the listing
//! a delivery attempt matches ([`Snapshot::find_listing`]: mailbox over domain
//! over global, allow over block within one), and the policy settings a
//! mailbox inherits from its domain ([`Snapshot::mailbox_policy`]).
//! The [`Index`] holds the current snapshot for every server to share; the
//! follower ([`follow`]) reads the store's changes feed, applies each batch
//! to a copy of the snapshot (persistent maps: O(1) to copy, O(log n) to
//! change) and swaps it in atomically, then tells [`Index::subscribe_changes`]
//! receivers which documents the batch changed (for caches to flush).
//! Until the feed has been drained once the snapshot is not ready, and the
//! daemons answer with a temporary failure (DESIGN.md §1).
//!
//! A restart need not read the whole feed again: with [`FollowConfig::checkpoint`]
//! set (conventionally `<data_dir>/`[`CHECKPOINT_FILE_NAME`]), the follower saves the
//! ready snapshot, its last sequence and the store's identity to that file, and the next
//! start fills the index from it and resumes the feed from that sequence. A checkpoint
//! that cannot be trusted is discarded and the index rebuilt; [`Index::health`] shows the
//! last checkpoint saved and any failure to save one.
//!
//! A document that fails validation (someone wrote to the store directly)
//! is skipped and logged; its last valid version stays in the index, so a
//! bad edit cannot take a working mailbox away.
//!
//! ```
//! use couchmail_index::Snapshot;
//! use couchmail_model::Document;
//!
//! let doc = |id: &str, body: serde_json::Value| Document::from_stored(id, body.as_object().unwrap()).unwrap();
//! let snapshot = Snapshot::from_documents([
//!     doc("domain:example.com", serde_json::json!({ "type": "domain" })),
//!     doc("mailbox:alice@example.com", serde_json::json!({ "type": "mailbox" })),
//!     doc("alias:@example.com", serde_json::json!({ "type": "alias", "targets": ["alice@example.com"] })),
//! ]);
//! // A mailbox maps to itself, so the catch-all does not swallow it; the rest goes to the catch-all.
//! assert_eq!(snapshot.virtual_alias("alice+news@example.com"), Some(vec!["alice+news@example.com".to_owned()]));
//! assert_eq!(snapshot.virtual_alias("nobody@example.com"), Some(vec!["alice@example.com".to_owned()]));
//! assert_eq!(snapshot.sender_logins("alice@example.com"), ["alice@example.com"]);
//! ```
#![deny(missing_docs)]

mod checkpoint;
mod entry;
mod follow;
mod index;
mod policy;
mod snapshot;

pub use checkpoint::CHECKPOINT_FILE_NAME;
pub use entry::{AliasDomainEntry, AliasEntry, DomainEntry, ListingEntry, MailboxEntry, SieveEntry};
pub use follow::{FollowConfig, follow, follow_with};
pub use index::{CHANGES_CAPACITY, Health, Index, RECENT_SKIPPED_CAPACITY};
pub use policy::RecipientScope;
pub use snapshot::{Counts, MAX_ALIAS_DEPTH, MAX_ALIAS_VISITS, Recipient, SkippedDocument, Snapshot};
