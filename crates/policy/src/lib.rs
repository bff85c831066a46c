//! CouchMail's Postfix policy decisions (issue #5): blocklists and allowlists by scope, greylisting with
//! per-domain and per-mailbox opt-outs, and outbound rate limits per SASL user.
//!
//! [`Policy`] implements `couchmail_postfix_policy::PolicyHandler`, so the protocol crate's server serves it on a
//! unix socket that Postfix's `check_policy_service` asks. It decides from the in-memory index (listings, opt-outs,
//! per-mailbox limits: `couchmail_index::Snapshot::find_listing` and friends), the greylisting engine
//! (`couchmail_greylist::Greylist`, its own SQLite state) and a [`RateLimiter`] (sliding hourly windows, persisted
//! in SQLite). [`PolicyConfig`] holds every default; [`Policy`] documents the order of the decisions.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//!
//! use couchmail_index::{Index, Snapshot};
//! use couchmail_policy::{Policy, PolicyConfig};
//! use couchmail_postfix_policy::{Client, Listener, PolicyRequest, ProtocolState, ServerConfig};
//!
//! let doc = |id: &str, body: serde_json::Value| couchmail_model::Document::from_stored(id, body.as_object().unwrap()).unwrap();
//! let index = Arc::new(Index::from_snapshot(Snapshot::from_documents([
//!     doc("domain:example.com", serde_json::json!({ "type": "domain" })),
//!     doc("mailbox:alice@example.com", serde_json::json!({ "type": "mailbox" })),
//!     doc("listing:mailbox:alice@example.com:block:sender:spam@bad.example", serde_json::json!({ "type": "listing" })),
//! ])));
//! let dir = tempfile::tempdir().unwrap();
//! let policy = Policy::open(PolicyConfig::new(dir.path()), index).unwrap();
//!
//! let socket = dir.path().join("policy");
//! let listener = Listener::bind_unix(&socket, 0o660).await.unwrap();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(couchmail_postfix_policy::run(listener, Arc::new(policy), ServerConfig::default(), async {
//!     let _ = stopped.await;
//! }));
//!
//! let mut client = Client::connect_unix(&socket).await.unwrap();
//! let mut request = PolicyRequest {
//!     protocol_state: Some(ProtocolState::Rcpt),
//!     client_address: Some("192.0.2.25".into()),
//!     sender: Some("spam@bad.example".into()),
//!     recipient: Some("alice@example.com".into()),
//!     ..PolicyRequest::default()
//! };
//! let refused = client.ask(&request).await.unwrap().to_string();
//! assert_eq!(refused, "554 5.7.1 Sender address <spam@bad.example> is on the recipient's blocklist");
//! request.sender = Some("friend@good.example".into());
//! assert!(client.ask(&request).await.unwrap().to_string().starts_with("defer_if_permit 4.7.1 Greylisted"));
//! drop(client);
//! stop.send(()).unwrap();
//! server.await.unwrap();
//! # });
//! ```
//!
//! # Requests served
//!
//! `protocol_state=RCPT`: the decisions of [`Policy`]; `END-OF-MESSAGE`: counting a logged-in user's message;
//! anything else: `dunno`.
//!
//! # Replies
//!
//! `554 5.7.1 <what> is on <whose> blocklist`; `defer_if_permit 4.7.1 Greylisted, please try again in N seconds`;
//! `450 4.7.1 Sending limit reached: ...`; `defer_if_permit 4.3.0 Mail system starting, ...` before the index is
//! ready; `dunno` otherwise, and on any failure of our own.
//!
//! # Security
//!
//! Peers: whoever can connect to the socket learns the answers, block reasons included; serve it to Postfix only
//! (mode 0660, group postfix). The state files list who mails whom and who sends how much: created 0600. Refusal
//! texts carry only what the client sent (its address, its sender) and which scope's list refused; never a
//! listing's note, another user's address or the mailbox an alias leads to.
//!
//! # Configuration
//!
//! [`PolicyConfig`]: `greylisting` (on), `greylist` (the engine's delay, window, expiry, auto-allow, allowlists),
//! `greylist_state` (`<data>/greylist.db`), `trusted_networks` (none), `messages_per_hour` (200),
//! `recipients_per_hour` (1000), `rate_window` (1 h), `rate_limit_state` (`<data>/ratelimit.db`).
//! On the Postfix side (docs/policy.md): `check_policy_service unix:<run>/policy` in `smtpd_recipient_restrictions`
//! of port 25 and of the submission ports, after `reject_unlisted_recipient` and before any `permit_*`, and in
//! `smtpd_end_of_data_restrictions` of the submission ports, for counting.
//!
//! # Standards
//!
//! Postfix SMTPD_POLICY_README; RFC 3463 for the enhanced status codes (5.7.1 delivery not authorized, 4.7.1
//! try later, 4.3.0 mail system status).
#![deny(missing_docs)]

mod config;
mod error;
mod handler;
mod rate_limit;

pub use config::{GREYLIST_STATE_FILE, PolicyConfig, RATE_LIMIT_STATE_FILE};
pub use error::{Error, ErrorKind};
pub use handler::{NOT_READY_TEXT, Policy};
pub use rate_limit::{Counted, Limits, PURGE_EVERY, RateLimiter, RateVerdict, Usage};
