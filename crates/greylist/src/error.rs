//! The error type: what went wrong, with context.

use std::fmt;

/// A configuration that cannot work, or a state file that cannot be opened, read or written.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    context: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A configuration value is out of range, or an allowlist entry cannot be read.
    InvalidConfig,
    /// The state file cannot be created, opened, read or written; the message ends with the cause.
    State,
    /// The state file was written by a newer version with a schema this one does not know.
    NewerSchema,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, context: impl Into<String>) -> Error {
        Error { kind, context: context.into(), source: None }
    }

    pub(crate) fn state(context: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error { kind: ErrorKind::State, context: context.into(), source: Some(Box::new(source)) }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

// The cause is part of the message above, so it is not also returned as a source: a chain printer such as
// anyhow's would print it twice.
impl std::error::Error for Error {}
