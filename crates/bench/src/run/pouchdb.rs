//! A private pouchdb-server, the CouchDB-compatible server that stands in for Apache CouchDB here (CouchDB itself
//! cannot be installed on this machine; DESIGN.md §4).
//!
//! The benchmark starts it itself rather than through the test harness (`couchmail_testkit::pouchdb`): the harness
//! keeps the databases in memory and puts a proxy in front, one thread and one connection per request, which would
//! be part of every figure. Here the server stores its databases on disk (LevelDB) under the scratch directory,
//! which lives in memory (/dev/shm), and is asked directly on a loopback port.
//! `NODE_OPTIONS=--unhandled-rejections=warn` keeps a rejected promise from crashing it (its `_changes` filters
//! do that; couchmail's follower uses none, but a crash would end the run).
//! It is stopped by its pid when dropped.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use couchmail_model::Document;
use serde_json::Value;

use super::process::{ChildGuard, shown};

/// Where `cargo xtask packages` installs pouchdb-server with npm (as `couchmail_testkit::pouchdb::POUCHDB_DIR`).
pub const DEFAULT_BINARY: &str = "/var/tmp/couchmail-pouchdb/node_modules/.bin/pouchdb-server";

/// How long the server may take to answer its first request.
const START_LIMIT: Duration = Duration::from_secs(60);

/// How long one request may take (a `_bulk_docs` of a thousand documents takes a tenth of a second).
const REQUEST_LIMIT: Duration = Duration::from_secs(120);

pub struct PouchDb {
    guard: ChildGuard,
    port: u16,
    /// The server's answer to `GET /`, for its version.
    pub welcome: Value,
    pub command: String,
    dir: PathBuf,
}

impl PouchDb {
    /// Starts pouchdb-server with its databases in a new directory under `work_dir`.
    pub fn start(binary: &Path, work_dir: &Path) -> Result<PouchDb> {
        if !binary.exists() {
            bail!("pouchdb-server is not installed at {} — `cargo xtask packages` installs it", binary.display());
        }
        let dir = work_dir.join("pouchdb");
        std::fs::create_dir_all(&dir).with_context(|| format!("make {}", dir.display()))?;
        let port = free_port()?;
        let log = dir.join("pouchdb.out");
        let log_file = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let mut command = Command::new(binary);
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--no-stdout-logs", "--dir"])
            .arg(&dir)
            .arg("--config")
            .arg(dir.join("config.json"))
            .env("NODE_OPTIONS", "--unhandled-rejections=warn")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().with_context(|| format!("reopen {}", log.display()))?)
            .stderr(log_file);
        let shown_command = format!("NODE_OPTIONS=--unhandled-rejections=warn {}", shown(&command));
        eprintln!("bench: {shown_command}");
        let child = command.spawn().with_context(|| format!("cannot start `{shown_command}`"))?;
        let mut guard = ChildGuard::new(child, "pouchdb-server");
        let started = Instant::now();
        let welcome = loop {
            if let Ok((200, body)) = request(port, "GET", "/", None) {
                break serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
            }
            if let Some(status) = guard.child.try_wait().context("wait for pouchdb-server")? {
                let logged = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("pouchdb-server ended ({status}) before it answered: {}", logged.trim());
            }
            if started.elapsed() > START_LIMIT {
                bail!("pouchdb-server did not answer on port {port} within {START_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        Ok(PouchDb { guard, port, welcome, command: shown_command, dir })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    pub fn version(&self) -> String {
        self.welcome["version"].as_str().unwrap_or("unknown").to_owned()
    }

    /// Writes `documents` into `database` with `_bulk_docs`, `batch_size` at a time: filling the store is setup,
    /// not what is measured, and a request per document would take minutes.
    pub fn bulk_write(&self, database: &str, documents: &[Document], batch_size: usize) -> Result<()> {
        for batch in documents.chunks(batch_size.max(1)) {
            let docs: Vec<Value> = batch
                .iter()
                .map(|document| {
                    let mut body = document.to_body();
                    body.insert("_id".to_owned(), Value::String(document.id()));
                    Value::Object(body)
                })
                .collect();
            let body = serde_json::json!({ "docs": docs }).to_string();
            let (status, answer) = request(self.port, "POST", &format!("/{database}/_bulk_docs"), Some(&body))?;
            if status != 201 && status != 200 {
                bail!("_bulk_docs answered {status}: {}", String::from_utf8_lossy(&answer));
            }
            let rows: Vec<Value> = serde_json::from_slice(&answer)
                .with_context(|| format!("_bulk_docs answered `{}`", String::from_utf8_lossy(&answer)))?;
            if let Some(failed) = rows.iter().find(|row| row.get("error").is_some()) {
                bail!("_bulk_docs refused a document: {failed}");
            }
            if rows.len() != batch.len() {
                bail!("_bulk_docs answered {} rows for {} documents", rows.len(), batch.len());
            }
        }
        Ok(())
    }

    /// The bytes the server's databases take on disk (in memory, under /dev/shm).
    pub fn disk_bytes(&self) -> u64 {
        directory_bytes(&self.dir)
    }

    /// Stops the server (SIGTERM by its pid, then SIGKILL if it lingers) and reaps it.
    pub fn stop(mut self) {
        let _ = Command::new("kill").arg(self.pid().to_string()).status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.guard.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Dropping the guard kills what is left.
    }
}

/// One HTTP/1.0 request to the server on `port`: the answer is sent whole and the connection closed, so no chunked
/// encoding needs reading. Returns the status and the body.
fn request(port: u16, method: &str, path: &str, body: Option<&str>) -> Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).context("connect to pouchdb-server")?;
    stream.set_read_timeout(Some(REQUEST_LIMIT)).context("set a read timeout")?;
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).context("send a request to pouchdb-server")?;
    stream.write_all(body.as_bytes()).context("send a request to pouchdb-server")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).context("read pouchdb-server's answer")?;
    let split = answer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .context("pouchdb-server's answer has no end of header")?;
    let status_line = String::from_utf8_lossy(&answer[..split]).lines().next().unwrap_or_default().to_owned();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("pouchdb-server answered `{status_line}`"))?;
    Ok((status, answer[split + 4..].to_vec()))
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("find a free port")?;
    Ok(listener.local_addr().context("find a free port")?.port())
}

fn directory_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => directory_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}
