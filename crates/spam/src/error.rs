//! The errors of this crate: what was being done, and what went wrong.

use std::fmt;

/// A failed step, with what was being done (`preparing /var/lib/couchmail/spamassassin`).
#[derive(Debug)]
pub struct Error {
    action: String,
    kind: ErrorKind,
}

impl Error {
    pub(crate) fn new(action: impl Into<String>, kind: ErrorKind) -> Error {
        Error { action: action.into(), kind }
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.action, self.kind)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Io(err) => Some(err),
            _ => None,
        }
    }
}

/// The kinds of [`Error`].
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A file, directory or socket operation failed.
    Io(std::io::Error),
    /// spamd did not answer in time.
    Timeout,
    /// spamd answered something that is not the SPAMC protocol.
    Protocol(String),
    /// spamd answered with an error status (`SPAMD/1.5 76 Bad header line`).
    Spamd {
        /// The status code (sysexits values: 0 is success).
        code: u32,
        /// The text after the code.
        message: String,
    },
    /// A global Sieve script did not compile, or sievec could not run.
    Sieve(String),
    /// A system account the stack needs does not exist (a package is missing).
    MissingAccount(String),
    /// spamd's site configuration cannot be put together (SpamAssassin is not installed).
    MissingSiteFiles(String),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Io(err) => write!(f, "{err}"),
            ErrorKind::Timeout => f.write_str("spamd did not answer in time"),
            ErrorKind::Protocol(what) => write!(f, "spamd's answer is not SPAMC: {what}"),
            ErrorKind::Spamd { code, message } => write!(f, "spamd answered {code} {message}"),
            ErrorKind::Sieve(what) => write!(f, "{what}"),
            ErrorKind::MissingAccount(name) => {
                write!(f, "there is no account {name} (install Debian's spamass-milter and postfix)")
            }
            ErrorKind::MissingSiteFiles(what) => write!(f, "{what} (install Debian's spamassassin)"),
        }
    }
}
