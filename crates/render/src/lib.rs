//! CouchMail's Postfix and Dovecot configuration: a runtime layout in, configuration files out.
//!
//! A [`Stack`] says where everything of one couchmail installation lives
//! (the paths, ports and sockets of docs/runtime.md, the auth endpoint and
//! its secret, the vmail ids). [`render`] turns it into a [`Rendered`] set of
//! files, keyed by their path relative to [`Paths::config_dir`]:
//! `postfix/main.cf`, `postfix/master.cf`, `dovecot/dovecot.conf` and
//! `dovecot/auth.lua` (root:dovecot 0640: it holds the secret), and with
//! [`Stack::spam`] set, SpamAssassin's `spamassassin/local.cf` with the Sieve
//! scripts and wrappers under `dovecot/spam/` (docs/spam.md). [`Stack::postscreen`]
//! puts postscreen(8) with weighted DNSBLs in front of port 25 ([`Postscreen`]).
//!
//! The files follow the security baseline of DESIGN.md §6: STARTTLS on port
//! 25 without AUTH, AUTH only over TLS on 465 and 587 with the sender tied
//! to the login, no relay for anyone unauthenticated, unknown recipients
//! refused at RCPT, IMAP over implicit TLS only, TLS 1.2 and newer with
//! Mozilla's intermediate ciphers.
//!
//! Rendering is pure and deterministic; [`Rendered::write_to`] is the only
//! function that touches the file system.
//!
//! ```
//! use couchmail_render::{Outbound, Stack, render};
//!
//! let mut stack = Stack::dev("/srv/couchmail-dev");
//! stack.auth_endpoint.secret = "generated-by-couchmail-up".to_owned();
//! stack.outbound = Outbound::Error;
//! let rendered = render(&stack).unwrap();
//! let main_cf = &rendered.get("postfix/main.cf").unwrap().contents;
//! assert!(main_cf.contains("default_transport = error:outbound mail is disabled"));
//! assert_eq!(rendered.get("dovecot/auth.lua").unwrap().mode, 0o640);
//! ```
#![deny(missing_docs)]

mod check;
mod dovecot;
mod error;
mod lua;
mod postfix;
mod postscreen;
mod rendered;
mod spam;
mod stack;
mod text;
mod tls;
mod write;

pub use error::{Error, ErrorKind, WriteError};
pub use postscreen::{
    Cidr, DEFAULT_ALLOWLIST, DEFAULT_DNSBL_ALLOWLIST_THRESHOLD, DEFAULT_DNSBL_SITES, DEFAULT_DNSBL_THRESHOLD,
    DnsblSite, MAX_GREET_WAIT_SECS, ParsePostscreenError, Postscreen,
};
pub use rendered::{Rendered, RenderedFile, render};
pub use spam::{
    JUNK_MAILBOX, ParseSpamScoreError, SMTP_SCAN_USER, SPAM_FILTER_PROGRAM, SPAM_FILTER_SIEVE, SPAM_LEARN_HAM_SIEVE,
    SPAM_LEARN_PROGRAM, SPAM_LEARN_SPAM_SIEVE, SPAMASS_MILTER_USER, SPAMASSASSIN_LOCAL_CF, SmtpReject, Spam, SpamScore,
    TRASH_MAILBOX, spamd_user_name, user_dir, user_prefs,
};
pub use stack::{
    AuthCache, AuthEndpoint, DOVECOT_AUTH_LUA, DOVECOT_CONF, Listen, Outbound, POSTFIX_MAIN_CF, POSTFIX_MASTER_CF,
    Paths, Ports, Stack, VmailIds,
};
