//! The supervisor with real processes: restarts, clean stops, no orphans.
#![allow(clippy::unwrap_used)] // Tests unwrap: a failure is the test failing.

use std::path::Path;
use std::time::{Duration, Instant};

use couchmail_supervisor::{ProcessSpec, State, StopSignal, Supervisor};

fn shell(name: &str, script: &str, log: &Path) -> ProcessSpec {
    ProcessSpec {
        name: name.to_owned(),
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        log_file: Some(log.to_owned()),
        stop_signal: StopSignal::Term,
        stop_timeout: Duration::from_secs(2),
    }
}

fn alive(pid: i32) -> bool {
    // A zombie is as good as gone: it no longer runs.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.split(") ").nth(1).is_some_and(|rest| rest.starts_with('Z')))
        .unwrap_or(false)
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pids_in(file: &Path) -> Vec<i32> {
    std::fs::read_to_string(file).unwrap_or_default().split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

#[tokio::test]
async fn stop_reaches_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // A daemon that forks a grandchild, as Postfix's master does.
    let script = format!("sleep 300 & echo $! >> {p}; echo $$ >> {p}; wait", p = pids.display());
    let supervisor = Supervisor::default();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn({
        let supervisor = supervisor.clone();
        let spec = shell("forker", &script, &dir.path().join("log"));
        async move { supervisor.run(vec![spec], async { stop_rx.await.unwrap_or(()) }).await }
    });
    wait_for("both pids", Duration::from_secs(5), || pids_in(&pids).len() == 2).await;
    let started = pids_in(&pids);
    assert!(started.iter().all(|&pid| alive(pid)));
    assert!(matches!(supervisor.status()[0].state, State::Running { .. }));

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), run).await.unwrap().unwrap().unwrap();
    wait_for("no survivors", Duration::from_secs(2), || started.iter().all(|&pid| !alive(pid))).await;
    assert_eq!(supervisor.status()[0].state, State::Stopped);
}

/// `postfix start-fg` runs a shell whose child, Postfix's master, calls
/// `setsid`: the stop must reach that other process group and its children.
#[tokio::test]
async fn stop_reaches_a_child_that_left_the_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // setsid(1) runs its command in a new session; the command forks a child of its own.
    let script = format!(
        "setsid sh -c 'sleep 300 & echo $! >> {p}; echo $$ >> {p}; wait'; echo shell-ended",
        p = pids.display()
    );
    let supervisor = Supervisor::default();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn({
        let supervisor = supervisor.clone();
        let spec = shell("setsid-forker", &script, &dir.path().join("log"));
        async move { supervisor.run(vec![spec], async { stop_rx.await.unwrap_or(()) }).await }
    });
    wait_for("both pids", Duration::from_secs(5), || pids_in(&pids).len() == 2).await;
    let started = pids_in(&pids);
    assert!(started.iter().all(|&pid| alive(pid)));

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), run).await.unwrap().unwrap().unwrap();
    wait_for("no survivors", Duration::from_secs(2), || started.iter().all(|&pid| !alive(pid))).await;
}

#[tokio::test]
async fn a_daemon_that_ignores_the_stop_signal_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let script = format!("trap '' TERM; echo $$ >> {p}; while :; do sleep 0.1; done", p = pids.display());
    let mut spec = shell("stubborn", &script, &dir.path().join("log"));
    spec.stop_timeout = Duration::from_millis(300);
    let supervisor = Supervisor::default();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn({
        let supervisor = supervisor.clone();
        async move { supervisor.run(vec![spec], async { stop_rx.await.unwrap_or(()) }).await }
    });
    wait_for("pid", Duration::from_secs(5), || !pids_in(&pids).is_empty()).await;
    let pid = pids_in(&pids)[0];
    let asked = Instant::now();
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), run).await.unwrap().unwrap().unwrap();
    assert!(asked.elapsed() >= Duration::from_millis(300), "killed before the grace period");
    wait_for("the stubborn daemon to die", Duration::from_secs(2), || !alive(pid)).await;
}

#[tokio::test]
async fn a_daemon_that_exits_is_restarted_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    // Exits at once every time: restarts come after 1 s, then 2 s.
    let script = format!("echo $$ >> {p}; exit 3", p = starts.display());
    let supervisor = Supervisor::default();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn({
        let supervisor = supervisor.clone();
        let spec = shell("crasher", &script, &dir.path().join("log"));
        async move { supervisor.run(vec![spec], async { stop_rx.await.unwrap_or(()) }).await }
    });
    let began = Instant::now();
    wait_for("two restarts", Duration::from_secs(10), || pids_in(&starts).len() >= 3).await;
    let took = began.elapsed();
    assert!(took >= Duration::from_millis(2900), "restarted too fast: {took:?} for 1 s + 2 s of backoff");
    let status = supervisor.status();
    assert!(status[0].restarts >= 2, "{status:?}");
    assert!(matches!(&status[0].state, State::Running { .. } | State::Restarting { .. }), "{status:?}");
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), run).await.unwrap().unwrap().unwrap();
}

/// Runs a daemon whose first run starts `worker` in the background and dies, as a Dovecot
/// master killed under its LMTP processes, and later runs just sleep; waits until `done` exists.
async fn leave_a_worker_behind(worker: &str, done: &Path, within: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let script = format!(
        "if [ -e {started} ]; then exec sleep 300; fi; touch {started}; sh -c '{worker}' & sleep 0.3; exit 9",
        started = started.display(),
    );
    let supervisor = Supervisor::default();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn({
        let supervisor = supervisor.clone();
        let spec = shell("leaver", &script, &dir.path().join("log"));
        async move { supervisor.run(vec![spec], async { stop_rx.await.unwrap_or(()) }).await }
    });
    wait_for("the worker's end", within, || done.exists()).await;
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), run).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn what_a_dead_daemon_left_behind_may_finish_its_work_unsignalled() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = dir.path().join("outcome");
    let worker = format!("trap \"echo signalled >> {o}\" TERM; sleep 1; echo finished >> {o}", o = outcome.display());
    leave_a_worker_behind(&worker, &outcome, Duration::from_secs(10)).await;
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(std::fs::read_to_string(&outcome).unwrap(), "finished\n");
}

#[tokio::test]
async fn what_a_dead_daemon_left_behind_gets_the_stop_signal_when_it_lingers() {
    let dir = tempfile::tempdir().unwrap();
    let asked = dir.path().join("asked");
    // The shell's stop timeout is 2 s: then the stop signal, which the worker obeys.
    let worker =
        format!("trap \"echo stopped >> {a}; exit 0\" TERM; while :; do sleep 0.05; done", a = asked.display());
    let began = Instant::now();
    leave_a_worker_behind(&worker, &asked, Duration::from_secs(10)).await;
    assert!(began.elapsed() >= Duration::from_secs(2), "signalled before its time: {:?}", began.elapsed());
    assert_eq!(std::fs::read_to_string(&asked).unwrap(), "stopped\n");
}

#[tokio::test]
async fn a_missing_program_fails_at_start() {
    let supervisor = Supervisor::default();
    let spec = ProcessSpec {
        name: "ghost".into(),
        program: "/nonexistent/daemon".into(),
        args: vec![],
        log_file: None,
        stop_signal: StopSignal::Term,
        stop_timeout: Duration::from_secs(1),
    };
    let err = supervisor.run(vec![spec], std::future::pending()).await.unwrap_err();
    assert!(err.to_string().contains("cannot start ghost"), "{err}");
}

#[tokio::test]
async fn sievec_accepts_valid_and_names_the_line_of_invalid_scripts() {
    use couchmail_supervisor::{SieveCheckError, Sievec};
    let sievec = Sievec::default();
    sievec
        .check("require \"fileinto\";\nif header :contains \"subject\" \"x\" { fileinto \"Lists\"; }\n")
        .await
        .unwrap();
    match sievec.check("require \"fileinto\";\nfileinto \"X\"\nkeep;\n").await {
        Err(SieveCheckError::Invalid(messages)) => {
            assert!(messages.iter().any(|m| m.starts_with("line 2:") && m.contains("semicolon")), "{messages:?}");
            assert!(messages.iter().all(|m| !m.contains("couchmail-sievec-")), "temporary path leaked: {messages:?}");
        }
        other => panic!("expected the script to be refused, got {other:?}"),
    }
    // An extension that is not required is a validation error, not a parse error.
    assert!(matches!(sievec.check("fileinto \"X\";\n").await, Err(SieveCheckError::Invalid(_))));
    let missing = Sievec { program: "/nonexistent/sievec".into(), config: None };
    assert!(
        matches!(missing.check("keep;").await, Err(SieveCheckError::Unavailable(m)) if m.contains("dovecot-sieve"))
    );
}

/// A Dovecot configuration that lets global scripts run filter programs, as render's does with spam on.
fn extprograms_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("dovecot.conf");
    let text = format!(
        "mail_location = maildir:~/Maildir\nplugin {{\n  sieve_plugins = sieve_extprograms\n  \
         sieve_global_extensions = +vnd.dovecot.filter +vnd.dovecot.pipe +vnd.dovecot.environment\n  \
         sieve_filter_bin_dir = {}\n}}\n",
        dir.display()
    );
    std::fs::write(&config, text).unwrap();
    config
}

#[tokio::test]
async fn sievec_refuses_global_only_extensions_in_a_user_script() {
    use couchmail_supervisor::{SieveCheckError, Sievec};
    let dir = tempfile::tempdir().unwrap();
    let sievec = Sievec { program: "/usr/bin/sievec".into(), config: Some(extprograms_config(dir.path())) };
    let script = "require [\"vnd.dovecot.filter\"];\nfilter \"anything\";\n";
    match sievec.check(script).await {
        Err(SieveCheckError::Invalid(messages)) => {
            assert!(messages.iter().any(|m| m.contains("vnd.dovecot.filter")), "{messages:?}")
        }
        other => panic!("a user's script must not run programs, got {other:?}"),
    }
    sievec.check("require [\"fileinto\"];\nfileinto \"Lists\";\n").await.unwrap();
}

#[tokio::test]
async fn sievec_compiles_a_global_script_readable_by_the_mail_user() {
    use couchmail_supervisor::{SieveCheckError, Sievec};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let sievec = Sievec { program: "/usr/bin/sievec".into(), config: Some(extprograms_config(dir.path())) };
    let script = dir.path().join("filter.sieve");
    std::fs::write(&script, "require [\"vnd.dovecot.filter\"];\nif filter \"spamc\" { keep; }\n").unwrap();
    sievec.compile(&script).await.unwrap();
    let binary = std::fs::metadata(dir.path().join("filter.svbin")).unwrap();
    assert_eq!(binary.permissions().mode() & 0o777, 0o644);
    std::fs::write(&script, "require [\"vnd.dovecot.filter\"];\nfilter \"spamc\"\nkeep;\n").unwrap();
    assert!(matches!(sievec.compile(&script).await, Err(SieveCheckError::Invalid(_))));
}
