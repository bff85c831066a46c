//! The proxy in front of pouchdb-server: what it changes so that the server answers as
//! CouchDB 3.x does, and how it is closed and opened again around a server outage.
//!
//! Each connection carries one request (`Connection: close` both ways) and gets a thread.
//! Changes made on the way:
//!
//! - pouchdb-server parses JSON numbers as JavaScript doubles, so integers beyond 2^53 come back
//!   rounded (CouchDB keeps them exact): the proxy carries such integers through pouchdb-server
//!   as marked strings;
//! - it answers a malformed `_changes?since=` with 200 (CouchDB answers 400): the proxy refuses it;
//! - it ignores `timeout` on `_changes?feed=longpoll`: the proxy answers
//!   `{"results":[],"last_seq":<since>}` itself once the timeout passes (CouchDB's default,
//!   60 s, when none is given), dropping the upstream request, and sends a newline every
//!   `heartbeat` ms meanwhile; a heartbeat keeps the feed open without a timeout, as CouchDB's
//!   documentation says ("overrides any timeout to keep the feed alive indefinitely");
//! - in replication mode, `validate_doc_update` is hidden in design documents on their way in
//!   and shown again on the way out (see the module documentation of `pouchdb`).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

/// The key `validate_doc_update` is renamed to inside pouchdb-server in replication mode.
pub const DISABLED_VALIDATION_KEY: &str = "validate_doc_update_disabled_by_test_harness";

/// The key CouchDB runs as the validation function of a design document.
const VALIDATION_KEY: &str = "validate_doc_update";

/// How long the proxy waits for pouchdb-server's answer to anything but a long-poll.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a client may take to send its request.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// CouchDB's `changes_timeout`: a long-poll's timeout when the request gives none, and the
/// longest heartbeat interval.
const DEFAULT_CHANGES_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`Proxy::open`] keeps trying to take its old port back.
const REBIND_TIMEOUT: Duration = Duration::from_secs(5);

/// The text that replaces a big integer on its way into pouchdb-server: a JSON string starting
/// with a control character, as JavaScript's `JSON.stringify` escapes it on the way out.
const BIG_INTEGER_MARK: &str = "\"\\u0001int:";

/// Integers with more digits than this may not survive a double.
const SAFE_DIGITS: usize = 15;

/// What the proxy does besides forwarding.
pub(super) struct Settings {
    /// pouchdb-server's port on 127.0.0.1.
    pub upstream_port: u16,
    /// Hide `validate_doc_update` from pouchdb-server (replication mode).
    pub rename_validation: bool,
    /// Terminate TLS with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The proxy's port: accepting connections while open, refusing them while closed.
pub(super) struct Proxy {
    port: u16,
    settings: Arc<Settings>,
    /// The listener bound at creation, until the first [`open`](Proxy::open) uses it.
    unused_listener: Option<TcpListener>,
    accepting: Option<Accepting>,
}

/// The accept loop of an open proxy.
struct Accepting {
    running: Arc<AtomicBool>,
    // In a mutex only so that a server in a `static` is `Sync`.
    finished: Mutex<mpsc::Receiver<()>>,
}

impl Proxy {
    /// Binds a free port; connections wait in the backlog until [`open`](Proxy::open).
    pub(super) fn bind(settings: Settings) -> Result<Proxy, String> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|error| format!("cannot bind the pouchdb-server proxy: {error}"))?;
        let port = listener
            .local_addr()
            .map_err(|error| format!("cannot read the pouchdb-server proxy's port: {error}"))?
            .port();
        Ok(Proxy { port, settings: Arc::new(settings), unused_listener: Some(listener), accepting: None })
    }

    /// The proxy's port on 127.0.0.1, the same whether open or closed.
    pub(super) fn port(&self) -> u16 {
        self.port
    }

    /// Starts accepting connections, binding the port again if it was closed.
    pub(super) fn open(&mut self) -> Result<(), String> {
        if self.accepting.is_some() {
            return Ok(());
        }
        let listener = match self.unused_listener.take() {
            Some(listener) => listener,
            None => rebind(self.port)?,
        };
        let running = Arc::new(AtomicBool::new(true));
        let (done, finished) = mpsc::channel();
        let settings = self.settings.clone();
        let running_in_loop = running.clone();
        std::thread::spawn(move || {
            accept_loop(&listener, &settings, &running_in_loop);
            drop(listener);
            let _ = done.send(());
        });
        self.accepting = Some(Accepting { running, finished: Mutex::new(finished) });
        Ok(())
    }

    /// Stops accepting and closes the port, so that connecting is refused; returns once the
    /// port is closed (or after a few seconds, should the accept loop not notice).
    pub(super) fn close(&mut self) {
        drop(self.unused_listener.take());
        let Some(accepting) = self.accepting.take() else { return };
        accepting.running.store(false, Ordering::SeqCst);
        // Wake the accept loop up: it sees the flag and drops the listener.
        let _ = TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, self.port).into(), Duration::from_secs(1));
        let finished = accepting.finished.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = finished.recv_timeout(Duration::from_secs(5));
    }
}

/// Binds `port` again; another socket of this proxy may still hold it for a moment.
fn rebind(port: u16) -> Result<TcpListener, String> {
    let started = Instant::now();
    loop {
        match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            Ok(listener) => return Ok(listener),
            Err(error) if started.elapsed() > REBIND_TIMEOUT => {
                return Err(format!("cannot bind the pouchdb-server proxy to its port {port} again: {error}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn accept_loop(listener: &TcpListener, settings: &Arc<Settings>, running: &AtomicBool) {
    for connection in listener.incoming() {
        if !running.load(Ordering::SeqCst) {
            return;
        }
        let Ok(connection) = connection else { continue };
        let settings = settings.clone();
        std::thread::spawn(move || {
            match handle(connection, &settings) {
                Ok(()) => {}
                // A client that gave up (a long-poll it no longer waits for) is no news.
                Err(error) if matches!(error.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => {}
                Err(error) => eprintln!("pouchdb proxy: {error}"),
            }
        });
    }
}

/// A client connection, plain or TLS.
trait ClientStream: Read + Write {
    /// Ends the connection cleanly after the answer.
    fn finish(&mut self) -> io::Result<()>;
}

impl ClientStream for TcpStream {
    fn finish(&mut self) -> io::Result<()> {
        self.flush()?;
        // Closing only our side lets the client read everything before the connection ends.
        let _ = self.shutdown(Shutdown::Write);
        Ok(())
    }
}

impl ClientStream for rustls::StreamOwned<rustls::ServerConnection, TcpStream> {
    fn finish(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.flush()?;
        let _ = self.sock.shutdown(Shutdown::Write);
        Ok(())
    }
}

fn handle(connection: TcpStream, settings: &Settings) -> io::Result<()> {
    connection.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    connection.set_nodelay(true)?;
    match &settings.tls {
        Some(config) => {
            let tls = rustls::ServerConnection::new(config.clone()).map_err(io::Error::other)?;
            forward(rustls::StreamOwned::new(tls, connection), settings)
        }
        None => forward(connection, settings),
    }
}

/// One request as the client sent it.
struct Request {
    method: String,
    target: String,
    version: String,
    headers: Vec<String>,
    body: Vec<u8>,
}

fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        head.push(line.trim_end().to_owned());
    }
    let request_line = head.first().cloned().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target, version) = (
        parts.next().unwrap_or_default().to_owned(),
        parts.next().unwrap_or_default().to_owned(),
        parts.next().unwrap_or("HTTP/1.1").to_owned(),
    );
    let headers: Vec<String> = head.into_iter().skip(1).collect();
    let content_length = header_value(&headers, "content-length").and_then(|value| value.parse().ok()).unwrap_or(0);
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body)?;
    Ok(Some(Request { method, target, version, headers, body }))
}

fn forward<S: ClientStream>(client: S, settings: &Settings) -> io::Result<()> {
    let mut reader = BufReader::new(client);
    let Some(request) = read_request(&mut reader)? else { return Ok(()) };
    let client = reader.get_mut();
    serve(&request, settings, client)?;
    client.finish()
}

fn serve(request: &Request, settings: &Settings, client: &mut impl Write) -> io::Result<()> {
    if let Some(since) = malformed_since(&request.target) {
        let answer = format!(
            "{{\"error\":\"bad_request\",\"reason\":\"Malformed sequence {since:?} supplied in 'since' parameter.\"}}"
        );
        return respond(client, "HTTP/1.1 400 Bad Request", &[], answer.as_bytes());
    }
    let mut long_poll = LongPoll::parse(&request.target);
    let mut target = request.target.clone();
    if let Some(long_poll) = long_poll.as_mut() {
        if long_poll.since.as_deref() == Some("now") {
            // CouchDB reads "now" as the sequence the database is at when the request arrives.
            if let Some(current) = update_seq(settings.upstream_port, &long_poll.database_path) {
                long_poll.since = Some(current);
            }
        }
        target = long_poll.upstream_target(&request.target);
    }
    let mut body = wrap_big_integers(&String::from_utf8_lossy(&request.body));
    if settings.rename_validation && is_document_write(&request.method, &request.target) {
        body = rename_key(&body, VALIDATION_KEY, DISABLED_VALIDATION_KEY);
    }

    let mut upstream = TcpStream::connect((Ipv4Addr::LOCALHOST, settings.upstream_port))?;
    upstream.set_nodelay(true)?;
    let mut head = format!("{} {target} {}\r\n", request.method, request.version);
    for header in &request.headers {
        if !is_hop_header(header) {
            head.push_str(header);
            head.push_str("\r\n");
        }
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    upstream.write_all(head.as_bytes())?;
    upstream.write_all(body.as_bytes())?;

    let (answer, streaming) = match read_upstream(&mut upstream, long_poll.as_ref(), client)? {
        Upstream::Answer { bytes, streaming } => (bytes, streaming),
        Upstream::TimedOut => {
            // Dropping the connection ends pouchdb-server's wait; a change that raced the
            // deadline is not lost, since the client asks again from the same sequence.
            drop(upstream);
            let since = long_poll.as_ref().and_then(|long_poll| long_poll.since.as_deref());
            return respond(client, "HTTP/1.1 200 OK", &[], empty_long_poll_answer(since).as_bytes());
        }
    };
    let Some((_, answer_head, raw_body)) = split_answer(&answer) else {
        return Err(io::Error::other(format!(
            "pouchdb-server sent no complete answer to {} {} ({} bytes)",
            request.method,
            request.target,
            answer.len()
        )));
    };
    let chunked = header_value(&answer_head[1..], "transfer-encoding").is_some_and(|value| value.contains("chunked"));
    let answer_body = if chunked { dechunk(raw_body) } else { raw_body.to_vec() };
    let mut answer_body = unwrap_big_integers(&String::from_utf8_lossy(&answer_body));
    if settings.rename_validation {
        answer_body = rename_key(&answer_body, DISABLED_VALIDATION_KEY, VALIDATION_KEY);
    }
    if streaming {
        write_chunk(client, answer_body.as_bytes())?;
        client.write_all(b"0\r\n\r\n")?;
        return client.flush();
    }
    let status_line = answer_head.first().cloned().unwrap_or_default();
    let headers: Vec<&String> = answer_head.iter().skip(1).filter(|header| !is_hop_header(header)).collect();
    respond(client, &status_line, &headers, answer_body.as_bytes())
}

/// What came back from pouchdb-server.
enum Upstream {
    /// Its whole answer; `streaming` when the proxy already sent the client a chunked head
    /// (heartbeats), so that the body must follow as chunks.
    Answer { bytes: Vec<u8>, streaming: bool },
    /// A long-poll's timeout passed first.
    TimedOut,
}

/// Reads pouchdb-server's answer to the end of the connection, keeping a long-poll's timeout
/// and sending its heartbeats to `client` meanwhile.
fn read_upstream(
    upstream: &mut TcpStream,
    long_poll: Option<&LongPoll>,
    client: &mut impl Write,
) -> io::Result<Upstream> {
    let started = Instant::now();
    let heartbeat = long_poll.and_then(|long_poll| long_poll.heartbeat);
    // A heartbeat keeps the feed alive indefinitely; without one a long-poll ends at its timeout.
    let deadline = match (long_poll, heartbeat) {
        (Some(long_poll), None) => Some(started + long_poll.timeout),
        _ => None,
    };
    let mut next_heartbeat = heartbeat.map(|interval| started + interval);
    let mut streaming = false;
    let mut bytes = Vec::new();
    let mut buffer = [0; 16 * 1024];
    loop {
        let now = Instant::now();
        let mut wake = match (deadline, next_heartbeat) {
            (Some(deadline), _) => deadline,
            (None, Some(heartbeat_at)) => heartbeat_at,
            (None, None) => started + UPSTREAM_TIMEOUT,
        };
        if let Some(heartbeat_at) = next_heartbeat {
            wake = wake.min(heartbeat_at);
        }
        let wait = wake.saturating_duration_since(now).max(Duration::from_millis(1));
        upstream.set_read_timeout(Some(wait))?;
        match upstream.read(&mut buffer) {
            Ok(0) => return Ok(Upstream::Answer { bytes, streaming }),
            Ok(n_read) => bytes.extend_from_slice(&buffer[..n_read]),
            Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                let now = Instant::now();
                if deadline.is_some_and(|deadline| now >= deadline) {
                    return Ok(Upstream::TimedOut);
                }
                if let (Some(heartbeat_at), Some(interval)) = (next_heartbeat, heartbeat) {
                    if now >= heartbeat_at {
                        if !streaming {
                            client.write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                                  Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                            )?;
                            streaming = true;
                        }
                        // A client that went away shows here, and ends the wait.
                        write_chunk(client, b"\n")?;
                        next_heartbeat = Some(now + interval);
                    }
                } else if deadline.is_none() && now >= started + UPSTREAM_TIMEOUT {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("pouchdb-server did not answer within {UPSTREAM_TIMEOUT:?}"),
                    ));
                }
            }
            Err(error) => return Err(error),
        }
    }
}

/// What matters of a `_changes?feed=longpoll` request.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct LongPoll {
    /// The path before `/_changes`: `/{db}`.
    pub database_path: String,
    /// `since` as given (percent-decoded), or resolved from `now`.
    pub since: Option<String>,
    /// When to answer "nothing new".
    pub timeout: Duration,
    /// How often to send a newline meanwhile, if at all.
    pub heartbeat: Option<Duration>,
}

impl LongPoll {
    pub(super) fn parse(target: &str) -> Option<LongPoll> {
        let (path, query) = target.split_once('?')?;
        let database_path = path.strip_suffix("/_changes")?;
        let parameter = |name: &str| {
            query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=')).map(percent_decode)
        };
        if parameter("feed").as_deref() != Some("longpoll") {
            return None;
        }
        let timeout = parameter("timeout")
            .and_then(|value| value.parse().ok())
            .map_or(DEFAULT_CHANGES_TIMEOUT, |millis| Duration::from_millis(millis).min(DEFAULT_CHANGES_TIMEOUT));
        let heartbeat = match parameter("heartbeat").as_deref() {
            Some("true") => Some(DEFAULT_CHANGES_TIMEOUT),
            Some(value) => value
                .parse()
                .ok()
                .filter(|millis| *millis > 0)
                .map(|millis| Duration::from_millis(millis).min(DEFAULT_CHANGES_TIMEOUT)),
            None => None,
        };
        Some(LongPoll { database_path: database_path.to_owned(), since: parameter("since"), timeout, heartbeat })
    }

    /// The target to send pouchdb-server: `since` as resolved, without `heartbeat` (the proxy
    /// sends the heartbeats, so that pouchdb-server's own newlines cannot mix with them).
    pub(super) fn upstream_target(&self, target: &str) -> String {
        let Some((path, query)) = target.split_once('?') else { return target.to_owned() };
        let pairs: Vec<String> = query
            .split('&')
            .filter(|pair| !pair.starts_with("heartbeat=") && *pair != "heartbeat")
            .map(|pair| match (&self.since, pair.starts_with("since=")) {
                (Some(since), true) => format!("since={}", percent_encode(since)),
                _ => pair.to_owned(),
            })
            .collect();
        format!("{path}?{}", pairs.join("&"))
    }
}

/// CouchDB's answer to a long-poll with nothing new: no results, `last_seq` where the client
/// started (a number when it was one, as pouchdb-server's sequences are; `0` without `since`).
pub(super) fn empty_long_poll_answer(since: Option<&str>) -> String {
    let last_seq = match since {
        None => "0".to_owned(),
        Some(since) if !since.is_empty() && since.bytes().all(|byte| byte.is_ascii_digit()) => since.to_owned(),
        Some(since) => serde_json::Value::String(since.to_owned()).to_string(),
    };
    format!("{{\"results\":[],\"last_seq\":{last_seq}}}")
}

/// The database's `update_seq`, asked of pouchdb-server directly.
fn update_seq(upstream_port: u16, database_path: &str) -> Option<String> {
    let (status, body) = super::upstream_request(upstream_port, "GET", database_path, None).ok()?;
    if status != 200 {
        return None;
    }
    match serde_json::from_str::<serde_json::Value>(&body).ok()?.get("update_seq")? {
        serde_json::Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// Whether a request writes documents whose bodies may hold design documents:
/// `PUT /{db}/_design/…`, `POST /{db}` and `POST /{db}/_bulk_docs`.
pub(super) fn is_document_write(method: &str, target: &str) -> bool {
    let path = target.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("PUT", [_, "_design", _, ..]) => true,
        ("PUT", [_, name, ..]) if name.to_ascii_lowercase().starts_with("_design%2f") => true,
        ("POST", [database]) | ("POST", [database, "_bulk_docs"]) => !database.is_empty() && !database.starts_with('_'),
        _ => false,
    }
}

/// JSON text with every object key `from` renamed to `to`; strings that are not keys, and
/// keys inside strings, stay as they are.
pub(super) fn rename_key(json: &str, from: &str, to: &str) -> String {
    if !json.contains(from) {
        return json.to_owned();
    }
    let bytes = json.as_bytes();
    let mut out = String::with_capacity(json.len());
    let mut copied = 0;
    let mut position = 0;
    while position < bytes.len() {
        if bytes[position] != b'"' {
            position += 1;
            continue;
        }
        // A string token: find its closing quote, minding escapes.
        let start = position;
        position += 1;
        while position < bytes.len() && bytes[position] != b'"' {
            position += if bytes[position] == b'\\' { 2 } else { 1 };
        }
        let end = position.min(bytes.len());
        position = end + 1;
        let is_key = json[position.min(json.len())..].trim_start().starts_with(':');
        if is_key && &json[start + 1..end] == from {
            out.push_str(&json[copied..start + 1]);
            out.push_str(to);
            copied = end;
        }
    }
    out.push_str(&json[copied..]);
    out
}

/// The answer's status code, head lines and raw body, once the head is complete.
fn split_answer(answer: &[u8]) -> Option<(u16, Vec<String>, &[u8])> {
    let split = answer.windows(4).position(|window| window == b"\r\n\r\n")?;
    let head: Vec<String> = String::from_utf8_lossy(&answer[..split]).lines().map(str::to_owned).collect();
    let status = head.first()?.split(' ').nth(1)?.parse().ok()?;
    Some((status, head, &answer[split + 4..]))
}

/// A whole HTTP answer read to the end of the connection: status code, head lines and body,
/// with chunks joined.
pub(super) fn parse_answer(answer: &[u8]) -> Option<(u16, Vec<String>, Vec<u8>)> {
    let (status, head, raw_body) = split_answer(answer)?;
    let chunked = header_value(&head[1..], "transfer-encoding").is_some_and(|value| value.contains("chunked"));
    let body = if chunked { dechunk(raw_body) } else { raw_body.to_vec() };
    Some((status, head, body))
}

fn respond(client: &mut impl Write, status_line: &str, headers: &[&String], body: &[u8]) -> io::Result<()> {
    let mut head = format!("{status_line}\r\n");
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    if !headers.iter().any(|header| header.to_ascii_lowercase().starts_with("content-type:")) {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    client.write_all(head.as_bytes())?;
    client.write_all(body)?;
    client.flush()
}

fn write_chunk(client: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    client.write_all(format!("{:x}\r\n", bytes.len()).as_bytes())?;
    client.write_all(bytes)?;
    client.write_all(b"\r\n")?;
    client.flush()
}

fn is_hop_header(header: &str) -> bool {
    let name = header.split(':').next().unwrap_or_default().trim().to_ascii_lowercase();
    matches!(name.as_str(), "content-length" | "connection" | "transfer-encoding" | "keep-alive")
}

fn header_value(headers: &[String], name: &str) -> Option<String> {
    headers.iter().find_map(|header| {
        let (key, value) = header.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
    })
}

/// The `since` of a `_changes` request when it is neither `now` nor a sequence pouchdb-server hands out.
pub(super) fn malformed_since(target: &str) -> Option<String> {
    let (path, query) = target.split_once('?')?;
    if !path.ends_with("/_changes") {
        return None;
    }
    let since = query.split('&').find_map(|pair| pair.strip_prefix("since="))?;
    let well_formed = since == "now" || (!since.is_empty() && since.bytes().all(|byte| byte.is_ascii_digit()));
    (!well_formed).then(|| since.to_owned())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let decoded = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(if bytes[index] == b'+' { b' ' } else { bytes[index] });
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// A chunked body, joined.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = raw.windows(2).position(|window| window == b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or_default().trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        let end = (start + size).min(raw.len());
        body.extend_from_slice(&raw[start..end]);
        raw = raw.get(end + 2..).unwrap_or_default();
    }
    body
}

/// JSON text with every integer too long for a double replaced by a marked string.
pub(super) fn wrap_big_integers(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut chars = json.chars().peekable();
    let mut in_string = false;
    let mut escaped = false;
    while let Some(current) = chars.next() {
        if in_string {
            out.push(current);
            if escaped {
                escaped = false;
            } else if current == '\\' {
                escaped = true;
            } else if current == '"' {
                in_string = false;
            }
            continue;
        }
        if current == '"' {
            in_string = true;
            out.push(current);
            continue;
        }
        if current == '-' || current.is_ascii_digit() {
            let mut token = current.to_string();
            while let Some(next) = chars.peek().copied().filter(|next| next.is_ascii_digit() || "+-.eE".contains(*next))
            {
                token.push(next);
                chars.next();
            }
            let is_integer = !token.contains(['.', 'e', 'E']);
            if is_integer && token.trim_start_matches('-').len() > SAFE_DIGITS {
                out.push_str(BIG_INTEGER_MARK);
                out.push_str(&token);
                out.push('"');
            } else {
                out.push_str(&token);
            }
            continue;
        }
        out.push(current);
    }
    out
}

/// JSON text with every marked string turned back into the integer it carries.
pub(super) fn unwrap_big_integers(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut rest = json;
    while let Some(start) = rest.find(BIG_INTEGER_MARK) {
        let after = &rest[start + BIG_INTEGER_MARK.len()..];
        let digits_end = after.find(|c: char| !(c.is_ascii_digit() || c == '-')).unwrap_or(after.len());
        if after[digits_end..].starts_with('"') && digits_end > 0 {
            out.push_str(&rest[..start]);
            out.push_str(&after[..digits_end]);
            rest = &after[digits_end + 1..];
        } else {
            out.push_str(&rest[..start + BIG_INTEGER_MARK.len()]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_integers_travel_as_marked_strings_and_come_back() {
        let json = r#"{"u":18446744073709551615,"i":-9223372036854775808,"s":"123456789012345678","f":1.5e300,"n":42}"#;
        let wrapped = wrap_big_integers(json);
        assert_eq!(
            wrapped,
            r#"{"u":"\u0001int:18446744073709551615","i":"\u0001int:-9223372036854775808","s":"123456789012345678","f":1.5e300,"n":42}"#
        );
        assert_eq!(unwrap_big_integers(&wrapped), json);
        let escaped = r#"{"a":"quote \" 12345678901234567890"}"#;
        assert_eq!(wrap_big_integers(escaped), escaped);
    }

    #[test]
    fn malformed_sequences_are_found() {
        assert_eq!(malformed_since("/db/_changes?since=12&limit=3"), None);
        assert_eq!(malformed_since("/db/_changes?since=now"), None);
        assert_eq!(malformed_since("/db/_changes?limit=3"), None);
        assert_eq!(malformed_since("/db/doc?since=x"), None);
        for bad in ["not-a-seq", "", "-1", "1.5"] {
            let target = format!("/db/_changes?limit=3&since={bad}");
            assert_eq!(malformed_since(&target).as_deref(), Some(bad), "{target}");
        }
    }

    #[test]
    fn the_validation_key_is_renamed_only_where_it_is_a_key() {
        let design =
            r#"{"_id":"_design/couchmail","validate_doc_update" : "function(n, o) {}","language":"javascript"}"#;
        let hidden = rename_key(design, VALIDATION_KEY, DISABLED_VALIDATION_KEY);
        assert_eq!(
            hidden,
            r#"{"_id":"_design/couchmail","validate_doc_update_disabled_by_test_harness" : "function(n, o) {}","language":"javascript"}"#
        );
        assert_eq!(rename_key(&hidden, DISABLED_VALIDATION_KEY, VALIDATION_KEY), design);

        // A value, or the text inside a string, is no key.
        let values = r#"{"note":"validate_doc_update","quoted":"say \"validate_doc_update\": no","list":["validate_doc_update"]}"#;
        assert_eq!(rename_key(values, VALIDATION_KEY, DISABLED_VALIDATION_KEY), values);
        // Design documents inside `_bulk_docs` and `_changes` answers are renamed at any depth.
        let bulk = r#"{"docs":[{"_id":"_design/a","validate_doc_update":"f"},{"_id":"b","x":"\\"}]}"#;
        assert_eq!(
            rename_key(bulk, VALIDATION_KEY, DISABLED_VALIDATION_KEY),
            r#"{"docs":[{"_id":"_design/a","validate_doc_update_disabled_by_test_harness":"f"},{"_id":"b","x":"\\"}]}"#
        );
        // A longer key that merely starts with the name stays.
        let longer = r#"{"validate_doc_update_disabled_by_test_harness":"f"}"#;
        assert_eq!(rename_key(longer, VALIDATION_KEY, DISABLED_VALIDATION_KEY), longer);
        // Truncated JSON does not panic.
        assert_eq!(rename_key(r#"{"validate_doc_update"#, VALIDATION_KEY, "x"), r#"{"validate_doc_update"#);
    }

    #[test]
    fn only_document_writes_are_rewritten() {
        assert!(is_document_write("PUT", "/db/_design/couchmail"));
        assert!(is_document_write("PUT", "/db/_design/couchmail?rev=1-a"));
        assert!(is_document_write("PUT", "/db/_design%2Fcouchmail"));
        assert!(is_document_write("POST", "/db"));
        assert!(is_document_write("POST", "/db/_bulk_docs"));
        assert!(!is_document_write("GET", "/db/_design/couchmail"));
        assert!(!is_document_write("PUT", "/db/mailbox:a@example.com"));
        assert!(!is_document_write("POST", "/_replicate"));
        assert!(!is_document_write("POST", "/db/_find"));
    }

    #[test]
    fn long_polls_are_recognised_with_couchdbs_defaults() {
        let long_poll = LongPoll::parse("/db/_changes?feed=longpoll&since=12&timeout=250&limit=5").unwrap();
        assert_eq!(
            long_poll,
            LongPoll {
                database_path: "/db".to_owned(),
                since: Some("12".to_owned()),
                timeout: Duration::from_millis(250),
                heartbeat: None
            }
        );
        let defaults = LongPoll::parse("/a%2Fb/_changes?feed=longpoll").unwrap();
        assert_eq!(
            (defaults.database_path.as_str(), defaults.since, defaults.timeout),
            ("/a%2Fb", None, DEFAULT_CHANGES_TIMEOUT)
        );
        let capped = LongPoll::parse("/db/_changes?feed=longpoll&timeout=9999999&heartbeat=true").unwrap();
        assert_eq!((capped.timeout, capped.heartbeat), (DEFAULT_CHANGES_TIMEOUT, Some(DEFAULT_CHANGES_TIMEOUT)));
        let beating = LongPoll::parse("/db/_changes?feed=longpoll&heartbeat=500").unwrap();
        assert_eq!(beating.heartbeat, Some(Duration::from_millis(500)));
        assert_eq!(LongPoll::parse("/db/_changes?since=3"), None);
        assert_eq!(LongPoll::parse("/db/_changes?feed=continuous"), None);
        assert_eq!(LongPoll::parse("/db/doc?feed=longpoll"), None);
    }

    #[test]
    fn the_upstream_target_carries_the_resolved_since_and_no_heartbeat() {
        let mut long_poll = LongPoll::parse("/db/_changes?feed=longpoll&since=now&heartbeat=100&limit=2").unwrap();
        long_poll.since = Some("41".to_owned());
        assert_eq!(
            long_poll.upstream_target("/db/_changes?feed=longpoll&since=now&heartbeat=100&limit=2"),
            "/db/_changes?feed=longpoll&since=41&limit=2"
        );
    }

    #[test]
    fn a_timed_out_long_poll_answers_no_results_from_where_it_started() {
        assert_eq!(empty_long_poll_answer(Some("17")), r#"{"results":[],"last_seq":17}"#);
        assert_eq!(empty_long_poll_answer(None), r#"{"results":[],"last_seq":0}"#);
        assert_eq!(empty_long_poll_answer(Some("17-g1AAAA\"x")), r#"{"results":[],"last_seq":"17-g1AAAA\"x"}"#);
        let parsed: serde_json::Value = serde_json::from_str(&empty_long_poll_answer(Some("3"))).unwrap();
        assert_eq!(parsed, serde_json::json!({ "results": [], "last_seq": 3 }));
    }

    /// A proxy in front of a fake upstream that accepts and never answers, like pouchdb-server
    /// with nothing new for a long-poll: the proxy's own timeout answer is what comes back.
    #[test]
    fn the_proxy_answers_a_long_poll_itself_when_the_timeout_passes() {
        let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let upstream_port = silent.local_addr().unwrap().port();
        let held = std::thread::spawn(move || {
            // Hold the connection open without answering until the proxy drops it.
            let (mut connection, _) = silent.accept().unwrap();
            let mut sink = Vec::new();
            let _ = connection.read_to_end(&mut sink);
            String::from_utf8_lossy(&sink).into_owned()
        });
        let mut proxy = Proxy::bind(Settings { upstream_port, rename_validation: false, tls: None }).unwrap();
        proxy.open().unwrap();

        let started = Instant::now();
        let (status, body) =
            super::super::upstream_request(proxy.port(), "GET", "/db/_changes?feed=longpoll&since=7&timeout=300", None)
                .unwrap();
        let elapsed = started.elapsed();
        assert_eq!((status, body.as_str()), (200, r#"{"results":[],"last_seq":7}"#));
        assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3), "{elapsed:?}");
        // The upstream request was dropped, and it was forwarded as sent.
        let forwarded = held.join().unwrap();
        assert!(
            forwarded.starts_with("GET /db/_changes?feed=longpoll&since=7&timeout=300 HTTP/1.1\r\n"),
            "{forwarded}"
        );
        proxy.close();
    }

    #[test]
    fn heartbeats_reach_the_client_until_the_answer_comes() {
        let slow = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let upstream_port = slow.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut connection, _) = slow.accept().unwrap();
            let mut reader = BufReader::new(connection.try_clone().unwrap());
            let request = read_request(&mut reader).unwrap().unwrap();
            assert!(!request.target.contains("heartbeat"), "{}", request.target);
            std::thread::sleep(Duration::from_millis(450));
            let body = r#"{"results":[{"seq":8,"id":"a","changes":[]}],"last_seq":8}"#;
            let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            connection.write_all(answer.as_bytes()).unwrap();
        });
        let mut proxy = Proxy::bind(Settings { upstream_port, rename_validation: false, tls: None }).unwrap();
        proxy.open().unwrap();
        let (status, body) = super::super::upstream_request(
            proxy.port(),
            "GET",
            "/db/_changes?feed=longpoll&since=7&heartbeat=100",
            None,
        )
        .unwrap();
        assert_eq!(status, 200);
        let newlines = body.chars().take_while(|c| *c == '\n').count();
        assert!((2..=5).contains(&newlines), "{newlines} heartbeats in {body:?}");
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["last_seq"], 8);
        proxy.close();
    }

    #[test]
    fn a_closed_proxy_refuses_connections_and_opens_on_the_same_port() {
        let mut proxy = Proxy::bind(Settings { upstream_port: 9, rename_validation: false, tls: None }).unwrap();
        let port = proxy.port();
        proxy.open().unwrap();
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok());
        proxy.close();
        let refused = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        proxy.open().unwrap();
        assert_eq!(proxy.port(), port);
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok());
        proxy.close();
    }
}
