//! The router, the OpenAPI document, and what the resource handlers share:
//! authentication as an extractor, ETag responses, path keys, paging.

mod aliases;
mod conflicts;
mod domain_aliases;
mod domains;
mod listings;
mod mailboxes;
mod meta;
mod sieve;

use std::fmt;

use axum::Json;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use couchmail_directory::Entry;
use couchmail_model::{DocKind, DomainName, ValidationError};
use couchmail_store::Rev;
use serde::Serialize;
use tower_http::trace::TraceLayer;
use tracing::Span;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::access::{Action, Principal, Resource, authenticate};
use crate::extract::{Page, etag};
use crate::{ApiState, Error, UiConfig};

/// Where every route lives.
pub const API_PREFIX: &str = "/api/v1";

/// The OpenAPI document of the API, served at `/api/v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "CouchMail API", description = "Domains, mailboxes, aliases, Sieve scripts and blocklists of a CouchMail installation."),
    paths(
        meta::health,
        meta::status,
        meta::openapi_json,
        meta::whoami,
        domains::list,
        domains::create,
        domains::show,
        domains::update,
        domains::remove,
        domain_aliases::list,
        domain_aliases::create,
        domain_aliases::show,
        domain_aliases::update,
        domain_aliases::remove,
        mailboxes::list,
        mailboxes::create,
        mailboxes::show,
        mailboxes::update,
        mailboxes::remove,
        mailboxes::set_password,
        sieve::list,
        sieve::create,
        sieve::show,
        sieve::update,
        sieve::remove,
        aliases::list,
        aliases::create,
        aliases::show,
        aliases::update,
        aliases::remove,
        listings::list,
        listings::create,
        listings::show,
        listings::update,
        listings::remove,
        conflicts::list,
        conflicts::resolve,
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "meta", description = "Health, this document, and who a token is"),
        (name = "domains", description = "Mail domains"),
        (name = "domain-aliases", description = "Other names of a domain"),
        (name = "mailboxes", description = "Mailboxes (logins) and their passwords"),
        (name = "sieve", description = "Sieve scripts of a mailbox"),
        (name = "aliases", description = "Aliases and catch-alls"),
        (name = "listings", description = "Blocklist and allowlist entries: global, per domain, per mailbox"),
        (name = "conflicts", description = "Documents whose replicas disagree (CouchDB replication), and settling them"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme the operations refer to.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("cmt_<id>_<secret>").build(),
            ),
        );
    }
}

/// The API's router: every route under [`API_PREFIX`], JSON errors for
/// unknown routes and methods, and a tracing span per request; beside it the
/// web UI (everything outside [`API_PREFIX`]) with [`UiConfig::default`].
pub fn router(state: ApiState) -> Router {
    router_with(state, UiConfig::default())
}

/// [`router`] with the web UI configured by `ui`.
pub fn router_with(state: ApiState, ui: UiConfig) -> Router {
    let pages = crate::ui::router(state.clone(), ui);
    let api = Router::new()
        .route("/health", get(meta::health))
        .route("/status", get(meta::status))
        .route("/openapi.json", get(meta::openapi_json))
        .route("/whoami", get(meta::whoami))
        .route("/domains", get(domains::list).post(domains::create))
        .route("/domains/{domain}", get(domains::show).put(domains::update).delete(domains::remove))
        .route("/domain-aliases", get(domain_aliases::list).post(domain_aliases::create))
        .route(
            "/domain-aliases/{name}",
            get(domain_aliases::show).put(domain_aliases::update).delete(domain_aliases::remove),
        )
        .route("/mailboxes", get(mailboxes::list).post(mailboxes::create))
        .route("/mailboxes/{address}", get(mailboxes::show).put(mailboxes::update).delete(mailboxes::remove))
        .route("/mailboxes/{address}/password", put(mailboxes::set_password))
        .route("/mailboxes/{address}/sieve", get(sieve::list).post(sieve::create))
        .route("/mailboxes/{address}/sieve/{name}", get(sieve::show).put(sieve::update).delete(sieve::remove))
        .route("/aliases", get(aliases::list).post(aliases::create))
        .route("/aliases/{key}", get(aliases::show).put(aliases::update).delete(aliases::remove))
        .route("/listings", get(listings::list).post(listings::create))
        // A wildcard, so that a network's `/` may be written as is as well as `%2F`.
        .route("/listings/{*key}", get(listings::show).put(listings::update).delete(listings::remove))
        .route("/conflicts", get(conflicts::list))
        .route("/conflicts/{id}/resolve", post(conflicts::resolve))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    Router::new().nest(API_PREFIX, api).merge(pages).fallback(not_found).layer(
        TraceLayer::new_for_http()
            // Method, path and status only: never headers (the token) or bodies (passwords).
            .make_span_with(|request: &Request<_>| {
                tracing::info_span!(
                    "http",
                    method = %request.method(),
                    path = %request.uri().path(),
                    status = tracing::field::Empty,
                )
            })
            .on_request(())
            .on_response(|response: &Response, latency: std::time::Duration, span: &Span| {
                span.record("status", response.status().as_u16());
                tracing::info!(latency_ms = latency.as_secs_f64() * 1000.0, "answered");
            })
            .on_failure(()),
    )
}

/// A JSON 404 for programs, an HTML page for browsers (which ask for `text/html`).
async fn not_found(headers: axum::http::HeaderMap) -> Response {
    let browser = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if browser {
        return crate::ui::page::error_page(StatusCode::NOT_FOUND, "There is no such page.");
    }
    Error::NotFound("no such route; see /api/v1/openapi.json".to_owned()).into_response()
}

async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed
}

impl FromRequestParts<ApiState> for Principal {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Error> {
        authenticate(&state.directory, &parts.headers).await
    }
}

/// A JSON response with `ETag: "<rev>"`.
fn with_etag<T: Serialize>(status: StatusCode, rev: &Rev, body: T) -> Result<Response, Error> {
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(header::ETAG, etag(rev)?);
    Ok(response)
}

/// 204 for a removal.
fn removed() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Refuses a change whose `If-Match` is not the current revision.
fn check_rev(current: &Rev, if_match: &Rev, what: impl fmt::Display) -> Result<(), Error> {
    if current == if_match {
        return Ok(());
    }
    Err(Error::Conflict(format!("{what} was changed since you read it (now at ETag \"{current}\"); read it again")))
}

/// Parses a path segment or query value, naming it in the 400.
fn parse_key<T>(field: &str, text: &str, parse: impl Fn(&str) -> Result<T, ValidationError>) -> Result<T, Error> {
    parse(text).map_err(|err| Error::invalid(field, err.message))
}

/// Refuses a body whose key field names another resource than the path.
fn check_key<T: PartialEq + fmt::Display>(field: &str, given: Option<&T>, path: &T) -> Result<(), Error> {
    match given {
        Some(given) if given != path => {
            Err(Error::invalid(field, format!("`{given}` does not match `{path}` in the path; keys cannot be renamed")))
        }
        _ => Ok(()),
    }
}

/// The `_id` a listing starts after, from the key in `after`.
fn start_after<T: fmt::Display>(
    kind: DocKind,
    page: &Page,
    parse: impl Fn(&str) -> Result<T, ValidationError>,
) -> Result<Option<String>, Error> {
    page.after.as_deref().map(|after| parse_key("after", after, &parse).map(|key| kind.id(key))).transpose()
}

/// The listing options of `page`.
fn list_options(start_after: Option<String>, page: &Page) -> couchmail_store::ListOptions {
    couchmail_store::ListOptions { start_after, limit: Some(page.limit) }
}

/// The `after` of the next page: the last key of a full page.
fn next_after(keys: &[String], page: &Page) -> Option<String> {
    if keys.len() < page.limit { None } else { keys.last().cloned() }
}

/// Which domain a listing of domain contents covers: the one asked for (if
/// the principal may read it), all (admin), or the only one a domain admin
/// administers.
fn list_scope(principal: &Principal, domain: Option<String>) -> Result<Option<DomainName>, Error> {
    if let Some(text) = domain {
        let domain = parse_key("domain", &text, DomainName::parse)?;
        principal.authorize(Action::Read, &Resource::DomainContents(&domain))?;
        return Ok(Some(domain));
    }
    if principal.may(Action::Read, &Resource::Installation) {
        return Ok(None);
    }
    if let Some(domain) = principal.only_domain() {
        return Ok(Some(domain.clone()));
    }
    match principal {
        Principal::DomainAdmin { .. } => {
            Err(Error::invalid("domain", "name the domain to list: this token administers several"))
        }
        _ => principal.authorize(Action::Read, &Resource::Installation).map(|()| None),
    }
}

/// Splits an entry into its document and revision, for `let … else` matching.
fn split(entry: Option<Entry>) -> Option<(couchmail_model::Document, Rev)> {
    entry.map(|entry| (entry.doc, entry.rev))
}

/// Maps a directory error, naming the resource's key field (`name`,
/// `address`, `key`) where the directory names the `_id`.
fn key_error(key: &'static str) -> impl Fn(couchmail_directory::Error) -> Error {
    move |err| match Error::from(err) {
        Error::Invalid { message, field: Some(field) } if field == "_id" => Error::invalid(key, message),
        other => other,
    }
}
