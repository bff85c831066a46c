//! `/mailboxes`: mailboxes, which are also logins, and their passwords.
//!
//! A mailbox's owner may read it and change its display name, password,
//! active Sieve script, greylisting choice and spam thresholds; `active`,
//! `quota_bytes`, the sending limits and `roles` are its domain admins' (and
//! granting `admin` is the admin's alone). Password hashes are
//! never shown: a mailbox answers `has_password`.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use couchmail_directory::ListFilter;
use couchmail_model::{Address, DocKind, Document, Mailbox, Password, PasswordHash, Role};
use couchmail_store::Rev;

use crate::access::{Action, Principal, Resource};
use crate::dto::{MailboxInput, MailboxPage, MailboxView, PasswordInput};
use crate::error::ErrorBody;
use crate::extract::{JsonBody, PathParams, QueryParams, if_match};
use crate::routes::{
    check_key, check_rev, key_error, list_options, list_scope, next_after, parse_key, removed, split, start_after,
    with_etag,
};
use crate::{ApiState, Error};

/// Lists mailboxes, of one domain with `?domain=`.
#[utoipa::path(
    get, path = "/api/v1/mailboxes", tag = "mailboxes",
    params(
        ("domain" = Option<String>, Query, description = "Only this domain's mailboxes (required for a domain admin of several domains)"),
        ("after" = Option<String>, Query, description = "The last address of the previous page"),
        ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (default 100)"),
    ),
    responses((status = 200, body = MailboxPage), (status = "4XX", description = "See the error codes", body = ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    principal: Principal,
    mut query: QueryParams,
) -> Result<Json<MailboxPage>, Error> {
    let domain = query.take("domain")?;
    let page = query.page()?;
    query.finish()?;
    let domain = list_scope(&principal, domain)?;
    let after = start_after(DocKind::Mailbox, &page, Address::parse)?;
    let filter = ListFilter { kind: DocKind::Mailbox, domain, owner: None, page: list_options(after, &page) };
    let mut items = Vec::new();
    for entry in state.directory.list(&filter).await? {
        if let Document::Mailbox(mailbox) = &entry.doc {
            principal.authorize(Action::Read, &Resource::Mailbox(&mailbox.address))?;
            items.push(MailboxView::from(mailbox));
        }
    }
    let keys: Vec<String> = items.iter().map(|item| item.address.clone()).collect();
    Ok(Json(MailboxPage { next: next_after(&keys, &page), items }))
}

/// Creates a mailbox, with a first password if one is given.
#[utoipa::path(
    post, path = "/api/v1/mailboxes", tag = "mailboxes",
    request_body = MailboxInput,
    responses(
        (status = 201, body = MailboxView, headers(("ETag" = String, description = "The new revision"))),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    principal: Principal,
    JsonBody(input): JsonBody<MailboxInput>,
) -> Result<Response, Error> {
    let Some(address) = input.address.clone() else { return Err(Error::invalid("address", "is required")) };
    let policy = input.policy();
    principal.authorize(Action::Write, &Resource::DomainContents(address.domain()))?;
    for role in &input.roles {
        principal.authorize(Action::Write, &Resource::Role(role))?;
    }
    let password = match input.password {
        Some(plain) => Some(hash(Password::new(plain).map_err(|err| Error::invalid("password", err.message))?).await?),
        None => None,
    };
    if input.sieve_active.is_some() {
        return Err(Error::invalid("sieve_active", "a new mailbox has no Sieve scripts yet; upload one first"));
    }
    let mailbox = Mailbox {
        address,
        name: input.name,
        password,
        active: input.active,
        quota_bytes: input.quota_bytes,
        roles: input.roles,
        sieve_active: None,
        policy,
    };
    let rev = state.directory.create(&Document::Mailbox(mailbox.clone())).await.map_err(key_error("address"))?;
    with_etag(StatusCode::CREATED, &rev, MailboxView::from(&mailbox))
}

/// Shows a mailbox (never its password hash).
#[utoipa::path(
    get, path = "/api/v1/mailboxes/{address}", tag = "mailboxes",
    params(("address" = String, Path, description = "The address")),
    responses(
        (status = 200, body = MailboxView, headers(("ETag" = String, description = "The current revision"))),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn show(
    State(state): State<ApiState>,
    principal: Principal,
    PathParams(address): PathParams<String>,
) -> Result<Response, Error> {
    let address = parse_key("address", &address, Address::parse)?;
    principal.authorize(Action::Read, &Resource::Mailbox(&address))?;
    let (mailbox, rev) = read(&state, &address).await?;
    with_etag(StatusCode::OK, &rev, MailboxView::from(&mailbox))
}

/// Replaces a mailbox's settings (its password stays); needs `If-Match`.
#[utoipa::path(
    put, path = "/api/v1/mailboxes/{address}", tag = "mailboxes",
    params(
        ("address" = String, Path, description = "The address"),
        ("If-Match" = String, Header, description = "The ETag read"),
    ),
    request_body = MailboxInput,
    responses(
        (status = 200, body = MailboxView, headers(("ETag" = String, description = "The new revision"))),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn update(
    State(state): State<ApiState>,
    principal: Principal,
    PathParams(address): PathParams<String>,
    headers: HeaderMap,
    JsonBody(input): JsonBody<MailboxInput>,
) -> Result<Response, Error> {
    let address = parse_key("address", &address, Address::parse)?;
    check_key("address", input.address.as_ref(), &address)?;
    if input.password.is_some() {
        return Err(Error::invalid("password", "set it with PUT /api/v1/mailboxes/{address}/password"));
    }
    let expected = if_match(&headers)?;
    principal.authorize(Action::Write, &Resource::Mailbox(&address))?;
    let (current, rev) = read(&state, &address).await?;
    check_rev(&rev, &expected, format_args!("mailbox `{address}`"))?;
    principal.authorize(Action::Write, &Resource::Account { address: &address, roles: &current.roles })?;
    let policy = input.policy();
    if input.active != current.active
        || input.quota_bytes != current.quota_bytes
        || policy.messages_per_hour != current.policy.messages_per_hour
        || policy.recipients_per_hour != current.policy.recipients_per_hour
    {
        principal.authorize(Action::Write, &Resource::MailboxLimits(&address))?;
    }
    let before: BTreeSet<&Role> = current.roles.iter().collect();
    let after: BTreeSet<&Role> = input.roles.iter().collect();
    for role in before.symmetric_difference(&after) {
        principal.authorize(Action::Write, &Resource::Role(role))?;
    }
    let mailbox = Mailbox {
        address,
        name: input.name,
        password: current.password,
        active: input.active,
        quota_bytes: input.quota_bytes,
        roles: input.roles,
        sieve_active: input.sieve_active,
        policy,
    };
    let rev =
        state.directory.update(&Document::Mailbox(mailbox.clone()), &expected).await.map_err(key_error("address"))?;
    with_etag(StatusCode::OK, &rev, MailboxView::from(&mailbox))
}

/// Sets a mailbox's password; needs the mailbox's `If-Match`. Answers the mailbox.
#[utoipa::path(
    put, path = "/api/v1/mailboxes/{address}/password", tag = "mailboxes",
    params(
        ("address" = String, Path, description = "The address"),
        ("If-Match" = String, Header, description = "The mailbox's ETag"),
    ),
    request_body = PasswordInput,
    responses(
        (status = 200, body = MailboxView, headers(("ETag" = String, description = "The mailbox's new revision"))),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn set_password(
    State(state): State<ApiState>,
    principal: Principal,
    PathParams(address): PathParams<String>,
    headers: HeaderMap,
    JsonBody(input): JsonBody<PasswordInput>,
) -> Result<Response, Error> {
    let address = parse_key("address", &address, Address::parse)?;
    let password = Password::new(input.password).map_err(|err| Error::invalid("password", err.message))?;
    let expected = if_match(&headers)?;
    principal.authorize(Action::Write, &Resource::Mailbox(&address))?;
    let (mut mailbox, rev) = read(&state, &address).await?;
    check_rev(&rev, &expected, format_args!("mailbox `{address}`"))?;
    principal.authorize(Action::Write, &Resource::Account { address: &address, roles: &mailbox.roles })?;
    mailbox.password = Some(hash(password).await?);
    let rev = state.directory.update(&Document::Mailbox(mailbox.clone()), &expected).await?;
    with_etag(StatusCode::OK, &rev, MailboxView::from(&mailbox))
}

/// Removes a mailbox (its domain's admins only); its Sieve scripts and
/// tokens go with it, and it is taken out of aliases, which is refused
/// unless `?cascade=true`.
#[utoipa::path(
    delete, path = "/api/v1/mailboxes/{address}", tag = "mailboxes",
    params(
        ("address" = String, Path, description = "The address"),
        ("If-Match" = String, Header, description = "The ETag read"),
        ("cascade" = Option<bool>, Query, description = "Remove what hangs off the mailbox too"),
    ),
    responses((status = 204, description = "Removed"), (status = "4XX", description = "See the error codes", body = ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn remove(
    State(state): State<ApiState>,
    principal: Principal,
    PathParams(address): PathParams<String>,
    mut query: QueryParams,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let address = parse_key("address", &address, Address::parse)?;
    let cascade = query.cascade()?;
    query.finish()?;
    let expected = if_match(&headers)?;
    principal.authorize(Action::Write, &Resource::DomainContents(address.domain()))?;
    let (current, _) = read(&state, &address).await?;
    principal.authorize(Action::Write, &Resource::Account { address: &address, roles: &current.roles })?;
    state.directory.remove(&DocKind::Mailbox.id(&address), Some(&expected), cascade).await?;
    Ok(removed())
}

pub(crate) async fn read(state: &ApiState, address: &Address) -> Result<(Mailbox, Rev), Error> {
    match split(state.directory.get(&DocKind::Mailbox.id(address)).await?) {
        Some((Document::Mailbox(mailbox), rev)) => Ok((mailbox, rev)),
        _ => Err(Error::NotFound(format!("there is no mailbox `{address}`"))),
    }
}

/// Refuses changes to what a mailbox owns (its Sieve scripts) unless the
/// principal has authority over the mailbox's roles too.
pub(crate) async fn authorize_owner(state: &ApiState, principal: &Principal, owner: &Address) -> Result<(), Error> {
    principal.authorize(Action::Write, &Resource::Sieve(owner))?;
    if let Some((Document::Mailbox(mailbox), _)) = split(state.directory.get(&DocKind::Mailbox.id(owner)).await?) {
        principal.authorize(Action::Write, &Resource::Account { address: owner, roles: &mailbox.roles })?;
    }
    Ok(())
}

/// Hashes off the async threads: argon2id takes tens of milliseconds by design.
async fn hash(password: Password) -> Result<PasswordHash, Error> {
    tokio::task::spawn_blocking(move || PasswordHash::new(&password))
        .await
        .map_err(|err| Error::Internal(format!("password hashing task failed: {err}")))
}
