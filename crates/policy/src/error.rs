//! The crate's error: what failed while opening the policy service's state.

use std::fmt;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A setting is out of range or settings contradict each other; the message names it.
    InvalidConfig,
    /// The greylisting state could not be opened.
    Greylist,
    /// The rate-limit state file could not be created, opened or read.
    RateLimitState,
}

/// An error opening the policy service.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into(), source: None }
    }

    pub(crate) fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error { kind, message: message.into(), source: Some(Box::new(source)) }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {source}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|source| source as &(dyn std::error::Error + 'static))
    }
}

impl From<couchmail_greylist::Error> for Error {
    fn from(error: couchmail_greylist::Error) -> Error {
        let kind = match error.kind() {
            couchmail_greylist::ErrorKind::InvalidConfig => ErrorKind::InvalidConfig,
            _ => ErrorKind::Greylist,
        };
        Error::with_source(kind, "cannot open greylisting", error)
    }
}
