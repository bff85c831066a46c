//! couchmail stopped under running Postfix and Dovecot: mail is deferred
//! (4xx, never 5xx), logins fail temporarily (never as a wrong password),
//! and once couchmail is back the retried mail is accepted and delivered,
//! with nothing bounced and nothing left in the queue. Also: `up` stops
//! its daemons on SIGTERM and leaves no process behind.

use std::time::{Duration, Instant};

use couchmail_testkit::stack::{Daemons, MailStack, StackOptions, fresh_client_ip, process, smtp};

use super::support::{DELIVERY, PASSWORD, domain_with_mailboxes, outside_sender, own, subject};

/// How long after Postfix's reload a retried delivery must be accepted.
const RETRY_LIMIT: Duration = Duration::from_secs(20);

/// Sends `subject` from `sender` to `user`: with `until_accepted`, again
/// every half second until accepted; every refusal must be 4xx.
fn retry(stack: &MailStack, sender: &str, user: &str, subject: &str, until_accepted: bool) {
    let message = smtp::message(sender, user, subject, "retried");
    let started = Instant::now();
    let mut deferrals = Vec::new();
    loop {
        let mut client = stack.smtp();
        client.ehlo("client.e2e.test").unwrap();
        let outcome = client.send(sender, &[user], &message).unwrap();
        client.quit();
        let Err(refused) = outcome else { return };
        assert!(!refused.reply.is_permanent(), "a retry after the outage: {refused}\n{}", stack.diagnostics());
        if !until_accepted {
            return;
        }
        deferrals.push(format!("{:.1} s: {refused}", started.elapsed().as_secs_f64()));
        assert!(
            started.elapsed() < RETRY_LIMIT,
            "no retry accepted within {RETRY_LIMIT:?}: {deferrals:#?}\n{}",
            stack.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn mail_is_deferred_while_couchmail_is_down_and_delivered_after_without_bounces() {
    let Some(stack) = own(StackOptions { daemons: Daemons::Harness }) else { return };
    domain_with_mailboxes(&stack, "outage.test", &["alice", "bob"]);
    let user = "alice@outage.test";
    let before = subject("before the outage");
    stack.deliver("sender@outside.example", user, &before);
    stack.expect_message(user, PASSWORD, "INBOX", &before, DELIVERY);

    let status = stack.stop_couchmail().unwrap_or_else(|err| panic!("{err}\n{}", stack.diagnostics()));
    assert_eq!(status, 0, "couchmail's exit status on SIGTERM\n{}", stack.diagnostics());

    // A remote server tries to deliver: every answer must say "later", none "never".
    let during = subject("sent during the outage");
    let sender = outside_sender();
    let mut client = stack.smtp();
    let ehlo = client.ehlo("client.e2e.test").unwrap();
    assert_eq!(ehlo.code, 250, "{ehlo}");
    let mail = client.mail_from(&sender).unwrap();
    assert!(!mail.is_permanent(), "MAIL during the outage answered {mail}\n{}", stack.diagnostics());
    if mail.is_positive() {
        let rcpt = client.rcpt_to(user).unwrap();
        assert!(rcpt.is_transient(), "RCPT during the outage answered {rcpt}\n{}", stack.diagnostics());
    }
    client.quit();

    // bob never logged in, so nothing is cached: Dovecot must ask couchmail and must not call it a wrong password.
    let login = stack.imap_login("bob@outage.test", PASSWORD, fresh_client_ip());
    assert!(!login.is_ok(), "a login without couchmail succeeded: {login}");
    assert!(
        login.text.contains("UNAVAILABLE") && !login.text.contains("AUTHENTICATIONFAILED"),
        "a login without couchmail must fail temporarily: {login}\n{}",
        stack.diagnostics()
    );

    stack.start_couchmail().unwrap_or_else(|err| panic!("{err}\n{}", stack.diagnostics()));
    // Another server's mail is accepted at once: couchmail answers Postfix again.
    let other_sender = outside_sender();
    let mut client = stack.smtp();
    client.ehlo("client.e2e.test").unwrap();
    let other = subject("first after the outage");
    let accepted = client.send(&other_sender, &[user], &smtp::message(&other_sender, user, &other, "hi")).unwrap();
    assert!(accepted.is_ok(), "right after the restart: {}\n{}", accepted.unwrap_err(), stack.diagnostics());
    client.quit();

    // The deferred envelope, retried. Postfix's smtpd caches a failed address resolution per
    // (sender, recipient) for the life of its process, so a retry that reaches the same smtpd
    // still gets 451 (never 5xx). A real server retries minutes later, when that process has
    // gone (max_idle, max_use); `postfix reload` recycles the processes to stand for that time.
    retry(&stack, &sender, user, &during, false);
    stack.postfix_reload();
    retry(&stack, &sender, user, &during, true);
    stack.expect_message(user, PASSWORD, "INBOX", &other, DELIVERY);
    stack.expect_message(user, PASSWORD, "INBOX", &during, DELIVERY);
    let bob = stack.imap_login("bob@outage.test", PASSWORD, fresh_client_ip());
    assert!(bob.is_ok(), "bob after the outage: {bob}\n{}", stack.diagnostics());

    let log = stack.postfix_log();
    assert!(!log.contains("status=bounced"), "Postfix bounced mail:\n{log}");
    let queue = stack.postqueue();
    assert!(queue.contains("Mail queue is empty"), "Postfix's queue is not empty:\n{queue}");
    stack.stop().unwrap_or_else(|err| panic!("the harness's stop: {err}"));
}

#[test]
fn up_runs_postfix_and_dovecot_and_stops_them_all_on_sigterm() {
    let Some(stack) = own(StackOptions::default()) else { return };
    let root = stack.root().to_owned();
    let postfix_master = process::read_pid_file(&stack.data_dir().join("postfix/spool/pid/master.pid"));
    let dovecot_master = process::read_pid_file(&stack.runtime_dir().join("dovecot/base/master.pid"));
    let running: Vec<u32> = [postfix_master, dovecot_master].into_iter().flatten().collect();
    assert_eq!(running.len(), 2, "pid files of Postfix and Dovecot under {}\n{}", root.display(), stack.diagnostics());
    for pid in &running {
        assert!(process::process_info(*pid).is_some(), "master {pid} is not running\n{}", stack.diagnostics());
    }
    // stop() sends SIGTERM to couchmail, wants exit status 0 and no process of the stack left.
    stack.stop().unwrap_or_else(|err| panic!("{err}"));
    for pid in running {
        let info = process::process_info(pid);
        assert!(
            info.as_ref()
                .is_none_or(|info| !info.command_line.contains("master") && !info.command_line.contains("dovecot")),
            "master {pid} survived the stop: {info:?}"
        );
    }
    assert!(!root.exists(), "the harness removes a stack that stopped cleanly");
}
