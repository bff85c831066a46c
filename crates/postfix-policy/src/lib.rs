//! Postfix policy delegation server (and client) for CouchMail: Postfix's smtpd asks couchmail, at each SMTP stage,
//! whether to accept, defer or reject, over a unix socket, and couchmail answers with an access(5) action.
//!
//! Postfix reaches it through `check_policy_service unix:/run/couchmail/policy` in a restriction list.
//! The crate is protocol only: decisions come from a [`PolicyHandler`], a narrow trait that the `couchmail` binary
//! implements (greylisting, blocklists, rate limits); the crate knows no policy and no backend.
//!
//! Overview: [`run`] serves a [`Listener`] (bound with [`Listener::bind_unix`] or [`Listener::bind_tcp`]) under a
//! [`ServerConfig`]; each request is a [`PolicyRequest`], answered with an [`Action`].
//! The codec is public and works on byte slices, so it can be fuzzed on its own: [`parse_attributes`],
//! [`AttributesDecoder`], [`Attributes`], [`PolicyRequest::from_attributes`], [`PolicyRequest::to_attributes`],
//! [`Action::parse`] and [`Action::encode`].
//! [`Client`] is a small client for tests, load generators and `couchmail check`.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//!
//! use couchmail_postfix_policy::{Action, Client, Listener, PolicyHandler, PolicyRequest, ProtocolState, ServerConfig};
//!
//! struct Greylister;
//!
//! impl PolicyHandler for Greylister {
//!     async fn decide(&self, request: &PolicyRequest) -> Action {
//!         match request.protocol_state {
//!             Some(ProtocolState::Rcpt) if request.sasl_login().is_none() => {
//!                 Action::DeferIfPermit("4.7.1 Greylisted, try again in 300 seconds".into())
//!             }
//!             _ => Action::Dunno,
//!         }
//!     }
//! }
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("policy");
//! let listener = Listener::bind_unix(&path, 0o660).await.unwrap();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(couchmail_postfix_policy::run(listener, Arc::new(Greylister), ServerConfig::default(), async {
//!     let _ = stopped.await;
//! }));
//!
//! let mut client = Client::connect_unix(&path).await.unwrap();
//! let mut request = PolicyRequest { protocol_state: Some(ProtocolState::Rcpt), ..PolicyRequest::default() };
//! assert_eq!(client.ask(&request).await.unwrap().to_string(), "defer_if_permit 4.7.1 Greylisted, try again in 300 seconds");
//! request.sasl_username = Some("alice@example.com".into());
//! assert_eq!(client.ask(&request).await.unwrap(), Action::Dunno);
//! drop(client);
//! stop.send(()).unwrap();
//! assert_eq!(server.await.unwrap().n_requests, 2);
//! # });
//! ```
//!
//! # Requests served
//!
//! One request per attribute list: `name=value` lines ending with an empty line, with `request=smtpd_access_policy`
//! (SMTPD_POLICY_README, "Protocol description"). Postfix keeps the connection open and sends many; pipelined
//! requests are answered in order. See [`parse_attributes`] for exactly what the codec accepts (CRLF line ends,
//! values that are not UTF-8) and [`PolicyRequest`] for the attributes.
//!
//! # Replies
//!
//! `action=<action>` and an empty line, where the action is what the [`PolicyHandler`] decided ([`Action`]: `ok`,
//! `dunno`, `reject`, `defer`, `defer_if_permit`, `defer_if_reject`, `4NN`/`5NN text`, `prepend`, ...), or
//! `defer_if_permit Service temporarily unavailable` when the handler panicked or took longer than
//! [`ServerConfig::decision_timeout`].
//!
//! # Malformed input
//!
//! Anything that is not a policy request within the limits gets no reply at all: the connection is closed, the
//! peer is logged, and requests before it on the same connection are still answered. That covers a line without
//! `=`, an empty or non-printable name, a name sent twice, a line, list or attribute count over
//! [`ServerConfig::limits`], a missing or unknown `request`, a `size` or `recipient_count` that is not a number,
//! and a request that stalls past [`ServerConfig::request_timeout`].
//! Closing is the safe answer because no action could be right: the input did not come from Postfix's policy
//! client, and an `action=` line would be read as a decision about some mail. Were it Postfix, it would log the
//! failure, retry on a new connection, and then apply `smtpd_policy_service_default_action` (`451 4.3.5`), a
//! temporary failure: nothing bounces. Other connections are not affected.
//! Missing attributes are not malformed: a request with only `request=smtpd_access_policy` reaches the handler,
//! which answers `dunno` when it lacks what it needs.
//!
//! # Security
//!
//! The protocol has no authentication: whoever can connect can ask, and learn the policy's answers.
//! Serve on a unix socket whose mode (for instance `0o660`, group `postfix`) and directory (`/run/couchmail`) admit
//! only Postfix; use TCP only for tests or on a private address.
//! The server needs no privilege beyond creating its socket; a peer cannot make it buffer more than
//! [`Limits::max_list_len`] plus one read per connection, nor hold more than [`ServerConfig::max_connections`]
//! connections; peer input never panics it, and a handler panic costs one connection.
//! Unix peers are logged by uid and pid, TCP peers by address.
//!
//! # Configuration
//!
//! [`ServerConfig`]: `max_connections` (1024; over it, new connections wait in the listen queue), `limits`
//! (lines of 4096 bytes, 100 attributes, 64 KiB per request), `idle_timeout` (330 s between requests, just over
//! Postfix's `smtpd_policy_service_max_idle`), `request_timeout` (10 s for the rest of a request once begun, and
//! for writing a reply), `decision_timeout` (20 s).
//! On the Postfix side: `smtpd_recipient_restrictions = ..., reject_unauth_destination, check_policy_service
//! unix:/run/couchmail/policy, ...` and, for a clear log line when couchmail is down,
//! `smtpd_policy_service_default_action = 451 4.3.5 Policy service unavailable`.
//!
//! # Standards
//!
//! - Postfix SMTPD_POLICY_README: the protocol and its attributes; access(5): the actions.
//! - RFC 5321 section 4.2 (reply codes) and RFC 3463 (enhanced status codes), checked by [`CodeReply`].
#![deny(missing_docs)]

mod action;
mod attributes;
mod client;
mod connection;
mod error;
mod handler;
mod request;
mod server;

pub use action::{Action, ActionError, CodeReply, MAX_TEXT_LEN};
pub use attributes::{
    Attribute, Attributes, AttributesDecoder, DEFAULT_MAX_ATTRIBUTES, DEFAULT_MAX_LINE_LEN, DEFAULT_MAX_LIST_LEN,
    Limits, SyntaxError, parse_attributes,
};
pub use client::Client;
pub use error::{Error, ErrorKind};
pub use handler::{PolicyHandler, UNAVAILABLE_TEXT};
pub use request::{PolicyRequest, ProtocolState, REQUEST_TYPE, RequestError};
pub use server::{Listener, ServerConfig, ServerStats, run};
