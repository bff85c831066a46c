//! Issue #4 proven end to end: couchmail on a CouchDB store (pouchdb-server behind
//! couchmail-testkit's CouchDB-compatible proxy).
//!
//! - Two sites, each a CouchDB server with a couchmail on it, replicating continuously both
//!   ways: a mailbox made at one site is answered by the other's socketmap within 2 s, and
//!   concurrent edits of one document (made while the sites were cut off from each other) end
//!   with the same winner at both, reported by `couchmail conflicts` and the API at both and
//!   cleared at both by one resolution.
//! - A CouchDB outage under the whole stack (real Postfix and Dovecot): lookups keep being
//!   answered from the index, mail keeps being delivered, API writes answer 503, and after
//!   the server returns the follower catches up and nothing is lost.
//! - Documents written straight into CouchDB, as an admin with curl would: a valid one is
//!   indexed, an invalid one is refused by `validate_doc_update`, and one that gets in anyway
//!   is skipped by the index with a logged reason.
//!
//! Each test starts its own servers and stacks; every wait is bounded and every process
//! stops on drop. Without pouchdb-server (outside CI) the tests print a note and return.

use std::time::{Duration, Instant};

use couchmail_socketmap::{Client, Reply};
use couchmail_testkit::pouchdb::{PouchServer, replicate_continuously};
use couchmail_testkit::stack::{Daemons, MailStack, StackOptions, fresh_client_ip};
use serde_json::{Value, json};

use super::support::{DELIVERY, PASSWORD, binary, domain_with_mailboxes, poll, rcpt_reply, runnable, subject};

/// The database every couchmail of these tests uses on its server.
const DATABASE: &str = "couchmail";
/// How fast a change at one site must be answered at the other (issue #4).
const ACROSS_SITES: Duration = Duration::from_secs(2);
/// How long replication, a reconnecting follower or a restarted server may take to settle.
const SETTLE: Duration = Duration::from_secs(30);

/// A server started by `start`, `None` when pouchdb-server is not installed (outside CI).
fn server(start: fn() -> Result<Option<PouchServer>, String>) -> Option<PouchServer> {
    start().unwrap_or_else(|error| panic!("pouchdb-server did not start: {error}"))
}

/// A couchmail (and, per `daemons`, Postfix and Dovecot) on `server`'s [`DATABASE`].
fn site(server: &PouchServer, daemons: Daemons) -> MailStack {
    let store = format!("couchdb:{}/{DATABASE}", server.url());
    MailStack::try_start_on_store(binary(), StackOptions { daemons }, Some(&store))
        .unwrap_or_else(|error| panic!("couchmail on {store} did not start: {error}\n{}", server.log()))
}

/// One socketmap lookup on a fresh connection, as Postfix would make it.
fn lookup(stack: &MailStack, map: &str, key: &str) -> Reply {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut client = Client::connect_unix(stack.socketmap_socket())
            .await
            .unwrap_or_else(|error| panic!("socketmap: {error}\n{}", stack.diagnostics()));
        tokio::time::timeout(Duration::from_secs(5), client.lookup(map, key))
            .await
            .unwrap_or_else(|_| panic!("socketmap {map} {key}: no answer within 5 s\n{}", stack.diagnostics()))
            .unwrap_or_else(|error| panic!("socketmap {map} {key}: {error}\n{}", stack.diagnostics()))
    })
}

/// Polls the socketmap until `map` answers `key` with OK, for at most `timeout`; returns how
/// long it took from `since`.
fn expect_found(stack: &MailStack, map: &str, key: &str, since: Instant, timeout: Duration) -> Duration {
    let mut last = None;
    let found = poll(timeout.saturating_sub(since.elapsed()), || {
        let reply = lookup(stack, map, key);
        let found = matches!(reply, Reply::Ok(_));
        last = Some(reply);
        found.then_some(())
    });
    match found {
        Some(_) => since.elapsed(),
        None => panic!(
            "socketmap {map} {key} never answered OK within {timeout:?}; last: {last:?}\n{}",
            stack.diagnostics()
        ),
    }
}

/// A document as the server holds it, with its conflicting revisions (`None` when missing).
fn stored(server: &PouchServer, id: &str) -> Option<Value> {
    let (status, body) = server
        .request("GET", &format!("/{DATABASE}/{id}?conflicts=true"), None)
        .unwrap_or_else(|error| panic!("reading {id}: {error}"));
    match status {
        200 => Some(serde_json::from_str(&body).unwrap()),
        404 => None,
        _ => panic!("reading {id}: {status} {body}"),
    }
}

/// Writes `body` as document `id` straight into CouchDB; returns the status and answer.
fn put_directly(server: &PouchServer, id: &str, body: &Value) -> (u16, Value) {
    let (status, answer) = server
        .request("PUT", &format!("/{DATABASE}/{id}"), Some(&body.to_string()))
        .unwrap_or_else(|error| panic!("writing {id}: {error}"));
    (status, serde_json::from_str(&answer).unwrap_or(Value::Null))
}

/// The conflicted revisions `couchmail conflicts list --json` reports for `id`, as
/// `(winner, losers)`; `None` when it reports no conflict on `id`.
fn conflicts_from_cli(stack: &MailStack, id: &str) -> Option<(String, Vec<String>)> {
    let listed: Value = serde_json::from_str(&stack.cli_ok(&["--json", "conflicts", "list"])).unwrap();
    let conflict = listed.as_array().unwrap().iter().find(|conflict| conflict["id"] == id)?;
    let losers = conflict["losers"].as_array().unwrap().iter().map(|loser| loser["rev"].as_str().unwrap().to_owned());
    Some((conflict["winner"]["rev"].as_str().unwrap().to_owned(), losers.collect()))
}

/// The same from `GET /api/v1/conflicts`.
fn conflicts_from_api(stack: &MailStack, id: &str) -> Option<(String, Vec<String>)> {
    let answer = stack.api().get("/conflicts");
    assert_eq!(answer.status, 200, "GET /conflicts: {answer:?}\n{}", stack.diagnostics());
    let conflict = answer.body["items"].as_array().unwrap().iter().find(|conflict| conflict["id"] == id)?.clone();
    let losers = conflict["losers"].as_array().unwrap().iter().map(|loser| loser["rev"].as_str().unwrap().to_owned());
    Some((conflict["winner"]["rev"].as_str().unwrap().to_owned(), losers.collect()))
}

fn replicate_both_ways(site_a: &PouchServer, site_b: &PouchServer) {
    replicate_continuously(site_a, site_b, DATABASE).unwrap();
    replicate_continuously(site_b, site_a, DATABASE).unwrap();
}

#[test]
fn two_sites_answer_each_others_changes_and_agree_on_conflicts() {
    if !runnable() {
        return;
    }
    let Some(server_a) = server(PouchServer::start_replicating_if_installed) else { return };
    let Some(mut server_b) = server(PouchServer::start_replicating_if_installed) else { return };
    let site_a = site(&server_a, Daemons::None);
    let site_b = site(&server_b, Daemons::None);
    replicate_both_ways(&server_a, &server_b);

    let created = site_a.api().post("/domains", &json!({ "name": "two-sites.test" }));
    assert_eq!(created.status, 201, "{created:?}\n{}", site_a.diagnostics());
    expect_found(&site_b, "domains", "two-sites.test", Instant::now(), SETTLE);

    let user = "alice@two-sites.test";
    let mailbox = json!({ "address": user, "name": "Alice", "password": PASSWORD });
    let created = site_a.api().post("/mailboxes", &mailbox);
    assert_eq!(created.status, 201, "{created:?}\n{}", site_a.diagnostics());
    let since = Instant::now();
    let elapsed = expect_found(&site_b, "mailboxes", user, since, ACROSS_SITES * 5);
    assert!(elapsed < ACROSS_SITES, "site B answered the mailbox made at site A after {elapsed:?}");
    eprintln!("site A's API → site B's socketmap: {elapsed:?}");

    // Cut site B off: its server stops, and with it replication both ways. Each site edits
    // the mailbox while the other cannot see it.
    let failures_before = server_a.log().matches("FetchError").count();
    server_b.stop().unwrap();
    let path = format!("/mailboxes/{user}");
    let shown = site_a.api().get(&path);
    let edited = site_a.api().put(&path, &json!({ "address": user, "name": "Alice at A" }), shown.etag());
    assert_eq!(edited.status, 200, "{edited:?}\n{}", site_a.diagnostics());
    // Site A's replicator gives up on B, when B goes or at the latest when it tries to carry
    // the edit (pouchdb-server logs why): from then on nothing replicates until the sites are
    // joined again.
    let gave_up = poll(SETTLE, || (server_a.log().matches("FetchError").count() > failures_before).then_some(()));
    assert!(gave_up.is_some(), "site A's replication to B never failed:\n{}", server_a.log());
    server_b.start_again().unwrap();
    let mut shown = None;
    poll(SETTLE, || {
        let answer = site_b.api().get(&path);
        let ready = answer.status == 200;
        shown = Some(answer);
        ready.then_some(())
    });
    let shown = shown.unwrap();
    assert_eq!(shown.body["name"], "Alice", "site B must not have seen site A's edit yet: {shown:?}");
    let edited = site_b.api().put(&path, &json!({ "address": user, "name": "Alice at B" }), shown.etag());
    assert_eq!(edited.status, 200, "{edited:?}\n{}", site_b.diagnostics());

    // The link returns: both sites end with both revisions and the same winner.
    replicate_both_ways(&server_a, &server_b);
    let id = format!("mailbox:{user}");
    let agreed = poll(SETTLE, || {
        let (at_a, at_b) = (stored(&server_a, &id)?, stored(&server_b, &id)?);
        let conflicted =
            at_a.get("_conflicts").is_some_and(|conflicts| conflicts.as_array().is_some_and(|list| !list.is_empty()));
        (conflicted && at_a == at_b).then_some(at_a)
    });
    let Some((winner, _)) = agreed else {
        panic!(
            "the sites never agreed on a winner with a conflict: A has {:?}, B has {:?}",
            stored(&server_a, &id),
            stored(&server_b, &id)
        )
    };
    let winner_rev = winner["_rev"].as_str().unwrap().to_owned();
    let losers: Vec<String> =
        winner["_conflicts"].as_array().unwrap().iter().map(|rev| rev.as_str().unwrap().to_owned()).collect();
    assert!(["Alice at A", "Alice at B"].contains(&winner["name"].as_str().unwrap()), "{winner}");

    // Reported at both sites, by the CLI and the API, with the revisions the stores hold.
    for (name, stack) in [("A", &site_a), ("B", &site_b)] {
        let expected = Some((winner_rev.clone(), losers.clone()));
        assert_eq!(conflicts_from_cli(stack, &id), expected, "`couchmail conflicts list` at site {name}");
        assert_eq!(conflicts_from_api(stack, &id), expected, "GET /api/v1/conflicts at site {name}");
    }
    // Both sites serve the winner's content.
    for stack in [&site_a, &site_b] {
        let shown = stack.api().get(&path);
        assert_eq!(shown.body["name"], winner["name"], "{shown:?}");
    }

    // Resolved at site A by keeping the losing edit: both sites end with it, conflict-free.
    let kept = &losers[0];
    let loser_name = if winner["name"] == "Alice at A" { "Alice at B" } else { "Alice at A" };
    site_a.cli_ok(&["conflicts", "resolve", &id, "--keep", kept]);
    let settled = poll(SETTLE, || {
        let (at_a, at_b) = (stored(&server_a, &id)?, stored(&server_b, &id)?);
        (at_a.get("_conflicts").is_none() && at_a == at_b).then_some(at_a)
    });
    let Some((settled, _)) = settled else {
        panic!(
            "the resolution did not reach both sites: A has {:?}, B has {:?}",
            stored(&server_a, &id),
            stored(&server_b, &id)
        )
    };
    assert_eq!(settled["name"], loser_name, "{settled}");
    for (name, stack) in [("A", &site_a), ("B", &site_b)] {
        assert_eq!(
            conflicts_from_cli(stack, &id),
            None,
            "`couchmail conflicts list` at site {name} after the resolution"
        );
        assert_eq!(conflicts_from_api(stack, &id), None, "GET /api/v1/conflicts at site {name} after the resolution");
        let shown = poll(SETTLE, || {
            let shown = stack.api().get(&path);
            (shown.body["name"] == loser_name).then_some(shown)
        });
        assert!(shown.is_some(), "site {name} never served the kept edit\n{}", stack.diagnostics());
        assert!(matches!(lookup(stack, "mailboxes", user), Reply::Ok(_)), "site {name} still answers {user}");
    }
    site_a.stop().unwrap_or_else(|error| panic!("site A's stop: {error}"));
    site_b.stop().unwrap_or_else(|error| panic!("site B's stop: {error}"));
}

#[test]
fn mail_keeps_flowing_through_a_couchdb_outage_and_the_index_catches_up_after() {
    if !runnable() {
        return;
    }
    let Some(mut server) = server(PouchServer::start_on_disk_if_installed) else { return };
    let stack = site(&server, Daemons::Couchmail);
    let domain = "couch-outage.test";
    domain_with_mailboxes(&stack, domain, &["alice", "bob"]);
    let (alice, bob) = (format!("alice@{domain}"), format!("bob@{domain}"));
    let before = subject("before the CouchDB outage");
    stack.deliver("sender@outside.example", &alice, &before);
    stack.expect_message(&alice, PASSWORD, "INBOX", &before, DELIVERY);

    server.stop().unwrap();

    // Lookups are answered from the index.
    assert!(matches!(lookup(&stack, "mailboxes", &alice), Reply::Ok(_)), "socketmap during the outage");
    assert!(matches!(lookup(&stack, "domains", domain), Reply::Ok(_)), "socketmap during the outage");
    assert_eq!(lookup(&stack, "mailboxes", &format!("nobody@{domain}")), Reply::NotFound);
    let rcpt = rcpt_reply(&stack, &alice);
    assert_eq!(rcpt.code, 250, "RCPT during the outage: {rcpt}\n{}", stack.diagnostics());
    // Mail keeps flowing, and a first login (nothing cached) works.
    let during = subject("sent during the CouchDB outage");
    stack.deliver("sender@outside.example", &alice, &during);
    stack.expect_message(&alice, PASSWORD, "INBOX", &during, DELIVERY);
    let login = stack.imap_login(&bob, PASSWORD, fresh_client_ip());
    assert!(login.is_ok(), "bob's first login during the outage: {login}\n{}", stack.diagnostics());

    // Writes cannot be kept: the API says so, clearly and in JSON.
    let refused = stack.api().post("/domains", &json!({ "name": "during-outage.test" }));
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.body["error"]["code"], "unavailable", "{refused:?}");
    let message = refused.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("store") && message.contains("retry"), "{refused:?}");

    server.start_again().unwrap_or_else(|error| panic!("{error}\n{}", stack.diagnostics()));

    // The follower catches up with a document written straight into CouchDB after the outage.
    let direct = format!("helpdesk@{domain}");
    let alias = json!({ "type": "alias", "targets": [alice.as_str()], "active": true });
    let (status, answer) = put_directly(&server, &format!("alias:{direct}"), &alias);
    assert_eq!(status, 201, "{answer}");
    expect_found(&stack, "aliases", &direct, Instant::now(), SETTLE);
    // Writes work again (the first may still meet the reconnecting store).
    let created = poll(SETTLE, || {
        let created = stack.api().post("/domains", &json!({ "name": "after-outage.test" }));
        (created.status != 503).then_some(created)
    });
    let (created, _) = created.unwrap_or_else(|| panic!("the API kept answering 503\n{}", stack.diagnostics()));
    assert_eq!(created.status, 201, "{created:?}");
    expect_found(&stack, "domains", "after-outage.test", Instant::now(), SETTLE);

    // Nothing written before is lost: documents, index and mail.
    let listed: Value = serde_json::from_str(&stack.cli_ok(&["--json", "mailbox", "list"])).unwrap();
    let listed = listed.to_string();
    assert!(listed.contains(&alice) && listed.contains(&bob), "{listed}");
    for user in [&alice, &bob] {
        assert!(matches!(lookup(&stack, "mailboxes", user), Reply::Ok(_)), "{user} after the outage");
    }
    let after = subject("after the CouchDB outage");
    stack.deliver("sender@outside.example", &direct, &after);
    for message in [&before, &during, &after] {
        stack.expect_message(&alice, PASSWORD, "INBOX", message, DELIVERY);
    }
    stack.stop().unwrap_or_else(|error| panic!("the harness's stop: {error}"));
}

#[test]
fn documents_written_straight_into_couchdb_are_indexed_refused_or_skipped() {
    if !runnable() {
        return;
    }
    let Some(guarded) = server(PouchServer::start_if_installed) else { return };
    let stack = site(&guarded, Daemons::None);

    // A valid document, as an admin would write it with curl, is answered.
    let (status, answer) = put_directly(&guarded, "domain:direct.test", &json!({ "type": "domain", "active": true }));
    assert_eq!(status, 201, "{answer}");
    expect_found(&stack, "domains", "direct.test", Instant::now(), SETTLE);

    // Invalid ones never get in: validate_doc_update refuses them with a reason.
    for (id, body) in [
        ("mailbox:broken@direct.test", json!({ "type": "mailbox", "active": "yes" })),
        ("frobnicator:x", json!({ "type": "frobnicator" })),
        ("domain:untyped.test", json!({ "active": true })),
    ] {
        let (status, answer) = put_directly(&guarded, id, &body);
        assert_eq!(status, 403, "{id}: {answer}");
        assert_eq!(answer["error"], "forbidden", "{id}: {answer}");
        assert!(stored(&guarded, id).is_none(), "{id} got in");
    }

    // One that gets in anyway — here through a database without the function, as a
    // replicating pouchdb-server's is — is skipped by the index, with the reason logged.
    let Some(unguarded) = server(PouchServer::start_replicating_if_installed) else { return };
    let other = site(&unguarded, Daemons::None);
    let (status, answer) = put_directly(&unguarded, "domain:direct.test", &json!({ "type": "domain", "active": true }));
    assert_eq!(status, 201, "{answer}");
    let broken = "mailbox:broken@direct.test";
    let (status, answer) = put_directly(&unguarded, broken, &json!({ "type": "mailbox", "active": "yes" }));
    assert_eq!(status, 201, "{answer}");
    let marker = poll(SETTLE, || {
        other
            .couchmail_log()
            .lines()
            .find(|line| line.contains("skipping an invalid document") && line.contains(broken))
            .map(str::to_owned)
    });
    let Some((logged, _)) = marker else { panic!("the index never logged skipping {broken}\n{}", other.diagnostics()) };
    assert!(logged.contains("active"), "the log names what is wrong: {logged}");
    assert_eq!(lookup(&other, "mailboxes", "broken@direct.test"), Reply::NotFound);
    // The index goes on with the documents after it.
    let (status, answer) = put_directly(
        &unguarded,
        "alias:after@direct.test",
        &json!({ "type": "alias", "targets": ["x@outside.example"] }),
    );
    assert_eq!(status, 201, "{answer}");
    expect_found(&other, "aliases", "after@direct.test", Instant::now(), SETTLE);
    stack.stop().unwrap_or_else(|error| panic!("{error}"));
    other.stop().unwrap_or_else(|error| panic!("{error}"));
}
