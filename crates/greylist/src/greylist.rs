//! The engine: [`Greylist::check`] decides on one attempt and keeps the state file up to date.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tracing::warn;

use crate::clock::{Clock, SystemClock};
use crate::config::GreylistConfig;
use crate::error::Error;
use crate::state::{Counts, State};
use crate::triplet::{Attempt, Triplet, sender_domain};

/// How many records of each kind one purge step deletes, so that a purge after a flood is spread over many checks
/// instead of stalling one.
const PURGE_BATCH: i64 = 10_000;

/// What greylisting says about an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through (to the next restriction).
    Pass(PassReason),
    /// Defer it temporarily; a retry after `retry_after` will pass (if it comes within the retry window).
    Defer {
        /// How long until a retry passes.
        retry_after: Duration,
    },
}

impl Verdict {
    /// Whether the attempt passes.
    pub fn is_pass(&self) -> bool {
        matches!(self, Verdict::Pass(_))
    }
}

/// Why an attempt passed, for logs and headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassReason {
    /// The client address is in [`Allowlist::client_networks`](crate::Allowlist::client_networks).
    AllowlistedClient,
    /// The sender's domain is in [`Allowlist::sender_domains`](crate::Allowlist::sender_domains).
    AllowlistedSender,
    /// The recipient is in [`Allowlist::recipients`](crate::Allowlist::recipients).
    AllowlistedRecipient,
    /// The client network has passed [`GreylistConfig::auto_allow_after`] triplets.
    AutoAllowedClient,
    /// This is the retry that passes: the triplet was first seen `waited` ago, after the delay and within the
    /// retry window. (A header such as `X-Greylist: delayed N seconds` fits here.)
    Retried {
        /// How long after the first attempt the retry came.
        waited: Duration,
    },
    /// The triplet passed before and has not expired.
    Known,
}

/// Records deleted by a purge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PurgeStats {
    /// Pending triplets whose retry window closed.
    pub n_pending: u64,
    /// Passed triplets not seen for the pass expiry.
    pub n_passed: u64,
    /// Client networks not seen for the pass expiry.
    pub n_clients: u64,
}

/// A greylisting engine over its own state file.
///
/// Thread-safe: checks are serialised on one SQLite connection. A check on the hit path (a known triplet) is a
/// read of one row by its primary key, plus a write at most once per 1% of the pass expiry; a first sighting is
/// one insert. None of them waits for the disk (WAL with `synchronous=NORMAL`), except when SQLite checkpoints;
/// still, it is blocking I/O, so async callers should run it in `spawn_blocking`.
///
/// ```
/// use std::sync::Arc;
/// use std::time::{Duration, SystemTime};
///
/// use couchmail_greylist::{Attempt, Greylist, GreylistConfig, ManualClock, PassReason, Verdict};
///
/// let dir = tempfile::tempdir().unwrap();
/// let clock = Arc::new(ManualClock::new(SystemTime::now()));
/// let greylist = Greylist::open_with_clock(dir.path().join("greylist.db"), GreylistConfig::default(), clock.clone()).unwrap();
/// let attempt = Attempt {
///     client_address: "192.0.2.1".parse().unwrap(),
///     sender: "bob@example.net",
///     recipient: "alice@example.com",
/// };
/// assert_eq!(greylist.check(&attempt).unwrap(), Verdict::Defer { retry_after: Duration::from_secs(300) });
/// clock.advance(Duration::from_secs(600));
/// assert_eq!(greylist.check(&attempt).unwrap(), Verdict::Pass(PassReason::Retried { waited: Duration::from_secs(600) }));
/// assert_eq!(greylist.check(&attempt).unwrap(), Verdict::Pass(PassReason::Known));
/// ```
pub struct Greylist {
    config: GreylistConfig,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

struct Inner {
    state: State,
    /// Rows in `triplets`, kept in step with every insert and delete so that the cap costs no count query.
    n_triplets: u64,
    /// Rows in `clients`, likewise.
    n_clients: u64,
    /// When the next purge step is due, in milliseconds since the epoch.
    next_purge_at: i64,
}

/// The durations of the configuration in milliseconds, as stored.
#[derive(Debug, Clone, Copy)]
struct Millis {
    delay: i64,
    retry_window: i64,
    pass_expiry: i64,
    /// How stale `last_seen` may get before a hit refreshes it: 1% of the expiry, so expiry is off by at most that
    /// while hits stay read-only.
    touch_after: i64,
    purge_interval: i64,
}

impl Greylist {
    /// Opens (or creates, with mode 0600) the state file at `path`, reading time from the system clock.
    pub fn open(path: impl AsRef<Path>, config: GreylistConfig) -> Result<Greylist, Error> {
        Greylist::open_with_clock(path, config, Arc::new(SystemClock))
    }

    /// Opens (or creates, with mode 0600) the state file at `path`, reading time from `clock`.
    ///
    /// Fails on a configuration that cannot work ([`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig)),
    /// and on a file that cannot be created, opened or migrated. One engine per file: the row counts that enforce
    /// [`GreylistConfig::max_triplets`] are kept in memory.
    pub fn open_with_clock(
        path: impl AsRef<Path>,
        config: GreylistConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Greylist, Error> {
        let config = config.validated()?;
        let state = State::open(path.as_ref())?;
        let counts = state.counts()?;
        let inner = Inner {
            state,
            n_triplets: counts.n_pending + counts.n_passed,
            n_clients: counts.n_clients,
            next_purge_at: 0,
        };
        Ok(Greylist { config, clock, inner: Mutex::new(inner) })
    }

    /// The configuration in force, allowlists normalised.
    pub fn config(&self) -> &GreylistConfig {
        &self.config
    }

    /// Decides on `attempt` at the clock's current time, and records what it learnt.
    ///
    /// In order: the allowlists (no state touched), an auto-allowed client network, then the triplet:
    /// - never seen, or its previous cycle over (a pass expired, or a retry window closed): recorded as first seen
    ///   now, and deferred for the whole delay;
    /// - seen less than the delay ago: deferred for the rest of the delay (the first sighting is not moved, so a
    ///   client retrying too early is not punished);
    /// - seen between the delay and the end of the retry window ago: passes, and is remembered as passed, which
    ///   also counts towards its client network's auto-allow;
    /// - passed before and seen within the pass expiry: passes.
    ///
    /// A clock that went backwards before a triplet's first sighting starts that triplet over.
    /// Also runs a purge step when [`GreylistConfig::purge_interval`] has passed since the last one.
    pub fn check(&self, attempt: &Attempt<'_>) -> Result<Verdict, Error> {
        if let Some(reason) = self.allowlisted(attempt) {
            return Ok(Verdict::Pass(reason));
        }
        let triplet = Triplet::new(attempt, &self.config);
        let now = millis_since_epoch(self.clock.now());
        let millis = self.millis();
        let mut inner = self.lock();
        self.purge_step_if_due(&mut inner, now, millis);

        let client_network = triplet.client_network.to_cidr_string();
        let client = inner.state.client(&client_network)?;
        let client_is_current = |last_seen: i64| now.saturating_sub(last_seen) <= millis.pass_expiry;
        if let (Some(threshold), Some(client)) = (self.config.auto_allow_after, client)
            && client.n_passed >= i64::from(threshold)
            && client_is_current(client.last_seen)
        {
            if now.saturating_sub(client.last_seen) >= millis.touch_after {
                inner.state.touch_client(&client_network, now)?;
            }
            return Ok(Verdict::Pass(PassReason::AutoAllowedClient));
        }

        let key = triplet.key();
        let parts = (client_network.as_str(), triplet.sender.as_str(), triplet.recipient.as_str());
        let start_over = |inner: &mut Inner| -> Result<Verdict, Error> {
            inner.state.start_triplet(key, parts, now)?;
            Ok(Verdict::Defer { retry_after: Duration::from_millis(millis.delay.unsigned_abs()) })
        };
        let Some(row) = inner.state.triplet(key)? else {
            self.make_room_for_a_triplet(&mut inner)?;
            inner.n_triplets += 1;
            return start_over(&mut inner);
        };
        if row.passed_at.is_some() {
            let since_seen = now.saturating_sub(row.last_seen);
            if since_seen > millis.pass_expiry {
                return start_over(&mut inner);
            }
            if since_seen >= millis.touch_after {
                inner.state.touch_triplet(key, now)?;
            }
            return Ok(Verdict::Pass(PassReason::Known));
        }
        let waited = now.saturating_sub(row.first_seen);
        if waited < 0 || waited > millis.retry_window {
            return start_over(&mut inner);
        }
        if waited < millis.delay {
            return Ok(Verdict::Defer { retry_after: Duration::from_millis((millis.delay - waited).unsigned_abs()) });
        }
        if client.is_none() {
            self.make_room_for_a_client(&mut inner)?;
            inner.n_clients += 1;
        }
        inner.state.pass_triplet(key, &client_network, now, now.saturating_sub(millis.pass_expiry))?;
        Ok(Verdict::Pass(PassReason::Retried { waited: Duration::from_millis(waited.unsigned_abs()) }))
    }

    /// Deletes every expired record now, whatever the purge schedule, and returns how many went.
    pub fn purge(&self) -> Result<PurgeStats, Error> {
        let now = millis_since_epoch(self.clock.now());
        let millis = self.millis();
        let mut inner = self.lock();
        let mut total = PurgeStats::default();
        loop {
            let step = purge_step(&mut inner, now, millis)?;
            total.n_pending += step.n_pending;
            total.n_passed += step.n_passed;
            total.n_clients += step.n_clients;
            if !is_full_step(&step) {
                inner.next_purge_at = now.saturating_add(millis.purge_interval);
                return Ok(total);
            }
        }
    }

    /// How many records the state file holds.
    pub fn counts(&self) -> Result<Counts, Error> {
        self.lock().state.counts()
    }

    fn allowlisted(&self, attempt: &Attempt<'_>) -> Option<PassReason> {
        let allowlist = &self.config.allowlist;
        if allowlist.allows_client(attempt.client_address) {
            return Some(PassReason::AllowlistedClient);
        }
        if sender_domain(attempt.sender).is_some_and(|domain| allowlist.allows_sender_domain(&domain)) {
            return Some(PassReason::AllowlistedSender);
        }
        let recipient = crate::triplet::normalize_address(attempt.recipient);
        allowlist.allows_recipient(&recipient).then_some(PassReason::AllowlistedRecipient)
    }

    fn millis(&self) -> Millis {
        let config = &self.config;
        let pass_expiry = duration_millis(config.pass_expiry);
        Millis {
            delay: duration_millis(config.delay),
            retry_window: duration_millis(config.retry_window),
            pass_expiry,
            touch_after: (pass_expiry / 100).max(1),
            purge_interval: duration_millis(config.purge_interval),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves SQLite consistent (each change is one statement or transaction);
        // only the in-memory counts could be off by one, which the cap tolerates.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs one purge step if one is due. A failure is logged and does not fail the check that triggered it.
    fn purge_step_if_due(&self, inner: &mut Inner, now: i64, millis: Millis) {
        if now < inner.next_purge_at {
            return;
        }
        match purge_step(inner, now, millis) {
            // A full step leaves more to delete: the next check continues.
            Ok(step) if is_full_step(&step) => inner.next_purge_at = now,
            Ok(_) => inner.next_purge_at = now.saturating_add(millis.purge_interval),
            Err(error) => {
                warn!(%error, "greylisting purge failed; retrying at the next interval");
                inner.next_purge_at = now.saturating_add(millis.purge_interval);
            }
        }
    }

    /// Evicts the oldest triplets if the file is at [`GreylistConfig::max_triplets`].
    fn make_room_for_a_triplet(&self, inner: &mut Inner) -> Result<(), Error> {
        let max = self.config.max_triplets;
        if inner.n_triplets < max {
            return Ok(());
        }
        let n_evicted = inner.state.evict_oldest_triplets(eviction_batch(max))?;
        inner.n_triplets = inner.n_triplets.saturating_sub(n_evicted);
        warn!(max_triplets = max, n_evicted, "greylisting state full; evicted the oldest triplets, pending ones first");
        Ok(())
    }

    /// Evicts the least recently seen client networks if there are as many as [`GreylistConfig::max_triplets`].
    fn make_room_for_a_client(&self, inner: &mut Inner) -> Result<(), Error> {
        let max = self.config.max_triplets;
        if inner.n_clients < max {
            return Ok(());
        }
        let n_evicted = inner.state.evict_oldest_clients(eviction_batch(max))?;
        inner.n_clients = inner.n_clients.saturating_sub(n_evicted);
        warn!(max_clients = max, n_evicted, "greylisting client records full; evicted the least recently seen");
        Ok(())
    }
}

/// One bounded purge step.
fn purge_step(inner: &mut Inner, now: i64, millis: Millis) -> Result<PurgeStats, Error> {
    let (n_pending, n_passed, n_clients) = inner.state.delete_expired(
        now.saturating_sub(millis.retry_window),
        now.saturating_sub(millis.pass_expiry),
        PURGE_BATCH,
    )?;
    inner.n_triplets = inner.n_triplets.saturating_sub(n_pending + n_passed);
    inner.n_clients = inner.n_clients.saturating_sub(n_clients);
    if n_pending + n_passed + n_clients > 0 {
        tracing::debug!(n_pending, n_passed, n_clients, "purged expired greylisting records");
    }
    Ok(PurgeStats { n_pending, n_passed, n_clients })
}

fn is_full_step(step: &PurgeStats) -> bool {
    let batch = PURGE_BATCH.unsigned_abs();
    step.n_pending == batch || step.n_passed == batch || step.n_clients == batch
}

/// How many rows to evict at once at the cap: 1% of it, so that a flood pays for eviction once per hundredth of
/// the cap rather than on every insert.
fn eviction_batch(max: u64) -> i64 {
    i64::try_from((max / 100).max(1)).unwrap_or(i64::MAX)
}

fn millis_since_epoch(time: SystemTime) -> i64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => duration_millis(since),
        Err(before) => duration_millis(before.duration()).saturating_neg(),
    }
}

fn duration_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
