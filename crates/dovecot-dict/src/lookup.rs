//! The narrow interface a dict server answers from: [`DictLookup`] and its error, [`DictError`].

use std::fmt;

/// What the dict server asks of the rest of couchmail: read-only lookups by user and key.
///
/// Implementations answer from memory (couchmail's index snapshot) and must not block:
/// the server calls them directly on its async tasks.
/// A panic inside a call is caught and answered as a failure; the server keeps running.
pub trait DictLookup: Send + Sync + 'static {
    /// The value stored at `key` for `user`, or `None` when there is none.
    ///
    /// `key` is the full dict key as Dovecot sends it, for example `priv/sieve/name/active`.
    /// An `Err` becomes an `F` reply, which Dovecot treats as a temporary failure;
    /// return it whenever the answer is not known (for example before the index is ready),
    /// never `Ok(None)`, which would silently drop a user's filter.
    fn lookup(&self, user: &str, key: &str) -> Result<Option<String>, DictError>;

    /// The `(key, value)` rows below `path` for `user`.
    ///
    /// Without `recurse`, only keys one level below `path` are wanted; with it, every key below.
    /// The server applies the row limit, sorting and the no-value flag itself.
    fn iterate(&self, user: &str, path: &str, recurse: bool) -> Result<Vec<(String, String)>, DictError>;
}

/// A lookup that could not be answered; it is sent to Dovecot as a failure reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DictError {
    message: String,
}

impl DictError {
    /// A failure with a message for Dovecot's log, for example "index not ready".
    pub fn new(message: impl Into<String>) -> DictError {
        DictError { message: message.into() }
    }

    /// The message sent to Dovecot.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for DictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DictError {}
