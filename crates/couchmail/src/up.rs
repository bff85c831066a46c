//! `couchmail up`: run couchmail — the store, the live index and the REST
//! API — until SIGINT or SIGTERM.
//!
//! Start-up order: directories, store, index follower, API listener, then
//! wait for the index's first snapshot (a spinner on a terminal), make the
//! first admin token on first run, and print a summary.
//! Every server task gets the same shutdown signal and is awaited, so that
//! a stop leaves nothing running and nothing half written.
//!
//! Issue #3 extends this module with rendering the Postfix and Dovecot
//! configuration, the socketmap/dict/auth servers and the supervisor: each
//! is one more step in [`run`] and one more task in [`Services`].
//!
//! Files (docs/runtime.md): the data directory (0750), the SQLite store in it
//! (0600), `<data_dir>/admin-token` (0600, first run only) and the runtime
//! directory (0755).

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use couchmail_directory::Directory;
use couchmail_index::Index;
use couchmail_model::{DocKind, Document, TokenPrincipal};
use couchmail_store::{SqliteStore, Store};
use couchmail_web::ApiState;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cmd::{self, Context};
use crate::config::{Config, StoreUrl};
use crate::exit::{Exit, Failure};
use crate::output;

/// The name of the first admin token's file in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// How long the servers get to finish after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
}

/// Runs couchmail until a stop signal; returns after a clean shutdown.
pub async fn run(mut config: Config, json: bool) -> anyhow::Result<()> {
    config.data_dir = absolute(&config.data_dir)?;
    config.runtime_dir = absolute(&config.runtime_dir)?;
    let StoreUrl::Sqlite(store_path) = &config.store;
    config.store = StoreUrl::Sqlite(absolute(store_path)?);
    make_dir(&config.data_dir, 0o750)?;
    make_dir(&config.runtime_dir, 0o755)?;
    let store = open_store(&config).await?;
    let directory = Directory::new(store.clone());
    let index = Arc::new(Index::default());

    let (stop, _) = watch::channel(false);
    let mut services = Services::default();
    services.spawn("index follower", {
        let (store, index, stopped) = (store.clone(), index.clone(), stopped(&stop));
        async move {
            couchmail_index::follow(store, index, stopped).await;
            Ok(())
        }
    });
    let listener = bind(config.api_listen).await?;
    let api_addr = listener.local_addr().context("cannot read the API listener's address")?;
    services.spawn("REST API", {
        let state = ApiState { directory: directory.clone(), index: index.clone() };
        let stopped = stopped(&stop);
        async move { couchmail_web::serve(listener, state, stopped).await.context("the REST API failed") }
    });

    let mut signals = Signals::new()?;
    let started = Instant::now();
    let ready = tokio::select! {
        ready = wait_for_index(&index) => ready,
        signal = signals.recv() => {
            tracing::info!(signal, "stopping before the index was ready");
            return services.stop(&stop).await;
        }
    };
    debug_assert!(ready);
    let index_ready_ms = started.elapsed().as_millis().try_into().unwrap_or(u64::MAX);

    let context = Context { directory, json, config: config.clone() };
    let first_admin = match ensure_admin_token(&context).await {
        Ok(first_admin) => first_admin,
        Err(err) => {
            services.stop(&stop).await?;
            return Err(err);
        }
    };
    let summary = Summary {
        api_url: format!("http://{api_addr}/api/v1"),
        store: config.store.to_string(),
        data_dir: config.data_dir.display().to_string(),
        runtime_dir: config.runtime_dir.display().to_string(),
        index_ready_ms,
        admin_token_file: first_admin.as_ref().map(|(path, _)| path.display().to_string()),
    };
    print_summary(&summary, first_admin.as_ref().map(|(_, bearer)| bearer.as_str()), json)?;

    tokio::select! {
        signal = signals.recv() => tracing::info!(signal, "stopping"),
        failed = services.first_failure() => {
            let err = failed.context("a server stopped unexpectedly");
            services.stop(&stop).await?;
            return Err(err);
        }
    }
    services.stop(&stop).await
}

/// The server tasks, stopped together.
#[derive(Default)]
struct Services {
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
}

impl Services {
    fn spawn(&mut self, name: &'static str, task: impl Future<Output = anyhow::Result<()>> + Send + 'static) {
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
    async fn stop(mut self, stop: &watch::Sender<bool>) -> anyhow::Result<()> {
        stop.send_replace(true);
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

/// A future that completes when `stop` turns true.
fn stopped(stop: &watch::Sender<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut receiver = stop.subscribe();
    async move {
        // An error means the sender is gone, which is a stop too.
        let _ = receiver.wait_for(|stopping| *stopping).await;
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

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot make {} absolute", path.display()))
}

/// Creates `path` (and its parents) with `mode` if it does not exist.
fn make_dir(path: &Path, mode: u32) -> anyhow::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    DirBuilder::new().recursive(true).mode(mode).create(path).map_err(|err| {
        Failure::new(Exit::Other, format!("cannot create directory {}: {err}", path.display()))
            .hint("run as a user who may create it (root for /var/lib and /run), or try `couchmail up --dev`")
            .into()
    })
}

async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let StoreUrl::Sqlite(path) = &config.store;
    if let Some(parent) = path.parent() {
        make_dir(parent, 0o750)?;
    }
    // Create the file with mode 0600 before SQLite does (it would use the
    // umask): the store holds password hashes. SQLite gives its -wal and
    // -shm files the same mode.
    if !path.exists() {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create the store file {}", path.display()))?;
    }
    let store = SqliteStore::open(path).await.with_context(|| format!("cannot open store {}", config.store))?;
    tracing::info!(store = store.describe(), "store open");
    Ok(Arc::new(store))
}

async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|err| {
        Failure::new(Exit::Other, format!("cannot listen on {addr} for the REST API: {err}"))
            .hint("stop what uses that port, or choose another with `--listen 127.0.0.1:PORT` (api.listen, COUCHMAIL_API_LISTEN)")
            .into()
    })
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

fn print_summary(summary: &Summary, bearer: Option<&str>, json: bool) -> anyhow::Result<()> {
    if json {
        let line = serde_json::to_string(summary).context("cannot encode the summary")?;
        return output::text(&line);
    }
    let mut text = output::fields(&[
        ("API", summary.api_url.clone()),
        ("store", summary.store.clone()),
        ("data", summary.data_dir.clone()),
        ("runtime", summary.runtime_dir.clone()),
        ("index", format!("ready in {} ms", summary.index_ready_ms)),
    ]);
    text.insert_str(0, "couchmail is up\n");
    if let (Some(file), Some(bearer)) = (&summary.admin_token_file, bearer) {
        text.push_str(&format!(
            "\nFirst run: created an admin token, written to {file} (mode 0600).\n\
             It is shown only this once:\n\n  {bearer}\n\n\
             Try it:\n\n  curl -H \"Authorization: Bearer $(cat {file})\" {}/whoami\n\n\
             More tokens: `couchmail token create --admin`.\n",
            summary.api_url
        ));
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
    fn make_dir_creates_parents_with_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b");
        make_dir(&path, 0o750).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o750);
        make_dir(&path, 0o700).unwrap();
    }
}
