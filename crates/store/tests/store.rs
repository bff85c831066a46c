//! The SQLite backend: the conformance suite, plus what only a file-backed store has
//! (reopening, schema versions, other processes, file modes).
#![allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use couchmail_store::conformance::body;
use couchmail_store::{ErrorKind, ListOptions, SqliteStore, Store};
use serde_json::json;
use tokio::time::Instant;

couchmail_store::conformance_tests!({
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("couchmail.db")).await.unwrap();
    (store, dir)
});

fn database_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("couchmail.db")
}

fn side_file(path: &Path, suffix: &str) -> PathBuf {
    let mut side = path.as_os_str().to_owned();
    side.push(suffix);
    PathBuf::from(side)
}

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = database_path(&dir);
    let store = SqliteStore::open(&path).await.unwrap();
    let rev = store.put("domain:example.com", None, &body(json!({ "active": true }))).await.unwrap();
    let gone = store.put("domain:gone.example", None, &body(json!({}))).await.unwrap();
    store.delete("domain:gone.example", &gone).await.unwrap();
    let before = store.changes(None, 100, Duration::ZERO).await.unwrap();
    drop(store);

    let store = SqliteStore::open(&path).await.unwrap();
    let doc = store.get("domain:example.com").await.unwrap().unwrap();
    assert_eq!((doc.rev, doc.body), (rev, body(json!({ "active": true }))));
    assert_eq!(store.get("domain:gone.example").await.unwrap(), None);
    assert_eq!(store.changes(None, 100, Duration::ZERO).await.unwrap(), before);

    // Sequences keep growing after a reopen: a follower's last_seq stays valid.
    store.put("domain:new.example", None, &body(json!({}))).await.unwrap();
    let after = store.changes(before.last_seq.as_ref(), 100, Duration::ZERO).await.unwrap();
    let ids: Vec<&str> = after.changes.iter().map(|change| change.id.as_str()).collect();
    assert_eq!(ids, ["domain:new.example"]);
}

#[tokio::test]
async fn schema_version_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = database_path(&dir);
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SqliteStore::supported_schema_version());
    assert!(SqliteStore::supported_schema_version() >= 1);
    drop(store);
    let connection = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
    assert_eq!(version, SqliteStore::supported_schema_version());
    let journal_mode: String = connection.pragma_query_value(None, "journal_mode", |row| row.get(0)).unwrap();
    assert_eq!(journal_mode, "wal");
}

#[tokio::test]
async fn a_file_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = database_path(&dir);
    let store = SqliteStore::open(&path).await.unwrap();
    store.put("domain:example.com", None, &body(json!({}))).await.unwrap();
    drop(store);
    let newer = SqliteStore::supported_schema_version() + 1;
    rusqlite::Connection::open(&path).unwrap().pragma_update(None, "user_version", newer).unwrap();

    let error = SqliteStore::open(&path).await.err().expect("a newer schema must be refused");
    let message = error.to_string();
    assert!(message.contains(&format!("schema version {newer}")), "{message}");
    assert!(message.contains("upgrade CouchMail"), "{message}");
    // Refusing did not touch the file.
    let connection = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
    assert_eq!(version, newer);
}

#[tokio::test]
async fn an_unusable_path_is_unavailable_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let error = SqliteStore::open(dir.path().join("missing-directory").join("couchmail.db"))
        .await
        .err()
        .expect("a path in a missing directory cannot be opened");
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert!(error.to_string().contains("check the path and permissions"), "{error}");
}

#[tokio::test]
async fn a_file_that_is_not_a_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = database_path(&dir);
    std::fs::write(&path, "this is not a SQLite database, just some text long enough to have a header".repeat(20))
        .unwrap();
    let error = SqliteStore::open(&path).await.err().expect("a text file is not a store");
    assert_eq!(error.kind(), ErrorKind::Internal);
    assert!(error.to_string().contains(&path.display().to_string()), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_from_another_process_wakes_a_waiting_follower() {
    let dir = tempfile::tempdir().unwrap();
    let path = database_path(&dir);
    let server = Arc::new(SqliteStore::open(&path).await.unwrap());
    server.put("domain:before.example", None, &body(json!({}))).await.unwrap();
    let since = server.changes(None, 100, Duration::ZERO).await.unwrap().last_seq;

    let follower_store = Arc::clone(&server);
    let follower_since = since.clone();
    let follower = tokio::spawn(async move {
        let changes = follower_store.changes(follower_since.as_ref(), 100, Duration::from_secs(10)).await.unwrap();
        (changes, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!follower.is_finished(), "the follower returned before any write");

    // A second store on the same file stands in for the CLI running beside the server.
    let cli = SqliteStore::open(&path).await.unwrap();
    let write_started = Instant::now();
    let rev = cli.put("domain:from-cli.example", None, &body(json!({ "active": true }))).await.unwrap();
    let (changes, returned_at) = follower.await.unwrap();
    let latency = returned_at.saturating_duration_since(write_started);
    assert!(latency < Duration::from_secs(1), "the follower took {latency:?} to see another process's write");
    assert_eq!(changes.changes.len(), 1, "{changes:?}");
    assert_eq!((changes.changes[0].id.as_str(), &changes.changes[0].rev), ("domain:from-cli.example", &rev));

    // And the other way round: the server's writes are visible to the CLI's store.
    let server_rev = server.put("domain:from-server.example", None, &body(json!({}))).await.unwrap();
    assert_eq!(cli.get("domain:from-server.example").await.unwrap().unwrap().rev, server_rev);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_in_two_processes_still_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let path = database_path(&dir);
    let first = Arc::new(SqliteStore::open(&path).await.unwrap());
    let second = Arc::new(SqliteStore::open(&path).await.unwrap());
    let mut rev = first.put("mailbox:race@example.com", None, &body(json!({}))).await.unwrap();
    // Several rounds, because a check-then-write race between two connections has a narrow
    // window; each round all writers start from the revision the last round's winner made.
    for round in 0..12 {
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let tasks: Vec<_> = (0..8)
            .map(|writer_idx| {
                let store = if writer_idx % 2 == 0 { Arc::clone(&first) } else { Arc::clone(&second) };
                let base = rev.clone();
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    let content = body(json!({ "round": round, "writer": writer_idx }));
                    store.put("mailbox:race@example.com", Some(&base), &content).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(new_rev) => winners.push(new_rev),
                Err(error) => assert_eq!(error.kind(), ErrorKind::Conflict, "round {round}: {error}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        rev = winners.remove(0);
    }
    assert_eq!(second.get("mailbox:race@example.com").await.unwrap().unwrap().rev, rev);
}

#[tokio::test]
async fn files_are_private_to_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let path = database_path(&dir);
    let store = SqliteStore::open(&path).await.unwrap();
    store.put("mailbox:a@example.com", None, &body(json!({ "password": "{ARGON2ID}$argon2id$…" }))).await.unwrap();
    for file in [path.clone(), side_file(&path, "-wal"), side_file(&path, "-shm")] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", file.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_writes_are_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(database_path(&dir)).await.unwrap();
    for write_idx in 0..30_u64 {
        let id = format!("domain:d{write_idx}.example");
        let content = body(json!({ "n": write_idx }));
        // Give up on the write after a varying, tiny delay: sometimes before it starts,
        // sometimes while SQLite is working on it.
        let give_up_after = Duration::from_micros(write_idx * 50);
        let _ = tokio::time::timeout(give_up_after, store.put(&id, None, &content)).await;
    }
    // Let writes already handed to SQLite finish, then check that each is whole or absent.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let feed = store.changes(None, 1000, Duration::ZERO).await.unwrap();
    for write_idx in 0..30_u64 {
        let id = format!("domain:d{write_idx}.example");
        let doc = store.get(&id).await.unwrap();
        let change = feed.changes.iter().find(|change| change.id == id);
        match (doc, change) {
            (None, None) => {}
            (Some(doc), Some(change)) => {
                assert_eq!(doc.body, body(json!({ "n": write_idx })));
                assert_eq!((Some(&doc.body), &doc.rev), (change.body.as_ref(), &change.rev));
            }
            (doc, change) => panic!("{id}: document {doc:?} disagrees with the feed {change:?}"),
        }
    }
    // The writer is not wedged by abandoned writes.
    store.put("domain:afterwards.example", None, &body(json!({}))).await.unwrap();
    let listed = store.list("domain:afterwards", &ListOptions::default()).await.unwrap();
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn shared_handles_are_stores() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(database_path(&dir)).await.unwrap());
    store.put("domain:example.com", None, &body(json!({}))).await.unwrap();
    assert!(store.describe().starts_with("sqlite:"), "{}", store.describe());
    assert!(store.describe().ends_with("couchmail.db"), "{}", store.describe());
    assert_eq!(Store::list(&store, "", &ListOptions::default()).await.unwrap().len(), 1);
}
