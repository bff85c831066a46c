//! Revisions for backends that make their own: `<generation>-<32 hex digits>`, deterministic.
//!
//! The hash is the first 128 bits of SHA-256 over the previous revision and the canonical
//! JSON of the new body, so the same edit on the same revision always yields the same
//! revision (as CouchDB's are deterministic), and a tombstone hashes a fixed marker instead.

use sha2::{Digest, Sha256};

use crate::{Body, Error, ErrorKind, Result, Rev};

/// What a tombstone hashes in place of a body; no JSON object serialises to it.
const TOMBSTONE_MARKER: &[u8] = b"deleted";

/// The revision that follows `previous` (`None` for a brand-new document) when the document
/// becomes `body` (`None` for a tombstone).
pub(crate) fn next_revision(previous: Option<&Rev>, body: Option<&Body>) -> Result<Rev> {
    let generation = match previous {
        None => 1,
        Some(rev) => generation(rev)?.checked_add(1).ok_or_else(|| {
            Error::new(
                ErrorKind::Internal,
                format!("revision {rev} cannot be followed: its generation is at the limit"),
            )
        })?,
    };
    let mut hasher = Sha256::new();
    // The previous revision is framed by its length so that no (previous, body) pair can
    // collide with another by moving bytes across the boundary.
    let previous_bytes = previous.map(|rev| rev.0.as_bytes()).unwrap_or_default();
    hasher.update((previous_bytes.len() as u64).to_be_bytes());
    hasher.update(previous_bytes);
    match body {
        Some(body) => hasher.update(canonical_json(body).as_bytes()),
        None => hasher.update(TOMBSTONE_MARKER),
    }
    let digest = hasher.finalize();
    Ok(Rev(format!("{generation}-{}", hex::encode(&digest[..16]))))
}

/// The generation of `rev`: the number before the dash.
pub(crate) fn generation(rev: &Rev) -> Result<u64> {
    rev.0
        .split_once('-')
        .and_then(|(generation, _)| generation.parse::<u64>().ok())
        .filter(|generation| *generation > 0)
        .ok_or_else(|| Error::new(ErrorKind::Internal, format!("stored revision {:?} is malformed", rev.0)))
}

/// JSON with object keys sorted at every depth and no insignificant whitespace.
///
/// `serde_json::Map` keeps insertion order when any crate in the build enables the
/// `preserve_order` feature, so the ordering is done here rather than trusted to the map.
pub(crate) fn canonical_json(body: &Body) -> String {
    let mut out = String::new();
    write_object(&mut out, body);
    out
}

fn write_object(out: &mut String, object: &Body) {
    let mut entries: Vec<_> = object.iter().collect();
    entries.sort_by_key(|(key, _)| *key);
    out.push('{');
    for (entry_idx, (key, value)) in entries.into_iter().enumerate() {
        if entry_idx > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        write_value(out, value);
    }
    out.push('}');
}

fn write_value(out: &mut String, value: &serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(object) => write_object(out, object),
        Value::Array(items) => {
            out.push('[');
            for (item_idx, item) in items.iter().enumerate() {
                if item_idx > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::String(text) => write_string(out, text),
        // Null, booleans and numbers have one spelling in serde_json's output.
        Value::Null | Value::Bool(_) | Value::Number(_) => out.push_str(&value.to_string()),
    }
}

fn write_string(out: &mut String, text: &str) {
    out.push_str(&serde_json::Value::String(text.to_owned()).to_string());
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use super::*;

    fn body(value: serde_json::Value) -> Body {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let value = body(serde_json::json!({ "b": [1, { "z": null, "a": "é\n" }], "a": true }));
        assert_eq!(canonical_json(&value), r#"{"a":true,"b":[1,{"a":"é\n","z":null}]}"#);
    }

    #[test]
    fn revisions_are_deterministic_and_chain() {
        let first_body = body(serde_json::json!({ "type": "domain" }));
        let first = next_revision(None, Some(&first_body)).unwrap();
        assert_eq!(first, next_revision(None, Some(&first_body)).unwrap());
        assert!(first.0.starts_with("1-"));
        assert_eq!(first.0.len(), 2 + 32);
        assert!(first.0[2..].chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));

        let second = next_revision(Some(&first), Some(&first_body)).unwrap();
        assert!(second.0.starts_with("2-"));
        assert_ne!(first.0[2..], second.0[2..]);

        let tombstone = next_revision(Some(&second), None).unwrap();
        assert!(tombstone.0.starts_with("3-"));
        assert_ne!(tombstone, next_revision(Some(&second), Some(&first_body)).unwrap());
    }

    #[test]
    fn malformed_revisions_are_internal_errors() {
        for bad in ["", "abc", "0-abc", "-abc", "x-abc"] {
            let error = generation(&Rev(bad.to_owned())).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Internal, "{bad}");
        }
        assert_eq!(generation(&Rev("12-ab".to_owned())).unwrap(), 12);
    }
}
