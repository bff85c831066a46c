//! What the session needs from the rest of couchmail: a narrow trait over accounts and the Sieve script store, so
//! that this crate depends on no store, index or compiler (the binary's adapter does).

use std::fmt;
use std::future::Future;

/// The result of checking a user name and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The password is right and the mailbox and its domain are active; the normalised user name.
    Authenticated(String),
    /// No such user, or the wrong password.
    Failed,
    /// The mailbox or its domain is disabled.
    Disabled,
    /// The answer cannot be known now (the index is not ready): try again later.
    TryLater,
}

/// One script of a user, as `LISTSCRIPTS` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptEntry {
    /// The script's name.
    pub name: String,
    /// Whether it is the active script.
    pub active: bool,
}

/// Why the store did not do what was asked; each kind becomes a `NO` with its response code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// There is no such script (`NONEXISTENT`).
    NonExistent(String),
    /// A script of that name exists already (`ALREADYEXISTS`).
    AlreadyExists(String),
    /// The script is the active one (`ACTIVE`).
    Active(String),
    /// The script does not compile; the compiler's messages, one a line.
    InvalidScript(String),
    /// The request breaks a rule (a script name that is not allowed, say); the message says which.
    Refused(String),
    /// The store or the compiler is not available now (`TRYLATER`).
    TryLater(String),
    /// Anything else; the message is logged, not shown.
    Internal(String),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::NonExistent(message)
            | BackendError::AlreadyExists(message)
            | BackendError::Active(message)
            | BackendError::InvalidScript(message)
            | BackendError::Refused(message)
            | BackendError::TryLater(message)
            | BackendError::Internal(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for BackendError {}

/// Accounts and Sieve scripts, as the session sees them. `user` is always a name [`Backend::authenticate`]
/// returned.
pub trait Backend: Send + Sync + 'static {
    /// Checks `password` for `user` (as the client typed it). Never logs the password.
    fn authenticate(&self, user: &str, password: &str) -> impl Future<Output = AuthOutcome> + Send;

    /// The user's scripts, in name order.
    fn list(&self, user: &str) -> impl Future<Output = Result<Vec<ScriptEntry>, BackendError>> + Send;

    /// The source of one script.
    fn get(&self, user: &str, name: &str) -> impl Future<Output = Result<String, BackendError>> + Send;

    /// Stores a script, replacing one of the same name; it is compiled first and refused if it does not compile.
    fn put(&self, user: &str, name: &str, script: &str) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Compiles a script without storing it.
    fn check(&self, user: &str, script: &str) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Makes `name` the active script, or deactivates every script with `None`.
    fn set_active(&self, user: &str, name: Option<&str>) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Removes a script; the active one is refused with [`BackendError::Active`].
    fn delete(&self, user: &str, name: &str) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Renames a script; an active script stays active under its new name.
    fn rename(&self, user: &str, old: &str, new: &str) -> impl Future<Output = Result<(), BackendError>> + Send;
}
