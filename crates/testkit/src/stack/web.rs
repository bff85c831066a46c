//! A blocking client of couchmail's web UI for tests that need no browser:
//! it keeps the cookies the server sets in a jar of its own, as a browser
//! would, and does not follow redirects, so that a test sees each `303` with
//! its `Set-Cookie` headers. [`WebClient::log_in`] goes through the login
//! form with its CSRF token. Over HTTPS it trusts exactly the stack's own
//! certificate ([`TlsClient`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use super::api::http_client;
use super::tls::TlsClient;

/// The web UI of one stack, with the cookies it has set so far.
#[derive(Debug)]
pub struct WebClient {
    client: reqwest::blocking::Client,
    base_url: String,
    cookies: Mutex<BTreeMap<String, String>>,
}

/// One answer of the web UI.
#[derive(Clone, Debug)]
pub struct WebResponse {
    /// The HTTP status (a redirect is not followed).
    pub status: u16,
    /// Every `Set-Cookie` header, as sent.
    pub set_cookies: Vec<String>,
    /// The `Location` header of a redirect.
    pub location: Option<String>,
    /// The body as text.
    pub body: String,
}

impl WebResponse {
    /// The whole `Set-Cookie` header (attributes included) that sets `name`.
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        self.set_cookies.iter().map(String::as_str).find(|header| cookie_name_value(header).0 == name)
    }
}

impl WebClient {
    /// A client of the UI at `base_url` (`https://127.0.0.1:PORT`, no trailing slash), pinned to
    /// `tls`'s certificate when given.
    pub fn new(base_url: String, tls: Option<&TlsClient>) -> WebClient {
        WebClient { client: http_client(tls, false), base_url, cookies: Mutex::new(BTreeMap::new()) }
    }

    /// The base URL, for example `https://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The value of cookie `name` in the jar.
    pub fn cookie(&self, name: &str) -> Option<String> {
        super::lock(&self.cookies).get(name).cloned()
    }

    /// `GET path` with the jar's cookies.
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub fn get(&self, path: &str) -> WebResponse {
        self.send(self.client.get(format!("{}{path}", self.base_url)), "GET", path)
    }

    /// `POST path` with `fields` as a form, and the jar's cookies.
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> WebResponse {
        let body = fields
            .iter()
            .map(|(name, value)| format!("{}={}", form_encode(name), form_encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let request = self
            .client
            .post(format!("{}{path}", self.base_url))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(request, "POST", path)
    }

    /// Logs in through the login page: `GET /login` for the form's CSRF token (and its
    /// cookie), then `POST /login`; returns the answer to the `POST` (a `303` on success).
    ///
    /// # Panics
    /// When the login page has no CSRF token.
    pub fn log_in(&self, address: &str, password: &str) -> WebResponse {
        let page = self.get("/login");
        let token = hidden_field(&page.body, "csrf")
            .unwrap_or_else(|| panic!("the login page has no csrf field: {} {}", page.status, page.body));
        self.post_form("/login", &[("address", address), ("password", password), ("csrf", &token)])
    }

    fn send(&self, request: reqwest::blocking::RequestBuilder, method: &str, path: &str) -> WebResponse {
        let cookie_header = {
            let jar = super::lock(&self.cookies);
            jar.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("; ")
        };
        let request = if cookie_header.is_empty() { request } else { request.header("Cookie", cookie_header) };
        let url = format!("{}{path}", self.base_url);
        let response = request.send().unwrap_or_else(|err| panic!("{method} {url} failed: {err}"));
        let status = response.status().as_u16();
        let headers = response.headers();
        let set_cookies: Vec<String> =
            headers.get_all("set-cookie").iter().filter_map(|value| value.to_str().ok()).map(str::to_owned).collect();
        let location = headers.get("location").and_then(|value| value.to_str().ok()).map(str::to_owned);
        let body = response.text().unwrap_or_else(|err| panic!("{method} {url}: cannot read the body: {err}"));
        let mut jar = super::lock(&self.cookies);
        for header in &set_cookies {
            let (name, value) = cookie_name_value(header);
            // `Max-Age=0` is how the server removes a cookie.
            let removed = header.split(';').any(|attribute| attribute.trim().eq_ignore_ascii_case("max-age=0"));
            if removed {
                jar.remove(name);
            } else {
                jar.insert(name.to_owned(), value.to_owned());
            }
        }
        WebResponse { status, set_cookies, location, body }
    }
}

/// The name and value of a `Set-Cookie` header (`name=value; attributes…`).
fn cookie_name_value(header: &str) -> (&str, &str) {
    let pair = header.split(';').next().unwrap_or_default();
    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
    (name.trim(), value.trim())
}

/// The value of the hidden input `name` in `html` (`name="…" value="…"`, as the templates write it).
fn hidden_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = start + html[start..].find('"')?;
    Some(html[start..end].to_owned())
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
fn form_encode(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => encoded.push(char::from(byte)),
            b' ' => encoded.push('+'),
            _ => {
                let _ = write!(encoded, "%{byte:02X}");
            }
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_escapes_everything_but_the_unreserved_bytes() {
        assert_eq!(form_encode("correct horse@x.test&a=b"), "correct+horse%40x.test%26a%3Db");
        assert_eq!(form_encode("é"), "%C3%A9");
    }

    #[test]
    fn set_cookie_headers_split_into_name_and_value() {
        assert_eq!(cookie_name_value("couchmail_session=abc; HttpOnly; Secure"), ("couchmail_session", "abc"));
        assert_eq!(cookie_name_value("couchmail_csrf=; Max-Age=0"), ("couchmail_csrf", ""));
        let response = WebResponse {
            status: 303,
            set_cookies: vec!["a=1; Path=/".to_owned(), "couchmail_session=abc; Secure".to_owned()],
            location: None,
            body: String::new(),
        };
        assert_eq!(response.set_cookie("couchmail_session"), Some("couchmail_session=abc; Secure"));
        assert_eq!(response.set_cookie("b"), None);
    }

    #[test]
    fn hidden_fields_are_read_from_the_form() {
        let html = "<form><input type=\"hidden\" name=\"csrf\" value=\"0123abcd\"><input name=\"address\"></form>";
        assert_eq!(hidden_field(html, "csrf").as_deref(), Some("0123abcd"));
        assert_eq!(hidden_field(html, "next"), None);
    }
}
