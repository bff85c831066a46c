//! Routes about the service itself: health, the OpenAPI document, whoami.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use crate::access::{Action, Principal, Resource};
use crate::dto::{HealthView, SkippedView, StatusView, WhoamiView};
use crate::error::ErrorBody;
use crate::routes::ApiDoc;
use crate::{ApiState, DaemonView, Error};

/// Whether the service is up and its index ready; no token needed.
#[utoipa::path(
    get, path = "/api/v1/health", tag = "meta",
    responses(
        (status = 200, description = "Ready", body = HealthView),
        (status = 503, description = "The index has not built its first snapshot yet", body = HealthView),
    )
)]
pub(crate) async fn health(State(state): State<ApiState>) -> Response {
    let health = state.index.health();
    let index_ready = health.ready;
    // Counts only: the skipped documents' ids name addresses, which this unauthenticated
    // route must not show.
    let view = HealthView {
        status: if index_ready { "ok" } else { "starting" }.to_owned(),
        index_ready,
        last_seq: health.last_seq.map(|seq| seq.to_string()),
        skipped_documents: health.skipped_total,
        store_error: health.last_store_error.is_some(),
    };
    let status = if index_ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(view)).into_response()
}

/// The index and the store in detail: counts, skipped invalid documents and why, store errors,
/// the checkpoint; and the stack's daemons (state, pid, uptime, restarts) and couchmail's own
/// listeners. For administrators.
#[utoipa::path(
    get, path = "/api/v1/status", tag = "meta",
    responses(
        (status = 200, body = StatusView),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn status(State(state): State<ApiState>, principal: Principal) -> Result<Json<StatusView>, Error> {
    principal.authorize(Action::Read, &Resource::Installation)?;
    let health = state.index.health();
    let (daemons, listeners) = match &state.stack {
        Some(stack) => {
            (stack.daemons().map(|daemons| daemons.iter().map(DaemonView::from).collect()), stack.listeners())
        }
        None => (None, Vec::new()),
    };
    let counts = health.counts;
    let counts = [
        ("domains", counts.domains),
        ("alias_domains", counts.alias_domains),
        ("mailboxes", counts.mailboxes),
        ("aliases", counts.aliases),
        ("sieve_scripts", counts.sieve_scripts),
        ("tokens", counts.tokens),
        ("listings", counts.listings),
        ("invalid_documents", counts.invalid_documents),
    ]
    .into_iter()
    .map(|(name, count)| (name.to_owned(), serde_json::Value::from(count)))
    .collect();
    Ok(Json(StatusView {
        store: state.directory.store().describe(),
        index_ready: health.ready,
        last_seq: health.last_seq.map(|seq| seq.to_string()),
        generation: health.generation,
        counts,
        skipped_total: health.skipped_total,
        recent_skipped: health
            .recent_skipped
            .into_iter()
            .map(|skipped| SkippedView {
                id: skipped.id,
                rev: skipped.rev.to_string(),
                seq: skipped.seq.to_string(),
                reason: skipped.reason,
            })
            .collect(),
        store_errors_total: health.store_errors_total,
        last_store_error: health.last_store_error,
        checkpoint_seq: health.checkpoint_seq.map(|seq| seq.to_string()),
        checkpoint_error: health.checkpoint_error,
        daemons,
        listeners,
    }))
}

/// This document; no token needed.
#[utoipa::path(
    get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
pub(crate) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Who the token acts for.
#[utoipa::path(
    get, path = "/api/v1/whoami", tag = "meta",
    responses(
        (status = 200, body = WhoamiView),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn whoami(principal: Principal) -> Result<Json<WhoamiView>, Error> {
    let view = match &principal {
        Principal::Admin { mailbox } => WhoamiView {
            role: "admin".to_owned(),
            mailbox: mailbox.as_ref().map(ToString::to_string),
            domains: Vec::new(),
        },
        Principal::DomainAdmin { mailbox, domains } => WhoamiView {
            role: "domain-admin".to_owned(),
            mailbox: Some(mailbox.to_string()),
            domains: domains.iter().map(ToString::to_string).collect(),
        },
        Principal::User { mailbox } => {
            WhoamiView { role: "user".to_owned(), mailbox: Some(mailbox.to_string()), domains: Vec::new() }
        }
    };
    Ok(Json(view))
}
