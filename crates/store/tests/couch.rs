//! The CouchDB backend against a CouchDB-compatible server (pouchdb-server, started once per
//! test binary): the conformance suite, plus what only a networked store has.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use couchmail_store::{CouchConfig, CouchStore};
use couchmail_testkit::pouchdb::PouchServer;

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
    CouchStore::connect(CouchConfig { url, database, credentials: None }).await.unwrap()
}

couchmail_store::conformance_tests!({
    let Some(url) = server_url() else { return };
    (connect(url, fresh_database()).await, ())
});
