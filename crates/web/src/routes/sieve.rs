//! `/mailboxes/{address}/sieve`: a mailbox's Sieve scripts (RFC 5228).
//!
//! Which script runs is the mailbox's `sieve_active`, changed with
//! `PUT /mailboxes/{address}`; removing the active script clears it.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use couchmail_directory::{Cascade, ListFilter};
use couchmail_model::{Address, DocKind, Document, SieveName, SieveScript};
use couchmail_store::Rev;

use crate::access::{Action, Principal, Resource};
use crate::dto::{SieveInput, SievePage, SieveSummary, SieveView};
use crate::error::ErrorBody;
use crate::extract::{JsonBody, PathParams, QueryParams, if_match};
use crate::routes::{check_key, check_rev, key_error, list_options, next_after, parse_key, removed, split, with_etag};
use crate::{ApiState, Error};

/// Lists a mailbox's scripts (names only).
#[utoipa::path(
    get, path = "/api/v1/mailboxes/{address}/sieve", tag = "sieve",
    params(
        ("address" = String, Path, description = "The mailbox"),
        ("after" = Option<String>, Query, description = "The last name of the previous page"),
        ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (default 100)"),
    ),
    responses((status = 200, body = SievePage), (status = "4XX", description = "See the error codes", body = ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    principal: Principal,
    PathParams(address): PathParams<String>,
    mut query: QueryParams,
) -> Result<Json<SievePage>, Error> {
    let owner = parse_key("address", &address, Address::parse)?;
    let page = query.page()?;
    query.finish()?;
    principal.authorize(Action::Read, &Resource::Sieve(&owner))?;
    let (mailbox, _) = super::mailboxes::read(&state, &owner).await?;
    let after = page
        .after
        .as_deref()
        .map(|after| parse_key("after", after, SieveName::parse).map(|name| script_id(&owner, &name)))
        .transpose()?;
    let filter =
        ListFilter { kind: DocKind::Sieve, domain: None, owner: Some(owner.clone()), page: list_options(after, &page) };
    let mut items = Vec::new();
    for entry in state.directory.list(&filter).await? {
        if let Document::Sieve(script) = &entry.doc {
            let active = mailbox.sieve_active.as_ref() == Some(&script.name);
            items.push(SieveSummary { name: script.name.to_string(), active });
        }
    }
    let keys: Vec<String> = items.iter().map(|item| item.name.clone()).collect();
    Ok(Json(SievePage { next: next_after(&keys, &page), items }))
}

/// Uploads a new script (inactive until the mailbox's `sieve_active` names it).
#[utoipa::path(
    post, path = "/api/v1/mailboxes/{address}/sieve", tag = "sieve",
    params(("address" = String, Path, description = "The mailbox")),
    request_body = SieveInput,
    responses(
        (status = 201, body = SieveView, headers(("ETag" = String, description = "The new revision"))),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    principal: Principal,
    PathParams(address): PathParams<String>,
    JsonBody(input): JsonBody<SieveInput>,
) -> Result<Response, Error> {
    let owner = parse_key("address", &address, Address::parse)?;
    super::mailboxes::authorize_owner(&state, &principal, &owner).await?;
    let Some(name) = input.name else { return Err(Error::invalid("name", "is required")) };
    let script = SieveScript { owner, name, script: input.script };
    let rev = state.directory.create(&Document::Sieve(script.clone())).await.map_err(key_error("name"))?;
    with_etag(StatusCode::CREATED, &rev, SieveView::new(&script, false))
}

/// Shows a script.
#[utoipa::path(
    get, path = "/api/v1/mailboxes/{address}/sieve/{name}", tag = "sieve",
    params(("address" = String, Path, description = "The mailbox"), ("name" = String, Path, description = "The script's name")),
    responses(
        (status = 200, body = SieveView, headers(("ETag" = String, description = "The current revision"))),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn show(
    State(state): State<ApiState>,
    principal: Principal,
    PathParams((address, name)): PathParams<(String, String)>,
) -> Result<Response, Error> {
    let (owner, name) = parse_path(&address, &name)?;
    principal.authorize(Action::Read, &Resource::Sieve(&owner))?;
    let (script, rev) = read(&state, &owner, &name).await?;
    let active = is_active(&state, &script).await?;
    with_etag(StatusCode::OK, &rev, SieveView::new(&script, active))
}

/// Replaces a script's source; needs `If-Match`.
#[utoipa::path(
    put, path = "/api/v1/mailboxes/{address}/sieve/{name}", tag = "sieve",
    params(
        ("address" = String, Path, description = "The mailbox"),
        ("name" = String, Path, description = "The script's name"),
        ("If-Match" = String, Header, description = "The ETag read"),
    ),
    request_body = SieveInput,
    responses(
        (status = 200, body = SieveView, headers(("ETag" = String, description = "The new revision"))),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn update(
    State(state): State<ApiState>,
    principal: Principal,
    PathParams((address, name)): PathParams<(String, String)>,
    headers: HeaderMap,
    JsonBody(input): JsonBody<SieveInput>,
) -> Result<Response, Error> {
    let (owner, name) = parse_path(&address, &name)?;
    check_key("name", input.name.as_ref(), &name)?;
    let expected = if_match(&headers)?;
    super::mailboxes::authorize_owner(&state, &principal, &owner).await?;
    let (_, rev) = read(&state, &owner, &name).await?;
    check_rev(&rev, &expected, format_args!("Sieve script `{name}` of `{owner}`"))?;
    let script = SieveScript { owner, name, script: input.script };
    let rev = state.directory.update(&Document::Sieve(script.clone()), &expected).await.map_err(key_error("name"))?;
    let active = is_active(&state, &script).await?;
    with_etag(StatusCode::OK, &rev, SieveView::new(&script, active))
}

/// Removes a script; needs `If-Match`. Removing the active script deactivates it.
#[utoipa::path(
    delete, path = "/api/v1/mailboxes/{address}/sieve/{name}", tag = "sieve",
    params(
        ("address" = String, Path, description = "The mailbox"),
        ("name" = String, Path, description = "The script's name"),
        ("If-Match" = String, Header, description = "The ETag read"),
    ),
    responses((status = 204, description = "Removed"), (status = "4XX", description = "See the error codes", body = ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn remove(
    State(state): State<ApiState>,
    principal: Principal,
    PathParams((address, name)): PathParams<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let (owner, name) = parse_path(&address, &name)?;
    let expected = if_match(&headers)?;
    super::mailboxes::authorize_owner(&state, &principal, &owner).await?;
    // Deactivating is the only thing hanging off a script, and it is what
    // removing the active script means.
    state.directory.remove(&script_id(&owner, &name), Some(&expected), Cascade::Remove).await?;
    Ok(removed())
}

fn parse_path(address: &str, name: &str) -> Result<(Address, SieveName), Error> {
    Ok((parse_key("address", address, Address::parse)?, parse_key("name", name, SieveName::parse)?))
}

fn script_id(owner: &Address, name: &SieveName) -> String {
    DocKind::Sieve.id(format_args!("{owner}:{name}"))
}

async fn read(state: &ApiState, owner: &Address, name: &SieveName) -> Result<(SieveScript, Rev), Error> {
    match split(state.directory.get(&script_id(owner, name)).await?) {
        Some((Document::Sieve(script), rev)) => Ok((script, rev)),
        _ => Err(Error::NotFound(format!("`{owner}` has no Sieve script `{name}`"))),
    }
}

async fn is_active(state: &ApiState, script: &SieveScript) -> Result<bool, Error> {
    match split(state.directory.get(&DocKind::Mailbox.id(&script.owner)).await?) {
        Some((Document::Mailbox(mailbox), _)) => Ok(mailbox.sieve_active.as_ref() == Some(&script.name)),
        _ => Ok(false),
    }
}
