//! The crate's I/O error ([`Error`] over [`ErrorKind`]) and the parse error for lines ([`ParseError`]).

use std::fmt;
use std::io;

use crate::request::Command;

/// What went wrong talking to a peer.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// The class of an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The socket failed.
    Io,
    /// The peer sent a line longer than the configured limit.
    LineTooLong,
    /// The peer closed the connection in the middle of a line.
    UnexpectedEof,
    /// The peer sent something the protocol does not allow.
    Protocol,
    /// The server answered a lookup, iteration or commit with a failure (client side only).
    ServerFailure,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into(), source: None }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error { kind: ErrorKind::Io, message: context.into(), source: Some(Box::new(source)) }
    }

    pub(crate) fn protocol(context: impl Into<String>, source: ParseError) -> Error {
        Error { kind: ErrorKind::Protocol, message: context.into(), source: Some(Box::new(source)) }
    }

    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {}", self.message, source),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|source| source as &(dyn std::error::Error + 'static))
    }
}

/// A line that is not a well-formed request or reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    command: Option<Command>,
    kind: ParseErrorKind,
    detail: String,
}

/// The class of a [`ParseError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The line is empty.
    Empty,
    /// The first byte names no command (or, for a reply, no status this command can get).
    UnknownCommand,
    /// Fewer fields than the command needs.
    MissingField,
    /// A field that must be a number is not one.
    BadNumber,
    /// A key, path or user that is not UTF-8.
    NotUtf8,
}

impl ParseError {
    pub(crate) fn new(command: Option<Command>, kind: ParseErrorKind, detail: impl Into<String>) -> ParseError {
        ParseError { command, kind, detail: detail.into() }
    }

    /// The command the line was for, when its first byte named one.
    ///
    /// The server uses this to decide between a failure reply (lookup, iterate) and closing the connection.
    pub fn command(&self) -> Option<Command> {
        self.command
    }

    /// The class of this error.
    pub fn kind(&self) -> ParseErrorKind {
        self.kind
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.command {
            Some(command) => write!(f, "malformed {} line: {}", command.name(), self.detail),
            None => write!(f, "malformed line: {}", self.detail),
        }
    }
}

impl std::error::Error for ParseError {}
