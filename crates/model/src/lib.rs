//! CouchMail's documents, addresses and passwords: pure types and validation.
//!
//! Everything the store holds is a JSON document with `_id`, `_rev` and
//! `type`; this crate turns such a document into a typed [`Document`] or a
//! [`ValidationError`] that names the offending field.
//! It also normalises addresses ([`Address`], [`DomainName`]: lower case,
//! IDNA A-labels, RFC 5321 lengths) and hashes and verifies passwords
//! ([`PasswordHash`], written as argon2id in Dovecot's `{ARGON2ID}` form),
//! and makes and checks API bearer tokens ([`Token::generate`],
//! [`split_bearer`], [`Token::verify_secret`]).
//! For bad-mail mitigation (issue #5) it types block and allow listings
//! ([`Listing`], keyed by [`ListingKey`]: scope, action, what they match, with
//! [`IpNetwork`] for client networks) and the per-domain and per-mailbox
//! [`PolicySettings`] (greylisting opt-out, [`SpamScore`] thresholds, hourly
//! sending limits).
//! For the web UI (issue #7) it types [`Invitation`]s: one-time links to
//! create a mailbox in a domain, stored with the SHA-256 of their secret.
//!
//! The crate does no I/O: rules that need other documents (a mailbox needs
//! its domain, aliases must not loop) live in `couchmail-directory`.
//!
//! ```
//! use couchmail_model::{Address, Document};
//!
//! let addr: Address = "Alice@Bücher.Example".parse().unwrap();
//! assert_eq!(addr.to_string(), "alice@xn--bcher-kva.example");
//!
//! let body = serde_json::json!({ "type": "domain", "active": true });
//! let doc = Document::from_stored("domain:example.com", body.as_object().unwrap()).unwrap();
//! assert_eq!(doc.id(), "domain:example.com");
//! ```
#![deny(missing_docs)]

/// Serialises a type as its `Display` string and deserialises it through
/// its `FromStr`, so that JSON holds the normal form and parsing validates.
macro_rules! string_serde {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

mod address;
pub mod couchdb;
mod document;
mod error;
mod invitation;
mod listing;
mod password;
mod policy;
mod token;

pub use address::{Address, AliasKey, DomainName, MAX_ADDRESS_LEN, MAX_DOMAIN_LEN, MAX_LABEL_LEN, MAX_LOCAL_LEN};
pub use document::{
    Alias, DocKind, Document, Domain, DomainAlias, MAX_ALIAS_TARGETS, MAX_QUOTA_BYTES, MAX_SIEVE_SCRIPT_BYTES,
    MIN_QUOTA_BYTES, Mailbox, Role, SieveName, SieveScript, Token, TokenPrincipal,
};
pub use error::ValidationError;
pub use invitation::{INVITATION_ID_LEN, INVITATION_SECRET_LEN, Invitation, MAX_INVITATION_NOTE_CHARS};
pub use listing::{
    IpNetwork, Listing, ListingAction, ListingKey, ListingKind, ListingScope, ListingValue, MAX_LISTING_NOTE_CHARS,
};
pub use password::{MIN_PASSWORD_CHARS, Password, PasswordHash, PasswordScheme};
pub use policy::{MAX_HOURLY_LIMIT, MAX_SPAM_SCORE_TENTHS, MIN_SPAM_SCORE_TENTHS, PolicySettings, SpamScore};
pub use token::{TOKEN_ID_LEN, TOKEN_PREFIX, TOKEN_SECRET_LEN, split_bearer};
