//! ManageSieve (RFC 5804) for CouchMail: users upload, check, activate, rename and delete their Sieve scripts with a
//! ManageSieve client (Thunderbird's add-on, Roundcube's managesieve plugin, `sieve-connect`), and the scripts land
//! in the store as `sieve:<address>:<name>` documents with the mailbox's `sieve_active`, where Pigeonhole reads them
//! through the dict (Dovecot's own managesieved cannot write a dict).
//!
//! The crate is split as the other protocol crates are: `frame` ([`CommandDecoder`], a bounded incremental parser
//! of command lines with atoms, quoted strings and literals, also the fuzz target's entry), `response`
//! ([`Response`]), a connection that can switch to TLS, the `session` state machine, and `server` ([`run`] over
//! couchmail-wire-server's accept loop, [`ServerConfig`]). The session sees the rest of couchmail only through the
//! [`Backend`] trait: accounts and scripts, implemented by the binary over the index and the directory.
//!
//! # Requests served
//! `CAPABILITY`, `STARTTLS`, `AUTHENTICATE "PLAIN"` (initial response or continuation), `LISTSCRIPTS`,
//! `GETSCRIPT`, `PUTSCRIPT`, `CHECKSCRIPT`, `SETACTIVE` (`""` deactivates), `DELETESCRIPT`, `RENAMESCRIPT`,
//! `HAVESPACE`, `NOOP` (with a tag), `UNAUTHENTICATE`, `LOGOUT`.
//!
//! # Reply statuses
//! `OK`; `NO` with the response codes `NONEXISTENT`, `ALREADYEXISTS`, `ACTIVE`, `QUOTA/MAXSCRIPTS`,
//! `QUOTA/MAXSIZE` (also for an oversized literal, whose octets are read and discarded), `ENCRYPT-NEEDED`
//! (`AUTHENTICATE` before STARTTLS) and `TRYLATER` (store or index unavailable, or too many failed logins from one
//! address); `BYE` when the server closes (idle timeout, shutdown, too many bad commands or failed logins).
//! Malformed commands get `NO` and the session goes on.
//!
//! # Security
//! Peers are anyone on the network. Passwords are accepted only over TLS (SASL PLAIN is advertised only after
//! STARTTLS), verified by the [`Backend`] (argon2id in couchmail), never logged; failed logins wait
//! [`ServerConfig::auth_failure_delay`], end the connection after a few, and throttle their address. Input is
//! bounded: line length, literal size (the script size limit), words per line, idle and command timeouts, and a
//! connection limit. No privilege is needed beyond binding the port (4190 is unprivileged).
//!
//! # Configuration
//! [`ServerConfig`]; couchmail's `managesieve.*` keys fill it.
//!
//! # Standards
//! RFC 5804 (ManageSieve), RFC 4616 (SASL PLAIN), RFC 5228 (Sieve), RFC 8446/5246 (TLS).
//!
//! # Example
//! ```
//! use couchmail_managesieve::{CommandDecoder, Decoded, Word};
//!
//! let mut decoder = CommandDecoder::default();
//! decoder.extend(b"PUTSCRIPT \"vacation\" {5+}\r\nkeep;\r\n");
//! let Some(Decoded::Command(command)) = decoder.next_item() else { panic!("a whole command was given") };
//! assert_eq!(command.words[0], Word::Atom("PUTSCRIPT".into()));
//! assert_eq!(command.words[2], Word::String(b"keep;".to_vec()));
//! ```
#![deny(missing_docs)]

mod backend;
mod connection;
mod frame;
mod response;
mod server;
mod session;
mod tls;

use std::fmt;

pub use backend::{AuthOutcome, Backend, BackendError, ScriptEntry};
pub use frame::{
    Command, CommandDecoder, DEFAULT_MAX_LINE_LEN, DEFAULT_MAX_LITERAL_LEN, Decoded, Limits, Refusal, Word,
    encode_literal, encode_string,
};
pub use response::{Code, Response, Status};
pub use server::{AuthThrottle, PIGEONHOLE_EXTENSIONS, ServerConfig, run};
pub use tls::{TlsAcceptor, tls_acceptor};

/// A failure to set the server up (reading the TLS certificate, say).
#[derive(Debug)]
pub struct Error {
    message: String,
}

impl Error {
    fn new(message: impl Into<String>) -> Error {
        Error { message: message.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
