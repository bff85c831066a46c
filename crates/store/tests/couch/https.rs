//! https to CouchDB: the harness's TLS mode, whose certificate a fresh test authority issued.

use std::sync::OnceLock;
use std::time::Duration;

use couchmail_store::conformance::body;
use couchmail_store::{CouchConfig, CouchCredentials, CouchStore, ErrorKind, Store};
use couchmail_testkit::pouchdb::PouchServer;
use serde_json::json;

use crate::fresh_database;

/// The TLS server of this test binary and its authority's PEM; `None` when pouchdb-server is
/// not installed outside CI.
fn tls_server() -> Option<(String, String)> {
    static SERVER: OnceLock<Option<(PouchServer, String)>> = OnceLock::new();
    SERVER
        .get_or_init(|| PouchServer::start_tls_if_installed().unwrap_or_else(|error| panic!("{error}")))
        .as_ref()
        .map(|(server, ca_pem)| (server.url().to_owned(), ca_pem.clone()))
}

/// Every message of `error` and its sources, and its `Debug` form.
fn everything_shown(error: &couchmail_store::Error) -> String {
    let mut shown = format!("{error} / {error:?}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        shown.push_str(&format!(" / {cause} / {cause:?}"));
        source = cause.source();
    }
    shown
}

#[tokio::test]
async fn https_with_a_private_authority_is_a_whole_store() {
    let Some((url, ca_pem)) = tls_server() else { return };
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("couchdb-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let config = CouchConfig { ca_file: Some(ca_file), ..CouchConfig::new(url, fresh_database()) };
    let store = std::sync::Arc::new(CouchStore::connect(config).await.unwrap());
    assert!(store.describe().starts_with("couchdb:https://127.0.0.1:"), "{}", store.describe());

    let rev = store.put("domain:example.com", None, &body(json!({ "type": "domain" }))).await.unwrap();
    assert_eq!(store.get("domain:example.com").await.unwrap().unwrap().rev, rev);
    let since = store.changes(None, 10, Duration::ZERO).await.unwrap().last_seq;
    assert!(since.is_some());
    assert_eq!(store.conflicts().await.unwrap(), []);

    // The long-poll over TLS wakes on a write.
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.changes(since.as_ref(), 10, Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    store.put("domain:example.org", None, &body(json!({ "type": "domain" }))).await.unwrap();
    let woken = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap().unwrap();
    let ids: Vec<&str> = woken.changes.iter().map(|change| change.id.as_str()).collect();
    assert_eq!(ids, ["domain:example.org"]);
}

#[tokio::test]
async fn an_untrusted_certificate_is_unavailable_without_the_password() {
    let Some((url, _)) = tls_server() else { return };
    let credentials = CouchCredentials { username: "couchmail".to_owned(), password: "tls-s3cret-pass".to_owned() };
    // The system's authorities do not know the test authority.
    let config = CouchConfig { credentials: Some(credentials), ..CouchConfig::new(url.clone(), fresh_database()) };
    let error = CouchStore::connect(config).await.expect_err("the certificate is not trusted");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    let shown = everything_shown(&error);
    assert!(!shown.contains("tls-s3cret-pass"), "{shown}");
    assert!(shown.contains(url.trim_start_matches("https://")), "the server is named: {shown}");
    let message = error.to_string();
    assert!(message.contains("certificate"), "the message names the cause: {message}");
    assert!(message.contains("CA file"), "the message says what to do: {message}");
}
