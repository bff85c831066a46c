//! Starting, stopping and measuring the processes a benchmark runs: CPU times from /proc, children that are
//! killed when the driver leaves early, commands whose failure says what failed.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// CPU seconds spent by a process, as /proc/<pid>/stat counts them (in clock ticks, usually 10 ms).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    /// `utime` + `stime`: the process itself, every thread.
    pub own_s: f64,
    /// `cutime` + `cstime`: its children that have exited and been waited for.
    pub children_s: f64,
}

impl CpuTimes {
    pub fn total_s(&self) -> f64 {
        self.own_s + self.children_s
    }
}

/// Reads the CPU times of `pid` ("self" for this process).
pub fn cpu_times(pid: &str) -> Result<CpuTimes> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("read /proc/{pid}/stat"))?;
    parse_stat(&stat, clock_ticks_per_second()).with_context(|| format!("parse /proc/{pid}/stat"))
}

/// The CPU times in a /proc/<pid>/stat line (proc(5)): fields 14 to 17, counted after the command name, which is
/// in parentheses and may itself hold spaces and parentheses.
fn parse_stat(stat: &str, ticks_per_second: f64) -> Option<CpuTimes> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // The first field after the name is field 3 (state); utime is field 14.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let tick = |field_number: usize| -> Option<f64> { fields.get(field_number - 3)?.parse::<f64>().ok() };
    Some(CpuTimes {
        own_s: (tick(14)? + tick(15)?) / ticks_per_second,
        children_s: (tick(16)? + tick(17)?) / ticks_per_second,
    })
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on every Linux this runs on).
pub fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The pids of the live children of `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return children };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            children.extend(text.split_whitespace().filter_map(|child| child.parse::<u32>().ok()));
        }
    }
    children
}

/// CPU seconds of a daemon's whole process tree: the master's own and reaped children's time, plus every live
/// child's. Children that live through a measurement are counted by their difference; children that come and go
/// end up in the master's `cutime`.
pub fn tree_cpu_s(master_pid: u32) -> Result<f64> {
    let mut total = cpu_times(&master_pid.to_string())?.total_s();
    for child in children_of(master_pid) {
        // A child may exit between the listing and the reading; its time then moves into the master's.
        if let Ok(times) = cpu_times(&child.to_string()) {
            total += times.total_s();
        }
    }
    Ok(total)
}

/// Waits until `master_pid` has at most `n_children` live children (PostgreSQL's backends leave shortly after
/// their client), for up to `limit`.
pub fn wait_for_children(master_pid: u32, n_children: usize, limit: Duration) {
    let started = Instant::now();
    while children_of(master_pid).len() > n_children && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Cleanups that must run if the driver is interrupted (SIGINT, SIGTERM), when destructors do not run: stopping
/// the daemons it started. Each is registered while its daemon runs and unregistered by [`Cleanup`]'s drop.
type CleanupAction = Box<dyn Fn() + Send>;

static CLEANUPS: Mutex<Vec<(u64, CleanupAction)>> = Mutex::new(Vec::new());
static NEXT_CLEANUP_ID: AtomicU64 = AtomicU64::new(0);

/// Registration of a cleanup with the interrupt handler; dropping it unregisters the cleanup (without running it).
pub struct Cleanup(u64);

impl Cleanup {
    pub fn register(action: impl Fn() + Send + 'static) -> Cleanup {
        let cleanup_id = NEXT_CLEANUP_ID.fetch_add(1, Ordering::SeqCst);
        lock_cleanups().push((cleanup_id, Box::new(action)));
        Cleanup(cleanup_id)
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        lock_cleanups().retain(|(cleanup_id, _)| *cleanup_id != self.0);
    }
}

fn lock_cleanups() -> std::sync::MutexGuard<'static, Vec<(u64, CleanupAction)>> {
    // A panic while holding the lock leaves the list intact: cleaning up is still right.
    CLEANUPS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// On SIGINT or SIGTERM, runs the registered cleanups, newest first, and exits with status 130.
pub fn stop_daemons_on_interrupt() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("start tokio")?;
    std::thread::spawn(move || {
        runtime.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut interrupt), Ok(mut terminate)) =
                (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
            else {
                return;
            };
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            eprintln!("bench: interrupted, stopping what was started");
            let mut cleanups = lock_cleanups();
            while let Some((_, action)) = cleanups.pop() {
                action();
            }
            std::process::exit(130);
        });
    });
    Ok(())
}

/// A child process that is killed (by its pid) and reaped if it is still running when this is dropped, so that an
/// early return of the driver leaves nothing behind.
pub struct ChildGuard {
    pub child: Child,
    name: String,
    _cleanup: Cleanup,
}

impl ChildGuard {
    pub fn new(child: Child, name: impl Into<String>) -> ChildGuard {
        let pid = child.id().to_string();
        // Our own child, by its pid: `kill` is only reached when the driver is interrupted.
        let cleanup = Cleanup::register(move || {
            let _ = Command::new("kill").arg(&pid).status();
        });
        ChildGuard { child, name: name.into(), _cleanup: cleanup }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the child to end and returns its status and what it wrote to its piped stderr.
    pub fn wait_with_stderr(&mut self) -> Result<(ExitStatus, String)> {
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        let status = self.child.wait().with_context(|| format!("wait for {}", self.name))?;
        Ok((status, stderr))
    }

    /// Closes the child's stdin, which is how `couchmail-bench serve` is told to stop, and waits for it.
    pub fn close_and_wait(mut self, limit: Duration) -> Result<()> {
        drop(self.child.stdin.take());
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().with_context(|| format!("wait for {}", self.name))? {
                if !status.success() {
                    bail!("{} ended with {status}", self.name);
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("{} did not stop within {limit:?}", self.name)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `program args…` as a shell would show it.
pub fn shown(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| {
            let part = part.to_string_lossy();
            if part.is_empty() || part.contains([' ', '\'', '"', '$', '{', '}']) {
                format!("'{}'", part.replace('\'', r"'\''"))
            } else {
                part.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `command` to its end; fails with its stderr when it fails.
pub fn output(command: &mut Command) -> Result<Output> {
    let shown = shown(command);
    let output = command.stdin(Stdio::null()).output().with_context(|| format!("cannot start `{shown}`"))?;
    if !output.status.success() {
        bail!("`{shown}` failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(output)
}

/// Runs `command` and returns its stdout, trimmed.
pub fn stdout_of(command: &mut Command) -> Result<String> {
    let output = output(command)?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Runs a command that starts a daemon and returns once the daemon is running (`dovecot`, `pg_ctl start`):
/// its output goes to `log`, not to a pipe, since the daemon inherits the command's stdout and stderr and a pipe
/// would never close.
pub fn start_daemon(command: &mut Command, log: &Path) -> Result<()> {
    let shown = shown(command);
    let log_file = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    let status = command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().with_context(|| format!("reopen {}", log.display()))?)
        .stderr(log_file)
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        let logged = std::fs::read_to_string(log).unwrap_or_default();
        bail!("`{shown}` failed ({status}): {}", logged.trim());
    }
    Ok(())
}

/// Waits for `path` to exist (a daemon's socket), for up to `limit`.
pub fn wait_for_path(path: &Path, limit: Duration) -> Result<()> {
    let started = Instant::now();
    while !path.exists() {
        if started.elapsed() > limit {
            bail!("{} did not appear within {limit:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 50 7 3 20 0 1 0 100 1000 10";
        let times = parse_stat(stat, 100.0).unwrap();
        assert_eq!(times, CpuTimes { own_s: 3.0, children_s: 0.1 });
    }

    #[test]
    fn cpu_times_read_live_processes_only() {
        assert!(cpu_times("self").unwrap().own_s.is_finite());
        assert!(cpu_times("0").is_err());
    }

    #[test]
    fn shown_quotes_what_a_shell_would_split() {
        let mut command = Command::new("postmap");
        command.args(["-q", "-", "pgsql:/x y.cf", "it's"]);
        assert_eq!(shown(&command), r"postmap -q - 'pgsql:/x y.cf' 'it'\''s'");
    }
}
