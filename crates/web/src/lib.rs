//! CouchMail's REST API and management web UI: the documents of the
//! directory over HTTP, with bearer tokens, roles, revisions as ETags and an
//! OpenAPI document; and server-rendered pages for administrators and users
//! beside it, on the same listener.
//!
//! [`router`] builds the axum [`Router`](axum::Router) over an [`ApiState`]
//! (a [`Directory`] for reads and writes, the [`Index`] for health and the
//! pages' lists); [`serve`] runs it on a listener until a shutdown future
//! completes ([`router_with`] and [`serve_with`] take a [`UiConfig`]).
//! Every API route is under `/api/v1`; `GET /api/v1/openapi.json` describes
//! them all (utoipa), and [`ApiDoc`] is that document as a type. Everything
//! else is the web UI.
//!
//! # Web UI
//!
//! Pages (minijinja templates compiled in, no JavaScript needed): login and
//! logout, a dashboard (counts, health, and for admins the daemons and
//! listeners of the stack), domains and their domain
//! aliases, mailboxes (create, quota, disable, reset password, roles),
//! aliases (several targets, catch-alls), invitations (one-time links to
//! create a mailbox, with expiry, redeemed at the public `/invite/{id}`),
//! block and allow lists with greylisting and spam settings, and every
//! user's own page (password, aliases that reach it, spam threshold, own
//! blocklist) and Sieve filters. Logins are mailboxes and their passwords;
//! sessions are server-side (a 256-bit id in an `HttpOnly`, `SameSite=Strict`
//! cookie, `Secure` under TLS; idle and absolute expiry; a password change
//! ends the other sessions); every `POST` needs this site's origin and the
//! session's form token; failed logins are throttled per client address and
//! per account. The pages ask [`Principal::may`] as the API does.
//! docs/web-ui.md has the pages, roles and security in full.
//!
//! # Requests served
//!
//! | route | methods |
//! |---|---|
//! | `/health` | `GET` (no token): `status`, `index_ready`, `last_seq`; 503 until the index is ready |
//! | `/status` | `GET` (admin): the index and the store in detail, and the stack's daemons and listeners ([`StackStatus`]) |
//! | `/openapi.json` | `GET` (no token) |
//! | `/whoami` | `GET`: the token's role, mailbox and domains |
//! | `/domains`, `/domains/{domain}` | `GET` list, `POST` create; `GET`, `PUT`, `DELETE` (`?cascade=true`) |
//! | `/domain-aliases`, `/domain-aliases/{name}` | the same |
//! | `/mailboxes`, `/mailboxes/{address}` | the same; list takes `?domain=` |
//! | `/mailboxes/{address}/password` | `PUT {"password": "…"}`, hashed argon2id |
//! | `/mailboxes/{address}/sieve`, `…/sieve/{name}` | `GET` list, `POST` create; `GET`, `PUT`, `DELETE` |
//! | `/aliases`, `/aliases/{key}` | as domains; `{key}` may be `@domain` (the catch-all) |
//! | `/listings`, `/listings/{key}` | blocklist and allowlist entries: `GET` list (`?domain=`, `?mailbox=`, `?scope=global`), `POST` create; `GET`, `PUT` (the note), `DELETE` |
//! | `/conflicts` | `GET` (admin): documents whose replicas disagree, every live revision with its body (secrets left out) |
//! | `/conflicts/{id}/resolve` | `POST {"keep": "<rev>"}` (admin): keeps that revision, deletes the others; answers the new revision |
//! | anything outside `/api/v1` | the web UI; an unknown path is a JSON 404 for programs and an HTML page for browsers |
//!
//! Activating a Sieve script is a `PUT` of the mailbox with `sieve_active`
//! set to its name: one document holds the choice, so there is one way to
//! make it.
//!
//! Listings take `after` (the key of the last item seen) and `limit`
//! (default 100, at most 1000), answer `{"items": […], "next": …}`, and
//! `next` is the `after` of the following page (absent on the last one).
//! Listings of mailboxes, aliases and domain aliases by a domain admin name
//! the domain (`?domain=`), unless it administers exactly one.
//! A user lists only its own Sieve scripts; its mailbox is `GET /mailboxes/{address}`.
//!
//! # Revisions
//!
//! Every response about one resource carries `ETag: "<rev>"`. `PUT` (which
//! replaces an existing resource; create is `POST` to the collection, 409
//! if it exists) and `DELETE` require `If-Match` with that ETag: missing is
//! 428 `precondition_required`, stale is 409 `conflict`, so two clients
//! editing at once never lose an update silently. Writes answer the new ETag.
//!
//! # Reply statuses
//!
//! Errors are `{"error": {"code", "message", "field"?}}` ([`Error`]):
//! `invalid` 400 (naming the field, path segment or query parameter),
//! `unauthenticated` 401, `forbidden` 403, `not_found` 404,
//! `method_not_allowed` 405, `conflict` 409, `refused` 409 (dependents exist,
//! or a rule spanning documents), `payload_too_large` 413,
//! `unsupported_media_type` 415, `precondition_required` 428, `unavailable`
//! 503 (with `Retry-After`), `internal` 500 (the cause is logged only).
//! A request that fails writes nothing.
//! While the store is down every request that needs it (and so every
//! authenticated one: tokens are read from the store) answers 503
//! `unavailable`, "the store is not answering; retry shortly"; `health`
//! keeps answering from the index.
//!
//! # Security
//!
//! Peers: anyone who can reach the listener; bind it to loopback, serve it
//! over TLS with [`serve_https`], or put a TLS proxy in front. Every route but `health` and `openapi.json` needs
//! `Authorization: Bearer cmt_…`, a token created with the CLI and stored
//! hashed as a `token:<id>` document. The token acts for `admin`, or for a
//! mailbox with that mailbox's roles at the time of the request
//! ([`Principal`]); tokens of an inactive or removed mailbox, or of one in an
//! inactive domain, stop working. [`Principal::may`] is the one table of who
//! may do what, asked on every route.
//! Changing a mailbox that holds roles (its password, settings or scripts)
//! needs authority over those roles, so a domain admin cannot take over an
//! admin's mailbox that lives in its domain. No response carries a password hash
//! or a token hash; logs carry method, path and status, never headers or
//! bodies. Bodies are JSON only, at most 256 KiB ([`MAX_BODY_BYTES`]).
//! Privilege needed: none beyond the store's file or URL.
//!
//! # Example
//!
//! ```no_run
//! # async fn example(directory: couchmail_directory::Directory, index: std::sync::Arc<couchmail_index::Index>) -> std::io::Result<()> {
//! use couchmail_web::{ApiState, serve};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8025").await?;
//! let shutdown = async { tokio::signal::ctrl_c().await.unwrap_or_default() };
//! serve(listener, ApiState { directory, index, stack: None }, shutdown).await
//! # }
//! ```
#![deny(missing_docs)]

mod access;
mod dto;
mod error;
mod extract;
mod https;
mod routes;
mod stack_status;
mod ui;

use std::future::Future;
use std::sync::Arc;

use couchmail_directory::Directory;
use couchmail_index::Index;

pub use access::{Action, Principal, Resource, authenticate};
pub use dto::{
    AliasInput, AliasPage, AliasView, ConflictList, ConflictView, DomainAliasInput, DomainAliasPage, DomainAliasView,
    DomainInput, DomainPage, DomainView, HealthView, ListingInput, ListingPage, ListingView, MailboxInput, MailboxPage,
    MailboxView, PasswordInput, REDACTED_FIELDS, ResolveInput, ResolvedView, RevisionView, SieveInput, SievePage,
    SieveSummary, SieveView, WhoamiView,
};
pub use error::{Error, ErrorBody, ErrorDetail};
pub use extract::{DEFAULT_PAGE_LIMIT, MAX_BODY_BYTES, MAX_PAGE_LIMIT};
pub use https::{DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_HANDSHAKES, HttpsConfig, serve_https};
pub use routes::{API_PREFIX, ApiDoc, router, router_with};
pub use stack_status::{DaemonHealth, DaemonState, DaemonView, ListenerInfo, StackStatus};
pub use ui::UiConfig;

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    /// Reads and validated writes.
    pub directory: Directory,
    /// The live index, for `health`.
    pub index: Arc<Index>,
    /// The daemons and listeners of the stack this process runs, for the dashboard and `status`;
    /// `None` when it runs none (a library user, a test).
    pub stack: Option<Arc<dyn StackStatus>>,
}

/// Serves the API and the web UI on `listener` until `shutdown` completes,
/// then lets requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, UiConfig::default(), shutdown).await
}

/// [`serve`] with the web UI configured by `ui`.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: ApiState,
    ui: UiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local_addr = listener.local_addr()?;
    tracing::info!(%local_addr, "REST API and web UI listening");
    // The peer's address feeds login throttling and decides whether `X-Forwarded-*` is believed.
    let app = router_with(state, ui).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
