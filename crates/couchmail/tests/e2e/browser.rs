//! The web UI in a real headless Chromium (issue #7, "Prove it"): an admin
//! creates a domain and a mailbox through the pages, the mailbox's owner
//! builds a filter in the visual Sieve editor and a message sent over SMTP
//! lands in the chosen folder (real Postfix and Dovecot); a hand-written
//! script opens in the raw editor unchanged and `sievec`'s errors show by
//! line; a domain-admin cannot see or change another domain's pages or
//! data; forged cross-site posts are refused. Screenshots of the main pages
//! go to [`screenshot_dir`](couchmail_testkit::browser::screenshot_dir).
//!
//! The pages are driven through the stable element ids documented in
//! `crates/web/src/ui/mod.rs` and `crates/web/src/ui/sieve.rs`. Each test
//! has a browser of its own and domains of its own on the shared stack.

use std::time::Duration;

use couchmail_testkit::browser::{Browser, StaticSite, screenshot_dir};
use couchmail_testkit::stack::MailStack;
use serde_json::{Value, json};

use super::support::{self, DELIVERY, PASSWORD, shared, subject, wait_for_rcpt};

/// How long a page may take to show what a test waits for.
const PAGE: Duration = Duration::from_secs(10);

/// The UI's URL of `path` on the stack's API listener.
fn ui(stack: &MailStack, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", stack.ports().api)
}

/// A browser, or `None` when neither the stack nor Chromium can run here (off CI).
fn browser_for(stack: Option<&'static MailStack>) -> Option<(&'static MailStack, Browser)> {
    let stack = stack?;
    let browser = Browser::start_if_available()?;
    Some((stack, browser))
}

/// Adds `domain` (if new) and a mailbox `address` called `name` with [`PASSWORD`] and `roles`, through the CLI.
fn mailbox_with_roles(stack: &MailStack, domain: &str, (address, name): (&str, &str), roles: &[&str]) {
    let _ = stack.cli(&["domain", "add", domain]);
    let mut args = vec!["mailbox", "add", address, "--name", name, "--password-stdin"];
    for role in roles {
        args.extend(["--role", role]);
    }
    stack.cli_ok_with_input(&args, &format!("{PASSWORD}\n"));
}

/// Saves a screenshot named `name` and says where it went.
fn shoot(browser: &Browser, name: &str) {
    let path = browser.screenshot_named(name).unwrap();
    eprintln!("screenshot: {}", path.display());
}

/// Logs in through the login page and waits for the page after it.
fn log_in(browser: &Browser, stack: &MailStack, address: &str, password: &str) {
    browser.open(&ui(stack, "/login")).unwrap();
    browser.wait_for("#login-form", PAGE).unwrap();
    browser.fill("login-address", address).unwrap();
    browser.fill("login-password", password).unwrap();
    browser.click("#login-submit").unwrap();
    browser.wait_for("#whoami", PAGE).unwrap_or_else(|err| {
        panic!("no page after logging in as {address}: {err}\n{}", browser.body_text().unwrap_or_default())
    });
    assert_eq!(browser.text("#whoami").unwrap(), address);
}

/// Logs out through the header's button.
fn log_out(browser: &Browser) {
    browser.click("#logout-submit").unwrap();
    browser.wait_for("#login-form", PAGE).unwrap();
}

/// What a `fetch` from the current page got: the status (0 for a redirect,
/// which is not followed) and the body.
#[derive(Debug)]
struct Fetched {
    status: u64,
    body: String,
}

/// Requests `url` from the current page with the browser's cookies, as a
/// script of the page would; `form` is sent URL-encoded as a POST.
fn fetch(browser: &Browser, url: &str, form: Option<&str>) -> Fetched {
    let script = r#"
        const [url, form, done] = arguments;
        const init = { credentials: 'same-origin', redirect: 'manual' };
        if (form !== null) {
            init.method = 'POST';
            init.headers = { 'Content-Type': 'application/x-www-form-urlencoded' };
            init.body = form;
        }
        fetch(url, init)
            .then(async (response) => done({ status: response.status, body: await response.text() }))
            .catch((error) => done({ status: -1, body: String(error) }));
    "#;
    let form = form.map_or(Value::Null, |form| json!(form));
    let answer = browser.execute_async(script, vec![json!(url), form]).unwrap();
    let status = answer["status"].as_u64().unwrap_or_else(|| panic!("fetch {url} failed: {answer}"));
    Fetched { status, body: answer["body"].as_str().unwrap_or_default().to_owned() }
}

/// The HTTP status of the document the browser shows (Navigation Timing's `responseStatus`).
fn page_status(browser: &Browser) -> u64 {
    let status = browser
        .execute(
            "const [entry] = performance.getEntriesByType('navigation'); return entry ? entry.responseStatus : null;",
            Vec::new(),
        )
        .unwrap();
    status.as_u64().unwrap_or_else(|| panic!("the browser reports no status for the page: {status}"))
}

/// The page's CSRF token (every page with a form carries it in `input[name=csrf]`).
fn csrf_token(browser: &Browser) -> String {
    browser.attribute("input[name=csrf]", "value").unwrap().expect("the page carries a CSRF token")
}

/// Percent-encodes a form value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

#[test]
fn an_admin_creates_a_mailbox_and_its_user_files_mail_into_a_folder_with_the_visual_sieve_editor() {
    let Some((stack, browser)) = browser_for(shared()) else { return };
    eprintln!("screenshots go to {}", screenshot_dir().display());
    let admin = "root@browser-ops.test";
    mailbox_with_roles(stack, "browser-ops.test", (admin, "Ops Admin"), &["admin"]);
    let domain = "browser-flow.test";
    let user = "carol@browser-flow.test";

    // Anonymous visitors are sent to the login page.
    browser.open(&ui(stack, "/")).unwrap();
    browser.wait_for("#login-form", PAGE).unwrap();
    assert!(browser.current_url().unwrap().contains("/login"), "{}", browser.current_url().unwrap());
    shoot(&browser, "01-login");

    // A wrong password is refused on the page, with no session.
    browser.fill("login-address", admin).unwrap();
    browser.fill("login-password", "not the password").unwrap();
    browser.click("#login-submit").unwrap();
    browser.wait_for("#login-error", PAGE).unwrap();
    assert!(!browser.exists("#whoami").unwrap(), "a wrong password logged in");

    log_in(&browser, stack, admin, PASSWORD);
    let session = browser.cookie("couchmail_session").unwrap().expect("a session cookie after login");
    assert!(session.http_only, "the session cookie must be HttpOnly: {session:?}");
    assert_eq!(session.same_site.as_deref(), Some("Strict"), "{session:?}");
    browser.open(&ui(stack, "/")).unwrap();
    browser.wait_for("#counts", PAGE).unwrap();
    shoot(&browser, "02-dashboard");

    // The admin creates the domain.
    browser.open(&ui(stack, "/domains")).unwrap();
    browser.wait_for("#domain-create-form", PAGE).unwrap();
    browser.fill("domain-name", domain).unwrap();
    browser.click("#domain-create-submit").unwrap();
    browser.wait_for("#flash", PAGE).unwrap();
    assert!(browser.exists("#flash.flash-ok").unwrap(), "{}", browser.text("#flash").unwrap());
    browser.open(&ui(stack, "/domains")).unwrap();
    browser.wait_for(&format!("tr[data-domain=\"{domain}\"]"), PAGE).unwrap();
    shoot(&browser, "03-domains");
    assert_eq!(stack.api().get(&format!("/domains/{domain}")).status, 200, "the domain is in the store");

    // The admin creates the mailbox.
    browser.open(&ui(stack, "/mailboxes")).unwrap();
    browser.wait_for("#mailbox-create-form", PAGE).unwrap();
    browser.fill("mailbox-address", user).unwrap();
    browser.fill("mailbox-password", PASSWORD).unwrap();
    browser.fill("mailbox-name", "Carol Browser").unwrap();
    browser.click("#mailbox-create-submit").unwrap();
    browser.wait_for("#flash", PAGE).unwrap();
    assert!(browser.exists("#flash.flash-ok").unwrap(), "{}", browser.text("#flash").unwrap());
    browser.open(&ui(stack, &format!("/mailboxes?domain={domain}"))).unwrap();
    browser.wait_for(&format!("tr[data-address=\"{user}\"]"), PAGE).unwrap();
    shoot(&browser, "04-mailboxes");
    wait_for_rcpt(stack, user, 250);

    // The user logs in with the password the admin set, and is not an admin.
    log_out(&browser);
    assert!(browser.cookie("couchmail_session").unwrap().is_none_or(|cookie| cookie.value != session.value));
    log_in(&browser, stack, user, PASSWORD);
    let listing = fetch(&browser, &ui(stack, "/domains"), None);
    assert!(!listing.body.contains("domain-create-form"), "a user is offered to create domains: {listing:?}");
    assert!(!listing.body.contains("browser-ops.test"), "a user sees other domains: {listing:?}");

    // The user builds a filter in the visual editor: Subject contains the needle → fileinto :create the folder.
    let needle = format!("browser-needle-{}", std::process::id());
    let folder = "Filed";
    browser.open(&ui(stack, "/me/sieve")).unwrap();
    browser.wait_for("#sieve-new-form", PAGE).unwrap();
    browser.fill("sieve-new-name", "sorter").unwrap();
    browser.click("#sieve-new-submit").unwrap();
    browser.wait_for("#sieve-rules-form", PAGE).unwrap();
    browser.fill("rule-0-name", "Needles to Filed").unwrap();
    browser.set_checked("rule-0-enabled", true).unwrap();
    browser.fill("rule-0-match", "all").unwrap();
    browser.fill("rule-0-condition-0-kind", "header").unwrap();
    browser.fill("rule-0-condition-0-headers", "Subject").unwrap();
    browser.fill("rule-0-condition-0-match_type", "contains").unwrap();
    browser.fill("rule-0-condition-0-value", &needle).unwrap();
    browser.fill("rule-0-action-0-kind", "fileinto").unwrap();
    browser.fill("rule-0-action-0-folder", folder).unwrap();
    browser.set_checked("rule-0-action-0-create", true).unwrap();
    browser.set_checked("sieve-activate", true).unwrap();
    shoot(&browser, "05-sieve-editor");
    browser.click("#sieve-save").unwrap();
    browser.wait_for("#flash", PAGE).unwrap();
    assert!(browser.exists("#flash.flash-ok").unwrap(), "saving the filter failed: {}", browser.body_text().unwrap());
    browser.wait_for("tr[data-name=\"sorter\"][data-active=\"true\"]", PAGE).unwrap();
    assert_eq!(browser.text("#sieve-active-name").unwrap(), "sorter");
    shoot(&browser, "06-sieve-list");

    // The editor opens the stored script again as the same rule, and shows the Sieve it wrote.
    browser.open(&ui(stack, "/me/sieve/edit?name=sorter")).unwrap();
    browser.wait_for("#sieve-rules-form", PAGE).unwrap();
    assert_eq!(browser.value("rule-0-condition-0-value").unwrap(), needle);
    assert_eq!(browser.value("rule-0-action-0-folder").unwrap(), folder);
    // The script sits in a closed <details>: open it as a user would.
    browser.click("details:has(#sieve-preview) > summary").unwrap();
    let preview = browser.text("#sieve-preview").unwrap();
    assert!(preview.contains(&format!("fileinto :create \"{folder}\"")), "{preview}");

    // Mail with the needle in its subject lands in the folder (created by the filter); other mail in INBOX.
    wait_for_active_sieve_containing(stack, user, &needle);
    let filed = subject(&format!("about {needle} today"));
    stack.deliver("sender@outside.example", user, &filed);
    stack.expect_message(user, PASSWORD, folder, &filed, DELIVERY);
    assert_eq!(stack.count_messages(user, PASSWORD, "INBOX", &filed), 0, "filed mail is in INBOX too");
    let other = subject("nothing to file");
    stack.deliver("sender@outside.example", user, &other);
    stack.expect_message(user, PASSWORD, "INBOX", &other, DELIVERY);
    assert_eq!(stack.count_messages(user, PASSWORD, folder, &other), 0, "unmatched mail was filed");
}

#[test]
fn a_hand_written_script_opens_in_the_raw_editor_unchanged_and_sievec_errors_show_by_line() {
    let Some((stack, browser)) = browser_for(shared()) else { return };
    let user = "dave@browser-raw.test";
    mailbox_with_roles(stack, "browser-raw.test", (user, "Dave Raw"), &[]);
    // No marker line and a comment of its own: the visual editor cannot represent it.
    let hand_written = "require [\"fileinto\"];\n# sorted by hand\nif address :is \"from\" \"boss@work.example\" {\n  fileinto \"Boss\";\n}\n";
    let created =
        stack.api().post(&format!("/mailboxes/{user}/sieve"), &json!({ "name": "hand", "script": hand_written }));
    assert_eq!(created.status, 201, "{created:?}");

    log_in(&browser, stack, user, PASSWORD);
    browser.open(&ui(stack, "/me/sieve")).unwrap();
    browser.wait_for("tr[data-name=\"hand\"]", PAGE).unwrap();
    browser.click("tr[data-name=\"hand\"] a.sieve-edit").unwrap();
    browser.wait_for("#sieve-raw-form", PAGE).unwrap();
    assert!(browser.exists("#sieve-not-representable").unwrap(), "no note on why the rule editor cannot open it");
    assert!(!browser.exists("#sieve-rules-form").unwrap(), "a hand-written script opened in the rule editor");
    assert_eq!(browser.value("sieve-script").unwrap(), hand_written, "the raw editor changed the script");
    shoot(&browser, "09-sieve-raw-editor");

    // A mistake on line 3 is refused by sievec, shown by line, and nothing is stored.
    let broken = "require \"fileinto\";\nif header :contains \"subject\" \"x\" {\n  fileinot \"Oops\";\n}\n";
    browser.fill("sieve-script", broken).unwrap();
    browser.click("#sieve-raw-save").unwrap();
    browser.wait_for("#sieve-errors", PAGE).unwrap();
    assert_eq!(page_status(&browser), 422, "{}", browser.body_text().unwrap());
    let errors = browser.texts("#sieve-errors li[data-line=\"3\"]").unwrap();
    assert!(!errors.is_empty(), "no error on line 3: {:?}", browser.texts("#sieve-errors li").unwrap());
    assert!(errors.iter().any(|error| error.contains("fileinot")), "{errors:?}");
    assert!(browser.exists("#sieve-line-3.error-line").unwrap(), "line 3 is not marked");
    assert!(!browser.exists("#sieve-line-1.error-line").unwrap(), "line 1 is marked though it is fine");
    shoot(&browser, "10-sieve-raw-errors");
    let stored = stack.api().get(&format!("/mailboxes/{user}/sieve/hand"));
    assert_eq!(stored.body["script"], json!(hand_written), "a refused script replaced the stored one: {stored:?}");
}

#[test]
fn a_domain_admin_cannot_see_or_change_another_domains_pages_or_data() {
    let Some((stack, browser)) = browser_for(shared()) else { return };
    let (own, other) = ("browser-da-own.test", "browser-da-other.test");
    let boss = "boss@browser-da-own.test";
    mailbox_with_roles(stack, own, (boss, "Boss Name"), &[&format!("domain-admin:{own}")]);
    mailbox_with_roles(stack, own, ("staff@browser-da-own.test", "Staff Name"), &[]);
    mailbox_with_roles(stack, other, ("victim@browser-da-other.test", "Victim Name"), &[]);
    wait_for_rcpt(stack, "victim@browser-da-other.test", 250);

    log_in(&browser, stack, boss, PASSWORD);

    // Lists show the own domain and its mailboxes, and nothing of the other.
    browser.open(&ui(stack, "/domains")).unwrap();
    browser.wait_for(&format!("tr[data-domain=\"{own}\"]"), PAGE).unwrap();
    assert!(!browser.exists(&format!("tr[data-domain=\"{other}\"]")).unwrap(), "the other domain is listed");
    assert!(!browser.source().unwrap().contains(other), "the domains page mentions {other}");
    browser.open(&ui(stack, "/mailboxes")).unwrap();
    browser.wait_for("tr[data-address=\"staff@browser-da-own.test\"]", PAGE).unwrap();
    let source = browser.source().unwrap();
    assert!(!source.contains("victim@") && !source.contains("Victim Name"), "the other domain's mailbox is listed");
    browser.open(&ui(stack, &format!("/mailboxes?q=victim&domain={other}"))).unwrap();
    let source = browser.source().unwrap();
    assert!(
        !source.contains("victim@") && !source.contains("Victim Name"),
        "a search shows the other domain's mailbox"
    );
    browser.open(&ui(stack, &format!("/domains?q={other}"))).unwrap();
    assert!(!browser.exists(&format!("tr[data-domain=\"{other}\"]")).unwrap(), "a search shows the other domain");

    // The other domain's pages are refused, without its data.
    browser.open(&ui(stack, "/domains")).unwrap();
    let own_mailbox = fetch(&browser, &ui(stack, &format!("/mailboxes/staff@{own}")), None);
    assert_eq!(own_mailbox.status, 200, "the own domain's mailbox page: {own_mailbox:?}");
    assert!(own_mailbox.body.contains("Staff Name"), "the mailbox page shows the mailbox's name: {own_mailbox:?}");
    for path in [format!("/domains/{other}"), format!("/mailboxes/victim@{other}")] {
        let answer = fetch(&browser, &ui(stack, &path), None);
        assert!(matches!(answer.status, 403 | 404), "GET {path} answered {}: {}", answer.status, answer.body);
        assert!(!answer.body.contains("Victim Name"), "GET {path} shows the other domain's data: {}", answer.body);
    }
    browser.open(&ui(stack, &format!("/domains/{other}"))).unwrap();
    shoot(&browser, "07-domain-admin-refused");
    assert!(!browser.exists("#domain-settings-form").unwrap(), "the other domain's settings are shown");

    // A write to the other domain with this session's own valid token is refused and changes nothing.
    browser.open(&ui(stack, &format!("/domains/{own}"))).unwrap();
    browser.wait_for("#domain-alias-form", PAGE).unwrap();
    let token = encode(&csrf_token(&browser));
    let stolen = "browser-da-stolen.test";
    let answer =
        fetch(&browser, &ui(stack, &format!("/domains/{other}/aliases")), Some(&format!("csrf={token}&name={stolen}")));
    assert!(matches!(answer.status, 403 | 404), "aliasing {other} answered {}: {}", answer.status, answer.body);
    assert_eq!(stack.api().get(&format!("/domain-aliases/{stolen}")).status, 404, "{stolen} was created");
    let answer = fetch(&browser, &ui(stack, "/domains"), Some(&format!("csrf={token}&name=browser-da-sneaky.test")));
    assert!(matches!(answer.status, 403 | 404), "a domain-admin may not create domains: {}", answer.status);
    assert_eq!(stack.api().get("/domains/browser-da-sneaky.test").status, 404);

    // The same request on the own domain works: the refusals above were about the other domain.
    let allowed = "browser-da-own-alias.test";
    let answer =
        fetch(&browser, &ui(stack, &format!("/domains/{own}/aliases")), Some(&format!("csrf={token}&name={allowed}")));
    assert!(matches!(answer.status, 0 | 200 | 303), "aliasing the own domain answered {}", answer.status);
    assert_eq!(stack.api().get(&format!("/domain-aliases/{allowed}")).status, 200, "the control write did nothing");
}

#[test]
fn forged_cross_site_posts_are_refused_and_change_nothing() {
    let Some((stack, browser)) = browser_for(shared()) else { return };
    let admin = "root@browser-csrf.test";
    mailbox_with_roles(stack, "browser-csrf.test", (admin, "Csrf Admin"), &["admin"]);
    log_in(&browser, stack, admin, PASSWORD);

    let forged = |name: &str, token_field: &str| {
        format!(
            "<!doctype html><title>Win a prize</title>\
             <form id=\"forged\" method=\"post\" action=\"{}\">{token_field}\
             <input name=\"name\" value=\"{name}\"></form>\
             <script>document.getElementById('forged').submit();</script>",
            ui(stack, "/domains")
        )
    };
    let no_token = forged("forged-none.test", "");
    let wrong_token = forged("forged-wrong.test", "<input name=\"csrf\" value=\"guessed-token\">");
    let other_site = forged("forged-site.test", "");
    let attacker =
        StaticSite::serve(&[("/none.html", &no_token), ("/wrong.html", &wrong_token), ("/site.html", &other_site)])
            .unwrap();

    // Same site (127.0.0.1), another origin (port): the session cookie goes along, the checks must refuse.
    for (page, domain) in [("/none.html", "forged-none.test"), ("/wrong.html", "forged-wrong.test")] {
        browser.open(&attacker.url(page)).unwrap();
        wait_until_left(&browser, &attacker.url(page));
        let text = browser.body_text().unwrap();
        assert_eq!(page_status(&browser), 403, "the forged post from {page} was not refused: {text}");
        assert!(browser.exists("#error-message").unwrap(), "{text}");
        assert_eq!(stack.api().get(&format!("/domains/{domain}")).status, 404, "{page} created {domain}");
    }
    shoot(&browser, "08-forged-post-refused");

    // Another site (localhost): SameSite=Strict keeps the cookie home, and the origin check refuses.
    browser.open(&attacker.url_on_host("localhost", "/site.html")).unwrap();
    wait_until_left(&browser, &attacker.url_on_host("localhost", "/site.html"));
    assert_eq!(page_status(&browser), 403, "the cross-site post: {}", browser.body_text().unwrap());
    assert_eq!(stack.api().get("/domains/forged-site.test").status, 404, "a cross-site post created a domain");

    // From the UI's own origin: without the token, or with a wrong one, refused; with it, done.
    browser.open(&ui(stack, "/domains")).unwrap();
    browser.wait_for("#domain-create-form", PAGE).unwrap();
    let token = csrf_token(&browser);
    let without = fetch(&browser, &ui(stack, "/domains"), Some("name=forged-same-origin.test"));
    assert_eq!(without.status, 403, "a same-origin post without a token: {without:?}");
    let wrong = fetch(&browser, &ui(stack, "/domains"), Some("csrf=AAAA&name=forged-same-origin.test"));
    assert_eq!(wrong.status, 403, "a same-origin post with a wrong token: {wrong:?}");
    assert_eq!(stack.api().get("/domains/forged-same-origin.test").status, 404);
    let with = fetch(
        &browser,
        &ui(stack, "/domains"),
        Some(&format!("csrf={}&name=browser-csrf-control.test", encode(&token))),
    );
    assert!(matches!(with.status, 0 | 200 | 303), "the control post with the token failed: {with:?}");
    assert_eq!(stack.api().get("/domains/browser-csrf-control.test").status, 200, "the control post did nothing");
}

/// Waits until the browser has left `url` (an auto-submitting form has posted).
fn wait_until_left(browser: &Browser, url: &str) {
    let deadline = std::time::Instant::now() + PAGE;
    while browser.current_url().unwrap() == url {
        assert!(std::time::Instant::now() < deadline, "the page at {url} never submitted its form");
        std::thread::sleep(Duration::from_millis(50));
    }
    browser.wait_for("body", PAGE).unwrap();
}

/// Waits (at most 5 s) until the Sieve dict hands out an active script of
/// `user` that mentions `needle`, and returns it.
fn wait_for_active_sieve_containing(stack: &MailStack, user: &str, needle: &str) -> String {
    support::active_sieve_served(stack, user, |script| script.contains(needle)).unwrap_or_else(|| {
        panic!("the Sieve dict never served an active script of {user} with {needle:?}\n{}", stack.diagnostics())
    })
}
