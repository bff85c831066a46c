//! The store goes away and comes back (issue #4, "Store outage"): the follower retries
//! with exponential backoff between `retry_min` and `retry_max`, the last snapshot keeps
//! being served, `health()` shows the error, and the follower catches up afterwards.

use crate::*;

#[tokio::test]
async fn an_outage_is_retried_with_backoff_and_caught_up_after() {
    let temp = TempStore::new().await;
    for document in world() {
        put(&*temp.store, &document).await;
    }
    let index = Arc::new(Index::default());
    let watched = Watched::new(temp.store.clone(), &index);
    let retry_min = Duration::from_millis(20);
    let retry_max = Duration::from_millis(80);
    // A short long-poll, so that the outage is met soon after it starts.
    let config = FollowConfig { poll_wait: Duration::from_millis(50), retry_min, retry_max, ..quick_config() };
    let running = Running::start_on(Arc::clone(&index), watched.clone(), config);
    running.ready().await;

    watched.set_down(true);
    let outage_started = Instant::now();
    let n_failed = |reads: &[FeedRead]| reads.iter().filter(|read| read.failed).count();
    while n_failed(&watched.reads()) < 7 {
        assert!(outage_started.elapsed() < PATIENCE, "the follower keeps retrying");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Served all along, and the health check says why nothing new arrives.
    let health = index.health();
    assert!(health.ready);
    assert!(health.last_store_error.as_deref().is_some_and(|error| error.contains("down")), "{health:?}");
    assert!(health.store_errors_total >= 7);
    assert!(index.snapshot().active_mailbox("alice@example.com").is_some());
    assert_eq!(
        index.snapshot().virtual_alias("info@example.com"),
        Some(strings(&["alice@example.com", "bob@example.com"]))
    );

    // The delays between failed reads double from retry_min and stop growing at retry_max.
    let failed_at: Vec<Instant> = watched.reads().iter().filter(|read| read.failed).map(|read| read.at).collect();
    let gaps: Vec<Duration> = failed_at.windows(2).map(|pair| pair[1] - pair[0]).collect();
    let expected = [20, 40, 80, 80, 80, 80].map(Duration::from_millis);
    for (gap_idx, (gap, expected)) in gaps.iter().zip(expected).enumerate() {
        assert!(*gap >= expected, "gap {gap_idx} was {gap:?}, shorter than {expected:?}: {gaps:?}");
    }
    // Without the cap the sixth delay would be 640 ms; a slow machine adds far less.
    assert!(gaps[5] < Duration::from_millis(400), "the delay is capped at retry_max: {gaps:?}");

    // A write made during the outage arrives once the store is back, and the error clears.
    put(&*temp.store, &mailbox("dan@example.com")).await;
    watched.set_down(false);
    let snapshot = index
        .wait_until(|snapshot| snapshot.mailbox("dan@example.com").is_some(), PATIENCE)
        .await
        .expect("the follower catches up after the outage");
    assert!(snapshot.is_ready());
    assert_eq!(index.health().last_store_error, None);
    assert_eq!(snapshot.last_seq(), temp.store.changes(None, 1000, Duration::ZERO).await.unwrap().last_seq.as_ref());
    running.stop().await;
}

#[tokio::test]
async fn a_store_down_at_start_leaves_the_index_not_ready_until_it_answers() {
    let temp = TempStore::new().await;
    for document in world() {
        put(&*temp.store, &document).await;
    }
    let index = Arc::new(Index::default());
    let watched = Watched::new(temp.store.clone(), &index);
    watched.set_down(true);
    let running = Running::start_on(Arc::clone(&index), watched.clone(), quick_config());
    let waited = Instant::now();
    while watched.reads().len() < 3 {
        assert!(waited.elapsed() < PATIENCE, "the follower keeps retrying");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Nothing to serve yet: the daemons answer "try again later" rather than "no such user".
    assert!(!index.is_ready());
    assert!(index.health().last_store_error.is_some());
    watched.set_down(false);
    let snapshot = running.ready().await;
    assert_eq!(snapshot.counts().mailboxes, 3);
    running.stop().await;
}
