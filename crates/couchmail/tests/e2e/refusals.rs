//! What port 25 refuses, and at which step: unknown recipients and other
//! domains at RCPT, and AUTH altogether.

use super::support::{domain_with_mailboxes, outside_sender, rcpt_reply, shared, wait_for_rcpt};

#[test]
fn an_unknown_recipient_is_refused_at_rcpt_with_550() {
    let Some(stack) = shared() else { return };
    domain_with_mailboxes(stack, "refuse.test", &["alice"]);
    stack.cli_ok(&["domain-alias", "add", "refuse-alias.test", "--target", "refuse.test"]);
    wait_for_rcpt(stack, "alice@refuse-alias.test", 250);
    for recipient in ["nobody@refuse.test", "nobody@refuse-alias.test"] {
        let reply = rcpt_reply(stack, recipient);
        assert_eq!(reply.code, 550, "RCPT TO:<{recipient}> answered {reply}\n{}", stack.diagnostics());
        assert!(reply.lines[0].starts_with("5.1.1"), "{reply}");
    }
    // The same session shape accepts a mailbox that exists: the 550 above is about the recipient.
    let reply = rcpt_reply(stack, "alice@refuse.test");
    assert_eq!(reply.code, 250, "{reply}");
}

#[test]
fn a_domain_we_do_not_serve_is_refused_as_relaying() {
    let Some(stack) = shared() else { return };
    let reply = rcpt_reply(stack, "someone@not-served.example");
    assert_eq!(reply.code, 554, "RCPT to a foreign domain answered {reply}\n{}", stack.diagnostics());
    assert!(reply.lines[0].contains("Relay access denied"), "{reply}");
}

#[test]
fn port_25_offers_no_auth_before_or_after_starttls() {
    let Some(stack) = shared() else { return };
    let tls = stack.tls();
    let mut client = stack.smtp();
    let ehlo = client.ehlo("client.e2e.test").unwrap();
    assert!(ehlo.has_extension("STARTTLS"), "port 25 offers STARTTLS: {ehlo}");
    assert!(!ehlo.has_extension("AUTH"), "port 25 offers AUTH: {ehlo}");
    let starttls = client.starttls(&tls).unwrap();
    assert_eq!(starttls.code, 220, "{starttls}");
    let ehlo = client.ehlo("client.e2e.test").unwrap();
    assert!(!ehlo.has_extension("AUTH"), "port 25 offers AUTH after STARTTLS: {ehlo}");
    let auth = client.auth_plain("alice@refuse.test", "whatever-it-is").unwrap();
    assert_eq!(auth.code, 503, "AUTH on port 25 answered {auth}");
    // Without AUTH there is no way to relay, TLS or not.
    let mail = client.mail_from(&outside_sender()).unwrap();
    assert_eq!(mail.code, 250, "{mail}");
    let rcpt = client.rcpt_to("someone@not-served.example").unwrap();
    assert_eq!(rcpt.code, 554, "relay over TLS on port 25 answered {rcpt}");
    client.quit();
}
