//! The listener side: [`ServerConfig`], the shared [`AuthThrottle`], and [`run`], which accepts connections under a
//! limit (couchmail-wire-server's accept loop) and runs a session for each.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use couchmail_wire_server::{Listener, Peer, accept_loop};
use tokio::time::Instant;

use crate::backend::Backend;
use crate::frame::{DEFAULT_MAX_LINE_LEN, DEFAULT_MAX_LITERAL_LEN};
use crate::session::serve_connection;

/// The extensions Pigeonhole 0.5 enables by default (its `sieve_extensions`), which the rendered Dovecot
/// configuration leaves as they are; each was checked to compile with Debian 12's `sievec`.
pub const PIGEONHOLE_EXTENSIONS: &[&str] = &[
    "fileinto",
    "reject",
    "envelope",
    "encoded-character",
    "vacation",
    "subaddress",
    "comparator-i;ascii-numeric",
    "relational",
    "regex",
    "imap4flags",
    "copy",
    "include",
    "variables",
    "body",
    "enotify",
    "environment",
    "mailbox",
    "date",
    "index",
    "ihave",
    "duplicate",
    "mime",
    "foreverypart",
    "extracttext",
];

/// Limits, timeouts and capabilities of a server; [`Default`] gives production values.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How many connections are served at once; more wait in the kernel's listen queue.
    pub max_connections: usize,
    /// How long a connection may sit between commands before it is closed with `BYE`.
    pub idle_timeout: Duration,
    /// How long the rest of a command may take once its first byte is in (a literal included), and how long
    /// writing a reply or the TLS handshake may take.
    pub command_timeout: Duration,
    /// The longest command line, literal octets not counted.
    pub max_line_len: usize,
    /// The largest script, in octets (`QUOTA/MAXSIZE` above it); also the largest literal read.
    pub max_script_bytes: usize,
    /// The most scripts one user may have (`QUOTA/MAXSCRIPTS` above it).
    pub max_scripts: usize,
    /// The `IMPLEMENTATION` capability.
    pub implementation: String,
    /// The `SIEVE` capability: the extensions scripts may require.
    pub sieve_extensions: Vec<String>,
    /// The `MAXREDIRECTS` capability: how many `redirect`s a script may run (Pigeonhole's `sieve_max_redirects`).
    pub max_redirects: Option<u32>,
    /// How long a failed authentication waits before its `NO`, so that guessing is slow.
    pub auth_failure_delay: Duration,
    /// Failed authentications after which a connection is closed.
    pub max_auth_failures_per_connection: u32,
    /// Failed authentications from one address within [`ServerConfig::auth_failure_window`] after which every
    /// further attempt from it is refused with `TRYLATER` until the window has passed.
    pub max_auth_failures_per_address: u32,
    /// The window of [`ServerConfig::max_auth_failures_per_address`].
    pub auth_failure_window: Duration,
    /// Commands refused in a row after which a connection is closed.
    pub max_bad_commands: u32,
    /// Whether `AUTHENTICATE` is allowed without TLS (tests only: the password would cross the network in clear).
    pub allow_plaintext_auth: bool,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_connections: 256,
            idle_timeout: Duration::from_secs(30 * 60),
            command_timeout: Duration::from_secs(60),
            max_line_len: DEFAULT_MAX_LINE_LEN,
            max_script_bytes: DEFAULT_MAX_LITERAL_LEN,
            max_scripts: 32,
            implementation: "CouchMail ManageSieve".to_owned(),
            sieve_extensions: PIGEONHOLE_EXTENSIONS.iter().map(|&extension| extension.to_owned()).collect(),
            max_redirects: Some(4),
            auth_failure_delay: Duration::from_secs(2),
            max_auth_failures_per_connection: 3,
            max_auth_failures_per_address: 10,
            auth_failure_window: Duration::from_secs(10 * 60),
            max_bad_commands: 20,
            allow_plaintext_auth: false,
        }
    }
}

/// Failed authentications per client address, shared by every connection of a server.
#[derive(Debug)]
pub struct AuthThrottle {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// Addresses remembered at most; beyond it expired entries are purged, then the oldest.
const MAX_THROTTLED_ADDRESSES: usize = 10_000;

impl AuthThrottle {
    /// A throttle allowing `max_failures` within `window` per address.
    pub fn new(max_failures: u32, window: Duration) -> AuthThrottle {
        AuthThrottle { max_failures, window, failures: Mutex::new(HashMap::new()) }
    }

    /// Whether `address` may try to authenticate now.
    pub fn allows(&self, address: Option<IpAddr>) -> bool {
        let Some(address) = address else { return true };
        let failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match failures.get(&address) {
            Some(&(count, since)) => count < self.max_failures || since.elapsed() >= self.window,
            None => true,
        }
    }

    /// Records a failed authentication from `address`.
    pub fn record_failure(&self, address: Option<IpAddr>) {
        let Some(address) = address else { return };
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if failures.len() >= MAX_THROTTLED_ADDRESSES && !failures.contains_key(&address) {
            let window = self.window;
            failures.retain(|_, (_, since)| since.elapsed() < window);
            if failures.len() >= MAX_THROTTLED_ADDRESSES
                && let Some(oldest) = failures.iter().min_by_key(|(_, (_, since))| *since).map(|(key, _)| *key)
            {
                failures.remove(&oldest);
            }
        }
        let entry = failures.entry(address).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    /// Forgets the failures of `address` after a successful authentication.
    pub fn record_success(&self, address: Option<IpAddr>) {
        if let Some(address) = address {
            self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&address);
        }
    }
}

/// What every session of a server shares.
pub(crate) struct Shared<B> {
    pub(crate) backend: Arc<B>,
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(crate) config: ServerConfig,
    pub(crate) throttle: AuthThrottle,
}

/// Serves ManageSieve on `listener` until `shutdown` completes; then open sessions get `BYE (TRYLATER)` at their
/// next command or at once when idle, and `run` returns once every connection is closed.
///
/// With `tls` set, `STARTTLS` is offered and `AUTHENTICATE` needs it (unless
/// [`ServerConfig::allow_plaintext_auth`]); without it, authentication is refused unless plaintext is allowed.
pub async fn run<B: Backend>(
    listener: tokio::net::TcpListener,
    backend: Arc<B>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let throttle = AuthThrottle::new(config.max_auth_failures_per_address, config.auth_failure_window);
    let max_connections = config.max_connections;
    let shared = Arc::new(Shared { backend, tls, config, throttle });
    let listener = Listener::from_tcp(listener, "managesieve");
    accept_loop(listener, max_connections, shutdown, move |stream, context| {
        let shared = shared.clone();
        async move {
            let address = match &context.peer {
                Peer::Tcp(address) => Some(address.ip()),
                Peer::Unix { .. } => None,
            };
            serve_connection(shared, Box::new(stream), context.peer.to_string(), address, context.shutdown).await;
            drop(context.permit);
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_throttle_refuses_an_address_after_its_failures_until_the_window_passes() {
        let throttle = AuthThrottle::new(2, Duration::from_secs(60));
        let address: Option<IpAddr> = Some("192.0.2.1".parse().unwrap());
        let other: Option<IpAddr> = Some("192.0.2.2".parse().unwrap());
        throttle.record_failure(address);
        assert!(throttle.allows(address));
        throttle.record_failure(address);
        assert!(!throttle.allows(address));
        assert!(throttle.allows(other));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(throttle.allows(address));
        throttle.record_failure(address);
        assert!(throttle.allows(address), "an old window's failures do not count");
        throttle.record_success(address);
        throttle.record_failure(address);
        assert!(throttle.allows(address));
    }
}
