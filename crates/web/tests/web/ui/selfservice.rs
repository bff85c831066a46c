//! A mailbox's own page (password, aliases, spam threshold, blocklist) and invitations.

use couchmail_model::{Document, Invitation, Role};
use couchmail_testkit::fixtures;

use super::Ui;

async fn ui_with_alice() -> Ui {
    let ui = Ui::start().await;
    ui.seed([fixtures::domain("a.example"), fixtures::domain_alias("a-alias.example", "a.example")]).await;
    ui.mailbox("alice@a.example", "alice-secret-1", &[]).await;
    ui.mailbox("bob@a.example", "bob-secret-12", &[]).await;
    ui.seed([
        fixtures::alias("info@a.example", &["alice@a.example"]),
        fixtures::alias("team@a.example", &["info@a.example", "bob@a.example"]),
        fixtures::alias("other@a.example", &["bob@a.example"]),
    ])
    .await;
    ui.settle(|snapshot| snapshot.alias("other@a.example").is_some()).await;
    ui
}

#[tokio::test]
async fn a_password_change_needs_the_current_one_and_ends_other_sessions() {
    let ui = ui_with_alice().await;
    let mut laptop = ui.browser();
    let mut phone = ui.browser();
    laptop.login("alice@a.example", "alice-secret-1").await.expect_redirect("/");
    phone.login("alice@a.example", "alice-secret-1").await.expect_redirect("/");
    let mut bob = ui.browser();
    bob.login("bob@a.example", "bob-secret-12").await.expect_redirect("/");

    let me = laptop.get("/me").await;
    for id in ["password-form", "password-current", "password-new", "password-confirm", "password-submit"] {
        assert!(me.body.contains(&format!("id=\"{id}\"")), "{id} missing");
    }
    // The wrong current password changes nothing.
    let fields = [("current", "guess-password"), ("new", "alice-secret-2"), ("confirm", "alice-secret-2")];
    laptop.post("/me", "/me/password", &fields).await.expect_redirect("/me");
    assert!(laptop.get("/me").await.body.contains("is not your current password"));
    phone.get("/me").await.expect(200);
    // Two different new passwords neither.
    let fields = [("current", "alice-secret-1"), ("new", "alice-secret-2"), ("confirm", "alice-secret-3")];
    laptop.post("/me", "/me/password", &fields).await.expect_redirect("/me");
    assert!(laptop.get("/me").await.body.contains("the two new passwords differ"));

    let fields = [("current", "alice-secret-1"), ("new", "alice-secret-2"), ("confirm", "alice-secret-2")];
    laptop.post("/me", "/me/password", &fields).await.expect_redirect("/me");
    let page = laptop.get("/me").await;
    assert!(page.body.contains("Your password is changed; 1 other session(s) were logged out."), "{}", page.body);
    // The other session is gone, this one and another mailbox's stay.
    phone.get("/me").await.expect_redirect("/login?next=%2Fme");
    laptop.get("/me").await.expect(200);
    bob.get("/me").await.expect(200);
    let mut fresh = ui.browser();
    fresh.ip = Some("203.0.113.1".to_owned());
    fresh.login("alice@a.example", "alice-secret-1").await.expect(401);
    // The wrong current password above counted against the account until the right one cleared it.
    fresh.login("alice@a.example", "alice-secret-2").await.expect_redirect("/");
}

#[tokio::test]
async fn my_page_shows_what_reaches_me_and_keeps_my_lists() {
    let ui = ui_with_alice().await;
    let mut alice = ui.browser();
    alice.login("alice@a.example", "alice-secret-1").await;
    let me = alice.get("/me").await;
    let start = me.body.find("id=\"reaching\"").unwrap();
    let reaching = &me.body[start..start + 400];
    assert!(reaching.contains("info@a.example"), "{reaching}");
    assert!(reaching.contains("team@a.example"), "through the chain team → info → alice: {reaching}");
    assert!(reaching.contains("alice@a-alias.example"), "{reaching}");
    assert!(!reaching.contains("other@a.example"), "{reaching}");

    alice.post("/me", "/me/spam", &[("spam_threshold", "4.5")]).await.expect_redirect("/me");
    let Some(entry) = ui.directory.get("mailbox:alice@a.example").await.unwrap() else { panic!("gone") };
    let Document::Mailbox(mailbox) = entry.doc else { panic!("not a mailbox") };
    assert_eq!(mailbox.policy.spam_threshold.map(|score| score.tenths()), Some(45));
    alice.post("/me", "/me/spam", &[("spam_threshold", "lots")]).await.expect_redirect("/me");
    assert!(alice.get("/me").await.body.contains("flash-error"));

    let fields = [
        ("scope", "mailbox:alice@a.example"),
        ("action", "block"),
        ("kind", "sender"),
        ("value", "Spammer@Bad.example"),
        ("note", "keeps writing"),
        ("back", "/me"),
    ];
    alice.post("/me", "/listings", &fields).await.expect_redirect("/me");
    let key = "mailbox:alice@a.example:block:sender:spammer@bad.example";
    assert!(ui.directory.get(&format!("listing:{key}")).await.unwrap().is_some());
    assert!(alice.get("/me").await.body.contains(&format!("data-key=\"{key}\"")));
    // Not someone else's list, and not the domain's.
    let mut other = fields;
    other[0] = ("scope", "mailbox:bob@a.example");
    alice.post("/me", "/listings", &other).await.expect(403);
    other[0] = ("scope", "domain:a.example");
    alice.post("/me", "/listings", &other).await.expect(403);
    alice.post("/me", "/listings/remove", &[("key", key), ("back", "/me")]).await.expect_redirect("/me");
    assert!(ui.directory.get(&format!("listing:{key}")).await.unwrap().is_none());
}

/// The link's path and key from the page that shows it.
fn link_of(body: &str) -> (String, String) {
    let start = body.find("id=\"invitation-link\"").unwrap();
    let rest = &body[start..];
    let url_start = rest.find("http").unwrap();
    let url = rest[url_start..].split('<').next().unwrap().replace("&#x2f;", "/").replace("&amp;", "&");
    let path = url.split_once("//").unwrap().1.split_once('/').unwrap().1;
    let (path, key) = path.split_once("?key=").unwrap();
    (format!("/{path}"), key.to_owned())
}

#[tokio::test]
async fn an_invitation_creates_one_mailbox() {
    let ui = ui_with_alice().await;
    ui.seed([fixtures::domain("b.example")]).await;
    ui.mailbox("boss@a.example", "boss-secret-1", &[Role::DomainAdmin(fixtures::domain_name("a.example"))]).await;
    let mut boss = ui.browser();
    boss.login("boss@a.example", "boss-secret-1").await;
    // Not for another domain.
    boss.post("/invitations", "/invitations", &[("domain", "b.example"), ("days", "3")]).await.expect(403);
    let made =
        boss.post("/invitations", "/invitations", &[("domain", "a.example"), ("days", "3"), ("note", "Carol")]).await;
    made.expect(201);
    let (path, key) = link_of(&made.body);
    assert_eq!(key.len(), 64);
    // The store keeps only the secret's hash.
    let id = path.trim_start_matches("/invite/");
    let raw = couchmail_store::Store::get(&*ui._store.store, &format!("invitation:{id}")).await.unwrap().unwrap();
    let text = serde_json::to_string(&raw.body).unwrap();
    assert!(!text.contains(&key), "{text}");

    let mut carol = ui.browser();
    carol.get(&format!("{path}?key={}", "0".repeat(64))).await.expect(404);
    let form = carol.get(&format!("{path}?key={key}")).await;
    form.expect(200);
    assert!(form.body.contains("@a.example"));
    // A taken name gives the invitation back for another try.
    let taken =
        [("key", key.as_str()), ("local", "bob"), ("password", "carol-secret-1"), ("confirm", "carol-secret-1")];
    let page = carol.post(&format!("{path}?key={key}"), &path, &taken).await;
    page.expect(400);
    assert!(page.body.contains("taken"), "{}", page.body);
    let fields =
        [("key", key.as_str()), ("local", "Carol"), ("password", "carol-secret-1"), ("confirm", "carol-secret-1")];
    carol.post(&format!("{path}?key={key}"), &path, &fields).await.expect_redirect("/login?welcome=carol@a.example");
    carol.login("carol@a.example", "carol-secret-1").await.expect_redirect("/");
    // Used once: the link is dead now, for the form and for a replayed post.
    let mut dave = ui.browser();
    dave.get(&format!("{path}?key={key}")).await.expect(410);
    let login = dave.get("/login").await;
    let csrf = login.csrf().unwrap();
    let replay = [
        ("csrf", csrf.as_str()),
        ("key", key.as_str()),
        ("local", "dave"),
        ("password", "dave-secret-12"),
        ("confirm", "dave-secret-12"),
    ];
    dave.post_raw(&path, &replay).await.expect(410);
    assert!(ui.directory.get("mailbox:dave@a.example").await.unwrap().is_none());
    let list = boss.get("/invitations").await;
    assert!(list.body.contains("used") && list.body.contains("carol@a.example"), "{}", list.body);
}

#[tokio::test]
async fn an_expired_invitation_does_nothing() {
    let ui = ui_with_alice().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (invitation, key) =
        Invitation::generate(fixtures::domain_name("a.example"), now - 100, now - 1, None, String::new());
    let id = invitation.id.clone();
    ui.seed([Document::Invitation(invitation)]).await;
    let mut carol = ui.browser();
    let page = carol.get(&format!("/invite/{id}?key={key}")).await;
    page.expect(410);
    assert!(page.body.contains("expired"));
    let csrf = carol.get("/login").await.csrf().unwrap();
    let fields = [
        ("csrf", csrf.as_str()),
        ("key", key.as_str()),
        ("local", "carol"),
        ("password", "carol-secret-1"),
        ("confirm", "carol-secret-1"),
    ];
    carol.post_raw(&format!("/invite/{id}"), &fields).await.expect(410);
    assert!(ui.directory.get("mailbox:carol@a.example").await.unwrap().is_none());
}

#[tokio::test]
async fn an_invitation_to_an_inactive_domain_waits() {
    let ui = ui_with_alice().await;
    ui.seed([fixtures::inactive(fixtures::domain("asleep.example"))]).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (invitation, key) =
        Invitation::generate(fixtures::domain_name("asleep.example"), now, now + 3600, None, String::new());
    let id = invitation.id.clone();
    ui.seed([Document::Invitation(invitation)]).await;
    let page = ui.browser().get(&format!("/invite/{id}?key={key}")).await;
    page.expect(410);
    assert!(page.body.contains("does not take new mailboxes now"), "{}", page.body);
}
