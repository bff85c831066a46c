//! Property tests of normalisation and documents, run against the public API.
//!
//! (a) normalising is idempotent, (b) whatever is accepted is an RFC 5321
//! address (checked by an independent checker written here), (c) IDNA
//! domains round-trip through their Unicode form, and (d) every document
//! survives being stored and read back.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use couchmail_model::{
    Address, Alias, AliasKey, Document, Domain, DomainAlias, DomainName, IpNetwork, Listing, ListingAction, ListingKey,
    ListingScope, ListingValue, MAX_ALIAS_TARGETS, MAX_QUOTA_BYTES, MIN_QUOTA_BYTES, Mailbox, PasswordHash,
    PolicySettings, Role, SieveName, SieveScript, SpamScore, Token, TokenPrincipal,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// An independent RFC 5321 checker: byte by byte from the grammar, sharing no
// code with the crate.

/// `atext` (RFC 5322 §3.2.3): ALPHA / DIGIT and these specials.
const ATEXT_SPECIALS: &[u8] = b"!#$%&'*+-/=?^_`{|}~";

/// `Dot-string = Atom *("." Atom)`, `Atom = 1*atext` (RFC 5321 §4.1.2).
fn is_dot_string(local: &[u8]) -> bool {
    let mut atom_len = 0;
    for &byte in local {
        if byte == b'.' {
            if atom_len == 0 {
                return false;
            }
            atom_len = 0;
        } else if byte.is_ascii_alphanumeric() || ATEXT_SPECIALS.contains(&byte) {
            atom_len += 1;
        } else {
            return false;
        }
    }
    atom_len > 0
}

/// `Domain = sub-domain *("." sub-domain)`, `sub-domain = Let-dig [Ldh-str]`
/// (RFC 5321 §4.1.2), labels of at most 63 octets (RFC 1035 §2.3.4).
fn is_ldh_domain(domain: &[u8]) -> bool {
    domain.split(|&byte| byte == b'.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label[0].is_ascii_alphanumeric()
            && label[label.len() - 1].is_ascii_alphanumeric()
            && label.iter().all(|&byte| byte.is_ascii_alphanumeric() || byte == b'-')
    })
}

/// A normal-form domain: LDH, at most 253 octets, lower case.
fn is_normal_domain(domain: &str) -> bool {
    domain.is_ascii()
        && !domain.bytes().any(|byte| byte.is_ascii_uppercase())
        && domain.len() <= 253
        && is_ldh_domain(domain.as_bytes())
}

/// A normal-form address: `Mailbox = Local-part "@" Domain` with a
/// Dot-string local part of at most 64 octets, at most 254 octets in all,
/// ASCII, lower case.
fn is_normal_address(address: &str) -> bool {
    let bytes = address.as_bytes();
    let Some(at) = bytes.iter().rposition(|&byte| byte == b'@') else {
        return false;
    };
    let (local, domain) = (&address[..at], &address[at + 1..]);
    address.is_ascii()
        && address.len() <= 254
        && !address.bytes().any(|byte| byte.is_ascii_uppercase())
        && local.len() <= 64
        && is_dot_string(local.as_bytes())
        && is_normal_domain(domain)
}

#[test]
fn independent_checker_can_say_no() {
    // The checker must reject what it should, or property (b) proves nothing.
    for bad in [
        "Alice@example.com",
        "a..b@example.com",
        ".a@example.com",
        "a@-example.com",
        "a@example-.com",
        "a@exa_mple.com",
        "\"a\"@example.com",
        "a b@example.com",
        "a@example..com",
        "jörg@example.com",
        "a@bücher.example",
        "example.com",
    ] {
        assert!(!is_normal_address(bad), "{bad}");
    }
    assert!(!is_normal_address(&format!("{}@example.com", "a".repeat(65))));
    assert!(!is_normal_address(&format!("a@{}.com", "a".repeat(64))));
    assert!(is_normal_address("first.last+tag@xn--bcher-kva.example"));
}

// ---------------------------------------------------------------------------
// Generators.

/// A local part that is mostly plausible: atext atoms in mixed case, now and
/// then something that is not allowed (a space, a quote, an empty atom, a
/// non-ASCII letter), sometimes near the 64-octet limit.
fn local_part() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,12}(\\.[A-Za-z0-9_+-]{1,12}){0,3}",
        1 => "[a-zA-Z]{55,70}",
        1 => "[a-z. \"()<>@,;:\\\\\\[\\]äé]{0,10}",
    ]
}

/// A domain label: ASCII LDH in mixed case, Unicode letters that IDNA maps,
/// or, now and then, something invalid or too long.
fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        5 => "[A-Za-z0-9][A-Za-z0-9-]{0,10}[A-Za-z0-9]",
        3 => "[a-zA-ZäöüÄÖÜßéèñçøåÅ日本語中文пример例えテスト]{1,12}",
        1 => "[a-z]{60,66}",
        1 => "[a-z_ -]{0,4}",
        1 => Just("xn--bcher-kva".to_owned()),
        1 => "xn--[a-z0-9]{1,8}",
    ]
}

/// A domain of two to four labels ending in a letters-only TLD most of the time.
fn domain() -> impl Strategy<Value = String> {
    (prop::collection::vec(label(), 1..4), prop_oneof![3 => "[a-zA-Z]{2,6}", 1 => label()]).prop_map(
        |(mut labels, tld)| {
            labels.push(tld);
            labels.join(".")
        },
    )
}

/// Strings shaped like addresses, valid or nearly so.
fn plausible_address() -> impl Strategy<Value = String> {
    (local_part(), domain()).prop_map(|(local, domain)| format!("{local}@{domain}"))
}

/// Any string at all, or one made of the characters addresses are made of.
fn any_address_input() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => any::<String>(),
        2 => "[a-zA-Z0-9.@\\-_+ \"\\[\\]äßü日]{0,30}",
        4 => plausible_address(),
    ]
}

/// An address that parses, in normal form.
fn address() -> impl Strategy<Value = Address> {
    plausible_address().prop_filter_map("not an address", |input| Address::parse(&input).ok())
}

/// A domain name that parses, in normal form.
fn domain_name() -> impl Strategy<Value = DomainName> {
    domain().prop_filter_map("not a domain", |input| DomainName::parse(&input).ok())
}

fn quota() -> impl Strategy<Value = Option<u64>> {
    prop::option::of(MIN_QUOTA_BYTES..=MAX_QUOTA_BYTES)
}

/// Hashes made by independent tools (see the unit tests in password.rs for
/// the commands); hashing anew for each case would be far too slow.
const HASHES: [&str; 3] = [
    "{SHA256-CRYPT}$5$saltsalt$lJBntEo62mus/ovk43htFvkabtoMEkzjosQqenAm4h8",
    "{BLF-CRYPT}$2y$05$S8MBj7kjUW0LZeBGfB/oq.38Ahv7.pauaxqqCVKDwdrQkGIQpUf7C",
    "{ARGON2ID}$argon2id$v=19$m=1024,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$avUvXNtnn/GNZVscoS8F6XVDSn5QnlrimsKMNNw4iI8",
];

fn sieve_name() -> impl Strategy<Value = SieveName> {
    "[A-Za-z0-9 :._é☀-]{1,20}".prop_filter_map("not a sieve name", |name| SieveName::parse(&name).ok())
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Admin), domain_name().prop_map(Role::DomainAdmin)]
}

/// Policy settings that pass their own rules: a reject score above the threshold.
fn policy() -> impl Strategy<Value = PolicySettings> {
    let score = || prop::option::of((0..=1000i32).prop_map(|tenths| SpamScore::from_tenths(tenths).unwrap()));
    let limit = || prop::option::of(0..=couchmail_model::MAX_HOURLY_LIMIT);
    (prop::option::of(any::<bool>()), score(), score(), limit(), limit())
        .prop_map(|(greylisting, spam_threshold, spam_reject, messages_per_hour, recipients_per_hour)| PolicySettings {
            greylisting,
            spam_threshold,
            spam_reject,
            messages_per_hour,
            recipients_per_hour,
        })
        .prop_filter("reject at or below the threshold", |policy| policy.validate().is_ok())
}

fn listing() -> impl Strategy<Value = Listing> {
    let scope = prop_oneof![
        Just(ListingScope::Global),
        domain_name().prop_map(ListingScope::Domain),
        address().prop_map(ListingScope::Mailbox),
    ];
    let action = prop_oneof![Just(ListingAction::Block), Just(ListingAction::Allow)];
    let network = prop_oneof![
        (any::<[u8; 4]>(), 0..=32u8).prop_map(|(octets, len)| IpNetwork::containing(octets.into(), len)),
        (any::<[u16; 8]>(), 0..=128u8)
            .prop_filter("IPv4-mapped", |(segments, _)| {
                std::net::Ipv6Addr::from(*segments).to_ipv4_mapped().is_none()
            })
            .prop_map(|(segments, len)| IpNetwork::containing(segments.into(), len)),
    ];
    let value = prop_oneof![
        address().prop_map(ListingValue::Sender),
        domain_name().prop_map(ListingValue::SenderDomain),
        network.prop_map(ListingValue::Client),
    ];
    (scope, action, value, "[^\\p{Cc}]{0,30}", prop::option::of(any::<u64>())).prop_map(
        |(scope, action, value, note, created)| Listing { key: ListingKey { scope, action, value }, note, created },
    )
}

fn document() -> impl Strategy<Value = Document> {
    let domain = (domain_name(), any::<bool>(), quota(), prop::option::of(1u32..), policy()).prop_map(
        |(name, active, quota_default, max_mailboxes, policy)| {
            Document::Domain(Domain { name, active, quota_default, max_mailboxes, policy })
        },
    );
    let domain_alias = (domain_name(), domain_name())
        .prop_filter("an alias of itself", |(name, target)| name != target)
        .prop_map(|(name, target)| Document::DomainAlias(DomainAlias { name, target }));
    let mailbox = (
        address(),
        "[^\\p{Cc}]{0,30}",
        prop::option::of(prop::sample::select(&HASHES[..])),
        any::<bool>(),
        quota(),
        prop::collection::btree_set(role(), 0..3),
        prop::option::of(sieve_name()),
        policy(),
    )
        .prop_map(|(address, name, password, active, quota_bytes, roles, sieve_active, policy)| {
            Document::Mailbox(Mailbox {
                address,
                name,
                password: password.map(|hash| PasswordHash::parse(hash).unwrap()),
                active,
                quota_bytes,
                roles: roles.into_iter().collect(),
                sieve_active,
                policy,
            })
        });
    let alias_key = prop_oneof![address().prop_map(AliasKey::Address), domain_name().prop_map(AliasKey::CatchAll)];
    let alias = (alias_key, prop::collection::btree_set(address(), 1..5), any::<bool>())
        .prop_filter("an alias of itself", |(key, targets, _)| {
            !targets.iter().any(|target| AliasKey::Address(target.clone()) == *key)
        })
        .prop_map(|(key, targets, active)| {
            assert!(targets.len() <= MAX_ALIAS_TARGETS);
            Document::Alias(Alias { key, targets: targets.into_iter().collect(), active })
        });
    let sieve = (address(), sieve_name(), "[^\\x00]{0,200}")
        .prop_map(|(owner, name, script)| Document::Sieve(SieveScript { owner, name, script }));
    let principal = prop_oneof![Just(TokenPrincipal::Admin), address().prop_map(TokenPrincipal::Mailbox)];
    let token = (principal, ".{0,20}", any::<u64>()).prop_map(|(principal, label, created)| {
        let (token, _bearer) = Token::generate(principal, label, created);
        Document::Token(token)
    });
    prop_oneof![domain, domain_alias, mailbox, alias, sieve, token, listing().prop_map(Document::Listing)]
}

// ---------------------------------------------------------------------------
// The properties.

proptest! {
    /// (a) Normalising is idempotent, and (b) what is accepted is valid.
    #[test]
    fn accepted_addresses_are_normal_and_stable(input in any_address_input()) {
        if let Ok(addr) = Address::parse(&input) {
            let normal = addr.to_string();
            prop_assert!(is_normal_address(&normal), "`{}` accepted as `{}`", input, normal);
            prop_assert_eq!(Address::parse(&normal), Ok(addr.clone()));
            prop_assert_eq!(format!("{}@{}", addr.local_part(), addr.domain()), normal);
        }
    }

    /// (a) and (b) for plausible addresses, of which many are accepted;
    /// ASCII input that is accepted is the same address, lower-cased.
    #[test]
    fn plausible_addresses_normalise(input in plausible_address()) {
        if let Ok(addr) = Address::parse(&input) {
            let normal = addr.to_string();
            prop_assert!(is_normal_address(&normal), "`{}` accepted as `{}`", input, normal);
            prop_assert_eq!(Address::parse(&normal), Ok(addr));
            if input.is_ascii() {
                prop_assert_eq!(normal, input.to_ascii_lowercase());
            }
        }
    }

    /// (a) and (b) for domains and alias keys.
    #[test]
    fn accepted_domains_are_normal_and_stable(input in prop_oneof![domain(), any::<String>()]) {
        if let Ok(domain) = DomainName::parse(&input) {
            prop_assert!(is_normal_domain(domain.as_str()), "`{}` accepted as `{}`", input, domain);
            prop_assert!(domain.as_str().contains('.'));
            prop_assert_eq!(DomainName::parse(domain.as_str()), Ok(domain.clone()));
            let catch_all = AliasKey::parse(&format!("@{input}"));
            prop_assert_eq!(catch_all, Ok(AliasKey::CatchAll(domain)));
        }
    }

    /// (c) IDNA round trip: the Unicode form parses back to the same domain.
    #[test]
    fn idna_round_trips(input in domain()) {
        if let Ok(domain) = DomainName::parse(&input) {
            let unicode = domain.to_unicode();
            prop_assert_eq!(DomainName::parse(&unicode), Ok(domain.clone()), "via `{}`", unicode);
            // Plain ASCII domains read the same in both forms.
            if !domain.as_str().split('.').any(|label| label.starts_with("xn--")) {
                prop_assert_eq!(unicode, domain.as_str());
            }
        }
    }

    /// (d) Every document survives being stored and read back.
    #[test]
    fn documents_round_trip(doc in document()) {
        prop_assert_eq!(doc.validate(), Ok(()));
        let body = doc.to_body();
        prop_assert_eq!(Document::from_stored(&doc.id(), &body), Ok(doc.clone()));
        // Through JSON text too, as the store keeps it.
        let text = serde_json::to_string(&body).unwrap();
        let reread: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(Document::from_stored(&doc.id(), &reread), Ok(doc));
    }
}
