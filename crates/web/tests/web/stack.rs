//! The stack's daemons and listeners on the dashboard and in `GET /api/v1/status`, reported by a fake
//! [`StackStatus`] in place of couchmail up's supervisor.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use couchmail_model::{Document, Role, Token, TokenPrincipal};
use couchmail_testkit::fixtures;
use couchmail_web::{DaemonHealth, DaemonState, ListenerInfo, StackStatus};
use serde_json::Value;

use super::ui::Ui;

/// A stack whose daemons are whatever the test last set.
struct FakeStack {
    daemons: Mutex<Option<Vec<DaemonHealth>>>,
}

impl StackStatus for FakeStack {
    fn daemons(&self) -> Option<Vec<DaemonHealth>> {
        self.daemons.lock().unwrap().clone()
    }

    fn listeners(&self) -> Vec<ListenerInfo> {
        vec![ListenerInfo { name: "ManageSieve".to_owned(), address: "127.0.0.1:4190".to_owned() }]
    }
}

fn daemon(name: &str, state: DaemonState, restarts: u32) -> DaemonHealth {
    DaemonHealth { name: name.to_owned(), description: format!("the {name} daemon"), state, restarts }
}

/// One daemon in each state.
fn every_state() -> Vec<DaemonHealth> {
    vec![
        daemon("spamd", DaemonState::Starting, 0),
        daemon("postfix", DaemonState::Running { pid: 4242, uptime: Some(Duration::from_secs(3_725)) }, 0),
        daemon("dovecot", DaemonState::Restarting { last_exit: "exit status: 89".to_owned() }, 3),
        daemon("spamass-milter", DaemonState::Stopped, 1),
    ]
}

/// The table row of `name` on `page`.
fn row<'a>(page: &'a str, name: &str) -> &'a str {
    let start = page.find(&format!("data-daemon=\"{name}\"")).unwrap_or_else(|| panic!("no row for {name}: {page}"));
    let end = page[start..].find("</tr>").unwrap() + start;
    &page[start..end]
}

/// A UI reporting `fake`, with an admin, a domain admin of `a.example` and a user.
async fn start(fake: Arc<FakeStack>) -> Ui {
    let ui = Ui::start_with_stack(fake).await;
    ui.seed([fixtures::domain("a.example")]).await;
    ui.mailbox("root@a.example", "root-secret-1", &[Role::Admin]).await;
    ui.mailbox("boss@a.example", "boss-secret-1", &[Role::DomainAdmin(fixtures::domain_name("a.example"))]).await;
    ui
}

async fn status_json(ui: &Ui, principal: TokenPrincipal) -> (u16, Value) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (token, bearer) = Token::generate(principal, "test".to_owned(), now);
    ui.directory.create(&Document::Token(token)).await.unwrap();
    let response =
        reqwest::Client::new().get(format!("{}/api/v1/status", ui.base)).bearer_auth(bearer).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn the_admin_dashboard_shows_each_daemon_state_in_words() {
    let fake = Arc::new(FakeStack { daemons: Mutex::new(Some(every_state())) });
    let ui = start(fake.clone()).await;
    let mut admin = ui.browser();
    admin.login("root@a.example", "root-secret-1").await.expect_redirect("/");
    let page = admin.get("/").await;
    page.expect(200);
    let body = &page.body;
    assert!(body.contains("id=\"daemons\""), "{body}");
    let postfix = row(body, "postfix");
    assert!(postfix.contains(">running<") && postfix.contains("4242") && postfix.contains("1 h 2 min"), "{postfix}");
    let dovecot = row(body, "dovecot");
    assert!(dovecot.contains(">restarting<") && dovecot.contains("exit status: 89"), "{dovecot}");
    assert!(dovecot.contains("<td>3</td>"), "the restarts are counted: {dovecot}");
    assert!(row(body, "spamd").contains(">starting<"), "{body}");
    assert!(row(body, "spamass-milter").contains(">stopped<"), "{body}");
    assert!(body.contains("ManageSieve: <code>127.0.0.1:4190</code>"), "{body}");

    // A restart shows at the next view: the page asks on every request.
    *fake.daemons.lock().unwrap() = Some(vec![daemon("postfix", DaemonState::Running { pid: 5151, uptime: None }, 1)]);
    let page = admin.get("/").await;
    let postfix = row(&page.body, "postfix");
    assert!(postfix.contains(">running<") && postfix.contains("5151") && !postfix.contains("up "), "{postfix}");
    assert!(!page.body.contains("data-daemon=\"dovecot\""), "{}", page.body);

    // Without supervised daemons the page says they run elsewhere, and still lists the listeners.
    *fake.daemons.lock().unwrap() = None;
    let page = admin.get("/").await;
    assert!(page.body.contains("id=\"daemons-elsewhere\"") && page.body.contains("run elsewhere"), "{}", page.body);
    assert!(!page.body.contains("data-daemon="), "{}", page.body);
    assert!(page.body.contains("127.0.0.1:4190"), "{}", page.body);
}

#[tokio::test]
async fn a_domain_admin_sees_its_counts_but_not_the_daemons() {
    let fake = Arc::new(FakeStack { daemons: Mutex::new(Some(every_state())) });
    let ui = start(fake).await;
    let mut boss = ui.browser();
    boss.login("boss@a.example", "boss-secret-1").await.expect_redirect("/");
    let page = boss.get("/").await;
    page.expect(200);
    assert!(page.body.contains("id=\"count-domains\""), "{}", page.body);
    for hidden in ["Daemons", "data-daemon=", "postfix", "4242", "daemons-elsewhere", "127.0.0.1:4190"] {
        assert!(!page.body.contains(hidden), "a domain admin sees {hidden}: {}", page.body);
    }
}

#[tokio::test]
async fn an_admin_without_a_stack_reads_that_the_daemons_run_elsewhere() {
    let ui = Ui::start().await;
    ui.seed([fixtures::domain("a.example")]).await;
    ui.mailbox("root@a.example", "root-secret-1", &[Role::Admin]).await;
    let mut admin = ui.browser();
    admin.login("root@a.example", "root-secret-1").await.expect_redirect("/");
    let page = admin.get("/").await;
    assert!(page.body.contains("id=\"daemons-elsewhere\""), "{}", page.body);
    let (status, body) = status_json(&ui, TokenPrincipal::Admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["daemons"], Value::Null);
    assert_eq!(body["listeners"], serde_json::json!([]));
}

#[tokio::test]
async fn status_lists_the_daemons_and_listeners_for_admins_only() {
    let fake = Arc::new(FakeStack { daemons: Mutex::new(Some(every_state())) });
    let ui = start(fake).await;
    let (status, body) = status_json(&ui, TokenPrincipal::Admin).await;
    assert_eq!(status, 200, "{body}");
    let daemons = body["daemons"].as_array().unwrap();
    let names: Vec<&str> = daemons.iter().map(|daemon| daemon["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["spamd", "postfix", "dovecot", "spamass-milter"]);
    let postfix = &daemons[1];
    assert_eq!(postfix["state"], "running");
    assert_eq!(postfix["pid"], 4242);
    assert_eq!(postfix["uptime_seconds"], 3_725);
    assert_eq!(postfix["last_exit"], Value::Null);
    let dovecot = &daemons[2];
    assert_eq!(dovecot["state"], "restarting");
    assert_eq!(dovecot["last_exit"], "exit status: 89");
    assert_eq!(dovecot["restarts"], 3);
    assert_eq!(dovecot["pid"], Value::Null);
    assert_eq!(daemons[0]["state"], "starting");
    assert_eq!(daemons[3]["state"], "stopped");
    assert_eq!(body["listeners"], serde_json::json!([{ "name": "ManageSieve", "address": "127.0.0.1:4190" }]));

    let (status, body) = status_json(&ui, TokenPrincipal::Mailbox(fixtures::address("boss@a.example"))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
}

#[tokio::test]
async fn the_openapi_document_describes_the_daemons() {
    let ui = Ui::start().await;
    let response = reqwest::get(format!("{}/api/v1/openapi.json", ui.base)).await.unwrap();
    let document: Value = response.json().await.unwrap();
    let schemas = &document["components"]["schemas"];
    assert!(schemas["StatusView"]["properties"]["daemons"].is_object(), "{}", schemas["StatusView"]);
    for field in ["name", "state", "pid", "uptime_seconds", "last_exit", "restarts"] {
        assert!(
            schemas["DaemonView"]["properties"][field].is_object(),
            "DaemonView lacks {field}: {}",
            schemas["DaemonView"]
        );
    }
    assert!(schemas["ListenerInfo"]["properties"]["address"].is_object(), "{}", schemas["ListenerInfo"]);
}
