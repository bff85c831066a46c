//! Sieve scripts stored through the CLI and through the REST API file
//! matching mail into a folder at delivery; replacing a script changes
//! where the next message goes.

use serde_json::json;

use super::support::{DELIVERY, PASSWORD, domain_with_mailboxes, shared, subject, wait_for_active_sieve};

/// A script that files mail whose subject contains `needle` into `folder`.
fn file_into(needle: &str, folder: &str) -> String {
    format!(
        "require \"fileinto\";\r\nif header :contains \"subject\" \"{needle}\" {{\r\n  fileinto \"{folder}\";\r\n}}\r\n"
    )
}

#[test]
fn a_sieve_script_from_the_cli_files_mail_and_its_replacement_changes_the_next_delivery() {
    let Some(stack) = shared() else { return };
    domain_with_mailboxes(stack, "sieve-cli.test", &["alice"]);
    let user = "alice@sieve-cli.test";
    let script = stack.root().join("sieve-cli-filter.sieve");
    std::fs::write(&script, file_into("[report]", "Reports")).unwrap();
    stack.cli_ok(&["sieve", "put", user, "filter", &script.to_string_lossy(), "--activate"]);
    wait_for_active_sieve(stack, user, &file_into("[report]", "Reports"));

    let first = subject("[report] first");
    stack.deliver("sender@outside.example", user, &first);
    stack.expect_message(user, PASSWORD, "Reports", &first, DELIVERY);
    assert_eq!(stack.count_messages(user, PASSWORD, "INBOX", &first), 0, "filed mail is not in INBOX too");
    let other = subject("not a report");
    stack.deliver("sender@outside.example", user, &other);
    stack.expect_message(user, PASSWORD, "INBOX", &other, DELIVERY);

    std::fs::write(&script, file_into("[report]", "Archive")).unwrap();
    stack.cli_ok(&["sieve", "put", user, "filter", &script.to_string_lossy(), "--activate"]);
    wait_for_active_sieve(stack, user, &file_into("[report]", "Archive"));
    let second = subject("[report] second");
    stack.deliver("sender@outside.example", user, &second);
    stack.expect_message(user, PASSWORD, "Archive", &second, DELIVERY);
    assert_eq!(stack.count_messages(user, PASSWORD, "Reports", &second), 0, "the old script ran");
}

#[test]
fn a_sieve_script_from_the_api_files_mail_and_its_replacement_changes_the_next_delivery() {
    let Some(stack) = shared() else { return };
    domain_with_mailboxes(stack, "sieve-api.test", &["bob"]);
    let user = "bob@sieve-api.test";
    let api = stack.api();

    let created = api.post(
        &format!("/mailboxes/{user}/sieve"),
        &json!({ "name": "sorter", "script": file_into("[invoice]", "Invoices") }),
    );
    assert_eq!(created.status, 201, "{created:?}");
    let mailbox = api.get(&format!("/mailboxes/{user}"));
    assert_eq!(mailbox.status, 200, "{mailbox:?}");
    let mut settings = mailbox.body.clone();
    settings["sieve_active"] = json!("sorter");
    let activated = api.put(&format!("/mailboxes/{user}"), &settings, mailbox.etag());
    assert_eq!(activated.status, 200, "{activated:?}");
    wait_for_active_sieve(stack, user, &file_into("[invoice]", "Invoices"));

    let first = subject("[invoice] first");
    stack.deliver("sender@outside.example", user, &first);
    stack.expect_message(user, PASSWORD, "Invoices", &first, DELIVERY);

    let replaced = api.put(
        &format!("/mailboxes/{user}/sieve/sorter"),
        &json!({ "script": file_into("[invoice]", "Paid") }),
        created.etag(),
    );
    assert_eq!(replaced.status, 200, "{replaced:?}");
    wait_for_active_sieve(stack, user, &file_into("[invoice]", "Paid"));
    let second = subject("[invoice] second");
    stack.deliver("sender@outside.example", user, &second);
    stack.expect_message(user, PASSWORD, "Paid", &second, DELIVERY);
    assert_eq!(stack.count_messages(user, PASSWORD, "Invoices", &second), 0, "the old script ran");
}
