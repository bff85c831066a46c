//! Mail over port 25 reaches the right mailboxes, read back over IMAP:
//! directly, through a multi-target alias, a catch-all, a domain alias and
//! plus-addressing.

use super::support::{DELIVERY, PASSWORD, domain_with_mailboxes, shared, subject, wait_for_rcpt};

#[test]
fn mail_to_a_mailbox_is_delivered_and_read_back_over_imap() {
    let Some(stack) = shared() else { return };
    domain_with_mailboxes(stack, "deliver.test", &["alice"]);
    let subject = subject("plain delivery");
    stack.deliver("sender@outside.example", "alice@deliver.test", &subject);
    let headers = stack.expect_message("alice@deliver.test", PASSWORD, "INBOX", &subject, DELIVERY);
    assert!(headers.contains(&format!("Subject: {subject}")), "{headers}");
    assert!(headers.contains("To: <alice@deliver.test>"), "{headers}");
}

#[test]
fn a_multi_target_alias_delivers_to_every_target() {
    let Some(stack) = shared() else { return };
    domain_with_mailboxes(stack, "alias.test", &["alice", "bob"]);
    stack.cli_ok(&["alias", "add", "team@alias.test", "--to", "alice@alias.test", "--to", "bob@alias.test"]);
    wait_for_rcpt(stack, "team@alias.test", 250);
    let subject = subject("to the team");
    stack.deliver("sender@outside.example", "team@alias.test", &subject);
    for user in ["alice@alias.test", "bob@alias.test"] {
        let headers = stack.expect_message(user, PASSWORD, "INBOX", &subject, DELIVERY);
        assert!(headers.contains("To: <team@alias.test>"), "{user}: {headers}");
    }
}

#[test]
fn a_catch_all_takes_unknown_local_parts_but_never_a_mailbox() {
    let Some(stack) = shared() else { return };
    domain_with_mailboxes(stack, "catchall.test", &["alice", "bob"]);
    stack.cli_ok(&["alias", "add", "@catchall.test", "--to", "alice@catchall.test"]);
    wait_for_rcpt(stack, "whoever-this-is@catchall.test", 250);

    let stray = subject("to nobody in particular");
    stack.deliver("sender@outside.example", "whoever-this-is@catchall.test", &stray);
    stack.expect_message("alice@catchall.test", PASSWORD, "INBOX", &stray, DELIVERY);

    let for_bob = subject("for bob himself");
    stack.deliver("sender@outside.example", "bob@catchall.test", &for_bob);
    stack.expect_message("bob@catchall.test", PASSWORD, "INBOX", &for_bob, DELIVERY);
    // Postfix delivered bob's copy already: had the catch-all swallowed it, alice would have it by now.
    assert_eq!(stack.count_messages("alice@catchall.test", PASSWORD, "INBOX", &for_bob), 0);
}

#[test]
fn a_domain_alias_reaches_the_same_local_part_in_the_target_domain() {
    let Some(stack) = shared() else { return };
    domain_with_mailboxes(stack, "target.test", &["alice"]);
    stack.cli_ok(&["domain-alias", "add", "other-name.test", "--target", "target.test"]);
    wait_for_rcpt(stack, "alice@other-name.test", 250);
    let subject = subject("through the domain alias");
    stack.deliver("sender@outside.example", "alice@other-name.test", &subject);
    let headers = stack.expect_message("alice@target.test", PASSWORD, "INBOX", &subject, DELIVERY);
    assert!(headers.contains("To: <alice@other-name.test>"), "{headers}");
}

#[test]
fn plus_addressing_reaches_the_inbox_of_the_plain_address() {
    let Some(stack) = shared() else { return };
    domain_with_mailboxes(stack, "plus.test", &["alice"]);
    let subject = subject("tagged");
    stack.deliver("sender@outside.example", "alice+newsletters@plus.test", &subject);
    let headers = stack.expect_message("alice@plus.test", PASSWORD, "INBOX", &subject, DELIVERY);
    assert!(headers.contains("To: <alice+newsletters@plus.test>"), "{headers}");
    assert_eq!(
        stack.count_messages("alice@plus.test", PASSWORD, "newsletters", &subject),
        0,
        "the tag must not become a folder"
    );
}
