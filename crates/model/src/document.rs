//! The documents of the store, typed.
//!
//! A stored document is a JSON object whose `_id` is `<type>:<key>` and
//! whose body carries `type` and the fields below (DESIGN.md §2).
//! The key lives only in the `_id`; [`Document::from_stored`] parses it back
//! and refuses an `_id` that is not in normal form, so that two documents can
//! never claim the same address.
//!
//! Unknown body fields are ignored when reading, so that a newer couchmail
//! sharing a replicated store does not make an older one drop documents.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::{
    Address, AliasKey, DomainName, Invitation, Listing, ListingKey, PasswordHash, PolicySettings, ValidationError,
};

/// Smallest quota accepted: 1 MiB. Anything smaller is a typo for a bigger unit.
pub const MIN_QUOTA_BYTES: u64 = 1 << 20;
/// Largest quota accepted: 1 PiB.
pub const MAX_QUOTA_BYTES: u64 = 1 << 50;
/// Most targets one alias may have: 300 addresses of at most 254 octets fit
/// in one socketmap reply, which Postfix caps at 100 000 bytes.
pub const MAX_ALIAS_TARGETS: usize = 300;
/// Largest Sieve script accepted.
pub const MAX_SIEVE_SCRIPT_BYTES: usize = 256 * 1024;
/// Longest display name of a mailbox, in characters.
const MAX_DISPLAY_NAME_CHARS: usize = 256;
/// Longest Sieve script name, in characters.
const MAX_SIEVE_NAME_CHARS: usize = 128;

/// The kinds of document, named as in their `type` field and `_id` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DocKind {
    /// `domain:example.com`
    Domain,
    /// `domain-alias:example.net`
    DomainAlias,
    /// `mailbox:alice@example.com`
    Mailbox,
    /// `alias:info@example.com`, `alias:@example.com`
    Alias,
    /// `sieve:alice@example.com:<name>`
    Sieve,
    /// `token:<id>`: an API bearer token, stored hashed.
    Token,
    /// `listing:<scope>:<action>:<kind>:<value>`: one entry of a blocklist or allowlist.
    Listing,
    /// `invitation:<id>`: a one-time link to create a mailbox in a domain.
    Invitation,
}

impl DocKind {
    /// Every kind, in the order the index applies them.
    pub const ALL: [DocKind; 8] = [
        DocKind::Domain,
        DocKind::DomainAlias,
        DocKind::Mailbox,
        DocKind::Alias,
        DocKind::Sieve,
        DocKind::Token,
        DocKind::Listing,
        DocKind::Invitation,
    ];

    /// The `type` field value, which is also the `_id` prefix before `:`.
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Domain => "domain",
            DocKind::DomainAlias => "domain-alias",
            DocKind::Mailbox => "mailbox",
            DocKind::Alias => "alias",
            DocKind::Sieve => "sieve",
            DocKind::Token => "token",
            DocKind::Listing => "listing",
            DocKind::Invitation => "invitation",
        }
    }

    /// The `_id` prefix of every document of this kind, `:` included.
    pub fn id_prefix(self) -> String {
        format!("{}:", self.as_str())
    }

    /// The `_id` of the document of this kind with `key`.
    pub fn id(self, key: impl fmt::Display) -> String {
        format!("{}:{key}", self.as_str())
    }
}

impl FromStr for DocKind {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DocKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| ValidationError::field("type", format!("unknown document type `{s}`")))
    }
}

impl fmt::Display for DocKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mail domain we serve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    /// The domain (from the `_id`).
    #[serde(rename = "__key", skip_serializing)]
    pub name: DomainName,
    /// An inactive domain receives no mail and its users cannot log in.
    #[serde(default = "yes")]
    pub active: bool,
    /// Quota of a new mailbox that names none, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_default: Option<u64>,
    /// Most mailboxes the domain may hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_mailboxes: Option<u32>,
    /// Greylisting, spam thresholds and sending limits for the domain's mailboxes (flat in the body).
    #[serde(flatten)]
    pub policy: PolicySettings,
}

/// Another name for a domain: `user@alias` reaches `user@target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainAlias {
    /// The alias domain (from the `_id`).
    #[serde(rename = "__key", skip_serializing)]
    pub name: DomainName,
    /// The domain it stands for; always a real domain, never another alias.
    pub target: DomainName,
}

/// A role that widens what a mailbox's owner may manage.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Everything.
    Admin,
    /// Everything within one domain.
    DomainAdmin(DomainName),
}

impl FromStr for Role {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "admin" {
            return Ok(Role::Admin);
        }
        match s.strip_prefix("domain-admin:") {
            Some(domain) => Ok(Role::DomainAdmin(DomainName::parse(domain)?)),
            None => Err(ValidationError::new(format!("unknown role `{s}`: use `admin` or `domain-admin:<domain>`"))),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Admin => f.write_str("admin"),
            Role::DomainAdmin(domain) => write!(f, "domain-admin:{domain}"),
        }
    }
}

/// A user's mailbox, which is also their login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    /// The address and login (from the `_id`).
    #[serde(rename = "__key", skip_serializing)]
    pub address: Address,
    /// Display name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The password hash; `None` until a password is set, and no login works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordHash>,
    /// An inactive mailbox receives no mail and cannot log in.
    #[serde(default = "yes")]
    pub active: bool,
    /// Quota in bytes; `None` takes the domain's `quota_default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_bytes: Option<u64>,
    /// What else the owner may manage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
    /// The Sieve script that runs at delivery, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sieve_active: Option<SieveName>,
    /// Greylisting, spam thresholds and sending limits of its own (flat in the body); what is not
    /// set is the domain's.
    #[serde(flatten)]
    pub policy: PolicySettings,
}

/// An address that forwards to others; `@domain` is the domain's catch-all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    /// The alias address or catch-all (from the `_id`).
    #[serde(rename = "__key", skip_serializing)]
    pub key: AliasKey,
    /// Where mail goes: local mailboxes, other aliases, or outside addresses.
    pub targets: Vec<Address>,
    /// An inactive alias is as if it did not exist.
    #[serde(default = "yes")]
    pub active: bool,
}

/// The name of a Sieve script, unique per mailbox.
///
/// Printable characters only, no `/` (Pigeonhole and ManageSieve clients
/// use names as file names) and at most 128 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SieveName(String);

impl SieveName {
    /// Checks a script name.
    pub fn parse(input: &str) -> Result<SieveName, ValidationError> {
        if input.is_empty() {
            return Err(ValidationError::new("sieve script name is empty"));
        }
        if input.chars().count() > MAX_SIEVE_NAME_CHARS {
            return Err(ValidationError::new(format!(
                "sieve script name is longer than {MAX_SIEVE_NAME_CHARS} characters"
            )));
        }
        if input.chars().any(|c| c.is_control() || c == '/') {
            return Err(ValidationError::new("sieve script name may not contain `/` or control characters"));
        }
        if input.trim() != input {
            return Err(ValidationError::new("sieve script name may not start or end with white space"));
        }
        Ok(SieveName(input.to_owned()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SieveName {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SieveName::parse(s)
    }
}

impl fmt::Display for SieveName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Sieve script of one mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SieveScript {
    /// The mailbox it belongs to (from the `_id`).
    #[serde(rename = "__key", skip_serializing)]
    pub owner: Address,
    /// Its name (from the `_id`).
    #[serde(rename = "__name", skip_serializing)]
    pub name: SieveName,
    /// The Sieve source (RFC 5228).
    pub script: String,
}

impl SieveScript {
    /// The id Pigeonhole compiles by: it changes exactly when the content does
    /// (DESIGN.md §3, dict location), so an edit is always recompiled.
    pub fn content_id(&self) -> String {
        hex::encode(Sha256::digest(self.script.as_bytes()))
    }
}

/// Whom an API token acts for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TokenPrincipal {
    /// The installation's administrator, who need not have a mailbox.
    Admin,
    /// A mailbox's owner, with the roles the mailbox has at the time of each request.
    Mailbox(Address),
}

impl FromStr for TokenPrincipal {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "admin" {
            return Ok(TokenPrincipal::Admin);
        }
        match s.strip_prefix("mailbox:") {
            Some(addr) => Ok(TokenPrincipal::Mailbox(Address::parse(addr)?)),
            None => Err(ValidationError::new(format!("unknown principal `{s}`: use `admin` or `mailbox:<address>`"))),
        }
    }
}

impl fmt::Display for TokenPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenPrincipal::Admin => f.write_str("admin"),
            TokenPrincipal::Mailbox(addr) => write!(f, "mailbox:{addr}"),
        }
    }
}

/// An API bearer token. Only the SHA-256 of its secret is stored: the secret
/// has 256 bits of entropy, so a slow hash would add nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// The public part of the token (from the `_id`).
    #[serde(rename = "__key", skip_serializing)]
    pub id: String,
    /// Hex SHA-256 of the secret part.
    pub secret_sha256: String,
    /// Whom the token acts for.
    pub principal: TokenPrincipal,
    /// What the token is for, as its creator said.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
}

/// Any document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    /// A domain.
    Domain(Domain),
    /// A domain alias.
    DomainAlias(DomainAlias),
    /// A mailbox.
    Mailbox(Mailbox),
    /// An alias or catch-all.
    Alias(Alias),
    /// A Sieve script.
    Sieve(SieveScript),
    /// An API token.
    Token(Token),
    /// A blocklist or allowlist entry.
    Listing(Listing),
    /// An invitation to create a mailbox.
    Invitation(Invitation),
}

impl Document {
    /// Parses and validates a stored document: its `_id` and its body (which
    /// must carry a matching `type`; `_id` and `_rev` in the body are ignored).
    pub fn from_stored(id: &str, body: &Map<String, Value>) -> Result<Document, ValidationError> {
        let (prefix, key) =
            id.split_once(':').ok_or_else(|| ValidationError::field("_id", "has no `<type>:` prefix"))?;
        let kind: DocKind = prefix.parse().map_err(|e: ValidationError| ValidationError::field("_id", e.message))?;
        match body.get("type") {
            Some(Value::String(t)) if t == kind.as_str() => {}
            Some(Value::String(t)) => {
                return Err(ValidationError::field(
                    "type",
                    format!("`{t}` does not match the `_id` prefix `{prefix}`"),
                ));
            }
            Some(_) => return Err(ValidationError::field("type", "must be a string")),
            None => return Err(ValidationError::field("type", "is missing")),
        }
        // The key lives in the `_id` only; it is checked for normal form here
        // and handed to serde as a hidden field so each type is built whole.
        let mut body = body.clone();
        let key_field = |value: String| Value::String(value);
        let doc = match kind {
            DocKind::Domain => {
                body.insert(KEY.to_owned(), key_field(normal_key(id, key, DomainName::parse)?.to_string()));
                check_policy_fields(&body)?;
                Document::Domain(parse_body(body)?)
            }
            DocKind::DomainAlias => {
                body.insert(KEY.to_owned(), key_field(normal_key(id, key, DomainName::parse)?.to_string()));
                Document::DomainAlias(parse_body(body)?)
            }
            DocKind::Mailbox => {
                body.insert(KEY.to_owned(), key_field(normal_key(id, key, Address::parse)?.to_string()));
                check_policy_fields(&body)?;
                Document::Mailbox(parse_body(body)?)
            }
            DocKind::Alias => {
                body.insert(KEY.to_owned(), key_field(normal_key(id, key, AliasKey::parse)?.to_string()));
                Document::Alias(parse_body(body)?)
            }
            DocKind::Sieve => {
                let (owner_text, name_text) = key
                    .split_once(':')
                    .ok_or_else(|| ValidationError::field("_id", "must be `sieve:<address>:<name>`"))?;
                let name = SieveName::parse(name_text).map_err(|e| ValidationError::field("_id", e.message))?;
                let owner = Address::parse(owner_text).map_err(|e| ValidationError::field("_id", e.message))?;
                // Not `normal_key`: the normal form to suggest keeps the name.
                if owner.to_string() != owner_text {
                    return Err(ValidationError::field(
                        "_id",
                        format!("is not in normal form; write `{}`", DocKind::Sieve.id(format_args!("{owner}:{name}"))),
                    ));
                }
                body.insert(KEY.to_owned(), key_field(owner.to_string()));
                body.insert(NAME.to_owned(), key_field(name.to_string()));
                Document::Sieve(parse_body(body)?)
            }
            DocKind::Token => {
                body.insert(KEY.to_owned(), key_field(key.to_owned()));
                Document::Token(parse_body(body)?)
            }
            DocKind::Listing => {
                let key = normal_key(id, key, ListingKey::parse)?;
                let ListingBody { note, created } = parse_body(body)?;
                Document::Listing(Listing { key, note, created })
            }
            DocKind::Invitation => {
                body.insert(KEY.to_owned(), key_field(key.to_owned()));
                Document::Invitation(parse_body(body)?)
            }
        };
        doc.validate()?;
        Ok(doc)
    }

    /// The kind of document.
    pub fn kind(&self) -> DocKind {
        match self {
            Document::Domain(_) => DocKind::Domain,
            Document::DomainAlias(_) => DocKind::DomainAlias,
            Document::Mailbox(_) => DocKind::Mailbox,
            Document::Alias(_) => DocKind::Alias,
            Document::Sieve(_) => DocKind::Sieve,
            Document::Token(_) => DocKind::Token,
            Document::Listing(_) => DocKind::Listing,
            Document::Invitation(_) => DocKind::Invitation,
        }
    }

    /// The `_id`.
    pub fn id(&self) -> String {
        match self {
            Document::Domain(d) => DocKind::Domain.id(&d.name),
            Document::DomainAlias(d) => DocKind::DomainAlias.id(&d.name),
            Document::Mailbox(m) => DocKind::Mailbox.id(&m.address),
            Document::Alias(a) => DocKind::Alias.id(&a.key),
            Document::Sieve(s) => DocKind::Sieve.id(format_args!("{}:{}", s.owner, s.name)),
            Document::Token(t) => DocKind::Token.id(&t.id),
            Document::Listing(l) => DocKind::Listing.id(&l.key),
            Document::Invitation(i) => DocKind::Invitation.id(&i.id),
        }
    }

    /// The body to store: the fields and `type`, without `_id` and `_rev`.
    pub fn to_body(&self) -> Map<String, Value> {
        let value = match self {
            Document::Domain(d) => serde_json::to_value(d),
            Document::DomainAlias(d) => serde_json::to_value(d),
            Document::Mailbox(m) => serde_json::to_value(m),
            Document::Alias(a) => serde_json::to_value(a),
            Document::Sieve(s) => serde_json::to_value(s),
            Document::Token(t) => serde_json::to_value(t),
            Document::Listing(l) => serde_json::to_value(ListingBody { note: l.note.clone(), created: l.created }),
            Document::Invitation(i) => serde_json::to_value(i),
        };
        // Serialising these plain structs into a Value cannot fail: every
        // field is a string, number, bool or list of those.
        let mut body = match value {
            Ok(Value::Object(map)) => map,
            _ => unreachable!("documents serialise to JSON objects"),
        };
        body.insert("type".to_owned(), Value::String(self.kind().as_str().to_owned()));
        body
    }

    /// Checks the rules that concern this document alone.
    pub fn validate(&self) -> Result<(), ValidationError> {
        match self {
            Document::Domain(d) => {
                if let Some(quota) = d.quota_default {
                    check_quota(quota).map_err(|e| e.at("quota_default"))?;
                }
                if d.max_mailboxes == Some(0) {
                    return Err(ValidationError::field("max_mailboxes", "must be at least 1"));
                }
                d.policy.validate()?;
            }
            Document::DomainAlias(d) => {
                if d.target == d.name {
                    return Err(ValidationError::field("target", "a domain cannot be an alias of itself"));
                }
            }
            Document::Mailbox(m) => {
                if m.name.chars().count() > MAX_DISPLAY_NAME_CHARS {
                    return Err(ValidationError::field(
                        "name",
                        format!("is longer than {MAX_DISPLAY_NAME_CHARS} characters"),
                    ));
                }
                if m.name.chars().any(char::is_control) {
                    return Err(ValidationError::field("name", "may not contain control characters"));
                }
                if let Some(quota) = m.quota_bytes {
                    check_quota(quota).map_err(|e| e.at("quota_bytes"))?;
                }
                m.policy.validate()?;
                for (role_idx, role) in m.roles.iter().enumerate() {
                    if m.roles[..role_idx].contains(role) {
                        return Err(ValidationError::field(
                            format!("roles[{role_idx}]"),
                            format!("`{role}` is listed twice"),
                        ));
                    }
                }
            }
            Document::Alias(a) => {
                if a.targets.is_empty() {
                    return Err(ValidationError::field("targets", "an alias needs at least one target"));
                }
                if a.targets.len() > MAX_ALIAS_TARGETS {
                    return Err(ValidationError::field("targets", format!("more than {MAX_ALIAS_TARGETS} targets")));
                }
                for (target_idx, target) in a.targets.iter().enumerate() {
                    if a.targets[..target_idx].contains(target) {
                        return Err(ValidationError::field(
                            format!("targets[{target_idx}]"),
                            format!("`{target}` is listed twice"),
                        ));
                    }
                    if AliasKey::Address(target.clone()) == a.key {
                        return Err(ValidationError::field(
                            format!("targets[{target_idx}]"),
                            "an alias cannot point at itself",
                        ));
                    }
                }
            }
            Document::Sieve(s) => {
                if s.script.len() > MAX_SIEVE_SCRIPT_BYTES {
                    return Err(ValidationError::field(
                        "script",
                        format!("is larger than {MAX_SIEVE_SCRIPT_BYTES} bytes"),
                    ));
                }
                if s.script.contains('\0') {
                    return Err(ValidationError::field("script", "may not contain NUL"));
                }
            }
            Document::Token(t) => {
                if t.id.is_empty() || t.id.len() > 64 || !t.id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(ValidationError::field("_id", "a token id is 1 to 64 letters and digits"));
                }
                if t.secret_sha256.len() != 64 || !t.secret_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(ValidationError::field("secret_sha256", "must be 64 hex digits"));
                }
            }
            Document::Listing(l) => l.validate()?,
            Document::Invitation(i) => i.validate()?,
        }
        Ok(())
    }
}

/// Hidden body fields that carry the `_id`'s key into deserialisation.
const KEY: &str = "__key";
const NAME: &str = "__name";

fn yes() -> bool {
    true
}

/// The body of a listing: everything else is in its `_id`.
#[derive(Serialize, Deserialize)]
struct ListingBody {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    note: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created: Option<u64>,
}

/// Parses the policy settings of a domain or mailbox body on their own, so that an ill-typed one is
/// named: flattened into the document, serde would report it against the whole body.
fn check_policy_fields(body: &Map<String, Value>) -> Result<(), ValidationError> {
    if PolicySettings::FIELDS.iter().any(|field| body.contains_key(*field)) {
        let fields: Map<String, Value> = PolicySettings::FIELDS
            .iter()
            .filter_map(|field| body.get(*field).map(|value| ((*field).to_owned(), value.clone())))
            .collect();
        parse_body::<PolicySettings>(fields)?;
    }
    Ok(())
}

fn check_quota(quota: u64) -> Result<(), ValidationError> {
    if !(MIN_QUOTA_BYTES..=MAX_QUOTA_BYTES).contains(&quota) {
        return Err(ValidationError::new(format!(
            "must be between {MIN_QUOTA_BYTES} (1 MiB) and {MAX_QUOTA_BYTES} (1 PiB) bytes"
        )));
    }
    Ok(())
}

/// Parses a document body, naming the field at fault.
fn parse_body<T: DeserializeOwned>(body: Map<String, Value>) -> Result<T, ValidationError> {
    let value = Value::Object(body);
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = match err.path().to_string() {
            // An error in the hidden key fields is an error in the `_id`.
            path if path == KEY || path == NAME => "_id".to_owned(),
            path => path,
        };
        let message = err.into_inner().to_string();
        if path != "." {
            return ValidationError::field(path, message);
        }
        // serde reports a missing field against the whole object; name it.
        match message.strip_prefix("missing field `").and_then(|rest| rest.strip_suffix('`')) {
            Some(missing) => ValidationError::field(missing, "is missing"),
            None => ValidationError::new(message),
        }
    })
}

/// Parses the key part of an `_id`, which must already be in normal form.
fn normal_key<T: fmt::Display>(
    id: &str,
    key: &str,
    parse: impl Fn(&str) -> Result<T, ValidationError>,
) -> Result<T, ValidationError> {
    let parsed = parse(key).map_err(|e| ValidationError::field("_id", e.message))?;
    let normal = parsed.to_string();
    if normal != key {
        let prefix = id.split_once(':').map_or("", |(prefix, _)| prefix);
        return Err(ValidationError::field("_id", format!("is not in normal form; write `{prefix}:{normal}`")));
    }
    Ok(parsed)
}

string_serde!(Role);
string_serde!(SieveName);
string_serde!(TokenPrincipal);

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use serde_json::json;

    use super::*;

    /// `openssl passwd -5 -salt saltsalt 'correct horse battery'`
    const SHA256_HASH: &str = "{SHA256-CRYPT}$5$saltsalt$lJBntEo62mus/ovk43htFvkabtoMEkzjosQqenAm4h8";

    fn parse(id: &str, body: Value) -> Result<Document, ValidationError> {
        let Value::Object(body) = body else { panic!("test bodies are objects") };
        Document::from_stored(id, &body)
    }

    /// Parses a document, then checks that storing it and reading it back
    /// gives the same document and the same `_id`.
    fn check_round_trip(id: &str, body: Value) -> Document {
        let doc = parse(id, body).unwrap_or_else(|err| panic!("{id} refused: {err}"));
        assert_eq!(doc.id(), id);
        let stored = doc.to_body();
        assert_eq!(stored.get("type"), Some(&Value::String(doc.kind().as_str().to_owned())));
        assert!(!stored.contains_key(KEY) && !stored.contains_key(NAME), "hidden fields leaked: {stored:?}");
        assert_eq!(Document::from_stored(&doc.id(), &stored), Ok(doc.clone()));
        doc
    }

    /// Checks that a document is refused, naming `field`.
    fn check_refused(id: &str, body: Value, field: &str) -> ValidationError {
        match parse(id, body) {
            Ok(doc) => panic!("{id} accepted: {doc:?}"),
            Err(err) => {
                assert_eq!(err.field, field, "wrong field in `{err}`");
                err
            }
        }
    }

    #[test]
    fn every_kind_round_trips() {
        check_round_trip("domain:example.com", json!({"type": "domain"}));
        check_round_trip(
            "domain:xn--bcher-kva.example",
            json!({"type": "domain", "active": false, "quota_default": 1_073_741_824u64, "max_mailboxes": 50}),
        );
        check_round_trip("domain-alias:example.net", json!({"type": "domain-alias", "target": "example.com"}));
        check_round_trip("mailbox:alice@example.com", json!({"type": "mailbox"}));
        check_round_trip(
            "mailbox:alice@example.com",
            json!({
                "type": "mailbox", "name": "Alice Smith", "password": SHA256_HASH, "active": false,
                "quota_bytes": 1_048_576u64, "roles": ["admin", "domain-admin:example.org"], "sieve_active": "main",
            }),
        );
        check_round_trip("alias:info@example.com", json!({"type": "alias", "targets": ["alice@example.com"]}));
        check_round_trip(
            "alias:@example.com",
            json!({"type": "alias", "targets": ["alice@example.com", "bob@example.org"], "active": false}),
        );
        check_round_trip("sieve:alice@example.com:main", json!({"type": "sieve", "script": "keep;"}));
        check_round_trip(
            "invitation:0123456789abcdef",
            json!({"type": "invitation", "domain": "example.com", "secret_sha256": "ab".repeat(32), "created": 100, "expires": 200}),
        );
        check_round_trip(
            "invitation:0123456789abcdef",
            json!({
                "type": "invitation", "domain": "example.com", "secret_sha256": "ab".repeat(32), "created": 100,
                "expires": 200, "created_by": "boss@example.com", "note": "for Carol", "used_by": "carol@example.com",
            }),
        );
        check_round_trip("sieve:alice@example.com:vacation: summer", json!({"type": "sieve", "script": ""}));
        check_round_trip(
            "token:0123456789abcdef",
            json!({
                "type": "token", "secret_sha256": "ab".repeat(32), "principal": "mailbox:alice@example.com",
                "label": "laptop", "created": 1_700_000_000u64,
            }),
        );
        check_round_trip(
            "token:0123456789abcdef",
            json!({"type": "token", "secret_sha256": "ab".repeat(32), "principal": "admin", "created": 0}),
        );
    }

    #[test]
    fn fields_are_typed_and_defaulted() {
        let Document::Mailbox(mailbox) = check_round_trip(
            "mailbox:alice@example.com",
            json!({"type": "mailbox", "password": SHA256_HASH, "roles": ["domain-admin:Example.ORG"]}),
        ) else {
            panic!("not a mailbox")
        };
        assert_eq!(mailbox.address.to_string(), "alice@example.com");
        assert!(mailbox.active, "active defaults to true");
        assert!(mailbox.password.as_ref().is_some_and(|hash| hash.verify("correct horse battery")));
        assert_eq!(mailbox.roles, [Role::DomainAdmin(DomainName::parse("example.org").unwrap())]);

        let Document::Sieve(sieve) =
            check_round_trip("sieve:bob@example.com:a:b", json!({"type": "sieve", "script": "keep;"}))
        else {
            panic!("not a sieve script")
        };
        assert_eq!(sieve.owner.to_string(), "bob@example.com");
        assert_eq!(sieve.name.as_str(), "a:b");
    }

    #[test]
    fn ill_typed_fields_are_named() {
        check_refused("domain:example.com", json!({"type": "domain", "active": "yes"}), "active");
        check_refused("domain:example.com", json!({"type": "domain", "quota_default": -1}), "quota_default");
        check_refused("domain:example.com", json!({"type": "domain", "max_mailboxes": "many"}), "max_mailboxes");
        check_refused("domain-alias:example.net", json!({"type": "domain-alias", "target": "localhost"}), "target");
        check_refused("mailbox:alice@example.com", json!({"type": "mailbox", "name": 5}), "name");
        check_refused("mailbox:alice@example.com", json!({"type": "mailbox", "password": "{PLAIN}secret"}), "password");
        check_refused("mailbox:alice@example.com", json!({"type": "mailbox", "quota_bytes": "1G"}), "quota_bytes");
        check_refused("mailbox:alice@example.com", json!({"type": "mailbox", "roles": ["admin", "root"]}), "roles[1]");
        check_refused("mailbox:alice@example.com", json!({"type": "mailbox", "sieve_active": "a/b"}), "sieve_active");
        check_refused(
            "alias:info@example.com",
            json!({"type": "alias", "targets": ["alice@example.com", "not an address"]}),
            "targets[1]",
        );
        check_refused("alias:info@example.com", json!({"type": "alias", "targets": "alice@example.com"}), "targets");
        check_refused("sieve:alice@example.com:main", json!({"type": "sieve", "script": ["keep;"]}), "script");
        check_refused(
            "token:0123456789abcdef",
            json!({"type": "token", "secret_sha256": "ab".repeat(32), "principal": "root", "created": 0}),
            "principal",
        );
    }

    #[test]
    fn missing_required_fields_are_named() {
        check_refused("domain-alias:example.net", json!({"type": "domain-alias"}), "target");
        check_refused("alias:info@example.com", json!({"type": "alias"}), "targets");
        check_refused("sieve:alice@example.com:main", json!({"type": "sieve"}), "script");
        let err = check_refused(
            "token:0123456789abcdef",
            json!({"type": "token", "principal": "admin", "created": 0}),
            "secret_sha256",
        );
        assert_eq!(err.message, "is missing");
    }

    #[test]
    fn type_field_must_match_the_id() {
        let err = check_refused("domain:example.com", json!({"active": true}), "type");
        assert!(err.message.contains("missing"), "{err}");
        let err = check_refused("domain:example.com", json!({"type": "mailbox"}), "type");
        assert!(err.message.contains("domain"), "{err}");
        check_refused("domain:example.com", json!({"type": 1}), "type");
        let err = check_refused("user:alice@example.com", json!({"type": "user"}), "_id");
        assert!(err.message.contains("unknown document type `user`"), "{err}");
        check_refused("example.com", json!({"type": "domain"}), "_id");
        check_refused("", json!({"type": "domain"}), "_id");
    }

    #[test]
    fn ids_must_be_in_normal_form() {
        let err = check_refused("mailbox:Alice@Example.com", json!({"type": "mailbox"}), "_id");
        assert!(err.message.contains("write `mailbox:alice@example.com`"), "{err}");
        let err = check_refused("domain:Bücher.example", json!({"type": "domain"}), "_id");
        assert!(err.message.contains("write `domain:xn--bcher-kva.example`"), "{err}");
        let err = check_refused("alias:@Example.com", json!({"type": "alias", "targets": ["a@example.com"]}), "_id");
        assert!(err.message.contains("write `alias:@example.com`"), "{err}");
        let err = check_refused("sieve:Alice@example.com:main", json!({"type": "sieve", "script": ""}), "_id");
        assert!(err.message.contains("write `sieve:alice@example.com:main`"), "{err}");
        check_refused("domain-alias:EXAMPLE.net", json!({"type": "domain-alias", "target": "example.com"}), "_id");

        check_refused("mailbox:alice", json!({"type": "mailbox"}), "_id");
        check_refused("domain:localhost", json!({"type": "domain"}), "_id");
        check_refused("sieve:alice@example.com", json!({"type": "sieve", "script": ""}), "_id");
        check_refused("sieve:alice@example.com:", json!({"type": "sieve", "script": ""}), "_id");
        check_refused("sieve:alice@example.com:a/b", json!({"type": "sieve", "script": ""}), "_id");
        check_refused(
            "token:not-alnum",
            json!({"type": "token", "secret_sha256": "ab".repeat(32), "principal": "admin", "created": 0}),
            "_id",
        );
    }

    #[test]
    fn unknown_and_reserved_body_fields_are_ignored() {
        let doc = check_round_trip(
            "domain:example.com",
            json!({"type": "domain", "future_field": {"x": 1}, "_id": "domain:other.com", "_rev": "1-abc"}),
        );
        assert_eq!(doc.id(), "domain:example.com");
        // A hidden key field written into the body cannot override the `_id`.
        let doc =
            parse("mailbox:alice@example.com", json!({"type": "mailbox", "__key": "mallory@example.com"})).unwrap();
        assert_eq!(doc.id(), "mailbox:alice@example.com");
        let doc = parse(
            "sieve:alice@example.com:main",
            json!({"type": "sieve", "script": "", "__key": "mallory@example.com", "__name": "evil"}),
        )
        .unwrap();
        assert_eq!(doc.id(), "sieve:alice@example.com:main");
    }

    #[test]
    fn alias_targets_rules() {
        let err = check_refused(
            "alias:info@example.com",
            json!({"type": "alias", "targets": ["alice@example.com", "Info@Example.com"]}),
            "targets[1]",
        );
        assert!(err.message.contains("itself"), "{err}");
        let err = check_refused(
            "alias:info@example.com",
            json!({"type": "alias", "targets": ["alice@example.com", "bob@example.com", "ALICE@example.com"]}),
            "targets[2]",
        );
        assert!(err.message.contains("twice"), "{err}");
        check_refused("alias:info@example.com", json!({"type": "alias", "targets": []}), "targets");
        let too_many: Vec<String> = (0..=MAX_ALIAS_TARGETS).map(|n| format!("user{n}@example.org")).collect();
        check_round_trip("alias:info@example.com", json!({"type": "alias", "targets": too_many[1..]}));
        check_refused("alias:info@example.com", json!({"type": "alias", "targets": too_many}), "targets");
        // A catch-all may forward to an address of its own domain.
        check_round_trip("alias:@example.com", json!({"type": "alias", "targets": ["postmaster@example.com"]}));
    }

    #[test]
    fn domain_alias_cannot_target_itself() {
        check_refused("domain-alias:example.net", json!({"type": "domain-alias", "target": "Example.NET"}), "target");
    }

    #[test]
    fn quota_bounds() {
        for (quota, ok) in [
            (0, false),
            (MIN_QUOTA_BYTES - 1, false),
            (MIN_QUOTA_BYTES, true),
            (MAX_QUOTA_BYTES, true),
            (MAX_QUOTA_BYTES + 1, false),
            (u64::MAX, false),
        ] {
            let domain = parse("domain:example.com", json!({"type": "domain", "quota_default": quota}));
            let mailbox = parse("mailbox:alice@example.com", json!({"type": "mailbox", "quota_bytes": quota}));
            if ok {
                assert!(domain.is_ok() && mailbox.is_ok(), "{quota} refused");
            } else {
                assert_eq!(domain.unwrap_err().field, "quota_default", "{quota}");
                assert_eq!(mailbox.unwrap_err().field, "quota_bytes", "{quota}");
            }
        }
        check_refused("domain:example.com", json!({"type": "domain", "max_mailboxes": 0}), "max_mailboxes");
        check_round_trip("domain:example.com", json!({"type": "domain", "max_mailboxes": 1}));
    }

    #[test]
    fn mailbox_rules() {
        let longest = "é".repeat(MAX_DISPLAY_NAME_CHARS);
        check_round_trip("mailbox:alice@example.com", json!({"type": "mailbox", "name": longest}));
        let too_long = "é".repeat(MAX_DISPLAY_NAME_CHARS + 1);
        check_refused("mailbox:alice@example.com", json!({"type": "mailbox", "name": too_long}), "name");
        check_refused("mailbox:alice@example.com", json!({"type": "mailbox", "name": "Alice\nSmith"}), "name");
        check_refused("mailbox:alice@example.com", json!({"type": "mailbox", "roles": ["admin", "admin"]}), "roles[1]");
        check_refused(
            "mailbox:alice@example.com",
            json!({"type": "mailbox", "roles": ["domain-admin:example.org", "domain-admin:EXAMPLE.org"]}),
            "roles[1]",
        );
    }

    #[test]
    fn sieve_rules() {
        let largest = "#".repeat(MAX_SIEVE_SCRIPT_BYTES);
        check_round_trip("sieve:alice@example.com:main", json!({"type": "sieve", "script": largest}));
        let too_large = "#".repeat(MAX_SIEVE_SCRIPT_BYTES + 1);
        check_refused("sieve:alice@example.com:main", json!({"type": "sieve", "script": too_large}), "script");
        check_refused("sieve:alice@example.com:main", json!({"type": "sieve", "script": "keep;\0"}), "script");
        for bad in ["", " main", "main ", "a/b", "tab\there", &"n".repeat(129)] {
            assert!(SieveName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(SieveName::parse(&"n".repeat(128)).is_ok());
        assert!(SieveName::parse("Vacation ☀").is_ok());

        let script = |text: &str| SieveScript {
            owner: Address::parse("alice@example.com").unwrap(),
            name: SieveName::parse("main").unwrap(),
            script: text.to_owned(),
        };
        assert_eq!(script("keep;").content_id(), script("keep;").content_id());
        assert_ne!(script("keep;").content_id(), script("discard;").content_id());
        // `printf %s 'keep;' | sha256sum`
        assert_eq!(script("keep;").content_id(), "b417a17598906ccac858842b18641400c875995a9c052e7bda50b4c802456956");
    }

    #[test]
    fn token_rules() {
        let body = |hash: String| json!({"type": "token", "secret_sha256": hash, "principal": "admin", "created": 0});
        check_refused("token:0123456789abcdef", body("ab".repeat(31)), "secret_sha256");
        check_refused("token:0123456789abcdef", body("zz".repeat(32)), "secret_sha256");
        check_refused(&format!("token:{}", "a".repeat(65)), body("ab".repeat(32)), "_id");
        check_refused("token:", body("ab".repeat(32)), "_id");
        check_round_trip(&format!("token:{}", "a".repeat(64)), body("ab".repeat(32)));
    }

    #[test]
    fn policy_settings_are_flat_optional_fields() {
        let Document::Domain(domain) = check_round_trip(
            "domain:example.com",
            json!({"type": "domain", "greylisting": false, "spam_threshold": 6.5, "spam_reject": 15.0}),
        ) else {
            panic!("not a domain")
        };
        assert_eq!(domain.policy.greylisting, Some(false));
        assert_eq!(domain.policy.spam_threshold.map(crate::SpamScore::tenths), Some(65));
        assert_eq!(domain.policy.spam_reject.map(crate::SpamScore::tenths), Some(150));
        let Document::Mailbox(mailbox) = check_round_trip(
            "mailbox:alice@example.com",
            json!({"type": "mailbox", "greylisting": true, "messages_per_hour": 0, "recipients_per_hour": 500}),
        ) else {
            panic!("not a mailbox")
        };
        assert_eq!(mailbox.policy.messages_per_hour, Some(0));
        assert_eq!(mailbox.policy.recipients_per_hour, Some(500));
        // Absent means inherit, and a document without any keeps its old body exactly.
        let Document::Mailbox(plain) = parse("mailbox:bob@example.com", json!({"type": "mailbox"})).unwrap() else {
            panic!("not a mailbox")
        };
        assert!(plain.policy.is_empty());
        let body = Document::Mailbox(plain).to_body();
        assert!(PolicySettings::FIELDS.iter().all(|field| !body.contains_key(*field)), "{body:?}");
        // Null reads as absent, as for the other optional fields.
        check_round_trip("domain:example.com", json!({"type": "domain", "spam_threshold": null}));
    }

    #[test]
    fn ill_typed_policy_settings_are_named() {
        check_refused("domain:example.com", json!({"type": "domain", "greylisting": "no"}), "greylisting");
        check_refused("domain:example.com", json!({"type": "domain", "spam_threshold": "5"}), "spam_threshold");
        check_refused("domain:example.com", json!({"type": "domain", "spam_threshold": 5.55}), "spam_threshold");
        check_refused("domain:example.com", json!({"type": "domain", "spam_reject": 1000}), "spam_reject");
        check_refused("mailbox:alice@example.com", json!({"type": "mailbox", "spam_threshold": -1}), "spam_threshold");
        check_refused(
            "mailbox:alice@example.com",
            json!({"type": "mailbox", "messages_per_hour": -1}),
            "messages_per_hour",
        );
        check_refused(
            "mailbox:alice@example.com",
            json!({"type": "mailbox", "recipients_per_hour": 1_000_001}),
            "recipients_per_hour",
        );
        let err = check_refused(
            "mailbox:alice@example.com",
            json!({"type": "mailbox", "spam_threshold": 8, "spam_reject": 8}),
            "spam_reject",
        );
        assert!(err.message.contains("above spam_threshold"), "{err}");
        // The other fields are still named as before.
        check_refused(
            "mailbox:alice@example.com",
            json!({"type": "mailbox", "greylisting": true, "active": 1}),
            "active",
        );
    }

    #[test]
    fn listings_round_trip_and_keep_their_key_in_the_id() {
        let Document::Listing(listing) = check_round_trip(
            "listing:mailbox:alice@example.com:block:sender:spam@bad.example",
            json!({"type": "listing", "note": "keeps writing", "created": 1_700_000_000u64}),
        ) else {
            panic!("not a listing")
        };
        assert_eq!(listing.key.scope, crate::ListingScope::Mailbox(Address::parse("alice@example.com").unwrap()));
        assert_eq!(listing.key.action, crate::ListingAction::Block);
        assert_eq!(listing.note, "keeps writing");
        check_round_trip("listing:global:allow:client:2001:db8::/32", json!({"type": "listing"}));
        check_round_trip("listing:domain:example.com:block:sender-domain:bad.example", json!({"type": "listing"}));

        let err = check_refused("listing:global:block:client:192.0.2.7/24", json!({"type": "listing"}), "_id");
        assert!(err.message.contains("write `listing:global:block:client:192.0.2.0/24`"), "{err}");
        let err = check_refused(
            "listing:domain:Example.com:block:sender:Spam@Bad.example",
            json!({"type": "listing"}),
            "_id",
        );
        assert!(err.message.contains("write `listing:domain:example.com:block:sender:spam@bad.example`"), "{err}");
        check_refused("listing:global:reject:client:192.0.2.1", json!({"type": "listing"}), "_id");
        check_refused("listing:global:block:client:192.0.2.1", json!({"type": "listing", "note": 5}), "note");
        check_refused("listing:global:block:client:192.0.2.1", json!({"type": "listing", "note": "a\nb"}), "note");
        let long = "n".repeat(crate::MAX_LISTING_NOTE_CHARS + 1);
        check_refused("listing:global:block:client:192.0.2.1", json!({"type": "listing", "note": long}), "note");
        check_refused("listing:global:block:client:192.0.2.1", json!({"type": "listing", "created": -5}), "created");
    }

    #[test]
    fn doc_kinds() {
        for kind in DocKind::ALL {
            assert_eq!(kind.as_str().parse::<DocKind>(), Ok(kind));
            assert_eq!(kind.id_prefix(), format!("{kind}:"));
            assert_eq!(kind.id("x"), format!("{kind}:x"));
        }
        assert_eq!("Domain".parse::<DocKind>().unwrap_err().field, "type");
    }

    #[test]
    fn roles_and_principals_parse_and_print() {
        for text in ["admin", "domain-admin:example.com"] {
            assert_eq!(text.parse::<Role>().unwrap().to_string(), text);
        }
        assert!("domain-admin:".parse::<Role>().is_err());
        assert!("owner".parse::<Role>().is_err());
        for text in ["admin", "mailbox:alice@example.com"] {
            assert_eq!(text.parse::<TokenPrincipal>().unwrap().to_string(), text);
        }
        assert!("mailbox:".parse::<TokenPrincipal>().is_err());
        assert!("domain:example.com".parse::<TokenPrincipal>().is_err());
    }
}
