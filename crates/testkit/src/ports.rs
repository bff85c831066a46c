//! Free loopback TCP ports for servers that a test starts in another process, unique across
//! every test process of a run.
//!
//! Binding port 0 and handing the number to a server that binds it later leaves a window in
//! which another test process, doing the same, gets the same number from the kernel: then
//! one server fails to bind and, worse, its readiness probe is answered by the other test's
//! server. So [`reserve`] takes ports from a range below the kernel's ephemeral range (which
//! port 0 and outgoing connections draw from), and records each port it hands out in a file
//! shared by all test processes, under an exclusive lock, for [`HELD_FOR`]: no two processes
//! get the same port while a test may still be starting its server on it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::ops::Range;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The ports handed out: below Linux's default ephemeral range (32768–60999).
const RANGE: Range<u16> = 20_000..32_000;
/// How long a handed-out port stays reserved for its test.
pub const HELD_FOR: Duration = Duration::from_secs(15 * 60);
/// The record of handed-out ports, shared by the test processes of the machine.
const LEDGER: &str = "/var/tmp/couchmail-test-ports";
/// How many candidates one reservation tries before giving up.
const TRIES: usize = 2_000;

/// `count` distinct free loopback ports that no other test process has been given within
/// [`HELD_FOR`].
///
/// # Errors
/// When the ledger cannot be used, or no free port is found.
pub fn reserve(count: usize) -> Result<Vec<u16>, String> {
    reserve_in(Path::new(LEDGER), count)
}

fn reserve_in(ledger_path: &Path, count: usize) -> Result<Vec<u16>, String> {
    let mut ledger = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(ledger_path)
        .map_err(|error| format!("cannot open the port ledger {}: {error}", ledger_path.display()))?;
    ledger.lock().map_err(|error| format!("cannot lock the port ledger {}: {error}", ledger_path.display()))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
    let mut held = read_ledger(&mut ledger)?;
    held.retain(|_, &mut since| now.saturating_sub(since) < HELD_FOR.as_secs());

    let random = RandomState::new();
    let span = u64::from(RANGE.end - RANGE.start);
    let mut ports = Vec::with_capacity(count);
    for attempt in 0..TRIES {
        if ports.len() == count {
            break;
        }
        let offset = random.hash_one((attempt, std::process::id())) % span;
        let Ok(port) = u16::try_from(u64::from(RANGE.start) + offset) else { continue };
        if held.contains_key(&port) || ports.contains(&port) || !bindable(port) {
            continue;
        }
        ports.push(port);
    }
    if ports.len() < count {
        return Err(format!("found only {} of {count} free ports in {RANGE:?}", ports.len()));
    }
    held.extend(ports.iter().map(|&port| (port, now)));
    write_ledger(&mut ledger, &held)?;
    // The lock goes with the file.
    Ok(ports)
}

fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// The ledger's lines, `PORT SECONDS-SINCE-EPOCH`; lines that do not parse are dropped.
fn read_ledger(ledger: &mut File) -> Result<BTreeMap<u16, u64>, String> {
    let mut text = String::new();
    ledger.read_to_string(&mut text).map_err(|error| format!("cannot read the port ledger: {error}"))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (port, since) = line.split_once(' ')?;
            Some((port.parse().ok()?, since.parse().ok()?))
        })
        .collect())
}

fn write_ledger(ledger: &mut File, held: &BTreeMap<u16, u64>) -> Result<(), String> {
    let text: String = held.iter().map(|(port, since)| format!("{port} {since}\n")).collect();
    ledger
        .seek(SeekFrom::Start(0))
        .and_then(|_| ledger.set_len(0))
        .and_then(|()| ledger.write_all(text.as_bytes()))
        .map_err(|error| format!("cannot write the port ledger: {error}"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn reservations_never_repeat_a_held_port_and_stay_in_range() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("ports");
        let mut seen = BTreeSet::new();
        for _ in 0..50 {
            for port in reserve_in(&ledger, 6).unwrap() {
                assert!(RANGE.contains(&port), "{port}");
                assert!(seen.insert(port), "port {port} handed out twice");
            }
        }
        assert_eq!(read_ledger(&mut File::open(&ledger).unwrap()).unwrap().len(), 300);
    }

    #[test]
    fn concurrent_reservations_are_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("ports");
        let handed: Vec<u16> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..8).map(|_| scope.spawn(|| reserve_in(&ledger, 10).unwrap())).collect();
            workers.into_iter().flat_map(|worker| worker.join().unwrap()).collect()
        });
        assert_eq!(handed.iter().collect::<BTreeSet<_>>().len(), 80);
    }

    #[test]
    fn expired_and_garbled_entries_are_forgotten_and_a_bound_port_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("ports");
        std::fs::write(&ledger, "20001 0\nnot a line\n20002 99999999999\n").unwrap();
        reserve_in(&ledger, 1).unwrap();
        let held = read_ledger(&mut File::open(&ledger).unwrap()).unwrap();
        assert!(!held.contains_key(&20001), "an entry from 1970 has expired");
        assert_eq!(held.len(), 2, "{held:?}");
        let busy = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        assert!(!bindable(busy.local_addr().unwrap().port()));
    }
}
