//! CouchMail's `validate_doc_update` at work in a database: every document the model accepts
//! gets in, through the store and directly; documents of the wrong shape are refused with
//! 403 `forbidden` and a reason naming the field, and through the store as a bad request.

use couchmail_model::couchdb::{VALIDATE_DOC_UPDATE, mango_indexes};
use couchmail_model::{DocKind, Document, PolicySettings, SpamScore};
use couchmail_store::{Body, CouchConfig, CouchSetup, CouchStore, ErrorKind, MangoIndex, Store};
use couchmail_testkit::fixtures;
use serde_json::{Value, json};

use crate::{document_url, fresh_database, server_url};

/// `openssl passwd -5 -salt saltsalt 'correct horse battery'`, as in the model's tests.
const SHA256_HASH: &str = "{SHA256-CRYPT}$5$saltsalt$lJBntEo62mus/ovk43htFvkabtoMEkzjosQqenAm4h8";

/// The setup the `couchmail` binary gives: the model's function and indexes.
fn couchmail_setup() -> CouchSetup {
    CouchSetup {
        validate_doc_update: Some(VALIDATE_DOC_UPDATE.to_owned()),
        indexes: mango_indexes().into_iter().map(|(name, fields)| MangoIndex { name, fields }).collect(),
        members: Vec::new(),
    }
}

async fn validating_store(url: &str, database: &str) -> CouchStore {
    let config = CouchConfig { setup: couchmail_setup(), ..CouchConfig::new(url, database) };
    CouchStore::connect(config).await.unwrap()
}

fn object(value: Value) -> Body {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Documents the model accepts: the test kit's fixtures, and bodies as people and older
/// versions write them (fields left out, addresses not in normal form where the model
/// normalises them, nulls where serde reads None).
fn valid_documents() -> Vec<(String, Body)> {
    let mut documents: Vec<(String, Body)> = [
        fixtures::domain("example.com"),
        fixtures::domain("xn--bcher-kva.example"),
        fixtures::domain_with_quota_default("quota.example", 1 << 30),
        fixtures::inactive(fixtures::domain("off.example")),
        fixtures::domain_alias("example.net", "example.com"),
        fixtures::mailbox("alice@example.com"),
        fixtures::with_sieve_active(fixtures::mailbox("bob@example.com"), "main"),
        fixtures::inactive(fixtures::mailbox("carol@example.com")),
        fixtures::alias("info@example.com", &["alice@example.com", "bob@example.org"]),
        fixtures::alias("@example.com", &["postmaster@example.com"]),
        fixtures::inactive(fixtures::alias("old@example.com", &["alice@example.com"])),
        fixtures::sieve("alice@example.com", "main", "keep;"),
        fixtures::sieve("alice@example.com", "vacation: summer ☀", ""),
        fixtures::with_policy(fixtures::domain("policy.example"), every_policy_setting()),
        fixtures::with_policy(fixtures::mailbox("grace@example.com"), every_policy_setting()),
        fixtures::listing("global:block:client:192.0.2.0/24"),
        fixtures::listing("global:allow:client:2001:db8::/32"),
        fixtures::listing("domain:example.com:allow:sender-domain:partner.example"),
        fixtures::listing("mailbox:alice@example.com:block:sender:spam@bad.example"),
    ]
    .into_iter()
    .map(|document| (document.id(), document.to_body()))
    .collect();
    let secret = "ab".repeat(32);
    let raw = [
        ("domain:raw.example", json!({ "type": "domain" })),
        ("domain:nulls.example", json!({ "type": "domain", "quota_default": null, "max_mailboxes": null })),
        (
            "domain:full.example",
            json!({ "type": "domain", "active": false, "quota_default": 1_073_741_824u64, "max_mailboxes": 50, "future": { "x": 1 } }),
        ),
        ("domain-alias:raw.example", json!({ "type": "domain-alias", "target": "Bücher.Example" })),
        ("mailbox:dave@example.com", json!({ "type": "mailbox" })),
        (
            "mailbox:erin@example.com",
            json!({
                "type": "mailbox", "name": "Erin Smith", "password": SHA256_HASH, "active": false,
                "quota_bytes": 1_048_576u64, "roles": ["admin", "domain-admin:Example.ORG"], "sieve_active": "main",
            }),
        ),
        (
            "mailbox:frank@example.com",
            json!({ "type": "mailbox", "password": null, "quota_bytes": null, "sieve_active": null }),
        ),
        ("alias:sales@example.com", json!({ "type": "alias", "targets": ["Alice@Bücher.Example", "bob@example.org"] })),
        ("alias:@xn--bcher-kva.example", json!({ "type": "alias", "targets": ["alice@example.com"], "active": false })),
        ("sieve:alice@example.com:a:b", json!({ "type": "sieve", "script": "require \"fileinto\";\nkeep;" })),
        (
            "token:0123456789abcdef",
            json!({
                "type": "token", "secret_sha256": secret, "principal": "mailbox:alice@example.com",
                "label": "laptop", "created": 1_700_000_000u64,
            }),
        ),
        ("token:ABCdef0123", json!({ "type": "token", "secret_sha256": secret, "principal": "admin", "created": 0 })),
        (
            "invitation:0123456789abcdef",
            json!({
                "type": "invitation", "domain": "example.com", "secret_sha256": secret, "created": 100,
                "expires": 200, "created_by": "boss@example.com", "note": "for Carol", "used_by": "carol@example.com",
            }),
        ),
    ];
    documents.extend(raw.into_iter().map(|(id, body)| (id.to_owned(), object(body))));
    documents
}

/// Every issue #5 setting a domain or mailbox may carry, at its bounds.
fn every_policy_setting() -> PolicySettings {
    PolicySettings {
        greylisting: Some(false),
        spam_threshold: Some(SpamScore::from_tenths(0).unwrap()),
        spam_reject: Some(SpamScore::from_tenths(1000).unwrap()),
        messages_per_hour: Some(0),
        recipients_per_hour: Some(1_000_000),
    }
}

#[tokio::test]
async fn every_document_the_model_accepts_gets_in() {
    let Some(url) = server_url() else { return };
    let store = validating_store(&url, &fresh_database()).await;
    let documents = valid_documents();
    let kinds: std::collections::BTreeSet<DocKind> =
        documents.iter().map(|(id, body)| Document::from_stored(id, body).unwrap().kind()).collect();
    assert_eq!(kinds.len(), DocKind::ALL.len(), "every kind of document is tried");
    for (id, body) in &documents {
        Document::from_stored(id, body).unwrap_or_else(|error| panic!("the model refuses {id}: {error}"));
        let rev = store.put(id, None, body).await.unwrap_or_else(|error| panic!("{id} refused: {error}"));
        let stored = store.get(id).await.unwrap().unwrap();
        assert_eq!((&stored.rev, &stored.body), (&rev, body), "{id}");
        // Updates and deletions pass the function too.
        let rev = store.put(id, Some(&rev), body).await.unwrap_or_else(|error| panic!("{id} update refused: {error}"));
        store.delete(id, &rev).await.unwrap_or_else(|error| panic!("{id} deletion refused: {error}"));
    }
}

/// Documents of the wrong shape, each with a piece of the reason CouchDB must give.
fn invalid_documents() -> Vec<(&'static str, Value, &'static str)> {
    let secret = "ab".repeat(32);
    vec![
        ("user:alice@example.com", json!({ "type": "user" }), "type: unknown document type `user`"),
        ("domain:example.com", json!({ "active": true }), "type: is missing"),
        ("domain:example.com", json!({ "type": 1 }), "type: must be a string"),
        (
            "domain:example.com",
            json!({ "type": "mailbox" }),
            "_id: a mailbox document has an _id starting with `mailbox:`",
        ),
        ("example.com", json!({ "type": "domain" }), "_id: a domain document has an _id starting with `domain:`"),
        ("domain:Example.com", json!({ "type": "domain" }), "_id: `Example.com` is not a domain in normal form"),
        ("domain:example.com", json!({ "type": "domain", "active": "yes" }), "active: must be true or false"),
        ("domain:example.com", json!({ "type": "domain", "greylisting": "no" }), "greylisting: must be true or false"),
        (
            "mailbox:alice@example.com",
            json!({ "type": "mailbox", "spam_threshold": 101 }),
            "spam_threshold: must be a score between 0 and 100",
        ),
        (
            "mailbox:alice@example.com",
            json!({ "type": "mailbox", "messages_per_hour": -1 }),
            "messages_per_hour: must be a whole number between 0 and 1000000",
        ),
        (
            "listing:everyone:block:client:192.0.2.1",
            json!({ "type": "listing" }),
            "_id: must be `listing:<global|domain:D|mailbox:A>:<block|allow>:<sender|sender-domain|client>:<value>`",
        ),
        (
            "listing:global:block:client:not-an-ip",
            json!({ "type": "listing" }),
            "_id: `not-an-ip` is not an IP address or network in normal form",
        ),
        (
            "listing:domain:Example.com:block:sender-domain:bad.example",
            json!({ "type": "listing" }),
            "_id: `Example.com` is not a domain in normal form",
        ),
        (
            "listing:global:block:sender:spam@bad.example",
            json!({ "type": "listing", "note": 5 }),
            "note: must be a string",
        ),
        (
            "domain:example.com",
            json!({ "type": "domain", "quota_default": -1 }),
            "quota_default: must be a whole number",
        ),
        (
            "domain:example.com",
            json!({ "type": "domain", "max_mailboxes": "many" }),
            "max_mailboxes: must be a whole number",
        ),
        (
            "invitation:0123456789abcdef",
            json!({ "type": "invitation", "domain": 7, "secret_sha256": secret, "created": 1, "expires": 2 }),
            "domain: must be a string",
        ),
        (
            "invitation:0123456789abcdef",
            json!({ "type": "invitation", "domain": "example.com", "secret_sha256": secret, "created": 1 }),
            "expires: is missing",
        ),
        (
            "invitation:0123456789abcdef",
            json!({ "type": "invitation", "domain": "example.com", "secret_sha256": "x", "created": 1, "expires": 2 }),
            "secret_sha256: must be 64 hex digits",
        ),
        ("domain-alias:example.net", json!({ "type": "domain-alias" }), "target: is missing"),
        ("domain-alias:example.net", json!({ "type": "domain-alias", "target": 7 }), "target: must be a string"),
        ("mailbox:alice@example.com", json!({ "type": "mailbox", "active": 1 }), "active: must be true or false"),
        ("mailbox:alice@example.com", json!({ "type": "mailbox", "active": null }), "active: must be true or false"),
        ("mailbox:alice@example.com", json!({ "type": "mailbox", "name": 5 }), "name: must be a string"),
        (
            "mailbox:alice@example.com",
            json!({ "type": "mailbox", "password": "{PLAIN}secret" }),
            "password: unknown hash scheme",
        ),
        (
            "mailbox:alice@example.com",
            json!({ "type": "mailbox", "quota_bytes": "1G" }),
            "quota_bytes: must be a whole number",
        ),
        (
            "mailbox:alice@example.com",
            json!({ "type": "mailbox", "quota_bytes": 1_048_576.5 }),
            "quota_bytes: must be a whole number",
        ),
        (
            "mailbox:alice@example.com",
            json!({ "type": "mailbox", "roles": "admin" }),
            "roles: must be a list of strings",
        ),
        (
            "mailbox:alice@example.com",
            json!({ "type": "mailbox", "roles": ["admin", "root"] }),
            "roles[1]: unknown role `root`",
        ),
        (
            "mailbox:alice@example.com",
            json!({ "type": "mailbox", "sieve_active": "a/b" }),
            "sieve_active: a sieve script name",
        ),
        (
            "mailbox:Alice@example.com",
            json!({ "type": "mailbox" }),
            "_id: `Alice@example.com` is not an address in normal form",
        ),
        ("mailbox:alice", json!({ "type": "mailbox" }), "_id: `alice` is not an address"),
        ("alias:info@example.com", json!({ "type": "alias" }), "targets: is missing"),
        (
            "alias:info@example.com",
            json!({ "type": "alias", "targets": "alice@example.com" }),
            "targets: must be a list of strings",
        ),
        (
            "alias:info@example.com",
            json!({ "type": "alias", "targets": [] }),
            "targets: an alias needs at least one target",
        ),
        (
            "alias:info@example.com",
            json!({ "type": "alias", "targets": ["alice@example.com", 3] }),
            "targets[1]: must be a string",
        ),
        (
            "alias:info@example.com",
            json!({ "type": "alias", "targets": ["nobody"] }),
            "targets[0]: `nobody` is not an address",
        ),
        ("sieve:alice@example.com:main", json!({ "type": "sieve" }), "script: is missing"),
        ("sieve:alice@example.com:main", json!({ "type": "sieve", "script": ["keep;"] }), "script: must be a string"),
        ("sieve:alice@example.com", json!({ "type": "sieve", "script": "" }), "_id: must be `sieve:<address>:<name>`"),
        (
            "token:0123456789abcdef",
            json!({ "type": "token", "principal": "admin", "created": 0 }),
            "secret_sha256: is missing",
        ),
        (
            "token:0123456789abcdef",
            json!({ "type": "token", "secret_sha256": secret, "principal": "root", "created": 0 }),
            "principal: unknown principal `root`",
        ),
        (
            "token:0123456789abcdef",
            json!({ "type": "token", "secret_sha256": secret, "principal": "admin", "created": -5 }),
            "created: must be a whole number",
        ),
        ("token:not-alnum", json!({ "type": "token" }), "_id: a token id is 1 to 64 letters and digits"),
    ]
}

#[tokio::test]
async fn documents_of_the_wrong_shape_are_forbidden() {
    let Some(url) = server_url() else { return };
    let database = fresh_database();
    let store = validating_store(&url, &database).await;
    let client = crate::http_client();
    for (id, body, reason) in invalid_documents() {
        let object = object(body.clone());
        assert!(Document::from_stored(id, &object).is_err(), "the model accepts {id} {body}, so CouchDB must too");

        // As an admin would write it with curl or Fauxton.
        let response = client.put(document_url(&url, &database, id)).json(&body).send().await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::FORBIDDEN, "{id} {body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], json!("forbidden"), "{id} {body}: {answer}");
        let given = answer["reason"].as_str().unwrap_or_default();
        assert!(given.contains(reason), "{id} {body}: reason {given:?} lacks {reason:?}");

        // Through the store: a bad request with CouchDB's reason.
        if !id.starts_with('_') {
            let error = store.put(id, None, &object).await.expect_err("refused");
            assert_eq!(error.kind(), ErrorKind::BadRequest, "{id} {body}: {error}");
            assert!(error.to_string().contains(reason), "{id} {body}: {error}");
        }
        assert_eq!(store.get(id).await.unwrap(), None, "{id} got in");
    }
}

#[tokio::test]
async fn an_invalid_update_is_refused_and_the_document_kept() {
    let Some(url) = server_url() else { return };
    let store = validating_store(&url, &fresh_database()).await;
    let mailbox = fixtures::mailbox("alice@example.com");
    let rev = store.put(&mailbox.id(), None, &mailbox.to_body()).await.unwrap();
    let mut broken = mailbox.to_body();
    broken.insert("active".to_owned(), json!("no"));
    let error = store.put(&mailbox.id(), Some(&rev), &broken).await.expect_err("refused");
    assert_eq!(error.kind(), ErrorKind::BadRequest, "{error}");
    assert!(error.to_string().contains("active: must be true or false"), "{error}");
    assert_eq!(store.get(&mailbox.id()).await.unwrap().unwrap().rev, rev);
    // Deleting needs no valid body.
    store.delete(&mailbox.id(), &rev).await.unwrap();
}

#[tokio::test]
async fn replication_checkpoints_and_admin_design_documents_get_in() {
    let Some(url) = server_url() else { return };
    let database = fresh_database();
    validating_store(&url, &database).await;
    let client = crate::http_client();
    for id in ["_local/replication-checkpoint", "_design/reports"] {
        let response =
            client.put(format!("{url}/{database}/{id}")).json(&json!({ "any": "thing" })).send().await.unwrap();
        assert!(response.status().is_success(), "{id}: {}", response.text().await.unwrap());
    }
}
