//! Login throttling: failures are counted per client address and per account,
//! and past a threshold every attempt has to wait a delay that doubles with
//! each further failure (up to a ceiling).
//!
//! While a key is waiting, attempts are refused before the password is even
//! checked, so guessing costs the attacker time and the server nothing.
//! Unknown accounts are counted like known ones, so the answer says nothing
//! about which addresses exist. Every attempt counts as a failure when it
//! starts, so that attempts sent in parallel cannot all pass before the first
//! one fails; a successful login takes its own attempt back and clears its
//! account's count (not its address's earlier failures: one valid login must
//! not buy a guesser on the same address fresh attempts at other accounts). Counts are forgotten once
//! the longest delay has passed twice over without failures.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys remembered; past it the stalest go first.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Failed logins by key (`ip:<address>`, `account:<address>`).
pub(crate) struct Throttle {
    failures: Mutex<HashMap<String, Failures>>,
    after: u32,
    base: Duration,
    max: Duration,
}

impl Throttle {
    /// Lets `after` failures pass freely, then waits `base`, doubling up to `max`.
    pub(crate) fn new(after: u32, base: Duration, max: Duration) -> Throttle {
        Throttle { failures: Mutex::new(HashMap::new()), after, base, max }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The wait imposed after `count` failures.
    fn delay(&self, count: u32) -> Duration {
        if count < self.after {
            return Duration::ZERO;
        }
        let doublings = (count - self.after).min(30);
        self.base.saturating_mul(1 << doublings).min(self.max)
    }

    /// How long the caller must still wait before trying any of `keys`, if at all.
    #[cfg(test)]
    fn wait(&self, keys: &[String]) -> Option<Duration> {
        let now = Instant::now();
        let failures = self.lock();
        keys.iter()
            .filter_map(|key| failures.get(key))
            .filter_map(|entry| (entry.last + self.delay(entry.count)).checked_duration_since(now))
            .filter(|wait| !wait.is_zero())
            .max()
    }

    /// Starts an attempt on `keys`: refused with the wait left while any of them waits, otherwise
    /// counted as a failure at once — so that attempts sent in parallel cannot all slip in before
    /// the first failure is counted — until [`Throttle::succeeded`] takes it back.
    pub(crate) fn begin(&self, keys: &[String]) -> Result<(), Duration> {
        let now = Instant::now();
        let mut failures = self.lock();
        let wait = keys
            .iter()
            .filter_map(|key| failures.get(key))
            .filter_map(|entry| (entry.last + self.delay(entry.count)).checked_duration_since(now))
            .filter(|wait| !wait.is_zero())
            .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        self.count(&mut failures, keys, now);
        Ok(())
    }

    /// Takes back the failure [`Throttle::begin`] counted for an attempt that succeeded: the account's
    /// count is cleared, each other key's lowered by one.
    pub(crate) fn succeeded(&self, account: &str, others: &[String]) {
        let mut failures = self.lock();
        failures.remove(account);
        for key in others {
            if let Some(entry) = failures.get_mut(key) {
                entry.count = entry.count.saturating_sub(1);
                if entry.count == 0 {
                    failures.remove(key);
                }
            }
        }
    }

    /// Counts a failure against each of `keys`.
    #[cfg(test)]
    fn fail(&self, keys: &[String]) {
        let now = Instant::now();
        let mut failures = self.lock();
        self.count(&mut failures, keys, now);
    }

    fn count(&self, failures: &mut HashMap<String, Failures>, keys: &[String], now: Instant) {
        if failures.len() >= MAX_KEYS {
            let forget = self.max.saturating_mul(2);
            failures.retain(|_, entry| now.duration_since(entry.last) < forget);
            if failures.len() >= MAX_KEYS
                && let Some(stalest) = failures.iter().min_by_key(|(_, entry)| entry.last).map(|(key, _)| key.clone())
            {
                failures.remove(&stalest);
            }
        }
        for key in keys {
            let entry = failures.entry(key.clone()).or_insert(Failures { count: 0, last: now });
            if now.duration_since(entry.last) >= self.max.saturating_mul(2) {
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_start_after_the_threshold_and_double() {
        let throttle = Throttle::new(3, Duration::from_secs(1), Duration::from_secs(5));
        assert_eq!(throttle.delay(2), Duration::ZERO);
        assert_eq!(throttle.delay(3), Duration::from_secs(1));
        assert_eq!(throttle.delay(4), Duration::from_secs(2));
        assert_eq!(throttle.delay(5), Duration::from_secs(4));
        assert_eq!(throttle.delay(6), Duration::from_secs(5));
        assert_eq!(throttle.delay(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn failures_count_per_key() {
        let throttle = Throttle::new(2, Duration::from_secs(60), Duration::from_secs(600));
        let keys = ["ip:192.0.2.1".to_owned(), "account:a@b.example".to_owned()];
        throttle.fail(&keys);
        assert_eq!(throttle.wait(&keys), None);
        throttle.fail(&keys);
        assert!(throttle.wait(&keys).is_some_and(|wait| wait > Duration::from_secs(50)));
        // Another address trying another account is not held up.
        assert_eq!(throttle.wait(&["ip:192.0.2.2".to_owned(), "account:c@b.example".to_owned()]), None);
        // The same account from elsewhere is.
        assert!(throttle.wait(&["ip:192.0.2.2".to_owned(), keys[1].clone()]).is_some());
        throttle.succeeded(&keys[1], &[]);
        assert!(throttle.wait(&["ip:192.0.2.2".to_owned(), keys[1].clone()]).is_none());
        assert!(throttle.wait(&keys).is_some(), "the address's count stays after a success");
    }

    #[test]
    fn parallel_attempts_are_counted_before_they_are_checked() {
        let throttle = Throttle::new(2, Duration::from_secs(60), Duration::from_secs(600));
        let keys = ["ip:192.0.2.1".to_owned(), "account:a@b.example".to_owned()];
        // Two attempts in flight at once: the third is held even though none has failed yet.
        assert!(throttle.begin(&keys).is_ok());
        assert!(throttle.begin(&keys).is_ok());
        assert!(throttle.begin(&keys).is_err());
        // A success gives its attempt back.
        throttle.succeeded(&keys[1], &keys[..1]);
        assert!(throttle.begin(&keys).is_ok());
        let other = ["ip:192.0.2.9".to_owned(), "account:c@b.example".to_owned()];
        assert!(throttle.begin(&other).is_ok());
        throttle.succeeded(&other[1], &other[..1]);
        assert_eq!(throttle.wait(&other), None);
        assert!(throttle.lock().get(&other[0]).is_none(), "a success leaves no count behind");
    }

    #[test]
    fn the_wait_runs_out() {
        let throttle = Throttle::new(1, Duration::from_millis(30), Duration::from_secs(1));
        let keys = ["ip:192.0.2.1".to_owned()];
        throttle.fail(&keys);
        assert!(throttle.wait(&keys).is_some());
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(throttle.wait(&keys), None);
    }
}
