//! SpamAssassin run by `couchmail up` with real Postfix, Dovecot, spamd and spamass-milter (issue #5): GTUBE is
//! refused at SMTP time and never reaches an INBOX (and with the SMTP-time refusal off, it is filed into Junk at
//! delivery), a normal message does; a user's IMAP move into Junk trains
//! that user's bayes database and no one else's, and a move from Junk to Trash trains nothing; a mailbox's
//! `spam_threshold` from the store reaches its spamd `user_prefs`, and a removed mailbox's spam data goes away.
//!
//! Needs the spam packages (`spamassassin spamd spamc spamass-milter`) besides the stack's; `up` installs what is
//! missing.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use couchmail_supervisor::system::{BayesCounts, bayes_counts};
use couchmail_testkit::stack::{MailStack, StackExtras, StackOptions, smtp};

use super::support::{DELIVERY, PASSWORD, binary, domain_with_mailboxes, poll, runnable, subject};

/// The GTUBE string: any SpamAssassin scores it 1000.
const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
/// A body that scores low without network tests.
const HAM: &str = "Hi Alice,\r\n\r\nare we still on for lunch on Thursday? I can book the usual place for half \
                   past twelve.\r\nBring the draft of the report if you have it.\r\n\r\nCheers,\r\nCarol";

/// `address`'s bayes counters, read with `sa-learn --dump magic` as vmail.
fn bayes(stack: &MailStack, address: &str) -> BayesCounts {
    let site = stack.runtime_dir().join("spamassassin");
    let user_dir = couchmail_render::user_dir(&stack.data_dir().join("spamassassin"), address);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(bayes_counts(&site, &user_dir, "vmail")).unwrap()
}

/// `address`'s spamd `user_prefs` file.
fn user_prefs(stack: &MailStack, address: &str) -> PathBuf {
    couchmail_render::user_dir(&stack.data_dir().join("spamassassin"), address).join("user_prefs")
}

/// Logs in as `user`, runs `commands` after selecting `mailbox` and answers the last response's text.
fn imap_move(stack: &MailStack, user: &str, mailbox: &str, subject: &str, target: &str) {
    let mut client = stack.imap(IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert!(client.login(user, PASSWORD).unwrap().is_ok());
    assert!(client.select(mailbox).unwrap().is_ok());
    let found = client.search(&format!("HEADER SUBJECT \"{subject}\"")).unwrap();
    let first = *found.first().unwrap_or_else(|| panic!("{user}: no {subject:?} in {mailbox}"));
    let moved = client.command(&format!("MOVE {first} {target}")).unwrap();
    assert!(moved.is_ok(), "MOVE to {target} answered {moved}\n{}", stack.diagnostics());
    client.logout();
}

#[test]
fn spam_is_refused_filed_and_trained_per_user() {
    if !runnable() {
        return;
    }
    let extras = StackExtras { netns: None, config: "\n[spam]\nenabled = true\nsmtp_reject_score = 15\n".to_owned() };
    let stack = MailStack::try_start_with_extras(binary(), StackOptions::default(), None, extras)
        .unwrap_or_else(|err| panic!("the stack did not start: {err}"));
    domain_with_mailboxes(&stack, "spam.test", &["alice", "bob"]);
    let (alice, bob) = ("alice@spam.test", "bob@spam.test");

    // GTUBE is refused at SMTP time (above the reject score) and never reaches the INBOX.
    let gtube = subject("gtube");
    let mut session = stack.smtp();
    session.ehlo("client.e2e.test").unwrap();
    let sent = session.send("carol@example.net", &[alice], &smtp::message("carol@example.net", alice, &gtube, GTUBE));
    let refused = sent.unwrap().expect_err("GTUBE was accepted over SMTP");
    assert_eq!(refused.reply.code, 550, "GTUBE answered {refused}\n{}", stack.diagnostics());
    assert!(refused.reply.to_string().contains("5.7.1"), "GTUBE answered {refused}");
    session.quit();

    // A normal message reaches the INBOX.
    let lunch = subject("lunch");
    let mut session = stack.smtp();
    session.ehlo("client.e2e.test").unwrap();
    let sent = session.send("carol@example.net", &[alice], &smtp::message("carol@example.net", alice, &lunch, HAM));
    assert!(sent.unwrap().is_ok(), "a normal message was refused\n{}", stack.diagnostics());
    session.quit();
    stack.expect_message(alice, PASSWORD, "INBOX", &lunch, DELIVERY);
    assert_eq!(stack.count_messages(alice, PASSWORD, "INBOX", &gtube), 0, "GTUBE reached the INBOX");

    // alice's move into Junk trains her database as spam; bob's stays empty; Junk to Trash trains nothing.
    assert_eq!(bayes(&stack, alice), BayesCounts::default());
    imap_move(&stack, alice, "INBOX", &lunch, "Junk");
    let trained = poll(Duration::from_secs(10), || {
        let counts = bayes(&stack, alice);
        (counts.spam == 1).then_some(counts)
    });
    let (alice_counts, _) =
        trained.unwrap_or_else(|| panic!("alice's move into Junk trained nothing\n{}", stack.diagnostics()));
    assert_eq!(alice_counts.ham, 0);
    assert_eq!(bayes(&stack, bob), BayesCounts::default(), "bob's database changed");
    imap_move(&stack, alice, "Junk", &lunch, "Trash");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(bayes(&stack, alice), alice_counts, "a move from Junk to Trash trained alice");

    // A threshold set in the store reaches spamd's user_prefs; removing the mailbox removes its spam data.
    stack.cli_ok(&["mailbox", "update", bob, "--spam-threshold", "3.5"]);
    let prefs = user_prefs(&stack, bob);
    let written = poll(Duration::from_secs(5), || {
        std::fs::read_to_string(&prefs).ok().filter(|text| text.contains("required_score 3.5"))
    });
    assert!(written.is_some(), "bob's user_prefs never said 3.5: {:?}", std::fs::read_to_string(&prefs));
    stack.cli_ok(&["mailbox", "rm", bob, "--cascade"]);
    let removed = poll(Duration::from_secs(5), || (!prefs.exists()).then_some(()));
    assert!(removed.is_some(), "bob's spam data outlived his mailbox");

    stack.stop().unwrap();
}

#[test]
fn spam_under_the_smtp_reject_score_is_filed_into_junk_at_delivery() {
    if !runnable() {
        return;
    }
    // Without the SMTP-time refusal, GTUBE is accepted and the per-recipient scan at delivery files it.
    let extras = StackExtras { netns: None, config: "\n[spam]\nenabled = true\nsmtp_reject_score = 0\n".to_owned() };
    let stack = MailStack::try_start_with_extras(binary(), StackOptions::default(), None, extras)
        .unwrap_or_else(|err| panic!("the stack did not start: {err}"));
    domain_with_mailboxes(&stack, "junk.test", &["alice"]);
    let alice = "alice@junk.test";

    let gtube = subject("gtube");
    let mut session = stack.smtp();
    session.ehlo("client.e2e.test").unwrap();
    let sent = session.send("carol@example.net", &[alice], &smtp::message("carol@example.net", alice, &gtube, GTUBE));
    assert!(sent.unwrap().is_ok(), "GTUBE was refused with the SMTP-time refusal off\n{}", stack.diagnostics());
    session.quit();
    stack.expect_message(alice, PASSWORD, "Junk", &gtube, DELIVERY);
    assert_eq!(stack.count_messages(alice, PASSWORD, "INBOX", &gtube), 0, "GTUBE reached the INBOX");

    stack.stop().unwrap();
}
