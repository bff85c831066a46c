//! The internal HTTP endpoint that Dovecot's Lua passdb and userdb ask.
//!
//! Dovecot 2.4 removed the dict passdb, so Dovecot authenticates through a
//! Lua script (rendered by `couchmail-render`) that asks this endpoint over
//! HTTP on loopback (DESIGN.md §3, docs/runtime.md).
//! Dovecot verifies the password itself against the hash we return, so the
//! plain password never reaches couchmail.
//!
//! # Requests served
//! - `GET /dovecot/passdb/<user>`: `password=<{SCHEME}hash>`
//! - `GET /dovecot/userdb/<user>`: `home=`, `uid=`, `gid=`, `quota_rule=` lines
//! - `GET /dovecot/iterate`: one user a line, for `doveadm user '*'`
//!
//! `<user>` is percent-encoded. Bodies are `key=value` lines because
//! Dovecot's Lua has no JSON library.
//!
//! # Reply statuses
//! 200 found; 404 unknown user (or no password); 403 mailbox or domain
//! disabled; 400 a user name that cannot be an address; 401 without the
//! bearer secret; 503 while the index is not ready. The Lua script turns
//! every status but 200, 403 and 404 into a temporary failure, so a
//! couchmail that is down or slow never looks like a wrong password.
//!
//! # Security
//! Listens on loopback only. Every request needs `Authorization: Bearer
//! <secret>`, compared in constant time; the secret is generated at start
//! and written only into the Lua script (root:dovecot 0640).
//! Answers come from [`AuthLookup`], an in-memory view: no request reaches the store.
//!
//! # Configuration
//! The listen address and the secret, from `couchmail up`.
//!
//! # Standards
//! Dovecot's Lua authentication database (`auth_passdb_lookup`,
//! `auth_userdb_lookup`, `auth_userdb_iterate`), HTTP/1.1 (RFC 9110).
#![deny(missing_docs)]

mod user;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use subtle::ConstantTimeEq;

pub use user::{decode_user, home_component};

/// What the passdb asks about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassdbAnswer {
    /// The user exists, is enabled, and has this `{SCHEME}hash`.
    Found {
        /// The hash Dovecot verifies the password against.
        password: String,
    },
    /// No such user, or a user without a password.
    Unknown,
    /// The mailbox or its domain is disabled.
    Disabled,
    /// Not ready yet: try again later.
    NotReady,
}

/// What the userdb asks about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserdbAnswer {
    /// The user's fields.
    Found(UserFields),
    /// No such user (or disabled: the userdb hides disabled users too).
    Unknown,
    /// Not ready yet: try again later.
    NotReady,
}

/// The userdb fields of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFields {
    /// Home directory; the Maildir is `~/Maildir`.
    pub home: String,
    /// System uid mail is stored as.
    pub uid: u32,
    /// System gid mail is stored as.
    pub gid: u32,
    /// Quota in bytes, if one applies.
    pub quota_bytes: Option<u64>,
}

/// The narrow view of the index this endpoint needs.
pub trait AuthLookup: Send + Sync + 'static {
    /// The passdb answer for `user`, a normalised address.
    fn passdb(&self, user: &str) -> PassdbAnswer;
    /// The userdb answer for `user`, a normalised address.
    fn userdb(&self, user: &str) -> UserdbAnswer;
    /// Every user that can log in; `None` while not ready.
    fn iterate(&self) -> Option<Vec<String>>;
}

#[derive(Clone)]
struct AppState {
    lookup: Arc<dyn AuthLookup>,
    secret: Arc<str>,
}

/// The endpoint's routes, answering from `lookup` to holders of `secret`.
pub fn router(lookup: Arc<dyn AuthLookup>, secret: &str) -> Router {
    let state = AppState { lookup, secret: Arc::from(secret) };
    Router::new()
        .route("/dovecot/passdb/{user}", get(passdb))
        .route("/dovecot/userdb/{user}", get(userdb))
        .route("/dovecot/iterate", get(iterate))
        .with_state(state)
}

/// Serves the endpoint on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    lookup: Arc<dyn AuthLookup>,
    secret: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(lookup, secret)).with_graceful_shutdown(shutdown).await
}

async fn passdb(State(state): State<AppState>, headers: HeaderMap, Path(user): Path<String>) -> Response {
    if !authorized(&state, &headers) {
        return text(StatusCode::UNAUTHORIZED, "error=unauthorized\n");
    }
    let Some(user) = decode_user(&user) else { return text(StatusCode::BAD_REQUEST, "error=not an address\n") };
    match state.lookup.passdb(&user) {
        PassdbAnswer::Found { password } if is_field_value(&password) => {
            text(StatusCode::OK, format!("password={password}\n"))
        }
        PassdbAnswer::Found { .. } => {
            tracing::error!(%user, "refusing to hand Dovecot a password hash with a line break");
            text(StatusCode::INTERNAL_SERVER_ERROR, "error=internal\n")
        }
        PassdbAnswer::Unknown => text(StatusCode::NOT_FOUND, "error=unknown user\n"),
        PassdbAnswer::Disabled => text(StatusCode::FORBIDDEN, "error=disabled\n"),
        PassdbAnswer::NotReady => not_ready(),
    }
}

async fn userdb(State(state): State<AppState>, headers: HeaderMap, Path(user): Path<String>) -> Response {
    if !authorized(&state, &headers) {
        return text(StatusCode::UNAUTHORIZED, "error=unauthorized\n");
    }
    let Some(user) = decode_user(&user) else { return text(StatusCode::BAD_REQUEST, "error=not an address\n") };
    match state.lookup.userdb(&user) {
        UserdbAnswer::Found(fields) if is_field_value(&fields.home) => {
            let mut body = format!("home={}\nuid={}\ngid={}\n", fields.home, fields.uid, fields.gid);
            if let Some(bytes) = fields.quota_bytes {
                body.push_str(&format!("quota_rule=*:bytes={bytes}\n"));
            }
            text(StatusCode::OK, body)
        }
        UserdbAnswer::Found(_) => {
            tracing::error!(%user, "refusing to hand Dovecot a home directory with a line break");
            text(StatusCode::INTERNAL_SERVER_ERROR, "error=internal\n")
        }
        UserdbAnswer::Unknown => text(StatusCode::NOT_FOUND, "error=unknown user\n"),
        UserdbAnswer::NotReady => not_ready(),
    }
}

async fn iterate(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return text(StatusCode::UNAUTHORIZED, "error=unauthorized\n");
    }
    match state.lookup.iterate() {
        Some(users) => {
            let mut body = String::new();
            for user in users.iter().filter(|u| is_field_value(u)) {
                body.push_str(user);
                body.push('\n');
            }
            text(StatusCode::OK, body)
        }
        None => not_ready(),
    }
}

/// Checks the bearer secret in constant time.
fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    !given.is_empty() && bool::from(given.as_bytes().ct_eq(state.secret.as_bytes()))
}

fn not_ready() -> Response {
    text(StatusCode::SERVICE_UNAVAILABLE, "error=not ready, try again\n")
}

/// A value that cannot break the `key=value` line format.
fn is_field_value(value: &str) -> bool {
    !value.contains(['\n', '\r', '\0'])
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body.into()).into_response()
}
