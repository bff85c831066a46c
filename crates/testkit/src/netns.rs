//! Network namespaces for tests that must redirect a daemon's DNS honestly.
//!
//! glibc's resolver reads its name servers from `/etc/resolv.conf` only,
//! always on port 53. A test that wants Postfix to resolve through a DNS
//! server of its own therefore runs that server on 127.0.0.1:53 inside a
//! network namespace of its own, and runs the daemons through
//! `ip netns exec NAME`, which bind-mounts `/etc/netns/NAME/resolv.conf`
//! over `/etc/resolv.conf` for them (ip-netns(8)). The machine's own port 53
//! and resolver are never touched.
//!
//! [`NetNs::create`] makes the namespace with its loopback up (127.0.0.0/8
//! and ::1, so any 127/8 address can be a test client's) and its
//! `resolv.conf`; dropping it deletes both. The deletion is done by a guard
//! shell that waits on a pipe from this process, so it also happens when
//! the test process dies without unwinding.
//!
//! Sockets belong to the namespace of the thread that creates them, so a
//! test that talks to servers inside the namespace runs in a thread that
//! entered it ([`NetNs::run`]); threads and processes started from there
//! inherit it.
//!
//! Needs root and iproute2's `ip`.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// iproute2's `ip`, where Debian puts it.
pub const IP_PROGRAM: &str = "/usr/sbin/ip";
/// Where `ip netns add` mounts the namespaces it names.
const NETNS_RUN_DIR: &str = "/run/netns";
/// Where `ip netns exec` finds the files it bind-mounts over `/etc`.
const NETNS_ETC_DIR: &str = "/etc/netns";
/// How long an `ip` call may take.
const IP_TIMEOUT: Duration = Duration::from_secs(10);

/// The guard: `$1` is the namespace. It waits until this process closes the
/// pipe (a drop, or the process's death), then deletes the namespace and its
/// files under /etc/netns.
const GUARD_SCRIPT: &str = r#"name=$1
read -r word || true
ip netns delete "$name" 2>/dev/null
rm -rf -- "/etc/netns/$name"
"#;

/// Whether namespaces can be made here; `Err` says what is missing.
pub fn preflight() -> Result<(), String> {
    let mut missing = Vec::new();
    if !rustix::process::geteuid().is_root() {
        missing.push("root (network namespaces need CAP_SYS_ADMIN)".to_owned());
    }
    if !Path::new(IP_PROGRAM).exists() {
        missing.push(format!("{IP_PROGRAM} (Debian package iproute2)"));
    }
    if !Path::new("/etc/resolv.conf").exists() {
        missing.push("/etc/resolv.conf (ip netns exec bind-mounts over it)".to_owned());
    }
    if missing.is_empty() { Ok(()) } else { Err(format!("network namespaces need: {}", missing.join(", "))) }
}

/// A network namespace with loopback up and its own `resolv.conf`, deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    guard: Child,
    guard_stdin: Option<ChildStdin>,
}

impl NetNs {
    /// Creates `<prefix>-<pid>-<serial>` whose `resolv.conf` names `nameserver`.
    ///
    /// Namespaces of the same prefix left by a test process that no longer
    /// runs (killed before its guard could act) are deleted first.
    pub fn create(prefix: &str, nameserver: IpAddr) -> Result<NetNs, String> {
        preflight()?;
        remove_stale(prefix);
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let name = format!("{prefix}-{}-{}", std::process::id(), SERIAL.fetch_add(1, Ordering::Relaxed));
        // The guard starts first, so that whatever of the namespace exists when a later step fails goes too.
        let mut guard = Command::new("sh")
            .arg("-c")
            .arg(GUARD_SCRIPT)
            .arg(format!("guard-netns-{name}"))
            .arg(&name)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| format!("cannot start the guard of namespace {name}: {err}"))?;
        let guard_stdin = guard.stdin.take();
        let netns = NetNs { name, guard, guard_stdin };
        run_ip(&["netns", "add", &netns.name])?;
        run_ip(&["-n", &netns.name, "link", "set", "lo", "up"])?;
        let etc = netns.etc_dir();
        std::fs::create_dir_all(&etc).map_err(|err| format!("cannot create {}: {err}", etc.display()))?;
        let resolv_conf = etc.join("resolv.conf");
        std::fs::write(
            &resolv_conf,
            format!("# Written by couchmail-testkit for {}.\nnameserver {nameserver}\n", netns.name),
        )
        .map_err(|err| format!("cannot write {}: {err}", resolv_conf.display()))?;
        Ok(netns)
    }

    /// The namespace's name, for `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/etc/netns/<name>`, whose files `ip netns exec` bind-mounts over `/etc`.
    pub fn etc_dir(&self) -> PathBuf {
        Path::new(NETNS_ETC_DIR).join(&self.name)
    }

    /// The program and arguments that run `program` inside the namespace with its `resolv.conf`:
    /// `ip netns exec <name> <program>`; `ip` execs the program, so its pid is the program's.
    pub fn exec_prefix(&self) -> (PathBuf, Vec<OsString>) {
        (PathBuf::from(IP_PROGRAM), vec!["netns".into(), "exec".into(), self.name.clone().into()])
    }

    /// A command that runs `program` inside the namespace with its `resolv.conf`.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let (ip, args) = self.exec_prefix();
        let mut command = Command::new(ip);
        command.args(args).arg(program);
        command
    }

    /// Moves the calling thread into the namespace: sockets it creates from
    /// now on, and threads and processes it starts, are the namespace's.
    /// The thread's files and mounts stay the machine's (`resolv.conf` too:
    /// use [`NetNs::command`] for programs that resolve names).
    pub fn enter_current_thread(&self) -> Result<(), String> {
        let path = Path::new(NETNS_RUN_DIR).join(&self.name);
        let file = File::open(&path).map_err(|err| format!("cannot open {}: {err}", path.display()))?;
        rustix::thread::move_into_link_name_space(file.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .map_err(|err| format!("cannot enter network namespace {}: {err}", self.name))
    }

    /// Runs `body` in a new thread inside the namespace and returns its
    /// result; a panic in `body` is resumed here.
    ///
    /// # Panics
    /// When the thread cannot enter the namespace, and when `body` panics.
    pub fn run<T: Send>(&self, body: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            let thread = std::thread::Builder::new()
                .name(format!("netns-{}", self.name))
                .spawn_scoped(scope, || {
                    self.enter_current_thread().unwrap_or_else(|err| panic!("{err}"));
                    body()
                })
                .unwrap_or_else(|err| panic!("cannot start a thread for namespace {}: {err}", self.name));
            match thread.join() {
                Ok(value) => value,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.guard_stdin.take() {
            // A guard that already finished has closed its end: nothing to tell it.
            let _ = stdin.write_all(b"stop\n");
        }
        let deadline = Instant::now() + IP_TIMEOUT;
        while matches!(self.guard.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if matches!(self.guard.try_wait(), Ok(None)) {
            let _ = self.guard.kill();
            let _ = self.guard.wait();
        }
    }
}

/// Runs `ip ARGS`, failing with its output.
fn run_ip(args: &[&str]) -> Result<(), String> {
    let mut child = Command::new(IP_PROGRAM)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot run ip {}: {err}", args.join(" ")))?;
    let deadline = Instant::now() + IP_TIMEOUT;
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("ip {} did not finish within {} s", args.join(" "), IP_TIMEOUT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().map_err(|err| format!("ip {}: {err}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Deletes `<prefix>-<pid>-*` namespaces whose process is gone.
fn remove_stale(prefix: &str) {
    let Ok(entries) = std::fs::read_dir(NETNS_RUN_DIR) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            // Best effort: a namespace that cannot be deleted now is tried again next time.
            let _ = run_ip(&["netns", "delete", &name]);
            let _ = std::fs::remove_dir_all(Path::new(NETNS_ETC_DIR).join(&name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};

    fn runnable() -> bool {
        match preflight() {
            Ok(()) => true,
            Err(err) if std::env::var_os("CI").is_some() => panic!("CI must run the namespace tests: {err}"),
            Err(err) => {
                eprintln!("note: skipping a namespace test: {err}");
                false
            }
        }
    }

    #[test]
    fn a_namespace_has_its_own_loopback_and_resolv_conf_and_goes_on_drop() {
        if !runnable() {
            return;
        }
        let netns = NetNs::create("cm-test", IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53))).unwrap();
        let name = netns.name().to_owned();
        assert!(Path::new(NETNS_RUN_DIR).join(&name).exists());

        // The namespace has ports of its own: one taken outside is free inside, and a client from any 127/8
        // address reaches the listener inside.
        let outside = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = outside.local_addr().unwrap().port();
        netns.run(|| {
            let inside = TcpListener::bind(("127.0.0.1", port)).expect("the port taken outside is free inside");
            let client = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            client.bind(&SocketAddr::from(([127, 0, 0, 9], 0)).into()).unwrap();
            client.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into()).unwrap();
            let (_, peer) = inside.accept().unwrap();
            assert_eq!(peer.ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)));
        });
        // Sockets made on this thread are still the machine's.
        let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        outside.accept().unwrap();

        // Programs run through `ip netns exec` read the namespace's resolv.conf.
        let output = netns.command("cat").arg("/etc/resolv.conf").output().unwrap();
        assert!(output.status.success(), "{output:?}");
        assert!(String::from_utf8_lossy(&output.stdout).contains("nameserver 127.0.0.53"), "{output:?}");
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap();
        assert!(!host.contains(&format!("couchmail-testkit for {name}")), "the machine's resolv.conf is untouched");

        drop(netns);
        assert!(!Path::new(NETNS_RUN_DIR).join(&name).exists(), "the namespace is deleted");
        assert!(!Path::new(NETNS_ETC_DIR).join(&name).exists(), "its /etc/netns directory is removed");
    }
}
