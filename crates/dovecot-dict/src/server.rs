//! The dict server: [`bind`] a unix socket, then [`run`] a `Listener` that accepts connections
//! (bounded by a semaphore) and a `Handler` per connection that answers requests until EOF, idle timeout or shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, broadcast, mpsc};
use tracing::{debug, error, info, warn};

use crate::connection::Connection;
use crate::error::{Error, ErrorKind, ParseError};
use crate::line::DEFAULT_MAX_LINE_LENGTH;
use crate::lookup::{DictError, DictLookup};
use crate::reply::Reply;
use crate::request::{Command, IterateFlags, Request, SUPPORTED_MAJOR_VERSIONS};

/// The error a commit containing writes gets: the dict is a read-only view of couchmail's store.
pub const READ_ONLY_MESSAGE: &str = "dict is read-only; change Sieve scripts through couchmail";

/// The error a lookup gets when the [`DictLookup`] panicked.
const PANIC_MESSAGE: &str = "internal error in couchmail's dict lookup";

/// Limits of a running server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// At most this many connections are served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Longest request line in bytes, LF excluded; a longer one closes the connection.
    pub max_line_length: usize,
    /// At most this many transactions may be open on one connection; one more closes it.
    pub max_open_transactions: usize,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_connections: 256,
            // Dovecot's dict client disconnects as soon as it is idle, so a long-idle peer is not Dovecot.
            idle_timeout: Duration::from_secs(60),
            max_line_length: DEFAULT_MAX_LINE_LENGTH,
            max_open_transactions: 16,
        }
    }
}

/// Creates a listening unix socket at `path` with permission bits `mode` (for example `0o660`).
///
/// The socket is bound under a temporary name, given its mode, and renamed over `path`,
/// so no client ever sees it with looser permissions and a stale socket left by a crash is replaced atomically.
/// Refuses to replace a path that is not a socket, or a socket another server still answers on.
/// Must be called inside a Tokio runtime.
pub fn bind(path: &Path, mode: u32) -> io::Result<UnixListener> {
    let context =
        |action: &str, err: io::Error| io::Error::new(err.kind(), format!("{action} {}: {err}", path.display()));
    check_replaceable(path)?;
    let temporary_path = temporary_socket_path(path);
    match std::fs::remove_file(&temporary_path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(context("removing leftover", err)),
        _ => {}
    }
    let std_listener =
        std::os::unix::net::UnixListener::bind(&temporary_path).map_err(|err| context("binding a socket for", err))?;
    let finish = || -> io::Result<UnixListener> {
        std::fs::set_permissions(&temporary_path, std::fs::Permissions::from_mode(mode))
            .map_err(|err| context("setting the mode of the socket for", err))?;
        std::fs::rename(&temporary_path, path).map_err(|err| context("moving the socket into place at", err))?;
        std_listener.set_nonblocking(true).map_err(|err| context("configuring", err))?;
        UnixListener::from_std(std_listener).map_err(|err| context("registering", err))
    };
    finish().inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary_path);
    })
}

/// Serves the dict protocol on `listener` until `shutdown` completes, then waits for open connections to finish.
///
/// Each connection must start with a hello of protocol major 3 or 4; requests are answered from `lookup`.
/// Writes are refused at commit with [`READ_ONLY_MESSAGE`].
pub async fn run(
    listener: UnixListener,
    lookup: Arc<dyn DictLookup>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let (notify_shutdown, _) = broadcast::channel(1);
    let (shutdown_complete_tx, mut shutdown_complete_rx) = mpsc::channel::<()>(1);
    let mut server = Listener {
        limit_connections: Arc::new(Semaphore::new(config.max_connections.max(1))),
        listener,
        lookup,
        config: Arc::new(config),
        notify_shutdown,
        shutdown_complete_tx,
    };
    tokio::select! {
        () = server.run() => {}
        () = shutdown => info!("dict server shutting down"),
    }
    let Listener { notify_shutdown, shutdown_complete_tx, .. } = server;
    // Dropping the sender tells every handler to stop after its current request;
    // each handler holds a clone of `shutdown_complete_tx`, so `recv` returns once the last one is gone.
    drop(notify_shutdown);
    drop(shutdown_complete_tx);
    let _ = shutdown_complete_rx.recv().await;
}

/// Accepts connections and spawns a [`Handler`] for each.
struct Listener {
    listener: UnixListener,
    lookup: Arc<dyn DictLookup>,
    config: Arc<ServerConfig>,
    limit_connections: Arc<Semaphore>,
    notify_shutdown: broadcast::Sender<()>,
    shutdown_complete_tx: mpsc::Sender<()>,
}

impl Listener {
    async fn run(&mut self) {
        let mut backoff = Duration::from_millis(10);
        loop {
            // Waiting for a permit before accepting keeps excess clients in the kernel's backlog.
            let Ok(permit) = self.limit_connections.clone().acquire_owned().await else {
                error!("dict server's connection semaphore was closed");
                return;
            };
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => {
                    backoff = Duration::from_millis(10);
                    stream
                }
                Err(err) => {
                    // Running out of file descriptors is temporary; keep serving the connections we have.
                    warn!(error = %err, "dict server could not accept a connection; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            let peer = describe_peer(&stream);
            debug!(%peer, "dict connection opened");
            let mut handler = Handler {
                connection: Connection::new(stream, self.config.max_line_length),
                lookup: Arc::clone(&self.lookup),
                config: Arc::clone(&self.config),
                shutdown: self.notify_shutdown.subscribe(),
                transactions: HashMap::new(),
                peer,
                _shutdown_complete: self.shutdown_complete_tx.clone(),
            };
            tokio::spawn(async move {
                match handler.run().await {
                    Ok(()) => debug!(peer = %handler.peer, "dict connection closed"),
                    Err(err) => match err.kind() {
                        ErrorKind::Io | ErrorKind::UnexpectedEof => {
                            debug!(peer = %handler.peer, error = %err, "dict connection ended")
                        }
                        _ => warn!(peer = %handler.peer, error = %err, "closing dict connection"),
                    },
                }
                drop(permit);
            });
        }
    }
}

/// Whether the connection goes on after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// A transaction the client has begun: only whether it wrote matters, since every write is refused.
struct Transaction {
    user: String,
    n_writes: usize,
    first_written_key: Option<String>,
}

/// Serves one connection.
struct Handler {
    connection: Connection,
    lookup: Arc<dyn DictLookup>,
    config: Arc<ServerConfig>,
    shutdown: broadcast::Receiver<()>,
    transactions: HashMap<u32, Transaction>,
    peer: String,
    /// Held only to be dropped when the handler ends; see [`run`].
    _shutdown_complete: mpsc::Sender<()>,
}

impl Handler {
    async fn run(&mut self) -> Result<(), Error> {
        let Some(first_line) = self.next_line().await? else {
            return Ok(());
        };
        match Request::parse(&first_line) {
            Ok(Request::Hello(hello)) if SUPPORTED_MAJOR_VERSIONS.contains(&hello.major) => {
                debug!(peer = %self.peer, major = hello.major, minor = hello.minor, dict = %hello.dict_name, "dict hello");
            }
            Ok(Request::Hello(hello)) => {
                warn!(
                    peer = %self.peer,
                    major = hello.major,
                    "refusing a dict client of protocol major {} (this server speaks 3 and 4); closing",
                    hello.major
                );
                return Ok(());
            }
            Ok(request) => {
                warn!(peer = %self.peer, "dict client sent {} before its hello; closing", request.command().name());
                return Ok(());
            }
            Err(err) => {
                warn!(peer = %self.peer, error = %err, "dict client did not start with a hello; closing");
                return Ok(());
            }
        }
        while let Some(line) = self.next_line().await? {
            let flow = self.handle_line(&line).await?;
            // Replies to pipelined requests leave together once no complete request is waiting.
            if flow == Flow::Close || !self.connection.has_buffered_line() {
                self.connection.flush().await?;
            }
            if flow == Flow::Close {
                break;
            }
        }
        Ok(())
    }

    /// The next request line, or `None` at EOF, idle timeout or shutdown.
    async fn next_line(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let idle_timeout = self.config.idle_timeout;
        tokio::select! {
            read = tokio::time::timeout(idle_timeout, self.connection.read_line()) => match read {
                Ok(line) => line,
                Err(_) => {
                    debug!(peer = %self.peer, "dict connection idle for {idle_timeout:?}; closing");
                    Ok(None)
                }
            },
            // A closed channel (the server dropped its sender) is the shutdown signal too.
            _ = self.shutdown.recv() => Ok(None),
        }
    }

    async fn handle_line(&mut self, line: &[u8]) -> Result<Flow, Error> {
        let request = match Request::parse(line) {
            Ok(request) => request,
            Err(err) => return self.refuse_malformed(err).await,
        };
        match request {
            Request::Hello(_) => {
                warn!(peer = %self.peer, "dict client sent a second hello; closing");
                Ok(Flow::Close)
            }
            Request::Lookup { key, user } => {
                let reply = self.answer_lookup(&user, &key);
                self.send(&reply).await?;
                Ok(Flow::Continue)
            }
            Request::Iterate { flags, max_rows, path, user } => {
                for reply in self.answer_iterate(flags, max_rows, &path, &user) {
                    self.send(&reply).await?;
                }
                Ok(Flow::Continue)
            }
            Request::Begin { id, user } => Ok(self.begin(id, user)),
            Request::Set { id, key, .. } => Ok(self.record_write(id, key, Command::Set)),
            Request::Unset { id, key } => Ok(self.record_write(id, key, Command::Unset)),
            Request::AtomicInc { id, key, .. } => Ok(self.record_write(id, key, Command::AtomicInc)),
            Request::Timestamp { id, .. } => Ok(self.require_transaction(id, Command::Timestamp)),
            Request::Commit { id } => self.commit(id, false).await,
            Request::CommitAsync { id } => self.commit(id, true).await,
            Request::Rollback { id } => {
                if self.transactions.remove(&id).is_some() {
                    Ok(Flow::Continue)
                } else {
                    Ok(self.unknown_transaction(id, Command::Rollback))
                }
            }
        }
    }

    /// Lookups and iterations expect a reply, so a malformed one gets a failure; anything else cannot be answered
    /// without confusing the client's reply order, so the connection is closed, as Dovecot's own server does.
    async fn refuse_malformed(&mut self, err: ParseError) -> Result<Flow, Error> {
        match err.command() {
            Some(Command::Lookup | Command::Iterate) => {
                warn!(peer = %self.peer, error = %err, "answering a malformed dict request with a failure");
                self.send(&Reply::Failed(err.to_string())).await?;
                Ok(Flow::Continue)
            }
            _ => {
                warn!(peer = %self.peer, error = %err, "malformed dict request; closing");
                Ok(Flow::Close)
            }
        }
    }

    fn answer_lookup(&self, user: &str, key: &str) -> Reply {
        match self.guarded(Command::Lookup, user, key, || self.lookup.lookup(user, key)) {
            Ok(Some(value)) => Reply::Value(value),
            Ok(None) => Reply::NotFound,
            Err(failure) => failure,
        }
    }

    fn answer_iterate(&self, flags: IterateFlags, max_rows: u64, path: &str, user: &str) -> Vec<Reply> {
        let rows = if flags.contains(IterateFlags::EXACT_KEY) {
            self.guarded(Command::Iterate, user, path, || self.lookup.lookup(user, path))
                .map(|value| value.into_iter().map(|value| (path.to_owned(), value)).collect())
        } else {
            let recurse = flags.contains(IterateFlags::RECURSE);
            self.guarded(Command::Iterate, user, path, || self.lookup.iterate(user, path, recurse))
        };
        let mut rows: Vec<(String, String)> = match rows {
            Ok(rows) => rows,
            Err(failure) => return vec![failure],
        };
        if flags.contains(IterateFlags::SORT_BY_KEY) {
            rows.sort_by(|left, right| left.0.cmp(&right.0));
        } else if flags.contains(IterateFlags::SORT_BY_VALUE) {
            rows.sort_by(|left, right| left.1.cmp(&right.1));
        }
        if max_rows > 0 {
            rows.truncate(usize::try_from(max_rows).unwrap_or(usize::MAX));
        }
        let keys_only = flags.contains(IterateFlags::NO_VALUE);
        rows.into_iter()
            .map(|(key, value)| Reply::Row { key, value: if keys_only { String::new() } else { value } })
            .chain(std::iter::once(Reply::IterationEnd))
            .collect()
    }

    /// Calls the lookup, turning an error or a panic into a failure reply so the connection and server live on.
    fn guarded<T>(
        &self,
        command: Command,
        user: &str,
        key: &str,
        call: impl FnOnce() -> Result<T, DictError>,
    ) -> Result<T, Reply> {
        match catch_unwind(AssertUnwindSafe(call)) {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(err)) => {
                warn!(peer = %self.peer, user, key, error = %err, "dict {} failed", command.name());
                Err(Reply::Failed(err.message().to_owned()))
            }
            Err(panic) => {
                let panic_message = panic
                    .downcast_ref::<&str>()
                    .map(|message| (*message).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                error!(peer = %self.peer, user, key, panic = %panic_message, "dict {} panicked", command.name());
                Err(Reply::Failed(PANIC_MESSAGE.to_owned()))
            }
        }
    }

    fn begin(&mut self, id: u32, user: String) -> Flow {
        if self.transactions.contains_key(&id) {
            warn!(peer = %self.peer, id, "dict client began transaction {id} twice; closing");
            return Flow::Close;
        }
        if self.transactions.len() >= self.config.max_open_transactions {
            warn!(
                peer = %self.peer,
                "dict client opened more than {} transactions; closing",
                self.config.max_open_transactions
            );
            return Flow::Close;
        }
        self.transactions.insert(id, Transaction { user, n_writes: 0, first_written_key: None });
        Flow::Continue
    }

    fn record_write(&mut self, id: u32, key: String, command: Command) -> Flow {
        match self.transactions.get_mut(&id) {
            Some(transaction) => {
                transaction.n_writes += 1;
                transaction.first_written_key.get_or_insert(key);
                Flow::Continue
            }
            None => self.unknown_transaction(id, command),
        }
    }

    fn require_transaction(&mut self, id: u32, command: Command) -> Flow {
        if self.transactions.contains_key(&id) { Flow::Continue } else { self.unknown_transaction(id, command) }
    }

    /// Requests without a reply have no way to report an unknown transaction, so, like Dovecot, close.
    fn unknown_transaction(&self, id: u32, command: Command) -> Flow {
        warn!(peer = %self.peer, id, "dict client sent {} for unknown transaction {id}; closing", command.name());
        Flow::Close
    }

    async fn commit(&mut self, id: u32, async_commit: bool) -> Result<Flow, Error> {
        let reply = match self.transactions.remove(&id) {
            None => {
                warn!(peer = %self.peer, id, "dict client committed unknown transaction {id}");
                Reply::CommitFailed { id, error: format!("transaction {id} was never begun"), async_commit }
            }
            Some(transaction) if transaction.n_writes == 0 => Reply::Committed { id, async_commit },
            Some(transaction) => {
                warn!(
                    peer = %self.peer,
                    user = %transaction.user,
                    n_writes = transaction.n_writes,
                    first_key = transaction.first_written_key.as_deref().unwrap_or_default(),
                    "refused a dict write: {READ_ONLY_MESSAGE}"
                );
                Reply::CommitFailed { id, error: READ_ONLY_MESSAGE.to_owned(), async_commit }
            }
        };
        self.send(&reply).await?;
        Ok(Flow::Continue)
    }

    async fn send(&mut self, reply: &Reply) -> Result<(), Error> {
        self.connection.write_all(&reply.encode()).await
    }
}

/// `pid=… uid=…` of the peer, for logs: the socket's mode decides who may connect, the log says who did.
fn describe_peer(stream: &UnixStream) -> String {
    match stream.peer_cred() {
        Ok(cred) => match cred.pid() {
            Some(pid) => format!("pid={pid} uid={}", cred.uid()),
            None => format!("uid={}", cred.uid()),
        },
        Err(_) => "unknown peer".to_owned(),
    }
}

/// Refuses paths that are not sockets, and sockets another process still accepts on.
fn check_replaceable(path: &Path) -> io::Result<()> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(io::Error::new(err.kind(), format!("inspecting {}: {err}", path.display()))),
    };
    if !metadata.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket; refusing to replace it", path.display()),
        ));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("another server is listening on {}", path.display()),
        ));
    }
    Ok(())
}

fn temporary_socket_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bind_sets_the_mode_and_replaces_only_stale_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dict");

        let listener = bind(&path, 0o660).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        assert!(!temporary_socket_path(&path).exists());

        // A live server keeps its socket.
        let err = bind(&path, 0o660).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");

        // Once it is gone, its socket file is stale and is replaced.
        drop(listener);
        let _listener = bind(&path, 0o600).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(UnixStream::connect(&path).await.is_ok());
    }

    #[tokio::test]
    async fn bind_refuses_to_replace_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dict");
        std::fs::write(&path, b"not a socket").unwrap();
        let err = bind(&path, 0o660).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
    }
}
