//! Greylisting for CouchMail: a first delivery attempt from an unknown (client network, sender, recipient) triplet
//! is deferred, and a retry after a delay passes and is remembered, because real mail servers retry and most spam
//! engines do not.
//!
//! The engine is independent of Postfix and of couchmail's store: the policy service turns a Postfix request into
//! an [`Attempt`], asks [`Greylist::check`], and turns the [`Verdict`] into an action
//! (`defer_if_permit 4.7.1 ...` for [`Verdict::Defer`]). What is never greylisted by couchmail's own rules
//! (SASL-authenticated clients, trusted networks, per-domain opt-out) is for the caller to decide before asking;
//! the static [`Allowlist`] of the [`GreylistConfig`] is checked here.
//!
//! Overview: [`Greylist`] (the engine over its own SQLite state file), [`GreylistConfig`] and [`Allowlist`] (the
//! settings), [`Attempt`] and [`Triplet`] (what is decided on, and how it is normalised, see [`normalize_sender`]),
//! [`Verdict`] and [`PassReason`] (the answer), [`Clock`] with [`SystemClock`] and [`ManualClock`] (time, injected
//! so that tests do not sleep). Client networks are `couchmail_model::IpNetwork`s;
//! [`GreylistConfig::client_network`] groups a client into its /24 or /64.
//!
//! ```
//! use std::time::Duration;
//!
//! use couchmail_greylist::{Attempt, Greylist, GreylistConfig, Verdict};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let greylist = Greylist::open(dir.path().join("greylist.db"), GreylistConfig::default()).unwrap();
//! let attempt = Attempt {
//!     client_address: "2001:db8:1:2::25".parse().unwrap(),
//!     sender: "bob@example.net",
//!     recipient: "alice@example.com",
//! };
//! assert_eq!(greylist.check(&attempt).unwrap(), Verdict::Defer { retry_after: Duration::from_secs(300) });
//! // Another address of the same /64 is the same client network, so the same triplet.
//! let same_network = Attempt { client_address: "2001:db8:1:2::26".parse().unwrap(), ..attempt };
//! assert!(matches!(greylist.check(&same_network).unwrap(), Verdict::Defer { .. }));
//! assert_eq!(greylist.counts().unwrap().n_pending, 1);
//! ```
//!
//! # State
//!
//! One SQLite file of the engine's own (never the store: greylisting state is derived, disposable, and written on
//! every new triplet), created with mode 0600 because it lists who mails whom, in WAL mode with
//! `synchronous=NORMAL`, so it survives restarts, and a power cut at worst greylists a few senders again.
//! It is bounded: pending triplets are purged when their retry window closes, passed triplets and client networks
//! [`GreylistConfig::pass_expiry`] after they were last seen, in steps of at most 10 000 rows run from
//! [`Greylist::check`] every [`GreylistConfig::purge_interval`]; and [`GreylistConfig::max_triplets`] caps the rows,
//! evicting the oldest (pending ones first) so that a flood of unique triplets cannot fill the disk.
//! Each sender and recipient is cut to [`MAX_PART_LEN`] bytes, so a row stays small.
#![deny(missing_docs)]

mod clock;
mod config;
mod error;
mod greylist;
mod state;
mod triplet;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Allowlist, GreylistConfig};
pub use error::{Error, ErrorKind};
pub use greylist::{Greylist, PassReason, PurgeStats, Verdict};
pub use state::Counts;
pub use triplet::{Attempt, MAX_PART_LEN, NULL_SENDER, Triplet, normalize_sender};
