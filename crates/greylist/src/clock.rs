//! Where the engine reads the time: the system clock in production, a hand-moved clock in tests.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// A source of the current time.
///
/// Greylisting is all about time (a delay, a retry window, an expiry), so the engine never reads the system clock
/// itself: tests move a [`ManualClock`] instead of sleeping.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that stands still until moved, for tests and benchmarks.
///
/// ```
/// use std::time::{Duration, SystemTime};
///
/// use couchmail_greylist::{Clock, ManualClock};
///
/// let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
/// clock.advance(Duration::from_secs(300));
/// assert_eq!(clock.now(), SystemTime::UNIX_EPOCH + Duration::from_secs(300));
/// ```
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: SystemTime) -> ManualClock {
        ManualClock { now: Mutex::new(start) }
    }

    /// Moves the clock forward by `duration`.
    pub fn advance(&self, duration: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += duration;
    }

    /// Sets the clock to `time`, which may be earlier than it shows (a clock stepped back).
    pub fn set(&self, time: SystemTime) {
        *self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = time;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
