//! The follower: reads the store's changes feed and publishes snapshots.
//!
//! From the beginning of the feed (or from where the index already is), it
//! reads batches, applies each whole batch to a copy of the current snapshot
//! and publishes it at once, so a reader sees a batch entirely or not at all.
//! The first short batch means the feed is drained: the index is ready, and
//! from then on the follower long-polls.
//! Store failures are logged and retried with exponential backoff while the
//! last snapshot keeps being served.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use couchmail_store::Store;

use crate::Index;
use crate::snapshot::Applied;

/// How the follower reads the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowConfig {
    /// Changes read, applied and published at once.
    ///
    /// The default, 1000, builds as fast as 10 000 (measured in release) and
    /// keeps memory lower: the store parses each batch on whichever blocking
    /// thread runs the query, and glibc keeps each such thread's freed
    /// memory in its own arena, so resident memory grows by up to a batch's
    /// JSON per arena (100 k mailboxes, debug build: 1130 bytes per entry at
    /// 10 000, 410 at 1000, measured with `examples/index_bench.rs`).
    pub batch_size: usize,
    /// How long one read waits for a change once the feed is drained.
    pub poll_wait: Duration,
    /// The first delay after a failed read.
    pub retry_min: Duration,
    /// The longest delay between failed reads.
    pub retry_max: Duration,
}

impl Default for FollowConfig {
    fn default() -> FollowConfig {
        FollowConfig {
            batch_size: 1000,
            poll_wait: Duration::from_secs(30),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
        }
    }
}

/// Follows `store`'s changes feed into `index` until `shutdown` completes,
/// with the default [`FollowConfig`].
pub async fn follow(store: Arc<dyn Store>, index: Arc<Index>, shutdown: impl Future<Output = ()>) {
    follow_with(FollowConfig::default(), store, index, shutdown).await;
}

/// Follows `store`'s changes feed into `index` until `shutdown` completes.
///
/// It starts from the index's last applied sequence, so a follower started
/// again on the same index carries on where the previous one stopped.
pub async fn follow_with(
    config: FollowConfig,
    store: Arc<dyn Store>,
    index: Arc<Index>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let batch_size = config.batch_size.max(1);
    let mut retry_delay = config.retry_min;
    let started = Instant::now();
    tracing::info!(store = store.describe(), "following the changes feed");
    loop {
        let current = index.snapshot();
        // Until the feed is drained, read as fast as it gives; then long-poll.
        let wait = if current.is_ready() { config.poll_wait } else { Duration::ZERO };
        let read = tokio::select! {
            biased;
            () = &mut shutdown => break,
            read = store.changes(current.last_seq(), batch_size, wait) => read,
        };
        let batch = match read {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(
                    store = store.describe(),
                    %error,
                    retry_in_ms = retry_delay.as_millis() as u64,
                    "cannot read the changes feed; still serving the last snapshot"
                );
                index.record_store_error(error.to_string());
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(retry_delay) => {}
                }
                retry_delay = (retry_delay * 2).min(config.retry_max);
                continue;
            }
        };
        retry_delay = config.retry_min;
        index.clear_store_error();

        let drained = batch.changes.len() < batch_size;
        let becomes_ready = drained && !current.is_ready();
        if batch.changes.is_empty() && !becomes_ready {
            // A long-poll that timed out: nothing to publish.
            continue;
        }
        let mut next = (*current).clone();
        let mut changed_ids = Vec::with_capacity(batch.changes.len());
        for change in &batch.changes {
            match next.apply_change(change) {
                Applied::Upserted | Applied::Removed => changed_ids.push(change.id.clone()),
                Applied::Skipped(skipped) => {
                    tracing::warn!(
                        id = skipped.id,
                        rev = %skipped.rev,
                        seq = %skipped.seq,
                        reason = skipped.reason,
                        "skipping an invalid document; its last valid version, if any, stays in the index"
                    );
                    index.record_skipped(skipped);
                }
            }
        }
        let last_seq = batch.last_seq.or_else(|| current.last_seq().cloned());
        next.set_progress(last_seq, current.is_ready() || drained);
        if becomes_ready {
            let counts = next.counts();
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                domains = counts.domains,
                mailboxes = counts.mailboxes,
                aliases = counts.aliases,
                invalid = counts.invalid_documents,
                "index ready"
            );
        }
        if current.is_ready() {
            index.publish_changes(next, changed_ids);
        } else {
            // The batches that build the index are the whole store, not changes to it.
            index.publish(next);
        }
    }
    tracing::info!("stopped following the changes feed");
}
