//! The socketmap server driven over real sockets with raw bytes, the crate's client, and Postfix's own `postmap`.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly on an unexpected error")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use couchmail_socketmap::{Client, ErrorKind, Listener, Lookup, MAX_REPLY_LEN, Reply, ServerConfig, ServerStats, run};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A fixed map set whose keys pick each kind of reply and misbehaviour.
struct FakeLookup;

impl Lookup for FakeLookup {
    fn lookup(&self, map: &str, key: &str) -> Reply {
        match (map, key) {
            ("mailboxes", "alice@example.com") => Reply::ok("alice@example.com"),
            ("mailboxes", "bob@example.com") => Reply::ok("bob@example.com"),
            ("aliases", "info@example.com") => Reply::ok("alice@example.com,bob@example.com"),
            ("mailboxes", "temp@example.com") => Reply::temp("index not ready"),
            ("mailboxes", "timeout@example.com") => Reply::timeout("too slow"),
            ("mailboxes", "panic@example.com") => panic!("fake lookup asked to panic"),
            ("mailboxes", "largest@example.com") => Reply::ok("x".repeat(MAX_REPLY_LEN - "OK ".len())),
            ("mailboxes", "huge@example.com") => Reply::ok("x".repeat(MAX_REPLY_LEN)),
            ("mailboxes" | "aliases", _) => Reply::NotFound,
            _ => Reply::perm(format!("unknown map {map}")),
        }
    }
}

/// A server on a unix socket in its own temporary directory.
struct TestServer {
    _dir: tempfile::TempDir,
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<ServerStats>,
}

impl TestServer {
    async fn start() -> TestServer {
        TestServer::start_with(ServerConfig::default()).await
    }

    async fn start_with(config: ServerConfig) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socketmap");
        let listener = Listener::bind_unix(&path, 0o660).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(listener, Arc::new(FakeLookup), config, async {
            let _ = stopped.await;
        }));
        TestServer { _dir: dir, path, stop: Some(stop), task }
    }

    async fn connect(&self) -> UnixStream {
        UnixStream::connect(&self.path).await.unwrap()
    }

    /// Asks the server to stop and waits until it has, within five seconds.
    async fn stop(mut self) -> ServerStats {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), &mut self.task).await.unwrap().unwrap()
    }
}

fn netstring(payload: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out.push(b',');
    out
}

/// Reads exactly the netstring for `payload`, failing if anything else (or nothing) arrives within five seconds.
async fn expect_reply(stream: &mut UnixStream, payload: &[u8]) {
    let expected = netstring(payload);
    let mut got = vec![0; expected.len()];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&expected));
}

/// Asserts that the server closes `stream` without sending another byte, within `within`.
async fn expect_closed(stream: &mut UnixStream, within: Duration) {
    let mut rest = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut rest))
        .await
        .expect("server did not close the connection in time");
    // Closing a socket with unread input resets it, and that is a close as well.
    if let Err(error) = read {
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
    }
    assert_eq!(String::from_utf8_lossy(&rest), "", "server sent bytes before closing");
}

#[tokio::test]
async fn answers_every_reply_kind_on_one_connection() {
    let server = TestServer::start().await;
    let mut stream = server.connect().await;
    let conversation: &[(&[u8], &[u8])] = &[
        (b"mailboxes alice@example.com", b"OK alice@example.com"),
        (b"mailboxes nobody@example.com", b"NOTFOUND "),
        (b"aliases info@example.com", b"OK alice@example.com,bob@example.com"),
        (b"mailboxes temp@example.com", b"TEMP index not ready"),
        (b"mailboxes timeout@example.com", b"TIMEOUT too slow"),
        (b"senders alice@example.com", b"PERM unknown map senders"),
        (b"mailboxes bob@example.com", b"OK bob@example.com"),
    ];
    for (request, reply) in conversation {
        stream.write_all(&netstring(request)).await.unwrap();
        expect_reply(&mut stream, reply).await;
    }
    drop(stream);
    let stats = server.stop().await;
    assert_eq!((stats.n_connections, stats.n_requests, stats.n_malformed), (1, 7, 0));
}

#[tokio::test]
async fn answers_pipelined_requests_in_order() {
    let server = TestServer::start().await;
    let mut stream = server.connect().await;
    let mut batch = Vec::new();
    for key in ["alice@example.com", "nobody@example.com", "bob@example.com"] {
        batch.extend(netstring(format!("mailboxes {key}").as_bytes()));
    }
    stream.write_all(&batch).await.unwrap();
    expect_reply(&mut stream, b"OK alice@example.com").await;
    expect_reply(&mut stream, b"NOTFOUND ").await;
    expect_reply(&mut stream, b"OK bob@example.com").await;
}

#[tokio::test]
async fn assembles_requests_sent_byte_by_byte() {
    let server = TestServer::start().await;
    let mut stream = server.connect().await;
    let mut wire = netstring(b"mailboxes alice@example.com");
    wire.extend(netstring(b"mailboxes nobody@example.com"));
    for byte in wire {
        stream.write_all(&[byte]).await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    expect_reply(&mut stream, b"OK alice@example.com").await;
    expect_reply(&mut stream, b"NOTFOUND ").await;
}

#[tokio::test]
async fn answers_not_found_for_keys_that_are_not_utf8_or_empty() {
    let server = TestServer::start().await;
    let mut stream = server.connect().await;
    stream.write_all(&netstring(b"mailboxes al\xffce@example.com")).await.unwrap();
    expect_reply(&mut stream, b"NOTFOUND ").await;
    stream.write_all(&netstring(b"mailboxes ")).await.unwrap();
    expect_reply(&mut stream, b"NOTFOUND ").await;
    // The connection is still good afterwards.
    stream.write_all(&netstring(b"mailboxes alice@example.com")).await.unwrap();
    expect_reply(&mut stream, b"OK alice@example.com").await;
}

#[tokio::test]
async fn answers_perm_to_a_well_framed_payload_that_is_not_a_request() {
    let server = TestServer::start().await;
    let mut stream = server.connect().await;
    stream.write_all(&netstring(b"mailboxes")).await.unwrap();
    expect_reply(&mut stream, b"PERM request has no space between map name and key").await;
    stream.write_all(&netstring(b" alice@example.com")).await.unwrap();
    expect_reply(&mut stream, b"PERM request has an empty map name").await;
    stream.write_all(&netstring(b"mailboxes alice@example.com")).await.unwrap();
    expect_reply(&mut stream, b"OK alice@example.com").await;
}

#[tokio::test]
async fn closes_the_connection_on_malformed_netstrings() {
    let server = TestServer::start().await;
    let malformed: &[&[u8]] = &[
        b"abc:mailboxes alice@example.com,",
        b"07:mailboxes,",
        b":mailboxes alice@example.com,",
        b"27mailboxes alice@example.com,",
        b"27:mailboxes alice@example.com;",
        b"2 7:mailboxes alice@example.com,",
        b"-1:,",
        b"27:mailboxes alice@example.comX",
    ];
    for wire in malformed {
        let mut stream = server.connect().await;
        stream.write_all(wire).await.unwrap();
        expect_closed(&mut stream, Duration::from_secs(5)).await;
    }
    let stats = server.stop().await;
    assert_eq!(stats.n_malformed, malformed.len() as u64);
    assert_eq!(stats.n_requests, 0);
}

#[tokio::test]
async fn answers_earlier_requests_then_closes_at_the_malformed_one() {
    let server = TestServer::start().await;
    let mut stream = server.connect().await;
    let mut wire = netstring(b"mailboxes alice@example.com");
    wire.extend_from_slice(b"5:abcde;");
    wire.extend(netstring(b"mailboxes bob@example.com"));
    stream.write_all(&wire).await.unwrap();
    expect_reply(&mut stream, b"OK alice@example.com").await;
    expect_closed(&mut stream, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn closes_an_oversize_request_while_serving_other_clients() {
    let server = TestServer::start().await;
    let mut other = server.connect().await;
    other.write_all(&netstring(b"mailboxes alice@example.com")).await.unwrap();
    expect_reply(&mut other, b"OK alice@example.com").await;

    // Declared too long: refused from the length alone, before any data is sent.
    let mut hostile = server.connect().await;
    hostile.write_all(b"10001:").await.unwrap();
    expect_closed(&mut hostile, Duration::from_secs(5)).await;

    // Sent too long: the data follows, and the server must not wait for all of it.
    let mut hostile = server.connect().await;
    let mut wire = b"99999999:mailboxes ".to_vec();
    wire.extend(std::iter::repeat_n(b'a', 20_000));
    // The server may close while the write is still going; only the close matters.
    let _ = hostile.write_all(&wire).await;
    expect_closed(&mut hostile, Duration::from_secs(5)).await;

    // The largest allowed request is still served.
    let mut largest = server.connect().await;
    let key = "k".repeat(10_000 - "mailboxes ".len());
    largest.write_all(&netstring(format!("mailboxes {key}").as_bytes())).await.unwrap();
    expect_reply(&mut largest, b"NOTFOUND ").await;

    other.write_all(&netstring(b"mailboxes bob@example.com")).await.unwrap();
    expect_reply(&mut other, b"OK bob@example.com").await;
}

#[tokio::test]
async fn replaces_a_reply_too_large_for_postfix() {
    let server = TestServer::start().await;
    let mut client = Client::connect_unix(&server.path).await.unwrap();
    let largest = client.lookup("mailboxes", "largest@example.com").await.unwrap();
    assert_eq!(largest.payload_len(), MAX_REPLY_LEN);
    assert_eq!(client.lookup("mailboxes", "huge@example.com").await.unwrap(), Reply::temp("reply too large"));
    assert_eq!(client.lookup("mailboxes", "alice@example.com").await.unwrap(), Reply::ok("alice@example.com"));
}

#[tokio::test]
async fn survives_a_panicking_lookup() {
    let server = TestServer::start().await;
    let mut bystander = Client::connect_unix(&server.path).await.unwrap();
    let mut client = Client::connect_unix(&server.path).await.unwrap();
    for _ in 0..3 {
        assert_eq!(client.lookup("mailboxes", "panic@example.com").await.unwrap(), Reply::temp("internal error"));
        assert_eq!(client.lookup("mailboxes", "alice@example.com").await.unwrap(), Reply::ok("alice@example.com"));
    }
    assert_eq!(bystander.lookup("mailboxes", "bob@example.com").await.unwrap(), Reply::ok("bob@example.com"));
    let mut newcomer = Client::connect_unix(&server.path).await.unwrap();
    assert_eq!(newcomer.lookup("mailboxes", "bob@example.com").await.unwrap(), Reply::ok("bob@example.com"));
}

#[tokio::test]
async fn answers_200_concurrent_connections() {
    let server = TestServer::start().await;
    let mut clients = Vec::new();
    for _ in 0..200 {
        clients.push(Client::connect_unix(&server.path).await.unwrap());
    }
    // Every connection is open before any asks, so they are all served at once.
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(client_idx, mut client)| {
            tokio::spawn(async move {
                let key = if client_idx % 2 == 0 { "alice@example.com" } else { "nobody@example.com" };
                for _ in 0..5 {
                    let reply = client.lookup("mailboxes", key).await.unwrap();
                    let expected = if client_idx % 2 == 0 { Reply::ok(key) } else { Reply::NotFound };
                    assert_eq!(reply, expected);
                }
                client
            })
        })
        .collect();
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(task.await.unwrap());
    }
    drop(clients);
    let stats = server.stop().await;
    assert_eq!((stats.n_connections, stats.n_requests), (200, 1000));
}

#[tokio::test]
async fn holds_connections_over_the_limit_until_a_slot_frees() {
    let server = TestServer::start_with(ServerConfig { max_connections: 1, ..ServerConfig::default() }).await;
    let mut first = server.connect().await;
    first.write_all(&netstring(b"mailboxes alice@example.com")).await.unwrap();
    expect_reply(&mut first, b"OK alice@example.com").await;

    let mut second = server.connect().await;
    second.write_all(&netstring(b"mailboxes bob@example.com")).await.unwrap();
    let mut byte = [0; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), second.read(&mut byte)).await;
    assert!(early.is_err(), "the second connection was served while the first held the only slot");

    // A timed-out read consumed nothing, so the whole reply is still to come.
    drop(first);
    expect_reply(&mut second, b"OK bob@example.com").await;
}

#[tokio::test]
async fn closes_idle_connections_silently() {
    let idle_timeout = Duration::from_millis(300);
    let server = TestServer::start_with(ServerConfig { idle_timeout, ..ServerConfig::default() }).await;
    let mut stream = server.connect().await;
    stream.write_all(&netstring(b"mailboxes alice@example.com")).await.unwrap();
    expect_reply(&mut stream, b"OK alice@example.com").await;
    let idle_since = Instant::now();
    expect_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(idle_since.elapsed() >= idle_timeout - Duration::from_millis(50), "closed too early");
}

#[tokio::test]
async fn closes_a_connection_whose_request_stalls() {
    let request_timeout = Duration::from_millis(300);
    let config = ServerConfig { request_timeout, idle_timeout: Duration::from_secs(60), ..ServerConfig::default() };
    let server = TestServer::start_with(config).await;
    let mut stream = server.connect().await;
    let started = Instant::now();
    stream.write_all(b"27:mailboxes ali").await.unwrap();
    expect_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(started.elapsed() >= request_timeout - Duration::from_millis(50), "closed too early");
}

#[tokio::test]
async fn shuts_down_gracefully() {
    let server = TestServer::start().await;
    let mut idle = server.connect().await;
    idle.write_all(&netstring(b"mailboxes alice@example.com")).await.unwrap();
    expect_reply(&mut idle, b"OK alice@example.com").await;

    // A request begun before shutdown is still answered once it is complete.
    let mut midway = server.connect().await;
    let wire = netstring(b"mailboxes bob@example.com");
    midway.write_all(&wire[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let path = server.path.clone();
    let stop = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    midway.write_all(&wire[10..]).await.unwrap();
    expect_reply(&mut midway, b"OK bob@example.com").await;
    expect_closed(&mut midway, Duration::from_secs(5)).await;
    expect_closed(&mut idle, Duration::from_secs(5)).await;

    let stats = stop.await.unwrap();
    assert_eq!((stats.n_connections, stats.n_requests), (2, 2));
    assert!(!path.exists(), "the socket file outlived the server");
    assert!(UnixStream::connect(&path).await.is_err());
}

#[tokio::test]
async fn binds_with_the_given_mode_and_replaces_only_stale_sockets() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("socketmap");
    let mode_of = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;

    // A socket left behind by a dead server.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let listener = Listener::bind_unix(&path, 0o660).await.unwrap();
    assert_eq!(mode_of(&path), 0o660);

    // A live one is not taken over.
    let error = Listener::bind_unix(&path, 0o600).await.map(|_| ()).unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::AddressInUse, "{error}");
    assert_eq!(mode_of(&path), 0o660);

    drop(listener);
    assert!(!path.exists(), "dropping the listener leaves the socket file");

    // Something that is not a socket is never removed.
    std::fs::write(&path, "precious").unwrap();
    let error = Listener::bind_unix(&path, 0o660).await.map(|_| ()).unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::Io, "{error}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["socketmap"]);
}

#[tokio::test]
async fn serves_on_tcp_when_configured() {
    let listener = Listener::bind_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let address = listener.tcp_address().unwrap();
    assert_eq!(listener.to_string(), format!("inet:{address}"));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(listener, Arc::new(FakeLookup), ServerConfig::default(), async {
        let _ = stopped.await;
    }));
    let mut client = Client::connect_tcp(address).await.unwrap();
    assert_eq!(client.lookup("mailboxes", "alice@example.com").await.unwrap(), Reply::ok("alice@example.com"));
    assert_eq!(client.lookup("mailboxes", "nobody@example.com").await.unwrap(), Reply::NotFound);
    drop(client);
    stop.send(()).unwrap();
    assert_eq!(task.await.unwrap().n_requests, 2);
}

#[tokio::test]
async fn client_reads_every_reply_kind_and_refuses_bad_map_names() {
    let server = TestServer::start().await;
    let mut client = Client::connect_unix(&server.path).await.unwrap();
    assert_eq!(client.lookup("mailboxes", "alice@example.com").await.unwrap(), Reply::ok("alice@example.com"));
    assert_eq!(client.lookup("mailboxes", "nobody@example.com").await.unwrap(), Reply::NotFound);
    assert_eq!(client.lookup("mailboxes", "temp@example.com").await.unwrap(), Reply::temp("index not ready"));
    assert_eq!(client.lookup("mailboxes", "timeout@example.com").await.unwrap(), Reply::timeout("too slow"));
    assert_eq!(client.lookup("senders", "a@example.com").await.unwrap(), Reply::perm("unknown map senders"));
    let error = client.lookup("two words", "a@example.com").await.unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::InvalidRequest);
    assert_eq!(client.lookup("mailboxes", "a key with spaces").await.unwrap(), Reply::NotFound);
}

mod postmap {
    //! Postfix's own client, `postmap -q`, against the server.

    use std::process::Stdio;

    use super::*;

    const POSTMAP: &str = "/usr/sbin/postmap";

    /// Runs postmap with a private, empty configuration directory, so the machine's Postfix setup plays no part.
    async fn postmap(server: &TestServer, map: &str, args: &[&str], stdin: &str) -> std::process::Output {
        let config_dir = tempfile::tempdir().unwrap();
        let main_cf = std::fs::File::create(config_dir.path().join("main.cf")).unwrap();
        // Postfix waits, polling, for a main.cf modified in the last second or so to settle; an old one is read at once.
        main_cf.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600)).unwrap();
        let table = format!("socketmap:unix:{}:{map}", server.path.display());
        let mut child = tokio::process::Command::new(POSTMAP)
            .arg("-c")
            .arg(config_dir.path())
            .args(args)
            .arg(&table)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut child_stdin = child.stdin.take().unwrap();
        child_stdin.write_all(stdin.as_bytes()).await.unwrap();
        drop(child_stdin);
        tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap()
    }

    fn postmap_present() -> bool {
        if Path::new(POSTMAP).exists() {
            return true;
        }
        println!("note: {POSTMAP} is absent (install Debian's postfix); skipping the postmap test");
        false
    }

    #[tokio::test]
    async fn postmap_reads_found_not_found_and_temporary_failure() {
        if !postmap_present() {
            return;
        }
        let server = TestServer::start().await;

        let found = postmap(&server, "mailboxes", &["-q", "alice@example.com"], "").await;
        assert_eq!(String::from_utf8_lossy(&found.stdout), "alice@example.com\n", "{found:?}");
        assert_eq!(found.status.code(), Some(0), "{found:?}");

        let aliases = postmap(&server, "aliases", &["-q", "info@example.com"], "").await;
        assert_eq!(String::from_utf8_lossy(&aliases.stdout), "alice@example.com,bob@example.com\n", "{aliases:?}");

        // postmap exits 1 both for a miss and for a failed lookup (its fatal error path); stderr tells them apart.
        let missing = postmap(&server, "mailboxes", &["-q", "nobody@example.com"], "").await;
        assert_eq!(String::from_utf8_lossy(&missing.stdout), "", "{missing:?}");
        assert_eq!(String::from_utf8_lossy(&missing.stderr), "", "{missing:?}");
        assert_eq!(missing.status.code(), Some(1), "{missing:?}");

        // Postfix does send empty keys; an empty OK would draw a warning from it, NOTFOUND does not.
        let empty = postmap(&server, "mailboxes", &["-q", ""], "").await;
        assert_eq!(String::from_utf8_lossy(&empty.stderr), "", "{empty:?}");
        assert_eq!(empty.status.code(), Some(1), "{empty:?}");

        let temporary = postmap(&server, "mailboxes", &["-q", "temp@example.com"], "").await;
        assert_eq!(String::from_utf8_lossy(&temporary.stdout), "", "{temporary:?}");
        assert_ne!(temporary.status.code(), Some(0), "{temporary:?}");
        let stderr = String::from_utf8_lossy(&temporary.stderr);
        assert!(stderr.contains("temporary error: index not ready"), "postmap stderr lacks the reason: {stderr}");
        assert!(stderr.contains("query error"), "postmap did not treat TEMP as a failed query: {stderr}");

        let panicked = postmap(&server, "mailboxes", &["-q", "panic@example.com"], "").await;
        assert_ne!(panicked.status.code(), Some(0), "{panicked:?}");
        let stderr = String::from_utf8_lossy(&panicked.stderr);
        assert!(stderr.contains("temporary error: internal error"), "postmap stderr lacks the reason: {stderr}");

        // The server lives on after the panic.
        let again = postmap(&server, "mailboxes", &["-q", "bob@example.com"], "").await;
        assert_eq!(String::from_utf8_lossy(&again.stdout), "bob@example.com\n", "{again:?}");

        let stats = server.stop().await;
        assert_eq!(stats.n_malformed, 0);
        assert_eq!(stats.n_requests, 7);
    }

    #[tokio::test]
    async fn postmap_sends_many_keys_over_one_connection() {
        if !postmap_present() {
            return;
        }
        let server = TestServer::start().await;
        let mut keys = Vec::new();
        let mut expected = String::new();
        for key_idx in 0..100 {
            let key = match key_idx % 3 {
                0 => "alice@example.com".to_owned(),
                1 => "bob@example.com".to_owned(),
                _ => format!("nobody{key_idx}@example.com"),
            };
            if key_idx % 3 != 2 {
                expected.push_str(&format!("{key}\t{key}\n"));
            }
            keys.push(key);
        }
        let stdin = keys.join("\n") + "\n";
        let output = postmap(&server, "mailboxes", &["-q", "-"], &stdin).await;
        assert_eq!(String::from_utf8_lossy(&output.stdout), expected, "{output:?}");
        assert_eq!(output.status.code(), Some(0), "{output:?}");

        let stats = server.stop().await;
        assert_eq!((stats.n_connections, stats.n_requests, stats.n_malformed), (1, 100, 0));
    }
}
