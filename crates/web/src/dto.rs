//! The JSON the API reads and writes (STYLE.md: serializable DTOs live in
//! `web`, not `model`).
//!
//! Inputs refuse unknown fields, so that a typo (`quota_byte`) is a 400
//! naming it rather than a silently ignored setting. Each resource has one
//! input type for both `POST` (create) and `PUT` (replace): on `POST` the key
//! field (`name`, `address`, `key`) is required; on `PUT` it may be left out
//! and, when given, must match the path, so that a client can send back
//! what it read. Fields marked read-only (`has_password`, a script's
//! `active`) are accepted for the same reason and ignored.
//!
//! Outputs never carry a password hash or a token hash; the bodies of
//! conflicting revisions, which are shown as stored, lose those fields
//! ([`REDACTED_FIELDS`]).

use couchmail_model::{
    Address, Alias, AliasKey, Domain, DomainAlias, DomainName, Listing, ListingAction, ListingKind, ListingScope,
    Mailbox, PolicySettings, Role, SieveName, SieveScript, SpamScore,
};
use couchmail_store::{Conflict, RawDoc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

fn yes() -> bool {
    true
}

/// A domain to create (`POST /domains`) or its new state (`PUT /domains/{domain}`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainInput {
    /// The domain; required on create, must match the path on update. Unicode names are stored as A-labels.
    #[schema(value_type = Option<String>, example = "example.com")]
    #[serde(default)]
    pub name: Option<DomainName>,
    /// Whether the domain receives mail and its users can log in. Admin only.
    #[serde(default = "yes")]
    pub active: bool,
    /// Quota of a new mailbox that names none, in bytes.
    #[serde(default)]
    pub quota_default: Option<u64>,
    /// Most mailboxes the domain may hold. Admin only.
    #[serde(default)]
    pub max_mailboxes: Option<u32>,
    /// `false` opts the domain's mailboxes out of greylisting; absent follows the installation.
    #[serde(default)]
    pub greylisting: Option<bool>,
    /// At or above this SpamAssassin score (0 to 100, one decimal) mail is filed into Junk; absent follows the
    /// installation.
    #[schema(value_type = Option<f64>, example = 5.0)]
    #[serde(default)]
    pub spam_threshold: Option<SpamScore>,
    /// At or above this score mail should be refused at SMTP time; above `spam_threshold`. Recorded but not
    /// applied yet: the SMTP-time refusal uses the site-wide `spam.smtp_reject_score`.
    #[schema(value_type = Option<f64>, example = 15.0)]
    #[serde(default)]
    pub spam_reject: Option<SpamScore>,
    /// Messages an hour each mailbox may send, unless it says otherwise. Admin only.
    #[serde(default)]
    pub messages_per_hour: Option<u32>,
    /// Recipients an hour each mailbox may send to, unless it says otherwise. Admin only.
    #[serde(default)]
    pub recipients_per_hour: Option<u32>,
}

impl DomainInput {
    /// The policy settings given.
    pub fn policy(&self) -> PolicySettings {
        PolicySettings {
            greylisting: self.greylisting,
            spam_threshold: self.spam_threshold,
            spam_reject: self.spam_reject,
            messages_per_hour: self.messages_per_hour,
            recipients_per_hour: self.recipients_per_hour,
        }
    }
}

/// A domain as stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct DomainView {
    /// The domain, as A-labels.
    pub name: String,
    /// Whether the domain receives mail and its users can log in.
    pub active: bool,
    /// Quota of a new mailbox that names none, in bytes.
    pub quota_default: Option<u64>,
    /// Most mailboxes the domain may hold.
    pub max_mailboxes: Option<u32>,
    /// Whether greylisting is on (`true`), off (`false`) or as the installation has it (absent).
    pub greylisting: Option<bool>,
    /// The Junk threshold; absent follows the installation.
    #[schema(value_type = Option<f64>)]
    pub spam_threshold: Option<SpamScore>,
    /// The SMTP-time reject score; absent follows the installation.
    #[schema(value_type = Option<f64>)]
    pub spam_reject: Option<SpamScore>,
    /// Messages an hour each mailbox may send; absent follows the installation.
    pub messages_per_hour: Option<u32>,
    /// Recipients an hour each mailbox may send to; absent follows the installation.
    pub recipients_per_hour: Option<u32>,
}

impl From<&Domain> for DomainView {
    fn from(domain: &Domain) -> DomainView {
        DomainView {
            name: domain.name.to_string(),
            active: domain.active,
            quota_default: domain.quota_default,
            max_mailboxes: domain.max_mailboxes,
            greylisting: domain.policy.greylisting,
            spam_threshold: domain.policy.spam_threshold,
            spam_reject: domain.policy.spam_reject,
            messages_per_hour: domain.policy.messages_per_hour,
            recipients_per_hour: domain.policy.recipients_per_hour,
        }
    }
}

/// A domain alias to create or its new state.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainAliasInput {
    /// The alias domain; required on create, must match the path on update.
    #[schema(value_type = Option<String>, example = "example.net")]
    #[serde(default)]
    pub name: Option<DomainName>,
    /// The (real) domain it stands for.
    #[schema(value_type = String, example = "example.com")]
    pub target: DomainName,
}

/// A domain alias as stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct DomainAliasView {
    /// The alias domain.
    pub name: String,
    /// The domain it stands for.
    pub target: String,
}

impl From<&DomainAlias> for DomainAliasView {
    fn from(alias: &DomainAlias) -> DomainAliasView {
        DomainAliasView { name: alias.name.to_string(), target: alias.target.to_string() }
    }
}

/// A mailbox to create or its new state. The password is set on create or
/// with `PUT /mailboxes/{address}/password`, never here on update.
/// No `Debug`: it may carry a password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MailboxInput {
    /// The address and login; required on create, must match the path on update.
    #[schema(value_type = Option<String>, example = "alice@example.com")]
    #[serde(default)]
    pub address: Option<Address>,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Whether the mailbox receives mail and can log in. Not for the owner to change.
    #[serde(default = "yes")]
    pub active: bool,
    /// Quota in bytes; none takes the domain's default. Not for the owner to change.
    #[serde(default)]
    pub quota_bytes: Option<u64>,
    /// `admin` or `domain-admin:<domain>`. Granting needs that role's authority.
    #[schema(value_type = Vec<String>, example = json!(["domain-admin:example.com"]))]
    #[serde(default)]
    pub roles: Vec<Role>,
    /// The Sieve script that runs at delivery, by name; it must exist.
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub sieve_active: Option<SieveName>,
    /// The first password (create only); stored as an argon2id hash.
    #[schema(write_only)]
    #[serde(default)]
    pub password: Option<String>,
    /// Read-only: ignored.
    #[schema(read_only)]
    #[serde(default)]
    pub has_password: Option<bool>,
    /// `false` opts out of greylisting, `true` opts in; absent follows the domain.
    #[serde(default)]
    pub greylisting: Option<bool>,
    /// At or above this SpamAssassin score (0 to 100, one decimal) mail is filed into Junk; absent follows the domain.
    #[schema(value_type = Option<f64>, example = 6.5)]
    #[serde(default)]
    pub spam_threshold: Option<SpamScore>,
    /// At or above this score mail should be refused at SMTP time; above `spam_threshold`. Recorded but not
    /// applied yet: the SMTP-time refusal uses the site-wide `spam.smtp_reject_score`. Absent follows the domain.
    #[schema(value_type = Option<f64>)]
    #[serde(default)]
    pub spam_reject: Option<SpamScore>,
    /// Messages an hour the mailbox may send; absent follows the domain. Not for the owner to change.
    #[serde(default)]
    pub messages_per_hour: Option<u32>,
    /// Recipients an hour the mailbox may send to; absent follows the domain. Not for the owner to change.
    #[serde(default)]
    pub recipients_per_hour: Option<u32>,
}

impl MailboxInput {
    /// The policy settings given.
    pub fn policy(&self) -> PolicySettings {
        PolicySettings {
            greylisting: self.greylisting,
            spam_threshold: self.spam_threshold,
            spam_reject: self.spam_reject,
            messages_per_hour: self.messages_per_hour,
            recipients_per_hour: self.recipients_per_hour,
        }
    }
}

/// A mailbox as stored, without its password hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct MailboxView {
    /// The address and login.
    pub address: String,
    /// Display name.
    pub name: String,
    /// Whether the mailbox receives mail and can log in.
    pub active: bool,
    /// Quota in bytes; none takes the domain's default.
    pub quota_bytes: Option<u64>,
    /// Roles.
    pub roles: Vec<String>,
    /// The Sieve script that runs at delivery.
    pub sieve_active: Option<String>,
    /// Whether a password is set (the hash itself is never shown).
    pub has_password: bool,
    /// Its own greylisting choice; absent follows the domain.
    pub greylisting: Option<bool>,
    /// Its own Junk threshold; absent follows the domain.
    #[schema(value_type = Option<f64>)]
    pub spam_threshold: Option<SpamScore>,
    /// Its own SMTP-time reject score; absent follows the domain.
    #[schema(value_type = Option<f64>)]
    pub spam_reject: Option<SpamScore>,
    /// Its own hourly message limit; absent follows the domain.
    pub messages_per_hour: Option<u32>,
    /// Its own hourly recipient limit; absent follows the domain.
    pub recipients_per_hour: Option<u32>,
}

impl From<&Mailbox> for MailboxView {
    fn from(mailbox: &Mailbox) -> MailboxView {
        MailboxView {
            address: mailbox.address.to_string(),
            name: mailbox.name.clone(),
            active: mailbox.active,
            quota_bytes: mailbox.quota_bytes,
            roles: mailbox.roles.iter().map(ToString::to_string).collect(),
            sieve_active: mailbox.sieve_active.as_ref().map(ToString::to_string),
            has_password: mailbox.password.is_some(),
            greylisting: mailbox.policy.greylisting,
            spam_threshold: mailbox.policy.spam_threshold,
            spam_reject: mailbox.policy.spam_reject,
            messages_per_hour: mailbox.policy.messages_per_hour,
            recipients_per_hour: mailbox.policy.recipients_per_hour,
        }
    }
}

/// A new password for a mailbox. No `Debug`: it is a password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordInput {
    /// The password: at least 10 characters, no control characters.
    #[schema(write_only)]
    pub password: String,
}

/// An alias (or catch-all `@domain`) to create or its new state.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AliasInput {
    /// `local@domain`, or `@domain` for the catch-all; required on create, must match the path on update.
    #[schema(value_type = Option<String>, example = "info@example.com")]
    #[serde(default)]
    pub key: Option<AliasKey>,
    /// Where mail goes.
    #[schema(value_type = Vec<String>, example = json!(["alice@example.com"]))]
    pub targets: Vec<Address>,
    /// An inactive alias is as if it did not exist.
    #[serde(default = "yes")]
    pub active: bool,
}

/// An alias as stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct AliasView {
    /// `local@domain`, or `@domain` for the catch-all.
    pub key: String,
    /// Where mail goes.
    pub targets: Vec<String>,
    /// Whether the alias is in force.
    pub active: bool,
}

impl From<&Alias> for AliasView {
    fn from(alias: &Alias) -> AliasView {
        AliasView {
            key: alias.key.to_string(),
            targets: alias.targets.iter().map(ToString::to_string).collect(),
            active: alias.active,
        }
    }
}

/// A Sieve script to create (`POST …/sieve`) or its new content (`PUT …/sieve/{name}`).
/// Activate a script by setting the mailbox's `sieve_active`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SieveInput {
    /// The script's name; required on create, must match the path on update.
    #[schema(value_type = Option<String>, example = "vacation")]
    #[serde(default)]
    pub name: Option<SieveName>,
    /// The Sieve source (RFC 5228).
    pub script: String,
    /// Read-only: ignored.
    #[schema(read_only)]
    #[serde(default)]
    pub owner: Option<String>,
    /// Read-only: ignored (set the mailbox's `sieve_active` instead).
    #[schema(read_only)]
    #[serde(default)]
    pub active: Option<bool>,
}

/// A Sieve script as stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct SieveView {
    /// The mailbox it belongs to.
    pub owner: String,
    /// The script's name.
    pub name: String,
    /// The Sieve source.
    pub script: String,
    /// Whether it is the mailbox's active script.
    pub active: bool,
}

impl SieveView {
    /// The view of `script`, active or not.
    pub fn new(script: &SieveScript, active: bool) -> SieveView {
        SieveView {
            owner: script.owner.to_string(),
            name: script.name.to_string(),
            script: script.script.clone(),
            active,
        }
    }
}

/// A Sieve script in a listing, without its source.
#[derive(Debug, Serialize, ToSchema)]
pub struct SieveSummary {
    /// The script's name.
    pub name: String,
    /// Whether it is the mailbox's active script.
    pub active: bool,
}

/// A blocklist or allowlist entry to create (`POST /listings`), or its new note (`PUT /listings/{key}`): scope,
/// action, kind and value make its key and cannot change; on `PUT` they may be left out, and when given must match.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListingInput {
    /// `global` (admin), `domain:<domain>` (its domain admins) or `mailbox:<address>` (its owner and domain admins).
    #[schema(value_type = Option<String>, example = "mailbox:alice@example.com")]
    #[serde(default)]
    pub scope: Option<ListingScope>,
    /// `block` (refused at RCPT with 554 5.7.1) or `allow` (never greylisted; beats a block of a wider scope).
    #[schema(value_type = Option<String>, example = "block")]
    #[serde(default)]
    pub action: Option<ListingAction>,
    /// `sender` (an address), `sender-domain` (a domain and its subdomains) or `client` (an IPv4 or IPv6 address or
    /// network in CIDR notation).
    #[schema(value_type = Option<String>, example = "sender")]
    #[serde(default)]
    pub kind: Option<ListingKind>,
    /// What it matches, of its kind; stored in normal form (lower case, A-labels, host bits cleared).
    #[schema(example = "spam@bad.example")]
    #[serde(default)]
    pub value: Option<String>,
    /// Why it was listed, for the people who manage the list (at most 256 characters; never shown to senders).
    #[serde(default)]
    pub note: String,
    /// Read-only: ignored.
    #[schema(read_only)]
    #[serde(default)]
    pub key: Option<String>,
    /// Read-only: ignored.
    #[schema(read_only)]
    #[serde(default)]
    pub created: Option<u64>,
}

/// A blocklist or allowlist entry as stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListingView {
    /// `<scope>:<action>:<kind>:<value>`: the path key of `/listings/{key}`.
    #[schema(example = "mailbox:alice@example.com:block:sender:spam@bad.example")]
    pub key: String,
    /// `global`, `domain:<domain>` or `mailbox:<address>`.
    pub scope: String,
    /// `block` or `allow`.
    pub action: String,
    /// `sender`, `sender-domain` or `client`.
    pub kind: String,
    /// What it matches, in normal form.
    pub value: String,
    /// Why it was listed.
    pub note: String,
    /// When it was listed, seconds since the Unix epoch.
    pub created: Option<u64>,
}

impl From<&Listing> for ListingView {
    fn from(listing: &Listing) -> ListingView {
        ListingView {
            key: listing.key.to_string(),
            scope: listing.key.scope.to_string(),
            action: listing.key.action.to_string(),
            kind: listing.key.value.kind().to_string(),
            value: listing.key.value.to_string(),
            note: listing.note.clone(),
            created: listing.created,
        }
    }
}

/// Who the token acts for.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoamiView {
    /// `admin`, `domain-admin` or `user`.
    pub role: String,
    /// The token's mailbox, if it has one.
    pub mailbox: Option<String>,
    /// The domains a domain admin administers.
    pub domains: Vec<String>,
}

/// Whether the service can answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthView {
    /// `ok` when the index is ready, `starting` before.
    pub status: String,
    /// Whether the index has its first snapshot.
    pub index_ready: bool,
    /// The last change sequence the index applied (opaque).
    pub last_seq: Option<String>,
    /// Invalid document revisions the index skipped since start (details: `GET /api/v1/status`).
    pub skipped_documents: u64,
    /// Whether the last read of the store's changes feed failed: the index is serving its last
    /// snapshot and writes may answer 503 (details: `GET /api/v1/status`).
    pub store_error: bool,
}

/// The index and the store in detail, for an administrator.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusView {
    /// The store, without secrets (`sqlite:PATH` or `couchdb:URL`).
    pub store: String,
    /// Whether the index has its first snapshot.
    pub index_ready: bool,
    /// The last change sequence the index applied (opaque).
    pub last_seq: Option<String>,
    /// How many snapshots the index has published since start.
    pub generation: u64,
    /// Entries in the current snapshot, by kind.
    #[schema(value_type = Object)]
    pub counts: serde_json::Map<String, serde_json::Value>,
    /// Invalid document revisions skipped since start.
    pub skipped_total: u64,
    /// The latest skipped revisions, oldest first, each with why it was refused.
    pub recent_skipped: Vec<SkippedView>,
    /// Failed reads of the changes feed since start.
    pub store_errors_total: u64,
    /// The error of the last read, when it failed.
    pub last_store_error: Option<String>,
    /// The sequence of the last index checkpoint saved or resumed from.
    pub checkpoint_seq: Option<String>,
    /// Why the last checkpoint could not be saved.
    pub checkpoint_error: Option<String>,
    /// The daemons this process supervises, in start order; `null` when it supervises none (they run elsewhere).
    pub daemons: Option<Vec<crate::DaemonView>>,
    /// couchmail's own listeners.
    pub listeners: Vec<crate::ListenerInfo>,
}

/// An invalid document revision the index skipped; its last valid revision, if any, stays in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct SkippedView {
    /// `_id`
    pub id: String,
    /// The invalid revision.
    pub rev: String,
    /// Where it sits in the changes feed.
    pub seq: String,
    /// Why it was refused, naming the field at fault.
    pub reason: String,
}

/// Body fields never shown in a conflict's revisions, whatever the document's type: a
/// mailbox's password hash and a token's secret hash.
pub const REDACTED_FIELDS: [&str; 2] = ["password", "secret_sha256"];

/// One revision of a conflicted document.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevisionView {
    /// The revision, to pass as `keep` when resolving.
    pub rev: String,
    /// The document's body at this revision (`type` and fields, without `_id` and `_rev`),
    /// less the fields listed in `redacted`.
    #[schema(value_type = Object)]
    pub body: serde_json::Map<String, serde_json::Value>,
    /// The names of the secret fields this revision holds and the API does not show (a
    /// mailbox's password hash, a token's secret hash): revisions that differ only there look
    /// alike, and this says so.
    pub redacted: Vec<String>,
}

impl RevisionView {
    /// The view of `doc`, its secret fields taken out.
    pub fn new(doc: &RawDoc) -> RevisionView {
        let mut body = doc.body.clone();
        let redacted =
            REDACTED_FIELDS.iter().filter(|field| body.remove(**field).is_some()).map(|field| (*field).to_owned());
        let redacted = redacted.collect();
        RevisionView { rev: doc.rev.to_string(), body, redacted }
    }
}

/// A document whose replicas disagree: the revision every read returns, and the live
/// revisions that lost.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConflictView {
    /// The document's `_id` (`mailbox:alice@example.com`).
    pub id: String,
    /// The revision the store picked; reads return it.
    pub winner: RevisionView,
    /// The other live revisions, in revision order.
    pub losers: Vec<RevisionView>,
}

impl From<&Conflict> for ConflictView {
    fn from(conflict: &Conflict) -> ConflictView {
        ConflictView {
            id: conflict.id.clone(),
            winner: RevisionView::new(&conflict.winner),
            losers: conflict.losers.iter().map(RevisionView::new).collect(),
        }
    }
}

/// Every conflicted document, by `_id`. Not paged: replication conflicts are few, and each
/// one is a thing for the administrator to settle.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConflictList {
    /// The conflicted documents, in `_id` order.
    pub items: Vec<ConflictView>,
}

/// Which revision of a conflicted document to keep.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveInput {
    /// The revision to keep: the winner's or a loser's, as `GET /conflicts` lists them.
    #[schema(example = "3-917fa2381192822767f010b95b45325b")]
    pub keep: String,
}

/// A conflict settled.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResolvedView {
    /// The document's `_id`.
    pub id: String,
    /// The document's new revision, which holds the kept content.
    pub rev: String,
}

macro_rules! page {
    ($name:ident, $item:ty, $what:literal) => {
        #[doc = concat!("A page of ", $what, ".")]
        #[derive(Debug, Serialize, ToSchema)]
        pub struct $name {
            /// The items, in key order.
            pub items: Vec<$item>,
            /// Pass as `after` for the next page; absent on the last one.
            pub next: Option<String>,
        }
    };
}
page!(DomainPage, DomainView, "domains");
page!(DomainAliasPage, DomainAliasView, "domain aliases");
page!(MailboxPage, MailboxView, "mailboxes");
page!(AliasPage, AliasView, "aliases");
page!(SievePage, SieveSummary, "Sieve scripts");
page!(ListingPage, ListingView, "blocklist and allowlist entries");
