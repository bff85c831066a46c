//! Outbound rate limits per SASL user: messages and recipients over a sliding window (an hour).
//!
//! Postfix asks at each RCPT and again at END-OF-MESSAGE. At RCPT the limiter answers whether one more recipient
//! fits: the user's messages sent within the window must be under the message limit, and the recipients sent within
//! the window, plus those already accepted for this message (grouped by Postfix's `instance` attribute), plus this
//! one, must not pass the recipient limit. So a message to too many recipients goes to the first ones that fit, and
//! the others are deferred. At END-OF-MESSAGE the message is counted, with `recipient_count` recipients.
//!
//! Counts live in memory and, with a state file, also in SQLite (WAL, `synchronous=NORMAL`, mode 0600): each
//! counted message is one row, read back at start within the window, so that a restart does not hand every user a
//! fresh hour. Rows older than the window are deleted at start and every [`PURGE_EVERY`] messages.

use std::collections::{HashMap, VecDeque};
use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use couchmail_greylist::Clock;
use rusqlite::{Connection, params};

use crate::error::{Error, ErrorKind};

/// How many messages are counted between two purges of the state file.
pub const PURGE_EVERY: u64 = 1000;
/// How many messages in progress (RCPT seen, END-OF-MESSAGE not yet) are tracked at once; beyond it, older ones
/// are forgotten, which at worst lets a message's recipients count only once it is sent.
const MAX_PENDING: usize = 10_000;

/// The limits that apply to one user; `None` for no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Messages per window.
    pub messages: Option<u32>,
    /// Recipients per window, summed over messages.
    pub recipients: Option<u32>,
}

/// Whether one more recipient fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    /// It fits, and is now counted as pending for its message.
    Allowed,
    /// The user already sent `sent` messages within the window, the limit being `limit`.
    TooManyMessages {
        /// Messages within the window.
        sent: u64,
        /// The limit.
        limit: u32,
    },
    /// The user's recipients within the window (sent and pending) are `sent`, and one more would pass `limit`.
    TooManyRecipients {
        /// Recipients within the window, this message's accepted ones included.
        sent: u64,
        /// The limit.
        limit: u32,
    },
}

/// What a user sent within the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Messages sent.
    pub messages: u64,
    /// Recipients, summed over those messages.
    pub recipients: u64,
}

/// A message counted, as the state file keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    login: String,
    at_ms: i64,
    recipients: u32,
}

/// The sliding-window counters of every user (see the module documentation).
pub struct RateLimiter {
    window_ms: i64,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
    state: Option<Mutex<State>>,
}

#[derive(Default)]
struct Inner {
    sent: HashMap<String, VecDeque<Sent>>,
    pending: HashMap<String, Pending>,
}

#[derive(Debug, Clone, Copy)]
struct Sent {
    at_ms: i64,
    recipients: u32,
}

struct Pending {
    login: String,
    recipients: u32,
    since_ms: i64,
}

struct State {
    connection: Connection,
    path: PathBuf,
    n_since_purge: u64,
}

impl RateLimiter {
    /// A limiter counting over `window`, keeping its counts in `state_path` when given (created 0600, read back).
    pub fn open(state_path: Option<&Path>, window: Duration, clock: Arc<dyn Clock>) -> Result<RateLimiter, Error> {
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let limiter = RateLimiter { window_ms, clock, inner: Mutex::new(Inner::default()), state: None };
        let Some(path) = state_path else { return Ok(limiter) };
        let (state, rows) = State::open(path, limiter.now_ms().saturating_sub(window_ms))?;
        {
            let mut inner = limiter.lock();
            for row in rows {
                inner
                    .sent
                    .entry(row.login)
                    .or_default()
                    .push_back(Sent { at_ms: row.at_ms, recipients: row.recipients });
            }
        }
        Ok(RateLimiter { state: Some(Mutex::new(state)), ..limiter })
    }

    /// Whether one more recipient of message `instance` fits `limits` for `login`; an allowed one is counted as
    /// pending for its message.
    pub fn check_recipient(&self, login: &str, instance: Option<&str>, limits: Limits) -> RateVerdict {
        let login = login.to_ascii_lowercase();
        let now_ms = self.now_ms();
        let mut inner = self.lock();
        let usage = inner.usage(&login, now_ms.saturating_sub(self.window_ms));
        let pending = instance.and_then(|instance| inner.pending.get(instance)).map_or(0, |pending| pending.recipients);
        if let Some(limit) = limits.messages
            && pending == 0
            && usage.messages >= u64::from(limit)
        {
            return RateVerdict::TooManyMessages { sent: usage.messages, limit };
        }
        let recipients = usage.recipients + u64::from(pending);
        if let Some(limit) = limits.recipients
            && recipients + 1 > u64::from(limit)
        {
            return RateVerdict::TooManyRecipients { sent: recipients, limit };
        }
        if let Some(instance) = instance {
            inner.track_pending(instance, &login, now_ms, self.window_ms);
        }
        RateVerdict::Allowed
    }

    /// Counts a message of `login` sent now with `recipient_count` recipients (when Postfix says; else the
    /// recipients allowed for `instance`, at least one), and forgets `instance`. Returns what to persist with
    /// [`RateLimiter::persist`].
    pub fn record_message(&self, login: &str, instance: Option<&str>, recipient_count: Option<u64>) -> Counted {
        let login = login.to_ascii_lowercase();
        let now_ms = self.now_ms();
        let mut inner = self.lock();
        let pending = instance.and_then(|instance| inner.pending.remove(instance)).map(|pending| pending.recipients);
        let recipients =
            recipient_count.map(|count| u32::try_from(count).unwrap_or(u32::MAX)).or(pending).unwrap_or(1).max(1);
        let since_ms = now_ms.saturating_sub(self.window_ms);
        let sent = inner.sent.entry(login.clone()).or_default();
        while sent.front().is_some_and(|oldest| oldest.at_ms <= since_ms) {
            sent.pop_front();
        }
        sent.push_back(Sent { at_ms: now_ms, recipients });
        Counted { login, at_ms: now_ms, recipients }
    }

    /// Writes a counted message to the state file, if there is one. Blocking I/O: call it from
    /// `spawn_blocking`. A failure is the caller's to log; the count in memory stands.
    pub fn persist(&self, counted: &Counted) -> Result<(), Error> {
        let Some(state) = &self.state else { return Ok(()) };
        let mut state = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.insert(counted, self.window_ms)
    }

    /// What `login` sent within the window.
    pub fn usage(&self, login: &str) -> Usage {
        let since_ms = self.now_ms().saturating_sub(self.window_ms);
        self.lock().usage(&login.to_ascii_lowercase(), since_ms)
    }

    fn now_ms(&self) -> i64 {
        millis_since_epoch(self.clock.now())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The counters stay consistent through a panic elsewhere: every change is one push or one removal.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    fn usage(&mut self, login: &str, since_ms: i64) -> Usage {
        let Some(sent) = self.sent.get_mut(login) else { return Usage::default() };
        while sent.front().is_some_and(|oldest| oldest.at_ms <= since_ms) {
            sent.pop_front();
        }
        if sent.is_empty() {
            self.sent.remove(login);
            return Usage::default();
        }
        Usage { messages: sent.len() as u64, recipients: sent.iter().map(|one| u64::from(one.recipients)).sum() }
    }

    fn track_pending(&mut self, instance: &str, login: &str, now_ms: i64, window_ms: i64) {
        if let Some(pending) = self.pending.get_mut(instance) {
            // Postfix never reuses an instance for another login within one session; a stranger's is a new one.
            if pending.login == login {
                pending.recipients = pending.recipients.saturating_add(1);
                return;
            }
        }
        if self.pending.len() >= MAX_PENDING {
            // Messages abandoned without END-OF-MESSAGE (RSET, a dropped connection) are forgotten first.
            let since_ms = now_ms.saturating_sub(window_ms);
            self.pending.retain(|_, pending| pending.since_ms > since_ms);
            if self.pending.len() >= MAX_PENDING {
                let oldest =
                    self.pending.iter().min_by_key(|(_, pending)| pending.since_ms).map(|(key, _)| key.clone());
                if let Some(oldest) = oldest {
                    self.pending.remove(&oldest);
                }
            }
        }
        self.pending.insert(instance.to_owned(), Pending { login: login.to_owned(), recipients: 1, since_ms: now_ms });
    }
}

impl State {
    /// Opens or creates the file, drops rows older than `since_ms` and returns the rest.
    fn open(path: &Path, since_ms: i64) -> Result<(State, Vec<Counted>), Error> {
        let fail = |what: &str, error: rusqlite::Error| {
            Error::with_source(
                ErrorKind::RateLimitState,
                format!("cannot {what} rate-limit state {}", path.display()),
                error,
            )
        };
        create_private(path)?;
        let connection = Connection::open(path).map_err(|error| fail("open", error))?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 CREATE TABLE IF NOT EXISTS sent (
                     login TEXT NOT NULL,
                     at_ms INTEGER NOT NULL,
                     recipients INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS sent_at ON sent (at_ms);",
            )
            .map_err(|error| fail("set up", error))?;
        connection
            .execute("DELETE FROM sent WHERE at_ms <= ?1", params![since_ms])
            .map_err(|error| fail("purge", error))?;
        let rows = {
            let mut statement = connection
                .prepare("SELECT login, at_ms, recipients FROM sent ORDER BY at_ms")
                .map_err(|error| fail("read", error))?;
            let rows = statement
                .query_map([], |row| Ok(Counted { login: row.get(0)?, at_ms: row.get(1)?, recipients: row.get(2)? }))
                .map_err(|error| fail("read", error))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|error| fail("read", error))?
        };
        Ok((State { connection, path: path.to_owned(), n_since_purge: 0 }, rows))
    }

    fn insert(&mut self, counted: &Counted, window_ms: i64) -> Result<(), Error> {
        let path = &self.path;
        let fail = |error: rusqlite::Error| {
            Error::with_source(
                ErrorKind::RateLimitState,
                format!("cannot write rate-limit state {}", path.display()),
                error,
            )
        };
        self.connection
            .execute(
                "INSERT INTO sent (login, at_ms, recipients) VALUES (?1, ?2, ?3)",
                params![counted.login, counted.at_ms, counted.recipients],
            )
            .map_err(fail)?;
        self.n_since_purge += 1;
        if self.n_since_purge >= PURGE_EVERY {
            self.n_since_purge = 0;
            self.connection
                .execute("DELETE FROM sent WHERE at_ms <= ?1", params![counted.at_ms.saturating_sub(window_ms)])
                .map_err(fail)?;
        }
        Ok(())
    }
}

/// Creates `path` with mode 0600 if it does not exist, and restricts it to 0600 if it does: it lists who sends how
/// much.
fn create_private(path: &Path) -> Result<(), Error> {
    let fail = |what: &str, error: std::io::Error| {
        Error::with_source(
            ErrorKind::RateLimitState,
            format!("cannot {what} rate-limit state {}", path.display()),
            error,
        )
    };
    let file =
        OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(|error| fail("create", error))?;
    let metadata = file.metadata().map_err(|error| fail("inspect", error))?;
    if metadata.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|error| fail("restrict", error))?;
    }
    Ok(())
}

fn millis_since_epoch(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        // A clock before 1970 is broken; counting from zero keeps the arithmetic sane.
        Err(_) => 0,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use couchmail_greylist::ManualClock;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn limiter(clock: &Arc<ManualClock>, path: Option<&Path>) -> RateLimiter {
        RateLimiter::open(path, HOUR, clock.clone()).unwrap()
    }

    fn clock() -> Arc<ManualClock> {
        Arc::new(ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000)))
    }

    #[test]
    fn messages_over_the_limit_wait_for_the_window() {
        let clock = clock();
        let limiter = limiter(&clock, None);
        let limits = Limits { messages: Some(2), recipients: None };
        for message_idx in 0..2 {
            let instance = format!("m{message_idx}");
            assert_eq!(limiter.check_recipient("Alice@example.com", Some(&instance), limits), RateVerdict::Allowed);
            // A second recipient of a message that already started is never refused for the message count.
            assert_eq!(limiter.check_recipient("alice@example.com", Some(&instance), limits), RateVerdict::Allowed);
            limiter.record_message("alice@example.com", Some(&instance), None);
            clock.advance(Duration::from_secs(60));
        }
        assert_eq!(limiter.usage("alice@example.com"), Usage { messages: 2, recipients: 4 });
        assert_eq!(
            limiter.check_recipient("alice@example.com", Some("m2"), limits),
            RateVerdict::TooManyMessages { sent: 2, limit: 2 }
        );
        assert_eq!(limiter.check_recipient("bob@example.com", Some("b0"), limits), RateVerdict::Allowed, "per user");
        // The first message leaves the window an hour after it was sent.
        clock.advance(HOUR - Duration::from_secs(120));
        assert_eq!(limiter.check_recipient("alice@example.com", Some("m2"), limits), RateVerdict::Allowed);
        assert_eq!(limiter.usage("alice@example.com").messages, 1);
    }

    #[test]
    fn recipients_count_across_messages_and_within_one() {
        let clock = clock();
        let limiter = limiter(&clock, None);
        let limits = Limits { messages: None, recipients: Some(3) };
        assert_eq!(limiter.check_recipient("alice@example.com", Some("m0"), limits), RateVerdict::Allowed);
        assert_eq!(limiter.check_recipient("alice@example.com", Some("m0"), limits), RateVerdict::Allowed);
        limiter.record_message("alice@example.com", Some("m0"), Some(2));
        assert_eq!(limiter.check_recipient("alice@example.com", Some("m1"), limits), RateVerdict::Allowed);
        assert_eq!(
            limiter.check_recipient("alice@example.com", Some("m1"), limits),
            RateVerdict::TooManyRecipients { sent: 3, limit: 3 }
        );
        limiter.record_message("alice@example.com", Some("m1"), None);
        assert_eq!(limiter.usage("alice@example.com"), Usage { messages: 2, recipients: 3 });
    }

    #[test]
    fn counts_survive_a_restart_within_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ratelimit.db");
        let clock = clock();
        {
            let limiter = limiter(&clock, Some(&path));
            for message_idx in 0..3 {
                let counted = limiter.record_message("alice@example.com", Some(&format!("m{message_idx}")), Some(2));
                limiter.persist(&counted).unwrap();
            }
        }
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let reopened = limiter(&clock, Some(&path));
        assert_eq!(reopened.usage("alice@example.com"), Usage { messages: 3, recipients: 6 });
        clock.advance(HOUR);
        let later = limiter(&clock, Some(&path));
        assert_eq!(later.usage("alice@example.com"), Usage::default(), "expired rows are not read back");
    }

    #[test]
    fn abandoned_messages_are_bounded() {
        let clock = clock();
        let limiter = limiter(&clock, None);
        let limits = Limits::default();
        for instance_idx in 0..MAX_PENDING + 10 {
            limiter.check_recipient("alice@example.com", Some(&format!("i{instance_idx}")), limits);
        }
        assert!(limiter.lock().pending.len() <= MAX_PENDING);
    }
}
