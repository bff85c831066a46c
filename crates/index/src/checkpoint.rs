//! The checkpoint: a snapshot saved to a file, so that a restart resumes the changes feed
//! where the snapshot stopped instead of reading the whole store again (issue #4).
//!
//! A sequence alone would be useless after a restart, since the index lives in memory; so
//! the checkpoint holds every entry of a ready snapshot, the last sequence applied to it and
//! the identity of the store it came from ([`Store::describe`](couchmail_store::Store::describe)).
//! Entries are saved as the snapshot keeps them (not as documents) and read back without
//! validating them again, which is what makes a start from a checkpoint fast; the price is
//! that a checkpoint is trusted only when this very version of couchmail wrote it.
//!
//! The file is JSON Lines: a header, one line per entry, then a trailer with the SHA-256 of
//! every line before it, so that a truncated or damaged file is refused rather than served.
//! It is written to a temporary file beside the target (mode 0600: it holds password
//! hashes, as the store does), synced, renamed over the target, and the directory synced,
//! so that a crash leaves either the old checkpoint or the new one, never half of one.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use couchmail_model::{PolicySettings, Role, Token, TokenPrincipal};
use couchmail_store::{Rev, Seq};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::entry::{AliasDomainEntry, AliasEntry, DomainEntry, ListingEntry, MailboxEntry, SieveEntry};
use crate::snapshot::RestoredEntry;
use crate::{SkippedDocument, Snapshot};

/// The file name the follower's checkpoint conventionally takes in the data directory
/// (`<data_dir>/index.checkpoint`); see [`FollowConfig::checkpoint`](crate::FollowConfig::checkpoint).
pub const CHECKPOINT_FILE_NAME: &str = "index.checkpoint";

/// What the header's `format` says, so that no other file is taken for a checkpoint.
const FORMAT: &str = "couchmail-index-checkpoint";
/// Bumped whenever the records change shape or meaning (2: policy settings and listings, issue #5).
const FORMAT_VERSION: u32 = 2;
/// The version of couchmail that writes and trusts checkpoints: entries are read back
/// without validation, so a checkpoint from another version (whose rules may differ) is
/// rebuilt from the store instead.
const WRITTEN_BY: &str = env!("CARGO_PKG_VERSION");

/// Why a checkpoint was not used.
#[derive(Debug)]
pub(crate) enum LoadError {
    /// There is no checkpoint yet: the usual first start.
    Missing,
    /// There is one, but it must not be used: unreadable, damaged, from another store or
    /// another version. The reason says which, for the log.
    Discarded(String),
}

/// What a checkpoint written holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    /// The sequence the snapshot had reached.
    pub(crate) last_seq: Option<Seq>,
    /// Entries written.
    pub(crate) n_records: usize,
    /// Size of the file.
    pub(crate) n_bytes: u64,
}

/// The first line of the file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    format_version: u32,
    written_by: String,
    store: String,
    last_seq: Option<Seq>,
    n_records: usize,
}

/// The last line of the file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Trailer {
    /// Hex SHA-256 of every byte before this line.
    sha256: String,
}

/// One entry, as the snapshot keeps it. Borrowed when written, owned when read.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Record<'a> {
    Domain {
        name: Cow<'a, str>,
        active: bool,
        quota_default: Option<u64>,
        max_mailboxes: Option<u32>,
        policy: PolicySettings,
    },
    AliasDomain {
        name: Cow<'a, str>,
        target: Cow<'a, str>,
    },
    Mailbox {
        address: Cow<'a, str>,
        password: Option<Cow<'a, str>>,
        sieve_active: Option<Cow<'a, str>>,
        active: bool,
        quota_bytes: Option<u64>,
        roles: Cow<'a, [Role]>,
        policy: PolicySettings,
    },
    Alias {
        key: Cow<'a, str>,
        /// Joined by commas, as the entry keeps them.
        targets: Cow<'a, str>,
        active: bool,
    },
    Sieve {
        owner: Cow<'a, str>,
        name: Cow<'a, str>,
        content_id: Cow<'a, str>,
        script: Cow<'a, str>,
        previous: Option<(Cow<'a, str>, Cow<'a, str>)>,
    },
    Token {
        id: Cow<'a, str>,
        secret_sha256: Cow<'a, str>,
        principal: Cow<'a, TokenPrincipal>,
        label: Cow<'a, str>,
        created: u64,
    },
    Listing {
        key: Cow<'a, str>,
        note: Cow<'a, str>,
        created: Option<u64>,
    },
    Invalid {
        id: Cow<'a, str>,
        rev: Cow<'a, str>,
        seq: Cow<'a, str>,
        reason: Cow<'a, str>,
    },
}

impl Record<'_> {
    fn into_entry(self) -> RestoredEntry {
        match self {
            Record::Domain { name, active, quota_default, max_mailboxes, policy } => {
                RestoredEntry::Domain(DomainEntry::from_parts(&name, active, quota_default, max_mailboxes, policy))
            }
            Record::AliasDomain { name, target } => {
                RestoredEntry::AliasDomain(AliasDomainEntry::from_parts(&name, &target))
            }
            Record::Mailbox { address, password, sieve_active, active, quota_bytes, roles, policy } => {
                RestoredEntry::Mailbox(MailboxEntry::from_parts(
                    &address,
                    password.as_deref(),
                    sieve_active.as_deref(),
                    active,
                    quota_bytes,
                    roles.into_owned(),
                    policy,
                ))
            }
            Record::Alias { key, targets, active } => {
                RestoredEntry::Alias(AliasEntry::from_parts(&key, &targets, active))
            }
            Record::Sieve { owner, name, content_id, script, previous } => {
                let previous = previous.as_ref().map(|(content_id, script)| (&**content_id, &**script));
                RestoredEntry::Sieve(SieveEntry::from_parts(&owner, &name, &content_id, &script, previous))
            }
            Record::Token { id, secret_sha256, principal, label, created } => RestoredEntry::Token(Token {
                id: id.into_owned(),
                secret_sha256: secret_sha256.into_owned(),
                principal: principal.into_owned(),
                label: label.into_owned(),
                created,
            }),
            Record::Listing { key, note, created } => {
                RestoredEntry::Listing(ListingEntry::from_parts(&key, &note, created))
            }
            Record::Invalid { id, rev, seq, reason } => RestoredEntry::Invalid(SkippedDocument {
                id: id.into_owned(),
                rev: Rev(rev.into_owned()),
                seq: Seq(seq.into_owned()),
                reason: reason.into_owned(),
            }),
        }
    }
}

/// Every entry of `snapshot` as a record.
fn records(snapshot: &Snapshot) -> impl Iterator<Item = Record<'_>> + '_ {
    let domains = snapshot.domains().map(|entry| Record::Domain {
        name: entry.name().into(),
        active: entry.is_active(),
        quota_default: entry.quota_default(),
        max_mailboxes: entry.max_mailboxes(),
        policy: *entry.policy(),
    });
    let alias_domains = snapshot
        .alias_domains()
        .map(|entry| Record::AliasDomain { name: entry.name().into(), target: entry.target().into() });
    let mailboxes = snapshot.mailboxes().map(|entry| Record::Mailbox {
        address: entry.address().into(),
        password: entry.password_hash().map(Cow::from),
        sieve_active: entry.sieve_active().map(Cow::from),
        active: entry.is_active(),
        quota_bytes: entry.quota_bytes(),
        roles: entry.roles().into(),
        policy: entry.policy(),
    });
    let aliases = snapshot.aliases().map(|entry| Record::Alias {
        key: entry.key().into(),
        targets: entry.targets_joined().into(),
        active: entry.is_active(),
    });
    let sieves = snapshot.all_sieve_scripts().map(|entry| Record::Sieve {
        owner: entry.owner().into(),
        name: entry.name().into(),
        content_id: entry.content_id().into(),
        script: entry.script().into(),
        previous: entry.previous().map(|(content_id, script)| (content_id.into(), script.into())),
    });
    let tokens = snapshot.tokens().map(|token| Record::Token {
        id: token.id.as_str().into(),
        secret_sha256: token.secret_sha256.as_str().into(),
        principal: Cow::Borrowed(&token.principal),
        label: token.label.as_str().into(),
        created: token.created,
    });
    let listings = snapshot.listings().map(|entry| Record::Listing {
        key: entry.key().into(),
        note: entry.note().into(),
        created: entry.created(),
    });
    let invalid = snapshot.invalid_documents().map(|skipped| Record::Invalid {
        id: skipped.id.as_str().into(),
        rev: skipped.rev.0.as_str().into(),
        seq: skipped.seq.0.as_str().into(),
        reason: skipped.reason.as_str().into(),
    });
    domains
        .chain(alias_domains)
        .chain(mailboxes)
        .chain(aliases)
        .chain(sieves)
        .chain(tokens)
        .chain(listings)
        .chain(invalid)
}

/// How many records `snapshot` makes.
fn record_count(snapshot: &Snapshot) -> usize {
    let counts = snapshot.counts();
    counts.domains
        + counts.alias_domains
        + counts.mailboxes
        + counts.aliases
        + counts.sieve_scripts
        + counts.tokens
        + counts.listings
        + counts.invalid_documents
}

/// Saves `snapshot`, taken from the store `store_identity` describes, to `path`, atomically.
pub(crate) fn save(path: &Path, store_identity: &str, snapshot: &Snapshot) -> Result<Written, String> {
    let temp_path = temp_path_for(path);
    let res = write_temp(&temp_path, store_identity, snapshot).and_then(|written| {
        std::fs::rename(&temp_path, path)
            .map_err(|error| format!("cannot rename {} to {}: {error}", temp_path.display(), path.display()))?;
        sync_parent(path)?;
        Ok(written)
    });
    if res.is_err() {
        // A temporary file left behind holds password hashes and is of no use; the next
        // save starts a new one anyway.
        let _ = std::fs::remove_file(&temp_path);
    }
    res
}

fn write_temp(temp_path: &Path, store_identity: &str, snapshot: &Snapshot) -> Result<Written, String> {
    let context = |what: &str, error: std::io::Error| format!("cannot {what} {}: {error}", temp_path.display());
    // A temporary file from a save that crashed may be there, with whatever mode it has:
    // start afresh, so that the new one is created 0600.
    match std::fs::remove_file(temp_path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(context("remove the stale", error)),
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp_path)
        .map_err(|error| context("create", error))?;
    let mut out = HashingWriter { inner: BufWriter::with_capacity(1 << 20, file), hasher: Sha256::new(), n_bytes: 0 };
    let header = Header {
        format: FORMAT.to_owned(),
        format_version: FORMAT_VERSION,
        written_by: WRITTEN_BY.to_owned(),
        store: store_identity.to_owned(),
        last_seq: snapshot.last_seq().cloned(),
        n_records: record_count(snapshot),
    };
    let mut line = Vec::with_capacity(4096);
    out.write_line(&mut line, &header).map_err(|error| context("write", error))?;
    let mut n_records = 0;
    for record in records(snapshot) {
        out.write_line(&mut line, &record).map_err(|error| context("write", error))?;
        n_records += 1;
    }
    if n_records != header.n_records {
        // The counts and the tables are the same snapshot's, so this is a bug, not the disk.
        return Err(format!("the snapshot listed {n_records} entries but counted {}", header.n_records));
    }
    let trailer = Trailer { sha256: hex::encode(out.hasher.clone().finalize()) };
    out.write_line(&mut line, &trailer).map_err(|error| context("write", error))?;
    let n_bytes = out.n_bytes;
    let file = out.inner.into_inner().map_err(|error| context("write", error.into_error()))?;
    file.sync_all().map_err(|error| context("sync", error))?;
    Ok(Written { last_seq: header.last_seq, n_records, n_bytes })
}

/// A writer of JSON lines that hashes what it writes.
struct HashingWriter {
    inner: BufWriter<File>,
    hasher: Sha256,
    n_bytes: u64,
}

impl HashingWriter {
    fn write_line(&mut self, line: &mut Vec<u8>, value: &impl Serialize) -> std::io::Result<()> {
        line.clear();
        serde_json::to_writer(&mut *line, value)?;
        line.push(b'\n');
        self.hasher.update(&line);
        self.n_bytes += line.len() as u64;
        self.inner.write_all(line)
    }
}

/// Loads the checkpoint at `path` if it was written by this version from the store
/// `store_identity` describes, as a snapshot that is not ready, at the saved sequence.
pub(crate) fn load(path: &Path, store_identity: &str) -> Result<Snapshot, LoadError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(LoadError::Missing),
        Err(error) => return Err(LoadError::Discarded(format!("cannot open it: {error}"))),
    };
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut line = Vec::with_capacity(4096);

    let header: Header = read_line(&mut reader, &mut line, Some(&mut hasher), "the header")?;
    if header.format != FORMAT || header.format_version != FORMAT_VERSION {
        return Err(LoadError::Discarded(format!(
            "it is not a checkpoint of this format ({} version {}, expected {FORMAT} version {FORMAT_VERSION})",
            header.format, header.format_version
        )));
    }
    if header.written_by != WRITTEN_BY {
        return Err(LoadError::Discarded(format!(
            "couchmail {} wrote it and this is {WRITTEN_BY}, whose rules may differ",
            header.written_by
        )));
    }
    if header.store != store_identity {
        return Err(LoadError::Discarded(format!(
            "it was taken from another store ({}, and this one is {store_identity})",
            header.store
        )));
    }
    let mut snapshot = Snapshot::restoring(header.last_seq);
    for record_idx in 0..header.n_records {
        let record: Record<'static> =
            read_line(&mut reader, &mut line, Some(&mut hasher), &format!("entry {}", record_idx + 1))?;
        snapshot.insert_restored(record.into_entry());
    }
    let trailer: Trailer = read_line(&mut reader, &mut line, None, "the trailer")?;
    if trailer.sha256 != hex::encode(hasher.finalize()) {
        return Err(LoadError::Discarded("its checksum does not match its content: it is damaged".to_owned()));
    }
    line.clear();
    match reader.read_until(b'\n', &mut line) {
        Ok(0) => {}
        Ok(_) => return Err(LoadError::Discarded("it goes on after its trailer".to_owned())),
        Err(error) => return Err(LoadError::Discarded(format!("cannot read it: {error}"))),
    }
    // Entries, not documents, are counted: a damaged file that dropped one would have
    // failed the checksum, so a difference here is a bug in writing.
    if record_count(&snapshot) != header.n_records {
        return Err(LoadError::Discarded(format!(
            "it holds {} distinct entries where its header says {}",
            record_count(&snapshot),
            header.n_records
        )));
    }
    Ok(snapshot)
}

/// Reads one line as `T`, hashing it when `hasher` is given.
fn read_line<T: serde::de::DeserializeOwned>(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    hasher: Option<&mut Sha256>,
    what: &str,
) -> Result<T, LoadError> {
    line.clear();
    let n_read =
        reader.read_until(b'\n', line).map_err(|error| LoadError::Discarded(format!("cannot read it: {error}")))?;
    if n_read == 0 || line.last() != Some(&b'\n') {
        return Err(LoadError::Discarded(format!("it ends before {what}: it is truncated")));
    }
    if let Some(hasher) = hasher {
        hasher.update(&line);
    }
    serde_json::from_slice(line).map_err(|error| LoadError::Discarded(format!("{what} is not valid: {error}")))
}

/// `index.checkpoint` → `index.checkpoint.tmp`, in the same directory so that the rename
/// is atomic.
fn temp_path_for(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Syncs the directory holding `path`, so that the rename survives a crash.
fn sync_parent(path: &Path) -> Result<(), String> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(|error| format!("cannot sync directory {}: {error}", parent.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use couchmail_model::{Document, SieveScript};
    use couchmail_store::Change;

    use super::*;

    const STORE: &str = "sqlite:/var/lib/couchmail/couchmail.db";

    fn doc(id: &str, body: serde_json::Value) -> Document {
        Document::from_stored(id, body.as_object().unwrap()).unwrap()
    }

    /// A ready snapshot with one entry of every kind, a script edited once (so that it
    /// has previous content) and an invalid document.
    fn every_kind() -> Snapshot {
        // The argon2 reference implementation's output, as couchmail-model's tests use it.
        let hash = "{ARGON2ID}$argon2id$v=19$m=1024,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$avUvXNtnn/GNZVscoS8F6XVDSn5QnlrimsKMNNw4iI8";
        let mut snapshot = Snapshot::from_documents([
            doc("domain:example.com", serde_json::json!({ "type": "domain", "quota_default": 1 << 30 })),
            doc(
                "domain:example.org",
                serde_json::json!({ "type": "domain", "active": false, "max_mailboxes": 5, "greylisting": false,
                    "spam_threshold": 6.5 }),
            ),
            doc("domain-alias:example.net", serde_json::json!({ "type": "domain-alias", "target": "example.com" })),
            doc(
                "mailbox:alice@example.com",
                serde_json::json!({ "type": "mailbox", "password": hash, "roles": ["admin", "domain-admin:example.org"],
                    "sieve_active": "main filter", "quota_bytes": 1 << 21 }),
            ),
            doc(
                "mailbox:bob@example.com",
                serde_json::json!({ "type": "mailbox", "active": false, "messages_per_hour": 20 }),
            ),
            doc("listing:global:block:client:2001:db8::/32", serde_json::json!({ "type": "listing", "note": "abuse" })),
            doc(
                "listing:mailbox:alice@example.com:allow:sender:friend@elsewhere.example",
                serde_json::json!({ "type": "listing", "created": 1_700_000_000 }),
            ),
            doc(
                "alias:info@example.com",
                serde_json::json!({ "type": "alias", "targets": ["alice@example.com", "x@elsewhere.example"] }),
            ),
            doc(
                "alias:@example.com",
                serde_json::json!({ "type": "alias", "targets": ["bob@example.com"], "active": false }),
            ),
            doc(
                "token:abc123",
                serde_json::json!({ "type": "token", "secret_sha256": "ab".repeat(32), "principal": "mailbox:alice@example.com",
                    "label": "laptop", "created": 1_700_000_000 }),
            ),
        ]);
        let script = |source: &str| {
            Document::Sieve(SieveScript {
                owner: "alice@example.com".parse().unwrap(),
                name: "main filter".parse().unwrap(),
                script: source.to_owned(),
            })
        };
        snapshot.insert_document(&script("keep;\n"));
        snapshot.insert_document(&script("discard;\n"));
        let bad = serde_json::json!({ "type": "mailbox", "quota_bytes": "lots" });
        snapshot.apply_change(&Change {
            seq: Seq("7".to_owned()),
            id: "mailbox:carol@example.com".to_owned(),
            rev: Rev("1-abc".to_owned()),
            body: Some(bad.as_object().unwrap().clone()),
        });
        snapshot.set_progress(Some(Seq("7".to_owned())), true);
        snapshot
    }

    /// Everything a lookup can see of `snapshot`, in a stable order.
    fn contents(snapshot: &Snapshot) -> String {
        let mut lines: Vec<String> = Vec::new();
        lines.extend(snapshot.domains().map(|entry| format!("{entry:?}")));
        lines.extend(snapshot.alias_domains().map(|entry| format!("{entry:?}")));
        lines.extend(snapshot.mailboxes().map(|entry| format!("{entry:?} {:?}", entry.password_hash())));
        lines.extend(snapshot.aliases().map(|entry| format!("{entry:?}")));
        lines.extend(snapshot.all_sieve_scripts().map(|entry| format!("{entry:?}")));
        lines.extend(snapshot.tokens().map(|token| format!("{token:?}")));
        lines.extend(snapshot.listings().map(|entry| format!("{entry:?}")));
        lines.extend(snapshot.invalid_documents().map(|skipped| format!("{skipped:?}")));
        lines.sort();
        lines.join("\n")
    }

    #[test]
    fn a_snapshot_survives_the_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHECKPOINT_FILE_NAME);
        let snapshot = every_kind();
        let written = save(&path, STORE, &snapshot).unwrap();
        assert_eq!(written.last_seq, Some(Seq("7".to_owned())));
        assert_eq!(written.n_records, 12);
        assert_eq!(written.n_bytes, std::fs::metadata(&path).unwrap().len());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "it holds password hashes");
        assert!(!temp_path_for(&path).exists(), "the temporary file was renamed");

        let loaded = load(&path, STORE).unwrap();
        assert!(!loaded.is_ready(), "ready only once the feed is drained after resuming");
        assert_eq!(loaded.last_seq(), Some(&Seq("7".to_owned())));
        assert_eq!(loaded.counts(), snapshot.counts());
        assert_eq!(contents(&loaded), contents(&snapshot));
        // The lookups that depend on several entries at once.
        assert_eq!(loaded.virtual_alias("info@example.com"), snapshot.virtual_alias("info@example.com"));
        assert_eq!(loaded.sender_logins("alice@example.net"), ["alice@example.com"]);
        let (content_id, script) = loaded.active_sieve("alice@example.com").unwrap();
        assert_eq!(script, "discard;\n");
        let previous = loaded.sieve("alice@example.com", "main filter").unwrap().previous_content_id().unwrap();
        assert_ne!(previous, content_id);
        assert_eq!(loaded.sieve_by_id("alice@example.com", previous), Some("keep;\n"));
        assert_eq!(loaded.token("abc123").unwrap().label, "laptop");
        assert_eq!(loaded.mailbox("alice@example.com").unwrap().roles().len(), 2);
        assert_eq!(loaded.mailbox_policy("bob@example.com").messages_per_hour, Some(20));
        assert_eq!(loaded.domain_policy("example.org").greylisting, Some(false));
        let scope = loaded.recipient_scope("alice@example.com");
        let allowed = loaded.find_listing(&scope, None, "friend@elsewhere.example").unwrap();
        assert_eq!(allowed.created(), Some(1_700_000_000));
        let blocked = loaded.find_listing(&scope, "2001:db8::25".parse().ok(), "other@elsewhere.example").unwrap();
        assert_eq!((blocked.key(), blocked.note()), ("global:block:client:2001:db8::/32", "abuse"));
    }

    #[test]
    fn an_empty_snapshot_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHECKPOINT_FILE_NAME);
        let mut empty = Snapshot::default();
        empty.set_progress(None, true);
        save(&path, STORE, &empty).unwrap();
        let loaded = load(&path, STORE).unwrap();
        assert_eq!((loaded.last_seq(), loaded.counts()), (None, Default::default()));
    }

    #[test]
    fn a_missing_checkpoint_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load(&dir.path().join("none"), STORE), Err(LoadError::Missing)));
    }

    /// Saves the snapshot, lets `damage` change the file's text, and returns why loading refused it.
    fn refusal(damage: impl Fn(String) -> String) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHECKPOINT_FILE_NAME);
        save(&path, STORE, &every_kind()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, damage(text)).unwrap();
        match load(&path, STORE) {
            Err(LoadError::Discarded(reason)) => reason,
            Err(LoadError::Missing) => panic!("the file is there"),
            Ok(_) => panic!("a damaged checkpoint was loaded"),
        }
    }

    #[test]
    fn a_damaged_checkpoint_is_refused() {
        let truncated = refusal(|text| text[..text.len() / 2].to_owned());
        assert!(truncated.contains("truncated") || truncated.contains("not valid"), "{truncated}");
        // Still JSON, still the same shape: only the checksum can tell.
        let edited = refusal(|text| text.replace("alice@example.com", "alicf@example.com"));
        assert!(edited.contains("checksum"), "{edited}");
        let garbage = refusal(|_| "not a checkpoint\n".to_owned());
        assert!(garbage.contains("the header is not valid"), "{garbage}");
        let empty = refusal(|_| String::new());
        assert!(empty.contains("truncated"), "{empty}");
        let extended = refusal(|text| format!("{text}{{}}\n"));
        assert!(extended.contains("after its trailer"), "{extended}");
        let other_version = refusal(|text| text.replacen(WRITTEN_BY, "0.0.0-other", 1));
        assert!(other_version.contains("0.0.0-other wrote it"), "{other_version}");
    }

    #[test]
    fn a_checkpoint_of_another_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHECKPOINT_FILE_NAME);
        save(&path, STORE, &every_kind()).unwrap();
        let Err(LoadError::Discarded(reason)) = load(&path, "couchdb:http://127.0.0.1:5984/couchmail") else {
            panic!("a checkpoint of another store was loaded");
        };
        assert!(reason.contains("another store") && reason.contains(STORE), "{reason}");
    }

    #[test]
    fn a_stale_temporary_file_is_replaced_with_a_private_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHECKPOINT_FILE_NAME);
        let temp = temp_path_for(&path);
        std::fs::write(&temp, "left by a crash").unwrap();
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o644)).unwrap();
        save(&path, STORE, &every_kind()).unwrap();
        assert!(!temp.exists());
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        load(&path, STORE).unwrap();
    }

    #[test]
    fn a_save_into_a_missing_directory_fails_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join(CHECKPOINT_FILE_NAME);
        let error = save(&path, STORE, &every_kind()).unwrap_err();
        assert!(error.contains("cannot create"), "{error}");
        assert!(!path.exists());
    }
}
