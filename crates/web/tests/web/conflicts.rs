//! `/conflicts`: admin only, empty on SQLite, and, over a store that has conflicts, every
//! live revision shown without secrets and a resolve handed to the store.

use std::sync::Mutex;

use async_trait::async_trait;
use couchmail_model::{Password, PasswordHash};
use couchmail_store::{Body, Changes, Conflict, Error, ErrorKind, Rev, Seq};

use crate::*;

#[tokio::test]
async fn conflicts_are_admin_only_and_none_on_sqlite() {
    let api = Api::start().await;
    two_domains(&api).await;
    let admin = api.admin_token().await;
    let boss = api.mailbox_token("boss@a.example").await;
    let alice = api.mailbox_token("alice@a.example").await;

    let listed = api.get("/conflicts").token(&admin).send().await;
    listed.expect(200);
    assert_eq!(listed.body, json!({ "items": [] }));
    let rev = api.directory.get("mailbox:alice@a.example").await.unwrap().unwrap().rev;
    let resolve = api.post("/conflicts/mailbox:alice@a.example/resolve").json(json!({ "keep": rev.0 }));
    resolve.token(&admin).send().await.expect_error(404, "not_found");

    for token in [&boss, &alice] {
        api.get("/conflicts").token(token).send().await.expect_error(403, "forbidden");
        let resolve = api.post("/conflicts/mailbox:alice@a.example/resolve").json(json!({ "keep": rev.0 }));
        resolve.token(token).send().await.expect_error(403, "forbidden");
    }
    api.get("/conflicts").send().await.expect_error(401, "unauthenticated");

    let reply = api.post("/conflicts/mailbox:alice@a.example/resolve").json(json!({ "keep": " " })).token(&admin);
    assert_eq!(reply.send().await.expect_error(400, "invalid").field(), Some("keep"));
    let reply = api.post("/conflicts/mailbox:alice@a.example/resolve").json(json!({ "kept": "1-a" })).token(&admin);
    reply.send().await.expect_error(400, "invalid");
    let reply = api.post("/conflicts/mailbox:alice@a.example/resolve").raw("text/plain", "1-a").token(&admin);
    reply.send().await.expect_error(415, "unsupported_media_type");
}

/// A store with replication conflicts over the temporary one, as CouchDB would have after
/// concurrent edits at two sites; it records what it is asked to resolve.
struct Conflicted {
    inner: Arc<dyn Store>,
    conflicts: Vec<Conflict>,
    resolved: Mutex<Vec<(String, Rev)>>,
}

#[async_trait]
impl Store for Conflicted {
    async fn get(&self, id: &str) -> couchmail_store::Result<Option<RawDoc>> {
        self.inner.get(id).await
    }
    async fn put(&self, id: &str, rev: Option<&Rev>, body: &Body) -> couchmail_store::Result<Rev> {
        self.inner.put(id, rev, body).await
    }
    async fn delete(&self, id: &str, rev: &Rev) -> couchmail_store::Result<Rev> {
        self.inner.delete(id, rev).await
    }
    async fn list(&self, prefix: &str, options: &ListOptions) -> couchmail_store::Result<Vec<RawDoc>> {
        self.inner.list(prefix, options).await
    }
    async fn changes(&self, since: Option<&Seq>, limit: usize, wait: Duration) -> couchmail_store::Result<Changes> {
        self.inner.changes(since, limit, wait).await
    }
    async fn conflicts(&self) -> couchmail_store::Result<Vec<Conflict>> {
        Ok(self.conflicts.clone())
    }
    async fn resolve_conflict(&self, id: &str, keep: &Rev) -> couchmail_store::Result<Rev> {
        let live = self.conflicts.iter().find(|conflict| conflict.id == id).is_some_and(|conflict| {
            conflict.winner.rev == *keep || conflict.losers.iter().any(|loser| loser.rev == *keep)
        });
        if !live {
            return Err(Error::new(ErrorKind::NotFound, format!("document {id:?} has no live revision {keep}")));
        }
        self.resolved.lock().unwrap().push((id.to_owned(), keep.clone()));
        Ok(Rev("9-resolved".to_owned()))
    }
    fn describe(&self) -> String {
        format!("conflicted {}", self.inner.describe())
    }
}

fn raw(document: &Document, rev: &str) -> RawDoc {
    RawDoc { id: document.id(), rev: Rev(rev.to_owned()), body: document.to_body() }
}

#[tokio::test]
async fn conflicts_show_every_revision_without_secrets_and_resolve_through_the_store() {
    let hash = |password: &str| PasswordHash::new(&Password::new(password.to_owned()).unwrap());
    let (site_a_hash, site_b_hash) = (hash("site a password"), hash("site b password"));
    let Document::Mailbox(mut alice) = fixtures::mailbox("alice@a.example") else { unreachable!() };
    alice.name = "Alice at site A".to_owned();
    alice.password = Some(site_a_hash.clone());
    let winner = raw(&Document::Mailbox(alice.clone()), "3-aaa");
    alice.name = "Alice at site B".to_owned();
    alice.password = Some(site_b_hash.clone());
    let loser = raw(&Document::Mailbox(alice), "3-bbb");
    let (token, _) = Token::generate(TokenPrincipal::Admin, "replicated".to_owned(), 0);
    let token_secret = token.secret_sha256.clone();
    let token_doc = Document::Token(token);
    let script = fixtures::sieve("alice@a.example", "my filter", "keep;");
    let conflicts = vec![
        Conflict { id: winner.id.clone(), winner, losers: vec![loser] },
        Conflict { id: token_doc.id(), winner: raw(&token_doc, "2-ccc"), losers: vec![raw(&token_doc, "2-ddd")] },
        Conflict { id: script.id(), winner: raw(&script, "2-eee"), losers: vec![raw(&script, "2-fff")] },
    ];
    let mut wrapper = None;
    let api = Api::start_with(|store| {
        let conflicted = Arc::new(Conflicted { inner: store, conflicts, resolved: Mutex::new(Vec::new()) });
        wrapper = Some(Arc::clone(&conflicted));
        conflicted
    })
    .await;
    let wrapper = wrapper.unwrap();
    let admin = api.admin_token().await;

    let listed = api.get("/conflicts").token(&admin).send().await;
    listed.expect(200);
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    let mailbox = &items[0];
    assert_eq!(mailbox["id"], "mailbox:alice@a.example");
    assert_eq!(mailbox["winner"]["rev"], "3-aaa");
    assert_eq!(mailbox["winner"]["body"]["name"], "Alice at site A");
    assert_eq!(mailbox["winner"]["body"]["type"], "mailbox");
    assert_eq!(mailbox["winner"]["redacted"], json!(["password"]));
    assert_eq!(mailbox["losers"][0]["rev"], "3-bbb");
    assert_eq!(mailbox["losers"][0]["body"]["name"], "Alice at site B");
    assert_eq!(mailbox["losers"][0]["redacted"], json!(["password"]));
    assert!(mailbox["winner"]["body"].get("password").is_none());
    assert_eq!(items[1]["winner"]["redacted"], json!(["secret_sha256"]));
    assert_eq!(items[1]["winner"]["body"]["principal"], "admin");
    assert_eq!(items[2]["losers"][0]["redacted"], json!([]));
    for secret in [site_a_hash.as_str(), site_b_hash.as_str(), token_secret.as_str(), "secret_sha256\":", "$argon2"] {
        assert!(!listed.text.contains(secret), "a secret leaked: {}", listed.text);
    }

    let resolved = api.post("/conflicts/mailbox:alice@a.example/resolve").json(json!({ "keep": "3-bbb" }));
    let resolved = resolved.token(&admin).send().await;
    resolved.expect(200);
    assert_eq!(resolved.body, json!({ "id": "mailbox:alice@a.example", "rev": "9-resolved" }));
    assert_eq!(resolved.etag.as_deref(), Some("\"9-resolved\""));
    // A Sieve `_id` holds a space: the path segment is percent-decoded before the store sees it.
    let resolved = api.post("/conflicts/sieve:alice@a.example:my%20filter/resolve").json(json!({ "keep": "2-eee" }));
    resolved.token(&admin).send().await.expect(200);
    let stale = api.post("/conflicts/mailbox:alice@a.example/resolve").json(json!({ "keep": "2-old" }));
    stale.token(&admin).send().await.expect_error(404, "not_found");
    assert_eq!(
        *wrapper.resolved.lock().unwrap(),
        [
            ("mailbox:alice@a.example".to_owned(), Rev("3-bbb".to_owned())),
            ("sieve:alice@a.example:my filter".to_owned(), Rev("2-eee".to_owned())),
        ]
    );
}
