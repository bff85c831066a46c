//! The `couchmail` binary end to end: each test runs the real binary
//! against its own temporary SQLite store (`COUCHMAIL_STORE`), checks exit
//! codes, human output and `--json`, and reads the store directly where
//! only the store can tell (password hashes).
//!
//! Modules: `transfer` (export, import, migrate, conflicts), `couchdb`
//! (the CouchDB backend chosen by configuration, against pouchdb-server) and
//! `policy` (issue #5: listings and the mail-policy settings).
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly on an unexpected error")]

mod cli {
    mod api_https;
    mod couchdb;
    mod policy;
    pub mod transfer;
}

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use couchmail_model::PasswordHash;
use couchmail_store::{SqliteStore, Store};
use predicates::prelude::*;
use serde_json::Value;

/// A temporary store and an empty configuration file, so that nothing on
/// the machine (an /etc/couchmail/couchmail.toml, COUCHMAIL_* variables)
/// leaks into a test.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("couchmail.toml"), "").unwrap();
        Env { dir }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("db")
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("couchmail").unwrap();
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("COUCHMAIL_") || name == "RUST_LOG") {
            cmd.env_remove(name);
        }
        cmd.env("COUCHMAIL_CONFIG", self.dir.path().join("couchmail.toml"));
        cmd.env("COUCHMAIL_STORE", format!("sqlite:{}", self.db().display()));
        cmd.timeout(Duration::from_secs(60));
        cmd
    }

    /// Runs `args`, expecting success, and returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.cmd().args(args).output().unwrap();
        assert!(
            output.status.success(),
            "couchmail {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs `--json` `args`, expecting success, and parses stdout.
    fn json(&self, args: &[&str]) -> Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let stdout = self.ok(&full);
        serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("couchmail {args:?}: not JSON ({err}): {stdout}"))
    }

    /// Runs `args`, expecting exit `code`, and returns stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let output = self.cmd().args(args).output().unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(
            output.status.code(),
            Some(code),
            "couchmail {args:?}\nstdout: {}\nstderr: {stderr}",
            String::from_utf8_lossy(&output.stdout)
        );
        stderr
    }

    /// Reads a raw document from the store, after the CLI has exited.
    fn raw(&self, id: &str) -> Option<serde_json::Map<String, Value>> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let store = SqliteStore::open(self.db()).await.unwrap();
            store.get(id).await.unwrap().map(|doc| doc.body)
        })
    }

    /// Writes a raw document into the store, past every check but the store's own.
    fn put_raw(&self, id: &str, body: Value) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let store = SqliteStore::open(self.db()).await.unwrap();
            store.put(id, None, body.as_object().unwrap()).await.unwrap();
        });
    }
}

#[test]
fn help_of_every_group_teaches_with_an_example() {
    let env = Env::new();
    let top = env.ok(&["--help"]);
    assert!(top.contains("Exit codes:") && top.contains("7  refused"), "{top}");
    for group in [
        "up",
        "status",
        "domain",
        "domain-alias",
        "mailbox",
        "alias",
        "sieve",
        "token",
        "export",
        "import",
        "migrate",
        "conflicts",
        "listing",
    ] {
        let help = env.ok(&[group, "--help"]);
        assert!(help.contains("Example"), "`couchmail {group} --help` shows no example:\n{help}");
    }
    for (group, action) in
        [("domain", "add"), ("mailbox", "passwd"), ("alias", "update"), ("sieve", "put"), ("listing", "add")]
    {
        let help = env.ok(&[group, action, "--help"]);
        assert!(help.contains(&format!("couchmail {group} {action}")), "{help}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::new();
    env.fails(&["domain"], 2);
    env.fails(&["domain", "frobnicate"], 2);
    env.fails(&["mailbox", "add"], 2);
    env.fails(&["domain", "add", "example.com", "--quota-default", "lots"], 2);
    env.fails(&["token", "create"], 2);
}

#[test]
fn domain_add_list_show_update_rm() {
    let env = Env::new();
    let added = env.json(&["domain", "add", "Example.COM", "--quota-default", "2G", "--max-mailboxes", "5"]);
    assert_eq!(added["name"], "example.com");
    assert_eq!(added["active"], true);
    assert_eq!(added["quota_default"], 2u64 << 30);
    assert_eq!(added["max_mailboxes"], 5);
    assert!(added["rev"].as_str().is_some_and(|rev| !rev.is_empty()));

    env.ok(&["domain", "add", "bücher.example", "--inactive"]);
    let listed = env.json(&["domain", "list"]);
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["example.com", "xn--bcher-kva.example"]);
    assert_eq!(listed[1]["name_unicode"], "bücher.example");
    assert_eq!(listed[1]["active"], false);

    let table = env.ok(&["domain", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("DOMAIN"), "{table}");
    assert!(lines[1].starts_with("example.com") && lines[1].contains("2G"), "{table}");
    // Columns line up: every row has its second column where the header has it.
    let active_col = lines[0].find("ACTIVE").unwrap();
    assert_eq!(&lines[1][active_col..active_col + 3], "yes", "{table}");

    let shown = env.json(&["domain", "show", "example.com"]);
    assert_eq!(shown, added);
    let shown = env.ok(&["domain", "show", "example.com"]);
    assert!(shown.lines().any(|line| line.starts_with("quota default:") && line.ends_with(" 2G")), "{shown}");

    let updated = env.json(&["domain", "update", "example.com", "--no-quota-default", "--inactive"]);
    assert_eq!(updated["quota_default"], Value::Null);
    assert_eq!(updated["active"], false);
    assert_eq!(updated["max_mailboxes"], 5);
    assert_ne!(updated["rev"], added["rev"]);

    let removed = env.json(&["domain", "rm", "example.com"]);
    assert_eq!(removed["removed"].as_array().unwrap().last().unwrap(), "domain:example.com");
    let stderr = env.fails(&["domain", "show", "example.com"], 3);
    assert!(stderr.contains("error: domain example.com does not exist"), "{stderr}");
    assert!(stderr.contains("hint: `couchmail domain list`"), "{stderr}");
}

#[test]
fn adding_twice_is_a_conflict() {
    let env = Env::new();
    env.ok(&["domain", "add", "example.com"]);
    let stderr = env.fails(&["domain", "add", "example.com"], 4);
    assert!(stderr.contains("already exists") && stderr.contains("hint:"), "{stderr}");
}

#[test]
fn update_without_changes_is_a_usage_error() {
    let env = Env::new();
    env.ok(&["domain", "add", "example.com"]);
    let stderr = env.fails(&["domain", "update", "example.com"], 2);
    assert!(stderr.contains("nothing to change"), "{stderr}");
}

#[test]
fn invalid_input_exits_5_naming_the_problem() {
    let env = Env::new();
    let stderr = env.fails(&["domain", "add", "not a domain"], 5);
    assert!(stderr.contains("invalid domain `not a domain`"), "{stderr}");
    let stderr = env.fails(&["mailbox", "add", "alice"], 5);
    assert!(stderr.contains("invalid address `alice`") && stderr.contains("no `@`"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
    let stderr = env.fails(&["mailbox", "add", "al ice@example.com"], 5);
    assert!(stderr.contains("local part"), "{stderr}");
    let stderr = env.fails(&["mailbox", "add", "alice@example.com", "--role", "boss"], 5);
    assert!(stderr.contains("unknown role `boss`"), "{stderr}");
    let stderr = env.fails(&["domain", "add", "example.com", "--quota-default", "1K"], 5);
    assert!(stderr.contains("quota_default"), "{stderr}");
}

#[test]
fn domain_alias_add_list_show_rm() {
    let env = Env::new();
    env.ok(&["domain", "add", "example.com"]);
    let added = env.json(&["domain-alias", "add", "example.net", "--target", "example.com"]);
    assert_eq!(added["name"], "example.net");
    assert_eq!(added["target"], "example.com");
    let listed = env.json(&["domain-alias", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["name"], "example.net");
    assert!(env.ok(&["domain-alias", "list"]).contains("example.net  example.com"));
    assert_eq!(env.json(&["domain-alias", "show", "example.net"]), added);
    env.ok(&["domain-alias", "rm", "example.net"]);
    env.fails(&["domain-alias", "show", "example.net"], 3);
    assert_eq!(env.json(&["domain-alias", "list"]), Value::Array(Vec::new()));
}

#[test]
fn mailbox_add_list_show_update_rm() {
    let env = Env::new();
    env.ok(&["domain", "add", "example.com"]);
    env.ok(&["domain", "add", "example.org"]);
    let added = env.json(&[
        "mailbox",
        "add",
        "Alice@Example.com",
        "--name",
        "Alice Liddell",
        "--quota",
        "2G",
        "--role",
        "admin",
    ]);
    assert_eq!(added["address"], "alice@example.com");
    assert_eq!(added["name"], "Alice Liddell");
    assert_eq!(added["quota_bytes"], 2u64 << 30);
    assert_eq!(added["roles"], serde_json::json!(["admin"]));
    assert_eq!(added["has_password"], false);
    assert_eq!(added["active"], true);
    env.ok(&["mailbox", "add", "bob@example.org"]);

    let all = env.json(&["mailbox", "list"]);
    assert_eq!(all.as_array().unwrap().len(), 2);
    let of_org = env.json(&["mailbox", "list", "--domain", "example.org"]);
    assert_eq!(of_org.as_array().unwrap().len(), 1);
    assert_eq!(of_org[0]["address"], "bob@example.org");
    let table = env.ok(&["mailbox", "list"]);
    assert!(table.starts_with("ADDRESS"), "{table}");
    assert!(table.contains("alice@example.com  Alice Liddell"), "{table}");

    let updated = env.json(&[
        "mailbox",
        "update",
        "alice@example.com",
        "--name",
        "Alice",
        "--no-quota",
        "--inactive",
        "--add-role",
        "domain-admin:example.com",
        "--remove-role",
        "admin",
    ]);
    assert_eq!(updated["name"], "Alice");
    assert_eq!(updated["quota_bytes"], Value::Null);
    assert_eq!(updated["active"], false);
    assert_eq!(updated["roles"], serde_json::json!(["domain-admin:example.com"]));
    assert_eq!(env.json(&["mailbox", "show", "alice@example.com"]), updated);
    let stderr = env.fails(&["mailbox", "update", "alice@example.com", "--remove-role", "admin"], 5);
    assert!(stderr.contains("has no role `admin`"), "{stderr}");

    env.ok(&["mailbox", "rm", "alice@example.com"]);
    env.fails(&["mailbox", "show", "alice@example.com"], 3);
    env.fails(&["mailbox", "update", "nobody@example.com", "--name", "x"], 3);
}

#[test]
fn mailbox_in_a_missing_domain_is_refused() {
    let env = Env::new();
    let stderr = env.fails(&["mailbox", "add", "alice@nowhere.example"], 7);
    assert!(stderr.contains("nowhere.example"), "{stderr}");
}

#[test]
fn passwd_from_stdin_stores_a_verifiable_hash_and_never_shows_it() {
    let env = Env::new();
    env.ok(&["domain", "add", "example.com"]);
    env.ok(&["mailbox", "add", "alice@example.com"]);
    env.cmd()
        .args(["mailbox", "passwd", "alice@example.com", "--stdin"])
        .write_stdin("correct horse battery\n")
        .assert()
        .success();

    let body = env.raw("mailbox:alice@example.com").unwrap();
    let hash = PasswordHash::parse(body["password"].as_str().unwrap()).unwrap();
    assert!(hash.as_str().starts_with("{ARGON2ID}$argon2id$"), "{}", hash.as_str());
    assert!(hash.verify("correct horse battery"));
    assert!(!hash.verify("correct horse battery\n"));
    assert!(!hash.verify("wrong"));

    let shown = env.json(&["mailbox", "show", "alice@example.com"]);
    assert_eq!(shown["has_password"], true);
    assert!(shown.get("password").is_none());
    for args in [&["mailbox", "show", "alice@example.com"][..], &["mailbox", "list"], &["--json", "mailbox", "list"]] {
        let out = env.ok(args);
        assert!(!out.contains("argon2"), "{args:?} shows the hash: {out}");
    }
}

#[test]
fn add_with_password_from_stdin() {
    let env = Env::new();
    env.ok(&["domain", "add", "example.com"]);
    env.cmd()
        .args(["--json", "mailbox", "add", "bob@example.com", "--password-stdin"])
        .write_stdin("a long enough secret\r\n")
        .assert()
        .success()
        .stdout(predicate::str::contains("\"has_password\": true"));
    let body = env.raw("mailbox:bob@example.com").unwrap();
    assert!(PasswordHash::parse(body["password"].as_str().unwrap()).unwrap().verify("a long enough secret"));
}

#[test]
fn short_password_is_refused_and_nothing_is_written() {
    let env = Env::new();
    env.ok(&["domain", "add", "example.com"]);
    env.ok(&["mailbox", "add", "alice@example.com"]);
    let output =
        env.cmd().args(["mailbox", "passwd", "alice@example.com", "--stdin"]).write_stdin("short\n").output().unwrap();
    assert_eq!(output.status.code(), Some(5));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("password refused") && stderr.contains("at least 10"), "{stderr}");
    assert!(env.raw("mailbox:alice@example.com").unwrap().get("password").is_none());
}

#[test]
fn passwd_without_a_terminal_asks_for_stdin() {
    let env = Env::new();
    env.ok(&["domain", "add", "example.com"]);
    env.ok(&["mailbox", "add", "alice@example.com"]);
    let output = env.cmd().args(["mailbox", "passwd", "alice@example.com"]).write_stdin("").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--stdin"));
}

#[test]
fn alias_add_list_show_update_rm() {
    let env = Env::new();
    env.ok(&["domain", "add", "example.com"]);
    env.ok(&["mailbox", "add", "alice@example.com"]);
    env.ok(&["mailbox", "add", "bob@example.com"]);
    let added = env.json(&["alias", "add", "info@example.com", "--to", "alice@example.com", "--to", "bob@example.com"]);
    assert_eq!(added["key"], "info@example.com");
    assert_eq!(added["catch_all"], false);
    assert_eq!(added["targets"], serde_json::json!(["alice@example.com", "bob@example.com"]));
    let catch_all = env.json(&["alias", "add", "@example.com", "--to", "alice@example.com"]);
    assert_eq!(catch_all["key"], "@example.com");
    assert_eq!(catch_all["catch_all"], true);

    let listed = env.json(&["alias", "list", "--domain", "example.com"]);
    let keys: Vec<&str> = listed.as_array().unwrap().iter().map(|a| a["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 2);
    assert!(keys.contains(&"@example.com") && keys.contains(&"info@example.com"));
    assert!(env.ok(&["alias", "show", "@example.com"]).contains("catch-all: @example.com"));

    let updated = env.json(&[
        "alias",
        "update",
        "info@example.com",
        "--remove-target",
        "bob@example.com",
        "--add-target",
        "carol@elsewhere.example",
        "--inactive",
    ]);
    assert_eq!(updated["targets"], serde_json::json!(["alice@example.com", "carol@elsewhere.example"]));
    assert_eq!(updated["active"], false);
    let stderr = env.fails(&["alias", "update", "info@example.com", "--remove-target", "zed@example.com"], 5);
    assert!(stderr.contains("no target zed@example.com"), "{stderr}");

    env.ok(&["alias", "rm", "info@example.com"]);
    env.fails(&["alias", "show", "info@example.com"], 3);
    env.fails(&["alias", "add", "x@example.com", "--to", "not-an-address"], 5);
}

#[test]
fn sieve_put_list_show_activate_rm() {
    let env = Env::new();
    env.ok(&["domain", "add", "example.com"]);
    env.ok(&["mailbox", "add", "alice@example.com"]);
    let script = "require \"fileinto\";\nif header :contains \"subject\" \"[list]\" { fileinto \"Lists\"; }\n";
    let file = env.dir.path().join("lists.sieve");
    std::fs::write(&file, script).unwrap();

    let put = env.json(&["sieve", "put", "alice@example.com", "lists", file.to_str().unwrap(), "--activate"]);
    assert_eq!(put["name"], "lists");
    assert_eq!(put["active"], true);
    assert_eq!(put["bytes"], script.len());
    env.cmd().args(["sieve", "put", "alice@example.com", "spam", "-"]).write_stdin("keep;\n").assert().success();

    let listed = env.json(&["sieve", "list", "alice@example.com"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let active: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["active"] == true)
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(active, ["lists"]);
    assert_eq!(env.ok(&["sieve", "show", "alice@example.com", "lists"]), script);
    assert_eq!(env.json(&["sieve", "show", "alice@example.com", "lists"])["script"], script);
    assert_eq!(env.json(&["mailbox", "show", "alice@example.com"])["sieve_active"], "lists");

    env.ok(&["sieve", "activate", "alice@example.com", "spam"]);
    assert_eq!(env.json(&["mailbox", "show", "alice@example.com"])["sieve_active"], "spam");
    env.ok(&["sieve", "deactivate", "alice@example.com"]);
    assert_eq!(env.json(&["mailbox", "show", "alice@example.com"])["sieve_active"], Value::Null);
    env.fails(&["sieve", "activate", "alice@example.com", "nope"], 3);

    // Replacing keeps one script under the name.
    env.cmd().args(["sieve", "put", "alice@example.com", "spam"]).write_stdin("discard;\n").assert().success();
    assert_eq!(env.ok(&["sieve", "show", "alice@example.com", "spam"]), "discard;\n");

    env.ok(&["sieve", "activate", "alice@example.com", "lists"]);
    env.ok(&["sieve", "rm", "alice@example.com", "lists"]);
    env.fails(&["sieve", "show", "alice@example.com", "lists"], 3);
    assert_eq!(env.json(&["mailbox", "show", "alice@example.com"])["sieve_active"], Value::Null);
    assert_eq!(env.json(&["sieve", "list", "alice@example.com"]).as_array().unwrap().len(), 1);
}

#[test]
fn token_create_list_revoke() {
    let env = Env::new();
    let created = env.json(&["token", "create", "--admin", "--label", "ops"]);
    let bearer = created["bearer"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    assert!(bearer.starts_with(&format!("cmt_{id}_")), "{bearer}");
    assert_eq!(created["principal"], "admin");
    assert_eq!(created["label"], "ops");

    let listed = env.json(&["token", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], id);
    assert!(listed[0].get("bearer").is_none());
    let table = env.ok(&["token", "list"]);
    assert!(table.contains(id) && table.contains("ops") && !table.contains(bearer), "{table}");

    // The human form prints the bearer once, on stdout.
    let out = env.ok(&["token", "create", "--admin"]);
    assert!(out.trim().starts_with("cmt_"), "{out}");

    env.ok(&["token", "revoke", id]);
    assert_eq!(env.json(&["token", "list"]).as_array().unwrap().len(), 1);
    env.fails(&["token", "revoke", id], 3);
    env.fails(&["token", "create", "--mailbox", "nobody@example.com"], 3);
}

#[test]
fn removing_a_domain_with_mailboxes_needs_cascade() {
    let env = Env::new();
    env.ok(&["domain", "add", "example.com"]);
    env.ok(&["mailbox", "add", "alice@example.com"]);
    env.ok(&["alias", "add", "info@example.com", "--to", "alice@example.com"]);
    let stderr = env.fails(&["domain", "rm", "example.com"], 7);
    assert!(stderr.contains("--cascade"), "{stderr}");
    assert!(env.raw("mailbox:alice@example.com").is_some());

    let removed = env.json(&["domain", "rm", "example.com", "--cascade"]);
    let removed: Vec<&str> = removed["removed"].as_array().unwrap().iter().map(|id| id.as_str().unwrap()).collect();
    assert!(removed.contains(&"mailbox:alice@example.com") && removed.contains(&"alias:info@example.com"));
    assert_eq!(removed.last(), Some(&"domain:example.com"));
    env.fails(&["mailbox", "show", "alice@example.com"], 3);
}

#[test]
fn status_counts_documents() {
    let env = Env::new();
    env.ok(&["domain", "add", "example.com"]);
    env.ok(&["mailbox", "add", "alice@example.com"]);
    let status = env.json(&["status"]);
    assert_eq!(status["reachable"], true);
    assert_eq!(status["counts"]["domain"], 1);
    assert_eq!(status["counts"]["mailbox"], 1);
    assert_eq!(status["counts"]["alias"], 0);
    assert!(status["store"].as_str().unwrap().starts_with("sqlite:"));
}

#[test]
fn missing_store_directory_is_unavailable() {
    let env = Env::new();
    let stderr = env
        .cmd()
        .env("COUCHMAIL_STORE", format!("sqlite:{}", env.dir.path().join("no/such/dir/db").display()))
        .args(["domain", "list"])
        .output()
        .unwrap();
    assert_eq!(stderr.status.code(), Some(6));
}

#[test]
fn configuration_errors_exit_2_naming_the_source() {
    let env = Env::new();
    // Plain HTTP off loopback (TLS turned off) is refused.
    std::fs::write(env.dir.path().join("couchmail.toml"), "[api]\nlisten = \"0.0.0.0:8080\"\ntls = \"off\"\n").unwrap();
    let stderr = env.fails(&["domain", "list"], 2);
    assert!(
        stderr.contains("couchmail.toml") && stderr.contains("api.listen") && stderr.contains("127.0.0.1"),
        "{stderr}"
    );

    let stderr = env.fails(&["--config", "/nonexistent/couchmail.toml", "domain", "list"], 2);
    assert!(stderr.contains("/nonexistent/couchmail.toml"), "{stderr}");

    std::fs::write(env.dir.path().join("couchmail.toml"), "").unwrap();
    let stderr =
        env.cmd().env("COUCHMAIL_STORE", "couchdb:http://127.0.0.1:5984/X").args(["domain", "list"]).assert().code(2);
    let stderr = String::from_utf8_lossy(&stderr.get_output().stderr).into_owned();
    assert!(stderr.contains("database name") && stderr.contains("COUCHMAIL_STORE"), "{stderr}");
}

#[test]
fn store_flag_beats_the_environment() {
    let env = Env::new();
    let other = env.dir.path().join("other.db");
    let store_flag = format!("sqlite:{}", other.display());
    env.ok(&["--store", &store_flag, "domain", "add", "example.com"]);
    assert!(other.exists());
    assert_eq!(env.json(&["domain", "list"]), Value::Array(Vec::new()));
    assert_eq!(env.json(&["--store", &store_flag, "domain", "list"]).as_array().unwrap().len(), 1);
}

/// A running `couchmail up`, killed on drop if a test fails half-way.
struct Up {
    child: Child,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM to the process with `pid` (a child this test started).
fn terminate(pid: u32) {
    let status = StdCommand::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

/// A minimal HTTP/1.1 GET over std's TcpStream: the status code and body.
fn http_get(addr: &str, path: &str, bearer: Option<&str>) -> std::io::Result<(u16, String)> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let auth = bearer.map(|token| format!("Authorization: Bearer {token}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Ok((status, body))
}

fn dir_listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Starts `couchmail --json up --dev --no-daemons` with its data in `data_dir` on a free
/// port, and returns it with its one-line JSON summary.
fn start_up(env: &Env, data_dir: &Path) -> (Up, Value) {
    let mut command = StdCommand::new(assert_cmd::cargo::cargo_bin("couchmail"));
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("COUCHMAIL_")) {
        command.env_remove(name);
    }
    command
        .env("COUCHMAIL_CONFIG", env.dir.path().join("couchmail.toml"))
        .env("COUCHMAIL_DATA_DIR", data_dir)
        .env("COUCHMAIL_API_LISTEN", "127.0.0.1:0")
        .env("COUCHMAIL_AUTH_LISTEN", "127.0.0.1:0")
        // Postfix and Dovecot are the end-to-end suite's; this test is about couchmail's own servers.
        .args(["--json", "up", "--dev", "--no-daemons"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut up = Up { child: command.spawn().unwrap() };
    let stdout = up.child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = sender.send(line);
        }
        // Keep reading so the child never blocks on a full pipe.
        for _ in lines {}
    });
    let line = receiver.recv_timeout(Duration::from_secs(30)).expect("`up` printed its summary within 30 s");
    (up, serde_json::from_str(&line).unwrap())
}

/// Sends SIGTERM and waits (at most 10 s) for `up` to exit; its exit code.
fn stop_up(up: &mut Up) -> Option<i32> {
    terminate(up.child.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = up.child.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < deadline, "`up` did not stop within 10 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn up_dev_serves_the_api_makes_a_first_token_and_stops_on_sigterm() {
    let env = Env::new();
    let data_dir = env.dir.path().join("data");
    let (mut up, summary) = start_up(&env, &data_dir);
    let api_url = summary["api_url"].as_str().unwrap();
    let addr = api_url.strip_prefix("http://").unwrap().strip_suffix("/api/v1").unwrap().to_owned();
    assert_eq!(summary["data_dir"], data_dir.to_str().unwrap());
    assert_eq!(summary["store"], format!("sqlite:{}", data_dir.join("couchmail.db").display()));

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match http_get(&addr, "/api/v1/health", None) {
            Ok((200, body)) => {
                let health: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(health["index_ready"], true);
                break;
            }
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            other => panic!("health never became ready: {other:?}"),
        }
    }

    let token_file = data_dir.join("admin-token");
    assert_eq!(summary["admin_token_file"], token_file.to_str().unwrap());
    assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(data_dir.join("couchmail.db")).unwrap().permissions().mode() & 0o777, 0o600);
    let bearer = std::fs::read_to_string(&token_file).unwrap().trim().to_owned();
    let (status, body) = http_get(&addr, "/api/v1/whoami", Some(&bearer)).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["role"], "admin");
    let (status, _) = http_get(&addr, "/api/v1/whoami", Some("cmt_0000000000000000_00")).unwrap();
    assert_eq!(status, 401);

    let before = dir_listing(&data_dir);
    assert_eq!(stop_up(&mut up), Some(0));
    assert!(http_get(&addr, "/api/v1/health", None).is_err(), "the API still answers after the stop");
    // The stop removed nothing but SQLite's transient files. The index checkpoint is saved
    // in the background once the index is ready and again at the stop, so it may appear on
    // either side; the stop must leave it complete.
    let transient =
        |name: &String| name.ends_with("-wal") || name.ends_with("-shm") || name.starts_with("index.checkpoint");
    let kept: Vec<String> = before.iter().filter(|name| !transient(name)).cloned().collect();
    let after: Vec<String> = dir_listing(&data_dir).into_iter().filter(|name| !transient(name)).collect();
    assert_eq!(after, kept);
    assert!(kept.contains(&"admin-token".to_owned()) && kept.contains(&"couchmail.db".to_owned()), "{kept:?}");
    let checkpoint = data_dir.join("index.checkpoint");
    assert_eq!(std::fs::metadata(&checkpoint).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(
        !dir_listing(&data_dir).iter().any(|name| name.starts_with("index.checkpoint") && name != "index.checkpoint"),
        "a temporary checkpoint file was left behind"
    );

    // A second run finds the admin token and makes no new one.
    let (mut again, summary) = start_up(&env, &data_dir);
    assert_eq!(summary["admin_token_file"], Value::Null);
    assert_eq!(std::fs::read_to_string(&token_file).unwrap().trim(), bearer);
    assert_eq!(stop_up(&mut again), Some(0));
}

#[test]
fn render_writes_the_configuration_with_its_modes_and_a_shared_secret() {
    let env = Env::new();
    let data_dir = env.dir.path().join("data");
    let out = env.dir.path().join("rendered");
    std::fs::write(
        env.dir.path().join("couchmail.toml"),
        format!(
            "data_dir = \"{}\"\nhostname = \"mail.example.com\"\n[mail]\nsmtp_port = 12525\noutbound = \"disabled\"\n\
             auth_failure_delay_secs = 0\n[auth]\nlisten = \"127.0.0.1:18091\"\n",
            data_dir.display()
        ),
    )
    .unwrap();
    let written = env.json(&["render", "--dev", "--out", out.to_str().unwrap()]);
    let paths: Vec<&str> = written.as_array().unwrap().iter().map(|file| file["path"].as_str().unwrap()).collect();
    let expected: Vec<String> = ["dovecot/auth.lua", "dovecot/dovecot.conf", "postfix/main.cf", "postfix/master.cf"]
        .iter()
        .map(|name| out.join(name).display().to_string())
        .collect();
    assert_eq!(paths, expected);

    let mode = |name: &str| std::fs::metadata(out.join(name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("dovecot/auth.lua"), 0o640);
    assert_eq!(mode("postfix/main.cf"), 0o644);
    assert_eq!(written[0]["group"], "dovecot");

    let main_cf = std::fs::read_to_string(out.join("postfix/main.cf")).unwrap();
    assert!(main_cf.contains("myhostname = mail.example.com"), "{main_cf}");
    assert!(main_cf.contains("default_transport = error:"), "{main_cf}");
    assert!(main_cf.contains(&format!("socketmap:unix:{}/run/socketmap:domains", data_dir.display())), "{main_cf}");
    let master_cf = std::fs::read_to_string(out.join("postfix/master.cf")).unwrap();
    assert!(master_cf.contains("127.0.0.1:12525"), "{master_cf}");
    let dovecot_conf = std::fs::read_to_string(out.join("dovecot/dovecot.conf")).unwrap();
    assert!(dovecot_conf.contains(&format!("file={}/dovecot/auth.lua", out.display())), "{dovecot_conf}");
    assert!(dovecot_conf.contains("auth_failure_delay = 0 secs"), "{dovecot_conf}");

    // The secret in auth.lua is the one `up --no-daemons` will use, kept in the data directory.
    let secret = std::fs::read_to_string(data_dir.join("auth-secret")).unwrap().trim().to_owned();
    assert_eq!(secret.len(), 64);
    let auth_lua = std::fs::read_to_string(out.join("dovecot/auth.lua")).unwrap();
    assert!(auth_lua.contains(&secret) && auth_lua.contains("http://127.0.0.1:18091"), "{auth_lua}");
    // The self-signed certificate the files name exists, and Dovecot accepts the configuration.
    assert!(data_dir.join("tls/cert.pem").is_file() && data_dir.join("tls/key.pem").is_file());
    let doveconf = StdCommand::new("doveconf")
        .args(["-c", out.join("dovecot/dovecot.conf").to_str().unwrap(), "-n"])
        .output()
        .unwrap();
    assert!(doveconf.status.success(), "{}", String::from_utf8_lossy(&doveconf.stderr));

    // Rendering again keeps the secret.
    env.ok(&["render", "--dev", "--out", out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(data_dir.join("auth-secret")).unwrap().trim(), secret);
}

#[test]
fn render_refuses_a_configuration_the_daemons_cannot_take() {
    let env = Env::new();
    let out = env.dir.path().join("rendered");
    std::fs::write(
        env.dir.path().join("couchmail.toml"),
        format!("data_dir = \"{}/my data\"\n", env.dir.path().display()),
    )
    .unwrap();
    let stderr = env.fails(&["render", "--dev", "--out", out.to_str().unwrap()], 2);
    assert!(stderr.contains("paths.data_dir"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn sieve_put_refuses_a_script_sievec_rejects_with_its_line_number() {
    let env = Env::new();
    env.ok(&["domain", "add", "example.com"]);
    env.ok(&["mailbox", "add", "alice@example.com"]);
    let broken = env.dir.path().join("broken.sieve");
    std::fs::write(&broken, "require \"fileinto\";\nif true {\n  fileinto\n}\n").unwrap();
    let stderr = env.fails(&["sieve", "put", "alice@example.com", "broken", broken.to_str().unwrap()], 5);
    assert!(stderr.contains("line 4: error"), "{stderr}");
    assert!(stderr.contains("`script`"), "{stderr}");
    assert_eq!(env.json(&["sieve", "list", "alice@example.com"]), Value::Array(Vec::new()));

    let good = env.dir.path().join("good.sieve");
    std::fs::write(&good, "require \"fileinto\";\nfileinto \"Archive\";\n").unwrap();
    env.ok(&["sieve", "put", "alice@example.com", "good", good.to_str().unwrap()]);
    assert_eq!(env.json(&["sieve", "list", "alice@example.com"]).as_array().unwrap().len(), 1);
}
