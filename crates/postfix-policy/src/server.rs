//! The server: a [`Listener`] accepts connections under a limit, and a task per connection reads requests and
//! writes actions until the peer leaves, idles out, breaks the protocol, or the server shuts down.
//!
//! Shutdown: when the `shutdown` future given to [`run`] completes, the listener stops accepting (a unix socket
//! file is removed), idle connections are closed, requests already received are decided and answered, and [`run`]
//! returns once every connection is closed.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use couchmail_wire_server::Peer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tracing::{debug, error, info, warn};

use crate::action::Action;
use crate::attributes::Limits;
use crate::connection::{Connection, Timeouts};
use crate::error::{Error, ErrorKind};
use crate::handler::{Decision, PolicyHandler, UNAVAILABLE_TEXT, decide_guarded};
use crate::request::PolicyRequest;

/// Limits and timeouts of a server; [`Default`] gives values suited to a busy Postfix.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How many connections are served at once.
    ///
    /// Each smtpd process keeps one connection per policy service, so Postfix's `default_process_limit` (100)
    /// bounds what it needs. Over the limit, new connections wait unaccepted in the kernel's listen queue until
    /// one ends, rather than being refused, which Postfix would turn into deferred mail.
    pub max_connections: usize,
    /// Bounds on one request.
    pub limits: Limits,
    /// How long a connection may sit between requests before it is closed, silently.
    ///
    /// Postfix closes its own idle policy connections after `smtpd_policy_service_max_idle` (300 s); waiting a
    /// little longer means Postfix, not us, normally closes them, so it never writes to a connection we just shut.
    pub idle_timeout: Duration,
    /// How long the rest of a request may take once its first byte is in, and how long writing a reply may take.
    pub request_timeout: Duration,
    /// How long the [`PolicyHandler`] may take to decide before the request is answered
    /// `defer_if_permit Service temporarily unavailable`; well under Postfix's own 100 s
    /// `smtpd_policy_service_timeout`, so a stuck decision defers one recipient instead of stalling the session.
    pub decision_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_connections: 1024,
            limits: Limits::default(),
            idle_timeout: Duration::from_secs(330),
            request_timeout: Duration::from_secs(10),
            decision_timeout: Duration::from_secs(20),
        }
    }
}

/// What a server did, returned by [`run`] when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections accepted.
    pub n_connections: u64,
    /// Requests answered, whatever the action.
    pub n_requests: u64,
    /// Connections closed because the peer sent something that is not a policy request within the limits.
    pub n_malformed: u64,
    /// Decisions that panicked (each also closed its connection).
    pub n_panics: u64,
    /// Decisions that ran out of time.
    pub n_decision_timeouts: u64,
}

#[derive(Default)]
struct Counters {
    n_connections: AtomicU64,
    n_requests: AtomicU64,
    n_malformed: AtomicU64,
    n_panics: AtomicU64,
    n_decision_timeouts: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ServerStats {
        ServerStats {
            n_connections: self.n_connections.load(Ordering::Relaxed),
            n_requests: self.n_requests.load(Ordering::Relaxed),
            n_malformed: self.n_malformed.load(Ordering::Relaxed),
            n_panics: self.n_panics.load(Ordering::Relaxed),
            n_decision_timeouts: self.n_decision_timeouts.load(Ordering::Relaxed),
        }
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A listening socket: a unix socket (the normal case, `check_policy_service unix:...`) or TCP (for tests, and for
/// a Postfix on another machine: `check_policy_service inet:host:port`).
pub struct Listener {
    inner: couchmail_wire_server::Listener,
}

/// What listeners are called in logs and errors.
const LABEL: &str = "policy";

impl Listener {
    /// Binds a unix socket at `path` with permission bits `mode` (such as `0o660`, for the owner and the group
    /// Postfix runs in).
    ///
    /// The socket is bound under a temporary name beside `path`, given its mode, then renamed onto `path`, so it is
    /// never reachable with the wrong mode and a stale socket left by a crash is replaced atomically.
    /// A live socket (one that accepts a connection) is not replaced: that is [`ErrorKind::AddressInUse`].
    /// Anything at `path` that is not a socket is left alone, and is an error.
    /// The socket file is removed when the listener is dropped, unless another server has replaced it meanwhile.
    pub async fn bind_unix(path: impl AsRef<Path>, mode: u32) -> Result<Listener, Error> {
        let inner = couchmail_wire_server::Listener::bind_unix(path, mode, LABEL).await?;
        Ok(Listener { inner })
    }

    /// Binds a TCP socket. The policy protocol has no authentication: keep the address private.
    pub async fn bind_tcp(address: SocketAddr) -> Result<Listener, Error> {
        let inner = couchmail_wire_server::Listener::bind_tcp(address, LABEL).await?;
        Ok(Listener { inner })
    }

    /// Serves on a unix listener bound elsewhere (for instance handed over by a supervisor); its socket file is the
    /// caller's to remove.
    pub fn from_unix(listener: UnixListener) -> Listener {
        Listener { inner: couchmail_wire_server::Listener::from_unix(listener, LABEL) }
    }

    /// Serves on a TCP listener bound elsewhere.
    pub fn from_tcp(listener: TcpListener) -> Listener {
        Listener { inner: couchmail_wire_server::Listener::from_tcp(listener, LABEL) }
    }

    /// The TCP address this listener is bound to, useful after binding port 0; `None` for a unix socket.
    pub fn tcp_address(&self) -> Option<SocketAddr> {
        self.inner.tcp_address()
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// What every connection task shares.
struct Shared<H> {
    handler: Arc<H>,
    config: ServerConfig,
    counters: Counters,
}

/// Serves policy requests on `listener`, deciding each with `handler`, until `shutdown` completes.
///
/// Many requests are served per connection, in order, pipelined or not.
/// A connection is closed, without a reply to what is pending, when the peer leaves, when it stays idle for
/// [`ServerConfig::idle_timeout`], when a request takes longer than [`ServerConfig::request_timeout`] to arrive, or
/// when it sends something that is not a policy request within [`ServerConfig::limits`] (a protocol error, logged
/// with the peer); earlier requests on it are still answered. After a handler panic the connection gets
/// `defer_if_permit Service temporarily unavailable` and is closed too. Other connections are never affected.
/// Accept errors (such as running out of file descriptors) are logged and retried after a pause.
/// Returns, after a graceful shutdown, what the server did.
pub async fn run<H: PolicyHandler>(
    listener: Listener,
    handler: Arc<H>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> ServerStats {
    let max_connections = config.max_connections;
    let shared = Arc::new(Shared { handler, config, counters: Counters::default() });
    let shown = listener.to_string();
    couchmail_wire_server::accept_loop(listener.inner, max_connections, shutdown, |stream, context| {
        serve(stream, context.peer, shared.clone(), context.shutdown, context.permit)
    })
    .await;
    let stats = shared.counters.snapshot();
    info!(
        listener = %shown,
        n_connections = stats.n_connections,
        n_requests = stats.n_requests,
        n_malformed = stats.n_malformed,
        n_panics = stats.n_panics,
        n_decision_timeouts = stats.n_decision_timeouts,
        "policy server stopped"
    );
    stats
}

/// The per-connection loop.
async fn serve<S, H>(
    stream: S,
    peer: Peer,
    shared: Arc<Shared<H>>,
    mut shutdown: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    H: PolicyHandler,
{
    let counters = &shared.counters;
    Counters::count(&counters.n_connections);
    debug!(%peer, "policy connection opened");
    let config = &shared.config;
    let timeouts = Timeouts { idle: Some(config.idle_timeout), list: config.request_timeout };
    let mut connection = Connection::new(stream, config.limits, timeouts);
    let mut stopping = *shutdown.borrow();
    loop {
        // Once stopping, requests already under way are still read and answered; an idle connection just closes.
        if stopping && !connection.has_buffered_input() {
            break;
        }
        let read = if stopping {
            connection.read_attributes().await
        } else {
            tokio::select! {
                read = connection.read_attributes() => read,
                _ = shutdown.changed() => {
                    stopping = true;
                    continue;
                }
            }
        };
        let attributes = match read {
            Ok(Some(attributes)) => attributes,
            Ok(None) => {
                debug!(%peer, "policy peer closed the connection");
                break;
            }
            Err(error) => {
                report_read_error(&peer, &error, counters);
                break;
            }
        };
        let request = match PolicyRequest::from_attributes(attributes) {
            Ok(request) => request,
            Err(error) => {
                Counters::count(&counters.n_malformed);
                info!(%peer, %error, "policy peer sent an attribute list that is not a policy request; closing");
                break;
            }
        };
        let decision = decide_guarded(shared.handler.as_ref(), &request, config.decision_timeout).await;
        Counters::count(&counters.n_requests);
        match decision {
            Decision::Decided(action) => {
                debug!(%peer, %request, %action, "policy decision");
                action.encode(connection.output());
            }
            Decision::TimedOut => {
                Counters::count(&counters.n_decision_timeouts);
                warn!(%peer, %request, timeout = ?config.decision_timeout, "policy decision timed out; deferring");
                Action::DeferIfPermit(UNAVAILABLE_TEXT.to_owned()).encode(connection.output());
            }
            Decision::Panicked(message) => {
                Counters::count(&counters.n_panics);
                error!(%peer, %request, panic = %message, "policy decision panicked; deferring and closing");
                Action::DeferIfPermit(UNAVAILABLE_TEXT.to_owned()).encode(connection.output());
                // The handler's state may be inconsistent for this peer's session; Postfix reconnects.
                break;
            }
        }
    }
    // Replies to requests decided before the loop ended are still owed; a peer that is gone just makes this fail.
    if let Err(error) = connection.flush().await {
        debug!(%peer, %error, "policy connection closed before its replies were written");
    }
}

fn report_read_error(peer: &Peer, error: &Error, counters: &Counters) {
    match error.kind() {
        ErrorKind::IdleTimeout => debug!(%peer, "policy connection idle; closing"),
        ErrorKind::Syntax(_) => {
            Counters::count(&counters.n_malformed);
            info!(%peer, %error, "policy peer broke the protocol; closing");
        }
        ErrorKind::Timeout | ErrorKind::UnexpectedEof => info!(%peer, %error, "policy connection dropped"),
        _ => debug!(%peer, %error, "policy connection failed"),
    }
}
