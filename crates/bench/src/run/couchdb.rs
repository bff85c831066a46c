//! Issue #4's measures: the start-up index build and the write → socketmap answer latency, over SQLite and over
//! CouchDB, in the same run and with the same programs, only the store differing.
//!
//! For each store in turn: fill it with the same population (setup, timed only for scale), start a
//! `couchmail-bench follow` process (the follower and socketmap server of `couchmail up`), which times its build
//! from follower start to ready index and saves the index's checkpoint, then run `couchmail-bench write-latency`
//! against both; stop `follow` and start it again, to time the start from the checkpoint.
//! CouchDB is played by pouchdb-server (see [`super::pouchdb`]).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use couchmail_model::{Document, PasswordHash};
use serde_json::Value;

use super::pouchdb::PouchDb;
use super::process::{ChildGuard, cpu_times, output, shown};
use super::read_ready_line;
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
    /// `write-latency`'s result.
    pub latency: Value,
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
/// `write-latency` against it; stops it, then starts `follow` again to time the start from that checkpoint.
fn measure(
    setup: &Setup<'_>,
    spec: &StoreSpec,
    server_pid: Option<u32>,
    commands: &mut Vec<String>,
) -> Result<StoreRun> {
    let tag = if server_pid.is_some() { "couchdb" } else { "sqlite" };
    let socketmap = setup.scratch.join(format!("socketmap-{tag}"));
    let checkpoint = setup.scratch.join(format!("{tag}-{}", couchmail_index::CHECKPOINT_FILE_NAME));

    let (follow, ready, server_build_cpu_s) =
        start_follow(setup, spec, &socketmap, &checkpoint, setup.n_mailboxes, server_pid, commands)?;
    let mut latency_command = Command::new(setup.bench_exe);
    latency_command
        .arg("write-latency")
        .arg("--store")
        .arg(spec.to_string())
        .arg("--socket")
        .arg(&socketmap)
        .args(["--samples", &setup.samples.to_string()])
        .args(["--warm-up", &WARM_UP.to_string()])
        .args(["--mailboxes", &setup.n_mailboxes.to_string()])
        .arg("--hash-file")
        .arg(setup.hash_file);
    let latency_shown = shown(&latency_command);
    eprintln!("bench: {latency_shown}");
    commands.push(latency_shown.clone());
    let printed = output(&mut latency_command)?;
    let stdout = String::from_utf8_lossy(&printed.stdout);
    let latency: Value =
        serde_json::from_str(stdout.trim()).with_context(|| format!("`{latency_shown}` printed `{stdout}`"))?;
    eprintln!("bench: {} write → answer: {latency}", spec.backend_name());
    // Stopping saves the checkpoint once more, with the mailboxes just created.
    follow.close_and_wait(Duration::from_secs(60))?;

    let n_mailboxes = setup.n_mailboxes + WARM_UP + setup.samples;
    let (follow, resumed, resumed_server_cpu_s) =
        start_follow(setup, spec, &socketmap, &checkpoint, n_mailboxes, server_pid, commands)?;
    follow.close_and_wait(Duration::from_secs(60))?;

    Ok(StoreRun {
        backend: spec.backend_name(),
        is_couch: server_pid.is_some(),
        fill_s: 0.0,
        ready,
        resumed,
        latency,
        server_build_cpu_s,
        resumed_server_cpu_s,
        server_rss_kib: None,
        store_bytes: 0,
    })
}

/// Starts `follow` and waits for its ready line; returns it with the store server's CPU seconds until then.
fn start_follow(
    setup: &Setup<'_>,
    spec: &StoreSpec,
    socketmap: &Path,
    checkpoint: &Path,
    n_mailboxes: usize,
    server_pid: Option<u32>,
    commands: &mut Vec<String>,
) -> Result<(ChildGuard, Value, Option<f64>)> {
    let mut command = Command::new(setup.bench_exe);
    command
        .arg("follow")
        .arg("--store")
        .arg(spec.to_string())
        .arg("--socketmap")
        .arg(socketmap)
        .arg("--checkpoint")
        .arg(checkpoint)
        .args(["--expect-mailboxes", &n_mailboxes.to_string()]);
    let shown_command = shown(&command);
    eprintln!("bench: {shown_command}");
    commands.push(shown_command.clone());
    let server_cpu = || -> Result<Option<f64>> {
        server_pid.map(|pid| cpu_times(&pid.to_string()).map(|times| times.own_s)).transpose()
    };
    let server_cpu_before = server_cpu()?;
    let mut follow = ChildGuard::new(
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start `{shown_command}`"))?,
        "couchmail-bench follow",
    );
    let ready = read_ready_line(&mut follow)?;
    let server_cpu_after = server_cpu()?;
    eprintln!("bench: {} ready: {ready}", spec.backend_name());
    let server_cpu_s = server_cpu_after.zip(server_cpu_before).map(|(after, before)| after - before);
    Ok((follow, ready, server_cpu_s))
}
