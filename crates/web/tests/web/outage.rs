//! A store that goes down (issue #4, "API writes answer 503 with a clear message"): every
//! write answers 503 `unavailable` with `Retry-After` and writes nothing; in a full outage
//! authenticated reads do too, while `health` keeps answering from the index.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use couchmail_store::{Body, Changes, Conflict, Error, ErrorKind, Rev, Seq};

use crate::*;

/// A store that fails on demand: `writes_down` fails writes only (reads still work, so a
/// request gets as far as its write), `all_down` fails everything, as an unreachable
/// CouchDB does.
struct Outage {
    inner: Arc<dyn Store>,
    writes_down: AtomicBool,
    all_down: AtomicBool,
}

impl Outage {
    fn check(&self, write: bool) -> couchmail_store::Result<()> {
        let down = self.all_down.load(Ordering::SeqCst) || (write && self.writes_down.load(Ordering::SeqCst));
        if down {
            return Err(Error::new(ErrorKind::Unavailable, "cannot reach the store at http://admin:hunter2@couch/"));
        }
        Ok(())
    }
}

#[async_trait]
impl Store for Outage {
    async fn get(&self, id: &str) -> couchmail_store::Result<Option<RawDoc>> {
        self.check(false)?;
        self.inner.get(id).await
    }
    async fn put(&self, id: &str, rev: Option<&Rev>, body: &Body) -> couchmail_store::Result<Rev> {
        self.check(true)?;
        self.inner.put(id, rev, body).await
    }
    async fn delete(&self, id: &str, rev: &Rev) -> couchmail_store::Result<Rev> {
        self.check(true)?;
        self.inner.delete(id, rev).await
    }
    async fn list(&self, prefix: &str, options: &ListOptions) -> couchmail_store::Result<Vec<RawDoc>> {
        self.check(false)?;
        self.inner.list(prefix, options).await
    }
    async fn changes(&self, since: Option<&Seq>, limit: usize, wait: Duration) -> couchmail_store::Result<Changes> {
        self.check(false)?;
        // A short wait, so that the follower meets an outage soon after it starts.
        self.inner.changes(since, limit, wait.min(Duration::from_millis(50))).await
    }
    async fn conflicts(&self) -> couchmail_store::Result<Vec<Conflict>> {
        self.check(false)?;
        self.inner.conflicts().await
    }
    async fn resolve_conflict(&self, id: &str, keep: &Rev) -> couchmail_store::Result<Rev> {
        self.check(true)?;
        self.inner.resolve_conflict(id, keep).await
    }
    fn describe(&self) -> String {
        format!("outage {}", self.inner.describe())
    }
}

#[track_caller]
fn expect_unavailable(reply: &Reply, what: &str) {
    assert_eq!((reply.status, reply.code()), (503, "unavailable"), "{what}: {}", reply.text);
    assert_eq!(reply.body["error"]["message"], "the store is not answering; retry shortly", "{what}");
    assert_eq!(reply.retry_after.as_deref(), Some("1"), "{what}");
    assert!(!reply.text.contains("hunter2"), "{what}: the cause is logged, never sent");
}

#[tokio::test]
async fn every_write_answers_503_while_the_store_is_down() {
    let mut outage = None;
    let api = Api::start_with(|store| {
        let wrapper =
            Arc::new(Outage { inner: store, writes_down: AtomicBool::new(false), all_down: AtomicBool::new(false) });
        outage = Some(Arc::clone(&wrapper));
        wrapper
    })
    .await;
    let outage = outage.unwrap();
    two_domains(&api).await;
    let admin = api.admin_token().await;
    api.index.wait_until(|snapshot| snapshot.mailbox("alice@a.example").is_some(), Duration::from_secs(10)).await;
    let etag = |path: &'static str| {
        let admin = admin.clone();
        let api = &api;
        async move { api.get(path).token(&admin).send().await.expect(200).etag.clone().unwrap() }
    };
    let domain_etag = etag("/domains/a.example").await;
    let alias_domain_etag = etag("/domain-aliases/a-alias.example").await;
    let mailbox_etag = etag("/mailboxes/alice@a.example").await;
    let carol_etag = etag("/mailboxes/carol@a.example").await;
    let sieve_etag = etag("/mailboxes/alice@a.example/sieve/main").await;
    let alias_etag = etag("/aliases/info@a.example").await;
    let before = api.everything().await;

    outage.writes_down.store(true, Ordering::SeqCst);
    let writes = [
        ("create a domain", api.post("/domains").json(json!({"name": "c.example"}))),
        (
            "update a domain",
            api.put("/domains/a.example").json(json!({"quota_default": 1 << 30})).if_match(&domain_etag),
        ),
        ("remove a domain", api.delete("/domains/a.example?cascade=true").if_match(&domain_etag)),
        (
            "create a domain alias",
            api.post("/domain-aliases").json(json!({"name": "c-alias.example", "target": "a.example"})),
        ),
        (
            "update a domain alias",
            api.put("/domain-aliases/a-alias.example")
                .json(json!({"target": "b.example"}))
                .if_match(&alias_domain_etag),
        ),
        ("remove a domain alias", api.delete("/domain-aliases/a-alias.example").if_match(&alias_domain_etag)),
        ("create a mailbox", api.post("/mailboxes").json(json!({"address": "dave@a.example"}))),
        (
            "update a mailbox",
            api.put("/mailboxes/alice@a.example").json(json!({"name": "Alice"})).if_match(&mailbox_etag),
        ),
        (
            "set a password",
            api.put("/mailboxes/alice@a.example/password")
                .json(json!({"password": "correct horse battery"}))
                .if_match(&mailbox_etag),
        ),
        ("remove a mailbox", api.delete("/mailboxes/carol@a.example?cascade=true").if_match(&carol_etag)),
        (
            "create a script",
            api.post("/mailboxes/alice@a.example/sieve").json(json!({"name": "new", "script": "keep;"})),
        ),
        (
            "update a script",
            api.put("/mailboxes/alice@a.example/sieve/main").json(json!({"script": "discard;"})).if_match(&sieve_etag),
        ),
        ("remove a script", api.delete("/mailboxes/alice@a.example/sieve/main").if_match(&sieve_etag)),
        (
            "create an alias",
            api.post("/aliases").json(json!({"key": "sales@a.example", "targets": ["alice@a.example"]})),
        ),
        (
            "update an alias",
            api.put("/aliases/info@a.example").json(json!({"targets": ["carol@a.example"]})).if_match(&alias_etag),
        ),
        ("remove an alias", api.delete("/aliases/info@a.example").if_match(&alias_etag)),
        ("resolve a conflict", api.post("/conflicts/mailbox:alice@a.example/resolve").json(json!({"keep": "1-a"}))),
    ];
    for (what, call) in writes {
        expect_unavailable(&call.token(&admin).send().await, what);
    }
    outage.writes_down.store(false, Ordering::SeqCst);
    assert_eq!(api.everything().await, before, "a write that failed wrote nothing");

    // A full outage: the token cannot be read, so every authenticated request is a 503,
    // but health answers from the index, which keeps its last snapshot.
    outage.all_down.store(true, Ordering::SeqCst);
    expect_unavailable(&api.post("/domains").json(json!({"name": "c.example"})).token(&admin).send().await, "create");
    expect_unavailable(&api.get("/domains").token(&admin).send().await, "list");
    expect_unavailable(&api.get("/conflicts").token(&admin).send().await, "conflicts");
    let health = api.get("/health").send().await;
    health.expect(200);
    assert_eq!(health.body["index_ready"], true);
    assert!(api.index.snapshot().active_mailbox("alice@a.example").is_some(), "lookups still answer");

    // Back up: writes work again and the index catches up.
    outage.all_down.store(false, Ordering::SeqCst);
    api.post("/domains").json(json!({"name": "c.example"})).token(&admin).send().await.expect(201);
    let caught_up =
        api.index.wait_until(|snapshot| snapshot.domain("c.example").is_some(), Duration::from_secs(10)).await;
    assert!(caught_up.is_some(), "the follower catches up after the outage");
}
