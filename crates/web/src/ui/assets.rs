//! `/static/{file}`: the stylesheet and the small script, compiled into the binary.
//!
//! The script only improves pages (confirmations before removals, the
//! invitation link's copy button); every page works without it.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The files served, with their content types.
const FILES: &[(&str, &str, &str)] = &[
    ("couchmail.css", "text/css; charset=utf-8", include_str!("../../static/couchmail.css")),
    ("couchmail.js", "text/javascript; charset=utf-8", include_str!("../../static/couchmail.js")),
];

/// `GET /static/{file}`.
pub(crate) async fn serve(Path(file): Path<String>) -> Response {
    let Some((_, content_type, body)) = FILES.iter().find(|(name, _, _)| *name == file) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let mut response = (*body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}
