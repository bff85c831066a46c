//! A blocking client of couchmail's REST API for tests: every call returns
//! the status, the ETag and the JSON body, and panics only when the server
//! cannot be reached at all. Over HTTPS (a stack whose `api.tls` is on) it
//! trusts exactly the stack's own certificate ([`TlsClient`]).

use std::time::Duration;

use serde_json::Value;

use super::tls::TlsClient;

/// The REST API of one stack, acting with one bearer token.
#[derive(Clone, Debug)]
pub struct Api {
    client: reqwest::blocking::Client,
    base_url: String,
    bearer: String,
}

/// One answer of the API.
#[derive(Clone, Debug)]
pub struct ApiResponse {
    /// The HTTP status.
    pub status: u16,
    /// The `ETag` header, quotes included, as `If-Match` wants it back.
    pub etag: Option<String>,
    /// The body as JSON (`Null` when empty or not JSON).
    pub body: Value,
}

impl ApiResponse {
    /// The ETag, or a panic that shows the whole response.
    pub fn etag(&self) -> &str {
        self.etag.as_deref().unwrap_or_else(|| panic!("no ETag in the response: {self:?}"))
    }
}

/// A blocking HTTP client without proxies, pinned to `tls`'s certificate
/// when given, following redirects or not.
///
/// # Panics
/// When reqwest cannot build it.
pub(crate) fn http_client(tls: Option<&TlsClient>, follow_redirects: bool) -> reqwest::blocking::Client {
    // The workspace builds reqwest without a TLS provider of its own (`rustls-no-provider`),
    // and a client without one panics even for plain http: install ring, the workspace's
    // provider, unless something already installed one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::blocking::Client::builder().no_proxy().timeout(Duration::from_secs(30));
    if !follow_redirects {
        builder = builder.redirect(reqwest::redirect::Policy::none());
    }
    if let Some(tls) = tls {
        // The pinned configuration, not a root store: the stack's certificate is self-signed,
        // and pinning it makes a client that reached another server fail.
        builder = builder.tls_backend_preconfigured(rustls::ClientConfig::clone(&tls.config()));
    }
    builder.build().unwrap_or_else(|err| panic!("cannot build an HTTP client: {err}"))
}

impl Api {
    /// A client of `base_url` (`http://127.0.0.1:PORT/api/v1`) with `bearer`.
    pub fn new(base_url: String, bearer: String) -> Api {
        Api { client: http_client(None, true), base_url, bearer }
    }

    /// A client of `base_url` (`https://127.0.0.1:PORT/api/v1`) with `bearer`
    /// that trusts only the certificate `tls` pins.
    pub fn with_tls(base_url: String, bearer: String, tls: &TlsClient) -> Api {
        Api { client: http_client(Some(tls), true), base_url, bearer }
    }

    /// The same API with another token (a mailbox's, say).
    pub fn with_bearer(&self, bearer: &str) -> Api {
        Api { bearer: bearer.to_owned(), ..self.clone() }
    }

    /// The base URL, ending in `/api/v1`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `GET path` (relative to `/api/v1`).
    pub fn get(&self, path: &str) -> ApiResponse {
        self.send(reqwest::Method::GET, path, None, None)
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> ApiResponse {
        self.send(reqwest::Method::POST, path, Some(body), None)
    }

    /// `PUT path` with a JSON body and `If-Match`.
    pub fn put(&self, path: &str, body: &Value, if_match: &str) -> ApiResponse {
        self.send(reqwest::Method::PUT, path, Some(body), Some(if_match))
    }

    /// `DELETE path` with `If-Match`.
    pub fn delete(&self, path: &str, if_match: &str) -> ApiResponse {
        self.send(reqwest::Method::DELETE, path, None, Some(if_match))
    }

    fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>, if_match: Option<&str>) -> ApiResponse {
        let url = format!("{}{path}", self.base_url);
        let mut request = self.client.request(method.clone(), &url).bearer_auth(&self.bearer);
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(if_match) = if_match {
            request = request.header("If-Match", if_match);
        }
        let response = request.send().unwrap_or_else(|err| panic!("{method} {url} failed: {err}"));
        let status = response.status().as_u16();
        let etag = response.headers().get("etag").and_then(|value| value.to_str().ok()).map(str::to_owned);
        let text = response.text().unwrap_or_else(|err| panic!("{method} {url}: cannot read the body: {err}"));
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        ApiResponse { status, etag, body }
    }
}
