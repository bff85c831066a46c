//! The REST API over real HTTP: a server on 127.0.0.1:0 in front of a SQLite
//! store in a temporary directory, driven with reqwest.
//!
//! Each test starts its own server (cheap: one SQLite file), seeds documents
//! and tokens through the `Directory`, as the CLI would, and checks what a
//! client sees: statuses, error codes and fields, ETags, and what the store
//! holds afterwards.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly on an unexpected error")]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use couchmail_directory::Directory;
use couchmail_index::Index;
use couchmail_model::{DocKind, Document, Mailbox, Role, Token, TokenPrincipal};
use couchmail_store::{ListOptions, RawDoc, Store};
use couchmail_testkit::TempStore;
use couchmail_testkit::fixtures;
use couchmail_web::{ApiState, StackStatus, UiConfig, serve_with};
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, ETAG, IF_MATCH, RETRY_AFTER, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// Tests in files of their own under `tests/web/`, using the helpers below.
mod web {
    mod conflicts;
    mod https;
    mod listings;
    mod outage;
    mod stack;
    mod ui;
}

/// A running API with its store.
struct Api {
    base: String,
    client: reqwest::Client,
    directory: Directory,
    store: TempStore,
    index: Arc<Index>,
    _stop: oneshot::Sender<()>,
}

/// The API and the web UI served on 127.0.0.1:0, with an index following the store.
struct Server {
    addr: SocketAddr,
    index: Arc<Index>,
    /// Dropping it stops the server, then the follower.
    stop: oneshot::Sender<()>,
}

impl Server {
    /// Serves `directory` (over `store`, which the index follows) with the web UI configured by `config`.
    async fn start(store: Arc<dyn Store>, directory: Directory, config: UiConfig) -> Server {
        Server::start_with_stack(store, directory, config, None).await
    }

    /// [`Server::start`] reporting `stack`'s daemons and listeners.
    async fn start_with_stack(
        store: Arc<dyn Store>,
        directory: Directory,
        config: UiConfig,
        stack: Option<Arc<dyn StackStatus>>,
    ) -> Server {
        // reqwest is built with rustls and no default crypto provider (the store picks
        // ring for CouchDB over https), so the test client needs one installed; a second
        // install fails harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let index = Arc::new(Index::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let state = ApiState { directory, index: index.clone(), stack };
        let follower_index = index.clone();
        tokio::spawn(async move {
            let (stop_follower, follower_stopped) = oneshot::channel::<()>();
            let follower = tokio::spawn(couchmail_index::follow(store, follower_index, async move {
                let _ = follower_stopped.await;
            }));
            serve_with(listener, state, config, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
            let _ = stop_follower.send(());
            let _ = follower.await;
        });
        Server { addr, index, stop }
    }
}

/// What a request got back.
#[derive(Debug)]
struct Reply {
    status: u16,
    etag: Option<String>,
    www_authenticate: Option<String>,
    retry_after: Option<String>,
    text: String,
    body: Value,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    fn field(&self) -> Option<&str> {
        self.body["error"]["field"].as_str()
    }

    #[track_caller]
    fn expect(&self, status: u16) -> &Reply {
        assert_eq!(self.status, status, "unexpected reply: {}", self.text);
        self
    }

    #[track_caller]
    fn expect_error(&self, status: u16, code: &str) -> &Reply {
        assert_eq!((self.status, self.code()), (status, code), "unexpected reply: {}", self.text);
        self
    }
}

/// One request being built.
struct Call<'a> {
    api: &'a Api,
    request: reqwest::RequestBuilder,
}

impl Call<'_> {
    fn token(mut self, token: &str) -> Self {
        self.request = self.request.bearer_auth(token);
        self
    }

    fn json(mut self, body: Value) -> Self {
        self.request = self.request.header(CONTENT_TYPE, "application/json").body(body.to_string());
        self
    }

    fn raw(mut self, content_type: &str, body: impl Into<reqwest::Body>) -> Self {
        self.request = self.request.header(CONTENT_TYPE, content_type).body(body);
        self
    }

    fn if_match(mut self, etag: &str) -> Self {
        self.request = self.request.header(IF_MATCH, etag);
        self
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.request = self.request.header(name, value);
        self
    }

    async fn send(self) -> Reply {
        let _ = self.api;
        let response = self.request.send().await.unwrap();
        let status = response.status().as_u16();
        let header =
            |name| response.headers().get(name).map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_owned());
        let etag = header(ETAG);
        let www_authenticate = header(WWW_AUTHENTICATE);
        let retry_after = header(RETRY_AFTER);
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, etag, www_authenticate, retry_after, text, body }
    }
}

impl Api {
    async fn start() -> Api {
        Api::start_with(|store| store).await
    }

    /// An API whose directory, follower and routes use `wrap` of the temporary store, so
    /// that a test can put a store that fails, or one with conflicts, in front of it.
    async fn start_with(wrap: impl FnOnce(Arc<dyn Store>) -> Arc<dyn Store>) -> Api {
        let store = TempStore::new().await;
        let shared: Arc<dyn Store> = wrap(store.store.clone());
        let directory = Directory::new(shared.clone());
        let server = Server::start(shared, directory.clone(), UiConfig::default()).await;
        let base = format!("http://{}/api/v1", server.addr);
        Api { base, client: reqwest::Client::new(), directory, store, index: server.index, _stop: server.stop }
    }

    fn call(&self, method: Method, path: &str) -> Call<'_> {
        Call { api: self, request: self.client.request(method, format!("{}{path}", self.base)) }
    }

    fn get(&self, path: &str) -> Call<'_> {
        self.call(Method::GET, path)
    }

    fn post(&self, path: &str) -> Call<'_> {
        self.call(Method::POST, path)
    }

    fn put(&self, path: &str) -> Call<'_> {
        self.call(Method::PUT, path)
    }

    fn delete(&self, path: &str) -> Call<'_> {
        self.call(Method::DELETE, path)
    }

    async fn seed(&self, docs: impl IntoIterator<Item = Document>) {
        for doc in docs {
            self.directory.create(&doc).await.unwrap();
        }
    }

    /// A token for `principal`, stored as the CLI stores it; returns the bearer string.
    async fn token(&self, principal: TokenPrincipal) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let (token, bearer) = Token::generate(principal, "test".to_owned(), now);
        self.directory.create(&Document::Token(token)).await.unwrap();
        bearer
    }

    async fn admin_token(&self) -> String {
        self.token(TokenPrincipal::Admin).await
    }

    async fn mailbox_token(&self, address: &str) -> String {
        self.token(TokenPrincipal::Mailbox(fixtures::address(address))).await
    }

    /// Every live document in the store, for "nothing was written" checks.
    async fn everything(&self) -> Vec<RawDoc> {
        self.store.store.list("", &ListOptions::default()).await.unwrap()
    }

    async fn stored_mailbox(&self, address: &str) -> Mailbox {
        match self.directory.get(&DocKind::Mailbox.id(address)).await.unwrap().unwrap().doc {
            Document::Mailbox(mailbox) => mailbox,
            other => panic!("not a mailbox: {other:?}"),
        }
    }
}

fn mailbox_with_roles(address: &str, roles: Vec<Role>) -> Document {
    let Document::Mailbox(mut mailbox) = fixtures::mailbox(address) else { unreachable!() };
    mailbox.roles = roles;
    Document::Mailbox(mailbox)
}

fn domain_admin_of(address: &str, domain: &str) -> Document {
    mailbox_with_roles(address, vec![Role::DomainAdmin(fixtures::domain_name(domain))])
}

/// Two domains with a mailbox, an alias, a Sieve script and a domain alias each,
/// a domain admin of `a.example` and a plain user in `a.example`.
async fn two_domains(api: &Api) {
    api.seed([
        fixtures::domain("a.example"),
        fixtures::domain("b.example"),
        domain_admin_of("boss@a.example", "a.example"),
        fixtures::mailbox("alice@a.example"),
        fixtures::mailbox("carol@a.example"),
        fixtures::mailbox("bob@b.example"),
        fixtures::alias("info@a.example", &["alice@a.example"]),
        fixtures::alias("info@b.example", &["bob@b.example"]),
        fixtures::sieve("alice@a.example", "main", "keep;"),
        fixtures::sieve("bob@b.example", "main", "keep;"),
        fixtures::domain_alias("a-alias.example", "a.example"),
        fixtures::domain_alias("b-alias.example", "b.example"),
    ])
    .await;
}

#[tokio::test]
async fn health_and_openapi_need_no_token() {
    let api = Api::start().await;
    api.index.wait_until(|snapshot| snapshot.is_ready(), Duration::from_secs(10)).await.unwrap();
    let health = api.get("/health").send().await;
    health.expect(200);
    assert_eq!(health.body["status"], "ok");
    assert_eq!(health.body["index_ready"], true);
    api.get("/openapi.json").send().await.expect(200);
    api.get("/whoami").send().await.expect_error(401, "unauthenticated");
}

#[tokio::test]
async fn skipped_documents_are_counted_in_health_and_explained_to_admins_in_status() {
    let api = Api::start().await;
    api.seed([fixtures::domain("example.com"), fixtures::mailbox("alice@example.com")]).await;
    // An invalid document written past the directory, as a direct CouchDB edit would be.
    let body = json!({ "type": "mailbox", "active": "yes" });
    api.store.store.put("mailbox:bob@example.com", None, body.as_object().unwrap()).await.unwrap();
    api.index.wait_until(|snapshot| snapshot.counts().invalid_documents == 1, Duration::from_secs(10)).await.unwrap();

    let health = api.get("/health").send().await;
    health.expect(200);
    assert_eq!(health.body["skipped_documents"], 1);
    assert_eq!(health.body["store_error"], false);
    assert!(!health.text.contains("bob@example.com"), "health names no address: {}", health.text);

    api.get("/status").send().await.expect_error(401, "unauthenticated");
    let user = api.token(TokenPrincipal::Mailbox(fixtures::address("alice@example.com"))).await;
    api.get("/status").token(&user).send().await.expect_error(403, "forbidden");
    let admin = api.admin_token().await;
    let status = api.get("/status").token(&admin).send().await;
    status.expect(200);
    assert_eq!(status.body["index_ready"], true);
    assert!(status.body["store"].as_str().unwrap().starts_with("sqlite:"), "{}", status.text);
    assert_eq!(status.body["counts"]["mailboxes"], 1);
    assert_eq!(status.body["counts"]["invalid_documents"], 1);
    assert_eq!(status.body["skipped_total"], 1);
    let skipped = &status.body["recent_skipped"][0];
    assert_eq!(skipped["id"], "mailbox:bob@example.com");
    assert!(skipped["reason"].as_str().unwrap().contains("active"), "{}", status.text);
}

#[tokio::test]
async fn openapi_lists_every_route() {
    let api = Api::start().await;
    let reply = api.get("/openapi.json").send().await;
    reply.expect(200);
    let paths: BTreeSet<&str> = reply.body["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = [
        "/api/v1/health",
        "/api/v1/status",
        "/api/v1/openapi.json",
        "/api/v1/whoami",
        "/api/v1/domains",
        "/api/v1/domains/{domain}",
        "/api/v1/domain-aliases",
        "/api/v1/domain-aliases/{name}",
        "/api/v1/mailboxes",
        "/api/v1/mailboxes/{address}",
        "/api/v1/mailboxes/{address}/password",
        "/api/v1/mailboxes/{address}/sieve",
        "/api/v1/mailboxes/{address}/sieve/{name}",
        "/api/v1/aliases",
        "/api/v1/aliases/{key}",
        "/api/v1/listings",
        "/api/v1/listings/{key}",
        "/api/v1/conflicts",
        "/api/v1/conflicts/{id}/resolve",
    ]
    .into();
    assert_eq!(paths, expected);
    let methods =
        |path: &str| -> BTreeSet<String> { reply.body["paths"][path].as_object().unwrap().keys().cloned().collect() };
    assert_eq!(methods("/api/v1/domains/{domain}"), ["delete", "get", "put"].map(String::from).into());
    assert_eq!(methods("/api/v1/mailboxes"), ["get", "post"].map(String::from).into());
    assert_eq!(methods("/api/v1/conflicts"), ["get"].map(String::from).into());
    assert_eq!(methods("/api/v1/conflicts/{id}/resolve"), ["post"].map(String::from).into());
    for schema in ["ConflictList", "ConflictView", "RevisionView", "ResolveInput", "ResolvedView"] {
        assert!(reply.body["components"]["schemas"][schema].is_object(), "schema {schema}");
    }
    assert!(reply.body["components"]["securitySchemes"]["bearer"].is_object());
    assert!(reply.body["components"]["schemas"]["ErrorBody"].is_object());
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let api = Api::start().await;
    let admin = api.admin_token().await;
    api.get("/nowhere").token(&admin).send().await.expect_error(404, "not_found");
    api.get("/../../etc/passwd").send().await.expect_error(404, "not_found");
    api.call(Method::PATCH, "/domains").token(&admin).send().await.expect_error(405, "method_not_allowed");
}

#[tokio::test]
async fn auth_failures_are_401() {
    let api = Api::start().await;
    api.seed([fixtures::domain("a.example"), fixtures::mailbox("alice@a.example"), fixtures::mailbox("off@a.example")])
        .await;
    let good = api.admin_token().await;
    let check = |reply: Reply| {
        reply.expect_error(401, "unauthenticated");
        assert_eq!(reply.www_authenticate.as_deref(), Some("Bearer"));
    };

    check(api.get("/whoami").send().await);
    check(api.get("/whoami").header("Authorization", &format!("Basic {good}")).send().await);
    check(api.get("/whoami").header("Authorization", "Bearer").send().await);
    check(api.get("/whoami").token("cmt_nonsense").send().await);
    // Well-formed but never stored.
    let (_, unknown) = Token::generate(TokenPrincipal::Admin, String::new(), 0);
    check(api.get("/whoami").token(&unknown).send().await);
    // A stored id with the wrong secret.
    let (id_part, secret) = good.rsplit_once('_').unwrap();
    let flipped = if secret.starts_with('0') { "1" } else { "0" };
    let wrong_secret = format!("{id_part}_{flipped}{}", &secret[1..]);
    check(api.get("/whoami").token(&wrong_secret).send().await);

    // A disabled mailbox's token stops working, and works again once enabled.
    let off = api.mailbox_token("off@a.example").await;
    let whoami = api.get("/whoami").token(&off).send().await;
    whoami.expect(200);
    assert_eq!(whoami.body["role"], "user");
    let entry = api.directory.get("mailbox:off@a.example").await.unwrap().unwrap();
    let Document::Mailbox(mut mailbox) = entry.doc else { unreachable!() };
    mailbox.active = false;
    api.directory.update(&Document::Mailbox(mailbox), &entry.rev).await.unwrap();
    check(api.get("/whoami").token(&off).send().await);
    check(api.get("/mailboxes/off@a.example").token(&off).send().await);

    // A token of a removed mailbox is gone with it.
    let alice = api.mailbox_token("alice@a.example").await;
    api.get("/whoami").token(&alice).send().await.expect(200);
    api.directory.remove("mailbox:alice@a.example", None, couchmail_directory::Cascade::Remove).await.unwrap();
    check(api.get("/whoami").token(&alice).send().await);

    let whoami = api.get("/whoami").token(&good).send().await;
    whoami.expect(200);
    assert_eq!(whoami.body["role"], "admin");
}

#[tokio::test]
async fn domain_admin_cannot_touch_another_domain() {
    let api = Api::start().await;
    two_domains(&api).await;
    let boss = api.mailbox_token("boss@a.example").await;
    let admin = api.admin_token().await;

    let whoami = api.get("/whoami").token(&boss).send().await;
    assert_eq!(whoami.body["role"], "domain-admin");
    assert_eq!(whoami.body["domains"], json!(["a.example"]));

    // Reads of b.example.
    for path in [
        "/domains/b.example",
        "/domain-aliases/b-alias.example",
        "/mailboxes/bob@b.example",
        "/mailboxes/bob@b.example/sieve",
        "/mailboxes/bob@b.example/sieve/main",
        "/aliases/info@b.example",
        "/mailboxes?domain=b.example",
        "/aliases?domain=b.example",
        "/domain-aliases?domain=b.example",
    ] {
        api.get(path).token(&boss).send().await.expect_error(403, "forbidden");
    }
    // Changes in b.example, with the right ETags so only the role stops them.
    let before = api.everything().await;
    let etag = |path: &'static str| {
        let api = &api;
        let admin = admin.clone();
        async move { api.get(path).token(&admin).send().await.etag.unwrap() }
    };
    let bob_etag = etag("/mailboxes/bob@b.example").await;
    let forbidden = [
        api.put("/domains/b.example")
            .json(json!({"quota_default": 1048576}))
            .if_match(&etag("/domains/b.example").await),
        api.delete("/domains/b.example").if_match(&etag("/domains/b.example").await),
        api.post("/domains").json(json!({"name": "c.example"})),
        api.post("/mailboxes").json(json!({"address": "eve@b.example"})),
        api.put("/mailboxes/bob@b.example").json(json!({"name": "Bob"})).if_match(&bob_etag),
        api.put("/mailboxes/bob@b.example/password")
            .json(json!({"password": "correct horse battery"}))
            .if_match(&bob_etag),
        api.delete("/mailboxes/bob@b.example").if_match(&bob_etag),
        api.post("/aliases").json(json!({"key": "sales@b.example", "targets": ["bob@b.example"]})),
        api.post("/aliases").json(json!({"key": "@b.example", "targets": ["bob@b.example"]})),
        api.put("/aliases/info@b.example")
            .json(json!({"targets": ["boss@a.example"]}))
            .if_match(&etag("/aliases/info@b.example").await),
        api.delete("/aliases/info@b.example").if_match(&etag("/aliases/info@b.example").await),
        api.post("/mailboxes/bob@b.example/sieve").json(json!({"name": "evil", "script": "discard;"})),
        api.put("/mailboxes/bob@b.example/sieve/main")
            .json(json!({"script": "discard;"}))
            .if_match(&etag("/mailboxes/bob@b.example/sieve/main").await),
        api.delete("/mailboxes/bob@b.example/sieve/main").if_match(&etag("/mailboxes/bob@b.example/sieve/main").await),
        api.post("/domain-aliases").json(json!({"name": "c-alias.example", "target": "b.example"})),
        api.put("/domain-aliases/b-alias.example")
            .json(json!({"target": "a.example"}))
            .if_match(&etag("/domain-aliases/b-alias.example").await),
        api.delete("/domain-aliases/b-alias.example").if_match(&etag("/domain-aliases/b-alias.example").await),
        // Pointing its own domain alias at another domain, or granting power it does not have.
        api.put("/domain-aliases/a-alias.example")
            .json(json!({"target": "b.example"}))
            .if_match(&etag("/domain-aliases/a-alias.example").await),
        api.post("/mailboxes").json(json!({"address": "eve@a.example", "roles": ["admin"]})),
        api.post("/mailboxes").json(json!({"address": "eve@a.example", "roles": ["domain-admin:b.example"]})),
        api.put("/domains/a.example").json(json!({"max_mailboxes": 1000})).if_match(&etag("/domains/a.example").await),
        api.delete("/domains/a.example").if_match(&etag("/domains/a.example").await),
    ];
    for call in forbidden {
        call.token(&boss).send().await.expect_error(403, "forbidden");
    }
    assert_eq!(api.everything().await, before, "a refused request changed the store");

    // Inside a.example it may do its work.
    let listed = api.get("/domains").token(&boss).send().await;
    listed.expect(200);
    assert_eq!(
        listed.body["items"],
        json!([{"name": "a.example", "active": true, "quota_default": null, "max_mailboxes": null,
                "greylisting": null, "spam_threshold": null, "spam_reject": null, "messages_per_hour": null,
                "recipients_per_hour": null}])
    );
    let listed = api.get("/mailboxes").token(&boss).send().await;
    listed.expect(200);
    let addresses: Vec<&str> =
        listed.body["items"].as_array().unwrap().iter().map(|m| m["address"].as_str().unwrap()).collect();
    assert_eq!(addresses, ["alice@a.example", "boss@a.example", "carol@a.example"]);
    let listed = api.get("/aliases").token(&boss).send().await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    let listed = api.get("/domain-aliases").token(&boss).send().await;
    assert_eq!(listed.body["items"], json!([{"name": "a-alias.example", "target": "a.example"}]));
    api.put("/domains/a.example")
        .json(json!({"quota_default": 1048576}))
        .if_match(&etag("/domains/a.example").await)
        .token(&boss)
        .send()
        .await
        .expect(200);
    api.post("/mailboxes")
        .json(json!({"address": "dave@a.example", "quota_bytes": 2097152, "roles": ["domain-admin:a.example"]}))
        .token(&boss)
        .send()
        .await
        .expect(201);
    api.get("/mailboxes/bob@b.example/sieve/main").token(&admin).send().await.expect(200);
}

#[tokio::test]
async fn domain_admin_cannot_take_over_a_mightier_mailbox_in_its_domain() {
    let api = Api::start().await;
    api.seed([
        fixtures::domain("a.example"),
        fixtures::domain("b.example"),
        domain_admin_of("boss@a.example", "a.example"),
        mailbox_with_roles("root@a.example", vec![Role::Admin]),
        domain_admin_of("other@a.example", "b.example"),
        fixtures::sieve("root@a.example", "main", "keep;"),
    ])
    .await;
    let boss = api.mailbox_token("boss@a.example").await;
    let before = api.everything().await;
    for address in ["root@a.example", "other@a.example"] {
        // Reading is fine: there is nothing secret in a mailbox's view.
        let shown = api.get(&format!("/mailboxes/{address}")).token(&boss).send().await;
        shown.expect(200);
        let etag = shown.etag.clone().unwrap();
        let mut same = shown.body.clone();
        same["name"] = json!("pwned");
        for call in [
            api.put(&format!("/mailboxes/{address}/password")).json(json!({"password": "attacker's choice"})),
            api.put(&format!("/mailboxes/{address}")).json(same),
            api.delete(&format!("/mailboxes/{address}")),
            api.post(&format!("/mailboxes/{address}/sieve"))
                .json(json!({"name": "steal", "script": "redirect \"x@evil.example\";"})),
        ] {
            call.if_match(&etag).token(&boss).send().await.expect_error(403, "forbidden");
        }
    }
    let script_etag = api.get("/mailboxes/root@a.example/sieve/main").token(&boss).send().await.etag.unwrap();
    api.put("/mailboxes/root@a.example/sieve/main")
        .json(json!({"script": "discard;"}))
        .if_match(&script_etag)
        .token(&boss)
        .send()
        .await
        .expect_error(403, "forbidden");
    assert_eq!(api.everything().await, before);
}

#[tokio::test]
async fn user_sees_only_itself() {
    let api = Api::start().await;
    two_domains(&api).await;
    let alice = api.mailbox_token("alice@a.example").await;

    let me = api.get("/mailboxes/alice@a.example").token(&alice).send().await;
    me.expect(200);
    let my_etag = me.etag.clone().unwrap();
    for path in [
        "/mailboxes/carol@a.example",
        "/mailboxes/bob@b.example",
        "/mailboxes/carol@a.example/sieve",
        "/mailboxes",
        "/mailboxes?domain=a.example",
        "/domains",
        "/domains/a.example",
        "/aliases",
        "/aliases/info@a.example",
        "/domain-aliases",
        "/domain-aliases/a-alias.example",
    ] {
        api.get(path).token(&alice).send().await.expect_error(403, "forbidden");
    }
    let before = api.everything().await;
    for call in [
        api.put("/mailboxes/alice@a.example").json(json!({"quota_bytes": 1073741824})).if_match(&my_etag),
        api.put("/mailboxes/alice@a.example").json(json!({"active": false})).if_match(&my_etag),
        api.put("/mailboxes/alice@a.example").json(json!({"roles": ["domain-admin:a.example"]})).if_match(&my_etag),
        api.delete("/mailboxes/alice@a.example").if_match(&my_etag),
        api.post("/mailboxes").json(json!({"address": "mallory@a.example"})),
        api.post("/mailboxes/carol@a.example/sieve").json(json!({"name": "x", "script": "keep;"})),
        api.post("/aliases").json(json!({"key": "me@a.example", "targets": ["alice@a.example"]})),
    ] {
        call.token(&alice).send().await.expect_error(403, "forbidden");
    }
    assert_eq!(api.everything().await, before);

    // Its own name, Sieve scripts and active script are its own.
    let renamed = api
        .put("/mailboxes/alice@a.example")
        .json(json!({"name": "Alice", "sieve_active": "main"}))
        .if_match(&my_etag)
        .token(&alice)
        .send()
        .await;
    renamed.expect(200);
    assert_eq!(renamed.body["name"], "Alice");
    assert_eq!(renamed.body["sieve_active"], "main");
    api.post("/mailboxes/alice@a.example/sieve")
        .json(json!({"name": "vacation", "script": "keep;"}))
        .token(&alice)
        .send()
        .await
        .expect(201);
    let scripts = api.get("/mailboxes/alice@a.example/sieve").token(&alice).send().await;
    assert_eq!(scripts.body["items"], json!([{"name": "main", "active": true}, {"name": "vacation", "active": false}]));
}

#[tokio::test]
async fn no_response_carries_a_hash() {
    let api = Api::start().await;
    two_domains(&api).await;
    let admin = api.admin_token().await;
    let alice_token = api.mailbox_token("alice@a.example").await;
    let etag = api.get("/mailboxes/alice@a.example").token(&admin).send().await.etag.unwrap();
    let set = api
        .put("/mailboxes/alice@a.example/password")
        .json(json!({"password": "correct horse battery"}))
        .if_match(&etag)
        .token(&admin)
        .send()
        .await;
    set.expect(200);
    assert_eq!(set.body["has_password"], true);
    let stored_hash = api.stored_mailbox("alice@a.example").await.password.unwrap();
    let token_hashes: Vec<String> = api
        .everything()
        .await
        .into_iter()
        .filter(|doc| doc.id.starts_with("token:"))
        .map(|doc| doc.body["secret_sha256"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(token_hashes.len(), 2);

    let mut texts = Vec::new();
    for path in [
        "/mailboxes",
        "/mailboxes/alice@a.example",
        "/mailboxes/alice@a.example/sieve",
        "/mailboxes/alice@a.example/sieve/main",
        "/domains",
        "/aliases",
        "/domain-aliases",
        "/conflicts",
        "/whoami",
        "/openapi.json",
        "/health",
    ] {
        texts.push(api.get(path).token(&admin).send().await.text);
        texts.push(api.get(path).token(&alice_token).send().await.text);
    }
    texts.push(set.text.clone());
    for text in texts {
        assert!(!text.contains(stored_hash.as_str()), "a password hash leaked: {text}");
        assert!(!text.contains("ARGON2ID") && !text.contains("$argon2"), "a password hash leaked: {text}");
        assert!(!text.contains("secret_sha256"), "a token field leaked: {text}");
        for hash in &token_hashes {
            assert!(!text.contains(hash.as_str()), "a token hash leaked: {text}");
        }
    }
}

#[tokio::test]
async fn concurrent_edits_end_in_409_not_a_lost_update() {
    let api = Api::start().await;
    two_domains(&api).await;
    let admin = api.admin_token().await;
    let boss = api.mailbox_token("boss@a.example").await;

    let first = api.get("/aliases/info@a.example").token(&admin).send().await.etag.unwrap();
    let second = api.get("/aliases/info@a.example").token(&boss).send().await.etag.unwrap();
    assert_eq!(first, second);
    let winner = api
        .put("/aliases/info@a.example")
        .json(json!({"targets": ["alice@a.example", "carol@a.example"]}))
        .if_match(&first)
        .token(&admin)
        .send()
        .await;
    winner.expect(200);
    let new_etag = winner.etag.clone().unwrap();
    assert_ne!(new_etag, first);
    api.put("/aliases/info@a.example")
        .json(json!({"targets": ["boss@a.example"]}))
        .if_match(&second)
        .token(&boss)
        .send()
        .await
        .expect_error(409, "conflict");
    api.delete("/aliases/info@a.example").if_match(&second).token(&boss).send().await.expect_error(409, "conflict");
    let now = api.get("/aliases/info@a.example").token(&admin).send().await;
    assert_eq!(now.etag.as_deref(), Some(new_etag.as_str()));
    assert_eq!(now.body["targets"], json!(["alice@a.example", "carol@a.example"]));

    // Without If-Match: 428, for every kind of change.
    let alias_etag = new_etag;
    for call in [
        api.put("/aliases/info@a.example").json(json!({"targets": ["boss@a.example"]})),
        api.delete("/aliases/info@a.example"),
        api.put("/domains/a.example").json(json!({})),
        api.put("/mailboxes/alice@a.example").json(json!({})),
        api.put("/mailboxes/alice@a.example/password").json(json!({"password": "correct horse battery"})),
        api.put("/mailboxes/alice@a.example/sieve/main").json(json!({"script": "discard;"})),
        api.delete("/mailboxes/alice@a.example/sieve/main"),
        api.put("/domain-aliases/a-alias.example").json(json!({"target": "a.example"})),
        api.delete("/domain-aliases/a-alias.example"),
    ] {
        call.token(&admin).send().await.expect_error(428, "precondition_required");
    }
    // A creation of something that exists is a conflict too.
    api.post("/aliases")
        .json(json!({"key": "info@a.example", "targets": ["boss@a.example"]}))
        .token(&admin)
        .send()
        .await
        .expect_error(409, "conflict");
    assert_eq!(api.get("/aliases/info@a.example").token(&admin).send().await.etag.unwrap(), alias_etag);
}

#[tokio::test]
async fn bad_input_is_400_naming_the_field_and_writes_nothing() {
    let api = Api::start().await;
    two_domains(&api).await;
    let admin = api.admin_token().await;
    let before = api.everything().await;
    let post = |body: &'static [u8]| api.post("/mailboxes").token(&admin).raw("application/json", body);

    post(b"{\"address\": \"x@a.example\"").send().await.expect_error(400, "invalid");
    let reply = post(b"nonsense").send().await;
    reply.expect_error(400, "invalid");
    assert_eq!(reply.field(), None);
    let reply = post(br#"{"address": "x@a.example", "colour": "red"}"#).send().await;
    reply.expect_error(400, "invalid");
    assert_eq!(reply.field(), Some("colour"));
    let reply = post(br#"{"address": "x@a.example", "active": "yes"}"#).send().await;
    reply.expect_error(400, "invalid");
    assert_eq!(reply.field(), Some("active"));
    let reply = post(b"{\"address\": \"x@a.example\", \"name\": \"\xff\xfe\"}").send().await;
    reply.expect_error(400, "invalid");
    assert_eq!(reply.field(), Some("name"));
    let reply = post(br#"{"address": "not an address"}"#).send().await;
    reply.expect_error(400, "invalid");
    assert_eq!(reply.field(), Some("address"));
    let reply = post(br#"{"address": "x@a.example", "roles": ["admin", "king"]}"#).send().await;
    assert_eq!(reply.field(), Some("roles[1]"));
    let reply = post(br#"{"address": "x@a.example", "quota_bytes": 5}"#).send().await;
    reply.expect_error(400, "invalid");
    assert_eq!(reply.field(), Some("quota_bytes"));
    let reply = post(br#"{"address": "x@a.example", "password": "short"}"#).send().await;
    reply.expect_error(400, "invalid");
    assert_eq!(reply.field(), Some("password"));
    let reply = post(br#"{"name": "nobody"}"#).send().await;
    assert_eq!(reply.field(), Some("address"));
    let reply = api
        .post("/aliases")
        .token(&admin)
        .json(json!({"key": "sales@a.example", "targets": ["alice@a.example", "bad@@a.example"]}))
        .send()
        .await;
    reply.expect_error(400, "invalid");
    assert_eq!(reply.field(), Some("targets[1]"));
    let reply = api.post("/domains").token(&admin).json(json!({"name": "-bad-.example"})).send().await;
    assert_eq!((reply.status, reply.field()), (400, Some("name")));

    // Media type and size.
    api.post("/mailboxes")
        .token(&admin)
        .raw("text/plain", r#"{"address": "x@a.example"}"#)
        .send()
        .await
        .expect_error(415, "unsupported_media_type");
    api.post("/mailboxes")
        .token(&admin)
        .header("content-length", "0")
        .send()
        .await
        .expect_error(415, "unsupported_media_type");
    let huge = format!(r#"{{"address": "x@a.example", "name": "{}"}}"#, "x".repeat(300 * 1024));
    let reply = api.post("/mailboxes").token(&admin).raw("application/json", huge.clone()).send().await;
    reply.expect_error(413, "payload_too_large");
    // The same without Content-Length, in chunks: the limit holds while reading.
    assert_eq!(chunked_post(&api, "/mailboxes", &admin, huge.as_bytes()).await, 413);

    // Path segments and query parameters.
    let reply = api.get("/mailboxes/not-an-address").token(&admin).send().await;
    assert_eq!((reply.status, reply.field()), (400, Some("address")));
    let reply = api.get("/domains/exa_mple..com").token(&admin).send().await;
    assert_eq!((reply.status, reply.field()), (400, Some("domain")));
    let reply = api.get("/mailboxes?limit=0").token(&admin).send().await;
    assert_eq!((reply.status, reply.field()), (400, Some("limit")));
    let reply = api.get("/mailboxes?colour=red").token(&admin).send().await;
    assert_eq!((reply.status, reply.field()), (400, Some("colour")));
    let reply = api.get("/mailboxes?domain=bad..example").token(&admin).send().await;
    assert_eq!((reply.status, reply.field()), (400, Some("domain")));
    let etag = api.get("/domains/a.example").token(&admin).send().await.etag.unwrap();
    let reply = api.delete("/domains/a.example?cascade=maybe").if_match(&etag).token(&admin).send().await;
    assert_eq!((reply.status, reply.field()), (400, Some("cascade")));
    let reply = api.get("/mailboxes/%FF%FE@a.example").token(&admin).send().await;
    assert_eq!(reply.status, 400, "{}", reply.text);

    // A PUT whose key disagrees with the path, or that carries a password.
    let etag = api.get("/mailboxes/alice@a.example").token(&admin).send().await.etag.unwrap();
    let reply = api
        .put("/mailboxes/alice@a.example")
        .json(json!({"address": "carol@a.example"}))
        .if_match(&etag)
        .token(&admin)
        .send()
        .await;
    assert_eq!((reply.status, reply.field()), (400, Some("address")));
    let reply = api
        .put("/mailboxes/alice@a.example")
        .json(json!({"password": "correct horse battery"}))
        .if_match(&etag)
        .token(&admin)
        .send()
        .await;
    assert_eq!((reply.status, reply.field()), (400, Some("password")));
    // A rule of the directory: sieve_active must name a script.
    let reply = api
        .put("/mailboxes/alice@a.example")
        .json(json!({"sieve_active": "nope"}))
        .if_match(&etag)
        .token(&admin)
        .send()
        .await;
    assert_eq!((reply.status, reply.field()), (400, Some("sieve_active")));

    assert_eq!(api.everything().await, before, "a refused request changed the store");
}

/// POSTs `body` with `Transfer-Encoding: chunked` over a raw connection
/// and returns the status code; reqwest always sends a length for a known body.
async fn chunked_post(api: &Api, path: &str, token: &str, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = api.base.trim_start_matches("http://").split('/').next().unwrap().to_owned();
    let mut stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let head = format!(
        "POST /api/v1{path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(16 * 1024) {
        // The server may answer and close before the whole body is sent.
        if stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.is_err()
            || stream.write_all(chunk).await.is_err()
            || stream.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply).await;
    let reply = String::from_utf8_lossy(&reply);
    let status_line = reply.lines().next().unwrap_or_default();
    assert!(reply.contains("payload_too_large") || !status_line.contains("413"), "{reply}");
    status_line.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn domains_happy_path_with_pagination_and_cascade() {
    let api = Api::start().await;
    let admin = api.admin_token().await;
    for name in ["d1.example", "d2.example", "D3.Example", "bücher.example"] {
        api.post("/domains").json(json!({"name": name})).token(&admin).send().await.expect(201);
    }
    let created =
        api.post("/domains").json(json!({"name": "d5.example", "max_mailboxes": 10})).token(&admin).send().await;
    created.expect(201);
    assert!(created.etag.as_deref().is_some_and(|etag| etag.starts_with('"') && etag.ends_with('"')));
    assert_eq!(created.body["max_mailboxes"], 10);
    api.post("/domains").json(json!({"name": "d1.example"})).token(&admin).send().await.expect_error(409, "conflict");

    // Pages of two, in key order, until `next` is absent.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let path = match &after {
            Some(after) => format!("/domains?limit=2&after={after}"),
            None => "/domains?limit=2".to_owned(),
        };
        let page = api.get(&path).token(&admin).send().await;
        page.expect(200);
        seen.extend(page.body["items"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap().to_owned()));
        match page.body["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["d1.example", "d2.example", "d3.example", "d5.example", "xn--bcher-kva.example"]);

    let shown = api.get("/domains/D3.EXAMPLE").token(&admin).send().await;
    shown.expect(200);
    assert_eq!(shown.body["name"], "d3.example");
    let updated = api
        .put("/domains/d3.example")
        .json(json!({"name": "d3.example", "active": false, "quota_default": 1048576, "max_mailboxes": 3}))
        .if_match(shown.etag.as_deref().unwrap())
        .token(&admin)
        .send()
        .await;
    updated.expect(200);
    assert_eq!(
        updated.body,
        json!({"name": "d3.example", "active": false, "quota_default": 1048576, "max_mailboxes": 3,
               "greylisting": null, "spam_threshold": null, "spam_reject": null, "messages_per_hour": null,
               "recipients_per_hour": null})
    );
    let etag = updated.etag.clone().unwrap();
    assert_eq!(api.get("/domains/d3.example").token(&admin).send().await.etag, Some(etag.clone()));

    // A domain with a mailbox is not removed unless asked to cascade.
    api.post("/mailboxes").json(json!({"address": "x@d3.example"})).token(&admin).send().await.expect(201);
    api.post("/aliases")
        .json(json!({"key": "@d3.example", "targets": ["x@d3.example"]}))
        .token(&admin)
        .send()
        .await
        .expect(201);
    let refused = api.delete("/domains/d3.example").if_match(&etag).token(&admin).send().await;
    refused.expect_error(409, "refused");
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("mailbox:x@d3.example"));
    api.get("/mailboxes/x@d3.example").token(&admin).send().await.expect(200);
    api.delete("/domains/d3.example?cascade=true").if_match(&etag).token(&admin).send().await.expect(204);
    api.get("/domains/d3.example").token(&admin).send().await.expect_error(404, "not_found");
    api.get("/mailboxes/x@d3.example").token(&admin).send().await.expect_error(404, "not_found");
    api.get("/aliases/@d3.example").token(&admin).send().await.expect_error(404, "not_found");
    assert!(api.everything().await.iter().all(|doc| !doc.id.contains("d3.example")));

    let etag = api.get("/domains/d2.example").token(&admin).send().await.etag.unwrap();
    api.delete("/domains/d2.example").if_match(&etag).token(&admin).send().await.expect(204);
    api.delete("/domains/d2.example").if_match(&etag).token(&admin).send().await.expect_error(404, "not_found");
}

#[tokio::test]
async fn domain_aliases_happy_path() {
    let api = Api::start().await;
    api.seed([fixtures::domain("a.example"), fixtures::domain("b.example")]).await;
    let admin = api.admin_token().await;
    let created =
        api.post("/domain-aliases").json(json!({"name": "a.test", "target": "a.example"})).token(&admin).send().await;
    created.expect(201);
    api.post("/domain-aliases")
        .json(json!({"name": "b.test", "target": "b.example"}))
        .token(&admin)
        .send()
        .await
        .expect(201);
    api.post("/domain-aliases")
        .json(json!({"name": "a.example", "target": "b.example"}))
        .token(&admin)
        .send()
        .await
        .expect_error(409, "refused");
    let all = api.get("/domain-aliases?limit=1").token(&admin).send().await;
    assert_eq!(all.body["items"], json!([{"name": "a.test", "target": "a.example"}]));
    assert_eq!(all.body["next"], "a.test");
    let rest = api.get("/domain-aliases?limit=1&after=a.test").token(&admin).send().await;
    assert_eq!(rest.body["items"], json!([{"name": "b.test", "target": "b.example"}]));
    let of_b = api.get("/domain-aliases?domain=b.example").token(&admin).send().await;
    assert_eq!(of_b.body["items"], json!([{"name": "b.test", "target": "b.example"}]));
    assert_eq!(of_b.body["next"], Value::Null);

    let moved = api
        .put("/domain-aliases/a.test")
        .json(json!({"target": "b.example"}))
        .if_match(created.etag.as_deref().unwrap())
        .token(&admin)
        .send()
        .await;
    moved.expect(200);
    assert_eq!(moved.body, json!({"name": "a.test", "target": "b.example"}));
    api.delete("/domain-aliases/a.test")
        .if_match(moved.etag.as_deref().unwrap())
        .token(&admin)
        .send()
        .await
        .expect(204);
    api.get("/domain-aliases/a.test").token(&admin).send().await.expect_error(404, "not_found");
}

#[tokio::test]
async fn mailboxes_happy_path_with_password() {
    let api = Api::start().await;
    api.seed([fixtures::domain("a.example")]).await;
    let admin = api.admin_token().await;
    let created = api
        .post("/mailboxes")
        .json(json!({"address": "Alice@A.example", "name": "Alice", "quota_bytes": 1073741824}))
        .token(&admin)
        .send()
        .await;
    created.expect(201);
    assert_eq!(
        created.body,
        json!({"address": "alice@a.example", "name": "Alice", "active": true, "quota_bytes": 1073741824,
               "roles": [], "sieve_active": null, "has_password": false, "greylisting": null,
               "spam_threshold": null, "spam_reject": null, "messages_per_hour": null, "recipients_per_hour": null})
    );
    for local in ["bob", "carol", "dave"] {
        api.post("/mailboxes")
            .json(json!({"address": format!("{local}@a.example")}))
            .token(&admin)
            .send()
            .await
            .expect(201);
    }
    let first = api.get("/mailboxes?domain=a.example&limit=3").token(&admin).send().await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 3);
    assert_eq!(first.body["next"], "carol@a.example");
    let second = api.get("/mailboxes?domain=a.example&limit=3&after=carol@a.example").token(&admin).send().await;
    assert_eq!(second.body["items"][0]["address"], "dave@a.example");
    assert_eq!(second.body["next"], Value::Null);

    // GET, change, PUT back what was read.
    let shown = api.get("/mailboxes/alice@a.example").token(&admin).send().await;
    let mut body = shown.body.clone();
    body["name"] = json!("Alice Liddell");
    body["roles"] = json!(["domain-admin:a.example"]);
    let updated = api
        .put("/mailboxes/alice@a.example")
        .json(body)
        .if_match(shown.etag.as_deref().unwrap())
        .token(&admin)
        .send()
        .await;
    updated.expect(200);
    assert_eq!(updated.body["name"], "Alice Liddell");
    assert_eq!(updated.body["roles"], json!(["domain-admin:a.example"]));

    // The owner sets its own password; the stored hash verifies it.
    let alice = api.mailbox_token("alice@a.example").await;
    let set = api
        .put("/mailboxes/alice@a.example/password")
        .json(json!({"password": "correct horse battery"}))
        .if_match(updated.etag.as_deref().unwrap())
        .token(&alice)
        .send()
        .await;
    set.expect(200);
    assert_eq!(set.body["has_password"], true);
    let hash = api.stored_mailbox("alice@a.example").await.password.unwrap();
    assert!(hash.as_str().starts_with("{ARGON2ID}$argon2id$"));
    assert!(hash.verify("correct horse battery"));
    assert!(!hash.verify("wrong horse battery"));
    // The new ETag guards the next change; the old one is stale.
    api.put("/mailboxes/alice@a.example/password")
        .json(json!({"password": "another good one"}))
        .if_match(updated.etag.as_deref().unwrap())
        .token(&alice)
        .send()
        .await
        .expect_error(409, "conflict");

    let etag = api.get("/mailboxes/dave@a.example").token(&admin).send().await.etag.unwrap();
    api.delete("/mailboxes/dave@a.example").if_match(&etag).token(&admin).send().await.expect(204);
    api.get("/mailboxes/dave@a.example").token(&admin).send().await.expect_error(404, "not_found");
    api.post("/mailboxes")
        .json(json!({"address": "x@nowhere.example"}))
        .token(&admin)
        .send()
        .await
        .expect_error(409, "refused");
}

#[tokio::test]
async fn aliases_happy_path_with_catch_all() {
    let api = Api::start().await;
    api.seed([fixtures::domain("a.example"), fixtures::mailbox("alice@a.example"), fixtures::mailbox("bob@a.example")])
        .await;
    let admin = api.admin_token().await;
    let created = api
        .post("/aliases")
        .json(json!({"key": "info@a.example", "targets": ["alice@a.example"]}))
        .token(&admin)
        .send()
        .await;
    created.expect(201);
    assert_eq!(created.body, json!({"key": "info@a.example", "targets": ["alice@a.example"], "active": true}));
    api.post("/aliases")
        .json(json!({"key": "@a.example", "targets": ["bob@a.example"]}))
        .token(&admin)
        .send()
        .await
        .expect(201);
    // An alias may not shadow a mailbox, nor loop.
    api.post("/aliases")
        .json(json!({"key": "alice@a.example", "targets": ["bob@a.example"]}))
        .token(&admin)
        .send()
        .await
        .expect_error(409, "refused");
    api.post("/aliases")
        .json(json!({"key": "loop@a.example", "targets": ["info@a.example"]}))
        .token(&admin)
        .send()
        .await
        .expect(201);

    let catch_all = api.get("/aliases/%40a.example").token(&admin).send().await;
    catch_all.expect(200);
    assert_eq!(catch_all.body["key"], "@a.example");
    api.get("/aliases/@a.example").token(&admin).send().await.expect(200);
    let page = api.get("/aliases?limit=2").token(&admin).send().await;
    let keys: Vec<&str> = page.body["items"].as_array().unwrap().iter().map(|a| a["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["@a.example", "info@a.example"]);
    assert_eq!(page.body["next"], "info@a.example");
    let rest = api.get("/aliases?limit=2&after=info@a.example").token(&admin).send().await;
    assert_eq!(rest.body["items"][0]["key"], "loop@a.example");

    let etag = api.get("/aliases/info@a.example").token(&admin).send().await.etag.unwrap();
    let looped = api
        .put("/aliases/info@a.example")
        .json(json!({"targets": ["loop@a.example"]}))
        .if_match(&etag)
        .token(&admin)
        .send()
        .await;
    looped.expect_error(409, "refused");
    let updated = api
        .put("/aliases/info@a.example")
        .json(json!({"key": "info@a.example", "targets": ["alice@a.example", "bob@a.example"], "active": false}))
        .if_match(&etag)
        .token(&admin)
        .send()
        .await;
    updated.expect(200);
    assert_eq!(updated.body["active"], false);
    api.delete("/aliases/%40a.example")
        .if_match(catch_all.etag.as_deref().unwrap())
        .token(&admin)
        .send()
        .await
        .expect(204);
    api.get("/aliases/@a.example").token(&admin).send().await.expect_error(404, "not_found");
}

#[tokio::test]
async fn sieve_happy_path_with_activation() {
    let api = Api::start().await;
    api.seed([fixtures::domain("a.example"), fixtures::mailbox("alice@a.example")]).await;
    let admin = api.admin_token().await;
    let created = api
        .post("/mailboxes/alice@a.example/sieve")
        .json(json!({"name": "main", "script": "keep;"}))
        .token(&admin)
        .send()
        .await;
    created.expect(201);
    assert_eq!(created.body, json!({"owner": "alice@a.example", "name": "main", "script": "keep;", "active": false}));
    api.post("/mailboxes/alice@a.example/sieve")
        .json(json!({"name": "out of office", "script": "keep;"}))
        .token(&admin)
        .send()
        .await
        .expect(201);
    api.post("/mailboxes/nobody@a.example/sieve")
        .json(json!({"name": "main", "script": "keep;"}))
        .token(&admin)
        .send()
        .await
        .expect_error(409, "refused");

    // Activate through the mailbox.
    let mailbox = api.get("/mailboxes/alice@a.example").token(&admin).send().await;
    api.put("/mailboxes/alice@a.example")
        .json(json!({"sieve_active": "out of office"}))
        .if_match(mailbox.etag.as_deref().unwrap())
        .token(&admin)
        .send()
        .await
        .expect(200);
    let page = api.get("/mailboxes/alice@a.example/sieve?limit=1").token(&admin).send().await;
    assert_eq!(page.body, json!({"items": [{"name": "main", "active": false}], "next": "main"}));
    let page = api.get("/mailboxes/alice@a.example/sieve?after=main").token(&admin).send().await;
    assert_eq!(page.body, json!({"items": [{"name": "out of office", "active": true}], "next": null}));

    let shown = api.get("/mailboxes/alice@a.example/sieve/out%20of%20office").token(&admin).send().await;
    shown.expect(200);
    assert_eq!(shown.body["active"], true);
    let mut body = shown.body.clone();
    body["script"] = json!("discard;");
    let updated = api
        .put("/mailboxes/alice@a.example/sieve/out%20of%20office")
        .json(body)
        .if_match(shown.etag.as_deref().unwrap())
        .token(&admin)
        .send()
        .await;
    updated.expect(200);
    assert_eq!(updated.body["script"], "discard;");

    // Removing the active script deactivates it.
    api.delete("/mailboxes/alice@a.example/sieve/out%20of%20office")
        .if_match(updated.etag.as_deref().unwrap())
        .token(&admin)
        .send()
        .await
        .expect(204);
    assert_eq!(api.stored_mailbox("alice@a.example").await.sieve_active, None);
    api.get("/mailboxes/alice@a.example/sieve/out%20of%20office")
        .token(&admin)
        .send()
        .await
        .expect_error(404, "not_found");
}
