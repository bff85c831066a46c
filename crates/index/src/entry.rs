//! What the snapshot keeps of each document, and the persistent tables that hold it.
//!
//! Entries keep only what the daemons and the API ask for, in compact form:
//! boxed strings rather than `String`s (no spare capacity), alias targets
//! joined by commas (the form Postfix answers in; `,` is not `atext`, so it
//! never occurs in an address), and no display names.
//! Each entry sits behind one `Arc`, so that copying a table node when a
//! snapshot is updated copies pointers, never strings.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Bound;
use std::sync::Arc;

use couchmail_model::{
    Alias, AliasKey, Domain, DomainAlias, Listing, ListingAction, ListingKind, Mailbox, PolicySettings, Role,
    SieveScript, Token,
};

/// A real domain we serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainEntry {
    name: Box<str>,
    active: bool,
    quota_default: Option<u64>,
    max_mailboxes: Option<u32>,
    policy: PolicySettings,
}

impl DomainEntry {
    pub(crate) fn from_document(domain: &Domain) -> DomainEntry {
        DomainEntry::from_parts(
            domain.name.as_str(),
            domain.active,
            domain.quota_default,
            domain.max_mailboxes,
            domain.policy,
        )
    }

    /// The entry as read back from a checkpoint, which holds what an entry keeps.
    pub(crate) fn from_parts(
        name: &str,
        active: bool,
        quota_default: Option<u64>,
        max_mailboxes: Option<u32>,
        policy: PolicySettings,
    ) -> DomainEntry {
        DomainEntry { name: name.into(), active, quota_default, max_mailboxes, policy }
    }

    /// The domain in normal (A-label) form.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the domain receives mail and its users may log in.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Quota in bytes of a mailbox that names none.
    pub fn quota_default(&self) -> Option<u64> {
        self.quota_default
    }

    /// Most mailboxes the domain may hold.
    pub fn max_mailboxes(&self) -> Option<u32> {
        self.max_mailboxes
    }

    /// The domain's own policy settings (greylisting, spam thresholds, sending limits).
    pub fn policy(&self) -> &PolicySettings {
        &self.policy
    }
}

/// Another name of a real domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasDomainEntry {
    name: Box<str>,
    target: Box<str>,
}

impl AliasDomainEntry {
    pub(crate) fn from_document(alias: &DomainAlias) -> AliasDomainEntry {
        AliasDomainEntry::from_parts(alias.name.as_str(), alias.target.as_str())
    }

    /// The entry as read back from a checkpoint.
    pub(crate) fn from_parts(name: &str, target: &str) -> AliasDomainEntry {
        AliasDomainEntry { name: name.into(), target: target.into() }
    }

    /// The alias domain.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The real domain it stands for.
    pub fn target(&self) -> &str {
        &self.target
    }
}

/// A mailbox: the login and delivery facts about one address.
#[derive(Clone, PartialEq, Eq)]
pub struct MailboxEntry {
    /// The address, the password hash and the active Sieve script's name,
    /// back to back in one allocation: with a million mailboxes, one
    /// allocation instead of three saves tens of megabytes.
    /// A hash and a script name are never empty, so an empty part is `None`.
    text: Box<str>,
    address_end: u32,
    password_end: u32,
    active: bool,
    quota_bytes: Option<u64>,
    roles: Box<[Role]>,
    /// Its own policy settings, boxed and `None` when it has none, as most mailboxes have: eight
    /// bytes a mailbox instead of thirty.
    policy: Option<Box<PolicySettings>>,
}

impl MailboxEntry {
    pub(crate) fn from_document(mailbox: &Mailbox) -> MailboxEntry {
        MailboxEntry::from_parts(
            &mailbox.address.to_string(),
            mailbox.password.as_ref().map(|hash| hash.as_str()),
            mailbox.sieve_active.as_ref().map(|name| name.as_str()),
            mailbox.active,
            mailbox.quota_bytes,
            mailbox.roles.clone(),
            mailbox.policy,
        )
    }

    /// The entry as read back from a checkpoint (or built from a document).
    pub(crate) fn from_parts(
        address: &str,
        password_hash: Option<&str>,
        sieve_active: Option<&str>,
        active: bool,
        quota_bytes: Option<u64>,
        roles: Vec<Role>,
        policy: PolicySettings,
    ) -> MailboxEntry {
        let mut text =
            String::with_capacity(address.len() + password_hash.map_or(0, str::len) + sieve_active.map_or(0, str::len));
        text.push_str(address);
        let address_end = offset(&text);
        text.push_str(password_hash.unwrap_or_default());
        let password_end = offset(&text);
        text.push_str(sieve_active.unwrap_or_default());
        MailboxEntry {
            text: text.into_boxed_str(),
            address_end,
            password_end,
            active,
            quota_bytes,
            roles: roles.into_boxed_slice(),
            policy: (!policy.is_empty()).then(|| Box::new(policy)),
        }
    }

    /// The address, which is also the login.
    pub fn address(&self) -> &str {
        part(&self.text, 0, self.address_end)
    }

    /// The domain part of the address.
    pub fn domain(&self) -> &str {
        domain_of(self.address()).unwrap_or_default()
    }

    /// The password hash in Dovecot's `{SCHEME}hash` form; `None` until a
    /// password is set (no login works then).
    pub fn password_hash(&self) -> Option<&str> {
        Some(part(&self.text, self.address_end, self.password_end)).filter(|hash| !hash.is_empty())
    }

    /// Whether the mailbox itself is active (see also its domain's flag).
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// The mailbox's own quota in bytes; `None` takes the domain's default.
    pub fn quota_bytes(&self) -> Option<u64> {
        self.quota_bytes
    }

    /// What else the owner may manage.
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    /// The name of the Sieve script that runs at delivery.
    pub fn sieve_active(&self) -> Option<&str> {
        Some(part(&self.text, self.password_end, offset(&self.text))).filter(|name| !name.is_empty())
    }

    /// The mailbox's own policy settings; what is not set here is its domain's
    /// (see [`Snapshot::mailbox_policy`](crate::Snapshot::mailbox_policy)).
    pub fn policy(&self) -> PolicySettings {
        self.policy.as_deref().copied().unwrap_or_default()
    }
}

impl fmt::Debug for MailboxEntry {
    // Like `PasswordHash`, never shows the hash itself: logs are read by more people than the store.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = self.password_hash().map(|hash| hash.split_inclusive('}').next().unwrap_or_default());
        f.debug_struct("MailboxEntry")
            .field("address", &self.address())
            .field("password", &password.map(|scheme| format!("{scheme}…")))
            .field("active", &self.active)
            .field("quota_bytes", &self.quota_bytes)
            .field("roles", &self.roles)
            .field("sieve_active", &self.sieve_active())
            .field("policy", &self.policy())
            .finish()
    }
}

/// An alias (`info@example.com`) or a domain's catch-all (`@example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasEntry {
    /// The key, then the targets joined by commas, in one allocation.
    text: Box<str>,
    key_end: u32,
    active: bool,
}

impl AliasEntry {
    pub(crate) fn from_document(alias: &Alias) -> AliasEntry {
        let mut text = match &alias.key {
            AliasKey::Address(address) => address.to_string(),
            AliasKey::CatchAll(domain) => format!("@{domain}"),
        };
        let key_end = offset(&text);
        for (target_idx, target) in alias.targets.iter().enumerate() {
            if target_idx > 0 {
                text.push(',');
            }
            text.push_str(&target.to_string());
        }
        AliasEntry { text: text.into_boxed_str(), key_end, active: alias.active }
    }

    /// The entry as read back from a checkpoint: the key, and the targets joined by commas.
    pub(crate) fn from_parts(key: &str, targets_joined: &str, active: bool) -> AliasEntry {
        let mut text = String::with_capacity(key.len() + targets_joined.len());
        text.push_str(key);
        let key_end = offset(&text);
        text.push_str(targets_joined);
        AliasEntry { text: text.into_boxed_str(), key_end, active }
    }

    /// `local@domain`, or `@domain` for a catch-all.
    pub fn key(&self) -> &str {
        part(&self.text, 0, self.key_end)
    }

    /// Whether this is a domain's catch-all.
    pub fn is_catch_all(&self) -> bool {
        self.key().starts_with('@')
    }

    /// The domain the alias belongs to.
    pub fn domain(&self) -> &str {
        domain_of(self.key()).unwrap_or_default()
    }

    /// Where mail goes, in the order the document lists them.
    pub fn targets(&self) -> impl Iterator<Item = &str> + '_ {
        self.targets_joined().split(',').filter(|target| !target.is_empty())
    }

    /// The targets joined by commas, as Postfix wants a multi-address answer.
    pub fn targets_joined(&self) -> &str {
        part(&self.text, self.key_end, offset(&self.text))
    }

    /// An inactive alias is as if it did not exist.
    pub fn is_active(&self) -> bool {
        self.active
    }
}

/// The length of `text` as an offset into a packed entry. Documents are far
/// smaller than 4 GiB; were one not, its parts would read as empty, not panic.
fn offset(text: &str) -> u32 {
    u32::try_from(text.len()).unwrap_or(u32::MAX)
}

/// `text[start..end]`, or empty when that is not a slice of `text`.
fn part(text: &str, start: u32, end: u32) -> &str {
    text.get(start as usize..end as usize).unwrap_or_default()
}

/// A Sieve script of one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SieveEntry {
    /// `owner:name`, the key part of the `_id`; the owner never contains `:`.
    key: Box<str>,
    owner_len: usize,
    content_id: Box<str>,
    script: Box<str>,
    /// The content before the last change, one version deep (see
    /// [`Snapshot::sieve_by_id`](crate::Snapshot::sieve_by_id)).
    previous: Option<Box<PreviousContent>>,
}

/// A script's content before its last change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PreviousContent {
    content_id: Box<str>,
    script: Box<str>,
}

impl SieveEntry {
    pub(crate) fn from_document(sieve: &SieveScript) -> SieveEntry {
        let owner = sieve.owner.to_string();
        SieveEntry {
            key: format!("{owner}:{}", sieve.name).into_boxed_str(),
            owner_len: owner.len(),
            content_id: sieve.content_id().into_boxed_str(),
            script: sieve.script.as_str().into(),
            previous: None,
        }
    }

    /// The entry as read back from a checkpoint: `previous` is the content id and source
    /// before the last change, as [`SieveEntry::previous`] gives them.
    pub(crate) fn from_parts(
        owner: &str,
        name: &str,
        content_id: &str,
        script: &str,
        previous: Option<(&str, &str)>,
    ) -> SieveEntry {
        SieveEntry {
            key: format!("{owner}:{name}").into_boxed_str(),
            owner_len: owner.len(),
            content_id: content_id.into(),
            script: script.into(),
            previous: previous.map(|(content_id, script)| {
                Box::new(PreviousContent { content_id: content_id.into(), script: script.into() })
            }),
        }
    }

    /// The content id and source before the last change, for a checkpoint.
    pub(crate) fn previous(&self) -> Option<(&str, &str)> {
        self.previous.as_ref().map(|previous| (&*previous.content_id, &*previous.script))
    }

    /// Makes this entry, which replaces `replaced`, remember the content it
    /// replaces; a save without a change of content keeps the older one.
    pub(crate) fn keep_previous(&mut self, replaced: &SieveEntry) {
        self.previous = if replaced.content_id == self.content_id {
            replaced.previous.clone()
        } else {
            Some(Box::new(PreviousContent { content_id: replaced.content_id.clone(), script: replaced.script.clone() }))
        };
    }

    /// The content id the script had before its last change, if it changed
    /// since the index started.
    pub fn previous_content_id(&self) -> Option<&str> {
        self.previous.as_ref().map(|previous| &*previous.content_id)
    }

    /// The script's previous source, when `content_id` is its previous content id.
    pub fn previous_script(&self, content_id: &str) -> Option<&str> {
        self.previous.as_ref().filter(|previous| &*previous.content_id == content_id).map(|previous| &*previous.script)
    }

    /// The mailbox the script belongs to.
    pub fn owner(&self) -> &str {
        &self.key[..self.owner_len]
    }

    /// The script's name, unique per mailbox.
    pub fn name(&self) -> &str {
        &self.key[self.owner_len + 1..]
    }

    /// The id Pigeonhole compiles by: it changes exactly when the content does.
    pub fn content_id(&self) -> &str {
        &self.content_id
    }

    /// The Sieve source.
    pub fn script(&self) -> &str {
        &self.script
    }
}

/// One entry of a blocklist or allowlist.
///
/// Kept as its key (`<scope>:<action>:<kind>:<value>`, the `_id` without `listing:`), which is what a
/// lookup probes for; the parts are read back from it on demand, as only a match needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingEntry {
    key: Box<str>,
    note: Box<str>,
    created: Option<u64>,
}

impl ListingEntry {
    pub(crate) fn from_document(listing: &Listing) -> ListingEntry {
        ListingEntry::from_parts(&listing.key.to_string(), &listing.note, listing.created)
    }

    /// The entry as read back from a checkpoint.
    pub(crate) fn from_parts(key: &str, note: &str, created: Option<u64>) -> ListingEntry {
        ListingEntry { key: key.into(), note: note.into(), created }
    }

    /// `<scope>:<action>:<kind>:<value>`, the `_id` without its `listing:` prefix.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The scope: `global`, `domain:<domain>` or `mailbox:<address>`.
    pub fn scope(&self) -> &str {
        self.parts().0
    }

    /// `global`, `domain` or `mailbox`.
    pub fn level(&self) -> &str {
        self.scope().split(':').next().unwrap_or_default()
    }

    /// Block or allow.
    pub fn action(&self) -> ListingAction {
        // The key was in normal form when the entry was made, so anything but `allow` is `block`.
        if self.parts().1 == ListingAction::Allow.as_str() { ListingAction::Allow } else { ListingAction::Block }
    }

    /// What it matches on.
    pub fn kind(&self) -> ListingKind {
        self.parts().2.parse().unwrap_or(ListingKind::Client)
    }

    /// The value it matches, in normal form: an address, a domain, or a network.
    pub fn value(&self) -> &str {
        self.parts().3
    }

    /// Why it was listed.
    pub fn note(&self) -> &str {
        &self.note
    }

    /// When it was listed, seconds since the Unix epoch.
    pub fn created(&self) -> Option<u64> {
        self.created
    }

    /// Scope, action, kind and value. A scope holds at most one `:` after `domain` or `mailbox`, and
    /// the value, which comes last, may hold many (IPv6).
    fn parts(&self) -> (&str, &str, &str, &str) {
        let scope_len = if self.key.starts_with("global:") {
            "global".len()
        } else {
            self.key.match_indices(':').nth(1).map_or(self.key.len(), |(idx, _)| idx)
        };
        let scope = &self.key[..scope_len];
        let mut rest = self.key.get(scope_len + 1..).unwrap_or_default().splitn(3, ':');
        let (action, kind, value) =
            (rest.next().unwrap_or_default(), rest.next().unwrap_or_default(), rest.next().unwrap_or_default());
        (scope, action, kind, value)
    }
}

impl Keyed for ListingEntry {
    fn key(&self) -> &str {
        &self.key
    }
}

/// The domain part of `local@domain` or `@domain`.
pub(crate) fn domain_of(address: &str) -> Option<&str> {
    address.rsplit_once('@').map(|(_, domain)| domain)
}

/// An entry that a table can find by a string key.
pub(crate) trait Keyed {
    fn key(&self) -> &str;
}

impl Keyed for DomainEntry {
    fn key(&self) -> &str {
        &self.name
    }
}

impl Keyed for AliasDomainEntry {
    fn key(&self) -> &str {
        &self.name
    }
}

impl Keyed for MailboxEntry {
    fn key(&self) -> &str {
        self.address()
    }
}

impl Keyed for AliasEntry {
    fn key(&self) -> &str {
        self.key()
    }
}

impl Keyed for SieveEntry {
    fn key(&self) -> &str {
        &self.key
    }
}

impl Keyed for Token {
    fn key(&self) -> &str {
        &self.id
    }
}

/// An entry in a table, compared, ordered and hashed as its key alone.
///
/// Keeping the key inside the entry (rather than beside it as a map key)
/// stores each address once, and `Borrow<str>` lets a lookup by `&str`
/// go without allocating.
pub(crate) struct ByKey<T>(Arc<T>);

impl<T> Clone for ByKey<T> {
    fn clone(&self) -> Self {
        ByKey(Arc::clone(&self.0))
    }
}

impl<T: Keyed> Borrow<str> for ByKey<T> {
    fn borrow(&self) -> &str {
        self.0.key()
    }
}

impl<T: Keyed> PartialEq for ByKey<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}

impl<T: Keyed> Eq for ByKey<T> {}

impl<T: Keyed> Hash for ByKey<T> {
    // Hashes exactly as the `str` key does, as `Borrow` requires.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.key().hash(state);
    }
}

impl<T: Keyed> PartialOrd for ByKey<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: Keyed> Ord for ByKey<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.key().cmp(other.0.key())
    }
}

/// A persistent set of entries found by key: cloning is O(1), an insert or
/// removal O(log n) and copies only the nodes on its path.
///
/// A hash array mapped trie: a lookup hashes the key once and follows a few
/// nodes, comparing one stored key at the end.
pub(crate) struct Table<T> {
    entries: imbl::HashMap<ByKey<T>, ()>,
}

impl<T> Clone for Table<T> {
    fn clone(&self) -> Self {
        Table { entries: self.entries.clone() }
    }
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table { entries: imbl::HashMap::default() }
    }
}

impl<T: Keyed> Table<T> {
    pub(crate) fn get(&self, key: &str) -> Option<&T> {
        self.entries.get_key_value(key).map(|(entry, ())| &*entry.0)
    }

    /// Inserts `entry`, replacing the one with the same key.
    pub(crate) fn insert(&mut self, entry: T) {
        self.entries.insert(ByKey(Arc::new(entry)), ());
    }

    pub(crate) fn remove(&mut self, key: &str) -> bool {
        self.entries.remove(key).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every entry, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.entries.keys().map(|entry| &*entry.0)
    }
}

/// A persistent set of entries in key order, for tables read by key prefix.
pub(crate) struct OrderedTable<T> {
    entries: imbl::OrdSet<ByKey<T>>,
}

impl<T> Clone for OrderedTable<T> {
    fn clone(&self) -> Self {
        OrderedTable { entries: self.entries.clone() }
    }
}

impl<T> Default for OrderedTable<T> {
    fn default() -> Self {
        OrderedTable { entries: imbl::OrdSet::default() }
    }
}

impl<T: Keyed> OrderedTable<T> {
    pub(crate) fn get(&self, key: &str) -> Option<&T> {
        self.entries.get(key).map(|entry| &*entry.0)
    }

    /// Inserts `entry`, replacing the one with the same key.
    pub(crate) fn insert(&mut self, entry: T) {
        self.entries.insert(ByKey(Arc::new(entry)));
    }

    pub(crate) fn remove(&mut self, key: &str) -> bool {
        self.entries.remove(key).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entries whose key starts with `prefix`, in key order.
    pub(crate) fn with_prefix(&self, prefix: String) -> impl Iterator<Item = &T> + '_ {
        // The range iterator keeps no borrow of its bounds, so `prefix` can move into the filter.
        let entries = self.entries.range::<_, str>((Bound::Included(prefix.as_str()), Bound::Unbounded));
        entries.map(|entry| &*entry.0).take_while(move |entry| entry.key().starts_with(&prefix))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use couchmail_model::{Password, PasswordHash, SieveName};

    use super::*;

    #[derive(Debug, PartialEq)]
    struct Item {
        key: &'static str,
        value: u32,
    }

    impl Keyed for Item {
        fn key(&self) -> &str {
            self.key
        }
    }

    #[test]
    fn table_insert_replaces_the_whole_entry() {
        let mut table = Table::default();
        table.insert(Item { key: "a@example.com", value: 1 });
        let before = table.clone();
        table.insert(Item { key: "a@example.com", value: 2 });
        assert_eq!(table.len(), 1);
        assert_eq!(table.get("a@example.com").map(|item| item.value), Some(2));
        // The clone taken before is a snapshot and does not see the update.
        assert_eq!(before.get("a@example.com").map(|item| item.value), Some(1));
        assert!(table.remove("a@example.com"));
        assert!(!table.remove("a@example.com"));
        assert!(table.get("a@example.com").is_none());
    }

    #[test]
    fn ordered_table_reads_by_prefix() {
        let mut table = OrderedTable::default();
        for (key, value) in [("a@x.com:one", 1), ("a@x.com:two", 2), ("a@x.comm:three", 3), ("b@x.com:four", 4)] {
            table.insert(Item { key, value });
        }
        table.insert(Item { key: "a@x.com:two", value: 22 });
        let found: Vec<u32> = table.with_prefix("a@x.com:".to_owned()).map(|item| item.value).collect();
        assert_eq!(found, [1, 22]);
        assert_eq!(table.with_prefix("c@".to_owned()).count(), 0);
    }

    #[test]
    fn mailbox_parts_are_packed_and_read_back() {
        let hash = PasswordHash::new(&Password::new("correct horse battery".to_owned()).unwrap());
        let mut mailbox = Mailbox {
            address: "alice@example.com".parse().unwrap(),
            name: "Alice".to_owned(),
            password: Some(hash.clone()),
            active: true,
            quota_bytes: Some(1 << 30),
            roles: vec!["admin".parse().unwrap()],
            sieve_active: Some(SieveName::parse("main: filters").unwrap()),
            policy: PolicySettings::default(),
        };
        let entry = MailboxEntry::from_document(&mailbox);
        assert_eq!(entry.address(), "alice@example.com");
        assert_eq!(entry.domain(), "example.com");
        assert_eq!(entry.password_hash(), Some(hash.as_str()));
        assert_eq!(entry.sieve_active(), Some("main: filters"));
        assert_eq!(entry.quota_bytes(), Some(1 << 30));
        assert_eq!(entry.roles(), [Role::Admin]);
        let debug = format!("{entry:?}");
        assert!(debug.contains("{ARGON2ID}") && !debug.contains("$argon2id$"), "the hash stays hidden: {debug}");

        mailbox.password = None;
        mailbox.sieve_active = None;
        let entry = MailboxEntry::from_document(&mailbox);
        assert_eq!(entry.address(), "alice@example.com");
        assert_eq!(entry.password_hash(), None);
        assert_eq!(entry.sieve_active(), None);

        mailbox.sieve_active = Some(SieveName::parse("x").unwrap());
        let entry = MailboxEntry::from_document(&mailbox);
        assert_eq!((entry.password_hash(), entry.sieve_active()), (None, Some("x")));
        assert!(entry.policy.is_none(), "no settings, no allocation");

        mailbox.policy.greylisting = Some(false);
        let entry = MailboxEntry::from_document(&mailbox);
        assert_eq!(entry.policy().greylisting, Some(false));
    }

    #[test]
    fn listing_parts_are_read_from_the_key() {
        for (key, scope, level, action, kind, value) in [
            (
                "global:block:client:2001:db8::/32",
                "global",
                "global",
                ListingAction::Block,
                ListingKind::Client,
                "2001:db8::/32",
            ),
            (
                "domain:example.com:allow:sender-domain:partner.example",
                "domain:example.com",
                "domain",
                ListingAction::Allow,
                ListingKind::SenderDomain,
                "partner.example",
            ),
            (
                "mailbox:alice@example.com:block:sender:spam@bad.example",
                "mailbox:alice@example.com",
                "mailbox",
                ListingAction::Block,
                ListingKind::Sender,
                "spam@bad.example",
            ),
        ] {
            let listing = Listing { key: key.parse().unwrap(), note: "why".to_owned(), created: Some(7) };
            let entry = ListingEntry::from_document(&listing);
            assert_eq!(entry.key(), key);
            assert_eq!(
                (entry.scope(), entry.level(), entry.action(), entry.kind(), entry.value()),
                (scope, level, action, kind, value)
            );
            assert_eq!((entry.note(), entry.created()), ("why", Some(7)));
        }
    }

    #[test]
    fn alias_targets_round_trip_through_the_joined_form() {
        let alias = Alias {
            key: "info@example.com".parse().unwrap(),
            targets: vec!["a@example.com".parse().unwrap(), "b@example.org".parse().unwrap()],
            active: true,
        };
        let entry = AliasEntry::from_document(&alias);
        assert_eq!(entry.targets().collect::<Vec<_>>(), ["a@example.com", "b@example.org"]);
        assert_eq!(entry.targets_joined(), "a@example.com,b@example.org");
        assert_eq!(entry.domain(), "example.com");
        assert_eq!(entry.key(), "info@example.com");
        assert!(!entry.is_catch_all());

        let catch_all = Alias { key: "@example.com".parse().unwrap(), targets: alias.targets.clone(), active: false };
        let entry = AliasEntry::from_document(&catch_all);
        assert_eq!(entry.key(), "@example.com");
        assert_eq!(entry.domain(), "example.com");
        assert!(entry.is_catch_all() && !entry.is_active());
        assert_eq!(entry.targets().count(), 2);
    }
}
