//! `/login` and `/logout`.
//!
//! A login is a mailbox address and that mailbox's password, verified as
//! Dovecot verifies it (argon2id, or a legacy scheme). Administrators are
//! mailboxes with role `admin` or `domain-admin:<domain>`; the installation's
//! admin bearer token is for programs and is not a login. Every failure,
//! whatever its cause (unknown address, wrong password, inactive mailbox or
//! domain, throttled), says the same thing, and an unknown address costs a
//! hash verification like a known one, so the page does not reveal which
//! addresses exist.

use std::sync::LazyLock;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, RequestPartsExt};
use couchmail_model::{Address, DocKind, Document, Password, PasswordHash};
use minijinja::context;
use serde::Deserialize;

use crate::ui::page::{render_status, safe_next};
use crate::ui::session::load_principal;
use crate::ui::session::{
    PRE_SESSION_COOKIE, SESSION_COOKIE, came_over_tls, client_ip, cookie, find_session, random_hex, set_cookie,
};
use crate::ui::{UiError, UiState};

/// A hash to verify against when the address is unknown, so that both cases take as long.
static DUMMY_HASH: LazyLock<Option<PasswordHash>> = LazyLock::new(|| {
    Password::new("couchmail-no-such-user".to_owned()).ok().map(|password| PasswordHash::new(&password))
});

/// What the login page is asked for.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    /// Where to go after logging in.
    next: Option<String>,
    /// Set after a logout.
    bye: Option<String>,
    /// The address of a mailbox just made from an invitation.
    welcome: Option<String>,
}

/// The login form's fields.
#[derive(Deserialize)]
pub(crate) struct LoginForm {
    address: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

/// The token a form shown before login carries, minted as a cookie when the browser has none.
pub(crate) struct PreSessionToken {
    /// The token to put in the form.
    pub(crate) token: String,
    /// The cookie to set, when it is new.
    pub(crate) set_cookie: Option<HeaderValue>,
}

impl FromRequestParts<UiState> for PreSessionToken {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &UiState) -> Result<Self, UiError> {
        if let Some(session) = find_session(parts, state) {
            return Ok(PreSessionToken { token: session.csrf, set_cookie: None });
        }
        if let Some(existing) = cookie(&parts.headers, PRE_SESSION_COOKIE)
            && existing.len() == 64
            && existing.bytes().all(|byte| byte.is_ascii_hexdigit())
        {
            return Ok(PreSessionToken { token: existing.to_owned(), set_cookie: None });
        }
        let token = random_hex();
        let secure = came_over_tls(parts, state.config.secure_cookies);
        let set_cookie = Some(set_cookie(PRE_SESSION_COOKIE, &token, secure, None));
        Ok(PreSessionToken { token, set_cookie })
    }
}

impl PreSessionToken {
    /// Adds the cookie, if new, to `response`.
    pub(crate) fn attach(self, mut response: Response) -> Response {
        if let Some(value) = self.set_cookie {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        response
    }
}

/// `GET /login`: the form, or the dashboard for someone already logged in.
pub(crate) async fn login_form(
    State(state): State<UiState>,
    Query(query): Query<LoginQuery>,
    mut parts: Parts,
) -> Result<Response, UiError> {
    if find_session(&parts, &state).is_some() {
        return Ok(Redirect::to(&safe_next(query.next.as_deref())).into_response());
    }
    let token: PreSessionToken = parts.extract_with_state(&state).await?;
    let welcome = query.welcome.as_deref().map(|address| format!("Your mailbox {address} is ready: log in."));
    let notice = welcome.as_deref().or(query.bye.is_some().then_some("You are logged out."));
    let address = query.welcome.as_deref().unwrap_or_default();
    let page = login_page(StatusCode::OK, &token.token, address, query.next.as_deref(), None, notice);
    Ok(token.attach(page))
}

fn login_page(
    status: StatusCode,
    csrf: &str,
    address: &str,
    next: Option<&str>,
    error: Option<&str>,
    notice: Option<&str>,
) -> Response {
    render_status(
        status,
        None,
        "login.html",
        context! {
            title => "Log in",
            csrf => csrf,
            address => address,
            next => safe_next(next),
            error => error,
            notice => notice,
        },
    )
}

/// `POST /login`: checks the throttle, then the password; starts a session.
pub(crate) async fn login(
    State(state): State<UiState>,
    parts: Parts,
    Form(form): Form<LoginForm>,
) -> Result<Response, UiError> {
    let csrf = cookie(&parts.headers, PRE_SESSION_COOKIE).unwrap_or_default().to_owned();
    let typed = form.address.trim().to_lowercase();
    let mut keys = vec![format!("account:{typed}")];
    if let Some(ip) = client_ip(&parts) {
        keys.push(format!("ip:{ip}"));
    }
    if let Err(wait) = state.throttle.begin(&keys) {
        let seconds = wait.as_secs() + 1;
        let message = format!(
            "Too many failed logins for this account or from this network. Wait {seconds} seconds, then try again."
        );
        tracing::info!(seconds, "login throttled");
        let mut page =
            login_page(StatusCode::TOO_MANY_REQUESTS, &csrf, &typed, form.next.as_deref(), Some(&message), None);
        page.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return Ok(page);
    }
    let address = Address::parse(&typed).ok();
    let verified = match &address {
        Some(address) => verify(&state, address, form.password).await?,
        None => {
            verify_dummy(form.password).await;
            false
        }
    };
    let principal = match (&address, verified) {
        (Some(address), true) => load_principal(&state, address).await?,
        _ => None,
    };
    let (Some(address), Some(_)) = (address, principal) else {
        // `begin` counted this attempt as a failure already.
        tracing::info!("login failed");
        let message = "Wrong address or password, or the mailbox may not log in.";
        return Ok(login_page(StatusCode::UNAUTHORIZED, &csrf, &typed, form.next.as_deref(), Some(message), None));
    };
    state.throttle.succeeded(&keys[0], &keys[1..]);
    // A fresh id at every login: a session id planted before login is never promoted.
    if let Some(old) = find_session(&parts, &state) {
        state.sessions.remove(&old.key);
    }
    let id = state.sessions.create(address.clone());
    tracing::info!(mailbox = %address, "logged in to the web UI");
    let secure = came_over_tls(&parts, state.config.secure_cookies);
    let mut response = Redirect::to(&safe_next(form.next.as_deref())).into_response();
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &id, secure, None));
    headers.append(header::SET_COOKIE, set_cookie(PRE_SESSION_COOKIE, "", secure, Some(0)));
    Ok(response)
}

/// Whether `password` is the password of `address` (false when it has none or does not exist).
async fn verify(state: &UiState, address: &Address, password: String) -> Result<bool, UiError> {
    let stored = match state.api.directory.get(&DocKind::Mailbox.id(address)).await? {
        Some(entry) => match entry.doc {
            Document::Mailbox(mailbox) => mailbox.password,
            _ => None,
        },
        None => None,
    };
    let Some(hash) = stored else {
        verify_dummy(password).await;
        return Ok(false);
    };
    tokio::task::spawn_blocking(move || hash.verify(&password))
        .await
        .map_err(|err| UiError::Api(crate::Error::Internal(format!("password verification task failed: {err}"))))
}

/// Spends the time of one verification.
async fn verify_dummy(password: String) {
    let _ = tokio::task::spawn_blocking(move || DUMMY_HASH.as_ref().map(|hash| hash.verify(&password))).await;
}

/// `POST /logout`: ends the session.
pub(crate) async fn logout(State(state): State<UiState>, parts: Parts) -> Response {
    if let Some(session) = find_session(&parts, &state) {
        state.sessions.remove(&session.key);
        tracing::info!(mailbox = %session.mailbox, "logged out of the web UI");
    }
    let secure = came_over_tls(&parts, state.config.secure_cookies);
    let mut response = Redirect::to("/login?bye=1").into_response();
    response.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", secure, Some(0)));
    response
}
