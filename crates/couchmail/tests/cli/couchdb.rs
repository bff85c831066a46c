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

/// The index's `last_seq` from `/api/v1/health`, once it is ready.
fn health_last_seq(addr: &str) -> Option<Value> {
    match crate::http_get(addr, "/api/v1/health", None) {
        Ok((200, body)) => {
            let health: Value = serde_json::from_str(&body).unwrap();
            (health["index_ready"] == true).then(|| health["last_seq"].clone())
        }
        _ => None,
    }
}

#[test]
fn up_runs_on_a_couchdb_store_and_follows_its_changes() {
    let Some(server) = server_url() else { return };
    let env = Env::new();
    let store = fresh_store(&server);
    std::fs::write(env.dir.path().join("couchmail.toml"), format!("store = \"{store}\"\n")).unwrap();
    let data_dir = env.dir.path().join("data");
    let (mut up, summary) = crate::start_up(&env, &data_dir);
    assert_eq!(summary["store"], store);
    assert!(summary["cli"].as_str().unwrap().ends_with(&format!("--store {store}")), "{summary}");
    let addr =
        summary["api_url"].as_str().unwrap().trim_start_matches("http://").trim_end_matches("/api/v1").to_owned();

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let first_seq = loop {
        if let Some(seq) = health_last_seq(&addr) {
            break seq;
        }
        assert!(std::time::Instant::now() < deadline, "the index never became ready");
        std::thread::sleep(Duration::from_millis(50));
    };
    // The first admin token went into CouchDB, not into a SQLite file.
    let tokens = env.json(&["--store", &store, "token", "list"]);
    assert_eq!(tokens.as_array().unwrap().len(), 1, "{tokens}");
    assert!(!data_dir.join("couchmail.db").exists());

    // A write by another process reaches the running index through CouchDB's changes feed.
    env.ok(&["--store", &store, "domain", "add", "example.com"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while health_last_seq(&addr).as_ref() == Some(&first_seq) {
        assert!(std::time::Instant::now() < deadline, "the index did not follow the change");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(crate::stop_up(&mut up), Some(0));
}

#[test]
fn conflicts_left_by_replication_are_listed_and_resolved() {
    // pouchdb-server drops replicated revisions when it runs validate_doc_update itself; the
    // replicating mode hides the function from it, as CouchDB would accept such revisions.
    let Some(pouch) = PouchServer::start_replicating_if_installed().unwrap() else { return };
    let server = pouch.url().to_owned();
    let env = Env::new();
    let store = fresh_store(&server);
    let database = store.rsplit('/').next().unwrap().to_owned();
    env.ok(&["--store", &store, "domain", "add", "example.com"]);
    env.cmd()
        .args(["--store", &store, "mailbox", "add", "alice@example.com", "--name", "Alice", "--password-stdin"])
        .write_stdin("correct horse battery staple\n")
        .assert()
        .success();
    let mailbox = env.json(&["--store", &store, "mailbox", "show", "alice@example.com"]);
    let rev = mailbox["rev"].as_str().unwrap().to_owned();
    // What replication does with a concurrent edit made at another site: a sibling revision.
    let sibling = format!("1-{}", if rev.as_bytes()[2] == b'f' { "0".repeat(32) } else { "f".repeat(32) });
    let doc = serde_json::json!({
        "_id": "mailbox:alice@example.com", "_rev": sibling, "type": "mailbox", "active": true, "name": "Alice at site B",
        "password": "{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA"
    });
    let (status, body) = http(
        &server,
        "POST",
        &format!("/{database}/_bulk_docs"),
        &serde_json::json!({"new_edits": false, "docs": [doc]}).to_string(),
        None,
    );
    assert!(status == 201 || status == 200, "{status} {body}");

    let conflicts = env.json(&["--store", &store, "conflicts", "list"]);
    let conflicts = conflicts.as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let conflict = &conflicts[0];
    assert_eq!(conflict["id"], "mailbox:alice@example.com");
    let differs: Vec<&str> = conflict["differs_in"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(differs, ["name", "password"]);
    let listing = conflict.to_string();
    assert!(!listing.contains("argon2id"), "a password hash was shown: {listing}");
    let table = env.ok(&["--store", &store, "conflicts", "list"]);
    assert!(table.contains("mailbox:alice@example.com") && table.contains("name, password"), "{table}");

    let site_b = if conflict["winner"]["rev"] == sibling.as_str() {
        conflict["winner"]["rev"].as_str().unwrap().to_owned()
    } else {
        conflict["losers"][0]["rev"].as_str().unwrap().to_owned()
    };
    let resolved =
        env.json(&["--store", &store, "conflicts", "resolve", "mailbox:alice@example.com", "--keep", &site_b]);
    assert_eq!(resolved["kept"], site_b.as_str());
    assert_eq!(env.json(&["--store", &store, "conflicts", "list"]), Value::Array(Vec::new()));
    assert_eq!(env.json(&["--store", &store, "mailbox", "show", "alice@example.com"])["name"], "Alice at site B");
    env.fails(&["--store", &store, "conflicts", "resolve", "mailbox:alice@example.com", "--keep", &site_b], 3);
}

#[test]
fn https_with_a_private_authority_from_couchdb_ca_file() {
    let Some((server, authority_pem)) = PouchServer::start_tls_if_installed().unwrap() else { return };
    let env = Env::new();
    let store = format!("couchdb:{}/tls", server.url());
    assert!(store.starts_with("couchdb:https://"), "{store}");
    // Without the authority the server's certificate is not trusted: the store is unavailable.
    let stderr = env.fails(&["--store", &store, "status"], 6);
    assert!(stderr.contains("hint:"), "{stderr}");

    let ca_file = env.dir.path().join("couchdb-ca.pem");
    std::fs::write(&ca_file, authority_pem).unwrap();
    std::fs::write(env.dir.path().join("couchmail.toml"), format!("[couchdb]\nca_file = \"{}\"\n", ca_file.display()))
        .unwrap();
    env.ok(&["--store", &store, "domain", "add", "example.com"]);
    let status = env.json(&["--store", &store, "status"]);
    assert_eq!((status["backend"].as_str(), status["counts"]["domain"].as_u64()), (Some("couchdb"), Some(1)));
}
