//! The stack's health as `couchmail up` reports it (issue #7, item 2): an admin
//! mailbox logged in to the web UI sees Postfix and Dovecot running on the
//! dashboard, and `GET /api/v1/status` lists them with their pids.

use serde_json::Value;

use super::support::{self, PASSWORD};

#[test]
fn the_dashboard_and_status_show_postfix_and_dovecot_running() {
    let Some(stack) = support::shared() else { return };
    let address = "root@dashboard.test";
    stack.cli_ok(&["domain", "add", "dashboard.test"]);
    stack.add_mailbox(address, PASSWORD);
    stack.cli_ok(&["mailbox", "update", address, "--add-role", "admin"]);

    let web = stack.web();
    let login = web.log_in(address, PASSWORD);
    assert_eq!(login.status, 303, "the login was not accepted: {login:?}\n{}", stack.diagnostics());
    let dashboard = web.get("/");
    assert_eq!(dashboard.status, 200, "{dashboard:?}");
    for daemon in ["postfix", "dovecot"] {
        let row = format!("data-daemon=\"{daemon}\" data-state=\"running\"");
        assert!(
            dashboard.body.contains(&row),
            "{daemon} is not shown running: {}\n{}",
            dashboard.body,
            stack.diagnostics()
        );
    }
    assert!(dashboard.body.contains("REST API and web UI"), "the listeners are missing: {}", dashboard.body);

    let status = stack.api().get("/status");
    assert_eq!(status.status, 200, "{status:?}");
    let daemons = status.body["daemons"].as_array().unwrap_or_else(|| panic!("no daemons: {status:?}"));
    for name in ["postfix", "dovecot"] {
        let daemon = daemons
            .iter()
            .find(|daemon| daemon["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not listed: {status:?}"));
        assert_eq!(daemon["state"], "running", "{daemon}");
        assert!(daemon["pid"].as_u64().is_some_and(|pid| pid > 1), "{daemon}");
        assert_eq!(daemon["last_exit"], Value::Null, "{daemon}");
    }
    let listeners = status.body["listeners"].as_array().unwrap_or_else(|| panic!("no listeners: {status:?}"));
    assert!(listeners.iter().any(|listener| listener["name"] == "socketmap for Postfix"), "{status:?}");
}
