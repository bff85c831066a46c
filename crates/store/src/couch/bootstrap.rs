//! Bootstrap: what the database must have before CouchMail uses it, made sure of at every
//! connect.
//!
//! Every step reads first and writes only what differs, so that a second start writes nothing
//! and several processes may bootstrap one database at once: the database is created unless it
//! exists (412 when another process was quicker), `_security` gets the configured members,
//! `_design/couchmail` the `validate_doc_update` function and the `conflicts` view (retried
//! once when another process wrote it in between), and each Mango index is created with
//! `POST /{db}/_index`, which CouchDB answers "exists" for an index it has.
//! Reading first also lets a database member that is no admin connect to a database an admin
//! has bootstrapped before.

use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::CouchStore;
use super::http::error_from_response;
use crate::{CouchSetup, MangoIndex, Result};

/// The design document holding the validation function and the `conflicts` view.
pub(super) const DESIGN_ID: &str = "_design/couchmail";

/// The design document Mango indexes are created in.
const INDEX_DESIGN: &str = "couchmail-indexes";

/// The map function of the `conflicts` view: every document with live losing revisions, keyed
/// by `_id`. CouchDB hands map functions `_conflicts` when a document has them.
pub(super) const CONFLICTS_MAP: &str = "function(doc){ if (doc._conflicts) emit(doc._id, doc._conflicts); }";

impl CouchStore {
    pub(super) async fn bootstrap(&self, setup: &CouchSetup) -> Result<()> {
        self.create_database().await?;
        if !setup.members.is_empty() {
            self.restrict_members(&setup.members).await?;
        }
        self.install_design(setup.validate_doc_update.as_deref()).await?;
        for index in &setup.indexes {
            self.create_index(index).await?;
        }
        Ok(())
    }

    async fn create_database(&self) -> Result<()> {
        let action = "look for the database";
        let response = self.send(self.request(Method::HEAD, &self.database_url), action).await?;
        if response.status().is_success() {
            return Ok(());
        }
        if response.status() != StatusCode::NOT_FOUND {
            return Err(error_from_response(response, action).await);
        }
        let action = "create the database";
        let response = self.send(self.request(Method::PUT, &self.database_url), action).await?;
        match response.status() {
            // 412: another process created it since we looked.
            status if status.is_success() || status == StatusCode::PRECONDITION_FAILED => {
                tracing::info!(store = %self.description, "created the CouchDB database");
                Ok(())
            }
            _ => Err(error_from_response(response, action).await),
        }
    }

    async fn restrict_members(&self, members: &[String]) -> Result<()> {
        let url = format!("{}/_security", self.database_url);
        let connecting_user = self.credentials.as_ref().map(|credentials| credentials.username.as_str());
        // CouchDB's `_security` has no revisions and never conflicts; servers that keep one
        // answer 409 to a concurrent bootstrap, whose second read finds the same members.
        for attempt in 0..2 {
            let current = self.get_json(&url, "read the database's _security").await?.unwrap_or_else(|| json!({}));
            let wanted = security_with_members(&current, members, connecting_user);
            if wanted == current {
                return Ok(());
            }
            let action = "set the database's _security members";
            let response = self.send(self.request(Method::PUT, &url).json(&wanted), action).await?;
            if response.status().is_success() {
                tracing::info!(store = %self.description, ?members, "set the CouchDB database's members");
                return Ok(());
            }
            if response.status() != StatusCode::CONFLICT || attempt == 1 {
                return Err(error_from_response(response, action).await);
            }
        }
        Ok(())
    }

    /// Installs or refreshes `_design/couchmail`, writing only when it differs.
    pub(super) async fn install_design(&self, validate_doc_update: Option<&str>) -> Result<()> {
        let url = self.document_url(DESIGN_ID);
        // One retry: a 409 means another process wrote the design document between our read
        // and our write, and the second read most likely finds what we wanted.
        for attempt in 0..2 {
            let current = self.get_json(&url, "read the design document _design/couchmail").await?;
            let Some(wanted) = wanted_design(current.as_ref(), validate_doc_update) else { return Ok(()) };
            let action = "install the design document _design/couchmail";
            let response = self.send(self.request(Method::PUT, &url).json(&wanted), action).await?;
            if response.status().is_success() {
                tracing::info!(store = %self.description, "installed the design document _design/couchmail");
                return Ok(());
            }
            if response.status() != StatusCode::CONFLICT || attempt == 1 {
                return Err(error_from_response(response, action).await);
            }
        }
        Ok(())
    }

    async fn create_index(&self, index: &MangoIndex) -> Result<()> {
        let url = format!("{}/_index", self.database_url);
        let request = json!({
            "index": { "fields": index.fields },
            "name": index.name,
            "ddoc": INDEX_DESIGN,
            "type": "json",
        });
        let action = format!("create the Mango index {:?}", index.name);
        // One retry: processes creating indexes in the one design document at once can make
        // CouchDB answer a conflict for the slower one.
        for attempt in 0..2 {
            let response = self.send(self.request(Method::POST, &url).json(&request), &action).await?;
            if response.status().is_success() {
                return Ok(());
            }
            let retry = matches!(response.status(), StatusCode::CONFLICT | StatusCode::INTERNAL_SERVER_ERROR);
            if !retry || attempt == 1 {
                return Err(error_from_response(response, &action).await);
            }
        }
        Ok(())
    }
}

/// `current` `_security` with `members.names` set to `members` plus the connecting user (who
/// must keep access), sorted and without duplicates; admins, member roles and anything else
/// are kept.
fn security_with_members(current: &Value, members: &[String], connecting_user: Option<&str>) -> Value {
    let mut names: Vec<String> = members.iter().cloned().chain(connecting_user.map(str::to_owned)).collect();
    names.sort();
    names.dedup();
    let mut security = current.as_object().cloned().unwrap_or_default();
    let mut member_section = security.get("members").and_then(Value::as_object).cloned().unwrap_or_default();
    member_section.insert("names".to_owned(), json!(names));
    member_section.entry("roles").or_insert_with(|| json!([]));
    security.insert("members".to_owned(), Value::Object(member_section));
    security.entry("admins").or_insert_with(|| json!({ "names": [], "roles": [] }));
    Value::Object(security)
}

/// The design document to write over `current`, or `None` when `current` already is what is
/// wanted. `None` for `validate_doc_update` keeps the function installed, if any: a process
/// that brings none (a tool) must not switch validation off for everybody.
fn wanted_design(current: Option<&Value>, validate_doc_update: Option<&str>) -> Option<Value> {
    let mut design: Map<String, Value> = current.and_then(Value::as_object).cloned().unwrap_or_default();
    let before = design.clone();
    design.insert("_id".to_owned(), json!(DESIGN_ID));
    design.insert("language".to_owned(), json!("javascript"));
    let views = design.entry("views").or_insert_with(|| json!({}));
    if !views.is_object() {
        *views = json!({});
    }
    if let Some(views) = views.as_object_mut() {
        views.insert("conflicts".to_owned(), json!({ "map": CONFLICTS_MAP }));
    }
    if let Some(function) = validate_doc_update {
        design.insert("validate_doc_update".to_owned(), json!(function));
    }
    (design != before).then_some(Value::Object(design))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use super::*;

    #[test]
    fn members_are_set_and_admins_kept() {
        let current = json!({
            "admins": { "names": ["root"], "roles": ["ops"] },
            "members": { "names": ["mallory"], "roles": ["replicator"] },
            "couchdb_auth_only": true,
        });
        let wanted = security_with_members(&current, &["mta".to_owned(), "couchmail".to_owned()], Some("couchmail"));
        assert_eq!(
            wanted,
            json!({
                "admins": { "names": ["root"], "roles": ["ops"] },
                "members": { "names": ["couchmail", "mta"], "roles": ["replicator"] },
                "couchdb_auth_only": true,
            })
        );
        // A second bootstrap finds nothing to change.
        assert_eq!(security_with_members(&wanted, &["mta".to_owned()], Some("couchmail")), wanted);
    }

    #[test]
    fn members_of_an_empty_security_object() {
        let wanted = security_with_members(&json!({}), &["mta".to_owned()], None);
        assert_eq!(
            wanted,
            json!({ "admins": { "names": [], "roles": [] }, "members": { "names": ["mta"], "roles": [] } })
        );
    }

    #[test]
    fn the_design_document_is_written_only_when_it_differs() {
        let fresh = wanted_design(None, Some("function(newDoc){}")).unwrap();
        assert_eq!(fresh["views"]["conflicts"]["map"], json!(CONFLICTS_MAP));
        assert_eq!(fresh["validate_doc_update"], json!("function(newDoc){}"));
        assert_eq!(fresh["_id"], json!(DESIGN_ID));

        let mut stored = fresh.clone();
        stored["_rev"] = json!("1-abc");
        assert_eq!(wanted_design(Some(&stored), Some("function(newDoc){}")), None);
        // No function given: the installed one stays, and nothing is written.
        assert_eq!(wanted_design(Some(&stored), None), None);

        let refreshed = wanted_design(Some(&stored), Some("function(newDoc){ throw({forbidden: 'x'}); }")).unwrap();
        assert_eq!(refreshed["_rev"], json!("1-abc"), "an update names the revision it replaces");
        assert_eq!(refreshed["validate_doc_update"], json!("function(newDoc){ throw({forbidden: 'x'}); }"));

        // Someone's own view in our design document survives; a broken view is repaired.
        stored["views"]["mine"] = json!({ "map": "function(doc){}" });
        stored["views"]["conflicts"] = json!({ "map": "function(doc){}" });
        let repaired = wanted_design(Some(&stored), None).unwrap();
        assert_eq!(repaired["views"]["mine"], json!({ "map": "function(doc){}" }));
        assert_eq!(repaired["views"]["conflicts"]["map"], json!(CONFLICTS_MAP));
    }
}
