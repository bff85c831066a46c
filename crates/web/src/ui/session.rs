//! Login sessions: kept in memory, found by the SHA-256 of a random 256-bit id
//! that only the browser holds (in the `couchmail_session` cookie).
//!
//! Keeping only the hash means that a look at the server's memory or logs
//! yields nothing a browser could present. A session ends when it is unused
//! for the idle timeout, at the absolute timeout, at logout, and — for every
//! session of a mailbox but the one making the change — when the mailbox's
//! password changes. Sessions do not survive a restart, which logs everyone
//! out: acceptable for an administration UI, and it keeps secrets off disk.
//!
//! [`SessionUser`] is the extractor pages use: it finds the session, reads the
//! mailbox's roles from the store as they are now (as bearer tokens do), and
//! refuses with a redirect to the login page when any of that fails.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use couchmail_model::{Address, DocKind, Document};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::access::{Principal, domain_is_active};
use crate::ui::{UiError, UiState};

/// The session cookie.
pub(crate) const SESSION_COOKIE: &str = "couchmail_session";
/// The cookie that carries the CSRF token of forms shown before login (login, invitations).
pub(crate) const PRE_SESSION_COOKIE: &str = "couchmail_csrf";
/// Most live sessions kept; past it the least recently used go first.
const MAX_SESSIONS: usize = 100_000;

/// The server's name for a session: the SHA-256 of the cookie's id.
pub(crate) type SessionKey = [u8; 32];

/// A message shown once on the next page.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Flash {
    /// `ok` or `error`.
    pub(crate) kind: &'static str,
    /// What happened.
    pub(crate) text: String,
}

impl Flash {
    /// A success.
    pub(crate) fn ok(text: impl Into<String>) -> Flash {
        Flash { kind: "ok", text: text.into() }
    }

    /// A failure.
    pub(crate) fn error(text: impl Into<String>) -> Flash {
        Flash { kind: "error", text: text.into() }
    }
}

/// One login.
#[derive(Debug, Clone)]
struct Session {
    mailbox: Address,
    csrf: String,
    created: Instant,
    last_seen: Instant,
    flash: Option<Flash>,
}

/// A live session as a request sees it.
#[derive(Debug, Clone)]
pub(crate) struct FoundSession {
    pub(crate) key: SessionKey,
    pub(crate) mailbox: Address,
    pub(crate) csrf: String,
}

/// Every live session.
pub(crate) struct SessionStore {
    sessions: Mutex<HashMap<SessionKey, Session>>,
    idle: Duration,
    absolute: Duration,
}

impl SessionStore {
    /// An empty store whose sessions end after `idle` unused or `absolute` after login.
    pub(crate) fn new(idle: Duration, absolute: Duration) -> SessionStore {
        SessionStore { sessions: Mutex::new(HashMap::new()), idle, absolute }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Session>> {
        // A panic while holding the lock leaves a map that is still consistent (every change is
        // one insert or remove), so a poisoned lock is used as is.
        self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a session for `mailbox`; returns the cookie value (the id, shown once).
    pub(crate) fn create(&self, mailbox: Address) -> String {
        let id = random_hex();
        let now = Instant::now();
        let session = Session { mailbox, csrf: random_hex(), created: now, last_seen: now, flash: None };
        let mut sessions = self.lock();
        sessions.retain(|_, session| self.alive(session, now));
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, session)| session.last_seen).map(|(key, _)| *key)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(key_of(&id), session);
        id
    }

    fn alive(&self, session: &Session, now: Instant) -> bool {
        now.duration_since(session.last_seen) < self.idle && now.duration_since(session.created) < self.absolute
    }

    /// The session of cookie value `id`, if it is alive; marks it used.
    pub(crate) fn find(&self, id: &str) -> Option<FoundSession> {
        let key = key_of(id);
        let now = Instant::now();
        let mut sessions = self.lock();
        let session = sessions.get_mut(&key)?;
        if !self.alive(session, now) {
            sessions.remove(&key);
            return None;
        }
        session.last_seen = now;
        Some(FoundSession { key, mailbox: session.mailbox.clone(), csrf: session.csrf.clone() })
    }

    /// The flash message of session `key`, removed.
    pub(crate) fn take_flash(&self, key: &SessionKey) -> Option<Flash> {
        self.lock().get_mut(key).and_then(|session| session.flash.take())
    }

    /// Leaves `flash` for the next page of session `key`.
    pub(crate) fn set_flash(&self, key: &SessionKey, flash: Flash) {
        if let Some(session) = self.lock().get_mut(key) {
            session.flash = Some(flash);
        }
    }

    /// Ends session `key`.
    pub(crate) fn remove(&self, key: &SessionKey) {
        self.lock().remove(key);
    }

    /// Ends every session of `mailbox` except `keep`; returns how many ended.
    pub(crate) fn revoke_mailbox(&self, mailbox: &Address, keep: Option<&SessionKey>) -> usize {
        let mut sessions = self.lock();
        let before = sessions.len();
        sessions.retain(|key, session| &session.mailbox != mailbox || Some(key) == keep);
        before - sessions.len()
    }

    /// How many sessions are alive (for tests and the dashboard).
    pub(crate) fn len(&self) -> usize {
        let now = Instant::now();
        self.lock().values().filter(|session| self.alive(session, now)).count()
    }
}

/// The server-side key of a cookie value.
fn key_of(id: &str) -> SessionKey {
    Sha256::digest(id.as_bytes()).into()
}

/// 256 random bits as 64 hex digits.
pub(crate) fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Whether two tokens are equal, in time independent of where they differ.
pub(crate) fn tokens_equal(given: &str, expected: &str) -> bool {
    !expected.is_empty() && given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// The address of the peer, as axum's connect info has it.
pub(crate) fn peer(parts: &Parts) -> Option<SocketAddr> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| *addr)
}

/// Whether the request reached the site over TLS: a proxy on this host says so in
/// `X-Forwarded-Proto` (believed from a loopback peer only), or the operator says TLS ends in front.
pub(crate) fn came_over_tls(parts: &Parts, always: bool) -> bool {
    if always {
        return true;
    }
    let from_loopback = peer(parts).is_some_and(|addr| addr.ip().is_loopback());
    from_loopback
        && parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// The client's address, for login throttling: the peer, or — when the peer is a proxy on this
/// host — the last address it put in `X-Forwarded-For`.
pub(crate) fn client_ip(parts: &Parts) -> Option<IpAddr> {
    let peer = peer(parts)?.ip();
    if !peer.is_loopback() {
        return Some(peer);
    }
    let forwarded = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|item| item.trim().parse::<IpAddr>().ok())
        .next_back();
    Some(forwarded.unwrap_or(peer))
}

/// A `Set-Cookie` value with the flags every couchmail cookie carries.
pub(crate) fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> HeaderValue {
    let mut text = format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/");
    if let Some(seconds) = max_age {
        text.push_str(&format!("; Max-Age={seconds}"));
    }
    if secure {
        text.push_str("; Secure");
    }
    // Names are constants and values hex digits, which are valid header text.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("couchmail_invalid=1"))
}

/// The logged-in user of a request, with its roles as they are now.
#[derive(Debug, Clone)]
pub(crate) struct SessionUser {
    /// What the mailbox may do.
    pub(crate) principal: Principal,
    /// The mailbox logged in.
    pub(crate) mailbox: Address,
    /// The token every form of this session carries.
    pub(crate) csrf: String,
    /// The session's server-side key.
    pub(crate) key: SessionKey,
    /// The message left by the previous request, taken.
    pub(crate) flash: Option<Flash>,
}

impl SessionUser {
    /// Leaves `flash` for the next page.
    pub(crate) fn flash(&self, state: &UiState, flash: Flash) {
        state.sessions.set_flash(&self.key, flash);
    }
}

/// Finds the session of a request, if any, without reading the store.
pub(crate) fn find_session(parts: &Parts, state: &UiState) -> Option<FoundSession> {
    cookie(&parts.headers, SESSION_COOKIE).and_then(|id| state.sessions.find(id))
}

impl FromRequestParts<UiState> for SessionUser {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &UiState) -> Result<Self, UiError> {
        let next = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), ToString::to_string);
        let login = || UiError::LoginRequired { next: next.clone() };
        let Some(found) = find_session(parts, state) else { return Err(login()) };
        let principal = match load_principal(state, &found.mailbox).await? {
            Some(principal) => principal,
            None => {
                // The mailbox is gone or disabled: its sessions are no use any more.
                state.sessions.revoke_mailbox(&found.mailbox, None);
                return Err(login());
            }
        };
        Ok(SessionUser {
            principal,
            flash: state.sessions.take_flash(&found.key),
            mailbox: found.mailbox,
            csrf: found.csrf,
            key: found.key,
        })
    }
}

/// The principal of `mailbox` with its roles now, or `None` when it may not log in (removed,
/// inactive, in an inactive domain, or without a password).
pub(crate) async fn load_principal(state: &UiState, mailbox: &Address) -> Result<Option<Principal>, UiError> {
    let Some(entry) = state.api.directory.get(&DocKind::Mailbox.id(mailbox)).await.map_err(crate::Error::from)? else {
        return Ok(None);
    };
    let Document::Mailbox(found) = entry.doc else { return Ok(None) };
    if !found.active || found.password.is_none() || !domain_is_active(&state.api.directory, mailbox.domain()).await? {
        return Ok(None);
    }
    Ok(Some(Principal::of_mailbox(mailbox.clone(), &found.roles)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> Address {
        text.parse().unwrap()
    }

    #[test]
    fn sessions_are_found_by_their_id_only() {
        let store = SessionStore::new(Duration::from_secs(60), Duration::from_secs(600));
        let id = store.create(address("alice@a.example"));
        assert_eq!(id.len(), 64);
        let found = store.find(&id).unwrap();
        assert_eq!(found.mailbox, address("alice@a.example"));
        assert_eq!(found.csrf.len(), 64);
        assert!(store.find(&random_hex()).is_none());
        // The map holds the hash, never the id.
        assert!(!store.lock().keys().any(|key| hex::encode(key) == id));
        store.remove(&found.key);
        assert!(store.find(&id).is_none());
    }

    #[test]
    fn sessions_expire_when_idle_or_old() {
        let idle = SessionStore::new(Duration::from_millis(30), Duration::from_secs(600));
        let id = idle.create(address("alice@a.example"));
        std::thread::sleep(Duration::from_millis(60));
        assert!(idle.find(&id).is_none(), "idle session still alive");

        let old = SessionStore::new(Duration::from_secs(60), Duration::from_millis(60));
        let id = old.create(address("alice@a.example"));
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(20));
            let _ = old.find(&id);
        }
        std::thread::sleep(Duration::from_millis(20));
        assert!(old.find(&id).is_none(), "session past its absolute timeout still alive");
    }

    #[test]
    fn revoking_a_mailbox_keeps_one_session() {
        let store = SessionStore::new(Duration::from_secs(60), Duration::from_secs(600));
        let alice = address("alice@a.example");
        let (one, two, bob) =
            (store.create(alice.clone()), store.create(alice.clone()), store.create(address("bob@a.example")));
        let keep = store.find(&one).unwrap().key;
        assert_eq!(store.revoke_mailbox(&alice, Some(&keep)), 1);
        assert!(store.find(&one).is_some());
        assert!(store.find(&two).is_none());
        assert!(store.find(&bob).is_some());
    }

    #[test]
    fn flash_is_shown_once() {
        let store = SessionStore::new(Duration::from_secs(60), Duration::from_secs(600));
        let id = store.create(address("alice@a.example"));
        let key = store.find(&id).unwrap().key;
        store.set_flash(&key, Flash::ok("done"));
        assert_eq!(store.take_flash(&key), Some(Flash::ok("done")));
        assert_eq!(store.take_flash(&key), None);
    }

    #[test]
    fn cookies_are_parsed_and_flagged() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; couchmail_session=abc; b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
        let value = set_cookie(SESSION_COOKIE, "abc", true, None);
        assert_eq!(value.to_str().unwrap(), "couchmail_session=abc; HttpOnly; SameSite=Strict; Path=/; Secure");
        assert!(tokens_equal("abc", "abc"));
        assert!(!tokens_equal("abd", "abc"));
        assert!(!tokens_equal("", ""));
    }
}
