//! Submission on 587 (STARTTLS required) and 465 (implicit TLS): AUTH only
//! over TLS, the sender tied to the login (own address and owned aliases
//! yes, anyone else's no), wrong passwords and unauthenticated relaying refused.

use couchmail_testkit::stack::{MailStack, SmtpClient, fresh_client_ip, smtp};

use super::support::{DELIVERY, PASSWORD, domain_with_mailboxes, shared, subject, wait_for_rcpt};

/// Which submission port.
#[derive(Clone, Copy, Debug)]
enum Port {
    /// 587, STARTTLS first.
    StartTls,
    /// 465, TLS from the first byte.
    ImplicitTls,
}

/// A submission session over TLS, after EHLO, not yet authenticated.
fn tls_session(stack: &MailStack, port: Port) -> SmtpClient {
    let source = fresh_client_ip();
    let mut client = match port {
        Port::StartTls => {
            let mut client = stack.submission(source);
            client.ehlo("client.e2e.test").unwrap();
            let starttls = client.starttls(&stack.tls()).unwrap();
            assert_eq!(starttls.code, 220, "STARTTLS on 587 answered {starttls}");
            client
        }
        Port::ImplicitTls => stack.submissions(source),
    };
    assert!(client.is_tls());
    let ehlo = client.ehlo("client.e2e.test").unwrap();
    assert!(ehlo.has_extension("AUTH"), "{port:?}: no AUTH over TLS: {ehlo}");
    client
}

/// Logged in as `user` over TLS.
fn logged_in(stack: &MailStack, port: Port, user: &str) -> SmtpClient {
    let mut client = tls_session(stack, port);
    let auth = client.auth_plain(user, PASSWORD).unwrap();
    assert_eq!(auth.code, 235, "{port:?}: AUTH as {user} answered {auth}\n{}", stack.diagnostics());
    client
}

/// Own address and owned alias are accepted and delivered; someone
/// else's address is refused at RCPT (Postfix checks the sender there).
fn sender_is_tied_to_the_login(stack: &MailStack, port: Port, domain: &str) {
    domain_with_mailboxes(stack, domain, &["alice", "bob"]);
    let (alice, bob, sales) = (format!("alice@{domain}"), format!("bob@{domain}"), format!("sales@{domain}"));
    stack.cli_ok(&["alias", "add", &sales, "--to", &alice]);
    wait_for_rcpt(stack, &sales, 250);
    let mut client = logged_in(stack, port, &alice);

    let as_self = subject("submitted as self");
    let sent = client.send(&alice, &[&bob], &smtp::message(&alice, &bob, &as_self, "hi")).unwrap();
    assert!(sent.is_ok(), "{port:?}: alice sending as herself: {}\n{}", sent.unwrap_err(), stack.diagnostics());

    let as_alias = subject("submitted as an owned alias");
    let sent = client.send(&sales, &[&bob], &smtp::message(&sales, &bob, &as_alias, "hi")).unwrap();
    assert!(sent.is_ok(), "{port:?}: alice sending as her alias: {}\n{}", sent.unwrap_err(), stack.diagnostics());

    let mail = client.mail_from(&bob).unwrap();
    assert_eq!(mail.code, 250, "{mail}");
    let rcpt = client.rcpt_to(&alice).unwrap();
    assert_eq!(rcpt.code, 553, "{port:?}: alice sending as bob answered {rcpt} at RCPT\n{}", stack.diagnostics());
    assert!(rcpt.lines[0].contains("not owned by user"), "{rcpt}");
    client.quit();

    stack.expect_message(&bob, PASSWORD, "INBOX", &as_self, DELIVERY);
    stack.expect_message(&bob, PASSWORD, "INBOX", &as_alias, DELIVERY);
}

#[test]
fn submission_587_sends_as_self_and_owned_alias_but_not_as_someone_else() {
    let Some(stack) = shared() else { return };
    sender_is_tied_to_the_login(stack, Port::StartTls, "submit587.test");
}

#[test]
fn submissions_465_sends_as_self_and_owned_alias_but_not_as_someone_else() {
    let Some(stack) = shared() else { return };
    sender_is_tied_to_the_login(stack, Port::ImplicitTls, "submit465.test");
}

#[test]
fn submission_587_refuses_auth_and_mail_before_starttls() {
    let Some(stack) = shared() else { return };
    domain_with_mailboxes(stack, "cleartext.test", &["alice"]);
    let mut client = stack.submission(fresh_client_ip());
    assert!(!client.is_tls());
    let ehlo = client.ehlo("client.e2e.test").unwrap();
    assert!(ehlo.has_extension("STARTTLS"), "{ehlo}");
    assert!(!ehlo.has_extension("AUTH"), "587 offers AUTH in clear text: {ehlo}");
    let auth = client.auth_plain("alice@cleartext.test", PASSWORD).unwrap();
    assert_eq!(auth.code, 530, "AUTH before STARTTLS answered {auth}");
    let mail = client.mail_from("alice@cleartext.test").unwrap();
    assert_eq!(mail.code, 530, "MAIL before STARTTLS answered {mail}");
    client.quit();
}

#[test]
fn a_wrong_password_is_refused_on_both_submission_ports() {
    let Some(stack) = shared() else { return };
    domain_with_mailboxes(stack, "wrongpass.test", &["alice"]);
    for port in [Port::StartTls, Port::ImplicitTls] {
        let mut client = tls_session(stack, port);
        let auth = client.auth_plain("alice@wrongpass.test", "not the password at all").unwrap();
        assert_eq!(auth.code, 535, "{port:?}: a wrong password answered {auth}\n{}", stack.diagnostics());
        let mail = client.mail_from("alice@wrongpass.test").unwrap();
        assert_eq!(mail.code, 250, "{mail}");
        let rcpt = client.rcpt_to("alice@wrongpass.test").unwrap();
        assert_eq!(rcpt.code, 554, "{port:?}: after a failed AUTH, RCPT answered {rcpt}");
        client.quit();
    }
}

#[test]
fn unauthenticated_clients_cannot_relay_or_submit() {
    let Some(stack) = shared() else { return };
    domain_with_mailboxes(stack, "norelay.test", &["alice"]);
    for port in [Port::StartTls, Port::ImplicitTls] {
        for recipient in ["someone@not-served.example", "alice@norelay.test"] {
            let mut client = tls_session(stack, port);
            let mail = client.mail_from("alice@norelay.test").unwrap();
            assert_eq!(mail.code, 250, "{mail}");
            let rcpt = client.rcpt_to(recipient).unwrap();
            assert_eq!(rcpt.code, 554, "{port:?}: unauthenticated RCPT TO:<{recipient}> answered {rcpt}");
            client.quit();
        }
    }
}
