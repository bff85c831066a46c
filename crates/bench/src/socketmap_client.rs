//! `couchmail-bench socketmap-client`: times every lookup over the socketmap, with one or more connections.
//!
//! Postfix's `postmap -q -` is the client the issue names, and the driver runs it for throughput; but postmap
//! writes its answers only when it exits, so it cannot say how long one lookup took.
//! This client speaks the same protocol through `couchmail_socketmap::Client` (one request, one reply, many per
//! connection, as Postfix does) and records each lookup's round trip.
//! The keys are split round-robin between `--clients` connections that run at once; one JSON line goes to stdout.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use couchmail_socketmap::{Client, Reply};
use serde_json::json;

#[derive(Debug, clap::Args)]
pub struct Options {
    /// The server's unix socket.
    #[arg(long)]
    socket: PathBuf,
    /// The map asked.
    #[arg(long, default_value = "mailboxes")]
    map: String,
    /// A file of keys, one a line.
    #[arg(long)]
    queries: PathBuf,
    /// How many connections ask at once.
    #[arg(long, default_value_t = 1)]
    clients: usize,
}

pub fn main(options: &Options) -> Result<()> {
    let text = std::fs::read_to_string(&options.queries)
        .with_context(|| format!("read the keys from {}", options.queries.display()))?;
    let keys: Vec<String> = text.lines().map(str::to_owned).collect();
    let n_clients = options.clients.max(1);
    let mut shards: Vec<Vec<String>> = vec![Vec::new(); n_clients];
    for (key_idx, key) in keys.into_iter().enumerate() {
        shards[key_idx % n_clients].push(key);
    }

    // Two worker threads, as many as the machine has cores; the server runs in another process.
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("start tokio")?;
    let result = runtime.block_on(async {
        // Connect every client before the clock starts, so that connecting is not timed.
        let mut clients = Vec::with_capacity(n_clients);
        for _ in 0..n_clients {
            clients.push(Client::connect_unix(&options.socket).await.context("connect to the socketmap")?);
        }
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for (client, shard) in clients.into_iter().zip(shards) {
            let map = options.map.clone();
            tasks.spawn(ask(client, map, shard));
        }
        let mut latencies = Vec::new();
        let mut n_found = 0usize;
        while let Some(joined) = tasks.join_next().await {
            let (shard_latencies, shard_found) = joined.context("a client panicked")??;
            latencies.extend(shard_latencies);
            n_found += shard_found;
        }
        anyhow::Ok((started.elapsed(), latencies, n_found))
    });
    let (wall, mut latencies, n_found) = result?;
    latencies.sort_unstable();
    let n_lookups = latencies.len();
    println!(
        "{}",
        json!({
            "clients": n_clients,
            "lookups": n_lookups,
            "found": n_found,
            "wall_s": wall.as_secs_f64(),
            "lookups_per_s": n_lookups as f64 / wall.as_secs_f64(),
            "p50_us": percentile_us(&latencies, 0.50),
            "p99_us": percentile_us(&latencies, 0.99),
            "max_us": percentile_us(&latencies, 1.0),
        })
    );
    Ok(())
}

/// Asks every key of `shard` in turn; returns each round trip and how many keys were found.
async fn ask(mut client: Client, map: String, shard: Vec<String>) -> Result<(Vec<Duration>, usize)> {
    let mut latencies = Vec::with_capacity(shard.len());
    let mut n_found = 0usize;
    for key in &shard {
        let asked = Instant::now();
        let reply = client.lookup(&map, key).await.with_context(|| format!("look up {key}"))?;
        latencies.push(asked.elapsed());
        match reply {
            Reply::Ok(_) => n_found += 1,
            Reply::NotFound => {}
            other => anyhow::bail!("{key}: unexpected reply {other:?}"),
        }
    }
    Ok((latencies, n_found))
}

/// The `fraction` percentile of sorted `latencies` (nearest rank), in microseconds.
pub fn percentile_us(latencies: &[Duration], fraction: f64) -> f64 {
    if latencies.is_empty() {
        return 0.0;
    }
    let rank = ((latencies.len() as f64 * fraction).ceil() as usize).clamp(1, latencies.len());
    latencies[rank - 1].as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let latencies: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile_us(&latencies, 0.50), 50.0);
        assert_eq!(percentile_us(&latencies, 0.99), 99.0);
        assert_eq!(percentile_us(&latencies, 1.0), 100.0);
        assert_eq!(percentile_us(&[], 0.5), 0.0);
    }
}
