//! The API's one error type: every failure a handler can meet, each with a
//! stable code, an HTTP status and a JSON body.
//!
//! The body is always `{"error": {"code": …, "message": …, "field": …}}`.
//! Codes are part of the API contract: clients branch on them, so they never
//! change meaning. Internal causes (a bug, a corrupt stored document, a store
//! answering nonsense) are logged here and never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use couchmail_directory::ErrorKind as DirectoryErrorKind;
use couchmail_model::ValidationError;
use serde::Serialize;
use utoipa::ToSchema;

/// Seconds a client is asked to wait before retrying when the store is down.
const RETRY_AFTER_SECONDS: &str = "1";

/// What went wrong with a request.
#[derive(Debug)]
pub enum Error {
    /// 400 `invalid`: the request is malformed or breaks a rule of one document.
    Invalid {
        /// What is wrong.
        message: String,
        /// The JSON field, path segment, query parameter or header at fault, when there is one.
        field: Option<String>,
    },
    /// 401 `unauthenticated`: no usable bearer token.
    Unauthenticated(String),
    /// 403 `forbidden`: the token is valid but its principal may not do this.
    Forbidden(String),
    /// 404 `not_found`: no such resource (or route).
    NotFound(String),
    /// 405 `method_not_allowed`: the route exists, the method does not.
    MethodNotAllowed,
    /// 409 `conflict`: the `If-Match` revision is stale, or the resource already exists.
    Conflict(String),
    /// 409 `refused`: other documents depend on this one, or the change breaks a rule spanning documents.
    Refused(String),
    /// 413 `payload_too_large`: the body is over the limit.
    PayloadTooLarge(usize),
    /// 415 `unsupported_media_type`: a body that is not `application/json`.
    UnsupportedMediaType,
    /// 428 `precondition_required`: a change without `If-Match`.
    PreconditionRequired,
    /// 503 `unavailable`: the store is down; the client should retry.
    Unavailable,
    /// 500 `internal`: a bug or corrupt data; the cause is logged, never sent.
    Internal(String),
}

impl Error {
    /// A 400 naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
        let field = field.into();
        Error::Invalid { message: message.into(), field: (!field.is_empty()).then_some(field) }
    }

    /// The stable code clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Invalid { .. } => "invalid",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::MethodNotAllowed => "method_not_allowed",
            Error::Conflict(_) => "conflict",
            Error::Refused(_) => "refused",
            Error::PayloadTooLarge(_) => "payload_too_large",
            Error::UnsupportedMediaType => "unsupported_media_type",
            Error::PreconditionRequired => "precondition_required",
            Error::Unavailable => "unavailable",
            Error::Internal(_) => "internal",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Invalid { .. } => StatusCode::BAD_REQUEST,
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::Conflict(_) | Error::Refused(_) => StatusCode::CONFLICT,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            Error::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message sent to the client.
    pub(crate) fn public_message(&self) -> String {
        match self {
            Error::Invalid { message, .. }
            | Error::Unauthenticated(message)
            | Error::Forbidden(message)
            | Error::NotFound(message)
            | Error::Conflict(message)
            | Error::Refused(message) => message.clone(),
            Error::MethodNotAllowed => "this route does not take that method".to_owned(),
            Error::PayloadTooLarge(limit) => format!("the request body is larger than {limit} bytes"),
            Error::UnsupportedMediaType => "send the body as `Content-Type: application/json`".to_owned(),
            Error::PreconditionRequired => {
                "send `If-Match` with the resource's ETag (read it first) so concurrent edits cannot be lost".to_owned()
            }
            Error::Unavailable => "the store is not answering; retry shortly".to_owned(),
            Error::Internal(_) => "internal error; the server log has the details".to_owned(),
        }
    }
}

impl From<ValidationError> for Error {
    fn from(err: ValidationError) -> Error {
        Error::invalid(err.field, err.message)
    }
}

impl From<couchmail_directory::Error> for Error {
    fn from(err: couchmail_directory::Error) -> Error {
        match err.kind() {
            DirectoryErrorKind::Invalid(validation) => Error::from(validation.clone()),
            DirectoryErrorKind::NotFound => Error::NotFound(err.to_string()),
            DirectoryErrorKind::Conflict => Error::Conflict(err.to_string()),
            DirectoryErrorKind::Refused => Error::Refused(err.to_string()),
            DirectoryErrorKind::Unavailable => {
                tracing::warn!(cause = %err, "store unavailable");
                Error::Unavailable
            }
            // Corrupt stored data and anything unforeseen are the operator's
            // business, not the client's: log the cause, send a generic 500.
            _ => Error::Internal(err.to_string()),
        }
    }
}

impl From<couchmail_store::Error> for Error {
    /// For the few routes that talk to the store directly (replication conflicts), mapped as
    /// the directory maps the same kinds.
    fn from(err: couchmail_store::Error) -> Error {
        use couchmail_store::ErrorKind as StoreErrorKind;
        match err.kind() {
            StoreErrorKind::NotFound => Error::NotFound(err.to_string()),
            StoreErrorKind::Conflict => Error::Conflict(err.to_string()),
            StoreErrorKind::BadRequest => Error::invalid("", err.to_string()),
            StoreErrorKind::Unavailable => {
                tracing::warn!(cause = %err, "store unavailable");
                Error::Unavailable
            }
            _ => Error::Internal(err.to_string()),
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong, for programs (`code`, `field`) and people (`message`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code: `invalid`, `unauthenticated`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `conflict`, `refused`, `payload_too_large`, `unsupported_media_type`,
    /// `precondition_required`, `unavailable`, `internal`.
    pub code: String,
    /// What went wrong and what to do about it.
    pub message: String,
    /// The field at fault (`targets[1]`, `address`, `If-Match`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Internal(cause) = &self {
            tracing::error!(%cause, "internal error answering a request");
        }
        let field = match &self {
            Error::Invalid { field, .. } => field.clone(),
            _ => None,
        };
        let body =
            ErrorBody { error: ErrorDetail { code: self.code().to_owned(), message: self.public_message(), field } };
        let mut response = (self.status(), Json(body)).into_response();
        match self {
            Error::Unauthenticated(_) => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Error::Unavailable => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use couchmail_directory::ErrorKind;

    use super::*;

    #[test]
    fn directory_errors_map_to_stable_codes() {
        let check = |kind: ErrorKind, code: &str, status: u16| {
            let err = Error::from(couchmail_directory::Error::new(kind, "x"));
            assert_eq!((err.code(), err.status().as_u16()), (code, status));
        };
        check(ErrorKind::Invalid(ValidationError::field("targets[1]", "bad")), "invalid", 400);
        check(ErrorKind::NotFound, "not_found", 404);
        check(ErrorKind::Conflict, "conflict", 409);
        check(ErrorKind::Refused, "refused", 409);
        check(ErrorKind::Corrupt(ValidationError::new("bad")), "internal", 500);
        check(ErrorKind::Unavailable, "unavailable", 503);
        check(ErrorKind::Internal, "internal", 500);
    }

    #[test]
    fn store_errors_map_like_directory_errors() {
        use couchmail_store::ErrorKind;
        let check = |kind: ErrorKind, code: &str, status: u16| {
            let err = Error::from(couchmail_store::Error::new(kind, "x"));
            assert_eq!((err.code(), err.status().as_u16()), (code, status));
        };
        check(ErrorKind::NotFound, "not_found", 404);
        check(ErrorKind::Conflict, "conflict", 409);
        check(ErrorKind::BadRequest, "invalid", 400);
        check(ErrorKind::Unavailable, "unavailable", 503);
        check(ErrorKind::Internal, "internal", 500);
        let unavailable = Error::from(couchmail_store::Error::new(ErrorKind::Unavailable, "http://user:pw@couch/"));
        assert!(!unavailable.public_message().contains("pw@"), "the cause is logged, not sent");
    }

    #[test]
    fn invalid_keeps_the_field() {
        let err = Error::from(couchmail_directory::Error::from(ValidationError::field("targets[1]", "bad")));
        assert!(matches!(err, Error::Invalid { field: Some(f), .. } if f == "targets[1]"));
    }

    #[test]
    fn internal_causes_are_not_sent() {
        let err = Error::Internal("secret path /var/lib/x".to_owned());
        assert!(!err.public_message().contains("secret"));
    }
}
