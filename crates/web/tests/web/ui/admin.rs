//! Administrators' pages: domains, mailboxes, aliases, and what a domain admin may not see.

use std::time::{Duration, Instant};

use couchmail_model::Role;
use couchmail_store::Store;
use couchmail_testkit::fixtures;
use serde_json::json;

use super::Ui;

#[tokio::test]
async fn an_admin_creates_a_domain_and_a_mailbox_and_the_user_logs_in() {
    let ui = Ui::start().await;
    ui.seed([fixtures::domain("a.example")]).await;
    ui.mailbox("root@a.example", "root-secret-1", &[Role::Admin]).await;
    let mut admin = ui.browser();
    admin.login("root@a.example", "root-secret-1").await.expect_redirect("/");
    let dashboard = admin.get("/").await;
    dashboard.expect(200);
    assert!(dashboard.body.contains("id=\"count-domains\""), "{}", dashboard.body);

    let created = admin.post("/domains", "/domains", &[("name", "B.Example")]).await;
    created.expect_redirect("/domains");
    let list = admin.get("/domains").await;
    assert!(list.body.contains("id=\"flash\"") && list.body.contains("Domain b.example created."), "{}", list.body);
    assert!(list.body.contains("data-domain=\"b.example\""), "{}", list.body);
    // A second try is a mistake shown on the page, not an error page.
    admin.post("/domains", "/domains", &[("name", "b.example")]).await.expect_redirect("/domains");
    assert!(admin.get("/domains").await.body.contains("flash-error"));

    let fields = [("address", "bob@b.example"), ("password", "bob-secret-12"), ("name", "Bob"), ("quota_mib", "512")];
    admin.post("/mailboxes", "/mailboxes", &fields).await.expect_redirect("/mailboxes");
    let list = admin.get("/mailboxes?domain=b.example").await;
    list.expect(200);
    assert!(list.body.contains("data-address=\"bob@b.example\""), "{}", list.body);
    assert!(list.body.contains("512 MiB"), "{}", list.body);
    let detail = admin.get("/mailboxes/bob@b.example").await;
    detail.expect(200);
    assert!(detail.body.contains("value=\"Bob\""));

    let mut bob = ui.browser();
    bob.login("bob@b.example", "bob-secret-12").await.expect_redirect("/");
    bob.get("/me").await.expect(200);
    // A user is not an administrator.
    bob.get("/domains").await.expect(403);
    bob.get("/mailboxes").await.expect(403);
    bob.get("/mailboxes/root@a.example").await.expect(403);
    bob.post("/me", "/domains", &[("name", "c.example")]).await.expect(403);

    // Deactivating the domain logs bob out at his next request.
    let page = admin.post("/domains/b.example", "/domains/b.example/active", &[("active", "off")]).await;
    page.expect_redirect("/domains/b.example");
    bob.get("/me").await.expect_redirect("/login?next=%2Fme");
}

#[tokio::test]
async fn aliases_take_several_targets_and_catch_alls() {
    let ui = Ui::start().await;
    ui.seed([fixtures::domain("a.example"), fixtures::mailbox("alice@a.example"), fixtures::mailbox("bob@a.example")])
        .await;
    ui.mailbox("root@a.example", "root-secret-1", &[Role::Admin]).await;
    let mut admin = ui.browser();
    admin.login("root@a.example", "root-secret-1").await;
    let fields = [("key", "team@a.example"), ("targets", "alice@a.example, bob@a.example\nout@elsewhere.example")];
    admin.post("/aliases", "/aliases", &fields).await.expect_redirect("/aliases");
    admin.post("/aliases", "/aliases", &[("key", "@a.example"), ("targets", "alice@a.example")]).await;
    let list = admin.get("/aliases?domain=a.example").await;
    assert!(list.body.contains("data-alias=\"team@a.example\""), "{}", list.body);
    assert!(list.body.contains("data-alias=\"@a.example\"") && list.body.contains("catch-all"), "{}", list.body);
    let stored = ui.directory.get("alias:team@a.example").await.unwrap().unwrap();
    let couchmail_model::Document::Alias(alias) = stored.doc else { panic!("not an alias") };
    assert_eq!(alias.targets.len(), 3);
    // An alias may not shadow a mailbox: the page says why.
    admin.post("/aliases", "/aliases", &[("key", "bob@a.example"), ("targets", "alice@a.example")]).await;
    assert!(admin.get("/aliases").await.body.contains("flash-error"));
    // Editing with a stale revision is refused, not lost.
    let page = admin.get("/aliases/team@a.example").await;
    let rev_start = page.body.find("name=\"rev\" value=\"").unwrap() + "name=\"rev\" value=\"".len();
    let rev = page.body[rev_start..].split('"').next().unwrap().to_owned();
    let csrf = page.csrf().unwrap();
    let fields = [("csrf", csrf.as_str()), ("rev", rev.as_str()), ("targets", "alice@a.example"), ("active", "on")];
    admin.post_raw("/aliases/team@a.example", &fields).await.expect_redirect("/aliases/team@a.example");
    admin.post_raw("/aliases/team@a.example", &fields).await.expect_redirect("/aliases/team@a.example");
    let page = admin.get("/aliases/team@a.example").await;
    assert!(page.body.contains("was changed since this page was drawn"), "{}", page.body);
}

#[tokio::test]
async fn a_domain_admin_sees_only_its_domains() {
    let ui = Ui::start().await;
    ui.seed([
        fixtures::domain("a.example"),
        fixtures::domain("b.example"),
        fixtures::mailbox("alice@a.example"),
        fixtures::mailbox("bob@b.example"),
        fixtures::alias("info@b.example", &["bob@b.example"]),
        fixtures::domain_alias("b-alias.example", "b.example"),
        fixtures::with_policy(
            fixtures::mailbox("greyless@b.example"),
            couchmail_model::PolicySettings { greylisting: Some(false), ..Default::default() },
        ),
    ])
    .await;
    ui.mailbox("boss@a.example", "boss-secret-1", &[Role::DomainAdmin(fixtures::domain_name("a.example"))]).await;
    ui.mailbox("root@b.example", "root-secret-1", &[Role::Admin]).await;
    ui.settle(|snapshot| snapshot.mailbox("root@b.example").is_some()).await;
    let mut boss = ui.browser();
    boss.login("boss@a.example", "boss-secret-1").await.expect_redirect("/");

    for page in
        ["/", "/domains", "/mailboxes", "/aliases", "/listings", "/policy", "/invitations", "/domains/a.example"]
    {
        let seen = boss.get(page).await;
        seen.expect(200);
        assert!(!seen.body.contains("b.example"), "{page} shows another domain's data: {}", seen.body);
    }
    assert!(boss.get("/mailboxes").await.body.contains("alice@a.example"));
    for page in [
        "/domains/b.example",
        "/mailboxes?domain=b.example",
        "/aliases?domain=b.example",
        "/mailboxes/bob@b.example",
        "/aliases/info@b.example",
        "/listings?scope=domain%3Ab.example",
        "/listings?scope=global",
        "/policy?domain=b.example",
        "/invitations?domain=b.example",
    ] {
        boss.get(page).await.expect(403);
    }
    // Nor may it change anything there, or create domains, or take over an admin.
    let attempts: [(&str, &[(&str, &str)]); 5] = [
        ("/mailboxes", &[("address", "eve@b.example"), ("password", "eve-secret-12")]),
        ("/aliases", &[("key", "x@b.example"), ("targets", "alice@a.example")]),
        ("/domains", &[("name", "c.example")]),
        ("/mailboxes/root@b.example/password", &[("password", "stolen-password-1")]),
        ("/domains/b.example/aliases", &[("name", "evil.example")]),
    ];
    for (path, fields) in attempts {
        boss.post("/", path, fields).await.expect(403);
    }
    assert!(ui.directory.get("mailbox:eve@b.example").await.unwrap().is_none());
    // Within its domain it works.
    let fields = [("address", "carol@a.example"), ("password", "carol-secret-1")];
    boss.post("/mailboxes", "/mailboxes", &fields).await.expect_redirect("/mailboxes");
    assert!(ui.directory.get("mailbox:carol@a.example").await.unwrap().is_some());
    // It may grant domain-admin of its own domain but not admin.
    boss.post("/mailboxes/carol@a.example", "/mailboxes/carol@a.example/roles", &[("roles", "admin")])
        .await
        .expect(403);
    boss.post("/mailboxes/carol@a.example", "/mailboxes/carol@a.example/roles", &[("roles", "domain-admin:a.example")])
        .await
        .expect_redirect("/mailboxes/carol@a.example");
}

#[tokio::test]
async fn paging_through_ten_thousand_mailboxes_stays_fast() {
    let ui = Ui::start().await;
    ui.seed([fixtures::domain("a.example"), fixtures::domain("big.example")]).await;
    ui.mailbox("root@a.example", "root-secret-1", &[Role::Admin]).await;
    ui.mailbox("boss@a.example", "boss-secret-1", &[Role::DomainAdmin(fixtures::domain_name("a.example"))]).await;
    // Written straight to the store: the directory's per-write checks would only slow the setup.
    let body = json!({"type": "mailbox", "active": true});
    let body = body.as_object().unwrap();
    for i in 0..10_000 {
        ui._store.store.put(&format!("mailbox:user{i:05}@big.example"), None, body).await.unwrap();
    }
    ui.settle(|snapshot| snapshot.counts().mailboxes >= 10_002).await;
    let mut admin = ui.browser();
    admin.login("root@a.example", "root-secret-1").await;
    let started = Instant::now();
    let first = admin.get("/mailboxes?domain=big.example&limit=100").await;
    first.expect(200);
    assert!(first.body.contains("Showing 100 of 10000"), "{}", first.body);
    assert!(first.body.contains("data-address=\"user00000@big.example\""));
    // minijinja escapes `/` as `&#x2f;` in attributes, which browsers read as `/`.
    let next =
        "id=\"next-page\" href=\"&#x2f;mailboxes?after=user00099@big.example&amp;domain=big.example&amp;limit=100\"";
    assert!(first.body.contains(next), "{}", first.body);
    let middle = admin.get("/mailboxes?after=user04999@big.example&domain=big.example&limit=100").await;
    assert!(middle.body.contains("data-address=\"user05000@big.example\""));
    assert!(!middle.body.contains("data-address=\"user04999@big.example\""));
    let search = admin.get("/mailboxes?q=user0777").await;
    assert!(search.body.contains("Showing 10 of 10"), "{}", search.body);
    let all = admin.get("/mailboxes").await;
    assert!(all.body.contains("Showing 50 of 10002"), "{}", all.body);
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "four pages over 10 k mailboxes took {elapsed:?}");
    // A domain admin's list of its small domain does not wade through the big one either.
    let mut boss = ui.browser();
    boss.login("boss@a.example", "boss-secret-1").await;
    let started = Instant::now();
    let own = boss.get("/mailboxes").await;
    assert!(own.body.contains("Showing 2 of 2"), "{}", own.body);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn resetting_disabling_and_removing_a_mailbox_end_its_sessions() {
    let ui = Ui::start().await;
    ui.seed([fixtures::domain("a.example")]).await;
    ui.mailbox("root@a.example", "root-secret-1", &[Role::Admin]).await;
    ui.mailbox("bob@a.example", "bob-secret-12", &[]).await;
    let mut admin = ui.browser();
    admin.login("root@a.example", "root-secret-1").await;
    let page = "/mailboxes/bob@a.example";

    let mut bob = ui.browser();
    bob.login("bob@a.example", "bob-secret-12").await.expect_redirect("/");
    admin
        .post(page, "/mailboxes/bob@a.example/password", &[("password", "bob-secret-new")])
        .await
        .expect_redirect(page);
    bob.get("/me").await.expect_redirect("/login?next=%2Fme");
    bob.login("bob@a.example", "bob-secret-new").await.expect_redirect("/");

    // Disabling: the settings form without the box ticked.
    let form = admin.get(page).await;
    let rev_start = form.body.find("name=\"rev\" value=\"").unwrap() + "name=\"rev\" value=\"".len();
    let rev = form.body[rev_start..].split('"').next().unwrap().to_owned();
    let csrf = form.csrf().unwrap();
    let fields = [("csrf", csrf.as_str()), ("rev", rev.as_str()), ("name", "Bob"), ("quota_mib", "100")];
    admin.post_raw("/mailboxes/bob@a.example/settings", &fields).await.expect_redirect(page);
    assert!(admin.get(page).await.body.contains("id=\"mailbox-status\">disabled"));
    bob.get("/me").await.expect_redirect("/login?next=%2Fme");
    bob.login("bob@a.example", "bob-secret-new").await.expect(401);

    admin.post(page, "/mailboxes/bob@a.example/delete", &[]).await.expect_redirect("/mailboxes?domain=a.example");
    assert!(ui.directory.get("mailbox:bob@a.example").await.unwrap().is_none());
    admin.get(page).await.expect(404);
}

#[tokio::test]
async fn unknown_pages_are_html_for_browsers_and_json_for_programs() {
    let ui = Ui::start().await;
    let mut browser = ui.browser();
    let page = browser.get("/no/such/page").await;
    page.expect(404);
    assert!(page.body.contains("<!doctype html>") && page.body.contains("id=\"error-message\""), "{}", page.body);
    let response = reqwest::get(format!("{}/no/such/page", ui.base)).await.unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

/// The values of attribute `name` in `html`, in order.
fn attribute_values<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let marker = format!(" {name}=\"");
    html.match_indices(&marker).filter_map(|(at, _)| html[at + marker.len()..].split('"').next()).collect()
}

/// The opening tags `<input …>`, `<select …>` and `<textarea …>` of `html`.
fn controls(html: &str) -> Vec<&str> {
    ["<input ", "<select ", "<textarea "]
        .iter()
        .flat_map(|start| html.match_indices(start).map(|(at, _)| &html[at..at + html[at..].find('>').unwrap() + 1]))
        .collect()
}

#[tokio::test]
async fn every_page_labels_its_fields_and_has_landmarks() {
    let ui = Ui::start().await;
    ui.seed([
        fixtures::domain("a.example"),
        fixtures::mailbox("alice@a.example"),
        fixtures::alias("info@a.example", &["alice@a.example"]),
        fixtures::listing("global:block:client:192.0.2.0/24"),
    ])
    .await;
    ui.mailbox("root@a.example", "root-secret-1", &[Role::Admin]).await;
    ui.settle(|snapshot| snapshot.alias("info@a.example").is_some()).await;
    let mut anonymous = ui.browser();
    let mut pages = vec![("/login".to_owned(), anonymous.get("/login").await)];
    let mut admin = ui.browser();
    admin.login("root@a.example", "root-secret-1").await;
    for path in [
        "/",
        "/domains",
        "/domains/a.example",
        "/mailboxes",
        "/mailboxes/alice@a.example",
        "/aliases",
        "/aliases/info@a.example",
        "/invitations",
        "/listings",
        "/policy",
        "/me",
    ] {
        pages.push((path.to_owned(), admin.get(path).await));
    }
    for (path, page) in &pages {
        page.expect(200);
        let html = &page.body;
        assert!(html.contains("<html lang=\"en\">"), "{path}: no language");
        assert!(html.contains("<main id=\"main\""), "{path}: no main landmark");
        assert_eq!(html.matches("<h1").count(), 1, "{path}: one h1");
        let ids = attribute_values(html, "id");
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(ids.len(), unique.len(), "{path}: duplicate ids in {ids:?}");
        let labelled = attribute_values(html, "for");
        for target in &labelled {
            assert!(ids.contains(target), "{path}: a label for `{target}`, which is not there");
        }
        for control in controls(html) {
            if control.contains("type=\"hidden\"") {
                continue;
            }
            let id = attribute_values(control, "id");
            let named = id.first().is_some_and(|id| labelled.contains(id)) || control.contains("aria-label=");
            assert!(named, "{path}: a field without a label: {control}");
        }
        // Every form that changes something carries the token.
        for (at, _) in html.match_indices("<form ") {
            let form = &html[at..at + html[at..].find("</form>").unwrap()];
            if form.contains("method=\"post\"") {
                assert!(form.contains("name=\"csrf\""), "{path}: a form without its token: {form}");
            }
        }
    }
}

#[tokio::test]
async fn a_domains_settings_form_saves_its_policy_and_refuses_a_stale_revision() {
    let ui = Ui::start().await;
    ui.seed([fixtures::domain("a.example")]).await;
    ui.mailbox("root@a.example", "root-secret-1", &[Role::Admin]).await;
    let mut admin = ui.browser();
    admin.login("root@a.example", "root-secret-1").await.expect_redirect("/");
    let page = "/domains/a.example";

    let form = admin.get(page).await;
    form.expect(200);
    for id in ["domain-greylisting", "domain-spam-threshold", "domain-spam-reject", "domain-messages-per-hour"] {
        assert!(form.body.contains(&format!("id=\"{id}\"")), "{id} missing: {}", form.body);
    }
    let rev_start = form.body.find("name=\"rev\" value=\"").unwrap() + "name=\"rev\" value=\"".len();
    let stale_rev = form.body[rev_start..].split('"').next().unwrap().to_owned();
    let csrf = form.csrf().unwrap();
    let fields = [
        ("csrf", csrf.as_str()),
        ("rev", stale_rev.as_str()),
        ("greylisting", "off"),
        ("spam_threshold", "4.5"),
        ("spam_reject", "12"),
        ("messages_per_hour", "30"),
        ("recipients_per_hour", ""),
    ];
    admin.post_raw("/domains/a.example/settings", &fields).await.expect_redirect(page);
    let entry = ui.directory.get("domain:a.example").await.unwrap().unwrap();
    let couchmail_model::Document::Domain(domain) = entry.doc else { panic!("not a domain: {:?}", entry.doc) };
    assert_eq!(domain.policy.greylisting, Some(false));
    assert_eq!(domain.policy.spam_threshold.map(|score| score.tenths()), Some(45));
    assert_eq!(domain.policy.spam_reject.map(|score| score.tenths()), Some(120));
    assert_eq!((domain.policy.messages_per_hour, domain.policy.recipients_per_hour), (Some(30), None));
    let shown = admin.get(page).await;
    assert!(shown.body.contains("<option value=\"off\" selected>"), "{}", shown.body);
    assert!(shown.body.contains("value=\"4.5\""), "{}", shown.body);

    // The same form again, drawn before the change: refused, and nothing changes.
    let fields = [("csrf", csrf.as_str()), ("rev", stale_rev.as_str()), ("greylisting", "on")];
    admin.post_raw("/domains/a.example/settings", &fields).await.expect_redirect(page);
    assert!(admin.get(page).await.body.contains("was changed since this page was drawn"));
    let entry = ui.directory.get("domain:a.example").await.unwrap().unwrap();
    let couchmail_model::Document::Domain(domain) = entry.doc else { panic!("not a domain: {:?}", entry.doc) };
    assert_eq!(domain.policy.greylisting, Some(false));
}
