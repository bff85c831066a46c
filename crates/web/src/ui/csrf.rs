//! Cross-site request forgery: one middleware in front of every page refuses
//! a state-changing request unless it comes from this site and carries the
//! session's form token.
//!
//! Two independent checks, so that either alone stops a forged form:
//! - the request's origin: `Origin` must name this host; without `Origin`,
//!   `Referer` must; without either, `Sec-Fetch-Site` must not say
//!   `cross-site` or `same-site` (a request with none of the three is from a
//!   program, not a browser, and still needs the token);
//! - the form field `csrf` must equal the session's token, or — for forms
//!   shown before login (login, invitations) — the `couchmail_csrf` cookie's
//!   (a double-submit token: a cross-site page can neither read nor set it).
//!
//! The session cookie's `SameSite=Strict` is a third line: browsers do not
//! send it with a cross-site request at all.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::ui::UiState;
use crate::ui::page::error_page;
use crate::ui::session::{PRE_SESSION_COOKIE, cookie, find_session, tokens_equal};

/// The largest form accepted (a Sieve script of 256 KiB, percent-encoded, fits).
pub(crate) const MAX_FORM_BYTES: usize = 1024 * 1024;

/// The form field that carries the token.
pub(crate) const CSRF_FIELD: &str = "csrf";

/// Lets safe methods through; checks every other request's origin and token.
pub(crate) async fn guard(State(state): State<UiState>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    if let Err(reason) = same_origin(&parts) {
        tracing::warn!(path = %parts.uri.path(), reason, "refused a cross-site request");
        return refused(reason);
    }
    let Ok(bytes) = to_bytes(body, MAX_FORM_BYTES).await else {
        return error_page(StatusCode::PAYLOAD_TOO_LARGE, "The form is larger than this site accepts.");
    };
    let given = form_field(&bytes, CSRF_FIELD).unwrap_or_default();
    let expected = match find_session(&parts, &state) {
        Some(session) => session.csrf,
        None => cookie(&parts.headers, PRE_SESSION_COOKIE).unwrap_or_default().to_owned(),
    };
    if !tokens_equal(&given, &expected) {
        tracing::warn!(path = %parts.uri.path(), "refused a form without this session's token");
        return refused("the form's security token is missing or out of date; reload the page and try again");
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

fn refused(reason: &str) -> Response {
    error_page(StatusCode::FORBIDDEN, &format!("This request was refused: {reason}."))
}

/// Whether the request says it comes from this site.
fn same_origin(parts: &Parts) -> Result<(), &'static str> {
    let header_text = |name| parts.headers.get(name).and_then(|value: &axum::http::HeaderValue| value.to_str().ok());
    let Some(host) = header_text(header::HOST.as_str()) else { return Err("the request names no host") };
    if let Some(origin) = header_text(header::ORIGIN.as_str()) {
        return if authority(origin).is_some_and(|authority| authority.eq_ignore_ascii_case(host)) {
            Ok(())
        } else {
            Err("it comes from another site (Origin)")
        };
    }
    if let Some(referer) = header_text(header::REFERER.as_str()) {
        return if authority(referer).is_some_and(|authority| authority.eq_ignore_ascii_case(host)) {
            Ok(())
        } else {
            Err("it comes from another site (Referer)")
        };
    }
    match header_text("sec-fetch-site") {
        Some("cross-site" | "same-site") => Err("it comes from another site (Sec-Fetch-Site)"),
        _ => Ok(()),
    }
}

/// The `host[:port]` of an absolute http(s) URL; `None` for anything else (`null` included).
fn authority(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    // Credentials in a URL are never ours.
    (!authority.is_empty() && !authority.contains('@')).then_some(authority)
}

/// The first value of `name` in an `application/x-www-form-urlencoded` body; tokens are hex
/// digits, so the value is compared as sent (a percent-encoded token is simply wrong).
pub(crate) fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').filter_map(|pair| pair.split_once('=')).find(|(key, _)| *key == name).map(|(_, v)| v.to_owned())
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut builder = Request::builder().method("POST").uri("/domains");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn origin_must_be_this_host() {
        let host = ("host", "mail.example:8025");
        assert!(same_origin(&parts(&[host, ("origin", "http://mail.example:8025")])).is_ok());
        assert!(same_origin(&parts(&[host, ("origin", "https://MAIL.example:8025")])).is_ok());
        assert!(same_origin(&parts(&[host, ("origin", "http://evil.example")])).is_err());
        assert!(same_origin(&parts(&[host, ("origin", "null")])).is_err());
        assert!(same_origin(&parts(&[host, ("origin", "http://mail.example:8025@evil.example")])).is_err());
        assert!(same_origin(&parts(&[host, ("referer", "http://mail.example:8025/domains?x=1")])).is_ok());
        assert!(same_origin(&parts(&[host, ("referer", "http://evil.example/mail.example:8025")])).is_err());
        assert!(same_origin(&parts(&[host, ("sec-fetch-site", "cross-site")])).is_err());
        assert!(same_origin(&parts(&[host, ("sec-fetch-site", "same-origin")])).is_ok());
        assert!(same_origin(&parts(&[host])).is_ok(), "a program sends none of them and still needs the token");
        assert!(same_origin(&parts(&[("origin", "http://mail.example:8025")])).is_err());
    }

    #[test]
    fn form_fields_are_found() {
        assert_eq!(form_field(b"a=1&csrf=abc&b=2", "csrf").as_deref(), Some("abc"));
        assert_eq!(form_field(b"a=1", "csrf"), None);
        assert_eq!(form_field(b"\xff", "csrf"), None);
    }
}
