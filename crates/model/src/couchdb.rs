//! What CouchMail installs in a CouchDB database, as plain data for the store to install.
//!
//! CouchDB runs the design document's `validate_doc_update` function on every write,
//! replication and Fauxton edit included, so a document of unknown type or with fields of the
//! wrong JSON type never gets in, whoever writes it. The function is a coarse first gate:
//! it checks the `type`, the `_id` prefix, the key's normal form in outline and each field's
//! JSON type and bounds; [`Document::from_stored`](crate::Document::from_stored) stays the
//! precise check, and the function never refuses a document that it accepts.
//!
//! This crate does no I/O and knows no store: the `couchmail` binary maps these items into
//! `couchmail_store::CouchSetup`.
//!
//! ```
//! use couchmail_model::couchdb::{VALIDATE_DOC_UPDATE, mango_indexes};
//!
//! assert!(VALIDATE_DOC_UPDATE.starts_with("function"));
//! let (name, fields) = &mango_indexes()[0];
//! assert_eq!((name.as_str(), fields.as_slice()), ("couchmail-by-type", ["type".to_owned()].as_slice()));
//! ```

/// The `validate_doc_update` JavaScript function (ES5, as CouchDB 3.x runs it): refuses with
/// `forbidden` and a `<field>: <what is wrong>` reason any write that is not a deletion and
/// not a document of one of CouchMail's types with its required fields present and well
/// typed; design documents only from a database admin.
pub const VALIDATE_DOC_UPDATE: &str = include_str!("validate_doc_update.js");

/// The Mango (`_find`) indexes CouchMail wants, as `(name, fields)`: documents by `type`, which
/// is how an admin finds every mailbox or alias in Fauxton without a full scan.
pub fn mango_indexes() -> Vec<(String, Vec<String>)> {
    vec![("couchmail-by-type".to_owned(), vec!["type".to_owned()])]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DocKind;

    #[test]
    fn the_function_knows_every_document_type() {
        for kind in DocKind::ALL {
            assert!(VALIDATE_DOC_UPDATE.contains(&format!("'{kind}'")), "validate_doc_update misses type {kind}");
        }
    }

    #[test]
    fn the_function_is_one_expression_couchdb_can_compile() {
        // CouchDB evaluates the source and wants the value to be a function: no text before
        // `function` and nothing after its closing brace.
        assert!(VALIDATE_DOC_UPDATE.starts_with("function (newDoc, oldDoc, userCtx, secObj) {"));
        assert!(VALIDATE_DOC_UPDATE.trim_end().ends_with('}'));
        let opened = VALIDATE_DOC_UPDATE.matches('{').count();
        let closed = VALIDATE_DOC_UPDATE.matches('}').count();
        assert_eq!(opened, closed, "unbalanced braces");
    }

    #[test]
    fn the_bounds_match_the_model() {
        for (name, value) in [
            ("MIN_QUOTA_BYTES", crate::MIN_QUOTA_BYTES as usize),
            ("MAX_QUOTA_BYTES", crate::MAX_QUOTA_BYTES as usize),
            ("MAX_ALIAS_TARGETS", crate::MAX_ALIAS_TARGETS),
            ("MAX_SIEVE_SCRIPT_BYTES", crate::MAX_SIEVE_SCRIPT_BYTES),
            ("MAX_HOURLY_LIMIT", crate::MAX_HOURLY_LIMIT as usize),
            ("MAX_SPAM_SCORE", (crate::MAX_SPAM_SCORE_TENTHS / 10) as usize),
            ("MAX_LISTING_NOTE_CHARS", crate::listing::MAX_LISTING_NOTE_CHARS),
        ] {
            assert!(VALIDATE_DOC_UPDATE.contains(&format!("var {name} = {value};")), "{name} is not {value}");
        }
    }
}
