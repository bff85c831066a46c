//! Valid documents built with few words, for tests.
//!
//! Each function panics on an invalid argument: fixtures are written by
//! tests, and a typo there should stop the test at once.

use couchmail_model::{
    Address, Alias, AliasKey, Document, Domain, DomainAlias, DomainName, Listing, ListingKey, Mailbox, PolicySettings,
    SieveName, SieveScript,
};

/// Parses a domain name.
pub fn domain_name(name: &str) -> DomainName {
    name.parse().unwrap_or_else(|e| panic!("fixture domain `{name}`: {e}"))
}

/// Parses an address.
pub fn address(addr: &str) -> Address {
    addr.parse().unwrap_or_else(|e| panic!("fixture address `{addr}`: {e}"))
}

/// An active domain with no limits.
pub fn domain(name: &str) -> Document {
    Document::Domain(Domain {
        name: domain_name(name),
        active: true,
        quota_default: None,
        max_mailboxes: None,
        policy: PolicySettings::default(),
    })
}

/// `name` as an alias of domain `target`.
pub fn domain_alias(name: &str, target: &str) -> Document {
    Document::DomainAlias(DomainAlias { name: domain_name(name), target: domain_name(target) })
}

/// An active mailbox without a password.
pub fn mailbox(addr: &str) -> Document {
    Document::Mailbox(Mailbox {
        address: address(addr),
        name: String::new(),
        password: None,
        active: true,
        quota_bytes: None,
        roles: Vec::new(),
        sieve_active: None,
        policy: PolicySettings::default(),
    })
}

/// An active alias (`@domain` for a catch-all) to `targets`.
pub fn alias(key: &str, targets: &[&str]) -> Document {
    let key: AliasKey = key.parse().unwrap_or_else(|e| panic!("fixture alias `{key}`: {e}"));
    Document::Alias(Alias { key, targets: targets.iter().map(|t| address(t)).collect(), active: true })
}

/// A Sieve script of mailbox `owner`.
pub fn sieve(owner: &str, name: &str, script: &str) -> Document {
    Document::Sieve(SieveScript {
        owner: address(owner),
        name: SieveName::parse(name).unwrap_or_else(|e| panic!("fixture sieve name `{name}`: {e}")),
        script: script.to_owned(),
    })
}

/// `document` (a domain, mailbox or alias) switched off.
pub fn inactive(mut document: Document) -> Document {
    match &mut document {
        Document::Domain(domain) => domain.active = false,
        Document::Mailbox(mailbox) => mailbox.active = false,
        Document::Alias(alias) => alias.active = false,
        _ => panic!("no active flag on {}", document.id()),
    }
    document
}

/// `mailbox` (a mailbox document) with `name` as its active Sieve script.
pub fn with_sieve_active(mut mailbox: Document, name: &str) -> Document {
    match &mut mailbox {
        Document::Mailbox(m) => {
            m.sieve_active = Some(SieveName::parse(name).unwrap_or_else(|e| panic!("fixture sieve name `{name}`: {e}")))
        }
        _ => panic!("{} is no mailbox", mailbox.id()),
    }
    mailbox
}

/// An active domain whose new mailboxes get `bytes` of quota unless they name their own.
pub fn domain_with_quota_default(name: &str, bytes: u64) -> Document {
    Document::Domain(Domain {
        name: domain_name(name),
        active: true,
        quota_default: Some(bytes),
        max_mailboxes: None,
        policy: PolicySettings::default(),
    })
}

/// `document` (a domain or mailbox) with `policy` as its own policy settings.
pub fn with_policy(mut document: Document, policy: PolicySettings) -> Document {
    match &mut document {
        Document::Domain(domain) => domain.policy = policy,
        Document::Mailbox(mailbox) => mailbox.policy = policy,
        _ => panic!("no policy settings on {}", document.id()),
    }
    document
}

/// The listing with key `key` (`global:block:client:192.0.2.0/24`, `mailbox:alice@example.com:allow:sender:…`),
/// given in any form [`ListingKey::parse`] normalises.
pub fn listing(key: &str) -> Document {
    let key = ListingKey::parse(key).unwrap_or_else(|e| panic!("fixture listing `{key}`: {e}"));
    Document::Listing(Listing { key, note: String::new(), created: None })
}
