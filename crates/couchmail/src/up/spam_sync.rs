//! Keeps SpamAssassin's per-user thresholds in step with the store: each mailbox's resolved `spam_threshold`
//! (its own, else its domain's) is written to its `user_prefs`, a mailbox without one has none (the site-wide
//! `spam.threshold` applies), and a removed mailbox's bayes database and prefs are deleted.
//!
//! On start and after every batch of index changes the whole set of mailboxes is compared with what was written
//! before: `write_user_prefs` reads the current file and writes only when it differs, so a batch costs one small
//! read per mailbox. That is simple and cannot miss a domain-level change that applies to many mailboxes; a site
//! with very many mailboxes and frequent changes may want a narrower pass later.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use couchmail_index::Index;
use couchmail_render::{Spam, SpamScore, VmailIds};
use tokio::sync::broadcast::error::RecvError;

/// Writes every mailbox's threshold now and after each index change, until `stopped`.
pub async fn keep_thresholds(index: Arc<Index>, spam: Spam, vmail: VmailIds, stopped: impl Future<Output = ()>) {
    let mut changes = index.subscribe_changes();
    tokio::pin!(stopped);
    let mut known = BTreeSet::new();
    loop {
        known = sync_once(&index, &spam, vmail, known);
        // Any batch, or a lag, is a reason to look again; the comparison above finds what changed.
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

/// One pass: writes each mailbox's prefs and removes the data of mailboxes in `known` that are gone; answers the
/// mailboxes now present.
fn sync_once(index: &Index, spam: &Spam, vmail: VmailIds, known: BTreeSet<String>) -> BTreeSet<String> {
    let snapshot = index.snapshot();
    if !snapshot.is_ready() {
        return known;
    }
    let mut present = BTreeSet::new();
    for mailbox in snapshot.mailboxes() {
        let address = mailbox.address();
        let threshold =
            snapshot.mailbox_policy(address).spam_threshold.map(|score| SpamScore::from_tenths(score.tenths()));
        match couchmail_spam::write_user_prefs(spam, vmail, address, threshold) {
            Ok(true) => tracing::debug!(address, ?threshold, "wrote the spam threshold"),
            Ok(false) => {}
            Err(err) => tracing::warn!(address, %err, "cannot write the spam threshold; the site-wide one applies"),
        }
        present.insert(address.to_owned());
    }
    for gone in known.difference(&present) {
        match couchmail_spam::remove_user_data(spam, gone) {
            Ok(removed) => tracing::debug!(address = %gone, removed, "removed a deleted mailbox's spam data"),
            Err(err) => tracing::warn!(address = %gone, %err, "cannot remove a deleted mailbox's spam data"),
        }
    }
    present
}
