//! The CouchDB backend against a CouchDB-compatible server (pouchdb-server, started once per
//! test binary): the conformance suite, plus what only a networked store has.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use couchmail_store::conformance::body;
use couchmail_store::{CouchConfig, CouchCredentials, CouchStore, ErrorKind, ListOptions, Store};
use couchmail_testkit::pouchdb::PouchServer;
use serde_json::json;

/// The one server of this test binary; `None` when pouchdb-server is not installed outside CI.
fn server_url() -> Option<String> {
    static SERVER: OnceLock<Option<PouchServer>> = OnceLock::new();
    SERVER
        .get_or_init(|| PouchServer::start_if_installed().unwrap_or_else(|error| panic!("{error}")))
        .as_ref()
        .map(|server| server.url().to_owned())
}

/// A database name no other test in this binary uses.
fn fresh_database() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("conformance-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn connect(url: String, database: String) -> CouchStore {
    CouchStore::connect(CouchConfig::new(url, database)).await.unwrap()
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
