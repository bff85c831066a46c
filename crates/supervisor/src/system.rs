//! One-shot system tools that `couchmail up` runs around the daemons:
//! installing Debian packages, creating the `vmail` user, checking and
//! stopping Postfix and Dovecot instances, flushing Dovecot's auth cache.
//!
//! Every function here runs a program of the base system (`dpkg-query`,
//! `apt-get`, `groupadd`, `postfix`, `doveadm`, …) with a bounded run time
//! and reports a failure with the program's own output, so that a person
//! sees what the tool said. Programs are looked up on `PATH` and in
//! `/usr/sbin` and `/usr/bin`, where Debian puts them, because a root shell
//! started with `sudo` may lack `/usr/sbin` on its `PATH`.
//!
//! # Security
//! Installing packages and creating users needs root; the caller checks
//! that before calling. No secret ever appears in an argument list.

use std::ffi::OsStr;
use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// How long a quick tool (dpkg-query, postfix check, doveadm) may run.
const QUICK_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `apt-get update` and `apt-get install` may run together.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Debian's hook that tells maintainer scripts whether they may start services.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";
/// The debconf answer that keeps Postfix's installer from writing a configuration of its own.
const POSTFIX_DEBCONF: &str = "postfix postfix/main_mailer_type select No configuration\n";
/// How long a leftover daemon gets to stop before it is killed.
const LEFTOVER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a system tool did not do its job.
#[derive(Debug)]
pub struct SystemError {
    /// What was being done, as in `installing postfix`.
    action: String,
    kind: SystemErrorKind,
}

/// The kinds of [`SystemError`].
#[derive(Debug)]
#[non_exhaustive]
pub enum SystemErrorKind {
    /// The program could not be started (most often: it is not installed).
    Spawn(std::io::Error),
    /// It ran and failed; its combined output, trimmed to the last lines.
    Failed {
        /// How it ended, as text.
        status: String,
        /// The last lines it printed.
        output: String,
    },
    /// It ran out of time and was killed.
    TimedOut(Duration),
    /// A file could not be read or written.
    Io(std::io::Error),
    /// Something is in the way, said in words (a user id taken by another user, a package still missing).
    Conflict(String),
}

impl SystemError {
    fn new(action: impl Into<String>, kind: SystemErrorKind) -> SystemError {
        SystemError { action: action.into(), kind }
    }

    /// What went wrong.
    pub fn kind(&self) -> &SystemErrorKind {
        &self.kind
    }
}

impl fmt::Display for SystemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            SystemErrorKind::Spawn(err) => write!(f, "{}: cannot run the program: {err}", self.action),
            SystemErrorKind::Failed { status, output } if output.is_empty() => {
                write!(f, "{}: failed ({status})", self.action)
            }
            SystemErrorKind::Failed { status, output } => write!(f, "{}: failed ({status}):\n{output}", self.action),
            SystemErrorKind::TimedOut(limit) => write!(f, "{}: no answer within {} s", self.action, limit.as_secs()),
            SystemErrorKind::Io(err) => write!(f, "{}: {err}", self.action),
            SystemErrorKind::Conflict(why) => write!(f, "{}: {why}", self.action),
        }
    }
}

impl std::error::Error for SystemError {}

/// Finds `name` on `PATH`, else in `/usr/sbin` or `/usr/bin`; answers the bare
/// name when it is nowhere, so that running it reports "not found".
pub fn find_program(name: &str) -> PathBuf {
    let search = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&search)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// A command to run once, to completion.
struct Tool {
    action: String,
    command: Command,
    stdin: Option<String>,
    timeout: Duration,
}

impl Tool {
    fn new(action: impl Into<String>, program: &str) -> Tool {
        let mut command = Command::new(find_program(program));
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        Tool { action: action.into(), command, stdin: None, timeout: QUICK_TIMEOUT }
    }

    fn args<I, S>(mut self, args: I) -> Tool
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    fn env(mut self, name: &str, value: &str) -> Tool {
        self.command.env(name, value);
        self
    }

    fn stdin(mut self, text: &str) -> Tool {
        self.command.stdin(Stdio::piped());
        self.stdin = Some(text.to_owned());
        self
    }

    fn timeout(mut self, timeout: Duration) -> Tool {
        self.timeout = timeout;
        self
    }

    /// Runs it and answers its output, whatever its exit status.
    async fn output(mut self) -> Result<Output, SystemError> {
        let action = self.action.clone();
        let mut child = self.command.spawn().map_err(|err| SystemError::new(&action, SystemErrorKind::Spawn(err)))?;
        if let (Some(text), Some(mut stdin)) = (self.stdin.take(), child.stdin.take()) {
            stdin
                .write_all(text.as_bytes())
                .await
                .map_err(|err| SystemError::new(&action, SystemErrorKind::Io(err)))?;
            // Dropping stdin closes it, so the program sees the end of its input.
        }
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(err)) => Err(SystemError::new(action, SystemErrorKind::Io(err))),
            // kill_on_drop ends the program with the dropped future.
            Err(_) => Err(SystemError::new(action, SystemErrorKind::TimedOut(self.timeout))),
        }
    }

    /// Runs it and fails unless it exits 0; answers its standard output.
    async fn run(self) -> Result<String, SystemError> {
        let action = self.action.clone();
        let output = self.output().await?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        Err(SystemError::new(
            action,
            SystemErrorKind::Failed { status: output.status.to_string(), output: last_lines(&output, 20) },
        ))
    }
}

/// The last `n` lines of a program's standard error and output together.
fn last_lines(output: &Output, n: usize) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = text.lines().filter(|line| !line.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The Debian packages of `packages` that are not installed, as `dpkg-query` reports them.
pub async fn missing_debian_packages(packages: &[&str]) -> Result<Vec<String>, SystemError> {
    let mut missing = Vec::new();
    for package in packages {
        // dpkg-query exits 1 for a package it has never heard of: that is "missing" too.
        let output = Tool::new(format!("asking dpkg whether {package} is installed"), "dpkg-query")
            .args(["-W", "-f=${Status}", package])
            .output()
            .await?;
        if !is_installed_status(&String::from_utf8_lossy(&output.stdout)) {
            missing.push((*package).to_owned());
        }
    }
    Ok(missing)
}

/// Whether a `dpkg-query -f '${Status}'` answer means installed (`install ok installed`).
fn is_installed_status(status: &str) -> bool {
    status.split_whitespace().last() == Some("installed")
}

/// Installs the packages of `packages` that are missing and answers the ones
/// it installed (empty when all were there).
///
/// Runs `apt-get update` and `apt-get install -y --no-install-recommends`
/// with `DEBIAN_FRONTEND=noninteractive`, after preseeding debconf so that
/// Postfix's installer writes no configuration of its own. While it runs, a
/// `/usr/sbin/policy-rc.d` that exits 101 keeps the maintainer scripts from
/// starting the system's Postfix or Dovecot on ports 25, 143 or 993 (only
/// if no such file exists already; it is removed afterwards). Needs root.
pub async fn ensure_debian_packages(packages: &[&str]) -> Result<Vec<String>, SystemError> {
    let missing = missing_debian_packages(packages).await?;
    if missing.is_empty() {
        return Ok(missing);
    }
    tracing::info!(packages = ?missing, "installing Debian packages");
    Tool::new("preseeding debconf for postfix", "debconf-set-selections").stdin(POSTFIX_DEBCONF).run().await?;
    let policy = PolicyRcD::install()?;
    let installed = async {
        Tool::new("apt-get update", "apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .timeout(INSTALL_TIMEOUT)
            .run()
            .await?;
        Tool::new(format!("installing {}", missing.join(" ")), "apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .timeout(INSTALL_TIMEOUT)
            .run()
            .await
    }
    .await;
    drop(policy);
    installed?;
    let still_missing = missing_debian_packages(packages).await?;
    if !still_missing.is_empty() {
        return Err(SystemError::new(
            "installing Debian packages",
            SystemErrorKind::Conflict(format!("still not installed after apt-get: {}", still_missing.join(" "))),
        ));
    }
    disable_system_services(&missing).await;
    Ok(missing)
}

/// Keeps the system's own Postfix and Dovecot services from starting at the
/// next boot, where they would take the ports couchmail's instances need.
/// Only for packages just installed by couchmail, and only under systemd.
async fn disable_system_services(installed: &[String]) {
    if !Path::new("/run/systemd/system").is_dir() {
        return;
    }
    let units = [
        ("postfix", "postfix.service"),
        ("dovecot-core", "dovecot.service"),
        ("spamd", "spamd.service"),
        ("spamass-milter", "spamass-milter.service"),
    ];
    for (package, unit) in units {
        if !installed.iter().any(|name| name == package) {
            continue;
        }
        let disabled = Tool::new(format!("disabling {unit}"), "systemctl").args(["disable", unit]).run().await;
        if let Err(err) = disabled {
            tracing::warn!(%err, "the system's own service may start at boot and take couchmail's ports");
        }
    }
}

/// A temporary `/usr/sbin/policy-rc.d` that forbids starting services; removed when dropped.
struct PolicyRcD {
    installed: Option<PathBuf>,
}

impl PolicyRcD {
    fn install() -> Result<PolicyRcD, SystemError> {
        let path = Path::new(POLICY_RC_D);
        if path.exists() {
            // Someone else's policy (a container image often has one): leave it alone.
            return Ok(PolicyRcD { installed: None });
        }
        let io_error = |err| SystemError::new(format!("writing {POLICY_RC_D}"), SystemErrorKind::Io(err));
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o755).open(path).map_err(io_error)?;
        file.write_all(
            b"#!/bin/sh\n# Written by couchmail while it installs packages; removed afterwards.\nexit 101\n",
        )
        .map_err(io_error)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(io_error)?;
        Ok(PolicyRcD { installed: Some(path.to_owned()) })
    }
}

impl Drop for PolicyRcD {
    fn drop(&mut self) {
        if let Some(path) = &self.installed
            && let Err(err) = std::fs::remove_file(path)
        {
            tracing::warn!(path = %path.display(), %err, "cannot remove the temporary policy-rc.d");
        }
    }
}

/// The numeric ids of the user and group that own the mail store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserIds {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Makes sure user and group `vmail` exist and answers their ids.
///
/// Missing ones are created with id `preferred_id` (group first, as Dovecot's
/// documentation asks); existing ones are kept with whatever ids they have.
/// An id already taken by another user or group is an error. Needs root to create.
pub async fn ensure_vmail_user(preferred_id: u32) -> Result<UserIds, SystemError> {
    const NAME: &str = "vmail";
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map_err(|err| SystemError::new(format!("reading {path}"), SystemErrorKind::Io(err)))
    };
    let gid = match find_id(&read("/etc/group")?, NAME) {
        Some(gid) => gid,
        None => {
            if let Some(holder) = name_of_id(&read("/etc/group")?, preferred_id) {
                return Err(SystemError::new(
                    "creating group vmail",
                    SystemErrorKind::Conflict(format!("gid {preferred_id} belongs to group {holder}")),
                ));
            }
            Tool::new("creating group vmail", "groupadd")
                .args(["--gid", &preferred_id.to_string(), NAME])
                .run()
                .await?;
            preferred_id
        }
    };
    let uid = match find_id(&read("/etc/passwd")?, NAME) {
        Some(uid) => uid,
        None => {
            if let Some(holder) = name_of_id(&read("/etc/passwd")?, preferred_id) {
                return Err(SystemError::new(
                    "creating user vmail",
                    SystemErrorKind::Conflict(format!("uid {preferred_id} belongs to user {holder}")),
                ));
            }
            Tool::new("creating user vmail", "useradd")
                .args(["--uid", &preferred_id.to_string(), "--gid", &gid.to_string()])
                .args(["--home-dir", "/nonexistent", "--no-create-home", "--shell", "/usr/sbin/nologin"])
                .args(["--comment", "couchmail mail store", NAME])
                .run()
                .await?;
            preferred_id
        }
    };
    Ok(UserIds { uid, gid })
}

/// The ids of a system user and its primary group, from `/etc/passwd`.
pub fn user_ids(name: &str) -> Result<Option<UserIds>, SystemError> {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|err| SystemError::new("reading /etc/passwd", SystemErrorKind::Io(err)))?;
    Ok(passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() != Some(&name) {
            return None;
        }
        Some(UserIds { uid: fields.get(2)?.parse().ok()?, gid: fields.get(3)?.parse().ok()? })
    }))
}

/// The id of a group, from `/etc/group`.
pub fn group_id(name: &str) -> Result<Option<u32>, SystemError> {
    let groups = std::fs::read_to_string("/etc/group")
        .map_err(|err| SystemError::new("reading /etc/group", SystemErrorKind::Io(err)))?;
    Ok(find_id(&groups, name))
}

/// The third field of the `name` line of an `/etc/passwd` or `/etc/group` text.
fn find_id(database: &str, name: &str) -> Option<u32> {
    database.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        fields.nth(1)?.parse().ok()
    })
}

/// The name that holds `id` in an `/etc/passwd` or `/etc/group` text.
fn name_of_id(database: &str, id: u32) -> Option<String> {
    database.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.get(2)?.parse::<u32>().ok()? == id).then(|| fields[0].to_owned())
    })
}

/// The machine's fully qualified host name (`hostname --fqdn`), else its
/// kernel host name, else `localhost`.
pub async fn fully_qualified_hostname() -> String {
    if let Ok(name) = Tool::new("asking for the host name", "hostname").args(["--fqdn"]).run().await {
        let name = name.trim();
        if !name.is_empty() {
            return name.to_owned();
        }
    }
    match std::fs::read_to_string("/proc/sys/kernel/hostname") {
        Ok(name) if !name.trim().is_empty() => name.trim().to_owned(),
        _ => "localhost".to_owned(),
    }
}

/// The message counts of one user's bayes database, as `sa-learn --dump magic` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BayesCounts {
    /// Messages learned as spam (`nspam`).
    pub spam: u64,
    /// Messages learned as ham (`nham`).
    pub ham: u64,
    /// Tokens in the database (`ntokens`).
    pub tokens: u64,
}

/// The counters of the bayes database in `user_dir` (one user's directory below spamd's
/// `--virtual-config-dir`), read with `sa-learn --dump magic` as `user`, the account spamd's children run as,
/// so that nothing sa-learn touches changes owner. A user who never trained has no database: all zero.
pub async fn bayes_counts(site_config_dir: &Path, user_dir: &Path, user: &str) -> Result<BayesCounts, SystemError> {
    if !user_dir.join("bayes_toks").exists() {
        return Ok(BayesCounts::default());
    }
    let mut site_config = std::ffi::OsString::from("--siteconfigpath=");
    site_config.push(site_config_dir);
    let mut dbpath = std::ffi::OsString::from("--dbpath=");
    dbpath.push(user_dir);
    let sa_learn = find_program("sa-learn");
    let dump = Tool::new(format!("reading the bayes counters in {}", user_dir.display()), "setpriv")
        .args([format!("--reuid={user}"), format!("--regid={user}"), "--init-groups".to_owned(), "--".to_owned()])
        .args([sa_learn.as_os_str(), &site_config, &dbpath, OsStr::new("--dump"), OsStr::new("magic")])
        .run()
        .await?;
    Ok(parse_magic(&dump))
}

/// Reads the `nspam`, `nham` and `ntokens` lines of `sa-learn --dump magic`
/// (`0.000 0 12 0 non-token data: nspam`: the third column is the value).
fn parse_magic(dump: &str) -> BayesCounts {
    let mut counts = BayesCounts::default();
    for line in dump.lines() {
        let Some((columns, name)) = line.split_once("non-token data: ") else { continue };
        let Some(value) = columns.split_whitespace().nth(2).and_then(|value| value.parse().ok()) else { continue };
        match name.trim() {
            "nspam" => counts.spam = value,
            "nham" => counts.ham = value,
            "ntokens" => counts.tokens = value,
            _ => {}
        }
    }
    counts
}

/// `postfix -c DIR check`: checks the configuration and the ownership of the
/// queue, and creates the queue's missing subdirectories.
pub async fn postfix_check(config_dir: &Path) -> Result<(), SystemError> {
    Tool::new(format!("postfix -c {} check", config_dir.display()), "postfix")
        .args([OsStr::new("-c"), config_dir.as_os_str(), OsStr::new("check")])
        .run()
        .await
        .map(drop)
}

/// `postfix -c DIR set-permissions`: gives the queue the owners Postfix wants
/// (needed when a queue was copied or made by hand).
pub async fn postfix_set_permissions(config_dir: &Path) -> Result<(), SystemError> {
    Tool::new(format!("postfix -c {} set-permissions", config_dir.display()), "postfix")
        .args([OsStr::new("-c"), config_dir.as_os_str(), OsStr::new("set-permissions")])
        .run()
        .await
        .map(drop)
}

/// `doveadm -c FILE auth cache flush [USER…]`: forgets cached logins, of
/// `users` or, when it is empty, of everyone.
pub async fn dovecot_auth_cache_flush(config_file: &Path, users: &[String]) -> Result<(), SystemError> {
    let what = if users.is_empty() { "everyone".to_owned() } else { users.join(" ") };
    Tool::new(format!("flushing Dovecot's auth cache for {what}"), "doveadm")
        .args([OsStr::new("-c"), config_file.as_os_str()])
        .args(["auth", "cache", "flush"])
        .args(users)
        .run()
        .await
        .map(drop)
}

/// A daemon possibly left running by an earlier `couchmail up` that did not
/// stop cleanly.
#[derive(Debug, Clone)]
pub enum Leftover {
    /// Postfix: its master's pid file (`<queue>/pid/master.pid`) and config directory.
    Postfix {
        /// `<queue_directory>/pid/master.pid`.
        pid_file: PathBuf,
        /// The directory `postfix -c` was given.
        config_dir: PathBuf,
    },
    /// Dovecot: its pid file (`<base_dir>/master.pid`) and configuration file.
    Dovecot {
        /// `<base_dir>/master.pid`.
        pid_file: PathBuf,
        /// The file `dovecot -c` was given.
        config_file: PathBuf,
    },
    /// spamd: the pid file it was started with ([`SpamdOptions::pid_file`](crate::SpamdOptions::pid_file)).
    Spamd {
        /// spamd's `--pidfile`.
        pid_file: PathBuf,
    },
    /// spamass-milter: the pid file it was started with
    /// ([`SpamassMilterOptions::pid_file`](crate::SpamassMilterOptions::pid_file)).
    SpamassMilter {
        /// spamass-milter's `-P`.
        pid_file: PathBuf,
    },
}

/// Stops `leftover` if its pid file names a live process of that daemon:
/// first its own stop command, then SIGTERM, then SIGKILL. Answers whether
/// one was running.
pub async fn stop_leftover(leftover: &Leftover) -> Result<bool, SystemError> {
    let (pid_file, program_name, stop) = match leftover {
        Leftover::Postfix { pid_file, config_dir } => (
            pid_file,
            "master",
            Some(Tool::new("postfix stop", "postfix").args([
                OsStr::new("-c"),
                config_dir.as_os_str(),
                OsStr::new("stop"),
            ])),
        ),
        Leftover::Dovecot { pid_file, config_file } => (
            pid_file,
            "dovecot",
            Some(Tool::new("doveadm stop", "doveadm").args([
                OsStr::new("-c"),
                config_file.as_os_str(),
                OsStr::new("stop"),
            ])),
        ),
        // Both stop their children on SIGTERM and have no stop command of their own.
        Leftover::Spamd { pid_file } => (pid_file, "spamd", None),
        Leftover::SpamassMilter { pid_file } => (pid_file, "spamass-milter", None),
    };
    let Some(pid) = live_pid(pid_file, program_name) else { return Ok(false) };
    tracing::warn!(daemon = program_name, pid, pid_file = %pid_file.display(), "stopping a daemon left by an earlier run");
    if let Some(stop) = stop
        && let Err(err) = stop.run().await
    {
        tracing::debug!(%err, "its stop command failed; signalling it");
    }
    let Some(raw) = Pid::from_raw(pid) else { return Ok(true) };
    let deadline = tokio::time::Instant::now() + LEFTOVER_STOP_TIMEOUT;
    let mut signalled = false;
    while process_alive(pid) {
        if tokio::time::Instant::now() >= deadline {
            let _ = rustix::process::kill_process(raw, Signal::KILL);
            break;
        }
        if !signalled {
            let _ = rustix::process::kill_process(raw, Signal::TERM);
            signalled = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(true)
}

/// The pid in `pid_file` if that process lives and its command is `program_name`
/// (a recycled pid of something else is left alone).
fn live_pid(pid_file: &Path, program_name: &str) -> Option<i32> {
    let text = std::fs::read_to_string(pid_file).ok()?;
    let pid: i32 = text.trim().parse().ok().filter(|pid| *pid > 1)?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == program_name).then_some(pid)
}

fn process_alive(pid: i32) -> bool {
    // A zombie has no /proc/PID/exe target but keeps its directory; both count as gone once reaped.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_counters_are_the_third_column() {
        let dump = "0.000          0          3          0  non-token data: bayes db version\n\
                    0.000          0         12          0  non-token data: nspam\n\
                    0.000          0          4          0  non-token data: nham\n\
                    0.000          0        280          0  non-token data: ntokens\n";
        assert_eq!(parse_magic(dump), BayesCounts { spam: 12, ham: 4, tokens: 280 });
        assert_eq!(parse_magic("garbage\n"), BayesCounts::default());
    }

    #[test]
    fn installed_status_is_the_last_word() {
        assert!(is_installed_status("install ok installed"));
        assert!(!is_installed_status("deinstall ok config-files"));
        assert!(!is_installed_status("install ok half-installed"));
        assert!(!is_installed_status(""));
    }

    #[test]
    fn ids_are_read_from_the_third_field() {
        let groups = "root:x:0:\nvmailx:x:7:\nvmail:x:5000:\n";
        assert_eq!(find_id(groups, "vmail"), Some(5000));
        assert_eq!(find_id(groups, "postfix"), None);
        assert_eq!(name_of_id(groups, 7).as_deref(), Some("vmailx"));
        assert_eq!(name_of_id(groups, 8), None);
    }

    #[test]
    fn a_pid_file_of_another_program_is_not_live() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("master.pid");
        std::fs::write(&pid_file, format!("{:>10}\n", std::process::id())).unwrap();
        assert_eq!(live_pid(&pid_file, "surely-not-this-program"), None);
        std::fs::write(&pid_file, "garbage").unwrap();
        assert_eq!(live_pid(&pid_file, "master"), None);
        assert_eq!(live_pid(&dir.path().join("missing"), "master"), None);
        let own_name = std::fs::read_to_string("/proc/self/comm").unwrap();
        std::fs::write(&pid_file, format!("{}\n", std::process::id())).unwrap();
        assert_eq!(live_pid(&pid_file, own_name.trim()), Some(i32::try_from(std::process::id()).unwrap()));
    }

    #[tokio::test]
    async fn dpkg_knows_no_made_up_package() {
        let missing = missing_debian_packages(&["couchmail-no-such-package"]).await.unwrap();
        assert_eq!(missing, vec!["couchmail-no-such-package".to_owned()]);
    }

    #[tokio::test]
    async fn a_failing_tool_reports_its_output() {
        let err = Tool::new("listing nothing", "ls").args(["/couchmail/no/such/dir"]).run().await.unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("listing nothing: failed"), "{text}");
        assert!(text.contains("No such file"), "{text}");
    }
}
