//! Drawing pages: the template set (compiled into the binary), the context
//! every page shares (who is logged in, the form token, the flash message),
//! and the one error type of the pages, drawn as an HTML page.

use std::sync::LazyLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::{Environment, Value, context};

use crate::access::Principal;
use crate::ui::session::SessionUser;
use crate::ui::{role_label, sieve};

/// The templates of `crates/web/templates/`, by name.
const TEMPLATE_FILES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("macros.html", include_str!("../../templates/macros.html")),
    ("error.html", include_str!("../../templates/error.html")),
    ("login.html", include_str!("../../templates/login.html")),
    ("dashboard.html", include_str!("../../templates/dashboard.html")),
    ("me.html", include_str!("../../templates/me.html")),
    ("listings.html", include_str!("../../templates/listings.html")),
    ("policy.html", include_str!("../../templates/policy.html")),
    ("domains.html", include_str!("../../templates/domains.html")),
    ("domain.html", include_str!("../../templates/domain.html")),
    ("mailboxes.html", include_str!("../../templates/mailboxes.html")),
    ("mailbox.html", include_str!("../../templates/mailbox.html")),
    ("aliases.html", include_str!("../../templates/aliases.html")),
    ("alias.html", include_str!("../../templates/alias.html")),
    ("invitations.html", include_str!("../../templates/invitations.html")),
    ("invitation_made.html", include_str!("../../templates/invitation_made.html")),
    ("invite.html", include_str!("../../templates/invite.html")),
];

/// Every template, compiled once. A template that does not compile is logged and left out, and
/// pages using it answer 500; the unit tests compile and render them all.
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.add_filter("urlencode", |text: String| url_encode(&text));
    for (name, source) in TEMPLATE_FILES.iter().chain(sieve::TEMPLATES) {
        if let Err(err) = env.add_template(name, source) {
            tracing::error!(template = name, error = %err, "a web UI template does not compile");
        }
    }
    env
});

/// Percent-encodes everything but RFC 3986's unreserved characters, for a path segment or query value.
pub(crate) fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The 404 of a page about something that does not exist: "there is no domain `example.com`".
pub(crate) fn no_such(what: &str, name: impl std::fmt::Display) -> UiError {
    UiError::Api(crate::Error::NotFound(format!("there is no {what} `{name}`")))
}

/// Any serialisable value as a template value.
pub(crate) fn ser<T: serde::Serialize>(value: &T) -> Value {
    Value::from(minijinja::value::Serde(value))
}

/// What the header shows of the logged-in user.
fn me(user: &SessionUser) -> Value {
    let domains: Vec<String> = match &user.principal {
        Principal::DomainAdmin { domains, .. } => domains.iter().map(ToString::to_string).collect(),
        _ => Vec::new(),
    };
    context! {
        address => user.mailbox.to_string(),
        role => role_label(&user.principal),
        is_admin => matches!(user.principal, Principal::Admin { .. }),
        manages => !matches!(user.principal, Principal::User { .. }),
        domains => domains,
    }
}

/// Draws template `name` with `page` and, when someone is logged in, `me`, `csrf` and `flash`.
pub(crate) fn render(user: Option<&SessionUser>, name: &str, page: Value) -> Response {
    render_status(StatusCode::OK, user, name, page)
}

/// [`render`] with another status than 200.
pub(crate) fn render_status(status: StatusCode, user: Option<&SessionUser>, name: &str, page: Value) -> Response {
    let ctx = match user {
        Some(user) => context! { me => me(user), csrf => user.csrf.as_str(), flash => ser(&user.flash), ..page },
        None => page,
    };
    match TEMPLATES.get_template(name).and_then(|template| template.render(ctx)) {
        Ok(html) => {
            let mut response = (status, Html(html)).into_response();
            // Pages carry per-user data and form tokens: never cached, never framed.
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                     form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
                ),
            );
            response
        }
        Err(err) => {
            tracing::error!(template = name, error = %err, "cannot draw a web UI page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error drawing the page; the server log has the details")
                .into_response()
        }
    }
}

/// An error page: `status`, a title and what to do.
pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    render_status(
        status,
        None,
        "error.html",
        context! { title => title, message => message, status => status.as_u16() },
    )
}

/// Why a page cannot be shown.
#[derive(Debug)]
pub(crate) enum UiError {
    /// Nobody is logged in (or the session ended): off to the login page, then back to `next`.
    LoginRequired {
        /// The path to come back to.
        next: String,
    },
    /// Anything the API would answer with an error status.
    Api(crate::Error),
}

impl From<crate::Error> for UiError {
    fn from(err: crate::Error) -> UiError {
        UiError::Api(err)
    }
}

impl From<couchmail_directory::Error> for UiError {
    fn from(err: couchmail_directory::Error) -> UiError {
        UiError::Api(crate::Error::from(err))
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        match self {
            UiError::LoginRequired { next } => {
                let target =
                    if next == "/" { "/login".to_owned() } else { format!("/login?next={}", url_encode(&next)) };
                Redirect::to(&target).into_response()
            }
            UiError::Api(err) => {
                if let crate::Error::Internal(cause) = &err {
                    tracing::error!(%cause, "internal error drawing a page");
                }
                let mut response = error_page(err.status(), &err.public_message());
                if matches!(err, crate::Error::Unavailable) {
                    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                }
                response
            }
        }
    }
}

/// A path that is safe to redirect to after login: on this site, never `//host` or a URL.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => path.to_owned(),
        _ => "/".to_owned(),
    }
}

/// Formats a byte count for people: `512 MiB`, `2 GiB`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 { format!("{value} {}", UNITS[unit]) } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        for (name, _) in TEMPLATE_FILES.iter().chain(sieve::TEMPLATES) {
            assert!(TEMPLATES.get_template(name).is_ok(), "template {name} does not compile");
        }
    }

    #[test]
    fn pages_escape_what_they_show() {
        let response = error_page(StatusCode::NOT_FOUND, "<script>alert(1)</script>");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let ctx = context! { title => "x", message => "<b>", status => 404 };
        let html = TEMPLATES.get_template("error.html").unwrap().render(ctx).unwrap();
        assert!(html.contains("&lt;b&gt;") && !html.contains("<b>"), "{html}");
    }

    #[test]
    fn next_stays_on_the_site() {
        assert_eq!(safe_next(Some("/mailboxes?q=a")), "/mailboxes?q=a");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn helpers_format() {
        assert_eq!(url_encode("a b/c@d+e"), "a%20b%2Fc@d%2Be");
        assert_eq!(human_bytes(1 << 30), "1 GiB");
        assert_eq!(human_bytes(1536 << 20), "1.5 GiB");
        assert_eq!(human_bytes(100), "100 bytes");
    }
}
