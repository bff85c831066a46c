//! Keeps SpamAssassin's per-user thresholds in step with the store: each mailbox's resolved `spam_threshold`
//! (its own, else its domain's) is written to its `user_prefs`, a mailbox without one has none (the site-wide
//! `spam.threshold` applies), and a removed mailbox's bayes database and prefs are deleted.
//!
//! The first pass, at start, hands every mailbox to `write_user_prefs`, which reads the file and writes only when
//! it differs. Later passes, one after each batch of index changes, resolve every mailbox's threshold in memory
//! (cheap: no I/O) and touch the files of only those whose threshold differs from what this task last wrote, so
//! a domain-level change reaches all its mailboxes while an unrelated change costs no file access. The passes run
//! on a blocking thread: the first one reads a file per mailbox.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use couchmail_index::Index;
use couchmail_render::{Spam, SpamScore, VmailIds};
use tokio::sync::broadcast::error::RecvError;

/// What a pass did for a mailbox, so that the next pass knows whether to touch its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Synced {
    /// Its `user_prefs` holds this threshold (`None`: no file, the site-wide one applies).
    Written(Option<SpamScore>),
    /// The write failed; the next pass tries again.
    Failed,
}

/// Every mailbox present at the last pass and what was done for it.
type SyncState = BTreeMap<String, Synced>;

/// Writes every mailbox's threshold now and after each index change, until `stopped`.
pub async fn keep_thresholds(index: Arc<Index>, spam: Spam, vmail: VmailIds, stopped: impl Future<Output = ()>) {
    let mut changes = index.subscribe_changes();
    tokio::pin!(stopped);
    let spam = Arc::new(spam);
    let mut state = SyncState::new();
    loop {
        let (pass_index, pass_spam) = (index.clone(), spam.clone());
        state = match tokio::task::spawn_blocking(move || sync_once(&pass_index, &pass_spam, vmail, state)).await {
            Ok(state) => state,
            Err(err) => {
                tracing::error!(%err, "the spam threshold sync failed; per-user thresholds stop following the store");
                return;
            }
        };
        // Any batch, or a lag, is a reason to look again; the comparison finds what changed.
        tokio::select! {
            () = &mut stopped => return,
            received = changes.recv() => {
                if let Err(RecvError::Closed) = received {
                    return;
                }
            }
        }
        while changes.try_recv().is_ok() {}
    }
}

/// One pass: writes the prefs of each mailbox whose threshold is not what `before` says was written, and removes
/// the data of mailboxes in `before` that are gone; answers the state after it.
fn sync_once(index: &Index, spam: &Spam, vmail: VmailIds, before: SyncState) -> SyncState {
    let snapshot = index.snapshot();
    if !snapshot.is_ready() {
        return before;
    }
    let mut after = SyncState::new();
    for mailbox in snapshot.mailboxes() {
        let address = mailbox.address();
        let threshold =
            snapshot.mailbox_policy(address).spam_threshold.map(|score| SpamScore::from_tenths(score.tenths()));
        let synced = if before.get(address) == Some(&Synced::Written(threshold)) {
            Synced::Written(threshold)
        } else {
            match couchmail_spam::write_user_prefs(spam, vmail, address, threshold) {
                Ok(wrote) => {
                    if wrote {
                        tracing::debug!(address, ?threshold, "wrote the spam threshold");
                    }
                    Synced::Written(threshold)
                }
                Err(err) => {
                    tracing::warn!(address, %err, "cannot write the spam threshold; the site-wide one applies");
                    Synced::Failed
                }
            }
        };
        after.insert(address.to_owned(), synced);
    }
    for gone in before.keys().filter(|address| !after.contains_key(*address)) {
        match couchmail_spam::remove_user_data(spam, gone) {
            Ok(removed) => tracing::debug!(address = %gone, removed, "removed a deleted mailbox's spam data"),
            Err(err) => tracing::warn!(address = %gone, %err, "cannot remove a deleted mailbox's spam data"),
        }
    }
    after
}
