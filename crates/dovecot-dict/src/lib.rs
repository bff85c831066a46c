//! A read-only Dovecot dict proxy server: it serves users' Sieve scripts to Pigeonhole.
//!
//! Dovecot's `proxy:` dict driver talks to a unix socket; Pigeonhole's dict storage
//! (`sieve = dict:proxy:/run/couchmail/dict:sieve;name=active`) uses it to read a user's active script.
//! This crate is that socket's server.
//! It answers from a [`DictLookup`] (couchmail's in-memory index, never the store),
//! and [`SieveDict`] maps Pigeonhole's keys onto the narrower [`SieveScripts`], so the binary only supplies data.
//!
//! The principal pieces follow mini-redis: [`line`](mod@line) (framing and tab-escaping over bytes),
//! [`Connection`] (socket plus read buffer), [`Request`] and [`Reply`] (typed lines),
//! [`run`] (listener, connection limit, shutdown) and [`Client`] (for tests and benchmarks).
//!
//! # Requests served
//!
//! After the hello (`H<major>\t<minor>\t<value type>\t<obsolete user>\t<dict name>`, majors 3 and 4, no reply):
//! lookup `L<key>\t<user>`, iterate `I<flags>\t<max rows>\t<path>\t<user>`,
//! and the transaction commands `B` (begin), `S` (set), `U` (unset), `A` (atomic increment), `T` (timestamp),
//! `C` and `D` (commit), `R` (rollback). Lines are LF-terminated; fields are TAB-separated and tab-escaped.
//!
//! # Replies
//!
//! - Lookup: `O<value>`, `N` (no such key), or `F<error>`.
//!   Dovecot treats `F` as a temporary failure, so a lookup that cannot be answered
//!   (index not ready, a panic in the lookup) defers delivery instead of skipping the user's filter.
//! - Iterate: `O<key>\t<value>` per row, then an empty line; or a single `F<error>`.
//! - Commit: `O<id>` for a transaction without writes; `F<id>\tdict is read-only; change Sieve scripts through couchmail`
//!   for one with writes. Asynchronous commits (`D`) get the same with an `A` prefix.
//! - Begin, set, unset, atomic increment, timestamp and rollback get no reply.
//! - A malformed lookup or iteration gets `F<error>`; any other malformed line, an unknown command,
//!   a line longer than the limit (64 KiB by default), a hello of another major, or a request before the hello
//!   is logged and the connection is closed, as Dovecot's own dict server does. Other connections are unaffected.
//!
//! # Security
//!
//! The peer is a local Dovecot process (lmtp, imap, managesieve, doveadm); the socket's mode (see [`bind`]) decides who
//! may connect, and each connection's pid and uid are logged. The server needs no privilege beyond creating the socket.
//! Nothing a peer sends can change stored data: every write is refused. Peer input never panics the server;
//! a panicking [`DictLookup`] is answered with a failure and the server keeps serving.
//! The number of connections, the line length, the idle time and the open transactions per connection are bounded
//! ([`ServerConfig`]).
//!
//! # Configuration
//!
//! [`ServerConfig`]: `max_connections` (256), `idle_timeout` (60 s), `max_line_length` (64 KiB),
//! `max_open_transactions` (16). The socket path and mode are the caller's; Dovecot must be able to connect,
//! so a mode of `0o660` with the socket's group set to Dovecot's is typical.
//! On the Dovecot side: `sieve = dict:proxy:<socket>:<dict name>;name=<active name>;bindir=~/.sieve-bin`,
//! with the same active name given to [`SieveDict::new`] (Pigeonhole asks for `default` when `name=` is absent).
//!
//! # Standards
//!
//! There is no RFC; the protocol is Dovecot's. Checked against Dovecot 2.3's `src/lib-dict/dict-client.c`,
//! `src/dict/dict-connection.c` and `src/dict/dict-commands.c`, Dovecot's "Dict Protocol" design page
//! (v3.2 from 2.3.17, v4 from 2.4, "otherwise compatible"), Pigeonhole 0.5's `src/lib-sieve/storage/dict/`,
//! and the lines Dovecot 2.3.19.1's `doveadm dict` and `sieve-test` actually send.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use couchmail_dovecot_dict::{Client, DictError, Hello, ServerConfig, SieveDict, SieveScripts};
//!
//! struct OneScript;
//!
//! impl SieveScripts for OneScript {
//!     fn active_script_id(&self, _user: &str) -> Result<Option<String>, DictError> {
//!         Ok(Some("sha256-1234".to_owned()))
//!     }
//!     fn script_id(&self, _user: &str, _name: &str) -> Result<Option<String>, DictError> {
//!         Ok(None)
//!     }
//!     fn script_text(&self, _user: &str, id: &str) -> Result<Option<String>, DictError> {
//!         Ok((id == "sha256-1234").then(|| "keep;".to_owned()))
//!     }
//! }
//!
//! # let runtime = tokio::runtime::Runtime::new().unwrap();
//! # runtime.block_on(async {
//! let dir = std::env::temp_dir().join(format!("couchmail-dict-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let socket = dir.join("dict");
//! let listener = couchmail_dovecot_dict::bind(&socket, 0o660).unwrap();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(couchmail_dovecot_dict::run(
//!     listener,
//!     Arc::new(SieveDict::new(OneScript, "active")),
//!     ServerConfig::default(),
//!     async move { let _ = stopped.await; },
//! ));
//!
//! let mut client = Client::connect(&socket, &Hello::new(3, "sieve")).await.unwrap();
//! let id = client.lookup("alice@example.com", "priv/sieve/name/active").await.unwrap().unwrap();
//! let script = client.lookup("alice@example.com", &format!("priv/sieve/data/{id}")).await.unwrap();
//! assert_eq!(script.as_deref(), Some("keep;"));
//!
//! drop(client);
//! stop.send(()).unwrap();
//! server.await.unwrap();
//! std::fs::remove_dir_all(&dir).unwrap();
//! # });
//! ```
#![deny(missing_docs)]

mod client;
mod connection;
mod error;
pub mod line;
mod lookup;
mod reply;
mod request;
mod server;
mod sieve;

pub use client::Client;
pub use connection::Connection;
pub use error::{Error, ErrorKind, ParseError, ParseErrorKind};
pub use lookup::{DictError, DictLookup};
pub use reply::Reply;
pub use request::{Command, Hello, IterateFlags, Request, SUPPORTED_MAJOR_VERSIONS};
pub use server::{READ_ONLY_MESSAGE, ServerConfig, bind, run};
pub use sieve::{
    DATA_PATH, DEFAULT_SCRIPT_NAME, NAME_PATH, SieveDict, SieveKey, SieveScripts, dict_escape, dict_unescape,
};
