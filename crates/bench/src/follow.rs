//! `couchmail-bench follow`: couchmail's index follower and socketmap server over a real store, as `couchmail up`
//! runs them, in a process of its own.
//!
//! Issue #4 compares stores, so unlike `serve` (which builds its index from documents in hand) this process reads
//! the store's changes feed from the start with `couchmail_index::follow`, the follower `couchmail up` runs.
//! It times the start-up build (follower start to ready index) and reads its own resident memory before and after;
//! the socketmap listens before the follower starts, as in `couchmail up`, and answers through
//! `couchmail_lookup::Maps`.
//! With `--checkpoint FILE` the follower keeps the index's checkpoint there (`FollowConfig::checkpoint`): a start
//! with no file builds from the whole feed and saves one once ready (the ready line then waits for that save and
//! times it); a start with a file resumes from it.
//! With `--samples N`, once ready it also creates N mailboxes through its own store handle, as `couchmail up`'s
//! REST API writes, timing each until its socketmap finds it (see `write_latency`), and prints a second JSON line.
//! Once the index is ready, one JSON line goes to stdout; the process stops when its stdin closes, so it never
//! outlives the driver.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use couchmail_index::{FollowConfig, Index, Snapshot};
use couchmail_lookup::Maps;
use couchmail_socketmap::{Listener, ServerConfig};
use serde_json::json;
use tokio::sync::watch;

use crate::run::process::cpu_times;
use crate::store::StoreSpec;
use crate::write_latency::{self, SampleOptions};

/// The longest start-up build waited for.
const BUILD_LIMIT: Duration = Duration::from_secs(3600);

#[derive(Debug, clap::Args)]
pub struct Options {
    /// The store followed: sqlite:PATH or couchdb:http://HOST:PORT/DATABASE.
    #[arg(long)]
    store: StoreSpec,
    /// Where the socketmap listens (a unix socket, mode 0666).
    #[arg(long)]
    socketmap: PathBuf,
    /// How many mailboxes the ready index must hold; the run fails otherwise.
    #[arg(long)]
    expect_mailboxes: Option<usize>,
    /// The index's checkpoint file: resumed from when it exists, saved once the index is ready.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Mailboxes created in this process once the index is ready (none unless --samples is given).
    #[command(flatten)]
    writes: SampleOptions,
}

pub fn main(options: &Options) -> Result<()> {
    // The same runtime as `couchmail up`'s: tokio's default, one worker thread per core.
    let runtime = tokio::runtime::Runtime::new().context("start the tokio runtime")?;
    runtime.block_on(follow(options))
}

async fn follow(options: &Options) -> Result<()> {
    let connect_started = Instant::now();
    let store = options.store.open().await?;
    let connect_elapsed = connect_started.elapsed();

    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let index = Arc::new(Index::default());
    let socketmap_listener =
        Listener::bind_unix(&options.socketmap, 0o666).await.context("bind the socketmap socket")?;
    let socketmap = tokio::spawn(couchmail_socketmap::run(
        socketmap_listener,
        Arc::new(Maps::new(Arc::clone(&index))),
        ServerConfig::default(),
        until_stopped(stopped.clone()),
    ));

    let checkpoint_existed = options.checkpoint.as_ref().is_some_and(|path| path.exists());
    let config = FollowConfig { checkpoint: options.checkpoint.clone(), ..FollowConfig::default() };
    let before = Memory::read()?;
    let cpu_before = cpu_times("self")?.own_s;
    let build_started = Instant::now();
    let follower = tokio::spawn(couchmail_index::follow_with(
        config,
        Arc::clone(&store),
        Arc::clone(&index),
        until_stopped(stopped.clone()),
    ));
    let snapshot = index
        .wait_until(Snapshot::is_ready, BUILD_LIMIT)
        .await
        .with_context(|| format!("the index was not ready within {BUILD_LIMIT:?}"))?;
    let build_elapsed = build_started.elapsed();
    let cpu_build_s = cpu_times("self")?.own_s - cpu_before;
    let after = Memory::read()?;
    let counts = snapshot.counts();
    drop(snapshot);
    if counts.invalid_documents != 0 {
        bail!("the index skipped {} invalid documents", counts.invalid_documents);
    }
    if let Some(expected) = options.expect_mailboxes
        && counts.mailboxes != expected
    {
        bail!("the index holds {} mailboxes, expected {expected}", counts.mailboxes);
    }
    let n_documents = counts.domains + counts.alias_domains + counts.mailboxes + counts.aliases + counts.sieve_scripts;
    let resumed = checkpoint_existed && index.health().checkpoint_seq.is_some();
    if checkpoint_existed && !resumed {
        bail!("the follower did not resume from the checkpoint (its warnings say why)");
    }
    let checkpoint_save_ms = match &options.checkpoint {
        Some(_) if !resumed => Some(wait_for_checkpoint(&index).await?.as_secs_f64() * 1000.0),
        _ => None,
    };
    let checkpoint_bytes =
        options.checkpoint.as_ref().and_then(|path| std::fs::metadata(path).ok()).map(|meta| meta.len());

    let ready = json!({
        "pid": std::process::id(),
        "store": options.store.to_string(),
        "connect_ms": connect_elapsed.as_secs_f64() * 1000.0,
        "build_ms": build_elapsed.as_secs_f64() * 1000.0,
        "build_cpu_s": cpu_build_s,
        "documents": n_documents,
        "build_docs_per_s": n_documents as f64 / build_elapsed.as_secs_f64(),
        "domains": counts.domains,
        "alias_domains": counts.alias_domains,
        "mailboxes": counts.mailboxes,
        "aliases": counts.aliases,
        "rss_before_build_kib": before.rss_kib,
        "rss_after_build_kib": after.rss_kib,
        "hwm_after_build_kib": after.hwm_kib,
        "resumed_from_checkpoint": resumed,
        "checkpoint_save_ms": checkpoint_save_ms,
        "checkpoint_bytes": checkpoint_bytes,
    });
    print_line(&ready)?;

    if options.writes.samples > 0 {
        // The writer sleeps between lookups with the thread's own sleep, so it gets a blocking thread of its own,
        // and drives its futures there on this runtime, as a request handler of the API would use the store.
        let runtime = tokio::runtime::Handle::current();
        let (socket, writes) = (options.socketmap.clone(), options.writes.clone());
        let latency = tokio::task::spawn_blocking(move || {
            runtime.block_on(async move { write_latency::measure(store.as_ref(), &socket, &writes).await })
        })
        .await
        .context("the writer panicked")??;
        print_line(&latency)?;
    } else {
        drop(store);
    }

    // Reading stdin blocks, so it gets a thread of its own; its end (the driver closing the pipe, or exiting) is
    // the signal to stop.
    let (stdin_closed_sender, stdin_closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        let _ = stdin_closed_sender.send(());
    });
    let _ = stdin_closed.await;
    let _ = stop.send(true);
    let stats = socketmap.await.context("the socketmap server panicked")?;
    follower.await.context("the follower panicked")?;
    eprintln!("couchmail-bench follow: {} socketmap requests served", stats.n_requests);
    Ok(())
}

/// Writes one JSON line to stdout at once: the driver waits for it.
fn print_line(value: &serde_json::Value) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{value}").context("write to stdout")?;
    stdout.flush().context("flush stdout")
}

/// Waits until the follower has saved a checkpoint of what it applied, and returns how long that took.
async fn wait_for_checkpoint(index: &Index) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let health = index.health();
        if let Some(error) = health.checkpoint_error {
            bail!("the checkpoint was not saved: {error}");
        }
        if health.checkpoint_seq.is_some() && health.checkpoint_seq == health.last_seq {
            return Ok(started.elapsed());
        }
        if started.elapsed() > BUILD_LIMIT {
            bail!("the checkpoint was not saved within {BUILD_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// This process's resident memory and its high-water mark, from /proc/self/status, in KiB.
#[derive(Debug, Clone, Copy)]
struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
}

impl Memory {
    fn read() -> Result<Memory> {
        let status = std::fs::read_to_string("/proc/self/status").context("read /proc/self/status")?;
        Ok(Memory { rss_kib: status_kib(&status, "VmRSS:")?, hwm_kib: status_kib(&status, "VmHWM:")? })
    }
}

/// The value of a `Name:   1234 kB` line of a /proc status file.
pub fn status_kib(status: &str, name: &str) -> Result<u64> {
    let line = status.lines().find(|line| line.starts_with(name)).with_context(|| format!("no {name} line"))?;
    let kib = line[name.len()..].trim().trim_end_matches("kB").trim();
    kib.parse().with_context(|| format!("{name} is `{kib}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_in_kib() {
        let status = "Name:\tnode\nVmHWM:\t  183192 kB\nVmRSS:\t   69804 kB\n";
        assert_eq!(status_kib(status, "VmRSS:").unwrap(), 69804);
        assert_eq!(status_kib(status, "VmHWM:").unwrap(), 183192);
        assert!(status_kib(status, "VmSwap:").is_err());
    }
}
