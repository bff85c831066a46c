//! What the policy service asks at RCPT time (issue #5): whose listings and settings apply to a
//! recipient, which listing matches a delivery attempt, and the policy settings a mailbox inherits.
//!
//! # Whose listings apply
//!
//! Postfix's policy service sees the recipient as the client sent it, before any alias expansion.
//! [`Snapshot::recipient_scope`] resolves it:
//! - the *domain* scope is the real domain the address belongs to (an alias domain's target), when
//!   it is one of ours: mail addressed to a domain is that domain's admins' business;
//! - the *mailbox* scope is the one mailbox the mail ends up in: the address's own mailbox (with
//!   `+extension`, through an alias domain), or the single local mailbox an alias chain leads to.
//!   An alias that reaches several mailboxes, or any address outside, has no mailbox scope: one
//!   user's list must not decide for the others who share the alias.
//!
//! # Precedence
//!
//! [`Snapshot::find_listing`] looks at the mailbox scope, then the domain, then the global one, and
//! the first scope holding any matching listing decides; within a scope an allow beats a block.
//! So a user may accept a sender that the admin blocked for everyone (for their own mail only), and
//! a user's block holds even where the domain allows. Within one scope and action the match is
//! looked for sender address first, then sender domain (nearest first), then client network
//! (longest prefix first).
//!
//! # Matching
//!
//! - `sender`: the envelope sender, lower-cased, as sent or with its `+extension` removed;
//!   the null sender matches no sender listing.
//! - `sender-domain`: the sender's domain or any parent of it (`bad.example` covers
//!   `mail.bad.example`), IDNA domains compared as A-labels.
//! - `client`: the client address (an IPv4-mapped IPv6 address counting as IPv4) lies in the network.

use std::collections::HashSet;
use std::net::IpAddr;

use couchmail_model::{DomainName, IpNetwork, ListingAction, ListingKind, PolicySettings};

use crate::entry::{DomainEntry, ListingEntry, domain_of};
use crate::snapshot::{fold_case, strip_extension};
use crate::{MAX_ALIAS_DEPTH, MAX_ALIAS_VISITS, Recipient, Snapshot};

/// Whose listings and settings apply to mail for one recipient (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecipientScope {
    /// The real domain the recipient belongs to, when it is one of ours.
    pub domain: Option<String>,
    /// The one mailbox the mail ends up in, when there is exactly one.
    pub mailbox: Option<String>,
}

impl Snapshot {
    /// Whose listings and settings apply to mail for `recipient`, as the client sent it.
    pub fn recipient_scope(&self, recipient: &str) -> RecipientScope {
        let recipient = fold_case(recipient);
        let Some(domain) = domain_of(&recipient) else { return RecipientScope::default() };
        let real_domain = match self.domain(domain) {
            Some(entry) => Some(entry.name()),
            None => self.alias_domain(domain).map(|alias| alias.target()),
        };
        RecipientScope { domain: real_domain.map(str::to_owned), mailbox: self.single_mailbox(&recipient) }
    }

    /// The first listing that matches mail from `client` (when known) and `sender` (empty for the
    /// null sender) to a recipient of `scope`, by the precedence of the module documentation.
    pub fn find_listing(&self, scope: &RecipientScope, client: Option<IpAddr>, sender: &str) -> Option<&ListingEntry> {
        if self.listings.len() == 0 {
            return None;
        }
        let probes = Probes::new(self, client, sender);
        let scopes = [
            scope.mailbox.as_ref().map(|mailbox| format!("mailbox:{mailbox}")),
            scope.domain.as_ref().map(|domain| format!("domain:{domain}")),
            Some("global".to_owned()),
        ];
        for scope_key in scopes.into_iter().flatten() {
            if !self.listing_scopes.contains_key(scope_key.as_str()) {
                continue;
            }
            for action in [ListingAction::Allow, ListingAction::Block] {
                let prefix = format!("{scope_key}:{action}:");
                if let Some(entry) =
                    probes.keys().find_map(|(kind, value)| self.listings.get(&format!("{prefix}{kind}:{value}")))
                {
                    return Some(entry);
                }
            }
        }
        None
    }

    /// The policy settings of domain `name`: its own (nothing inherited; the installation's defaults
    /// are the caller's).
    pub fn domain_policy(&self, name: &str) -> PolicySettings {
        self.domain(name).map(|domain| *domain.policy()).unwrap_or_default()
    }

    /// The policy settings that apply to mailbox `address`: its own, and its domain's where it sets
    /// none. What neither sets is `None`, for the caller to take from its configuration.
    pub fn mailbox_policy(&self, address: &str) -> PolicySettings {
        let Some(mailbox) = self.mailbox(address) else { return PolicySettings::default() };
        let domain = self.domain(mailbox.domain()).map(DomainEntry::policy).copied().unwrap_or_default();
        mailbox.policy().or(domain)
    }

    /// The policy settings that apply to mail for a recipient of `scope`: its mailbox's (see
    /// [`Snapshot::mailbox_policy`]), else its domain's.
    pub fn recipient_policy(&self, scope: &RecipientScope) -> PolicySettings {
        match (&scope.mailbox, &scope.domain) {
            (Some(mailbox), _) => self.mailbox_policy(mailbox),
            (None, Some(domain)) => self.domain_policy(domain),
            (None, None) => PolicySettings::default(),
        }
    }

    /// The one active local mailbox that mail to `address` reaches, following aliases (at most
    /// [`MAX_ALIAS_DEPTH`] hops and [`MAX_ALIAS_VISITS`] addresses); `None` when it reaches several,
    /// none, or any address outside.
    fn single_mailbox(&self, address: &str) -> Option<String> {
        let mut found: Option<String> = None;
        let mut visited: HashSet<String> = HashSet::new();
        let mut pending: Vec<(String, usize)> = vec![(address.to_owned(), 0)];
        while let Some((candidate, depth)) = pending.pop() {
            if visited.len() >= MAX_ALIAS_VISITS {
                return None;
            }
            if !visited.insert(candidate.clone()) {
                continue;
            }
            match self.resolve_recipient(&candidate) {
                Some(Recipient::Mailbox(mailbox)) => match &found {
                    Some(earlier) if earlier != mailbox.address() => return None,
                    Some(_) => {}
                    None => found = Some(mailbox.address().to_owned()),
                },
                Some(Recipient::Alias(alias) | Recipient::CatchAll(alias)) => {
                    if depth >= MAX_ALIAS_DEPTH {
                        return None;
                    }
                    pending.extend(alias.targets().map(|target| (target.to_owned(), depth + 1)));
                }
                Some(Recipient::AliasDomain(rewritten)) => pending.push((rewritten, depth)),
                // An address of ours that resolves nowhere receives nothing; one elsewhere is another
                // destination.
                None if domain_of(&candidate).is_some_and(|domain| self.is_served_domain(domain)) => {}
                None => return None,
            }
        }
        found
    }
}

/// The `(kind, value)` pairs a delivery attempt matches, in the order they are tried.
struct Probes {
    senders: Vec<String>,
    sender_domains: Vec<String>,
    networks: Vec<String>,
}

impl Probes {
    fn new(snapshot: &Snapshot, client: Option<IpAddr>, sender: &str) -> Probes {
        let mut probes = Probes { senders: Vec::new(), sender_domains: Vec::new(), networks: Vec::new() };
        if let Some((local, domain)) = sender.rsplit_once('@')
            && !local.is_empty()
            && let Some(domain) = normal_domain(domain)
        {
            let local = local.to_ascii_lowercase();
            if let Some(base) = strip_extension(&local) {
                probes.senders.push(format!("{base}@{domain}"));
            }
            probes.senders.insert(0, format!("{local}@{domain}"));
            let mut parent = domain.as_str();
            loop {
                probes.sender_domains.push(parent.to_owned());
                match parent.split_once('.') {
                    Some((_, rest)) if rest.contains('.') => parent = rest,
                    _ => break,
                }
            }
        }
        if let Some(client) = client {
            let client = client.to_canonical();
            // Longest prefix first, so that the most specific listing is the one reported.
            for (is_v6, prefix_len) in snapshot.listing_prefix_lens.keys().rev() {
                if *is_v6 == client.is_ipv6() {
                    probes.networks.push(IpNetwork::containing(client, *prefix_len).to_string());
                }
            }
        }
        probes
    }

    fn keys(&self) -> impl Iterator<Item = (ListingKind, &str)> + '_ {
        let senders = self.senders.iter().map(|sender| (ListingKind::Sender, sender.as_str()));
        let domains = self.sender_domains.iter().map(|domain| (ListingKind::SenderDomain, domain.as_str()));
        let networks = self.networks.iter().map(|network| (ListingKind::Client, network.as_str()));
        senders.chain(domains).chain(networks)
    }
}

/// `domain` as the store writes it: lower-case A-labels. ASCII is only lower-cased; anything else goes
/// through IDNA, and a domain that does not convert matches nothing.
fn normal_domain(domain: &str) -> Option<String> {
    if domain.is_empty() {
        return None;
    }
    if domain.is_ascii() {
        return Some(domain.to_ascii_lowercase());
    }
    DomainName::parse(domain).ok().map(|name| name.as_str().to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use couchmail_model::{Document, SpamScore};
    use couchmail_testkit::fixtures::*;

    use super::*;

    fn world(extra: &[Document]) -> Snapshot {
        let mut documents = vec![
            domain("example.com"),
            domain("example.org"),
            domain_alias("example.net", "example.com"),
            mailbox("alice@example.com"),
            mailbox("bob@example.com"),
            mailbox("erin@example.org"),
            alias("info@example.com", &["alice@example.com", "bob@example.com"]),
            alias("ali@example.com", &["alice@example.com"]),
            alias("chain@example.com", &["ali@example.com", "alice+x@example.com"]),
            alias("out@example.com", &["alice@example.com", "someone@elsewhere.example"]),
            alias("@example.org", &["erin@example.org"]),
        ];
        documents.extend_from_slice(extra);
        Snapshot::from_documents(documents)
    }

    fn scope(domain: Option<&str>, mailbox: Option<&str>) -> RecipientScope {
        RecipientScope { domain: domain.map(str::to_owned), mailbox: mailbox.map(str::to_owned) }
    }

    #[test]
    fn recipients_resolve_to_their_final_mailbox() {
        let snapshot = world(&[]);
        let cases = [
            ("alice@example.com", scope(Some("example.com"), Some("alice@example.com"))),
            ("Alice+Tag@Example.COM", scope(Some("example.com"), Some("alice@example.com"))),
            ("alice@example.net", scope(Some("example.com"), Some("alice@example.com"))),
            ("ali@example.com", scope(Some("example.com"), Some("alice@example.com"))),
            ("chain@example.com", scope(Some("example.com"), Some("alice@example.com"))),
            ("info@example.com", scope(Some("example.com"), None)),
            ("out@example.com", scope(Some("example.com"), None)),
            ("nobody@example.com", scope(Some("example.com"), None)),
            ("anyone@example.org", scope(Some("example.org"), Some("erin@example.org"))),
            ("someone@elsewhere.example", scope(None, None)),
            ("garbage", scope(None, None)),
            ("", scope(None, None)),
        ];
        for (recipient, expected) in cases {
            assert_eq!(snapshot.recipient_scope(recipient), expected, "{recipient}");
        }
    }

    fn found(snapshot: &Snapshot, recipient: &str, client: &str, sender: &str) -> Option<String> {
        let scope = snapshot.recipient_scope(recipient);
        snapshot.find_listing(&scope, client.parse().ok(), sender).map(|entry| entry.key().to_owned())
    }

    #[test]
    fn listings_match_sender_domain_and_client() {
        let snapshot = world(&[
            listing("mailbox:alice@example.com:block:sender:spam@bad.example"),
            listing("domain:example.com:block:sender-domain:bad.example"),
            listing("global:block:client:192.0.2.0/24"),
            listing("global:block:client:2001:db8::/32"),
            listing("global:block:client:198.51.100.7"),
        ]);
        let alice = "alice@example.com";
        let some = |key: &str| Some(key.to_owned());
        assert_eq!(
            found(&snapshot, alice, "203.0.113.1", "spam@bad.example"),
            some("mailbox:alice@example.com:block:sender:spam@bad.example")
        );
        assert_eq!(
            found(&snapshot, alice, "203.0.113.1", "SPAM+list@Bad.Example"),
            some("mailbox:alice@example.com:block:sender:spam@bad.example"),
            "case and +extension"
        );
        // Bob is in the same domain: the domain's block applies to him, alice's does not.
        assert_eq!(
            found(&snapshot, "bob@example.com", "203.0.113.1", "spam@bad.example"),
            some("domain:example.com:block:sender-domain:bad.example")
        );
        assert_eq!(
            found(&snapshot, "bob@example.com", "203.0.113.1", "x@mail.bad.example"),
            some("domain:example.com:block:sender-domain:bad.example"),
            "subdomains"
        );
        assert_eq!(found(&snapshot, "bob@example.com", "203.0.113.1", "x@notbad.example"), None);
        // Another domain: neither applies.
        assert_eq!(found(&snapshot, "erin@example.org", "203.0.113.1", "spam@bad.example"), None);
        // Client networks apply to everyone.
        let global_v4 = some("global:block:client:192.0.2.0/24");
        assert_eq!(found(&snapshot, "erin@example.org", "192.0.2.200", "friend@good.example"), global_v4);
        assert_eq!(found(&snapshot, "erin@example.org", "::ffff:192.0.2.200", "friend@good.example"), global_v4);
        assert_eq!(
            found(&snapshot, "erin@example.org", "2001:db8:7::1", ""),
            some("global:block:client:2001:db8::/32")
        );
        assert_eq!(found(&snapshot, "erin@example.org", "198.51.100.7", ""), some("global:block:client:198.51.100.7"));
        assert_eq!(found(&snapshot, "erin@example.org", "198.51.100.8", ""), None);
        // The null sender and a missing client match nothing of theirs.
        assert_eq!(found(&snapshot, alice, "not an ip", ""), None);
    }

    #[test]
    fn nearer_scopes_win_and_allow_beats_block_within_one() {
        let snapshot = world(&[
            listing("global:block:client:192.0.2.0/24"),
            listing("domain:example.com:allow:client:192.0.2.9"),
            listing("mailbox:alice@example.com:block:sender-domain:partner.example"),
            listing("domain:example.com:allow:sender-domain:partner.example"),
            listing("mailbox:bob@example.com:block:client:192.0.2.0/24"),
            listing("mailbox:bob@example.com:allow:sender:friend@partner.example"),
        ]);
        let some = |key: &str| Some(key.to_owned());
        // The domain's allow beats the global block for its own recipients only.
        assert_eq!(
            found(&snapshot, "alice@example.com", "192.0.2.9", ""),
            some("domain:example.com:allow:client:192.0.2.9")
        );
        assert_eq!(found(&snapshot, "erin@example.org", "192.0.2.9", ""), some("global:block:client:192.0.2.0/24"));
        // Alice's own block beats her domain's allow.
        assert_eq!(
            found(&snapshot, "alice@example.com", "203.0.113.1", "x@partner.example"),
            some("mailbox:alice@example.com:block:sender-domain:partner.example")
        );
        // Within Bob's scope, his allow of the sender beats his block of the network.
        assert_eq!(
            found(&snapshot, "bob@example.com", "192.0.2.9", "friend@partner.example"),
            some("mailbox:bob@example.com:allow:sender:friend@partner.example")
        );
        assert_eq!(
            found(&snapshot, "bob@example.com", "192.0.2.9", "other@partner.example"),
            some("mailbox:bob@example.com:block:client:192.0.2.0/24")
        );
        // A shared alias takes no mailbox's list.
        assert_eq!(
            found(&snapshot, "info@example.com", "203.0.113.1", "x@partner.example"),
            some("domain:example.com:allow:sender-domain:partner.example")
        );
    }

    #[test]
    fn listing_counts_follow_inserts_and_removals() {
        let mut snapshot = world(&[listing("global:block:client:192.0.2.0/24")]);
        assert_eq!(snapshot.counts().listings, 1);
        snapshot.insert_document(&listing("global:block:client:192.0.2.0/24"));
        assert_eq!(snapshot.counts().listings, 1, "replacing is not adding");
        assert!(snapshot.remove_document("listing:global:block:client:192.0.2.0/24"));
        assert!(!snapshot.remove_document("listing:global:block:client:192.0.2.0/24"));
        assert!(snapshot.listing_scopes.is_empty() && snapshot.listing_prefix_lens.is_empty());
        assert_eq!(found(&snapshot, "alice@example.com", "192.0.2.1", ""), None);
        snapshot.insert_document(&listing("global:block:client:192.0.2.0/24"));
        assert_eq!(
            found(&snapshot, "alice@example.com", "192.0.2.1", "").as_deref(),
            Some("global:block:client:192.0.2.0/24")
        );
    }

    #[test]
    fn mailboxes_inherit_their_domains_settings() {
        let score = |tenths| Some(SpamScore::from_tenths(tenths).unwrap());
        let snapshot = world(&[
            with_policy(
                domain("example.com"),
                PolicySettings {
                    greylisting: Some(false),
                    spam_threshold: score(60),
                    messages_per_hour: Some(50),
                    ..PolicySettings::default()
                },
            ),
            with_policy(
                mailbox("alice@example.com"),
                PolicySettings { greylisting: Some(true), spam_reject: score(150), ..PolicySettings::default() },
            ),
        ]);
        let alice = snapshot.mailbox_policy("alice@example.com");
        assert_eq!(alice.greylisting, Some(true));
        assert_eq!(alice.spam_threshold, score(60));
        assert_eq!(alice.spam_reject, score(150));
        assert_eq!(alice.messages_per_hour, Some(50));
        assert_eq!(alice.recipients_per_hour, None);
        let bob = snapshot.mailbox_policy("bob@example.com");
        assert_eq!(bob.greylisting, Some(false));
        assert_eq!(snapshot.recipient_policy(&snapshot.recipient_scope("info@example.com")).greylisting, Some(false));
        assert_eq!(snapshot.recipient_policy(&snapshot.recipient_scope("ali@example.net")).greylisting, Some(true));
        assert!(snapshot.mailbox_policy("erin@example.org").is_empty());
        assert!(snapshot.mailbox_policy("nobody@example.org").is_empty());
        assert!(snapshot.recipient_policy(&RecipientScope::default()).is_empty());
    }
}
