//! The index over a real SQLite store: building from existing documents,
//! following changes, skipping invalid documents, readiness, and surviving
//! store failures.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use couchmail_index::{FollowConfig, Index, Snapshot, follow_with};
use couchmail_model::{Document, Password, PasswordHash, Token, TokenPrincipal};
use couchmail_store::{Body, Changes, Error, ErrorKind, ListOptions, RawDoc, Rev, Seq, Store};
use couchmail_testkit::TempStore;
use couchmail_testkit::fixtures::{alias, domain, domain_alias, mailbox, sieve};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Tests in files of their own under `tests/index/`, using the helpers below.
mod index {
    mod checkpoint;
    mod outage;
}

/// Long enough for a slow CI machine, short enough to fail fast.
const PATIENCE: Duration = Duration::from_secs(10);

/// A running follower and the means to stop it.
struct Running {
    index: Arc<Index>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    fn start(store: Arc<dyn Store>, config: FollowConfig) -> Running {
        Running::start_on(Arc::new(Index::default()), store, config)
    }

    /// A follower of `store` into `index`, which the caller may already have handed to a
    /// store wrapper that observes it.
    fn start_on(index: Arc<Index>, store: Arc<dyn Store>, config: FollowConfig) -> Running {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(follow_with(config, store, Arc::clone(&index), async move {
            let _ = stopped.await;
        }));
        Running { index, stop: Some(stop), task }
    }

    async fn ready(&self) -> Arc<Snapshot> {
        self.index.wait_until(Snapshot::is_ready, PATIENCE).await.expect("the index becomes ready")
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(2), self.task)
            .await
            .expect("the follower stops promptly")
            .expect("the follower does not panic");
    }
}

fn quick_config() -> FollowConfig {
    FollowConfig {
        batch_size: 100,
        poll_wait: Duration::from_secs(30),
        retry_min: Duration::from_millis(10),
        retry_max: Duration::from_millis(40),
        ..FollowConfig::default()
    }
}

async fn put(store: &dyn Store, document: &Document) -> Rev {
    store.put(&document.id(), None, &document.to_body()).await.unwrap()
}

async fn put_raw(store: &dyn Store, id: &str, rev: Option<&Rev>, body: serde_json::Value) -> Rev {
    store.put(id, rev, body.as_object().unwrap()).await.unwrap()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

fn world() -> Vec<Document> {
    vec![
        domain("example.com"),
        domain("example.org"),
        domain_alias("example.net", "example.com"),
        domain_alias("example.info", "example.org"),
        mailbox("alice@example.com"),
        mailbox("bob@example.com"),
        mailbox("erin@example.org"),
        alias("info@example.com", &["alice@example.com", "bob@example.com"]),
        alias("loop1@example.com", &["loop2@example.com"]),
        alias("loop2@example.com", &["loop1@example.com", "bob@example.com"]),
        alias("@example.com", &["alice@example.com"]),
        sieve("alice@example.com", "main", "keep;\n"),
    ]
}

#[tokio::test]
async fn builds_from_existing_documents() {
    let temp = TempStore::new().await;
    let store: Arc<dyn Store> = temp.store.clone();
    for document in world() {
        put(&*store, &document).await;
    }
    let hash = PasswordHash::new(&Password::new("correct horse battery".to_owned()).unwrap());
    put_raw(
        &*store,
        "mailbox:carol@example.com",
        None,
        json!({ "type": "mailbox", "password": hash.as_str(), "quota_bytes": 1 << 30, "roles": ["admin"], "sieve_active": "main" }),
    )
    .await;
    let (token, _bearer) = Token::generate(TokenPrincipal::Admin, "test".to_owned(), 1);
    put(&*store, &Document::Token(token.clone())).await;

    let running = Running::start(Arc::clone(&store), quick_config());
    let snapshot = running.ready().await;
    let counts = snapshot.counts();
    assert_eq!((counts.domains, counts.alias_domains, counts.mailboxes, counts.aliases), (2, 2, 4, 4));
    assert_eq!((counts.sieve_scripts, counts.tokens, counts.invalid_documents), (1, 1, 0));
    assert!(snapshot.last_seq().is_some());

    let carol = snapshot.active_mailbox("carol@example.com").unwrap();
    assert_eq!(carol.password_hash(), Some(hash.as_str()));
    assert_eq!(carol.quota_bytes(), Some(1 << 30));
    assert_eq!(carol.roles().iter().map(ToString::to_string).collect::<Vec<_>>(), ["admin"]);
    assert_eq!(carol.sieve_active(), Some("main"));
    assert_eq!(snapshot.active_sieve("carol@example.com"), None, "carol has no script called main");
    assert_eq!(snapshot.active_sieve("alice@example.com"), None, "alice has a script but none is active");
    assert!(snapshot.sieve("alice@example.com", "main").is_some());
    assert_eq!(snapshot.token(&token.id), Some(&token));

    assert!(snapshot.is_served_domain("example.net"));
    assert_eq!(snapshot.virtual_alias("alice@example.com"), Some(strings(&["alice@example.com"])));
    assert_eq!(snapshot.virtual_alias("@example.com"), Some(strings(&["alice@example.com"])));
    assert_eq!(snapshot.virtual_alias("who@example.net"), Some(strings(&["who@example.com"])));
    assert_eq!(snapshot.virtual_alias("who@example.info"), None);
    assert_eq!(snapshot.virtual_alias("erin@example.info"), Some(strings(&["erin@example.org"])));
    assert_eq!(snapshot.sender_logins("info@example.net"), strings(&["alice@example.com", "bob@example.com"]));
    assert_eq!(snapshot.sender_logins("loop1@example.com"), strings(&["bob@example.com"]));
    assert_eq!(snapshot.sender_logins("who@example.com"), Vec::<String>::new());

    let health = running.index.health();
    assert!(health.ready);
    assert_eq!(health.skipped_total, 0);
    assert_eq!(health.store_errors_total, 0);
    running.stop().await;
}

#[tokio::test]
async fn changes_become_visible_within_a_second() {
    let temp = TempStore::new().await;
    let store: Arc<dyn Store> = temp.store.clone();
    for document in world() {
        put(&*store, &document).await;
    }
    let running = Running::start(Arc::clone(&store), quick_config());
    running.ready().await;
    let index = &running.index;

    // Create: measured from the committed write to the snapshot that shows it.
    let mut published = index.subscribe();
    let written = Instant::now();
    let rev = put(&*store, &mailbox("dan@example.com")).await;
    let snapshot = loop {
        let snapshot = index.snapshot();
        if snapshot.mailbox("dan@example.com").is_some() {
            break snapshot;
        }
        tokio::time::timeout(PATIENCE, published.changed()).await.unwrap().unwrap();
    };
    let latency = written.elapsed();
    assert!(latency < Duration::from_secs(1), "a new mailbox took {latency:?} to become visible");
    assert_eq!(snapshot.virtual_alias("dan@example.com"), Some(strings(&["dan@example.com"])));

    // Update: the new revision replaces the old.
    let started = Instant::now();
    let rev =
        put_raw(&*store, "mailbox:dan@example.com", Some(&rev), json!({ "type": "mailbox", "active": false })).await;
    let snapshot = index
        .wait_until(|snapshot| snapshot.mailbox("dan@example.com").is_some_and(|dan| !dan.is_active()), PATIENCE)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(snapshot.active_mailbox("dan@example.com").is_none());

    // Delete: the tombstone removes it, and the catch-all now takes its mail.
    let started = Instant::now();
    store.delete("mailbox:dan@example.com", &rev).await.unwrap();
    let snapshot = index.wait_until(|snapshot| snapshot.mailbox("dan@example.com").is_none(), PATIENCE).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(snapshot.virtual_alias("dan@example.com"), Some(strings(&["alice@example.com"])));
    assert_eq!(snapshot.virtual_alias("@example.com"), Some(strings(&["alice@example.com"])));

    // A domain removed takes everything in it out of service.
    let domain_doc = store.get("domain:example.org").await.unwrap().unwrap();
    store.delete("domain:example.org", &domain_doc.rev).await.unwrap();
    let snapshot = index.wait_until(|snapshot| !snapshot.is_served_domain("example.org"), PATIENCE).await.unwrap();
    assert!(!snapshot.is_served_domain("example.info"));
    assert_eq!(snapshot.virtual_alias("erin@example.org"), None);
    assert_eq!(snapshot.sender_logins("erin@example.info"), Vec::<String>::new());
    running.stop().await;
}

#[tokio::test]
async fn invalid_documents_are_skipped_and_the_last_valid_version_stays() {
    let temp = TempStore::new().await;
    let store: Arc<dyn Store> = temp.store.clone();
    for document in world() {
        put(&*store, &document).await;
    }
    let bob_rev = store.get("mailbox:bob@example.com").await.unwrap().unwrap().rev;
    // One invalid document is there from the start, before the first drain.
    put_raw(&*store, "gadget:x", None, json!({ "type": "gadget" })).await;
    let running = Running::start(Arc::clone(&store), quick_config());
    let snapshot = running.ready().await;
    assert_eq!(snapshot.counts().invalid_documents, 1);
    assert_eq!(running.index.health().skipped_total, 1);

    let bad_bob =
        put_raw(&*store, "mailbox:bob@example.com", Some(&bob_rev), json!({ "type": "mailbox", "active": "yes" }))
            .await;
    put_raw(&*store, "mailbox:Eve@Example.com", None, json!({ "type": "mailbox" })).await;
    put_raw(&*store, "alias:x@example.com", None, json!({ "type": "alias", "targets": "alice@example.com" })).await;
    let snapshot =
        running.index.wait_until(|snapshot| snapshot.counts().invalid_documents == 4, PATIENCE).await.unwrap();

    // Bob's broken edit did not take his mailbox away.
    let bob = snapshot.active_mailbox("bob@example.com").expect("bob's last valid version stays");
    assert!(bob.is_active());
    assert!(snapshot.mailbox("eve@example.com").is_none());
    assert!(snapshot.mailbox("Eve@Example.com").is_none());
    assert!(snapshot.alias("x@example.com").is_none());

    let health = running.index.health();
    assert_eq!(health.skipped_total, 4);
    let skipped_ids: Vec<&str> = health.recent_skipped.iter().map(|skipped| skipped.id.as_str()).collect();
    assert_eq!(skipped_ids, ["gadget:x", "mailbox:bob@example.com", "mailbox:Eve@Example.com", "alias:x@example.com"]);
    let bob_reason = &health.recent_skipped[1].reason;
    assert!(bob_reason.contains("active"), "the reason names the field: {bob_reason}");
    assert_eq!(health.recent_skipped[1].rev, bad_bob);
    let invalid_ids: Vec<&str> = snapshot.invalid_documents().map(|skipped| skipped.id.as_str()).collect();
    assert_eq!(invalid_ids.len(), 4);

    // A valid revision clears the record; a tombstone removes the document.
    let bob_fixed =
        put_raw(&*store, "mailbox:bob@example.com", Some(&bad_bob), json!({ "type": "mailbox", "active": false }))
            .await;
    let snapshot =
        running.index.wait_until(|snapshot| snapshot.counts().invalid_documents == 3, PATIENCE).await.unwrap();
    assert!(snapshot.active_mailbox("bob@example.com").is_none(), "the fixed revision (inactive) applies");
    store.delete("mailbox:bob@example.com", &bob_fixed).await.unwrap();
    let snapshot =
        running.index.wait_until(|snapshot| snapshot.mailbox("bob@example.com").is_none(), PATIENCE).await.unwrap();
    assert_eq!(snapshot.sender_logins("info@example.com"), strings(&["alice@example.com"]));
    assert_eq!(running.index.health().skipped_total, 4);
    running.stop().await;
}

/// A store that hands every call to another and, on each read of the
/// changes feed, notes what the index showed at that moment: everything
/// the follower published before asking for the next batch.
struct Observed {
    inner: Arc<dyn Store>,
    index: Mutex<Option<Arc<Index>>>,
    seen: Mutex<Vec<(bool, usize)>>,
}

#[async_trait]
impl Store for Observed {
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
        let index = self.index.lock().unwrap().clone();
        if let Some(index) = index {
            let snapshot = index.snapshot();
            self.seen.lock().unwrap().push((snapshot.is_ready(), snapshot.counts().mailboxes));
        }
        self.inner.changes(since, limit, wait).await
    }
    fn describe(&self) -> String {
        format!("observed {}", self.inner.describe())
    }
}

#[tokio::test]
async fn readiness_flips_only_after_the_first_drain() {
    for n_mailboxes in [35, 30] {
        let temp = TempStore::new().await;
        put(&*temp.store, &domain("example.com")).await;
        for mailbox_idx in 1..n_mailboxes {
            put(&*temp.store, &mailbox(&format!("user{mailbox_idx}@example.com"))).await;
        }
        let observed =
            Arc::new(Observed { inner: temp.store.clone(), index: Mutex::new(None), seen: Mutex::new(Vec::new()) });
        let config = FollowConfig { batch_size: 10, ..quick_config() };
        let running = Running::start(observed.clone(), config);
        *observed.index.lock().unwrap() = Some(Arc::clone(&running.index));
        let snapshot = running.ready().await;
        assert_eq!(snapshot.counts().mailboxes, n_mailboxes - 1);
        running.stop().await;

        // Each batch of ten was published on its own, not ready, before the next read.
        let seen = observed.seen.lock().unwrap().clone();
        let before_ready: Vec<(bool, usize)> = seen.iter().copied().take_while(|(ready, _)| !ready).collect();
        // 35 documents: 10, 10, 10, then a short batch of 5 drains the feed;
        // 30 documents: three full batches, then an empty one drains it.
        let expected = [(false, 0), (false, 9), (false, 19), (false, 29)];
        assert_eq!(before_ready, expected, "{n_mailboxes} documents");
        assert!(seen.iter().skip(before_ready.len()).all(|(ready, count)| *ready && *count == n_mailboxes - 1));
    }
}

/// A store whose changes feed fails while `failures_left` is above zero.
struct Flaky {
    inner: Arc<dyn Store>,
    failures_left: AtomicUsize,
}

#[async_trait]
impl Store for Flaky {
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
        let failing =
            self.failures_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1)).is_ok();
        if failing {
            return Err(Error::new(ErrorKind::Unavailable, "the store is down for this test"));
        }
        self.inner.changes(since, limit, wait).await
    }
    fn describe(&self) -> String {
        format!("flaky {}", self.inner.describe())
    }
}

#[tokio::test]
async fn the_follower_survives_store_errors() {
    let temp = TempStore::new().await;
    for document in world() {
        put(&*temp.store, &document).await;
    }
    let flaky = Arc::new(Flaky { inner: temp.store.clone(), failures_left: AtomicUsize::new(4) });
    // A short long-poll, so that a failure after readiness is met soon.
    let config = FollowConfig { poll_wait: Duration::from_millis(50), ..quick_config() };
    let running = Running::start(flaky.clone(), config);
    assert!(!running.index.is_ready(), "not ready while the store fails");
    let snapshot = running.ready().await;
    assert_eq!(snapshot.counts().mailboxes, 3);
    let health = running.index.health();
    assert_eq!(health.store_errors_total, 4);
    assert_eq!(health.last_store_error, None, "a successful read clears the last error");

    // The store fails again: the last snapshot keeps being served.
    flaky.failures_left.store(6, Ordering::SeqCst);
    let waited = Instant::now();
    while flaky.failures_left.load(Ordering::SeqCst) > 3 {
        assert!(waited.elapsed() < PATIENCE, "the follower keeps retrying");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(running.index.is_ready());
    assert!(running.index.health().last_store_error.is_some_and(|error| error.contains("down")));
    assert!(running.index.snapshot().active_mailbox("alice@example.com").is_some());

    // Writes made meanwhile arrive once the store is back.
    put(&*temp.store, &mailbox("dan@example.com")).await;
    let snapshot = running
        .index
        .wait_until(|snapshot| snapshot.mailbox("dan@example.com").is_some(), PATIENCE)
        .await
        .expect("the follower recovers");
    assert!(snapshot.is_ready());
    assert_eq!(running.index.health().store_errors_total, 10);
    running.stop().await;
}

#[tokio::test]
async fn a_new_follower_rebuilds_the_same_state() {
    let temp = TempStore::new().await;
    let store: Arc<dyn Store> = temp.store.clone();
    for document in world() {
        put(&*store, &document).await;
    }
    let alice = store.get("alias:info@example.com").await.unwrap().unwrap();
    store.delete("alias:info@example.com", &alice.rev).await.unwrap();

    let first = Running::start(Arc::clone(&store), quick_config());
    let first_snapshot = first.ready().await;
    first.stop().await;
    let second = Running::start(Arc::clone(&store), FollowConfig { batch_size: 3, ..quick_config() });
    let second_snapshot = second.ready().await;
    assert_eq!(first_snapshot.counts(), second_snapshot.counts());
    assert_eq!(second_snapshot.last_seq(), first_snapshot.last_seq());
    assert!(second_snapshot.alias("info@example.com").is_none(), "the tombstone is honoured");
    assert_eq!(
        second_snapshot.virtual_alias("info@example.com"),
        Some(strings(&["alice@example.com"])),
        "the catch-all"
    );
    second.stop().await;
}

#[tokio::test]
async fn the_follower_stops_during_a_long_poll() {
    let temp = TempStore::new().await;
    let running = Running::start(temp.store.clone(), FollowConfig::default());
    let snapshot = running.ready().await;
    assert_eq!(snapshot.counts(), Default::default(), "an empty store is ready at once");
    // The default long-poll waits 30 s; stopping must not wait for it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    running.stop().await;
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn the_follower_tells_which_documents_each_batch_changed() {
    let temp = TempStore::new().await;
    let store: Arc<dyn Store> = temp.store.clone();
    for document in world() {
        put(&*store, &document).await;
    }
    let running = Running::start(Arc::clone(&store), quick_config());
    let mut changes = running.index.subscribe_changes();
    running.ready().await;

    let bob_rev = store.get("mailbox:bob@example.com").await.unwrap().unwrap().rev;
    put_raw(&*store, "mailbox:bob@example.com", Some(&bob_rev), json!({ "type": "mailbox", "active": false })).await;
    // An invalid revision changes nothing, so it is not reported.
    put_raw(&*store, "gadget:x", None, json!({ "type": "gadget" })).await;
    let alias_rev = store.get("alias:info@example.com").await.unwrap().unwrap().rev;
    store.delete("alias:info@example.com", &alias_rev).await.unwrap();
    put(&*store, &domain("example.biz")).await;

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let batch = tokio::time::timeout(PATIENCE, changes.recv()).await.expect("a batch arrives").unwrap();
        seen.extend(batch.iter().cloned());
    }
    // The building batches were not sent: only what changed after the index was ready.
    assert_eq!(seen, strings(&["mailbox:bob@example.com", "alias:info@example.com", "domain:example.biz"]));
    assert!(running.index.snapshot().domain("example.biz").is_some(), "sent after the snapshot is published");
    running.stop().await;
}

/// One read of the changes feed, as [`Watched`] saw it.
#[derive(Debug, Clone)]
struct FeedRead {
    /// The sequence asked for.
    since: Option<Seq>,
    /// Whether the index was ready at that moment.
    ready: bool,
    /// When it was asked.
    at: Instant,
    /// Whether it failed.
    failed: bool,
}

/// A store that hands every call to another under the identity it is given (the inner
/// store's by default, so that checkpoints match), notes each read of the changes feed,
/// fails those reads while `down` (as an unreachable CouchDB does), and refuses to read
/// after `refused_since` (as CouchDB refuses a sequence it does not know).
struct Watched {
    inner: Arc<dyn Store>,
    identity: String,
    index: Arc<Index>,
    down: std::sync::atomic::AtomicBool,
    refused_since: Mutex<Option<Seq>>,
    reads: Mutex<Vec<FeedRead>>,
}

impl Watched {
    fn new(inner: Arc<dyn Store>, index: &Arc<Index>) -> Arc<Watched> {
        let identity = inner.describe();
        Watched::with_identity(inner, index, identity)
    }

    fn with_identity(inner: Arc<dyn Store>, index: &Arc<Index>, identity: String) -> Arc<Watched> {
        Arc::new(Watched {
            inner,
            identity,
            index: Arc::clone(index),
            down: std::sync::atomic::AtomicBool::new(false),
            refused_since: Mutex::new(None),
            reads: Mutex::new(Vec::new()),
        })
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn reads(&self) -> Vec<FeedRead> {
        self.reads.lock().unwrap().clone()
    }
}

#[async_trait]
impl Store for Watched {
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
        let down = self.down.load(Ordering::SeqCst);
        let refused = since.is_some() && self.refused_since.lock().unwrap().as_ref() == since;
        self.reads.lock().unwrap().push(FeedRead {
            since: since.cloned(),
            ready: self.index.is_ready(),
            at: Instant::now(),
            failed: down || refused,
        });
        if down {
            return Err(Error::new(ErrorKind::Unavailable, "the store is down for this test"));
        }
        if refused {
            return Err(Error::new(ErrorKind::BadRequest, format!("unknown sequence {since:?}")));
        }
        self.inner.changes(since, limit, wait).await
    }
    fn describe(&self) -> String {
        self.identity.clone()
    }
}
