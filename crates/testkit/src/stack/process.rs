//! Processes of a stack: started under a guard shell that stops them when
//! the test process goes away, and found again through `/proc` to prove
//! that none is left behind.
//!
//! Statics are never dropped, so a stack shared by a whole test binary
//! could outlive it. Each process therefore runs under `sh` with a pipe
//! from the test process on its standard input: when the test process
//! exits (or closes the pipe), `read` returns, and the shell sends SIGTERM
//! to the process group and waits for it. The process runs under
//! `setsid`, so its group and session are its own and the shell can reach
//! every process it forks.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// The guard: `$1` is where the exit status goes, `$2` a directory to
/// remove and `$3` a pid file whose process to stop as well when the test
/// process went away without a stop (empty: none). Postfix's master makes
/// itself a session leader, so it escapes the group signal and needs the
/// pid file.
const GUARD_SCRIPT: &str = r#"status_file=$1; cleanup=$2; pid_file=$3; shift 3
setsid "$@" </dev/null &
child=$!
word=
read -r word || true
kill -TERM -"$child" 2>/dev/null || kill -TERM "$child" 2>/dev/null
wait "$child"
echo "$?" >"$status_file"
if [ "$word" != stop ]; then
  if [ -n "$pid_file" ] && [ -f "$pid_file" ]; then
    pid=$(tr -d ' \n' <"$pid_file")
    if grep -q master "/proc/$pid/cmdline" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in 1 2 3 4 5 6 7 8 9 10; do [ -d "/proc/$pid" ] || break; sleep 1; done
    fi
  fi
  if [ -n "$cleanup" ] && [ -z "$COUCHMAIL_E2E_KEEP" ]; then rm -rf -- "$cleanup"; fi
fi
"#;

/// How to start a guarded process.
#[derive(Clone, Copy, Debug)]
pub struct GuardSpec<'a> {
    /// A short name for messages (`couchmail`, `postfix`).
    pub name: &'a str,
    /// The program.
    pub program: &'a Path,
    /// Its arguments.
    pub args: &'a [&'a OsStr],
    /// Where its stdout and stderr are appended; the exit status goes next to it (`.exit`).
    pub log: &'a Path,
    /// Extra environment variables.
    pub envs: &'a [(&'a str, &'a str)],
    /// A directory the guard removes if the test process dies first.
    pub cleanup: Option<&'a Path>,
    /// A Postfix master pid file whose master the guard stops if the test process dies first.
    pub leftover_pid_file: Option<&'a Path>,
}

/// A process running under the guard shell.
#[derive(Debug)]
pub struct Guarded {
    name: String,
    shell: Child,
    stdin: Option<ChildStdin>,
    status_file: PathBuf,
}

impl Guarded {
    /// Starts the process of `spec`.
    pub fn spawn(spec: GuardSpec<'_>) -> Result<Guarded, String> {
        let GuardSpec { name, program, args, log, envs, cleanup, leftover_pid_file } = spec;
        let open_log = || {
            File::options()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|err| format!("cannot open {}: {err}", log.display()))
        };
        let status_file = log.with_extension("exit");
        // A stale status from an earlier run of the same process would look like an exit.
        let _ = std::fs::remove_file(&status_file);
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(GUARD_SCRIPT)
            .arg(format!("guard-{name}"))
            .arg(&status_file)
            .arg(cleanup.map(Path::as_os_str).unwrap_or_default())
            .arg(leftover_pid_file.map(Path::as_os_str).unwrap_or_default())
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(open_log()?)
            .stderr(open_log()?);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if (key.starts_with("COUCHMAIL_") && key != "COUCHMAIL_E2E_KEEP") || key == "RUST_LOG" {
                command.env_remove(key.as_ref());
            }
        }
        command.envs(envs.iter().copied());
        let mut shell = command.spawn().map_err(|err| format!("cannot start {name} ({}): {err}", program.display()))?;
        let stdin = shell.stdin.take();
        Ok(Guarded { name: name.to_owned(), shell, stdin, status_file })
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The guarded process itself (the shell's child), once it runs.
    pub fn pid(&self) -> Option<u32> {
        children_of(self.shell.id()).into_iter().next()
    }

    /// Whether the guarded process has not exited yet.
    pub fn is_running(&mut self) -> bool {
        matches!(self.shell.try_wait(), Ok(None)) && !self.status_file.exists()
    }

    /// The exit status, once it exited (`143` for death by SIGTERM).
    pub fn exit_status(&self) -> Option<i32> {
        std::fs::read_to_string(&self.status_file).ok()?.trim().parse().ok()
    }

    /// Asks the guard to stop the process (SIGTERM to its group) and waits
    /// up to `timeout`; after that the group gets SIGKILL. Returns the
    /// process's exit status, or why there is none.
    pub fn stop(&mut self, timeout: Duration) -> Result<i32, String> {
        let group = self.pid();
        if let Some(mut stdin) = self.stdin.take() {
            // A guard that already finished has closed its end: nothing to tell it.
            let _ = stdin.write_all(b"stop\n");
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.shell.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                Ok(None) => {
                    if let Some(group) = group {
                        signal_group(group, Signal::KILL);
                    }
                    let _ = self.shell.kill();
                    let _ = self.shell.wait();
                    return Err(format!("{} did not stop within {} s: killed", self.name, timeout.as_secs()));
                }
                Err(err) => return Err(format!("cannot wait for the guard of {}: {err}", self.name)),
            }
        }
        self.exit_status().ok_or_else(|| format!("{} left no exit status", self.name))
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if matches!(self.shell.try_wait(), Ok(None)) {
            // A best effort: stop() reports failures; a drop has nobody to report to.
            let _ = self.stop(Duration::from_secs(20));
        }
    }
}

/// What /proc says about one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Its id.
    pub pid: u32,
    /// Its parent's id.
    pub parent: u32,
    /// Its process group.
    pub group: u32,
    /// Its session.
    pub session: u32,
    /// Its command line, arguments joined by spaces.
    pub command_line: String,
}

/// Reads `/proc/<pid>`; `None` when it is gone (or a kernel thread).
pub fn process_info(pid: u32) -> Option<ProcessInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: the fields start after the last `)`.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let number = |index: usize| fields.get(index).and_then(|field| field.parse::<u32>().ok());
    let command_line = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let command_line = String::from_utf8_lossy(&command_line).replace('\0', " ").trim_end().to_owned();
    Some(ProcessInfo { pid, parent: number(1)?, group: number(2)?, session: number(3)?, command_line })
}

/// Every process on the machine.
pub fn all_processes() -> Vec<ProcessInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok()).filter_map(process_info).collect()
}

/// The direct children of `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let mut children: Vec<u32> =
        all_processes().into_iter().filter(|process| process.parent == parent).map(|process| process.pid).collect();
    children.sort_unstable();
    children
}

/// Whether `/proc/<pid>/environ` mentions `needle` (Postfix's children
/// carry `MAIL_CONFIG=<config dir>`).
fn environment_mentions(pid: u32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|environment| String::from_utf8_lossy(&environment).contains(needle))
        .unwrap_or(false)
}

/// The processes that belong to a stack: in one of `groups` or `sessions`,
/// or naming `root` in their command line or environment. Never this
/// test process.
pub fn processes_of_stack(root: &Path, groups: &BTreeSet<u32>, sessions: &BTreeSet<u32>) -> Vec<ProcessInfo> {
    let root = root.to_string_lossy();
    let own = std::process::id();
    all_processes()
        .into_iter()
        .filter(|process| process.pid != own && process.parent != 0 && process.pid != 1)
        .filter(|process| {
            groups.contains(&process.group)
                || sessions.contains(&process.session)
                || process.command_line.contains(root.as_ref())
                || environment_mentions(process.pid, root.as_ref())
        })
        .collect()
}

/// Sends `signal` to process `pid`, ignoring a process that is already gone.
pub fn signal_process(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        // Gone already is fine: the goal is that it is gone.
        let _ = kill_process(pid, signal);
    }
}

/// Sends `signal` to the process group `group`.
pub fn signal_group(group: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(group).ok().and_then(Pid::from_raw) {
        // Gone already is fine: the goal is that it is gone.
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// Whether `ancestor` is `pid`'s parent, or its parent's parent, and so on.
pub fn is_descendant_of(pid: u32, ancestor: u32) -> bool {
    let mut current = pid;
    // The chain ends at pid 1 (or 0 above it); the bound guards against a cycle of recycled pids.
    for _ in 0..64 {
        let Some(info) = process_info(current) else { return false };
        if info.parent == ancestor {
            return true;
        }
        if info.parent <= 1 {
            return false;
        }
        current = info.parent;
    }
    false
}

/// Reads a pid file (Postfix pads it with spaces).
pub fn read_pid_file(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thirty() -> [&'static OsStr; 1] {
        [OsStr::new("30")]
    }

    fn sleep_spec<'a>(log: &'a Path, cleanup: Option<&'a Path>, args: &'a [&'a OsStr]) -> GuardSpec<'a> {
        GuardSpec { name: "sleep", program: Path::new("sleep"), args, log, envs: &[], cleanup, leftover_pid_file: None }
    }

    #[test]
    fn guard_stops_the_process_and_reports_its_status() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleep.log");
        let mut guarded = Guarded::spawn(sleep_spec(&log, None, &thirty())).unwrap();
        let started = Instant::now();
        let pid = loop {
            if let Some(pid) = guarded.pid() {
                break pid;
            }
            assert!(started.elapsed() < Duration::from_secs(5), "sleep never started");
            std::thread::sleep(Duration::from_millis(10));
        };
        // The pid is known as soon as the guard forks; `setsid` takes effect a moment later.
        let info = loop {
            let info = process_info(pid).unwrap();
            if info.session == pid || started.elapsed() > Duration::from_secs(5) {
                break info;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(info.group, pid, "the guarded process leads its own group");
        assert_eq!(info.session, pid, "and its own session");
        assert!(guarded.is_running());
        assert_eq!(guarded.stop(Duration::from_secs(5)), Ok(143), "sleep dies of SIGTERM");
        assert!(process_info(pid).is_none() || process_info(pid).unwrap().command_line != info.command_line);
    }

    #[test]
    fn guard_cleans_up_when_its_owner_goes_away_without_a_stop() {
        let dir = tempfile::tempdir().unwrap();
        let doomed = dir.path().join("doomed");
        std::fs::create_dir(&doomed).unwrap();
        let log = dir.path().join("sleep.log");
        let mut guarded = Guarded::spawn(sleep_spec(&log, Some(&doomed), &thirty())).unwrap();
        // Closing the pipe without "stop" is what the end of the test process looks like.
        drop(guarded.stdin.take());
        let started = Instant::now();
        while guarded.is_running() {
            assert!(started.elapsed() < Duration::from_secs(5), "the guard did not stop sleep");
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = guarded.shell.wait();
        assert!(!doomed.exists(), "the guard removes the stack's directory");
    }

    #[test]
    fn descendants_are_found_through_their_parents() {
        let own = std::process::id();
        let parent = process_info(own).unwrap().parent;
        assert!(is_descendant_of(own, parent));
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        assert!(is_descendant_of(child.id(), own));
        assert!(is_descendant_of(child.id(), parent), "a grandchild counts");
        assert!(!is_descendant_of(own, child.id()));
        assert!(!is_descendant_of(u32::MAX - 1, own), "a process that does not exist descends from nothing");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn stack_processes_are_found_by_root_in_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker");
        let log = dir.path().join("sleep.log");
        let mut guarded = Guarded::spawn(sleep_spec(&log, Some(&marker), &thirty())).unwrap();
        let found = processes_of_stack(dir.path(), &BTreeSet::new(), &BTreeSet::new());
        assert!(found.iter().any(|process| process.command_line.contains("guard-sleep")), "{found:?}");
        guarded.stop(Duration::from_secs(5)).unwrap();
        assert!(processes_of_stack(dir.path(), &BTreeSet::new(), &BTreeSet::new()).is_empty());
    }
}
