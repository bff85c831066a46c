//! `/listings` and the policy settings of domains and mailboxes (issue #5): scopes enforced per role, keys in
//! one normal form, and who may change which setting.

use crate::*;

fn listing_body(scope: &str, action: &str, kind: &str, value: &str) -> Value {
    json!({ "scope": scope, "action": action, "kind": kind, "value": value })
}

#[tokio::test]
async fn listings_are_created_read_and_removed_by_scope() {
    let api = Api::start().await;
    two_domains(&api).await;
    let admin = api.admin_token().await;
    let created = api
        .post("/listings")
        .json(json!({ "scope": "global", "action": "block", "kind": "client", "value": "192.0.2.77/24", "note": "abuse" }))
        .token(&admin)
        .send()
        .await;
    created.expect(201);
    assert_eq!(created.body["key"], "global:block:client:192.0.2.0/24");
    assert_eq!(created.body["value"], "192.0.2.0/24");
    assert_eq!(created.body["note"], "abuse");
    assert!(created.body["created"].as_u64().unwrap() > 1_700_000_000);
    assert!(created.etag.is_some());
    // The same entry written another way is the same key: a conflict.
    api.post("/listings")
        .json(listing_body("global", "block", "client", "192.0.2.1/24"))
        .token(&admin)
        .send()
        .await
        .expect_error(409, "conflict");

    // The path takes the network's `/` as is or encoded.
    for path in ["/listings/global:block:client:192.0.2.0/24", "/listings/global:block:client:192.0.2.0%2F24"] {
        let shown = api.get(path).token(&admin).send().await;
        shown.expect(200);
        assert_eq!(shown.body["note"], "abuse", "{path}");
    }
    let shown = api.get("/listings/global:block:client:192.0.2.0/24").token(&admin).send().await;
    // The note changes; the key does not.
    let mut body = shown.body.clone();
    body["note"] = json!("abuse, ticket 42");
    let updated = api
        .put("/listings/global:block:client:192.0.2.0/24")
        .json(body)
        .if_match(shown.etag.as_deref().unwrap())
        .token(&admin)
        .send()
        .await;
    updated.expect(200);
    assert_eq!(updated.body["note"], "abuse, ticket 42");
    let renamed = api
        .put("/listings/global:block:client:192.0.2.0/24")
        .json(json!({ "action": "allow", "note": "x" }))
        .if_match(updated.etag.as_deref().unwrap())
        .token(&admin)
        .send()
        .await;
    renamed.expect_error(400, "invalid");
    assert_eq!(renamed.field(), Some("action"));
    api.delete("/listings/global:block:client:192.0.2.0/24")
        .if_match(shown.etag.as_deref().unwrap())
        .token(&admin)
        .send()
        .await
        .expect_error(409, "conflict");
    api.delete("/listings/global:block:client:192.0.2.0%2F24")
        .if_match(updated.etag.as_deref().unwrap())
        .token(&admin)
        .send()
        .await
        .expect(204);
    api.get("/listings/global:block:client:192.0.2.0/24").token(&admin).send().await.expect_error(404, "not_found");
}

#[tokio::test]
async fn listing_input_is_checked_naming_the_field() {
    let api = Api::start().await;
    two_domains(&api).await;
    let admin = api.admin_token().await;
    for (body, field) in [
        (json!({ "action": "block", "kind": "sender", "value": "a@b.example" }), "scope"),
        (listing_body("everyone", "block", "sender", "a@b.example"), "scope"),
        (listing_body("global", "deny", "sender", "a@b.example"), "action"),
        (listing_body("global", "block", "helo", "a@b.example"), "kind"),
        (listing_body("global", "block", "sender", "not an address"), "value"),
        (listing_body("global", "block", "client", "192.0.2.0/33"), "value"),
        (listing_body("global", "block", "sender-domain", "localhost"), "value"),
        (
            json!({ "scope": "global", "action": "block", "kind": "client", "value": "192.0.2.1", "note": "a\nb" }),
            "note",
        ),
        (
            json!({ "scope": "global", "action": "block", "kind": "client", "value": "192.0.2.1", "colour": "red" }),
            "colour",
        ),
    ] {
        let reply = api.post("/listings").json(body.clone()).token(&admin).send().await;
        reply.expect_error(400, "invalid");
        assert_eq!(reply.field(), Some(field), "{body}: {}", reply.text);
    }
    // A scope that names no existing mailbox or domain is refused by the directory.
    let reply = api
        .post("/listings")
        .json(listing_body("mailbox:nobody@a.example", "block", "sender", "x@b.example"))
        .token(&admin)
        .send()
        .await;
    reply.expect_error(409, "refused");
    api.get("/listings/global:block:nonsense").token(&admin).send().await.expect_error(400, "invalid");
}

#[tokio::test]
async fn each_role_manages_the_listings_of_its_scope_only() {
    let api = Api::start().await;
    two_domains(&api).await;
    let admin = api.admin_token().await;
    let boss = api.mailbox_token("boss@a.example").await;
    let alice = api.mailbox_token("alice@a.example").await;
    let create = |token: &str, scope: &str, value: &str| {
        api.post("/listings").json(listing_body(scope, "block", "sender", value)).token(token)
    };
    create(&admin, "global", "spam@global.example").send().await.expect(201);
    create(&admin, "mailbox:bob@b.example", "spam@bob.example").send().await.expect(201);
    create(&boss, "domain:a.example", "spam@domain.example").send().await.expect(201);
    create(&boss, "mailbox:carol@a.example", "spam@carol.example").send().await.expect(201);
    create(&alice, "mailbox:alice@a.example", "spam@alice.example").send().await.expect(201);
    // Outside their scopes: 403, and nothing is written.
    let before = api.everything().await.len();
    create(&boss, "global", "x@y.example").send().await.expect_error(403, "forbidden");
    create(&boss, "domain:b.example", "x@y.example").send().await.expect_error(403, "forbidden");
    create(&boss, "mailbox:bob@b.example", "x@y.example").send().await.expect_error(403, "forbidden");
    create(&alice, "mailbox:carol@a.example", "x@y.example").send().await.expect_error(403, "forbidden");
    create(&alice, "domain:a.example", "x@y.example").send().await.expect_error(403, "forbidden");
    create(&alice, "global", "x@y.example").send().await.expect_error(403, "forbidden");
    assert_eq!(api.everything().await.len(), before);

    let keys = |reply: &Reply| -> Vec<String> {
        reply.body["items"].as_array().unwrap().iter().map(|item| item["key"].as_str().unwrap().to_owned()).collect()
    };
    let all = api.get("/listings").token(&admin).send().await;
    assert_eq!(keys(&all).len(), 5);
    let global = api.get("/listings?scope=global").token(&admin).send().await;
    assert_eq!(keys(&global), ["global:block:sender:spam@global.example"]);
    let boss_sees = api.get("/listings").token(&boss).send().await;
    assert_eq!(
        keys(&boss_sees),
        [
            "domain:a.example:block:sender:spam@domain.example",
            "mailbox:alice@a.example:block:sender:spam@alice.example",
            "mailbox:carol@a.example:block:sender:spam@carol.example",
        ]
    );
    let alice_sees = api.get("/listings").token(&alice).send().await;
    assert_eq!(keys(&alice_sees), ["mailbox:alice@a.example:block:sender:spam@alice.example"]);
    let carol_by_boss = api.get("/listings?mailbox=carol@a.example").token(&boss).send().await;
    assert_eq!(keys(&carol_by_boss), ["mailbox:carol@a.example:block:sender:spam@carol.example"]);
    api.get("/listings?scope=global").token(&boss).send().await.expect_error(403, "forbidden");
    api.get("/listings?domain=b.example").token(&boss).send().await.expect_error(403, "forbidden");
    api.get("/listings?mailbox=carol@a.example").token(&alice).send().await.expect_error(403, "forbidden");
    api.get("/listings?domain=a.example").token(&alice).send().await.expect_error(403, "forbidden");
    api.get("/listings/global:block:sender:spam@global.example")
        .token(&alice)
        .send()
        .await
        .expect_error(403, "forbidden");
    let carol_key = "/listings/mailbox:carol@a.example:block:sender:spam@carol.example";
    api.get(carol_key).token(&alice).send().await.expect_error(403, "forbidden");
    let etag = api.get(carol_key).token(&boss).send().await.etag.unwrap();
    api.delete(carol_key).if_match(&etag).token(&alice).send().await.expect_error(403, "forbidden");
    api.delete(carol_key).if_match(&etag).token(&boss).send().await.expect(204);

    // Paging by key.
    let first = api.get("/listings?limit=2").token(&admin).send().await;
    assert_eq!(keys(&first).len(), 2);
    let next = first.body["next"].as_str().unwrap().to_owned();
    let second = api.get(&format!("/listings?limit=2&after={next}")).token(&admin).send().await;
    assert_eq!(keys(&second).len(), 2);
    assert!(keys(&second).iter().all(|key| key.as_str() > next.as_str()));
}

#[tokio::test]
async fn policy_settings_on_domains_and_mailboxes() {
    let api = Api::start().await;
    two_domains(&api).await;
    let admin = api.admin_token().await;
    let boss = api.mailbox_token("boss@a.example").await;
    let alice = api.mailbox_token("alice@a.example").await;

    // A domain admin sets greylisting and thresholds of its domain, not its sending limits.
    let shown = api.get("/domains/a.example").token(&boss).send().await;
    assert_eq!(shown.body["greylisting"], Value::Null);
    let mut body = shown.body.clone();
    body["greylisting"] = json!(false);
    body["spam_threshold"] = json!(6.5);
    body["spam_reject"] = json!(15);
    let updated = api
        .put("/domains/a.example")
        .json(body.clone())
        .if_match(shown.etag.as_deref().unwrap())
        .token(&boss)
        .send()
        .await;
    updated.expect(200);
    assert_eq!(
        (updated.body["spam_threshold"].as_f64(), updated.body["spam_reject"].as_f64()),
        (Some(6.5), Some(15.0))
    );
    body["messages_per_hour"] = json!(10_000);
    api.put("/domains/a.example")
        .json(body.clone())
        .if_match(updated.etag.as_deref().unwrap())
        .token(&boss)
        .send()
        .await
        .expect_error(403, "forbidden");
    let limited =
        api.put("/domains/a.example").json(body).if_match(updated.etag.as_deref().unwrap()).token(&admin).send().await;
    limited.expect(200);
    assert_eq!(limited.body["messages_per_hour"], 10_000);

    // A user sets its own greylisting and thresholds, not its sending limits.
    let shown = api.get("/mailboxes/alice@a.example").token(&alice).send().await;
    let mut body = shown.body.clone();
    body["greylisting"] = json!(true);
    body["spam_threshold"] = json!(4);
    let updated = api
        .put("/mailboxes/alice@a.example")
        .json(body.clone())
        .if_match(shown.etag.as_deref().unwrap())
        .token(&alice)
        .send()
        .await;
    updated.expect(200);
    assert_eq!(updated.body["greylisting"], true);
    let stored = api.stored_mailbox("alice@a.example").await;
    assert_eq!(stored.policy.spam_threshold.map(|score| score.tenths()), Some(40));
    body["recipients_per_hour"] = json!(5000);
    api.put("/mailboxes/alice@a.example")
        .json(body.clone())
        .if_match(updated.etag.as_deref().unwrap())
        .token(&alice)
        .send()
        .await
        .expect_error(403, "forbidden");
    api.put("/mailboxes/alice@a.example")
        .json(body.clone())
        .if_match(updated.etag.as_deref().unwrap())
        .token(&boss)
        .send()
        .await
        .expect(200);

    // Bad values name their field and write nothing.
    let etag = api.get("/mailboxes/carol@a.example").token(&admin).send().await.etag.unwrap();
    for (settings, field) in [
        (json!({ "spam_threshold": 5.55 }), "spam_threshold"),
        (json!({ "spam_threshold": "5" }), "spam_threshold"),
        (json!({ "spam_threshold": 101 }), "spam_threshold"),
        (json!({ "spam_threshold": 8, "spam_reject": 8 }), "spam_reject"),
        (json!({ "greylisting": "off" }), "greylisting"),
        (json!({ "messages_per_hour": -1 }), "messages_per_hour"),
        (json!({ "messages_per_hour": 1_000_001 }), "messages_per_hour"),
    ] {
        let reply =
            api.put("/mailboxes/carol@a.example").json(settings.clone()).if_match(&etag).token(&admin).send().await;
        reply.expect_error(400, "invalid");
        assert_eq!(reply.field(), Some(field), "{settings}: {}", reply.text);
    }
    assert!(api.stored_mailbox("carol@a.example").await.policy.is_empty());
}
