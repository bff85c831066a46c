//! The one error type of this crate: which field is wrong, and why.

use std::fmt;

/// A document, address or password that breaks a rule.
///
/// `field` names the JSON field (`_id`, `targets[2]`, `password`) so that the
/// API can answer 400 naming it and the CLI can tell the user what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// The JSON field at fault; empty when the whole value is at fault.
    pub field: String,
    /// What is wrong, lower case, no trailing period.
    pub message: String,
}

impl ValidationError {
    /// An error about the whole value, before a field is known.
    pub fn new(message: impl Into<String>) -> ValidationError {
        ValidationError { field: String::new(), message: message.into() }
    }

    /// An error about `field`.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
        ValidationError { field: field.into(), message: message.into() }
    }

    /// Attaches the field this error belongs to, keeping a more precise one
    /// (`targets[2]`) that is already set.
    pub fn at(mut self, field: impl Into<String>) -> ValidationError {
        if self.field.is_empty() {
            self.field = field.into();
        }
        self
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.field, self.message) }
    }
}

impl std::error::Error for ValidationError {}
