//! Measures greylisting checks per second on a real state file: first sightings, passing retries, and the hit path
//! (a triplet that passed before), which is what almost every check of a running mail server is.
//!
//! `cargo run -p couchmail-greylist --example hit_path [N_TRIPLETS]` (default 20 000). Build with `--release` for
//! production figures; the dev profile compiles this crate without optimisation and SQLite at -O1.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use couchmail_greylist::{Attempt, Greylist, GreylistConfig, ManualClock, PassReason, Verdict};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n_triplets: u32 = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 20_000,
    };
    if n_triplets == 0 || n_triplets > 1 << 16 {
        return Err("N_TRIPLETS must be from 1 to 65536: one /24 of 10.0.0.0/8 each".into());
    }
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let greylist = Greylist::open_with_clock(dir.path().join("greylist.db"), GreylistConfig::default(), clock.clone())?;
    // One client network per triplet, so that no network reaches auto-allow and every hit reads both the client
    // and the triplet record: the slowest hit path.
    let client = |triplet_idx: u32| IpAddr::V4(Ipv4Addr::from((10 << 24) | (triplet_idx << 8) | 1));
    let senders: Vec<String> = (0..n_triplets).map(|idx| format!("sender{idx}@example.net")).collect();
    let attempt = |triplet_idx: u32| Attempt {
        client_address: client(triplet_idx),
        sender: &senders[triplet_idx as usize],
        recipient: "alice@example.com",
    };

    let started = Instant::now();
    for triplet_idx in 0..n_triplets {
        let verdict = greylist.check(&attempt(triplet_idx))?;
        assert!(matches!(verdict, Verdict::Defer { .. }), "{verdict:?}");
    }
    report("first sightings (insert)", n_triplets, started.elapsed());

    clock.advance(Duration::from_secs(10 * 60));
    let started = Instant::now();
    for triplet_idx in 0..n_triplets {
        let verdict = greylist.check(&attempt(triplet_idx))?;
        assert!(matches!(verdict, Verdict::Pass(PassReason::Retried { .. })), "{verdict:?}");
    }
    report("passing retries (update, client upsert)", n_triplets, started.elapsed());

    clock.advance(Duration::from_secs(60));
    let n_hits = n_triplets * 10;
    let started = Instant::now();
    for hit_idx in 0..n_hits {
        let verdict = greylist.check(&attempt(hit_idx % n_triplets))?;
        assert_eq!(verdict, Verdict::Pass(PassReason::Known));
    }
    report("hit path, known triplets round-robin", n_hits, started.elapsed());

    // Five passes make the first network auto-allowed; its checks then skip the triplet lookup.
    for sender_idx in 0..5 {
        let sender = format!("auto{sender_idx}@example.net");
        let attempt = Attempt { client_address: client(0), sender: &sender, recipient: "bob@example.com" };
        greylist.check(&attempt)?;
        clock.advance(Duration::from_secs(10 * 60));
        greylist.check(&attempt)?;
    }
    let started = Instant::now();
    for hit_idx in 0..n_hits {
        let sender = &senders[(hit_idx % n_triplets) as usize];
        let attempt = Attempt { client_address: client(0), sender, recipient: "carol@example.com" };
        assert_eq!(greylist.check(&attempt)?, Verdict::Pass(PassReason::AutoAllowedClient));
    }
    report("hit path, auto-allowed client network", n_hits, started.elapsed());

    let counts = greylist.counts()?;
    let wal_len = std::fs::metadata(dir.path().join("greylist.db-wal")).map_or(0, |metadata| metadata.len());
    let file_len = std::fs::metadata(dir.path().join("greylist.db"))?.len() + wal_len;
    println!(
        "state: {} passed, {} pending, {} client networks; {} bytes on disk with the WAL ({} bytes a triplet)",
        counts.n_passed,
        counts.n_pending,
        counts.n_clients,
        file_len,
        file_len / u64::from(n_triplets.max(1))
    );
    Ok(())
}

fn report(what: &str, n_checks: u32, elapsed: Duration) {
    let per_second = f64::from(n_checks) / elapsed.as_secs_f64();
    let micros = elapsed.as_secs_f64() * 1e6 / f64::from(n_checks);
    println!("{what}: {n_checks} checks in {elapsed:.2?}: {per_second:.0} checks/s, {micros:.1} µs each");
}
