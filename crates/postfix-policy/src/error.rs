//! The error type of the connection, server setup and client: what went wrong, with context.

use std::fmt;
use std::io;

use crate::attributes::SyntaxError;
use crate::request::RequestError;

/// A failure to bind, connect, read or write, or a peer that broke the protocol.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    context: String,
    source: Option<io::Error>,
}

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The operating system refused an operation; [`Error::io_error`] holds the cause.
    Io,
    /// The peer sent bytes that are not an attribute list within the limits.
    Syntax(SyntaxError),
    /// The peer sent an attribute list that is not a policy request.
    Request(RequestError),
    /// A request cannot be sent as it is (see [`PolicyRequest::to_attributes`](crate::PolicyRequest::to_attributes)).
    InvalidRequest(SyntaxError),
    /// A reply has no `action` attribute.
    MissingAction,
    /// The peer sent nothing for the whole idle timeout between requests.
    IdleTimeout,
    /// A request or reply took longer than its timeout to arrive, or the peer did not take our bytes in time.
    Timeout,
    /// The peer closed the connection in the middle of a request, or before answering.
    UnexpectedEof,
    /// Another server is listening on the socket we were asked to bind.
    AddressInUse,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, context: impl Into<String>) -> Error {
        Error { kind, context: context.into(), source: None }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error { kind: ErrorKind::Io, context: context.into(), source: Some(source) }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The operating system's error, for [`ErrorKind::Io`].
    pub fn io_error(&self) -> Option<&io::Error> {
        self.source.as_ref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)?;
        match (&self.kind, &self.source) {
            (_, Some(source)) => write!(f, ": {source}"),
            (ErrorKind::Syntax(error) | ErrorKind::InvalidRequest(error), None) => write!(f, ": {error}"),
            (ErrorKind::Request(error), None) => write!(f, ": {error}"),
            _ => Ok(()),
        }
    }
}

impl From<couchmail_wire_server::Error> for Error {
    fn from(error: couchmail_wire_server::Error) -> Error {
        let kind = if error.is_address_in_use() { ErrorKind::AddressInUse } else { ErrorKind::Io };
        let (context, source) = error.into_parts();
        Error { kind, context, source }
    }
}

// The cause is part of the message above, so it is not also returned as a source: a chain printer such as
// anyhow's would print it twice.
impl std::error::Error for Error {}
