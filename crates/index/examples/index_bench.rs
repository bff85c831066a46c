//! Benchmarks of the index over a real SQLite store (issue #2, Measure).
//!
//! ```text
//! cargo run --release -p couchmail-index --example index_bench -- build --mailboxes 100000
//! cargo run --release -p couchmail-index --example index_bench -- propagate --samples 1000
//! cargo run --release -p couchmail-index --example index_bench -- checkpoint --mailboxes 50000 --rounds 3
//! ```
//!
//! `build` fills a fresh store with N mailboxes across N/100 domains, N
//! aliases (one in ten with two targets), a catch-all and an alias domain
//! for one domain in ten, then measures the time from starting the follower
//! to a ready index, and the resident memory before and after.
//! `propagate` writes documents one at a time under a running follower and
//! measures how long each takes to show in the snapshot.
//! `checkpoint` fills a store as `build` does (50 000 mailboxes and as many aliases make
//! 100 k documents), saves a checkpoint once, then times, alternately, a start from scratch
//! (the whole feed) and a start from the checkpoint, each until the index is ready, and
//! reports the time to save it and its size.
//! Each prints one JSON line. The store lives under `--dir` (default
//! `/dev/shm` when it exists: the store syncs every commit, and what is
//! measured here is the index, not the disk).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use couchmail_index::{FollowConfig, Index, Snapshot, follow_with};
use couchmail_model::{Document, Password, PasswordHash};
use couchmail_store::{SqliteStore, Store};
use couchmail_testkit::fixtures::{alias, domain, domain_alias, mailbox};
use serde_json::json;
use tokio::sync::oneshot;

const USAGE: &str = "usage: index_bench build --mailboxes N [--aliases N] [--batch N] [--dir DIR] [--writers N]
       index_bench propagate --samples K [--mailboxes N] [--batch N] [--dir DIR]
       index_bench checkpoint --mailboxes N [--aliases N] [--rounds R] [--batch N] [--dir DIR]";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, options)) = args.split_first() else {
        bail!("{USAGE}");
    };
    let options = Options::parse(options)?;
    match command.as_str() {
        "build" => build(&options).await,
        "propagate" => propagate(&options).await,
        "checkpoint" => checkpoint(&options).await,
        other => bail!("unknown command `{other}`\n{USAGE}"),
    }
}

struct Options {
    mailboxes: usize,
    aliases: Option<usize>,
    samples: usize,
    rounds: usize,
    writers: usize,
    batch_size: usize,
    dir: PathBuf,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let shm = PathBuf::from("/dev/shm");
        let mut options = Options {
            mailboxes: 1000,
            aliases: None,
            samples: 200,
            rounds: 3,
            writers: 4,
            batch_size: FollowConfig::default().batch_size,
            dir: if shm.is_dir() { shm } else { std::env::temp_dir() },
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let value = args.next().with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
            let number = || value.parse::<usize>().with_context(|| format!("{flag} takes a number, not `{value}`"));
            match flag.as_str() {
                "--mailboxes" => options.mailboxes = number()?,
                "--aliases" => options.aliases = Some(number()?),
                "--samples" => options.samples = number()?,
                "--rounds" => options.rounds = number()?.max(1),
                "--writers" => options.writers = number()?.max(1),
                "--batch" => options.batch_size = number()?.max(1),
                "--dir" => options.dir = PathBuf::from(value),
                other => bail!("unknown option `{other}`\n{USAGE}"),
            }
        }
        Ok(options)
    }
}

/// Resident memory of this process, from /proc/self/status, in KiB.
#[derive(Debug, Clone, Copy)]
struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
}

fn memory() -> Result<Memory> {
    let status = std::fs::read_to_string("/proc/self/status").context("read /proc/self/status")?;
    let field = |name: &str| -> Result<u64> {
        let line = status.lines().find(|line| line.starts_with(name)).with_context(|| format!("no {name}"))?;
        let kib = line[name.len()..].trim().trim_end_matches("kB").trim();
        kib.parse().with_context(|| format!("{name} is `{kib}`"))
    };
    Ok(Memory { rss_kib: field("VmRSS:")?, hwm_kib: field("VmHWM:")? })
}

/// The `document_idx`-th document of a store with `n_mailboxes` mailboxes
/// and `n_aliases` aliases, so that writers can make them on the fly.
struct Population {
    n_domains: usize,
    n_mailboxes: usize,
    n_aliases: usize,
    hash: PasswordHash,
}

impl Population {
    fn new(n_mailboxes: usize, n_aliases: usize) -> Result<Population> {
        // One real argon2id hash, made once: every mailbox carries the same
        // string, as long as a real one, without hashing a million times.
        let password = Password::new("benchmark password".to_owned()).context("password policy")?;
        Ok(Population {
            n_domains: n_mailboxes.div_ceil(100).max(1),
            n_mailboxes,
            n_aliases,
            hash: PasswordHash::new(&password),
        })
    }

    /// Domains, alias domains (one per ten domains), mailboxes, catch-alls
    /// (one per ten domains), then aliases.
    fn len(&self) -> usize {
        self.n_domains + self.n_domains.div_ceil(10) * 2 + self.n_mailboxes + self.n_aliases
    }

    fn domain_name(&self, domain_idx: usize) -> String {
        format!("d{domain_idx}.example")
    }

    fn user(&self, user_idx: usize) -> String {
        format!("user{user_idx}@{}", self.domain_name(user_idx % self.n_domains))
    }

    fn document(&self, mut document_idx: usize) -> Document {
        if document_idx < self.n_domains {
            return domain(&self.domain_name(document_idx));
        }
        document_idx -= self.n_domains;
        let n_tenth = self.n_domains.div_ceil(10);
        if document_idx < n_tenth {
            return domain_alias(&format!("alias{document_idx}.example"), &self.domain_name(document_idx * 10));
        }
        document_idx -= n_tenth;
        if document_idx < n_tenth {
            return alias(&format!("@{}", self.domain_name(document_idx * 10)), &[&self.user(document_idx * 10)]);
        }
        document_idx -= n_tenth;
        if document_idx < self.n_mailboxes {
            let mut document = mailbox(&self.user(document_idx));
            if let Document::Mailbox(mailbox) = &mut document {
                mailbox.password = Some(self.hash.clone());
                mailbox.quota_bytes = Some(1 << 30);
            }
            return document;
        }
        document_idx -= self.n_mailboxes;
        let user_idx = document_idx % self.n_mailboxes.max(1);
        let key = format!("alias{document_idx}@{}", self.domain_name(user_idx % self.n_domains));
        if document_idx.is_multiple_of(10) {
            let second = self.user((user_idx + self.n_domains) % self.n_mailboxes.max(1));
            if second != self.user(user_idx) {
                return alias(&key, &[&self.user(user_idx), &second]);
            }
        }
        alias(&key, &[&self.user(user_idx)])
    }
}

/// Writes every document of `population` with `n_writers` concurrent writers.
async fn populate(store: &Arc<SqliteStore>, population: &Arc<Population>, n_writers: usize) -> Result<()> {
    let mut writers = tokio::task::JoinSet::new();
    for writer_idx in 0..n_writers {
        let store = Arc::clone(store);
        let population = Arc::clone(population);
        writers.spawn(async move {
            for document_idx in (writer_idx..population.len()).step_by(n_writers) {
                let document = population.document(document_idx);
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

async fn open_store(options: &Options) -> Result<(tempfile::TempDir, Arc<SqliteStore>)> {
    let dir = tempfile::Builder::new()
        .prefix("couchmail-index-bench")
        .tempdir_in(&options.dir)
        .with_context(|| format!("make a directory in {}", options.dir.display()))?;
    let store = SqliteStore::open(dir.path().join("couchmail.db")).await.context("open the store")?;
    Ok((dir, Arc::new(store)))
}

/// Starts a follower; the returned sender stops it.
fn start_follower(
    options: &Options,
    store: Arc<SqliteStore>,
    index: &Arc<Index>,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let config = FollowConfig { batch_size: options.batch_size, ..FollowConfig::default() };
    start_follower_with(config, store, index)
}

fn start_follower_with(
    config: FollowConfig,
    store: Arc<SqliteStore>,
    index: &Arc<Index>,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(follow_with(config, store, Arc::clone(index), async move {
        let _ = stopped.await;
    }));
    (stop, task)
}

async fn build(options: &Options) -> Result<()> {
    let n_aliases = options.aliases.unwrap_or(options.mailboxes);
    let at_start = memory()?;
    let (_dir, store) = open_store(options).await?;
    let population = Arc::new(Population::new(options.mailboxes, n_aliases)?);
    let populate_started = Instant::now();
    populate(&store, &population, options.writers).await?;
    let populate_elapsed = populate_started.elapsed();

    let before = memory()?;
    let index = Arc::new(Index::default());
    let build_started = Instant::now();
    let (stop, task) = start_follower(options, Arc::clone(&store), &index);
    let snapshot = index
        .wait_until(Snapshot::is_ready, Duration::from_secs(3600))
        .await
        .context("the index did not become ready within an hour")?;
    let build_elapsed = build_started.elapsed();
    let after = memory()?;
    let counts = snapshot.counts();
    if counts.mailboxes != options.mailboxes || counts.invalid_documents != 0 {
        bail!("the index holds {counts:?}, expected {} mailboxes and nothing invalid", options.mailboxes);
    }

    // Lookups on the ready snapshot, as the socketmap will make them:
    // one in four keys absent.
    let n_lookups: usize = 200_000;
    let keys: Vec<String> = (0..n_lookups)
        .map(|lookup_idx| {
            let user_idx = lookup_idx.wrapping_mul(7919) % population.n_mailboxes.max(1);
            if lookup_idx % 4 == 3 { format!("nobody{user_idx}@d1.example") } else { population.user(user_idx) }
        })
        .collect();
    let lookups_started = Instant::now();
    let mut n_found = 0usize;
    for key in &keys {
        n_found += usize::from(snapshot.active_mailbox(key).is_some());
    }
    let mailbox_lookup_ns = lookups_started.elapsed().as_nanos() as f64 / n_lookups as f64;
    let lookups_started = Instant::now();
    for key in &keys {
        n_found += usize::from(snapshot.virtual_alias(key).is_some());
    }
    let virtual_alias_ns = lookups_started.elapsed().as_nanos() as f64 / n_lookups as f64;
    std::hint::black_box(n_found);
    drop(snapshot);

    let _ = stop.send(());
    task.await.context("the follower panicked")?;
    let index_kib = after.rss_kib.saturating_sub(before.rss_kib);
    let n_entries = (counts.mailboxes + counts.aliases).max(1);
    println!(
        "{}",
        json!({
            "bench": "index_build",
            "mailboxes": counts.mailboxes,
            "aliases": counts.aliases,
            "batch_size": options.batch_size,
            "malloc_arena_max": std::env::var("MALLOC_ARENA_MAX").ok(),
            "domains": counts.domains,
            "alias_domains": counts.alias_domains,
            "populate_s": round(populate_elapsed.as_secs_f64(), 3),
            "build_ms": round(build_elapsed.as_secs_f64() * 1000.0, 1),
            "build_docs_per_s": round(population.len() as f64 / build_elapsed.as_secs_f64(), 0),
            "rss_start_kib": at_start.rss_kib,
            "rss_before_build_kib": before.rss_kib,
            "rss_after_build_kib": after.rss_kib,
            "index_rss_kib": index_kib,
            "index_bytes_per_entry": round(index_kib as f64 * 1024.0 / n_entries as f64, 1),
            "hwm_before_build_kib": before.hwm_kib,
            "hwm_after_build_kib": after.hwm_kib,
            "mailbox_lookup_ns": round(mailbox_lookup_ns, 1),
            "virtual_alias_lookup_ns": round(virtual_alias_ns, 1),
            "store_dir": options.dir.display().to_string(),
        })
    );
    Ok(())
}

async fn propagate(options: &Options) -> Result<()> {
    let (_dir, store) = open_store(options).await?;
    let population = Arc::new(Population::new(options.mailboxes, options.mailboxes)?);
    populate(&store, &population, options.writers).await?;
    let index = Arc::new(Index::default());
    let (stop, task) = start_follower(options, Arc::clone(&store), &index);
    index.wait_until(Snapshot::is_ready, Duration::from_secs(3600)).await.context("the index did not become ready")?;

    let mut write_to_visible = Vec::with_capacity(options.samples);
    let mut commit_to_visible = Vec::with_capacity(options.samples);
    for sample_idx in 0..options.samples {
        let address = format!("new{sample_idx}@{}", population.domain_name(sample_idx % population.n_domains));
        let document = mailbox(&address);
        let mut published = index.subscribe();
        let written = Instant::now();
        store.put(&document.id(), None, &document.to_body()).await.context("write a sample")?;
        let committed = Instant::now();
        loop {
            if index.snapshot().mailbox(&address).is_some() {
                break;
            }
            tokio::time::timeout(Duration::from_secs(10), published.changed())
                .await
                .context("a write did not show within 10 s")?
                .context("the index went away")?;
        }
        let visible = Instant::now();
        write_to_visible.push(visible - written);
        commit_to_visible.push(visible.saturating_duration_since(committed));
    }
    let _ = stop.send(());
    task.await.context("the follower panicked")?;
    println!(
        "{}",
        json!({
            "bench": "index_propagate",
            "samples": options.samples,
            "mailboxes": options.mailboxes,
            "write_to_visible_us": percentiles(&mut write_to_visible),
            "commit_to_visible_us": percentiles(&mut commit_to_visible),
            "store_dir": options.dir.display().to_string(),
        })
    );
    Ok(())
}

/// Starts a follower on a fresh index and returns how long it took to be ready, and the
/// index, with the follower stopped.
async fn start_until_ready(config: FollowConfig, store: &Arc<SqliteStore>) -> Result<(Duration, Arc<Index>)> {
    let index = Arc::new(Index::default());
    let started = Instant::now();
    let (stop, task) = start_follower_with(config, Arc::clone(store), &index);
    index
        .wait_until(Snapshot::is_ready, Duration::from_secs(3600))
        .await
        .context("the index did not become ready within an hour")?;
    let elapsed = started.elapsed();
    let _ = stop.send(());
    task.await.context("the follower panicked")?;
    Ok((elapsed, index))
}

async fn checkpoint(options: &Options) -> Result<()> {
    let n_aliases = options.aliases.unwrap_or(options.mailboxes);
    let (dir, store) = open_store(options).await?;
    let population = Arc::new(Population::new(options.mailboxes, n_aliases)?);
    populate(&store, &population, options.writers).await?;
    let path = dir.path().join(couchmail_index::CHECKPOINT_FILE_NAME);
    let scratch_config = FollowConfig { batch_size: options.batch_size, ..FollowConfig::default() };
    let checkpoint_config = FollowConfig { checkpoint: Some(path.clone()), ..scratch_config.clone() };

    // The first start saves the checkpoint as soon as the index is ready: time that save.
    let index = Arc::new(Index::default());
    let (stop, task) = start_follower_with(checkpoint_config.clone(), Arc::clone(&store), &index);
    index.wait_until(Snapshot::is_ready, Duration::from_secs(3600)).await.context("the first build")?;
    let ready_at = Instant::now();
    loop {
        let health = index.health();
        if let Some(error) = health.checkpoint_error {
            bail!("the checkpoint was not saved: {error}");
        }
        if health.checkpoint_seq.is_some() && health.checkpoint_seq == health.last_seq {
            break;
        }
        if ready_at.elapsed() > Duration::from_secs(600) {
            bail!("the checkpoint was not saved within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let save_elapsed = ready_at.elapsed();
    let _ = stop.send(());
    task.await.context("the follower panicked")?;
    let counts = index.snapshot().counts();
    drop(index);
    let checkpoint_bytes = std::fs::metadata(&path).context("the checkpoint file")?.len();

    // Alternate the two, so that a machine growing busier or quieter affects both alike.
    let mut scratch_ms = Vec::with_capacity(options.rounds);
    let mut resume_ms = Vec::with_capacity(options.rounds);
    for _ in 0..options.rounds {
        let (elapsed, scratch) = start_until_ready(scratch_config.clone(), &store).await?;
        scratch_ms.push(round(elapsed.as_secs_f64() * 1000.0, 1));
        let expected = scratch.snapshot();
        drop(scratch);
        let (elapsed, resumed) = start_until_ready(checkpoint_config.clone(), &store).await?;
        resume_ms.push(round(elapsed.as_secs_f64() * 1000.0, 1));
        if resumed.health().checkpoint_seq.is_none() || resumed.snapshot().counts() != expected.counts() {
            bail!("the start from the checkpoint did not resume from it, or ended with another index");
        }
    }
    println!(
        "{}",
        json!({
            "bench": "index_checkpoint",
            "documents": population.len(),
            "mailboxes": counts.mailboxes,
            "aliases": counts.aliases,
            "batch_size": options.batch_size,
            "scratch_ms": scratch_ms,
            "resume_ms": resume_ms,
            "save_ms": round(save_elapsed.as_secs_f64() * 1000.0, 1),
            "checkpoint_bytes": checkpoint_bytes,
            "checkpoint_bytes_per_document": round(checkpoint_bytes as f64 / population.len().max(1) as f64, 1),
            "build_profile": if cfg!(debug_assertions) { "debug" } else { "release" },
            "store_dir": options.dir.display().to_string(),
        })
    );
    Ok(())
}

fn percentiles(samples: &mut [Duration]) -> serde_json::Value {
    samples.sort();
    let at = |fraction: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let sample_idx = ((samples.len() as f64 * fraction).ceil() as usize).clamp(1, samples.len()) - 1;
        round(samples[sample_idx].as_secs_f64() * 1e6, 1)
    };
    json!({ "p50": at(0.50), "p99": at(0.99), "max": at(1.0) })
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}
