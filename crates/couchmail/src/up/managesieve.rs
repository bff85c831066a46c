//! ManageSieve under `up` (docs/managesieve.md): the adapter from couchmail-managesieve's [`Backend`] to the index
//! (logins, as Dovecot's passdb answers them) and the directory (scripts, with the REST API's rules), and the task
//! that serves it on `managesieve.port` with STARTTLS over the mail ports' certificate.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use couchmail_directory::{Cascade, Directory, ErrorKind, ListFilter, ScriptCheck};
use couchmail_dovecot_auth::{AuthLookup, PassdbAnswer};
use couchmail_managesieve::{AuthOutcome, Backend, BackendError, ScriptEntry, ServerConfig};
use couchmail_model::{Address, DocKind, Document, Password, PasswordHash, SieveName, SieveScript};
use couchmail_render::Listen;
use couchmail_store::ListOptions;

use super::{Services, Shutdown};
use crate::config::ManageSieveSettings;
use crate::exit::{Exit, Failure};

/// What the ManageSieve server needs from `up`.
pub struct Options {
    /// The `[managesieve]` settings.
    pub settings: ManageSieveSettings,
    /// `mail.listen`.
    pub listen: Listen,
    /// The certificate chain and key of the mail ports, PEM.
    pub cert: std::path::PathBuf,
    /// The key of `cert`.
    pub key: std::path::PathBuf,
    /// Dovecot's `auth_failure_delay`, reused for failed ManageSieve logins.
    pub auth_failure_delay: Duration,
}

/// Binds the ManageSieve port and serves it as a task of `services`; the address bound, or `None` when the
/// default port was taken (a warning says so).
pub async fn start(
    services: &mut Services,
    stop: &Shutdown,
    options: Options,
    accounts: Arc<dyn AuthLookup>,
    directory: Directory,
    script_check: Arc<dyn ScriptCheck>,
) -> anyhow::Result<Option<SocketAddr>> {
    let settings = &options.settings;
    let tls = couchmail_managesieve::tls_acceptor(&options.cert, &options.key).map_err(|err| {
        Failure::new(Exit::Other, format!("cannot set up TLS for ManageSieve: {err}"))
            .hint("check tls.cert and tls.key, or remove both for a self-signed certificate")
    })?;
    let listener = match bind(options.listen, settings.port).await {
        Ok(listener) => listener,
        Err(err) if !settings.port_configured => {
            tracing::warn!(
                port = settings.port,
                %err,
                "ManageSieve is not served: its default port is taken (by a system managesieved?); set \
                 managesieve.port, or managesieve.enabled = false"
            );
            return Ok(None);
        }
        Err(err) => {
            return Err(Failure::new(
                Exit::Other,
                format!("cannot listen on port {} for ManageSieve: {err}", settings.port),
            )
            .hint("stop what uses that port (`ss -ltnp` names it), or choose another with managesieve.port")
            .into());
        }
    };
    let address = listener.local_addr().context("cannot read the ManageSieve listener's address")?;
    let config = ServerConfig {
        max_connections: settings.max_connections,
        max_script_bytes: settings.max_script_bytes,
        max_scripts: settings.max_scripts,
        auth_failure_delay: options.auth_failure_delay,
        ..ServerConfig::default()
    };
    let backend = Arc::new(StoreBackend { accounts, directory, script_check });
    let stopped = stop.stopped();
    services.spawn("ManageSieve server", async move {
        couchmail_managesieve::run(listener, backend, Some(tls), config, stopped).await;
        Ok(())
    });
    Ok(Some(address))
}

async fn bind(listen: Listen, port: u16) -> std::io::Result<tokio::net::TcpListener> {
    match listen {
        Listen::Address(address) => tokio::net::TcpListener::bind(SocketAddr::new(address, port)).await,
        // `[::]` takes IPv4 too on Linux (bindv6only is off by default); without IPv6, IPv4 alone.
        Listen::AllInterfaces => {
            match tokio::net::TcpListener::bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port)).await {
                Ok(listener) => Ok(listener),
                Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => Err(err),
                Err(_) => tokio::net::TcpListener::bind(SocketAddr::new(IpAddr::from([0, 0, 0, 0]), port)).await,
            }
        }
    }
}

/// Logins from the index, scripts through the directory.
struct StoreBackend {
    accounts: Arc<dyn AuthLookup>,
    directory: Directory,
    script_check: Arc<dyn ScriptCheck>,
}

/// How often a write that raced another (a stale revision) is tried again.
const N_WRITE_ATTEMPTS: usize = 3;

impl StoreBackend {
    fn owner(user: &str) -> Result<Address, BackendError> {
        Address::parse(user).map_err(|err| BackendError::Internal(format!("authenticated user `{user}`: {err}")))
    }

    fn name(name: &str) -> Result<SieveName, BackendError> {
        SieveName::parse(name).map_err(|err| BackendError::Refused(format!("Invalid script name: {}.", err.message)))
    }

    fn script_id(owner: &Address, name: &SieveName) -> String {
        DocKind::Sieve.id(format_args!("{owner}:{name}"))
    }

    async fn script(
        &self,
        owner: &Address,
        name: &SieveName,
    ) -> Result<Option<(SieveScript, couchmail_store::Rev)>, BackendError> {
        match self.directory.get(&Self::script_id(owner, name)).await.map_err(failure)? {
            Some(entry) => match entry.doc {
                Document::Sieve(script) => Ok(Some((script, entry.rev))),
                _ => Ok(None),
            },
            None => Ok(None),
        }
    }

    async fn active(&self, owner: &Address) -> Result<Option<SieveName>, BackendError> {
        match self.directory.get(&DocKind::Mailbox.id(owner)).await.map_err(failure)? {
            Some(entry) => match entry.doc {
                Document::Mailbox(mailbox) => Ok(mailbox.sieve_active),
                _ => Ok(None),
            },
            None => Err(BackendError::Internal(format!("mailbox `{owner}` is gone"))),
        }
    }

    async fn write_active(&self, owner: &Address, name: Option<SieveName>) -> Result<(), BackendError> {
        for _ in 0..N_WRITE_ATTEMPTS {
            let Some(entry) = self.directory.get(&DocKind::Mailbox.id(owner)).await.map_err(failure)? else {
                return Err(BackendError::Internal(format!("mailbox `{owner}` is gone")));
            };
            let Document::Mailbox(mut mailbox) = entry.doc else {
                return Err(BackendError::Internal(format!("`{owner}` is not a mailbox")));
            };
            if mailbox.sieve_active == name {
                return Ok(());
            }
            mailbox.sieve_active = name.clone();
            match self.directory.update(&Document::Mailbox(mailbox), &entry.rev).await {
                Ok(_) => return Ok(()),
                Err(err) if matches!(err.kind(), ErrorKind::Conflict) => continue,
                Err(err) => return Err(failure(err)),
            }
        }
        Err(BackendError::TryLater(format!("the mailbox `{owner}` kept changing while setting its active script")))
    }
}

/// A directory error as the session shows it.
fn failure(err: couchmail_directory::Error) -> BackendError {
    match err.kind() {
        ErrorKind::NotFound => BackendError::NonExistent(err.to_string()),
        ErrorKind::Invalid(validation) if validation.field == "script" => {
            BackendError::InvalidScript(validation.message.clone())
        }
        ErrorKind::Invalid(_) | ErrorKind::Refused => BackendError::Refused(err.to_string()),
        ErrorKind::Unavailable => BackendError::TryLater(err.to_string()),
        ErrorKind::Conflict => BackendError::TryLater(format!("a concurrent change: {err}")),
        _ => BackendError::Internal(err.to_string()),
    }
}

fn nonexistent(name: &SieveName) -> BackendError {
    BackendError::NonExistent(format!("There is no script named {:?}.", name.as_str()))
}

/// A hash to verify against when the user is unknown, so that an unknown user costs as much time as a wrong
/// password and the answer's timing tells nothing.
fn decoy_hash() -> &'static PasswordHash {
    static DECOY: OnceLock<PasswordHash> = OnceLock::new();
    DECOY.get_or_init(|| {
        let decoy = Password::new("decoy password for unknown users".to_owned());
        match decoy {
            Ok(password) => PasswordHash::new(&password),
            Err(err) => panic!("the fixed decoy password is valid: {err}"),
        }
    })
}

impl Backend for StoreBackend {
    async fn authenticate(&self, user: &str, password: &str) -> AuthOutcome {
        // Dovecot lower-cases user names (`%Lu`); Address::parse gives the one normal form.
        let Ok(address) = Address::parse(user) else { return AuthOutcome::Failed };
        let address = address.to_string();
        let (hash, outcome) = match self.accounts.passdb(&address) {
            PassdbAnswer::Found { password: hash } => match PasswordHash::parse(&hash) {
                Ok(hash) => (hash, None),
                Err(_) => (decoy_hash().clone(), Some(AuthOutcome::Failed)),
            },
            PassdbAnswer::Unknown => (decoy_hash().clone(), Some(AuthOutcome::Failed)),
            PassdbAnswer::Disabled => return AuthOutcome::Disabled,
            PassdbAnswer::NotReady => return AuthOutcome::TryLater,
        };
        let password = password.to_owned();
        // argon2id costs tens of milliseconds of CPU: off the async threads.
        let verified = tokio::task::spawn_blocking(move || hash.verify(&password)).await.unwrap_or(false);
        match (outcome, verified) {
            (None, true) => AuthOutcome::Authenticated(address),
            (Some(outcome), _) => outcome,
            (None, false) => AuthOutcome::Failed,
        }
    }

    async fn list(&self, user: &str) -> Result<Vec<ScriptEntry>, BackendError> {
        let owner = Self::owner(user)?;
        let active = self.active(&owner).await?;
        let filter =
            ListFilter { kind: DocKind::Sieve, domain: None, owner: Some(owner), page: ListOptions::default() };
        let entries = self.directory.list(&filter).await.map_err(failure)?;
        Ok(entries
            .into_iter()
            .filter_map(|entry| match entry.doc {
                Document::Sieve(script) => {
                    Some(ScriptEntry { active: active.as_ref() == Some(&script.name), name: script.name.to_string() })
                }
                _ => None,
            })
            .collect())
    }

    async fn get(&self, user: &str, name: &str) -> Result<String, BackendError> {
        let (owner, name) = (Self::owner(user)?, Self::name(name)?);
        match self.script(&owner, &name).await? {
            Some((script, _)) => Ok(script.script),
            None => Err(nonexistent(&name)),
        }
    }

    async fn put(&self, user: &str, name: &str, script: &str) -> Result<(), BackendError> {
        let (owner, name) = (Self::owner(user)?, Self::name(name)?);
        let document =
            Document::Sieve(SieveScript { owner: owner.clone(), name: name.clone(), script: script.to_owned() });
        // The directory compiles the script with sievec before it stores it.
        match self.script(&owner, &name).await? {
            Some((_, rev)) => self.directory.update(&document, &rev).await.map(drop).map_err(failure),
            None => self.directory.create(&document).await.map(drop).map_err(failure),
        }
    }

    async fn check(&self, _user: &str, script: &str) -> Result<(), BackendError> {
        if script.len() > couchmail_model::MAX_SIEVE_SCRIPT_BYTES {
            return Err(BackendError::Refused("The script is too large.".to_owned()));
        }
        self.script_check.check(script).await.map_err(failure)
    }

    async fn set_active(&self, user: &str, name: Option<&str>) -> Result<(), BackendError> {
        let owner = Self::owner(user)?;
        let name = name.map(Self::name).transpose()?;
        if let Some(name) = &name
            && self.script(&owner, name).await?.is_none()
        {
            return Err(nonexistent(name));
        }
        self.write_active(&owner, name).await
    }

    async fn delete(&self, user: &str, name: &str) -> Result<(), BackendError> {
        let (owner, name) = (Self::owner(user)?, Self::name(name)?);
        if self.active(&owner).await?.as_ref() == Some(&name) {
            return Err(BackendError::Active("The active script cannot be deleted; deactivate it first.".to_owned()));
        }
        let Some((_, rev)) = self.script(&owner, &name).await? else { return Err(nonexistent(&name)) };
        self.directory
            .remove(&Self::script_id(&owner, &name), Some(&rev), Cascade::Refuse)
            .await
            .map(drop)
            .map_err(failure)
    }

    async fn rename(&self, user: &str, old: &str, new: &str) -> Result<(), BackendError> {
        let (owner, old, new) = (Self::owner(user)?, Self::name(old)?, Self::name(new)?);
        let Some((script, rev)) = self.script(&owner, &old).await? else { return Err(nonexistent(&old)) };
        if self.script(&owner, &new).await?.is_some() {
            return Err(BackendError::AlreadyExists(format!("A script named {:?} exists already.", new.as_str())));
        }
        // New first, then the active pointer, then the old one: a failure half-way leaves a copy, never a mailbox
        // whose active script is missing.
        let renamed = Document::Sieve(SieveScript { owner: owner.clone(), name: new.clone(), script: script.script });
        self.directory.create(&renamed).await.map_err(failure)?;
        if self.active(&owner).await?.as_ref() == Some(&old) {
            self.write_active(&owner, Some(new)).await?;
        }
        self.directory
            .remove(&Self::script_id(&owner, &old), Some(&rev), Cascade::Remove)
            .await
            .map(drop)
            .map_err(failure)
    }
}

#[cfg(test)]
mod tests {
    use couchmail_dovecot_auth::UserdbAnswer;
    use couchmail_model::Domain;
    use couchmail_store::SqliteStore;

    use super::*;

    /// Logins as the index would answer them: alice with "secret", bob disabled.
    struct FixedAccounts {
        alice: String,
    }

    impl AuthLookup for FixedAccounts {
        fn passdb(&self, user: &str) -> PassdbAnswer {
            match user {
                "alice@example.com" => PassdbAnswer::Found { password: self.alice.clone() },
                "bob@example.com" => PassdbAnswer::Disabled,
                "down@example.com" => PassdbAnswer::NotReady,
                _ => PassdbAnswer::Unknown,
            }
        }

        fn userdb(&self, _user: &str) -> UserdbAnswer {
            UserdbAnswer::Unknown
        }

        fn iterate(&self) -> Option<Vec<String>> {
            None
        }
    }

    /// Refuses scripts that contain "bogus", as sievec would.
    struct FakeCheck;

    impl ScriptCheck for FakeCheck {
        fn check<'a>(
            &'a self,
            script: &'a str,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = couchmail_directory::Result<()>> + Send + 'a>> {
            Box::pin(async move {
                if script.contains("bogus") {
                    return Err(couchmail_model::ValidationError::field(
                        "script",
                        "line 1: error: unknown command 'bogus'.",
                    )
                    .into());
                }
                Ok(())
            })
        }
    }

    async fn backend(dir: &std::path::Path) -> StoreBackend {
        let store = SqliteStore::open(dir.join("couchmail.db")).await.unwrap();
        let check: Arc<dyn ScriptCheck> = Arc::new(FakeCheck);
        let directory = Directory::new(Arc::new(store)).with_script_check(check.clone());
        let domain = Domain {
            name: "example.com".parse().unwrap(),
            active: true,
            quota_default: None,
            max_mailboxes: None,
            policy: Default::default(),
        };
        directory.create(&Document::Domain(domain)).await.unwrap();
        let body = serde_json::json!({ "type": "mailbox", "active": true });
        let mailbox = Document::from_stored("mailbox:alice@example.com", body.as_object().unwrap()).unwrap();
        directory.create(&mailbox).await.unwrap();
        let hash = PasswordHash::new(&Password::new("secret password".to_owned()).unwrap());
        StoreBackend {
            accounts: Arc::new(FixedAccounts { alice: hash.as_str().to_owned() }),
            directory,
            script_check: check,
        }
    }

    #[tokio::test]
    async fn logins_follow_the_index_and_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let backend = backend(dir.path()).await;
        assert_eq!(
            backend.authenticate("Alice@EXAMPLE.com", "secret password").await,
            AuthOutcome::Authenticated("alice@example.com".into())
        );
        assert_eq!(backend.authenticate("alice@example.com", "wrong").await, AuthOutcome::Failed);
        assert_eq!(backend.authenticate("nobody@example.com", "secret password").await, AuthOutcome::Failed);
        assert_eq!(backend.authenticate("not an address", "secret").await, AuthOutcome::Failed);
        assert_eq!(backend.authenticate("bob@example.com", "secret").await, AuthOutcome::Disabled);
        assert_eq!(backend.authenticate("down@example.com", "secret").await, AuthOutcome::TryLater);
    }

    #[tokio::test]
    async fn scripts_are_store_documents_and_the_active_one_the_mailboxs_field() {
        let dir = tempfile::tempdir().unwrap();
        let backend = backend(dir.path()).await;
        let user = "alice@example.com";
        backend.put(user, "one", "keep;").await.unwrap();
        backend.put(user, "one", "discard;").await.unwrap();
        assert_eq!(backend.get(user, "one").await.unwrap(), "discard;");
        assert!(
            matches!(backend.put(user, "two", "bogus;").await, Err(BackendError::InvalidScript(message)) if message.contains("bogus"))
        );
        assert!(matches!(backend.check(user, "bogus;").await, Err(BackendError::InvalidScript(_))));
        backend.check(user, "keep;").await.unwrap();
        assert!(matches!(backend.put(user, "a/b", "keep;").await, Err(BackendError::Refused(_))));
        assert!(matches!(backend.get(user, "two").await, Err(BackendError::NonExistent(_))));

        backend.set_active(user, Some("one")).await.unwrap();
        assert!(matches!(backend.set_active(user, Some("two")).await, Err(BackendError::NonExistent(_))));
        assert_eq!(backend.list(user).await.unwrap(), [ScriptEntry { name: "one".into(), active: true }]);
        assert!(matches!(backend.delete(user, "one").await, Err(BackendError::Active(_))));

        backend.put(user, "two", "keep;").await.unwrap();
        assert!(matches!(backend.rename(user, "one", "two").await, Err(BackendError::AlreadyExists(_))));
        assert!(matches!(backend.rename(user, "none", "three").await, Err(BackendError::NonExistent(_))));
        backend.rename(user, "one", "main").await.unwrap();
        assert_eq!(
            backend.list(user).await.unwrap(),
            [ScriptEntry { name: "main".into(), active: true }, ScriptEntry { name: "two".into(), active: false }]
        );
        let mailbox = backend.directory.get("mailbox:alice@example.com").await.unwrap().unwrap();
        assert!(
            matches!(mailbox.doc, Document::Mailbox(m) if m.sieve_active.as_ref().map(SieveName::as_str) == Some("main"))
        );

        backend.set_active(user, None).await.unwrap();
        backend.delete(user, "main").await.unwrap();
        assert!(matches!(backend.delete(user, "main").await, Err(BackendError::NonExistent(_))));
        assert_eq!(backend.list(user).await.unwrap(), [ScriptEntry { name: "two".into(), active: false }]);
    }
}
