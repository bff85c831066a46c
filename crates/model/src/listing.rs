//! Block and allow listings (issue #5): one document per entry of a blocklist or allowlist.
//!
//! A [`Listing`] says that mail from a sender address, from a sender domain (and its subdomains),
//! or from a client IP network is blocked (refused at RCPT with 554 5.7.1) or allowed (never
//! greylisted), for everyone (scope `global`, the admin's), for one domain (scope `domain`, its
//! domain admins'), or for one mailbox (scope `mailbox`, its owner's).
//!
//! Everything that identifies a listing lives in its `_id`, in one normal form, so that the
//! same entry can never be stored twice:
//!
//! ```text
//! listing:<scope>:<action>:<kind>:<value>
//! listing:global:block:client:192.0.2.0/24
//! listing:domain:example.com:allow:sender-domain:partner.example
//! listing:mailbox:alice@example.com:block:sender:spam@bad.example
//! listing:global:block:client:2001:db8::/32
//! ```
//!
//! The body holds only an optional `note` and `created` time. The name "listing" is the entry's
//! own: "blocklist" or "allowlist" would name the whole list, and one document is one line of it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::{Address, DomainName, ValidationError};

/// Longest note on a listing, in characters.
pub const MAX_LISTING_NOTE_CHARS: usize = 256;

/// Whose mail a listing applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListingScope {
    /// Every recipient (`global`): the admin's.
    Global,
    /// Every recipient in one domain (`domain:<domain>`): its domain admins'.
    Domain(DomainName),
    /// One mailbox (`mailbox:<address>`): its owner's.
    Mailbox(Address),
}

impl ListingScope {
    /// The domain the scope belongs to, if any.
    pub fn domain(&self) -> Option<&DomainName> {
        match self {
            ListingScope::Global => None,
            ListingScope::Domain(domain) => Some(domain),
            ListingScope::Mailbox(address) => Some(address.domain()),
        }
    }

    /// Which of the three scopes this is, for messages: `global`, `domain` or `mailbox`.
    pub fn level(&self) -> &'static str {
        match self {
            ListingScope::Global => "global",
            ListingScope::Domain(_) => "domain",
            ListingScope::Mailbox(_) => "mailbox",
        }
    }
}

impl fmt::Display for ListingScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListingScope::Global => f.write_str("global"),
            ListingScope::Domain(domain) => write!(f, "domain:{domain}"),
            ListingScope::Mailbox(address) => write!(f, "mailbox:{address}"),
        }
    }
}

impl FromStr for ListingScope {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "global" {
            return Ok(ListingScope::Global);
        }
        if let Some(domain) = s.strip_prefix("domain:") {
            return Ok(ListingScope::Domain(DomainName::parse(domain)?));
        }
        if let Some(address) = s.strip_prefix("mailbox:") {
            return Ok(ListingScope::Mailbox(Address::parse(address)?));
        }
        Err(ValidationError::new(format!(
            "unknown scope `{s}`: use `global`, `domain:<domain>` or `mailbox:<address>`"
        )))
    }
}

/// What a listing does to the mail it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListingAction {
    /// `block`: refuse at RCPT with 554 5.7.1.
    Block,
    /// `allow`: accept without greylisting (a block of a wider scope does not apply).
    Allow,
}

impl ListingAction {
    /// As written in the `_id`.
    pub fn as_str(self) -> &'static str {
        match self {
            ListingAction::Block => "block",
            ListingAction::Allow => "allow",
        }
    }
}

impl fmt::Display for ListingAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ListingAction {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "block" => Ok(ListingAction::Block),
            "allow" => Ok(ListingAction::Allow),
            _ => Err(ValidationError::new(format!("unknown action `{s}`: use `block` or `allow`"))),
        }
    }
}

/// What a listing matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListingKind {
    /// `sender`: the envelope sender address (also with a `+extension`).
    Sender,
    /// `sender-domain`: the envelope sender's domain or any subdomain of it.
    SenderDomain,
    /// `client`: the connecting client's IP address lies in a network.
    Client,
}

impl ListingKind {
    /// Every kind.
    pub const ALL: [ListingKind; 3] = [ListingKind::Sender, ListingKind::SenderDomain, ListingKind::Client];

    /// As written in the `_id`.
    pub fn as_str(self) -> &'static str {
        match self {
            ListingKind::Sender => "sender",
            ListingKind::SenderDomain => "sender-domain",
            ListingKind::Client => "client",
        }
    }
}

impl fmt::Display for ListingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ListingKind {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ListingKind::ALL.into_iter().find(|kind| kind.as_str() == s).ok_or_else(|| {
            ValidationError::new(format!("unknown kind `{s}`: use `sender`, `sender-domain` or `client`"))
        })
    }
}

/// The value a listing matches, typed by its kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListingValue {
    /// A sender address.
    Sender(Address),
    /// A sender domain, which also covers its subdomains.
    SenderDomain(DomainName),
    /// A client network (a single address is a /32 or /128).
    Client(IpNetwork),
}

impl ListingValue {
    /// Parses `text` as a value of `kind`, normalising it (lower case, A-labels, host bits cleared).
    pub fn parse(kind: ListingKind, text: &str) -> Result<ListingValue, ValidationError> {
        Ok(match kind {
            ListingKind::Sender => ListingValue::Sender(Address::parse(text)?),
            ListingKind::SenderDomain => ListingValue::SenderDomain(DomainName::parse(text)?),
            ListingKind::Client => ListingValue::Client(IpNetwork::parse(text)?),
        })
    }

    /// Its kind.
    pub fn kind(&self) -> ListingKind {
        match self {
            ListingValue::Sender(_) => ListingKind::Sender,
            ListingValue::SenderDomain(_) => ListingKind::SenderDomain,
            ListingValue::Client(_) => ListingKind::Client,
        }
    }
}

impl fmt::Display for ListingValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListingValue::Sender(address) => address.fmt(f),
            ListingValue::SenderDomain(domain) => domain.fmt(f),
            ListingValue::Client(network) => network.fmt(f),
        }
    }
}

/// What identifies a listing: the key part of its `_id`, `<scope>:<action>:<kind>:<value>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListingKey {
    /// Whose mail it applies to.
    pub scope: ListingScope,
    /// Block or allow.
    pub action: ListingAction,
    /// What it matches.
    pub value: ListingValue,
}

impl ListingKey {
    /// Parses a key, normalising its parts; [`ListingKey::to_string`] gives the normal form.
    pub fn parse(input: &str) -> Result<ListingKey, ValidationError> {
        let malformed = || {
            ValidationError::new(
                "a listing key is `<scope>:<action>:<kind>:<value>`, the scope being `global`, \
                 `domain:<domain>` or `mailbox:<address>`",
            )
        };
        // Neither a domain nor an address holds a `:`, so the scope ends at the first `:` after its
        // own prefix; the value comes last because an IPv6 network is full of them.
        let (scope_text, rest) = if let Some(rest) = input.strip_prefix("global:") {
            ("global", rest)
        } else {
            let (level, rest) = input.split_once(':').ok_or_else(malformed)?;
            let (name, rest) = rest.split_once(':').ok_or_else(malformed)?;
            (input.get(..level.len() + 1 + name.len()).ok_or_else(malformed)?, rest)
        };
        let mut parts = rest.splitn(3, ':');
        let (Some(action), Some(kind), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(malformed());
        };
        let kind: ListingKind = kind.parse()?;
        Ok(ListingKey { scope: scope_text.parse()?, action: action.parse()?, value: ListingValue::parse(kind, value)? })
    }
}

impl fmt::Display for ListingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}:{}", self.scope, self.action, self.value.kind(), self.value)
    }
}

impl FromStr for ListingKey {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ListingKey::parse(s)
    }
}

/// One entry of a blocklist or an allowlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Scope, action and value (from the `_id`).
    pub key: ListingKey,
    /// Why it was listed, for the people who manage the list (never shown to senders).
    pub note: String,
    /// When it was listed, seconds since the Unix epoch; set by whoever creates it.
    pub created: Option<u64>,
}

impl Listing {
    /// Checks the rules of the body.
    pub(crate) fn validate(&self) -> Result<(), ValidationError> {
        if self.note.chars().count() > MAX_LISTING_NOTE_CHARS {
            return Err(ValidationError::field("note", format!("is longer than {MAX_LISTING_NOTE_CHARS} characters")));
        }
        if self.note.chars().any(char::is_control) {
            return Err(ValidationError::field("note", "may not contain control characters"));
        }
        Ok(())
    }
}

/// An IPv4 or IPv6 network in CIDR notation, host bits cleared; a whole-length prefix is one address.
///
/// The normal form is what [`IpNetwork::to_string`] writes: the network address in Rust's standard
/// form (RFC 5952 for IPv6, lower case, `::` compressed), then `/<prefix>` unless the prefix covers the
/// whole address (`192.0.2.1`, `192.0.2.0/24`, `2001:db8::/32`). IPv4-mapped IPv6 addresses are refused:
/// write the IPv4 address, which is how Postfix reports such a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNetwork {
    address: IpAddr,
    prefix_len: u8,
}

impl IpNetwork {
    /// Parses `address` or `address/prefix`, clearing host bits (`192.0.2.7/24` is `192.0.2.0/24`).
    pub fn parse(input: &str) -> Result<IpNetwork, ValidationError> {
        let (address_text, prefix_text) = match input.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (input, None),
        };
        let address: IpAddr = address_text
            .parse()
            .map_err(|_| ValidationError::new(format!("`{address_text}` is not an IPv4 or IPv6 address")))?;
        if let IpAddr::V6(v6) = address
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            return Err(ValidationError::new(format!("`{address_text}` is an IPv4-mapped address: write `{v4}`")));
        }
        let max_len = max_prefix_len(address);
        let prefix_len = match prefix_text {
            None => max_len,
            Some(text) if !text.is_empty() && text.len() <= 3 && text.bytes().all(|b| b.is_ascii_digit()) => {
                text.parse::<u8>().ok().filter(|len| *len <= max_len).ok_or_else(|| {
                    ValidationError::new(format!("prefix length `{text}` is longer than the address ({max_len} bits)"))
                })?
            }
            Some(text) => return Err(ValidationError::new(format!("prefix length `{text}` is not a number"))),
        };
        Ok(IpNetwork::containing(address, prefix_len))
    }

    /// The network of `prefix_len` bits that holds `address` (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address); the prefix is cut to the address's length.
    pub fn containing(address: IpAddr, prefix_len: u8) -> IpNetwork {
        let address = address.to_canonical();
        let prefix_len = prefix_len.min(max_prefix_len(address));
        let address = match address {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix_len)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix_len)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        };
        IpNetwork { address, prefix_len }
    }

    /// The network address.
    pub fn address(&self) -> IpAddr {
        self.address
    }

    /// How many leading bits make the network.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `address` (IPv4-mapped IPv6 counting as IPv4) lies in this network.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        address.is_ipv4() == self.address.is_ipv4() && IpNetwork::containing(address, self.prefix_len) == *self
    }

    /// The network with its prefix length always written (`192.0.2.1/32`, `2001:db8::1/128`), as Postfix's
    /// cidr tables list networks and greylisting keys its state; [`IpNetwork::to_string`] is the normal form,
    /// which leaves out a whole-length prefix.
    pub fn to_cidr_string(&self) -> String {
        format!("{}/{}", self.address, self.prefix_len)
    }
}

fn max_prefix_len(address: IpAddr) -> u8 {
    if address.is_ipv4() { 32 } else { 128 }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix_len == max_prefix_len(self.address) {
            write!(f, "{}", self.address)
        } else {
            write!(f, "{}/{}", self.address, self.prefix_len)
        }
    }
}

impl FromStr for IpNetwork {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IpNetwork::parse(s)
    }
}

string_serde!(IpNetwork);
string_serde!(ListingScope);
string_serde!(ListingAction);
string_serde!(ListingKind);

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_to_one_normal_form() {
        for (input, normal) in [
            ("192.0.2.1", "192.0.2.1"),
            ("192.0.2.1/32", "192.0.2.1"),
            ("192.0.2.77/24", "192.0.2.0/24"),
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("2001:DB8::1", "2001:db8::1"),
            ("2001:db8:0:0::/32", "2001:db8::/32"),
            ("2001:db8:1:2:3:4:5:6/64", "2001:db8:1:2::/64"),
            ("::/0", "::/0"),
            ("::1/128", "::1"),
        ] {
            assert_eq!(IpNetwork::parse(input).unwrap().to_string(), normal, "{input}");
        }
        for bad in [
            "",
            "192.0.2",
            "192.0.2.1/33",
            "192.0.2.1/",
            "192.0.2.1/-1",
            "192.0.2.1/ 8",
            "2001:db8::/129",
            "::ffff:192.0.2.1",
            "example.com",
            "192.0.2.1/24/8",
            "192.0.2.1/0024",
        ] {
            assert!(IpNetwork::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn networks_contain_their_addresses() {
        let net = IpNetwork::parse("192.0.2.0/24").unwrap();
        assert!(net.contains("192.0.2.255".parse().unwrap()));
        assert!(net.contains("::ffff:192.0.2.9".parse().unwrap()), "mapped addresses count as IPv4");
        assert!(!net.contains("192.0.3.0".parse().unwrap()));
        assert!(!net.contains("::c000:200".parse().unwrap()), "another family");
        let v6 = IpNetwork::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(IpNetwork::parse("0.0.0.0/0").unwrap().contains("203.0.113.5".parse().unwrap()));
        let one = IpNetwork::parse("198.51.100.7").unwrap();
        assert!(one.contains("198.51.100.7".parse().unwrap()) && !one.contains("198.51.100.8".parse().unwrap()));
        assert_eq!(IpNetwork::containing("198.51.100.7".parse().unwrap(), 24).to_string(), "198.51.100.0/24");
        assert_eq!(IpNetwork::containing("198.51.100.7".parse().unwrap(), 200).to_string(), "198.51.100.7");
    }

    #[test]
    fn the_cidr_form_always_writes_the_prefix() {
        for (input, cidr) in [
            ("192.0.2.1", "192.0.2.1/32"),
            ("192.0.2.77/24", "192.0.2.0/24"),
            ("2001:db8::1", "2001:db8::1/128"),
            ("::/0", "::/0"),
        ] {
            assert_eq!(IpNetwork::parse(input).unwrap().to_cidr_string(), cidr, "{input}");
        }
        let mapped = IpNetwork::containing("::ffff:192.0.2.9".parse().unwrap(), 120);
        assert_eq!(mapped.to_cidr_string(), "192.0.2.9/32", "a mapped address is its IPv4 address");
    }

    #[test]
    fn keys_parse_and_print() {
        for key in [
            "global:block:client:192.0.2.0/24",
            "global:allow:client:2001:db8::/32",
            "global:block:sender:spam@bad.example",
            "domain:example.com:allow:sender-domain:partner.example",
            "mailbox:alice@example.com:block:sender:bob@example.net",
            "mailbox:alice@example.com:block:client:2001:db8::1",
        ] {
            assert_eq!(ListingKey::parse(key).unwrap().to_string(), key);
        }
        let key = ListingKey::parse("Mailbox:Alice@Example.com:block:sender:Bob@Example.NET");
        assert!(key.is_err(), "the scope level is case-sensitive");
        let key = ListingKey::parse("mailbox:Alice@Example.com:block:sender:Bob@Example.NET").unwrap();
        assert_eq!(key.to_string(), "mailbox:alice@example.com:block:sender:bob@example.net");
        assert_eq!(key.scope.level(), "mailbox");
        assert_eq!(key.scope.domain().map(DomainName::as_str), Some("example.com"));
        for bad in [
            "",
            "global",
            "global:block",
            "global:block:client",
            "global:deny:client:192.0.2.1",
            "global:block:helo:example.com",
            "global:block:client:example.com",
            "global:block:sender:not-an-address",
            "domain:block:client:192.0.2.1",
            "domain:localhost:block:client:192.0.2.1",
            "mailbox:alice:block:client:192.0.2.1",
            "user:alice@example.com:block:client:192.0.2.1",
        ] {
            assert!(ListingKey::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
