//! SpamAssassin in the couchmail stack: the pieces with I/O that `couchmail up` needs beside the rendered
//! configuration (docs/spam.md).
//!
//! Every message is scanned at delivery as its recipient, with that user's own bayes database and threshold, and
//! spam is filed into Junk before the user's own Sieve script runs; users train their own database by moving mail
//! into and out of Junk; optionally, Postfix refuses blatant spam at SMTP time. `couchmail-render` writes the
//! configuration ([`Stack::spam`](couchmail_render::Stack::spam)) and `couchmail-supervisor` runs the daemons; this
//! crate holds the rest:
//!
//! - [`prepare`]: the directories, the copied `*.pre` files and the compiled global Sieve scripts the rendered files
//!   expect; [`daemons`] and [`leftovers`] for the supervisor; [`wait_until_ready`].
//! - [`write_user_prefs`] and [`remove_user_data`]: per-user thresholds from the store, and cleaning up after a
//!   mailbox that is deleted.
//! - [`SpamdClient`]: `PING`, `CHECK` and `TELL` over spamd's socket, with the same user names the wrappers use.
//!
//! ```no_run
//! use std::time::Duration;
//! use couchmail_render::{Spam, SpamScore, Stack, render};
//!
//! # async fn up() -> Result<(), Box<dyn std::error::Error>> {
//! let mut stack = Stack::dev("/srv/couchmail-dev");
//! stack.auth_endpoint.secret = "generated-by-couchmail-up".to_owned();
//! stack.spam = Some(Spam::new(&stack.paths).with_smtp_reject(&stack.paths, SpamScore::from_tenths(150)));
//! render(&stack)?.write_to(&stack.paths.config_dir)?;
//! couchmail_spam::prepare(&stack).await?;
//! let specs = couchmail_spam::daemons(&stack); // start these before Postfix and Dovecot
//! # drop(specs);
//! couchmail_spam::wait_until_ready(&stack, Duration::from_secs(60)).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Security
//! [`prepare`] and [`write_user_prefs`] need root (they set owners). spamd trusts the user name a client sends and
//! lets clients train: its socket is open to vmail (Dovecot's mail processes) and the milter's group only.
#![deny(missing_docs)]

mod client;
mod error;
mod prefs;
mod up;

pub use client::{Learned, MessageClass, SpamdClient, Verdict};
pub use error::{Error, ErrorKind};
pub use prefs::{remove_user_data, write_user_prefs};
pub use up::{SYSTEM_SITE_CONFIG_DIR, copy_pre_files, daemons, leftovers, prepare, wait_until_ready};
