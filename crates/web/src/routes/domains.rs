//! `/domains`: the mail domains.
//!
//! Creating and removing domains is the admin's; a domain admin reads its
//! domains and may change their `quota_default`, greylisting and spam
//! thresholds, not `active`, `max_mailboxes` or the sending limits
//! (`messages_per_hour`, `recipients_per_hour`), which bound what it can do.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use couchmail_directory::ListFilter;
use couchmail_model::{DocKind, Document, Domain, DomainName};

use crate::access::{Action, Principal, Resource};
use crate::dto::{DomainInput, DomainPage, DomainView};
use crate::error::ErrorBody;
use crate::extract::{JsonBody, PathParams, QueryParams, if_match};
use crate::routes::{
    check_key, check_rev, key_error, list_options, next_after, parse_key, removed, split, start_after, with_etag,
};
use crate::{ApiState, Error};

/// Lists domains: all of them for the admin, its own for a domain admin.
#[utoipa::path(
    get, path = "/api/v1/domains", tag = "domains",
    params(
        ("after" = Option<String>, Query, description = "The last domain of the previous page"),
        ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (default 100)"),
    ),
    responses((status = 200, body = DomainPage), (status = "4XX", description = "See the error codes", body = ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    principal: Principal,
    mut query: QueryParams,
) -> Result<Json<DomainPage>, Error> {
    let page = query.page()?;
    query.finish()?;
    let after = start_after(DocKind::Domain, &page, DomainName::parse)?;
    let mut items = Vec::new();
    if principal.may(Action::Read, &Resource::Installation) {
        let filter = ListFilter { kind: DocKind::Domain, domain: None, owner: None, page: list_options(after, &page) };
        for entry in state.directory.list(&filter).await? {
            if let Document::Domain(domain) = &entry.doc {
                items.push(DomainView::from(domain));
            }
        }
    } else if let Principal::DomainAdmin { domains, .. } = &principal {
        // A domain admin's domains are few: read them one by one.
        for name in domains {
            if items.len() == page.limit {
                break;
            }
            if after.as_ref().is_some_and(|after| DocKind::Domain.id(name) <= *after) {
                continue;
            }
            principal.authorize(Action::Read, &Resource::Domain(name))?;
            if let Some((Document::Domain(domain), _)) = split(state.directory.get(&DocKind::Domain.id(name)).await?) {
                items.push(DomainView::from(&domain));
            }
        }
    } else {
        principal.authorize(Action::Read, &Resource::Installation)?;
    }
    let keys: Vec<String> = items.iter().map(|item| item.name.clone()).collect();
    Ok(Json(DomainPage { next: next_after(&keys, &page), items }))
}

/// Creates a domain (admin only).
#[utoipa::path(
    post, path = "/api/v1/domains", tag = "domains",
    request_body = DomainInput,
    responses(
        (status = 201, body = DomainView, headers(("ETag" = String, description = "The new revision"))),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    principal: Principal,
    JsonBody(input): JsonBody<DomainInput>,
) -> Result<Response, Error> {
    principal.authorize(Action::Write, &Resource::Installation)?;
    let policy = input.policy();
    let Some(name) = input.name else { return Err(Error::invalid("name", "is required")) };
    let domain = Domain {
        name,
        active: input.active,
        quota_default: input.quota_default,
        max_mailboxes: input.max_mailboxes,
        policy,
    };
    let rev = state.directory.create(&Document::Domain(domain.clone())).await.map_err(key_error("name"))?;
    with_etag(StatusCode::CREATED, &rev, DomainView::from(&domain))
}

/// Shows a domain.
#[utoipa::path(
    get, path = "/api/v1/domains/{domain}", tag = "domains",
    params(("domain" = String, Path, description = "The domain")),
    responses(
        (status = 200, body = DomainView, headers(("ETag" = String, description = "The current revision"))),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn show(
    State(state): State<ApiState>,
    principal: Principal,
    PathParams(domain): PathParams<String>,
) -> Result<Response, Error> {
    let name = parse_key("domain", &domain, DomainName::parse)?;
    principal.authorize(Action::Read, &Resource::Domain(&name))?;
    let (domain, rev) = read(&state, &name).await?;
    with_etag(StatusCode::OK, &rev, DomainView::from(&domain))
}

/// Replaces a domain's settings; needs `If-Match`.
#[utoipa::path(
    put, path = "/api/v1/domains/{domain}", tag = "domains",
    params(
        ("domain" = String, Path, description = "The domain"),
        ("If-Match" = String, Header, description = "The ETag read"),
    ),
    request_body = DomainInput,
    responses(
        (status = 200, body = DomainView, headers(("ETag" = String, description = "The new revision"))),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn update(
    State(state): State<ApiState>,
    principal: Principal,
    PathParams(domain): PathParams<String>,
    headers: HeaderMap,
    JsonBody(input): JsonBody<DomainInput>,
) -> Result<Response, Error> {
    let name = parse_key("domain", &domain, DomainName::parse)?;
    check_key("name", input.name.as_ref(), &name)?;
    let expected = if_match(&headers)?;
    principal.authorize(Action::Write, &Resource::Domain(&name))?;
    let (current, rev) = read(&state, &name).await?;
    check_rev(&rev, &expected, format_args!("domain `{name}`"))?;
    let policy = input.policy();
    if input.active != current.active
        || input.max_mailboxes != current.max_mailboxes
        || policy.messages_per_hour != current.policy.messages_per_hour
        || policy.recipients_per_hour != current.policy.recipients_per_hour
    {
        principal.authorize(Action::Write, &Resource::DomainLimits(&name))?;
    }
    let domain = Domain {
        name,
        active: input.active,
        quota_default: input.quota_default,
        max_mailboxes: input.max_mailboxes,
        policy,
    };
    let rev = state.directory.update(&Document::Domain(domain.clone()), &expected).await.map_err(key_error("name"))?;
    with_etag(StatusCode::OK, &rev, DomainView::from(&domain))
}

/// Removes a domain (admin only); refused while mailboxes, aliases or
/// domain aliases hang off it, unless `?cascade=true` removes them too.
#[utoipa::path(
    delete, path = "/api/v1/domains/{domain}", tag = "domains",
    params(
        ("domain" = String, Path, description = "The domain"),
        ("If-Match" = String, Header, description = "The ETag read"),
        ("cascade" = Option<bool>, Query, description = "Remove what hangs off the domain too"),
    ),
    responses((status = 204, description = "Removed"), (status = "4XX", description = "See the error codes", body = ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn remove(
    State(state): State<ApiState>,
    principal: Principal,
    PathParams(domain): PathParams<String>,
    mut query: QueryParams,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let name = parse_key("domain", &domain, DomainName::parse)?;
    let cascade = query.cascade()?;
    query.finish()?;
    let expected = if_match(&headers)?;
    principal.authorize(Action::Write, &Resource::Installation)?;
    state.directory.remove(&DocKind::Domain.id(&name), Some(&expected), cascade).await?;
    Ok(removed())
}

async fn read(state: &ApiState, name: &DomainName) -> Result<(Domain, couchmail_store::Rev), Error> {
    match split(state.directory.get(&DocKind::Domain.id(name)).await?) {
        Some((Document::Domain(domain), rev)) => Ok((domain, rev)),
        _ => Err(Error::NotFound(format!("there is no domain `{name}`"))),
    }
}
