//! A CouchDB-compatible server for tests: `pouchdb-server`, in memory, on a free loopback port.
//!
//! Apache CouchDB cannot be installed on the CI machine, so the CouchDB backend's tests run
//! against pouchdb-server 4.2.0, which `cargo xtask test` installs with npm into
//! [`POUCHDB_DIR`]. Its quirks (DESIGN.md §4) are handled here, never in the backend:
//! `NODE_OPTIONS=--unhandled-rejections=warn` keeps a `_changes` filter from crashing it.
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
        let server = PouchServer { shell, url: format!("http://127.0.0.1:{port}"), _dir: dir };
        server.wait_until_answering(port)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_lives_in_the_install_directory() {
        assert!(pouchdb_binary().starts_with(POUCHDB_DIR));
        assert!(pouchdb_binary().ends_with("node_modules/.bin/pouchdb-server"));
    }

    #[test]
    fn nothing_answers_on_a_free_port() {
        let port = free_port().unwrap_or_else(|error| panic!("{error}"));
        assert!(!answers_http(port));
    }
}
