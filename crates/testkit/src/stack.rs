//! The real-daemon harness: `couchmail up` with real Postfix and Dovecot on
//! 127.0.0.1, in a directory of its own, on free ports, stopped and
//! checked for leftover processes at the end.
//!
//! [`MailStack::start`] writes a configuration file, runs
//! `couchmail up --config FILE` and waits (at most 30 s) until the REST API
//! is healthy, SMTP greets on ports 25/587/465 and IMAP over TLS greets.
//! With [`Daemons::Harness`] couchmail runs with `--no-daemons` and the
//! harness itself starts Postfix and Dovecot from `couchmail render --out`,
//! so that a test can stop and start couchmail under running daemons;
//! with [`Daemons::None`] couchmail runs alone, for tests that speak its
//! sockets and API directly. The store is a SQLite file in the stack's data
//! directory, or any store URL given to [`MailStack::try_start_on_store`],
//! such as a database of a [`PouchServer`](crate::pouchdb::PouchServer).
//! [`MailStack::try_start_with_extras`] also appends configuration tables
//! and can run the whole stack inside a network namespace
//! ([`StackExtras`]), so that Postfix resolves through a DNS server of the
//! test's own. [`MailStack::try_start_with_api`] can serve the REST API and
//! the web UI over HTTPS (`api.tls = "on"`, [`ApiTransport::Https`]); the
//! harness's health check, [`api`] and [`web`] clients then speak TLS and
//! trust exactly the stack's own certificate.
//!
//! The clients in [`smtp`] and [`imap`] speak the real protocols over
//! TLS ([`tls`] pins the stack's own certificate) and return each reply,
//! so that tests assert the exact code at the exact step; [`api`] is the
//! REST API with the first admin's token; [`web`] is the web UI without a
//! browser (cookies, the login form).
//!
//! Every failure message carries the tails of couchmail's output and of
//! the Postfix and Dovecot logs ([`MailStack::diagnostics`]).
//!
//! Starting Postfix and Dovecot costs seconds, so a test binary shares one
//! stack ([`shared`]) among tests that use distinct domains; a test that
//! stops couchmail starts its own. A shared stack lives in a static, which
//! is never dropped: its processes run under a guard shell that stops them
//! and removes the stack's directory when the test process exits
//! ([`process`]).
//!
//! Needs root (Postfix and Dovecot start as root and drop privileges) and
//! Debian's `postfix`, `dovecot-core`, `dovecot-imapd`, `dovecot-lmtpd`,
//! `dovecot-sieve` and `dovecot-auth-lua`; [`preflight`] says what is missing.
//! `COUCHMAIL_E2E_KEEP=1` keeps the stack's directory for a look afterwards.

pub mod api;
pub mod imap;
pub mod net;
pub mod process;
pub mod smtp;
pub mod tls;
pub mod web;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub use api::{Api, ApiResponse};
pub use imap::ImapClient;
pub use process::{GuardSpec, Guarded};
pub use smtp::{Refused, Reply, SmtpClient};
pub use tls::TlsClient;
pub use web::{WebClient, WebResponse};

/// How long a stack may take to become ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stop may take before the harness kills what is left.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one readiness probe may wait for a daemon's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a CLI call may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// The host name the stack announces.
pub const HOSTNAME: &str = "mail.e2e.test";

/// Who runs Postfix and Dovecot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Daemons {
    /// `couchmail up` supervises them (the product's way).
    #[default]
    Couchmail,
    /// `couchmail up --no-daemons`; the harness starts them from
    /// `couchmail render --out`, and couchmail can be stopped and started
    /// under them ([`MailStack::stop_couchmail`], [`MailStack::start_couchmail`]).
    Harness,
    /// `couchmail up --no-daemons` and nobody runs them: couchmail alone,
    /// for tests that speak its socketmap, dict and API directly (and start
    /// in a second instead of several).
    None,
}

/// How to start a stack.
#[derive(Clone, Debug, Default)]
pub struct StackOptions {
    /// Who runs Postfix and Dovecot.
    pub daemons: Daemons,
}

/// What a few tests add to [`StackOptions`] (kept apart so that existing
/// `StackOptions { daemons }` literals stay valid).
#[derive(Clone, Debug, Default)]
pub struct StackExtras {
    /// A network namespace ([`NetNs`](crate::netns::NetNs)) to run `couchmail up`, and so Postfix and
    /// Dovecot, in through `ip netns exec`, so that they resolve names through the namespace's
    /// `resolv.conf`. The test must call the stack from a thread inside the namespace
    /// ([`NetNs::run`](crate::netns::NetNs::run)): its ports are the namespace's 127.0.0.1.
    pub netns: Option<String>,
    /// TOML appended to the configuration file, after its last table (`[log]`): whole tables such
    /// as `[postscreen]`. SpamAssassin is off (`[spam] enabled = false`) unless this has a `[spam]`
    /// table of its own; greylisting skips the harness's loopback clients unless this has a
    /// `[policy]` table with `trusted_networks`.
    pub config: String,
}

/// How the stack's REST API and web UI listener speaks (`api.tls`). A choice
/// of its own, not a field of [`StackOptions`] or [`StackExtras`], so that
/// their existing literals stay valid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ApiTransport {
    /// Plain HTTP, as `api.tls = "auto"` serves loopback (the harness writes no `tls` key).
    #[default]
    Http,
    /// HTTPS with the stack's self-signed certificate (`tls = "on"` under `[api]`).
    Https,
}

/// The TCP ports of a stack, all on 127.0.0.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    /// SMTP for other servers (no AUTH).
    pub smtp: u16,
    /// Submission with STARTTLS.
    pub submission: u16,
    /// Submission over implicit TLS.
    pub submissions: u16,
    /// IMAP over implicit TLS.
    pub imaps: u16,
    /// couchmail's REST API.
    pub api: u16,
    /// couchmail's internal auth endpoint for Dovecot.
    pub auth: u16,
    /// ManageSieve (STARTTLS), served by couchmail.
    pub managesieve: u16,
}

impl Ports {
    /// Seven distinct free ports that no other test process gets meanwhile ([`crate::ports`]).
    fn free() -> Result<Ports, String> {
        let ports = crate::ports::reserve(7)?;
        Ok(Ports {
            smtp: ports[0],
            submission: ports[1],
            submissions: ports[2],
            imaps: ports[3],
            api: ports[4],
            auth: ports[5],
            managesieve: ports[6],
        })
    }
}

/// A running stack: couchmail, Postfix and Dovecot on 127.0.0.1.
#[derive(Debug)]
pub struct MailStack {
    binary: PathBuf,
    options: StackOptions,
    extras: StackExtras,
    api_transport: ApiTransport,
    root: PathBuf,
    config_file: PathBuf,
    data_dir: PathBuf,
    runtime_dir: PathBuf,
    rendered_dir: PathBuf,
    ports: Ports,
    store: Option<String>,
    couchmail: Mutex<Option<Guarded>>,
    daemons: Mutex<Vec<Guarded>>,
    tls: OnceLock<TlsClient>,
    admin_bearer: OnceLock<String>,
    groups: Mutex<BTreeSet<u32>>,
    sessions: Mutex<BTreeSet<u32>>,
    stopped: AtomicBool,
    keep_root: AtomicBool,
}

/// What Postfix, Dovecot and couchmail need to be there; `Err` says what is not.
pub fn preflight() -> Result<(), String> {
    let mut missing = Vec::new();
    if !rustix::process::geteuid().is_root() {
        missing.push("root (Postfix and Dovecot start as root)".to_owned());
    }
    for program in [
        "/usr/sbin/postfix",
        "/usr/sbin/postqueue",
        "/usr/sbin/dovecot",
        "/usr/bin/doveadm",
        "/usr/bin/sievec",
        "/usr/lib/dovecot/modules/auth/libauthdb_lua.so",
        "/usr/bin/setsid",
    ] {
        if !Path::new(program).exists() {
            missing.push(program.to_owned());
        }
    }
    if missing.is_empty() { Ok(()) } else { Err(format!("the end-to-end harness needs: {}", missing.join(", "))) }
}

/// The stack shared by the tests of one test binary, started on first use.
///
/// # Panics
/// When it cannot start, in every test that asks, with the reason.
pub fn shared(binary: &Path) -> &'static MailStack {
    static SHARED: OnceLock<Result<MailStack, String>> = OnceLock::new();
    match SHARED.get_or_init(|| MailStack::try_start(binary, StackOptions::default())) {
        Ok(stack) => stack,
        Err(err) => panic!("the shared mail stack did not start:\n{err}"),
    }
}

/// A fresh client address in 127/8 (never 127.0.0.1), for connections
/// whose failed logins must not slow down everyone else's: Dovecot delays
/// logins from an address that recently failed one.
pub fn fresh_client_ip() -> IpAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let serial = NEXT.fetch_add(1, Ordering::Relaxed) % 62_500;
    let third = u8::try_from(serial / 250).unwrap_or(0);
    let fourth = u8::try_from(serial % 250 + 2).unwrap_or(2);
    IpAddr::V4(Ipv4Addr::new(127, 1, third, fourth))
}

impl MailStack {
    /// Starts a stack run by `couchmail up` (the binary at `binary`).
    ///
    /// # Panics
    /// When it is not ready within 30 s, with the daemons' log tails.
    pub fn start(binary: &Path) -> MailStack {
        MailStack::start_with(binary, StackOptions::default())
    }

    /// Starts a stack with `options`.
    ///
    /// # Panics
    /// When it is not ready within 30 s, with the daemons' log tails.
    pub fn start_with(binary: &Path, options: StackOptions) -> MailStack {
        MailStack::try_start(binary, options).unwrap_or_else(|err| panic!("{err}"))
    }

    /// Starts a stack, or says why it did not start (log tails included).
    pub fn try_start(binary: &Path, options: StackOptions) -> Result<MailStack, String> {
        MailStack::try_start_on_store(binary, options, None)
    }

    /// Starts a stack whose `store` is `store` (such as
    /// `couchdb:http://127.0.0.1:PORT/couchmail`) instead of a SQLite file in
    /// its data directory; `None` is that file.
    pub fn try_start_on_store(binary: &Path, options: StackOptions, store: Option<&str>) -> Result<MailStack, String> {
        MailStack::try_start_with_extras(binary, options, store, StackExtras::default())
    }

    /// Starts a stack with `extras` besides `options` (a network namespace, more configuration).
    pub fn try_start_with_extras(
        binary: &Path,
        options: StackOptions,
        store: Option<&str>,
        extras: StackExtras,
    ) -> Result<MailStack, String> {
        MailStack::try_start_with_api(binary, options, store, extras, ApiTransport::Http)
    }

    /// Starts a stack whose API and web UI speak `api_transport`: with
    /// [`ApiTransport::Https`], [`api`](Self::api), [`web`](Self::web) and the
    /// readiness check use HTTPS and trust only the stack's certificate.
    pub fn try_start_with_api(
        binary: &Path,
        options: StackOptions,
        store: Option<&str>,
        extras: StackExtras,
        api_transport: ApiTransport,
    ) -> Result<MailStack, String> {
        if options.daemons != Daemons::None {
            preflight()?;
        }
        let root = tempfile::Builder::new()
            .prefix("cm-e2e-")
            .tempdir_in("/var/tmp")
            .map_err(|err| format!("cannot create a directory in /var/tmp: {err}"))?
            .keep();
        // Postfix, Dovecot and vmail must pass through to the data and runtime directories.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o711))
            .map_err(|err| format!("cannot make {} traversable: {err}", root.display()))?;
        let stack = MailStack {
            binary: binary.to_owned(),
            options,
            extras,
            api_transport,
            config_file: root.join("couchmail.toml"),
            data_dir: root.join("data"),
            runtime_dir: root.join("run"),
            rendered_dir: root.join("rendered"),
            root,
            ports: Ports::free()?,
            store: store.map(str::to_owned),
            couchmail: Mutex::new(None),
            daemons: Mutex::new(Vec::new()),
            tls: OnceLock::new(),
            admin_bearer: OnceLock::new(),
            groups: Mutex::new(BTreeSet::new()),
            sessions: Mutex::new(BTreeSet::new()),
            stopped: AtomicBool::new(false),
            keep_root: AtomicBool::new(false),
        };
        match stack.boot() {
            Ok(()) => Ok(stack),
            Err(err) => {
                stack.keep_root.store(true, Ordering::Relaxed);
                Err(format!("{err}\n{}", stack.diagnostics()))
            }
        }
    }

    fn boot(&self) -> Result<(), String> {
        std::fs::write(&self.config_file, self.config_text())
            .map_err(|err| format!("cannot write {}: {err}", self.config_file.display()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        self.spawn_couchmail()?;
        match self.options.daemons {
            Daemons::Couchmail => self.wait_ready(deadline)?,
            Daemons::Harness => {
                self.wait_for("couchmail's REST API", deadline, || self.check_health())?;
                self.start_daemons()?;
                self.wait_ready(deadline)?;
            }
            Daemons::None => self.wait_for("couchmail's REST API", deadline, || self.check_health())?,
        }
        // `up` writes the first admin's token once its API listens, so it may come a moment
        // after the health check passes.
        let token_file = self.data_dir.join("admin-token");
        self.wait_for("the first admin token", deadline, || match std::fs::read_to_string(&token_file) {
            Ok(bearer) if !bearer.trim().is_empty() => Ok(()),
            Ok(_) => Err(format!("{} is empty", token_file.display())),
            Err(err) => Err(format!("cannot read the first admin token {}: {err}", token_file.display())),
        })?;
        let bearer = std::fs::read_to_string(&token_file)
            .map_err(|err| format!("cannot read the first admin token {}: {err}", token_file.display()))?;
        let _ = self.admin_bearer.set(bearer.trim().to_owned());
        self.record_processes();
        Ok(())
    }

    /// The configuration file's text.
    fn config_text(&self) -> String {
        let Ports { smtp, submission, submissions, imaps, api, auth, managesieve } = self.ports;
        let store = self.store.clone().unwrap_or_else(|| format!("sqlite:{}/couchmail.db", self.data_dir.display()));
        format!(
            "# Written by couchmail-testkit's end-to-end harness.\n\
             store = \"{store}\"\n\
             data_dir = \"{data}\"\n\
             runtime_dir = \"{run}\"\n\
             hostname = \"{HOSTNAME}\"\n\
             \n[api]\nlisten = \"127.0.0.1:{api}\"\n{api_tls}\
             \n[auth]\nlisten = \"127.0.0.1:{auth}\"\n\
             \n[mail]\nlisten = \"127.0.0.1\"\n\
             smtp_port = {smtp}\nsubmission_port = {submission}\nsubmissions_port = {submissions}\nimaps_port = {imaps}\n\
             outbound = \"disabled\"\nauth_failure_delay_secs = 0\n\
             \n[managesieve]\nport = {managesieve}\n\
             \n[log]\nlevel = \"debug\"\n{spam}{extra}",
            data = self.data_dir.display(),
            run = self.runtime_dir.display(),
            api_tls = match self.api_transport {
                ApiTransport::Http => "",
                ApiTransport::Https => "tls = \"on\"\n",
            },
            // spamd costs about 170 MiB and a second to start: only the tests of spam turn it on.
            spam = if self.extras.config.contains("[spam]") { "" } else { "\n[spam]\nenabled = false\n" },
            extra = self.extras.config,
        )
    }

    /// `program` with `args`, run through `ip netns exec` when the stack has a namespace.
    fn in_netns<'a>(&self, program: &'a Path, args: &[&'a OsStr]) -> (PathBuf, Vec<std::ffi::OsString>) {
        let mut full_args: Vec<std::ffi::OsString> = Vec::new();
        let program = match &self.extras.netns {
            Some(name) => {
                full_args.extend(["netns", "exec", name.as_str()].map(Into::into));
                full_args.push(program.into());
                PathBuf::from(crate::netns::IP_PROGRAM)
            }
            None => program.to_owned(),
        };
        full_args.extend(args.iter().map(|arg| arg.to_os_string()));
        (program, full_args)
    }

    fn spawn_couchmail(&self) -> Result<(), String> {
        let config = self.config_file.as_os_str();
        let mut args = vec![OsStr::new("--config"), config, OsStr::new("up")];
        if self.options.daemons != Daemons::Couchmail {
            args.push(OsStr::new("--no-daemons"));
        }
        let log = self.root.join("couchmail.log");
        let master_pid_file = self.postfix_master_pid_file();
        let (program, args) = self.in_netns(&self.binary, &args);
        let args: Vec<&OsStr> = args.iter().map(|arg| arg.as_os_str()).collect();
        let guarded = Guarded::spawn(GuardSpec {
            name: "couchmail",
            program: &program,
            args: &args,
            log: &log,
            envs: &[("NO_COLOR", "1")],
            cleanup: Some(&self.root),
            // Only if the test process dies: a stop() checks for a leftover master and fails on one.
            leftover_pid_file: Some(&master_pid_file),
        })?;
        *lock(&self.couchmail) = Some(guarded);
        Ok(())
    }

    /// Postfix and Dovecot from `couchmail render --out`, each under a guard.
    fn start_daemons(&self) -> Result<(), String> {
        let output = self.cli(&["render", "--out", &self.rendered_dir.to_string_lossy()]);
        if !output.status.success() {
            return Err(format!("couchmail render failed: {}", describe_output(&output)));
        }
        self.prepare_daemon_directories()?;
        // As `render` advises: the Lua script holds the auth secret and only Dovecot's group may read it.
        let auth_script = self.rendered_dir.join("dovecot/auth.lua");
        let (_, dovecot_gid) = user_ids("dovecot")?;
        std::os::unix::fs::chown(&auth_script, None, Some(dovecot_gid))
            .map_err(|err| format!("cannot give {} to group dovecot: {err}", auth_script.display()))?;
        let postfix_config = self.rendered_dir.join("postfix");
        let dovecot_config = self.rendered_dir.join("dovecot/dovecot.conf");
        let (postfix_log, dovecot_log) = (self.root.join("postfix.out"), self.root.join("dovecot.out"));
        let master_pid_file = self.postfix_master_pid_file();
        let (program, args) = self.in_netns(
            Path::new("/usr/sbin/postfix"),
            &[OsStr::new("-c"), postfix_config.as_os_str(), OsStr::new("start-fg")],
        );
        let args: Vec<&OsStr> = args.iter().map(|arg| arg.as_os_str()).collect();
        let postfix = Guarded::spawn(GuardSpec {
            name: "postfix",
            program: &program,
            args: &args,
            log: &postfix_log,
            envs: &[],
            cleanup: None,
            leftover_pid_file: Some(&master_pid_file),
        })?;
        lock(&self.daemons).push(postfix);
        let dovecot = Guarded::spawn(GuardSpec {
            name: "dovecot",
            program: Path::new("/usr/sbin/dovecot"),
            args: &[OsStr::new("-F"), OsStr::new("-c"), dovecot_config.as_os_str()],
            log: &dovecot_log,
            envs: &[],
            cleanup: None,
            leftover_pid_file: None,
        })?;
        lock(&self.daemons).push(dovecot);
        Ok(())
    }

    /// The directories Postfix and Dovecot expect, for a couchmail that
    /// runs without daemons and so has no reason to make them: created only
    /// when missing, with docs/runtime.md's owners and modes.
    fn prepare_daemon_directories(&self) -> Result<(), String> {
        let postfix = user_ids("postfix")?;
        let vmail = user_ids("vmail")?;
        let data = &self.data_dir;
        let run = &self.runtime_dir;
        for (path, mode, owner) in [
            (data.join("postfix/spool"), 0o755, None),
            (data.join("postfix/data"), 0o700, Some(postfix)),
            (data.join("dovecot/state"), 0o755, None),
            (data.join("log"), 0o750, None),
            (data.join("mail"), 0o700, Some(vmail)),
            (run.join("dovecot/base"), 0o755, None),
        ] {
            if path.exists() {
                continue;
            }
            std::fs::create_dir_all(&path).map_err(|err| format!("cannot create {}: {err}", path.display()))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|err| format!("cannot set the mode of {}: {err}", path.display()))?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .map_err(|err| format!("cannot chown {}: {err}", path.display()))?;
            }
        }
        Ok(())
    }

    /// Polls every readiness check until all pass or `deadline`.
    fn wait_ready(&self, deadline: Instant) -> Result<(), String> {
        self.wait_for("the whole stack", deadline, || {
            self.check_health()?;
            self.check_smtp_greeting("SMTP", self.ports.smtp)?;
            self.check_smtp_greeting("submission", self.ports.submission)?;
            let tls = self.tls_client()?;
            let submissions =
                SmtpClient::connect_within(self.address(self.ports.submissions), None, Some(&tls), PROBE_TIMEOUT)
                    .map_err(|err| format!("submissions (TLS) on {}: {err}", self.ports.submissions))?;
            if submissions.greeting().code != 220 {
                return Err(format!("submissions greeted with {}", submissions.greeting()));
            }
            submissions.quit();
            ImapClient::connect_tls_within(self.address(self.ports.imaps), None, &tls, PROBE_TIMEOUT)
                .map_err(|err| format!("IMAPS on {}: {err}", self.ports.imaps))?
                .logout();
            Ok(())
        })
    }

    /// Runs `check` every 100 ms until it passes, a guarded process dies,
    /// or `deadline`; the error names the last failed check.
    fn wait_for(&self, what: &str, deadline: Instant, check: impl Fn() -> Result<(), String>) -> Result<(), String> {
        let started = Instant::now();
        loop {
            self.check_processes_alive()?;
            let outcome = check();
            match outcome {
                Ok(()) => return Ok(()),
                Err(last) if Instant::now() >= deadline => {
                    return Err(format!(
                        "{what} was not ready after {:.1} s; last check: {last}",
                        started.elapsed().as_secs_f64()
                    ));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn check_processes_alive(&self) -> Result<(), String> {
        if let Some(couchmail) = lock(&self.couchmail).as_mut()
            && !couchmail.is_running()
        {
            return Err(format!("couchmail exited (status {:?})", couchmail.exit_status()));
        }
        for daemon in lock(&self.daemons).iter_mut() {
            if !daemon.is_running() {
                return Err(format!("{} exited (status {:?})", daemon.name(), daemon.exit_status()));
            }
        }
        Ok(())
    }

    fn check_health(&self) -> Result<(), String> {
        let url = format!("{}/api/v1/health", self.web_base_url());
        let tcp = net::connect_within(self.address(self.ports.api), None, PROBE_TIMEOUT)
            .map_err(|err| format!("{url}: {err}"))?;
        let request = b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        let mut answer = String::new();
        match self.api_transport {
            ApiTransport::Http => {
                let mut stream = tcp;
                stream.write_all(request).map_err(|err| format!("{url}: {err}"))?;
                stream.read_to_string(&mut answer).map_err(|err| format!("{url}: {err}"))?;
            }
            ApiTransport::Https => {
                // `up` makes the certificate before its API listens, so it is there once the port answers.
                let mut stream = self.tls_client()?.handshake(tcp).map_err(|err| format!("{url}: {err}"))?;
                stream.write_all(request).map_err(|err| format!("{url}: {err}"))?;
                stream.read_to_string(&mut answer).map_err(|err| format!("{url}: {err}"))?;
            }
        }
        let status_line = answer.lines().next().unwrap_or_default();
        if status_line.split_whitespace().nth(1) == Some("200") {
            Ok(())
        } else {
            Err(format!("{url} answered {status_line:?}"))
        }
    }

    fn check_smtp_greeting(&self, what: &str, port: u16) -> Result<(), String> {
        let client = SmtpClient::connect_within(self.address(port), None, None, PROBE_TIMEOUT)
            .map_err(|err| format!("{what} on {port}: {err}"))?;
        if client.greeting().code != 220 {
            return Err(format!("{what} on {port} greeted with {}", client.greeting()));
        }
        client.quit();
        Ok(())
    }

    fn tls_client(&self) -> Result<TlsClient, String> {
        if let Some(tls) = self.tls.get() {
            return Ok(tls.clone());
        }
        let certificate = self.data_dir.join("tls/cert.pem");
        let tls = TlsClient::pinned_to_pem_file(&certificate).map_err(|err| err.to_string())?;
        Ok(self.tls.get_or_init(|| tls).clone())
    }

    /// Remembers the process groups and sessions of couchmail and the
    /// daemons, so that a stop can prove none of their processes is left.
    fn record_processes(&self) {
        let mut groups = lock(&self.groups);
        let mut sessions = lock(&self.sessions);
        let guarded_pids: Vec<u32> =
            lock(&self.couchmail).iter().chain(lock(&self.daemons).iter()).filter_map(Guarded::pid).collect();
        for pid in guarded_pids {
            groups.insert(pid);
            sessions.insert(pid);
        }
        for pid_file in [self.postfix_master_pid_file(), self.runtime_dir.join("dovecot/base/master.pid")] {
            if let Some(pid) = process::read_pid_file(&pid_file)
                && let Some(info) = process::process_info(pid)
            {
                groups.insert(info.group);
                sessions.insert(info.session);
            }
        }
    }

    /// Postfix's master writes its pid here (it leads a session of its own,
    /// so signals to the group of `postfix start-fg` do not reach it).
    pub fn postfix_master_pid_file(&self) -> PathBuf {
        self.data_dir.join("postfix/spool/pid/master.pid")
    }

    /// The stack's directory (configuration, data, runtime, logs).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The configuration file passed to every couchmail command.
    pub fn config_file(&self) -> &Path {
        &self.config_file
    }

    /// couchmail's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// couchmail's runtime directory (sockets, rendered configuration).
    pub fn runtime_dir(&self) -> &Path {
        &self.runtime_dir
    }

    /// The Postfix socketmap socket.
    pub fn socketmap_socket(&self) -> PathBuf {
        self.runtime_dir.join("socketmap")
    }

    /// The Dovecot dict socket (Sieve scripts).
    pub fn dict_socket(&self) -> PathBuf {
        self.runtime_dir.join("dict")
    }

    /// The ports.
    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// `127.0.0.1:port`.
    pub fn address(&self, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    }

    /// The TLS client that trusts the stack's certificate.
    pub fn tls(&self) -> TlsClient {
        self.tls_client().unwrap_or_else(|err| panic!("no TLS client for the stack: {err}"))
    }

    /// The first admin's bearer token.
    pub fn admin_bearer(&self) -> &str {
        self.admin_bearer.get().map(String::as_str).unwrap_or_default()
    }

    /// How the API and web UI listener speaks.
    pub fn api_transport(&self) -> ApiTransport {
        self.api_transport
    }

    /// The API and web UI listener's base URL: `http://127.0.0.1:PORT`, or `https://…` under
    /// [`ApiTransport::Https`].
    pub fn web_base_url(&self) -> String {
        let scheme = match self.api_transport {
            ApiTransport::Http => "http",
            ApiTransport::Https => "https",
        };
        format!("{scheme}://127.0.0.1:{}", self.ports.api)
    }

    /// The REST API with the first admin's token.
    pub fn api(&self) -> Api {
        let base_url = format!("{}/api/v1", self.web_base_url());
        let bearer = self.admin_bearer().to_owned();
        match self.api_transport {
            ApiTransport::Http => Api::new(base_url, bearer),
            ApiTransport::Https => Api::with_tls(base_url, bearer, &self.tls()),
        }
    }

    /// The web UI, without a browser and with an empty cookie jar.
    pub fn web(&self) -> WebClient {
        match self.api_transport {
            ApiTransport::Http => WebClient::new(self.web_base_url(), None),
            ApiTransport::Https => WebClient::new(self.web_base_url(), Some(&self.tls())),
        }
    }

    /// Runs `couchmail --config FILE args…` and returns what it did.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_input(args, "")
    }

    /// Runs a couchmail command with `input` on its standard input.
    ///
    /// # Panics
    /// When the command cannot run or takes longer than a minute.
    pub fn cli_with_input(&self, args: &[&str], input: &str) -> Output {
        let mut command = Command::new(&self.binary);
        command.arg("--config").arg(&self.config_file).args(args);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("COUCHMAIL_") || key == "RUST_LOG" {
                command.env_remove(key.as_ref());
            }
        }
        run_with_timeout(command, input, CLI_TIMEOUT)
            .unwrap_or_else(|err| panic!("couchmail {args:?}: {err}\n{}", self.diagnostics()))
    }

    /// Runs a couchmail command that must succeed; returns its stdout.
    ///
    /// # Panics
    /// When it fails, with its output and the stack's diagnostics.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        self.cli_ok_with_input(args, "")
    }

    /// [`cli_ok`](Self::cli_ok) with `input` on standard input.
    ///
    /// # Panics
    /// When it fails, with its output and the stack's diagnostics.
    pub fn cli_ok_with_input(&self, args: &[&str], input: &str) -> String {
        let output = self.cli_with_input(args, input);
        if !output.status.success() {
            panic!("couchmail {args:?} failed: {}\n{}", describe_output(&output), self.diagnostics());
        }
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Adds a mailbox with `password` (domain must exist).
    pub fn add_mailbox(&self, address: &str, password: &str) {
        self.cli_ok(&["mailbox", "add", address]);
        self.cli_ok_with_input(&["mailbox", "passwd", address, "--stdin"], &format!("{password}\n"));
    }

    /// An SMTP connection to port 25 from 127.0.0.1.
    ///
    /// # Panics
    /// When it cannot connect.
    pub fn smtp(&self) -> SmtpClient {
        self.smtp_from(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// An SMTP connection to port 25 from `source`.
    ///
    /// # Panics
    /// When it cannot connect.
    pub fn smtp_from(&self, source: IpAddr) -> SmtpClient {
        SmtpClient::connect(self.address(self.ports.smtp), Some(source))
            .unwrap_or_else(|err| panic!("SMTP: {err}\n{}", self.diagnostics()))
    }

    /// A plain connection to the submission port (587), before STARTTLS.
    ///
    /// # Panics
    /// When it cannot connect.
    pub fn submission(&self, source: IpAddr) -> SmtpClient {
        SmtpClient::connect(self.address(self.ports.submission), Some(source))
            .unwrap_or_else(|err| panic!("submission: {err}\n{}", self.diagnostics()))
    }

    /// A TLS connection to the submissions port (465).
    ///
    /// # Panics
    /// When it cannot connect or the handshake fails.
    pub fn submissions(&self, source: IpAddr) -> SmtpClient {
        SmtpClient::connect_tls(self.address(self.ports.submissions), Some(source), &self.tls())
            .unwrap_or_else(|err| panic!("submissions: {err}\n{}", self.diagnostics()))
    }

    /// An IMAP connection over TLS from `source`.
    ///
    /// # Panics
    /// When it cannot connect or the handshake fails.
    pub fn imap(&self, source: IpAddr) -> ImapClient {
        ImapClient::connect_tls(self.address(self.ports.imaps), Some(source), &self.tls())
            .unwrap_or_else(|err| panic!("IMAPS: {err}\n{}", self.diagnostics()))
    }

    /// Whether `user` can log in over IMAP with `password` from `source`,
    /// with the server's answer.
    pub fn imap_login(&self, user: &str, password: &str, source: IpAddr) -> imap::Response {
        let mut client = self.imap(source);
        let response =
            client.login(user, password).unwrap_or_else(|err| panic!("IMAP LOGIN: {err}\n{}", self.diagnostics()));
        client.logout();
        response
    }

    /// Sends a message over port 25 and expects it accepted.
    ///
    /// # Panics
    /// When any step is refused, naming the step and the reply.
    pub fn deliver(&self, sender: &str, recipient: &str, subject: &str) {
        let mut client = self.smtp();
        let ehlo = client.ehlo("client.e2e.test").unwrap_or_else(|err| panic!("EHLO: {err}"));
        assert_eq!(ehlo.code, 250, "EHLO answered {ehlo}");
        let message = smtp::message(sender, recipient, subject, "Sent by the end-to-end tests.");
        match client.send(sender, &[recipient], &message) {
            Ok(Ok(_)) => client.quit(),
            Ok(Err(refused)) => panic!("delivery to {recipient} refused: {refused}\n{}", self.diagnostics()),
            Err(err) => panic!("delivery to {recipient}: {err}\n{}", self.diagnostics()),
        }
    }

    /// Waits until a message with `subject` is in `mailbox` of `user`, read
    /// over IMAP; returns its `Subject`, `To` and `Delivered-To` header lines.
    ///
    /// # Panics
    /// When the login fails, or nothing arrives within `timeout`.
    pub fn expect_message(
        &self,
        user: &str,
        password: &str,
        mailbox: &str,
        subject: &str,
        timeout: Duration,
    ) -> String {
        self.wait_for_message(user, password, mailbox, subject, timeout)
            .unwrap_or_else(|err| panic!("{user}: no message {subject:?} in {mailbox}: {err}\n{}", self.diagnostics()))
    }

    /// Polls `mailbox` of `user` over IMAP for a message with `subject`.
    pub fn wait_for_message(
        &self,
        user: &str,
        password: &str,
        mailbox: &str,
        subject: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let mut client = ImapClient::connect_tls(self.address(self.ports.imaps), None, &self.tls())
            .map_err(|err| format!("IMAPS: {err}"))?;
        let login = client.login(user, password).map_err(|err| format!("LOGIN: {err}"))?;
        if !login.is_ok() {
            return Err(format!("LOGIN as {user} answered {login}"));
        }
        let criteria = format!("HEADER SUBJECT \"{subject}\"");
        loop {
            // SELECT again each round: it is how a client sees new mail without IDLE.
            let selected = client.select(mailbox).map_err(|err| format!("SELECT: {err}"))?;
            if selected.is_ok() {
                let found = client.search(&criteria).map_err(|err| err.to_string())?;
                if let Some(&first) = found.first() {
                    let headers = client
                        .fetch_header_fields(first, &["SUBJECT", "TO", "DELIVERED-TO"])
                        .map_err(|err| err.to_string())?;
                    client.logout();
                    return Ok(headers);
                }
            }
            if Instant::now() >= deadline {
                let mailboxes = client.list().unwrap_or_default();
                return Err(format!(
                    "nothing after {} s (SELECT {mailbox}: {selected}; mailboxes: {mailboxes:?})",
                    timeout.as_secs_f64()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// How many messages with `subject` are in `mailbox` of `user` now
    /// (0 when the mailbox does not exist).
    ///
    /// # Panics
    /// When the login fails.
    pub fn count_messages(&self, user: &str, password: &str, mailbox: &str, subject: &str) -> usize {
        let mut client = self.imap(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let login = client.login(user, password).unwrap_or_else(|err| panic!("LOGIN: {err}"));
        assert!(login.is_ok(), "LOGIN as {user} answered {login}\n{}", self.diagnostics());
        let selected = client.select(mailbox).unwrap_or_else(|err| panic!("SELECT: {err}"));
        let count = if selected.is_ok() {
            client.search(&format!("HEADER SUBJECT \"{subject}\"")).unwrap_or_else(|err| panic!("{err}")).len()
        } else {
            0
        };
        client.logout();
        count
    }

    /// Postfix's log so far.
    pub fn postfix_log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("log/postfix.log")).unwrap_or_default()
    }

    /// Dovecot's log so far.
    pub fn dovecot_log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("log/dovecot.log")).unwrap_or_default()
    }

    /// couchmail's standard output and error so far.
    pub fn couchmail_log(&self) -> String {
        std::fs::read_to_string(self.root.join("couchmail.log")).unwrap_or_default()
    }

    /// Postfix's configuration directory in use.
    fn postfix_config_dir(&self) -> PathBuf {
        match self.options.daemons {
            Daemons::Couchmail | Daemons::None => self.runtime_dir.join("postfix"),
            Daemons::Harness => self.rendered_dir.join("postfix"),
        }
    }

    /// `postfix reload`: Postfix re-reads its configuration and replaces
    /// its daemon processes (their caches go with them).
    ///
    /// # Panics
    /// When the reload fails.
    pub fn postfix_reload(&self) {
        let mut command = Command::new("/usr/sbin/postfix");
        command.arg("-c").arg(self.postfix_config_dir()).arg("reload");
        let output = run_with_timeout(command, "", Duration::from_secs(20))
            .unwrap_or_else(|err| panic!("postfix reload: {err}\n{}", self.diagnostics()));
        assert!(output.status.success(), "postfix reload: {}\n{}", describe_output(&output), self.diagnostics());
    }

    /// `postqueue -p`: what waits in Postfix's queue.
    pub fn postqueue(&self) -> String {
        let mut command = Command::new("/usr/sbin/postqueue");
        command.arg("-c").arg(self.postfix_config_dir()).arg("-p");
        match run_with_timeout(command, "", Duration::from_secs(20)) {
            Ok(output) => describe_output(&output),
            Err(err) => format!("postqueue failed: {err}"),
        }
    }

    /// The last lines of every log of the stack, for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut text = format!("--- stack directory: {} (ports {:?})\n", self.root.display(), self.ports);
        let mut logs = vec![
            ("couchmail output", self.root.join("couchmail.log")),
            ("postfix.log", self.data_dir.join("log/postfix.log")),
            ("dovecot.log", self.data_dir.join("log/dovecot.log")),
        ];
        if self.options.daemons == Daemons::Harness {
            logs.push(("postfix output", self.root.join("postfix.out")));
            logs.push(("dovecot output", self.root.join("dovecot.out")));
        }
        for (name, path) in logs {
            let content = std::fs::read_to_string(&path).unwrap_or_else(|err| format!("({err})\n"));
            let lines: Vec<&str> = content.lines().collect();
            let tail = &lines[lines.len().saturating_sub(25)..];
            let _ = writeln!(text, "--- last {} lines of {name} ({}):", tail.len(), path.display());
            for line in tail {
                let _ = writeln!(text, "{line}");
            }
        }
        text
    }

    /// Stops couchmail alone (with [`Daemons::Harness`], the daemons keep
    /// running); returns its exit status.
    pub fn stop_couchmail(&self) -> Result<i32, String> {
        let guarded = lock(&self.couchmail).take();
        match guarded {
            Some(mut guarded) => guarded.stop(STOP_TIMEOUT),
            None => Err("couchmail is not running".to_owned()),
        }
    }

    /// Starts couchmail again after [`stop_couchmail`](Self::stop_couchmail)
    /// or [`kill_couchmail`](Self::kill_couchmail) and waits until its API
    /// is healthy; with [`Daemons::Couchmail`], until the whole stack is
    /// ready, as at the first start (`couchmail up` stops the daemons an
    /// earlier run left and starts its own).
    pub fn start_couchmail(&self) -> Result<(), String> {
        if lock(&self.couchmail).is_some() {
            return Err("couchmail is already running".to_owned());
        }
        self.spawn_couchmail()?;
        let deadline = Instant::now() + START_TIMEOUT;
        match self.options.daemons {
            Daemons::Couchmail => self.wait_ready(deadline)?,
            Daemons::Harness | Daemons::None => {
                self.wait_for("couchmail after a restart", deadline, || self.check_health())?;
            }
        }
        self.record_processes();
        Ok(())
    }

    /// The process id of `couchmail up` (`None` while it is not running).
    pub fn couchmail_pid(&self) -> Option<u32> {
        lock(&self.couchmail).as_ref().and_then(Guarded::pid)
    }

    /// Kills `couchmail up` with SIGKILL, as the OOM killer or a crash
    /// would: it cannot stop anything, so the daemons it supervised keep
    /// running, orphaned, until the next `couchmail up` finds them.
    /// Returns its exit status (137); [`start_couchmail`](Self::start_couchmail)
    /// starts it again.
    pub fn kill_couchmail(&self) -> Result<i32, String> {
        let Some(mut guarded) = lock(&self.couchmail).take() else {
            return Err("couchmail is not running".to_owned());
        };
        let pid = guarded.pid().ok_or("couchmail has no process id")?;
        process::signal_process(pid, rustix::process::Signal::KILL);
        // The guard's own stop signal goes to couchmail's process group, which the daemons left at their start
        // (each leads a group of its own): it reaps the dead couchmail and nothing else.
        guarded.stop(STOP_TIMEOUT)
    }

    /// The process in `pid_file` (a daemon's own pid file under the
    /// stack's directories) when it runs below this stack's couchmail:
    /// a daemon `couchmail up` supervises, never a process of someone else
    /// that happens to reuse a stale pid.
    pub fn supervised_pid(&self, pid_file: &Path) -> Option<u32> {
        let couchmail = self.couchmail_pid()?;
        let pid = process::read_pid_file(pid_file)?;
        process::is_descendant_of(pid, couchmail).then_some(pid)
    }

    /// Dovecot's master pid file.
    pub fn dovecot_master_pid_file(&self) -> PathBuf {
        self.runtime_dir.join("dovecot/base/master.pid")
    }

    /// spamd's pid file (spam on).
    pub fn spamd_pid_file(&self) -> PathBuf {
        self.runtime_dir.join("spamd/spamd.pid")
    }

    /// Waits until couchmail, SMTP and IMAPS all answer, at most `timeout`.
    pub fn wait_until_ready(&self, timeout: Duration) -> Result<(), String> {
        self.wait_ready(Instant::now() + timeout)
    }

    /// `postqueue -f`: Postfix retries every deferred message now, as it
    /// would after its backoff, and forgets which destinations it deemed dead.
    pub fn postqueue_flush(&self) -> Result<(), String> {
        let mut command = Command::new("/usr/sbin/postqueue");
        command.arg("-c").arg(self.postfix_config_dir()).arg("-f");
        let output = run_with_timeout(command, "", Duration::from_secs(20))?;
        if output.status.success() { Ok(()) } else { Err(format!("postqueue -f: {}", describe_output(&output))) }
    }

    /// Stops everything and proves nothing is left: couchmail must exit 0
    /// and no process of this stack may remain (stragglers are killed and
    /// named in the error).
    pub fn stop(self) -> Result<(), String> {
        let result = self.stop_all();
        if result.is_err() {
            self.keep_root.store(true, Ordering::Relaxed);
        }
        result
    }

    fn stop_all(&self) -> Result<(), String> {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.record_processes();
        let mut problems = Vec::new();
        // Daemons first: Postfix must not deliver into a couchmail that is going away.
        let harness_daemons: Vec<Guarded> = lock(&self.daemons).drain(..).collect();
        if !harness_daemons.is_empty()
            && let Some(master) = process::read_pid_file(&self.postfix_master_pid_file())
        {
            // postfix start-fg leaves the master in a session of its own: stop it by its pid.
            process::signal_process(master, rustix::process::Signal::TERM);
        }
        for mut daemon in harness_daemons {
            if let Err(err) = daemon.stop(STOP_TIMEOUT) {
                problems.push(err);
            }
        }
        if let Some(mut couchmail) = lock(&self.couchmail).take() {
            match couchmail.stop(STOP_TIMEOUT) {
                Ok(0) => {}
                Ok(status) => problems.push(format!("couchmail exited with status {status} on SIGTERM")),
                Err(err) => problems.push(err),
            }
        }
        let stragglers = self.kill_stragglers();
        if !stragglers.is_empty() {
            problems.push(format!("processes left after the stop (killed): {}", stragglers.join("; ")));
        }
        if problems.is_empty() { Ok(()) } else { Err(format!("{}\n{}", problems.join("\n"), self.diagnostics())) }
    }

    /// Waits up to 5 s for the stack's processes to vanish, then kills
    /// the rest by PID; returns those it had to kill.
    fn kill_stragglers(&self) -> Vec<String> {
        let groups = lock(&self.groups).clone();
        let sessions = lock(&self.sessions).clone();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = process::processes_of_stack(&self.root, &groups, &sessions);
            if left.is_empty() {
                return Vec::new();
            }
            if Instant::now() >= deadline {
                for process in &left {
                    process::signal_process(process.pid, rustix::process::Signal::KILL);
                }
                return left.iter().map(|process| format!("{} {}", process.pid, process.command_line)).collect();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for MailStack {
    fn drop(&mut self) {
        if let Err(err) = self.stop_all() {
            eprintln!("stopping the mail stack: {err}");
            self.keep_root.store(true, Ordering::Relaxed);
        }
        let keep = self.keep_root.load(Ordering::Relaxed)
            || std::thread::panicking()
            || std::env::var_os("COUCHMAIL_E2E_KEEP").is_some();
        if keep {
            eprintln!("kept the mail stack's directory for a look: {}", self.root.display());
        } else if let Err(err) = std::fs::remove_dir_all(&self.root) {
            eprintln!("cannot remove {}: {err}", self.root.display());
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock leaves consistent data: keep going.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The uid and gid of a system user, from /etc/passwd.
fn user_ids(name: &str) -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|err| format!("cannot read /etc/passwd: {err}"))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&name))
        .and_then(|fields| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
        .ok_or_else(|| format!("no user {name} in /etc/passwd"))
}

/// Runs `command` with `input` on stdin, collecting its output, killed after `timeout`.
fn run_with_timeout(mut command: Command, input: &str, timeout: Duration) -> Result<Output, String> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot start {:?}: {err}", command.get_program()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input closes the pipe early: not an error here.
        let _ = stdin.write_all(input.as_bytes());
    }
    let readers = [child.stdout.take().map(read_in_thread), child.stderr.take().map(read_in_thread)];
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{:?} took longer than {} s: killed", command.get_program(), timeout.as_secs()));
            }
            Err(err) => return Err(format!("cannot wait for {:?}: {err}", command.get_program())),
        }
    };
    let [stdout, stderr] = readers.map(|reader| reader.and_then(|reader| reader.join().ok()).unwrap_or_default());
    Ok(Output { status, stdout, stderr })
}

fn read_in_thread(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        // What was read before an error is all there is to show.
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Exit status, stdout and stderr of a finished command, for messages.
pub fn describe_output(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).trim_end(),
        String::from_utf8_lossy(&output.stderr).trim_end()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_client_ips_are_distinct_loopback_addresses_but_never_127_0_0_1() {
        let ips: BTreeSet<IpAddr> = (0..600).map(|_| fresh_client_ip()).collect();
        assert_eq!(ips.len(), 600);
        assert!(ips.iter().all(|ip| ip.is_loopback() && *ip != IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }

    #[test]
    fn free_ports_differ() {
        let ports = Ports::free().unwrap();
        let all: BTreeSet<u16> =
            [ports.smtp, ports.submission, ports.submissions, ports.imaps, ports.api, ports.auth, ports.managesieve]
                .into();
        assert_eq!(all.len(), 7);
    }

    #[test]
    fn commands_that_hang_are_killed() {
        let mut command = Command::new("sleep");
        command.arg("10");
        let started = Instant::now();
        let err = run_with_timeout(command, "", Duration::from_millis(200)).unwrap_err();
        assert!(err.contains("killed"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let output = run_with_timeout(Command::new("cat"), "echo", Duration::from_secs(5)).unwrap();
        assert_eq!(output.stdout, b"echo");
    }

    #[test]
    fn known_system_users_resolve() {
        assert_eq!(user_ids("root"), Ok((0, 0)));
        assert!(user_ids("no-such-user-here").is_err());
    }
}
