//! The API and the web UI over HTTPS ([`serve_https`]): a certificate made by rcgen for 127.0.0.1, written as
//! PEM files as `couchmail up` has them, a reqwest client that trusts it, and raw sockets for what a real client
//! would not do (plain HTTP to the TLS port, a TLS 1.1 hello, a handshake that never comes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use couchmail_directory::Directory;
use couchmail_index::Index;
use couchmail_model::{Document, Mailbox, Password, PasswordHash};
use couchmail_testkit::{TempStore, fixtures};
use couchmail_web::{ApiState, HttpsConfig, UiConfig, serve_https};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// A server on HTTPS with a store holding one mailbox, `alice@example.com` with password [`PASSWORD`].
struct HttpsServer {
    addr: SocketAddr,
    client: reqwest::Client,
    _store: TempStore,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    stopped: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

const PASSWORD: &str = "correct horse battery";

impl HttpsServer {
    async fn start() -> HttpsServer {
        HttpsServer::start_with(|https| https).await
    }

    /// A server whose TLS settings are `adjust`ed first.
    async fn start_with(adjust: impl FnOnce(HttpsConfig) -> HttpsConfig) -> HttpsServer {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_file, certified.cert.pem()).unwrap();
        std::fs::write(&key_file, certified.signing_key.serialize_pem()).unwrap();
        let https = adjust(HttpsConfig::from_pem_files(&cert_file, &key_file).unwrap());

        let store = TempStore::new().await;
        let shared: Arc<dyn couchmail_store::Store> = store.store.clone();
        let directory = Directory::new(shared.clone());
        directory.create(&fixtures::domain("example.com")).await.unwrap();
        let hash = PasswordHash::new(&Password::new(PASSWORD.to_owned()).unwrap());
        let mailbox = Mailbox {
            address: fixtures::address("alice@example.com"),
            name: String::new(),
            password: Some(hash),
            active: true,
            quota_bytes: None,
            roles: Vec::new(),
            sieve_active: None,
            policy: Default::default(),
        };
        directory.create(&Document::Mailbox(mailbox)).await.unwrap();
        let index = Arc::new(Index::default());
        let (stop_follower, follower_stopped) = oneshot::channel::<()>();
        tokio::spawn(couchmail_index::follow(shared, index.clone(), async move {
            let _ = follower_stopped.await;
        }));
        index.wait_until(|snapshot| snapshot.is_ready(), Duration::from_secs(10)).await.unwrap();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stop_signal) = oneshot::channel::<()>();
        let state = ApiState { directory, index, stack: None };
        // The UI is configured as `up` configures it: `secure_cookies` off, so `Secure` must come from TLS.
        let stopped = tokio::spawn(async move {
            let served = serve_https(listener, state, UiConfig::default(), https, async move {
                let _ = stop_signal.await;
            })
            .await;
            let _ = stop_follower.send(());
            served
        });
        HttpsServer {
            addr,
            client: client_trusting(certified.cert.der().clone()),
            _store: store,
            _dir: dir,
            stop: Some(stop),
            stopped: Some(stopped),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }
}

/// A reqwest client (rustls, ring) that trusts `certificate` only and does not follow redirects.
fn client_trusting(certificate: CertificateDer<'static>) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Everything the server sends on a raw connection after `request`, until it closes (at most 5 s).
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "the server kept the connection open; it sent {reply:02x?}");
    reply
}

/// The value of the `Set-Cookie` header for cookie `name`.
fn set_cookie(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {:?}", response.headers()))
        .to_owned()
}

#[tokio::test]
async fn health_answers_over_https() {
    let server = HttpsServer::start().await;
    let response = server.client.get(server.url("/api/v1/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["index_ready"], true, "{body}");
}

#[tokio::test]
async fn a_login_over_https_sets_secure_cookies() {
    let server = HttpsServer::start().await;
    let login_page = server.client.get(server.url("/login")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(login_page.status(), 200);
    let pre_session = set_cookie(&login_page, "couchmail_csrf");
    assert!(pre_session.contains("; Secure"), "{pre_session}");
    let pre_session_pair = pre_session.split(';').next().unwrap().to_owned();
    let page = login_page.text().await.unwrap();
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).unwrap() + marker.len();
    let csrf = &page[start..start + page[start..].find('"').unwrap()];

    let form = format!("csrf={csrf}&address=alice%40example.com&password={}", PASSWORD.replace(' ', "+"));
    let response = server
        .client
        .post(server.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", format!("https://{}", server.addr))
        .header("cookie", pre_session_pair)
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "{:?}", response.headers());
    let session = set_cookie(&response, "couchmail_session");
    assert!(session.contains("; Secure"), "{session}");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict"), "{session}");
}

#[tokio::test]
async fn plain_http_to_the_tls_port_gets_no_http_answer() {
    let server = HttpsServer::start().await;
    let reply = raw_exchange(server.addr, b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert!(!reply.starts_with(b"HTTP/"), "an HTTP answer: {}", String::from_utf8_lossy(&reply));
    // At most a TLS alert record (content type 21), then the connection is closed.
    assert!(reply.is_empty() || reply[0] == 0x15, "{reply:02x?}");
}

/// A ClientHello offering TLS 1.1 only (client_version 3.2, no supported_versions extension) with suites TLS 1.1
/// knows.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version: TLS 1.1
    body.extend_from_slice(&[0x5a; 32]); // random
    body.push(0); // no session id
    let suites: [u16; 4] = [0xc013, 0xc014, 0x002f, 0x0035];
    body.extend_from_slice(&u16::try_from(suites.len() * 2).unwrap().to_be_bytes());
    for suite in suites {
        body.extend_from_slice(&suite.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null only
    // signature_algorithms (ECDSA P-256, RSA-PSS and PKCS#1 with SHA-256), which rustls needs before it looks at
    // the version: without it the refusal would be a handshake_failure for another reason.
    let signature_algorithms = [0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01];
    body.extend_from_slice(&u16::try_from(signature_algorithms.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&signature_algorithms);
    let mut handshake = vec![1]; // ClientHello
    handshake.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(handshake.len()).unwrap().to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test]
async fn a_client_offering_only_tls_1_1_is_refused() {
    let server = HttpsServer::start().await;
    let reply = raw_exchange(server.addr, &tls11_client_hello()).await;
    // An alert record (21) holding a fatal (2) protocol_version (70) alert, and no ServerHello (a record of 22).
    assert!(reply.len() >= 7, "{reply:02x?}");
    assert_eq!((reply[0], reply[5], reply[6]), (0x15, 2, 70), "{reply:02x?}");
    assert!(!reply.contains(&0x16), "{reply:02x?}");
}

#[tokio::test]
async fn a_stalled_handshake_holds_up_nobody_and_is_dropped() {
    let server = HttpsServer::start_with(|mut https| {
        https.handshake_timeout = Duration::from_secs(1);
        https
    })
    .await;
    // One client connects and says nothing, another sends half a record header.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut halfway = TcpStream::connect(server.addr).await.unwrap();
    halfway.write_all(&[0x16, 0x03]).await.unwrap();
    let started = Instant::now();
    let response = server.client.get(server.url("/api/v1/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(900), "waited {:?} behind the stalled ones", started.elapsed());
    // Both are disconnected once the handshake deadline passes.
    for stream in [&mut silent, &mut halfway] {
        let mut buffer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buffer)).await;
        assert!(read.is_ok(), "a stalled handshake was kept past its deadline");
    }
    assert!(started.elapsed() >= Duration::from_millis(900), "dropped before the deadline: {:?}", started.elapsed());
}

#[tokio::test]
async fn handshakes_beyond_the_limit_are_closed_at_once() {
    let server = HttpsServer::start_with(|mut https| {
        https.max_handshakes = 1;
        https
    })
    .await;
    let _silent = TcpStream::connect(server.addr).await.unwrap();
    // Wait until the server has taken the silent connection, then the next one finds no room.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reply = raw_exchange(server.addr, &[]).await;
    assert!(reply.is_empty(), "{reply:02x?}");
}

#[tokio::test]
async fn shutdown_finishes_and_frees_the_port() {
    let mut server = HttpsServer::start().await;
    let response = server.client.get(server.url("/api/v1/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // The client's idle keep-alive connection must not keep the server from stopping.
    server.stop.take().unwrap().send(()).unwrap();
    let served = tokio::time::timeout(Duration::from_secs(5), server.stopped.take().unwrap()).await;
    served.expect("the server did not stop within 5 s").unwrap().unwrap();
    tokio::net::TcpListener::bind(server.addr).await.expect("the port is still held after the server stopped");
}
