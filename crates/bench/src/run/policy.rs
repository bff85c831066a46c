//! Policy decisions per second on the greylisting hit path (issue #5's "Measure").
//!
//! Starts `couchmail-bench policy-serve` (the policy service over an index and a pre-filled greylisting state, in
//! a process of its own so that its CPU time and memory can be read from /proc), then runs
//! `couchmail-bench policy-client` with one and with four connections, and reads the server's CPU time around
//! each run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;

use super::process::{ChildGuard, cpu_times, output, shown};

pub struct PolicySetup<'a> {
    pub bench_exe: &'a Path,
    pub scratch: &'a Path,
    pub hash_file: &'a Path,
    pub mailboxes: usize,
    pub triplets: usize,
    pub requests: usize,
}

/// One client run: the client's JSON line and the server's CPU seconds over it.
#[derive(Debug, Clone)]
pub struct PolicyRun {
    pub result: Value,
    pub server_cpu_s: f64,
}

#[derive(Debug, Clone)]
pub struct PolicyResults {
    pub serve_command: String,
    pub client_command: String,
    pub ready: Value,
    pub runs: Vec<PolicyRun>,
    /// The server's resident memory after the runs, in KiB.
    pub rss_after_kib: u64,
}

pub fn run(setup: &PolicySetup<'_>) -> Result<PolicyResults> {
    let socket = setup.scratch.join("policy");
    let mut serve_command = Command::new(setup.bench_exe);
    serve_command
        .arg("policy-serve")
        .args(["--mailboxes", &setup.mailboxes.to_string()])
        .args(["--triplets", &setup.triplets.to_string()])
        .arg("--hash-file")
        .arg(setup.hash_file)
        .arg("--socket")
        .arg(&socket)
        .arg("--data-dir")
        .arg(setup.scratch.join("policy-data"));
    let serve_shown = shown(&serve_command);
    eprintln!("bench: {serve_shown}");
    let mut server = ChildGuard::new(
        serve_command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start `{serve_shown}`"))?,
        "couchmail-bench policy-serve",
    );
    let ready = super::read_ready_line(&mut server)?;
    ensure!(
        ready["triplets_passed"].as_u64() == Some(setup.triplets as u64),
        "the policy service holds {} passed triplets, expected {}",
        ready["triplets_passed"],
        setup.triplets
    );
    let server_pid = server.pid().to_string();

    let mut runs = Vec::new();
    let mut client_shown = String::new();
    for n_clients in [1usize, 4] {
        let mut client = Command::new(setup.bench_exe);
        client
            .arg("policy-client")
            .arg("--socket")
            .arg(&socket)
            .args(["--mailboxes", &setup.mailboxes.to_string()])
            .args(["--triplets", &setup.triplets.to_string()])
            .args(["--requests", &setup.requests.to_string()])
            .args(["--clients", &n_clients.to_string()]);
        client_shown = shown(&client).replace(&format!("--clients {n_clients}"), "--clients N");
        eprintln!("bench: {}", shown(&client));
        let cpu_before = cpu_times(&server_pid)?.own_s;
        let client_output = output(&mut client)?;
        let server_cpu_s = cpu_times(&server_pid)?.own_s - cpu_before;
        let text = String::from_utf8_lossy(&client_output.stdout);
        let result: Value =
            serde_json::from_str(text.trim()).with_context(|| format!("policy-client printed `{text}`"))?;
        runs.push(PolicyRun { result, server_cpu_s });
    }
    let status = std::fs::read_to_string(format!("/proc/{server_pid}/status")).context("read the server's status")?;
    let rss_after_kib = crate::follow::status_kib(&status, "VmRSS:")?;
    server.close_and_wait(Duration::from_secs(30))?;
    Ok(PolicyResults { serve_command: serve_shown, client_command: client_shown, ready, runs, rss_after_kib })
}
