//! Dovecot's passdb, userdb and user iteration, answered from the index.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use couchmail_dovecot_auth::{AuthLookup, PassdbAnswer, UserFields, UserdbAnswer, home_component};
use couchmail_index::{Index, MailboxEntry, Snapshot};

/// Where mail lives on disk and as whom it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailLayout {
    /// The directory that holds one directory per domain, each with one home per mailbox
    /// (`<mail_root>/<domain>/<local part>`); an absolute path.
    pub mail_root: PathBuf,
    /// The system user mail is stored as (`vmail`).
    pub uid: u32,
    /// The system group mail is stored as (`vmail`).
    pub gid: u32,
}

/// Dovecot's accounts from the index, for [`couchmail_dovecot_auth`]'s endpoint.
///
/// - passdb: the password hash of an active mailbox in an active domain; `Disabled` when the mailbox or its
///   domain is inactive (or its domain is missing); `Unknown` for no such mailbox, or one without a password.
/// - userdb: the home `<mail_root>/<domain>/<local part>` (each made one safe directory name with
///   [`home_component`]), uid and gid, and the quota (the mailbox's own, else its domain's default);
///   `Unknown` for a mailbox that could not log in (missing or disabled), as Dovecot expects.
/// - iterate: every mailbox that can log in (active, in an active domain, with a password), sorted.
///
/// Logins are the mailbox addresses themselves: an alias-domain address or an extension is not a login.
/// While the index is not ready every answer is a temporary failure.
#[derive(Clone)]
pub struct Accounts {
    index: Arc<Index>,
    layout: MailLayout,
    /// `layout.mail_root` as text for Dovecot, without a trailing `/`; `None` when it cannot be one (not UTF-8,
    /// not absolute, or holding a line break), in which case userdb answers a temporary failure.
    mail_root_text: Option<String>,
}

impl Accounts {
    /// Answers from `index`, with homes under `layout`.
    pub fn new(index: Arc<Index>, layout: MailLayout) -> Accounts {
        let mail_root_text = mail_root_text(&layout.mail_root);
        if mail_root_text.is_none() {
            tracing::error!(
                mail_root = %layout.mail_root.display(),
                "the mail root is not an absolute UTF-8 path; every userdb lookup will fail temporarily"
            );
        }
        Accounts { index, layout, mail_root_text }
    }

    /// The layout homes are made under.
    pub fn layout(&self) -> &MailLayout {
        &self.layout
    }

    /// The home directory of `mailbox`.
    fn home(&self, mail_root: &str, mailbox: &MailboxEntry) -> String {
        let local = mailbox.address().rsplit_once('@').map_or(mailbox.address(), |(local, _)| local);
        format!("{mail_root}/{}/{}", home_component(mailbox.domain()), home_component(local))
    }
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts").field("ready", &self.index.is_ready()).field("layout", &self.layout).finish()
    }
}

/// Whether `mailbox` and its domain are both active.
fn is_enabled(snapshot: &Snapshot, mailbox: &MailboxEntry) -> bool {
    mailbox.is_active() && snapshot.domain(mailbox.domain()).is_some_and(|domain| domain.is_active())
}

fn mail_root_text(mail_root: &Path) -> Option<String> {
    let text = mail_root.to_str()?;
    if !mail_root.is_absolute() || text.contains(['\n', '\r', '\0']) {
        return None;
    }
    let trimmed = text.trim_end_matches('/');
    // The root directory itself trims to nothing, and homes then start with `/` all the same.
    Some(trimmed.to_owned())
}

impl AuthLookup for Accounts {
    fn passdb(&self, user: &str) -> PassdbAnswer {
        let snapshot = self.index.snapshot();
        if !snapshot.is_ready() {
            return PassdbAnswer::NotReady;
        }
        let Some(mailbox) = snapshot.mailbox(user) else {
            return PassdbAnswer::Unknown;
        };
        if !is_enabled(&snapshot, mailbox) {
            return PassdbAnswer::Disabled;
        }
        match mailbox.password_hash() {
            Some(hash) => PassdbAnswer::Found { password: hash.to_owned() },
            None => PassdbAnswer::Unknown,
        }
    }

    fn userdb(&self, user: &str) -> UserdbAnswer {
        let snapshot = self.index.snapshot();
        if !snapshot.is_ready() {
            return UserdbAnswer::NotReady;
        }
        let Some(mailbox) = snapshot.active_mailbox(user) else {
            return UserdbAnswer::Unknown;
        };
        let Some(mail_root) = &self.mail_root_text else {
            tracing::debug!(user, "no usable mail root: answering a temporary failure");
            return UserdbAnswer::NotReady;
        };
        UserdbAnswer::Found(UserFields {
            home: self.home(mail_root, mailbox),
            uid: self.layout.uid,
            gid: self.layout.gid,
            quota_bytes: snapshot.mailbox_quota(mailbox.address()),
        })
    }

    fn iterate(&self) -> Option<Vec<String>> {
        let snapshot = self.index.snapshot();
        if !snapshot.is_ready() {
            return None;
        }
        let mut users: Vec<String> = snapshot
            .mailboxes()
            .filter(|mailbox| mailbox.password_hash().is_some() && is_enabled(&snapshot, mailbox))
            .map(|mailbox| mailbox.address().to_owned())
            .collect();
        users.sort_unstable();
        Some(users)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use couchmail_model::{Document, Password, PasswordHash};
    use couchmail_testkit::fixtures::{domain, domain_with_quota_default, inactive, mailbox};

    use super::*;

    fn with_password(mut document: Document, hash: &PasswordHash) -> Document {
        if let Document::Mailbox(mailbox) = &mut document {
            mailbox.password = Some(hash.clone());
        }
        document
    }

    fn with_quota(mut document: Document, bytes: u64) -> Document {
        if let Document::Mailbox(mailbox) = &mut document {
            mailbox.quota_bytes = Some(bytes);
        }
        document
    }

    fn layout() -> MailLayout {
        MailLayout { mail_root: PathBuf::from("/var/lib/couchmail/mail/"), uid: 5000, gid: 5001 }
    }

    fn accounts(hash: &PasswordHash) -> Accounts {
        let documents = vec![
            domain_with_quota_default("example.com", 1 << 30),
            domain("example.org"),
            inactive(domain("off.example")),
            with_password(mailbox("alice@example.com"), hash),
            with_quota(with_password(mailbox("bob@example.com"), hash), 2 << 30),
            inactive(with_password(mailbox("carol@example.com"), hash)),
            mailbox("nopass@example.com"),
            with_password(mailbox("dave@off.example"), hash),
            with_password(mailbox("erin@example.org"), hash),
            with_password(mailbox("a/b@example.org"), hash),
        ];
        Accounts::new(Arc::new(Index::from_snapshot(Snapshot::from_documents(documents))), layout())
    }

    fn hash() -> PasswordHash {
        PasswordHash::new(&Password::new("correct horse battery".to_owned()).unwrap())
    }

    #[test]
    fn passdb_answers_found_disabled_unknown() {
        let hash = hash();
        let accounts = accounts(&hash);
        let found = PassdbAnswer::Found { password: hash.as_str().to_owned() };
        assert_eq!(accounts.passdb("alice@example.com"), found);
        assert_eq!(accounts.passdb("erin@example.org"), found);
        assert_eq!(accounts.passdb("carol@example.com"), PassdbAnswer::Disabled, "inactive mailbox");
        assert_eq!(accounts.passdb("dave@off.example"), PassdbAnswer::Disabled, "inactive domain");
        assert_eq!(accounts.passdb("nopass@example.com"), PassdbAnswer::Unknown, "no password");
        assert_eq!(accounts.passdb("nobody@example.com"), PassdbAnswer::Unknown);
        assert_eq!(accounts.passdb("alice+tag@example.com"), PassdbAnswer::Unknown, "an extension is no login");
    }

    #[test]
    fn userdb_gives_home_ids_and_quota() {
        let accounts = accounts(&hash());
        let fields = |home: &str, quota_bytes: Option<u64>| {
            UserdbAnswer::Found(UserFields { home: home.to_owned(), uid: 5000, gid: 5001, quota_bytes })
        };
        assert_eq!(
            accounts.userdb("alice@example.com"),
            fields("/var/lib/couchmail/mail/example.com/alice", Some(1 << 30)),
            "the domain's default quota"
        );
        assert_eq!(
            accounts.userdb("bob@example.com"),
            fields("/var/lib/couchmail/mail/example.com/bob", Some(2 << 30)),
            "the mailbox's own quota"
        );
        assert_eq!(accounts.userdb("erin@example.org"), fields("/var/lib/couchmail/mail/example.org/erin", None));
        assert_eq!(
            accounts.userdb("a/b@example.org"),
            fields("/var/lib/couchmail/mail/example.org/a%2Fb", None),
            "a local part is one directory name"
        );
        // Delivery to a mailbox without a password still needs its home.
        assert_eq!(
            accounts.userdb("nopass@example.com"),
            fields("/var/lib/couchmail/mail/example.com/nopass", Some(1 << 30))
        );
        for hidden in ["carol@example.com", "dave@off.example", "nobody@example.com"] {
            assert_eq!(accounts.userdb(hidden), UserdbAnswer::Unknown, "{hidden}");
        }
    }

    #[test]
    fn iterate_lists_who_can_log_in() {
        let accounts = accounts(&hash());
        assert_eq!(
            accounts.iterate().unwrap(),
            ["a/b@example.org", "alice@example.com", "bob@example.com", "erin@example.org"]
        );
    }

    #[test]
    fn not_ready_is_a_temporary_failure() {
        let accounts = Accounts::new(Arc::new(Index::default()), layout());
        assert_eq!(accounts.passdb("alice@example.com"), PassdbAnswer::NotReady);
        assert_eq!(accounts.userdb("alice@example.com"), UserdbAnswer::NotReady);
        assert_eq!(accounts.iterate(), None);
    }

    #[test]
    fn an_unusable_mail_root_fails_userdb_temporarily() {
        let index = Arc::new(Index::from_snapshot(Snapshot::from_documents([
            domain("example.com"),
            mailbox("alice@example.com"),
        ])));
        for root in ["relative/mail", "/var/mail\nx"] {
            let layout = MailLayout { mail_root: PathBuf::from(root), ..layout() };
            let accounts = Accounts::new(Arc::clone(&index), layout);
            assert_eq!(accounts.userdb("alice@example.com"), UserdbAnswer::NotReady, "{root:?}");
        }
        let accounts = Accounts::new(index, MailLayout { mail_root: PathBuf::from("/"), ..layout() });
        assert!(
            matches!(accounts.userdb("alice@example.com"), UserdbAnswer::Found(fields) if fields.home == "/example.com/alice")
        );
    }
}
