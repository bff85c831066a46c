//! Checks every backend applies before a write, so that a bad request is refused the same way
//! whether the documents live in SQLite or CouchDB.

use crate::{Body, Error, ErrorKind, Result};

/// The longest `_id` accepted, in bytes.
///
/// Ids are keys in Postfix and Dovecot lookups; anything longer is a mistake or an attack.
pub(crate) const MAX_ID_BYTES: usize = 1024;

/// Refuses ids that are empty, too long, contain control characters, or start with `_`
/// (CouchDB reserves those for `_design/` and `_local/` documents).
pub(crate) fn check_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::new(ErrorKind::BadRequest, "document id is empty — give a non-empty id"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(Error::new(
            ErrorKind::BadRequest,
            format!("document id is {} bytes long — the limit is {MAX_ID_BYTES}", id.len()),
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(Error::new(
            ErrorKind::BadRequest,
            format!("document id {id:?} contains a control character — remove it"),
        ));
    }
    if id.starts_with('_') {
        return Err(Error::new(
            ErrorKind::BadRequest,
            format!("document id {id:?} starts with '_', which is reserved — choose another id"),
        ));
    }
    Ok(())
}

/// Refuses bodies with top-level `_`-prefixed keys: `_id` and `_rev` travel beside the body,
/// and CouchDB gives every other `_` key a meaning of its own.
pub(crate) fn check_body(id: &str, body: &Body) -> Result<()> {
    if let Some(key) = body.keys().find(|key| key.starts_with('_')) {
        return Err(Error::new(
            ErrorKind::BadRequest,
            format!(
                "document {id:?} has reserved key {key:?} in its body — keys starting with '_' belong to the store"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use super::*;

    fn kind(result: Result<()>) -> Option<ErrorKind> {
        result.err().map(|error| error.kind())
    }

    #[test]
    fn ids() {
        assert_eq!(kind(check_id("domain:example.com")), None);
        assert_eq!(kind(check_id("mailbox:δοκιμή@例え.jp")), None);
        assert_eq!(kind(check_id(&"a".repeat(MAX_ID_BYTES))), None);
        assert_eq!(kind(check_id("")), Some(ErrorKind::BadRequest));
        assert_eq!(kind(check_id(&"a".repeat(MAX_ID_BYTES + 1))), Some(ErrorKind::BadRequest));
        assert_eq!(kind(check_id("a\nb")), Some(ErrorKind::BadRequest));
        assert_eq!(kind(check_id("a\u{0}b")), Some(ErrorKind::BadRequest));
        assert_eq!(kind(check_id("a\u{7f}b")), Some(ErrorKind::BadRequest));
        assert_eq!(kind(check_id("_design/x")), Some(ErrorKind::BadRequest));
    }

    #[test]
    fn bodies() {
        let good = serde_json::json!({ "type": "domain", "nested": { "_inner": 1 } });
        assert_eq!(kind(check_body("x", good.as_object().unwrap())), None);
        for reserved in ["_id", "_rev", "_deleted", "_attachments", "_"] {
            let mut body = Body::new();
            body.insert(reserved.to_owned(), serde_json::Value::Bool(true));
            assert_eq!(kind(check_body("x", &body)), Some(ErrorKind::BadRequest), "{reserved}");
        }
    }
}
