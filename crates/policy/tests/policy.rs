//! The policy service over the real policy-protocol server, asked with real `PolicyRequest`s on a unix socket:
//! each proof of issue #5 that needs no Postfix (blocklists per user and per domain, greylisting with a hand-moved
//! clock, auto-allow, opt-outs, authenticated and trusted clients, state across restarts, rate limits).
#![allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use couchmail_greylist::ManualClock;
use couchmail_index::{Index, Snapshot};
use couchmail_model::{Document, PolicySettings};
use couchmail_policy::{NOT_READY_TEXT, Policy, PolicyConfig};
use couchmail_postfix_policy::{Action, Client, Listener, PolicyRequest, ProtocolState, ServerConfig};
use couchmail_testkit::fixtures::*;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const DELAY: Duration = Duration::from_secs(300);

/// A policy server on a unix socket in a temporary directory; dropping it stops the server.
struct Server {
    socket: PathBuf,
    index: Arc<Index>,
    _stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(state_dir: &Path, index: Arc<Index>, clock: Arc<ManualClock>, config: PolicyConfig) -> Server {
        let policy = Policy::open_with_clock(config, index.clone(), clock).unwrap();
        let socket = state_dir.join(format!("policy-{}", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let listener = Listener::bind_unix(&socket, 0o600).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            couchmail_postfix_policy::run(listener, Arc::new(policy), ServerConfig::default(), shutdown).await;
        });
        Server { socket, index, _stop: stop, task }
    }

    async fn client(&self) -> Client {
        Client::connect_unix(&self.socket).await.unwrap()
    }
}

/// One test's world: a directory for state, a clock, the documents of the index.
struct World {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
}

impl World {
    fn new() -> World {
        World { dir: tempfile::tempdir().unwrap(), clock: Arc::new(ManualClock::new(SystemTime::now())) }
    }

    fn config(&self) -> PolicyConfig {
        PolicyConfig::new(self.dir.path())
    }

    async fn serve(&self, documents: Vec<Document>, config: PolicyConfig) -> Server {
        let index = Arc::new(Index::from_snapshot(Snapshot::from_documents(documents)));
        Server::start(self.dir.path(), index, self.clock.clone(), config).await
    }
}

fn documents(extra: &[Document]) -> Vec<Document> {
    let mut documents = vec![
        domain("example.com"),
        domain("example.org"),
        domain_alias("example.net", "example.com"),
        mailbox("alice@example.com"),
        mailbox("bob@example.com"),
        mailbox("erin@example.org"),
        alias("team@example.com", &["alice@example.com", "bob@example.com"]),
    ];
    documents.extend_from_slice(extra);
    documents
}

fn rcpt(client: &str, sender: &str, recipient: &str) -> PolicyRequest {
    PolicyRequest {
        protocol_state: Some(ProtocolState::Rcpt),
        protocol_name: Some("ESMTP".into()),
        client_address: Some(client.into()),
        client_name: Some("unknown".into()),
        helo_name: Some("mx.sender.example".into()),
        sender: Some(sender.into()),
        recipient: Some(recipient.into()),
        recipient_count: Some(0),
        instance: Some(format!("{client}-{sender}-{recipient}")),
        sasl_username: Some(String::new()),
        ..PolicyRequest::default()
    }
}

fn submission(login: &str, recipient: &str, instance: &str) -> PolicyRequest {
    PolicyRequest {
        sasl_username: Some(login.into()),
        sasl_method: Some("PLAIN".into()),
        instance: Some(instance.into()),
        ..rcpt("198.51.100.10", login, recipient)
    }
}

fn end_of_message(login: &str, instance: &str, recipient_count: u64) -> PolicyRequest {
    PolicyRequest {
        protocol_state: Some(ProtocolState::EndOfMessage),
        recipient: Some(String::new()),
        recipient_count: Some(recipient_count),
        ..submission(login, "", instance)
    }
}

async fn ask(client: &mut Client, request: &PolicyRequest) -> String {
    client.ask(request).await.unwrap().to_string()
}

fn is_greylisted(answer: &str) -> bool {
    answer.starts_with("defer_if_permit 4.7.1 Greylisted")
}

#[tokio::test]
async fn a_blocklisted_sender_is_rejected_for_that_user_only() {
    let world = World::new();
    let server = world
        .serve(documents(&[listing("mailbox:alice@example.com:block:sender:spam@bad.example")]), world.config())
        .await;
    let mut client = server.client().await;
    assert_eq!(
        ask(&mut client, &rcpt("192.0.2.25", "spam@bad.example", "alice@example.com")).await,
        "554 5.7.1 Sender address <spam@bad.example> is on the recipient's blocklist"
    );
    // The same sender through an alias domain and a +extension still reaches alice's list.
    let through_alias_domain =
        ask(&mut client, &rcpt("192.0.2.25", "Spam@Bad.Example", "Alice+news@example.net")).await;
    assert!(through_alias_domain.starts_with("554 5.7.1"), "{through_alias_domain}");
    // Bob, in the same domain, is only greylisted; a shared alias takes no one user's list.
    assert!(is_greylisted(&ask(&mut client, &rcpt("192.0.2.25", "spam@bad.example", "bob@example.com")).await));
    assert!(is_greylisted(&ask(&mut client, &rcpt("192.0.2.25", "spam@bad.example", "team@example.com")).await));
    // Another sender to alice is greylisted, not refused.
    assert!(is_greylisted(&ask(&mut client, &rcpt("192.0.2.25", "friend@good.example", "alice@example.com")).await));
}

#[tokio::test]
async fn a_domain_wide_block_applies_to_that_domain_only() {
    let world = World::new();
    let server = world
        .serve(
            documents(&[
                listing("domain:example.com:block:sender-domain:bad.example"),
                listing("domain:example.com:block:client:203.0.113.0/24"),
            ]),
            world.config(),
        )
        .await;
    let mut client = server.client().await;
    for recipient in ["alice@example.com", "bob@example.com", "team@example.com", "anyone@example.net"] {
        assert_eq!(
            ask(&mut client, &rcpt("192.0.2.25", "news@mail.bad.example", recipient)).await,
            "554 5.7.1 Sender domain mail.bad.example is on the recipient domain's blocklist",
            "{recipient}"
        );
        assert_eq!(
            ask(&mut client, &rcpt("203.0.113.9", "friend@good.example", recipient)).await,
            "554 5.7.1 Client address 203.0.113.9 is on the recipient domain's blocklist",
            "{recipient}"
        );
    }
    assert!(is_greylisted(&ask(&mut client, &rcpt("192.0.2.25", "news@mail.bad.example", "erin@example.org")).await));
    assert!(is_greylisted(&ask(&mut client, &rcpt("203.0.113.9", "friend@good.example", "erin@example.org")).await));
}

#[tokio::test]
async fn a_global_block_is_overridden_by_a_users_allow_for_that_user() {
    let world = World::new();
    let server = world
        .serve(
            documents(&[
                listing("global:block:client:2001:db8::/32"),
                listing("mailbox:erin@example.org:allow:sender:friend@good.example"),
            ]),
            world.config(),
        )
        .await;
    let mut client = server.client().await;
    assert_eq!(
        ask(&mut client, &rcpt("2001:db8::25", "friend@good.example", "alice@example.com")).await,
        "554 5.7.1 Client address 2001:db8::25 is on this server's blocklist"
    );
    // Erin's allow beats the global block for her, and skips greylisting.
    assert_eq!(ask(&mut client, &rcpt("2001:db8::25", "friend@good.example", "erin@example.org")).await, "dunno");
}

#[tokio::test]
async fn greylisting_defers_then_passes_after_the_delay_and_auto_allows() {
    let world = World::new();
    let mut config = world.config();
    config.greylist.auto_allow_after = Some(2);
    let server = world.serve(documents(&[]), config).await;
    let mut client = server.client().await;
    let first = rcpt("192.0.2.25", "news@sender.example", "alice@example.com");
    assert_eq!(ask(&mut client, &first).await, "defer_if_permit 4.7.1 Greylisted, please try again in 300 seconds");
    world.clock.advance(Duration::from_secs(60));
    assert_eq!(ask(&mut client, &first).await, "defer_if_permit 4.7.1 Greylisted, please try again in 240 seconds");
    world.clock.advance(DELAY);
    assert_eq!(ask(&mut client, &first).await, "dunno", "the retry after the delay passes");
    assert_eq!(ask(&mut client, &first).await, "dunno", "and is remembered");

    // A second triplet from the same /24 passes after its own delay, and then the network is auto-allowed.
    let second = rcpt("192.0.2.26", "other@sender.example", "bob@example.com");
    assert!(is_greylisted(&ask(&mut client, &second).await));
    world.clock.advance(DELAY);
    assert_eq!(ask(&mut client, &second).await, "dunno");
    let third = rcpt("192.0.2.27", "new@sender.example", "erin@example.org");
    assert_eq!(ask(&mut client, &third).await, "dunno", "an auto-allowed network is not greylisted");
    let elsewhere = rcpt("192.0.3.27", "new@sender.example", "erin@example.org");
    assert!(is_greylisted(&ask(&mut client, &elsewhere).await), "another network still is");
}

#[tokio::test]
async fn greylisting_state_survives_a_restart() {
    let world = World::new();
    let attempt = rcpt("192.0.2.25", "news@sender.example", "alice@example.com");
    {
        let server = world.serve(documents(&[]), world.config()).await;
        let mut client = server.client().await;
        assert!(is_greylisted(&ask(&mut client, &attempt).await));
    }
    world.clock.advance(DELAY);
    let server = world.serve(documents(&[]), world.config()).await;
    let mut client = server.client().await;
    assert_eq!(ask(&mut client, &attempt).await, "dunno", "the first attempt was remembered across the restart");
}

#[tokio::test]
async fn authenticated_and_trusted_clients_are_never_greylisted() {
    let world = World::new();
    let mut config = world.config();
    config.trusted_networks = vec!["10.0.0.0/8".parse().unwrap()];
    let server = world.serve(documents(&[]), config).await;
    let mut client = server.client().await;
    for recipient_idx in 0..5 {
        let recipient = format!("someone{recipient_idx}@elsewhere.example");
        assert_eq!(ask(&mut client, &submission("alice@example.com", &recipient, "s1")).await, "dunno");
        assert_eq!(ask(&mut client, &submission("alice@example.com", "bob@example.com", "s2")).await, "dunno");
    }
    assert_eq!(ask(&mut client, &rcpt("10.1.2.3", "monitor@example.com", "alice@example.com")).await, "dunno");
    assert!(is_greylisted(&ask(&mut client, &rcpt("11.1.2.3", "monitor@example.com", "alice@example.com")).await));
}

#[tokio::test]
async fn domains_and_mailboxes_opt_out_of_greylisting() {
    let world = World::new();
    let off = PolicySettings { greylisting: Some(false), ..PolicySettings::default() };
    let on = PolicySettings { greylisting: Some(true), ..PolicySettings::default() };
    let server = world
        .serve(
            documents(&[
                with_policy(domain("example.org"), off),
                with_policy(mailbox("bob@example.com"), off),
                with_policy(mailbox("erin@example.org"), on),
                mailbox("frank@example.org"),
                listing("domain:example.com:allow:sender-domain:partner.example"),
            ]),
            world.config(),
        )
        .await;
    let mut client = server.client().await;
    let answer = |recipient: &str| rcpt("192.0.2.25", "news@sender.example", recipient);
    assert_eq!(ask(&mut client, &answer("frank@example.org")).await, "dunno", "the domain opted out");
    assert_eq!(ask(&mut client, &answer("nobody@example.org")).await, "dunno", "also for unknown addresses");
    assert!(is_greylisted(&ask(&mut client, &answer("erin@example.org")).await), "erin opted back in");
    assert_eq!(ask(&mut client, &answer("bob@example.com")).await, "dunno", "bob opted out");
    assert_eq!(ask(&mut client, &answer("bob@example.net")).await, "dunno", "through the alias domain too");
    assert!(is_greylisted(&ask(&mut client, &answer("alice@example.com")).await));
    // An allow listing skips greylisting.
    let partner = rcpt("192.0.2.25", "orders@partner.example", "alice@example.com");
    assert_eq!(ask(&mut client, &partner).await, "dunno");

    // With greylisting off by default, only those who opt in are greylisted.
    drop(client);
    drop(server);
    let other = World::new();
    let server = other
        .serve(
            documents(&[with_policy(mailbox("erin@example.org"), on)]),
            PolicyConfig { greylisting: false, ..other.config() },
        )
        .await;
    let mut client = server.client().await;
    assert_eq!(ask(&mut client, &answer("alice@example.com")).await, "dunno");
    assert!(is_greylisted(&ask(&mut client, &answer("erin@example.org")).await));
}

#[tokio::test]
async fn the_message_over_the_rate_limit_is_deferred() {
    let world = World::new();
    let limits = PolicySettings { messages_per_hour: Some(3), ..PolicySettings::default() };
    let config = PolicyConfig { messages_per_hour: Some(5), recipients_per_hour: Some(8), ..world.config() };
    let server = world.serve(documents(&[with_policy(mailbox("alice@example.com"), limits)]), config).await;
    let mut client = server.client().await;
    // Alice's own limit: three messages an hour.
    for message_idx in 0..3 {
        let instance = format!("alice-{message_idx}");
        assert_eq!(ask(&mut client, &submission("alice@example.com", "x@elsewhere.example", &instance)).await, "dunno");
        assert_eq!(ask(&mut client, &end_of_message("alice@example.com", &instance, 1)).await, "dunno");
    }
    assert_eq!(
        ask(&mut client, &submission("alice@example.com", "x@elsewhere.example", "alice-3")).await,
        "450 4.7.1 Sending limit reached: 3 messages in the last 60 minutes (at most 3); try again later"
    );
    // Bob has the configured defaults: five messages, eight recipients.
    for message_idx in 0..4 {
        let instance = format!("bob-{message_idx}");
        assert_eq!(ask(&mut client, &submission("bob@example.com", "x@elsewhere.example", &instance)).await, "dunno");
        assert_eq!(ask(&mut client, &end_of_message("bob@example.com", &instance, 2)).await, "dunno");
    }
    // Eight recipients sent: the ninth is deferred, whatever the message.
    assert_eq!(
        ask(&mut client, &submission("bob@example.com", "y@elsewhere.example", "bob-4")).await,
        "450 4.7.1 Sending limit reached: 8 recipients in the last 60 minutes (at most 8); try again later"
    );
    // An hour later, the window has moved on.
    world.clock.advance(Duration::from_secs(3600));
    assert_eq!(ask(&mut client, &submission("alice@example.com", "x@elsewhere.example", "alice-4")).await, "dunno");
    assert_eq!(ask(&mut client, &submission("bob@example.com", "y@elsewhere.example", "bob-5")).await, "dunno");
}

#[tokio::test]
async fn rate_limit_counts_survive_a_restart() {
    let world = World::new();
    let config = PolicyConfig { messages_per_hour: Some(2), ..world.config() };
    {
        let server = world.serve(documents(&[]), config.clone()).await;
        let mut client = server.client().await;
        for instance in ["a", "b"] {
            assert_eq!(
                ask(&mut client, &submission("alice@example.com", "x@elsewhere.example", instance)).await,
                "dunno"
            );
            assert_eq!(ask(&mut client, &end_of_message("alice@example.com", instance, 1)).await, "dunno");
        }
    }
    let server = world.serve(documents(&[]), config).await;
    let mut client = server.client().await;
    let answer = ask(&mut client, &submission("alice@example.com", "x@elsewhere.example", "c")).await;
    assert!(answer.starts_with("450 4.7.1 Sending limit reached: 2 messages"), "{answer}");
}

#[tokio::test]
async fn before_the_index_is_ready_nothing_is_refused_for_good() {
    let world = World::new();
    let index = Arc::new(Index::default());
    let server = Server::start(world.dir.path(), index, world.clock.clone(), world.config()).await;
    let mut client = server.client().await;
    assert_eq!(
        ask(&mut client, &rcpt("192.0.2.25", "spam@bad.example", "alice@example.com")).await,
        format!("defer_if_permit {NOT_READY_TEXT}")
    );
    assert_eq!(ask(&mut client, &submission("alice@example.com", "x@elsewhere.example", "s")).await, "dunno");

    // Once the index is published, listings apply at once.
    server.index.publish(Snapshot::from_documents(documents(&[listing(
        "mailbox:alice@example.com:block:sender:spam@bad.example",
    )])));
    let answer = ask(&mut client, &rcpt("192.0.2.25", "spam@bad.example", "alice@example.com")).await;
    assert!(answer.starts_with("554 5.7.1"), "{answer}");
}

#[tokio::test]
async fn other_states_and_incomplete_requests_get_dunno() {
    let world = World::new();
    let server = world.serve(documents(&[]), world.config()).await;
    let mut client = server.client().await;
    for state in [ProtocolState::Connect, ProtocolState::Mail, ProtocolState::Data, ProtocolState::Other("X".into())] {
        let request =
            PolicyRequest { protocol_state: Some(state), ..rcpt("192.0.2.25", "a@b.example", "alice@example.com") };
        assert_eq!(client.ask(&request).await.unwrap(), Action::Dunno);
    }
    let no_recipient = PolicyRequest { recipient: None, ..rcpt("192.0.2.25", "a@b.example", "alice@example.com") };
    assert_eq!(client.ask(&no_recipient).await.unwrap(), Action::Dunno);
    let no_client = PolicyRequest { client_address: None, ..rcpt("192.0.2.25", "a@b.example", "alice@example.com") };
    assert_eq!(client.ask(&no_client).await.unwrap(), Action::Dunno);
    let garbage_client = PolicyRequest {
        client_address: Some("not-an-ip".into()),
        ..rcpt("192.0.2.25", "a@b.example", "alice@example.com")
    };
    assert_eq!(client.ask(&garbage_client).await.unwrap(), Action::Dunno);
    let bare = PolicyRequest::default();
    assert_eq!(client.ask(&bare).await.unwrap(), Action::Dunno);
    // An END-OF-MESSAGE without a login counts nothing.
    let anonymous_end = PolicyRequest { sasl_username: Some(String::new()), ..end_of_message("x", "i", 3) };
    assert_eq!(client.ask(&anonymous_end).await.unwrap(), Action::Dunno);
}
