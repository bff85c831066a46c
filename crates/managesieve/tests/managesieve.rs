//! The server driven with raw bytes over TCP on 127.0.0.1, against an in-memory backend: every command, the
//! response codes, STARTTLS, authentication failures and throttling, bad commands and oversized literals, timeouts
//! and shutdown.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly on an unexpected error")]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use couchmail_managesieve::{AuthOutcome, Backend, BackendError, ScriptEntry, ServerConfig, TlsAcceptor};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Per user: scripts by name, and the active one.
type UserScripts = HashMap<String, (BTreeMap<String, String>, Option<String>)>;

/// Users: alice (password "secret"), bob (disabled), down (the index is not ready).
#[derive(Default)]
struct FakeBackend {
    scripts: Mutex<UserScripts>,
    n_auth_calls: Mutex<u32>,
}

impl Backend for FakeBackend {
    async fn authenticate(&self, user: &str, password: &str) -> AuthOutcome {
        *self.n_auth_calls.lock().unwrap() += 1;
        match (user.to_ascii_lowercase().as_str(), password) {
            ("alice@example.com", "secret") => AuthOutcome::Authenticated("alice@example.com".into()),
            ("bob@example.com", "secret") => AuthOutcome::Disabled,
            ("down@example.com", _) => AuthOutcome::TryLater,
            _ => AuthOutcome::Failed,
        }
    }

    async fn list(&self, user: &str) -> Result<Vec<ScriptEntry>, BackendError> {
        let scripts = self.scripts.lock().unwrap();
        let Some((scripts, active)) = scripts.get(user) else { return Ok(Vec::new()) };
        Ok(scripts
            .keys()
            .map(|name| ScriptEntry { name: name.clone(), active: active.as_ref() == Some(name) })
            .collect())
    }

    async fn get(&self, user: &str, name: &str) -> Result<String, BackendError> {
        let scripts = self.scripts.lock().unwrap();
        scripts
            .get(user)
            .and_then(|(scripts, _)| scripts.get(name).cloned())
            .ok_or_else(|| BackendError::NonExistent(format!("There is no script {name:?}.")))
    }

    async fn put(&self, user: &str, name: &str, script: &str) -> Result<(), BackendError> {
        self.check(user, script).await?;
        if name.contains('/') {
            return Err(BackendError::Refused("sieve script name may not contain `/`".into()));
        }
        let mut scripts = self.scripts.lock().unwrap();
        scripts.entry(user.into()).or_default().0.insert(name.into(), script.into());
        Ok(())
    }

    async fn check(&self, _user: &str, script: &str) -> Result<(), BackendError> {
        if script.contains("store-down") {
            return Err(BackendError::TryLater("store down".into()));
        }
        match script.contains("bogus") {
            true => Err(BackendError::InvalidScript(
                "line 1: error: unknown command 'bogus'.\nline 1: error: 1 error".into(),
            )),
            false => Ok(()),
        }
    }

    async fn set_active(&self, user: &str, name: Option<&str>) -> Result<(), BackendError> {
        let mut scripts = self.scripts.lock().unwrap();
        let (scripts, active) = scripts.entry(user.into()).or_default();
        if let Some(name) = name
            && !scripts.contains_key(name)
        {
            return Err(BackendError::NonExistent(format!("There is no script {name:?}.")));
        }
        *active = name.map(str::to_owned);
        Ok(())
    }

    async fn delete(&self, user: &str, name: &str) -> Result<(), BackendError> {
        let mut scripts = self.scripts.lock().unwrap();
        let (scripts, active) = scripts.entry(user.into()).or_default();
        if active.as_deref() == Some(name) {
            return Err(BackendError::Active("The active script cannot be deleted.".into()));
        }
        scripts.remove(name).map(drop).ok_or_else(|| BackendError::NonExistent(format!("There is no script {name:?}.")))
    }

    async fn rename(&self, user: &str, old: &str, new: &str) -> Result<(), BackendError> {
        let mut scripts = self.scripts.lock().unwrap();
        let (scripts, active) = scripts.entry(user.into()).or_default();
        if scripts.contains_key(new) {
            return Err(BackendError::AlreadyExists(format!("A script {new:?} exists already.")));
        }
        let script =
            scripts.remove(old).ok_or_else(|| BackendError::NonExistent(format!("There is no script {old:?}.")))?;
        scripts.insert(new.into(), script);
        if active.as_deref() == Some(old) {
            *active = Some(new.into());
        }
        Ok(())
    }
}

fn test_config() -> ServerConfig {
    ServerConfig {
        auth_failure_delay: Duration::from_millis(10),
        allow_plaintext_auth: true,
        max_scripts: 3,
        max_script_bytes: 1024,
        max_line_len: 512,
        ..ServerConfig::default()
    }
}

struct Server {
    address: SocketAddr,
    backend: Arc<FakeBackend>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(config: ServerConfig, tls: Option<TlsAcceptor>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let backend = Arc::new(FakeBackend::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(couchmail_managesieve::run(listener, backend.clone(), tls, config, async {
            drop(stopped.await);
        }));
        Server { address, backend, stop: Some(stop), task }
    }

    async fn connect(&self) -> Client<TcpStream> {
        let mut client = Client::new(TcpStream::connect(self.address).await.unwrap());
        let greeting = client.response().await;
        assert!(greeting.last().unwrap().starts_with("OK"), "{greeting:?}");
        client
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.task).await.unwrap().unwrap();
    }
}

struct Client<S> {
    stream: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    fn new(stream: S) -> Client<S> {
        Client { stream: BufReader::new(stream) }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.get_mut().write_all(bytes).await.unwrap();
    }

    /// The lines of one response, literals inlined, up to and including the OK/NO/BYE line.
    async fn response(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(5), self.line()).await.expect("a response in time");
            let done =
                ["OK", "NO", "BYE"].iter().any(|status| line == *status || line.starts_with(&format!("{status} ")));
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    async fn line(&mut self) -> String {
        let mut text = String::new();
        loop {
            let mut line = Vec::new();
            self.stream.read_until(b'\n', &mut line).await.unwrap();
            assert!(line.ends_with(b"\r\n"), "line not ended by CRLF: {:?}", String::from_utf8_lossy(&line));
            line.truncate(line.len() - 2);
            text.push_str(&String::from_utf8(line).unwrap());
            // A literal at the end: read its octets, then the rest of the line.
            let Some(open) = text.rfind('{') else { return text };
            let Some(len) = text.strip_suffix('}').and_then(|head| head[open + 1..].parse::<usize>().ok()) else {
                return text;
            };
            let mut octets = vec![0; len];
            self.stream.read_exact(&mut octets).await.unwrap();
            text.truncate(open);
            text.push_str(&format!("<{}>", String::from_utf8(octets).unwrap()));
        }
    }

    async fn command(&mut self, command: &str) -> Vec<String> {
        self.send(format!("{command}\r\n").as_bytes()).await;
        self.response().await
    }

    async fn status(&mut self, command: &str) -> String {
        self.command(command).await.pop().unwrap()
    }

    async fn login(&mut self) {
        let status = self.status(&format!("AUTHENTICATE \"PLAIN\" \"{}\"", plain("alice@example.com", "secret"))).await;
        assert_eq!(status, "OK \"Logged in.\"");
    }

    async fn is_closed(&mut self) -> bool {
        let mut byte = [0; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut byte)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

fn plain(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

#[tokio::test]
async fn greeting_and_capability() {
    let server = Server::start(test_config(), None).await;
    let mut client = Client::new(TcpStream::connect(server.address).await.unwrap());
    let greeting = client.response().await;
    assert_eq!(greeting[0], "\"IMPLEMENTATION\" \"CouchMail ManageSieve\"");
    assert!(greeting.iter().any(|line| line.starts_with("\"SIEVE\" \"fileinto reject envelope")), "{greeting:?}");
    assert!(greeting.contains(&"\"SASL\" \"PLAIN\"".to_owned()), "{greeting:?}");
    assert!(greeting.contains(&"\"VERSION\" \"1.0\"".to_owned()), "{greeting:?}");
    assert!(greeting.contains(&"\"MAXREDIRECTS\" \"4\"".to_owned()), "{greeting:?}");
    assert!(!greeting.iter().any(|line| line.contains("STARTTLS")), "no TLS configured: {greeting:?}");
    assert_eq!(greeting.last().unwrap(), "OK \"CouchMail ManageSieve ready.\"");
    let capability = client.command("capability").await;
    assert_eq!(capability[..capability.len() - 1], greeting[..greeting.len() - 1]);
    assert_eq!(client.status("NOOP").await, "OK \"Done.\"");
    assert_eq!(client.status("NOOP \"STARTTLS-SYNC-42\"").await, "OK (TAG \"STARTTLS-SYNC-42\") \"Done.\"");
    assert_eq!(client.status("LOGOUT").await, "OK \"Logout completed.\"");
    assert!(client.is_closed().await);
    server.stop().await;
}

#[tokio::test]
async fn authentication_with_initial_response_continuation_and_failures() {
    let server = Server::start(test_config(), None).await;
    let mut client = server.connect().await;
    assert_eq!(client.status("LISTSCRIPTS").await, "NO \"Authenticate first.\"");
    assert_eq!(
        client.status("AUTHENTICATE \"LOGIN\"").await,
        "NO \"Unsupported SASL mechanism \\\"LOGIN\\\"; use PLAIN.\""
    );
    // Continuation: the server sends an empty challenge, the client answers with a literal.
    client.send(b"AUTHENTICATE \"PLAIN\"\r\n").await;
    assert_eq!(client.line().await, "\"\"");
    let response = plain("Alice@Example.com", "secret");
    client.send(format!("{{{}+}}\r\n{response}\r\n", response.len()).as_bytes()).await;
    assert_eq!(client.response().await, ["OK \"Logged in.\""]);
    assert_eq!(client.status("AUTHENTICATE \"PLAIN\" \"x\"").await, "NO \"Already authenticated.\"");
    let capability = client.command("CAPABILITY").await;
    assert!(capability.contains(&"\"OWNER\" \"alice@example.com\"".to_owned()), "{capability:?}");
    assert!(capability.contains(&"\"SASL\" \"\"".to_owned()), "{capability:?}");
    assert_eq!(client.status("UNAUTHENTICATE").await, "OK \"Unauthenticate completed.\"");
    assert_eq!(client.status("LISTSCRIPTS").await, "NO \"Authenticate first.\"");

    // A cancelled exchange.
    client.send(b"AUTHENTICATE \"PLAIN\"\r\n").await;
    assert_eq!(client.line().await, "\"\"");
    assert_eq!(client.command("\"*\"").await, ["NO \"Authentication cancelled.\""]);
    // Disabled and temporarily unknown users.
    assert_eq!(
        client.status(&format!("AUTHENTICATE \"PLAIN\" \"{}\"", plain("down@example.com", "x"))).await,
        "NO (TRYLATER) \"Temporary authentication failure; try again later.\""
    );
    assert_eq!(
        client.status(&format!("AUTHENTICATE \"PLAIN\" \"{}\"", plain("bob@example.com", "secret"))).await,
        "NO \"Authentication failed.\""
    );
    assert_eq!(
        client.status(&format!("AUTHENTICATE \"PLAIN\" \"{}\"", plain("alice@example.com", "wrong"))).await,
        "NO \"Authentication failed.\""
    );
    // The third failure on one connection ends it.
    assert_eq!(
        client.status("AUTHENTICATE \"PLAIN\" \"bm90IHBsYWlu\"").await,
        "BYE \"Too many failed authentications.\""
    );
    assert!(client.is_closed().await);
    server.stop().await;
}

#[tokio::test]
async fn an_address_with_too_many_failures_is_refused_without_checking_the_password() {
    let config = ServerConfig { max_auth_failures_per_address: 4, ..test_config() };
    let server = Server::start(config, None).await;
    for _ in 0..2 {
        let mut client = server.connect().await;
        for _ in 0..2 {
            let status =
                client.status(&format!("AUTHENTICATE \"PLAIN\" \"{}\"", plain("alice@example.com", "x"))).await;
            assert_eq!(status, "NO \"Authentication failed.\"");
        }
    }
    let n_checked = *server.backend.n_auth_calls.lock().unwrap();
    let mut client = server.connect().await;
    let status = client.status(&format!("AUTHENTICATE \"PLAIN\" \"{}\"", plain("alice@example.com", "secret"))).await;
    assert_eq!(status, "NO (TRYLATER) \"Too many failed authentications from your address; try again later.\"");
    assert_eq!(*server.backend.n_auth_calls.lock().unwrap(), n_checked, "the password was not checked");
    server.stop().await;
}

#[tokio::test]
async fn every_script_command() {
    let server = Server::start(test_config(), None).await;
    let mut client = server.connect().await;
    client.login().await;
    assert_eq!(client.command("LISTSCRIPTS").await, ["OK \"Listscripts completed.\""]);
    assert_eq!(client.status("PUTSCRIPT \"first\" {5+}\r\nkeep;").await, "OK \"Putscript completed.\"");
    assert_eq!(client.status("PUTSCRIPT \"second\" \"discard;\"").await, "OK \"Putscript completed.\"");
    assert_eq!(client.status("SETACTIVE \"first\"").await, "OK \"Setactive completed.\"");
    assert_eq!(
        client.command("LISTSCRIPTS").await,
        ["\"first\" ACTIVE", "\"second\"", "OK \"Listscripts completed.\""]
    );
    assert_eq!(client.command("GETSCRIPT \"second\"").await, ["<discard;>", "OK \"Getscript completed.\""]);
    assert_eq!(client.status("GETSCRIPT \"none\"").await, "NO (NONEXISTENT) \"There is no script \\\"none\\\".\"");
    assert_eq!(client.status("SETACTIVE \"none\"").await, "NO (NONEXISTENT) \"There is no script \\\"none\\\".\"");
    assert_eq!(client.status("DELETESCRIPT \"first\"").await, "NO (ACTIVE) \"The active script cannot be deleted.\"");
    assert_eq!(
        client.status("RENAMESCRIPT \"first\" \"second\"").await,
        "NO (ALREADYEXISTS) \"A script \\\"second\\\" exists already.\""
    );
    assert_eq!(
        client.status("RENAMESCRIPT \"none\" \"third\"").await,
        "NO (NONEXISTENT) \"There is no script \\\"none\\\".\""
    );
    assert_eq!(client.status("RENAMESCRIPT \"first\" \"main\"").await, "OK \"Renamescript completed.\"");
    assert_eq!(client.command("LISTSCRIPTS").await, ["\"main\" ACTIVE", "\"second\"", "OK \"Listscripts completed.\""]);
    assert_eq!(client.status("SETACTIVE \"\"").await, "OK \"Setactive completed.\"");
    assert_eq!(client.status("DELETESCRIPT \"main\"").await, "OK \"Deletescript completed.\"");
    assert_eq!(client.status("DELETESCRIPT \"main\"").await, "NO (NONEXISTENT) \"There is no script \\\"main\\\".\"");
    assert_eq!(client.command("LISTSCRIPTS").await, ["\"second\"", "OK \"Listscripts completed.\""]);

    // Checking and refusing scripts.
    assert_eq!(client.status("CHECKSCRIPT \"keep;\"").await, "OK \"Script is valid.\"");
    assert_eq!(
        client.command("CHECKSCRIPT {6+}\r\nbogus;").await,
        ["NO <line 1: error: unknown command 'bogus'.\nline 1: error: 1 error>"]
    );
    assert_eq!(
        client.command("PUTSCRIPT \"x\" \"bogus;\"").await,
        ["NO <line 1: error: unknown command 'bogus'.\nline 1: error: 1 error>"]
    );
    assert_eq!(
        client.status("PUTSCRIPT \"x\" \"store-down\"").await,
        "NO (TRYLATER) \"The script store is not available now; try again later.\""
    );
    assert_eq!(client.status("PUTSCRIPT \"a/b\" \"keep;\"").await, "NO \"sieve script name may not contain `/`\"");
    assert_eq!(
        client.status("PUTSCRIPT {2+}\r\na\u{1} \"keep;\"").await,
        "NO \"Invalid script name (RFC 5804 §1.6: UTF-8 text without control characters).\""
    );
    client.send(b"PUTSCRIPT \"x\" {2+}\r\n\xff\xfe\r\n").await;
    assert_eq!(client.response().await, ["NO \"A Sieve script is UTF-8 text (RFC 5228 \u{a7}2.2).\""]);

    // Limits: size and count.
    assert_eq!(client.status("HAVESPACE \"new\" 1024").await, "OK \"Putscript would succeed.\"");
    assert_eq!(
        client.status("HAVESPACE \"new\" 1025").await,
        "NO (QUOTA/MAXSIZE) \"The script is larger than the limit of 1024 octets.\""
    );
    assert_eq!(client.status("PUTSCRIPT \"third\" \"keep;\"").await, "OK \"Putscript completed.\"");
    assert_eq!(client.status("PUTSCRIPT \"fourth\" \"keep;\"").await, "OK \"Putscript completed.\"");
    assert_eq!(
        client.status("HAVESPACE \"fifth\" 10").await,
        "NO (QUOTA/MAXSCRIPTS) \"You have the most scripts allowed (3); delete one first.\""
    );
    assert_eq!(
        client.status("PUTSCRIPT \"fifth\" \"keep;\"").await,
        "NO (QUOTA/MAXSCRIPTS) \"You have the most scripts allowed (3); delete one first.\""
    );
    // Replacing an existing script does not count as one more.
    assert_eq!(client.status("PUTSCRIPT \"fourth\" \"stop;\"").await, "OK \"Putscript completed.\"");
    assert_eq!(client.status("HAVESPACE \"fourth\" 10").await, "OK \"Putscript would succeed.\"");
    assert_eq!(client.status("LOGOUT").await, "OK \"Logout completed.\"");
    server.stop().await;
}

#[tokio::test]
async fn bad_commands_and_oversized_literals_get_no_and_the_session_goes_on() {
    let server = Server::start(test_config(), None).await;
    let mut client = server.connect().await;
    assert_eq!(client.status("FROBNICATE").await, "NO \"Unknown command.\"");
    assert_eq!(client.status("\"quoted\" first").await, "NO \"A command starts with its name.\"");
    assert_eq!(client.status("NOOP (").await, "NO \"syntax error: unexpected character\"");
    assert_eq!(
        client.status(&format!("NOOP {}", "x".repeat(600))).await,
        "NO \"command line is longer than 512 octets\""
    );
    client.login().await;
    assert_eq!(client.status("GETSCRIPT").await, "NO \"Syntax: GETSCRIPT <name>\"");
    assert_eq!(client.status("PUTSCRIPT \"x\"").await, "NO \"Syntax: PUTSCRIPT <name> <script>\"");
    assert_eq!(client.status("HAVESPACE \"x\" \"10\"").await, "NO \"Syntax: HAVESPACE <name> <size>\"");
    // An oversized literal: its octets (which look like commands) are read and discarded.
    let big = "LOGOUT\r\n".repeat(200);
    assert_eq!(
        client.status(&format!("PUTSCRIPT \"big\" {{{}+}}\r\n{big}", big.len())).await,
        "NO (QUOTA/MAXSIZE) \"literal of 1600 octets is larger than the limit of 1024\""
    );
    assert_eq!(client.command("LISTSCRIPTS").await, ["OK \"Listscripts completed.\""]);
    // A synchronizing literal is read without a continuation too.
    assert_eq!(client.status("PUTSCRIPT \"sync\" {5}\r\nkeep;").await, "OK \"Putscript completed.\"");
    assert_eq!(client.command("GETSCRIPT \"sync\"").await, ["<keep;>", "OK \"Getscript completed.\""]);
    server.stop().await;
}

#[tokio::test]
async fn too_many_bad_commands_in_a_row_end_the_session() {
    let config = ServerConfig { max_bad_commands: 3, ..test_config() };
    let server = Server::start(config, None).await;
    let mut client = server.connect().await;
    client.login().await;
    // A well-formed command that fails is no bad command.
    for _ in 0..5 {
        assert_eq!(client.status("GETSCRIPT \"none\"").await, "NO (NONEXISTENT) \"There is no script \\\"none\\\".\"");
    }
    assert_eq!(client.status("X").await, "NO \"Unknown command.\"");
    assert_eq!(client.status("NOOP").await, "OK \"Done.\"");
    assert_eq!(client.status("X").await, "NO \"Unknown command.\"");
    assert_eq!(client.status("X").await, "NO \"Unknown command.\"");
    assert_eq!(client.status("X").await, "NO \"Unknown command.\"");
    assert_eq!(client.response().await, ["BYE \"Too many invalid commands.\""]);
    assert!(client.is_closed().await);
    server.stop().await;
}

#[tokio::test]
async fn idle_clients_get_bye_and_shutdown_says_trylater() {
    let config = ServerConfig { idle_timeout: Duration::from_millis(200), ..test_config() };
    let server = Server::start(config, None).await;
    let mut idle = server.connect().await;
    assert_eq!(idle.response().await, ["BYE \"Disconnected for inactivity.\""]);
    assert!(idle.is_closed().await);

    let mut client = server.connect().await;
    // A client in the middle of an authentication exchange does not hold up the stop either.
    let mut authenticating = server.connect().await;
    authenticating.send(b"AUTHENTICATE \"PLAIN\"\r\n").await;
    assert_eq!(authenticating.line().await, "\"\"");
    let address = server.address;
    server.stop().await;
    assert_eq!(client.response().await, ["BYE (TRYLATER) \"Server shutting down.\""]);
    assert!(client.is_closed().await);
    assert_eq!(authenticating.response().await, ["BYE (TRYLATER) \"Server shutting down.\""]);
    assert!(authenticating.is_closed().await);
    assert!(TcpStream::connect(address).await.is_err(), "the listener is closed");
}

fn self_signed(dir: &std::path::Path) -> (TlsAcceptor, rustls::pki_types::CertificateDer<'static>) {
    let key_pair = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let certificate = params.self_signed(&key_pair).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, certificate.pem()).unwrap();
    std::fs::write(&key_path, key_pair.serialize_pem()).unwrap();
    let acceptor = couchmail_managesieve::tls_acceptor(&cert_path, &key_path).unwrap();
    (acceptor, certificate.der().clone())
}

#[tokio::test]
async fn starttls_then_plain_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let (acceptor, der) = self_signed(dir.path());
    let config = ServerConfig { allow_plaintext_auth: false, ..test_config() };
    let server = Server::start(config, Some(acceptor)).await;
    let mut client = Client::new(TcpStream::connect(server.address).await.unwrap());
    let greeting = client.response().await;
    assert!(greeting.contains(&"\"STARTTLS\"".to_owned()), "{greeting:?}");
    assert!(greeting.contains(&"\"SASL\" \"\"".to_owned()), "PLAIN only after TLS: {greeting:?}");
    assert_eq!(
        client.status(&format!("AUTHENTICATE \"PLAIN\" \"{}\"", plain("alice@example.com", "secret"))).await,
        "NO (ENCRYPT-NEEDED) \"Use STARTTLS first.\""
    );
    assert_eq!(client.status("STARTTLS").await, "OK \"Begin TLS negotiation now.\"");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config));
    let plain_stream = client.stream.into_inner();
    let tls = connector.connect("localhost".try_into().unwrap(), plain_stream).await.unwrap();
    let mut client = Client::new(tls);
    let capabilities = client.response().await;
    assert!(!capabilities.contains(&"\"STARTTLS\"".to_owned()), "{capabilities:?}");
    assert!(capabilities.contains(&"\"SASL\" \"PLAIN\"".to_owned()), "{capabilities:?}");
    assert_eq!(capabilities.last().unwrap(), "OK \"TLS negotiation successful.\"");
    assert_eq!(client.status("STARTTLS").await, "NO \"TLS is already active.\"");
    client.login().await;
    assert_eq!(client.status("PUTSCRIPT \"over-tls\" \"keep;\"").await, "OK \"Putscript completed.\"");
    assert_eq!(client.status("LOGOUT").await, "OK \"Logout completed.\"");
    server.stop().await;
}
