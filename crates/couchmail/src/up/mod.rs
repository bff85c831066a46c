//! `couchmail up`: run the whole mail stack — the store, the live index,
//! couchmail's servers, Postfix and Dovecot — until SIGINT or SIGTERM.
//!
//! Start-up, in order (each step fails with a message and a hint):
//! 1. With the daemons on (the default), check for root, install the Debian
//!    packages that are missing and make sure user `vmail` exists.
//! 2. Render the Postfix and Dovecot configuration (refused values stop
//!    everything before any file is touched), with a fresh auth secret.
//! 3. Create the directories of docs/runtime.md with their owners and modes
//!    ([`layout`]), and the self-signed certificate when none is configured
//!    ([`tls`]).
//! 4. Stop Postfix and Dovecot left running by an unclean earlier stop, then
//!    write the rendered files into the runtime directory.
//! 5. Open the store and start couchmail's servers ([`servers`]); wait for
//!    the index's first snapshot; make the first admin token on first run.
//! 6. Start Postfix and Dovecot under the supervisor ([`daemons`]) and wait
//!    until the SMTP and IMAPS ports answer; keep Dovecot's auth cache in
//!    step with the index.
//! 7. Print the summary.
//!
//! Stopping (SIGINT, SIGTERM): Postfix and Dovecot first, so that no daemon
//! asks a server that is gone, then couchmail's servers; the sockets are
//! removed and `up` exits 0.
//!
//! A crash of one of couchmail's own servers stops the whole stack with an
//! error (exit 1) rather than restarting the server in-process: the index,
//! the servers and the daemons then start again together from a known
//! state under whatever runs `up` (systemd's `Restart=`), and Postfix defers
//! mail meanwhile instead of bouncing it. Postfix and Dovecot themselves are
//! restarted with backoff by the supervisor.
//!
//! With `mail.daemons = false` (`--no-daemons`) only steps 3 (data and
//! runtime directories, certificate), 5 and 7 run, without root: Postfix
//! and Dovecot run elsewhere from the files of `couchmail render`, which
//! shares the auth secret through `<data_dir>/auth-secret`.

mod daemons;
mod health;
mod layout;
mod managesieve;
mod servers;
mod spam_sync;
pub mod tls;

use std::fs::{OpenOptions, Permissions};
use std::io::{IsTerminal, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use couchmail_directory::Directory;
use couchmail_index::Index;
use couchmail_lookup::MailLayout;
use couchmail_model::{DocKind, Document, TokenPrincipal};
use couchmail_render::{Listen, Stack, VmailIds};
use couchmail_store::Store;
use couchmail_supervisor::Supervisor;
use couchmail_supervisor::system;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cmd::{self, Context};
use crate::config::{Config, DEFAULT_CONFIG_FILE, StoreUrl};
use crate::exit::{Exit, Failure};
use crate::output;
use crate::render::{self, StackInputs};
use crate::sieve_check::SievecCheck;

/// The name of the first admin token's file in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// How long spamd may take to load its rules and answer.
const SPAMD_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the servers get to finish after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// One public port, as the summary shows it.
#[derive(Debug, Serialize)]
struct PortSummary {
    /// `smtp`, `submission`, `submissions` or `imaps`.
    service: &'static str,
    /// Where it listens, `*:25` for every address.
    listen: String,
    /// What TLS and AUTH it asks for.
    security: &'static str,
}

/// What `up` prints once everything runs (one JSON line with `--json`).
#[derive(Debug, Serialize)]
struct Summary {
    api_url: String,
    store: String,
    data_dir: String,
    runtime_dir: String,
    index_ready_ms: u64,
    /// Set on first run only.
    admin_token_file: Option<String>,
    hostname: String,
    /// Whether Postfix and Dovecot run under this `up`.
    daemons: bool,
    ports: Vec<PortSummary>,
    auth_endpoint: String,
    tls_certificate: String,
    self_signed: bool,
    /// The host mail clients connect to.
    client_host: String,
    /// `couchmail` with the options that reach this store.
    cli: String,
    /// Where ManageSieve listens, when it does.
    managesieve: Option<String>,
}

/// Runs the stack until a stop signal; returns after a clean shutdown.
pub async fn run(mut config: Config, json: bool) -> anyhow::Result<()> {
    render::make_paths_absolute(&mut config)?;
    // Listen for SIGINT and SIGTERM from the start: an interrupted package
    // installation must still remove its temporary policy-rc.d, so the
    // signal is noticed between steps rather than killing the process.
    let mut signals = Signals::new()?;
    let with_daemons = config.mail.daemons;
    let (vmail, postfix_ids) = if with_daemons {
        require_root()?;
        prepare_system(&debian_packages(&config)).await?
    } else {
        (render::vmail_ids()?, None)
    };
    if let Some(signal) = signals.pending().await {
        tracing::info!(signal, "stopping before anything started");
        return Ok(());
    }

    let auth_secret =
        if with_daemons { render::new_auth_secret() } else { render::persistent_auth_secret(&config.data_dir)? };
    let auth_listener = servers::bind_auth(config.auth_listen).await?;
    let auth_address = auth_listener.local_addr().context("cannot read the auth endpoint's address")?;
    let inputs = StackInputs {
        hostname: render::hostname(&config).await,
        auth_listen: auth_address,
        auth_secret: auth_secret.clone(),
        vmail,
        config_dir: None,
    };
    let stack = render::stack(&config, inputs);
    let rendered = render::render_stack(&stack)?;

    match postfix_ids {
        Some(postfix) => {
            layout::check_reachable(&config.data_dir)?;
            layout::check_reachable(&config.runtime_dir)?;
            let owners = layout::Owners { vmail: system::UserIds { uid: vmail.uid, gid: vmail.gid }, postfix };
            layout::create(&layout::full_tree(&stack.paths), Some(&owners))?;
        }
        None => layout::create(&layout::servers_only(&stack.paths), None)?,
    }
    let certificate = certificate(&config, &stack)?;
    let api_https = api_https(&config, &certificate)?;
    if with_daemons {
        let n_stopped = daemons::stop_leftovers(&stack).await;
        if n_stopped > 0 {
            tracing::warn!(n_stopped, "stopped daemons left running by an earlier couchmail up");
        }
        daemons::check_ports_free(&stack).map_err(|why| {
            Failure::new(Exit::Other, format!("a mail port is taken: {why}")).hint(
                "stop the program that listens there (`ss -ltnp` names it; the system's own postfix or dovecot \
                 service?), or choose other ports under [mail]",
            )
        })?;
        rendered.write_to(&stack.paths.config_dir).map_err(|err| {
            Failure::new(Exit::Other, format!("cannot write the Postfix and Dovecot configuration: {err}"))
                .hint("check that the runtime directory is writable by root")
        })?;
        // SpamAssassin's directories, copied `*.pre` files and compiled global Sieve scripts (nothing when off).
        couchmail_spam::prepare(&stack).await.map_err(|err| {
            Failure::new(Exit::Other, format!("cannot prepare SpamAssassin: {err}")).hint(format!(
                "install it (apt-get install {}), or turn it off with spam.enabled = false",
                couchmail_supervisor::SPAM_DEBIAN_PACKAGES.join(" ")
            ))
        })?;
    }

    let store = open_store(&config).await?;
    let directory = Directory::new(store.clone())
        .with_script_check(SievecCheck::with_dovecot_config(&stack.paths.dovecot_config_file()));
    let index = Arc::new(Index::default());
    let shutdown = Shutdown::default();
    let mut services = Services::default();
    let api_listener = servers::bind_api(config.api_listen).await?;
    let api_address = api_listener.local_addr().context("cannot read the API listener's address")?;
    let policy = stack.policy.then(|| config.policy.policy_config(&config.data_dir));
    // One supervisor, made before the API starts so that the dashboard reports the daemons it runs later.
    let supervisor = with_daemons.then(Supervisor::default);
    let stack_health = Arc::new(health::StackHealth::new(supervisor.clone()));
    services.spawn("daemon uptime watcher", {
        let (stack_health, stopped) = (stack_health.clone(), shutdown.stopped());
        async move {
            stack_health.watch(stopped).await;
            Ok(())
        }
    });
    let sources = servers::Sources {
        store,
        index: index.clone(),
        directory: directory.clone(),
        policy,
        health: stack_health.clone(),
    };
    let listeners = servers::Listeners { api: api_listener, api_https, auth: auth_listener, auth_secret };
    let mail_layout = MailLayout { mail_root: stack.paths.mail_dir.clone(), uid: vmail.uid, gid: vmail.gid };
    let sockets =
        match servers::start(&mut services, &shutdown, sources, listeners, &stack.paths, mail_layout.clone()).await {
            Ok(sockets) => sockets,
            Err(err) => {
                services.stop(&shutdown).await?;
                return Err(err);
            }
        };
    let managesieve_address = match start_managesieve(
        &mut services,
        &shutdown,
        &config,
        &stack,
        &certificate,
        &index,
        &directory,
        mail_layout,
    )
    .await
    {
        Ok(address) => address,
        Err(err) => {
            services.stop(&shutdown).await?;
            return Err(err);
        }
    };
    if let Some(address) = managesieve_address {
        stack_health.add_listener("ManageSieve", address);
    }
    let running = Running { services, shutdown, sockets, daemons: None };

    let started = Instant::now();
    tokio::select! {
        _ = wait_for_index(&index) => {}
        signal = signals.recv() => {
            tracing::info!(signal, "stopping before the index was ready");
            return running.stop().await;
        }
    }
    let index_ready_ms = started.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
    let context = Context { directory, json, config: config.clone() };
    let first_admin = match ensure_admin_token(&context).await {
        Ok(first_admin) => first_admin,
        Err(err) => return running.fail(err).await,
    };

    let mut running = running;
    if let Some(supervisor) = supervisor {
        match start_daemons(&stack, supervisor, &mut signals).await {
            Ok(Some(daemons)) => running.daemons = Some(daemons),
            Ok(None) => return running.stop().await,
            Err(err) => return running.fail(err).await,
        }
        if let Some(spam) = stack.spam.clone() {
            running.services.spawn("spam thresholds", {
                let (stopped, index, vmail) = (running.shutdown.stopped(), index.clone(), stack.vmail);
                async move {
                    spam_sync::keep_thresholds(index, spam, vmail, stopped).await;
                    Ok(())
                }
            });
        }
        running.services.spawn("auth cache flusher", {
            let stopped = running.shutdown.stopped();
            let (index, conf) = (index.clone(), stack.paths.dovecot_config_file());
            async move {
                daemons::flush_auth_cache(index, conf, stopped).await;
                Ok(())
            }
        });
    }

    let summary = Summary {
        api_url: api_url(api_address, config.api_tls, &stack.hostname),
        store: config.store.to_string(),
        data_dir: config.data_dir.display().to_string(),
        runtime_dir: config.runtime_dir.display().to_string(),
        index_ready_ms,
        admin_token_file: first_admin.as_ref().map(|(path, _)| path.display().to_string()),
        hostname: stack.hostname.clone(),
        daemons: with_daemons,
        ports: port_summaries(&stack),
        auth_endpoint: format!("http://{auth_address}"),
        tls_certificate: certificate.cert.display().to_string(),
        self_signed: certificate.self_signed,
        client_host: client_host(&stack),
        cli: cli_prefix(&program_name(), &config),
        managesieve: managesieve_address.map(|address| address.to_string()),
    };
    if let Err(err) = print_summary(&summary, first_admin.as_ref().map(|(_, bearer)| bearer.as_str()), json) {
        return running.fail(err).await;
    }
    running.until_stopped(&mut signals).await
}

/// Serves ManageSieve when `[managesieve]` says so (up/managesieve.rs); the address it listens on.
#[allow(clippy::too_many_arguments, reason = "the pieces of `run` it needs, passed once")]
async fn start_managesieve(
    services: &mut Services,
    shutdown: &Shutdown,
    config: &Config,
    stack: &Stack,
    certificate: &tls::Certificate,
    index: &Arc<Index>,
    directory: &Directory,
    mail_layout: MailLayout,
) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let Some(settings) = config.managesieve.clone() else { return Ok(None) };
    let options = managesieve::Options {
        settings,
        listen: stack.listen,
        cert: certificate.cert.clone(),
        key: certificate.key.clone(),
        auth_failure_delay: Duration::from_secs(config.mail.auth_failure_delay_secs.into()),
    };
    let accounts = Arc::new(couchmail_lookup::Accounts::new(index.clone(), mail_layout));
    let script_check = SievecCheck::with_dovecot_config(&stack.paths.dovecot_config_file());
    managesieve::start(services, shutdown, options, accounts, directory.clone(), script_check).await
}

/// Fails unless running as root, which the daemons need.
fn require_root() -> anyhow::Result<()> {
    if rustix::process::geteuid().is_root() {
        return Ok(());
    }
    Err(Failure::new(Exit::Other, "couchmail up runs Postfix and Dovecot, which needs root")
        .hint(
            "run it as root (sudo couchmail up …), or with --no-daemons (mail.daemons = false) to run only \
             couchmail's servers for a Postfix and Dovecot run elsewhere",
        )
        .into())
}

/// The Debian packages `up` needs: Postfix's and Dovecot's, and SpamAssassin's when spam is on.
fn debian_packages(config: &Config) -> Vec<&'static str> {
    let mut packages = daemons::DEBIAN_PACKAGES.to_vec();
    if config.spam.is_some() {
        packages.extend_from_slice(couchmail_supervisor::SPAM_DEBIAN_PACKAGES);
    }
    packages
}

/// Installs the missing Debian packages (a spinner on a terminal) and makes
/// sure user `vmail` exists; answers the ids of `vmail` and `postfix`.
async fn prepare_system(packages: &[&'static str]) -> anyhow::Result<(VmailIds, Option<system::UserIds>)> {
    let missing = system::missing_debian_packages(packages)
        .await
        .context("cannot ask dpkg which packages are installed (is this Debian?)")?;
    if !missing.is_empty() {
        let spinner = std::io::stderr().is_terminal().then(|| {
            let spinner = indicatif::ProgressBar::new_spinner();
            spinner.enable_steady_tick(Duration::from_millis(100));
            spinner.set_message(format!("installing {} (apt-get)…", missing.join(" ")));
            spinner
        });
        if spinner.is_none() {
            tracing::info!(packages = ?missing, "installing Debian packages (apt-get)");
        }
        let installed = system::ensure_debian_packages(packages).await;
        if let Some(spinner) = spinner {
            spinner.finish_and_clear();
        }
        let installed = installed.map_err(|err| {
            Failure::new(Exit::Other, format!("cannot install the Debian packages couchmail needs: {err}"))
                .hint(format!("install them by hand: apt-get install {}", packages.join(" ")))
        })?;
        tracing::info!(packages = ?installed, "installed Debian packages");
    }
    let vmail = system::ensure_vmail_user(render::DEFAULT_VMAIL_ID).await.map_err(|err| {
        Failure::new(Exit::Other, format!("cannot set up user vmail: {err}"))
            .hint("create user and group vmail (uid/gid 5000) by hand, then run couchmail up again")
    })?;
    let postfix = system::user_ids("postfix")
        .context("cannot look up user postfix")?
        .ok_or_else(|| Failure::new(Exit::Other, "user postfix does not exist although Postfix is installed"))
        .map_err(|failure| failure.hint("reinstall Debian's postfix package: apt-get install --reinstall postfix"))?;
    Ok((VmailIds { uid: vmail.uid, gid: vmail.gid }, Some(postfix)))
}

/// The configured certificate, else the self-signed one.
fn certificate(config: &Config, stack: &Stack) -> anyhow::Result<tls::Certificate> {
    match &config.tls {
        Some(files) => tls::configured(&files.cert, &files.key),
        None => {
            if let Some(tls_dir) = stack.paths.tls_key.parent() {
                std::fs::create_dir_all(tls_dir).with_context(|| format!("cannot create {}", tls_dir.display()))?;
            }
            tls::self_signed(&stack.paths.tls_certificate, &stack.paths.tls_key, &stack.hostname)
        }
    }
}

/// The API's TLS when `api.tls` asks for it, with the mail ports' certificate.
fn api_https(config: &Config, certificate: &tls::Certificate) -> anyhow::Result<Option<couchmail_web::HttpsConfig>> {
    if !config.api_tls {
        return Ok(None);
    }
    let https = couchmail_web::HttpsConfig::from_pem_files(&certificate.cert, &certificate.key).map_err(|err| {
        Failure::new(Exit::Usage, format!("cannot serve the API and web UI over HTTPS: {err}")).hint(
            "point tls.cert and tls.key at a certificate chain and its private key (PEM), or remove both for a \
             self-signed certificate",
        )
    })?;
    Ok(Some(https))
}

/// The API's base URL: `https` under `api.tls`; a wildcard address is no place to connect to, so it names the
/// host (as the certificate does).
fn api_url(address: std::net::SocketAddr, https: bool, hostname: &str) -> String {
    let scheme = if https { "https" } else { "http" };
    if address.ip().is_unspecified() {
        format!("{scheme}://{hostname}:{}/api/v1", address.port())
    } else {
        format!("{scheme}://{address}/api/v1")
    }
}

/// Postfix and Dovecot under a supervisor task.
struct RunningDaemons {
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    shutdown: Shutdown,
}

impl RunningDaemons {
    async fn stop(self) {
        self.shutdown.stop();
        match self.task.await {
            Ok(Ok(())) => tracing::info!("Postfix and Dovecot stopped"),
            Ok(Err(err)) => tracing::warn!(%err, "the supervisor failed"),
            Err(join) => tracing::warn!(%join, "the supervisor task crashed"),
        }
    }
}

/// Checks Postfix's queue, starts Postfix and Dovecot and waits until their
/// ports answer. `None` when a stop signal came first (the daemons are stopped).
async fn start_daemons(
    stack: &Stack,
    supervisor: Supervisor,
    signals: &mut Signals,
) -> anyhow::Result<Option<RunningDaemons>> {
    let postfix_config_dir = stack.paths.postfix_config_dir();
    system::postfix_check(&postfix_config_dir).await.map_err(|err| {
        Failure::new(
            Exit::Other,
            format!("Postfix refuses its configuration: {err}\n{}", daemons::log_tail(&stack.paths.postfix_log)),
        )
        .hint(format!(
            "read {} and the files in {}",
            stack.paths.postfix_log.display(),
            postfix_config_dir.display()
        ))
    })?;
    let shutdown = Shutdown::default();
    let task = tokio::spawn({
        // SpamAssassin's daemons first, so that they start before and stop after Postfix and Dovecot.
        let mut specs = couchmail_spam::daemons(stack);
        specs.extend(daemons::specs(stack));
        let stopped = shutdown.stopped();
        async move { supervisor.run(specs, stopped).await }
    });
    let mut running = RunningDaemons { task, shutdown };
    let probes = daemons::probe_addresses(stack);
    let waited = tokio::select! {
        waited = daemons::wait_for_ports(&probes, daemons::START_TIMEOUT) => waited,
        ended = &mut running.task => {
            let why = match ended {
                Ok(Ok(())) => "it ended".to_owned(),
                Ok(Err(err)) => err.to_string(),
                Err(join) => join.to_string(),
            };
            return Err(Failure::new(Exit::Other, format!("cannot start Postfix and Dovecot: {why}"))
                .hint(format!("install them: apt-get install {}", daemons::DEBIAN_PACKAGES.join(" ")))
                .into());
        }
        signal = signals.recv() => {
            tracing::info!(signal, "stopping while Postfix and Dovecot start");
            running.stop().await;
            return Ok(None);
        }
    };
    if let Err(silent) = waited {
        running.stop().await;
        let tails =
            format!("{}\n{}", daemons::log_tail(&stack.paths.postfix_log), daemons::log_tail(&stack.paths.dovecot_log));
        return Err(Failure::new(
            Exit::Other,
            format!("{} did not answer within {} s\n{tails}", silent.join(" and "), daemons::START_TIMEOUT.as_secs()),
        )
        .hint(format!(
            "the lines above are the end of the daemons' logs: fix what they name (the rendered files are in {}) \
             and run couchmail up again",
            stack.paths.config_dir.display()
        ))
        .into());
    }
    if let Err(err) = couchmail_spam::wait_until_ready(stack, SPAMD_START_TIMEOUT).await {
        running.stop().await;
        return Err(Failure::new(Exit::Other, format!("SpamAssassin did not start: {err}"))
            .hint(format!(
                "read {} (spamd.log, spamass-milter.log), or turn it off with spam.enabled = false",
                stack.paths.log_dir.display()
            ))
            .into());
    }
    tracing::info!("Postfix and Dovecot are answering");
    Ok(Some(running))
}

/// Everything `up` started, stopped in the right order.
struct Running {
    services: Services,
    shutdown: Shutdown,
    sockets: servers::Sockets,
    daemons: Option<RunningDaemons>,
}

impl Running {
    /// Runs until a stop signal or a failure of one of couchmail's servers.
    async fn until_stopped(mut self, signals: &mut Signals) -> anyhow::Result<()> {
        tokio::select! {
            signal = signals.recv() => {
                tracing::info!(signal, "stopping");
                self.stop().await
            }
            failed = self.services.first_failure() => {
                tracing::error!(error = %format!("{failed:#}"), "a server of couchmail stopped; stopping everything");
                self.fail(failed.context("a server stopped unexpectedly")).await
            }
        }
    }

    /// Stops the daemons, then the servers, then removes the sockets.
    async fn stop(self) -> anyhow::Result<()> {
        if let Some(daemons) = self.daemons {
            daemons.stop().await;
        }
        let stopped = self.services.stop(&self.shutdown).await;
        self.sockets.remove();
        stopped
    }

    /// Stops everything and answers `err`.
    async fn fail(self, err: anyhow::Error) -> anyhow::Result<()> {
        if let Err(stop_err) = self.stop().await {
            tracing::warn!(error = %format!("{stop_err:#}"), "unclean stop after a failure");
        }
        Err(err)
    }
}

/// The stop signal shared by a group of tasks.
pub struct Shutdown {
    sender: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Shutdown {
        Shutdown { sender: watch::channel(false).0 }
    }
}

impl Shutdown {
    /// A future that completes when [`Shutdown::stop`] is called.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.sender.subscribe();
        async move {
            // An error means the sender is gone, which is a stop too.
            let _ = receiver.wait_for(|stopping| *stopping).await;
        }
    }

    /// Tells every task to stop.
    pub fn stop(&self) {
        self.sender.send_replace(true);
    }
}

/// The server tasks, stopped together.
#[derive(Default)]
pub struct Services {
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
}

impl Services {
    /// Runs `task` as the server `name`.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = anyhow::Result<()>> + Send + 'static) {
        self.tasks.spawn(async move { (name, task.await) });
    }

    /// Resolves with an error when a task ends before a stop was asked for
    /// (servers run until told to stop); never resolves while all run.
    async fn first_failure(&mut self) -> anyhow::Error {
        match self.tasks.join_next().await {
            Some(Ok((name, Ok(())))) => anyhow::anyhow!("{name} stopped by itself"),
            Some(Ok((name, Err(err)))) => err.context(format!("{name} failed")),
            Some(Err(join)) => anyhow::anyhow!("a server task crashed: {join}"),
            None => std::future::pending().await,
        }
    }

    /// Signals every task to stop and waits for them, at most [`SHUTDOWN_GRACE`].
    async fn stop(mut self, shutdown: &Shutdown) -> anyhow::Result<()> {
        shutdown.stop();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        let mut failures = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(None) => break,
                Ok(Some(Ok((name, Ok(()))))) => tracing::debug!(task = name, "stopped"),
                Ok(Some(Ok((name, Err(err))))) => failures.push(format!("{name}: {err:#}")),
                Ok(Some(Err(join))) => failures.push(format!("a server task crashed: {join}")),
                Err(_) => {
                    self.tasks.abort_all();
                    failures.push(format!("servers did not stop within {} s", SHUTDOWN_GRACE.as_secs()));
                    break;
                }
            }
        }
        if failures.is_empty() {
            tracing::info!("stopped");
            Ok(())
        } else {
            Err(anyhow::anyhow!("unclean shutdown: {}", failures.join("; ")))
        }
    }
}

/// SIGINT and SIGTERM.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
        })
    }

    /// A signal that arrived since the last look, without waiting for one.
    async fn pending(&mut self) -> Option<&'static str> {
        tokio::select! {
            biased;
            signal = self.recv() => Some(signal),
            () = std::future::ready(()) => None,
        }
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let store = crate::store::open(config, crate::store::Missing::Create).await?;
    tracing::info!(store = store.describe(), "store open");
    Ok(store)
}

/// Waits until the index has its first snapshot, with a spinner on a terminal.
async fn wait_for_index(index: &Index) -> bool {
    let spinner = std::io::stderr().is_terminal().then(|| {
        let spinner = indicatif::ProgressBar::new_spinner();
        spinner.enable_steady_tick(Duration::from_millis(100));
        spinner.set_message("building the index from the store…");
        spinner
    });
    loop {
        if index.wait_until(|snapshot| snapshot.is_ready(), Duration::from_millis(250)).await.is_some() {
            if let Some(spinner) = &spinner {
                spinner.finish_and_clear();
            }
            return true;
        }
        let health = index.health();
        let message = match &health.last_store_error {
            Some(error) => format!("waiting for the store: {error}"),
            None => format!(
                "building the index: {} domains, {} mailboxes, {} aliases so far…",
                health.counts.domains, health.counts.mailboxes, health.counts.aliases
            ),
        };
        match &spinner {
            Some(spinner) => spinner.set_message(message),
            None => tracing::debug!("{message}"),
        }
    }
}

/// On first run — no admin token in the store — creates one and writes its
/// bearer to `<data_dir>/admin-token` (0600). Returns the file and bearer.
async fn ensure_admin_token(context: &Context) -> anyhow::Result<Option<(PathBuf, String)>> {
    let tokens = cmd::list(context, DocKind::Token, None).await?;
    let has_admin = tokens
        .iter()
        .any(|entry| matches!(&entry.doc, Document::Token(token) if token.principal == TokenPrincipal::Admin));
    if has_admin {
        return Ok(None);
    }
    let path = context.config.data_dir.join(ADMIN_TOKEN_FILE);
    // Write the file before the token exists: a token nobody can read is
    // worse than a file that names no valid token.
    let (token, bearer) = cmd::token::prepare_token(TokenPrincipal::Admin, "first admin (couchmail up)");
    write_secret_file(&path, &bearer)?;
    cmd::token::store_token(context, &token).await?;
    tracing::info!(token = %token.id, file = %path.display(), "created the first admin token");
    Ok(Some((path, bearer)))
}

/// Writes `secret` to `path`, readable by its owner only.
fn write_secret_file(path: &Path, secret: &str) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // An older file keeps its mode on open: tighten it in any case.
    file.set_permissions(Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {} to mode 0600", path.display()))?;
    writeln!(file, "{secret}").with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The public ports with what each asks of a client.
fn port_summaries(stack: &Stack) -> Vec<PortSummary> {
    let host = match stack.listen {
        Listen::AllInterfaces => "*".to_owned(),
        Listen::Address(address) if address.is_ipv6() => format!("[{address}]"),
        Listen::Address(address) => address.to_string(),
    };
    let ports = &stack.ports;
    let smtp_security = match stack.postscreen {
        Some(_) => "postscreen, then STARTTLS offered, no AUTH: mail from other servers",
        None => "STARTTLS offered, no AUTH: mail from other servers",
    };
    [
        ("smtp", ports.smtp, smtp_security),
        ("submission", ports.submission, "STARTTLS required, then AUTH"),
        ("submissions", ports.submissions, "implicit TLS, then AUTH"),
        ("imaps", ports.imaps, "implicit TLS"),
    ]
    .into_iter()
    .map(|(service, port, security)| PortSummary { service, listen: format!("{host}:{port}"), security })
    .collect()
}

/// The host a mail client should use: the listen address when it is one,
/// else the server's name.
fn client_host(stack: &Stack) -> String {
    match stack.listen {
        Listen::Address(address) if address.is_ipv6() => format!("[{address}]"),
        Listen::Address(address) => address.to_string(),
        Listen::AllInterfaces => stack.hostname.clone(),
    }
}

/// How to call this very binary from a shell: `couchmail` when that is what
/// `PATH` finds, else its full path (after `cargo xtask run`, the binary sits
/// in cargo's target directory).
fn program_name() -> String {
    let Ok(exe) = std::env::current_exe() else { return "couchmail".to_owned() };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| std::fs::canonicalize(dir.join("couchmail")).is_ok_and(|p| p == exe))
    });
    if on_path { "couchmail".to_owned() } else { exe.display().to_string() }
}

/// `couchmail` with the options that make the CLI use the same store as this `up`.
fn cli_prefix(program: &str, config: &Config) -> String {
    let mut prefix = program.to_owned();
    if let Some(file) = config.file.as_ref().filter(|file| file.as_path() != Path::new(DEFAULT_CONFIG_FILE)) {
        prefix.push_str(&format!(" --config {}", file.display()));
    }
    let default_store = StoreUrl::Sqlite(PathBuf::from("/var/lib/couchmail/couchmail.db"));
    if config.store != default_store {
        prefix.push_str(&format!(" --store {}", config.store));
    }
    prefix
}

fn print_summary(summary: &Summary, bearer: Option<&str>, json: bool) -> anyhow::Result<()> {
    if json {
        let line = serde_json::to_string(summary).context("cannot encode the summary")?;
        return output::text(&line);
    }
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if summary.daemons {
        for port in &summary.ports {
            pairs.push((port.service, format!("{}  ({})", port.listen, port.security)));
        }
    }
    pairs.push(("API", summary.api_url.clone()));
    // The web UI shares the API's listener (crates/web/src/ui).
    let ui_url = summary.api_url.strip_suffix("/api/v1").unwrap_or(summary.api_url.as_str());
    pairs.push(("web UI", format!("{ui_url}/ (log in with an admin mailbox; docs/web-ui.md)")));
    pairs.push(("auth endpoint", format!("{} (internal, for Dovecot)", summary.auth_endpoint)));
    if let Some(address) = &summary.managesieve {
        pairs.push(("ManageSieve", format!("{address} (STARTTLS, then AUTHENTICATE PLAIN)")));
    }
    let certificate = if summary.self_signed {
        format!(
            "{} (self-signed: mail clients will warn; set tls.cert and tls.key for a real one)",
            summary.tls_certificate
        )
    } else {
        summary.tls_certificate.clone()
    };
    pairs.push(("TLS certificate", certificate));
    pairs.push(("store", summary.store.clone()));
    pairs.push(("data", summary.data_dir.clone()));
    pairs.push(("runtime", summary.runtime_dir.clone()));
    pairs.push(("index", format!("ready in {} ms", summary.index_ready_ms)));
    let mut text = if summary.daemons {
        format!("couchmail is up: Postfix and Dovecot serve mail for {}\n\n", summary.hostname)
    } else {
        "couchmail is up without Postfix and Dovecot (mail.daemons = false); run them from `couchmail render`\n\n"
            .to_owned()
    };
    text.push_str(&output::fields(&pairs));
    if let (Some(file), Some(bearer)) = (&summary.admin_token_file, bearer) {
        text.push_str(&format!(
            "\nFirst run: created an admin token, written to {file} (mode 0600).\n\
             It is shown only this once:\n\n  {bearer}\n\n\
             Try it:\n\n  curl {}-H \"Authorization: Bearer $(cat {file})\" {}/whoami\n\n\
             More tokens: `couchmail token create --admin`.\n",
            // curl trusts a self-signed certificate only when told to.
            if summary.self_signed && summary.api_url.starts_with("https:") {
                format!("--cacert {} ", summary.tls_certificate)
            } else {
                String::new()
            },
            summary.api_url
        ));
    }
    let cli = &summary.cli;
    text.push_str(&format!(
        "\nNext, in another terminal:\n\n  \
         {cli} domain add example.com\n  \
         {cli} mailbox add alice@example.com --name 'Alice'\n  \
         {cli} mailbox passwd alice@example.com\n"
    ));
    if summary.daemons {
        let port = |service: &str| {
            summary
                .ports
                .iter()
                .find(|port| port.service == service)
                .map_or(String::new(), |port| port.listen.rsplit(':').next().unwrap_or_default().to_owned())
        };
        let host = &summary.client_host;
        text.push_str(&format!(
            "\nMail client (user name: the full address, password: as set with `mailbox passwd`):\n\n  \
             IMAP  {host} port {}, SSL/TLS\n  \
             SMTP  {host} port {}, STARTTLS (or port {}, SSL/TLS)\n",
            port("imaps"),
            port("submission"),
            port("submissions")
        ));
        if let Some(address) = &summary.managesieve {
            let port = address.rsplit(':').next().unwrap_or_default();
            text.push_str(&format!("  Sieve {host} port {port}, STARTTLS (ManageSieve)\n"));
        }
    }
    text.push_str("\nStop with Ctrl-C.\n");
    output::text(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_file_is_owner_only_even_if_it_existed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ADMIN_TOKEN_FILE);
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        write_secret_file(&path, "cmt_x").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "cmt_x\n");
    }

    #[test]
    fn summary_ports_and_client_host() {
        let mut stack = Stack::dev("/srv/cm");
        stack.hostname = "localhost".into();
        let ports = port_summaries(&stack);
        assert_eq!(
            ports.iter().map(|port| port.listen.as_str()).collect::<Vec<_>>(),
            ["127.0.0.1:2525", "127.0.0.1:2587", "127.0.0.1:4465", "127.0.0.1:9993"]
        );
        assert_eq!(client_host(&stack), "127.0.0.1");
        let mut production = Stack::production();
        production.hostname = "mail.example.com".into();
        assert_eq!(port_summaries(&production)[0].listen, "*:25");
        assert_eq!(client_host(&production), "mail.example.com");
    }

    #[tokio::test]
    async fn a_signal_between_steps_is_noticed_without_waiting() {
        let mut signals = Signals::new().unwrap();
        assert_eq!(signals.pending().await, None);
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            if let Some(signal) = signals.pending().await {
                assert_eq!(signal, "SIGTERM");
                break;
            }
            assert!(Instant::now() < deadline, "SIGTERM was not noticed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn api_url_has_the_scheme_and_a_host_to_connect_to() {
        let url = |address: &str, https| api_url(address.parse().unwrap(), https, "mail.example.com");
        assert_eq!(url("127.0.0.1:8080", false), "http://127.0.0.1:8080/api/v1");
        assert_eq!(url("127.0.0.1:8080", true), "https://127.0.0.1:8080/api/v1");
        assert_eq!(url("[::1]:8080", false), "http://[::1]:8080/api/v1");
        assert_eq!(url("0.0.0.0:8443", true), "https://mail.example.com:8443/api/v1");
        assert_eq!(url("[::]:443", true), "https://mail.example.com:443/api/v1");
        assert_eq!(url("192.0.2.7:443", true), "https://192.0.2.7:443/api/v1");
    }

    #[test]
    fn cli_prefix_names_a_store_the_cli_would_not_find() {
        let production = Config::load(crate::config::Sources::default()).unwrap();
        assert_eq!(cli_prefix("couchmail", &production), "couchmail");
        let mut dev = Config::load(crate::config::Sources { dev: true, ..Default::default() }).unwrap();
        dev.store = StoreUrl::Sqlite(PathBuf::from("/home/a/.couchmail-dev/couchmail.db"));
        dev.file = Some(PathBuf::from("/tmp/cm.toml"));
        assert_eq!(
            cli_prefix("/opt/bin/couchmail", &dev),
            "/opt/bin/couchmail --config /tmp/cm.toml --store sqlite:/home/a/.couchmail-dev/couchmail.db"
        );
    }
}
