//! Issue #5 on the command line: `listing` (blocklists and allowlists by scope) and the mail-policy flags of
//! `domain` and `mailbox` (greylisting, spam thresholds, sending limits), on a SQLite store.

use serde_json::{Value, json};

use crate::Env;

/// A store with `example.com`, its alias domain `example.net`, and mailbox `alice@example.com`.
fn with_alice() -> Env {
    let env = Env::new();
    env.ok(&["domain", "add", "example.com"]);
    env.ok(&["domain-alias", "add", "example.net", "--target", "example.com"]);
    env.ok(&["mailbox", "add", "alice@example.com"]);
    env
}

/// The `key` fields of a `--json listing list`.
fn keys(listed: &Value) -> Vec<&str> {
    listed.as_array().unwrap().iter().map(|listing| listing["key"].as_str().unwrap()).collect()
}

#[test]
fn listings_in_each_scope_are_stored_in_normal_form() {
    let env = with_alice();
    let global = env.json(&["listing", "add", "block", "client", "192.0.2.77/24", "--note", "dictionary attacks"]);
    assert_eq!(global["key"], "global:block:client:192.0.2.0/24");
    assert_eq!(global["scope"], "global");
    assert_eq!(global["action"], "block");
    assert_eq!(global["kind"], "client");
    assert_eq!(global["value"], "192.0.2.0/24");
    assert_eq!(global["note"], "dictionary attacks");
    assert!(global["created"].as_u64().is_some_and(|created| created > 1_700_000_000), "{global}");
    assert!(global["rev"].as_str().is_some_and(|rev| !rev.is_empty()));
    let fields: Vec<&str> = global.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(fields.len(), 8, "{fields:?}");

    let v6 = env.json(&["listing", "add", "allow", "client", "2001:DB8:0:0::1/32"]);
    assert_eq!(v6["key"], "global:allow:client:2001:db8::/32");
    let domain = env.json(&["listing", "add", "allow", "sender-domain", "Partner.EXAMPLE", "--domain", "Example.com"]);
    assert_eq!(domain["key"], "domain:example.com:allow:sender-domain:partner.example");
    assert_eq!(domain["note"], "");
    let idn = env.json(&["listing", "add", "block", "sender-domain", "bücher.example", "--domain", "example.com"]);
    assert_eq!(idn["value"], "xn--bcher-kva.example");
    let mailbox =
        env.json(&["listing", "add", "block", "sender", "Spam@Bad.Example", "--mailbox", "ALICE@example.com"]);
    assert_eq!(mailbox["key"], "mailbox:alice@example.com:block:sender:spam@bad.example");
    assert_eq!(mailbox["scope"], "mailbox:alice@example.com");

    // The document is what the policy service reads: everything in the `_id`, a note and a time in the body.
    let body = env.raw("listing:global:block:client:192.0.2.0/24").unwrap();
    assert_eq!(body["type"], "listing");
    assert_eq!(body["note"], "dictionary attacks");
    assert_eq!(body["created"], global["created"]);
    assert!(env.raw("listing:mailbox:alice@example.com:block:sender:spam@bad.example").is_some());

    let all = env.json(&["listing", "list"]);
    assert_eq!(
        keys(&all),
        [
            "domain:example.com:allow:sender-domain:partner.example",
            "domain:example.com:block:sender-domain:xn--bcher-kva.example",
            "global:allow:client:2001:db8::/32",
            "global:block:client:192.0.2.0/24",
            "mailbox:alice@example.com:block:sender:spam@bad.example",
        ]
    );
    assert_eq!(all[3], global, "a listed entry looks as it did when added");
    let globals = env.json(&["listing", "list", "--global"]);
    assert_eq!(keys(&globals), ["global:allow:client:2001:db8::/32", "global:block:client:192.0.2.0/24"]);
    let of_domain = env.json(&["listing", "list", "--domain", "example.com"]);
    assert_eq!(keys(&of_domain).len(), 3, "the domain's and its mailboxes', not the global ones");
    assert!(keys(&of_domain).iter().all(|key| !key.starts_with("global:")));
    let of_alice = env.json(&["listing", "list", "--mailbox", "alice@example.com"]);
    assert_eq!(keys(&of_alice), ["mailbox:alice@example.com:block:sender:spam@bad.example"]);

    let table = env.ok(&["listing", "list", "--global"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("SCOPE") && lines[0].contains("VALUE") && lines[0].ends_with("NOTE"), "{table}");
    assert!(lines[2].starts_with("global") && lines[2].contains("192.0.2.0/24"), "{table}");
    assert!(lines[2].ends_with("dictionary attacks"), "{table}");
}

#[test]
fn listings_are_named_by_key_or_by_the_words_of_add() {
    let env = with_alice();
    env.ok(&["listing", "add", "block", "sender", "spam@bad.example", "--mailbox", "alice@example.com"]);
    let key = "mailbox:alice@example.com:block:sender:spam@bad.example";
    let by_key = env.json(&["listing", "show", key]);
    let by_words =
        env.json(&["listing", "show", "block", "sender", "SPAM@bad.example", "--mailbox", "alice@example.com"]);
    assert_eq!(by_key, by_words);
    assert_eq!(env.json(&["listing", "show", &format!("listing:{key}")]), by_key, "the whole `_id` works too");
    let shown = env.ok(&["listing", "show", key]);
    assert!(shown.contains(&format!("key:      {key}")) && shown.contains("value:    spam@bad.example"), "{shown}");

    let updated = env.json(&["listing", "update", key, "--note", "ticket 1234"]);
    assert_eq!(updated["note"], "ticket 1234");
    assert_eq!(updated["created"], by_key["created"]);
    assert_ne!(updated["rev"], by_key["rev"]);
    assert_eq!(env.raw(&format!("listing:{key}")).unwrap()["note"], "ticket 1234");

    // The same words without the scope name another (global) listing, which does not exist.
    let stderr = env.fails(&["listing", "rm", "block", "sender", "spam@bad.example"], 3);
    assert!(stderr.contains("listing global:block:sender:spam@bad.example does not exist"), "{stderr}");
    assert!(stderr.contains("hint: `couchmail listing list`"), "{stderr}");
    let removed =
        env.json(&["listing", "remove", "block", "sender", "spam@bad.example", "--mailbox", "alice@example.com"]);
    assert_eq!(removed, json!({ "removed": [format!("listing:{key}")] }));
    assert!(env.raw(&format!("listing:{key}")).is_none());
    env.fails(&["listing", "show", key], 3);
    env.fails(&["listing", "rm", key], 3);

    env.ok(&["listing", "add", "block", "client", "2001:db8::1"]);
    let out = env.ok(&["listing", "rm", "global:block:client:2001:DB8:0::1"]);
    assert_eq!(out, "removed listing:global:block:client:2001:db8::1\n");
    assert_eq!(env.json(&["listing", "list"]), Value::Array(Vec::new()));
}

#[test]
fn the_same_listing_twice_is_a_conflict_however_written() {
    let env = with_alice();
    env.ok(&["listing", "add", "block", "client", "192.0.2.77/24", "--note", "first"]);
    for value in ["192.0.2.1/24", "192.0.2.0/24"] {
        let stderr = env.fails(&["listing", "add", "block", "client", value, "--note", "second"], 4);
        assert!(stderr.contains("listing global:block:client:192.0.2.0/24 already exists"), "{stderr}");
        assert!(stderr.contains("couchmail listing update global:block:client:192.0.2.0/24 --note"), "{stderr}");
    }
    assert_eq!(env.json(&["listing", "show", "global:block:client:192.0.2.0/24"])["note"], "first");
    env.ok(&["listing", "add", "block", "sender", "spam@bad.example", "--domain", "example.com"]);
    env.fails(&["listing", "add", "block", "sender", "SPAM@BAD.EXAMPLE", "--domain", "EXAMPLE.com"], 4);

    // Another action, scope or kind is another listing.
    env.ok(&["listing", "add", "allow", "client", "192.0.2.0/24"]);
    env.ok(&["listing", "add", "block", "client", "192.0.2.0/24", "--domain", "example.com"]);
    env.ok(&["listing", "add", "block", "sender-domain", "bad.example", "--domain", "example.com"]);
    assert_eq!(env.json(&["listing", "list"]).as_array().unwrap().len(), 5);
}

#[test]
fn invalid_listings_exit_5_naming_the_problem() {
    let env = with_alice();
    for (kind, value, says) in [
        ("client", "300.1.1.1", "not an IPv4 or IPv6 address"),
        ("client", "192.0.2.1/33", "longer than the address"),
        ("client", "::ffff:192.0.2.1", "write `192.0.2.1`"),
        ("client", "bad.example", "not an IPv4 or IPv6 address"),
        ("sender", "not-an-address", "no `@`"),
        ("sender-domain", "not a domain", "invalid sender-domain"),
    ] {
        let stderr = env.fails(&["listing", "add", "block", kind, value], 5);
        assert!(stderr.contains(&format!("error: invalid {kind} `{value}`")), "{stderr}");
        assert!(stderr.contains(says), "{value}: {stderr}");
        assert!(stderr.contains("hint: a"), "{stderr}");
    }
    let long_note = "x".repeat(257);
    let stderr = env.fails(&["listing", "add", "block", "client", "192.0.2.1", "--note", &long_note], 5);
    assert!(stderr.contains("note") && stderr.contains("256"), "{stderr}");
    let stderr = env.fails(&["listing", "show", "global:block:client:not-an-ip"], 5);
    assert!(stderr.contains("invalid listing key") && stderr.contains("hint: write the key"), "{stderr}");
    let stderr = env.fails(&["listing", "add", "block", "client", "192.0.2.1", "--mailbox", "alice"], 5);
    assert!(stderr.contains("invalid address `alice`"), "{stderr}");
    assert_eq!(env.json(&["listing", "list"]), Value::Array(Vec::new()), "nothing was written");

    // Words outside a fixed vocabulary, and arguments that do not fit together, are usage errors.
    env.fails(&["listing", "add", "deny", "client", "192.0.2.1"], 2);
    env.fails(&["listing", "add", "block", "helo", "mail.bad.example"], 2);
    env.fails(&["listing", "add", "block", "client", "192.0.2.1", "--domain", "example.com", "--mailbox", "a@b.c"], 2);
    env.fails(&["listing", "rm", "deny", "client", "192.0.2.1"], 2);
    env.fails(&["listing", "rm", "block", "client"], 2);
    env.fails(&["listing", "rm", "global:block:client:192.0.2.1", "--domain", "example.com"], 2);
    env.fails(&["listing", "list", "--global", "--mailbox", "alice@example.com"], 2);
    env.fails(&["listing", "update", "global:block:client:192.0.2.1"], 2);
}

#[test]
fn scoped_listings_need_their_domain_or_mailbox() {
    let env = with_alice();
    let stderr =
        env.fails(&["listing", "add", "block", "sender", "spam@bad.example", "--mailbox", "bob@example.com"], 3);
    assert!(stderr.contains("mailbox bob@example.com does not exist"), "{stderr}");
    assert!(stderr.contains("hint: `couchmail mailbox list`"), "{stderr}");
    let stderr = env.fails(&["listing", "add", "block", "client", "192.0.2.1", "--domain", "nowhere.example"], 3);
    assert!(stderr.contains("domain nowhere.example does not exist"), "{stderr}");
    // An alias domain's mail is its target's: the listing belongs there.
    let stderr = env.fails(&["listing", "add", "block", "client", "192.0.2.1", "--domain", "example.net"], 5);
    assert!(stderr.contains("`example.net` is an alias of `example.com`"), "{stderr}");
    assert!(stderr.contains("hint: use --domain example.com"), "{stderr}");
    assert_eq!(env.json(&["listing", "list"]), Value::Array(Vec::new()));
    env.fails(&["listing", "list", "--mailbox", "bob@example.com"], 3);
    env.fails(&["listing", "list", "--domain", "nowhere.example"], 3);
    assert_eq!(env.json(&["listing", "list", "--mailbox", "alice@example.com"]), Value::Array(Vec::new()));
}

#[test]
fn removing_a_mailbox_or_domain_with_listings_needs_cascade() {
    let env = with_alice();
    env.ok(&["listing", "add", "block", "sender", "spam@bad.example", "--mailbox", "alice@example.com"]);
    env.ok(&["listing", "add", "allow", "client", "198.51.100.0/24", "--domain", "example.com"]);
    env.ok(&["listing", "add", "block", "client", "203.0.113.9"]);
    let mailbox_listing = "listing:mailbox:alice@example.com:block:sender:spam@bad.example";

    let stderr = env.fails(&["mailbox", "rm", "alice@example.com"], 7);
    assert!(stderr.contains(mailbox_listing) && stderr.contains("--cascade"), "{stderr}");
    assert!(env.raw("mailbox:alice@example.com").is_some() && env.raw(mailbox_listing).is_some());
    let removed = env.json(&["mailbox", "rm", "alice@example.com", "--cascade"]);
    assert_eq!(removed["removed"], json!([mailbox_listing, "mailbox:alice@example.com"]));
    assert!(env.raw(mailbox_listing).is_none());

    let domain_listing = "listing:domain:example.com:allow:client:198.51.100.0/24";
    let stderr = env.fails(&["domain", "rm", "example.com"], 7);
    assert!(stderr.contains(domain_listing), "{stderr}");
    let removed = env.json(&["domain", "rm", "example.com", "--cascade"]);
    let removed: Vec<&str> = removed["removed"].as_array().unwrap().iter().map(|id| id.as_str().unwrap()).collect();
    assert!(removed.contains(&domain_listing), "{removed:?}");
    // The global list belongs to no domain.
    assert_eq!(keys(&env.json(&["listing", "list"])), ["global:block:client:203.0.113.9"]);
}

#[test]
fn policy_settings_are_set_shown_and_inherited() {
    let env = Env::new();
    let domain = env.json(&[
        "domain",
        "add",
        "example.com",
        "--greylisting",
        "off",
        "--spam-threshold",
        "5",
        "--spam-reject",
        "15.5",
        "--messages-per-hour",
        "100",
    ]);
    assert_eq!(domain["greylisting"], false);
    assert_eq!(domain["spam_threshold"], 5);
    assert_eq!(domain["spam_reject"], 15.5);
    assert_eq!(domain["messages_per_hour"], 100);
    assert_eq!(domain["recipients_per_hour"], Value::Null);
    assert_eq!(env.json(&["domain", "show", "example.com"]), domain);
    assert_eq!(env.json(&["domain", "list"]), json!([domain]));
    // Stored flat in the body, a whole score as an integer; an inherited setting is absent.
    let body = env.raw("domain:example.com").unwrap();
    assert_eq!(body["spam_threshold"], json!(5));
    assert_eq!(body["spam_reject"], json!(15.5));
    assert!(!body.contains_key("recipients_per_hour"), "{body:?}");

    // A new mailbox inherits everything: its own settings are null, and people see the domain's.
    let alice = env.json(&["mailbox", "add", "alice@example.com"]);
    for field in ["greylisting", "spam_threshold", "spam_reject", "messages_per_hour", "recipients_per_hour"] {
        assert_eq!(alice[field], Value::Null, "{field}");
    }
    let shown = env.ok(&["mailbox", "show", "alice@example.com"]);
    assert!(shown.contains("greylisting:         off (from the domain)"), "{shown}");
    assert!(shown.contains("spam threshold:      5.0 (from the domain)"), "{shown}");
    assert!(shown.contains("recipients per hour: from the configuration"), "{shown}");

    let updated = env.json(&[
        "mailbox",
        "update",
        "alice@example.com",
        "--greylisting",
        "on",
        "--spam-threshold",
        "6.5",
        "--recipients-per-hour",
        "0",
    ]);
    assert_eq!(updated["greylisting"], true);
    assert_eq!(updated["spam_threshold"], 6.5);
    assert_eq!(updated["recipients_per_hour"], 0);
    assert_eq!(updated["spam_reject"], Value::Null);
    assert_eq!(env.json(&["mailbox", "show", "alice@example.com"]), updated);
    assert_eq!(env.json(&["mailbox", "list"])[0], updated);
    let shown = env.ok(&["mailbox", "show", "alice@example.com"]);
    assert!(shown.contains("greylisting:         on\n") && shown.contains("spam threshold:      6.5\n"), "{shown}");
    assert!(shown.contains("spam reject:         15.5 (from the domain)"), "{shown}");

    // `inherit` removes the mailbox's own value, and only the settings named change.
    let inherited = env.json(&["mailbox", "update", "alice@example.com", "--greylisting", "inherit"]);
    assert_eq!(inherited["greylisting"], Value::Null);
    assert_eq!(inherited["spam_threshold"], 6.5);
    assert!(!env.raw("mailbox:alice@example.com").unwrap().contains_key("greylisting"));
    let cleared = env.json(&[
        "domain",
        "update",
        "example.com",
        "--greylisting",
        "inherit",
        "--spam-threshold",
        "inherit",
        "--spam-reject",
        "inherit",
        "--messages-per-hour",
        "inherit",
    ]);
    for field in ["greylisting", "spam_threshold", "spam_reject", "messages_per_hour", "recipients_per_hour"] {
        assert_eq!(cleared[field], Value::Null, "{field}");
    }
    let body = env.raw("domain:example.com").unwrap();
    let mut fields: Vec<&str> = body.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["active", "type"], "a domain that inherits everything is as before issue #5");
    assert!(env.ok(&["domain", "show", "example.com"]).contains("greylisting:         from the configuration"));
}

#[test]
fn invalid_policy_settings_are_refused_and_nothing_changes() {
    let env = Env::new();
    env.ok(&["domain", "add", "example.com", "--spam-threshold", "5"]);
    env.ok(&["mailbox", "add", "alice@example.com"]);
    let before = env.raw("domain:example.com").unwrap();

    let stderr = env.fails(&["domain", "update", "example.com", "--spam-reject", "4"], 5);
    assert!(stderr.contains("the spam reject score (4.0) must be above the spam threshold (5.0)"), "{stderr}");
    assert!(stderr.contains("hint: give a --spam-reject above 5.0"), "{stderr}");
    env.fails(&["domain", "update", "example.com", "--spam-reject", "5"], 5);
    let stderr = env.fails(&["domain", "add", "example.org", "--spam-threshold", "9", "--spam-reject", "8"], 5);
    assert!(stderr.contains("must be above the spam threshold (9.0)"), "{stderr}");
    env.fails(&["domain", "show", "example.org"], 3);
    for (flag, value, says) in [
        ("--spam-threshold", "6.55", "at most one decimal"),
        ("--spam-threshold", "100.1", "between 0.0 and 100.0"),
        ("--spam-reject", "-1", "between 0.0 and 100.0"),
        ("--messages-per-hour", "1000001", "at most 1000000"),
        ("--recipients-per-hour", "4000000", "at most 1000000"),
    ] {
        let stderr = env.fails(&["domain", "update", "example.com", flag, value], 5);
        assert!(stderr.contains(&format!("invalid {flag}")) && stderr.contains(says), "{flag} {value}: {stderr}");
        assert!(stderr.contains("hint:"), "{stderr}");
        env.fails(&["mailbox", "update", "alice@example.com", flag, value], 5);
    }
    assert_eq!(env.raw("domain:example.com").unwrap(), before);
    assert_eq!(env.json(&["mailbox", "show", "alice@example.com"])["spam_threshold"], Value::Null);

    // The mailbox's own threshold and reject score are checked against each other, not against the domain's.
    env.ok(&["mailbox", "update", "alice@example.com", "--spam-reject", "4"]);
    env.fails(&["mailbox", "update", "alice@example.com", "--spam-threshold", "4"], 5);
    env.ok(&["mailbox", "update", "alice@example.com", "--spam-reject", "inherit", "--spam-threshold", "4"]);

    // Not a number or not a word of the vocabulary: usage errors.
    env.fails(&["domain", "update", "example.com", "--spam-threshold", "high"], 2);
    env.fails(&["domain", "update", "example.com", "--messages-per-hour", "-5"], 2);
    env.fails(&["domain", "update", "example.com", "--messages-per-hour", "1.5"], 2);
    env.fails(&["mailbox", "update", "alice@example.com", "--greylisting", "maybe"], 2);
}

#[test]
fn listings_and_settings_survive_export_and_import() {
    let source = with_alice();
    source.ok(&["domain", "update", "example.com", "--spam-threshold", "5", "--spam-reject", "12.5"]);
    source.ok(&["mailbox", "update", "alice@example.com", "--greylisting", "off", "--messages-per-hour", "0"]);
    source.ok(&["listing", "add", "block", "client", "2001:db8::/32", "--note", "a whole /32"]);
    source.ok(&["listing", "add", "allow", "sender", "boss@partner.example", "--mailbox", "alice@example.com"]);
    let export = source.ok(&["export"]);
    assert!(export.contains(r#""_id":"listing:global:block:client:2001:db8::/32""#), "{export}");
    assert!(export.contains(r#""spam_reject":12.5,"spam_threshold":5,"#), "{export}");

    let target = Env::new();
    let file = target.dir.path().join("export.jsonl");
    std::fs::write(&file, &export).unwrap();
    let imported = target.json(&["import", file.to_str().unwrap()]);
    assert_eq!(imported["created"], 5, "{imported}");
    assert_eq!(target.ok(&["export"]), export);
    // The same listings, each with the revision its own store gave it.
    let without_revs = |env: &Env| {
        let mut listed = env.json(&["listing", "list"]);
        for listing in listed.as_array_mut().unwrap() {
            listing.as_object_mut().unwrap().remove("rev");
        }
        listed
    };
    assert_eq!(without_revs(&target), without_revs(&source));
    assert_eq!(keys(&target.json(&["listing", "list"])).len(), 2);
    assert_eq!(target.json(&["mailbox", "show", "alice@example.com"])["messages_per_hour"], 0);
}
