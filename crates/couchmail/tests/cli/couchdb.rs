//! The CouchDB backend, chosen by configuration only, against pouchdb-server
//! (testkit's CouchDB stand-in; these tests do nothing when it is not
//! installed outside CI): every command on a `couchdb:` store, migrate
//! SQLite → CouchDB → SQLite without loss, credentials from a private file
//! or the environment and never shown.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use couchmail_testkit::pouchdb::PouchServer;
use serde_json::Value;

use super::transfer::populate;
use crate::Env;

/// The shared server of this test binary, in CouchDB's "admin party" (no users), as a
/// fresh CouchDB 1.x is; `None` when pouchdb-server is not installed.
fn server_url() -> Option<String> {
    static SERVER: OnceLock<Option<PouchServer>> = OnceLock::new();
    SERVER
        .get_or_init(|| PouchServer::start_if_installed().unwrap_or_else(|error| panic!("{error}")))
        .as_ref()
        .map(|server| server.url().to_owned())
}

/// A `couchdb:` store URL for a database no other test uses.
fn fresh_store(server: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("couchdb:{server}/cli-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// One HTTP request with std's TcpStream: the status code and body.
fn http(server: &str, method: &str, path: &str, body: &str, basic_auth: Option<&str>) -> (u16, String) {
    let address = server.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = basic_auth.map(|value| format!("Authorization: Basic {value}\r\n")).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

#[test]
fn every_command_works_on_a_couchdb_store_chosen_by_configuration() {
    let Some(server) = server_url() else { return };
    let env = Env::new();
    let store = fresh_store(&server);
    std::fs::write(env.dir.path().join("couchmail.toml"), format!("store = \"{store}\"\n")).unwrap();
    let on_couch = |args: &[&str]| {
        let output = env.cmd().env_remove("COUCHMAIL_STORE").args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    on_couch(&["domain", "add", "example.com"]);
    on_couch(&["mailbox", "add", "alice@example.com", "--name", "Alice"]);
    let status: Value = serde_json::from_str(&on_couch(&["--json", "status"])).unwrap();
    assert_eq!(status["backend"], "couchdb");
    assert_eq!(status["store"], store);
    assert_eq!(status["counts"]["mailbox"], 1);
    let text = on_couch(&["status"]);
    assert!(text.contains("backend:") && text.contains("couchdb"), "{text}");
    assert_eq!(on_couch(&["--json", "conflicts", "list"]).trim(), "[]");
    // Nothing went into the SQLite store the environment of `Env` names.
    assert_eq!(env.json(&["domain", "list"]), Value::Array(Vec::new()));
}

#[test]
fn migrate_sqlite_to_couchdb_and_back_is_lossless() {
    let Some(server) = server_url() else { return };
    let source = Env::new();
    populate(&source);
    let original = source.ok(&["export", "--include-secrets"]);
    let sqlite = format!("sqlite:{}", source.db().display());
    let couch = fresh_store(&server);

    let there = source.json(&["migrate", "--from", &sqlite, "--to", &couch]);
    assert_eq!((there["documents"].as_u64(), there["verified"].as_u64()), (Some(9), Some(9)));
    assert_eq!(source.ok(&["--store", &couch, "export", "--include-secrets"]), original);

    let back = format!("sqlite:{}", source.dir.path().join("back.db").display());
    let summary = source.ok(&["migrate", "--from", &couch, "--to", &back]);
    assert!(summary.contains("migrated 9 documents") && summary.contains("all 9 verified identical"), "{summary}");
    assert_eq!(source.ok(&["--store", &back, "export", "--include-secrets"]), original);

    // The copy on CouchDB serves the commands as the original did.
    let alice = source.json(&["--store", &couch, "mailbox", "show", "alice@example.com"]);
    assert_eq!(alice["name"], "Alice Liddell");
    let stderr = source.fails(&["migrate", "--from", &sqlite, "--to", &couch], 7);
    assert!(stderr.contains("already holds documents"), "{stderr}");
}

#[test]
fn export_from_couchdb_imports_into_sqlite_byte_identically() {
    let Some(server) = server_url() else { return };
    let env = Env::new();
    let couch = fresh_store(&server);
    env.ok(&["--store", &couch, "domain", "add", "example.com"]);
    env.ok(&["--store", &couch, "alias", "add", "@example.com", "--to", "postmaster@example.org"]);
    let exported = env.ok(&["--store", &couch, "export"]);
    let file = env.dir.path().join("couch.jsonl");
    std::fs::write(&file, &exported).unwrap();
    assert_eq!(env.json(&["import", file.to_str().unwrap()])["created"], 2);
    assert_eq!(env.ok(&["export"]), exported);
    // And back into CouchDB: nothing to change.
    let again = env.json(&["--store", &couch, "import", file.to_str().unwrap()]);
    assert_eq!(again["unchanged"], 2);
}

#[test]
fn an_unreachable_couchdb_is_exit_6_and_a_url_with_credentials_exit_2() {
    let env = Env::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let stderr = env.fails(&["--store", &format!("couchdb:http://127.0.0.1:{port}/couchmail"), "status"], 6);
    assert!(stderr.contains("hint:") && stderr.contains("CouchDB"), "{stderr}");
    let stderr = env.fails(&["--store", "couchdb:http://admin:hunter2@127.0.0.1:5984/couchmail", "status"], 2);
    assert!(stderr.contains("credentials") && !stderr.contains("hunter2"), "{stderr}");
    let stderr = env.fails(&["migrate", "--from", "couchdb:https://admin:hunter2@h/db", "--to", "sqlite:/x"], 2);
    assert!(stderr.contains("--from") && !stderr.contains("hunter2"), "{stderr}");
}

/// Base64 of `text`, for the check that the password does not leak in an `Authorization` header.
fn base64(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (idx, byte)| n | (u32::from(*byte) << (16 - 8 * idx)));
        for idx in 0..4 {
            if idx <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * idx)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn credentials_come_from_a_private_file_or_the_environment_and_are_never_shown() {
    // A server of its own: once it has an admin, anonymous requests are no longer admin.
    let Some(server) = PouchServer::start_if_installed().unwrap() else { return };
    let url = server.url().to_owned();
    const PASSWORD: &str = "s3cret-couch-pw";
    let (status, body) = http(&url, "PUT", "/_config/admins/cmadmin", &format!("\"{PASSWORD}\""), None);
    assert_eq!(status, 200, "{body}");
    let auth = base64(&format!("cmadmin:{PASSWORD}"));
    assert_eq!(http(&url, "GET", "/_session", "", Some(&auth)).0, 200);

    let env = Env::new();
    let store = format!("couchdb:{url}/private");
    let password_file = env.dir.path().join("couchdb-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = env.dir.path().join("couchmail.toml");
    std::fs::write(
        &config,
        format!(
            "store = \"{store}\"\n[couchdb]\nusername = \"cmadmin\"\npassword_file = \"{}\"\n",
            password_file.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str], extra_env: &[(&str, &str)]| {
        let mut cmd = env.cmd();
        cmd.env_remove("COUCHMAIL_STORE").env("RUST_LOG", "trace");
        for (name, value) in extra_env {
            cmd.env(name, value);
        }
        let output = cmd.args(args).output().unwrap();
        let shown = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(!shown.contains(PASSWORD) && !shown.contains(&auth), "the password was shown:\n{shown}");
        (output.status.code(), shown)
    };

    let (code, shown) = run(&["domain", "add", "example.com"], &[]);
    assert_eq!(code, Some(0), "{shown}");
    let (code, shown) = run(&["--json", "status"], &[]);
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains("\"backend\": \"couchdb\""), "{shown}");
    // The database's only member is the configured user.
    let (_, security) = http(&url, "GET", "/private/_security", "", Some(&auth));
    assert!(security.contains("cmadmin"), "{security}");

    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, shown) = run(&["status"], &[]);
    assert_eq!(code, Some(2), "{shown}");
    assert!(shown.contains("0644") && shown.contains("chmod 600"), "{shown}");

    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&password_file, "wrong-password\n").unwrap();
    let (code, shown) = run(&["status"], &[]);
    assert_eq!(code, Some(6), "{shown}");

    // The environment instead of a file.
    std::fs::write(&config, format!("store = \"{store}\"\n[couchdb]\nusername = \"cmadmin\"\n")).unwrap();
    let (code, shown) = run(&["domain", "list"], &[("COUCHMAIL_COUCHDB_PASSWORD", PASSWORD)]);
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains("example.com"), "{shown}");
    let (code, shown) = run(&["domain", "list"], &[]);
    assert_eq!(code, Some(2), "{shown}");
    assert!(shown.contains("no password"), "{shown}");
}
