//! Which store a benchmark process opens, named as couchmail's configuration names it: `sqlite:PATH` or
//! `couchdb:URL/DATABASE` (the database is the URL's last path segment).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use couchmail_store::{CouchConfig, CouchStore, SqliteStore, Store};

/// A store to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A database on a CouchDB(-compatible) server.
    Couch { url: String, database: String },
}

impl StoreSpec {
    /// Opens the store; for CouchDB, that includes its idempotent bootstrap (creating the database if missing).
    pub async fn open(&self) -> Result<Arc<dyn Store>> {
        Ok(match self {
            StoreSpec::Sqlite(path) => Arc::new(
                SqliteStore::open(path).await.with_context(|| format!("open the SQLite store {}", path.display()))?,
            ),
            StoreSpec::Couch { url, database } => Arc::new(
                CouchStore::connect(CouchConfig::new(url.clone(), database.clone()))
                    .await
                    .with_context(|| format!("connect to CouchDB database {database} at {url}"))?,
            ),
        })
    }

    /// The short name the report gives the backend.
    pub fn backend_name(&self) -> &'static str {
        match self {
            StoreSpec::Sqlite(_) => "SQLite",
            StoreSpec::Couch { .. } => "CouchDB (pouchdb-server)",
        }
    }
}

impl FromStr for StoreSpec {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<StoreSpec> {
        if let Some(path) = text.strip_prefix("sqlite:") {
            if path.is_empty() {
                bail!("`sqlite:` needs a path, as in sqlite:/dev/shm/couchmail.db");
            }
            return Ok(StoreSpec::Sqlite(PathBuf::from(path)));
        }
        if let Some(url) = text.strip_prefix("couchdb:") {
            let (server, database) = url
                .trim_end_matches('/')
                .rsplit_once('/')
                .filter(|(server, database)| server.contains("://") && !server.ends_with('/') && !database.is_empty())
                .with_context(|| format!("`{text}` names no database: give couchdb:http://HOST:PORT/DATABASE"))?;
            return Ok(StoreSpec::Couch { url: server.to_owned(), database: database.to_owned() });
        }
        bail!("`{text}` is no store: give sqlite:PATH or couchdb:http://HOST:PORT/DATABASE")
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            StoreSpec::Couch { url, database } => write!(f, "couchdb:{url}/{database}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        for text in ["sqlite:/dev/shm/x/couchmail.db", "couchdb:http://127.0.0.1:5984/couchmail"] {
            assert_eq!(text.parse::<StoreSpec>().unwrap().to_string(), text);
        }
        assert_eq!(
            "couchdb:http://127.0.0.1:5984/mail/".parse::<StoreSpec>().unwrap(),
            StoreSpec::Couch { url: "http://127.0.0.1:5984".to_owned(), database: "mail".to_owned() }
        );
    }

    #[test]
    fn specs_without_a_path_or_database_are_refused() {
        for text in ["sqlite:", "couchdb:http://127.0.0.1:5984", "couchdb:http://127.0.0.1:5984/", "postgres:x"] {
            assert!(text.parse::<StoreSpec>().is_err(), "{text}");
        }
    }
}
