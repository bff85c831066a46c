//! Issue #4's measures: the start-up index build and the write → socketmap answer latency, over SQLite and over
//! CouchDB, in the same run and with the same programs, only the store differing.
//!
//! For each store in turn: fill it with the same population (setup, timed only for scale), start a
//! `couchmail-bench follow` process (the follower and socketmap server of `couchmail up`), which times its build
//! from follower start to ready index and saves the index's checkpoint, then run `couchmail-bench write-latency`
//! against both; stop `follow` and start it again, to time the start from the checkpoint.
//! CouchDB is played by pouchdb-server (see [`super::pouchdb`]).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use couchmail_model::{Document, PasswordHash};
use serde_json::Value;

use super::pouchdb::PouchDb;
use super::process::{ChildGuard, cpu_times, output, shown};
use crate::follow::status_kib;
use crate::population::Population;
use crate::store::StoreSpec;

/// The database couchmail's documents go into on pouchdb-server.
const DATABASE: &str = "couchmail";

/// Documents per `_bulk_docs` request while filling pouchdb-server.
const BULK_BATCH: usize = 1000;

/// Mailboxes `write-latency` creates before it starts timing.
pub const WARM_UP: usize = 20;

/// Concurrent writers filling the SQLite store, as issue #2's index benchmark fills it.
const SQLITE_WRITERS: usize = 4;

/// What one store's run measured.
#[derive(Debug, Clone)]
pub struct StoreRun {
    pub backend: &'static str,
    pub is_couch: bool,
    pub fill_s: f64,
    /// The `follow` process's ready line from scratch: build time, documents, resident memory, checkpoint saved.
    pub ready: Value,
    /// Its ready line when started again from the checkpoint.
    pub resumed: Value,
    /// `write-latency`'s result, written from a process of its own (as the CLI writes).
    pub latency_other_process: Value,
    /// The same, written from within the `follow` process (as the REST API of `couchmail up` writes).
    pub latency_in_process: Value,
    /// CPU seconds the store's server spent while the index was built (pouchdb-server; SQLite has no server).
    pub server_build_cpu_s: Option<f64>,
    /// The same for the start from the checkpoint.
    pub resumed_server_cpu_s: Option<f64>,
    /// The store's server's resident memory once filled, in KiB.
    pub server_rss_kib: Option<u64>,
    /// The store's size once filled, in bytes.
    pub store_bytes: u64,
}

#[derive(Debug, Clone, Default)]
pub struct CouchResults {
    pub n_mailboxes: usize,
    pub n_documents: usize,
    pub samples: usize,
    pub pouchdb_version: String,
    pub runs: Vec<StoreRun>,
    pub commands: Vec<String>,
}

/// What the run needs from the driver.
pub struct Setup<'a> {
    pub bench_exe: &'a Path,
    pub scratch: &'a Path,
    pub hash_file: &'a Path,
    pub pouchdb_binary: &'a Path,
    pub n_mailboxes: usize,
    pub samples: usize,
}

pub fn run(setup: &Setup<'_>) -> Result<CouchResults> {
    let hash_text = std::fs::read_to_string(setup.hash_file).context("read the hash file")?;
    let hash = PasswordHash::parse(hash_text.trim()).context("the hash file holds no valid hash")?;
    let documents = Arc::new(Population::new(setup.n_mailboxes).store_documents(&hash)?);
    let mut results = CouchResults {
        n_mailboxes: setup.n_mailboxes,
        n_documents: documents.len(),
        samples: setup.samples,
        ..CouchResults::default()
    };
    let runtime = tokio::runtime::Runtime::new().context("start tokio")?;

    let sqlite_path = setup.scratch.join("issue4-sqlite.db");
    let sqlite = StoreSpec::Sqlite(sqlite_path.clone());
    eprintln!("bench: filling {sqlite} with {} documents", documents.len());
    let started = Instant::now();
    runtime.block_on(fill_sqlite(&sqlite, &documents))?;
    let fill_s = started.elapsed().as_secs_f64();
    let store_bytes = ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", sqlite_path.display())).ok())
        .map(|meta| meta.len())
        .sum();
    let mut run = measure(setup, &sqlite, None, &mut results.commands)?;
    run.fill_s = fill_s;
    run.store_bytes = store_bytes;
    results.runs.push(run);

    let pouchdb = PouchDb::start(setup.pouchdb_binary, setup.scratch)?;
    results.commands.push(pouchdb.command.clone());
    results.pouchdb_version = pouchdb.version();
    let couch = StoreSpec::Couch { url: pouchdb.url(), database: DATABASE.to_owned() };
    eprintln!("bench: filling {couch} with {} documents", documents.len());
    let started = Instant::now();
    // Connecting bootstraps the database, as `couchmail up` would; the documents then go in by the thousand.
    runtime.block_on(couch.open())?;
    pouchdb.bulk_write(DATABASE, &documents, BULK_BATCH)?;
    let fill_s = started.elapsed().as_secs_f64();
    let server_rss_kib = std::fs::read_to_string(format!("/proc/{}/status", pouchdb.pid()))
        .ok()
        .and_then(|status| status_kib(&status, "VmRSS:").ok());
    let mut run = measure(setup, &couch, Some(pouchdb.pid()), &mut results.commands)?;
    run.fill_s = fill_s;
    run.server_rss_kib = server_rss_kib;
    run.store_bytes = pouchdb.disk_bytes();
    results.runs.push(run);
    pouchdb.stop();
    Ok(results)
}

/// Writes every document through the SQLite store, one `put` each from a few concurrent writers.
async fn fill_sqlite(spec: &StoreSpec, documents: &Arc<Vec<Document>>) -> Result<()> {
    let store = spec.open().await?;
    let mut writers = tokio::task::JoinSet::new();
    for writer_idx in 0..SQLITE_WRITERS {
        let store = Arc::clone(&store);
        let documents = Arc::clone(documents);
        writers.spawn(async move {
            for document in documents.iter().skip(writer_idx).step_by(SQLITE_WRITERS) {
                store
                    .put(&document.id(), None, &document.to_body())
                    .await
                    .with_context(|| format!("write {}", document.id()))?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(written) = writers.join_next().await {
        written.context("a writer panicked")??;
    }
    Ok(())
}

/// Runs `follow` on the filled store with a checkpoint file, from scratch (it saves the checkpoint once ready), and
/// `write-latency` against it from another process; stops it, then starts `follow` again to time the start from
/// that checkpoint, and has it time writes made in its own process.
fn measure(
    setup: &Setup<'_>,
    spec: &StoreSpec,
    server_pid: Option<u32>,
    commands: &mut Vec<String>,
) -> Result<StoreRun> {
    let tag = if server_pid.is_some() { "couchdb" } else { "sqlite" };
    let socketmap = setup.scratch.join(format!("socketmap-{tag}"));
    let checkpoint = setup.scratch.join(format!("{tag}-{}", couchmail_index::CHECKPOINT_FILE_NAME));
    let sample_args = |first: usize| -> Vec<String> {
        vec![
            "--samples".to_owned(),
            setup.samples.to_string(),
            "--warm-up".to_owned(),
            WARM_UP.to_string(),
            "--first".to_owned(),
            first.to_string(),
            "--mailboxes".to_owned(),
            setup.n_mailboxes.to_string(),
            "--hash-file".to_owned(),
            setup.hash_file.display().to_string(),
        ]
    };

    let scratch_follow = FollowRun { socketmap: &socketmap, checkpoint: &checkpoint, server_pid };
    let follow = scratch_follow.start(setup, spec, setup.n_mailboxes, &[], commands)?;
    let mut latency_command = Command::new(setup.bench_exe);
    latency_command
        .arg("write-latency")
        .arg("--store")
        .arg(spec.to_string())
        .arg("--socket")
        .arg(&socketmap)
        .args(sample_args(0));
    let latency_shown = shown(&latency_command);
    eprintln!("bench: {latency_shown}");
    commands.push(latency_shown.clone());
    let printed = output(&mut latency_command)?;
    let stdout = String::from_utf8_lossy(&printed.stdout);
    let other_process: Value =
        serde_json::from_str(stdout.trim()).with_context(|| format!("`{latency_shown}` printed `{stdout}`"))?;
    eprintln!("bench: {} write → answer, another process: {other_process}", spec.backend_name());
    // Stopping saves the checkpoint once more, with the mailboxes just created.
    follow.guard.close_and_wait(Duration::from_secs(60))?;

    let n_written = WARM_UP + setup.samples;
    let mut resumed =
        scratch_follow.start(setup, spec, setup.n_mailboxes + n_written, &sample_args(n_written), commands)?;
    let in_process = resumed.next_line()?;
    eprintln!("bench: {} write → answer, in the follower's process: {in_process}", spec.backend_name());
    resumed.guard.close_and_wait(Duration::from_secs(60))?;

    Ok(StoreRun {
        backend: spec.backend_name(),
        is_couch: server_pid.is_some(),
        fill_s: 0.0,
        ready: follow.ready,
        resumed: resumed.ready,
        latency_other_process: other_process,
        latency_in_process: in_process,
        server_build_cpu_s: follow.server_cpu_s,
        resumed_server_cpu_s: resumed.server_cpu_s,
        server_rss_kib: None,
        store_bytes: 0,
    })
}

/// Where a `follow` process listens and keeps its checkpoint, and the store server to charge CPU to.
struct FollowRun<'a> {
    socketmap: &'a Path,
    checkpoint: &'a Path,
    server_pid: Option<u32>,
}

/// A running `follow` process and what it said once ready.
struct Follow {
    guard: ChildGuard,
    stdout: BufReader<ChildStdout>,
    ready: Value,
    /// The store server's CPU seconds from the start to the ready line.
    server_cpu_s: Option<f64>,
}

impl Follow {
    /// The next JSON line `follow` prints.
    fn next_line(&mut self) -> Result<Value> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).context("read from couchmail-bench follow")?;
        if line.trim().is_empty() {
            bail!("couchmail-bench follow ended early (its errors are above)");
        }
        serde_json::from_str(line.trim()).with_context(|| format!("couchmail-bench follow printed `{line}`"))
    }
}

impl FollowRun<'_> {
    /// Starts `follow` with `extra_args` and waits for its ready line.
    fn start(
        &self,
        setup: &Setup<'_>,
        spec: &StoreSpec,
        n_mailboxes: usize,
        extra_args: &[String],
        commands: &mut Vec<String>,
    ) -> Result<Follow> {
        let mut command = Command::new(setup.bench_exe);
        command
            .arg("follow")
            .arg("--store")
            .arg(spec.to_string())
            .arg("--socketmap")
            .arg(self.socketmap)
            .arg("--checkpoint")
            .arg(self.checkpoint)
            .args(["--expect-mailboxes", &n_mailboxes.to_string()])
            .args(extra_args);
        let shown_command = shown(&command);
        eprintln!("bench: {shown_command}");
        commands.push(shown_command.clone());
        let server_cpu = || -> Result<Option<f64>> {
            self.server_pid.map(|pid| cpu_times(&pid.to_string()).map(|times| times.own_s)).transpose()
        };
        let server_cpu_before = server_cpu()?;
        let mut guard = ChildGuard::new(
            command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .with_context(|| format!("cannot start `{shown_command}`"))?,
            "couchmail-bench follow",
        );
        let stdout = guard.child.stdout.take().context("follow has no stdout")?;
        let mut follow = Follow { guard, stdout: BufReader::new(stdout), ready: Value::Null, server_cpu_s: None };
        follow.ready = follow.next_line()?;
        let server_cpu_after = server_cpu()?;
        eprintln!("bench: {} ready: {}", spec.backend_name(), follow.ready);
        follow.server_cpu_s = server_cpu_after.zip(server_cpu_before).map(|(after, before)| after - before);
        Ok(follow)
    }
}
