//! The server: a [`Listener`] accepts connections under a limit, and a handler per connection reads requests and
//! writes replies until the peer leaves, idles out, breaks the protocol, or the server shuts down.
//!
//! Shutdown: when the `shutdown` future given to [`run`] completes, the listener stops accepting (a unix socket
//! file is removed), idle connections are closed, requests already received are answered and flushed, and [`run`]
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
use tracing::{debug, info};

use crate::connection::{Connection, Timeouts};
use crate::error::{Error, ErrorKind};
use crate::frame::DEFAULT_MAX_REQUEST_LEN;
use crate::reply::Reply;
use crate::request::{Lookup, Request};

/// Limits and timeouts of a server; [`Default`] gives values suited to a busy Postfix.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How many connections are served at once.
    ///
    /// Over the limit, new connections are not closed: they wait, unaccepted, in the kernel's listen queue until a
    /// connection ends (Postfix's client waits up to 100 seconds for a reply, and closes its own idle connections
    /// after 10, so slots free up quickly).
    /// Closing them instead would turn a burst into lookup errors, and so into deferred mail.
    pub max_connections: usize,
    /// The largest request payload accepted; a longer one closes the connection.
    pub max_request_len: usize,
    /// How long a connection may sit between requests before it is closed, silently.
    pub idle_timeout: Duration,
    /// How long the rest of a request may take once its first byte is in, and how long writing a reply may take.
    pub request_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_connections: 1024,
            max_request_len: DEFAULT_MAX_REQUEST_LEN,
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// What a server did, returned by [`run`] when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections accepted.
    pub n_connections: u64,
    /// Requests answered, whatever the reply.
    pub n_requests: u64,
    /// Connections closed because the peer broke the framing or sent an over-long request.
    pub n_malformed: u64,
}

#[derive(Default)]
struct Counters {
    n_connections: AtomicU64,
    n_requests: AtomicU64,
    n_malformed: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ServerStats {
        ServerStats {
            n_connections: self.n_connections.load(Ordering::Relaxed),
            n_requests: self.n_requests.load(Ordering::Relaxed),
            n_malformed: self.n_malformed.load(Ordering::Relaxed),
        }
    }
}

/// A listening socket: a unix socket (the normal case, reached by Postfix on the same machine) or TCP (only when
/// configured, for a Postfix on another machine).
pub struct Listener {
    inner: couchmail_wire_server::Listener,
}

/// What listeners are called in logs and errors.
const LABEL: &str = "socketmap";

impl Listener {
    /// Binds a unix socket at `path` with permission bits `mode` (such as `0o660`, for the owner and the group
    /// Postfix runs in).
    ///
    /// The socket is bound under a temporary name beside `path`, given its mode, and then renamed onto `path`, so
    /// it is never reachable with the wrong mode and a stale socket left by a crash is replaced atomically.
    /// A live socket (one where a connection is accepted) is not replaced: that is [`ErrorKind::AddressInUse`].
    /// Anything at `path` that is not a socket is left alone, and is an error.
    /// The socket file is removed when the listener is dropped, unless another server has replaced it meanwhile.
    pub async fn bind_unix(path: impl AsRef<Path>, mode: u32) -> Result<Listener, Error> {
        let inner = couchmail_wire_server::Listener::bind_unix(path, mode, LABEL).await?;
        Ok(Listener { inner })
    }

    /// Binds a TCP socket; use this only when Postfix runs on another machine, and keep the address private
    /// (socketmap has no authentication).
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

/// What every connection handler shares.
struct Shared {
    lookup: Arc<dyn Lookup>,
    config: ServerConfig,
    counters: Counters,
}

/// Serves socketmap requests on `listener`, answering each with `lookup`, until `shutdown` completes.
///
/// Many requests are served per connection, pipelined or not.
/// A connection is closed when the peer leaves, when it stays idle for [`ServerConfig::idle_timeout`], when a
/// request takes longer than [`ServerConfig::request_timeout`] to arrive, or when its framing is broken or a request
/// is longer than [`ServerConfig::max_request_len`]: netstrings cannot be resynchronised, so the server logs the
/// peer, answers nothing more on that connection, and goes on serving the others.
/// Accept errors (such as running out of file descriptors) are logged and retried after a pause; they never end the
/// server.
/// Returns, after a graceful shutdown, what the server did.
pub async fn run(
    listener: Listener,
    lookup: Arc<dyn Lookup>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> ServerStats {
    let max_connections = config.max_connections;
    let shared = Arc::new(Shared { lookup, config, counters: Counters::default() });
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
        "socketmap server stopped"
    );
    stats
}

/// The per-connection loop.
async fn serve<S>(
    stream: S,
    peer: Peer,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    shared.counters.n_connections.fetch_add(1, Ordering::Relaxed);
    debug!(%peer, "socketmap connection opened");
    let timeouts = Timeouts { idle: Some(shared.config.idle_timeout), frame: shared.config.request_timeout };
    let mut connection = Connection::new(stream, shared.config.max_request_len, timeouts);
    let mut stopping = *shutdown.borrow();
    loop {
        // Once stopping, requests already under way are still read and answered; an idle connection just closes.
        if stopping && !connection.has_buffered_input() {
            break;
        }
        let read = if stopping {
            connection.read_frame().await
        } else {
            tokio::select! {
                read = connection.read_frame() => read,
                _ = shutdown.changed() => {
                    stopping = true;
                    continue;
                }
            }
        };
        let payload = match read {
            Ok(Some(payload)) => payload,
            Ok(None) => {
                debug!(%peer, "socketmap peer closed the connection");
                break;
            }
            Err(error) => {
                report_read_error(&peer, &error, &shared.counters);
                break;
            }
        };
        let reply = match Request::parse(&payload) {
            Ok(request) => request.answer(shared.lookup.as_ref()),
            Err(error) => {
                info!(%peer, %error, "malformed socketmap request");
                Reply::perm(error.to_string())
            }
        };
        reply.encode(connection.output());
        shared.counters.n_requests.fetch_add(1, Ordering::Relaxed);
    }
    // Replies to requests read before the loop ended are still owed; a peer that is gone just makes this fail.
    if let Err(error) = connection.flush().await {
        debug!(%peer, %error, "socketmap connection closed before its replies were written");
    }
}

fn report_read_error(peer: &Peer, error: &Error, counters: &Counters) {
    match error.kind() {
        ErrorKind::IdleTimeout => debug!(%peer, "socketmap connection idle; closing"),
        ErrorKind::Frame(_) => {
            counters.n_malformed.fetch_add(1, Ordering::Relaxed);
            info!(%peer, %error, "socketmap peer broke the framing; closing");
        }
        ErrorKind::Timeout | ErrorKind::UnexpectedEof => info!(%peer, %error, "socketmap connection dropped"),
        _ => debug!(%peer, %error, "socketmap connection failed"),
    }
}
