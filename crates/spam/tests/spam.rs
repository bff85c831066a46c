//! couchmail-spam with the real daemons: spamd started by the supervisor from `daemons()`, then the whole path
//! with Dovecot and Postfix from render's output (delivery-time filing, IMAP training, the SMTP-time milter, and
//! what happens when spamd is down), and a quick measurement of scan latency and spamd's memory.
//!
//! Needs root and the Debian packages listed in `tests/spam/support.rs`.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod spam {
    pub mod delivery;
    pub mod spamd;
    pub mod support;
}
