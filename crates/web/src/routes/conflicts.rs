//! `/conflicts`: documents whose replicas disagree, and settling them (admin only).
//!
//! With CouchDB replicating between two sites, the same document can be edited at both
//! before either sees the other's edit. Replication keeps both: every replica picks the
//! same winner, and the other revision stays live as a loser until someone chooses.
//! These routes show the administrator each such document with all its live revisions, and
//! let them keep one; the store deletes the others and, when a loser is kept, writes its
//! body on top so every replica ends with the chosen content.
//!
//! They talk to the store directly, not through the directory: the kept revision was
//! already written once, and choosing between stored revisions adds nothing to validate.
//! (A kept revision that breaks a rule spanning documents is skipped by the index like
//! any other invalid document, and shows in its health.)
//! SQLite has no replication, so there it lists nothing and every resolve is a 404.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use couchmail_store::Rev;

use crate::access::{Action, Principal, Resource};
use crate::dto::{ConflictList, ConflictView, ResolveInput, ResolvedView};
use crate::error::ErrorBody;
use crate::extract::{JsonBody, PathParams};
use crate::routes::with_etag;
use crate::{ApiState, Error};

/// Lists every document with replication conflicts, with the winning and losing
/// revisions and their bodies (less password and token hashes).
#[utoipa::path(
    get, path = "/api/v1/conflicts", tag = "conflicts",
    responses(
        (status = 200, body = ConflictList),
        (status = 503, description = "The store is not answering", body = ErrorBody),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(State(state): State<ApiState>, principal: Principal) -> Result<Json<ConflictList>, Error> {
    principal.authorize(Action::Read, &Resource::Conflicts)?;
    let conflicts = state.directory.store().conflicts().await?;
    Ok(Json(ConflictList { items: conflicts.iter().map(ConflictView::from).collect() }))
}

/// Ends the conflict on a document by keeping one of its live revisions; the others are
/// deleted. Answers the document's new revision.
#[utoipa::path(
    post, path = "/api/v1/conflicts/{id}/resolve", tag = "conflicts",
    params(("id" = String, Path, description = "The document's `_id`, as listed (`mailbox:alice@example.com`)")),
    request_body = ResolveInput,
    responses(
        (status = 200, body = ResolvedView, headers(("ETag" = String, description = "The new revision"))),
        (status = 404, description = "The document has no conflict, or `keep` is not one of its live revisions", body = ErrorBody),
        (status = 503, description = "The store is not answering", body = ErrorBody),
        (status = "4XX", description = "See the error codes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn resolve(
    State(state): State<ApiState>,
    principal: Principal,
    PathParams(id): PathParams<String>,
    JsonBody(input): JsonBody<ResolveInput>,
) -> Result<Response, Error> {
    principal.authorize(Action::Write, &Resource::Conflicts)?;
    if input.keep.trim().is_empty() {
        return Err(Error::invalid("keep", "name the revision to keep, as `GET /conflicts` lists it"));
    }
    let rev = state.directory.store().resolve_conflict(&id, &Rev(input.keep)).await?;
    tracing::info!(id, rev = %rev, "replication conflict resolved");
    with_etag(StatusCode::OK, &rev, ResolvedView { id, rev: rev.to_string() })
}
