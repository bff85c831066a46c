//! `couchmail-bench all`: every benchmark of issues #2, #3 and #4, each beside its alternative, in one run; then
//! the report (docs/benchmarks.md).
//!
//! Order: the index builds (one process per size), propagation, then the CouchDB runs beside SQLite (a `follow`
//! process and a `write-latency` client per store), then one `serve` process that answers the socketmap lookups
//! (against LMDB and PostgreSQL) and the Dovecot logins (against a passwd-file).
//! Daemons are started privately (scratch directories, unix sockets, loopback) and stopped at the end, also when
//! a step fails.

mod auth;
mod couchdb;
mod delivery;
mod index;
mod lookups;
mod machine;
mod memory;
mod policy;
mod postgres;
mod pouchdb;
pub(crate) mod process;
mod report;
mod report_delivery;
mod spam;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use couchmail_model::{Password, PasswordHash};
use serde_json::Value;

use crate::population::PASSWORD;
use process::{ChildGuard, stdout_of};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Small sizes, a smoke run of every step; the report goes to stdout unless --out is given.
    #[arg(long)]
    quick: bool,
    /// Where the report is written.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The index crate's benchmark program (`cargo build --release -p couchmail-index --example index_bench`).
    #[arg(long)]
    index_bench: PathBuf,
    /// Where scratch files, stores and daemons live; memory (/dev/shm) by default.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// How the run was started, for the report.
    #[arg(long, default_value = "cargo xtask bench")]
    command: String,
    /// The pouchdb-server that stands in for CouchDB.
    #[arg(long, default_value = pouchdb::DEFAULT_BINARY)]
    pouchdb_server: PathBuf,
    /// Runs only issue #5's measures (policy decisions, spamd) and splices their sections into the report at
    /// --out, leaving the rest of it as it was.
    #[arg(long, requires = "out")]
    only_issue5: bool,
    /// couchmail's binary (`cargo build --release -p couchmail`), which the end-to-end delivery benchmark runs
    /// with `couchmail up`.
    #[arg(long)]
    couchmail: PathBuf,
    /// Runs only issue #6's end-to-end delivery and memory measures; with --out, splices their sections into the
    /// report there, leaving the rest of it as it was, else prints them.
    #[arg(long, conflicts_with = "only_issue5")]
    only_delivery: bool,
}

/// The sizes of one run.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub index_mailboxes: Vec<usize>,
    pub propagate_samples: usize,
    pub propagate_mailboxes: usize,
    pub lookup_addresses: usize,
    pub lookup_queries: usize,
    pub logins: usize,
    pub auth_lookups: usize,
    pub socket_auth_lookups: usize,
    /// Mailboxes (and as many aliases) in the stores of issue #4's runs.
    pub couch_mailboxes: usize,
    /// Mailboxes created one at a time and timed until the socketmap answers them, per store.
    pub couch_samples: usize,
    /// Mailboxes in the policy service's index (issue #5).
    pub policy_mailboxes: usize,
    /// Passed triplets in the greylisting state.
    pub policy_triplets: usize,
    /// Policy requests per client run, all clients together.
    pub policy_requests: usize,
    /// Timed spamd scans per kind of message.
    pub spam_scans: usize,
    /// Messages of the timed end-to-end delivery run without the spam scan (issue #6).
    pub delivery_messages: usize,
    /// The same with the spam scan, which costs two SpamAssassin scans per message.
    pub delivery_spam_messages: usize,
    /// Mailboxes the messages go to, one `smtp-source` each.
    pub delivery_mailboxes: usize,
    /// Parallel SMTP sessions per `smtp-source`.
    pub delivery_sessions_per_mailbox: usize,
    /// Messages sent one at a time for the latency at light load.
    pub delivery_light_messages: usize,
}

impl Sizes {
    fn full() -> Sizes {
        Sizes {
            index_mailboxes: vec![1_000, 100_000, 1_000_000],
            propagate_samples: 1000,
            propagate_mailboxes: 100_000,
            lookup_addresses: 100_000,
            lookup_queries: 200_000,
            logins: 200,
            auth_lookups: 1000,
            socket_auth_lookups: 10_000,
            couch_mailboxes: 100_000,
            couch_samples: 500,
            policy_mailboxes: 100_000,
            policy_triplets: 20_000,
            policy_requests: 100_000,
            spam_scans: 30,
            delivery_messages: 2000,
            delivery_spam_messages: 600,
            delivery_mailboxes: 4,
            delivery_sessions_per_mailbox: 2,
            delivery_light_messages: 100,
        }
    }

    fn quick() -> Sizes {
        Sizes {
            index_mailboxes: vec![1_000, 10_000],
            propagate_samples: 100,
            propagate_mailboxes: 1_000,
            lookup_addresses: 10_000,
            lookup_queries: 20_000,
            logins: 20,
            auth_lookups: 100,
            socket_auth_lookups: 1000,
            couch_mailboxes: 2_000,
            couch_samples: 50,
            policy_mailboxes: 2_000,
            policy_triplets: 1_000,
            policy_requests: 5_000,
            spam_scans: 5,
            delivery_messages: 200,
            delivery_spam_messages: 40,
            delivery_mailboxes: 4,
            delivery_sessions_per_mailbox: 2,
            delivery_light_messages: 20,
        }
    }
}

/// What the lookup and login benchmarks share: the scratch directory and the running `serve` process.
pub struct Context {
    pub scratch: PathBuf,
    pub bench_exe: PathBuf,
    pub serve_pid: u32,
    pub socketmap: PathBuf,
    pub auth_address: String,
    pub secret: String,
    /// The `{ARGON2ID}…` hash every mailbox carries.
    pub hash: String,
}

pub fn all(options: &Options) -> Result<()> {
    if stdout_of(Command::new("id").arg("-u"))? != "0" {
        bail!("the benchmarks run PostgreSQL as `postgres` and a private Dovecot: run them as root");
    }
    process::stop_daemons_on_interrupt()?;
    let started = Instant::now();
    let sizes = if options.quick { Sizes::quick() } else { Sizes::full() };
    let work_dir = options.work_dir.clone().unwrap_or_else(crate::default_work_dir);
    let date = stdout_of(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))?;
    let machine = machine::describe();
    if options.only_issue5 {
        return only_issue5(options, &sizes, &work_dir, started);
    }
    if options.only_delivery {
        return only_delivery(options, &sizes, &work_dir, started);
    }

    let index_results = index::run(
        &options.index_bench,
        &work_dir,
        &sizes.index_mailboxes,
        sizes.propagate_samples,
        sizes.propagate_mailboxes,
    )?;

    let scratch_dir = tempfile::Builder::new()
        .prefix("couchmail-bench")
        .tempdir_in(&work_dir)
        .with_context(|| format!("make a directory in {}", work_dir.display()))?;
    // PostgreSQL (as `postgres`) and Dovecot's unprivileged processes reach their files through this directory.
    std::fs::set_permissions(scratch_dir.path(), std::fs::Permissions::from_mode(0o755))
        .context("open the scratch directory")?;
    let scratch = scratch_dir.path().to_path_buf();

    let password = Password::new(PASSWORD.to_owned()).context("the benchmark password")?;
    // The hash every mailbox carries: one untimed, then five timed to report couchmail's own argon2id (median).
    let mut hash_times_ms = Vec::new();
    let mut hash = PasswordHash::new(&password);
    for _ in 0..5 {
        let hash_started = Instant::now();
        hash = PasswordHash::new(&password);
        hash_times_ms.push(hash_started.elapsed().as_secs_f64() * 1000.0);
    }
    hash_times_ms.sort_by(f64::total_cmp);
    let hash_ms = hash_times_ms[hash_times_ms.len() / 2];
    let hash_file = scratch.join("hash");
    std::fs::write(&hash_file, hash.as_str()).context("write the hash file")?;
    let secret = random_hex();
    let secret_file = scratch.join("secret");
    std::fs::write(&secret_file, &secret).context("write the secret file")?;
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).context("protect the secret")?;

    let delivery_results = delivery_run(options, &sizes, &scratch, hash.as_str())?;

    let bench_exe = std::env::current_exe().context("find couchmail-bench itself")?;
    let couch_results = couchdb::run(&couchdb::Setup {
        bench_exe: &bench_exe,
        scratch: &scratch,
        hash_file: &hash_file,
        pouchdb_binary: &options.pouchdb_server,
        n_mailboxes: sizes.couch_mailboxes,
        samples: sizes.couch_samples,
    })?;

    let socketmap = scratch.join("socketmap");
    let mut serve_command = Command::new(&bench_exe);
    serve_command
        .arg("serve")
        .args(["--mailboxes", &sizes.lookup_addresses.to_string()])
        .arg("--hash-file")
        .arg(&hash_file)
        .arg("--socketmap")
        .arg(&socketmap)
        .arg("--secret-file")
        .arg(&secret_file);
    let serve_shown = process::shown(&serve_command);
    eprintln!("bench: {serve_shown}");
    let mut serve = ChildGuard::new(
        serve_command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start `{serve_shown}`"))?,
        "couchmail-bench serve",
    );
    let serve_ready = read_ready_line(&mut serve)?;
    let auth_address = serve_ready["auth_address"].as_str().context("serve named no auth address")?.to_owned();
    let context = Context {
        scratch: scratch.clone(),
        bench_exe,
        serve_pid: serve.pid(),
        socketmap,
        auth_address,
        secret,
        hash: hash.as_str().to_owned(),
    };

    let lookup_results = lookups::run(&context, sizes.lookup_addresses, sizes.lookup_queries)?;
    let auth_sizes = auth::AuthSizes {
        users: sizes.lookup_addresses,
        doveadm_logins: sizes.logins,
        doveadm_lookups: sizes.auth_lookups,
        socket_logins: sizes.logins,
        socket_lookups: sizes.socket_auth_lookups,
    };
    let auth_results = auth::run(&context, auth_sizes)?;
    serve.close_and_wait(Duration::from_secs(30))?;
    let (policy_results, spam_results) = issue5(&context.bench_exe, &scratch, &hash_file, &sizes)?;
    drop(scratch_dir);

    let report = report::Report {
        date,
        command: options.command.clone(),
        quick: options.quick,
        total_s: started.elapsed().as_secs_f64(),
        machine,
        load_at_end: machine::load_average(),
        sizes,
        index: index_results,
        serve_command: serve_shown,
        serve_ready,
        hash_ms,
        hash_len: hash.as_str().len(),
        lookups: lookup_results,
        auth: auth_results,
        couch: couch_results,
        policy: policy_results,
        spam: spam_results,
        delivery: delivery_results,
    };
    let markdown = report.to_markdown();
    match &options.out {
        Some(path) => {
            std::fs::write(path, markdown).with_context(|| format!("write {}", path.display()))?;
            eprintln!("bench: wrote {} ({:.0} s)", path.display(), report.total_s);
        }
        None => print!("{markdown}"),
    }
    Ok(())
}

/// Issue #5's measures: the policy service's decisions, then spamd's scans.
fn issue5(
    bench_exe: &std::path::Path,
    scratch: &std::path::Path,
    hash_file: &std::path::Path,
    sizes: &Sizes,
) -> Result<(policy::PolicyResults, spam::SpamResults)> {
    let policy_results = policy::run(&policy::PolicySetup {
        bench_exe,
        scratch,
        hash_file,
        mailboxes: sizes.policy_mailboxes,
        triplets: sizes.policy_triplets,
        requests: sizes.policy_requests,
    })?;
    let spam_results = spam::run(scratch, sizes.spam_scans)?;
    Ok((policy_results, spam_results))
}

/// `--only-issue5`: issue #5's measures alone, spliced into the report already at `--out`.
fn only_issue5(options: &Options, sizes: &Sizes, work_dir: &std::path::Path, started: Instant) -> Result<()> {
    let out = options.out.as_ref().context("--only-issue5 needs --out")?;
    let existing = std::fs::read_to_string(out).with_context(|| format!("read {}", out.display()))?;
    let scratch_dir = tempfile::Builder::new()
        .prefix("couchmail-bench")
        .tempdir_in(work_dir)
        .with_context(|| format!("make a directory in {}", work_dir.display()))?;
    std::fs::set_permissions(scratch_dir.path(), std::fs::Permissions::from_mode(0o755))
        .context("open the scratch directory")?;
    let scratch = scratch_dir.path().to_path_buf();
    let password = Password::new(PASSWORD.to_owned()).context("the benchmark password")?;
    let hash_file = scratch.join("hash");
    std::fs::write(&hash_file, PasswordHash::new(&password).as_str()).context("write the hash file")?;
    let bench_exe = std::env::current_exe().context("find couchmail-bench itself")?;
    let (policy_results, spam_results) = issue5(&bench_exe, &scratch, &hash_file, sizes)?;
    drop(scratch_dir);
    let date = stdout_of(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))?;
    let sections = report::issue5_sections(&policy_results, &spam_results, sizes, options.quick, Some(&date));
    std::fs::write(out, report::splice_issue5(&existing, &sections))
        .with_context(|| format!("write {}", out.display()))?;
    eprintln!("bench: spliced issue #5's sections into {} ({:.0} s)", out.display(), started.elapsed().as_secs_f64());
    Ok(())
}

/// Issue #6's end-to-end delivery through the three setups.
fn delivery_run(
    options: &Options,
    sizes: &Sizes,
    scratch: &std::path::Path,
    hash: &str,
) -> Result<delivery::DeliveryResults> {
    delivery::run(&delivery::DeliveryConfig {
        couchmail: &options.couchmail,
        scratch,
        hash,
        messages: sizes.delivery_messages,
        spam_messages: sizes.delivery_spam_messages,
        mailboxes: sizes.delivery_mailboxes,
        sessions_per_mailbox: sizes.delivery_sessions_per_mailbox,
        light_messages: sizes.delivery_light_messages,
    })
}

/// `--only-delivery`: issue #6's delivery and memory measures alone, spliced into the report at `--out` or
/// printed.
fn only_delivery(options: &Options, sizes: &Sizes, work_dir: &std::path::Path, started: Instant) -> Result<()> {
    let scratch_dir = tempfile::Builder::new()
        .prefix("couchmail-bench")
        .tempdir_in(work_dir)
        .with_context(|| format!("make a directory in {}", work_dir.display()))?;
    std::fs::set_permissions(scratch_dir.path(), std::fs::Permissions::from_mode(0o755))
        .context("open the scratch directory")?;
    let password = Password::new(PASSWORD.to_owned()).context("the benchmark password")?;
    let hash = PasswordHash::new(&password);
    let results = delivery_run(options, sizes, scratch_dir.path(), hash.as_str())?;
    drop(scratch_dir);
    let date = stdout_of(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))?;
    let sections = report_delivery::sections(&results, options.quick, Some(&date));
    match &options.out {
        Some(out) => {
            let existing = std::fs::read_to_string(out).with_context(|| format!("read {}", out.display()))?;
            std::fs::write(out, report_delivery::splice(&existing, &sections))
                .with_context(|| format!("write {}", out.display()))?;
            eprintln!(
                "bench: spliced issue #6's delivery sections into {} ({:.0} s)",
                out.display(),
                started.elapsed().as_secs_f64()
            );
        }
        None => print!("{sections}"),
    }
    Ok(())
}

/// Reads the JSON line `serve` (or `follow`) prints once it is ready.
fn read_ready_line(server: &mut ChildGuard) -> Result<Value> {
    let stdout = server.child.stdout.take().context("the server has no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).context("read the server's ready line")?;
    if line.trim().is_empty() {
        bail!("the couchmail-bench server process ended before it was ready (its errors are above)");
    }
    serde_json::from_str(line.trim()).with_context(|| format!("the server printed `{line}`"))
}

/// 128 random bits as hex, from the standard library's randomly seeded hasher: a bearer secret for an endpoint
/// that lives on loopback for the length of one run.
fn random_hex() -> String {
    (0..2)
        .map(|_| {
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_u64(u64::from(std::process::id()));
            format!("{:016x}", hasher.finish())
        })
        .collect()
}
