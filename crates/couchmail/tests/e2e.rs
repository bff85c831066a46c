//! The end-to-end proof of issue #3: `couchmail up` with real Postfix and
//! Dovecot on 127.0.0.1, driven over SMTP, IMAP, the CLI and the REST API
//! by couchmail-testkit's harness and clients.
//!
//! Most tests share one stack (starting Postfix and Dovecot costs seconds)
//! and keep apart by using a domain of their own; the tests that stop
//! couchmail start their own stack. Every wait is bounded, and every
//! failure message carries the tails of couchmail's, Postfix's and
//! Dovecot's logs.
//!
//! Needs root and Debian's Postfix and Dovecot packages (CI has both). Off
//! CI, without them, each test prints a note and returns.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly on an unexpected error")]

mod e2e {
    pub mod bad_input;
    pub mod browser;
    pub mod couchdb;
    pub mod dashboard;
    pub mod delivery;
    pub mod faults;
    pub mod imap;
    pub mod live_changes;
    pub mod managesieve;
    pub mod outage;
    pub mod policy;
    pub mod postscreen;
    pub mod refusals;
    pub mod relay;
    pub mod sieve;
    pub mod spam;
    pub mod submission;
    pub mod support;
    pub mod tls;
}
