//! The CouchDB backend: the same [`Store`] over Apache CouchDB 3.x's documented HTTP API.
//!
//! CouchDB makes revisions, detects conflicts and keeps the changes feed itself; this module
//! maps the trait onto its endpoints and its answers onto [`ErrorKind`]s. Sequences are kept
//! as the opaque JSON values CouchDB hands out (strings in 3.x), rendered as text.
//!
//! - `bootstrap`: what [`CouchStore::connect`] makes sure the database has (idempotently).
//! - `changes`: the long-poll on `_changes`, with heartbeats.
//! - `conflicts`: replication conflicts, listed and resolved.
//! - `http`: the client (http and https), credentials, and CouchDB's errors.

mod bootstrap;
mod changes;
mod conflicts;
mod http;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use self::http::{encode_path_segment, error_from_response, write_error_from_response};
use crate::validate::{check_body, check_id};
use crate::{Body, Changes, Conflict, Error, ErrorKind, ListOptions, RawDoc, Result, Rev, Seq, Store};

/// How many rows `list` asks for at a time when the caller set no limit.
const LIST_BATCH: usize = 1000;

/// A user name and password for CouchDB's basic authentication.
#[derive(Clone, PartialEq, Eq)]
pub struct CouchCredentials {
    /// The CouchDB user.
    pub username: String,
    /// The user's password; never shown by `Debug`.
    pub password: String,
}

impl fmt::Debug for CouchCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CouchCredentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// Where the CouchDB store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouchConfig {
    /// The server's base URL, such as `http://127.0.0.1:5984` or `https://couch.example.com`,
    /// without credentials.
    pub url: String,
    /// The database holding CouchMail's documents; created when missing.
    pub database: String,
    /// Basic-authentication credentials, if the server needs them.
    pub credentials: Option<CouchCredentials>,
    /// PEM certificates of extra authorities trusted for `https://` besides the system's,
    /// for a server with a private CA.
    pub ca_file: Option<std::path::PathBuf>,
    /// What bootstrap installs in the database.
    pub setup: CouchSetup,
}

impl CouchConfig {
    /// A configuration for `database` at `url` without credentials, extra authorities or setup.
    pub fn new(url: impl Into<String>, database: impl Into<String>) -> CouchConfig {
        CouchConfig {
            url: url.into(),
            database: database.into(),
            credentials: None,
            ca_file: None,
            setup: CouchSetup::default(),
        }
    }
}

/// What bootstrap makes sure the database has, every time it connects (idempotently, so
/// several processes may bootstrap the same database at once).
///
/// The store knows nothing of mail: the validation function is the caller's (CouchMail's
/// model provides it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CouchSetup {
    /// The `validate_doc_update` JavaScript function installed in `_design/couchmail`, which
    /// CouchDB runs on every write, replication and Fauxton edit included; `None` installs none
    /// and leaves one installed earlier in place, so that a tool connecting without it does
    /// not switch validation off. Documents it refuses are `BadRequest`s naming CouchDB's reason.
    pub validate_doc_update: Option<String>,
    /// Mango indexes created with `POST /{db}/_index` in the design document `couchmail-indexes`.
    pub indexes: Vec<MangoIndex>,
    /// User names made the database's only members through `_security` (with the connecting
    /// user). Empty leaves `_security` alone.
    pub members: Vec<String>,
}

/// A Mango (`_find`) index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MangoIndex {
    /// The index's name.
    pub name: String,
    /// The fields indexed, in order.
    pub fields: Vec<String>,
}

/// A store kept in a CouchDB database.
pub struct CouchStore {
    client: reqwest::Client,
    /// The database's URL, ending without a slash.
    database_url: String,
    credentials: Option<CouchCredentials>,
    description: String,
}

impl fmt::Debug for CouchStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CouchStore").field("database", &self.description).finish_non_exhaustive()
    }
}

impl CouchStore {
    /// Connects to the server and bootstraps the database: creates it if it does not exist
    /// yet and installs what `config.setup` asks for (see [`CouchSetup`]).
    ///
    /// Bootstrapping is idempotent: several processes may connect at once.
    pub async fn connect(config: CouchConfig) -> Result<CouchStore> {
        // A malformed URL is not echoed: it may still hold a password.
        let base = reqwest::Url::parse(&config.url).map_err(|error| {
            Error::new(ErrorKind::BadRequest, "the CouchDB URL is not a URL — give one like http://127.0.0.1:5984")
                .with_source(error)
        })?;
        if !base.username().is_empty() || base.password().is_some() {
            return Err(Error::new(
                ErrorKind::BadRequest,
                "the CouchDB URL contains credentials — give them separately so that they are never logged",
            ));
        }
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::new(
                ErrorKind::BadRequest,
                format!(
                    "the CouchDB URL's scheme {:?} is not supported — give an http:// or https:// URL",
                    base.scheme()
                ),
            ));
        }
        if config.database.is_empty() {
            return Err(Error::new(ErrorKind::BadRequest, "the CouchDB database name is empty — name one"));
        }
        let client = http::build_client(&base, config.ca_file.as_deref())?;
        let base_url = config.url.trim_end_matches('/');
        let database_url = format!("{base_url}/{}", encode_path_segment(&config.database));
        let description = format!("couchdb:{database_url}");
        let store = CouchStore { client, database_url, credentials: config.credentials, description };
        store.bootstrap(&config.setup).await?;
        Ok(store)
    }

    fn document_url(&self, id: &str) -> String {
        format!("{}/{}", self.database_url, encode_path_segment(id))
    }

    /// The live document, fetched without the checks `get` applies to its id.
    async fn fetch(&self, id: &str) -> Result<Option<RawDoc>> {
        let action = format!("read document {id:?}");
        let response = self.send(self.request(Method::GET, &self.document_url(id)), &action).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(error_from_response(response, &action).await);
        }
        let value = self.json(response, &action).await?;
        raw_doc(value).map(Some)
    }

    /// One `_all_docs` page starting at `start_key` (inclusive).
    async fn all_docs_page(&self, start_key: &str, limit: usize) -> Result<Vec<Value>> {
        let start_key_json = Value::String(start_key.to_owned()).to_string();
        let limit_text = limit.to_string();
        let builder = self.request(Method::GET, &format!("{}/_all_docs", self.database_url)).query(&[
            ("startkey", start_key_json.as_str()),
            ("limit", limit_text.as_str()),
            ("include_docs", "true"),
        ]);
        let response = self.send(builder, "list documents").await?;
        if !response.status().is_success() {
            return Err(error_from_response(response, "list documents").await);
        }
        let value = self.json(response, "list documents").await?;
        match value.get("rows") {
            Some(Value::Array(rows)) => Ok(rows.clone()),
            _ => Err(Error::new(ErrorKind::Internal, "CouchDB's _all_docs answer has no rows")),
        }
    }
}

#[async_trait]
impl Store for CouchStore {
    async fn get(&self, id: &str) -> Result<Option<RawDoc>> {
        // Reserved ids name design and local documents, which are never CouchMail's.
        if check_id(id).is_err() {
            return Ok(None);
        }
        self.fetch(id).await
    }

    async fn put(&self, id: &str, rev: Option<&Rev>, body: &Body) -> Result<Rev> {
        check_id(id)?;
        check_body(id, body)?;
        let mut document = body.clone();
        if let Some(rev) = rev {
            // CouchDB lets a tombstone's revision be updated (an undelete); the contract says a
            // deleted document is re-created without a revision, so an update needs a live one.
            if self.fetch(id).await?.is_none() {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("document {id:?} does not exist or is deleted — create it without a revision"),
                ));
            }
            document.insert("_rev".to_owned(), Value::String(rev.0.clone()));
        }
        let action = format!("write document {id:?}");
        let builder = self.request(Method::PUT, &self.document_url(id)).json(&Value::Object(document));
        let response = self.send(builder, &action).await?;
        if !response.status().is_success() {
            return Err(write_error_from_response(response, &action).await);
        }
        let value = self.json(response, &action).await?;
        rev_from_answer(&value)
    }

    async fn delete(&self, id: &str, rev: &Rev) -> Result<Rev> {
        check_id(id)?;
        // A delete of a deleted document is "not found" whatever the revision, as CouchDB
        // itself would accept a tombstone's revision and write another tombstone.
        if self.fetch(id).await?.is_none() {
            return Err(Error::new(ErrorKind::NotFound, format!("document {id:?} does not exist or is deleted")));
        }
        let action = format!("delete document {id:?}");
        let builder = self.request(Method::DELETE, &self.document_url(id)).query(&[("rev", rev.0.as_str())]);
        let response = self.send(builder, &action).await?;
        if !response.status().is_success() {
            return Err(write_error_from_response(response, &action).await);
        }
        let value = self.json(response, &action).await?;
        rev_from_answer(&value)
    }

    async fn list(&self, prefix: &str, options: &ListOptions) -> Result<Vec<RawDoc>> {
        let wanted = options.limit.unwrap_or(usize::MAX);
        let mut start_key = match &options.start_after {
            Some(after) if after.as_str() > prefix => after.clone(),
            _ => prefix.to_owned(),
        };
        let mut docs = Vec::new();
        // The first row of every page after the first is the last row of the page before.
        let mut seen_id = options.start_after.clone();
        // Pages are read until one holds an id past the prefix: `_all_docs` is in id order.
        loop {
            let batch = wanted.saturating_sub(docs.len()).saturating_add(1).min(LIST_BATCH);
            let rows = self.all_docs_page(&start_key, batch).await?;
            let row_count = rows.len();
            let mut last_id = None;
            for row in rows {
                let id = row.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
                last_id = Some(id.clone());
                if Some(&id) == seen_id.as_ref() || Some(&id) == options.start_after.as_ref() {
                    continue;
                }
                if !id.starts_with(prefix) {
                    return Ok(docs);
                }
                if id.starts_with('_') {
                    continue;
                }
                let Some(doc) = row.get("doc").cloned() else { continue };
                docs.push(raw_doc(doc)?);
                if docs.len() >= wanted {
                    return Ok(docs);
                }
            }
            match last_id {
                Some(id) if row_count >= batch => {
                    start_key = id.clone();
                    seen_id = Some(id);
                }
                _ => return Ok(docs),
            }
        }
    }

    async fn changes(&self, since: Option<&Seq>, limit: usize, wait: Duration) -> Result<Changes> {
        self.changes_feed(since, limit, wait).await
    }

    async fn conflicts(&self) -> Result<Vec<Conflict>> {
        self.list_conflicts().await
    }

    async fn resolve_conflict(&self, id: &str, keep: &Rev) -> Result<Rev> {
        self.resolve(id, keep).await
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// A document as CouchDB sends it, split into id, revision and body.
fn raw_doc(value: Value) -> Result<RawDoc> {
    let Value::Object(mut body) = value else {
        return Err(Error::new(ErrorKind::Internal, "CouchDB sent a document that is not a JSON object"));
    };
    let id = match body.remove("_id") {
        Some(Value::String(id)) => id,
        _ => return Err(Error::new(ErrorKind::Internal, "CouchDB sent a document without an _id")),
    };
    let rev = match body.remove("_rev") {
        Some(Value::String(rev)) => Rev(rev),
        _ => return Err(Error::new(ErrorKind::Internal, format!("CouchDB sent document {id:?} without a _rev"))),
    };
    // Other `_` keys (`_conflicts`, `_attachments`) are CouchDB's metadata, not the body.
    body.retain(|key, _| !key.starts_with('_'));
    Ok(RawDoc { id, rev, body })
}

fn rev_from_answer(value: &Value) -> Result<Rev> {
    value
        .get("rev")
        .and_then(Value::as_str)
        .map(|rev| Rev(rev.to_owned()))
        .ok_or_else(|| Error::new(ErrorKind::Internal, format!("CouchDB's answer {value} names no revision")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn credentials_are_redacted() {
        let credentials = CouchCredentials { username: "admin".to_owned(), password: "hunter2".to_owned() };
        let config =
            CouchConfig { credentials: Some(credentials), ..CouchConfig::new("http://127.0.0.1:5984", "couchmail") };
        let shown = format!("{config:?}");
        assert!(shown.contains("admin"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn documents_split_into_id_rev_and_body() {
        let doc = raw_doc(json!({ "_id": "a", "_rev": "1-x", "_conflicts": ["1-y"], "k": 1 })).unwrap();
        assert_eq!((doc.id.as_str(), doc.rev.0.as_str()), ("a", "1-x"));
        assert_eq!(Value::Object(doc.body), json!({ "k": 1 }));
        assert_eq!(raw_doc(json!({ "_rev": "1-x" })).unwrap_err().kind(), ErrorKind::Internal);
    }
}
