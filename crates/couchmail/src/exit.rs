//! The one place that turns an error into an exit code and a hint
//! (STYLE.md rule 20).
//!
//! Commands return `anyhow::Error`s. [`classify`] looks down each error's
//! chain for the first cause it knows — a [`Failure`] a command raised on
//! purpose, a directory, store or validation error — and answers the exit
//! code documented in `couchmail --help` and docs/cli.md, plus a `hint:`
//! line with the next step.

use std::fmt;
use std::process::ExitCode;

use couchmail_model::ValidationError;

/// The documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Ok = 0,
    /// 1: anything not listed below.
    Other = 1,
    /// 2: wrong arguments or configuration.
    Usage = 2,
    /// 3: the thing named does not exist.
    NotFound = 3,
    /// 4: changed by someone else meanwhile, or already exists.
    Conflict = 4,
    /// 5: input that breaks a rule.
    Invalid = 5,
    /// 6: the store cannot be reached.
    Unavailable = 6,
    /// 7: other documents depend on it, or a rule between documents forbids it.
    Refused = 7,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// An error a command raises on purpose, with its exit code and next step.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub exit: Exit,
    /// What went wrong, lower case.
    pub message: String,
    /// What to do next.
    pub hint: Option<String>,
}

impl Failure {
    /// A failure with `exit` and `message`, without a hint yet.
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure { exit, message: message.into(), hint: None }
    }

    /// Adds the next step.
    pub fn hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The exit code and hint for `err`.
pub fn classify(err: &anyhow::Error) -> (Exit, Option<String>) {
    for cause in err.chain() {
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            return (failure.exit, failure.hint.clone());
        }
        if let Some(err) = cause.downcast_ref::<couchmail_directory::Error>() {
            return classify_directory(err.kind());
        }
        if let Some(err) = cause.downcast_ref::<couchmail_store::Error>() {
            return classify_store(err.kind());
        }
        if let Some(err) = cause.downcast_ref::<ValidationError>() {
            return (Exit::Invalid, Some(invalid_hint(err)));
        }
        if cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) {
            // The reader went away (`couchmail domain list | head`): nothing to report.
            return (Exit::Ok, None);
        }
    }
    (Exit::Other, None)
}

fn classify_directory(kind: &couchmail_directory::ErrorKind) -> (Exit, Option<String>) {
    use couchmail_directory::ErrorKind as K;
    match kind {
        K::Invalid(err) => (Exit::Invalid, Some(invalid_hint(err))),
        K::NotFound => (Exit::NotFound, Some("check the spelling; the `list` action shows what exists".into())),
        K::Conflict => (Exit::Conflict, Some(CONFLICT_HINT.into())),
        K::Refused => (
            Exit::Refused,
            Some(
                "remove or change what the message names first; a removal with --cascade takes its dependents along"
                    .into(),
            ),
        ),
        K::Corrupt(err) => (
            Exit::Other,
            Some(format!(
                "a stored document is broken ({err}): fix or remove it in the store, then run the command again"
            )),
        ),
        K::Unavailable => (Exit::Unavailable, Some(UNAVAILABLE_HINT.into())),
        _ => (Exit::Other, Some(BUG_HINT.into())),
    }
}

fn classify_store(kind: couchmail_store::ErrorKind) -> (Exit, Option<String>) {
    use couchmail_store::ErrorKind as K;
    match kind {
        K::Conflict => (Exit::Conflict, Some(CONFLICT_HINT.into())),
        K::NotFound => (Exit::NotFound, Some("check the spelling; the `list` action shows what exists".into())),
        K::Unavailable => (Exit::Unavailable, Some(UNAVAILABLE_HINT.into())),
        _ => (Exit::Other, Some(BUG_HINT.into())),
    }
}

fn invalid_hint(err: &ValidationError) -> String {
    if err.field.is_empty() {
        "correct the value and run the command again".into()
    } else {
        format!("correct `{}` and run the command again", err.field)
    }
}

/// What to do after a conflict.
pub const CONFLICT_HINT: &str = "it was changed by someone else meanwhile; run the command again";
const UNAVAILABLE_HINT: &str = "check that the store named by `store` in the configuration (or COUCHMAIL_STORE) exists and is readable, then try again";
const BUG_HINT: &str = "this is a bug in couchmail; run again with RUST_LOG=debug and report what it prints";

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    fn exit_of(err: anyhow::Error) -> Exit {
        classify(&err).0
    }

    #[test]
    fn failures_keep_their_code_and_hint() {
        let err = anyhow::Error::new(Failure::new(Exit::NotFound, "no such domain").hint("list them"));
        assert_eq!(classify(&err), (Exit::NotFound, Some("list them".into())));
        // Context added on top does not hide the cause.
        let err = Err::<(), _>(Failure::new(Exit::Refused, "busy")).context("cannot remove").unwrap_err();
        assert_eq!(exit_of(err), Exit::Refused);
    }

    #[test]
    fn directory_kinds_map_to_documented_codes() {
        use couchmail_directory::{Error, ErrorKind};
        let cases = [
            (ErrorKind::NotFound, Exit::NotFound),
            (ErrorKind::Conflict, Exit::Conflict),
            (ErrorKind::Invalid(ValidationError::field("targets", "empty")), Exit::Invalid),
            (ErrorKind::Unavailable, Exit::Unavailable),
            (ErrorKind::Refused, Exit::Refused),
            (ErrorKind::Internal, Exit::Other),
        ];
        for (kind, exit) in cases {
            let err = anyhow::Error::new(Error::new(kind.clone(), "x")).context("while doing something");
            assert_eq!(exit_of(err), exit, "{kind:?}");
        }
    }

    #[test]
    fn conflict_says_to_run_again() {
        let err =
            anyhow::Error::new(couchmail_directory::Error::new(couchmail_directory::ErrorKind::Conflict, "stale"));
        let (exit, hint) = classify(&err);
        assert_eq!(exit, Exit::Conflict);
        assert!(hint.unwrap().contains("run the command again"));
    }

    #[test]
    fn store_and_validation_errors() {
        use couchmail_store::{Error, ErrorKind};
        assert_eq!(exit_of(Error::new(ErrorKind::Unavailable, "down").into()), Exit::Unavailable);
        assert_eq!(exit_of(Error::new(ErrorKind::Conflict, "stale").into()), Exit::Conflict);
        let (exit, hint) = classify(&ValidationError::field("quota_bytes", "too small").into());
        assert_eq!(exit, Exit::Invalid);
        assert!(hint.unwrap().contains("quota_bytes"));
    }

    #[test]
    fn unknown_errors_are_other() {
        assert_eq!(exit_of(anyhow::anyhow!("something odd")), Exit::Other);
        let err = Err::<(), _>(std::io::Error::other("disk on fire")).context("writing").unwrap_err();
        assert_eq!(exit_of(err), Exit::Other);
    }

    #[test]
    fn exit_codes_are_the_documented_numbers() {
        let numbers: Vec<u8> = [
            Exit::Ok,
            Exit::Other,
            Exit::Usage,
            Exit::NotFound,
            Exit::Conflict,
            Exit::Invalid,
            Exit::Unavailable,
            Exit::Refused,
        ]
        .into_iter()
        .map(|exit| exit as u8)
        .collect();
        assert_eq!(numbers, [0, 1, 2, 3, 4, 5, 6, 7]);
    }
}
