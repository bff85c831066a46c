//! Addresses and domain names in the one normal form the store keeps.
//!
//! RFC 5321 §4.1.2 (Dot-string local parts), §4.5.3.1 (lengths), and
//! UTS #46 / RFC 5891 for internationalised domain names, which are stored
//! as lower-case A-labels (`xn--…`).
//! Quoted local parts and address literals (`[192.0.2.1]`) are refused:
//! they are legal on the wire but no mailbox of ours should need one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ValidationError;

/// Longest local part, in octets (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_LEN: usize = 64;
/// Longest domain name, in octets (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN_LEN: usize = 253;
/// Longest DNS label, in octets (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;
/// Longest address: a 256-octet path less its angle brackets (RFC 5321 §4.5.3.1.3).
pub const MAX_ADDRESS_LEN: usize = 254;

/// A domain name in normal form: lower-case A-labels, at least two labels,
/// letters, digits and inner hyphens only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(String);

impl DomainName {
    /// Parses and normalises a domain given in any case, as U-labels or A-labels.
    pub fn parse(input: &str) -> Result<DomainName, ValidationError> {
        if input.is_empty() {
            return Err(ValidationError::new("domain is empty"));
        }
        if input.starts_with('[') {
            return Err(ValidationError::new("address literals are not accepted, use a domain name"));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ValidationError::new("domain contains white space or control characters"));
        }
        if input.len() > 4 * MAX_DOMAIN_LEN {
            return Err(ValidationError::new(format!("domain is longer than {MAX_DOMAIN_LEN} octets")));
        }
        let ascii = idna::domain_to_ascii_strict(input)
            .map_err(|_| ValidationError::new(format!("`{input}` is not a valid domain name")))?
            .to_ascii_lowercase();
        check_ascii_domain(&ascii)?;
        Ok(DomainName(ascii))
    }

    /// The normal (A-label) form, as stored and as Postfix asks for it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Unicode form for people to read; the A-label form where a label
    /// does not decode.
    pub fn to_unicode(&self) -> String {
        let (unicode, res) = idna::domain_to_unicode(&self.0);
        if res.is_ok() { unicode } else { self.0.clone() }
    }
}

fn check_ascii_domain(ascii: &str) -> Result<(), ValidationError> {
    if ascii.len() > MAX_DOMAIN_LEN {
        return Err(ValidationError::new(format!("domain is longer than {MAX_DOMAIN_LEN} octets")));
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return Err(ValidationError::new(format!(
            "`{ascii}` has a single label; a mail domain needs at least two (example.com)"
        )));
    }
    for label in &labels {
        if label.is_empty() {
            return Err(ValidationError::new("domain has an empty label (two dots, or a leading or trailing dot)"));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(ValidationError::new(format!("domain label `{label}` is longer than {MAX_LABEL_LEN} octets")));
        }
        if !label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(ValidationError::new(format!(
                "domain label `{label}` may hold only letters, digits and hyphens"
            )));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(ValidationError::new(format!("domain label `{label}` starts or ends with a hyphen")));
        }
    }
    let tld = labels[labels.len() - 1];
    if tld.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ValidationError::new("the last label is all digits: this looks like an IP address, not a domain"));
    }
    Ok(())
}

impl FromStr for DomainName {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DomainName::parse(s)
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A mailbox address in normal form: `local@domain`, Dot-string local part,
/// lower case, domain as A-labels.
///
/// Local parts are folded to lower case: RFC 5321 lets the receiving host
/// decide, and a mail system where `Alice@` and `alice@` are two people
/// would surprise everyone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    local: String,
    domain: DomainName,
}

impl Address {
    /// Parses and normalises an address.
    pub fn parse(input: &str) -> Result<Address, ValidationError> {
        let Some((local, domain)) = input.rsplit_once('@') else {
            return Err(ValidationError::new(format!("`{input}` is not an address: no `@`")));
        };
        let local = parse_local_part(local)?;
        let domain = DomainName::parse(domain)?;
        Address::from_parts(local, domain)
    }

    /// Joins a local part that is already normal with a domain.
    fn from_parts(local: String, domain: DomainName) -> Result<Address, ValidationError> {
        let len = local.len() + 1 + domain.as_str().len();
        if len > MAX_ADDRESS_LEN {
            return Err(ValidationError::new(format!("address is longer than {MAX_ADDRESS_LEN} octets")));
        }
        Ok(Address { local, domain })
    }

    /// The same local part in another domain (a domain alias rewrite).
    pub fn with_domain(&self, domain: &DomainName) -> Result<Address, ValidationError> {
        Address::from_parts(self.local.clone(), domain.clone())
    }

    /// The part before the `@`.
    pub fn local_part(&self) -> &str {
        &self.local
    }

    /// The part after the `@`.
    pub fn domain(&self) -> &DomainName {
        &self.domain
    }
}

/// Validates a Dot-string local part (RFC 5321 §4.1.2) and folds it to lower case.
fn parse_local_part(local: &str) -> Result<String, ValidationError> {
    if local.is_empty() {
        return Err(ValidationError::new("local part is empty"));
    }
    if local.len() > MAX_LOCAL_LEN {
        return Err(ValidationError::new(format!("local part is longer than {MAX_LOCAL_LEN} octets")));
    }
    if local.starts_with('"') {
        return Err(ValidationError::new("quoted local parts are not accepted"));
    }
    for atom in local.split('.') {
        if atom.is_empty() {
            return Err(ValidationError::new("local part has an empty atom (two dots, or a leading or trailing dot)"));
        }
        if let Some(bad) = atom.chars().find(|&c| !is_atext(c)) {
            return Err(ValidationError::new(format!("local part may not contain {bad:?}")));
        }
    }
    Ok(local.to_ascii_lowercase())
}

/// `atext` of RFC 5322 §3.2.3, as RFC 5321 uses it.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

impl FromStr for Address {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// What an alias document is keyed by: one address, or a whole domain
/// (`@example.com`, the catch-all).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AliasKey {
    /// `info@example.com`
    Address(Address),
    /// `@example.com`: every address of the domain that is neither a mailbox nor an alias.
    CatchAll(DomainName),
}

impl AliasKey {
    /// Parses `local@domain` or `@domain`.
    pub fn parse(input: &str) -> Result<AliasKey, ValidationError> {
        match input.strip_prefix('@') {
            Some(domain) => Ok(AliasKey::CatchAll(DomainName::parse(domain)?)),
            None => Ok(AliasKey::Address(Address::parse(input)?)),
        }
    }

    /// The domain the alias belongs to.
    pub fn domain(&self) -> &DomainName {
        match self {
            AliasKey::Address(addr) => addr.domain(),
            AliasKey::CatchAll(domain) => domain,
        }
    }
}

impl FromStr for AliasKey {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AliasKey::parse(s)
    }
}

impl fmt::Display for AliasKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AliasKey::Address(addr) => addr.fmt(f),
            AliasKey::CatchAll(domain) => write!(f, "@{domain}"),
        }
    }
}

macro_rules! string_serde {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
string_serde!(DomainName);
string_serde!(Address);
string_serde!(AliasKey);
