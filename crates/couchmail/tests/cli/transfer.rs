//! `export`, `import`, `migrate` and `conflicts` on SQLite stores; the
//! CouchDB round trip is in the `couchdb` module.

use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use crate::Env;

/// Fills `env`'s store with one of everything, through the CLI.
pub(crate) fn populate(env: &Env) {
    env.ok(&["domain", "add", "example.com", "--quota-default", "2G", "--max-mailboxes", "10"]);
    env.ok(&["domain", "add", "bücher.example", "--inactive"]);
    env.ok(&["domain-alias", "add", "example.net", "--target", "example.com"]);
    env.cmd()
        .args(["mailbox", "add", "alice@example.com", "--name", "Alice Liddell", "--password-stdin"])
        .write_stdin("correct horse battery staple\n")
        .assert()
        .success();
    env.ok(&["mailbox", "add", "bob@example.com", "--quota", "1G", "--role", "domain-admin:example.com"]);
    env.ok(&["alias", "add", "info@example.com", "--to", "alice@example.com", "--to", "bob@example.com"]);
    env.ok(&["alias", "add", "@example.com", "--to", "alice@example.com"]);
    env.cmd()
        .args(["sieve", "put", "alice@example.com", "vacation", "--activate"])
        .write_stdin("require \"fileinto\";\nif header :contains \"subject\" \"x\" { fileinto \"X\"; }\n")
        .assert()
        .success();
    env.ok(&["token", "create", "--admin", "--label", "ops"]);
}

/// The export's lines after the header, parsed.
fn documents(export: &str) -> Vec<Value> {
    export.lines().skip(1).map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[test]
fn export_import_export_is_byte_identical() {
    let source = Env::new();
    populate(&source);
    for flags in [&["export"][..], &["export", "--include-secrets"][..]] {
        let first = source.ok(flags);
        let target = Env::new();
        let file = target.dir.path().join("export.jsonl");
        std::fs::write(&file, &first).unwrap();
        let imported = target.json(&["import", file.to_str().unwrap()]);
        let n_documents = first.lines().count() - 1;
        assert_eq!(imported, serde_json::json!({"created": n_documents, "updated": 0, "unchanged": 0}));
        let second = target.ok(flags);
        assert_eq!(first, second, "{flags:?}");
    }
}

#[test]
fn the_export_format_is_sorted_json_lines_without_revisions() {
    let env = Env::new();
    populate(&env);
    let export = env.ok(&["export", "--include-secrets"]);
    let mut lines = export.lines();
    assert_eq!(lines.next(), Some(r#"{"format":"couchmail-export","version":1,"secrets":true}"#));
    let ids: Vec<String> = documents(&export).iter().map(|doc| doc["_id"].as_str().unwrap().to_owned()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    assert_eq!(ids.len(), 9, "{ids:?}");
    assert!(ids.contains(&"sieve:alice@example.com:vacation".to_owned()), "{ids:?}");
    for line in export.lines().skip(1) {
        assert!(line.starts_with("{\"_id\":"), "{line}");
        assert!(!line.contains("\"_rev\""), "{line}");
    }
}

#[test]
fn secrets_only_on_request_and_the_file_is_private() {
    let env = Env::new();
    populate(&env);
    let without = env.dir.path().join("without.jsonl");
    let with = env.dir.path().join("with.jsonl");
    let summary = env.json(&["export", "--output", without.to_str().unwrap()]);
    assert_eq!(summary["secrets"], false);
    assert_eq!(summary["tokens_left_out"], 1);
    env.ok(&["export", "--include-secrets", "-o", with.to_str().unwrap()]);
    for path in [&without, &with] {
        assert_eq!(std::fs::metadata(path).unwrap().permissions().mode() & 0o777, 0o600, "{}", path.display());
    }

    let without_text = std::fs::read_to_string(&without).unwrap();
    assert!(without_text.starts_with(r#"{"format":"couchmail-export","version":1,"secrets":false}"#));
    assert!(!without_text.contains("ARGON2ID") && !without_text.contains("secret_sha256"), "{without_text}");
    assert!(!without_text.contains("\"_id\":\"token:"), "{without_text}");
    let alice = documents(&without_text).into_iter().find(|doc| doc["_id"] == "mailbox:alice@example.com").unwrap();
    assert_eq!(alice["name"], "Alice Liddell");

    let with_text = std::fs::read_to_string(&with).unwrap();
    let docs = documents(&with_text);
    let alice = docs.iter().find(|doc| doc["_id"] == "mailbox:alice@example.com").unwrap();
    assert!(alice["password"].as_str().unwrap().starts_with("{ARGON2ID}"), "{alice}");
    let token = docs.iter().find(|doc| doc["_id"].as_str().unwrap().starts_with("token:")).unwrap();
    assert_eq!(token["secret_sha256"].as_str().unwrap().len(), 64);

    // Importing the export without secrets into the same store keeps the stored password.
    let again = env.json(&["import", without.to_str().unwrap()]);
    assert_eq!(again["created"], 0);
    assert_eq!(again["updated"], 0);
    assert!(env.raw("mailbox:alice@example.com").unwrap()["password"].as_str().unwrap().starts_with("{ARGON2ID}"));
}

#[test]
fn a_second_import_changes_nothing_and_says_so() {
    let source = Env::new();
    populate(&source);
    let file = source.dir.path().join("backup.jsonl");
    source.ok(&["export", "--include-secrets", "--output", file.to_str().unwrap()]);
    let target = Env::new();
    target.ok(&["import", file.to_str().unwrap()]);
    let second = target.json(&["import", file.to_str().unwrap()]);
    assert_eq!(second, serde_json::json!({"created": 0, "updated": 0, "unchanged": 9}));
    let text = target.ok(&["import", file.to_str().unwrap()]);
    assert!(text.contains("nothing to change") && text.contains("9 documents"), "{text}");

    // The file wins over a document changed since.
    target.ok(&["mailbox", "update", "bob@example.com", "--name", "Robert"]);
    let third = target.json(&["import", file.to_str().unwrap()]);
    assert_eq!(third, serde_json::json!({"created": 0, "updated": 1, "unchanged": 8}));
    assert_eq!(target.json(&["mailbox", "show", "bob@example.com"])["name"], "");
}

#[test]
fn an_invalid_file_writes_nothing_and_names_the_line() {
    let env = Env::new();
    let file = env.dir.path().join("bad.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"format":"couchmail-export","version":1,"secrets":false}"#,
            "\n",
            r#"{"_id":"domain:example.com","type":"domain","active":true}"#,
            "\n",
            r#"{"_id":"mailbox:alice@example.com","type":"mailbox","quota_bytes":12}"#,
            "\n",
            r#"{"_id":"alias:info@example.com","type":"alias","targets":["alice@example.com"]}"#,
            "\n",
        ),
    )
    .unwrap();
    let stderr = env.fails(&["import", file.to_str().unwrap()], 5);
    assert!(stderr.contains("line 3") && stderr.contains("quota_bytes"), "{stderr}");
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert!(!stderr.contains("line 2") && !stderr.contains("line 4"), "{stderr}");
    assert_eq!(env.raw("domain:example.com"), None);
    assert_eq!(env.raw("alias:info@example.com"), None);

    std::fs::write(&file, "{\"_id\":\"domain:example.com\",\"type\":\"domain\"}\n").unwrap();
    let stderr = env.fails(&["import", file.to_str().unwrap()], 5);
    assert!(stderr.contains("line 1") && stderr.contains("header"), "{stderr}");
    env.fails(&["import", env.dir.path().join("missing.jsonl").to_str().unwrap()], 3);
}

#[test]
fn import_reads_standard_input() {
    let source = Env::new();
    source.ok(&["domain", "add", "example.com"]);
    let export = source.ok(&["export"]);
    let target = Env::new();
    let output = target.cmd().args(["--json", "import", "-"]).write_stdin(export).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["created"], 1);
    assert!(target.raw("domain:example.com").is_some());
}

#[test]
fn migrate_between_sqlite_stores_copies_secrets_and_verifies() {
    let source = Env::new();
    populate(&source);
    let from = format!("sqlite:{}", source.db().display());
    let copy = source.dir.path().join("copy").join("copy.db");
    let to = format!("sqlite:{}", copy.display());
    let summary = source.json(&["migrate", "--from", &from, "--to", &to]);
    assert_eq!(summary["documents"], 9);
    assert_eq!(summary["created"], 9);
    assert_eq!(summary["verified"], 9);
    assert_eq!(std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777, 0o600);
    let original = source.ok(&["export", "--include-secrets"]);
    assert_eq!(source.ok(&["--store", &to, "export", "--include-secrets"]), original);

    // A target that holds documents is refused unless asked for.
    let stderr = source.fails(&["migrate", "--from", &from, "--to", &to], 7);
    assert!(stderr.contains("--into-non-empty"), "{stderr}");
    let again = source.json(&["migrate", "--from", &from, "--to", &to, "--into-non-empty"]);
    assert_eq!((again["created"].as_u64(), again["unchanged"].as_u64()), (Some(0), Some(9)));

    let stderr = source.fails(&["migrate", "--from", &from, "--to", &from], 2);
    assert!(stderr.contains("both name"), "{stderr}");
    let missing = format!("sqlite:{}", source.dir.path().join("nope.db").display());
    source.fails(&["migrate", "--from", &missing, "--to", &to, "--into-non-empty"], 6);
    assert!(!source.dir.path().join("nope.db").exists());
}

#[test]
fn migrate_refuses_invalid_documents_unless_told_to_leave_them() {
    let source = Env::new();
    source.ok(&["domain", "add", "example.com"]);
    source.put_raw("mailbox:broken", serde_json::json!({"type": "mailbox"}));
    let from = format!("sqlite:{}", source.db().display());
    let to = format!("sqlite:{}", source.dir.path().join("copy.db").display());
    let stderr = source.fails(&["migrate", "--from", &from, "--to", &to], 5);
    assert!(stderr.contains("mailbox:broken") && stderr.contains("--skip-invalid"), "{stderr}");
    let summary = source.json(&["migrate", "--from", &from, "--to", &to, "--skip-invalid"]);
    assert_eq!(summary["documents"], 1);
    assert_eq!(summary["skipped_invalid"][0]["id"], "mailbox:broken");
    // Export leaves it out with a warning, so that the export imports again.
    let output = source.cmd().args(["export"]).output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("left out `mailbox:broken`"));
    assert!(!String::from_utf8_lossy(&output.stdout).contains("broken"));
}

#[test]
fn conflicts_on_sqlite_are_always_none() {
    let env = Env::new();
    populate(&env);
    assert_eq!(env.json(&["conflicts", "list"]), Value::Array(Vec::new()));
    let output = env.cmd().args(["conflicts", "list"]).output().unwrap();
    assert!(output.status.success());
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no conflicts"));
    let stderr = env.fails(&["conflicts", "resolve", "mailbox:alice@example.com", "--keep", "1-abc"], 3);
    assert!(stderr.contains("conflicts list"), "{stderr}");
}
