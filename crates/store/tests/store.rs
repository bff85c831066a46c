//! Integration tests for the SQLite backend.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use std::time::Duration;

use couchmail_store::{ErrorKind, ListOptions, SqliteStore, Store};

#[tokio::test]
async fn smoke() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("db")).await.unwrap();
    let body = serde_json::json!({"type": "x"});
    let body = body.as_object().unwrap();
    let rev = store.put("a:1", None, body).await.unwrap();
    assert_eq!(store.put("a:1", None, body).await.unwrap_err().kind(), ErrorKind::Conflict);
    let rev2 = store.put("a:1", Some(&rev), body).await.unwrap();
    assert!(rev2.0.starts_with("2-"));
    store.put("a:2", None, body).await.unwrap();
    store.put("b:1", None, body).await.unwrap();
    let listed = store.list("a:", &ListOptions::default()).await.unwrap();
    assert_eq!(listed.len(), 2);
    let deleted = store.delete("a:1", &rev2).await.unwrap();
    assert!(deleted.0.starts_with("3-"));
    assert!(store.get("a:1").await.unwrap().is_none());
    let changes = store.changes(None, 100, Duration::ZERO).await.unwrap();
    assert_eq!(changes.changes.len(), 3);
    println!("{changes:?}");
}
