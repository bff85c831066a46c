//! The policy service of `couchmail up` asked by a real Postfix (issue #5): greylisting of untrusted clients,
//! auto-allow, no greylisting after login, greylisting state across a restart of couchmail, block listings per
//! mailbox and per domain refused at RCPT, and the hourly message limit of a mailbox over submission.
//!
//! The stack's `[policy]` trusts no network (so that clients on 127/8 are greylisted), greylists for 2 s and
//! auto-allows a client network after 1 passed triplet. 127.0.0.1, from which the harness probes and sets up,
//! is on the greylisting allowlist (`allow_clients`): it is never greylisted, yet listings still apply to it.
//! Every client below comes from its own /24 in 127/8, because greylisting and auto-allow count per /24.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use couchmail_testkit::stack::{MailStack, Reply, StackExtras, StackOptions, fresh_client_ip, smtp};

use super::support::{DELIVERY, PASSWORD, binary, domain_with_mailboxes, poll, runnable, subject, wait_for_rcpt};

/// The greylisting delay of the test's stack.
const DELAY: Duration = Duration::from_secs(2);
/// How long a retry after the delay may take to be accepted.
const RETRY_WAIT: Duration = Duration::from_secs(10);
/// How long a new listing or limit may take to reach the policy service through the index.
const LIVE_WAIT: Duration = Duration::from_secs(5);

/// A client address in a /24 of its own.
fn client(third: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 77, third, 5))
}

/// The reply to `RCPT TO:<recipient>` from `source` with `sender`, in a fresh session on port 25.
fn rcpt_from(stack: &MailStack, source: IpAddr, sender: &str, recipient: &str) -> Reply {
    let mut session = stack.smtp_from(source);
    let ehlo = session.ehlo("client.e2e.test").unwrap();
    assert_eq!(ehlo.code, 250, "EHLO answered {ehlo}");
    let mail = session.mail_from(sender).unwrap();
    assert!(mail.is_positive(), "MAIL FROM:<{sender}> answered {mail}\n{}", stack.diagnostics());
    let reply = session.rcpt_to(recipient).unwrap();
    session.quit();
    reply
}

/// Sends a whole message from `source` on port 25; the reply of the step that refused it, if any.
fn send_from(stack: &MailStack, source: IpAddr, sender: &str, recipient: &str, subject: &str) -> Result<(), Reply> {
    let mut session = stack.smtp_from(source);
    session.ehlo("client.e2e.test").unwrap();
    let message = smtp::message(sender, recipient, subject, "Sent by the policy end-to-end test.");
    let sent = session.send(sender, &[recipient], &message).unwrap();
    session.quit();
    sent.map(|_| ()).map_err(|refused| refused.reply)
}

/// Asserts that `reply` is a greylisting deferral.
fn assert_greylisted(stack: &MailStack, reply: &Reply, what: &str) {
    assert!(
        matches!(reply.code, 450 | 451) && reply.to_string().contains("Greylisted"),
        "{what}: expected a greylisting deferral, got {reply}\n{}",
        stack.diagnostics()
    );
}

/// Retries `RCPT` until it is accepted, at most [`RETRY_WAIT`]; answers how long after `first_try` it was.
fn accepted_after(stack: &MailStack, source: IpAddr, sender: &str, recipient: &str, first_try: Instant) -> Duration {
    let mut last = None;
    let accepted = poll(RETRY_WAIT, || {
        let reply = rcpt_from(stack, source, sender, recipient);
        let done = reply.code == 250;
        last = Some(reply);
        if !done {
            std::thread::sleep(Duration::from_millis(200));
        }
        done.then(|| first_try.elapsed())
    });
    match accepted {
        Some((elapsed, _)) => elapsed,
        None => panic!(
            "{sender} -> {recipient} from {source} never accepted; last: {}\n{}",
            last.map(|reply| reply.to_string()).unwrap_or_default(),
            stack.diagnostics()
        ),
    }
}

/// Polls `RCPT` from 127.0.0.1 until it answers `code`.
fn wait_for_rcpt_code(stack: &MailStack, sender: &str, recipient: &str, code: u16) -> Reply {
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut last = None;
    let found = poll(LIVE_WAIT, || {
        let reply = rcpt_from(stack, localhost, sender, recipient);
        let done = reply.code == code;
        last = Some(reply.clone());
        done.then_some(reply)
    });
    match found {
        Some((reply, _)) => reply,
        None => panic!(
            "{sender} -> {recipient} never answered {code}; last: {}\n{}",
            last.map(|reply| reply.to_string()).unwrap_or_default(),
            stack.diagnostics()
        ),
    }
}

#[test]
fn policy_service_greylists_blocks_and_limits_through_postfix() {
    if !runnable() {
        return;
    }
    let extras = StackExtras {
        netns: None,
        config: format!(
            "\n[policy]\ntrusted_networks = []\nallow_clients = [\"127.0.0.1\"]\ngreylist_delay_secs = {}\n\
             greylist_auto_allow_after = 1\n",
            DELAY.as_secs()
        ),
    };
    let stack = MailStack::try_start_with_extras(binary(), StackOptions::default(), None, extras)
        .unwrap_or_else(|err| panic!("the stack did not start: {err}"));
    domain_with_mailboxes(&stack, "policy.test", &["alice", "bob", "carol"]);
    domain_with_mailboxes(&stack, "other.test", &["dave"]);
    let (alice, bob, carol, dave) = ("alice@policy.test", "bob@policy.test", "carol@policy.test", "dave@other.test");

    // A new client, sender and recipient: deferred, deferred again before the delay, accepted after it.
    let first_client = client(1);
    let first_try = Instant::now();
    let reply = rcpt_from(&stack, first_client, "news@remote.example", alice);
    assert_greylisted(&stack, &reply, "first attempt");
    let reply = rcpt_from(&stack, first_client, "news@remote.example", alice);
    if first_try.elapsed() < DELAY {
        assert_greylisted(&stack, &reply, "a retry before the delay");
    }
    let waited = accepted_after(&stack, first_client, "news@remote.example", alice, first_try);
    assert!(waited >= DELAY, "accepted after {waited:?}, before the {DELAY:?} delay");
    let passed = subject("greylisting passed");
    send_from(&stack, first_client, "news@remote.example", alice, &passed)
        .unwrap_or_else(|reply| panic!("the passed triplet was refused: {reply}\n{}", stack.diagnostics()));
    stack.expect_message(alice, PASSWORD, "INBOX", &passed, DELIVERY);

    // Auto-allow after 1 passed triplet: the same client network with a new sender and recipient goes through.
    let reply = rcpt_from(&stack, IpAddr::V4(Ipv4Addr::new(127, 77, 1, 9)), "other@elsewhere.example", bob);
    assert_eq!(reply.code, 250, "an auto-allowed network was deferred: {reply}\n{}", stack.diagnostics());

    // An authenticated submission from an untrusted, never-seen client is not greylisted.
    let mut submission = stack.submission(fresh_client_ip());
    submission.ehlo("client.e2e.test").unwrap();
    assert_eq!(submission.starttls(&stack.tls()).unwrap().code, 220);
    submission.ehlo("client.e2e.test").unwrap();
    assert_eq!(submission.auth_plain(alice, PASSWORD).unwrap().code, 235);
    let submitted = subject("submitted");
    let sent = submission.send(alice, &[carol], &smtp::message(alice, carol, &submitted, "hi")).unwrap();
    assert!(sent.is_ok(), "a logged-in submission was refused: {}\n{}", sent.unwrap_err(), stack.diagnostics());
    submission.quit();
    stack.expect_message(carol, PASSWORD, "INBOX", &submitted, DELIVERY);

    // Greylisting state survives a restart: a pending triplet passes after the delay without starting over, and
    // a passed one is accepted at once.
    let pending_client = client(2);
    let pending_try = Instant::now();
    let reply = rcpt_from(&stack, pending_client, "later@remote.example", carol);
    assert_greylisted(&stack, &reply, "before the restart");
    assert_eq!(stack.stop_couchmail().unwrap(), 0, "couchmail's exit status at the restart");
    stack.start_couchmail().unwrap();
    // The API answers before Postfix does: wait for port 25 too.
    let smtp_address = stack.address(stack.ports().smtp);
    let listening = poll(Duration::from_secs(30), || std::net::TcpStream::connect(smtp_address).ok());
    assert!(listening.is_some(), "port 25 did not answer after the restart\n{}", stack.diagnostics());
    wait_for_rcpt(&stack, carol, 250);
    let reply = rcpt_from(&stack, first_client, "news@remote.example", alice);
    assert_eq!(reply.code, 250, "a passed triplet was deferred after the restart: {reply}\n{}", stack.diagnostics());
    if let Some(left) = DELAY.checked_sub(pending_try.elapsed()) {
        std::thread::sleep(left);
    }
    let reply = rcpt_from(&stack, pending_client, "later@remote.example", carol);
    assert_eq!(
        reply.code,
        250,
        "the triplet seen before the restart started over ({:?} after its first attempt): {reply}\n{}",
        pending_try.elapsed(),
        stack.diagnostics()
    );
    let reply = rcpt_from(&stack, client(3), "later@remote.example", carol);
    assert_greylisted(&stack, &reply, "a new triplet after the restart");

    // A sender blocked for alice is refused at RCPT for alice only, even from the greylisting allowlist.
    stack.cli_ok(&["listing", "add", "block", "sender", "spam@bad.example", "--mailbox", alice]);
    let refused = wait_for_rcpt_code(&stack, "spam@bad.example", alice, 554);
    assert!(refused.to_string().contains("5.7.1"), "the block answered {refused}");
    let reply = rcpt_from(&stack, IpAddr::V4(Ipv4Addr::LOCALHOST), "spam@bad.example", bob);
    assert_eq!(reply.code, 250, "alice's block refused mail to bob: {reply}");

    // A sender domain blocked for policy.test is refused for its mailboxes, not for other.test's.
    stack.cli_ok(&["listing", "add", "block", "sender-domain", "worse.example", "--domain", "policy.test"]);
    let refused = wait_for_rcpt_code(&stack, "anyone@worse.example", bob, 554);
    assert!(refused.to_string().contains("5.7.1"), "the domain block answered {refused}");
    let reply = rcpt_from(&stack, IpAddr::V4(Ipv4Addr::LOCALHOST), "anyone@worse.example", dave);
    assert_eq!(reply.code, 250, "policy.test's block refused mail to other.test: {reply}");

    // bob may send 2 messages an hour: the third is deferred with a 4xx.
    stack.cli_ok(&["mailbox", "update", bob, "--messages-per-hour", "2"]);
    std::thread::sleep(Duration::from_millis(500));
    let mut submission = stack.submission(fresh_client_ip());
    submission.ehlo("client.e2e.test").unwrap();
    assert_eq!(submission.starttls(&stack.tls()).unwrap().code, 220);
    submission.ehlo("client.e2e.test").unwrap();
    assert_eq!(submission.auth_plain(bob, PASSWORD).unwrap().code, 235);
    for number in 1..=2 {
        let label = subject(&format!("limited {number}"));
        let sent = submission.send(bob, &[dave], &smtp::message(bob, dave, &label, "hi")).unwrap();
        assert!(sent.is_ok(), "message {number} of 2 refused: {}\n{}", sent.unwrap_err(), stack.diagnostics());
    }
    let over = subject("over the limit");
    let sent = submission.send(bob, &[dave], &smtp::message(bob, dave, &over, "hi")).unwrap();
    let refused = sent.expect_err("the third message within the hour was accepted");
    assert!(refused.reply.is_transient(), "the third message answered {refused}, not a 4xx");
    submission.quit();

    stack.stop().unwrap();
}
