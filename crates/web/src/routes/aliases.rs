//! `/aliases`: addresses that forward to others, and catch-alls (`@domain`,
//! written `%40domain` or `@domain` in the path).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use couchmail_directory::ListFilter;
use couchmail_model::{Alias, AliasKey, DocKind, Document};
use couchmail_store::Rev;

use crate::access::{Action, Principal, Resource};
use crate::dto::{AliasInput, AliasPage, AliasView};
use crate::error::ErrorBody;
use crate::extract::{JsonBody, PathParams, QueryParams, if_match};
use crate::routes::{
    check_key, check_rev, key_error, list_options, list_scope, next_after, parse_key, removed, split, start_after,
    with_etag,
};
use crate::{ApiState, Error};

/// Lists aliases, of one domain with `?domain=`.
#[utoipa::path(
    get, path = "/api/v1/aliases", tag = "aliases",
    params(
        ("domain" = Option<String>, Query, description = "Only this domain's aliases (required for a domain admin of several domains)"),
        ("after" = Option<String>, Query, description = "The last key of the previous page"),
        ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (default 100)"),
    ),
    responses((status = 200, body = AliasPage), (status = "4XX", description = "See the error codes", body = ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    principal: Principal,
    mut query: QueryParams,
) -> Result<Json<AliasPage>, Error> {
    let domain = query.take("domain")?;
    let page = query.page()?;
    query.finish()?;
    let domain = list_scope(&principal, domain)?;
    let after = start_after(DocKind::Alias, &page, AliasKey::parse)?;
    let filter = ListFilter { kind: DocKind::Alias, domain, owner: None, page: list_options(after, &page) };
    let mut items = Vec::new();
    for entry in state.directory.list(&filter).await? {
        if let Document::Alias(alias) = &entry.doc {
            principal.authorize(Action::Read, &Resource::Alias(&alias.key))?;
            items.push(AliasView::from(alias));
        }
    }
    let keys: Vec<String> = items.iter().map(|item| item.key.clone()).collect();
    Ok(Json(AliasPage { next: next_after(&keys, &page), items }))
}

/// Creates an alias or catch-all.
#[utoipa::path(
    post, path = "/api/v1/aliases", tag = "aliases",
    request_body = AliasInput,
    responses(
        (status = 201, body = AliasView, headers(("ETag" = String, description = "The new revision"))),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    principal: Principal,
    JsonBody(input): JsonBody<AliasInput>,
) -> Result<Response, Error> {
    let Some(key) = input.key else { return Err(Error::invalid("key", "is required")) };
    principal.authorize(Action::Write, &Resource::Alias(&key))?;
    let alias = Alias { key, targets: input.targets, active: input.active };
    let rev = state.directory.create(&Document::Alias(alias.clone())).await.map_err(key_error("key"))?;
    with_etag(StatusCode::CREATED, &rev, AliasView::from(&alias))
}

/// Shows an alias.
#[utoipa::path(
    get, path = "/api/v1/aliases/{key}", tag = "aliases",
    params(("key" = String, Path, description = "`local@domain`, or `@domain` for the catch-all")),
    responses(
        (status = 200, body = AliasView, headers(("ETag" = String, description = "The current revision"))),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn show(
    State(state): State<ApiState>,
    principal: Principal,
    PathParams(key): PathParams<String>,
) -> Result<Response, Error> {
    let key = parse_key("key", &key, AliasKey::parse)?;
    principal.authorize(Action::Read, &Resource::Alias(&key))?;
    let (alias, rev) = read(&state, &key).await?;
    with_etag(StatusCode::OK, &rev, AliasView::from(&alias))
}

/// Replaces an alias's targets; needs `If-Match`.
#[utoipa::path(
    put, path = "/api/v1/aliases/{key}", tag = "aliases",
    params(
        ("key" = String, Path, description = "`local@domain`, or `@domain` for the catch-all"),
        ("If-Match" = String, Header, description = "The ETag read"),
    ),
    request_body = AliasInput,
    responses(
        (status = 200, body = AliasView, headers(("ETag" = String, description = "The new revision"))),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn update(
    State(state): State<ApiState>,
    principal: Principal,
    PathParams(key): PathParams<String>,
    headers: HeaderMap,
    JsonBody(input): JsonBody<AliasInput>,
) -> Result<Response, Error> {
    let key = parse_key("key", &key, AliasKey::parse)?;
    check_key("key", input.key.as_ref(), &key)?;
    let expected = if_match(&headers)?;
    principal.authorize(Action::Write, &Resource::Alias(&key))?;
    let (_, rev) = read(&state, &key).await?;
    check_rev(&rev, &expected, format_args!("alias `{key}`"))?;
    let alias = Alias { key, targets: input.targets, active: input.active };
    let rev = state.directory.update(&Document::Alias(alias.clone()), &expected).await.map_err(key_error("key"))?;
    with_etag(StatusCode::OK, &rev, AliasView::from(&alias))
}

/// Removes an alias; needs `If-Match`.
#[utoipa::path(
    delete, path = "/api/v1/aliases/{key}", tag = "aliases",
    params(
        ("key" = String, Path, description = "`local@domain`, or `@domain` for the catch-all"),
        ("If-Match" = String, Header, description = "The ETag read"),
        ("cascade" = Option<bool>, Query, description = "Also take the alias out of aliases that target it"),
    ),
    responses((status = 204, description = "Removed"), (status = "4XX", description = "See the error codes", body = ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn remove(
    State(state): State<ApiState>,
    principal: Principal,
    PathParams(key): PathParams<String>,
    mut query: QueryParams,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let key = parse_key("key", &key, AliasKey::parse)?;
    let cascade = query.cascade()?;
    query.finish()?;
    let expected = if_match(&headers)?;
    principal.authorize(Action::Write, &Resource::Alias(&key))?;
    state.directory.remove(&DocKind::Alias.id(&key), Some(&expected), cascade).await?;
    Ok(removed())
}

async fn read(state: &ApiState, key: &AliasKey) -> Result<(Alias, Rev), Error> {
    match split(state.directory.get(&DocKind::Alias.id(key)).await?) {
        Some((Document::Alias(alias), rev)) => Ok((alias, rev)),
        _ => Err(Error::NotFound(format!("there is no alias `{key}`"))),
    }
}
