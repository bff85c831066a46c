//! Who is asking ([`Principal`]) and what they may do ([`Principal::may`]).
//!
//! Every handler names the resources a request reads or changes and asks
//! [`Principal::authorize`] before touching the store; the rules live only in
//! [`Principal::may`], one table with unit tests, so that no route can grow
//! its own idea of who may do what.
//!
//! The roles (issue #2, DESIGN.md §2):
//! - admin: everything, and alone the store's replication conflicts, which
//!   may be on any document;
//! - domain-admin of some domains: everything inside them (mailboxes, aliases,
//!   Sieve scripts, domain aliases that point at them, the domain's and its
//!   mailboxes' listings, the domain document's `quota_default`, greylisting
//!   and spam thresholds), but not creating or removing domains, changing a
//!   domain's `active`, `max_mailboxes` or sending limits, granting `admin`,
//!   or touching the global listings;
//! - user: reading and updating its own mailbox (not `active`, `quota_bytes`,
//!   `roles` or its sending limits), its own Sieve scripts and its own
//!   mailbox's listings; nothing else.
//!
//! A domain admin or user keeps its own mailbox and scripts when they lie
//! outside the domains it administers.

use std::collections::BTreeSet;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use couchmail_directory::Directory;
use couchmail_model::{Address, AliasKey, DocKind, Document, DomainName, ListingScope, Role, Token, TokenPrincipal};

use crate::Error;

/// Whom a request acts for, with the roles its mailbox has right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The installation's administrator: an `admin` token, or a mailbox with role `admin`.
    Admin {
        /// The mailbox, when the token is a mailbox's.
        mailbox: Option<Address>,
    },
    /// A mailbox whose owner administers some domains.
    DomainAdmin {
        /// The mailbox.
        mailbox: Address,
        /// The domains it administers.
        domains: BTreeSet<DomainName>,
    },
    /// A mailbox's owner without roles.
    User {
        /// The mailbox.
        mailbox: Address,
    },
}

/// Reading or changing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reading or listing.
    Read,
    /// Creating, updating or removing.
    Write,
}

/// What a request touches, as far as access goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    /// The installation as a whole: the list of all domains, creating and removing domains.
    Installation,
    /// A domain's document (only `quota_default` for a domain admin; see [`Resource::DomainLimits`]).
    Domain(&'a DomainName),
    /// A domain's `active`, `max_mailboxes` and sending limits (`messages_per_hour`,
    /// `recipients_per_hour`), which bound what its domain admins and users can do.
    DomainLimits(&'a DomainName),
    /// What a domain holds as a collection: listing its mailboxes, aliases and domain
    /// aliases, creating and removing mailboxes.
    DomainContents(&'a DomainName),
    /// A domain alias, which belongs to the domain it points at.
    DomainAlias {
        /// The domain it stands for.
        target: &'a DomainName,
    },
    /// A mailbox's document: display name, password, active Sieve script.
    Mailbox(&'a Address),
    /// A mailbox's `active`, `quota_bytes` and sending limits, which its owner may read but not change.
    MailboxLimits(&'a Address),
    /// A mailbox together with the power its roles carry: changing its
    /// password, settings or Sieve scripts, or removing it, needs authority
    /// over every role it holds, so that a domain admin cannot take over
    /// (or lock out) the mailbox of an admin that lives in its domain.
    Account {
        /// The mailbox.
        address: &'a Address,
        /// The roles it holds now.
        roles: &'a [Role],
    },
    /// Granting or revoking a role.
    Role(&'a Role),
    /// An alias or catch-all.
    Alias(&'a AliasKey),
    /// The Sieve scripts of a mailbox.
    Sieve(&'a Address),
    /// The blocklist and allowlist entries of a scope: the global ones are the admin's, a
    /// domain's its domain admins', a mailbox's its owner's and its domain admins'.
    Listings(&'a ListingScope),
    /// The store's replication conflicts: the losing revisions of any document, and choosing
    /// which revision wins. A conflict can be on any document (a token, an admin's mailbox),
    /// so it is the installation's business, not a domain's.
    Conflicts,
}

impl Principal {
    /// Whether this principal may do `action` on `resource`. The one place the roles are decided.
    pub fn may(&self, action: Action, resource: &Resource<'_>) -> bool {
        let (mailbox, domains) = match self {
            Principal::Admin { .. } => return true,
            Principal::DomainAdmin { mailbox, domains } => (mailbox, Some(domains)),
            Principal::User { mailbox } => (mailbox, None),
        };
        let administers = |domain: &DomainName| domains.is_some_and(|domains| domains.contains(domain));
        let is_self = |addr: &Address| addr == mailbox;
        match (*resource, action) {
            (Resource::Installation, _) => false,
            (Resource::Domain(domain), _) => administers(domain),
            (Resource::DomainLimits(domain), Action::Read) => administers(domain),
            (Resource::DomainLimits(_), Action::Write) => false,
            (Resource::DomainContents(domain), _) => administers(domain),
            (Resource::DomainAlias { target }, _) => administers(target),
            (Resource::Mailbox(addr), _) => is_self(addr) || administers(addr.domain()),
            (Resource::MailboxLimits(addr), Action::Read) => is_self(addr) || administers(addr.domain()),
            (Resource::MailboxLimits(addr), Action::Write) => administers(addr.domain()),
            (Resource::Account { address, roles }, action) => {
                self.may(action, &Resource::Mailbox(address))
                    && (action == Action::Read || roles.iter().all(|role| self.may(action, &Resource::Role(role))))
            }
            (Resource::Role(Role::Admin), _) => false,
            (Resource::Role(Role::DomainAdmin(domain)), _) => administers(domain),
            (Resource::Alias(key), _) => administers(key.domain()),
            (Resource::Sieve(owner), _) => is_self(owner) || administers(owner.domain()),
            (Resource::Listings(ListingScope::Global), _) => false,
            (Resource::Listings(ListingScope::Domain(domain)), _) => administers(domain),
            (Resource::Listings(ListingScope::Mailbox(owner)), _) => is_self(owner) || administers(owner.domain()),
            (Resource::Conflicts, _) => false,
        }
    }

    /// [`Principal::may`], as a 403 naming what was refused.
    pub fn authorize(&self, action: Action, resource: &Resource<'_>) -> Result<(), Error> {
        if self.may(action, resource) {
            return Ok(());
        }
        let verb = match action {
            Action::Read => "read",
            Action::Write => "change",
        };
        let what = match resource {
            Resource::Installation => "the installation's domain list".to_owned(),
            Resource::Domain(domain) => format!("domain `{domain}`"),
            Resource::DomainLimits(domain) => {
                format!("the limits (`active`, `max_mailboxes`, sending limits) of domain `{domain}`")
            }
            Resource::DomainContents(domain) => format!("the contents of domain `{domain}`"),
            Resource::DomainAlias { target } => format!("the domain aliases of `{target}`"),
            Resource::Mailbox(addr) => format!("mailbox `{addr}`"),
            Resource::MailboxLimits(addr) => {
                format!("the limits (`active`, `quota_bytes`, sending limits) of mailbox `{addr}`")
            }
            Resource::Account { address, .. } => format!("mailbox `{address}`, whose roles exceed this token's"),
            Resource::Role(role) => format!("who holds role `{role}`"),
            Resource::Alias(key) => format!("alias `{key}`"),
            Resource::Sieve(owner) => format!("the Sieve scripts of `{owner}`"),
            Resource::Listings(ListingScope::Global) => "the global blocklist and allowlist".to_owned(),
            Resource::Listings(ListingScope::Domain(domain)) => {
                format!("the blocklist and allowlist of domain `{domain}`")
            }
            Resource::Listings(ListingScope::Mailbox(owner)) => {
                format!("the blocklist and allowlist of mailbox `{owner}`")
            }
            Resource::Conflicts => "the store's replication conflicts".to_owned(),
        };
        Err(Error::Forbidden(format!("this token may not {verb} {what}")))
    }

    /// The mailbox the token belongs to, if any.
    pub fn mailbox(&self) -> Option<&Address> {
        match self {
            Principal::Admin { mailbox } => mailbox.as_ref(),
            Principal::DomainAdmin { mailbox, .. } | Principal::User { mailbox } => Some(mailbox),
        }
    }

    /// The one domain this principal administers, for listings that name none.
    pub fn only_domain(&self) -> Option<&DomainName> {
        match self {
            Principal::DomainAdmin { domains, .. } if domains.len() == 1 => domains.first(),
            _ => None,
        }
    }

    /// The principal of a mailbox with `roles`.
    pub(crate) fn of_mailbox(mailbox: Address, roles: &[Role]) -> Principal {
        if roles.contains(&Role::Admin) {
            return Principal::Admin { mailbox: Some(mailbox) };
        }
        let domains: BTreeSet<DomainName> = roles
            .iter()
            .filter_map(|role| match role {
                Role::DomainAdmin(domain) => Some(domain.clone()),
                Role::Admin => None,
            })
            .collect();
        if domains.is_empty() { Principal::User { mailbox } } else { Principal::DomainAdmin { mailbox, domains } }
    }
}

/// Finds the principal of a request from its `Authorization: Bearer cmt_…` header.
///
/// The token document is read through the directory, its secret checked in
/// constant time; a mailbox token takes the mailbox's roles as they are
/// now, and stops working while the mailbox or its domain is inactive or
/// once it is removed.
pub async fn authenticate(directory: &Directory, headers: &HeaderMap) -> Result<Principal, Error> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err(Error::Unauthenticated("send `Authorization: Bearer <token>`; the CLI creates tokens".to_owned()));
    };
    let value = value.to_str().map_err(|_| unauthenticated())?;
    let Some((scheme, bearer)) = value.split_once(' ') else { return Err(unauthenticated()) };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Error::Unauthenticated("the `Authorization` scheme must be `Bearer`".to_owned()));
    }
    let Some((token_id, secret)) = couchmail_model::split_bearer(bearer.trim()) else { return Err(unauthenticated()) };
    let token = match directory.get(&DocKind::Token.id(token_id)).await? {
        Some(entry) => match entry.doc {
            Document::Token(token) => token,
            _ => return Err(unauthenticated()),
        },
        None => return Err(unauthenticated()),
    };
    if !Token::verify_secret(&token, secret) {
        return Err(unauthenticated());
    }
    match token.principal {
        TokenPrincipal::Admin => Ok(Principal::Admin { mailbox: None }),
        TokenPrincipal::Mailbox(address) => {
            let Some(entry) = directory.get(&DocKind::Mailbox.id(&address)).await? else {
                return Err(unauthenticated());
            };
            let Document::Mailbox(mailbox) = entry.doc else { return Err(unauthenticated()) };
            if !mailbox.active || !domain_is_active(directory, address.domain()).await? {
                return Err(Error::Unauthenticated("the token's mailbox or its domain is inactive".to_owned()));
            }
            Ok(Principal::of_mailbox(address, &mailbox.roles))
        }
    }
}

/// Whether `domain` exists and is active.
pub(crate) async fn domain_is_active(directory: &Directory, domain: &DomainName) -> Result<bool, Error> {
    Ok(matches!(
        directory.get(&DocKind::Domain.id(domain)).await?,
        Some(couchmail_directory::Entry { doc: Document::Domain(d), .. }) if d.active
    ))
}

/// One answer for every bad token, so that a probe learns nothing about which part was wrong.
fn unauthenticated() -> Error {
    Error::Unauthenticated("the bearer token is malformed, unknown, revoked or wrong".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(name: &str) -> DomainName {
        name.parse().unwrap()
    }

    fn address(addr: &str) -> Address {
        addr.parse().unwrap()
    }

    fn admin() -> Principal {
        Principal::Admin { mailbox: None }
    }

    fn domain_admin() -> Principal {
        Principal::DomainAdmin { mailbox: address("boss@a.example"), domains: [domain("a.example")].into() }
    }

    fn user() -> Principal {
        Principal::User { mailbox: address("alice@a.example") }
    }

    /// Checks `principal` against `resource` for reading and writing.
    fn check(principal: &Principal, resource: Resource<'_>, read: bool, write: bool) {
        assert_eq!(principal.may(Action::Read, &resource), read, "{principal:?} reading {resource:?}");
        assert_eq!(principal.may(Action::Write, &resource), write, "{principal:?} writing {resource:?}");
    }

    #[test]
    fn admin_may_do_everything() {
        let a = domain("a.example");
        let alice = address("alice@a.example");
        for resource in [
            Resource::Installation,
            Resource::Domain(&a),
            Resource::DomainLimits(&a),
            Resource::DomainContents(&a),
            Resource::Mailbox(&alice),
            Resource::MailboxLimits(&alice),
            Resource::Role(&Role::Admin),
            Resource::Sieve(&alice),
            Resource::Listings(&ListingScope::Global),
            Resource::Listings(&ListingScope::Domain(a.clone())),
            Resource::Listings(&ListingScope::Mailbox(alice.clone())),
            Resource::Conflicts,
        ] {
            check(&admin(), resource, true, true);
        }
    }

    #[test]
    fn domain_admin_stays_inside_its_domains() {
        let principal = domain_admin();
        let (a, b) = (domain("a.example"), domain("b.example"));
        let (alice, bob) = (address("alice@a.example"), address("bob@b.example"));
        let (alias_a, catch_all_b) =
            (AliasKey::parse("info@a.example").unwrap(), AliasKey::parse("@b.example").unwrap());
        check(&principal, Resource::Installation, false, false);
        check(&principal, Resource::Domain(&a), true, true);
        check(&principal, Resource::DomainLimits(&a), true, false);
        check(&principal, Resource::DomainContents(&a), true, true);
        check(&principal, Resource::DomainAlias { target: &a }, true, true);
        check(&principal, Resource::Mailbox(&alice), true, true);
        check(&principal, Resource::MailboxLimits(&alice), true, true);
        check(&principal, Resource::Alias(&alias_a), true, true);
        check(&principal, Resource::Sieve(&alice), true, true);
        check(&principal, Resource::Role(&Role::DomainAdmin(a.clone())), true, true);
        check(&principal, Resource::Role(&Role::Admin), false, false);
        // Nothing of another domain.
        check(&principal, Resource::Domain(&b), false, false);
        check(&principal, Resource::DomainLimits(&b), false, false);
        check(&principal, Resource::DomainContents(&b), false, false);
        check(&principal, Resource::DomainAlias { target: &b }, false, false);
        check(&principal, Resource::Mailbox(&bob), false, false);
        check(&principal, Resource::MailboxLimits(&bob), false, false);
        check(&principal, Resource::Alias(&catch_all_b), false, false);
        check(&principal, Resource::Sieve(&bob), false, false);
        check(&principal, Resource::Role(&Role::DomainAdmin(b.clone())), false, false);
        // Conflicts may be on any document, so they are not a domain admin's.
        check(&principal, Resource::Conflicts, false, false);
        // Listings: its domain's and its mailboxes', never the global ones.
        check(&principal, Resource::Listings(&ListingScope::Domain(a.clone())), true, true);
        check(&principal, Resource::Listings(&ListingScope::Mailbox(alice.clone())), true, true);
        check(&principal, Resource::Listings(&ListingScope::Domain(b.clone())), false, false);
        check(&principal, Resource::Listings(&ListingScope::Mailbox(bob.clone())), false, false);
        check(&principal, Resource::Listings(&ListingScope::Global), false, false);
    }

    #[test]
    fn mailboxes_with_roles_need_that_authority() {
        let principal = domain_admin();
        let (root, peer) = (address("root@a.example"), address("peer@a.example"));
        let admin_roles = [Role::Admin];
        let other_domain_roles = [Role::DomainAdmin(domain("b.example"))];
        let same_domain_roles = [Role::DomainAdmin(domain("a.example"))];
        check(&principal, Resource::Account { address: &root, roles: &admin_roles }, true, false);
        check(&principal, Resource::Account { address: &peer, roles: &other_domain_roles }, true, false);
        check(&principal, Resource::Account { address: &peer, roles: &same_domain_roles }, true, true);
        check(&principal, Resource::Account { address: &peer, roles: &[] }, true, true);
        check(&admin(), Resource::Account { address: &root, roles: &admin_roles }, true, true);
        let alice = address("alice@a.example");
        check(&user(), Resource::Account { address: &alice, roles: &[] }, true, true);
        check(&user(), Resource::Account { address: &peer, roles: &[] }, false, false);
    }

    #[test]
    fn domain_admin_keeps_its_own_mailbox_elsewhere() {
        let principal =
            Principal::DomainAdmin { mailbox: address("boss@c.example"), domains: [domain("a.example")].into() };
        let boss = address("boss@c.example");
        check(&principal, Resource::Mailbox(&boss), true, true);
        check(&principal, Resource::MailboxLimits(&boss), true, false);
        check(&principal, Resource::Sieve(&boss), true, true);
        check(&principal, Resource::DomainContents(&domain("c.example")), false, false);
    }

    #[test]
    fn user_sees_only_itself() {
        let principal = user();
        let a = domain("a.example");
        let (alice, carol) = (address("alice@a.example"), address("carol@a.example"));
        check(&principal, Resource::Mailbox(&alice), true, true);
        check(&principal, Resource::MailboxLimits(&alice), true, false);
        check(&principal, Resource::Sieve(&alice), true, true);
        check(&principal, Resource::Mailbox(&carol), false, false);
        check(&principal, Resource::MailboxLimits(&carol), false, false);
        check(&principal, Resource::Sieve(&carol), false, false);
        check(&principal, Resource::Installation, false, false);
        check(&principal, Resource::Domain(&a), false, false);
        check(&principal, Resource::DomainContents(&a), false, false);
        check(&principal, Resource::DomainAlias { target: &a }, false, false);
        check(&principal, Resource::Alias(&AliasKey::parse("info@a.example").unwrap()), false, false);
        check(&principal, Resource::Role(&Role::DomainAdmin(a.clone())), false, false);
        check(&principal, Resource::Conflicts, false, false);
        check(&principal, Resource::Listings(&ListingScope::Mailbox(alice.clone())), true, true);
        check(&principal, Resource::Listings(&ListingScope::Mailbox(carol.clone())), false, false);
        check(&principal, Resource::Listings(&ListingScope::Domain(a.clone())), false, false);
        check(&principal, Resource::Listings(&ListingScope::Global), false, false);
    }

    #[test]
    fn roles_make_the_principal() {
        let alice = address("alice@a.example");
        assert_eq!(Principal::of_mailbox(alice.clone(), &[]), Principal::User { mailbox: alice.clone() });
        assert_eq!(
            Principal::of_mailbox(alice.clone(), &[Role::DomainAdmin(domain("a.example")), Role::Admin]),
            Principal::Admin { mailbox: Some(alice.clone()) }
        );
        let principal = Principal::of_mailbox(alice.clone(), &[Role::DomainAdmin(domain("b.example"))]);
        assert_eq!(principal.only_domain(), Some(&domain("b.example")));
    }

    #[test]
    fn refusal_is_a_403() {
        let err = user().authorize(Action::Read, &Resource::Installation).unwrap_err();
        assert_eq!(err.code(), "forbidden");
    }
}
