//! Addresses and domain names in the one normal form the store keeps.
//!
//! RFC 5321 §4.1.2 (Dot-string local parts), §4.5.3.1 (lengths), and
//! UTS #46 / RFC 5891 for internationalised domain names, which are stored
//! as lower-case A-labels (`xn--…`).
//! Quoted local parts and address literals (`[192.0.2.1]`) are refused:
//! they are legal on the wire but no mailbox of ours should need one.

use std::fmt;
use std::str::FromStr;

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
        // UTS #46 with STD3 rules and hyphen checks, as
        // `idna::domain_to_ascii_strict`, but with the DNS length checks left
        // to `check_ascii_domain`, whose errors say which limit was passed.
        let ascii = idna::uts46::Uts46::new()
            .to_ascii(
                input.as_bytes(),
                idna::uts46::AsciiDenyList::STD3,
                idna::uts46::Hyphens::Check,
                idna::uts46::DnsLength::Ignore,
            )
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

string_serde!(DomainName);
string_serde!(Address);
string_serde!(AliasKey);

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use super::*;

    /// A domain of exactly `len` octets made of 63-octet labels and a shorter last one.
    fn domain_of_len(len: usize) -> String {
        let mut labels = Vec::new();
        let mut left = len;
        while left > MAX_LABEL_LEN + 1 {
            labels.push("a".repeat(MAX_LABEL_LEN));
            left -= MAX_LABEL_LEN + 1;
        }
        labels.push("b".repeat(left));
        let domain = labels.join(".");
        assert_eq!(domain.len(), len);
        domain
    }

    fn check_address(input: &str, expect: &str) {
        let addr = Address::parse(input).unwrap_or_else(|err| panic!("`{input}` refused: {err}"));
        assert_eq!(addr.to_string(), expect, "normal form of `{input}`");
    }

    fn check_refused(input: &str) -> ValidationError {
        match Address::parse(input) {
            Ok(addr) => panic!("`{input}` accepted as `{addr}`"),
            Err(err) => err,
        }
    }

    #[test]
    fn plain_addresses_are_accepted() {
        check_address("alice@example.com", "alice@example.com");
        check_address("first.last+tag@mail.example.org", "first.last+tag@mail.example.org");
        check_address("!#$%&'*+-/=?^_`{|}~@example.com", "!#$%&'*+-/=?^_`{|}~@example.com");
        check_address("1@123.example", "1@123.example");
        check_address("a@a-b.c9", "a@a-b.c9");
    }

    #[test]
    fn upper_case_is_folded() {
        check_address("Alice@Example.COM", "alice@example.com");
        check_address("ALICE.SMITH@MAIL.EXAMPLE.ORG", "alice.smith@mail.example.org");
        check_address("bob@XN--BCHER-KVA.EXAMPLE", "bob@xn--bcher-kva.example");
        assert_eq!(DomainName::parse("EXAMPLE.Com").unwrap().as_str(), "example.com");
    }

    #[test]
    fn unicode_domains_become_a_labels() {
        check_address("bob@Bücher.example", "bob@xn--bcher-kva.example");
        check_address("bob@BÜCHER.example", "bob@xn--bcher-kva.example");
        let domain = DomainName::parse("Bücher.example").unwrap();
        assert_eq!(domain.as_str(), "xn--bcher-kva.example");
        assert_eq!(domain.to_unicode(), "bücher.example");
        assert_eq!(DomainName::parse("xn--bcher-kva.example"), Ok(domain.clone()));
        assert_eq!(DomainName::parse("例え.テスト").unwrap().as_str(), "xn--r8jz45g.xn--zckzah");
    }

    #[test]
    fn invalid_punycode_is_refused() {
        for domain in ["xn--.example", "xn--bcher-kv.example", "xn--999999999999999.example", "xn--a-ecp.example"] {
            assert!(DomainName::parse(domain).is_err(), "{domain} accepted");
        }
    }

    #[test]
    fn local_part_length_limit() {
        let domain = "example.com";
        check_address(&format!("{}@{domain}", "a".repeat(MAX_LOCAL_LEN)), &format!("{}@{domain}", "a".repeat(64)));
        let err = check_refused(&format!("{}@{domain}", "a".repeat(MAX_LOCAL_LEN + 1)));
        assert!(err.message.contains("64"), "{err}");
    }

    #[test]
    fn label_length_limit() {
        let longest = format!("{}.example", "a".repeat(MAX_LABEL_LEN));
        assert_eq!(DomainName::parse(&longest).unwrap().as_str(), longest);
        let too_long = format!("{}.example", "a".repeat(MAX_LABEL_LEN + 1));
        assert!(DomainName::parse(&too_long).is_err());
        // The A-label counts, not the Unicode form: 60 `ü` are 60 characters
        // but far more than 63 octets once encoded.
        assert!(DomainName::parse(&format!("{}.example", "ü".repeat(60))).is_err());
    }

    #[test]
    fn domain_length_limit() {
        let longest = domain_of_len(MAX_DOMAIN_LEN);
        assert_eq!(DomainName::parse(&longest).unwrap().as_str(), longest);
        let err = DomainName::parse(&domain_of_len(MAX_DOMAIN_LEN + 1)).unwrap_err();
        assert!(err.message.contains("253"), "{err}");
        // Far too long is refused before any IDNA work.
        assert!(DomainName::parse(&"a.".repeat(5000)).is_err());
    }

    #[test]
    fn address_length_limit() {
        let local = "a".repeat(MAX_LOCAL_LEN);
        let fits = format!("{local}@{}", domain_of_len(MAX_ADDRESS_LEN - MAX_LOCAL_LEN - 1));
        assert_eq!(fits.len(), 254);
        check_address(&fits, &fits);
        let too_long = format!("{local}@{}", domain_of_len(MAX_ADDRESS_LEN - MAX_LOCAL_LEN));
        assert_eq!(too_long.len(), 255);
        let err = check_refused(&too_long);
        assert!(err.message.contains("254"), "{err}");
    }

    #[test]
    fn with_domain_keeps_the_length_limit() {
        let addr = Address::parse(&format!("{}@example.com", "a".repeat(64))).unwrap();
        let short = DomainName::parse("example.net").unwrap();
        assert_eq!(addr.with_domain(&short).unwrap().to_string(), format!("{}@example.net", "a".repeat(64)));
        let long = DomainName::parse(&domain_of_len(MAX_DOMAIN_LEN)).unwrap();
        assert!(addr.with_domain(&long).is_err());
    }

    #[test]
    fn unusual_forms_are_refused() {
        for input in [
            "",
            "@",
            "alice",
            "alice@",
            "@example.com",
            "\"alice smith\"@example.com",
            "\"alice\"@example.com",
            "alice@[192.0.2.1]",
            "alice@[IPv6:2001:db8::1]",
            "alice@localhost",
            "alice@com",
            "alice@192.0.2.1",
            ".alice@example.com",
            "alice.@example.com",
            "al..ice@example.com",
            "alice@.example.com",
            "alice@example.com.",
            "alice@example..com",
            "alice smith@example.com",
            " alice@example.com",
            "alice@example.com ",
            "alice@exa mple.com",
            "alice@example.com\n",
            "alice@example.com\0",
            "al(ice@example.com",
            "al\\ice@example.com",
            "alice@b@example.com",
            "alice@-example.com",
            "alice@example-.com",
            "alice@exa_mple.com",
            "alice@example.c*m",
            "jörg@example.com",
            "alice@xn--.example",
        ] {
            check_refused(input);
        }
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        assert!(check_refused("alice@[192.0.2.1]").message.contains("domain name"));
        assert!(check_refused("\"a\"@example.com").message.contains("quoted"));
        assert!(check_refused("alice@localhost").message.contains("two"));
        assert!(check_refused("a..b@example.com").message.contains("two dots"));
        assert!(check_refused("alice").message.contains('@'));
        assert!(check_refused("alice@example..com").message.contains("empty label"));
        let long_label = format!("alice@{}.example", "a".repeat(64));
        assert!(check_refused(&long_label).message.contains("63"));
    }

    #[test]
    fn catch_all_keys() {
        let key = AliasKey::parse("@Example.COM").unwrap();
        assert_eq!(key, AliasKey::CatchAll(DomainName::parse("example.com").unwrap()));
        assert_eq!(key.to_string(), "@example.com");
        assert_eq!(key.domain().as_str(), "example.com");
        assert_eq!(AliasKey::parse(&key.to_string()), Ok(key));

        let key = AliasKey::parse("Info@Bücher.example").unwrap();
        assert_eq!(key.to_string(), "info@xn--bcher-kva.example");
        assert_eq!(key.domain().as_str(), "xn--bcher-kva.example");
        assert!(matches!(key, AliasKey::Address(_)));

        for bad in ["@", "@@example.com", "@localhost", "@[192.0.2.1]", "", "info@"] {
            assert!(AliasKey::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn serde_uses_the_normal_form() {
        let addr: Address = serde_json::from_value(serde_json::json!("Alice@Example.com")).unwrap();
        assert_eq!(serde_json::to_value(&addr).unwrap(), serde_json::json!("alice@example.com"));
        assert!(serde_json::from_value::<Address>(serde_json::json!("not an address")).is_err());
        let key: AliasKey = serde_json::from_value(serde_json::json!("@example.com")).unwrap();
        assert_eq!(serde_json::to_value(&key).unwrap(), serde_json::json!("@example.com"));
        let domain: DomainName = serde_json::from_value(serde_json::json!("Bücher.example")).unwrap();
        assert_eq!(serde_json::to_value(&domain).unwrap(), serde_json::json!("xn--bcher-kva.example"));
    }

    #[test]
    fn parts() {
        let addr = Address::parse("Alice@Example.com").unwrap();
        assert_eq!(addr.local_part(), "alice");
        assert_eq!(addr.domain().as_str(), "example.com");
        let parsed: Address = "alice@example.com".parse().unwrap();
        assert_eq!(parsed, addr);
    }
}
