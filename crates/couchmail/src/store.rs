//! Opening the configured store, SQLite or CouchDB: the one place that turns a
//! [`StoreUrl`] and the `[couchdb]` settings into an `Arc<dyn Store>`.
//!
//! `up`, every administrative command, `export`, `import`, `migrate` and
//! `conflicts` come through here, so that the backend is chosen by
//! configuration only and every command fails the same way: a store that
//! cannot be reached is exit 6 with a hint naming what to check, a password
//! file that others may read is exit 2.
//!
//! The CouchDB password is read here, once, when the store is opened; it goes
//! into the HTTP client and nowhere else (not into logs, errors or
//! [`Store::describe`]).

use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use couchmail_model::couchdb;
use couchmail_store::{
    CouchConfig, CouchCredentials, CouchSetup, CouchStore, ErrorKind, MangoIndex, SqliteStore, Store,
};

use crate::config::{Config, CouchDbSettings, PasswordSource, StoreUrl};
use crate::exit::{Exit, Failure};

/// Whether a missing SQLite file may be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Create it (mode 0600) and its directory (0750): `up`, and the target of `migrate`.
    Create,
    /// Refuse: the configuration probably points somewhere unexpected (administrative commands).
    Refuse,
}

/// Opens the configured store.
pub async fn open(config: &Config, missing: Missing) -> anyhow::Result<Arc<dyn Store>> {
    open_url(&config.store, &config.couchdb, missing).await
}

/// Opens the store at `url`; `couchdb` says how to log in to a CouchDB one.
pub async fn open_url(url: &StoreUrl, couchdb: &CouchDbSettings, missing: Missing) -> anyhow::Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = match url {
        StoreUrl::Sqlite(path) => Arc::new(open_sqlite(url, path, missing).await?),
        StoreUrl::CouchDb { server, database } => Arc::new(open_couchdb(url, server, database, couchdb).await?),
    };
    tracing::debug!(store = store.describe(), "store open");
    Ok(store)
}

async fn open_sqlite(url: &StoreUrl, path: &Path, missing: Missing) -> anyhow::Result<SqliteStore> {
    let parent = path.parent().filter(|parent| !parent.as_os_str().is_empty());
    match missing {
        Missing::Refuse => {
            if let Some(parent) = parent.filter(|parent| !parent.is_dir()) {
                return Err(Failure::new(
                    Exit::Unavailable,
                    format!("store {url}: directory {} does not exist", parent.display()),
                )
                .hint(
                    "run `couchmail up` once to create it, or point `store` (COUCHMAIL_STORE, --store) at the right \
                     file",
                )
                .into());
            }
        }
        Missing::Create => {
            if let Some(parent) = parent.filter(|parent| !parent.is_dir()) {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o750)
                    .create(parent)
                    .with_context(|| format!("cannot create the store's directory {}", parent.display()))?;
            }
            // Create the file with mode 0600 before SQLite does (it would use the
            // umask): the store holds password hashes. SQLite gives its -wal and
            // -shm files the same mode.
            if !path.exists() {
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .with_context(|| format!("cannot create the store file {}", path.display()))?;
            }
        }
    }
    SqliteStore::open(path).await.with_context(|| format!("cannot open store {url}"))
}

async fn open_couchdb(
    url: &StoreUrl,
    server: &str,
    database: &str,
    settings: &CouchDbSettings,
) -> anyhow::Result<CouchStore> {
    let credentials = match &settings.login {
        Some((username, source)) => {
            Some(CouchCredentials { username: username.clone(), password: read_password(source)? })
        }
        None => None,
    };
    let members = settings.login.iter().map(|(username, _)| username.clone()).collect();
    let config = CouchConfig {
        url: server.to_owned(),
        database: database.to_owned(),
        credentials,
        ca_file: settings.ca_file.clone(),
        setup: couch_setup(members),
    };
    CouchStore::connect(config).await.map_err(|err| {
        let hint = match err.kind() {
            ErrorKind::Unavailable => format!(
                "check that CouchDB runs and answers at {server}, and that couchdb.username and its password are \
                 right (docs/config.md); `curl {server}/_up` tells whether it is up"
            ),
            _ => "correct `store` and the [couchdb] settings (docs/config.md), then run the command again".to_owned(),
        };
        let exit = if err.kind() == ErrorKind::Unavailable { Exit::Unavailable } else { Exit::Usage };
        anyhow::Error::new(Failure::new(exit, format!("cannot open store {url}: {err}")).hint(hint))
    })
}

/// What bootstrap installs in a CouchDB database: the model's validation
/// function and indexes, and the configured user as the only member.
fn couch_setup(members: Vec<String>) -> CouchSetup {
    let indexes = couchdb::mango_indexes().into_iter().map(|(name, fields)| MangoIndex { name, fields }).collect();
    CouchSetup { validate_doc_update: Some(couchdb::VALIDATE_DOC_UPDATE.to_owned()), indexes, members }
}

/// The password from its source. A file must be readable by its owner only,
/// and only its first line counts (an editor's final newline is not part of it).
fn read_password(source: &PasswordSource) -> anyhow::Result<String> {
    let path = match source {
        PasswordSource::Env(secret) => return Ok(secret.expose().to_owned()),
        PasswordSource::File(path) => path,
    };
    let usage = |message: String, hint: String| anyhow::Error::new(Failure::new(Exit::Usage, message).hint(hint));
    let metadata = std::fs::metadata(path).map_err(|err| {
        usage(
            format!("cannot read couchdb.password_file {}: {err}", path.display()),
            "point couchdb.password_file at the file that holds the CouchDB password".to_owned(),
        )
    })?;
    let mode = metadata.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(usage(
            format!(
                "couchdb.password_file {} has mode {mode:04o}: group and others may read the CouchDB password",
                path.display()
            ),
            format!("restrict it to its owner: chmod 600 {}", path.display()),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|err| {
        usage(
            format!("cannot read couchdb.password_file {}: {err}", path.display()),
            "make the file readable by the user couchmail runs as".to_owned(),
        )
    })?;
    let password = text.lines().next().unwrap_or_default();
    if password.is_empty() {
        return Err(usage(
            format!("couchdb.password_file {} is empty", path.display()),
            "write the CouchDB password on the file's first line".to_owned(),
        ));
    }
    Ok(password.to_owned())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::config::Secret;

    fn password_file(dir: &Path, text: &str, mode: u32) -> PasswordSource {
        let path = dir.join("pw");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        PasswordSource::File(path)
    }

    #[test]
    fn password_file_first_line_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_password(&password_file(dir.path(), "hunter2\n", 0o600)).unwrap(), "hunter2");
        assert_eq!(read_password(&password_file(dir.path(), "hunter2\r\nrest", 0o400)).unwrap(), "hunter2");
        for mode in [0o644, 0o640, 0o604, 0o660] {
            let err = read_password(&password_file(dir.path(), "hunter2\n", mode)).unwrap_err();
            let (exit, hint) = crate::exit::classify(&err);
            assert_eq!(exit, Exit::Usage);
            assert!(err.to_string().contains(&format!("{mode:04o}")), "{err}");
            assert!(hint.unwrap().contains("chmod 600"));
            assert!(!format!("{err:#}").contains("hunter2"));
        }
        let err = read_password(&password_file(dir.path(), "\n", 0o600)).unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
        let err = read_password(&PasswordSource::File(dir.path().join("missing"))).unwrap_err();
        assert_eq!(crate::exit::classify(&err).0, Exit::Usage);
        assert_eq!(read_password(&PasswordSource::Env(Secret::new("from-env"))).unwrap(), "from-env");
    }

    #[tokio::test]
    async fn a_missing_sqlite_directory_is_refused_or_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("couchmail.db");
        let url = StoreUrl::Sqlite(path.clone());
        let err = open_url(&url, &CouchDbSettings::default(), Missing::Refuse).await.err().unwrap();
        assert_eq!(crate::exit::classify(&err).0, Exit::Unavailable);
        assert!(!path.exists());
        let store = open_url(&url, &CouchDbSettings::default(), Missing::Create).await.unwrap();
        assert!(store.describe().contains("couchmail.db"), "{}", store.describe());
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[tokio::test]
    async fn an_unreachable_couchdb_is_exit_6_with_a_hint() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = StoreUrl::parse(&format!("couchdb:http://127.0.0.1:{port}/couchmail")).unwrap();
        let settings =
            CouchDbSettings { login: Some(("cm".into(), PasswordSource::Env(Secret::new("hunter2")))), ca_file: None };
        let err = open_url(&url, &settings, Missing::Refuse).await.err().unwrap();
        let (exit, hint) = crate::exit::classify(&err);
        assert_eq!(exit, Exit::Unavailable);
        assert!(hint.unwrap().contains(&format!("127.0.0.1:{port}")));
        assert!(!format!("{err:#}").contains("hunter2"));
    }

    #[test]
    fn the_couchdb_setup_is_the_models() {
        let setup = couch_setup(vec!["cm".to_owned()]);
        assert_eq!(setup.validate_doc_update.as_deref(), Some(couchdb::VALIDATE_DOC_UPDATE));
        assert!(setup.indexes.iter().any(|index| index.fields == ["type"]), "{:?}", setup.indexes);
        assert_eq!(setup.members, ["cm"]);
    }
}
