//! What the pages' form handlers share: reading optional numbers and boxes,
//! and turning the outcome of a write into a flash message and a redirect.
//!
//! Mistakes in a form (a malformed address, a name taken, a removal other
//! documents depend on) come back to the page the form was on as a flash
//! error, so nothing typed elsewhere on the page is lost; refusals of
//! authority (403), a store that is down (503) and bugs (500) are error
//! pages of their own.

use std::fmt;

use axum::response::{IntoResponse, Redirect, Response};
use couchmail_directory::Cascade;
use couchmail_model::SpamScore;
use couchmail_store::Rev;
use serde::Deserialize;

use crate::Error;
use crate::ui::session::Flash;
use crate::ui::{SessionUser, UiError, UiState};

/// The outcome of a form's write: a message for the user, or why not.
pub(crate) type Outcome = Result<String, UiError>;

/// Flashes `outcome` and redirects to `back`; errors of authority or of the system stay errors.
pub(crate) fn after_write(
    state: &UiState,
    user: &SessionUser,
    outcome: Outcome,
    back: &str,
) -> Result<Response, UiError> {
    match outcome {
        Ok(message) => user.flash(state, Flash::ok(message)),
        Err(UiError::Api(err))
            if matches!(err, Error::Invalid { .. } | Error::Conflict(_) | Error::Refused(_) | Error::NotFound(_)) =>
        {
            user.flash(state, Flash::error(describe(&err)));
        }
        Err(other) => return Err(other),
    }
    Ok(Redirect::to(back).into_response())
}

/// Flashes `outcome` of a removal and redirects to `list` when the document is gone, else back to `item`.
pub(crate) fn after_removal(
    state: &UiState,
    user: &SessionUser,
    outcome: Outcome,
    list: &str,
    item: &str,
) -> Result<Response, UiError> {
    let back = if outcome.is_ok() { list } else { item };
    after_write(state, user, outcome, back)
}

/// A removal form: its `cascade` box, when ticked, also removes (or takes out of aliases) what depends on the
/// document; unticked, a removal others depend on is refused.
#[derive(Deserialize)]
pub(crate) struct RemoveForm {
    #[serde(default)]
    cascade: Option<String>,
}

impl RemoveForm {
    /// What the directory does with dependent documents.
    pub(crate) fn cascade(&self) -> Cascade {
        if self.cascade.is_some() { Cascade::Remove } else { Cascade::Refuse }
    }
}

/// Maps the directory's errors about a new document's `_id` to the form's `field`, where its key was typed:
/// malformed, or taken already.
pub(crate) fn id_error(field: &'static str) -> impl Fn(couchmail_directory::Error) -> UiError {
    move |err| match Error::from(err) {
        Error::Invalid { message, field: Some(id) } if id == "_id" => invalid(field, message),
        Error::Conflict(_) => invalid(field, "exists already"),
        other => UiError::Api(other),
    }
}

/// Refuses to write over `what` when its revision is no longer `drawn`, the one its form was drawn from, so that
/// of two people editing at once the second is told instead of undoing the first one's change.
pub(crate) fn unchanged_since_drawn(what: impl fmt::Display, current: &Rev, drawn: &str) -> Result<(), UiError> {
    if current.0 == drawn {
        return Ok(());
    }
    Err(UiError::Api(Error::Conflict(format!(
        "{what} was changed since this page was drawn; look at it again and redo the change"
    ))))
}

/// An error as a sentence for a person, naming the field.
pub(crate) fn describe(err: &Error) -> String {
    match err {
        Error::Invalid { message, field: Some(field) } => format!("{}: {message}", field.replace('_', " ")),
        other => other.public_message(),
    }
}

/// A 400 naming `field`.
pub(crate) fn invalid(field: &str, message: impl Into<String>) -> UiError {
    UiError::Api(Error::invalid(field, message))
}

/// An optional whole number: empty is `None`.
pub(crate) fn optional_number<T: std::str::FromStr>(field: &str, text: &str) -> Result<Option<T>, UiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| invalid(field, format!("`{text}` is not a whole number")))
}

/// An optional size in MiB, as bytes: empty is `None`.
pub(crate) fn optional_mib(field: &str, text: &str) -> Result<Option<u64>, UiError> {
    match optional_number::<u64>(field, text)? {
        Some(mib) => mib.checked_mul(1 << 20).map(Some).ok_or_else(|| invalid(field, "is too large")),
        None => Ok(None),
    }
}

/// An optional spam score such as `5` or `6.5`: empty is `None`.
pub(crate) fn optional_score(field: &str, text: &str) -> Result<Option<SpamScore>, UiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let value: f64 = text.parse().map_err(|_| invalid(field, format!("`{text}` is not a number such as 6.5")))?;
    SpamScore::from_f64(value).map(Some).map_err(|err| invalid(field, err.message))
}

/// A three-way choice (`""` follows the default, `on`, `off`).
pub(crate) fn tristate(field: &str, text: &str) -> Result<Option<bool>, UiError> {
    match text.trim() {
        "" | "default" => Ok(None),
        "on" | "true" | "yes" => Ok(Some(true)),
        "off" | "false" | "no" => Ok(Some(false)),
        other => Err(invalid(field, format!("`{other}` is not one of default, on, off"))),
    }
}

/// The three-way choice of `value`, for a `<select>`.
pub(crate) fn tristate_text(value: Option<bool>) -> &'static str {
    match value {
        None => "default",
        Some(true) => "on",
        Some(false) => "off",
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|since| since.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_fields_parse() {
        assert_eq!(optional_number::<u32>("n", " ").unwrap(), None);
        assert_eq!(optional_number::<u32>("n", "12").unwrap(), Some(12));
        assert!(optional_number::<u32>("n", "x").is_err());
        assert_eq!(optional_mib("q", "2").unwrap(), Some(2 << 20));
        assert!(optional_mib("q", &u64::MAX.to_string()).is_err());
        assert_eq!(optional_score("s", "6.5").unwrap().map(SpamScore::tenths), Some(65));
        assert!(optional_score("s", "6.55").is_err());
        assert_eq!(tristate("g", "off").unwrap(), Some(false));
        assert_eq!(tristate("g", "").unwrap(), None);
        assert!(tristate("g", "maybe").is_err());
        assert_eq!(tristate_text(Some(true)), "on");
    }
}
