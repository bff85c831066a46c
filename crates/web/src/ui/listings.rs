//! `/listings`: blocklist and allowlist entries (issue #5), by scope — the
//! global lists (admin), a domain's (its domain admins), a mailbox's (its
//! owner, on `/me`, and its domain admins).
//!
//! Each scope is a [`Resource::Listings`], so the page shows and changes only
//! what the API would let the same mailbox show and change.

use axum::Form;
use axum::extract::{Query, State};
use axum::response::Response;
use couchmail_directory::{Cascade, Entry, ListFilter};
use couchmail_model::{DocKind, Document, Listing, ListingAction, ListingKey, ListingKind, ListingScope, ListingValue};
use couchmail_store::ListOptions;
use minijinja::context;
use serde::{Deserialize, Serialize};

use crate::access::{Action, Principal, Resource};
use crate::ui::forms::{Outcome, after_write, invalid, now_seconds};
use crate::ui::page::{safe_next, ser, url_encode};
use crate::ui::{SessionUser, UiError, UiState, render};

/// Most entries shown for one scope; the rest are reached with `after`.
const PAGE: usize = 200;

/// One entry as the pages show it.
#[derive(Debug, Serialize)]
pub(crate) struct ListingRow {
    key: String,
    action: &'static str,
    kind: &'static str,
    value: String,
    note: String,
}

/// The rows of `entries` that belong to `scope`.
pub(crate) fn listing_rows(entries: &[Entry], scope: &ListingScope) -> Vec<ListingRow> {
    entries
        .iter()
        .filter_map(|entry| match &entry.doc {
            Document::Listing(listing) if &listing.key.scope == scope => Some(ListingRow {
                key: listing.key.to_string(),
                action: listing.key.action.as_str(),
                kind: listing.key.value.kind().as_str(),
                value: listing.key.value.to_string(),
                note: listing.note.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// What the page is asked for.
#[derive(Debug, Deserialize)]
pub(crate) struct ListingQuery {
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

/// `GET /listings?scope=…`: the entries of one scope, global by default for the admin and the
/// first administered domain's for a domain admin.
pub(crate) async fn show(
    State(state): State<UiState>,
    user: SessionUser,
    Query(query): Query<ListingQuery>,
) -> Result<Response, UiError> {
    let scope = match query.scope.as_deref().filter(|text| !text.is_empty()) {
        Some(text) => text.parse::<ListingScope>().map_err(|err| invalid("scope", err.message))?,
        None => match &user.principal {
            Principal::Admin { .. } => ListingScope::Global,
            Principal::DomainAdmin { domains, .. } => match domains.first() {
                Some(domain) => ListingScope::Domain(domain.clone()),
                None => ListingScope::Mailbox(user.mailbox.clone()),
            },
            Principal::User { .. } => ListingScope::Mailbox(user.mailbox.clone()),
        },
    };
    user.principal.authorize(Action::Read, &Resource::Listings(&scope))?;
    let (domain, owner) = match &scope {
        ListingScope::Global => (None, None),
        ListingScope::Domain(domain) => (Some(domain.clone()), None),
        ListingScope::Mailbox(owner) => (None, Some(owner.clone())),
    };
    let start_after = match query.after.as_deref().filter(|text| !text.is_empty()) {
        Some(after) => {
            let key = ListingKey::parse(after).map_err(|err| invalid("after", err.message))?;
            Some(DocKind::Listing.id(key))
        }
        None => None,
    };
    let filter =
        ListFilter { kind: DocKind::Listing, domain, owner, page: ListOptions { start_after, limit: Some(PAGE) } };
    let entries = state.api.directory.list(&filter).await?;
    let full_page = entries.len() == PAGE;
    let rows = listing_rows(&entries, &scope);
    let next = match (full_page, entries.last()) {
        (true, Some(last)) => {
            let key = last.doc.id();
            let key = key.strip_prefix(&DocKind::Listing.id_prefix()).unwrap_or(&key).to_owned();
            Some(format!("/listings?scope={}&after={}", url_encode(&scope.to_string()), url_encode(&key)))
        }
        _ => None,
    };
    let scopes = scope_choices(&user.principal);
    Ok(render(
        Some(&user),
        "listings.html",
        context! {
            title => "Block and allow lists",
            nav => "listings",
            scope => scope.to_string(),
            scopes => scopes,
            listings => ser(&rows),
            next => next,
            back => format!("/listings?scope={}", url_encode(&scope.to_string())),
        },
    ))
}

/// The scopes a principal can pick on the page.
fn scope_choices(principal: &Principal) -> Vec<String> {
    match principal {
        Principal::Admin { .. } => vec!["global".to_owned()],
        Principal::DomainAdmin { domains, .. } => domains.iter().map(|domain| format!("domain:{domain}")).collect(),
        Principal::User { mailbox } => vec![format!("mailbox:{mailbox}")],
    }
}

/// A new entry.
#[derive(Deserialize)]
pub(crate) struct AddForm {
    scope: String,
    action: String,
    kind: String,
    value: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    back: Option<String>,
}

/// `POST /listings`: adds an entry to a scope.
pub(crate) async fn add(
    State(state): State<UiState>,
    user: SessionUser,
    Form(form): Form<AddForm>,
) -> Result<Response, UiError> {
    let back = safe_next(form.back.as_deref());
    let outcome: Outcome = async {
        let scope: ListingScope =
            form.scope.parse().map_err(|err: couchmail_model::ValidationError| invalid("scope", err.message))?;
        user.principal.authorize(Action::Write, &Resource::Listings(&scope))?;
        let action: ListingAction =
            form.action.parse().map_err(|err: couchmail_model::ValidationError| invalid("action", err.message))?;
        let kind: ListingKind =
            form.kind.parse().map_err(|err: couchmail_model::ValidationError| invalid("kind", err.message))?;
        let value = ListingValue::parse(kind, form.value.trim()).map_err(|err| invalid("value", err.message))?;
        let listing = Listing {
            key: ListingKey { scope, action, value },
            note: form.note.trim().to_owned(),
            created: Some(now_seconds()),
        };
        let id = DocKind::Listing.id(&listing.key);
        state.api.directory.create(&Document::Listing(listing.clone())).await?;
        state.wait_for_index(|snapshot| snapshot.listing(id.trim_start_matches("listing:")).is_some()).await;
        Ok(format!("Added: {} {} `{}`.", listing.key.action.as_str(), kind.as_str(), listing.key.value))
    }
    .await;
    after_write(&state, &user, outcome, &back)
}

/// An entry to remove.
#[derive(Deserialize)]
pub(crate) struct RemoveForm {
    key: String,
    #[serde(default)]
    back: Option<String>,
}

/// `POST /listings/remove`: removes an entry.
pub(crate) async fn remove(
    State(state): State<UiState>,
    user: SessionUser,
    Form(form): Form<RemoveForm>,
) -> Result<Response, UiError> {
    let back = safe_next(form.back.as_deref());
    let outcome: Outcome = async {
        let key = ListingKey::parse(&form.key).map_err(|err| invalid("key", err.message))?;
        user.principal.authorize(Action::Write, &Resource::Listings(&key.scope))?;
        state.api.directory.remove(&DocKind::Listing.id(&key), None, Cascade::Refuse).await?;
        Ok(format!("Removed `{}`.", key.value))
    }
    .await;
    after_write(&state, &user, outcome, &back)
}
