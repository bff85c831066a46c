//! The stack's health as the web UI's dashboard and `GET /api/v1/status` show
//! it: the supervisor's daemons converted to `couchmail-web`'s
//! [`StackStatus`] types (the web crate does not know the supervisor), and
//! couchmail's own listeners as `up` binds them.
//!
//! The supervisor reports a pid but not when the process started, so a
//! watcher ([`StackHealth::watch`]) notes every new pid once a second; a
//! daemon's uptime is counted from then, at most a second short.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use couchmail_supervisor::{State, Status, Supervisor};
use couchmail_web::{DaemonHealth, DaemonState, ListenerInfo, StackStatus};

/// How often the watcher looks for daemons that (re)started.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// What `up` runs, as the API reports it.
pub struct StackHealth {
    /// The daemons' supervisor; `None` under `--no-daemons` (they run elsewhere).
    supervisor: Option<Supervisor>,
    /// couchmail's own listeners, in the order they were bound.
    listeners: Mutex<Vec<ListenerInfo>>,
    /// When each daemon's current pid was first seen, by daemon name.
    started: Mutex<HashMap<String, (u32, Instant)>>,
}

impl StackHealth {
    /// The health of a stack whose daemons `supervisor` runs (none without one).
    pub fn new(supervisor: Option<Supervisor>) -> StackHealth {
        StackHealth { supervisor, listeners: Mutex::default(), started: Mutex::default() }
    }

    /// Adds one of couchmail's listeners: `name` serves at `address`.
    pub fn add_listener(&self, name: &str, address: impl std::fmt::Display) {
        if let Ok(mut listeners) = self.listeners.lock() {
            listeners.push(ListenerInfo { name: name.to_owned(), address: address.to_string() });
        }
    }

    /// Notes the start of every daemon whose pid is new, once a second, until `stopped` completes.
    pub async fn watch(&self, stopped: impl Future<Output = ()>) {
        let Some(supervisor) = &self.supervisor else { return stopped.await };
        tokio::pin!(stopped);
        loop {
            self.observe(&supervisor.status(), Instant::now());
            tokio::select! {
                () = &mut stopped => return,
                () = tokio::time::sleep(WATCH_INTERVAL) => {}
            }
        }
    }

    /// Records `now` as the start of every running daemon whose pid was not seen before.
    fn observe(&self, statuses: &[Status], now: Instant) {
        let Ok(mut started) = self.started.lock() else { return };
        for status in statuses {
            if let State::Running { pid } = status.state {
                let seen = started.get(&status.name).is_some_and(|(seen_pid, _)| *seen_pid == pid);
                if !seen {
                    started.insert(status.name.clone(), (pid, now));
                }
            }
        }
    }

    /// The daemons at `now`.
    fn daemons_at(&self, now: Instant) -> Option<Vec<DaemonHealth>> {
        let supervisor = self.supervisor.as_ref()?;
        let statuses = supervisor.status();
        self.observe(&statuses, now);
        let started = self.started.lock().map(|started| started.clone()).unwrap_or_default();
        Some(statuses.iter().map(|status| health(status, &started, now)).collect())
    }
}

impl StackStatus for StackHealth {
    fn daemons(&self) -> Option<Vec<DaemonHealth>> {
        self.daemons_at(Instant::now())
    }

    fn listeners(&self) -> Vec<ListenerInfo> {
        self.listeners.lock().map(|listeners| listeners.clone()).unwrap_or_default()
    }
}

/// One daemon's supervisor status in the web crate's terms; `started` holds when each pid was first seen.
fn health(status: &Status, started: &HashMap<String, (u32, Instant)>, now: Instant) -> DaemonHealth {
    let state = match &status.state {
        State::Pending => DaemonState::Starting,
        State::Running { pid } => {
            let uptime = started
                .get(&status.name)
                .filter(|(seen_pid, _)| seen_pid == pid)
                .map(|(_, since)| now.saturating_duration_since(*since));
            DaemonState::Running { pid: *pid, uptime }
        }
        State::Restarting { last_exit } => DaemonState::Restarting { last_exit: last_exit.clone() },
        State::Stopped => DaemonState::Stopped,
    };
    DaemonHealth {
        name: status.name.clone(),
        description: description(&status.name).to_owned(),
        state,
        restarts: status.restarts,
    }
}

/// What each daemon `up` supervises does, for people.
fn description(name: &str) -> &'static str {
    match name {
        "postfix" => "Postfix: SMTP, submission and the queue",
        "dovecot" => "Dovecot: IMAP, LMTP delivery, Sieve and authentication",
        "spamd" => "SpamAssassin: scores incoming mail",
        "spamass-milter" => "spamass-milter: SpamAssassin for Postfix at SMTP time",
        _ => "a supervised daemon",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str, state: State, restarts: u32) -> Status {
        Status { name: name.to_owned(), state, restarts }
    }

    #[test]
    fn every_supervisor_state_has_its_web_state() {
        let start = Instant::now();
        let health_of = StackHealth::new(None);
        let statuses = [
            status("spamd", State::Pending, 0),
            status("postfix", State::Running { pid: 10 }, 0),
            status("dovecot", State::Restarting { last_exit: "exit status: 1".to_owned() }, 2),
            status("spamass-milter", State::Stopped, 0),
        ];
        health_of.observe(&statuses, start);
        let started = health_of.started.lock().unwrap().clone();
        let later = start + Duration::from_secs(90);
        let converted: Vec<DaemonHealth> = statuses.iter().map(|status| health(status, &started, later)).collect();
        assert_eq!(converted[0].state, DaemonState::Starting);
        assert_eq!(converted[1].state, DaemonState::Running { pid: 10, uptime: Some(Duration::from_secs(90)) });
        assert!(converted[1].description.starts_with("Postfix"));
        assert_eq!(converted[2].state, DaemonState::Restarting { last_exit: "exit status: 1".to_owned() });
        assert_eq!(converted[2].restarts, 2);
        assert_eq!(converted[3].state, DaemonState::Stopped);
    }

    #[test]
    fn a_restarted_daemon_counts_its_uptime_from_its_new_pid() {
        let start = Instant::now();
        let health_of = StackHealth::new(None);
        health_of.observe(&[status("postfix", State::Running { pid: 10 }, 0)], start);
        // Seen again with the same pid: still counted from the first sighting.
        health_of.observe(&[status("postfix", State::Running { pid: 10 }, 0)], start + Duration::from_secs(5));
        let restarted = status("postfix", State::Running { pid: 11 }, 1);
        let started = health_of.started.lock().unwrap().clone();
        // A pid not yet noted has no uptime rather than the old one's.
        assert_eq!(
            health(&restarted, &started, start + Duration::from_secs(9)).state,
            DaemonState::Running { pid: 11, uptime: None }
        );
        health_of.observe(std::slice::from_ref(&restarted), start + Duration::from_secs(10));
        let started = health_of.started.lock().unwrap().clone();
        assert_eq!(
            health(&restarted, &started, start + Duration::from_secs(12)).state,
            DaemonState::Running { pid: 11, uptime: Some(Duration::from_secs(2)) }
        );
    }

    #[test]
    fn without_a_supervisor_the_daemons_run_elsewhere_and_listeners_are_kept_in_order() {
        let health_of = StackHealth::new(None);
        assert_eq!(health_of.daemons(), None);
        health_of.add_listener("REST API and web UI", "127.0.0.1:8025");
        health_of.add_listener("ManageSieve", "127.0.0.1:4190");
        let names: Vec<String> = health_of.listeners().into_iter().map(|listener| listener.name).collect();
        assert_eq!(names, ["REST API and web UI", "ManageSieve"]);
    }

    #[test]
    fn a_supervisor_not_yet_running_reports_no_daemons_rather_than_none() {
        let health_of = StackHealth::new(Some(Supervisor::default()));
        assert_eq!(health_of.daemons(), Some(Vec::new()));
    }
}
