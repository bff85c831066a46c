//! IMAP over TLS with passwords from couchmail: the one the CLI set, and
//! one changed through the REST API, live at once (the old one dead at once).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use couchmail_testkit::stack::fresh_client_ip;
use serde_json::json;

use super::support::{PASSWORD, domain_with_mailboxes, expect_login_within_live, shared};

#[test]
fn imap_over_tls_logs_in_with_the_password_the_cli_set() {
    let Some(stack) = shared() else { return };
    domain_with_mailboxes(stack, "imap.test", &["alice"]);
    let mut client = stack.imap(IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert!(client.greeting().starts_with("* OK"), "{}", client.greeting());
    let login = client.login("alice@imap.test", PASSWORD).unwrap();
    assert!(login.is_ok(), "LOGIN answered {login}\n{}", stack.diagnostics());
    let mailboxes = client.list().unwrap();
    assert!(mailboxes.iter().any(|name| name == "INBOX"), "{mailboxes:?}");
    let selected = client.select("INBOX").unwrap();
    assert!(selected.is_ok(), "{selected}");
    client.logout();

    let wrong = stack.imap_login("alice@imap.test", "not the password at all", fresh_client_ip());
    assert!(!wrong.is_ok(), "a wrong password logged in: {wrong}");
    assert!(wrong.text.contains("AUTHENTICATIONFAILED"), "{wrong}");
    let unknown = stack.imap_login("nobody@imap.test", PASSWORD, fresh_client_ip());
    assert!(!unknown.is_ok(), "an unknown user logged in: {unknown}");
}

#[test]
fn a_password_changed_through_the_api_works_at_once_and_the_old_one_does_not() {
    let Some(stack) = shared() else { return };
    domain_with_mailboxes(stack, "apipass.test", &["alice"]);
    let user = "alice@apipass.test";
    // Log in first, so that Dovecot's auth cache holds the old answer: the change must beat it.
    let first = stack.imap_login(user, PASSWORD, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert!(first.is_ok(), "{first}\n{}", stack.diagnostics());

    let api = stack.api();
    let mailbox = api.get(&format!("/mailboxes/{user}"));
    assert_eq!(mailbox.status, 200, "{mailbox:?}");
    let new_password = "a brand new passphrase";
    let changed = api.put(&format!("/mailboxes/{user}/password"), &json!({ "password": new_password }), mailbox.etag());
    let since = Instant::now();
    assert_eq!(changed.status, 200, "{changed:?}");

    expect_login_within_live(stack, "new password from the API", since, (user, new_password), true);
    expect_login_within_live(stack, "old password after the API change", since, (user, PASSWORD), false);
}
