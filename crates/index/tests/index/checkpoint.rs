//! The checkpoint (issue #4, "resume from a persisted last sequence"): saved once the index
//! is ready, after changes and at shutdown; a restart resumes the feed from it and ends in
//! the same index as a build from scratch; an unusable checkpoint is discarded and the
//! index rebuilt, never served.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use couchmail_index::CHECKPOINT_FILE_NAME;

use crate::*;

fn checkpointing(path: &Path, interval: Duration) -> FollowConfig {
    FollowConfig { checkpoint: Some(path.to_path_buf()), checkpoint_interval: interval, ..quick_config() }
}

/// Waits until the checkpoint saved is at the index's last sequence.
async fn saved(index: &Index) {
    let waited = Instant::now();
    loop {
        let health = index.health();
        if health.ready && health.checkpoint_seq.is_some() && health.checkpoint_seq == health.last_seq {
            return;
        }
        assert!(waited.elapsed() < PATIENCE, "no checkpoint saved at the last sequence: {health:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A world with a bit of everything the index keeps: a token, an invalid document, and a
/// script edited once (so that it remembers its previous content).
async fn rich_world(store: &dyn Store) {
    for document in world() {
        put(store, &document).await;
    }
    let (token, _bearer) = Token::generate(TokenPrincipal::Admin, "test".to_owned(), 1);
    put(store, &Document::Token(token)).await;
    put_raw(store, "gadget:x", None, json!({ "type": "gadget" })).await;
    let script = store.get("sieve:alice@example.com:main").await.unwrap().unwrap();
    put_raw(store, &script.id, Some(&script.rev), json!({ "type": "sieve", "script": "discard;\n" })).await;
}

/// What lookups answer from `snapshot`, for comparing two indexes of one store.
fn answers(snapshot: &Snapshot) -> Vec<String> {
    let mut answers = vec![format!("{:?} {:?}", snapshot.counts(), snapshot.last_seq())];
    for key in [
        "alice@example.com",
        "bob@example.com",
        "dan@example.com",
        "info@example.com",
        "loop1@example.com",
        "nobody@example.com",
        "who@example.net",
        "erin@example.info",
    ] {
        answers.push(format!(
            "{key}: {:?} {:?} {:?} {:?}",
            snapshot.active_mailbox(key),
            snapshot.virtual_alias(key),
            snapshot.sender_logins(key),
            snapshot.active_sieve(key)
        ));
    }
    let mut tokens: Vec<String> = snapshot.mailboxes().map(|mailbox| format!("{mailbox:?}")).collect();
    tokens.sort();
    answers.extend(tokens);
    answers.extend(snapshot.invalid_documents().map(|skipped| format!("{skipped:?}")));
    let script = snapshot.sieve("alice@example.com", "main").map(|script| {
        let previous = script.previous_content_id().map(|id| snapshot.sieve_by_id("alice@example.com", id));
        format!("{script:?} {previous:?}")
    });
    answers.push(format!("{script:?}"));
    answers
}

/// The index a follower without a checkpoint builds from `store`.
async fn built_from_scratch(store: Arc<dyn Store>) -> Arc<Snapshot> {
    let running = Running::start(store, quick_config());
    let snapshot = running.ready().await;
    running.stop().await;
    snapshot
}

fn checkpoint_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join(CHECKPOINT_FILE_NAME)
}

#[tokio::test]
async fn a_restart_resumes_from_the_checkpoint() {
    let temp = TempStore::new().await;
    rich_world(&*temp.store).await;
    let dir = tempfile::tempdir().unwrap();
    let path = checkpoint_path(&dir);
    let config = checkpointing(&path, Duration::from_millis(20));

    let first = Running::start(temp.store.clone(), config.clone());
    first.ready().await;
    saved(&first.index).await;
    let saved_seq = first.index.health().checkpoint_seq.unwrap();
    first.stop().await;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the checkpoint holds password hashes");

    // Changes while couchmail is down: an addition, a removal and an edit.
    put(&*temp.store, &mailbox("dan@example.com")).await;
    let info = temp.store.get("alias:info@example.com").await.unwrap().unwrap();
    temp.store.delete(&info.id, &info.rev).await.unwrap();
    let bob = temp.store.get("mailbox:bob@example.com").await.unwrap().unwrap();
    put_raw(&*temp.store, &bob.id, Some(&bob.rev), json!({ "type": "mailbox", "active": false })).await;

    let index = Arc::new(Index::default());
    let watched = Watched::new(temp.store.clone(), &index);
    let second = Running::start_on(Arc::clone(&index), watched.clone(), config);
    let resumed = second.ready().await;
    let reads = watched.reads();
    assert_eq!(reads[0].since.as_ref(), Some(&saved_seq), "the feed resumes from the checkpoint: {reads:?}");
    assert!(!reads[0].ready, "not ready before the feed is drained after resuming");
    assert!(resumed.active_mailbox("dan@example.com").is_some());
    assert!(resumed.alias("info@example.com").is_none());
    assert!(resumed.active_mailbox("bob@example.com").is_none());

    let scratch = built_from_scratch(temp.store.clone()).await;
    assert_eq!(answers(&resumed), answers(&scratch), "the same index as a build from scratch");
    // The catch-up changed the index, so it is saved again.
    saved(&index).await;
    assert_ne!(index.health().checkpoint_seq, Some(saved_seq));
    second.stop().await;
}

#[tokio::test]
async fn the_checkpoint_is_saved_when_ready_then_at_most_every_interval_and_at_shutdown() {
    let temp = TempStore::new().await;
    rich_world(&*temp.store).await;
    let dir = tempfile::tempdir().unwrap();
    let path = checkpoint_path(&dir);

    // An interval of an hour: saved once ready, then not again until shutdown.
    let running = Running::start(temp.store.clone(), checkpointing(&path, Duration::from_secs(3600)));
    running.ready().await;
    saved(&running.index).await;
    let first_seq = running.index.health().checkpoint_seq;
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    put(&*temp.store, &mailbox("dan@example.com")).await;
    running.index.wait_until(|snapshot| snapshot.mailbox("dan@example.com").is_some(), PATIENCE).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(running.index.health().checkpoint_seq, first_seq, "not saved before the interval");
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), modified);
    let index = Arc::clone(&running.index);
    running.stop().await;
    let health = index.health();
    assert_eq!(health.checkpoint_seq, health.last_seq, "saved at shutdown");
    assert_ne!(health.checkpoint_seq, first_seq);

    // A short interval: a change is saved soon, during the long-poll that follows it.
    let running = Running::start(temp.store.clone(), checkpointing(&path, Duration::from_millis(50)));
    running.ready().await;
    saved(&running.index).await;
    put(&*temp.store, &mailbox("erin2@example.org")).await;
    running.index.wait_until(|snapshot| snapshot.mailbox("erin2@example.org").is_some(), PATIENCE).await.unwrap();
    saved(&running.index).await;
    assert_eq!(running.index.health().checkpoint_error, None);
    running.stop().await;
}

/// Changes a checkpoint file's bytes.
type Damage = fn(Vec<u8>) -> Vec<u8>;

#[tokio::test]
async fn an_unusable_checkpoint_is_discarded_and_the_index_rebuilt() {
    let temp = TempStore::new().await;
    rich_world(&*temp.store).await;
    let scratch = built_from_scratch(temp.store.clone()).await;
    let damages: [(&str, Damage); 4] = [
        ("garbage", |_| b"not a checkpoint\n".to_vec()),
        ("truncated", |bytes| bytes[..bytes.len() / 2].to_vec()),
        ("edited", |bytes| {
            String::from_utf8(bytes).unwrap().replace("bob@example.com", "bib@example.com").into_bytes()
        }),
        ("unreadable", |_| Vec::new()),
    ];
    for (what, damage) in damages {
        let dir = tempfile::tempdir().unwrap();
        let path = checkpoint_path(&dir);
        let config = checkpointing(&path, Duration::from_millis(20));
        let first = Running::start(temp.store.clone(), config.clone());
        saved(&first.index).await;
        first.stop().await;
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, damage(bytes)).unwrap();
        if what == "unreadable" {
            // A directory where the file should be cannot be read as one.
            std::fs::remove_file(&path).unwrap();
            std::fs::create_dir(&path).unwrap();
        }

        let index = Arc::new(Index::default());
        let watched = Watched::new(temp.store.clone(), &index);
        let running = Running::start_on(Arc::clone(&index), watched.clone(), config);
        let rebuilt = running.ready().await;
        assert_eq!(watched.reads()[0].since, None, "{what}: built from the beginning");
        assert_eq!(answers(&rebuilt), answers(&scratch), "{what}");
        if what != "unreadable" {
            // The damaged file was removed, and a good one saved in its place.
            saved(&index).await;
        }
        running.stop().await;
    }
}

#[tokio::test]
async fn a_checkpoint_of_another_store_is_not_used() {
    let (site_a, site_b) = (TempStore::new().await, TempStore::new().await);
    rich_world(&*site_a.store).await;
    put(&*site_b.store, &domain("example.com")).await;
    put(&*site_b.store, &mailbox("zoe@example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let path = checkpoint_path(&dir);
    let config = checkpointing(&path, Duration::from_millis(20));
    let first = Running::start(site_a.store.clone(), config.clone());
    saved(&first.index).await;
    first.stop().await;

    let index = Arc::new(Index::default());
    let watched = Watched::new(site_b.store.clone(), &index);
    let running = Running::start_on(Arc::clone(&index), watched.clone(), config);
    let snapshot = running.ready().await;
    assert_eq!(watched.reads()[0].since, None);
    assert!(snapshot.mailbox("alice@example.com").is_none(), "nothing of the other store is served");
    assert_eq!(snapshot.counts().mailboxes, 1);
    saved(&index).await;
    running.stop().await;
}

#[tokio::test]
async fn a_checkpoint_whose_sequence_the_store_refuses_is_discarded() {
    // Site A's CouchDB database was replaced by site B's under the same URL: the identity
    // matches, but the store does not know the checkpoint's sequence.
    let (site_a, site_b) = (TempStore::new().await, TempStore::new().await);
    rich_world(&*site_a.store).await;
    put(&*site_b.store, &domain("example.com")).await;
    put(&*site_b.store, &mailbox("zoe@example.com")).await;
    let dir = tempfile::tempdir().unwrap();
    let path = checkpoint_path(&dir);
    let config = checkpointing(&path, Duration::from_millis(20));
    let identity = "couchdb:http://127.0.0.1:5984/couchmail".to_owned();

    let first_index = Arc::new(Index::default());
    let first_store = Watched::with_identity(site_a.store.clone(), &first_index, identity.clone());
    let first = Running::start_on(Arc::clone(&first_index), first_store, config.clone());
    saved(&first_index).await;
    let saved_seq = first_index.health().checkpoint_seq.unwrap();
    first.stop().await;

    let index = Arc::new(Index::default());
    let watched = Watched::with_identity(site_b.store.clone(), &index, identity);
    *watched.refused_since.lock().unwrap() = Some(saved_seq.clone());
    let running = Running::start_on(Arc::clone(&index), watched.clone(), config);
    let snapshot = running.ready().await;
    let reads = watched.reads();
    assert_eq!(reads[0].since, Some(saved_seq), "{reads:?}");
    assert!(reads[0].failed);
    assert_eq!(reads[1].since, None, "rebuilt from the beginning, without waiting: {reads:?}");
    assert!(!reads[1].ready);
    assert!(snapshot.mailbox("alice@example.com").is_none(), "nothing of the checkpoint is served");
    assert!(snapshot.active_mailbox("zoe@example.com").is_some());
    assert_eq!(snapshot.counts().mailboxes, 1);
    assert_eq!(index.health().store_errors_total, 0, "a refused checkpoint is not a store failure");
    saved(&index).await;
    running.stop().await;
}

#[tokio::test]
async fn a_checkpoint_that_cannot_be_saved_is_reported_and_serving_goes_on() {
    let temp = TempStore::new().await;
    rich_world(&*temp.store).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-directory").join(CHECKPOINT_FILE_NAME);
    let running = Running::start(temp.store.clone(), checkpointing(&path, Duration::from_millis(20)));
    running.ready().await;
    let waited = Instant::now();
    while running.index.health().checkpoint_error.is_none() {
        assert!(waited.elapsed() < PATIENCE, "the failed save is reported");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let error = running.index.health().checkpoint_error.unwrap();
    assert!(error.contains("no-such-directory"), "{error}");
    put(&*temp.store, &mailbox("dan@example.com")).await;
    running.index.wait_until(|snapshot| snapshot.mailbox("dan@example.com").is_some(), PATIENCE).await.unwrap();
    running.stop().await;
}

#[tokio::test]
async fn a_follower_restarted_on_a_live_index_ignores_the_checkpoint() {
    let temp = TempStore::new().await;
    rich_world(&*temp.store).await;
    let dir = tempfile::tempdir().unwrap();
    let path = checkpoint_path(&dir);
    let config = checkpointing(&path, Duration::from_millis(20));
    let index = Arc::new(Index::default());
    let first = Running::start_on(Arc::clone(&index), temp.store.clone(), config.clone());
    saved(&index).await;
    first.stop().await;
    put(&*temp.store, &mailbox("dan@example.com")).await;
    // The checkpoint now lies about the index: were it loaded, dan would be caught up anyway,
    // so make it unusable and check that nothing is discarded or rebuilt.
    std::fs::write(&path, "not a checkpoint\n").unwrap();
    let generation = index.snapshot().generation();
    let watched = Watched::new(temp.store.clone(), &index);
    let second = Running::start_on(Arc::clone(&index), watched.clone(), config);
    index.wait_until(|snapshot| snapshot.mailbox("dan@example.com").is_some(), PATIENCE).await.unwrap();
    let reads = watched.reads();
    assert!(reads[0].since.is_some() && reads[0].ready, "carried on from the live index: {reads:?}");
    assert!(index.snapshot().generation() > generation);
    second.stop().await;
}
