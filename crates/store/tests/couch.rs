//! The CouchDB backend against a CouchDB-compatible server (pouchdb-server, started once per
//! test binary): the conformance suite, plus what only a networked store has — bootstrap,
//! `validate_doc_update`, replication conflicts, https, and the long-poll against a server that
//! keeps it open with heartbeats as CouchDB does.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

mod couch {
    pub mod bootstrap;
    pub mod conflicts;
    pub mod heartbeat;
    pub mod https;
    pub mod validation;
}

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use couchmail_store::conformance::body;
use couchmail_store::{CouchConfig, CouchCredentials, CouchStore, ErrorKind, ListOptions, Store};
use couchmail_testkit::pouchdb::PouchServer;
use serde_json::json;

/// The one server of this test binary; `None` when pouchdb-server is not installed outside CI.
pub fn server_url() -> Option<String> {
    static SERVER: OnceLock<Option<PouchServer>> = OnceLock::new();
    SERVER
        .get_or_init(|| PouchServer::start_if_installed().unwrap_or_else(|error| panic!("{error}")))
        .as_ref()
        .map(|server| server.url().to_owned())
}

/// A database name no other test in this binary uses.
pub fn fresh_database() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("conformance-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A plain HTTP client for the requests a test makes itself, as an admin would with curl.
///
/// reqwest is built with rustls and no default crypto provider (the store hands it a
/// configuration with ring), so a client built the plain way needs ring installed first;
/// installing twice fails harmlessly.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub async fn connect(url: String, database: String) -> CouchStore {
    CouchStore::connect(CouchConfig::new(url, database)).await.unwrap()
}

/// `{url}/{database}/{id}` with the id percent-encoded, for requests the test makes itself.
pub fn document_url(url: &str, database: &str, id: &str) -> String {
    let encoded: String = id
        .bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect();
    format!("{url}/{database}/{encoded}")
}

couchmail_store::conformance_tests!({
    let Some(url) = server_url() else { return };
    (connect(url, fresh_database()).await, ())
});

#[tokio::test]
async fn connecting_twice_to_one_database_keeps_its_documents() {
    let Some(url) = server_url() else { return };
    let database = fresh_database();
    let first = connect(url.clone(), database.clone()).await;
    let rev = first.put("domain:example.com", None, &body(json!({ "active": true }))).await.unwrap();
    let second = connect(url, database).await;
    assert_eq!(second.get("domain:example.com").await.unwrap().unwrap().rev, rev);
}

#[tokio::test]
async fn ids_with_url_characters_round_trip() {
    let Some(url) = server_url() else { return };
    let store = connect(url, fresh_database()).await;
    let ids = ["mailbox:a+b@example.com", "alias:x/y@example.com", "odd:?#%20& =;", "mailbox:ünï@例え.jp"];
    for id in ids {
        let rev = store.put(id, None, &body(json!({ "id": id }))).await.unwrap();
        let doc = store.get(id).await.unwrap().unwrap_or_else(|| panic!("{id} not found"));
        assert_eq!((doc.id.as_str(), &doc.rev, &doc.body), (id, &rev, &body(json!({ "id": id }))));
    }
    // A `+` must not have been read as a space, nor `%20` decoded twice.
    assert_eq!(store.get("mailbox:a b@example.com").await.unwrap(), None);
    assert_eq!(store.get("odd:?# & =;").await.unwrap(), None);
    let mut expected: Vec<&str> = ids.to_vec();
    expected.sort();
    let listed: Vec<String> =
        store.list("", &ListOptions::default()).await.unwrap().into_iter().map(|doc| doc.id).collect();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    // A port that was just free: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = CouchConfig::new(format!("http://127.0.0.1:{port}"), "couchmail");
    let error = CouchStore::connect(config).await.expect_err("nothing listens there");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.to_string().contains(&format!("127.0.0.1:{port}")), "{error}");
}

#[tokio::test]
async fn wrong_credentials_are_reported_without_the_password() {
    let Some(url) = server_url() else { return };
    let credentials = CouchCredentials { username: "admin".to_owned(), password: "s3cret-pass".to_owned() };
    let config = CouchConfig { credentials: Some(credentials), ..CouchConfig::new(url.clone(), fresh_database()) };
    assert!(!format!("{config:?}").contains("s3cret-pass"));
    // The server knows no such user, as CouchDB would not.
    let error = CouchStore::connect(config).await.expect_err("an unknown user is refused");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.to_string().contains("check the CouchDB credentials"), "{error}");
    assert!(!error.to_string().contains("s3cret-pass"), "{error}");

    let with_userinfo = url.replacen("http://", "http://admin:s3cret-pass@", 1);
    let config = CouchConfig::new(with_userinfo, fresh_database());
    let error = CouchStore::connect(config).await.expect_err("credentials in the URL are refused");
    assert_eq!(error.kind(), ErrorKind::BadRequest);
    assert!(!error.to_string().contains("s3cret-pass"), "{error}");

    let store = connect(url, fresh_database()).await;
    assert!(store.describe().starts_with("couchdb:http://127.0.0.1:"), "{}", store.describe());
}

#[tokio::test]
async fn only_http_and_https_urls_are_accepted() {
    for url in ["ftp://127.0.0.1:5984", "file:///var/lib/couchdb", "unix:/run/couchdb.sock"] {
        let error = CouchStore::connect(CouchConfig::new(url, "couchmail")).await.expect_err("not http");
        assert_eq!(error.kind(), ErrorKind::BadRequest, "{url}: {error}");
        assert!(error.to_string().contains("http:// or https://"), "{url}: {error}");
    }
}

#[tokio::test]
async fn an_unusable_ca_file_is_named_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-ca.pem");
    let empty = dir.path().join("empty-ca.pem");
    std::fs::write(&empty, "").unwrap();
    for path in [missing, empty] {
        // Nothing listens on port 9: the file is checked before any connection is tried.
        let config =
            CouchConfig { ca_file: Some(path.clone()), ..CouchConfig::new("https://127.0.0.1:9", "couchmail") };
        let error = CouchStore::connect(config).await.expect_err("the CA file is unusable");
        assert_eq!(error.kind(), ErrorKind::BadRequest, "{error}");
        assert!(error.to_string().contains(&path.display().to_string()), "{error}");
    }
}
