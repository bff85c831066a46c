//! Issue #3's authentication measure: `doveadm auth test` logins per second through couchmail's Lua passdb (the
//! rendered auth.lua asking couchmail's HTTP endpoint) against a passwd-file holding the same argon2id hashes,
//! each in a private Dovecot of its own; and `doveadm auth lookup`, which looks the user up without verifying a
//! password, to show what the lookup itself costs next to argon2id.
//!
//! Every request names a user not asked before, so Dovecot's auth cache (on, as couchmail renders it) never
//! answers: each login is a passdb lookup plus one argon2id verification.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use couchmail_render::{DOVECOT_AUTH_LUA, Stack, render};

use super::Context as RunContext;
use super::process::{Cleanup, cpu_times, output, shown, start_daemon, stdout_of, tree_cpu_s, wait_for_path};
use crate::population::{PASSWORD, Population};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passdb {
    CouchmailLua,
    PasswdFile,
}

impl Passdb {
    pub fn name(self) -> &'static str {
        match self {
            Passdb::CouchmailLua => "couchmail (Lua → HTTP)",
            Passdb::PasswdFile => "passwd-file",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Passdb::CouchmailLua => "lua",
            Passdb::PasswdFile => "passwd-file",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `doveadm auth test USER PASSWORD`: passdb lookup and argon2id verification.
    Login,
    /// `doveadm auth lookup USER`: passdb lookup only.
    Lookup,
}

/// Which client made the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// One `doveadm` process per request.
    Doveadm,
    /// `couchmail-bench dovecot-auth-client`, one long-lived connection per client.
    Socket,
}

#[derive(Debug, Clone)]
pub struct AuthRun {
    pub passdb: Passdb,
    pub operation: Operation,
    pub via: Via,
    pub clients: usize,
    pub requests: usize,
    pub wall_s: f64,
    pub dovecot_cpu_s: f64,
    /// couchmail's CPU seconds (the HTTP endpoint); `None` for the passwd-file.
    pub couchmail_cpu_s: Option<f64>,
    /// The client processes' CPU seconds.
    pub client_cpu_s: f64,
    /// p50 and p99 per request in microseconds, when the client timed each.
    pub percentiles_us: Option<(f64, f64)>,
}

impl AuthRun {
    pub fn per_s(&self) -> f64 {
        self.requests as f64 / self.wall_s
    }
}

/// How many requests of each kind a run makes, per passdb and number of clients.
#[derive(Debug, Clone, Copy)]
pub struct AuthSizes {
    pub users: usize,
    pub doveadm_logins: usize,
    pub doveadm_lookups: usize,
    pub socket_logins: usize,
    pub socket_lookups: usize,
}

#[derive(Debug, Clone, Default)]
pub struct AuthResults {
    pub runs: Vec<AuthRun>,
    pub commands: Vec<String>,
}

pub fn run(context: &RunContext, sizes: AuthSizes) -> Result<AuthResults> {
    let n_users = sizes.users;
    let population = Population::new(n_users);
    let mut results = AuthResults::default();
    let auth_dir = context.scratch.join("dovecot");
    std::fs::create_dir_all(&auth_dir).context("make the dovecot directory")?;

    // The Lua script exactly as `couchmail render` writes it, pointed at the benchmark's endpoint.
    let mut stack = Stack::dev(context.scratch.join("stack"));
    stack.auth_endpoint.base_url = format!("http://{}", context.auth_address);
    stack.auth_endpoint.secret = context.secret.clone();
    let rendered = render(&stack).context("render the Dovecot configuration")?;
    let script = rendered.get(DOVECOT_AUTH_LUA).context("the rendering has no auth.lua")?;
    let lua_path = auth_dir.join("auth.lua");
    std::fs::write(&lua_path, &script.contents).context("write auth.lua")?;

    // The same users and hash in Dovecot's passwd-file format, with the userdb fields couchmail answers.
    let passwd_path = auth_dir.join("users");
    let mut passwd = String::with_capacity(n_users * 200);
    for user_idx in 0..n_users {
        let address = population.address(user_idx);
        let (local, domain) = address.split_once('@').context("a generated address without @")?;
        writeln!(
            passwd,
            "{address}:{}:5000:5000::/var/tmp/couchmail-bench-mail/{domain}/{local}::userdb_quota_rule=*:bytes={}",
            context.hash,
            1u64 << 30
        )?;
    }
    std::fs::write(&passwd_path, passwd).context("write the passwd-file")?;

    // Users are handed out once each, across every run, so that no answer comes from the auth cache.
    let next_user = AtomicUsize::new(0);
    // Both Dovecots run at once (the idle one costs nothing), so that each couchmail row and its passwd-file row
    // run back to back: on a shared machine, load that comes and goes then weighs on both alike.
    let mut dovecots = Vec::new();
    for passdb in [Passdb::CouchmailLua, Passdb::PasswdFile] {
        let databases = match passdb {
            Passdb::CouchmailLua => {
                let args = format!("file={} blocking=yes", lua_path.display());
                format!(
                    "passdb {{\n  driver = lua\n  args = {args}\n}}\nuserdb {{\n  driver = lua\n  args = {args}\n}}\n"
                )
            }
            Passdb::PasswdFile => {
                let args = passwd_path.display();
                format!(
                    "passdb {{\n  driver = passwd-file\n  args = {args}\n}}\nuserdb {{\n  driver = passwd-file\n  args = {args}\n}}\n"
                )
            }
        };
        let dovecot = Dovecot::start(&auth_dir, passdb.slug(), &databases)?;
        // Unmeasured: loads the passwd-file, starts the auth workers and their HTTP clients.
        run_requests(&dovecot, &population, &next_user, Operation::Login, 1, 4)?;
        run_requests(&dovecot, &population, &next_user, Operation::Lookup, 1, 20)?;
        results.commands.push(format!("dovecot -c {}", dovecot.config.display()));
        results.commands.push(format!("{} USER '{PASSWORD}'", shown(&dovecot.doveadm(&["auth", "test"]))));
        results.commands.push(format!("{} USER", shown(&dovecot.doveadm(&["auth", "lookup"]))));
        for operation in [Operation::Login, Operation::Lookup] {
            let command = socket_client(context, &dovecot, &population, operation);
            results.commands.push(format!("{} --first FIRST --count COUNT --clients N", shown(&command)));
        }
        dovecots.push((passdb, dovecot));
    }

    let plan = [
        (Operation::Login, Via::Doveadm, sizes.doveadm_logins),
        (Operation::Lookup, Via::Doveadm, sizes.doveadm_lookups),
        (Operation::Login, Via::Socket, sizes.socket_logins),
        (Operation::Lookup, Via::Socket, sizes.socket_lookups),
    ];
    for (operation, via, n_requests) in plan {
        for n_clients in [1, 4] {
            for (passdb, dovecot) in &dovecots {
                let passdb = *passdb;
                let dovecot_before = tree_cpu_s(dovecot.master_pid)?;
                let couchmail_before = cpu_times(&context.serve_pid.to_string())?.own_s;
                let client_before = cpu_times("self")?.children_s;
                let started = Instant::now();
                let percentiles_us = match via {
                    Via::Doveadm => {
                        run_requests(dovecot, &population, &next_user, operation, n_clients, n_requests)?;
                        None
                    }
                    Via::Socket => {
                        let first = next_user.fetch_add(n_requests, Ordering::SeqCst);
                        let mut command = socket_client(context, dovecot, &population, operation);
                        command.args(["--first", &first.to_string(), "--count", &n_requests.to_string()]);
                        command.args(["--clients", &n_clients.to_string()]);
                        let printed = stdout_of(&mut command)?;
                        let result: serde_json::Value = serde_json::from_str(&printed)
                            .with_context(|| format!("`{}` printed `{printed}`", shown(&command)))?;
                        let percentile = |key: &str| result[key].as_f64().unwrap_or(f64::NAN);
                        Some((percentile("p50_us"), percentile("p99_us")))
                    }
                };
                let wall_s = started.elapsed().as_secs_f64();
                let client_cpu_s = cpu_times("self")?.children_s - client_before;
                let couchmail_cpu_s = cpu_times(&context.serve_pid.to_string())?.own_s - couchmail_before;
                let dovecot_cpu_s = tree_cpu_s(dovecot.master_pid)? - dovecot_before;
                let run = AuthRun {
                    passdb,
                    operation,
                    via,
                    clients: n_clients,
                    requests: n_requests,
                    wall_s,
                    dovecot_cpu_s,
                    couchmail_cpu_s: (passdb == Passdb::CouchmailLua).then_some(couchmail_cpu_s),
                    client_cpu_s,
                    percentiles_us,
                };
                eprintln!("bench: {} {operation:?} via {via:?} × {n_clients}: {:.1}/s", passdb.name(), run.per_s());
                results.runs.push(run);
            }
        }
    }
    for (_, dovecot) in dovecots {
        dovecot.stop()?;
    }
    // The report lists each passdb's rows together.
    results.runs.sort_by_key(|run| run.passdb != Passdb::CouchmailLua);
    Ok(results)
}

/// `couchmail-bench dovecot-auth-client` for `operation`, without the users and clients it is to ask with.
fn socket_client(context: &RunContext, dovecot: &Dovecot, population: &Population, operation: Operation) -> Command {
    let (mode, socket) = match operation {
        Operation::Login => ("login", "auth-client"),
        Operation::Lookup => ("lookup", "auth-userdb"),
    };
    let mut command = Command::new(&context.bench_exe);
    command
        .args(["dovecot-auth-client", "--mode", mode, "--socket"])
        .arg(dovecot.base_dir.join(socket))
        .args(["--mailboxes", &population.n_mailboxes.to_string()]);
    command
}

/// Runs `n_requests` requests of `operation`, split between `n_clients` threads that each run doveadm after
/// doveadm; fails on the first refused login or unknown user.
fn run_requests(
    dovecot: &Dovecot,
    population: &Population,
    next_user: &AtomicUsize,
    operation: Operation,
    n_clients: usize,
    n_requests: usize,
) -> Result<()> {
    let remaining = AtomicUsize::new(n_requests);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..n_clients)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    while remaining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1)).is_ok()
                    {
                        let user_idx = next_user.fetch_add(1, Ordering::SeqCst);
                        if user_idx >= population.n_mailboxes {
                            bail!("ran out of users that were never asked: raise the number of mailboxes");
                        }
                        let user = population.address(user_idx);
                        let mut command = match operation {
                            Operation::Login => dovecot.doveadm(&["auth", "test", &user, PASSWORD]),
                            Operation::Lookup => dovecot.doveadm(&["auth", "lookup", &user]),
                        };
                        output(&mut command)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker.join().map_err(|_| anyhow::anyhow!("a doveadm thread panicked"))??;
        }
        Ok(())
    })
}

/// A private Dovecot that serves authentication only (`protocols = none`), stopped when dropped.
struct Dovecot {
    config: PathBuf,
    base_dir: PathBuf,
    master_pid: u32,
    stopped: bool,
    _cleanup: Cleanup,
}

impl Dovecot {
    fn start(dir: &Path, name: &str, databases: &str) -> Result<Dovecot> {
        let base_dir = dir.join(format!("{name}-run"));
        let state_dir = dir.join(format!("{name}-state"));
        for made in [&base_dir, &state_dir] {
            std::fs::create_dir_all(made).with_context(|| format!("make {}", made.display()))?;
        }
        let config = dir.join(format!("{name}.conf"));
        // couchmail's rendered auth settings (DESIGN.md §3): cache on, plain mechanisms for doveadm.
        let text = format!(
            "protocols = none
listen = 127.0.0.1
base_dir = {base_dir}
state_dir = {state_dir}
instance_name = couchmail-bench-{name}
log_path = {log}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 5000
auth_cache_size = 10M
auth_cache_ttl = 60s
auth_cache_negative_ttl = 5s
service auth {{
  unix_listener auth-client {{
    mode = 0600
  }}
}}
{databases}",
            base_dir = base_dir.display(),
            state_dir = state_dir.display(),
            log = dir.join(format!("{name}.log")).display(),
        );
        std::fs::write(&config, text).with_context(|| format!("write {}", config.display()))?;
        start_daemon(Command::new("dovecot").arg("-c").arg(&config), &dir.join(format!("{name}.start.log")))?;
        let cleanup = Cleanup::register({
            let config = config.clone();
            move || {
                let _ = Command::new("doveadm").arg("-c").arg(&config).arg("stop").status();
            }
        });
        wait_for_path(&base_dir.join("auth-client"), Duration::from_secs(10))?;
        let pid_path = base_dir.join("master.pid");
        wait_for_path(&pid_path, Duration::from_secs(10))?;
        let master_pid = std::fs::read_to_string(&pid_path)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .with_context(|| format!("{} names no pid", pid_path.display()))?;
        Ok(Dovecot { config, base_dir, master_pid, stopped: false, _cleanup: cleanup })
    }

    fn doveadm(&self, args: &[&str]) -> Command {
        let mut command = Command::new("doveadm");
        command.arg("-c").arg(&self.config).args(args);
        command
    }

    fn stop(mut self) -> Result<()> {
        self.stopped = true;
        output(&mut self.doveadm(&["stop"]))?;
        let started = Instant::now();
        while Path::new(&format!("/proc/{}", self.master_pid)).exists() {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("Dovecot {} did not stop within 10 s", self.master_pid);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = output(&mut self.doveadm(&["stop"]));
        }
    }
}
