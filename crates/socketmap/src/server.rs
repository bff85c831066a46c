//! The server: a [`Listener`] accepts connections under a limit, and a handler per connection reads requests and
//! writes replies until the peer leaves, idles out, breaks the protocol, or the server shuts down.
//!
//! Shutdown: when the `shutdown` future given to [`run`] completes, the listener stops accepting (a unix socket
//! file is removed), idle connections are closed, requests already received are answered and flushed, and [`run`]
//! returns once every connection is closed.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

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
    inner: ListenerInner,
}

enum ListenerInner {
    Unix { listener: UnixListener, socket_file: Option<SocketFile> },
    Tcp(TcpListener),
}

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
        let path = path.as_ref();
        let shown = path.display();
        match std::fs::symlink_metadata(path) {
            Ok(metadata) if !metadata.file_type().is_socket() => {
                return Err(Error::io(
                    format!("binding socketmap socket {shown}"),
                    std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a file that is not a socket is in the way"),
                ));
            }
            Ok(_) => {
                // A bounded connect tells a live server from a stale file; a live one whose listen queue is full
                // still counts as live.
                match tokio::time::timeout(Duration::from_secs(1), UnixStream::connect(path)).await {
                    Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                        debug!(path = %shown, "replacing stale socketmap socket");
                    }
                    Ok(Err(error)) => {
                        return Err(Error::io(format!("checking existing socket {shown}"), error));
                    }
                    Ok(Ok(_)) | Err(_) => {
                        return Err(Error::new(
                            ErrorKind::AddressInUse,
                            format!("binding socketmap socket {shown}: another server is listening there"),
                        ));
                    }
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(Error::io(format!("inspecting {shown}"), error)),
        }

        let mut temporary_name = path.file_name().unwrap_or_default().to_os_string();
        temporary_name.push(format!(".{}.tmp", std::process::id()));
        let temporary_path = path.with_file_name(temporary_name);
        // A leftover from an earlier process with our pid would make bind fail; it is ours to remove.
        if std::fs::symlink_metadata(&temporary_path).is_ok_and(|metadata| metadata.file_type().is_socket()) {
            let _ = std::fs::remove_file(&temporary_path);
        }
        let listener = UnixListener::bind(&temporary_path)
            .map_err(|error| Error::io(format!("binding socketmap socket {}", temporary_path.display()), error))?;
        let finish = || -> std::io::Result<std::fs::Metadata> {
            std::fs::set_permissions(&temporary_path, std::fs::Permissions::from_mode(mode))?;
            std::fs::rename(&temporary_path, path)?;
            std::fs::symlink_metadata(path)
        };
        let metadata = finish().map_err(|error| {
            let _ = std::fs::remove_file(&temporary_path);
            Error::io(format!("installing socketmap socket {shown} with mode {mode:o}"), error)
        })?;
        let socket_file = SocketFile { path: path.to_path_buf(), device: metadata.dev(), inode: metadata.ino() };
        Ok(Listener { inner: ListenerInner::Unix { listener, socket_file: Some(socket_file) } })
    }

    /// Binds a TCP socket; use this only when Postfix runs on another machine, and keep the address private
    /// (socketmap has no authentication).
    pub async fn bind_tcp(address: SocketAddr) -> Result<Listener, Error> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|error| Error::io(format!("binding socketmap tcp socket {address}"), error))?;
        Ok(Listener::from_tcp(listener))
    }

    /// Serves on a unix listener bound elsewhere (for instance handed over by a supervisor); its socket file is the
    /// caller's to remove.
    pub fn from_unix(listener: UnixListener) -> Listener {
        Listener { inner: ListenerInner::Unix { listener, socket_file: None } }
    }

    /// Serves on a TCP listener bound elsewhere.
    pub fn from_tcp(listener: TcpListener) -> Listener {
        Listener { inner: ListenerInner::Tcp(listener) }
    }

    /// The TCP address this listener is bound to, useful after binding port 0; `None` for a unix socket.
    pub fn tcp_address(&self) -> Option<SocketAddr> {
        match &self.inner {
            ListenerInner::Tcp(listener) => listener.local_addr().ok(),
            ListenerInner::Unix { .. } => None,
        }
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            ListenerInner::Unix { socket_file: Some(socket_file), .. } => {
                write!(f, "unix:{}", socket_file.path.display())
            }
            ListenerInner::Unix { listener, socket_file: None } => match listener.local_addr() {
                Ok(address) => match address.as_pathname() {
                    Some(path) => write!(f, "unix:{}", path.display()),
                    None => f.write_str("unix:(unnamed)"),
                },
                Err(_) => f.write_str("unix:(unknown)"),
            },
            ListenerInner::Tcp(listener) => match listener.local_addr() {
                Ok(address) => write!(f, "inet:{address}"),
                Err(_) => f.write_str("inet:(unknown)"),
            },
        }
    }
}

/// The socket file a unix listener created; removed on drop if it is still the one we bound.
struct SocketFile {
    path: PathBuf,
    device: u64,
    inode: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let still_ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|metadata| metadata.dev() == self.device && metadata.ino() == self.inode);
        if still_ours && let Err(error) = std::fs::remove_file(&self.path) {
            warn!(path = %self.path.display(), %error, "could not remove socketmap socket");
        }
    }
}

/// Who is on the other end of a connection, for logs.
#[derive(Debug, Clone)]
enum Peer {
    Unix { uid: Option<u32>, pid: Option<i32> },
    Tcp(SocketAddr),
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Unix { uid, pid } => {
                f.write_str("unix")?;
                if let Some(uid) = uid {
                    write!(f, " uid={uid}")?;
                }
                if let Some(pid) = pid {
                    write!(f, " pid={pid}")?;
                }
                Ok(())
            }
            Peer::Tcp(address) => write!(f, "{address}"),
        }
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
    let shown = listener.to_string();
    info!(listener = %shown, max_connections = config.max_connections, "socketmap server listening");
    let limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let shared = Arc::new(Shared { lookup, config, counters: Counters::default() });
    let (shutdown_sender, shutdown_receiver) = watch::channel(false);
    let mut handlers = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        // The permit is taken before accepting, so that over the limit connections wait in the listen queue.
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(result) = handlers.join_next(), if !handlers.is_empty() => {
                report_handler_end(result);
                continue;
            }
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                // The semaphore is never closed; were it to be, there would be nothing left to serve with.
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(result) = handlers.join_next(), if !handlers.is_empty() => {
                report_handler_end(result);
                continue;
            }
            accepted = accept(&listener) => accepted,
        };
        match accepted {
            Ok(Accepted::Unix(stream, peer)) => {
                handlers.spawn(serve(stream, peer, shared.clone(), shutdown_receiver.clone(), permit));
            }
            Ok(Accepted::Tcp(stream, peer)) => {
                // Replies are small and latency matters more than packet count.
                let _ = stream.set_nodelay(true);
                handlers.spawn(serve(stream, peer, shared.clone(), shutdown_receiver.clone(), permit));
            }
            Err(error) => {
                // Typically out of file descriptors; pausing lets connections close instead of spinning.
                error!(listener = %shown, %error, "socketmap accept failed; retrying shortly");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    drop(listener);
    info!(listener = %shown, n_open = handlers.len(), "socketmap server stopped accepting; finishing open connections");
    let _ = shutdown_sender.send(true);
    while let Some(result) = handlers.join_next().await {
        report_handler_end(result);
    }
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

enum Accepted {
    Unix(UnixStream, Peer),
    Tcp(tokio::net::TcpStream, Peer),
}

async fn accept(listener: &Listener) -> std::io::Result<Accepted> {
    match &listener.inner {
        ListenerInner::Unix { listener, .. } => {
            let (stream, _) = listener.accept().await?;
            let credentials = stream.peer_cred().ok();
            let peer = Peer::Unix {
                uid: credentials.map(|credentials| credentials.uid()),
                pid: credentials.and_then(|credentials| credentials.pid()),
            };
            Ok(Accepted::Unix(stream, peer))
        }
        ListenerInner::Tcp(listener) => {
            let (stream, address) = listener.accept().await?;
            Ok(Accepted::Tcp(stream, Peer::Tcp(address)))
        }
    }
}

fn report_handler_end(result: Result<(), tokio::task::JoinError>) {
    // Lookup panics are caught per request; a panic here is a bug in the handler itself, contained to its
    // connection by the runtime.
    if let Err(error) = result
        && error.is_panic()
    {
        error!(%error, "socketmap connection handler panicked; connection dropped");
    }
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
