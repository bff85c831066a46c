//! The conformance suite: written once, run against every backend.
//!
//! Each function takes a fresh, empty store and panics when the backend breaks the
//! [`Store`] contract: CouchDB's semantics for revisions, conflicts, tombstones and the
//! changes feed. Sequences are treated as opaque (compared only for equality), so the same
//! functions run against SQLite and CouchDB.
//!
//! A backend's test file runs the whole suite with [`conformance_tests!`](crate::conformance_tests),
//! given an expression that evaluates (inside an async test, so `.await` is allowed) to a
//! `(store, guard)` pair: the guard is dropped after the test and keeps whatever the store
//! needs alive, such as a temporary directory.
//!
//! ```no_run
//! # fn main() {}
//! couchmail_store::conformance_tests!({
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = couchmail_store::SqliteStore::open(dir.path().join("couchmail.db")).await.unwrap();
//!     (store, dir)
//! });
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::{Body, Change, Changes, ErrorKind, ListOptions, RawDoc, Result, Rev, Seq, Store};

/// Runs every suite function as its own `#[tokio::test]`.
///
/// The argument is an expression, evaluated in each test's async body, that yields a
/// `(store, guard)` pair; the store is any [`Store`](crate::Store) and the guard anything
/// that must outlive it. The calling crate needs `tokio` (with the `macros` and
/// `rt-multi-thread` features) among its dev-dependencies.
#[macro_export]
macro_rules! conformance_tests {
    ($fresh_store:expr) => {
        $crate::conformance_tests!(@tests $fresh_store;
            create_then_get,
            get_missing_is_none,
            create_over_live_document_conflicts,
            update_with_current_rev,
            update_with_stale_rev_conflicts_and_keeps_document,
            update_missing_document_with_rev_conflicts,
            revisions_have_couchdb_shape,
            delete_leaves_tombstone,
            delete_with_stale_rev_conflicts,
            delete_missing_is_not_found,
            recreate_after_delete,
            reserved_body_keys_are_bad_requests,
            bad_ids_are_bad_requests,
            list_by_prefix,
            list_pages_with_start_after_and_limit,
            list_skips_deleted,
            changes_from_beginning_list_each_document_once_in_order,
            changes_show_latest_revision_once,
            changes_respect_limit,
            changes_last_seq_when_nothing_new,
            changes_with_bad_since_are_bad_requests,
            changes_resume_without_gaps_or_repeats,
            long_poll_wakes_on_write,
            long_poll_without_write_returns_empty_after_wait,
            concurrent_updates_have_one_winner,
            concurrent_creates_have_one_winner,
            bodies_round_trip_exactly,
        );
    };
    (@tests $fresh_store:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $fresh_store;
                $crate::conformance::$name(store).await;
            }
        )*
    };
}

/// A body from a JSON object literal.
///
/// # Panics
/// When `value` is not an object: a mistake in the test itself.
pub fn body(value: Value) -> Body {
    match value {
        Value::Object(object) => object,
        other => panic!("a document body must be a JSON object, not {other}"),
    }
}

/// A created document is read back with the same body and the revision `put` returned.
pub async fn create_then_get<S: Store>(store: S) {
    let content = body(json!({ "type": "domain", "active": true, "quota_default": 1024 }));
    let rev = store.put("domain:example.com", None, &content).await.expect("create a document");
    let doc = store.get("domain:example.com").await.expect("read it back").expect("the document exists");
    assert_eq!(doc, RawDoc { id: "domain:example.com".to_owned(), rev, body: content });
}

/// Reading a document that never existed is `None`, not an error.
pub async fn get_missing_is_none<S: Store>(store: S) {
    assert_eq!(store.get("domain:nowhere.example").await.expect("read a missing document"), None);
}

/// Creating (`rev` `None`) over a live document is a conflict and leaves it unchanged.
pub async fn create_over_live_document_conflicts<S: Store>(store: S) {
    let original = body(json!({ "type": "alias", "targets": ["a@example.com"] }));
    let rev = store.put("alias:x@example.com", None, &original).await.expect("create a document");
    let error = store
        .put("alias:x@example.com", None, &body(json!({ "type": "alias", "targets": [] })))
        .await
        .expect_err("creating over a live document must fail");
    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
    let doc = store.get("alias:x@example.com").await.expect("read it back").expect("the document exists");
    assert_eq!((doc.rev, doc.body), (rev, original));
}

/// Updating with the current revision succeeds and yields a new, later revision.
pub async fn update_with_current_rev<S: Store>(store: S) {
    let first = store.put("mailbox:a@example.com", None, &body(json!({ "quota_bytes": 1 }))).await.expect("create");
    let updated = body(json!({ "quota_bytes": 2 }));
    let second = store.put("mailbox:a@example.com", Some(&first), &updated).await.expect("update at current rev");
    assert_ne!(first, second);
    assert_eq!(generation(&second), generation(&first) + 1);
    let doc = store.get("mailbox:a@example.com").await.expect("read it back").expect("the document exists");
    assert_eq!((doc.rev, doc.body), (second, updated));
}

/// Updating with a revision that is no longer current is a conflict, and the document keeps
/// the content of the write that won.
pub async fn update_with_stale_rev_conflicts_and_keeps_document<S: Store>(store: S) {
    let first = store.put("mailbox:a@example.com", None, &body(json!({ "quota_bytes": 1 }))).await.expect("create");
    let winner = body(json!({ "quota_bytes": 2 }));
    let second = store.put("mailbox:a@example.com", Some(&first), &winner).await.expect("update");
    let error = store
        .put("mailbox:a@example.com", Some(&first), &body(json!({ "quota_bytes": 3 })))
        .await
        .expect_err("a stale revision must be refused");
    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
    let made_up = Rev(format!("{}-{}", generation(&second), "0".repeat(32)));
    let error = store
        .put("mailbox:a@example.com", Some(&made_up), &body(json!({ "quota_bytes": 4 })))
        .await
        .expect_err("a revision the document never had must be refused");
    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
    let doc = store.get("mailbox:a@example.com").await.expect("read it back").expect("the document exists");
    assert_eq!((doc.rev, doc.body), (second, winner));
}

/// A revision given for a document that does not exist is a conflict (CouchDB answers 409).
pub async fn update_missing_document_with_rev_conflicts<S: Store>(store: S) {
    let rev = Rev(format!("1-{}", "a".repeat(32)));
    let error = store
        .put("domain:missing.example", Some(&rev), &body(json!({ "type": "domain" })))
        .await
        .expect_err("updating a missing document must fail");
    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
    assert_eq!(store.get("domain:missing.example").await.expect("read"), None);
}

/// Revisions look like CouchDB's, `<generation>-<32 lower-case hex digits>`, and the
/// generation counts writes.
pub async fn revisions_have_couchdb_shape<S: Store>(store: S) {
    let mut rev = store.put("domain:example.com", None, &body(json!({ "n": 0 }))).await.expect("create");
    for write_idx in 1..=4 {
        assert_eq!(generation(&rev), write_idx);
        let (_, hash) = rev.0.split_once('-').expect("a revision has a dash");
        assert_eq!(hash.len(), 32, "{rev}");
        assert!(hash.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)), "{rev}");
        rev = store.put("domain:example.com", Some(&rev), &body(json!({ "n": write_idx }))).await.expect("update");
    }
}

/// Deleting makes the document unreadable, leaves a tombstone in the feed, and a second
/// delete is not found.
pub async fn delete_leaves_tombstone<S: Store>(store: S) {
    let rev = store.put("alias:x@example.com", None, &body(json!({ "type": "alias" }))).await.expect("create");
    let tombstone = store.delete("alias:x@example.com", &rev).await.expect("delete at current rev");
    assert_eq!(generation(&tombstone), generation(&rev) + 1);
    assert_eq!(store.get("alias:x@example.com").await.expect("read"), None);

    let feed = all_changes(&store).await;
    let entries: Vec<_> = feed.iter().filter(|change| change.id == "alias:x@example.com").collect();
    assert_eq!(entries.len(), 1, "the document appears once in the feed: {feed:?}");
    assert!(entries[0].is_deleted(), "the feed shows the tombstone: {feed:?}");
    assert_eq!(entries[0].rev, tombstone);

    let error = store.delete("alias:x@example.com", &tombstone).await.expect_err("deleting twice must fail");
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    let error = store.delete("alias:x@example.com", &rev).await.expect_err("deleting twice must fail");
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    let error = store
        .put("alias:x@example.com", Some(&rev), &body(json!({ "type": "alias" })))
        .await
        .expect_err("updating a deleted document with its old revision must fail");
    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
}

/// Deleting with a stale revision is a conflict and leaves the document alive.
pub async fn delete_with_stale_rev_conflicts<S: Store>(store: S) {
    let first = store.put("alias:x@example.com", None, &body(json!({ "n": 1 }))).await.expect("create");
    let second = store.put("alias:x@example.com", Some(&first), &body(json!({ "n": 2 }))).await.expect("update");
    let error = store.delete("alias:x@example.com", &first).await.expect_err("a stale delete must fail");
    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
    let doc = store.get("alias:x@example.com").await.expect("read").expect("the document is still alive");
    assert_eq!(doc.rev, second);
}

/// Deleting a document that never existed is not found.
pub async fn delete_missing_is_not_found<S: Store>(store: S) {
    let rev = Rev(format!("1-{}", "b".repeat(32)));
    let error = store.delete("alias:nobody@example.com", &rev).await.expect_err("deleting nothing must fail");
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
}

/// A deleted document can be created again without a revision; its generation continues
/// after the tombstone's, and the feed shows it once, alive.
pub async fn recreate_after_delete<S: Store>(store: S) {
    let first = store.put("domain:example.com", None, &body(json!({ "v": 1 }))).await.expect("create");
    let tombstone = store.delete("domain:example.com", &first).await.expect("delete");
    let error = store
        .put("domain:example.com", Some(&tombstone), &body(json!({ "v": 2 })))
        .await
        .expect_err("a tombstone's revision cannot be updated: create without a revision");
    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
    let content = body(json!({ "v": 3 }));
    let again = store.put("domain:example.com", None, &content).await.expect("re-create over the tombstone");
    assert!(generation(&again) > generation(&tombstone), "{again} continues after {tombstone}");
    let doc = store.get("domain:example.com").await.expect("read").expect("the document is alive again");
    assert_eq!((doc.rev, doc.body), (again.clone(), content));

    let feed = all_changes(&store).await;
    assert_eq!(feed.len(), 1, "{feed:?}");
    assert_eq!((feed[0].rev.clone(), feed[0].is_deleted()), (again, false));
}

/// Bodies with top-level `_` keys are refused, and nothing is written.
pub async fn reserved_body_keys_are_bad_requests<S: Store>(store: S) {
    for reserved in ["_id", "_rev", "_deleted", "_attachments", "_custom"] {
        let mut content = body(json!({ "type": "domain" }));
        content.insert(reserved.to_owned(), json!("x"));
        let error = store.put("domain:example.com", None, &content).await.expect_err("reserved keys must be refused");
        assert_eq!(error.kind(), ErrorKind::BadRequest, "{reserved}: {error}");
    }
    let rev = store.put("domain:example.com", None, &body(json!({ "type": "domain" }))).await.expect("create");
    let error = store
        .put("domain:example.com", Some(&rev), &body(json!({ "_rev": rev.0.clone() })))
        .await
        .expect_err("reserved keys must be refused on update too");
    assert_eq!(error.kind(), ErrorKind::BadRequest, "{error}");
    // Nested `_` keys are ordinary data.
    store
        .put("domain:example.com", Some(&rev), &body(json!({ "nested": { "_id": 1 } })))
        .await
        .expect("nested underscore keys are allowed");
    assert_eq!(all_changes(&store).await.len(), 1);
}

/// Empty ids, ids over 1024 bytes, ids with control characters and ids starting with `_`
/// are refused by every writing method.
pub async fn bad_ids_are_bad_requests<S: Store>(store: S) {
    let content = body(json!({ "type": "domain" }));
    let some_rev = Rev(format!("1-{}", "c".repeat(32)));
    let too_long = "d".repeat(1025);
    for bad_id in ["", too_long.as_str(), "a\nb", "tab\there", "nul\u{0}", "del\u{7f}", "_design/x", "_reserved"] {
        let error = store.put(bad_id, None, &content).await.expect_err("a bad id must be refused");
        assert_eq!(error.kind(), ErrorKind::BadRequest, "put {bad_id:?}: {error}");
        let error = store.put(bad_id, Some(&some_rev), &content).await.expect_err("a bad id must be refused");
        assert_eq!(error.kind(), ErrorKind::BadRequest, "update {bad_id:?}: {error}");
        let error = store.delete(bad_id, &some_rev).await.expect_err("a bad id must be refused");
        assert_eq!(error.kind(), ErrorKind::BadRequest, "delete {bad_id:?}: {error}");
    }
    let longest = "d".repeat(1024);
    store.put(&longest, None, &content).await.expect("an id of exactly 1024 bytes is fine");
    store.put("mailbox:ünïcödé@例え.jp", None, &content).await.expect("non-ASCII ids are fine");
    assert_eq!(all_changes(&store).await.len(), 2);
}

/// `list` returns live documents whose id starts with the prefix, in id order, and treats
/// every character of the prefix literally.
pub async fn list_by_prefix<S: Store>(store: S) {
    let ids = [
        "mailbox:c@example.com",
        "alias:a@example.com",
        "mailbox:a@example.com",
        "mailboxes",
        "mailbox;",
        "mailbox:b@example.com",
        "Mailbox:z@example.com",
        "a%b",
        "a_b",
        "axb",
        "ab",
    ];
    for id in ids {
        store.put(id, None, &body(json!({ "id": id }))).await.expect("create");
    }
    let listed = list_ids(&store, "mailbox:", ListOptions::default()).await;
    assert_eq!(listed, ["mailbox:a@example.com", "mailbox:b@example.com", "mailbox:c@example.com"]);
    assert_eq!(list_ids(&store, "a%", ListOptions::default()).await, ["a%b"]);
    assert_eq!(list_ids(&store, "a_", ListOptions::default()).await, ["a_b"]);
    assert_eq!(list_ids(&store, "nothing", ListOptions::default()).await, Vec::<String>::new());

    let mut everything: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
    everything.sort();
    assert_eq!(list_ids(&store, "", ListOptions::default()).await, everything);

    let docs = store.list("alias:", &ListOptions::default()).await.expect("list");
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].body, body(json!({ "id": "alias:a@example.com" })));
}

/// Paging with `start_after` and `limit` visits every document once, in order.
pub async fn list_pages_with_start_after_and_limit<S: Store>(store: S) {
    let mut expected = Vec::new();
    for n in (0..23).rev() {
        let id = format!("mailbox:user{n:02}@example.com");
        store.put(&id, None, &body(json!({ "n": n }))).await.expect("create");
        expected.push(id);
    }
    store.put("other:x", None, &body(json!({}))).await.expect("create");
    expected.sort();

    let mut paged = Vec::new();
    let mut start_after = None;
    loop {
        let page = list_ids(&store, "mailbox:", ListOptions { start_after: start_after.clone(), limit: Some(5) }).await;
        assert!(page.len() <= 5, "{page:?}");
        let Some(last) = page.last().cloned() else { break };
        paged.extend(page);
        start_after = Some(last);
    }
    assert_eq!(paged, expected);

    let after_middle =
        list_ids(&store, "mailbox:", ListOptions { start_after: Some(expected[20].clone()), limit: None }).await;
    assert_eq!(after_middle, expected[21..]);
    // `start_after` need not be an existing id, and may lie before the prefix.
    let from_before =
        list_ids(&store, "mailbox:", ListOptions { start_after: Some("a".to_owned()), limit: Some(2) }).await;
    assert_eq!(from_before, expected[..2]);
    let none = list_ids(&store, "mailbox:", ListOptions { start_after: Some("zzz".to_owned()), limit: None }).await;
    assert!(none.is_empty(), "{none:?}");
}

/// Deleted documents are not listed; re-created ones are.
pub async fn list_skips_deleted<S: Store>(store: S) {
    let mut revs = BTreeMap::new();
    for n in 0..6 {
        let id = format!("alias:a{n}@example.com");
        let rev = store.put(&id, None, &body(json!({ "n": n }))).await.expect("create");
        revs.insert(id, rev);
    }
    for n in [1, 3, 4] {
        let id = format!("alias:a{n}@example.com");
        store.delete(&id, &revs[&id]).await.expect("delete");
    }
    store.put("alias:a3@example.com", None, &body(json!({ "n": 33 }))).await.expect("re-create");
    let listed = list_ids(&store, "alias:", ListOptions::default()).await;
    assert_eq!(
        listed,
        ["alias:a0@example.com", "alias:a2@example.com", "alias:a3@example.com", "alias:a5@example.com"]
    );
    let paged = list_ids(
        &store,
        "alias:",
        ListOptions { start_after: Some("alias:a0@example.com".to_owned()), limit: Some(2) },
    )
    .await;
    assert_eq!(paged, ["alias:a2@example.com", "alias:a3@example.com"]);
}

/// From the beginning, the feed lists every document exactly once, in write order.
pub async fn changes_from_beginning_list_each_document_once_in_order<S: Store>(store: S) {
    let mut written = Vec::new();
    for n in 0..10 {
        let id = format!("domain:d{}.example", (n * 7) % 10);
        let rev = store.put(&id, None, &body(json!({ "n": n }))).await.expect("create");
        written.push((id, rev));
    }
    let feed = all_changes(&store).await;
    let seen: Vec<(String, Rev)> = feed.iter().map(|change| (change.id.clone(), change.rev.clone())).collect();
    assert_eq!(seen, written);
    assert_distinct_seqs(&feed);
    for (n, change) in feed.iter().enumerate() {
        assert_eq!(change.body, Some(body(json!({ "n": n }))));
    }
}

/// A document written several times appears once, at its latest revision, in the place of
/// its latest write.
pub async fn changes_show_latest_revision_once<S: Store>(store: S) {
    let mut rev = store.put("domain:busy.example", None, &body(json!({ "n": 0 }))).await.expect("create");
    store.put("domain:quiet.example", None, &body(json!({}))).await.expect("create");
    for n in 1..5 {
        rev = store.put("domain:busy.example", Some(&rev), &body(json!({ "n": n }))).await.expect("update");
    }
    let feed = all_changes(&store).await;
    let seen: Vec<&str> = feed.iter().map(|change| change.id.as_str()).collect();
    assert_eq!(seen, ["domain:quiet.example", "domain:busy.example"]);
    assert_eq!(feed[1].rev, rev);
    assert_eq!(feed[1].body, Some(body(json!({ "n": 4 }))));
}

/// `limit` bounds each batch, and following `last_seq` reads the rest.
pub async fn changes_respect_limit<S: Store>(store: S) {
    for n in 0..7 {
        store.put(&format!("domain:d{n}.example"), None, &body(json!({}))).await.expect("create");
    }
    let first = store.changes(None, 3, Duration::ZERO).await.expect("changes");
    assert_eq!(first.changes.len(), 3);
    assert_eq!(first.last_seq.as_ref(), first.changes.last().map(|change| &change.seq));
    let second = store.changes(first.last_seq.as_ref(), 3, Duration::ZERO).await.expect("changes");
    let third = store.changes(second.last_seq.as_ref(), 3, Duration::ZERO).await.expect("changes");
    let ids: Vec<String> =
        [first, second, third].iter().flat_map(|batch| batch.changes.iter().map(|change| change.id.clone())).collect();
    let expected: Vec<String> = (0..7).map(|n| format!("domain:d{n}.example")).collect();
    assert_eq!(ids, expected);
}

/// With nothing new, `last_seq` is the `since` given (`None` on an empty store read from the
/// beginning), so a follower can always resume from it.
pub async fn changes_last_seq_when_nothing_new<S: Store>(store: S) {
    let empty = store.changes(None, 10, Duration::ZERO).await.expect("changes of an empty store");
    assert!(empty.changes.is_empty());
    assert_eq!(empty.last_seq, None);

    store.put("domain:example.com", None, &body(json!({}))).await.expect("create");
    let batch = store.changes(None, 10, Duration::ZERO).await.expect("changes");
    let last_seq = batch.last_seq.clone().expect("a batch with changes has a last_seq");
    let nothing_new = store.changes(Some(&last_seq), 10, Duration::ZERO).await.expect("changes");
    assert_eq!(nothing_new, Changes { changes: Vec::new(), last_seq: Some(last_seq) });
}

/// A `since` the store never handed out is a bad request.
pub async fn changes_with_bad_since_are_bad_requests<S: Store>(store: S) {
    store.put("domain:example.com", None, &body(json!({}))).await.expect("create");
    for bad in ["not-a-seq", "", "-1", "1.5"] {
        let error = store
            .changes(Some(&Seq(bad.to_owned())), 10, Duration::ZERO)
            .await
            .expect_err("a malformed since must be refused");
        assert_eq!(error.kind(), ErrorKind::BadRequest, "{bad:?}: {error}");
    }
}

/// A follower reading in small batches while writers create, update and delete sees every
/// document's final state, never the same change twice, and each document's revisions in
/// order; resuming from its last `last_seq` then yields exactly the later changes.
pub async fn changes_resume_without_gaps_or_repeats<S: Store>(store: S) {
    let store = Arc::new(store);
    let writer_store = Arc::clone(&store);
    let writer = tokio::spawn(async move {
        let mut live: HashMap<String, Rev> = HashMap::new();
        let mut last_written: HashMap<String, Rev> = HashMap::new();
        for step in 0..240_usize {
            let id = format!("alias:a{}@example.com", (step * 7) % 13);
            let content = body(json!({ "step": step }));
            let rev = match live.get(&id).cloned() {
                Some(rev) if step % 5 == 3 => {
                    live.remove(&id);
                    writer_store.delete(&id, &rev).await.expect("delete")
                }
                current => {
                    let rev = writer_store.put(&id, current.as_ref(), &content).await.expect("create or update");
                    live.insert(id.clone(), rev.clone());
                    rev
                }
            };
            last_written.insert(id, rev);
            if step % 16 == 0 {
                tokio::task::yield_now().await;
            }
        }
        last_written
    });

    let mut follower = Follower::default();
    let mut since: Option<Seq> = None;
    let mut writer_finished = false;
    loop {
        let batch = store.changes(since.as_ref(), 7, Duration::from_millis(50)).await.expect("changes");
        follower.record(&batch);
        if batch.changes.is_empty() && writer_finished {
            assert_eq!(batch.last_seq, since, "an empty batch keeps last_seq");
            break;
        }
        since = batch.last_seq;
        writer_finished = writer.is_finished();
    }
    let last_written = writer.await.expect("the writer finished");
    assert_eq!(follower.latest_seen, last_written, "the follower ends at every document's final revision");

    // Quiet now: resuming yields exactly the writes made after the last batch.
    let mut later = Vec::new();
    for n in 0..5 {
        let id = format!("domain:later{n}.example");
        let rev = store.put(&id, None, &body(json!({}))).await.expect("create");
        later.push((id, rev));
    }
    let resumed = store.changes(since.as_ref(), 100, Duration::ZERO).await.expect("changes");
    let seen: Vec<(String, Rev)> =
        resumed.changes.iter().map(|change| (change.id.clone(), change.rev.clone())).collect();
    assert_eq!(seen, later);
    follower.record(&resumed);
}

/// What a follower of the feed has seen, checked as it goes.
#[derive(Default)]
struct Follower {
    seen_changes: HashSet<(String, Rev)>,
    seen_seqs: HashSet<Seq>,
    latest_seen: HashMap<String, Rev>,
}

impl Follower {
    fn record(&mut self, batch: &Changes) {
        for change in &batch.changes {
            assert!(self.seen_seqs.insert(change.seq.clone()), "seq {} repeated", change.seq);
            assert!(self.seen_changes.insert((change.id.clone(), change.rev.clone())), "change repeated: {change:?}");
            if let Some(previous) = self.latest_seen.insert(change.id.clone(), change.rev.clone()) {
                assert!(generation(&change.rev) > generation(&previous), "{} went back from {previous}", change.rev);
            }
        }
    }
}

/// A long-poll begun before a write returns soon after the write commits.
pub async fn long_poll_wakes_on_write<S: Store>(store: S) {
    store.put("domain:before.example", None, &body(json!({}))).await.expect("create");
    let since = all_changes_batch(&store).await.last_seq;
    let store = Arc::new(store);
    let waiting_store = Arc::clone(&store);
    let waiting_since = since.clone();
    let waiter = tokio::spawn(async move {
        let changes = waiting_store
            .changes(waiting_since.as_ref(), 10, Duration::from_secs(10))
            .await
            .expect("changes with a wait");
        (changes, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!waiter.is_finished(), "the long-poll returned before any write");

    let write_started = Instant::now();
    let rev = store.put("domain:after.example", None, &body(json!({}))).await.expect("create");
    let (changes, returned_at) = waiter.await.expect("the waiter finished");
    let latency = returned_at.saturating_duration_since(write_started);
    tracing::info!(?latency, "long-poll woke after a write");
    assert!(latency < Duration::from_secs(1), "the long-poll took {latency:?} to wake");
    let seen: Vec<(String, Rev)> =
        changes.changes.iter().map(|change| (change.id.clone(), change.rev.clone())).collect();
    assert_eq!(seen, [("domain:after.example".to_owned(), rev)]);
    assert_ne!(changes.last_seq, since);
}

/// A long-poll with nothing written returns empty after about `wait`.
pub async fn long_poll_without_write_returns_empty_after_wait<S: Store>(store: S) {
    store.put("domain:example.com", None, &body(json!({}))).await.expect("create");
    let since = all_changes_batch(&store).await.last_seq;
    let wait = Duration::from_millis(400);
    let started = Instant::now();
    let changes = store.changes(since.as_ref(), 10, wait).await.expect("changes with a wait");
    let elapsed = started.elapsed();
    assert_eq!(changes, Changes { changes: Vec::new(), last_seq: since });
    assert!(elapsed >= wait - Duration::from_millis(50), "returned after {elapsed:?}, before the wait of {wait:?}");
    assert!(elapsed < wait + Duration::from_secs(1), "returned after {elapsed:?}, long after the wait of {wait:?}");
}

/// Sixteen writers updating one document from the same revision: exactly one wins, the rest
/// conflict, and the document holds the winner's body at the winner's revision.
pub async fn concurrent_updates_have_one_winner<S: Store>(store: S) {
    let store = Arc::new(store);
    let base = store.put("mailbox:race@example.com", None, &body(json!({ "writer": null }))).await.expect("create");
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let writers: Vec<_> = (0..16)
        .map(|writer_idx| {
            let store = Arc::clone(&store);
            let base = base.clone();
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                let result =
                    store.put("mailbox:race@example.com", Some(&base), &body(json!({ "writer": writer_idx }))).await;
                (writer_idx, result)
            })
        })
        .collect();
    let outcomes = join_all(writers).await;
    let winners = assert_one_winner(&outcomes);
    let (winner_idx, winner_rev) = &winners[0];
    let doc = store.get("mailbox:race@example.com").await.expect("read").expect("the document exists");
    assert_eq!((&doc.rev, &doc.body), (winner_rev, &body(json!({ "writer": winner_idx }))));
    assert_eq!(generation(winner_rev), 2);
}

/// Sixteen writers creating one id at once: exactly one wins.
pub async fn concurrent_creates_have_one_winner<S: Store>(store: S) {
    let store = Arc::new(store);
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let writers: Vec<_> = (0..16)
        .map(|writer_idx| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                let result = store.put("domain:race.example", None, &body(json!({ "writer": writer_idx }))).await;
                (writer_idx, result)
            })
        })
        .collect();
    let outcomes = join_all(writers).await;
    let winners = assert_one_winner(&outcomes);
    let (winner_idx, winner_rev) = &winners[0];
    let doc = store.get("domain:race.example").await.expect("read").expect("the document exists");
    assert_eq!((&doc.rev, &doc.body), (winner_rev, &body(json!({ "writer": winner_idx }))));
    assert_eq!(all_changes(&*store).await.len(), 1);
}

/// Bodies come back exactly as written from `get`, `list` and `changes`: unicode, escapes,
/// numbers at the edges of their types, nesting, and a 100 KiB string.
pub async fn bodies_round_trip_exactly<S: Store>(store: S) {
    let large: String = "äöü€𝄞 quoted \" back\\slash\n".chars().cycle().take(100 * 1024).collect();
    let contents = [
        body(json!({})),
        body(json!({
            "name": "Zoë Ødegård 山田太郎 🦀",
            "rtl": "مرحبا",
            "controls": "\u{0}\u{1}\t\r\n\u{7f}\u{2028}",
            "empty": "",
            "spaces": "  leading and trailing  ",
        })),
        body(json!({
            "zero": 0,
            "negative": -17,
            "i64_min": i64::MIN,
            "u64_max": u64::MAX,
            "fraction": 0.1,
            "tiny": 5e-324,
            "huge": 1.7976931348623157e308,
            "flags": [true, false, null],
        })),
        body(json!({ "deep": { "er": { "est": [[[{ "k": "v" }]]], "keys": { "b": 1, "a": 2, "_x": 3 } } } })),
        body(json!({ "large": large })),
    ];
    let mut revs = Vec::new();
    for (content_idx, content) in contents.iter().enumerate() {
        let id = format!("doc:{content_idx}");
        let rev = store.put(&id, None, content).await.expect("create");
        let doc = store.get(&id).await.expect("read").expect("the document exists");
        assert_eq!(&doc.body, content, "get returns body {content_idx} exactly");
        revs.push(rev);
    }
    let listed = store.list("doc:", &ListOptions::default()).await.expect("list");
    let listed_bodies: Vec<&Body> = listed.iter().map(|doc| &doc.body).collect();
    assert_eq!(listed_bodies, contents.iter().collect::<Vec<_>>());
    let feed = all_changes(&store).await;
    let feed_bodies: Vec<Option<&Body>> = feed.iter().map(|change| change.body.as_ref()).collect();
    assert_eq!(feed_bodies, contents.iter().map(Some).collect::<Vec<_>>());

    // Writing the same body again still makes a new revision.
    let again = store.put("doc:1", Some(&revs[1]), &contents[1]).await.expect("rewrite the same body");
    assert_ne!(again, revs[1]);
}

/// The generation of a revision: the number before the dash.
///
/// # Panics
/// When `rev` is not `<number>-<hash>`.
pub fn generation(rev: &Rev) -> u64 {
    rev.0
        .split_once('-')
        .and_then(|(generation, _)| generation.parse().ok())
        .unwrap_or_else(|| panic!("revision {rev} is not <generation>-<hash>"))
}

/// Every change from the beginning, read in one batch without waiting.
async fn all_changes_batch<S: Store + ?Sized>(store: &S) -> Changes {
    store.changes(None, 10_000, Duration::ZERO).await.expect("read the changes feed")
}

async fn all_changes<S: Store + ?Sized>(store: &S) -> Vec<Change> {
    all_changes_batch(store).await.changes
}

async fn list_ids<S: Store + ?Sized>(store: &S, prefix: &str, options: ListOptions) -> Vec<String> {
    let docs = store.list(prefix, &options).await.expect("list documents");
    docs.into_iter().map(|doc| doc.id).collect()
}

fn assert_distinct_seqs(feed: &[Change]) {
    let distinct: HashSet<&Seq> = feed.iter().map(|change| &change.seq).collect();
    assert_eq!(distinct.len(), feed.len(), "sequences repeat: {feed:?}");
}

async fn join_all<T: Send + 'static>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.expect("a writer task panicked"));
    }
    outcomes
}

/// Asserts exactly one outcome is `Ok` and every other a conflict; returns the winner.
fn assert_one_winner(outcomes: &[(usize, Result<Rev>)]) -> Vec<(usize, Rev)> {
    let mut winners = Vec::new();
    for (writer_idx, outcome) in outcomes {
        match outcome {
            Ok(rev) => winners.push((*writer_idx, rev.clone())),
            Err(error) => assert_eq!(error.kind(), ErrorKind::Conflict, "writer {writer_idx}: {error}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins: {winners:?}");
    winners
}
