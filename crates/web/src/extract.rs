//! Reading requests: JSON bodies, path segments, query parameters and
//! `If-Match`, each failing as an [`Error`] that names the part at fault.
//!
//! axum's own extractors answer plain text; these wrap them, or replace
//! them, so that every rejection is the API's JSON error.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use couchmail_directory::Cascade;
use couchmail_store::Rev;
use serde::de::DeserializeOwned;

use crate::Error;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Page size when a listing names none.
pub const DEFAULT_PAGE_LIMIT: usize = 100;
/// Largest page a listing may ask for.
pub const MAX_PAGE_LIMIT: usize = 1000;

/// A JSON request body of type `T`.
///
/// Requires `Content-Type: application/json` (415 otherwise), at most
/// [`MAX_BODY_BYTES`] (413), and a body that parses as `T` (400 naming the
/// field: `serde_path_to_error` tracks where parsing failed, which also
/// covers invalid UTF-8 inside a string and unknown fields of the
/// `deny_unknown_fields` DTOs).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Error> {
        if !is_json(request.headers()) {
            return Err(Error::UnsupportedMediaType);
        }
        let declared_len = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared_len.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
            return Err(Error::PayloadTooLarge(MAX_BODY_BYTES));
        }
        let bytes = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES).await.map_err(|err| {
            // A body streamed without Content-Length hits the limit while it is
            // read; anything else is a connection that broke mid-body.
            if error_chain_mentions(&err, "length limit") {
                Error::PayloadTooLarge(MAX_BODY_BYTES)
            } else {
                Error::invalid("", format!("could not read the request body: {err}"))
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses `bytes` as one JSON value of type `T`, naming the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." { String::new() } else { path };
        Error::invalid(field, format!("invalid JSON body: {}", err.inner()))
    })?;
    deserializer.end().map_err(|err| Error::invalid("", format!("invalid JSON body: {err}")))?;
    Ok(value)
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()) else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

fn error_chain_mentions(err: &(dyn std::error::Error + 'static), needle: &str) -> bool {
    let mut current = Some(err);
    while let Some(err) = current {
        if err.to_string().contains(needle) {
            return true;
        }
        current = err.source();
    }
    false
}

/// Path parameters of type `T`, failing as a 400 rather than axum's plain text.
#[derive(Debug)]
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParams(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> Error {
    match rejection {
        PathRejection::FailedToDeserializePathParams(inner) => Error::invalid("path", inner.body_text()),
        other => Error::Internal(format!("path parameters: {}", other.body_text())),
    }
}

/// The query string as name–value pairs, consumed one parameter at a time so
/// that an unknown one is refused by name ([`QueryParams::finish`]).
#[derive(Debug, Default)]
pub struct QueryParams(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        match Query::<Vec<(String, String)>>::from_request_parts(parts, state).await {
            Ok(Query(pairs)) => Ok(QueryParams(pairs)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> Error {
    Error::invalid("query", rejection.body_text())
}

/// Paging parameters of a listing: `after` (the key of the last item of the previous page) and `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// List only what sorts after this key.
    pub after: Option<String>,
    /// At most this many items.
    pub limit: usize,
}

impl QueryParams {
    /// Builds from pairs, for tests.
    #[cfg(test)]
    fn from_pairs(pairs: &[(&str, &str)]) -> QueryParams {
        QueryParams(pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect())
    }

    /// Takes parameter `name`, refusing it twice.
    pub fn take(&mut self, name: &str) -> Result<Option<String>, Error> {
        let mut found = None;
        let mut rest = Vec::with_capacity(self.0.len());
        for (key, value) in self.0.drain(..) {
            if key != name {
                rest.push((key, value));
            } else if found.is_some() {
                return Err(Error::invalid(name, "is given more than once"));
            } else {
                found = Some(value);
            }
        }
        self.0 = rest;
        Ok(found)
    }

    /// Takes `after` and `limit`.
    pub fn page(&mut self) -> Result<Page, Error> {
        let after = self.take("after")?.filter(|after| !after.is_empty());
        let limit = match self.take("limit")? {
            None => DEFAULT_PAGE_LIMIT,
            Some(text) => match text.parse::<usize>() {
                Ok(limit) if (1..=MAX_PAGE_LIMIT).contains(&limit) => limit,
                _ => return Err(Error::invalid("limit", format!("must be a number from 1 to {MAX_PAGE_LIMIT}"))),
            },
        };
        Ok(Page { after, limit })
    }

    /// Takes `cascade` (`true` or `false`, default `false`).
    pub fn cascade(&mut self) -> Result<Cascade, Error> {
        match self.take("cascade")?.as_deref() {
            None | Some("false") => Ok(Cascade::Refuse),
            Some("true") => Ok(Cascade::Remove),
            Some(_) => Err(Error::invalid("cascade", "must be `true` or `false`")),
        }
    }

    /// Refuses any parameter not taken.
    pub fn finish(self) -> Result<(), Error> {
        match self.0.into_iter().next() {
            None => Ok(()),
            Some((name, _)) => Err(Error::invalid(name, "unknown query parameter")),
        }
    }
}

/// The revision named by `If-Match`, which every change of an existing
/// resource must carry (RFC 9110 §13.1.1): missing is a 428, so that no
/// client can overwrite what it has not seen.
pub fn if_match(headers: &HeaderMap) -> Result<Rev, Error> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Err(Error::PreconditionRequired) };
    let text = value.to_str().map_err(|_| Error::invalid("If-Match", "is not ASCII"))?.trim();
    if text == "*" || text.contains(',') || text.starts_with("W/") {
        return Err(Error::invalid("If-Match", "must be exactly one ETag as received, like `\"1-abc\"`"));
    }
    let rev = text.strip_prefix('"').and_then(|rest| rest.strip_suffix('"')).unwrap_or(text);
    if rev.is_empty() {
        return Err(Error::invalid("If-Match", "is empty"));
    }
    Ok(Rev(rev.to_owned()))
}

/// `rev` as an ETag header value (a strong ETag: revisions name exact content).
pub fn etag(rev: &Rev) -> Result<HeaderValue, Error> {
    HeaderValue::from_str(&format!("\"{rev}\""))
        .map_err(|_| Error::Internal(format!("revision `{rev}` cannot be an ETag")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        targets: Vec<couchmail_model::Address>,
    }

    fn field_of(body: &[u8]) -> Option<String> {
        match parse_json::<Sample>(&Bytes::copy_from_slice(body)) {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn json_errors_name_the_field() {
        assert_eq!(field_of(br#"{"name": "x", "targets": ["a@b.example", "nope"]}"#).as_deref(), Some("targets[1]"));
        assert_eq!(field_of(br#"{"name": 5, "targets": []}"#).as_deref(), Some("name"));
        assert_eq!(field_of(br#"{"name": "x", "targets": [], "extra": 1}"#).as_deref(), Some("extra"));
        assert_eq!(field_of(b"{\"name\": \"\xff\", \"targets\": []}").as_deref(), Some("name"));
        assert_eq!(field_of(b"{\"name\": ").as_deref(), Some("name"));
        assert_eq!(field_of(b"nonsense"), None);
        assert_eq!(field_of(b""), None);
        assert_eq!(field_of(br#"{"name": "x", "targets": []} trailing"#), None);
    }

    #[test]
    fn if_match_accepts_one_etag() {
        let check = |value: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(value) = value {
                headers.insert(header::IF_MATCH, HeaderValue::from_str(value).unwrap());
            }
            if_match(&headers).map(|rev| rev.0).map_err(|err| err.code())
        };
        assert_eq!(check(Some("\"1-abc\"")), Ok("1-abc".to_owned()));
        assert_eq!(check(Some("1-abc")), Ok("1-abc".to_owned()));
        assert_eq!(check(None), Err("precondition_required"));
        assert_eq!(check(Some("*")), Err("invalid"));
        assert_eq!(check(Some("\"1-a\", \"2-b\"")), Err("invalid"));
        assert_eq!(check(Some("W/\"1-a\"")), Err("invalid"));
    }

    #[test]
    fn query_parameters_are_checked() {
        let mut query = QueryParams::from_pairs(&[("after", "x"), ("limit", "5")]);
        assert_eq!(query.page().unwrap(), Page { after: Some("x".to_owned()), limit: 5 });
        query.finish().unwrap();

        let mut query = QueryParams::from_pairs(&[]);
        assert_eq!(query.page().unwrap().limit, DEFAULT_PAGE_LIMIT);

        for bad in ["0", "1001", "x", "-1"] {
            let mut query = QueryParams::from_pairs(&[("limit", bad)]);
            assert!(matches!(query.page(), Err(Error::Invalid { field: Some(f), .. }) if f == "limit"), "{bad}");
        }
        let query = QueryParams::from_pairs(&[("colour", "red")]);
        assert!(matches!(query.finish(), Err(Error::Invalid { field: Some(f), .. }) if f == "colour"));
        let mut query = QueryParams::from_pairs(&[("cascade", "yes")]);
        assert!(query.cascade().is_err());
        let mut query = QueryParams::from_pairs(&[("cascade", "true")]);
        assert_eq!(query.cascade().unwrap(), Cascade::Remove);
        let mut query = QueryParams::from_pairs(&[("limit", "1"), ("limit", "2")]);
        assert!(query.page().is_err());
    }
}
