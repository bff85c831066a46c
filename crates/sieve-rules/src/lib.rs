//! The model of CouchMail's visual Sieve filter editor: rules as plain data,
//! written as Sieve and read back without loss.
//!
//! A user's filter is a [`RuleSet`]: an ordered list of [`Rule`]s, each a
//! name, [`Condition`]s combined by [`Matching::All`] or [`Matching::Any`],
//! and [`Action`]s.
//! [`to_sieve`] checks the rules ([`RuleSet::validate`], errors naming the
//! field) and writes canonical Sieve (RFC 5228 with `fileinto`, `mailbox`,
//! `envelope`, `vacation` and `copy`, requiring only what is used), starting
//! with the marker line [`MARKER`] and naming each rule in a comment.
//! [`from_sieve`] reads such a script back into the identical rules; any
//! other script is [`NotRepresentable`], with the reason, so the web UI opens
//! it in the raw editor and never rewrites it.
//! The types (de)serialise with serde, as the web form posts them as JSON.
//!
//! The crate does no I/O: Pigeonhole's `sievec` (run through
//! `couchmail-supervisor`) stays the judge of what is valid Sieve, and the
//! tests make it accept generated scripts.
//!
//! ```
//! use couchmail_sieve_rules::{Action, Condition, MatchType, Matching, Rule, RuleSet, from_sieve, to_sieve};
//!
//! let rules = RuleSet {
//!     rules: vec![Rule {
//!         name: "Invoices".to_owned(),
//!         enabled: true,
//!         matching: Matching::All,
//!         conditions: vec![Condition::Header {
//!             headers: vec!["Subject".to_owned()],
//!             match_type: MatchType::Contains,
//!             value: "invoice".to_owned(),
//!             not: false,
//!         }],
//!         actions: vec![Action::Fileinto { folder: "Invoices".to_owned(), create: true }],
//!     }],
//! };
//! let script = to_sieve(&rules).unwrap();
//! assert!(script.contains("fileinto :create \"Invoices\";"));
//! assert_eq!(from_sieve(&script).unwrap(), rules);
//! assert!(from_sieve("require \"fileinto\";\nfileinto \"Junk\";\n").is_err());
//! ```
#![deny(missing_docs)]

mod parse;
mod rules;
mod validate;
mod write;

pub use couchmail_model::ValidationError;
pub use parse::{NotRepresentable, from_sieve};
pub use rules::{
    Action, AddressPart, Condition, EnvelopePart, MatchType, Matching, Rule, RuleSet, SizeComparison, SizeUnit,
};
pub use validate::{
    ADDRESS_HEADERS, MAX_NAME_CHARS, MAX_REASON_CHARS, MAX_RULES, MAX_SIZE_AMOUNT, MAX_VACATION_DAYS, MAX_VALUE_CHARS,
};
pub use write::{MARKER, to_sieve};
