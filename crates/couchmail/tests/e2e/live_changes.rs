//! A domain, mailbox or alias added or removed while everything runs is
//! live within one second, without any reload: measured from the moment
//! the CLI returns to the first SMTP RCPT (or IMAP login) that shows it.

use std::time::Instant;

use super::support::{
    PASSWORD, domain_with_mailboxes, expect_login_within_live, expect_rcpt_within_live, rcpt_reply, shared,
};

#[test]
fn a_domain_added_and_removed_is_live_within_a_second() {
    let Some(stack) = shared() else { return };
    let probe = "someone@live-domain.test";
    let before = rcpt_reply(stack, probe);
    assert_eq!(before.code, 554, "before the domain exists: {before}");

    stack.cli_ok(&["domain", "add", "live-domain.test"]);
    // Ours now, so an unknown user there is 550, no longer relaying (554).
    expect_rcpt_within_live(stack, "domain added", Instant::now(), probe, 550);

    stack.cli_ok(&["domain", "rm", "live-domain.test"]);
    expect_rcpt_within_live(stack, "domain removed", Instant::now(), probe, 554);
}

#[test]
fn a_mailbox_added_and_removed_is_live_within_a_second_for_smtp_and_imap() {
    let Some(stack) = shared() else { return };
    domain_with_mailboxes(stack, "live-mailbox.test", &[]);
    let user = "carol@live-mailbox.test";
    assert_eq!(rcpt_reply(stack, user).code, 550, "before the mailbox exists");

    stack.cli_ok_with_input(&["mailbox", "add", user, "--password-stdin"], &format!("{PASSWORD}\n"));
    let since = Instant::now();
    expect_rcpt_within_live(stack, "mailbox added", since, user, 250);
    expect_login_within_live(stack, "mailbox added", since, (user, PASSWORD), true);

    stack.cli_ok(&["mailbox", "rm", user]);
    let since = Instant::now();
    expect_rcpt_within_live(stack, "mailbox removed", since, user, 550);
    expect_login_within_live(stack, "mailbox removed", since, (user, PASSWORD), false);
}

#[test]
fn a_mailbox_made_inactive_stops_receiving_and_logging_in_within_a_second() {
    let Some(stack) = shared() else { return };
    domain_with_mailboxes(stack, "live-inactive.test", &["dave"]);
    let user = "dave@live-inactive.test";
    // Logged in once, so that Dovecot's auth cache holds an answer the change must beat.
    expect_login_within_live(stack, "active mailbox", Instant::now(), (user, PASSWORD), true);

    stack.cli_ok(&["mailbox", "update", user, "--inactive"]);
    let since = Instant::now();
    expect_rcpt_within_live(stack, "mailbox made inactive", since, user, 550);
    expect_login_within_live(stack, "mailbox made inactive", since, (user, PASSWORD), false);
}

#[test]
fn an_alias_added_and_removed_is_live_within_a_second() {
    let Some(stack) = shared() else { return };
    domain_with_mailboxes(stack, "live-alias.test", &["erin"]);
    let alias = "helpdesk@live-alias.test";
    assert_eq!(rcpt_reply(stack, alias).code, 550, "before the alias exists");

    stack.cli_ok(&["alias", "add", alias, "--to", "erin@live-alias.test"]);
    expect_rcpt_within_live(stack, "alias added", Instant::now(), alias, 250);

    stack.cli_ok(&["alias", "rm", alias]);
    expect_rcpt_within_live(stack, "alias removed", Instant::now(), alias, 550);
}
