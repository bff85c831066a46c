//! Postfix and Dovecot under the supervisor: preparing them, starting them,
//! waiting until they answer, and keeping Dovecot's auth cache in step with
//! the index.
//!
//! Both run in the foreground (`postfix start-fg`, `dovecot -F`) with their
//! output appended to their log files in the log directory, where their own
//! logging goes too. An earlier `up` that died without stopping them leaves
//! them running with our ports; they are found through their pid files and
//! stopped before anything starts.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use couchmail_index::Index;
use couchmail_lookup::{Flush, users_to_flush};
use couchmail_render::{Listen, Stack};
use couchmail_supervisor::system::{self, Leftover, find_program};
use couchmail_supervisor::{ProcessSpec, StopSignal};
use tokio::sync::broadcast::error::RecvError;

/// How long Postfix and Dovecot get to open their ports.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long each daemon gets to stop before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Dovecot's auth cache is flushed at most this often; changes in between are batched.
const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// How many lines of a log `up` shows when a daemon does not start.
const LOG_TAIL_LINES: usize = 20;

/// The Debian packages `up` needs.
pub const DEBIAN_PACKAGES: &[&str] =
    &["postfix", "dovecot-core", "dovecot-imapd", "dovecot-lmtpd", "dovecot-sieve", "dovecot-auth-lua"];

/// How the supervisor runs Postfix and Dovecot for `stack`.
pub fn specs(stack: &Stack) -> Vec<ProcessSpec> {
    let paths = &stack.paths;
    vec![
        ProcessSpec {
            name: "postfix".to_owned(),
            program: find_program("postfix"),
            args: vec!["-c".into(), paths.postfix_config_dir().into_os_string(), "start-fg".into()],
            log_file: Some(paths.postfix_log.clone()),
            stop_signal: StopSignal::Term,
            stop_timeout: STOP_TIMEOUT,
        },
        ProcessSpec {
            name: "dovecot".to_owned(),
            program: find_program("dovecot"),
            args: vec![OsString::from("-F"), "-c".into(), paths.dovecot_config_file().into_os_string()],
            log_file: Some(paths.dovecot_log.clone()),
            stop_signal: StopSignal::Term,
            stop_timeout: STOP_TIMEOUT,
        },
    ]
}

/// The daemons an earlier run of `stack` may have left behind.
pub fn leftovers(stack: &Stack) -> [Leftover; 2] {
    let paths = &stack.paths;
    [
        Leftover::Postfix {
            pid_file: paths.postfix_queue_dir.join("pid/master.pid"),
            config_dir: paths.postfix_config_dir(),
        },
        Leftover::Dovecot {
            pid_file: paths.dovecot_base_dir.join("master.pid"),
            config_file: paths.dovecot_config_file(),
        },
    ]
}

/// Stops what an earlier run left behind; answers how many were running.
pub async fn stop_leftovers(stack: &Stack) -> usize {
    let mut n_stopped = 0;
    // SpamAssassin's daemons (none when spam is off) are stopped with Postfix's and Dovecot's.
    for leftover in leftovers(stack).into_iter().chain(couchmail_spam::leftovers(stack)) {
        match system::stop_leftover(&leftover).await {
            Ok(true) => n_stopped += 1,
            Ok(false) => {}
            Err(err) => tracing::warn!(%err, "cannot stop a daemon left by an earlier run"),
        }
    }
    n_stopped
}

/// The addresses to try for the SMTP and IMAPS ports: loopback when the
/// daemons listen everywhere.
pub fn probe_addresses(stack: &Stack) -> Vec<(&'static str, SocketAddr)> {
    let host = match stack.listen {
        Listen::AllInterfaces => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Listen::Address(address) => address,
    };
    vec![
        ("Postfix (SMTP)", SocketAddr::new(host, stack.ports.smtp)),
        ("Dovecot (IMAPS)", SocketAddr::new(host, stack.ports.imaps)),
    ]
}

/// Fails naming the first public port that another program already uses,
/// so that a busy port is reported at once instead of as a daemon that
/// never answers (or, worse, someone else answering in its place).
pub fn check_ports_free(stack: &Stack) -> Result<(), String> {
    let host = match stack.listen {
        Listen::AllInterfaces => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Listen::Address(address) => address,
    };
    let ports = &stack.ports;
    for (key, port) in [
        ("mail.smtp_port", ports.smtp),
        ("mail.submission_port", ports.submission),
        ("mail.submissions_port", ports.submissions),
        ("mail.imaps_port", ports.imaps),
    ] {
        let address = SocketAddr::new(host, port);
        if let Err(err) = std::net::TcpListener::bind(address) {
            return Err(format!("cannot use {address} ({key}): {err}"));
        }
    }
    Ok(())
}

/// Waits until every address accepts a connection; on timeout answers the
/// names of those that did not.
pub async fn wait_for_ports(addresses: &[(&'static str, SocketAddr)], timeout: Duration) -> Result<(), Vec<String>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut waiting: Vec<(&'static str, SocketAddr)> = addresses.to_vec();
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for (name, address) in waiting {
            let connect = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(address)).await;
            if !matches!(connect, Ok(Ok(_))) {
                still.push((name, address));
            }
        }
        waiting = still;
        if waiting.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(waiting.iter().map(|(name, address)| format!("{name} on {address}")).collect());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The last lines of a log file, or a note that there is none.
pub fn log_tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
            format!("--- last lines of {} ---\n{tail}", path.display())
        }
        Err(err) => format!("--- {}: {err} ---", path.display()),
    }
}

/// Keeps Dovecot's auth cache in step with the index: after every batch of
/// changes, `doveadm auth cache flush` for the users it touched (everyone
/// when a domain changed or changes were missed), at most every
/// [`FLUSH_INTERVAL`], so that a new password or a disabled mailbox counts
/// at once. Runs until `stopped` completes.
pub async fn flush_auth_cache(index: Arc<Index>, dovecot_conf: PathBuf, stopped: impl Future<Output = ()>) {
    let mut changes = index.subscribe_changes();
    tokio::pin!(stopped);
    loop {
        let first = tokio::select! {
            () = &mut stopped => return,
            received = changes.recv() => received,
        };
        let mut changed_ids: Vec<String> = Vec::new();
        let mut everyone = false;
        match first {
            Ok(batch) => changed_ids.extend(batch.iter().cloned()),
            Err(RecvError::Lagged(_)) => everyone = true,
            Err(RecvError::Closed) => return,
        }
        // Gather what else arrives within the interval into the same flush.
        tokio::select! {
            () = &mut stopped => return,
            () = tokio::time::sleep(FLUSH_INTERVAL) => {}
        }
        loop {
            match changes.try_recv() {
                Ok(batch) => changed_ids.extend(batch.iter().cloned()),
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => everyone = true,
                Err(_) => break,
            }
        }
        let users = if everyone {
            Vec::new()
        } else {
            match users_to_flush(&changed_ids) {
                Flush::All => Vec::new(),
                Flush::Users(users) if users.is_empty() => continue,
                Flush::Users(users) => users,
            }
        };
        match system::dovecot_auth_cache_flush(&dovecot_conf, &users).await {
            Ok(()) => tracing::debug!(?users, "flushed Dovecot's auth cache"),
            Err(err) => tracing::warn!(%err, "cannot flush Dovecot's auth cache; old logins may work until it expires"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_run_both_in_the_foreground_with_the_rendered_files() {
        let stack = Stack::dev("/srv/cm");
        let specs = specs(&stack);
        assert_eq!(specs[0].name, "postfix");
        assert_eq!(specs[0].args, ["-c", "/srv/cm/run/postfix", "start-fg"].map(OsString::from));
        assert_eq!(specs[0].log_file.as_deref(), Some(Path::new("/srv/cm/log/postfix.log")));
        assert_eq!(specs[1].name, "dovecot");
        assert_eq!(specs[1].args, ["-F", "-c", "/srv/cm/run/dovecot/dovecot.conf"].map(OsString::from));
    }

    #[test]
    fn leftovers_are_found_by_the_daemons_pid_files() {
        let stack = Stack::dev("/srv/cm");
        let [postfix, dovecot] = leftovers(&stack);
        assert!(
            matches!(postfix, Leftover::Postfix { pid_file, .. } if pid_file == Path::new("/srv/cm/postfix/spool/pid/master.pid"))
        );
        assert!(
            matches!(dovecot, Leftover::Dovecot { pid_file, .. } if pid_file == Path::new("/srv/cm/run/dovecot/base/master.pid"))
        );
    }

    #[test]
    fn probes_go_to_loopback_when_listening_everywhere() {
        let mut stack = Stack::production();
        assert_eq!(probe_addresses(&stack)[0].1, "127.0.0.1:25".parse().unwrap());
        stack.listen = Listen::Address("::1".parse().unwrap());
        assert_eq!(probe_addresses(&stack)[1].1, "[::1]:993".parse().unwrap());
    }

    #[test]
    fn a_busy_port_is_named_with_its_key() {
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut stack = Stack::dev("/srv/cm");
        stack.ports.imaps = busy.local_addr().unwrap().port();
        let err = check_ports_free(&stack).unwrap_err();
        assert!(err.contains("mail.imaps_port"), "{err}");
    }

    #[tokio::test]
    async fn waiting_for_ports_names_the_silent_ones() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        let closed = {
            let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            probe.local_addr().unwrap()
        };
        wait_for_ports(&[("open", open)], Duration::from_secs(1)).await.unwrap();
        let silent = wait_for_ports(&[("open", open), ("closed", closed)], Duration::from_millis(300)).await;
        assert_eq!(silent.unwrap_err(), vec![format!("closed on {closed}")]);
    }

    #[test]
    fn log_tail_shows_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("postfix.log");
        let text: String = (0..30).map(|n| format!("line {n}\n")).collect();
        std::fs::write(&log, text).unwrap();
        let tail = log_tail(&log);
        assert!(tail.contains("line 29") && tail.contains("line 10") && !tail.contains("line 9\n"), "{tail}");
        assert!(log_tail(&dir.path().join("missing.log")).contains("missing.log"));
    }
}
