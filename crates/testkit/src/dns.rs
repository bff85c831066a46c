//! A real authoritative DNS server for tests: Knot DNS (`knotd`, Debian package `knot`) serving zones the test
//! writes, such as a DNS blocklist.
//!
//! [`DnsServer::start`] writes a configuration and zone files into a
//! temporary directory, starts `knotd` on the given address (127.0.0.1:53
//! inside a [`NetNs`](crate::netns::NetNs) when a daemon's resolver must
//! find it) and waits (at most 10 s) until every zone answers
//! authoritatively. Dropping it stops `knotd` — only that process, by its
//! own process group — and removes the directory. `knotd` runs under
//! the guard shell of [`stack::process`](crate::stack::process), so it also stops when the test
//! process dies.
//!
//! [`query`] is a minimal DNS client over UDP (RFC 1035 §4) for readiness
//! checks and for tests that want to see what the server answers.
//!
//! ```no_run
//! use std::net::{Ipv4Addr, SocketAddr};
//! use couchmail_testkit::dns::{DnsServer, Zone, query, RecordType};
//!
//! let zone = Zone::new("dnsbl.test").dnsbl_listing(Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 2));
//! let server = DnsServer::start(SocketAddr::from(([127, 0, 0, 1], 5353)), vec![zone]).unwrap();
//! let answer = query(server.address(), "2.0.0.127.dnsbl.test", RecordType::A).unwrap();
//! assert_eq!(answer.addresses, [Ipv4Addr::new(127, 0, 0, 2)]);
//! ```

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use crate::stack::process::{GuardSpec, Guarded};

/// Knot's server, where Debian puts it.
pub const KNOTD_PROGRAM: &str = "/usr/sbin/knotd";
/// How long Knot may take to load its zones.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long Knot gets to stop before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one query waits for its answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether Knot is installed; `Err` says what is missing.
pub fn preflight() -> Result<(), String> {
    if Path::new(KNOTD_PROGRAM).exists() {
        Ok(())
    } else {
        Err(format!("the DNS harness needs {KNOTD_PROGRAM} (Debian package knot)"))
    }
}

/// One zone: its origin and records in zone-file syntax (RFC 1035 §5).
#[derive(Clone, Debug)]
pub struct Zone {
    origin: String,
    records: Vec<String>,
}

impl Zone {
    /// A zone with its SOA and one name server (`ns.<origin>`, 127.0.0.1), which Knot requires at the apex.
    pub fn new(origin: &str) -> Zone {
        let origin = origin.trim_end_matches('.').to_ascii_lowercase();
        Zone {
            records: vec![
                format!("@ SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 60"),
                "@ NS ns".to_owned(),
                "ns A 127.0.0.1".to_owned(),
            ],
            origin,
        }
    }

    /// Adds `owner TYPE data`; `owner` is relative to the origin (`@` is the origin itself).
    pub fn record(mut self, owner: &str, record_type: &str, data: &str) -> Zone {
        self.records.push(format!("{owner} {record_type} {data}"));
        self
    }

    /// Lists `address` as a DNSBL does: `d.c.b.a.<origin>` answers `answer` (an A record, usually 127.0.0.2)
    /// with a TXT record saying why.
    pub fn dnsbl_listing(self, address: Ipv4Addr, answer: Ipv4Addr) -> Zone {
        let [a, b, c, d] = address.octets();
        let owner = format!("{d}.{c}.{b}.{a}");
        self.record(&owner, "A", &answer.to_string()).record(
            &owner,
            "TXT",
            &format!("\"{address} is listed by the couchmail tests\""),
        )
    }

    /// The zone's origin, without the final dot.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn file_text(&self) -> String {
        let mut text = format!("$ORIGIN {}.\n$TTL 60\n", self.origin);
        for record in &self.records {
            text.push_str(record);
            text.push('\n');
        }
        text
    }
}

/// A running `knotd`, stopped on drop.
#[derive(Debug)]
pub struct DnsServer {
    guarded: Guarded,
    address: SocketAddr,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl DnsServer {
    /// Starts `knotd` on `address` (UDP and TCP) serving `zones`, and waits until each answers.
    pub fn start(address: SocketAddr, zones: Vec<Zone>) -> Result<DnsServer, String> {
        preflight()?;
        let dir = tempfile::Builder::new()
            .prefix("cm-knot-")
            .tempdir_in("/var/tmp")
            .map_err(|err| format!("cannot create a directory for Knot in /var/tmp: {err}"))?;
        let root = dir.path();
        for sub in ["run", "db", "zones"] {
            std::fs::create_dir(root.join(sub)).map_err(|err| format!("cannot create {sub}/ for Knot: {err}"))?;
        }
        let mut config = format!(
            "# Written by couchmail-testkit's DNS harness.\n\
             server:\n    rundir: \"{root}/run\"\n    listen: {ip}@{port}\n\
             log:\n  - target: stderr\n    any: info\n\
             database:\n    storage: \"{root}/db\"\n\
             template:\n  - id: default\n    storage: \"{root}/zones\"\n    file: \"%s.zone\"\n\
             \x20   zonefile-sync: -1\n    zonefile-load: whole\n    journal-content: none\n\
             zone:\n",
            root = root.display(),
            ip = address.ip(),
            port = address.port(),
        );
        for zone in &zones {
            let _ = writeln!(config, "  - domain: {}.", zone.origin);
            let file = root.join("zones").join(format!("{}.zone", zone.origin));
            std::fs::write(&file, zone.file_text()).map_err(|err| format!("cannot write {}: {err}", file.display()))?;
        }
        let config_file = root.join("knot.conf");
        std::fs::write(&config_file, config).map_err(|err| format!("cannot write {}: {err}", config_file.display()))?;
        let log = root.join("knotd.log");
        let guarded = Guarded::spawn(GuardSpec {
            name: "knotd",
            program: Path::new(KNOTD_PROGRAM),
            args: &[OsStr::new("-c"), config_file.as_os_str()],
            log: &log,
            envs: &[],
            cleanup: Some(root),
            leftover_pid_file: None,
        })?;
        let mut server = DnsServer { guarded, address, log, dir };
        server.wait_ready(&zones)?;
        Ok(server)
    }

    /// Where it answers.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// What `knotd` logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The temporary directory of its configuration, zones and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Polls every zone's SOA until each is answered authoritatively.
    fn wait_ready(&mut self, zones: &[Zone]) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        for zone in zones {
            loop {
                if !self.guarded.is_running() {
                    return Err(format!("knotd exited (status {:?}):\n{}", self.guarded.exit_status(), self.log()));
                }
                // Knot keeps running without a zone it cannot load; its log says why at once.
                let failed_marker = format!("error: [{}.]", zone.origin);
                if let Some(line) = self.log().lines().find(|line| line.contains(&failed_marker)) {
                    return Err(format!("knotd cannot load zone {}: {line}\n{}", zone.origin, self.log()));
                }
                let last = match query(self.address, &zone.origin, RecordType::Soa) {
                    Ok(answer) if answer.authoritative && answer.rcode == 0 && answer.n_answers > 0 => break,
                    Ok(answer) => format!("answered {answer:?}"),
                    Err(err) => err,
                };
                if Instant::now() >= deadline {
                    return Err(format!(
                        "knotd did not serve {} on {} within {} s; last: {last}\n{}",
                        zone.origin,
                        self.address,
                        START_TIMEOUT.as_secs(),
                        self.log()
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        // A drop has nobody to report a failed stop to; the guard kills what does not stop.
        let _ = self.guarded.stop(STOP_TIMEOUT);
    }
}

/// The record types [`query`] asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordType {
    /// An IPv4 address.
    A,
    /// Text, such as a DNSBL's reason.
    Txt,
    /// The zone's start of authority.
    Soa,
}

impl RecordType {
    fn code(self) -> u16 {
        match self {
            RecordType::A => 1,
            RecordType::Soa => 6,
            RecordType::Txt => 16,
        }
    }
}

/// What a server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The response code: 0 NOERROR, 3 NXDOMAIN, 5 REFUSED (RFC 1035 §4.1.1).
    pub rcode: u8,
    /// Whether the server is authoritative for the name (the AA bit).
    pub authoritative: bool,
    /// How many records the answer section holds.
    pub n_answers: u16,
    /// The addresses of its A records.
    pub addresses: Vec<Ipv4Addr>,
}

/// Asks `server` once over UDP for `name`'s records of `record_type`.
pub fn query(server: SocketAddr, name: &str, record_type: RecordType) -> Result<Answer, String> {
    static NEXT_ID: AtomicU16 = AtomicU16::new(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed) ^ (std::process::id() as u16);
    let request = encode_query(id, name, record_type)?;
    let local = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let socket = UdpSocket::bind(local).map_err(|err| format!("cannot open a UDP socket: {err}"))?;
    socket.set_read_timeout(Some(QUERY_TIMEOUT)).map_err(|err| err.to_string())?;
    socket.send_to(&request, server).map_err(|err| format!("cannot send a query to {server}: {err}"))?;
    let mut buffer = [0_u8; 4096];
    let deadline = Instant::now() + QUERY_TIMEOUT;
    loop {
        let (length, from) =
            socket.recv_from(&mut buffer).map_err(|err| format!("no answer from {server} for {name}: {err}"))?;
        if from == server
            && let Some(answer) = decode_answer(id, &buffer[..length])
        {
            return Ok(answer);
        }
        if Instant::now() >= deadline {
            return Err(format!("no matching answer from {server} for {name}"));
        }
    }
}

/// A query message: header with one question, no recursion wanted.
fn encode_query(id: u16, name: &str, record_type: RecordType) -> Result<Vec<u8>, String> {
    let mut message = Vec::with_capacity(64);
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        let length = u8::try_from(label.len()).ok().filter(|length| (1..=63).contains(length));
        let Some(length) = length else { return Err(format!("{name:?} is not a DNS name")) };
        message.push(length);
        message.extend_from_slice(label.as_bytes());
    }
    message.push(0);
    message.extend_from_slice(&record_type.code().to_be_bytes());
    message.extend_from_slice(&1_u16.to_be_bytes());
    Ok(message)
}

/// The answer to query `id`, or `None` for anything else (another id, not a response, truncated).
fn decode_answer(id: u16, message: &[u8]) -> Option<Answer> {
    let word = |offset: usize| Some(u16::from_be_bytes([*message.get(offset)?, *message.get(offset + 1)?]));
    if word(0)? != id {
        return None;
    }
    let flags = word(2)?;
    if flags & 0x8000 == 0 {
        return None;
    }
    let (n_questions, n_answers) = (word(4)?, word(6)?);
    let mut offset = 12;
    for _ in 0..n_questions {
        offset = skip_name(message, offset)? + 4;
    }
    let mut addresses = Vec::new();
    for _ in 0..n_answers {
        offset = skip_name(message, offset)?;
        let (record_type, data_length) = (word(offset)?, usize::from(word(offset + 8)?));
        let data = message.get(offset + 10..offset + 10 + data_length)?;
        if record_type == RecordType::A.code()
            && let Ok(octets) = <[u8; 4]>::try_from(data)
        {
            addresses.push(Ipv4Addr::from(octets));
        }
        offset += 10 + data_length;
    }
    Some(Answer { rcode: (flags & 0x000f) as u8, authoritative: flags & 0x0400 != 0, n_answers, addresses })
}

/// The offset after the (possibly compressed) name at `offset`.
fn skip_name(message: &[u8], mut offset: usize) -> Option<usize> {
    loop {
        let length = *message.get(offset)?;
        match length {
            0 => return Some(offset + 1),
            length if length & 0xc0 == 0xc0 => return Some(offset + 2),
            length => offset += 1 + usize::from(length),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runnable() -> bool {
        match preflight() {
            Ok(()) => true,
            Err(err) if std::env::var_os("CI").is_some() => panic!("CI must run the DNS harness tests: {err}"),
            Err(err) => {
                eprintln!("note: skipping a DNS harness test: {err}");
                false
            }
        }
    }

    fn free_udp_port() -> u16 {
        UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    #[test]
    fn knot_serves_a_dnsbl_zone_and_stops_on_drop() {
        if !runnable() {
            return;
        }
        let address = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
        let zone = Zone::new("dnsbl.test").dnsbl_listing(Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 2));
        let server =
            DnsServer::start(address, vec![zone, Zone::new("other.test").record("www", "A", "192.0.2.7")]).unwrap();
        let listed = query(address, "2.0.0.127.dnsbl.test", RecordType::A).unwrap();
        assert_eq!((listed.rcode, listed.authoritative), (0, true));
        assert_eq!(listed.addresses, [Ipv4Addr::new(127, 0, 0, 2)]);
        let reason = query(address, "2.0.0.127.dnsbl.test", RecordType::Txt).unwrap();
        assert_eq!((reason.n_answers, reason.addresses.len()), (1, 0));
        let unlisted = query(address, "1.0.0.127.dnsbl.test", RecordType::A).unwrap();
        assert_eq!((unlisted.rcode, unlisted.addresses.len()), (3, 0), "NXDOMAIN");
        let other = query(address, "www.other.test", RecordType::A).unwrap();
        assert_eq!(other.addresses, [Ipv4Addr::new(192, 0, 2, 7)]);
        let elsewhere = query(address, "example.com", RecordType::A).unwrap();
        assert_eq!(elsewhere.rcode, 5, "REFUSED: Knot is authoritative only");

        let dir = server.dir().to_owned();
        let pid = server.guarded.pid().unwrap();
        drop(server);
        assert!(crate::stack::process::process_info(pid).is_none_or(|info| !info.command_line.contains("knotd")));
        assert!(!dir.exists(), "the directory goes with the server");
        assert!(query(address, "2.0.0.127.dnsbl.test", RecordType::A).is_err(), "nobody answers any more");
    }

    #[test]
    fn a_bad_zone_fails_the_start_with_knots_reason() {
        if !runnable() {
            return;
        }
        let address = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
        let zone = Zone::new("broken.test").record("www", "A", "not-an-address");
        let started = Instant::now();
        let err = DnsServer::start(address, vec![zone]).unwrap_err();
        assert!(err.contains("cannot load zone broken.test") && err.contains("invalid address"), "{err}");
        assert!(started.elapsed() < START_TIMEOUT, "the failure is seen in the log, not waited out");
    }

    #[test]
    fn answers_decode_compressed_names_and_skip_other_ids() {
        let query_message = encode_query(7, "a.test", RecordType::A).unwrap();
        let mut response = query_message.clone();
        response[2] = 0x84; // QR and AA
        response[7] = 1; // one answer
        response.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 2]);
        let answer = decode_answer(7, &response).unwrap();
        assert_eq!(
            answer,
            Answer { rcode: 0, authoritative: true, n_answers: 1, addresses: vec![Ipv4Addr::new(127, 0, 0, 2)] }
        );
        assert_eq!(decode_answer(8, &response), None, "another query's answer");
        assert_eq!(decode_answer(7, &query_message), None, "not a response");
        assert_eq!(decode_answer(7, &response[..response.len() - 2]), None, "truncated");
        assert!(encode_query(1, "a..test", RecordType::A).is_err());
    }
}
