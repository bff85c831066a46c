//! Integration tests of the dict server: raw-byte conversations over a unix socket, properties of the codec,
//! and, where Dovecot is installed, Dovecot's own `doveadm dict` and Pigeonhole's `sieve-test` as clients.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly on an unexpected error")]

mod dovecot_dict {
    pub mod conversations;
    pub mod properties;
    pub mod real_dovecot;
    pub mod support;
}
