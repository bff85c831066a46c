//! The immutable view the daemons answer from, and the rules of each lookup.
//!
//! Every query takes the key as Postfix or Dovecot sends it. Keys are
//! expected in normal form (lower case, domains as A-labels); upper-case
//! ASCII is folded first, which allocates only when there is some.
//! Nothing here touches the store, and no query can panic on any input.

use std::borrow::{Borrow, Cow};
use std::collections::{BTreeSet, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};

use couchmail_model::{DocKind, Document, IpNetwork, ListingKind, Token};
use couchmail_store::{Body, Change, Rev, Seq};

use crate::entry::{
    AliasDomainEntry, AliasEntry, DomainEntry, Keyed, ListingEntry, MailboxEntry, OrderedTable, SieveEntry, Table,
};

/// How many alias hops [`Snapshot::sender_logins`] follows from the address
/// asked about. The directory refuses loops and long chains are rare, so
/// this only bounds the work a bad replicated edit can cause.
pub const MAX_ALIAS_DEPTH: usize = 16;

/// How many addresses [`Snapshot::sender_logins`] visits at most, so that
/// aliases of a thousand aliases of a thousand targets stay cheap.
pub const MAX_ALIAS_VISITS: usize = 4096;

/// A document the index skipped because its latest revision is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedDocument {
    /// `_id`
    pub id: String,
    /// The invalid revision.
    pub rev: Rev,
    /// Where it sits in the changes feed.
    pub seq: Seq,
    /// Why it was refused, naming the field at fault.
    pub reason: String,
}

impl Keyed for SkippedDocument {
    fn key(&self) -> &str {
        &self.id
    }
}

/// How many entries of each kind a snapshot holds, for health and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Real domains, active or not.
    pub domains: usize,
    /// Alias domains.
    pub alias_domains: usize,
    /// Mailboxes, active or not.
    pub mailboxes: usize,
    /// Aliases and catch-alls, active or not.
    pub aliases: usize,
    /// Sieve scripts.
    pub sieve_scripts: usize,
    /// API tokens.
    pub tokens: usize,
    /// Blocklist and allowlist entries.
    pub listings: usize,
    /// Documents whose latest revision is invalid (their last valid one, if
    /// any, is still served).
    pub invalid_documents: usize,
}

/// Where mail to a recipient goes (see [`Snapshot::resolve_recipient`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient<'a> {
    /// An active mailbox in an active domain: delivered as addressed.
    Mailbox(&'a MailboxEntry),
    /// An active alias: delivered to its targets.
    Alias(&'a AliasEntry),
    /// Neither a mailbox nor an alias: the domain's active catch-all.
    CatchAll(&'a AliasEntry),
    /// An address of an alias domain: the same address in the target
    /// domain, where it resolves.
    AliasDomain(String),
}

/// What applying one change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Applied {
    /// A valid document was inserted or replaced.
    Upserted,
    /// A tombstone removed the document (or there was nothing to remove).
    Removed,
    /// The body was invalid; the document's previous version stays.
    Skipped(SkippedDocument),
}

/// One entry of a snapshot as a checkpoint holds it.
pub(crate) enum RestoredEntry {
    Domain(DomainEntry),
    AliasDomain(AliasDomainEntry),
    Mailbox(MailboxEntry),
    Alias(AliasEntry),
    Sieve(SieveEntry),
    Token(Token),
    Listing(ListingEntry),
    Invalid(SkippedDocument),
}

/// An immutable view of everything the mail daemons and the API ask.
///
/// Cloning is O(1): the tables are persistent, and a clone shares every
/// node until one side changes it.
#[derive(Clone, Default)]
pub struct Snapshot {
    ready: bool,
    last_seq: Option<Seq>,
    generation: u64,
    domains: Table<DomainEntry>,
    alias_domains: Table<AliasDomainEntry>,
    mailboxes: Table<MailboxEntry>,
    aliases: Table<AliasEntry>,
    sieves: OrderedTable<SieveEntry>,
    tokens: Table<Token>,
    pub(crate) listings: Table<ListingEntry>,
    /// How many listings each scope (`global`, `domain:<d>`, `mailbox:<a>`) holds, so that a lookup
    /// skips the scopes that have none (most mailboxes) without probing.
    pub(crate) listing_scopes: imbl::HashMap<Box<str>, u32>,
    /// How many client listings there are of each (family, prefix length), IPv6 as `true`, so that a
    /// lookup probes one key per prefix length in use rather than one per possible length.
    pub(crate) listing_prefix_lens: imbl::OrdMap<(bool, u8), u32>,
    invalid: OrderedTable<SkippedDocument>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The tables can hold a million entries: show their sizes only.
        f.debug_struct("Snapshot")
            .field("ready", &self.ready)
            .field("last_seq", &self.last_seq)
            .field("generation", &self.generation)
            .field("counts", &self.counts())
            .finish()
    }
}

impl Snapshot {
    /// A complete, ready snapshot of `documents`, for tests and tools that
    /// have the documents in hand; servers get theirs from an [`Index`](crate::Index).
    pub fn from_documents<I>(documents: I) -> Snapshot
    where
        I: IntoIterator,
        I::Item: Borrow<Document>,
    {
        let mut snapshot = Snapshot { ready: true, ..Snapshot::default() };
        for document in documents {
            snapshot.insert_document(document.borrow());
        }
        snapshot
    }

    /// Inserts `document`, replacing any earlier version of it.
    pub fn insert_document(&mut self, document: &Document) {
        match document {
            Document::Domain(domain) => self.domains.insert(DomainEntry::from_document(domain)),
            Document::DomainAlias(alias) => self.alias_domains.insert(AliasDomainEntry::from_document(alias)),
            Document::Mailbox(mailbox) => self.mailboxes.insert(MailboxEntry::from_document(mailbox)),
            Document::Alias(alias) => self.aliases.insert(AliasEntry::from_document(alias)),
            Document::Sieve(sieve) => {
                let mut entry = SieveEntry::from_document(sieve);
                if let Some(replaced) = self.sieves.get(entry.key()) {
                    entry.keep_previous(replaced);
                }
                self.sieves.insert(entry);
            }
            Document::Token(token) => self.tokens.insert(token.clone()),
            Document::Listing(listing) => self.insert_listing(ListingEntry::from_document(listing)),
            // Invitations are the web UI's business: no daemon asks for them.
            Document::Invitation(_) => {}
        }
    }

    /// Inserts a listing, keeping the per-scope and per-prefix counts.
    fn insert_listing(&mut self, entry: ListingEntry) {
        if self.listings.get(entry.key()).is_none() {
            self.count_listing(&entry, 1);
        }
        self.listings.insert(entry);
    }

    /// Removes the listing with `key`; false if there was none.
    fn remove_listing(&mut self, key: &str) -> bool {
        let Some(entry) = self.listings.get(key).cloned() else { return false };
        self.count_listing(&entry, -1);
        self.listings.remove(key)
    }

    fn count_listing(&mut self, entry: &ListingEntry, delta: i32) {
        // The count after the change; `None` when it falls to zero, so that the key goes.
        fn bump(count: Option<u32>, delta: i32) -> Option<u32> {
            Some(count.unwrap_or(0).saturating_add_signed(delta)).filter(|count| *count > 0)
        }
        let scope: Box<str> = entry.scope().into();
        let count = bump(self.listing_scopes.get(&scope).copied(), delta);
        match count {
            Some(count) => self.listing_scopes.insert(scope, count),
            None => self.listing_scopes.remove(&scope),
        };
        if entry.kind() == ListingKind::Client
            && let Ok(network) = IpNetwork::parse(entry.value())
        {
            let prefix = (network.address().is_ipv6(), network.prefix_len());
            match bump(self.listing_prefix_lens.get(&prefix).copied(), delta) {
                Some(count) => self.listing_prefix_lens.insert(prefix, count),
                None => self.listing_prefix_lens.remove(&prefix),
            };
        }
    }

    /// Removes the document with `id`; false if there was none.
    ///
    /// The key is taken from the `_id` exactly as written, so the tombstone
    /// of a document that was never valid (say `mailbox:Alice@Example.com`)
    /// cannot remove the valid one it resembles.
    pub fn remove_document(&mut self, id: &str) -> bool {
        let Some((prefix, key)) = id.split_once(':') else {
            return false;
        };
        match prefix.parse::<DocKind>() {
            Ok(DocKind::Domain) => self.domains.remove(key),
            Ok(DocKind::DomainAlias) => self.alias_domains.remove(key),
            Ok(DocKind::Mailbox) => self.mailboxes.remove(key),
            Ok(DocKind::Alias) => self.aliases.remove(key),
            Ok(DocKind::Sieve) => self.sieves.remove(key),
            Ok(DocKind::Token) => self.tokens.remove(key),
            Ok(DocKind::Listing) => self.remove_listing(key),
            Ok(DocKind::Invitation) | Err(_) => false,
        }
    }

    /// Applies one change of the feed: a tombstone removes the document, a
    /// valid body replaces it, and an invalid body is recorded and skipped
    /// so that the last valid version keeps being served.
    pub(crate) fn apply_change(&mut self, change: &Change) -> Applied {
        let Some(body) = &change.body else {
            self.remove_document(&change.id);
            self.invalid.remove(&change.id);
            return Applied::Removed;
        };
        match parse_document(&change.id, body) {
            Ok(document) => {
                self.insert_document(&document);
                self.invalid.remove(&change.id);
                Applied::Upserted
            }
            Err(reason) => {
                let skipped =
                    SkippedDocument { id: change.id.clone(), rev: change.rev.clone(), seq: change.seq.clone(), reason };
                self.invalid.insert(skipped.clone());
                Applied::Skipped(skipped)
            }
        }
    }

    /// A snapshot that is not ready, at `last_seq`, to be filled from a checkpoint.
    pub(crate) fn restoring(last_seq: Option<Seq>) -> Snapshot {
        Snapshot { last_seq, ..Snapshot::default() }
    }

    /// Inserts an entry read back from a checkpoint exactly as it was saved (a Sieve
    /// script keeps the previous content it had, rather than taking the one it replaces).
    pub(crate) fn insert_restored(&mut self, entry: RestoredEntry) {
        match entry {
            RestoredEntry::Domain(entry) => self.domains.insert(entry),
            RestoredEntry::AliasDomain(entry) => self.alias_domains.insert(entry),
            RestoredEntry::Mailbox(entry) => self.mailboxes.insert(entry),
            RestoredEntry::Alias(entry) => self.aliases.insert(entry),
            RestoredEntry::Sieve(entry) => self.sieves.insert(entry),
            RestoredEntry::Token(token) => self.tokens.insert(token),
            RestoredEntry::Listing(entry) => self.insert_listing(entry),
            RestoredEntry::Invalid(skipped) => self.invalid.insert(skipped),
        }
    }

    /// Every Sieve script, by owner and name, for a checkpoint.
    pub(crate) fn all_sieve_scripts(&self) -> impl Iterator<Item = &SieveEntry> + '_ {
        self.sieves.with_prefix(String::new())
    }

    /// Every API token, in no particular order, for a checkpoint.
    pub(crate) fn tokens(&self) -> impl Iterator<Item = &Token> + '_ {
        self.tokens.iter()
    }

    /// Records how far the feed has been applied, and whether it has been
    /// drained once.
    pub(crate) fn set_progress(&mut self, last_seq: Option<Seq>, ready: bool) {
        self.last_seq = last_seq;
        self.ready = ready;
    }

    pub(crate) fn set_generation(&mut self, generation: u64) {
        self.generation = generation;
    }

    /// Whether this snapshot holds the whole store as of some moment: false
    /// until the changes feed has been drained once. Until then the daemons
    /// answer with a temporary failure (DESIGN.md §1).
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The last sequence of the feed applied to this snapshot.
    pub fn last_seq(&self) -> Option<&Seq> {
        self.last_seq.as_ref()
    }

    /// How many snapshots the index published before this one.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How many entries of each kind this snapshot holds.
    pub fn counts(&self) -> Counts {
        Counts {
            domains: self.domains.len(),
            alias_domains: self.alias_domains.len(),
            mailboxes: self.mailboxes.len(),
            aliases: self.aliases.len(),
            sieve_scripts: self.sieves.len(),
            tokens: self.tokens.len(),
            listings: self.listings.len(),
            invalid_documents: self.invalid.len(),
        }
    }

    /// Documents whose latest revision is invalid, by `_id`.
    pub fn invalid_documents(&self) -> impl Iterator<Item = &SkippedDocument> + '_ {
        self.invalid.with_prefix(String::new())
    }

    /// The real domain `name`, active or not.
    pub fn domain(&self, name: &str) -> Option<&DomainEntry> {
        self.domains.get(&fold_case(name))
    }

    /// The alias domain `name`, whatever the state of its target.
    pub fn alias_domain(&self, name: &str) -> Option<&AliasDomainEntry> {
        self.alias_domains.get(&fold_case(name))
    }

    /// The real domain that alias domain `name` stands for, when that domain
    /// is active; `None` for anything else.
    pub fn alias_domain_target(&self, name: &str) -> Option<&str> {
        let alias = self.alias_domain(name)?;
        let target = self.domains.get(alias.target())?;
        target.is_active().then_some(target.name())
    }

    /// Whether we receive mail for `name`: an active real domain, or an
    /// alias of one.
    pub fn is_served_domain(&self, name: &str) -> bool {
        self.domain(name).is_some_and(DomainEntry::is_active) || self.alias_domain_target(name).is_some()
    }

    /// The mailbox at exactly `address`, active or not.
    pub fn mailbox(&self, address: &str) -> Option<&MailboxEntry> {
        self.mailboxes.get(&fold_case(address))
    }

    /// The mailbox at `address` if it may receive mail and log in: it and
    /// its domain are both active.
    pub fn active_mailbox(&self, address: &str) -> Option<&MailboxEntry> {
        let mailbox = self.mailbox(address)?;
        let domain = self.domains.get(mailbox.domain())?;
        (mailbox.is_active() && domain.is_active()).then_some(mailbox)
    }

    /// The active mailbox (in an active domain) that mail to `address` is
    /// delivered to: the mailbox at exactly `address`, else at `address`
    /// without its `+extension` (Postfix's `virtual_mailbox_maps`, which a
    /// socketmap is asked once, with the whole address).
    pub fn deliverable_mailbox(&self, address: &str) -> Option<&MailboxEntry> {
        let address = fold_case(address);
        if self.mailboxes.get(&address).is_some() {
            return self.active_mailbox(&address);
        }
        let (local, domain) = address.rsplit_once('@')?;
        self.active_mailbox(&format!("{}@{domain}", strip_extension(local)?))
    }

    /// The quota of the mailbox at `address` in bytes: its own, or else its
    /// domain's default; `None` for no limit (or no such mailbox).
    pub fn mailbox_quota(&self, address: &str) -> Option<u64> {
        let mailbox = self.mailbox(address)?;
        mailbox.quota_bytes().or_else(|| self.domains.get(mailbox.domain()).and_then(DomainEntry::quota_default))
    }

    /// The alias or catch-all with exactly `key` (`info@example.com`,
    /// `@example.com`), active or not.
    pub fn alias(&self, key: &str) -> Option<&AliasEntry> {
        self.aliases.get(&fold_case(key))
    }

    /// How a recipient address resolves, as Postfix's `virtual_alias_maps`
    /// needs it when the map is a socketmap.
    ///
    /// Postfix sends a socketmap (like any TCP-based table, virtual(5)) the
    /// whole address once: it does not retry `user@domain` after
    /// `user+ext@domain`, nor `@domain` after `user@domain`. So those steps
    /// happen here, and Postfix recurses only on the addresses answered.
    ///
    /// In an active real domain, for `user+ext@domain`: the address itself if
    /// it is a mailbox or an active alias, else `user@domain` (the extension
    /// stripped at the first `+`, Postfix's `recipient_delimiter`). Then:
    /// - an active mailbox is [`Recipient::Mailbox`]: it maps to itself (the
    ///   key as asked, extension kept, so that Dovecot sees it), so that the
    ///   catch-all never swallows it;
    /// - an inactive mailbox resolves to nothing, never to the catch-all,
    ///   so that Postfix refuses it at RCPT (a `virtual_alias_maps` match
    ///   would make smtpd accept it, and Dovecot bounce it later);
    /// - an active alias is [`Recipient::Alias`]; an inactive alias is as if
    ///   it did not exist;
    /// - anything else goes to the domain's active catch-all ([`Recipient::CatchAll`]).
    ///
    /// `@domain` itself resolves to the active catch-all of an active real domain.
    /// `user+ext@aliasdomain` resolves to [`Recipient::AliasDomain`] with
    /// `user+ext@targetdomain` only when that address resolves by these
    /// same rules, so that unknown recipients of an alias domain are refused
    /// at RCPT rather than bounced later; `@aliasdomain` resolves to nothing.
    /// Anything in an inactive or unknown domain, or with an `@` in its
    /// local part, resolves to nothing.
    pub fn resolve_recipient(&self, key: &str) -> Option<Recipient<'_>> {
        let key = fold_case(key);
        let (local, domain) = key.rsplit_once('@')?;
        if local.contains('@') {
            // No address of ours has one, and a catch-all should not take such garbage either.
            return None;
        }
        if let Some(domain_entry) = self.domains.get(domain) {
            if !domain_entry.is_active() {
                return None;
            }
            if local.is_empty() {
                return self.active_alias(&key).map(Recipient::CatchAll);
            }
            return self.resolve_in_real_domain(&key, local, domain);
        }
        let target_domain = self.alias_domain_target(domain)?;
        if local.is_empty() {
            return None;
        }
        let rewritten = format!("{local}@{target_domain}");
        self.resolve_in_real_domain(&rewritten, local, target_domain)?;
        Some(Recipient::AliasDomain(rewritten))
    }

    /// What Postfix's `virtual_alias_maps` should answer for `key`: the
    /// addresses of [`Snapshot::resolve_recipient`], where a mailbox is the
    /// key itself (in lower case, extension kept).
    ///
    /// Postfix asks again for each address in an answer, until an address
    /// maps to itself.
    pub fn virtual_alias(&self, key: &str) -> Option<Vec<String>> {
        Some(match self.resolve_recipient(key)? {
            Recipient::Mailbox(_) => vec![fold_case(key).into_owned()],
            Recipient::Alias(alias) | Recipient::CatchAll(alias) => owned_targets(alias),
            Recipient::AliasDomain(rewritten) => vec![rewritten],
        })
    }

    /// The SASL logins allowed to send as `address`, sorted (Postfix's
    /// `smtpd_sender_login_maps`).
    ///
    /// An active mailbox may send as itself; an alias may be used by the
    /// active local mailboxes it reaches, through other aliases too; an
    /// alias-domain address is treated as the same address in the target
    /// domain; `user+ext@domain` that is neither a mailbox nor an active
    /// alias is treated as `user@domain`, as mail to it is delivered.
    /// Catch-alls grant nothing: they would let a user send as any
    /// unknown address of the domain.
    /// Chains are followed at most [`MAX_ALIAS_DEPTH`] hops and
    /// [`MAX_ALIAS_VISITS`] addresses, each at most once, so loops end.
    pub fn sender_logins(&self, address: &str) -> Vec<String> {
        let mut logins = BTreeSet::new();
        let mut visited: HashSet<String> = HashSet::new();
        let mut pending: Vec<(String, usize)> = vec![(fold_case(address).into_owned(), 0)];
        while let Some((candidate, depth)) = pending.pop() {
            if visited.len() >= MAX_ALIAS_VISITS {
                tracing::warn!(address, "sender login lookup stopped after {MAX_ALIAS_VISITS} addresses");
                break;
            }
            let Some(candidate) = self.in_served_domain(&candidate) else {
                continue;
            };
            let candidate = self.without_unknown_extension(candidate);
            if !visited.insert(candidate.clone()) {
                continue;
            }
            if let Some(mailbox) = self.mailboxes.get(&candidate) {
                if mailbox.is_active() {
                    logins.insert(candidate);
                }
                continue;
            }
            if depth >= MAX_ALIAS_DEPTH {
                continue;
            }
            if let Some(alias) = self.active_alias(&candidate) {
                pending.extend(alias.targets().map(|target| (target.to_owned(), depth + 1)));
            }
        }
        logins.into_iter().collect()
    }

    /// The active Sieve script of `user`: its content id and its source.
    pub fn active_sieve(&self, user: &str) -> Option<(&str, &str)> {
        let mailbox = self.mailbox(user)?;
        let name = mailbox.sieve_active()?;
        let script = self.sieve(mailbox.address(), name)?;
        Some((script.content_id(), script.script()))
    }

    /// The script of `user` whose content id is `id`: the current content of
    /// one of their scripts, or else the content a script had before its
    /// last change.
    ///
    /// Pigeonhole reads a script in two lookups, name → id then id → text;
    /// answering the previous id too means a script replaced between the
    /// two is still read whole (its old version, this once), instead of the
    /// delivery failing. A script deleted between the two is not found, and
    /// that delivery is deferred and retried.
    pub fn sieve_by_id(&self, user: &str, id: &str) -> Option<&str> {
        self.sieve_scripts(user)
            .find(|script| script.content_id() == id)
            .map(SieveEntry::script)
            .or_else(|| self.sieve_scripts(user).find_map(|script| script.previous_script(id)))
    }

    /// The script of `user` called `name`.
    pub fn sieve(&self, user: &str, name: &str) -> Option<&SieveEntry> {
        self.sieves.get(&format!("{}:{name}", fold_case(user)))
    }

    /// Every script of `user`, by name.
    pub fn sieve_scripts(&self, user: &str) -> impl Iterator<Item = &SieveEntry> + '_ {
        let user = fold_case(user);
        // An owner never contains `:`, so `user:` is a prefix of this user's keys only.
        let prefix = if user.is_empty() || user.contains(':') { None } else { Some(format!("{user}:")) };
        prefix.into_iter().flat_map(|prefix| self.sieves.with_prefix(prefix))
    }

    /// The API token with public id `id`.
    pub fn token(&self, id: &str) -> Option<&Token> {
        self.tokens.get(id)
    }

    /// Every real domain, in no particular order.
    pub fn domains(&self) -> impl Iterator<Item = &DomainEntry> + '_ {
        self.domains.iter()
    }

    /// Every alias domain, in no particular order.
    pub fn alias_domains(&self) -> impl Iterator<Item = &AliasDomainEntry> + '_ {
        self.alias_domains.iter()
    }

    /// Every mailbox, in no particular order (for `doveadm user '*'`).
    pub fn mailboxes(&self) -> impl Iterator<Item = &MailboxEntry> + '_ {
        self.mailboxes.iter()
    }

    /// Every alias and catch-all, in no particular order.
    pub fn aliases(&self) -> impl Iterator<Item = &AliasEntry> + '_ {
        self.aliases.iter()
    }

    /// Every blocklist and allowlist entry, in no particular order.
    pub fn listings(&self) -> impl Iterator<Item = &ListingEntry> + '_ {
        self.listings.iter()
    }

    /// The listing with key `key` (its `_id` without `listing:`).
    pub fn listing(&self, key: &str) -> Option<&ListingEntry> {
        self.listings.get(key)
    }

    fn active_alias(&self, key: &str) -> Option<&AliasEntry> {
        self.aliases.get(key).filter(|alias| alias.is_active())
    }

    /// Whether `address` is a mailbox or an active alias, exactly.
    fn is_known_address(&self, address: &str) -> bool {
        self.mailboxes.get(address).is_some() || self.active_alias(address).is_some()
    }

    /// How `address` (`local@domain`, `domain` an active real domain,
    /// `local` not empty) resolves; see [`Snapshot::resolve_recipient`].
    fn resolve_in_real_domain(&self, address: &str, local: &str, domain: &str) -> Option<Recipient<'_>> {
        let stripped;
        let base = match strip_extension(local) {
            Some(user) if !self.is_known_address(address) => {
                stripped = format!("{user}@{domain}");
                stripped.as_str()
            }
            _ => address,
        };
        if let Some(mailbox) = self.mailboxes.get(base) {
            return mailbox.is_active().then_some(Recipient::Mailbox(mailbox));
        }
        if let Some(alias) = self.active_alias(base) {
            return Some(Recipient::Alias(alias));
        }
        self.active_alias(&format!("@{domain}")).map(Recipient::CatchAll)
    }

    /// `address` without its `+extension` when it has one and is neither a
    /// mailbox nor an active alias itself.
    fn without_unknown_extension(&self, address: String) -> String {
        let Some((local, domain)) = address.rsplit_once('@') else {
            return address;
        };
        match strip_extension(local) {
            Some(user) if !self.is_known_address(&address) => format!("{user}@{domain}"),
            _ => address,
        }
    }

    /// `address` as it lives in an active real domain: itself, rewritten
    /// from an alias domain, or `None` when it is not ours or has no local part.
    fn in_served_domain(&self, address: &str) -> Option<String> {
        let (local, domain) = address.rsplit_once('@')?;
        if local.is_empty() {
            return None;
        }
        if let Some(domain_entry) = self.domains.get(domain) {
            return domain_entry.is_active().then(|| address.to_owned());
        }
        self.alias_domain_target(domain).map(|target| format!("{local}@{target}"))
    }
}

/// The local part before its `+extension` (Postfix's `recipient_delimiter`
/// is `+`, split at the first one); `None` when there is no extension, or
/// nothing before it.
pub(crate) fn strip_extension(local: &str) -> Option<&str> {
    local.split_once('+').map(|(user, _)| user).filter(|user| !user.is_empty())
}

/// Folds upper-case ASCII to lower case, allocating only when there is some.
pub(crate) fn fold_case(key: &str) -> Cow<'_, str> {
    if key.bytes().any(|byte| byte.is_ascii_uppercase()) {
        Cow::Owned(key.to_ascii_lowercase())
    } else {
        Cow::Borrowed(key)
    }
}

fn owned_targets(alias: &AliasEntry) -> Vec<String> {
    alias.targets().map(str::to_owned).collect()
}

/// Parses and validates a stored body, turning a panic in validation into
/// a refusal: nothing in a change may stop the follower.
fn parse_document(id: &str, body: &Body) -> Result<Document, String> {
    match catch_unwind(AssertUnwindSafe(|| Document::from_stored(id, body))) {
        Ok(Ok(document)) => Ok(document),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("validation failed unexpectedly (a bug in couchmail-model)".to_owned()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use couchmail_testkit::fixtures::{
        alias, domain, domain_alias, domain_with_quota_default, inactive, mailbox, sieve, with_sieve_active,
    };
    use serde_json::json;

    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    /// Two real domains (one with a catch-all), an inactive one, and alias
    /// domains of each; mailboxes, aliases, chains and a loop.
    fn world() -> Snapshot {
        let mut documents = vec![
            domain_with_quota_default("example.com", 1 << 30),
            domain("example.org"),
            inactive(domain("off.example")),
            domain_alias("example.net", "example.com"),
            domain_alias("example.info", "example.org"),
            domain_alias("dead.example", "off.example"),
            domain_alias("orphan.example", "missing.example"),
            with_sieve_active(mailbox("alice@example.com"), "main"),
            mailbox("bob@example.com"),
            inactive(mailbox("carol@example.com")),
            mailbox("dave@off.example"),
            mailbox("erin@example.org"),
            alias("info@example.com", &["alice@example.com", "bob@example.com"]),
            alias("team@example.com", &["info@example.com", "someone@elsewhere.example"]),
            alias("loop1@example.com", &["loop2@example.com"]),
            alias("loop2@example.com", &["loop1@example.com", "alice@example.com"]),
            inactive(alias("old@example.com", &["alice@example.com"])),
            alias("sales@example.com", &["bob@example.net"]),
            alias("sink@example.com", &["nobody@example.com"]),
            alias("@example.com", &["alice@example.com"]),
            alias("shared@off.example", &["dave@off.example"]),
            sieve("alice@example.com", "main", "keep;\n"),
            sieve("alice@example.com", "vacation", "discard;\n"),
            sieve("bob@example.com", "main", "keep;\n"),
        ];
        // chain0 → chain1 → … → chain{MAX_ALIAS_DEPTH + 1} → bob: too deep to grant anything.
        for link_idx in 0..=MAX_ALIAS_DEPTH + 1 {
            let target = if link_idx == MAX_ALIAS_DEPTH + 1 {
                "bob@example.com".to_owned()
            } else {
                format!("chain{}@example.com", link_idx + 1)
            };
            documents.push(alias(&format!("chain{link_idx}@example.com"), &[&target]));
        }
        Snapshot::from_documents(documents)
    }

    fn change(seq: u64, id: &str, body: Option<serde_json::Value>) -> Change {
        Change {
            seq: Seq(seq.to_string()),
            id: id.to_owned(),
            rev: Rev(format!("{seq}-abc")),
            body: body.map(|body| body.as_object().cloned().unwrap()),
        }
    }

    #[test]
    fn domains_and_alias_domains() {
        let snapshot = world();
        assert!(snapshot.domain("example.com").is_some_and(DomainEntry::is_active));
        assert!(snapshot.domain("EXAMPLE.com").is_some(), "upper case is folded");
        assert!(snapshot.domain("off.example").is_some_and(|domain| !domain.is_active()));
        assert!(snapshot.domain("example.net").is_none(), "an alias domain is not a real domain");
        assert!(snapshot.domain("elsewhere.example").is_none());

        assert_eq!(snapshot.alias_domain_target("example.net"), Some("example.com"));
        assert_eq!(snapshot.alias_domain_target("dead.example"), None, "its target is inactive");
        assert_eq!(snapshot.alias_domain_target("orphan.example"), None, "its target does not exist");
        assert_eq!(snapshot.alias_domain_target("example.com"), None);
        assert_eq!(snapshot.alias_domain("dead.example").map(AliasDomainEntry::target), Some("off.example"));

        for (name, served) in [
            ("example.com", true),
            ("example.net", true),
            ("Example.Info", true),
            ("off.example", false),
            ("dead.example", false),
            ("orphan.example", false),
            ("elsewhere.example", false),
            ("", false),
        ] {
            assert_eq!(snapshot.is_served_domain(name), served, "{name}");
        }
    }

    #[test]
    fn mailboxes_and_quotas() {
        let snapshot = world();
        let alice = snapshot.mailbox("Alice@Example.COM").unwrap();
        assert_eq!(alice.address(), "alice@example.com");
        assert_eq!(alice.domain(), "example.com");
        assert_eq!(alice.password_hash(), None);
        assert!(snapshot.mailbox("alice@example.net").is_none(), "mailbox() is exact");
        assert!(snapshot.active_mailbox("alice@example.com").is_some());
        assert!(snapshot.mailbox("carol@example.com").is_some());
        assert!(snapshot.active_mailbox("carol@example.com").is_none(), "the mailbox is inactive");
        assert!(snapshot.active_mailbox("dave@off.example").is_none(), "its domain is inactive");
        assert_eq!(snapshot.mailbox_quota("alice@example.com"), Some(1 << 30), "the domain's default");
        assert_eq!(snapshot.mailbox_quota("erin@example.org"), None);
        assert_eq!(snapshot.mailbox_quota("nobody@example.com"), None);
    }

    #[test]
    fn deliverable_mailboxes_strip_the_extension() {
        let snapshot = world();
        let delivered_to = |address: &str| snapshot.deliverable_mailbox(address).map(MailboxEntry::address);
        assert_eq!(delivered_to("alice@example.com"), Some("alice@example.com"));
        assert_eq!(delivered_to("Alice+Tag@example.com"), Some("alice@example.com"));
        assert_eq!(delivered_to("carol@example.com"), None, "inactive");
        assert_eq!(delivered_to("carol+x@example.com"), None, "inactive");
        assert_eq!(delivered_to("dave+x@off.example"), None, "inactive domain");
        assert_eq!(delivered_to("info@example.com"), None, "an alias");
        assert_eq!(delivered_to("alice@example.net"), None, "alias domains are rewritten by virtual_alias_maps");
        for garbage in ["", "@", "+@example.com", "+x@example.com", "alice+x", "@example.com"] {
            assert_eq!(delivered_to(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn virtual_alias_answers_as_postfix_needs() {
        let snapshot = world();
        let cases: &[(&str, Option<&[&str]>)] = &[
            // A mailbox maps to itself, so the catch-all cannot swallow it.
            ("alice@example.com", Some(&["alice@example.com"])),
            ("ALICE@example.com", Some(&["alice@example.com"])),
            // An inactive mailbox resolves to nothing, and never to the catch-all.
            ("carol@example.com", None),
            ("carol+x@example.com", None),
            ("carol@example.net", None),
            ("info@example.com", Some(&["alice@example.com", "bob@example.com"])),
            ("team@example.com", Some(&["info@example.com", "someone@elsewhere.example"])),
            // An inactive alias is as if it did not exist: the catch-all takes its mail.
            ("old@example.com", Some(&["alice@example.com"])),
            // Postfix asks a socketmap once, so the catch-all is applied here.
            ("nobody@example.com", Some(&["alice@example.com"])),
            ("Nobody@Example.com", Some(&["alice@example.com"])),
            // Plus-addressing: a mailbox keeps its extension, an alias and the catch-all take the mail.
            ("alice+tag@example.com", Some(&["alice+tag@example.com"])),
            ("Alice+Tag@Example.COM", Some(&["alice+tag@example.com"])),
            ("alice+a+b@example.com", Some(&["alice+a+b@example.com"])),
            ("info+x@example.com", Some(&["alice@example.com", "bob@example.com"])),
            ("nobody+x@example.com", Some(&["alice@example.com"])),
            ("erin+x@example.org", Some(&["erin+x@example.org"])),
            ("nobody+x@example.org", None),
            ("+x@example.org", None),
            ("alice+tag@example.net", Some(&["alice+tag@example.com"])),
            ("erin+x@example.info", Some(&["erin+x@example.org"])),
            ("nobody+x@example.info", None),
            ("@example.com", Some(&["alice@example.com"])),
            ("@example.org", None),
            ("nobody@example.org", None),
            // Alias domains rewrite only to addresses that resolve.
            ("alice@example.net", Some(&["alice@example.com"])),
            ("info@example.net", Some(&["info@example.com"])),
            ("nobody@example.net", Some(&["nobody@example.com"])),
            ("erin@example.info", Some(&["erin@example.org"])),
            ("nobody@example.info", None),
            ("@example.info", None),
            ("@example.net", None),
            // Inactive, orphaned and unknown domains answer nothing.
            ("dave@off.example", None),
            ("shared@off.example", None),
            ("@off.example", None),
            ("dave@dead.example", None),
            ("x@orphan.example", None),
            ("someone@elsewhere.example", None),
            // Garbage never panics.
            ("", None),
            ("@", None),
            ("noat", None),
            ("alice@", None),
            ("@@", None),
            ("a@b@example.com", None),
        ];
        for (key, expected) in cases {
            let expected = expected.map(strings);
            assert_eq!(snapshot.virtual_alias(key), expected, "{key}");
        }
    }

    #[test]
    fn sender_logins_follow_aliases_but_not_catch_alls() {
        let snapshot = world();
        let cases: &[(&str, &[&str])] = &[
            ("alice@example.com", &["alice@example.com"]),
            ("Alice@Example.com", &["alice@example.com"]),
            ("carol@example.com", &[]),
            ("info@example.com", &["alice@example.com", "bob@example.com"]),
            ("team@example.com", &["alice@example.com", "bob@example.com"]),
            ("loop1@example.com", &["alice@example.com"]),
            ("loop2@example.com", &["alice@example.com"]),
            ("old@example.com", &[]),
            ("sales@example.com", &["bob@example.com"]),
            ("sink@example.com", &[]),
            ("nobody@example.com", &[]),
            ("@example.com", &[]),
            ("alice@example.net", &["alice@example.com"]),
            ("info@example.net", &["alice@example.com", "bob@example.com"]),
            ("dave@off.example", &[]),
            ("shared@off.example", &[]),
            ("dave@dead.example", &[]),
            ("someone@elsewhere.example", &[]),
            ("chain0@example.com", &[]),
            ("chain2@example.com", &["bob@example.com"]),
            ("", &[]),
            ("@", &[]),
            ("a@b@example.com", &[]),
        ];
        for (address, expected) in cases {
            assert_eq!(snapshot.sender_logins(address), strings(expected), "{address}");
        }
    }

    #[test]
    fn sender_logins_end_on_a_wide_loop() {
        // Every alias points at every other: the visit bound keeps this cheap.
        let members: Vec<String> = (0..50).map(|member_idx| format!("m{member_idx}@example.com")).collect();
        let mut documents = vec![domain("example.com"), mailbox("alice@example.com")];
        for member in &members {
            let mut targets: Vec<&str> = members.iter().filter(|other| *other != member).map(String::as_str).collect();
            targets.push("alice@example.com");
            documents.push(alias(member, &targets));
        }
        let snapshot = Snapshot::from_documents(documents);
        assert_eq!(snapshot.sender_logins("m0@example.com"), strings(&["alice@example.com"]));
    }

    #[test]
    fn sieve_scripts_by_name_and_content_id() {
        let snapshot = world();
        let (active_id, script) = snapshot.active_sieve("alice@example.com").unwrap();
        assert_eq!(script, "keep;\n");
        assert_eq!(active_id.len(), 64);
        let vacation = snapshot.sieve("alice@example.com", "vacation").unwrap();
        assert_eq!(vacation.owner(), "alice@example.com");
        assert_eq!(vacation.name(), "vacation");
        assert_ne!(vacation.content_id(), active_id);
        assert_eq!(snapshot.sieve_by_id("alice@example.com", vacation.content_id()), Some("discard;\n"));
        assert_eq!(snapshot.sieve_by_id("bob@example.com", vacation.content_id()), None, "another user's id");
        assert_eq!(snapshot.active_sieve("bob@example.com"), None, "bob has no active script");
        let names: Vec<&str> = snapshot.sieve_scripts("alice@example.com").map(SieveEntry::name).collect();
        assert_eq!(names, ["main", "vacation"]);
        assert_eq!(snapshot.sieve_scripts("alice@example.co").count(), 0);
        assert_eq!(snapshot.sieve_scripts("").count(), 0);

        // New content means a new id, so Pigeonhole recompiles.
        let mut changed = snapshot.clone();
        changed.insert_document(&sieve("alice@example.com", "main", "stop;\n"));
        let (changed_id, changed_script) = changed.active_sieve("alice@example.com").unwrap();
        assert_eq!(changed_script, "stop;\n");
        assert_ne!(changed_id, active_id);
        assert_eq!(snapshot.active_sieve("alice@example.com").map(|(_, script)| script), Some("keep;\n"));
    }

    #[test]
    fn applying_changes_keeps_the_last_valid_version() {
        let mut snapshot = world();
        let before = snapshot.counts();

        let bad = change(1, "mailbox:bob@example.com", Some(json!({ "type": "mailbox", "active": "yes" })));
        let Applied::Skipped(skipped) = snapshot.apply_change(&bad) else { panic!("an invalid body is skipped") };
        assert_eq!(skipped.id, "mailbox:bob@example.com");
        assert!(skipped.reason.contains("active"), "{}", skipped.reason);
        assert!(snapshot.active_mailbox("bob@example.com").is_some(), "the last valid version stays");
        assert_eq!(snapshot.counts().invalid_documents, 1);

        let good = change(2, "mailbox:bob@example.com", Some(json!({ "type": "mailbox", "active": false })));
        assert_eq!(snapshot.apply_change(&good), Applied::Upserted);
        assert!(snapshot.mailbox("bob@example.com").is_some_and(|bob| !bob.is_active()));
        assert_eq!(snapshot.counts().invalid_documents, 0, "a valid version clears the record");

        for (seq, id, body) in [
            (3, "mailbox:Bob@example.com", json!({ "type": "mailbox" })),
            (4, "gadget:x", json!({ "type": "gadget" })),
            (5, "alias:x@example.com", json!({ "type": "domain" })),
            (6, "nocolon", json!({})),
        ] {
            let outcome = snapshot.apply_change(&change(seq, id, Some(body)));
            assert!(matches!(outcome, Applied::Skipped(_)), "{id}: {outcome:?}");
        }
        assert_eq!(snapshot.counts().invalid_documents, 4);
        assert_eq!(snapshot.counts().mailboxes, before.mailboxes);

        // The tombstone of a never-valid id removes nothing else.
        assert_eq!(snapshot.apply_change(&change(7, "mailbox:Bob@example.com", None)), Applied::Removed);
        assert!(snapshot.mailbox("bob@example.com").is_some());
        assert_eq!(snapshot.counts().invalid_documents, 3);

        assert_eq!(snapshot.apply_change(&change(8, "mailbox:bob@example.com", None)), Applied::Removed);
        assert!(snapshot.mailbox("bob@example.com").is_none());
        assert_eq!(snapshot.virtual_alias("bob@example.com"), Some(strings(&["alice@example.com"])), "the catch-all");
        assert_eq!(snapshot.sender_logins("info@example.com"), strings(&["alice@example.com"]));
        assert_eq!(snapshot.counts().mailboxes, before.mailboxes - 1);

        assert_eq!(snapshot.apply_change(&change(9, "alias:@example.com", None)), Applied::Removed);
        assert_eq!(snapshot.virtual_alias("@example.com"), None);
        assert_eq!(snapshot.virtual_alias("nobody@example.net"), None, "no catch-all, no rewrite");
    }

    #[test]
    fn an_address_with_an_extension_that_exists_itself_wins() {
        let snapshot = Snapshot::from_documents([
            domain("example.com"),
            domain_alias("example.net", "example.com"),
            mailbox("bob@example.com"),
            mailbox("carol@example.com"),
            mailbox("erin+work@example.com"),
            alias("bob+lists@example.com", &["carol@example.com"]),
            inactive(alias("bob+old@example.com", &["carol@example.com"])),
        ]);
        let cases: &[(&str, Option<&[&str]>)] = &[
            ("bob+lists@example.com", Some(&["carol@example.com"])),
            ("bob+lists@example.net", Some(&["bob+lists@example.com"])),
            ("bob+old@example.com", Some(&["bob+old@example.com"])),
            ("bob+other@example.com", Some(&["bob+other@example.com"])),
            ("erin+work@example.com", Some(&["erin+work@example.com"])),
            ("erin+home@example.com", None),
            ("erin@example.com", None),
        ];
        for (key, expected) in cases {
            assert_eq!(snapshot.virtual_alias(key), expected.map(strings), "{key}");
        }
        assert!(matches!(snapshot.resolve_recipient("bob+lists@example.com"), Some(Recipient::Alias(_))));
        assert!(
            matches!(snapshot.resolve_recipient("bob+x@example.com"), Some(Recipient::Mailbox(bob)) if bob.address() == "bob@example.com")
        );

        assert_eq!(snapshot.sender_logins("bob+lists@example.com"), strings(&["carol@example.com"]));
        assert_eq!(snapshot.sender_logins("bob+old@example.com"), strings(&["bob@example.com"]));
        assert_eq!(snapshot.sender_logins("bob+x@example.net"), strings(&["bob@example.com"]));
        assert_eq!(snapshot.sender_logins("erin+work@example.com"), strings(&["erin+work@example.com"]));
        assert_eq!(snapshot.sender_logins("erin+home@example.com"), Vec::<String>::new());
    }

    #[test]
    fn resolve_recipient_names_what_it_found() {
        let snapshot = world();
        assert!(matches!(snapshot.resolve_recipient("alice@example.com"), Some(Recipient::Mailbox(_))));
        assert!(matches!(snapshot.resolve_recipient("info@example.com"), Some(Recipient::Alias(_))));
        assert!(
            matches!(snapshot.resolve_recipient("nobody@example.com"), Some(Recipient::CatchAll(all)) if all.key() == "@example.com")
        );
        assert!(matches!(snapshot.resolve_recipient("@example.com"), Some(Recipient::CatchAll(_))));
        assert_eq!(
            snapshot.resolve_recipient("nobody@example.net"),
            Some(Recipient::AliasDomain("nobody@example.com".to_owned()))
        );
        assert_eq!(snapshot.resolve_recipient("carol@example.com"), None);
    }

    #[test]
    fn a_replaced_sieve_script_keeps_its_previous_content_one_version_deep() {
        let mut snapshot = world();
        let first_id = snapshot.sieve("alice@example.com", "main").unwrap().content_id().to_owned();
        assert_eq!(snapshot.sieve("alice@example.com", "main").unwrap().previous_content_id(), None);

        snapshot.insert_document(&sieve("alice@example.com", "main", "stop;\n"));
        let second_id = snapshot.sieve("alice@example.com", "main").unwrap().content_id().to_owned();
        assert_eq!(snapshot.sieve("alice@example.com", "main").unwrap().previous_content_id(), Some(&*first_id));
        // Pigeonhole read the name before the change and the data after it: the old text still answers.
        assert_eq!(snapshot.sieve_by_id("alice@example.com", &first_id), Some("keep;\n"));
        assert_eq!(snapshot.sieve_by_id("alice@example.com", &second_id), Some("stop;\n"));
        assert_eq!(snapshot.sieve_by_id("bob@example.com", &second_id), None, "another user's id");

        // Saving the same content again keeps the previous version.
        snapshot.insert_document(&sieve("alice@example.com", "main", "stop;\n"));
        assert_eq!(snapshot.sieve_by_id("alice@example.com", &first_id), Some("keep;\n"));

        // One version deep: a third content forgets the first.
        snapshot.insert_document(&sieve("alice@example.com", "main", "discard;\n"));
        assert_eq!(snapshot.sieve_by_id("alice@example.com", &first_id), None);
        assert_eq!(snapshot.sieve_by_id("alice@example.com", &second_id), Some("stop;\n"));

        // Deleting the script forgets every version.
        assert!(snapshot.remove_document("sieve:alice@example.com:main"));
        assert_eq!(snapshot.sieve_by_id("alice@example.com", &second_id), None);
    }

    #[test]
    fn counts_and_readiness() {
        assert!(!Snapshot::default().is_ready());
        let snapshot = world();
        assert!(snapshot.is_ready());
        let counts = snapshot.counts();
        assert_eq!(counts.domains, 3);
        assert_eq!(counts.alias_domains, 4);
        assert_eq!(counts.mailboxes, 5);
        assert_eq!(counts.aliases, 9 + MAX_ALIAS_DEPTH + 2);
        assert_eq!(counts.sieve_scripts, 3);
        assert_eq!(counts.tokens, 0);
        assert_eq!(snapshot.mailboxes().count(), 5);
        assert_eq!(snapshot.aliases().filter(|alias| alias.is_catch_all()).count(), 1);
    }
}
