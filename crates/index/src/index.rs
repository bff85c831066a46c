//! The shared handle: the current snapshot, readiness, and change notification.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use couchmail_store::Seq;
use tokio::sync::{broadcast, watch};

use crate::{Counts, SkippedDocument, Snapshot};

/// How many skipped documents [`Health::recent_skipped`] keeps.
pub const RECENT_SKIPPED_CAPACITY: usize = 64;

/// How many batches of changed ids [`Index::subscribe_changes`] holds for
/// a receiver that has not read them yet; older ones are lost to it.
pub const CHANGES_CAPACITY: usize = 256;

/// The index shared by every server: share it as `Arc<Index>`.
///
/// Readers call [`Index::snapshot`], which never blocks and never waits on
/// the store, and answer a temporary failure while
/// [`Snapshot::is_ready`] is false. The follower ([`follow`](crate::follow))
/// is the only writer.
pub struct Index {
    current: ArcSwap<Snapshot>,
    published: watch::Sender<Option<Seq>>,
    changes: broadcast::Sender<Arc<[String]>>,
    log: Mutex<FollowerLog>,
}

/// The state of the index and its follower, for health checks and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Whether the feed has been drained once (the daemons answer until then with TEMP).
    pub ready: bool,
    /// The last sequence applied.
    pub last_seq: Option<Seq>,
    /// How many snapshots have been published.
    pub generation: u64,
    /// Entries in the current snapshot.
    pub counts: Counts,
    /// Invalid document revisions skipped since start.
    pub skipped_total: u64,
    /// The latest skipped revisions, oldest first, at most [`RECENT_SKIPPED_CAPACITY`].
    pub recent_skipped: Vec<SkippedDocument>,
    /// Failed reads of the changes feed since start.
    pub store_errors_total: u64,
    /// The error of the last read, when it failed (cleared by the next success).
    pub last_store_error: Option<String>,
    /// The sequence of the last checkpoint saved, or of the one the index resumed from;
    /// `None` while there is none (or checkpoints are off).
    pub checkpoint_seq: Option<Seq>,
    /// Why the last save of a checkpoint failed (cleared by the next success).
    pub checkpoint_error: Option<String>,
}

#[derive(Default)]
struct FollowerLog {
    skipped_total: u64,
    recent_skipped: VecDeque<SkippedDocument>,
    store_errors_total: u64,
    last_store_error: Option<String>,
    checkpoint_seq: Option<Seq>,
    checkpoint_error: Option<String>,
}

impl Default for Index {
    /// An index that is not ready: an empty snapshot until the follower fills it.
    fn default() -> Index {
        Index::from_snapshot(Snapshot::default())
    }
}

impl Index {
    /// An index serving `snapshot`, for tests of servers that need no store
    /// (use [`Snapshot::from_documents`] for a ready one).
    pub fn from_snapshot(snapshot: Snapshot) -> Index {
        let last_seq = snapshot.last_seq().cloned();
        Index {
            current: ArcSwap::from_pointee(snapshot),
            published: watch::Sender::new(last_seq),
            changes: broadcast::Sender::new(CHANGES_CAPACITY),
            log: Mutex::new(FollowerLog::default()),
        }
    }

    /// The current snapshot. Lock-free; hold it for one request, not longer,
    /// so that old snapshots are freed.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Whether the current snapshot is ready (see [`Snapshot::is_ready`]).
    pub fn is_ready(&self) -> bool {
        self.current.load().is_ready()
    }

    /// The last sequence of the feed applied.
    pub fn last_seq(&self) -> Option<Seq> {
        self.current.load().last_seq().cloned()
    }

    /// A receiver that is notified each time a snapshot is published, with
    /// the sequence it reached (also when only readiness changed).
    pub fn subscribe(&self) -> watch::Receiver<Option<Seq>> {
        self.published.subscribe()
    }

    /// Waits until `predicate` holds for the current snapshot, and returns
    /// that snapshot; `None` if `timeout` passes first.
    pub async fn wait_until(&self, predicate: impl Fn(&Snapshot) -> bool, timeout: Duration) -> Option<Arc<Snapshot>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut published = self.subscribe();
        loop {
            // Marking the value seen before loading means a snapshot
            // published after the load always wakes the wait below.
            published.borrow_and_update();
            let snapshot = self.snapshot();
            if predicate(&snapshot) {
                return Some(snapshot);
            }
            match tokio::time::timeout_at(deadline, published.changed()).await {
                Ok(Ok(())) => continue,
                // The sender lives as long as `self`, so it cannot be closed here.
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// Replaces the current snapshot with `snapshot` and notifies subscribers.
    /// This is the follower's job; it is public so that tests of servers can
    /// drive an index without a store.
    pub fn publish(&self, mut snapshot: Snapshot) {
        snapshot.set_generation(self.current.load().generation() + 1);
        let last_seq = snapshot.last_seq().cloned();
        self.current.store(Arc::new(snapshot));
        self.published.send_replace(last_seq);
    }

    /// A receiver of the `_id`s of the documents each published batch
    /// changed (inserted, replaced or deleted; invalid revisions, which
    /// change nothing, are left out), sent just after the snapshot that
    /// holds them is published. Batches that change nothing are not sent.
    ///
    /// Batches applied while the index is being built (until it is first
    /// ready) are the whole store rather than changes, and are not sent: a
    /// cache that may hold answers from before then (from an earlier
    /// couchmail, say) should be flushed whole once the index is ready.
    ///
    /// This is how caches outside the index, such as Dovecot's auth cache,
    /// learn what to forget. A receiver that falls more than
    /// [`CHANGES_CAPACITY`] batches behind loses the oldest ones: its next
    /// `recv` returns [`broadcast::error::RecvError::Lagged`], and the
    /// caller should then flush everything it caches.
    pub fn subscribe_changes(&self) -> broadcast::Receiver<Arc<[String]>> {
        self.changes.subscribe()
    }

    /// Publishes `snapshot` as [`Index::publish`] does, then tells
    /// [`Index::subscribe_changes`] receivers which documents it changed.
    /// The follower calls this; tests of servers may too.
    pub fn publish_changes(&self, snapshot: Snapshot, changed_ids: Vec<String>) {
        self.publish(snapshot);
        if !changed_ids.is_empty() {
            // No receiver is not an error: nobody caches anything then.
            let _ = self.changes.send(Arc::from(changed_ids));
        }
    }

    /// The state of the index and its follower.
    pub fn health(&self) -> Health {
        let snapshot = self.snapshot();
        let log = self.log();
        Health {
            ready: snapshot.is_ready(),
            last_seq: snapshot.last_seq().cloned(),
            generation: snapshot.generation(),
            counts: snapshot.counts(),
            skipped_total: log.skipped_total,
            recent_skipped: log.recent_skipped.iter().cloned().collect(),
            store_errors_total: log.store_errors_total,
            last_store_error: log.last_store_error.clone(),
            checkpoint_seq: log.checkpoint_seq.clone(),
            checkpoint_error: log.checkpoint_error.clone(),
        }
    }

    pub(crate) fn record_skipped(&self, skipped: SkippedDocument) {
        let mut log = self.log();
        log.skipped_total += 1;
        if log.recent_skipped.len() >= RECENT_SKIPPED_CAPACITY {
            log.recent_skipped.pop_front();
        }
        log.recent_skipped.push_back(skipped);
    }

    pub(crate) fn record_store_error(&self, error: String) {
        let mut log = self.log();
        log.store_errors_total += 1;
        log.last_store_error = Some(error);
    }

    pub(crate) fn clear_store_error(&self) {
        self.log().last_store_error = None;
    }

    /// Notes a checkpoint saved or resumed from (`Ok`, with its sequence), or a failed save.
    pub(crate) fn record_checkpoint(&self, res: Result<Option<Seq>, String>) {
        let mut log = self.log();
        match res {
            Ok(seq) => {
                log.checkpoint_seq = seq;
                log.checkpoint_error = None;
            }
            Err(error) => log.checkpoint_error = Some(error),
        }
    }

    fn log(&self) -> MutexGuard<'_, FollowerLog> {
        // The log holds counters only: a panic while it was held leaves
        // nothing inconsistent that matters, so a poisoned lock is taken as is.
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use super::*;
    use couchmail_model::{Document, Domain};

    fn domain(name: &str) -> Document {
        Document::Domain(Domain {
            name: name.parse().unwrap(),
            active: true,
            quota_default: None,
            max_mailboxes: None,
            policy: Default::default(),
        })
    }

    #[test]
    fn a_new_index_is_not_ready() {
        let index = Index::default();
        assert!(!index.is_ready());
        assert_eq!(index.last_seq(), None);
        assert_eq!(index.health().counts, Counts::default());
    }

    #[tokio::test]
    async fn wait_until_sees_a_later_publication() {
        let index = Arc::new(Index::default());
        let publisher = Arc::clone(&index);
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            publisher.publish(Snapshot::from_documents([domain("example.com")]));
        });
        let snapshot = index.wait_until(|snapshot| snapshot.domain("example.com").is_some(), Duration::from_secs(5));
        let snapshot = snapshot.await.expect("the publication is seen");
        assert!(snapshot.is_ready());
        assert_eq!(snapshot.generation(), 1);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn wait_until_gives_up_after_the_timeout() {
        let index = Index::default();
        let started = std::time::Instant::now();
        let res = index.wait_until(Snapshot::is_ready, Duration::from_millis(50)).await;
        assert!(res.is_none());
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn changed_ids_reach_subscribers_after_the_snapshot() {
        let index = Index::default();
        let mut changes = index.subscribe_changes();
        index.publish_changes(Snapshot::from_documents([domain("example.com")]), vec!["domain:example.com".to_owned()]);
        let batch = changes.try_recv().unwrap();
        assert_eq!(&*batch, ["domain:example.com".to_owned()]);
        assert!(index.snapshot().domain("example.com").is_some(), "the snapshot is published first");

        // A batch that changed nothing is not sent; a plain publish sends nothing.
        index.publish_changes(Snapshot::from_documents([domain("example.com")]), Vec::new());
        index.publish(Snapshot::default());
        assert_eq!(changes.try_recv(), Err(broadcast::error::TryRecvError::Empty));
    }

    #[test]
    fn a_lagging_change_subscriber_is_told_so() {
        let index = Index::default();
        let mut changes = index.subscribe_changes();
        for batch_idx in 0..CHANGES_CAPACITY + 3 {
            index.publish_changes(Snapshot::default(), vec![format!("mailbox:u{batch_idx}@example.com")]);
        }
        assert_eq!(changes.try_recv(), Err(broadcast::error::TryRecvError::Lagged(3)));
        let oldest_kept = changes.try_recv().unwrap();
        assert_eq!(&*oldest_kept, ["mailbox:u3@example.com".to_owned()]);
    }

    #[test]
    fn the_skipped_log_is_bounded() {
        let index = Index::default();
        for doc_idx in 0..RECENT_SKIPPED_CAPACITY + 10 {
            index.record_skipped(SkippedDocument {
                id: format!("mailbox:{doc_idx}"),
                rev: couchmail_store::Rev("1-a".to_owned()),
                seq: Seq(doc_idx.to_string()),
                reason: "bad".to_owned(),
            });
        }
        let health = index.health();
        assert_eq!(health.skipped_total, (RECENT_SKIPPED_CAPACITY + 10) as u64);
        assert_eq!(health.recent_skipped.len(), RECENT_SKIPPED_CAPACITY);
        assert_eq!(health.recent_skipped[0].id, "mailbox:10");
    }
}
