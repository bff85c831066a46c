//! The Sieve filter pages: the visual editor's flow the browser tests take,
//! its editing buttons and mistakes, scripts it cannot show (opened as text,
//! never rewritten), the raw editor's messages by line, activation and removal.
//!
//! The directory checks scripts with a stand-in for `sievec` that refuses any
//! line containing `bogus`, answering as sievec does (`line N: error: …`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use couchmail_directory::ScriptCheck;
use couchmail_model::{DocKind, Document, SieveName, SieveScript, ValidationError};
use couchmail_sieve_rules::{RuleSet, to_sieve};
use couchmail_testkit::fixtures;
use couchmail_web::UiConfig;

use super::{Browser, Ui};

/// Refuses lines containing `bogus`, as sievec would, naming the line.
struct BogusCheck;

impl ScriptCheck for BogusCheck {
    fn check<'a>(
        &'a self,
        script: &'a str,
    ) -> Pin<Box<dyn Future<Output = couchmail_directory::Result<()>> + Send + 'a>> {
        Box::pin(async move {
            let messages: Vec<String> = script
                .lines()
                .enumerate()
                .filter(|(_, line)| line.contains("bogus"))
                .map(|(idx, _)| format!("line {}: error: unknown command 'bogus'.", idx + 1))
                .collect();
            if messages.is_empty() {
                return Ok(());
            }
            let mut all = messages;
            all.push("error: validation failed.".to_owned());
            Err(ValidationError::field("script", all.join("\n")).into())
        })
    }
}

/// A UI whose directory checks scripts with [`BogusCheck`], with alice and bob in a.example.
async fn ui_with_alice() -> Ui {
    let ui =
        Ui::start_with_directory(UiConfig::default(), |directory| directory.with_script_check(Arc::new(BogusCheck)))
            .await;
    ui.seed([fixtures::domain("a.example")]).await;
    ui.mailbox("alice@a.example", "alice-secret-1", &[]).await;
    ui.mailbox("bob@a.example", "bob-secret-12", &[]).await;
    ui
}

async fn logged_in<'a>(ui: &'a Ui, address: &str, password: &str) -> Browser<'a> {
    let mut browser = ui.browser();
    browser.login(address, password).await.expect_redirect("/");
    browser
}

async fn stored_script(ui: &Ui, owner: &str, name: &str) -> Option<String> {
    match ui.directory.get(&DocKind::Sieve.id(format_args!("{owner}:{name}"))).await.unwrap() {
        Some(entry) => match entry.doc {
            Document::Sieve(script) => Some(script.script),
            _ => None,
        },
        None => None,
    }
}

async fn active_script(ui: &Ui, owner: &str) -> Option<String> {
    match ui.directory.get(&DocKind::Mailbox.id(owner)).await.unwrap().map(|entry| entry.doc) {
        Some(Document::Mailbox(mailbox)) => mailbox.sieve_active.map(|name| name.to_string()),
        _ => None,
    }
}

/// The fields the browser test fills: "if header Subject contains X then fileinto Folder (:create)".
fn subject_rule_fields(op: &str) -> Vec<(&str, &str)> {
    vec![
        ("name", "filters"),
        ("rev", ""),
        ("activate", "on"),
        ("rule-0-name", "To folder"),
        ("rule-0-enabled", "on"),
        ("rule-0-match", "all"),
        ("rule-0-condition-0-kind", "header"),
        ("rule-0-condition-0-headers", "Subject"),
        ("rule-0-condition-0-match_type", "contains"),
        ("rule-0-condition-0-value", "X"),
        ("rule-0-action-0-kind", "fileinto"),
        ("rule-0-action-0-folder", "Folder"),
        ("rule-0-action-0-create", "on"),
        ("op", op),
    ]
}

#[tokio::test]
async fn a_rule_built_in_the_visual_editor_is_stored_as_sieve_and_activated() {
    let ui = ui_with_alice().await;
    let mut alice = logged_in(&ui, "alice@a.example", "alice-secret-1").await;

    let list = alice.get("/me/sieve").await;
    list.expect(200);
    for id in ["sieve-list", "sieve-active-name", "sieve-new-form", "sieve-new-name", "sieve-new-submit"] {
        assert!(list.body.contains(&format!("id=\"{id}\"")), "{id} missing: {}", list.body);
    }
    // A new filter starts with "Subject contains …" and "file into …, creating it".
    let editor = alice.get("/me/sieve/edit?name=filters").await;
    editor.expect(200);
    for id in [
        "sieve-rules-form",
        "sieve-activate",
        "sieve-save",
        "sieve-add-rule",
        "rule-0-name",
        "rule-0-condition-0-kind",
        "rule-0-condition-0-headers",
        "rule-0-condition-0-match_type",
        "rule-0-condition-0-value",
        "rule-0-action-0-kind",
        "rule-0-action-0-folder",
        "rule-0-action-0-create",
    ] {
        assert!(
            editor.body.contains(&format!("id=\"{id}\" name=\"{id}\""))
                || editor.body.contains(&format!("id=\"{id}\"")),
            "{id} missing"
        );
    }
    assert!(editor.body.contains("value=\"Subject\""), "{}", editor.body);
    assert!(
        editor.body.contains("id=\"rule-0-action-0-create\" name=\"rule-0-action-0-create\" type=\"checkbox\" checked")
    );
    assert!(editor.body.contains("<script src=\"/me/sieve/editor.js\""));
    assert_eq!(alice.get("/me/sieve/editor.js").await.status, 200);
    // Without a name (a login drops the query) the list is shown; a bad name goes back to it with the reason.
    alice.get("/me/sieve/edit").await.expect_redirect("/me/sieve");
    alice.get("/me/sieve/edit?name=a%2Fb").await.expect_redirect("/me/sieve");
    assert!(alice.get("/me/sieve").await.body.contains("may not contain"), "the reason is shown");

    let saved = alice.post("/me/sieve/edit?name=filters", "/me/sieve/edit", &subject_rule_fields("save")).await;
    saved.expect_redirect("/me/sieve");
    assert_eq!(
        stored_script(&ui, "alice@a.example", "filters").await,
        Some(to_sieve(&RuleSet::documented_example()).unwrap())
    );
    assert_eq!(active_script(&ui, "alice@a.example").await.as_deref(), Some("filters"));
    let list = alice.get("/me/sieve").await;
    assert!(list.body.contains("data-name=\"filters\" data-active=\"true\""), "{}", list.body);
    assert!(list.body.contains("flash-ok"), "{}", list.body);

    // Opened again, the editor shows the same rule, with its revision.
    let editor = alice.get("/me/sieve/edit?name=filters").await;
    assert!(
        editor
            .body
            .contains("id=\"rule-0-condition-0-value\" name=\"rule-0-condition-0-value\" type=\"text\" value=\"X\""),
        "{}",
        editor.body
    );
    assert!(editor.body.contains("id=\"sieve-preview\""));
    assert!(!editor.body.contains("name=\"rev\" value=\"\""), "an existing filter carries its revision");
    // Bob sees none of it.
    let mut bob = logged_in(&ui, "bob@a.example", "bob-secret-12").await;
    assert!(!bob.get("/me/sieve").await.body.contains("data-name=\"filters\""));
}

#[tokio::test]
async fn editing_buttons_redraw_without_saving_and_mistakes_name_the_field() {
    let ui = ui_with_alice().await;
    let mut alice = logged_in(&ui, "alice@a.example", "alice-secret-1").await;

    let page = alice.post("/me/sieve", "/me/sieve/edit", &subject_rule_fields("rule-0-add-condition")).await;
    page.expect(200);
    assert!(page.body.contains("id=\"rule-0-condition-1-kind\""), "{}", page.body);
    assert!(page.body.contains("value=\"X\""), "what was typed stays");
    let page = alice.post("/me/sieve", "/me/sieve/edit", &subject_rule_fields("add-rule")).await;
    assert!(page.body.contains("id=\"rule-1-name\""));
    let page = alice.post("/me/sieve", "/me/sieve/edit", &subject_rule_fields("rule-0-action-0-remove")).await;
    assert!(!page.body.contains("id=\"rule-0-action-0-kind\""));
    assert_eq!(stored_script(&ui, "alice@a.example", "filters").await, None);

    let mut fields = subject_rule_fields("save");
    fields.retain(|(name, _)| *name != "rule-0-action-0-folder");
    fields.push(("rule-0-action-0-folder", "a//b"));
    let page = alice.post("/me/sieve", "/me/sieve/edit", &fields).await;
    page.expect(422);
    assert!(page.body.contains("data-field=\"rule-0-action-0-folder\""), "{}", page.body);
    assert!(page.body.contains("id=\"rule-0-action-0-folder\" name=\"rule-0-action-0-folder\" type=\"text\" value=\"a&#x2f;&#x2f;b\" placeholder=\"Lists/news\" aria-invalid=\"true\""), "{}", page.body);
    assert!(page.body.contains("flash-error"));
    assert!(page.body.contains("rule 1, action 1, folder: the folder name has an empty level"), "{}", page.body);
    assert_eq!(stored_script(&ui, "alice@a.example", "filters").await, None);

    let mut fields = subject_rule_fields("save");
    fields.push(("rule-0-condition-1-kind", "size"));
    fields.push(("rule-0-condition-1-amount", "lots"));
    let page = alice.post("/me/sieve", "/me/sieve/edit", &fields).await;
    page.expect(422);
    assert!(page.body.contains("data-field=\"rule-0-condition-1-amount\""), "{}", page.body);

    // A forged post without the form token is refused.
    let forged = alice.post_raw("/me/sieve/edit", &subject_rule_fields("save")).await;
    forged.expect(403);
    assert_eq!(stored_script(&ui, "alice@a.example", "filters").await, None);
}

#[tokio::test]
async fn a_hand_written_script_opens_as_text_and_is_never_rewritten() {
    let ui = ui_with_alice().await;
    let hand_written = "require [\"fileinto\", \"imap4flags\"];\nif header :is \"X-Spam\" \"yes\" { addflag \"\\\\Seen\"; fileinto \"Junk\"; }\n";
    ui.seed([Document::Sieve(SieveScript {
        owner: fixtures::address("alice@a.example"),
        name: SieveName::parse("mine").unwrap(),
        script: hand_written.to_owned(),
    })])
    .await;
    let mut alice = logged_in(&ui, "alice@a.example", "alice-secret-1").await;
    let list = alice.get("/me/sieve").await;
    assert!(list.body.contains("data-name=\"mine\" data-active=\"false\""), "{}", list.body);
    assert!(list.body.contains("Sieve text"));

    let page = alice.get("/me/sieve/edit?name=mine").await;
    page.expect(200);
    assert!(page.body.contains("id=\"sieve-not-representable\""), "{}", page.body);
    assert!(page.body.contains("id=\"sieve-raw-form\""));
    assert!(
        page.body.contains("addflag &quot;\\\\Seen&quot;; fileinto &quot;Junk&quot;;"),
        "the script is shown as written: {}",
        page.body
    );
    assert!(!page.body.contains("id=\"sieve-visual-link\""));
    // A text area drops one line break after its tag, so one is written there: the script starts right after it.
    assert!(page.body.contains("}'>\nrequire [&quot;fileinto&quot;"), "{}", page.body);

    // Posting the visual editor over it (an old tab, a crafted form) is refused.
    let mut fields = subject_rule_fields("save");
    fields.retain(|(name, _)| !matches!(*name, "name" | "rev"));
    fields.push(("name", "mine"));
    let page = alice.post("/me/sieve", "/me/sieve/edit", &fields).await;
    page.expect(422);
    assert!(page.body.contains("changed as text"), "{}", page.body);
    assert_eq!(stored_script(&ui, "alice@a.example", "mine").await.as_deref(), Some(hand_written));
}

#[tokio::test]
async fn the_raw_editor_shows_the_checks_messages_by_line() {
    let ui = ui_with_alice().await;
    let mut alice = logged_in(&ui, "alice@a.example", "alice-secret-1").await;
    let page = alice.get("/me/sieve/edit?name=raw&mode=raw").await;
    page.expect(200);
    for id in ["sieve-raw-form", "sieve-script", "sieve-activate", "sieve-raw-save"] {
        assert!(page.body.contains(&format!("id=\"{id}\"")), "{id} missing");
    }
    let script = "require \"fileinto\";\r\nbogus;\r\nfileinto \"A\";\r\n";
    let fields = [("name", "raw"), ("rev", ""), ("script", script)];
    let page = alice.post("/me/sieve", "/me/sieve/raw", &fields).await;
    page.expect(422);
    assert!(page.body.contains("<li data-line=\"2\">"), "{}", page.body);
    assert!(page.body.contains("line 2: error: unknown command &#x27;bogus&#x27;."), "{}", page.body);
    assert!(page.body.contains("<li id=\"sieve-line-2\" class=\"error-line\"><code>bogus;</code>"), "{}", page.body);
    assert!(page.body.contains("bogus;\nfileinto"), "the text typed is kept: {}", page.body);
    assert_eq!(stored_script(&ui, "alice@a.example", "raw").await, None);

    // A good script is stored with LF line ends; one in the editor's form can then be edited visually.
    let good = to_sieve(&RuleSet::documented_example()).unwrap().replace('\n', "\r\n");
    let fields = [("name", "raw"), ("rev", ""), ("script", good.as_str()), ("activate", "on")];
    alice.post("/me/sieve", "/me/sieve/raw", &fields).await.expect_redirect("/me/sieve");
    assert_eq!(
        stored_script(&ui, "alice@a.example", "raw").await,
        Some(to_sieve(&RuleSet::documented_example()).unwrap())
    );
    assert_eq!(active_script(&ui, "alice@a.example").await.as_deref(), Some("raw"));
    let page = alice.get("/me/sieve/edit?name=raw&mode=raw").await;
    assert!(page.body.contains("id=\"sieve-visual-link\""), "{}", page.body);
    let page = alice.get("/me/sieve/edit?name=raw").await;
    assert!(page.body.contains("id=\"sieve-rules-form\""));
}

#[tokio::test]
async fn scripts_are_activated_deactivated_and_removed() {
    let ui = ui_with_alice().await;
    for name in ["one", "two"] {
        ui.seed([Document::Sieve(SieveScript {
            owner: fixtures::address("alice@a.example"),
            name: SieveName::parse(name).unwrap(),
            script: "keep;\n".to_owned(),
        })])
        .await;
    }
    let mut alice = logged_in(&ui, "alice@a.example", "alice-secret-1").await;
    alice.post("/me/sieve", "/me/sieve/activate", &[("name", "two")]).await.expect_redirect("/me/sieve");
    assert_eq!(active_script(&ui, "alice@a.example").await.as_deref(), Some("two"));
    let list = alice.get("/me/sieve").await;
    assert!(list.body.contains("data-name=\"two\" data-active=\"true\""), "{}", list.body);
    assert!(list.body.contains("id=\"sieve-deactivate-submit\""));
    // A script that does not exist cannot be activated.
    alice.post("/me/sieve", "/me/sieve/activate", &[("name", "three")]).await.expect_redirect("/me/sieve");
    assert!(alice.get("/me/sieve").await.body.contains("flash-error"));
    assert_eq!(active_script(&ui, "alice@a.example").await.as_deref(), Some("two"));

    alice.post("/me/sieve", "/me/sieve/activate", &[("name", "")]).await.expect_redirect("/me/sieve");
    assert_eq!(active_script(&ui, "alice@a.example").await, None);

    let rev = ui.directory.get(&DocKind::Sieve.id("alice@a.example:one")).await.unwrap().unwrap().rev.to_string();
    alice
        .post("/me/sieve", "/me/sieve/delete", &[("name", "one"), ("rev", "1-stale")])
        .await
        .expect_redirect("/me/sieve");
    assert!(stored_script(&ui, "alice@a.example", "one").await.is_some(), "a stale revision removes nothing");
    alice
        .post("/me/sieve", "/me/sieve/delete", &[("name", "one"), ("rev", rev.as_str())])
        .await
        .expect_redirect("/me/sieve");
    assert_eq!(stored_script(&ui, "alice@a.example", "one").await, None);
}
