//! Directory errors, each kind with a clear next step for the user.

use std::fmt;

use couchmail_model::ValidationError;

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The document breaks a rule; the field is named.
    Invalid(ValidationError),
    /// The document does not exist.
    NotFound,
    /// The revision is stale, or the document already exists.
    Conflict,
    /// Other documents depend on this one (removal without cascade), or it
    /// would break a rule that spans documents (a missing domain, a loop).
    Refused,
    /// A stored document does not validate any more.
    Corrupt(ValidationError),
    /// The store is down or not answering: try again later.
    Unavailable,
    /// Anything else: a bug.
    Internal,
}

/// A directory error.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into() }
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

impl From<ValidationError> for Error {
    fn from(err: ValidationError) -> Error {
        Error { message: err.to_string(), kind: ErrorKind::Invalid(err) }
    }
}

impl From<couchmail_store::Error> for Error {
    fn from(err: couchmail_store::Error) -> Error {
        use couchmail_store::ErrorKind as K;
        let kind = match err.kind() {
            K::Conflict => ErrorKind::Conflict,
            K::NotFound => ErrorKind::NotFound,
            K::Unavailable => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
        Error { kind, message: err.to_string() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
