//! `/listings`: blocklist and allowlist entries by scope (issue #5).
//!
//! A listing's key is `<scope>:<action>:<kind>:<value>` (`mailbox:alice@example.com:block:sender:spam@bad.example`,
//! `global:block:client:192.0.2.0/24`); in the path a `/` of a network may be written as is or as `%2F`. The key
//! cannot change: to change what is listed, remove the entry and create another; `PUT` changes the note.
//! Who may do what is [`Resource::Listings`]: the global lists are the admin's, a domain's its domain admins', a
//! mailbox's its owner's and its domain admins'.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use couchmail_directory::{Cascade, ListFilter};
use couchmail_model::{
    Address, DocKind, Document, DomainName, Listing, ListingKey, ListingScope, ListingValue, ValidationError,
};
use couchmail_store::{ListOptions, Rev};

use crate::access::{Action, Principal, Resource};
use crate::dto::{ListingInput, ListingPage, ListingView};
use crate::error::ErrorBody;
use crate::extract::{JsonBody, PathParams, QueryParams, if_match};
use crate::routes::{check_key, check_rev, key_error, list_options, next_after, parse_key, removed, split, with_etag};
use crate::{ApiState, Error};

/// Lists entries: of one mailbox (`?mailbox=`), of a domain and its mailboxes (`?domain=`), the global ones
/// (`?scope=global`), or, without any, everything the token may see (the admin: all; a domain admin of one
/// domain: that domain's; a user: its mailbox's).
#[utoipa::path(
    get, path = "/api/v1/listings", tag = "listings",
    params(
        ("mailbox" = Option<String>, Query, description = "Only this mailbox's entries"),
        ("domain" = Option<String>, Query, description = "Only this domain's entries and its mailboxes'"),
        ("scope" = Option<String>, Query, description = "`global`: only the global entries (admin)"),
        ("after" = Option<String>, Query, description = "The last key of the previous page"),
        ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (default 100)"),
    ),
    responses((status = 200, body = ListingPage), (status = "4XX", description = "See the error codes", body = ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    principal: Principal,
    mut query: QueryParams,
) -> Result<Json<ListingPage>, Error> {
    let mailbox = query.take("mailbox")?.map(|text| parse_key("mailbox", &text, Address::parse)).transpose()?;
    let domain = query.take("domain")?.map(|text| parse_key("domain", &text, DomainName::parse)).transpose()?;
    let scope = query.take("scope")?;
    let page = query.page()?;
    query.finish()?;
    let after = page
        .after
        .as_deref()
        .map(|after| parse_key("after", after, ListingKey::parse).map(|key| DocKind::Listing.id(key)))
        .transpose()?;
    let entries = match (scope.as_deref(), mailbox, domain) {
        (Some("global"), None, None) => {
            principal.authorize(Action::Read, &Resource::Listings(&ListingScope::Global))?;
            global_listings(&state, after, page.limit).await?
        }
        (Some(_), _, _) => {
            return Err(Error::invalid("scope", "only `scope=global` is known, and it takes no `mailbox` or `domain`"));
        }
        (None, Some(_), Some(_)) => return Err(Error::invalid("domain", "give `mailbox` or `domain`, not both")),
        (None, Some(owner), None) => {
            principal.authorize(Action::Read, &Resource::Listings(&ListingScope::Mailbox(owner.clone())))?;
            list_filtered(&state, None, Some(owner), after, &page).await?
        }
        (None, None, Some(domain)) => {
            principal.authorize(Action::Read, &Resource::Listings(&ListingScope::Domain(domain.clone())))?;
            list_filtered(&state, Some(domain), None, after, &page).await?
        }
        (None, None, None) => match &principal {
            Principal::Admin { .. } => list_filtered(&state, None, None, after, &page).await?,
            Principal::DomainAdmin { .. } => match principal.only_domain() {
                Some(domain) => list_filtered(&state, Some(domain.clone()), None, after, &page).await?,
                None => {
                    return Err(Error::invalid("domain", "name the domain to list: this token administers several"));
                }
            },
            Principal::User { mailbox } => list_filtered(&state, None, Some(mailbox.clone()), after, &page).await?,
        },
    };
    let mut items = Vec::new();
    for listing in &entries {
        principal.authorize(Action::Read, &Resource::Listings(&listing.key.scope))?;
        items.push(ListingView::from(listing));
    }
    let keys: Vec<String> = items.iter().map(|item| item.key.clone()).collect();
    Ok(Json(ListingPage { next: next_after(&keys, &page), items }))
}

/// Creates an entry; 409 if the same one exists (however its value was written).
#[utoipa::path(
    post, path = "/api/v1/listings", tag = "listings",
    request_body = ListingInput,
    responses(
        (status = 201, body = ListingView, headers(("ETag" = String, description = "The new revision"))),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    principal: Principal,
    JsonBody(input): JsonBody<ListingInput>,
) -> Result<Response, Error> {
    let Some(scope) = input.scope else { return Err(Error::invalid("scope", "is required")) };
    let Some(action) = input.action else { return Err(Error::invalid("action", "is required")) };
    let Some(kind) = input.kind else { return Err(Error::invalid("kind", "is required")) };
    let Some(value) = input.value else { return Err(Error::invalid("value", "is required")) };
    let value = ListingValue::parse(kind, &value).map_err(|err| Error::invalid("value", err.message))?;
    principal.authorize(Action::Write, &Resource::Listings(&scope))?;
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map(|since| since.as_secs()).ok();
    let listing = Listing { key: ListingKey { scope, action, value }, note: input.note, created };
    let rev = state.directory.create(&Document::Listing(listing.clone())).await.map_err(key_error("scope"))?;
    with_etag(StatusCode::CREATED, &rev, ListingView::from(&listing))
}

/// Shows an entry.
#[utoipa::path(
    get, path = "/api/v1/listings/{key}", tag = "listings",
    params(("key" = String, Path, description = "`<scope>:<action>:<kind>:<value>`")),
    responses(
        (status = 200, body = ListingView, headers(("ETag" = String, description = "The current revision"))),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn show(
    State(state): State<ApiState>,
    principal: Principal,
    PathParams(key): PathParams<String>,
) -> Result<Response, Error> {
    let key = parse_key("key", &key, ListingKey::parse)?;
    principal.authorize(Action::Read, &Resource::Listings(&key.scope))?;
    let (listing, rev) = read(&state, &key).await?;
    with_etag(StatusCode::OK, &rev, ListingView::from(&listing))
}

/// Replaces an entry's note; needs `If-Match`.
#[utoipa::path(
    put, path = "/api/v1/listings/{key}", tag = "listings",
    params(
        ("key" = String, Path, description = "`<scope>:<action>:<kind>:<value>`"),
        ("If-Match" = String, Header, description = "The ETag read"),
    ),
    request_body = ListingInput,
    responses(
        (status = 200, body = ListingView, headers(("ETag" = String, description = "The new revision"))),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn update(
    State(state): State<ApiState>,
    principal: Principal,
    PathParams(key): PathParams<String>,
    headers: HeaderMap,
    JsonBody(input): JsonBody<ListingInput>,
) -> Result<Response, Error> {
    let key = parse_key("key", &key, ListingKey::parse)?;
    check_key("scope", input.scope.as_ref(), &key.scope)?;
    check_key("action", input.action.as_ref(), &key.action)?;
    check_key("kind", input.kind.as_ref(), &key.value.kind())?;
    if let Some(value) = &input.value {
        let value = ListingValue::parse(key.value.kind(), value).map_err(|err| Error::invalid("value", err.message))?;
        check_key("value", Some(&value), &key.value)?;
    }
    let expected = if_match(&headers)?;
    principal.authorize(Action::Write, &Resource::Listings(&key.scope))?;
    let (current, rev) = read(&state, &key).await?;
    check_rev(&rev, &expected, format_args!("listing `{key}`"))?;
    let listing = Listing { note: input.note, ..current };
    let rev = state.directory.update(&Document::Listing(listing.clone()), &expected).await.map_err(key_error("key"))?;
    with_etag(StatusCode::OK, &rev, ListingView::from(&listing))
}

/// Removes an entry; needs `If-Match`.
#[utoipa::path(
    delete, path = "/api/v1/listings/{key}", tag = "listings",
    params(
        ("key" = String, Path, description = "`<scope>:<action>:<kind>:<value>`"),
        ("If-Match" = String, Header, description = "The ETag read"),
    ),
    responses((status = 204, description = "Removed"), (status = "4XX", description = "See the error codes", body = ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn remove(
    State(state): State<ApiState>,
    principal: Principal,
    PathParams(key): PathParams<String>,
    query: QueryParams,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let key = parse_key("key", &key, ListingKey::parse)?;
    query.finish()?;
    let expected = if_match(&headers)?;
    principal.authorize(Action::Write, &Resource::Listings(&key.scope))?;
    state.directory.remove(&DocKind::Listing.id(&key), Some(&expected), Cascade::Refuse).await?;
    Ok(removed())
}

async fn read(state: &ApiState, key: &ListingKey) -> Result<(Listing, Rev), Error> {
    match split(state.directory.get(&DocKind::Listing.id(key)).await?) {
        Some((Document::Listing(listing), rev)) => Ok((listing, rev)),
        _ => Err(Error::NotFound(format!("there is no listing `{key}`"))),
    }
}

async fn list_filtered(
    state: &ApiState,
    domain: Option<DomainName>,
    owner: Option<Address>,
    after: Option<String>,
    page: &crate::extract::Page,
) -> Result<Vec<Listing>, Error> {
    let filter = ListFilter { kind: DocKind::Listing, domain, owner, page: list_options(after, page) };
    let entries = state.directory.list(&filter).await?;
    Ok(entries
        .into_iter()
        .filter_map(|entry| match entry.doc {
            Document::Listing(listing) => Some(listing),
            _ => None,
        })
        .collect())
}

/// The global entries, read by their `_id` prefix (the directory's filters cover domains and mailboxes).
async fn global_listings(state: &ApiState, after: Option<String>, limit: usize) -> Result<Vec<Listing>, Error> {
    let prefix = DocKind::Listing.id(format_args!("{}:", ListingScope::Global));
    let options = ListOptions { start_after: after, limit: Some(limit) };
    let raws = state.directory.store().list(&prefix, &options).await.map_err(couchmail_directory::Error::from)?;
    let mut listings = Vec::new();
    for raw in raws {
        match Document::from_stored(&raw.id, &raw.body) {
            Ok(Document::Listing(listing)) => listings.push(listing),
            Ok(_) => {}
            Err(err) => warn_invalid(&raw.id, &err),
        }
    }
    Ok(listings)
}

fn warn_invalid(id: &str, err: &ValidationError) {
    tracing::warn!(%id, reason = %err, "skipping an invalid stored document");
}
