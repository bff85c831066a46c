//! The stack's processes as the web UI and `GET /api/v1/status` show them: the
//! daemons couchmail supervises (Postfix, Dovecot, SpamAssassin's) and
//! couchmail's own listeners.
//!
//! This crate does not run daemons and does not depend on the supervisor:
//! the binary that runs them implements [`StackStatus`] over its supervisor
//! and hands it over in [`ApiState::stack`](crate::ApiState::stack), so the
//! types here are the whole boundary between the two.

use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

/// What the process serving the API knows of the stack around it.
///
/// Called on every dashboard view and `GET /api/v1/status`, so it should
/// answer from memory, without waiting on a daemon.
pub trait StackStatus: Send + Sync {
    /// The daemons this process supervises, in start order; `None` when it
    /// supervises none (`couchmail up --no-daemons`: they run elsewhere).
    fn daemons(&self) -> Option<Vec<DaemonHealth>>;

    /// couchmail's own listeners (REST API, ManageSieve, the sockets the daemons use).
    fn listeners(&self) -> Vec<ListenerInfo>;
}

/// One supervised daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonHealth {
    /// Its short name, stable for programs (`postfix`, `dovecot`, `spamd`, `spamass-milter`).
    pub name: String,
    /// What it does, for people (`Postfix: SMTP and submission`).
    pub description: String,
    /// What it is doing now.
    pub state: DaemonState,
    /// How many times it was restarted since start.
    pub restarts: u32,
}

/// What a supervised daemon is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonState {
    /// Not started yet.
    Starting,
    /// Running.
    Running {
        /// Its process id.
        pid: u32,
        /// How long it has been running, when known.
        uptime: Option<Duration>,
    },
    /// It exited and is restarted after a backoff.
    Restarting {
        /// How it ended, as text (`exit status: 1`, `signal: 9 (SIGKILL)`).
        last_exit: String,
    },
    /// Stopped (couchmail is shutting down).
    Stopped,
}

impl DaemonState {
    /// The state as one word: `starting`, `running`, `restarting` or `stopped`.
    pub fn label(&self) -> &'static str {
        match self {
            DaemonState::Starting => "starting",
            DaemonState::Running { .. } => "running",
            DaemonState::Restarting { .. } => "restarting",
            DaemonState::Stopped => "stopped",
        }
    }
}

/// One of couchmail's own listeners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ListenerInfo {
    /// What it serves (`REST API and web UI`, `ManageSieve`, `socketmap for Postfix`).
    pub name: String,
    /// Where: `host:port`, or a unix socket's path.
    pub address: String,
}

/// A supervised daemon, as `GET /api/v1/status` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DaemonView {
    /// Its short name (`postfix`, `dovecot`, `spamd`, `spamass-milter`).
    pub name: String,
    /// What it does.
    pub description: String,
    /// `starting`, `running`, `restarting` or `stopped`.
    pub state: String,
    /// The process id, while running.
    pub pid: Option<u32>,
    /// Seconds since it started, while running and when known.
    pub uptime_seconds: Option<u64>,
    /// How it last ended, while restarting.
    pub last_exit: Option<String>,
    /// How many times it was restarted since start.
    pub restarts: u32,
}

impl From<&DaemonHealth> for DaemonView {
    fn from(daemon: &DaemonHealth) -> DaemonView {
        let (pid, uptime_seconds, last_exit) = match &daemon.state {
            DaemonState::Running { pid, uptime } => (Some(*pid), uptime.map(|uptime| uptime.as_secs()), None),
            DaemonState::Restarting { last_exit } => (None, None, Some(last_exit.clone())),
            DaemonState::Starting | DaemonState::Stopped => (None, None, None),
        };
        DaemonView {
            name: daemon.name.clone(),
            description: daemon.description.clone(),
            state: daemon.state.label().to_owned(),
            pid,
            uptime_seconds,
            last_exit,
            restarts: daemon.restarts,
        }
    }
}

/// A duration as people read it on the dashboard: `42 s`, `5 min 3 s`, `2 h 10 min`, `3 d 4 h`.
pub(crate) fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3_600 % 24, seconds / 60 % 60);
    if days > 0 {
        format!("{days} d {hours} h")
    } else if seconds >= 3_600 {
        format!("{hours} h {minutes} min")
    } else if seconds >= 60 {
        format!("{minutes} min {} s", seconds % 60)
    } else {
        format!("{seconds} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_carries_what_each_state_knows() {
        let running = DaemonHealth {
            name: "postfix".to_owned(),
            description: "Postfix".to_owned(),
            state: DaemonState::Running { pid: 42, uptime: Some(Duration::from_millis(61_500)) },
            restarts: 1,
        };
        let view = DaemonView::from(&running);
        assert_eq!(
            (view.state.as_str(), view.pid, view.uptime_seconds, view.last_exit),
            ("running", Some(42), Some(61), None)
        );
        let restarting = DaemonHealth {
            state: DaemonState::Restarting { last_exit: "exit status: 1".to_owned() },
            restarts: 3,
            ..running
        };
        let view = DaemonView::from(&restarting);
        assert_eq!(view.state, "restarting");
        assert_eq!((view.pid, view.last_exit.as_deref(), view.restarts), (None, Some("exit status: 1"), 3));
    }

    #[test]
    fn durations_read_in_their_largest_units() {
        assert_eq!(human_duration(Duration::from_secs(42)), "42 s");
        assert_eq!(human_duration(Duration::from_secs(303)), "5 min 3 s");
        assert_eq!(human_duration(Duration::from_secs(2 * 3_600 + 10 * 60 + 5)), "2 h 10 min");
        assert_eq!(human_duration(Duration::from_secs(3 * 86_400 + 4 * 3_600)), "3 d 4 h");
    }
}
