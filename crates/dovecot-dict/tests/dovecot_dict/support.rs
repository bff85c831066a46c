//! Shared helpers: a fake [`DictLookup`], a server on a socket in a temporary directory, and raw-byte conversations.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use couchmail_dovecot_dict::{DictError, DictLookup, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a test waits for bytes that should come before calling the server stuck.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A user whose every lookup fails, as before the index is ready.
pub const BROKEN_USER: &str = "broken@example.com";

/// A key whose lookup panics.
pub const PANIC_KEY: &str = "priv/panic";

/// A path whose iteration fails.
pub const FAILING_PATH: &str = "priv/failing/";

/// Values per `(user, key)`; iteration lists keys below a path like Dovecot's file dict does.
#[derive(Default)]
pub struct FakeLookup {
    values: BTreeMap<(String, String), String>,
    n_calls: AtomicUsize,
}

impl FakeLookup {
    pub fn with(mut self, user: &str, key: &str, value: &str) -> FakeLookup {
        self.values.insert((user.to_owned(), key.to_owned()), value.to_owned());
        self
    }

    pub fn n_calls(&self) -> usize {
        self.n_calls.load(Ordering::SeqCst)
    }
}

impl DictLookup for FakeLookup {
    fn lookup(&self, user: &str, key: &str) -> Result<Option<String>, DictError> {
        self.n_calls.fetch_add(1, Ordering::SeqCst);
        if user == BROKEN_USER {
            return Err(DictError::new("index not ready"));
        }
        if key == PANIC_KEY {
            panic!("the fake lookup panics on purpose");
        }
        Ok(self.values.get(&(user.to_owned(), key.to_owned())).cloned())
    }

    fn iterate(&self, user: &str, path: &str, recurse: bool) -> Result<Vec<(String, String)>, DictError> {
        self.n_calls.fetch_add(1, Ordering::SeqCst);
        if user == BROKEN_USER {
            return Err(DictError::new("index not ready"));
        }
        if path == FAILING_PATH {
            return Err(DictError::new("iteration backend down"));
        }
        Ok(self
            .values
            .iter()
            .filter(|((row_user, key), _)| row_user == user && key.starts_with(path))
            .filter(|((_, key), _)| recurse || !key[path.len()..].contains('/'))
            .map(|((_, key), value)| (key.clone(), value.clone()))
            .collect())
    }
}

/// The data most conversations use.
pub fn standard_lookup() -> FakeLookup {
    FakeLookup::default()
        .with("alice@example.com", "priv/sieve/name/active", "id-1")
        .with("alice@example.com", "priv/sieve/data/id-1", "require \"fileinto\";\r\nfileinto\t\"x\";\n\x01end")
        .with("alice@example.com", "priv/list/b", "2")
        .with("alice@example.com", "priv/list/a", "1")
        .with("alice@example.com", "priv/list/deeper/c", "3")
        .with("alice@example.com", "priv/key\twith tab", "tabbed")
        .with("bob@example.com", "priv/list/a", "bob's")
}

/// A server running on a socket in its own temporary directory.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(lookup: Arc<dyn DictLookup>, config: ServerConfig) -> TestServer {
        TestServer::start_with_mode(lookup, config, 0o600).await
    }

    pub async fn start_with_mode(lookup: Arc<dyn DictLookup>, config: ServerConfig, mode: u32) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("dict");
        let listener = couchmail_dovecot_dict::bind(&socket, mode).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(couchmail_dovecot_dict::run(listener, lookup, config, async move {
            let _ = stopped.await;
        }));
        TestServer { dir, socket, stop: Some(stop), task: Some(task) }
    }

    /// Asks the server to stop and waits, at most [`REPLY_TIMEOUT`], for `run` to return.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(REPLY_TIMEOUT, task).await.expect("server did not stop in time").unwrap();
        }
    }

    /// A raw connection that has sent the hello of Dovecot 2.3.19.
    pub async fn hello(&self) -> UnixStream {
        let mut stream = self.connect().await;
        stream.write_all(b"H3\t2\t0\t\tsieve\n").await.unwrap();
        stream
    }

    /// A raw connection that has sent nothing yet.
    pub async fn connect(&self) -> UnixStream {
        UnixStream::connect(&self.socket).await.unwrap()
    }
}

/// Sends `request` and asserts the reply bytes are exactly `expected`.
pub async fn converse(stream: &mut UnixStream, request: &[u8], expected: &[u8]) {
    stream.write_all(request).await.unwrap();
    let reply = read_exactly(stream, expected.len()).await;
    assert_eq!(
        String::from_utf8_lossy(&reply),
        String::from_utf8_lossy(expected),
        "reply to {:?}",
        String::from_utf8_lossy(request)
    );
}

/// Reads exactly `n_bytes`, failing the test if they do not come in time.
pub async fn read_exactly(stream: &mut UnixStream, n_bytes: usize) -> Vec<u8> {
    let mut reply = vec![0; n_bytes];
    tokio::time::timeout(REPLY_TIMEOUT, stream.read_exact(&mut reply))
        .await
        .expect("reply did not come in time")
        .expect("connection failed before the reply was complete");
    reply
}

/// Asserts the server closes `stream` without sending anything more.
pub async fn assert_closed(stream: &mut UnixStream) {
    let mut rest = Vec::new();
    let read =
        tokio::time::timeout(REPLY_TIMEOUT, stream.read_to_end(&mut rest)).await.expect("connection stayed open");
    // A reset instead of a clean close is also a close.
    if read.is_ok() {
        assert_eq!(String::from_utf8_lossy(&rest), "", "server sent bytes before closing");
    }
}

/// Asserts nothing arrives on `stream` for `wait`.
pub async fn assert_silent(stream: &mut UnixStream, wait: Duration) {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(wait, stream.read(&mut byte)).await {
        Err(_) => {}
        Ok(read) => panic!("expected silence, got {read:?} {byte:?}"),
    }
}
