//! Resident memory and CPU time of a running mail stack, process by process, grouped per daemon (issue #6).
//!
//! A stack is found from its roots: `couchmail up` (found by its configuration file on its command line), Postfix's
//! master and Dovecot's master (from their pid files), and any process whose command line names the stack's
//! directory (spamd, spamass-milter). Every descendant of a root belongs to the stack, and to the daemon of its
//! nearest ancestor (or itself) that is a daemon's main process: a Postfix `smtpd` to Postfix, a spamd child to
//! spamd, spamd itself to spamd although `couchmail up` started it. The harness's guard shells have no such ancestor
//! and are left out, as are the benchmark's own processes.
//!
//! Memory is `VmRSS` from /proc/PID/status (pages shared between processes count once per process) and `Pss` from
//! /proc/PID/smaps_rollup (each shared page divided between the processes that map it, so sums add up).
//! CPU time of a daemon is every live process's own time plus what each has reaped from children that exited, so
//! that a difference between two snapshots counts the `smtpd` and `lmtp` processes that came and went in between.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::process::clock_ticks_per_second;

/// The daemons a process can belong to, in the order the report lists them.
pub const DAEMONS: [&str; 5] = ["couchmail", "Postfix", "Dovecot", "spamd", "spamass-milter"];

/// How to recognise one stack's processes.
#[derive(Debug, Clone, Default)]
pub struct StackRoots {
    /// Text on the command line of `couchmail up` (its configuration file); `None` for a stack without couchmail.
    pub couchmail_marker: Option<String>,
    /// Postfix's `master.pid`.
    pub postfix_pid_file: PathBuf,
    /// Dovecot's `master.pid`.
    pub dovecot_pid_file: PathBuf,
    /// The stack's directory: a process naming it on its command line belongs to the stack.
    pub directory: PathBuf,
}

/// One process of the stack at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSample {
    pub pid: u32,
    pub daemon: &'static str,
    /// The kernel's name of the process (`comm`): `smtpd`, `lmtp`, `spamd child`…
    pub name: String,
    pub rss_kib: u64,
    pub pss_kib: u64,
    /// Own CPU seconds plus those of children it has reaped.
    pub cpu_s: f64,
}

/// Every process of the stack at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub processes: Vec<ProcessSample>,
}

/// Sums of one daemon's processes (or of the whole stack).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub n_processes: usize,
    pub rss_kib: u64,
    pub pss_kib: u64,
    pub cpu_s: f64,
}

impl Totals {
    fn add(&mut self, process: &ProcessSample) {
        self.n_processes += 1;
        self.rss_kib += process.rss_kib;
        self.pss_kib += process.pss_kib;
        self.cpu_s += process.cpu_s;
    }

    /// The larger of each figure (for peaks over samples).
    fn max(&mut self, other: &Totals) {
        self.n_processes = self.n_processes.max(other.n_processes);
        self.rss_kib = self.rss_kib.max(other.rss_kib);
        self.pss_kib = self.pss_kib.max(other.pss_kib);
    }
}

impl Snapshot {
    /// Sums per daemon, in [`DAEMONS`] order, daemons without processes left out.
    pub fn per_daemon(&self) -> Vec<(&'static str, Totals)> {
        DAEMONS
            .iter()
            .filter_map(|daemon| {
                let mut totals = Totals::default();
                for process in self.processes.iter().filter(|process| process.daemon == *daemon) {
                    totals.add(process);
                }
                (totals.n_processes > 0).then_some((*daemon, totals))
            })
            .collect()
    }

    /// Sums per daemon and process name.
    pub fn per_name(&self) -> BTreeMap<(usize, String), Totals> {
        let mut sums: BTreeMap<(usize, String), Totals> = BTreeMap::new();
        for process in &self.processes {
            let daemon_idx = DAEMONS.iter().position(|daemon| *daemon == process.daemon).unwrap_or(DAEMONS.len());
            sums.entry((daemon_idx, process.name.clone())).or_default().add(process);
        }
        sums
    }

    pub fn total(&self) -> Totals {
        let mut totals = Totals::default();
        for process in &self.processes {
            totals.add(process);
        }
        totals
    }

    /// CPU seconds per daemon.
    pub fn cpu_per_daemon(&self) -> HashMap<&'static str, f64> {
        let mut cpu = HashMap::new();
        for process in &self.processes {
            *cpu.entry(process.daemon).or_insert(0.0) += process.cpu_s;
        }
        cpu
    }
}

/// The highest sums seen over a series of snapshots: per daemon, per process name, and for the whole stack (the
/// peak of the total, which is not the sum of the daemons' peaks).
#[derive(Debug, Clone, Default)]
pub struct Peaks {
    pub samples: usize,
    pub per_daemon: BTreeMap<&'static str, Totals>,
    pub per_name: BTreeMap<(usize, String), Totals>,
    pub total: Totals,
}

impl Peaks {
    pub fn record(&mut self, snapshot: &Snapshot) {
        self.samples += 1;
        for (daemon, totals) in snapshot.per_daemon() {
            self.per_daemon.entry(daemon).or_default().max(&totals);
        }
        for (key, totals) in snapshot.per_name() {
            self.per_name.entry(key).or_default().max(&totals);
        }
        self.total.max(&snapshot.total());
    }
}

/// Reads every process of the stack now.
pub fn snapshot(roots: &StackRoots) -> Snapshot {
    let table = process_table();
    let own_pid = std::process::id();
    let mut masters: HashMap<u32, &'static str> = HashMap::new();
    if let Some(pid) = read_pid_file(&roots.postfix_pid_file) {
        masters.insert(pid, "Postfix");
    }
    if let Some(pid) = read_pid_file(&roots.dovecot_pid_file) {
        masters.insert(pid, "Dovecot");
    }
    let directory = roots.directory.to_string_lossy().into_owned();
    let mut stack_roots: BTreeSet<u32> = masters.keys().copied().collect();
    for entry in table.values() {
        if entry.pid == own_pid {
            continue;
        }
        if let Some(marker) = &roots.couchmail_marker
            && entry.name == "couchmail"
            && entry.command_line.contains(marker.as_str())
        {
            masters.insert(entry.pid, "couchmail");
            stack_roots.insert(entry.pid);
        }
        if !directory.is_empty() && entry.command_line.contains(directory.as_str()) {
            stack_roots.insert(entry.pid);
        }
    }
    // spamd and the milter are the main processes of their daemons wherever they hang (under couchmail up, or
    // reparented): the topmost spamd of a chain, and every spamass-milter.
    for entry in table.values() {
        let parent_is_spamd = table.get(&entry.parent).is_some_and(|parent| is_spamd(&parent.name));
        if is_spamd(&entry.name) && !parent_is_spamd {
            masters.insert(entry.pid, "spamd");
        } else if entry.name == "spamass-milter" {
            masters.insert(entry.pid, "spamass-milter");
        } else if entry.name == "postfix-script" {
            // `postfix start-fg` waits in this script while its master runs: it is Postfix's, not its starter's.
            masters.insert(entry.pid, "Postfix");
        }
    }
    let mut processes = Vec::new();
    for entry in table.values() {
        if entry.pid == own_pid {
            continue;
        }
        let Some(daemon) = classify(entry.pid, &table, &masters, &stack_roots) else { continue };
        let Some(rss_kib) = read_rss_kib(entry.pid) else { continue };
        processes.push(ProcessSample {
            pid: entry.pid,
            daemon,
            name: entry.name.clone(),
            rss_kib,
            pss_kib: read_pss_kib(entry.pid).unwrap_or(0),
            cpu_s: entry.cpu_s,
        });
    }
    processes.sort_by_key(|process| process.pid);
    Snapshot { processes }
}

/// Samples the stack every `interval` on a thread of its own until [`Sampler::finish`].
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Peaks>,
}

impl Sampler {
    pub fn start(roots: StackRoots, interval: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peaks = Peaks::default();
            while !thread_stop.load(Ordering::Relaxed) {
                peaks.record(&snapshot(&roots));
                std::thread::sleep(interval);
            }
            peaks.record(&snapshot(&roots));
            peaks
        });
        Sampler { stop, thread }
    }

    pub fn finish(self) -> Peaks {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

fn is_spamd(name: &str) -> bool {
    name == "spamd" || name.starts_with("spamd ")
}

/// The daemon of `pid`: that of its nearest ancestor-or-self that is a daemon's main process, provided the chain
/// passes through a root of the stack.
fn classify(
    pid: u32,
    table: &HashMap<u32, ProcEntry>,
    masters: &HashMap<u32, &'static str>,
    stack_roots: &BTreeSet<u32>,
) -> Option<&'static str> {
    let mut daemon = None;
    let mut in_stack = false;
    let mut current = pid;
    // A chain of parents is short; the bound only guards against a table read while pids were reused.
    for _ in 0..64 {
        if daemon.is_none() {
            daemon = masters.get(&current).copied();
        }
        in_stack |= stack_roots.contains(&current);
        if daemon.is_some() && in_stack {
            return daemon;
        }
        match table.get(&current) {
            Some(entry) if entry.parent > 1 => current = entry.parent,
            _ => break,
        }
    }
    None
}

#[derive(Debug, Clone)]
struct ProcEntry {
    pid: u32,
    parent: u32,
    name: String,
    command_line: String,
    cpu_s: f64,
}

/// Every process on the machine: parent, name, command line and CPU times from /proc.
fn process_table() -> HashMap<u32, ProcEntry> {
    let mut table = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return table };
    let ticks = clock_ticks_per_second();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        // A process may exit between the listing and the reading: it is then simply not in the table.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((name, parent, cpu_s)) = parse_stat(&stat, ticks) else { continue };
        let command_line = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " ").trim().to_owned())
            .unwrap_or_default();
        table.insert(pid, ProcEntry { pid, parent, name, command_line, cpu_s });
    }
    table
}

/// The name, parent pid and CPU seconds (own and reaped children's) in a /proc/PID/stat line (proc(5)).
fn parse_stat(stat: &str, ticks_per_second: f64) -> Option<(String, u32, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // fields[0] is field 3 (state); the parent is field 4, utime..cstime fields 14 to 17.
    let field = |number: usize| fields.get(number - 3).copied();
    let parent = field(4)?.parse().ok()?;
    let mut ticks = 0.0;
    for number in 14..=17 {
        ticks += field(number)?.parse::<f64>().ok()?;
    }
    Some((name, parent, ticks / ticks_per_second))
}

fn read_pid_file(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kib_field(&status, "VmRSS:")
}

fn read_pss_kib(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    kib_field(&rollup, "Pss:")
}

/// The number of a `Name:   1234 kB` line.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: u32, parent: u32, name: &str) -> (u32, ProcEntry) {
        (pid, ProcEntry { pid, parent, name: name.to_owned(), command_line: String::new(), cpu_s: 0.0 })
    }

    #[test]
    fn processes_belong_to_their_nearest_daemon_inside_the_stack() {
        let table: HashMap<u32, ProcEntry> = [
            entry(10, 1, "sh"),
            entry(11, 10, "couchmail"),
            entry(12, 11, "spamd"),
            entry(13, 12, "spamd child"),
            entry(20, 1, "master"),
            entry(21, 20, "smtpd"),
            entry(30, 1, "dovecot"),
            entry(31, 30, "lmtp"),
            entry(40, 1, "master"),
            entry(41, 40, "smtpd"),
        ]
        .into_iter()
        .collect();
        let masters: HashMap<u32, &'static str> =
            [(11, "couchmail"), (12, "spamd"), (20, "Postfix"), (30, "Dovecot"), (40, "Postfix")].into();
        let roots: BTreeSet<u32> = [11, 20, 30].into();
        let daemon_of = |pid| classify(pid, &table, &masters, &roots);
        assert_eq!(daemon_of(11), Some("couchmail"));
        assert_eq!(daemon_of(13), Some("spamd"));
        assert_eq!(daemon_of(21), Some("Postfix"));
        assert_eq!(daemon_of(31), Some("Dovecot"));
        // The guard shell above couchmail is the harness's, and pid 40 is another stack's Postfix.
        assert_eq!(daemon_of(10), None);
        assert_eq!(daemon_of(41), None);
    }

    #[test]
    fn stat_lines_give_name_parent_and_cpu() {
        let stat = "4242 (spamd child) S 17 4242 4242 0 -1 4194304 100 0 0 0 250 50 7 3 20 0 1 0 100 1000 10";
        assert_eq!(parse_stat(stat, 100.0), Some(("spamd child".to_owned(), 17, 3.1)));
        assert_eq!(parse_stat("garbage", 100.0), None);
    }

    #[test]
    fn kib_fields_are_read_from_status_and_rollup() {
        let status = "Name:\tsmtpd\nVmPeak:\t  20000 kB\nVmRSS:\t    8123 kB\n";
        assert_eq!(kib_field(status, "VmRSS:"), Some(8123));
        assert_eq!(kib_field("Rss: 10 kB\nPss: 7 kB\nPss_Anon: 3 kB\n", "Pss:"), Some(7));
        assert_eq!(kib_field(status, "Pss:"), None);
    }

    #[test]
    fn peaks_keep_the_highest_sum_not_the_sum_of_highs() {
        let sample = |pid, daemon, rss_kib| ProcessSample {
            pid,
            daemon,
            name: "x".to_owned(),
            rss_kib,
            pss_kib: rss_kib / 2,
            cpu_s: 0.0,
        };
        let mut peaks = Peaks::default();
        peaks.record(&Snapshot { processes: vec![sample(1, "Postfix", 100), sample(2, "Dovecot", 10)] });
        peaks.record(&Snapshot { processes: vec![sample(1, "Postfix", 20), sample(2, "Dovecot", 50)] });
        assert_eq!(peaks.samples, 2);
        assert_eq!(peaks.per_daemon["Postfix"].rss_kib, 100);
        assert_eq!(peaks.per_daemon["Dovecot"].rss_kib, 50);
        assert_eq!(peaks.total.rss_kib, 110);
        assert_eq!(peaks.total.pss_kib, 55);
    }

    #[test]
    fn this_process_is_seen_when_its_directory_is_a_root_and_it_is_a_master() {
        // With no pid files and no marker nothing is a daemon: the test process is never counted.
        let roots = StackRoots { directory: PathBuf::from("/nonexistent-stack-dir"), ..StackRoots::default() };
        assert!(snapshot(&roots).processes.is_empty());
    }
}
