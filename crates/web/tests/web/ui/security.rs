//! Login, sessions, CSRF and throttling.

use std::time::Duration;

use couchmail_model::Role;
use couchmail_testkit::fixtures;

use super::Ui;

async fn ui_with_alice() -> Ui {
    let ui = Ui::start().await;
    ui.seed([fixtures::domain("a.example")]).await;
    ui.mailbox("alice@a.example", "alice-secret-1", &[]).await;
    ui.mailbox("root@a.example", "root-secret-1", &[Role::Admin]).await;
    ui
}

#[tokio::test]
async fn pages_need_a_login() {
    let ui = ui_with_alice().await;
    let mut browser = ui.browser();
    browser.get("/").await.expect_redirect("/login");
    browser.get("/domains").await.expect_redirect("/login?next=%2Fdomains");
    browser.get("/mailboxes?domain=a.example").await.expect_redirect("/login?next=%2Fmailboxes%3Fdomain%3Da.example");
    let login = browser.get("/login").await;
    login.expect(200);
    for id in ["login-form", "login-address", "login-password", "login-submit"] {
        assert!(login.body.contains(&format!("id=\"{id}\"")), "{id} missing");
    }
    let pre = login.set_cookie("couchmail_csrf").expect("a pre-session token cookie");
    assert!(pre.contains("HttpOnly") && pre.contains("SameSite=Strict"), "{pre}");
    // Static files need no login.
    let css = browser.get("/static/couchmail.css").await;
    css.expect(200);
    assert!(css.headers["content-type"].to_str().unwrap().starts_with("text/css"));
    // After the login, back to the page asked for (never to another site).
    let mut admin = ui.browser();
    let page = admin.get("/login?next=%2Fmailboxes%3Fdomain%3Da.example").await;
    let csrf = page.csrf().unwrap();
    let fields = [
        ("csrf", csrf.as_str()),
        ("address", "root@a.example"),
        ("password", "root-secret-1"),
        ("next", "/mailboxes?domain=a.example"),
    ];
    admin.post_raw("/login", &fields).await.expect_redirect("/mailboxes?domain=a.example");
    let mut other = ui.browser();
    let csrf = other.get("/login").await.csrf().unwrap();
    let fields = [
        ("csrf", csrf.as_str()),
        ("address", "root@a.example"),
        ("password", "root-secret-1"),
        ("next", "//evil.example/"),
    ];
    other.post_raw("/login", &fields).await.expect_redirect("/");
    // The API is unchanged beside the pages.
    let health = reqwest::get(format!("{}/api/v1/health", ui.base)).await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn login_sets_a_strict_session_cookie_and_logout_ends_it() {
    let ui = ui_with_alice().await;
    let mut browser = ui.browser();
    let answer = browser.login("Alice@A.example", "alice-secret-1").await;
    answer.expect_redirect("/");
    let cookie = answer.set_cookie("couchmail_session").expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP without a proxy saying https: {cookie}");
    let id = browser.cookies["couchmail_session"].clone();
    assert_eq!(id.len(), 64, "256 bits in hex");
    // A user without roles lands on its own page.
    browser.get("/").await.expect_redirect("/me");
    let me = browser.get("/me").await;
    me.expect(200);
    assert!(me.body.contains("alice@a.example"));
    // Logging out ends the session on the server: the old cookie is worthless.
    browser.post("/me", "/logout", &[]).await.expect_redirect("/login?bye=1");
    let mut thief = ui.browser();
    thief.cookies.insert("couchmail_session".to_owned(), id);
    thief.get("/me").await.expect_redirect("/login?next=%2Fme");
}

#[tokio::test]
async fn cookies_are_secure_behind_a_tls_proxy() {
    let ui = ui_with_alice().await;
    let mut browser = ui.browser();
    let page = browser.get("/login").await;
    let csrf = page.csrf().unwrap();
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/login", ui.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", format!("couchmail_csrf={csrf}"))
        .header("x-forwarded-proto", "https")
        .header("origin", &ui.base)
        .body(format!("csrf={csrf}&address=alice%40a.example&password=alice-secret-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("couchmail_session=") && cookie.contains("; Secure"), "{cookie}");
}

#[tokio::test]
async fn wrong_passwords_fail_alike() {
    let ui = ui_with_alice().await;
    let mut browser = ui.browser();
    browser.ip = Some("192.0.2.10".to_owned());
    let wrong = browser.login("alice@a.example", "not-her-password").await;
    wrong.expect(401);
    assert!(wrong.body.contains("id=\"login-error\""));
    browser.ip = Some("192.0.2.11".to_owned());
    let unknown = browser.login("nobody@a.example", "whatever-password").await;
    unknown.expect(401);
    let text = |page: &super::Page| {
        let start = page.body.find("id=\"login-error\"").unwrap();
        page.body[start..start + 120].to_owned()
    };
    assert_eq!(text(&wrong), text(&unknown), "the answer must not tell which addresses exist");
    assert!(!browser.cookies.contains_key("couchmail_session"));
}

#[tokio::test]
async fn logins_are_throttled_per_address_and_per_account() {
    let ui = ui_with_alice().await;
    let mut browser = ui.browser();
    browser.ip = Some("198.51.100.1".to_owned());
    // Two failures pass (throttle_after = 2), then even the right password waits.
    browser.login("alice@a.example", "wrong-1-password").await.expect(401);
    browser.login("alice@a.example", "wrong-2-password").await.expect(401);
    let throttled = browser.login("alice@a.example", "alice-secret-1").await;
    throttled.expect(429);
    assert!(throttled.body.contains("Too many failed logins"), "{}", throttled.body);
    assert!(throttled.headers.contains_key("retry-after"));
    // The account is held from another address too…
    browser.ip = Some("198.51.100.2".to_owned());
    browser.login("alice@a.example", "alice-secret-1").await.expect(429);
    // …and the first address is held for other accounts.
    browser.ip = Some("198.51.100.1".to_owned());
    browser.login("root@a.example", "root-secret-1").await.expect(429);
    // Another address and account are not.
    browser.ip = Some("198.51.100.3".to_owned());
    browser.login("root@a.example", "root-secret-1").await.expect_redirect("/");
    // Once the wait has passed, the right password works.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut again = ui.browser();
    again.ip = Some("198.51.100.4".to_owned());
    again.login("alice@a.example", "alice-secret-1").await.expect_redirect("/");
}

#[tokio::test]
async fn forged_posts_are_refused() {
    let ui = ui_with_alice().await;
    let mut browser = ui.browser();
    browser.login("root@a.example", "root-secret-1").await.expect_redirect("/");
    let csrf = browser.get("/domains").await.csrf().unwrap();
    // No token.
    let page = browser.post_raw("/domains", &[("name", "forged1.example")]).await;
    page.expect(403);
    // A wrong token.
    let wrong = "0".repeat(64);
    browser.post_raw("/domains", &[("csrf", wrong.as_str()), ("name", "forged2.example")]).await.expect(403);
    // The right token from another site's page.
    browser.origin = Some("https://evil.example".to_owned());
    browser.post_raw("/domains", &[("csrf", csrf.as_str()), ("name", "forged3.example")]).await.expect(403);
    // No Origin but a foreign Referer.
    browser.origin = None;
    let forged = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/domains", ui.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", browser.cookie_header_for_test())
        .header("referer", "https://evil.example/page")
        .body(format!("csrf={csrf}&name=forged4.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    // Nothing was created.
    for n in 1..=4 {
        assert!(ui.directory.get(&format!("domain:forged{n}.example")).await.unwrap().is_none());
    }
    // The genuine form works.
    browser.origin = Some(ui.base.clone());
    browser.post("/domains", "/domains", &[("name", "real.example")]).await.expect_redirect("/domains");
    assert!(ui.directory.get("domain:real.example").await.unwrap().is_some());
    // A login form posted without its token is refused too (login CSRF).
    let mut stranger = ui.browser();
    stranger.post_raw("/login", &[("address", "alice@a.example"), ("password", "alice-secret-1")]).await.expect(403);
}

#[tokio::test]
async fn idle_sessions_end() {
    let ui = Ui::start_with(couchmail_web::UiConfig {
        idle_timeout: Duration::from_millis(300),
        ..couchmail_web::UiConfig::default()
    })
    .await;
    ui.seed([fixtures::domain("a.example")]).await;
    ui.mailbox("alice@a.example", "alice-secret-1", &[]).await;
    let mut browser = ui.browser();
    browser.login("alice@a.example", "alice-secret-1").await.expect_redirect("/");
    // Use keeps it alive…
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        browser.get("/me").await.expect(200);
    }
    // …idleness ends it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    browser.get("/me").await.expect_redirect("/login?next=%2Fme");
}

#[tokio::test]
async fn parallel_guesses_are_throttled_too() {
    let ui = ui_with_alice().await;
    let mut browser = ui.browser();
    let csrf = browser.get("/login").await.csrf().unwrap();
    let mut guesses = tokio::task::JoinSet::new();
    for n in 0..10 {
        let (url, origin, csrf) = (format!("{}/login", ui.base), ui.base.clone(), csrf.clone());
        guesses.spawn(async move {
            let response = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("cookie", format!("couchmail_csrf={csrf}"))
                .header("origin", origin)
                .header("x-forwarded-for", format!("192.0.2.{n}"))
                .body(format!("csrf={csrf}&address=alice%40a.example&password=guess-{n}-password"))
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = guesses.join_next().await {
        statuses.push(status.unwrap());
    }
    statuses.sort_unstable();
    // throttle_after = 2: two guesses are checked, the other eight wait, however they race.
    assert_eq!(statuses.iter().filter(|status| **status == 401).count(), 2, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|status| **status == 429).count(), 8, "{statuses:?}");
}
