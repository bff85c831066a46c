//! `couchmail-bench policy-serve` and `policy-client`: couchmail's Postfix policy service on the greylisting hit
//! path, and a load generator that speaks the policy protocol to it (issue #5's "Measure").
//!
//! `policy-serve` builds an index of the same synthetic population as the lookup benchmarks, opens
//! `couchmail_policy::Policy` over it with the default configuration (`PolicyConfig::new`), and pre-fills the
//! greylisting state: every triplet of [`triplet`] is seen once and retried after the delay, under a clock set an
//! hour back, so that by the system clock each has passed and was last seen an hour ago (too recent to be touched,
//! so a hit is a read). It then serves the policy on a unix socket with `couchmail_postfix_policy::run`, prints
//! one JSON line, and stops when its stdin closes.
//!
//! `policy-client` asks RCPT-stage requests for those triplets over `--clients` connections at once, many requests
//! per connection as Postfix's smtpd does, times each round trip, checks that every answer is `dunno` (a pass),
//! and prints one JSON line.
//! Every triplet's client is in a /24 of its own, so no client network reaches auto-allowing (five passed triplets
//! by default): each request goes through the listings, the opt-outs and the triplet lookup.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use couchmail_greylist::{Attempt, Greylist, ManualClock, Verdict};
use couchmail_index::{Index, Snapshot};
use couchmail_model::PasswordHash;
use couchmail_policy::{Policy, PolicyConfig};
use couchmail_postfix_policy::{Action, Client, Listener, PolicyRequest, ProtocolState, ServerConfig};
use serde_json::json;

use crate::population::Population;
use crate::socketmap_client::percentile_us;

#[derive(Debug, clap::Args)]
pub struct ServeOptions {
    /// How many mailboxes the index holds.
    #[arg(long)]
    mailboxes: usize,
    /// How many passed triplets the greylisting state holds.
    #[arg(long)]
    triplets: usize,
    /// A file holding the `{ARGON2ID}…` hash every mailbox carries.
    #[arg(long)]
    hash_file: PathBuf,
    /// Where the policy service listens (a unix socket, mode 0666).
    #[arg(long)]
    socket: PathBuf,
    /// The data directory: the greylisting and rate-limit state files go there.
    #[arg(long)]
    data_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ClientOptions {
    /// The policy service's unix socket.
    #[arg(long)]
    socket: PathBuf,
    /// How many mailboxes the served index holds (the recipients).
    #[arg(long)]
    mailboxes: usize,
    /// How many passed triplets the served state holds; requests cycle through them.
    #[arg(long)]
    triplets: usize,
    /// How many requests in all, split between the clients.
    #[arg(long)]
    requests: usize,
    /// How many connections ask at once.
    #[arg(long, default_value_t = 1)]
    clients: usize,
}

/// The `triplet_idx`th (client address, sender, recipient): the client in a /24 of its own, one of 500 sender
/// domains, a mailbox of the population as recipient.
pub fn triplet(population: &Population, triplet_idx: usize) -> (IpAddr, String, String) {
    // 10.0.0.0/8 holds 65,536 /24s; beyond that, triplets share networks (never within a benchmark's sizes).
    let network_idx = triplet_idx % 65_536;
    let client = IpAddr::V4(Ipv4Addr::new(10, (network_idx / 256) as u8, (network_idx % 256) as u8, 25));
    let sender = format!("sender{triplet_idx}@s{}.example.net", triplet_idx % 500);
    (client, sender, population.address(triplet_idx % population.n_mailboxes))
}

/// The request Postfix's smtpd sends at RCPT for one triplet, with the attributes it always sends.
pub fn rcpt_request(client: IpAddr, sender: &str, recipient: &str) -> PolicyRequest {
    PolicyRequest {
        protocol_state: Some(ProtocolState::Rcpt),
        protocol_name: Some("ESMTP".to_owned()),
        client_address: Some(client.to_string()),
        client_name: Some("unknown".to_owned()),
        reverse_client_name: Some("unknown".to_owned()),
        helo_name: Some("mail.example.net".to_owned()),
        sender: Some(sender.to_owned()),
        recipient: Some(recipient.to_owned()),
        recipient_count: Some(0),
        queue_id: Some(String::new()),
        instance: Some("1a2b.5f3c.9d".to_owned()),
        size: Some(4096),
        ..PolicyRequest::default()
    }
}

pub fn serve_main(options: &ServeOptions) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("start the tokio runtime")?;
    runtime.block_on(serve(options))
}

async fn serve(options: &ServeOptions) -> Result<()> {
    let hash_text = std::fs::read_to_string(&options.hash_file)
        .with_context(|| format!("read the hash from {}", options.hash_file.display()))?;
    let hash = PasswordHash::parse(hash_text.trim()).context("the hash file holds no valid hash")?;
    let population = Population::new(options.mailboxes);
    let index = Arc::new(Index::from_snapshot(Snapshot::from_documents(population.documents(&hash)?)));
    std::fs::create_dir_all(&options.data_dir)
        .with_context(|| format!("make the data directory {}", options.data_dir.display()))?;
    let config = PolicyConfig::new(&options.data_dir);

    // Pre-fill under a clock an hour back: seen, then retried after the delay, so every triplet has passed.
    let prefill_started = Instant::now();
    let an_hour_ago = SystemTime::now() - Duration::from_secs(60 * 60);
    let clock = Arc::new(ManualClock::new(an_hour_ago));
    {
        let greylist = Greylist::open_with_clock(&config.greylist_state, config.greylist.clone(), clock.clone())
            .context("open the greylisting state to pre-fill it")?;
        let check = |triplet_idx: usize| -> Result<Verdict> {
            let (client_address, sender, recipient) = triplet(&population, triplet_idx);
            let attempt = Attempt { client_address, sender: &sender, recipient: &recipient };
            greylist.check(&attempt).context("pre-fill the greylisting state")
        };
        for triplet_idx in 0..options.triplets {
            ensure!(matches!(check(triplet_idx)?, Verdict::Defer { .. }), "triplet {triplet_idx} was not new");
        }
        clock.advance(config.greylist.delay + Duration::from_secs(60));
        for triplet_idx in 0..options.triplets {
            ensure!(check(triplet_idx)?.is_pass(), "triplet {triplet_idx} did not pass on its retry");
        }
    }
    let prefill_elapsed = prefill_started.elapsed();
    let state_bytes = std::fs::metadata(&config.greylist_state).map(|metadata| metadata.len()).unwrap_or(0);

    let policy = Policy::open(config, Arc::clone(&index)).context("open the policy service")?;
    let counts = policy.greylist().counts().context("count the greylisting state")?;
    let listener = Listener::bind_unix(&options.socket, 0o666).await.context("bind the policy socket")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server =
        tokio::spawn(couchmail_postfix_policy::run(listener, Arc::new(policy), ServerConfig::default(), async {
            let _ = stopped.await;
        }));

    let ready = json!({
        "pid": std::process::id(),
        "mailboxes": index.snapshot().counts().mailboxes,
        "triplets_passed": counts.n_passed,
        "prefill_s": prefill_elapsed.as_secs_f64(),
        "state_kib": state_bytes / 1024,
        "rss_kib": crate::serve::resident_kib().unwrap_or(0),
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{ready}").context("write the ready line")?;
    stdout.flush().context("flush the ready line")?;
    drop(stdout);

    // The driver closing our stdin (or exiting) is the signal to stop; reading blocks, so it gets a thread.
    let (stdin_closed_sender, stdin_closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        let _ = stdin_closed_sender.send(());
    });
    let _ = stdin_closed.await;
    let _ = stop.send(());
    let stats = server.await.context("the policy server panicked")?;
    eprintln!("couchmail-bench policy-serve: {} policy requests served", stats.n_requests);
    Ok(())
}

pub fn client_main(options: &ClientOptions) -> Result<()> {
    ensure!(options.triplets > 0, "no triplets to ask for");
    let population = Population::new(options.mailboxes);
    let n_clients = options.clients.max(1);
    // Client k asks requests k, k + n, k + 2n, …: every triplet is asked, spread over the clients.
    let shards: Vec<Vec<PolicyRequest>> = (0..n_clients)
        .map(|client_idx| {
            (client_idx..options.requests)
                .step_by(n_clients)
                .map(|request_idx| {
                    let (client, sender, recipient) = triplet(&population, request_idx % options.triplets);
                    rcpt_request(client, &sender, &recipient)
                })
                .collect()
        })
        .collect();

    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("start tokio")?;
    let (wall, mut latencies) = runtime.block_on(async {
        // Connect every client before the clock starts, so that connecting is not timed.
        let mut clients = Vec::with_capacity(n_clients);
        for _ in 0..n_clients {
            clients.push(Client::connect_unix(&options.socket).await.context("connect to the policy service")?);
        }
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for (client, shard) in clients.into_iter().zip(shards) {
            tasks.spawn(ask(client, shard));
        }
        let mut latencies = Vec::with_capacity(options.requests);
        while let Some(joined) = tasks.join_next().await {
            latencies.extend(joined.context("a client panicked")??);
        }
        anyhow::Ok((started.elapsed(), latencies))
    })?;
    latencies.sort_unstable();
    println!(
        "{}",
        json!({
            "clients": n_clients,
            "requests": latencies.len(),
            "wall_s": wall.as_secs_f64(),
            "decisions_per_s": latencies.len() as f64 / wall.as_secs_f64(),
            "p50_us": percentile_us(&latencies, 0.50),
            "p99_us": percentile_us(&latencies, 0.99),
            "max_us": percentile_us(&latencies, 1.0),
        })
    );
    Ok(())
}

/// Asks every request of `shard` in turn; each must pass greylisting (`dunno`).
async fn ask(mut client: Client, shard: Vec<PolicyRequest>) -> Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(shard.len());
    for request in &shard {
        let asked = Instant::now();
        let action = client.ask(request).await.context("ask the policy service")?;
        latencies.push(asked.elapsed());
        if action != Action::Dunno {
            bail!("{request}: expected a pass (dunno), got `{action}`");
        }
    }
    Ok(latencies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triplets_have_networks_of_their_own_and_real_recipients() {
        let population = Population::new(1000);
        let (client, sender, recipient) = triplet(&population, 257);
        assert_eq!(client.to_string(), "10.1.1.25");
        assert_eq!(sender, "sender257@s257.example.net");
        assert_eq!(recipient, population.address(257));
        let (next_client, _, _) = triplet(&population, 258);
        assert_eq!(next_client.to_string(), "10.1.2.25");
        assert_eq!(triplet(&population, 1257).2, population.address(257));
    }

    #[test]
    fn rcpt_requests_carry_the_triplet() {
        let request = rcpt_request("192.0.2.1".parse().unwrap(), "a@b.example", "c@d.example");
        assert_eq!(request.protocol_state, Some(ProtocolState::Rcpt));
        assert_eq!(request.client_address.as_deref(), Some("192.0.2.1"));
        assert_eq!(request.sender.as_deref(), Some("a@b.example"));
        assert_eq!(request.recipient.as_deref(), Some("c@d.example"));
        assert!(request.to_attributes().is_ok());
    }
}
