//! Server plumbing shared by CouchMail's wire-protocol crates (socketmap, the Postfix policy protocol): a
//! [`Listener`] on a unix socket or TCP; [`accept_loop`], which accepts connections under a limit, hands each to
//! a protocol's per-connection task, contains that task's panics, and on shutdown stops accepting and waits for every
//! connection to finish; and a [`Connection`], which reads messages through a protocol's [`Decoder`] under idle
//! and message timeouts and flushes queued replies before it waits.
//!
//! The crate knows no protocol: log lines and error contexts name the protocol through the `label` each
//! [`Listener`] is given ("socketmap", "policy").
#![deny(missing_docs)]

mod connection;

pub use connection::{Connection, ConnectionError, Decoder, Timeouts};

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

/// A failure to bind a listener: the context, and the operating system's error when there is one.
#[derive(Debug)]
pub struct Error {
    address_in_use: bool,
    context: String,
    source: Option<io::Error>,
}

impl Error {
    fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error { address_in_use: false, context: context.into(), source: Some(source) }
    }

    /// Whether another server is listening on the socket we were asked to bind (otherwise the operating system
    /// refused an operation, and [`Error::into_parts`] gives its error).
    pub fn is_address_in_use(&self) -> bool {
        self.address_in_use
    }

    /// The context and the operating system's error, for a protocol crate to wrap in its own error type.
    pub fn into_parts(self) -> (String, Option<io::Error>) {
        (self.context, self.source)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)?;
        match &self.source {
            Some(source) => write!(f, ": {source}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Error {}

/// A listening socket: a unix socket (the normal case, reached by a daemon on the same machine) or TCP (for a
/// daemon on another machine, and for tests).
pub struct Listener {
    inner: ListenerInner,
    label: &'static str,
}

enum ListenerInner {
    Unix { listener: UnixListener, socket_file: Option<SocketFile> },
    Tcp(TcpListener),
}

impl Listener {
    /// Binds a unix socket at `path` with permission bits `mode`; `label` names the protocol in logs and errors.
    ///
    /// The socket is bound under a temporary name beside `path`, given its mode, then renamed onto `path`, so it is
    /// never reachable with the wrong mode and a stale socket left by a crash is replaced atomically.
    /// A live socket (one that accepts a connection) is not replaced: that error says
    /// [`Error::is_address_in_use`]. Anything at `path` that is not a socket is left alone, and is an error.
    /// The socket file is removed when the listener is dropped, unless another server has replaced it meanwhile.
    pub async fn bind_unix(path: impl AsRef<Path>, mode: u32, label: &'static str) -> Result<Listener, Error> {
        let path = path.as_ref();
        let shown = path.display();
        check_replaceable(path, label).await?;
        let mut temporary_name = path.file_name().unwrap_or_default().to_os_string();
        temporary_name.push(format!(".{}.tmp", std::process::id()));
        let temporary_path = path.with_file_name(temporary_name);
        // A leftover from an earlier process with our pid would make bind fail; it is ours to remove.
        if std::fs::symlink_metadata(&temporary_path).is_ok_and(|metadata| metadata.file_type().is_socket()) {
            let _ = std::fs::remove_file(&temporary_path);
        }
        let listener = UnixListener::bind(&temporary_path)
            .map_err(|error| Error::io(format!("binding {label} socket {}", temporary_path.display()), error))?;
        let install = || -> io::Result<std::fs::Metadata> {
            std::fs::set_permissions(&temporary_path, std::fs::Permissions::from_mode(mode))?;
            std::fs::rename(&temporary_path, path)?;
            std::fs::symlink_metadata(path)
        };
        let metadata = install().map_err(|error| {
            let _ = std::fs::remove_file(&temporary_path);
            Error::io(format!("installing {label} socket {shown} with mode {mode:o}"), error)
        })?;
        let socket_file = SocketFile { path: path.to_path_buf(), device: metadata.dev(), inode: metadata.ino(), label };
        Ok(Listener { inner: ListenerInner::Unix { listener, socket_file: Some(socket_file) }, label })
    }

    /// Binds a TCP socket; `label` names the protocol in logs and errors.
    pub async fn bind_tcp(address: SocketAddr, label: &'static str) -> Result<Listener, Error> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|error| Error::io(format!("binding {label} tcp socket {address}"), error))?;
        Ok(Listener::from_tcp(listener, label))
    }

    /// Serves on a unix listener bound elsewhere (for instance handed over by a supervisor); its socket file is the
    /// caller's to remove.
    pub fn from_unix(listener: UnixListener, label: &'static str) -> Listener {
        Listener { inner: ListenerInner::Unix { listener, socket_file: None }, label }
    }

    /// Serves on a TCP listener bound elsewhere.
    pub fn from_tcp(listener: TcpListener, label: &'static str) -> Listener {
        Listener { inner: ListenerInner::Tcp(listener), label }
    }

    /// The TCP address this listener is bound to, useful after binding port 0; `None` for a unix socket.
    pub fn tcp_address(&self) -> Option<SocketAddr> {
        match &self.inner {
            ListenerInner::Tcp(listener) => listener.local_addr().ok(),
            ListenerInner::Unix { .. } => None,
        }
    }

    async fn accept(&self) -> io::Result<(Stream, Peer)> {
        match &self.inner {
            ListenerInner::Unix { listener, .. } => {
                let (stream, _) = listener.accept().await?;
                let credentials = stream.peer_cred().ok();
                let peer = Peer::Unix {
                    uid: credentials.map(|credentials| credentials.uid()),
                    pid: credentials.and_then(|credentials| credentials.pid()),
                };
                Ok((Stream::Unix(stream), peer))
            }
            ListenerInner::Tcp(listener) => {
                let (stream, address) = listener.accept().await?;
                // Replies are small and latency matters more than packet count.
                let _ = stream.set_nodelay(true);
                Ok((Stream::Tcp(stream), Peer::Tcp(address)))
            }
        }
    }
}

/// Refuses to bind over anything but nothing or a stale socket.
async fn check_replaceable(path: &Path, label: &str) -> Result<(), Error> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if !metadata.file_type().is_socket() => Err(Error::io(
            format!("binding {label} socket {shown}"),
            io::Error::new(io::ErrorKind::AlreadyExists, "a file that is not a socket is in the way"),
        )),
        // A bounded connect tells a live server from a stale file; a live one whose listen queue is full, and so
        // does not answer in time, still counts as live.
        Ok(_) => match tokio::time::timeout(Duration::from_secs(1), UnixStream::connect(path)).await {
            Ok(Err(error)) if error.kind() == io::ErrorKind::ConnectionRefused => {
                debug!(path = %shown, "replacing stale {label} socket");
                Ok(())
            }
            Ok(Err(error)) => Err(Error::io(format!("checking existing socket {shown}"), error)),
            Ok(Ok(_)) | Err(_) => Err(Error {
                address_in_use: true,
                context: format!("binding {label} socket {shown}: another server is listening there"),
                source: None,
            }),
        },
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
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
    label: &'static str,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let still_ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|metadata| metadata.dev() == self.device && metadata.ino() == self.inode);
        if still_ours && let Err(error) = std::fs::remove_file(&self.path) {
            warn!(path = %self.path.display(), %error, "could not remove {} socket", self.label);
        }
    }
}

/// Who is on the other end of a connection, for logs: a unix peer by uid and pid, a TCP peer by address.
#[derive(Debug, Clone)]
pub enum Peer {
    /// A peer on a unix socket, with its credentials when the kernel gave them.
    Unix {
        /// The peer's user id.
        uid: Option<u32>,
        /// The peer's process id.
        pid: Option<i32>,
    },
    /// A peer on TCP.
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

/// An accepted connection, on a unix socket or TCP.
pub enum Stream {
    /// A unix-socket connection.
    Unix(UnixStream),
    /// A TCP connection (with `TCP_NODELAY` set).
    Tcp(TcpStream),
}

impl Stream {
    /// Connects to a server on a unix socket, as a client; `label` names the protocol in the error.
    pub async fn connect_unix(path: &Path, label: &str) -> Result<Stream, Error> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|error| Error::io(format!("connecting to {label} server unix:{}", path.display()), error))?;
        Ok(Stream::Unix(stream))
    }

    /// Connects to a server on TCP, as a client, with `TCP_NODELAY` set; `label` names the protocol in the error.
    pub async fn connect_tcp(address: SocketAddr, label: &str) -> Result<Stream, Error> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|error| Error::io(format!("connecting to {label} server inet:{address}"), error))?;
        // Requests are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        Ok(Stream::Tcp(stream))
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Unix(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tcp(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

/// What a connection task is given besides its stream: who the peer is, a receiver that turns `true` when the server
/// starts shutting down, and the connection-limit slot it holds until it ends.
pub struct ConnectionContext {
    /// Who is on the other end.
    pub peer: Peer,
    /// Turns `true` when the server stops accepting; the task then answers what it has read and closes.
    pub shutdown: watch::Receiver<bool>,
    /// The slot under the connection limit; dropped with the task.
    pub permit: OwnedSemaphorePermit,
}

/// Accepts connections on `listener`, at most `max_connections` at once, spawning `serve(stream, context)` for each,
/// until `shutdown` completes; then stops accepting (a unix socket file is removed), tells every connection to stop,
/// and returns once all have ended.
///
/// Over the limit, new connections are not refused: they wait, unaccepted, in the kernel's listen queue until a
/// connection ends. Accept errors (such as running out of file descriptors) are logged and retried after a pause;
/// they never end the server. A connection task that panics is logged and only its connection is lost.
pub async fn accept_loop<F, Fut>(
    listener: Listener,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
    mut serve: F,
) where
    F: FnMut(Stream, ConnectionContext) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let label = listener.label;
    let shown = listener.to_string();
    info!(listener = %shown, max_connections, "{label} server listening");
    let limit = Arc::new(Semaphore::new(max_connections.max(1)));
    let (shutdown_sender, shutdown_receiver) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        // The permit is taken before accepting, so that over the limit connections wait in the listen queue.
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(result) = tasks.join_next(), if !tasks.is_empty() => {
                report_task_end(label, result);
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
                report_task_end(label, result);
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let context = ConnectionContext { peer, shutdown: shutdown_receiver.clone(), permit };
                tasks.spawn(serve(stream, context));
            }
            Err(error) => {
                // Typically out of file descriptors; pausing lets connections close instead of spinning.
                error!(listener = %shown, %error, "{label} accept failed; retrying shortly");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    drop(listener);
    info!(listener = %shown, n_open = tasks.len(), "{label} server stopped accepting; finishing open connections");
    let _ = shutdown_sender.send(true);
    while let Some(result) = tasks.join_next().await {
        report_task_end(label, result);
    }
}

fn report_task_end(label: &str, result: Result<(), tokio::task::JoinError>) {
    // Protocol handlers catch their own panics per request; a panic here is a bug in the connection loop itself,
    // contained to its connection by the runtime.
    if let Err(error) = result
        && error.is_panic()
    {
        error!(%error, "{label} connection task panicked; connection dropped");
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn echo_once(mut stream: Stream, _context: ConnectionContext) {
        let mut byte = [0; 1];
        if stream.read_exact(&mut byte).await.is_ok() {
            let _ = stream.write_all(&byte).await;
        }
    }

    #[tokio::test]
    async fn serves_unix_connections_and_removes_the_socket_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wire");
        let listener = Listener::bind_unix(&path, 0o600, "test").await.unwrap();
        assert_eq!(listener.to_string(), format!("unix:{}", path.display()));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(accept_loop(listener, 4, async { drop(stopped.await) }, echo_once));

        let mut client = UnixStream::connect(&path).await.unwrap();
        client.write_all(b"x").await.unwrap();
        let mut reply = [0; 1];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"x");

        stop.send(()).unwrap();
        server.await.unwrap();
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn refuses_to_replace_a_live_socket_or_a_plain_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wire");
        let _live = Listener::bind_unix(&path, 0o600, "test").await.unwrap();
        let error = Listener::bind_unix(&path, 0o600, "test").await.err().unwrap();
        assert!(error.is_address_in_use(), "{error}");

        let file = dir.path().join("file");
        std::fs::write(&file, b"keep").unwrap();
        let error = Listener::bind_unix(&file, 0o600, "test").await.err().unwrap();
        assert!(!error.is_address_in_use());
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
    }
}
