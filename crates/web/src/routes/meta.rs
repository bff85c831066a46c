//! Routes about the service itself: health, the OpenAPI document, whoami.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use crate::access::Principal;
use crate::dto::{HealthView, WhoamiView};
use crate::error::ErrorBody;
use crate::routes::ApiDoc;
use crate::{ApiState, Error};

/// Whether the service is up and its index ready; no token needed.
#[utoipa::path(
    get, path = "/api/v1/health", tag = "meta",
    responses(
        (status = 200, description = "Ready", body = HealthView),
        (status = 503, description = "The index has not built its first snapshot yet", body = HealthView),
    )
)]
pub(crate) async fn health(State(state): State<ApiState>) -> Response {
    let index_ready = state.index.is_ready();
    let view = HealthView {
        status: if index_ready { "ok" } else { "starting" }.to_owned(),
        index_ready,
        last_seq: state.index.last_seq().map(|seq| seq.to_string()),
    };
    let status = if index_ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(view)).into_response()
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
