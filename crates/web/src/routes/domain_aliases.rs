//! `/domain-aliases`: other names of a domain (`user@alias` reaches
//! `user@target`). A domain alias belongs to the domain it points at, so
//! that domain's admins manage it.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use couchmail_directory::ListFilter;
use couchmail_model::{DocKind, Document, DomainAlias, DomainName};
use couchmail_store::Rev;

use crate::access::{Action, Principal, Resource};
use crate::dto::{DomainAliasInput, DomainAliasPage, DomainAliasView};
use crate::error::ErrorBody;
use crate::extract::{JsonBody, PathParams, QueryParams, if_match};
use crate::routes::{
    check_key, check_rev, key_error, list_options, list_scope, next_after, parse_key, removed, split, start_after,
    with_etag,
};
use crate::{ApiState, Error};

/// Lists domain aliases, of one target domain with `?domain=`.
#[utoipa::path(
    get, path = "/api/v1/domain-aliases", tag = "domain-aliases",
    params(
        ("domain" = Option<String>, Query, description = "Only the aliases of this domain (required for a domain admin of several domains)"),
        ("after" = Option<String>, Query, description = "The last alias domain of the previous page"),
        ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (default 100)"),
    ),
    responses((status = 200, body = DomainAliasPage), (status = "4XX", description = "See the error codes", body = ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    principal: Principal,
    mut query: QueryParams,
) -> Result<Json<DomainAliasPage>, Error> {
    let domain = query.take("domain")?;
    let page = query.page()?;
    query.finish()?;
    let domain = list_scope(&principal, domain)?;
    let after = start_after(DocKind::DomainAlias, &page, DomainName::parse)?;
    let filter = ListFilter { kind: DocKind::DomainAlias, domain, owner: None, page: list_options(after, &page) };
    let mut items = Vec::new();
    for entry in state.directory.list(&filter).await? {
        if let Document::DomainAlias(alias) = &entry.doc {
            principal.authorize(Action::Read, &Resource::DomainAlias { target: &alias.target })?;
            items.push(DomainAliasView::from(alias));
        }
    }
    let keys: Vec<String> = items.iter().map(|item| item.name.clone()).collect();
    Ok(Json(DomainAliasPage { next: next_after(&keys, &page), items }))
}

/// Creates a domain alias.
#[utoipa::path(
    post, path = "/api/v1/domain-aliases", tag = "domain-aliases",
    request_body = DomainAliasInput,
    responses(
        (status = 201, body = DomainAliasView, headers(("ETag" = String, description = "The new revision"))),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    principal: Principal,
    JsonBody(input): JsonBody<DomainAliasInput>,
) -> Result<Response, Error> {
    principal.authorize(Action::Write, &Resource::DomainAlias { target: &input.target })?;
    let Some(name) = input.name else { return Err(Error::invalid("name", "is required")) };
    let alias = DomainAlias { name, target: input.target };
    let rev = state.directory.create(&Document::DomainAlias(alias.clone())).await.map_err(key_error("name"))?;
    with_etag(StatusCode::CREATED, &rev, DomainAliasView::from(&alias))
}

/// Shows a domain alias.
#[utoipa::path(
    get, path = "/api/v1/domain-aliases/{name}", tag = "domain-aliases",
    params(("name" = String, Path, description = "The alias domain")),
    responses(
        (status = 200, body = DomainAliasView, headers(("ETag" = String, description = "The current revision"))),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn show(
    State(state): State<ApiState>,
    principal: Principal,
    PathParams(name): PathParams<String>,
) -> Result<Response, Error> {
    let name = parse_key("name", &name, DomainName::parse)?;
    let (alias, rev) = read(&state, &principal, &name).await?;
    with_etag(StatusCode::OK, &rev, DomainAliasView::from(&alias))
}

/// Points a domain alias at another domain; needs `If-Match`, and the right
/// to manage both the old and the new target.
#[utoipa::path(
    put, path = "/api/v1/domain-aliases/{name}", tag = "domain-aliases",
    params(
        ("name" = String, Path, description = "The alias domain"),
        ("If-Match" = String, Header, description = "The ETag read"),
    ),
    request_body = DomainAliasInput,
    responses(
        (status = 200, body = DomainAliasView, headers(("ETag" = String, description = "The new revision"))),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn update(
    State(state): State<ApiState>,
    principal: Principal,
    PathParams(name): PathParams<String>,
    headers: HeaderMap,
    JsonBody(input): JsonBody<DomainAliasInput>,
) -> Result<Response, Error> {
    let name = parse_key("name", &name, DomainName::parse)?;
    check_key("name", input.name.as_ref(), &name)?;
    let expected = if_match(&headers)?;
    let (current, rev) = read(&state, &principal, &name).await?;
    principal.authorize(Action::Write, &Resource::DomainAlias { target: &current.target })?;
    check_rev(&rev, &expected, format_args!("domain alias `{name}`"))?;
    principal.authorize(Action::Write, &Resource::DomainAlias { target: &input.target })?;
    let alias = DomainAlias { name, target: input.target };
    let rev =
        state.directory.update(&Document::DomainAlias(alias.clone()), &expected).await.map_err(key_error("name"))?;
    with_etag(StatusCode::OK, &rev, DomainAliasView::from(&alias))
}

/// Removes a domain alias; needs `If-Match`.
#[utoipa::path(
    delete, path = "/api/v1/domain-aliases/{name}", tag = "domain-aliases",
    params(
        ("name" = String, Path, description = "The alias domain"),
        ("If-Match" = String, Header, description = "The ETag read"),
    ),
    responses((status = 204, description = "Removed"), (status = "4XX", description = "See the error codes", body = ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn remove(
    State(state): State<ApiState>,
    principal: Principal,
    PathParams(name): PathParams<String>,
    mut query: QueryParams,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let name = parse_key("name", &name, DomainName::parse)?;
    let cascade = query.cascade()?;
    query.finish()?;
    let expected = if_match(&headers)?;
    let (current, _) = read(&state, &principal, &name).await?;
    principal.authorize(Action::Write, &Resource::DomainAlias { target: &current.target })?;
    state.directory.remove(&DocKind::DomainAlias.id(&name), Some(&expected), cascade).await?;
    Ok(removed())
}

/// Reads a domain alias the principal may read. Who may read it depends on
/// its target, which only the stored document tells.
async fn read(state: &ApiState, principal: &Principal, name: &DomainName) -> Result<(DomainAlias, Rev), Error> {
    match split(state.directory.get(&DocKind::DomainAlias.id(name)).await?) {
        Some((Document::DomainAlias(alias), rev)) => {
            principal.authorize(Action::Read, &Resource::DomainAlias { target: &alias.target })?;
            Ok((alias, rev))
        }
        _ => Err(Error::NotFound(format!("there is no domain alias `{name}`"))),
    }
}
