//! The errors of this crate: a [`Stack`](crate::Stack) value the configuration files cannot carry, and a failed write.

use std::fmt;
use std::path::PathBuf;

/// A field of the [`Stack`](crate::Stack) that cannot be rendered safely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    field: String,
    kind: ErrorKind,
}

impl Error {
    pub(crate) fn new(field: impl Into<String>, kind: ErrorKind) -> Error {
        Error { field: field.into(), kind }
    }

    /// The field at fault, as a path into the `Stack` (`paths.tls_key`, `auth_endpoint.secret`).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.kind)
    }
}

impl std::error::Error for Error {}

/// Why a field cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The value is empty.
    Empty,
    /// A path is relative; the daemons resolve relative paths against directories of their own.
    NotAbsolute,
    /// The value holds a character that Postfix or Dovecot would read as syntax (a separator, `$`, `%`, a newline).
    UnsafeCharacter(char),
    /// The value is not a host name (letters, digits, hyphens and dots, at most 253 characters).
    InvalidHostname,
    /// The value is not an address of the form `local@host`.
    InvalidAddress,
    /// The auth endpoint is not `http://<IP literal>:<port>[/path]`.
    InvalidUrl,
    /// A port is 0.
    ZeroPort,
    /// Two services share this port.
    DuplicatePort(u16),
    /// The id is 0: mail must never be stored as root.
    RootId,
    /// A number is 0 where it must be positive.
    Zero,
    /// The path must lie inside another one, named here.
    NotInside(&'static str),
    /// `0.0.0.0` or `::` binds one address family while reading as "everywhere": use `Listen::AllInterfaces`.
    UnspecifiedAddress,
    /// The value must be greater than the field named here.
    NotAbove(&'static str),
    /// The number is larger than the limit given here.
    TooLarge(u64),
    /// Not a user or group name (letters, digits, `-` and `_`).
    InvalidName,
    /// The score must be a whole number.
    NotWhole,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Empty => f.write_str("must not be empty"),
            ErrorKind::NotAbsolute => f.write_str("path must be absolute"),
            ErrorKind::UnsafeCharacter(character) => {
                write!(f, "character {character:?} cannot be written into Postfix or Dovecot configuration")
            }
            ErrorKind::InvalidHostname => f.write_str("not a host name"),
            ErrorKind::InvalidAddress => f.write_str("not an address of the form local@host"),
            ErrorKind::InvalidUrl => f.write_str("must be http://<IP literal>:<port> with an optional path"),
            ErrorKind::ZeroPort => f.write_str("port must not be 0"),
            ErrorKind::DuplicatePort(port) => write!(f, "port {port} is used by another service"),
            ErrorKind::RootId => f.write_str("must not be 0 (root)"),
            ErrorKind::Zero => f.write_str("must be greater than 0"),
            ErrorKind::NotInside(other) => write!(f, "must lie inside {other}"),
            ErrorKind::UnspecifiedAddress => {
                f.write_str("an unspecified address binds one family only: listen on all interfaces instead")
            }
            ErrorKind::NotAbove(other) => write!(f, "must be greater than {other}"),
            ErrorKind::TooLarge(limit) => write!(f, "must be at most {limit}"),
            ErrorKind::InvalidName => f.write_str("not a user or group name (letters, digits, - and _)"),
            ErrorKind::NotWhole => f.write_str("must be a whole number (spamass-milter compares whole points)"),
        }
    }
}

/// Writing the rendered files failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {path}")]
pub struct WriteError {
    pub(crate) action: &'static str,
    pub(crate) path: PathBuf,
    #[source]
    pub(crate) source: std::io::Error,
}
