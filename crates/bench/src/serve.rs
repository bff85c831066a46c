//! `couchmail-bench serve`: couchmail's lookup servers over a synthetic index, in a process of their own.
//!
//! The index is built from documents in hand (`Snapshot::from_documents`), not followed from a store: what the
//! lookup benchmarks measure is the answering, and #2's benchmark measures the building.
//! The socketmap answers through `couchmail_lookup::Maps` and the Dovecot auth endpoint through
//! `couchmail_lookup::Accounts`, the adapters `couchmail up` serves.
//! Once both listen, one JSON line goes to stdout (the endpoint's address, the build time, the resident memory);
//! the process stops when its stdin closes, so it never outlives the driver.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use couchmail_index::{Index, Snapshot};
use couchmail_lookup::{Accounts, MailLayout, Maps};
use couchmail_model::PasswordHash;
use couchmail_socketmap::{Listener, ServerConfig};
use serde_json::json;
use tokio::sync::watch;

use crate::population::Population;

#[derive(Debug, clap::Args)]
pub struct Options {
    /// How many mailboxes the index holds.
    #[arg(long)]
    mailboxes: usize,
    /// A file holding the `{ARGON2ID}…` hash every mailbox carries.
    #[arg(long)]
    hash_file: PathBuf,
    /// Where the socketmap listens (a unix socket, mode 0666).
    #[arg(long)]
    socketmap: PathBuf,
    /// Where the Dovecot auth endpoint listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    auth_listen: SocketAddr,
    /// A file holding the endpoint's bearer secret.
    #[arg(long)]
    secret_file: PathBuf,
    /// The directory homes are reported under.
    #[arg(long, default_value = "/var/tmp/couchmail-bench-mail")]
    mail_root: PathBuf,
}

pub fn main(options: &Options) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("start the tokio runtime")?;
    runtime.block_on(serve(options))
}

async fn serve(options: &Options) -> Result<()> {
    let hash_text = std::fs::read_to_string(&options.hash_file)
        .with_context(|| format!("read the hash from {}", options.hash_file.display()))?;
    let hash = PasswordHash::parse(hash_text.trim()).context("the hash file holds no valid hash")?;
    let secret = std::fs::read_to_string(&options.secret_file)
        .with_context(|| format!("read the secret from {}", options.secret_file.display()))?;
    let secret = secret.trim().to_owned();

    let documents = Population::new(options.mailboxes).documents(&hash)?;
    let build_started = Instant::now();
    let index = Arc::new(Index::from_snapshot(Snapshot::from_documents(documents)));
    let build_elapsed = build_started.elapsed();
    let counts = index.snapshot().counts();
    anyhow::ensure!(
        counts.mailboxes == options.mailboxes && counts.invalid_documents == 0,
        "the index holds {counts:?}, expected {} mailboxes and nothing invalid",
        options.mailboxes
    );

    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };

    let socketmap_listener =
        Listener::bind_unix(&options.socketmap, 0o666).await.context("bind the socketmap socket")?;
    let maps = Arc::new(Maps::new(Arc::clone(&index)));
    let socketmap = tokio::spawn(couchmail_socketmap::run(
        socketmap_listener,
        maps,
        ServerConfig::default(),
        until_stopped(stopped.clone()),
    ));

    let auth_listener =
        tokio::net::TcpListener::bind(options.auth_listen).await.context("bind the Dovecot auth endpoint")?;
    let auth_address = auth_listener.local_addr().context("the auth endpoint's address")?;
    let layout = MailLayout { mail_root: options.mail_root.clone(), uid: 5000, gid: 5000 };
    let accounts = Arc::new(Accounts::new(Arc::clone(&index), layout));
    let auth = tokio::spawn({
        let secret = secret.clone();
        let stopped = stopped.clone();
        async move { couchmail_dovecot_auth::serve(auth_listener, accounts, &secret, until_stopped(stopped)).await }
    });

    let ready = json!({
        "pid": std::process::id(),
        "auth_address": auth_address.to_string(),
        "mailboxes": counts.mailboxes,
        "domains": counts.domains,
        "build_ms": build_elapsed.as_secs_f64() * 1000.0,
        "rss_kib": resident_kib().unwrap_or(0),
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{ready}").context("write the ready line")?;
    stdout.flush().context("flush the ready line")?;
    drop(stdout);

    // Reading stdin blocks, so it gets a thread of its own; its end (the driver closing the pipe, or exiting) is
    // the signal to stop.
    let (stdin_closed_sender, stdin_closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        let _ = stdin_closed_sender.send(());
    });
    let _ = stdin_closed.await;
    let _ = stop.send(true);
    let stats = socketmap.await.context("the socketmap server panicked")?;
    auth.await.context("the auth endpoint panicked")?.context("the auth endpoint failed")?;
    eprintln!("couchmail-bench serve: {} socketmap requests served", stats.n_requests);
    Ok(())
}

/// This process's resident memory in KiB, from /proc/self/status.
pub(crate) fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().ok()
}
