//! A CouchDB-compatible server for tests: `pouchdb-server`, in memory, on a free loopback port.
//!
//! Apache CouchDB cannot be installed on the CI machine, so the CouchDB backend's tests run
//! against pouchdb-server 4.2.0, which `cargo xtask test` installs with npm into
//! [`POUCHDB_DIR`]. Its quirks (DESIGN.md §4) are handled here, never in the backend:
//! `NODE_OPTIONS=--unhandled-rejections=warn` keeps a `_changes` filter from crashing it, and
//! a small proxy in front of it (module `proxy`) makes it answer as CouchDB where the
//! conformance suite can tell the difference: exact big integers and 400 for a bad `since`.
//!
//! The server runs under a small shell that kills it when its standard input closes, so the
//! server goes away with the test process even when a `static` holds it and is never dropped.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `cargo xtask test` installs pouchdb-server with npm.
pub const POUCHDB_DIR: &str = "/var/tmp/couchmail-pouchdb";

/// The pouchdb-server version the tests are written against.
pub const POUCHDB_VERSION: &str = "4.2.0";

/// How long pouchdb-server may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The pouchdb-server executable inside [`POUCHDB_DIR`].
pub fn pouchdb_binary() -> PathBuf {
    PathBuf::from(POUCHDB_DIR).join("node_modules").join(".bin").join("pouchdb-server")
}

/// A running pouchdb-server holding its databases in memory; stopped on drop.
pub struct PouchServer {
    shell: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl PouchServer {
    /// Starts a server, or returns `Ok(None)` with a note on stderr when pouchdb-server is not
    /// installed and `CI` is unset (a developer machine without npm packages).
    ///
    /// # Errors
    /// When the server cannot be started or does not answer, or is missing while `CI` is set.
    pub fn start_if_installed() -> Result<Option<PouchServer>, String> {
        let binary = pouchdb_binary();
        if !binary.exists() {
            if std::env::var_os("CI").is_some() {
                return Err(format!(
                    "pouchdb-server is not installed at {} — run `cargo xtask packages`",
                    binary.display()
                ));
            }
            eprintln!(
                "note: pouchdb-server is not installed at {}, so the CouchDB tests do nothing; \
                 `cargo xtask packages` installs it",
                binary.display()
            );
            return Ok(None);
        }
        PouchServer::start(binary).map(Some)
    }

    fn start(binary: PathBuf) -> Result<PouchServer, String> {
        let dir =
            tempfile::tempdir().map_err(|error| format!("cannot create a directory for pouchdb-server: {error}"))?;
        let port = free_port()?;
        // The shell runs the server in the background and kills it by its PID once stdin
        // closes: when this guard drops it, or when the test process exits.
        let script = "\"$0\" --host 127.0.0.1 --port \"$1\" --in-memory --no-stdout-logs \
                      --dir \"$2\" --config \"$2/config.json\" >\"$2/pouchdb.out\" 2>&1 </dev/null & \
                      server=$!; read -r _ignored; kill \"$server\"; wait \"$server\" 2>/dev/null";
        let shell = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&binary)
            .arg(port.to_string())
            .arg(dir.path())
            .current_dir(dir.path())
            .env("NODE_OPTIONS", "--unhandled-rejections=warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", binary.display()))?;
        let proxy_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|error| format!("cannot bind the pouchdb-server proxy: {error}"))?;
        let proxy_port = proxy_listener
            .local_addr()
            .map_err(|error| format!("cannot read the pouchdb-server proxy's port: {error}"))?
            .port();
        let server = PouchServer { shell, url: format!("http://127.0.0.1:{proxy_port}"), _dir: dir };
        server.wait_until_answering(port)?;
        // The proxy's thread lives as long as the test process, like the server it fronts.
        std::thread::spawn(move || proxy::serve(proxy_listener, port));
        Ok(server)
    }

    /// The server's base URL, such as `http://127.0.0.1:40123`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn wait_until_answering(&self, port: u16) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if answers_http(port) {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                let log = std::fs::read_to_string(self._dir.path().join("pouchdb.out")).unwrap_or_default();
                return Err(format!("pouchdb-server did not answer on port {port} within {START_TIMEOUT:?}:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for PouchServer {
    fn drop(&mut self) {
        // Closing stdin makes the shell kill the server; then reap the shell.
        drop(self.shell.stdin.take());
        let _ = self.shell.wait();
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|error| format!("cannot find a free port: {error}"))?;
    listener.local_addr().map(|address| address.port()).map_err(|error| format!("cannot find a free port: {error}"))
}

/// Whether an HTTP server on `port` answers `GET /` with 200.
fn answers_http(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200")
}

/// What the proxy in front of pouchdb-server changes, so that it answers as CouchDB 3.x does.
///
/// Two differences matter to the conformance suite: pouchdb-server parses JSON numbers as
/// JavaScript doubles, so integers beyond 2^53 come back rounded (CouchDB keeps them exact),
/// and it answers a malformed `_changes?since=` with 200 (CouchDB answers 400). The proxy
/// carries such integers through pouchdb-server as marked strings and refuses such sequences.
mod proxy {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{Ipv4Addr, TcpListener, TcpStream};
    use std::time::Duration;

    /// How long the proxy waits for pouchdb-server; longer than any long-poll in the tests.
    const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(120);

    /// The text that replaces a big integer on its way into pouchdb-server: a JSON string starting
    /// with a control character, as JavaScript's `JSON.stringify` escapes it on the way out.
    const BIG_INTEGER_MARK: &str = "\"\\u0001int:";

    /// Integers with more digits than this may not survive a double.
    const SAFE_DIGITS: usize = 15;

    /// Serves connections on `listener` by forwarding them to pouchdb-server on `upstream_port`.
    pub(super) fn serve(listener: TcpListener, upstream_port: u16) {
        for connection in listener.incoming() {
            let Ok(connection) = connection else { continue };
            std::thread::spawn(move || {
                if let Err(error) = forward(connection, upstream_port) {
                    eprintln!("pouchdb proxy: {error}");
                }
            });
        }
    }

    fn forward(client: TcpStream, upstream_port: u16) -> std::io::Result<()> {
        let mut reader = BufReader::new(client.try_clone()?);
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            head.push(line.trim_end().to_owned());
        }
        let request_line = head.first().cloned().unwrap_or_default();
        let content_length = header_value(&head, "content-length").and_then(|value| value.parse().ok()).unwrap_or(0);
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body)?;
        let mut client = client;
        if let Some(since) = malformed_since(&request_line) {
            let answer = format!(
                "{{\"error\":\"bad_request\",\"reason\":\"Malformed sequence {since:?} supplied in 'since' parameter.\"}}"
            );
            return respond(&mut client, "HTTP/1.1 400 Bad Request", &[], answer.as_bytes());
        }
        let body = wrap_big_integers(&String::from_utf8_lossy(&body));
        let mut upstream = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream_port))?;
        upstream.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
        let mut request = format!("{request_line}\r\n");
        for header in head.iter().skip(1) {
            if !is_hop_header(header) {
                request.push_str(header);
                request.push_str("\r\n");
            }
        }
        request.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
        upstream.write_all(request.as_bytes())?;
        upstream.write_all(body.as_bytes())?;
        let mut answer = Vec::new();
        upstream.read_to_end(&mut answer)?;
        let Some(split) = answer.windows(4).position(|window| window == b"\r\n\r\n") else {
            return Err(std::io::Error::other("pouchdb-server sent an answer without a header end"));
        };
        let answer_head: Vec<String> = String::from_utf8_lossy(&answer[..split]).lines().map(str::to_owned).collect();
        let raw_body = &answer[split + 4..];
        let chunked = header_value(&answer_head, "transfer-encoding").is_some_and(|value| value.contains("chunked"));
        let answer_body = if chunked { dechunk(raw_body) } else { raw_body.to_vec() };
        let answer_body = unwrap_big_integers(&String::from_utf8_lossy(&answer_body));
        let status_line = answer_head.first().cloned().unwrap_or_default();
        let headers: Vec<&String> = answer_head.iter().skip(1).filter(|header| !is_hop_header(header)).collect();
        respond(&mut client, &status_line, &headers, answer_body.as_bytes())
    }

    fn respond(client: &mut TcpStream, status_line: &str, headers: &[&String], body: &[u8]) -> std::io::Result<()> {
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

    fn is_hop_header(header: &str) -> bool {
        let name = header.split(':').next().unwrap_or_default().trim().to_ascii_lowercase();
        matches!(name.as_str(), "content-length" | "connection" | "transfer-encoding" | "keep-alive")
    }

    fn header_value(head: &[String], name: &str) -> Option<String> {
        head.iter().skip(1).find_map(|header| {
            let (key, value) = header.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
        })
    }

    /// The `since` of a `_changes` request when it is neither `now` nor a sequence pouchdb-server hands out.
    pub(super) fn malformed_since(request_line: &str) -> Option<String> {
        let target = request_line.split(' ').nth(1)?;
        let (path, query) = target.split_once('?')?;
        if !path.ends_with("/_changes") {
            return None;
        }
        let since = query.split('&').find_map(|pair| pair.strip_prefix("since="))?;
        let well_formed = since == "now" || (!since.is_empty() && since.bytes().all(|byte| byte.is_ascii_digit()));
        (!well_formed).then(|| since.to_owned())
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
                while let Some(next) =
                    chars.peek().copied().filter(|next| next.is_ascii_digit() || "+-.eE".contains(*next))
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_lives_in_the_install_directory() {
        assert!(pouchdb_binary().starts_with(POUCHDB_DIR));
        assert!(pouchdb_binary().ends_with("node_modules/.bin/pouchdb-server"));
    }

    #[test]
    fn big_integers_travel_as_marked_strings_and_come_back() {
        let json = r#"{"u":18446744073709551615,"i":-9223372036854775808,"s":"123456789012345678","f":1.5e300,"n":42}"#;
        let wrapped = proxy::wrap_big_integers(json);
        assert_eq!(
            wrapped,
            r#"{"u":"\u0001int:18446744073709551615","i":"\u0001int:-9223372036854775808","s":"123456789012345678","f":1.5e300,"n":42}"#
        );
        assert_eq!(proxy::unwrap_big_integers(&wrapped), json);
        let escaped = r#"{"a":"quote \" 12345678901234567890"}"#;
        assert_eq!(proxy::wrap_big_integers(escaped), escaped);
    }

    #[test]
    fn malformed_sequences_are_found() {
        assert_eq!(proxy::malformed_since("GET /db/_changes?since=12&limit=3 HTTP/1.1"), None);
        assert_eq!(proxy::malformed_since("GET /db/_changes?since=now HTTP/1.1"), None);
        assert_eq!(proxy::malformed_since("GET /db/_changes?limit=3 HTTP/1.1"), None);
        assert_eq!(proxy::malformed_since("GET /db/doc?since=x HTTP/1.1"), None);
        for bad in ["not-a-seq", "", "-1", "1.5"] {
            let line = format!("GET /db/_changes?limit=3&since={bad} HTTP/1.1");
            assert_eq!(proxy::malformed_since(&line).as_deref(), Some(bad), "{line}");
        }
    }

    #[test]
    fn nothing_answers_on_a_free_port() {
        let port = free_port().unwrap_or_else(|error| panic!("{error}"));
        assert!(!answers_http(port));
    }
}
