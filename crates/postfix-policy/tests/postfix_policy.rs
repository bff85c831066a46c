//! The policy server driven over real sockets with raw bytes, as Postfix's smtpd drives it, and the crate's client.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly on an unexpected error")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use couchmail_postfix_policy::{
    Action, Client, CodeReply, ErrorKind, Limits, Listener, PolicyHandler, PolicyRequest, ProtocolState, ServerConfig,
    ServerStats, run,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Decides by the recipient's local part at RCPT (the sender's at MAIL), so each test can pick a behaviour;
/// counts and keeps its requests, so tests can prove that malformed input never reaches it and see what Postfix
/// sent.
#[derive(Default)]
struct FakeHandler {
    n_calls: AtomicU64,
    /// Every request decided on, in order.
    requests: std::sync::Mutex<Vec<PolicyRequest>>,
}

impl PolicyHandler for FakeHandler {
    async fn decide(&self, request: &PolicyRequest) -> Action {
        self.n_calls.fetch_add(1, Ordering::Relaxed);
        self.requests.lock().unwrap().push(request.clone());
        let selector = match request.protocol_state {
            Some(ProtocolState::Rcpt) => request.recipient.as_deref(),
            Some(ProtocolState::Mail) => request.sender.as_deref(),
            _ => None,
        };
        let Some(selector) = selector else { return Action::Dunno };
        match selector.split('@').next().unwrap_or_default() {
            "greylist" => Action::DeferIfPermit("4.7.1 Greylisted, try again later".into()),
            "blocked" => Action::Code(CodeReply::new(554, "5.7.1 Sender blocked").unwrap()),
            "panic" => panic!("fake handler asked to panic"),
            "slow" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Action::Ok
            }
            // Shows what the handler saw, and which values were not UTF-8.
            "echo" => {
                let lossy: Vec<&str> = request.lossy.iter().map(String::as_str).collect();
                Action::Warn(format!("{request} lossy={}", lossy.join(",")))
            }
            _ if request.protocol_state == Some(ProtocolState::Rcpt) => Action::Ok,
            _ => Action::Dunno,
        }
    }
}

/// A server on a unix socket in its own temporary directory.
struct TestServer {
    _dir: tempfile::TempDir,
    path: PathBuf,
    handler: Arc<FakeHandler>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<ServerStats>,
}

impl TestServer {
    async fn start() -> TestServer {
        TestServer::start_with(ServerConfig::default()).await
    }

    async fn start_with(config: ServerConfig) -> TestServer {
        TestServer::start_in(tempfile::tempdir().unwrap(), 0o660, config).await
    }

    /// A server on `dir/policy`, with socket mode `mode`.
    async fn start_in(dir: tempfile::TempDir, mode: u32, config: ServerConfig) -> TestServer {
        let path = dir.path().join("policy");
        let listener = Listener::bind_unix(&path, mode).await.unwrap();
        let handler = Arc::new(FakeHandler::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(listener, handler.clone(), config, async {
            let _ = stopped.await;
        }));
        TestServer { _dir: dir, path, handler, stop: Some(stop), task }
    }

    async fn connect(&self) -> UnixStream {
        UnixStream::connect(&self.path).await.unwrap()
    }

    fn n_decisions(&self) -> u64 {
        self.handler.n_calls.load(Ordering::Relaxed)
    }

    /// Asks the server to stop and waits until it has, within five seconds.
    async fn stop(mut self) -> ServerStats {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), &mut self.task).await.unwrap().unwrap()
    }
}

/// A request with the attributes Postfix 3.7's smtpd sends, in `state`, for `recipient` (empty before RCPT).
fn postfix_request(state: &str, recipient: &str) -> Vec<u8> {
    format!(
        "request=smtpd_access_policy\nprotocol_state={state}\nprotocol_name=ESMTP\nclient_address=192.0.2.10\n\
         client_name=mail.example.net\nclient_port=50123\nreverse_client_name=mail.example.net\n\
         server_address=192.0.2.25\nserver_port=25\nhelo_name=mail.example.net\nsender=bob@example.net\n\
         recipient={recipient}\nrecipient_count=0\nqueue_id=\ninstance=8a1.6745a3b1.4c0e2.0\nsize=2048\n\
         etrn_domain=\nstress=\nsasl_method=\nsasl_username=\nsasl_sender=\nccert_subject=\nccert_issuer=\n\
         ccert_fingerprint=\nccert_pubkey_fingerprint=\nencryption_protocol=TLSv1.3\n\
         encryption_cipher=TLS_AES_256_GCM_SHA384\nencryption_keysize=256\npolicy_context=\n\n"
    )
    .into_bytes()
}

/// Reads exactly the reply `action=<action>` and its empty line, failing if anything else (or nothing) arrives
/// within five seconds.
async fn expect_action(stream: &mut UnixStream, action: &str) {
    let expected = format!("action={action}\n\n");
    let mut got = vec![0; expected.len()];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&got), expected);
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
async fn answers_a_whole_smtp_session_on_one_connection() {
    let server = TestServer::start().await;
    let mut stream = server.connect().await;
    let session = [
        ("CONNECT", "", "dunno"),
        ("EHLO", "", "dunno"),
        ("MAIL", "", "dunno"),
        ("RCPT", "alice@example.com", "ok"),
        ("RCPT", "greylist@example.com", "defer_if_permit 4.7.1 Greylisted, try again later"),
        ("RCPT", "blocked@example.com", "554 5.7.1 Sender blocked"),
        ("DATA", "", "dunno"),
        ("END-OF-MESSAGE", "", "dunno"),
    ];
    for (state, recipient, action) in session {
        stream.write_all(&postfix_request(state, recipient)).await.unwrap();
        expect_action(&mut stream, action).await;
    }
    drop(stream);
    let stats = server.stop().await;
    assert_eq!((stats.n_connections, stats.n_requests, stats.n_malformed), (1, 8, 0));
}

#[tokio::test]
async fn answers_pipelined_requests_in_order() {
    let server = TestServer::start().await;
    let mut stream = server.connect().await;
    let mut batch = Vec::new();
    for recipient in ["alice@example.com", "greylist@example.com", "bob@example.com"] {
        batch.extend(postfix_request("RCPT", recipient));
    }
    stream.write_all(&batch).await.unwrap();
    expect_action(&mut stream, "ok").await;
    expect_action(&mut stream, "defer_if_permit 4.7.1 Greylisted, try again later").await;
    expect_action(&mut stream, "ok").await;
}

#[tokio::test]
async fn assembles_requests_sent_byte_by_byte_with_crlf_line_ends() {
    let server = TestServer::start().await;
    let mut stream = server.connect().await;
    let wire = b"request=smtpd_access_policy\r\nprotocol_state=RCPT\r\nrecipient=greylist@example.com\r\n\r\n";
    for &byte in wire {
        stream.write_all(&[byte]).await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
    expect_action(&mut stream, "defer_if_permit 4.7.1 Greylisted, try again later").await;
}

#[tokio::test]
async fn hands_requests_with_missing_attributes_to_the_handler() {
    let server = TestServer::start().await;
    let mut stream = server.connect().await;
    // Only the request type: no state, no recipient. The handler has no opinion.
    stream.write_all(b"request=smtpd_access_policy\n\n").await.unwrap();
    expect_action(&mut stream, "dunno").await;
    // A RCPT request without recipient.
    stream.write_all(b"request=smtpd_access_policy\nprotocol_state=RCPT\nsender=a@b\n\n").await.unwrap();
    expect_action(&mut stream, "dunno").await;
    // Without client or sender: the handler sees them as missing, not as empty.
    stream
        .write_all(b"request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=echo@example.com\n\n")
        .await
        .unwrap();
    expect_action(&mut stream, "warn state=RCPT client=- sender=- recipient=\"echo@example.com\" lossy=").await;
    assert_eq!(server.n_decisions(), 3);
}

#[tokio::test]
async fn hands_values_that_are_not_utf8_to_the_handler_marked_lossy() {
    let server = TestServer::start().await;
    let mut stream = server.connect().await;
    stream
        .write_all(b"request=smtpd_access_policy\nprotocol_state=RCPT\nsender=b\xf6b@example.net\nhelo_name=\xff\nrecipient=echo@example.com\n\n")
        .await
        .unwrap();
    // The handler's text holds U+FFFD, which goes out as '?' under the printable-ASCII rule.
    expect_action(
        &mut stream,
        "warn state=RCPT client=- sender=\"b?b@example.net\" recipient=\"echo@example.com\" lossy=helo_name,sender",
    )
    .await;
}

#[tokio::test]
async fn closes_the_connection_on_garbage_without_answering() {
    let server = TestServer::start().await;
    let garbage: &[&[u8]] = &[
        b"this is not a policy request\n\n",
        b"request=smtpd_access_policy\nno equals sign here\n\n",
        b"=value\n\n",
        b"request=smtpd_access_policy\nbad name=x\n\n",
        b"request=smtpd_access_policy\nna\xffme=x\n\n",
        b"request=smtpd_access_policy\nsender=a@b\nsender=c@d\n\n",
        b"sender=a@b\nrecipient=c@d\n\n",
        b"request=something_else\n\n",
        b"request=smtpd_access_policy\nsize=huge\n\n",
        b"request=smtpd_access_policy\nrecipient_count=-1\n\n",
        b"\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n",
    ];
    for wire in garbage {
        let mut stream = server.connect().await;
        stream.write_all(wire).await.unwrap();
        expect_closed(&mut stream, Duration::from_secs(5)).await;
    }
    assert_eq!(server.n_decisions(), 0);
    let stats = server.stop().await;
    assert_eq!((stats.n_malformed, stats.n_requests), (garbage.len() as u64, 0));
}

#[tokio::test]
async fn answers_earlier_requests_then_closes_at_the_malformed_one() {
    let server = TestServer::start().await;
    let mut stream = server.connect().await;
    let mut wire = postfix_request("RCPT", "alice@example.com");
    wire.extend_from_slice(b"garbage\n\n");
    wire.extend(postfix_request("RCPT", "bob@example.com"));
    stream.write_all(&wire).await.unwrap();
    expect_action(&mut stream, "ok").await;
    expect_closed(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(server.n_decisions(), 1);
}

#[tokio::test]
async fn closes_oversized_requests_while_serving_other_clients() {
    let limits = Limits { max_line_len: 1000, max_attributes: 50, max_list_len: 8000 };
    let server = TestServer::start_with(ServerConfig { limits, ..ServerConfig::default() }).await;
    let mut other = server.connect().await;
    other.write_all(&postfix_request("RCPT", "alice@example.com")).await.unwrap();
    expect_action(&mut other, "ok").await;

    // A line that never ends: refused once it passes the limit, without waiting for its LF.
    let mut hostile = server.connect().await;
    let mut wire = b"request=smtpd_access_policy\nsender=".to_vec();
    wire.extend(std::iter::repeat_n(b'a', 5000));
    // The server may close while the write is still going; only the close matters.
    let _ = hostile.write_all(&wire).await;
    expect_closed(&mut hostile, Duration::from_secs(5)).await;

    // Too many attributes.
    let mut hostile = server.connect().await;
    let mut wire = b"request=smtpd_access_policy\n".to_vec();
    for attribute_idx in 0..60 {
        wire.extend(format!("x{attribute_idx}=1\n").as_bytes());
    }
    let _ = hostile.write_all(&wire).await;
    expect_closed(&mut hostile, Duration::from_secs(5)).await;

    // Lines each within the limit, adding up to too long a request.
    let mut hostile = server.connect().await;
    let mut wire = b"request=smtpd_access_policy\n".to_vec();
    for attribute_idx in 0..20 {
        wire.extend(format!("x{attribute_idx}={}\n", "v".repeat(900)).as_bytes());
    }
    let _ = hostile.write_all(&wire).await;
    expect_closed(&mut hostile, Duration::from_secs(5)).await;

    // The longest allowed line is still served.
    let mut largest = server.connect().await;
    let recipient = format!("{}@example.com", "r".repeat(1000 - "recipient=".len() - "@example.com".len()));
    let mut wire = b"request=smtpd_access_policy\nprotocol_state=RCPT\n".to_vec();
    wire.extend(format!("recipient={recipient}\n\n").as_bytes());
    largest.write_all(&wire).await.unwrap();
    expect_action(&mut largest, "ok").await;

    other.write_all(&postfix_request("RCPT", "greylist@example.com")).await.unwrap();
    expect_action(&mut other, "defer_if_permit 4.7.1 Greylisted, try again later").await;
    let stats = server.stop().await;
    assert_eq!(stats.n_malformed, 3);
}

#[tokio::test]
async fn a_panicking_decision_defers_and_closes_only_its_connection() {
    let server = TestServer::start().await;
    let mut bystander = server.connect().await;
    let mut stream = server.connect().await;
    stream.write_all(&postfix_request("RCPT", "alice@example.com")).await.unwrap();
    expect_action(&mut stream, "ok").await;
    stream.write_all(&postfix_request("RCPT", "panic@example.com")).await.unwrap();
    expect_action(&mut stream, "defer_if_permit Service temporarily unavailable").await;
    expect_closed(&mut stream, Duration::from_secs(5)).await;

    bystander.write_all(&postfix_request("RCPT", "alice@example.com")).await.unwrap();
    expect_action(&mut bystander, "ok").await;
    // Postfix reconnects, and the server still serves.
    let mut reconnected = server.connect().await;
    reconnected.write_all(&postfix_request("RCPT", "greylist@example.com")).await.unwrap();
    expect_action(&mut reconnected, "defer_if_permit 4.7.1 Greylisted, try again later").await;
    drop((bystander, reconnected));
    let stats = server.stop().await;
    assert_eq!((stats.n_panics, stats.n_requests), (1, 4));
}

#[tokio::test]
async fn a_decision_past_its_timeout_defers_and_keeps_the_connection() {
    let config = ServerConfig { decision_timeout: Duration::from_millis(200), ..ServerConfig::default() };
    let server = TestServer::start_with(config).await;
    let mut stream = server.connect().await;
    let started = Instant::now();
    stream.write_all(&postfix_request("RCPT", "slow@example.com")).await.unwrap();
    expect_action(&mut stream, "defer_if_permit Service temporarily unavailable").await;
    assert!(started.elapsed() >= Duration::from_millis(150), "answered before the decision timeout");
    stream.write_all(&postfix_request("RCPT", "alice@example.com")).await.unwrap();
    expect_action(&mut stream, "ok").await;
    drop(stream);
    let stats = server.stop().await;
    assert_eq!((stats.n_decision_timeouts, stats.n_requests), (1, 2));
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
                let greylisted = client_idx % 2 == 0;
                let recipient = if greylisted { "greylist@example.com" } else { "alice@example.com" };
                let request = PolicyRequest {
                    protocol_state: Some(ProtocolState::Rcpt),
                    recipient: Some(recipient.into()),
                    ..PolicyRequest::default()
                };
                for _ in 0..5 {
                    let action = client.ask(&request).await.unwrap();
                    assert_eq!(matches!(action, Action::DeferIfPermit(_)), greylisted, "{action}");
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
    first.write_all(&postfix_request("RCPT", "alice@example.com")).await.unwrap();
    expect_action(&mut first, "ok").await;

    let mut second = server.connect().await;
    second.write_all(&postfix_request("RCPT", "greylist@example.com")).await.unwrap();
    let mut byte = [0; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), second.read(&mut byte)).await;
    assert!(early.is_err(), "the second connection was served while the first held the only slot");

    drop(first);
    expect_action(&mut second, "defer_if_permit 4.7.1 Greylisted, try again later").await;
}

#[tokio::test]
async fn closes_idle_connections_silently() {
    let idle_timeout = Duration::from_millis(300);
    let server = TestServer::start_with(ServerConfig { idle_timeout, ..ServerConfig::default() }).await;
    let mut stream = server.connect().await;
    stream.write_all(&postfix_request("RCPT", "alice@example.com")).await.unwrap();
    expect_action(&mut stream, "ok").await;
    let idle_since = Instant::now();
    expect_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(idle_since.elapsed() >= idle_timeout - Duration::from_millis(50), "closed too early");
}

#[tokio::test]
async fn closes_a_slowloris_peer_at_the_request_timeout() {
    let request_timeout = Duration::from_millis(500);
    let config = ServerConfig { request_timeout, idle_timeout: Duration::from_secs(60), ..ServerConfig::default() };
    let server = TestServer::start_with(config).await;
    let mut stream = server.connect().await;
    let (mut reader, mut writer) = stream.split();
    let started = Instant::now();
    // One byte every 50 ms: each read arrives well within any per-read timeout, the request never ends.
    let drip = async {
        for &byte in b"request=smtpd_access_policy\nsender=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let mut rest = Vec::new();
    let closed = async {
        tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut rest)).await.unwrap().unwrap_or(0)
    };
    let ((), _) = tokio::join!(drip, closed);
    assert_eq!(String::from_utf8_lossy(&rest), "");
    let elapsed = started.elapsed();
    assert!(elapsed >= request_timeout - Duration::from_millis(50), "closed too early: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "closed only when the drip ended: {elapsed:?}");
    assert_eq!(server.n_decisions(), 0);
}

#[tokio::test]
async fn shuts_down_gracefully() {
    let server = TestServer::start().await;
    let mut idle = server.connect().await;
    idle.write_all(&postfix_request("RCPT", "alice@example.com")).await.unwrap();
    expect_action(&mut idle, "ok").await;

    // A request begun before shutdown is still answered once it is complete.
    let mut midway = server.connect().await;
    let wire = postfix_request("RCPT", "greylist@example.com");
    midway.write_all(&wire[..100]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let path = server.path.clone();
    let stop = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    midway.write_all(&wire[100..]).await.unwrap();
    expect_action(&mut midway, "defer_if_permit 4.7.1 Greylisted, try again later").await;
    expect_closed(&mut midway, Duration::from_secs(5)).await;
    expect_closed(&mut idle, Duration::from_secs(5)).await;

    let stats = stop.await.unwrap();
    assert_eq!((stats.n_connections, stats.n_requests), (2, 2));
    assert!(!path.exists(), "the socket file outlived the server");
}

#[tokio::test]
async fn binds_with_the_given_mode_and_replaces_only_stale_sockets() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy");
    let mode_of = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;

    // A socket left behind by a dead server.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let listener = Listener::bind_unix(&path, 0o660).await.unwrap();
    assert_eq!(mode_of(&path), 0o660);
    assert_eq!(listener.to_string(), format!("unix:{}", path.display()));

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
    assert_eq!(leftovers, ["policy"]);
}

#[tokio::test]
async fn serves_on_tcp_and_the_client_reads_every_action() {
    let listener = Listener::bind_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let address = listener.tcp_address().unwrap();
    assert_eq!(listener.to_string(), format!("inet:{address}"));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(listener, Arc::new(FakeHandler::default()), ServerConfig::default(), async {
        let _ = stopped.await;
    }));
    let mut client = Client::connect_tcp(address).await.unwrap();
    let ask = |recipient: Option<&str>| PolicyRequest {
        protocol_state: Some(ProtocolState::Rcpt),
        recipient: recipient.map(str::to_owned),
        ..PolicyRequest::default()
    };
    assert_eq!(client.ask(&ask(Some("alice@example.com"))).await.unwrap(), Action::Ok);
    assert_eq!(client.ask(&ask(None)).await.unwrap(), Action::Dunno);
    assert_eq!(
        client.ask(&ask(Some("blocked@example.com"))).await.unwrap(),
        Action::Code(CodeReply::new(554, "5.7.1 Sender blocked").unwrap())
    );
    let error = client.ask(&ask(Some("bad\nrecipient"))).await.unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::InvalidRequest(_)), "{error}");
    // The refused request was never sent, so the connection is still in step.
    assert_eq!(
        client.ask(&ask(Some("greylist@example.com"))).await.unwrap(),
        Action::DeferIfPermit("4.7.1 Greylisted, try again later".into())
    );
    let error = client.ask(&ask(Some("panic@example.com"))).await.map(|_| ()).err();
    assert!(error.is_none(), "the panic answer is a normal reply");
    let error = client.ask(&ask(Some("alice@example.com"))).await.unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::UnexpectedEof | ErrorKind::Io), "{error}");
    stop.send(()).unwrap();
    let stats = tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    assert_eq!((stats.n_requests, stats.n_panics), (5, 1));
}

#[tokio::test]
async fn the_client_reports_a_reply_without_action() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let fake_server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = vec![0; 64];
        let _ = stream.read(&mut request).await.unwrap();
        stream.write_all(b"result=ok\n\n").await.unwrap();
        stream
    });
    let mut client = Client::connect_unix(&path).await.unwrap();
    let error = client.ask(&PolicyRequest::default()).await.unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::MissingAction, "{error}");
    drop(fake_server.await.unwrap());
}

mod smtpd {
    //! Postfix's own policy client: its smtpd, run stand-alone (`-S`) as user `postfix` on one end of a socket
    //! pair, with a private configuration whose recipient restrictions ask the server, as couchmail's will.
    //! No master runs: the one service smtpd needs before the policy, trivial-rewrite, is started per connection
    //! by the test, and no recipient is accepted, so no queue file is ever written.

    use std::os::fd::OwnedFd;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::process::Stdio;

    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::UnixDatagram;

    use super::*;

    const SMTPD: &str = "/usr/lib/postfix/sbin/smtpd";
    const TRIVIAL_REWRITE: &str = "/usr/lib/postfix/sbin/trivial-rewrite";

    /// Serves one smtpd connection to trivial-rewrite: greets as the master-run service would, then hands each
    /// request to a trivial-rewrite of its own and passes its reply back.
    async fn serve_rewrite(connection: UnixStream, dir: PathBuf, (uid, gid): (u32, u32)) {
        let mut connection = BufReader::new(connection);
        if connection.get_mut().write_all(b"protocol\0trivial_rewrite_protocol\0\0").await.is_err() {
            return;
        }
        while let Some(request) = read_attribute_list(&mut connection).await {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
            let theirs = OwnedFd::from(theirs);
            let mut rewriter = tokio::process::Command::new(TRIVIAL_REWRITE)
                .args(["-S", "-d"])
                .uid(uid)
                .gid(gid)
                .env("MAIL_CONFIG", &dir)
                .stdin(Stdio::from(theirs.try_clone().unwrap()))
                .stdout(Stdio::from(theirs))
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            ours.set_nonblocking(true).unwrap();
            let mut ours = BufReader::new(UnixStream::from_std(ours).unwrap());
            ours.get_mut().write_all(&request).await.unwrap();
            let Some(reply) = read_attribute_list(&mut ours).await else { return };
            let _ = rewriter.wait().await;
            if connection.get_mut().write_all(&reply).await.is_err() {
                return;
            }
        }
    }

    /// Reads one attribute list of Postfix's internal protocol over unix sockets: `name\0value\0` pairs ended by
    /// an empty name. `None` at the end of the stream.
    async fn read_attribute_list(reader: &mut BufReader<UnixStream>) -> Option<Vec<u8>> {
        let mut list = Vec::new();
        let mut expect_name = true;
        loop {
            let token_start_idx = list.len();
            if reader.read_until(0, &mut list).await.ok()? == 0 || list.last() != Some(&0) {
                return None;
            }
            if expect_name && list.len() - token_start_idx == 1 {
                return Some(list);
            }
            expect_name = !expect_name;
        }
    }

    /// The uid and gid of Postfix's `postfix` user, which smtpd drops to; `None` when smtpd cannot run here.
    fn postfix_user() -> Option<(u32, u32)> {
        if !Path::new(SMTPD).exists() {
            println!("note: {SMTPD} is absent (install Debian's postfix); skipping the smtpd test");
            return None;
        }
        // /proc/self belongs to the effective user: smtpd must start as root to drop to its own user.
        if std::fs::metadata("/proc/self").map(|metadata| metadata.uid()).ok() != Some(0) {
            println!("note: not running as root, so smtpd cannot drop to its user; skipping the smtpd test");
            return None;
        }
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        let fields: Vec<&str> = passwd.lines().find(|line| line.starts_with("postfix:"))?.split(':').collect();
        Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
    }

    /// An smtpd session: the process (killed on drop), our end of its socket, and what Postfix logged.
    struct Session {
        _child: tokio::process::Child,
        stream: BufReader<UnixStream>,
        log: Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl Session {
        /// Starts smtpd with a configuration in `dir` that asks the policy server at `dir/policy`.
        async fn start(dir: &Path, (uid, gid): (u32, u32)) -> Session {
            let spool = dir.join("spool");
            std::fs::create_dir_all(spool.join("public")).unwrap();
            std::fs::create_dir_all(dir.join("data")).unwrap();
            for owned in [spool.clone(), spool.join("public"), dir.join("data")] {
                std::os::unix::fs::chown(&owned, Some(uid), Some(gid)).unwrap();
            }
            let main_cf = format!(
                "compatibility_level = 3.6\n\
                 queue_directory = {spool}\n\
                 data_directory = {data}\n\
                 mail_owner = postfix\n\
                 myhostname = mx.example.com\n\
                 mydestination =\n\
                 local_recipient_maps =\n\
                 alias_maps =\n\
                 alias_database =\n\
                 notify_classes =\n\
                 maillog_file = {dir}/maillog\n\
                 maillog_file_prefixes = {dir}\n\
                 relay_domains = example.com\n\
                 smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service unix:{dir}/policy, permit\n",
                spool = spool.display(),
                data = dir.join("data").display(),
                dir = dir.display(),
            );
            let main_cf_path = dir.join("main.cf");
            std::fs::write(&main_cf_path, main_cf).unwrap();
            // Postfix waits for a main.cf modified in the last second or so to settle; an old one is read at once.
            std::fs::File::options()
                .write(true)
                .open(&main_cf_path)
                .unwrap()
                .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
                .unwrap();

            // Postfix daemons log through postlogd's datagram socket when maillog_file is set; collect it here.
            let log_socket = UnixDatagram::bind(spool.join("public/postlog")).unwrap();
            std::fs::set_permissions(spool.join("public/postlog"), std::fs::Permissions::from_mode(0o666)).unwrap();
            let log = Arc::new(std::sync::Mutex::new(Vec::new()));
            let log_lines = log.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0; 65536];
                while let Ok(n_read) = log_socket.recv(&mut buffer).await {
                    log_lines.lock().unwrap().push(String::from_utf8_lossy(&buffer[..n_read]).into_owned());
                }
            });

            // smtpd asks trivial-rewrite to canonicalise and resolve addresses. Without a master, trivial-rewrite
            // runs stand-alone (`-S`), where it serves one request, exits, and sends no protocol greeting; so the
            // test accepts smtpd's connections itself, greets, and runs one trivial-rewrite per request.
            std::fs::create_dir_all(spool.join("private")).unwrap();
            std::fs::set_permissions(spool.join("private"), std::fs::Permissions::from_mode(0o755)).unwrap();
            let rewrite_listener = tokio::net::UnixListener::bind(spool.join("private/rewrite")).unwrap();
            std::fs::set_permissions(spool.join("private/rewrite"), std::fs::Permissions::from_mode(0o666)).unwrap();
            let rewrite_dir = dir.to_path_buf();
            tokio::spawn(async move {
                while let Ok((connection, _)) = rewrite_listener.accept().await {
                    tokio::spawn(serve_rewrite(connection, rewrite_dir.clone(), (uid, gid)));
                }
            });

            let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
            let theirs = OwnedFd::from(theirs);
            // Started as `postfix` itself: smtpd on standard input run by any other user is `sendmail -bs`, for
            // which Postfix skips every restriction.
            let child = tokio::process::Command::new(SMTPD)
                .args(["-S", "-d"])
                .uid(uid)
                .gid(gid)
                .env("MAIL_CONFIG", dir)
                .stdin(Stdio::from(theirs.try_clone().unwrap()))
                .stdout(Stdio::from(theirs))
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            ours.set_nonblocking(true).unwrap();
            let stream = BufReader::new(UnixStream::from_std(ours).unwrap());
            let mut session = Session { _child: child, stream, log };
            let greeting = session.reply().await;
            assert!(greeting.starts_with("220 "), "{greeting}");
            session
        }

        /// Reads one (possibly multi-line) SMTP reply, within ten seconds.
        async fn reply(&mut self) -> String {
            let mut reply = String::new();
            loop {
                let mut line = String::new();
                let read = tokio::time::timeout(Duration::from_secs(10), self.stream.read_line(&mut line)).await;
                let n_read = read.unwrap_or_else(|_| panic!("smtpd did not answer; it logged: {:?}", self.log));
                assert!(n_read.unwrap() > 0, "smtpd closed the connection; it logged: {:?}", self.log);
                reply.push_str(&line);
                if line.as_bytes().get(3) != Some(&b'-') {
                    return reply.trim_end().to_owned();
                }
            }
        }

        async fn command(&mut self, command: &str) -> String {
            self.stream.get_mut().write_all(format!("{command}\r\n").as_bytes()).await.unwrap();
            self.reply().await
        }
    }

    #[tokio::test]
    async fn postfix_smtpd_reads_our_actions_and_we_read_its_requests() {
        let Some(postfix) = postfix_user() else { return };
        let dir = tempfile::tempdir().unwrap();
        // smtpd runs as `postfix` and must reach the socket.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let config_dir = dir.path().to_path_buf();
        let server = TestServer::start_in(dir, 0o666, ServerConfig::default()).await;
        let mut session = Session::start(&config_dir, postfix).await;

        let ehlo = session.command("EHLO client.example").await;
        assert!(ehlo.starts_with("250-mx.example.com"), "{ehlo}");
        let mail = session.command("MAIL FROM:<bob@example.net> SIZE=1234").await;
        assert!(mail.starts_with("250 2.1.0"), "{mail}");
        let greylisted = session.command("RCPT TO:<greylist@example.com>").await;
        assert!(greylisted.starts_with("450 4.7.1 <greylist@example.com>"), "{greylisted}");
        assert!(greylisted.ends_with("Greylisted, try again later"), "{greylisted}");
        let blocked = session.command("RCPT TO:<blocked@example.com>").await;
        assert!(blocked.starts_with("554 5.7.1 <blocked@example.com>"), "{blocked}");
        assert!(blocked.ends_with("Sender blocked"), "{blocked}");
        // A panic defers, and closes the connection: Postfix reconnects for the next request.
        let panicked = session.command("RCPT TO:<panic@example.com>").await;
        assert!(panicked.starts_with("450 4.7.1 "), "{panicked}");
        assert!(panicked.ends_with("Service temporarily unavailable"), "{panicked}");
        let again = session.command("RCPT TO:<greylist@example.com>").await;
        assert!(again.starts_with("450 4.7.1 "), "{again}");
        // Not our domain: Postfix refuses it before asking.
        let relay = session.command("RCPT TO:<someone@elsewhere.example>").await;
        assert!(relay.starts_with("554 5.7.1 "), "{relay}");
        let quit = session.command("QUIT").await;
        assert!(quit.starts_with("221 "), "{quit}");

        let requests = server.handler.requests.lock().unwrap().clone();
        let recipients: Vec<_> = requests.iter().map(|request| request.recipient.clone().unwrap()).collect();
        assert_eq!(
            recipients,
            ["greylist@example.com", "blocked@example.com", "panic@example.com", "greylist@example.com"]
        );
        for request in &requests {
            assert_eq!(request.protocol_state, Some(ProtocolState::Rcpt));
            assert_eq!(request.protocol_name.as_deref(), Some("ESMTP"));
            assert_eq!(request.helo_name.as_deref(), Some("client.example"));
            assert_eq!(request.sender.as_deref(), Some("bob@example.net"));
            assert_eq!(request.size, Some(1234));
            assert_eq!(request.recipient_count, Some(0));
            assert_eq!(request.sasl_login(), None);
            assert!(request.client_address.is_some(), "{request:?}");
            // Postfix 3.7 sends 29 attributes: the request type, 16 with a field, and these 12.
            let others: Vec<&str> = request.other.keys().map(String::as_str).collect();
            assert_eq!(
                others,
                [
                    "ccert_fingerprint",
                    "ccert_issuer",
                    "ccert_pubkey_fingerprint",
                    "ccert_subject",
                    "encryption_cipher",
                    "encryption_keysize",
                    "encryption_protocol",
                    "etrn_domain",
                    "policy_context",
                    "server_address",
                    "server_port",
                    "stress"
                ]
            );
            assert!(request.lossy.is_empty());
        }
        // Every request about one message shares its instance.
        let instance = requests[0].instance.clone();
        assert!(instance.as_deref().is_some_and(|instance| !instance.is_empty()), "{instance:?}");
        assert!(requests.iter().all(|request| request.instance == instance));
        let log = session.log.lock().unwrap().clone();
        assert!(log.iter().all(|line| !line.contains("warning")), "smtpd warned: {log:#?}");
        drop(session);
        let stats = server.stop().await;
        assert_eq!((stats.n_requests, stats.n_panics, stats.n_malformed), (4, 1, 0));
        assert_eq!(stats.n_connections, 2, "Postfix reconnected once, after the panic");
    }
}
