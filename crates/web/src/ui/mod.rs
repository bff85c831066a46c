//! The management web UI: server-rendered pages on the API's listener, for
//! administrators (domains, mailboxes, aliases, invitations, listings) and
//! for every mailbox's owner (password, aliases, spam threshold, blocklist).
//!
//! Pages are minijinja templates (`crates/web/templates/`, compiled into the
//! binary) over the same [`Directory`](couchmail_directory::Directory) the
//! API writes through, and every page asks [`Principal::may`] through the
//! same [`Resource`](crate::Resource)s as the API, so that the two cannot
//! disagree about who may do what. Lists (domains, mailboxes, aliases) are
//! read from the index, which holds every entry in memory, so that search
//! and paging stay fast with tens of thousands of mailboxes; a write waits
//! (briefly) until the index has it, so the page it redirects to shows it.
//!
//! # Security
//!
//! - Login is a mailbox address and its password ([`auth`]); administrators
//!   are mailboxes with role `admin` or `domain-admin:<domain>`.
//! - Sessions ([`session`]): a random 256-bit id in the cookie
//!   `couchmail_session` (`HttpOnly`, `SameSite=Strict`, `Path=/`, `Secure`
//!   when the request came over TLS: `X-Forwarded-Proto: https` from a
//!   loopback peer, or [`UiConfig::secure_cookies`]); the server keeps only
//!   the id's SHA-256, with idle and absolute expiry. Logout removes the
//!   session; a password change removes every other session of the mailbox.
//! - CSRF ([`csrf`]): every `POST` must come from this site (`Origin`, else
//!   `Referer`, else `Sec-Fetch-Site`) and carry the form field `csrf` equal
//!   to the session's token (before login, the `couchmail_csrf` cookie's);
//!   anything else is a 403, checked by one middleware in front of every page.
//! - Login throttling ([`throttle`]): after [`UiConfig::throttle_after`]
//!   failures per client address or per account, each further attempt waits
//!   an exponentially growing delay, answered 429 with the wait in the page.
//!
//! # Stable element ids (the browser tests drive these; keep them)
//!
//! | flow | ids and field names |
//! |---|---|
//! | login (`GET /login`) | `form#login-form`, `input#login-address` (`address`), `input#login-password` (`password`), `button#login-submit`; an error is `#login-error` |
//! | logout (every page) | `form#logout-form`, `button#logout-submit` |
//! | messages after a write | `#flash` with class `flash-ok` or `flash-error` |
//! | create a domain (`GET /domains`) | `form#domain-create-form`, `input#domain-name` (`name`), `button#domain-create-submit`; the list is `table#domain-list`, one `tr` per domain with `data-domain="<name>"` |
//! | create a mailbox (`GET /mailboxes`) | `form#mailbox-create-form`, `input#mailbox-address` (`address`), `input#mailbox-password` (`password`), `input#mailbox-name` (`name`), `input#mailbox-quota` (`quota_mib`), `button#mailbox-create-submit`; the list is `table#mailbox-list`, rows `data-address="<address>"` |
//! | search and paging | `form#search-form`, `input#search-q` (`q`); `a#next-page` |
//! | change my password (`GET /me`) | `form#password-form`, `input#password-current` (`current`), `input#password-new` (`new`), `input#password-confirm` (`confirm`), `button#password-submit` |
//! | the user's name in the header | `#whoami` |
//! | the stack on the dashboard (admin) | `table#daemons`, one `tr` per daemon with `data-daemon="<name>"` and `data-state="<state>"`; `#daemons-elsewhere` when couchmail supervises none; `ul#listeners` |
//!
//! # Plugging in more pages
//!
//! The Sieve filter pages live in `ui/sieve*.rs` and `templates/sieve_*.html`:
//! [`sieve::routes`] is merged into [`router`] (behind the same session and
//! CSRF checks), and [`sieve::TEMPLATES`] is added to the template set. A
//! handler takes `State<UiState>` and a [`SessionUser`] (which refuses
//! anonymous requests with a redirect to the login page), renders with
//! [`page::render`], and answers a write with [`SessionUser::flash`] and a 303
//! to the page to show next. The header links to `/me/sieve`.

pub(crate) mod aliases;
pub(crate) mod assets;
pub(crate) mod auth;
pub(crate) mod csrf;
pub(crate) mod dashboard;
pub(crate) mod domains;
pub(crate) mod forms;
pub(crate) mod invitations;
pub(crate) mod listings;
pub(crate) mod mailboxes;
pub(crate) mod me;
pub(crate) mod page;
pub(crate) mod paging;
pub(crate) mod policy;
pub(crate) mod session;
pub(crate) mod sieve;
pub(crate) mod throttle;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use couchmail_model::{DocKind, Document};
use couchmail_store::Rev;

use crate::ApiState;
use crate::access::Principal;

pub(crate) use page::{UiError, render};
pub(crate) use session::SessionUser;

/// How the web UI's sessions and login throttling behave; [`UiConfig::default`] is production.
#[derive(Debug, Clone)]
pub struct UiConfig {
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after login, however busy.
    pub absolute_timeout: Duration,
    /// Failed logins (per client address, per account) allowed before each attempt has to wait.
    pub throttle_after: u32,
    /// The wait after the first failure past [`UiConfig::throttle_after`]; it doubles with each further failure.
    pub throttle_base_delay: Duration,
    /// The longest wait.
    pub throttle_max_delay: Duration,
    /// Mark cookies `Secure` always (when TLS ends in front of couchmail without `X-Forwarded-Proto`).
    pub secure_cookies: bool,
    /// How long a write waits for the index to show it before the next page is drawn anyway.
    pub index_wait: Duration,
}

impl Default for UiConfig {
    fn default() -> UiConfig {
        UiConfig {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 60 * 60),
            throttle_after: 5,
            throttle_base_delay: Duration::from_secs(1),
            throttle_max_delay: Duration::from_secs(15 * 60),
            secure_cookies: false,
            index_wait: Duration::from_secs(2),
        }
    }
}

/// What every page handler shares.
#[derive(Clone)]
pub(crate) struct UiState {
    /// The directory and the index, as the API has them.
    pub(crate) api: ApiState,
    /// The live sessions.
    pub(crate) sessions: Arc<session::SessionStore>,
    /// Failed logins.
    pub(crate) throttle: Arc<throttle::Throttle>,
    /// The configuration.
    pub(crate) config: Arc<UiConfig>,
}

impl UiState {
    /// A UI over `api` with no sessions yet.
    pub(crate) fn new(api: ApiState, config: UiConfig) -> UiState {
        UiState {
            sessions: Arc::new(session::SessionStore::new(config.idle_timeout, config.absolute_timeout)),
            throttle: Arc::new(throttle::Throttle::new(
                config.throttle_after,
                config.throttle_base_delay,
                config.throttle_max_delay,
            )),
            config: Arc::new(config),
            api,
        }
    }

    /// Reads the document `kind`:`key` from the store with its revision, taken apart by `pick`; one that is
    /// missing or of another kind is a 404 naming `what`.
    pub(crate) async fn read<T>(
        &self,
        kind: DocKind,
        key: impl std::fmt::Display,
        what: &str,
        pick: impl FnOnce(Document) -> Option<T>,
    ) -> Result<(T, Rev), UiError> {
        let entry = self.api.directory.get(&kind.id(&key)).await?.ok_or_else(|| page::no_such(what, &key))?;
        let document = pick(entry.doc).ok_or_else(|| page::no_such(what, &key))?;
        Ok((document, entry.rev))
    }

    /// Waits until the index shows `done`, at most [`UiConfig::index_wait`], so that the page a
    /// write redirects to (read from the index) already shows the write.
    pub(crate) async fn wait_for_index(&self, done: impl Fn(&couchmail_index::Snapshot) -> bool) {
        if self.api.index.is_ready() && self.api.index.wait_until(done, self.config.index_wait).await.is_none() {
            tracing::debug!("the index did not show a write in time; drawing the page anyway");
        }
    }
}

/// The UI's routes, behind the CSRF guard; merged beside the API by [`crate::router`].
pub(crate) fn router(api: ApiState, config: UiConfig) -> Router {
    let state = UiState::new(api, config);
    Router::new()
        .route("/", get(dashboard::show))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/static/{file}", get(assets::serve))
        .route("/me", get(me::show))
        .route("/me/password", post(me::change_password))
        .route("/me/spam", post(me::set_spam))
        .route("/listings", get(listings::show).post(listings::add))
        .route("/listings/remove", post(listings::remove))
        .route("/policy", get(policy::show))
        .merge(domains::routes())
        .merge(mailboxes::routes())
        .merge(aliases::routes())
        .merge(invitations::routes())
        .merge(sieve::routes())
        .layer(middleware::from_fn_with_state(state.clone(), csrf::guard))
        .with_state(state)
}

/// The role a principal is shown as.
pub(crate) fn role_label(principal: &Principal) -> &'static str {
    match principal {
        Principal::Admin { .. } => "admin",
        Principal::DomainAdmin { .. } => "domain-admin",
        Principal::User { .. } => "user",
    }
}
