//! The web UI over real HTTP: a server on 127.0.0.1:0 with the index
//! following a temporary SQLite store, driven as a browser would drive it
//! (cookies kept by hand so their flags can be checked, forms posted with the
//! token read from the page, redirects looked at rather than followed).

mod admin;
mod security;
mod selfservice;
mod sieve;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use couchmail_directory::Directory;
use couchmail_index::Index;
use couchmail_model::{Document, Mailbox, Password, PasswordHash, Role};
use couchmail_testkit::TempStore;
use couchmail_testkit::fixtures;
use couchmail_web::UiConfig;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use tokio::sync::oneshot;

use crate::Server;

/// A running UI with its store.
pub(crate) struct Ui {
    pub(crate) base: String,
    pub(crate) directory: Directory,
    pub(crate) index: Arc<Index>,
    pub(crate) _store: TempStore,
    _stop: oneshot::Sender<()>,
}

/// What a request got back.
#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Page {
    /// Where a redirect points.
    pub(crate) fn location(&self) -> Option<&str> {
        self.headers.get(LOCATION).and_then(|value| value.to_str().ok())
    }

    /// The `Set-Cookie` line for `name`.
    pub(crate) fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find(|value| value.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    /// The form token on the page.
    pub(crate) fn csrf(&self) -> Option<String> {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(self.body[start..end].to_owned())
    }

    #[track_caller]
    pub(crate) fn expect(&self, status: u16) -> &Page {
        assert_eq!(self.status, status, "unexpected page: {}", self.body);
        self
    }

    #[track_caller]
    pub(crate) fn expect_redirect(&self, to: &str) -> &Page {
        assert_eq!((self.status, self.location()), (303, Some(to)), "unexpected page: {}", self.body);
        self
    }
}

impl Ui {
    /// A UI with a quick login throttle (2 failures, then 300 ms doubling).
    pub(crate) async fn start() -> Ui {
        Ui::start_with(UiConfig {
            throttle_after: 2,
            throttle_base_delay: Duration::from_millis(300),
            throttle_max_delay: Duration::from_secs(2),
            ..UiConfig::default()
        })
        .await
    }

    pub(crate) async fn start_with(config: UiConfig) -> Ui {
        Ui::start_with_directory(config, |directory| directory).await
    }

    /// A UI whose directory is `adjust`ed first (to check scripts, say); ready once the index is.
    pub(crate) async fn start_with_directory(config: UiConfig, adjust: impl FnOnce(Directory) -> Directory) -> Ui {
        Ui::start_full(config, adjust, None).await
    }

    /// A UI (with the quick throttle of [`Ui::start`]) whose dashboard reports `stack`.
    pub(crate) async fn start_with_stack(stack: Arc<dyn couchmail_web::StackStatus>) -> Ui {
        let config = UiConfig {
            throttle_after: 2,
            throttle_base_delay: Duration::from_millis(300),
            throttle_max_delay: Duration::from_secs(2),
            ..UiConfig::default()
        };
        Ui::start_full(config, |directory| directory, Some(stack)).await
    }

    async fn start_full(
        config: UiConfig,
        adjust: impl FnOnce(Directory) -> Directory,
        stack: Option<Arc<dyn couchmail_web::StackStatus>>,
    ) -> Ui {
        let store = TempStore::new().await;
        let shared: Arc<dyn couchmail_store::Store> = store.store.clone();
        let directory = adjust(Directory::new(shared.clone()));
        let server = Server::start_with_stack(shared, directory.clone(), config, stack).await;
        let base = format!("http://{}", server.addr);
        let ui = Ui { base, directory, index: server.index, _store: store, _stop: server.stop };
        ui.index.wait_until(|snapshot| snapshot.is_ready(), Duration::from_secs(10)).await.unwrap();
        ui
    }

    pub(crate) async fn seed(&self, docs: impl IntoIterator<Item = Document>) {
        for doc in docs {
            self.directory.create(&doc).await.unwrap();
        }
    }

    /// A mailbox with `password` and `roles` (the domain must exist).
    pub(crate) async fn mailbox(&self, address: &str, password: &str, roles: &[Role]) {
        let hash = PasswordHash::new(&Password::new(password.to_owned()).unwrap());
        let mailbox = Mailbox {
            address: fixtures::address(address),
            name: String::new(),
            password: Some(hash),
            active: true,
            quota_bytes: None,
            roles: roles.to_vec(),
            sieve_active: None,
            policy: Default::default(),
        };
        self.seed([Document::Mailbox(mailbox)]).await;
    }

    /// Waits until the index shows every document written so far.
    pub(crate) async fn settle(&self, done: impl Fn(&couchmail_index::Snapshot) -> bool) {
        self.index.wait_until(done, Duration::from_secs(10)).await.unwrap();
    }

    pub(crate) fn browser(&self) -> Browser<'_> {
        Browser { ui: self, cookies: HashMap::new(), ip: None, origin: Some(self.base.clone()) }
    }
}

/// A browser: its cookies, the address it claims through a proxy, the origin it sends.
pub(crate) struct Browser<'a> {
    pub(crate) ui: &'a Ui,
    pub(crate) cookies: HashMap<String, String>,
    pub(crate) ip: Option<String>,
    pub(crate) origin: Option<String>,
}

/// Percent-encodes a form value.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl Browser<'_> {
    fn client() -> reqwest::Client {
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
    }

    pub(crate) fn cookie_header_for_test(&self) -> String {
        self.cookie_header()
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("; ")
    }

    async fn finish(&mut self, request: reqwest::RequestBuilder) -> Page {
        let mut request = request.header("accept", "text/html");
        if !self.cookies.is_empty() {
            request = request.header("cookie", self.cookie_header());
        }
        if let Some(ip) = &self.ip {
            request = request.header("x-forwarded-for", ip);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        for value in headers.get_all(SET_COOKIE) {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || text.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let body = response.text().await.unwrap();
        Page { status, headers, body }
    }

    pub(crate) async fn get(&mut self, path: &str) -> Page {
        let request = Self::client().get(format!("{}{path}", self.ui.base));
        self.finish(request).await
    }

    /// Posts `fields` as a form, exactly as given (no token added).
    pub(crate) async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = fields.iter().map(|(name, value)| format!("{name}={}", encode(value))).collect::<Vec<_>>().join("&");
        let mut request = Self::client()
            .post(format!("{}{path}", self.ui.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(origin) = &self.origin {
            request = request.header("origin", origin);
        }
        self.finish(request).await
    }

    /// Posts `fields` with the token of the page at `from` (as submitting that page's form would).
    pub(crate) async fn post(&mut self, from: &str, path: &str, fields: &[(&str, &str)]) -> Page {
        let page = self.get(from).await;
        let csrf = page.csrf().unwrap_or_else(|| panic!("no form token on {from}: {}", page.body));
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    /// Logs in; returns the answer to the form.
    pub(crate) async fn login(&mut self, address: &str, password: &str) -> Page {
        self.post("/login", "/login", &[("address", address), ("password", password)]).await
    }
}
