//! The server: a [`Listener`] accepts connections under a limit, and a task per connection reads requests and
//! writes actions until the peer leaves, idles out, breaks the protocol, or the server shuts down.
//!
//! Shutdown: when the `shutdown` future given to [`run`] completes, the listener stops accepting (a unix socket
//! file is removed), idle connections are closed, requests already received are decided and answered, and [`run`]
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
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
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
    /// The socket is bound under a temporary name beside `path`, given its mode, then renamed onto `path`, so it is
    /// never reachable with the wrong mode and a stale socket left by a crash is replaced atomically.
    /// A live socket (one that accepts a connection) is not replaced: that is [`ErrorKind::AddressInUse`].
    /// Anything at `path` that is not a socket is left alone, and is an error.
    /// The socket file is removed when the listener is dropped, unless another server has replaced it meanwhile.
    pub async fn bind_unix(path: impl AsRef<Path>, mode: u32) -> Result<Listener, Error> {
        let path = path.as_ref();
        let shown = path.display();
        check_replaceable(path).await?;
        let mut temporary_name = path.file_name().unwrap_or_default().to_os_string();
        temporary_name.push(format!(".{}.tmp", std::process::id()));
        let temporary_path = path.with_file_name(temporary_name);
        // A leftover from an earlier process with our pid would make bind fail; it is ours to remove.
        if std::fs::symlink_metadata(&temporary_path).is_ok_and(|metadata| metadata.file_type().is_socket()) {
            let _ = std::fs::remove_file(&temporary_path);
        }
        let listener = UnixListener::bind(&temporary_path)
            .map_err(|error| Error::io(format!("binding policy socket {}", temporary_path.display()), error))?;
        let install = || -> std::io::Result<std::fs::Metadata> {
            std::fs::set_permissions(&temporary_path, std::fs::Permissions::from_mode(mode))?;
            std::fs::rename(&temporary_path, path)?;
            std::fs::symlink_metadata(path)
        };
        let metadata = install().map_err(|error| {
            let _ = std::fs::remove_file(&temporary_path);
            Error::io(format!("installing policy socket {shown} with mode {mode:o}"), error)
        })?;
        let socket_file = SocketFile { path: path.to_path_buf(), device: metadata.dev(), inode: metadata.ino() };
        Ok(Listener { inner: ListenerInner::Unix { listener, socket_file: Some(socket_file) } })
    }

    /// Binds a TCP socket. The policy protocol has no authentication: keep the address private.
    pub async fn bind_tcp(address: SocketAddr) -> Result<Listener, Error> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|error| Error::io(format!("binding policy tcp socket {address}"), error))?;
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

/// Refuses to bind over anything but nothing or a stale socket.
async fn check_replaceable(path: &Path) -> Result<(), Error> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if !metadata.file_type().is_socket() => Err(Error::io(
            format!("binding policy socket {shown}"),
            std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a file that is not a socket is in the way"),
        )),
        // A bounded connect tells a live server from a stale file; a live one whose listen queue is full, and so
        // does not answer in time, still counts as live.
        Ok(_) => match tokio::time::timeout(Duration::from_secs(1), UnixStream::connect(path)).await {
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                debug!(path = %shown, "replacing stale policy socket");
                Ok(())
            }
            Ok(Err(error)) => Err(Error::io(format!("checking existing socket {shown}"), error)),
            Ok(Ok(_)) | Err(_) => Err(Error::new(
                ErrorKind::AddressInUse,
                format!("binding policy socket {shown}: another server is listening there"),
            )),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(Error::io(format!("inspecting {shown}"), error)),
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            ListenerInner::Unix { socket_file: Some(socket_file), .. } => {
                write!(f, "unix:{}", socket_file.path.display())
            }
            ListenerInner::Unix { listener, socket_file: None } => {
                match listener.local_addr().ok().as_ref().and_then(|address| address.as_pathname()) {
                    Some(path) => write!(f, "unix:{}", path.display()),
                    None => f.write_str("unix:(unnamed)"),
                }
            }
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
            warn!(path = %self.path.display(), %error, "could not remove policy socket");
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
    let shown = listener.to_string();
    info!(listener = %shown, max_connections = config.max_connections, "policy server listening");
    let limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let shared = Arc::new(Shared { handler, config, counters: Counters::default() });
    let (shutdown_sender, shutdown_receiver) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        // The permit is taken before accepting, so that over the limit connections wait in the listen queue.
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(result) = tasks.join_next(), if !tasks.is_empty() => {
                report_task_end(result);
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
            Some(result) = tasks.join_next(), if !tasks.is_empty() => {
                report_task_end(result);
                continue;
            }
            accepted = accept(&listener) => accepted,
        };
        match accepted {
            Ok(Accepted::Unix(stream, peer)) => {
                tasks.spawn(serve(stream, peer, shared.clone(), shutdown_receiver.clone(), permit));
            }
            Ok(Accepted::Tcp(stream, peer)) => {
                // Replies are small and latency matters more than packet count.
                let _ = stream.set_nodelay(true);
                tasks.spawn(serve(stream, peer, shared.clone(), shutdown_receiver.clone(), permit));
            }
            Err(error) => {
                // Typically out of file descriptors; pausing lets connections close instead of spinning.
                error!(listener = %shown, %error, "policy accept failed; retrying shortly");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    drop(listener);
    info!(listener = %shown, n_open = tasks.len(), "policy server stopped accepting; finishing open connections");
    let _ = shutdown_sender.send(true);
    while let Some(result) = tasks.join_next().await {
        report_task_end(result);
    }
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

enum Accepted {
    Unix(UnixStream, Peer),
    Tcp(TcpStream, Peer),
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

fn report_task_end(result: Result<(), tokio::task::JoinError>) {
    // Handler panics are caught per decision; a panic here is a bug in the connection loop itself, contained to
    // its connection by the runtime.
    if let Err(error) = result
        && error.is_panic()
    {
        error!(%error, "policy connection task panicked; connection dropped");
    }
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
