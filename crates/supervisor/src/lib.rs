//! Starts the mail daemons, restarts them with backoff when they die, and
//! stops them cleanly.
//!
//! Each daemon is described by a [`ProcessSpec`] and runs in the foreground
//! (`postfix start-fg`, `dovecot -F`) in a process group of its own, so that
//! stopping it reaches every process it forked and leaves no orphans; a
//! descendant that moved to a session of its own (Postfix's `master` under
//! `postfix start-fg`) is found through `/proc` and stopped with it.
//! [`Supervisor::run`] starts the daemons in order, restarts any that exits
//! (waiting 1 s, then twice as long each time, up to a minute; a daemon that
//! ran for a minute starts over at 1 s; what the dead one left behind gets the
//! stop timeout to finish on its own, then the stop signal, then SIGKILL), and on shutdown stops them in
//! reverse order: the stop signal to the whole group, then SIGKILL after a
//! grace period.
//!
//! [`spamd_daemon`] and [`spamass_milter_daemon`] describe SpamAssassin's daemons (docs/spam.md).
//!
//! [`Sievec`] runs Pigeonhole's compiler to check a Sieve script before it is stored,
//! and to compile the global scripts couchmail renders.
//! The [`system`] module runs the one-shot tools around the daemons: package
//! installation, the `vmail` user, `postfix check`, stopping daemons left by
//! an unclean stop, and flushing Dovecot's auth cache.
//!
//! Architecture Invariant: this crate is the only one that spawns processes
//! (ARCHITECTURE.md), daemons and one-shot tools alike.
//!
//! # Security
//! Runs daemons with the privileges of the caller (root under
//! `couchmail up`): the daemons drop their own privileges.
//! Secrets are never put in argv or the environment of a daemon.
#![deny(missing_docs)]

mod sievec;
mod spam;
pub mod system;

pub use sievec::{SieveCheckError, Sievec};
pub use spam::{SPAM_DEBIAN_PACKAGES, SpamassMilterOptions, SpamdOptions, spamass_milter_daemon, spamd_daemon};

use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// First wait before restarting a daemon that exited.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A daemon that ran this long is healthy again: its next restart waits [`FIRST_BACKOFF`].
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// How to run one daemon.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// A short name for logs and status (`postfix`, `dovecot`).
    pub name: String,
    /// The program to run.
    pub program: PathBuf,
    /// Its arguments (never secrets: argv is world-readable).
    pub args: Vec<OsString>,
    /// Where its standard output and error go; `None` discards them.
    pub log_file: Option<PathBuf>,
    /// The signal that asks it to stop.
    pub stop_signal: StopSignal,
    /// How long to wait after the stop signal before SIGKILL.
    pub stop_timeout: Duration,
}

/// The signal a daemon stops on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGTERM: Postfix's master and Dovecot stop their children and exit.
    Term,
    /// SIGINT.
    Int,
}

impl StopSignal {
    fn signal(self) -> Signal {
        match self {
            StopSignal::Term => Signal::TERM,
            StopSignal::Int => Signal::INT,
        }
    }
}

/// What a supervised daemon is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not started yet.
    Pending,
    /// Running with this process id.
    Running {
        /// The process id (also its process group id).
        pid: u32,
    },
    /// Exited; restarting after a backoff.
    Restarting {
        /// How it ended, as text.
        last_exit: String,
    },
    /// Stopped by shutdown.
    Stopped,
}

/// The state of one daemon, as [`Supervisor::status`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The daemon's name.
    pub name: String,
    /// What it is doing.
    pub state: State,
    /// How many times it was restarted.
    pub restarts: u32,
}

/// Runs daemons and keeps them running.
#[derive(Clone, Default)]
pub struct Supervisor {
    status: Arc<Mutex<Vec<Status>>>,
}

impl Supervisor {
    /// What every daemon is doing now.
    pub fn status(&self) -> Vec<Status> {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Starts `specs` in order and supervises them until `shutdown`
    /// completes, then stops them in reverse order. Returns once all are stopped.
    ///
    /// A daemon that cannot even be spawned (program missing) is an error
    /// at start; later failures are logged and retried.
    pub async fn run(&self, specs: Vec<ProcessSpec>, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        if let Ok(mut status) = self.status.lock() {
            *status = specs
                .iter()
                .map(|spec| Status { name: spec.name.clone(), state: State::Pending, restarts: 0 })
                .collect();
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for (spec_idx, spec) in specs.into_iter().enumerate() {
            // Spawn the first instance here so that a missing program fails `run` at once.
            let child = spawn(&spec)?;
            self.set_state(spec_idx, State::Running { pid: child.id().unwrap_or(0) });
            let keeper = Keeper { spec, spec_idx, supervisor: self.clone(), stop: stop_rx.clone() };
            tasks.push(tokio::spawn(keeper.keep(child)));
        }
        shutdown.await;
        let _ = stop_tx.send(true);
        // Stop in reverse order of start: Postfix before Dovecot before couchmail's own servers.
        for task in tasks.into_iter().rev() {
            let _ = task.await;
        }
        Ok(())
    }

    fn set_state(&self, spec_idx: usize, state: State) {
        if let Ok(mut status) = self.status.lock()
            && let Some(entry) = status.get_mut(spec_idx)
        {
            if matches!(state, State::Restarting { .. }) {
                entry.restarts += 1;
            }
            entry.state = state;
        }
    }
}

/// Keeps one daemon running.
struct Keeper {
    spec: ProcessSpec,
    spec_idx: usize,
    supervisor: Supervisor,
    stop: watch::Receiver<bool>,
}

impl Keeper {
    async fn keep(mut self, first: Child) {
        // Groups that dead leaders left behind, each ended by a task of its own (below).
        let mut leftovers = tokio::task::JoinSet::new();
        let mut running = first;
        let mut backoff = FIRST_BACKOFF;
        'supervise: loop {
            let started = Instant::now();
            let pid = running.id();
            let exit = tokio::select! {
                exit = running.wait() => exit,
                () = stop_requested(&mut self.stop) => {
                    stop_child(&self.spec, running).await;
                    break 'supervise;
                }
            };
            let last_exit = match exit {
                Ok(status) => status.to_string(),
                Err(err) => format!("cannot wait for it: {err}"),
            };
            // Whatever the group leader left behind goes with it, in the background: the
            // daemon restarts meanwhile.
            if let Some(pid) = pid {
                leftovers.spawn(end_leftovers(self.spec.clone(), pid, self.stop.clone()));
            }
            if started.elapsed() >= HEALTHY_AFTER {
                backoff = FIRST_BACKOFF;
            }
            tracing::warn!(daemon = %self.spec.name, %last_exit, restart_in = ?backoff, "daemon exited; restarting");
            self.supervisor.set_state(self.spec_idx, State::Restarting { last_exit });
            running = loop {
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop_requested(&mut self.stop) => break 'supervise,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                match spawn(&self.spec) {
                    Ok(next) => break next,
                    Err(err) => {
                        tracing::error!(daemon = %self.spec.name, %err, retry_in = ?backoff, "cannot start daemon");
                        self.supervisor.set_state(self.spec_idx, State::Restarting { last_exit: err.to_string() });
                    }
                }
            };
            self.supervisor.set_state(self.spec_idx, State::Running { pid: running.id().unwrap_or(0) });
        }
        while leftovers.join_next().await.is_some() {}
        self.supervisor.set_state(self.spec_idx, State::Stopped);
    }
}

/// Completes once shutdown is asked for (or the supervisor is gone).
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, so the caller's future stays `Send`.
    let _ = stop.wait_for(|stop| *stop).await;
}

fn spawn(spec: &ProcessSpec) -> std::io::Result<Child> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args).stdin(Stdio::null()).process_group(0).kill_on_drop(false);
    match &spec.log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
            cmd.stdout(file.try_clone()?).stderr(file);
        }
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    let child = cmd.spawn().map_err(|err| {
        std::io::Error::new(err.kind(), format!("cannot start {} ({}): {err}", spec.name, spec.program.display()))
    })?;
    tracing::info!(daemon = %spec.name, pid = child.id(), "started");
    Ok(child)
}

/// Asks the daemon's process group to stop, and kills it after the grace period.
///
/// A daemon may move some of its processes into a process group of their
/// own: `postfix start-fg` runs a shell whose child, Postfix's `master`,
/// calls `setsid`. Those groups are found by walking the process tree below
/// the daemon before signalling, and get the same signals, so that stopping
/// the shell does not orphan the master and its children.
async fn stop_child(spec: &ProcessSpec, mut child: Child) {
    let Some(pid) = child.id() else { return };
    let groups: Vec<u32> = std::iter::once(pid).chain(descendant_groups(pid)).collect();
    for group in &groups {
        signal_group(*group, spec.stop_signal.signal());
    }
    let deadline = tokio::time::Instant::now() + spec.stop_timeout;
    let stopped = async {
        let _ = child.wait().await;
        while groups.iter().any(|group| group_alive(*group)) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    match tokio::time::timeout_at(deadline, stopped).await {
        Ok(()) => tracing::info!(daemon = %spec.name, "stopped"),
        Err(_) => tracing::warn!(daemon = %spec.name, timeout = ?spec.stop_timeout, "did not stop in time; killing it"),
    }
    // Children that outlived their leader, or a leader that ignored the signal.
    for group in &groups {
        signal_group(*group, Signal::KILL);
    }
    let _ = child.wait().await;
}

/// Ends what is left of process group `pgid` after its leader exited.
///
/// The processes are first left alone for the daemon's stop timeout: they notice their
/// leader's death and finish what they serve (Dovecot's LMTP processes end their deliveries),
/// whereas a signal can cut a delivery between saving the message and answering Postfix, which
/// then delivers it again. Then the stop signal, and SIGKILL after the stop timeout again.
/// A shutdown of the supervisor skips the wait.
async fn end_leftovers(spec: ProcessSpec, pgid: u32, mut stop: watch::Receiver<bool>) {
    let emptied = || async {
        while group_alive(pgid) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        finished = tokio::time::timeout(spec.stop_timeout, emptied()) => {
            if finished.is_ok() {
                return;
            }
        }
        () = stop_requested(&mut stop) => {}
    }
    signal_group(pgid, spec.stop_signal.signal());
    if tokio::time::timeout(spec.stop_timeout, emptied()).await.is_err() {
        tracing::warn!(daemon = %spec.name, timeout = ?spec.stop_timeout, "processes the daemon left behind did not stop; killing them");
    }
    signal_group(pgid, Signal::KILL);
}

/// The process groups led by descendants of `root` that left `root`'s group
/// (by `setsid` or `setpgid`), read from `/proc`.
fn descendant_groups(root: u32) -> Vec<u32> {
    let processes = processes();
    let mut below = vec![root];
    let mut groups = Vec::new();
    let mut next_idx = 0;
    while let Some(&parent) = below.get(next_idx) {
        next_idx += 1;
        for &(pid, _, ppid, pgid) in &processes {
            if ppid == parent && !below.contains(&pid) {
                below.push(pid);
                if pgid != root && !groups.contains(&pgid) {
                    groups.push(pgid);
                }
            }
        }
    }
    groups
}

/// State, parent pid and process group from the text of `/proc/PID/stat`
/// (`pid (comm) state ppid pgrp …`; the command may hold spaces and parentheses).
fn parse_stat(stat: &str) -> Option<(char, u32, u32)> {
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    Some((state, ppid, pgid))
}

/// (pid, state, parent pid, process group) of every process, from `/proc`.
fn processes() -> Vec<(u32, char, u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            parse_stat(&stat).map(|(state, ppid, pgid)| (pid, state, ppid, pgid))
        })
        .collect()
}

/// Whether a live (not zombie) process of group `pgid` is left.
fn group_alive(pgid: u32) -> bool {
    processes().iter().any(|&(_, state, _, group)| group == pgid && state != 'Z')
}

fn signal_group(pid: u32, signal: Signal) {
    let Some(pgid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else { return };
    // ESRCH (the group is already gone) is the expected outcome after a clean exit.
    let _ = rustix::process::kill_process_group(pgid, signal);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names() {
        assert_eq!(parse_stat("42 (master) S 7 42 42 0 -1"), Some(('S', 7, 42)));
        assert_eq!(parse_stat("43 (a b) (c)) Z 1 9 9"), Some(('Z', 1, 9)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_in_its_group() {
        let (_, _, pgid) = parse_stat(&std::fs::read_to_string("/proc/self/stat").unwrap()).unwrap();
        assert!(group_alive(pgid));
        assert!(descendant_groups(u32::MAX - 1).is_empty());
    }
}
