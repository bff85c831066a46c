//! The follower: reads the store's changes feed and publishes snapshots.
//!
//! From the beginning of the feed (or from where the index already is, or from a
//! checkpoint), it reads batches, applies each whole batch to a copy of the current
//! snapshot and publishes it at once, so a reader sees a batch entirely or not at all.
//! The first short batch means the feed is drained: the index is ready, and from then on
//! the follower long-polls.
//! Store failures are logged and retried with exponential backoff (from
//! [`FollowConfig::retry_min`], doubling up to [`FollowConfig::retry_max`]) while the last
//! snapshot keeps being served and [`Index::health`] shows the error.
//!
//! With [`FollowConfig::checkpoint`] set, the follower saves the ready snapshot to that file
//! (see the `checkpoint` module) once the index is ready, then at most every
//! [`FollowConfig::checkpoint_interval`] when something changed, and once more when it
//! stops; saves run on a blocking thread while the follower carries on. At start, a fresh
//! index is filled from the checkpoint and the feed resumed from its sequence; the index
//! becomes ready, as always, once the feed is drained. A checkpoint that cannot be used —
//! unreadable, damaged, written by another version or from another store, or at a sequence
//! the store refuses — is discarded with a warning and the index built from the beginning.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use couchmail_store::{ErrorKind, Seq, Store};
use tokio::task::JoinHandle;

use crate::checkpoint::{self, LoadError, Written};
use crate::snapshot::Applied;
use crate::{Index, Snapshot};

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
    /// Where to save the index and resume from at start: conventionally
    /// `<data_dir>/`[`CHECKPOINT_FILE_NAME`](crate::CHECKPOINT_FILE_NAME). `None` (the
    /// default) builds the index from the whole feed at every start.
    ///
    /// The file holds password hashes, as the store does: it is written with mode 0600,
    /// and its directory should be as private as the store's.
    pub checkpoint: Option<PathBuf>,
    /// The shortest time between two saves of the checkpoint while changes arrive
    /// (default 30 s); a quiet index is not saved again.
    pub checkpoint_interval: Duration,
}

impl Default for FollowConfig {
    fn default() -> FollowConfig {
        FollowConfig {
            batch_size: 1000,
            poll_wait: Duration::from_secs(30),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            checkpoint: None,
            checkpoint_interval: Duration::from_secs(30),
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
/// again on the same index carries on where the previous one stopped; a fresh index
/// (nothing applied yet) is first filled from [`FollowConfig::checkpoint`], when one is
/// set and usable.
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
    let mut checkpointer =
        config.checkpoint.clone().map(|path| Checkpointer::new(path, store.describe(), config.checkpoint_interval));
    // Whether the index holds a checkpoint the store has not yet accepted the sequence of.
    let mut resuming = match &mut checkpointer {
        Some(checkpointer) => checkpointer.resume(&index).await,
        None => false,
    };
    'follow: loop {
        let current = index.snapshot();
        // Until the feed is drained, read as fast as it gives; then long-poll.
        let wait = if current.is_ready() { config.poll_wait } else { Duration::ZERO };
        let since = current.last_seq().cloned();
        let mut read = std::pin::pin!(store.changes(since.as_ref(), batch_size, wait));
        // Wait for the read, saving checkpoints meanwhile: a long-poll can last
        // `poll_wait`, and a save that is due should not wait for the next change.
        let read = loop {
            let save_due = checkpointer.as_ref().and_then(|checkpointer| checkpointer.save_due(&current));
            let event = tokio::select! {
                biased;
                () = &mut shutdown => Event::Shutdown,
                read = &mut read => Event::Read(read),
                saved = saved(&mut checkpointer) => Event::Saved(saved),
                () = sleep_until(save_due) => Event::SaveDue,
            };
            match event {
                Event::Shutdown => break 'follow,
                Event::Read(read) => break read,
                Event::Saved(saved) => {
                    if let Some(checkpointer) = &mut checkpointer {
                        checkpointer.finish_save(saved, &index);
                    }
                }
                Event::SaveDue => {
                    if let Some(checkpointer) = &mut checkpointer {
                        checkpointer.start_save(Arc::clone(&current));
                    }
                }
            }
        };
        let batch = match read {
            Ok(batch) => batch,
            Err(error) if resuming && error.kind() == ErrorKind::BadRequest => {
                // The store does not know the checkpoint's sequence (a CouchDB database
                // recreated under the same name, say): nothing saved can be trusted.
                tracing::warn!(
                    store = store.describe(),
                    seq = ?since,
                    %error,
                    "the store refuses the checkpoint's sequence; discarding the checkpoint and building the index \
                     from the beginning"
                );
                resuming = false;
                index.publish(Snapshot::default());
                if let Some(checkpointer) = &mut checkpointer {
                    checkpointer.discard(&index).await;
                }
                continue;
            }
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
        resuming = false;
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
    if let Some(checkpointer) = checkpointer {
        checkpointer.save_at_shutdown(&index).await;
    }
    tracing::info!("stopped following the changes feed");
}

/// What woke the follower while it waited for a read.
enum Event<R> {
    Shutdown,
    Read(R),
    Saved(Result<Result<Written, String>, tokio::task::JoinError>),
    SaveDue,
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// The end of the save in progress; pending forever when there is none.
async fn saved(checkpointer: &mut Option<Checkpointer>) -> Result<Result<Written, String>, tokio::task::JoinError> {
    match checkpointer.as_mut().and_then(|checkpointer| checkpointer.saving.as_mut()) {
        Some(saving) => saving.await,
        None => std::future::pending().await,
    }
}

/// When and what to save, for a follower with a checkpoint file.
struct Checkpointer {
    path: PathBuf,
    store_identity: String,
    interval: Duration,
    /// The sequence of the checkpoint on disk (saved or resumed from).
    saved_seq: Option<Seq>,
    /// Whether there is a checkpoint on disk that matches the index at `saved_seq`.
    saved_any: bool,
    /// When the last save started.
    last_save: Option<Instant>,
    /// The save in progress, on a blocking thread.
    saving: Option<JoinHandle<Result<Written, String>>>,
}

impl Checkpointer {
    fn new(path: PathBuf, store_identity: String, interval: Duration) -> Checkpointer {
        Checkpointer {
            path,
            store_identity,
            interval,
            saved_seq: None,
            saved_any: false,
            last_save: None,
            saving: None,
        }
    }

    /// Fills a fresh `index` from the checkpoint, if there is a usable one; whether it did.
    async fn resume(&mut self, index: &Index) -> bool {
        if index.is_ready() || index.last_seq().is_some() {
            // This index already holds state (a follower ran on it before): carry on from there.
            return false;
        }
        let loading_started = Instant::now();
        let (path, store_identity) = (self.path.clone(), self.store_identity.clone());
        let loaded = tokio::task::spawn_blocking(move || checkpoint::load(&path, &store_identity)).await;
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(error) => Err(LoadError::Discarded(format!("loading it failed unexpectedly: {error}"))),
        };
        match loaded {
            Ok(snapshot) => {
                let counts = snapshot.counts();
                tracing::info!(
                    path = %self.path.display(),
                    seq = ?snapshot.last_seq(),
                    elapsed_ms = loading_started.elapsed().as_millis() as u64,
                    domains = counts.domains,
                    mailboxes = counts.mailboxes,
                    aliases = counts.aliases,
                    "resuming the changes feed from the index checkpoint"
                );
                self.saved_seq = snapshot.last_seq().cloned();
                self.saved_any = true;
                index.record_checkpoint(Ok(self.saved_seq.clone()));
                index.publish(snapshot);
                true
            }
            Err(LoadError::Missing) => {
                tracing::info!(path = %self.path.display(), "no index checkpoint yet; building the index from the feed");
                false
            }
            Err(LoadError::Discarded(reason)) => {
                tracing::warn!(
                    path = %self.path.display(),
                    reason,
                    "discarding the index checkpoint; building the index from the beginning"
                );
                self.remove().await;
                false
            }
        }
    }

    /// Forgets the checkpoint after the store refused its sequence.
    async fn discard(&mut self, index: &Index) {
        self.saved_seq = None;
        self.saved_any = false;
        index.record_checkpoint(Ok(None));
        self.remove().await;
    }

    /// Removes the checkpoint file, so that a crash before the next save cannot bring it back.
    async fn remove(&self) {
        match tokio::fs::remove_file(&self.path).await {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(path = %self.path.display(), %error, "cannot remove the index checkpoint"),
        }
    }

    /// Whether `current` differs from the checkpoint on disk, and is worth saving.
    fn needs_save(&self, current: &Snapshot) -> bool {
        current.is_ready() && (!self.saved_any || current.last_seq() != self.saved_seq.as_ref())
    }

    /// When to save `current`: at once the first time, then `interval` after the last
    /// save; `None` when it is saved already, not ready, or a save is in progress.
    fn save_due(&self, current: &Snapshot) -> Option<Instant> {
        if self.saving.is_some() || !self.needs_save(current) {
            return None;
        }
        Some(self.last_save.map_or_else(Instant::now, |last_save| last_save + self.interval))
    }

    /// Saves `snapshot` on a blocking thread.
    fn start_save(&mut self, snapshot: Arc<Snapshot>) {
        let (path, store_identity) = (self.path.clone(), self.store_identity.clone());
        self.last_save = Some(Instant::now());
        self.saving = Some(tokio::task::spawn_blocking(move || checkpoint::save(&path, &store_identity, &snapshot)));
    }

    /// Records the end of a save.
    fn finish_save(&mut self, saved: Result<Result<Written, String>, tokio::task::JoinError>, index: &Index) {
        self.saving = None;
        let started = self.last_save.unwrap_or_else(Instant::now);
        let saved = saved.unwrap_or_else(|error| Err(format!("the save failed unexpectedly: {error}")));
        match saved {
            Ok(written) => {
                tracing::debug!(
                    path = %self.path.display(),
                    seq = ?written.last_seq,
                    entries = written.n_records,
                    bytes = written.n_bytes,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "index checkpoint saved"
                );
                self.saved_seq = written.last_seq.clone();
                self.saved_any = true;
                index.record_checkpoint(Ok(written.last_seq));
            }
            Err(error) => {
                tracing::warn!(
                    path = %self.path.display(),
                    %error,
                    retry_in_s = self.interval.as_secs(),
                    "cannot save the index checkpoint; the next start will read the whole feed if this persists"
                );
                index.record_checkpoint(Err(error));
            }
        }
    }

    /// Lets a save in progress end, then saves the last snapshot if it changed since.
    async fn save_at_shutdown(mut self, index: &Index) {
        if let Some(saving) = self.saving.take() {
            let saved = saving.await;
            self.finish_save(saved, index);
        }
        let current = index.snapshot();
        if self.needs_save(&current) {
            self.start_save(current);
            if let Some(saving) = self.saving.take() {
                let saved = saving.await;
                self.finish_save(saved, index);
            }
        }
    }
}
