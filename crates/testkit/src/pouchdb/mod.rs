//! A CouchDB-compatible server for tests: `pouchdb-server` on a free loopback port, behind a
//! proxy that makes it answer as Apache CouchDB 3.x does.
//!
//! Apache CouchDB cannot be installed on the CI machine, so the CouchDB backend's tests run
//! against pouchdb-server 4.2.0, which `cargo xtask test` installs with npm into
//! [`POUCHDB_DIR`]. Its quirks (DESIGN.md §4) are handled here, never in the backend:
//! `NODE_OPTIONS=--unhandled-rejections=warn` keeps a `_changes` filter from crashing it, and
//! a proxy in front of it (module `proxy`) makes it answer as CouchDB where a client can tell
//! the difference:
//!
//! - integers beyond 2^53 stay exact (pouchdb-server parses JSON numbers as doubles);
//! - a malformed `_changes?since=` is refused with 400 (pouchdb-server answers 200);
//! - a `_changes?feed=longpoll&timeout=N` with nothing new answers
//!   `{"results":[],"last_seq":<since>}` after N ms (pouchdb-server ignores `timeout` and keeps
//!   the request open); with `heartbeat=M` instead it stays open until a change, with a
//!   newline every M ms, as CouchDB's documentation says ("overrides any timeout");
//!   `since=now` is resolved to the database's current sequence.
//!
//! # Modes
//!
//! [`PouchServer::start_if_installed`] keeps the databases in memory.
//! [`PouchServer::start_on_disk_if_installed`] keeps them in a temporary directory, so that
//! [`PouchServer::stop`] and [`PouchServer::start_again`] stand for a CouchDB outage: while
//! the server is stopped, the proxy's port refuses connections, and afterwards the server
//! comes back on the same ports with the same data.
//!
//! [`PouchServer::start_replicating_if_installed`] is for replication between two servers
//! ([`replicate_continuously`]). pouchdb-server (its pouchdb-validation plugin) silently drops
//! replicated updates, the documents its replicator writes with `new_edits: false`, whenever
//! the target database has a design document with a `validate_doc_update` function: a
//! replicated revision 2 never arrives, while without the function it does. CouchDB has no
//! such bug, and two-site tests need replicated updates. In this mode the proxy therefore
//! renames the `validate_doc_update` key in design documents on their way in (to
//! [`DISABLED_VALIDATION_KEY`]), so pouchdb-server never sees a validation function, and
//! renames it back in every answer, so that a backend's idempotent bootstrap still finds its
//! own function and leaves it alone. The price: such a server validates nothing, so a test of
//! `validate_doc_update` itself uses another mode — and a test that wants a document the
//! function would refuse to get in anyway can write it here.
//!
//! [`PouchServer::start_tls_if_installed`] puts TLS in front: the proxy terminates it with a
//! certificate for `127.0.0.1` and `localhost` issued by a fresh test authority, whose PEM the
//! caller gets to trust, and [`PouchServer::url`] is `https://…`.
//!
//! # Processes
//!
//! The server runs under a small shell that kills it by its PID when the shell's standard
//! input closes, so the server goes away with the test process even when a `static` holds it
//! and is never dropped; [`PouchServer::stop`] closes that input, and kills the PID itself if
//! the server has not gone within a few seconds. The proxy's threads end with the test process.

mod proxy;
mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use proxy::DISABLED_VALIDATION_KEY;

/// Where `cargo xtask test` installs pouchdb-server with npm.
pub const POUCHDB_DIR: &str = "/var/tmp/couchmail-pouchdb";

/// The pouchdb-server version the tests are written against.
pub const POUCHDB_VERSION: &str = "4.2.0";

/// How long pouchdb-server may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long pouchdb-server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one request of [`PouchServer::request`] may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The pouchdb-server executable inside [`POUCHDB_DIR`].
pub fn pouchdb_binary() -> PathBuf {
    PathBuf::from(POUCHDB_DIR).join("node_modules").join(".bin").join("pouchdb-server")
}

/// Where a server keeps its databases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Storage {
    /// In memory: a stop loses them.
    #[default]
    InMemory,
    /// In the server's temporary directory: they survive [`PouchServer::stop`].
    OnDisk,
}

/// How to start a [`PouchServer`]; the `start_*` shorthands cover the usual combinations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PouchOptions {
    /// Where the databases live.
    pub storage: Storage,
    /// Hide `validate_doc_update` functions from pouchdb-server, so that replicated updates
    /// arrive (see the module documentation).
    pub replication_mode: bool,
    /// Serve `https://` with a certificate from a fresh test authority.
    pub tls: bool,
}

/// A running pouchdb-server behind the proxy; stopped on drop.
pub struct PouchServer {
    options: PouchOptions,
    binary: PathBuf,
    upstream_port: u16,
    process: Option<ServerProcess>,
    proxy: proxy::Proxy,
    url: String,
    ca_pem: Option<String>,
    client_tls: Option<Arc<rustls::ClientConfig>>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for PouchServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PouchServer")
            .field("url", &self.url)
            .field("upstream_port", &self.upstream_port)
            .field("options", &self.options)
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl PouchServer {
    /// Starts a server holding its databases in memory, or returns `Ok(None)` with a note on
    /// stderr when pouchdb-server is not installed and `CI` is unset (a developer machine
    /// without npm packages).
    ///
    /// # Errors
    /// When the server cannot be started or does not answer, or is missing while `CI` is set.
    pub fn start_if_installed() -> Result<Option<PouchServer>, String> {
        PouchServer::start_with_if_installed(PouchOptions::default())
    }

    /// Starts a server keeping its databases on disk, so that they survive
    /// [`stop`](Self::stop) and [`start_again`](Self::start_again); `Ok(None)` as
    /// [`start_if_installed`](Self::start_if_installed).
    ///
    /// # Errors
    /// As [`start_if_installed`](Self::start_if_installed).
    pub fn start_on_disk_if_installed() -> Result<Option<PouchServer>, String> {
        PouchServer::start_with_if_installed(PouchOptions { storage: Storage::OnDisk, ..PouchOptions::default() })
    }

    /// Starts an on-disk server for replication tests, whose proxy hides
    /// `validate_doc_update` functions from pouchdb-server (see the module documentation);
    /// `Ok(None)` as [`start_if_installed`](Self::start_if_installed).
    ///
    /// # Errors
    /// As [`start_if_installed`](Self::start_if_installed).
    pub fn start_replicating_if_installed() -> Result<Option<PouchServer>, String> {
        PouchServer::start_with_if_installed(PouchOptions {
            storage: Storage::OnDisk,
            replication_mode: true,
            tls: false,
        })
    }

    /// Starts an in-memory server served over TLS at `https://127.0.0.1:PORT`; returns it with
    /// the PEM certificate of the authority that issued its certificate (for `127.0.0.1` and
    /// `localhost`), for the client to trust. `Ok(None)` as
    /// [`start_if_installed`](Self::start_if_installed).
    ///
    /// # Errors
    /// As [`start_if_installed`](Self::start_if_installed), or when the certificate cannot be made.
    pub fn start_tls_if_installed() -> Result<Option<(PouchServer, String)>, String> {
        let options = PouchOptions { tls: true, ..PouchOptions::default() };
        let Some(server) = PouchServer::start_with_if_installed(options)? else { return Ok(None) };
        let ca_pem = server.ca_pem().unwrap_or_default().to_owned();
        Ok(Some((server, ca_pem)))
    }

    /// Starts a server with `options`; `Ok(None)` as [`start_if_installed`](Self::start_if_installed).
    ///
    /// # Errors
    /// As [`start_if_installed`](Self::start_if_installed).
    pub fn start_with_if_installed(options: PouchOptions) -> Result<Option<PouchServer>, String> {
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
        PouchServer::start(binary, options).map(Some)
    }

    fn start(binary: PathBuf, options: PouchOptions) -> Result<PouchServer, String> {
        // A port found free can be taken by another test process before pouchdb-server binds
        // it; then the server that answers is not ours and a fresh port is tried.
        let mut attempt = 1;
        loop {
            match PouchServer::start_on_a_free_port(binary.clone(), options) {
                Err(StartFailure::PortTaken(_)) if attempt < PORT_ATTEMPTS => attempt += 1,
                Err(StartFailure::PortTaken(port)) => {
                    return Err(format!(
                        "pouchdb-server could not bind a free port: {PORT_ATTEMPTS} ports (the last {port}) were \
                         taken by other processes first"
                    ));
                }
                Err(StartFailure::Other(error)) => return Err(error),
                Ok(server) => return Ok(server),
            }
        }
    }

    fn start_on_a_free_port(binary: PathBuf, options: PouchOptions) -> Result<PouchServer, StartFailure> {
        let dir =
            tempfile::tempdir().map_err(|error| format!("cannot create a directory for pouchdb-server: {error}"))?;
        let upstream_port = free_port()?;
        let certificates = if options.tls { Some(tls::Certificates::generate()?) } else { None };
        let settings = proxy::Settings {
            upstream_port,
            rename_validation: options.replication_mode,
            tls: certificates.as_ref().map(|certificates| certificates.server_config.clone()),
        };
        let proxy = proxy::Proxy::bind(settings)?;
        let scheme = if options.tls { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{}", proxy.port());
        let mut server = PouchServer {
            options,
            binary,
            upstream_port,
            process: None,
            proxy,
            url,
            ca_pem: certificates.as_ref().map(|certificates| certificates.ca_pem.clone()),
            client_tls: certificates.map(|certificates| certificates.client_config),
            dir,
        };
        server.start_process()?;
        Ok(server)
    }

    /// The server's base URL as clients should use it, such as `http://127.0.0.1:40123`
    /// (`https://` in TLS mode): the proxy.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// pouchdb-server's own base URL, without the proxy: for pouchdb-server's replicator,
    /// which must see documents exactly as stored (see [`replicate_continuously`]).
    pub fn upstream_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.upstream_port)
    }

    /// The PEM certificate of the authority that issued the TLS certificate, in TLS mode.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// How the server was started.
    pub fn options(&self) -> PouchOptions {
        self.options
    }

    /// The server's directory: its configuration, log (`pouchdb.out`) and on-disk databases.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the server runs (between a start and a [`stop`](Self::stop)).
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Stops pouchdb-server (by its PID) and closes the proxy's port, so that clients get
    /// "connection refused" until [`start_again`](Self::start_again); requests in flight are
    /// cut off. An in-memory server loses its databases.
    ///
    /// # Errors
    /// When the server is not running, or did not exit even when killed.
    pub fn stop(&mut self) -> Result<(), String> {
        let Some(process) = self.process.take() else {
            return Err("pouchdb-server is not running".to_owned());
        };
        // Refuse new connections first, so that nobody reaches a server on its way out.
        self.proxy.close();
        process.stop()
    }

    /// Starts pouchdb-server again after [`stop`](Self::stop), on the same port and directory,
    /// waits until it answers, and opens the proxy's port again (the same as before).
    ///
    /// # Errors
    /// When the server is running already, cannot be started or does not answer in time.
    pub fn start_again(&mut self) -> Result<(), String> {
        self.start_process().map_err(|failure| match failure {
            StartFailure::PortTaken(port) => {
                format!("another process took port {port} while pouchdb-server was stopped")
            }
            StartFailure::Other(error) => error,
        })
    }

    fn start_process(&mut self) -> Result<(), StartFailure> {
        if self.process.is_some() {
            return Err("pouchdb-server is running already".to_owned().into());
        }
        let process = ServerProcess::spawn(&self.binary, self.upstream_port, self.dir.path(), self.options.storage)?;
        self.process = Some(process);
        if let Err(failure) = self.wait_until_answering() {
            if let Some(process) = self.process.take() {
                let _ = process.stop();
            }
            return Err(failure);
        }
        Ok(self.proxy.open()?)
    }

    /// One HTTP request to the server through the proxy, as an admin would send it with curl;
    /// `body` is sent as JSON. Returns the status code and the body (chunks joined).
    ///
    /// # Errors
    /// When the server cannot be reached or answers no HTTP (for example while stopped).
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
        let address = (Ipv4Addr::LOCALHOST, self.proxy.port());
        let tcp = TcpStream::connect(address)
            .map_err(|error| format!("cannot connect to {}: {error}", self.url))
            .and_then(|stream| with_timeout(stream, REQUEST_TIMEOUT))?;
        let answer = match &self.client_tls {
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1")
                    .map_err(|error| format!("bad server name: {error}"))?;
                let connection = rustls::ClientConnection::new(config.clone(), name)
                    .map_err(|error| format!("cannot start TLS to {}: {error}", self.url))?;
                http_exchange(rustls::StreamOwned::new(connection, tcp), method, path, body)
            }
            None => http_exchange(tcp, method, path, body),
        };
        answer.map_err(|error| format!("{method} {}{path}: {error}", self.url))
    }

    /// [`request`](Self::request) straight to pouchdb-server, without the proxy's rewriting.
    ///
    /// # Errors
    /// As [`request`](Self::request).
    pub fn upstream_request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
        upstream_request(self.upstream_port, method, path, body)
    }

    /// Waits until pouchdb-server answers on its port, and checks that the one answering is
    /// ours: the listening socket must be among our process's open files.
    fn wait_until_answering(&mut self) -> Result<(), StartFailure> {
        let started = Instant::now();
        loop {
            if answers_http(self.upstream_port) {
                let ours = self.process.as_ref().is_some_and(|process| listens_on(process.pid, self.upstream_port));
                return if ours { Ok(()) } else { Err(StartFailure::PortTaken(self.upstream_port)) };
            }
            if let Some(process) = self.process.as_mut()
                && let Some(status) = process.exited()
            {
                return Err(format!("pouchdb-server exited ({status}):\n{}", self.log()).into());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "pouchdb-server did not answer on port {} within {START_TIMEOUT:?}:\n{}",
                    self.upstream_port,
                    self.log()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// pouchdb-server's output so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pouchdb.out")).unwrap_or_default()
    }
}

impl Drop for PouchServer {
    fn drop(&mut self) {
        self.proxy.close();
        if let Some(process) = self.process.take()
            && let Err(error) = process.stop()
        {
            eprintln!("stopping pouchdb-server: {error}");
        }
    }
}

/// Starts continuous replication of `database` from `from` to `to`, run by `from`'s
/// pouchdb-server (`POST /_replicate` with `continuous` and `retry`); call it twice, swapped,
/// for replication both ways.
///
/// Both ends are the servers' upstream URLs, not the proxies: pouchdb-server's replicator
/// must copy documents exactly as stored. Through the proxies, each document would be
/// rewritten twice: big integers unwrapped by the source's proxy would reach the replicator as
/// doubles and lose digits, and in replication mode the target's proxy would have to hide
/// `validate_doc_update` in `_bulk_docs` bodies again. Upstream to upstream, a design document
/// arrives with its function already hidden, and the target's proxy shows it as it shows its
/// own.
///
/// pouchdb-server passes only `continuous` (and filters) on to its replicator and ignores
/// `retry` and `create_target`, which CouchDB would honour: the replication runs in `from`'s
/// process and ends at its first failure, such as `to` being stopped. Tests use that to cut
/// two sites off from each other, and call this function again to join them; the replication
/// then resumes from its checkpoint.
///
/// # Errors
/// When `from` is not running or refuses the replication.
pub fn replicate_continuously(from: &PouchServer, to: &PouchServer, database: &str) -> Result<(), String> {
    let request = serde_json::json!({
        "source": format!("{}/{database}", from.upstream_url()),
        "target": format!("{}/{database}", to.upstream_url()),
        "continuous": true,
        "retry": true,
        "create_target": true,
    });
    let (status, answer) = from.upstream_request("POST", "/_replicate", Some(&request.to_string()))?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("pouchdb-server refused the replication {request}: {status} {answer}"))
    }
}

/// One pouchdb-server process under its guard shell.
struct ServerProcess {
    shell: Child,
    pid: u32,
}

impl ServerProcess {
    fn spawn(binary: &Path, port: u16, dir: &Path, storage: Storage) -> Result<ServerProcess, String> {
        // The shell runs the server in the background, tells its PID, and kills it by that PID
        // once stdin closes: when `stop` or the guard's drop closes it, or the test process exits.
        let script = "\"$0\" --host 127.0.0.1 --port \"$1\" $3 --no-stdout-logs \
                      --dir \"$2\" --config \"$2/config.json\" >>\"$2/pouchdb.out\" 2>&1 </dev/null & \
                      server=$!; echo \"$server\"; read -r _ignored; kill \"$server\"; wait \"$server\" 2>/dev/null";
        let storage_flag = match storage {
            Storage::InMemory => "--in-memory",
            Storage::OnDisk => "",
        };
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(binary)
            .arg(port.to_string())
            .arg(dir)
            .arg(storage_flag)
            .current_dir(dir)
            .env("NODE_OPTIONS", "--unhandled-rejections=warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", binary.display()))?;
        let mut line = String::new();
        let read = match shell.stdout.take() {
            Some(stdout) => BufReader::new(stdout).read_line(&mut line),
            None => Ok(0),
        };
        match (read, line.trim().parse()) {
            (Ok(_), Ok(pid)) => Ok(ServerProcess { shell, pid }),
            (read, _) => {
                drop(shell.stdin.take());
                let _ = shell.wait();
                Err(format!("the shell starting pouchdb-server did not tell its PID ({read:?}, {line:?})"))
            }
        }
    }

    /// The shell's exit status, if the server (and so the shell) has gone.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.shell.try_wait().ok().flatten()
    }

    fn stop(mut self) -> Result<(), String> {
        // Closing stdin makes the shell kill the server; then reap the shell.
        drop(self.shell.stdin.take());
        let started = Instant::now();
        loop {
            match self.shell.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if started.elapsed() < STOP_TIMEOUT => std::thread::sleep(Duration::from_millis(20)),
                Ok(None) => break,
                Err(error) => return Err(format!("cannot wait for pouchdb-server's shell: {error}")),
            }
        }
        // The server ignored SIGTERM: kill it by its PID, which only it can have while its
        // shell, its parent, has not reaped it.
        if let Some(pid) = i32::try_from(self.pid).ok().and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        self.shell.wait().map(drop).map_err(|error| format!("cannot wait for pouchdb-server's shell: {error}"))?;
        Err(format!("pouchdb-server (PID {}) did not exit within {STOP_TIMEOUT:?} of SIGTERM: killed", self.pid))
    }
}

/// Why a start failed: the port was taken by someone else (worth a retry on another port),
/// or anything else.
enum StartFailure {
    PortTaken(u16),
    Other(String),
}

impl From<String> for StartFailure {
    fn from(error: String) -> StartFailure {
        StartFailure::Other(error)
    }
}

/// How many free ports a start tries before giving up.
const PORT_ATTEMPTS: u32 = 5;

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port`: the socket's inode,
/// from `/proc/net/tcp`, is one of the process's open files.
fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else { return false };
    let local = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Fields: sl, local_address, rem_address, st (0A is LISTEN), …, inode (the tenth).
            (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
                .then(|| fields.get(9).map(|inode| format!("socket:[{inode}]")))
                .flatten()
        })
        .collect();
    let Ok(descriptors) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    descriptors.filter_map(Result::ok).any(|descriptor| {
        std::fs::read_link(descriptor.path())
            .is_ok_and(|target| inodes.iter().any(|inode| target.as_os_str() == inode.as_str()))
    })
}

/// A loopback port nobody listens on right now, and no other test process gets meanwhile.
fn free_port() -> Result<u16, String> {
    crate::ports::reserve(1)?.pop().ok_or_else(|| "no free port was found".to_owned())
}

fn with_timeout(stream: TcpStream, timeout: Duration) -> Result<TcpStream, String> {
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|error| format!("cannot set a timeout: {error}"))?;
    Ok(stream)
}

/// Whether an HTTP server on `port` answers `GET /` with 200.
fn answers_http(port: u16) -> bool {
    matches!(upstream_request(port, "GET", "/", None), Ok((200, _)))
}

/// One HTTP request to pouchdb-server on `port` itself.
fn upstream_request(port: u16, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .map_err(|error| format!("cannot connect to 127.0.0.1:{port}: {error}"))
        .and_then(|stream| with_timeout(stream, REQUEST_TIMEOUT))?;
    http_exchange(stream, method, path, body).map_err(|error| format!("{method} 127.0.0.1:{port}{path}: {error}"))
}

/// Sends one request over `stream` and reads the answer to the end of the connection.
fn http_exchange(
    mut stream: impl Read + Write,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    let body = body.unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).and_then(|()| stream.flush()).map_err(|error| error.to_string())?;
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        // A TLS peer that closes without close_notify has still said all it had to say.
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(error) => return Err(error.to_string()),
    }
    let (status, _, body) = proxy::parse_answer(&answer).ok_or_else(|| {
        format!(
            "no HTTP answer ({} bytes: {:?})",
            answer.len(),
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        )
    })?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `probe` every 50 ms for at most `timeout`.
    fn eventually(timeout: Duration, mut probe: impl FnMut() -> bool) -> bool {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if probe() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        probe()
    }

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
    }

    fn ok(server: &PouchServer, method: &str, path: &str, body: Option<&str>) -> serde_json::Value {
        let (status, answer) = server.request(method, path, body).unwrap();
        assert!((200..300).contains(&status), "{method} {path}: {status} {answer}");
        json(&answer)
    }

    const VALIDATE: &str =
        "function(newDoc) { if (!newDoc._deleted && !newDoc.type) { throw({forbidden: 'no type'}); } }";

    fn design_document() -> String {
        serde_json::json!({ "validate_doc_update": VALIDATE, "language": "javascript" }).to_string()
    }

    #[test]
    fn the_binary_lives_in_the_install_directory() {
        assert!(pouchdb_binary().starts_with(POUCHDB_DIR));
        assert!(pouchdb_binary().ends_with("node_modules/.bin/pouchdb-server"));
    }

    #[test]
    fn a_listening_socket_is_found_among_its_owners_files_only() {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listens_on(std::process::id(), port));
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let other_listens = listens_on(child.id(), port);
        let _ = child.kill();
        let _ = child.wait();
        assert!(!other_listens, "another process does not hold our socket");
        drop(listener);
        assert!(!listens_on(std::process::id(), port), "a closed socket is nobody's");
    }

    #[test]
    fn nothing_answers_on_a_free_port() {
        let port = free_port().unwrap_or_else(|error| panic!("{error}"));
        assert!(!answers_http(port));
    }

    #[test]
    fn an_on_disk_server_refuses_connections_while_stopped_and_keeps_its_data() {
        let Some(mut server) = PouchServer::start_on_disk_if_installed().unwrap() else { return };
        let url = server.url().to_owned();
        ok(&server, "PUT", "/keep", None);
        let rev = ok(&server, "PUT", "/keep/doc", Some(r#"{"type":"t","n":1}"#))["rev"].clone();

        server.stop().unwrap();
        assert!(!server.is_running());
        let started = Instant::now();
        let error = server.request("GET", "/keep/doc", None).unwrap_err();
        assert!(error.contains("refused"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(1), "a stopped server must not make clients wait");
        assert!(!answers_http(server.upstream_port), "pouchdb-server itself is gone");
        assert!(server.stop().is_err(), "stopping twice says so");

        server.start_again().unwrap();
        assert_eq!(server.url(), url);
        let document = ok(&server, "GET", "/keep/doc", None);
        assert_eq!((&document["_rev"], &document["n"]), (&rev, &serde_json::json!(1)));
        assert!(server.start_again().is_err(), "starting twice says so");
    }

    #[test]
    fn a_long_poll_with_nothing_new_answers_at_its_timeout_and_a_change_ends_it_early() {
        let Some(server) = PouchServer::start_if_installed().unwrap() else { return };
        ok(&server, "PUT", "/feed", None);
        ok(&server, "PUT", "/feed/a", Some(r#"{"type":"t"}"#));

        let started = Instant::now();
        let answer = ok(&server, "GET", "/feed/_changes?feed=longpoll&since=1&timeout=400", None);
        let elapsed = started.elapsed();
        assert_eq!(answer, serde_json::json!({ "results": [], "last_seq": 1 }));
        assert!(elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(3), "{elapsed:?}");

        // `now` starts where the database is, so nothing is new either.
        let answer = ok(&server, "GET", "/feed/_changes?feed=longpoll&since=now&timeout=200", None);
        assert_eq!(answer, serde_json::json!({ "results": [], "last_seq": 1 }));

        let writer = std::thread::scope(|scope| {
            let handle = scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(300));
                ok(&server, "PUT", "/feed/b", Some(r#"{"type":"t"}"#));
            });
            let started = Instant::now();
            let answer = ok(&server, "GET", "/feed/_changes?feed=longpoll&since=1&timeout=10000&heartbeat=100", None);
            let _ = handle.join();
            (answer, started.elapsed())
        });
        let (answer, elapsed) = writer;
        assert_eq!(answer["results"][0]["id"], "b", "{answer}");
        assert_eq!(answer["last_seq"], 2, "{answer}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    }

    #[test]
    fn validation_runs_in_the_default_mode() {
        let Some(server) = PouchServer::start_if_installed().unwrap() else { return };
        ok(&server, "PUT", "/checked", None);
        ok(&server, "PUT", "/checked/_design/rules", Some(&design_document()));
        let (status, answer) = server.request("PUT", "/checked/untyped", Some("{}")).unwrap();
        assert_eq!(status, 403, "{answer}");
        ok(&server, "PUT", "/checked/typed", Some(r#"{"type":"t"}"#));
    }

    #[test]
    fn replicating_servers_carry_updates_both_ways_despite_a_validation_function() {
        let Some(site_a) = PouchServer::start_replicating_if_installed().unwrap() else { return };
        let Some(site_b) = PouchServer::start_replicating_if_installed().unwrap() else { return };
        ok(&site_a, "PUT", "/shared", None);
        ok(&site_a, "PUT", "/shared/_design/rules", Some(&design_document()));
        // Hidden from pouchdb-server, shown to clients as written.
        let design = ok(&site_a, "GET", "/shared/_design/rules", None);
        assert_eq!(design["validate_doc_update"], VALIDATE, "{design}");
        let (_, stored) = site_a.upstream_request("GET", "/shared/_design/rules", None).unwrap();
        assert_eq!(json(&stored)[DISABLED_VALIDATION_KEY], VALIDATE, "{stored}");

        replicate_continuously(&site_a, &site_b, "shared").unwrap();
        replicate_continuously(&site_b, &site_a, "shared").unwrap();
        let big = "123456789012345678901";
        let first = ok(&site_a, "PUT", "/shared/doc", Some(&format!(r#"{{"type":"t","n":1,"big":{big}}}"#)));
        let arrived = |site: &PouchServer, rev: &serde_json::Value| {
            eventually(Duration::from_secs(10), || {
                site.request("GET", "/shared/doc", None).is_ok_and(|(_, body)| json(&body)["_rev"] == *rev)
            })
        };
        assert!(arrived(&site_b, &first["rev"]), "revision 1 reached site B");
        let (_, body) = site_b.request("GET", "/shared/doc", None).unwrap();
        assert!(body.contains(&format!("\"big\":{big}")), "big integers survive replication: {body}");

        // The update pouchdb-server would drop with a validation function installed.
        let document = ok(&site_b, "GET", "/shared/doc", None);
        let update = format!(r#"{{"type":"t","n":2,"_rev":{}}}"#, document["_rev"]);
        let second = ok(&site_b, "PUT", "/shared/doc", Some(&update));
        assert!(arrived(&site_a, &second["rev"]), "revision 2 came back to site A");
        // The replicated design document shows its function at site B too.
        assert!(eventually(Duration::from_secs(10), || {
            site_b
                .request("GET", "/shared/_design/rules", None)
                .is_ok_and(|(_, body)| json(&body)["validate_doc_update"] == VALIDATE)
        }));
        // An untyped document gets in: this mode validates nothing.
        ok(&site_a, "PUT", "/shared/untyped", Some("{}"));
    }

    #[test]
    fn the_tls_mode_serves_https_with_a_certificate_from_the_returned_authority() {
        let Some((server, ca_pem)) = PouchServer::start_tls_if_installed().unwrap() else { return };
        assert!(server.url().starts_with("https://127.0.0.1:"), "{}", server.url());
        assert!(ca_pem.starts_with("-----BEGIN CERTIFICATE-----"), "{ca_pem}");
        let welcome = ok(&server, "GET", "/", None);
        assert_eq!(welcome["version"], POUCHDB_VERSION);

        // A client that trusts the authority accepts the name `localhost` too.
        let port: u16 = server.url().rsplit(':').next().unwrap().parse().unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(crate::stack::tls::first_certificate(&ca_pem).unwrap()))
            .unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let tcp = with_timeout(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap(), REQUEST_TIMEOUT).unwrap();
        let (status, _) = http_exchange(rustls::StreamOwned::new(connection, tcp), "GET", "/", None).unwrap();
        assert_eq!(status, 200);

        // Plain HTTP to the TLS port gets no HTTP answer.
        let plain = with_timeout(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap(), REQUEST_TIMEOUT).unwrap();
        assert!(http_exchange(plain, "GET", "/", None).is_err());
    }
}
