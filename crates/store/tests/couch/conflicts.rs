//! Replication conflicts, made as replication makes them: two revisions of one document
//! written with `new_edits: false`.

use std::time::Duration;

use couchmail_store::conformance::body;
use couchmail_store::{CouchStore, ErrorKind, Rev, Store};
use serde_json::{Value, json};

use crate::{connect, fresh_database, server_url};

/// Writes `revisions` of document `id` side by side, as replication from two sites does.
async fn replicate_revisions(url: &str, database: &str, id: &str, revisions: &[(&str, Value)]) {
    let docs: Vec<Value> = revisions
        .iter()
        .map(|(rev, content)| {
            let mut doc = content.as_object().unwrap().clone();
            doc.insert("_id".to_owned(), json!(id));
            doc.insert("_rev".to_owned(), json!(rev));
            Value::Object(doc)
        })
        .collect();
    let response = crate::http_client()
        .post(format!("{url}/{database}/_bulk_docs"))
        .json(&json!({ "new_edits": false, "docs": docs }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.text().await.unwrap());
}

async fn conflicted_store() -> Option<(CouchStore, String, String)> {
    let url = server_url()?;
    let database = fresh_database();
    let store = connect(url.clone(), database.clone()).await;
    Some((store, url, database))
}

#[tokio::test]
async fn a_conflict_is_listed_and_resolved_by_keeping_a_loser() {
    let Some((store, url, database)) = conflicted_store().await else { return };
    store.put("domain:calm.example", None, &body(json!({ "type": "domain" }))).await.unwrap();
    replicate_revisions(
        &url,
        &database,
        "mailbox:alice@example.com",
        &[
            ("1-aaaa", json!({ "type": "mailbox", "name": "Site A" })),
            ("1-bbbb", json!({ "type": "mailbox", "name": "Site B" })),
            ("1-cccc", json!({ "type": "mailbox", "name": "Site C" })),
        ],
    )
    .await;

    let conflicts = store.conflicts().await.unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let conflict = &conflicts[0];
    assert_eq!(conflict.id, "mailbox:alice@example.com");
    // CouchDB's winner: the highest revision; reads return it.
    assert_eq!(conflict.winner.rev, Rev("1-cccc".to_owned()));
    assert_eq!(conflict.winner.body, body(json!({ "type": "mailbox", "name": "Site C" })));
    let losers: Vec<(&str, &Value)> =
        conflict.losers.iter().map(|loser| (loser.rev.0.as_str(), &loser.body["name"])).collect();
    assert_eq!(losers, [("1-aaaa", &json!("Site A")), ("1-bbbb", &json!("Site B"))]);
    assert_eq!(store.get("mailbox:alice@example.com").await.unwrap().unwrap(), conflict.winner);

    let since = store.changes(None, 100, Duration::ZERO).await.unwrap().last_seq;
    let rev = store.resolve_conflict("mailbox:alice@example.com", &Rev("1-aaaa".to_owned())).await.unwrap();
    assert!(rev.0.starts_with("2-"), "{rev}");
    assert_eq!(store.conflicts().await.unwrap(), []);
    let doc = store.get("mailbox:alice@example.com").await.unwrap().unwrap();
    assert_eq!((doc.rev, doc.body), (rev.clone(), body(json!({ "type": "mailbox", "name": "Site A" }))));

    // The follower sees the kept content.
    let changes = store.changes(since.as_ref(), 100, Duration::ZERO).await.unwrap();
    let last = changes.changes.iter().rfind(|change| change.id == "mailbox:alice@example.com").unwrap();
    assert_eq!(last.rev, rev);
    assert_eq!(last.body.as_ref().unwrap()["name"], json!("Site A"));
}

#[tokio::test]
async fn keeping_the_winner_deletes_the_losers() {
    let Some((store, url, database)) = conflicted_store().await else { return };
    replicate_revisions(
        &url,
        &database,
        "alias:info@example.com",
        &[
            ("2-aaaa", json!({ "type": "alias", "targets": ["a@example.com"] })),
            ("1-ffff", json!({ "type": "alias", "targets": ["f@example.com"] })),
        ],
    )
    .await;
    let conflicts = store.conflicts().await.unwrap();
    assert_eq!(conflicts.len(), 1);
    // The longer history wins, whatever the hashes.
    let winner = conflicts[0].winner.rev.clone();
    assert_eq!(winner, Rev("2-aaaa".to_owned()));

    let rev = store.resolve_conflict("alias:info@example.com", &winner).await.unwrap();
    assert_eq!(rev, winner, "the winner's content and revision stay");
    assert_eq!(store.conflicts().await.unwrap(), []);
    let doc = store.get("alias:info@example.com").await.unwrap().unwrap();
    assert_eq!(doc.body["targets"], json!(["a@example.com"]));
    // An ordinary update works on the resolved document.
    store.put("alias:info@example.com", Some(&rev), &body(json!({ "type": "alias", "targets": [] }))).await.unwrap();
}

#[tokio::test]
async fn resolving_what_is_not_in_conflict_is_not_found() {
    let Some((store, url, database)) = conflicted_store().await else { return };
    let rev = store.put("domain:example.com", None, &body(json!({ "type": "domain" }))).await.unwrap();
    let error = store.resolve_conflict("domain:example.com", &rev).await.expect_err("no conflict");
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    let error = store.resolve_conflict("domain:missing.example", &rev).await.expect_err("no document");
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");

    replicate_revisions(
        &url,
        &database,
        "domain:split.example",
        &[("1-aaaa", json!({ "type": "domain" })), ("1-bbbb", json!({ "type": "domain", "active": false }))],
    )
    .await;
    let error =
        store.resolve_conflict("domain:split.example", &Rev("1-zzzz".to_owned())).await.expect_err("not a revision");
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    assert!(error.to_string().contains("1-aaaa") && error.to_string().contains("1-bbbb"), "{error}");
    assert_eq!(store.conflicts().await.unwrap().len(), 1, "a failed resolution changes nothing");

    // A loser deleted by hand no longer counts.
    let response = crate::http_client()
        .delete(crate::document_url(&url, &database, "domain:split.example"))
        .query(&[("rev", "1-aaaa")])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    assert_eq!(store.conflicts().await.unwrap(), []);
    let error = store.resolve_conflict("domain:split.example", &Rev("1-bbbb".to_owned())).await.expect_err("resolved");
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
}
