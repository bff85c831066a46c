//! `couchmail-bench write-latency`: how long a new mailbox takes from its write into the store to the first found
//! answer of the socketmap, the path a new address takes to Postfix.
//!
//! A `couchmail-bench follow` process follows the same store and serves the socketmap. This process creates
//! mailboxes one at a time through the store (`Store::put`), as `couchmail`'s CLI does from a process of its own,
//! and after each asks the socketmap's `mailboxes` map for the new address, over one connection as Postfix keeps
//! it, until the answer is found. `follow --write-samples` runs the same loop inside the follower's process,
//! through the follower's own store handle, as `couchmail up`'s REST API writes.
//! The socketmap has no way to push an answer, so the client asks again every `--poll-us` microseconds: a figure
//! is late by up to one interval plus a round trip (about 0.05 ms, the socketmap's p50 in issue #3's table).
//! The wait uses the thread's own sleep, not tokio's timer, whose resolution is a millisecond.
//! Each write starts `--gap-ms` after the previous address was found, so that it meets a follower that is idle and
//! waiting on the changes feed, as an administrator's occasional write does.
//! One JSON line goes to stdout.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use couchmail_model::{Address, Document, Mailbox, PasswordHash, PolicySettings};
use couchmail_socketmap::{Client, Reply};
use couchmail_store::Store;
use serde_json::{Value, json};

use crate::population::Population;
use crate::socketmap_client::percentile_us;
use crate::store::StoreSpec;

/// How long one write may take to be answered before the run fails.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct Options {
    /// The store written: sqlite:PATH or couchdb:http://HOST:PORT/DATABASE.
    #[arg(long)]
    store: StoreSpec,
    /// The socketmap of the `follow` process following that store.
    #[arg(long)]
    socket: PathBuf,
    #[command(flatten)]
    samples: SampleOptions,
}

/// What is written and how it is timed.
#[derive(Debug, Clone, clap::Args)]
pub struct SampleOptions {
    /// How many mailboxes are created, one at a time, each timed.
    #[arg(long = "samples", default_value_t = 0)]
    pub samples: usize,
    /// Writes made first, not timed, so that connections and caches are warm.
    #[arg(long, default_value_t = 20)]
    pub warm_up: usize,
    /// The number of the first new mailbox (`new<N>@…`), so that runs against one store make different ones.
    #[arg(long, default_value_t = 0)]
    pub first: usize,
    /// How many mailboxes the store holds already (the new ones go into its domains).
    #[arg(long)]
    pub mailboxes: Option<usize>,
    /// A file holding the `{ARGON2ID}…` hash each new mailbox carries.
    #[arg(long)]
    pub hash_file: Option<PathBuf>,
    /// Microseconds between two lookups of an address not found yet.
    #[arg(long, default_value_t = 100)]
    pub poll_us: u64,
    /// Milliseconds between one address found and the next write.
    #[arg(long, default_value_t = 5)]
    pub gap_ms: u64,
}

pub fn main(options: &Options) -> Result<()> {
    // One thread: the writes, the lookups and the sleeps between them take turns, so nothing else in this
    // process competes with the follower and the socketmap server for the two cores.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("start tokio")?;
    let result = runtime.block_on(async {
        let store = options.store.open().await?;
        measure(store.as_ref(), &options.socket, &options.samples).await
    })?;
    println!("{result}");
    Ok(())
}

/// One timed creation.
struct Sample {
    write_to_answer: Duration,
    commit_to_answer: Duration,
    put: Duration,
    n_lookups: usize,
}

/// Creates `options.warm_up + options.samples` mailboxes through `store`, timing each but the warm-up ones until
/// the socketmap at `socket` finds it; returns the percentiles as JSON.
///
/// It sleeps with the thread's own sleep between lookups: run it on a thread of its own.
pub async fn measure(store: &dyn Store, socket: &Path, options: &SampleOptions) -> Result<Value> {
    let hash_file = options.hash_file.as_ref().context("--hash-file is needed to create mailboxes")?;
    let hash_text =
        std::fs::read_to_string(hash_file).with_context(|| format!("read the hash from {}", hash_file.display()))?;
    let hash = PasswordHash::parse(hash_text.trim()).context("the hash file holds no valid hash")?;
    let population = Population::new(options.mailboxes.context("--mailboxes is needed to create mailboxes")?);
    let mut client = Client::connect_unix(socket).await.context("connect to the socketmap")?;
    let poll_interval = Duration::from_micros(options.poll_us);
    let gap = Duration::from_millis(options.gap_ms);

    let mut samples = Vec::with_capacity(options.samples);
    for sample_idx in 0..options.warm_up + options.samples {
        let user_idx = options.first + sample_idx;
        let address: Address = format!("new{user_idx}@{}", population.domain_name(user_idx % population.n_domains()))
            .parse()
            .context("a generated address")?;
        let key = address.to_string();
        let document = Document::Mailbox(Mailbox {
            address,
            name: String::new(),
            password: Some(hash.clone()),
            active: true,
            quota_bytes: Some(1 << 30),
            roles: Vec::new(),
            sieve_active: None,
            policy: PolicySettings::default(),
        });
        // Not timed: the address must not be found before it is written, or the figure would mean nothing.
        match client.lookup("mailboxes", &key).await.with_context(|| format!("look up {key}"))? {
            Reply::NotFound => {}
            other => bail!("{key} answered {other:?} before it was written"),
        }
        std::thread::sleep(gap);

        let written = Instant::now();
        store.put(&document.id(), None, &document.to_body()).await.with_context(|| format!("create {key}"))?;
        let committed = Instant::now();
        let mut n_lookups = 0;
        loop {
            n_lookups += 1;
            match client.lookup("mailboxes", &key).await.with_context(|| format!("look up {key}"))? {
                Reply::Ok(_) => break,
                Reply::NotFound => {}
                other => bail!("{key}: unexpected reply {other:?}"),
            }
            if written.elapsed() > ANSWER_LIMIT {
                bail!("{key} was not found within {ANSWER_LIMIT:?} of its write");
            }
            // A blocking sleep on purpose: this thread has nothing else to run, and tokio's timer rounds up to
            // whole milliseconds.
            std::thread::sleep(poll_interval);
        }
        let answered = Instant::now();
        if sample_idx >= options.warm_up {
            samples.push(Sample {
                write_to_answer: answered - written,
                commit_to_answer: answered - committed,
                put: committed - written,
                n_lookups,
            });
        }
    }

    let n_lookups: usize = samples.iter().map(|sample| sample.n_lookups).sum();
    let percentiles = |pick: fn(&Sample) -> Duration| {
        let mut latencies: Vec<Duration> = samples.iter().map(pick).collect();
        latencies.sort_unstable();
        json!({
            "p50": percentile_us(&latencies, 0.50),
            "p99": percentile_us(&latencies, 0.99),
            "max": percentile_us(&latencies, 1.0),
        })
    };
    Ok(json!({
        "store": store.describe(),
        "samples": samples.len(),
        "poll_us": options.poll_us,
        "gap_ms": options.gap_ms,
        "write_to_answer_us": percentiles(|sample| sample.write_to_answer),
        "commit_to_answer_us": percentiles(|sample| sample.commit_to_answer),
        "put_us": percentiles(|sample| sample.put),
        "lookups_per_sample": n_lookups as f64 / samples.len().max(1) as f64,
    }))
}
