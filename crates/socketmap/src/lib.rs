//! Postfix socketmap server (and client) for CouchMail: Postfix asks couchmail which domains, mailboxes, aliases and
//! sender logins exist, over a unix socket, and couchmail answers from memory.
//!
//! Postfix reaches it as a lookup table `socketmap:unix:/run/couchmail/socketmap:NAME`, where `NAME` picks the map.
//! The crate is protocol only: answers come from a [`Lookup`], a narrow trait that the `couchmail` binary implements
//! over its in-memory index; the crate knows no map names and no backend.
//!
//! Overview: [`run`] serves a [`Listener`] (bound with [`Listener::bind_unix`] or [`Listener::bind_tcp`]) under a
//! [`ServerConfig`]; each request is a [`Request`], answered with a [`Reply`] through [`Request::answer`].
//! The codec is public and works on byte slices, so it can be fuzzed on its own: [`parse_frame`], [`encode_frame`],
//! [`FrameDecoder`], [`Request::parse`] and [`Reply::parse`].
//! [`Client`] is a small client for tests, benchmarks and `couchmail check`.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//!
//! use couchmail_socketmap::{Client, Listener, Lookup, Reply, ServerConfig};
//!
//! struct Mailboxes;
//!
//! impl Lookup for Mailboxes {
//!     fn lookup(&self, map: &str, key: &str) -> Reply {
//!         match (map, key) {
//!             ("mailboxes", "alice@example.com") => Reply::ok("alice@example.com"),
//!             ("mailboxes", _) => Reply::NotFound,
//!             _ => Reply::perm(format!("unknown map {map}")),
//!         }
//!     }
//! }
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("socketmap");
//! let listener = Listener::bind_unix(&path, 0o660).await.unwrap();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(couchmail_socketmap::run(listener, Arc::new(Mailboxes), ServerConfig::default(), async {
//!     let _ = stopped.await;
//! }));
//!
//! let mut client = Client::connect_unix(&path).await.unwrap();
//! assert_eq!(client.lookup("mailboxes", "alice@example.com").await.unwrap(), Reply::ok("alice@example.com"));
//! assert_eq!(client.lookup("mailboxes", "bob@example.com").await.unwrap(), Reply::NotFound);
//! drop(client);
//! stop.send(()).unwrap();
//! assert_eq!(server.await.unwrap().n_requests, 2);
//! # });
//! ```
//!
//! # Requests served
//!
//! One request per netstring, `NAME KEY`, split at the first space (socketmap_table(5), REQUEST FORMAT); Postfix
//! keeps the connection open and sends many, and may pipeline them.
//! A key or map name that is not UTF-8, or an empty key, is answered `NOTFOUND ` without asking the [`Lookup`]: no
//! map of couchmail's can hold it.
//!
//! # Replies
//!
//! - `OK <data>`: found.
//! - `NOTFOUND `: not found (with the trailing space).
//! - `TEMP <reason>`: the data is not available now (for instance the index is not built yet), the lookup
//!   panicked (`TEMP internal error`), or the reply would exceed Postfix's 100 000-byte limit
//!   (`TEMP reply too large`). Postfix defers the mail; nothing bounces.
//! - `TIMEOUT <reason>`: like `TEMP`, for a lookup that ran out of time.
//! - `PERM <reason>`: the request is wrong in itself (no space in it, an unknown map). Never an answer about data.
//!
//! A request that breaks the netstring framing (bad length, missing `:` or `,`, longer than
//! [`ServerConfig::max_request_len`]) gets no reply: the connection is closed, since a netstring stream cannot be
//! resynchronised, and the peer is logged. Other connections are not affected.
//!
//! # Security
//!
//! Socketmap has no authentication (socketmap_table(5), SECURITY): whoever can connect can read every map.
//! Serve on a unix socket whose mode (for instance `0o660`, group `postfix`) and directory (`/run/couchmail`) admit
//! only Postfix; use TCP only on a private address, when Postfix runs on another machine.
//! The server needs no privilege beyond creating its socket; peers cannot make it allocate more than
//! [`ServerConfig::max_request_len`] plus one read per connection, nor hold more than
//! [`ServerConfig::max_connections`] connections; peer input never panics it.
//! Unix peers are logged by uid and pid, TCP peers by address.
//!
//! # Configuration
//!
//! [`ServerConfig`]: `max_connections` (1024; over it, new connections wait in the listen queue), `max_request_len`
//! (10 000 bytes), `idle_timeout` (60 s between requests, then a silent close), `request_timeout` (10 s for the
//! rest of a request once begun, and for writing a reply).
//! The socket path and mode are given to [`Listener::bind_unix`].
//! On the Postfix side, for example: `virtual_mailbox_domains = socketmap:unix:/run/couchmail/socketmap:domains`.
//!
//! # Standards
//!
//! - Postfix socketmap_table(5): the protocol, the reply statuses, the 100 000-byte reply limit.
//! - D. J. Bernstein, netstrings, <https://cr.yp.to/proto/netstrings.txt>: the framing.
#![deny(missing_docs)]

mod client;
mod connection;
mod error;
mod frame;
mod reply;
mod request;
mod server;

pub use client::Client;
pub use error::{Error, ErrorKind};
pub use frame::{DEFAULT_MAX_REQUEST_LEN, FrameDecoder, FrameError, MAX_REPLY_LEN, encode_frame, parse_frame};
pub use reply::{Reply, ReplyError};
pub use request::{Lookup, Request, RequestError};
pub use server::{Listener, ServerConfig, ServerStats, run};
