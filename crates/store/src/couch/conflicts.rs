//! Replication conflicts: documents that two sites edited at once, listed and resolved.
//!
//! CouchDB keeps every concurrent edit as a live revision and picks the same winner on every
//! replica; the others stay as losers, listed in the winner's `_conflicts`. The `conflicts`
//! view of `_design/couchmail` (installed by bootstrap) finds such documents without reading
//! them all; each one's losers are then read with `open_revs`. A resolution deletes every
//! revision but the one kept and, when a loser is kept, writes its body on top of the winner —
//! in one `_bulk_docs`, as CouchDB's conflict model describes, so that replication carries
//! the whole resolution.

use std::cmp::Ordering;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::bootstrap::DESIGN_ID;
use super::http::{error_from_response, refused};
use super::{CouchStore, raw_doc};
use crate::validate::check_id;
use crate::{Conflict, Error, ErrorKind, RawDoc, Result, Rev};

impl CouchStore {
    pub(super) async fn list_conflicts(&self) -> Result<Vec<Conflict>> {
        let view_url = format!("{}/{DESIGN_ID}/_view/conflicts", self.database_url);
        let action = "read the conflicts view";
        let value = match self.get_json(&view_url, action).await? {
            Some(value) => value,
            None => {
                // Someone deleted the design document since bootstrap: put it back once.
                tracing::warn!(store = %self.description, "the design document _design/couchmail is gone; reinstalling it");
                self.install_design(None).await?;
                self.get_json(&view_url, action).await?.ok_or_else(|| {
                    Error::new(ErrorKind::Internal, "the conflicts view of _design/couchmail is missing")
                })?
            }
        };
        let Some(rows) = value.get("rows").and_then(Value::as_array) else {
            return Err(Error::new(ErrorKind::Internal, "CouchDB's answer for the conflicts view has no rows"));
        };
        let mut conflicts = Vec::new();
        for row in rows {
            let Some(id) = row.get("id").and_then(Value::as_str) else { continue };
            if id.starts_with('_') {
                continue;
            }
            // The view may be a moment behind: a document resolved since is simply not listed.
            if let Some(conflict) = self.conflict(id).await? {
                conflicts.push(conflict);
            }
        }
        conflicts.sort_by(|left, right| left.id.cmp(&right.id));
        Ok(conflicts)
    }

    pub(super) async fn resolve(&self, id: &str, keep: &Rev) -> Result<Rev> {
        check_id(id)?;
        let Some(conflict) = self.conflict(id).await? else {
            return Err(Error::new(ErrorKind::NotFound, format!("document {id:?} has no conflicting revisions")));
        };
        let kept_loser = conflict.losers.iter().find(|loser| loser.rev == *keep);
        if conflict.winner.rev != *keep && kept_loser.is_none() {
            let live: Vec<&str> =
                std::iter::once(&conflict.winner).chain(&conflict.losers).map(|doc| doc.rev.0.as_str()).collect();
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("{keep} is not a live revision of document {id:?} — keep one of {}", live.join(", ")),
            ));
        }
        let mut docs = Vec::new();
        if let Some(loser) = kept_loser {
            let mut body = loser.body.clone();
            body.insert("_id".to_owned(), json!(id));
            body.insert("_rev".to_owned(), json!(conflict.winner.rev.0));
            docs.push(Value::Object(body));
        }
        for loser in &conflict.losers {
            docs.push(json!({ "_id": id, "_rev": loser.rev.0, "_deleted": true }));
        }
        let action = format!("resolve the conflict on document {id:?}");
        let url = format!("{}/_bulk_docs", self.database_url);
        let response = self.send(self.request(Method::POST, &url).json(&json!({ "docs": docs })), &action).await?;
        // 417: CouchDB refused some of the documents, each named in the answer.
        if !response.status().is_success() && response.status() != StatusCode::EXPECTATION_FAILED {
            return Err(error_from_response(response, &action).await);
        }
        let value = self.json(response, &action).await?;
        let Some(results) = value.as_array() else {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("CouchDB's answer to _bulk_docs is not a list: {value}"),
            ));
        };
        if let Some(failure) = results.iter().find(|result| result.get("error").is_some()) {
            let error = failure.get("error").and_then(Value::as_str).unwrap_or("unknown");
            let reason = failure.get("reason").and_then(Value::as_str).unwrap_or("");
            return Err(match error {
                "conflict" => Error::new(
                    ErrorKind::Conflict,
                    format!("cannot {action}: its revisions changed meanwhile — list the conflicts again"),
                ),
                "forbidden" => refused(&action, &format!("{error}: {reason}")),
                _ => Error::new(ErrorKind::Internal, format!("cannot {action}: CouchDB answered {error}: {reason}")),
            });
        }
        if kept_loser.is_none() {
            tracing::info!(id, kept = %keep, "resolved a replication conflict by keeping the winner");
            return Ok(conflict.winner.rev);
        }
        let rev = results.first().and_then(|result| result.get("rev")).and_then(Value::as_str).ok_or_else(|| {
            Error::new(ErrorKind::Internal, format!("CouchDB's answer to _bulk_docs names no revision: {value}"))
        })?;
        tracing::info!(id, kept = %keep, rev, "resolved a replication conflict by keeping a losing revision");
        Ok(Rev(rev.to_owned()))
    }

    /// The conflict on `id`, or `None` when it has no live losing revisions (or is deleted).
    async fn conflict(&self, id: &str) -> Result<Option<Conflict>> {
        let action = format!("read document {id:?} with its conflicts");
        let builder = self.request(Method::GET, &self.document_url(id)).query(&[("conflicts", "true")]);
        let response = self.send(builder, &action).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(error_from_response(response, &action).await);
        }
        let value = self.json(response, &action).await?;
        let loser_revs: Vec<String> = match value.get("_conflicts") {
            Some(Value::Array(revs)) => revs.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        if loser_revs.is_empty() {
            return Ok(None);
        }
        let winner = raw_doc(value)?;
        let mut losers = self.open_revs(id, &loser_revs).await?;
        if losers.is_empty() {
            return Ok(None);
        }
        losers.sort_by(|left, right| revision_order(&left.rev, &right.rev));
        Ok(Some(Conflict { id: id.to_owned(), winner, losers }))
    }

    /// The live documents at revisions `revs` of `id`; revisions deleted or gone since are left out.
    async fn open_revs(&self, id: &str, revs: &[String]) -> Result<Vec<RawDoc>> {
        let action = format!("read the conflicting revisions of document {id:?}");
        let revs_json = json!(revs).to_string();
        let builder = self
            .request(Method::GET, &self.document_url(id))
            .query(&[("open_revs", revs_json.as_str())])
            .header(reqwest::header::ACCEPT, "application/json");
        let response = self.send(builder, &action).await?;
        if !response.status().is_success() {
            return Err(error_from_response(response, &action).await);
        }
        let value = self.json(response, &action).await?;
        let Some(entries) = value.as_array() else {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("CouchDB's answer to open_revs is not a list: {value}"),
            ));
        };
        let mut docs = Vec::new();
        for entry in entries {
            let Some(doc) = entry.get("ok") else { continue };
            if doc.get("_deleted").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            docs.push(raw_doc(doc.clone())?);
        }
        Ok(docs)
    }
}

/// CouchDB's order of revisions: by generation, then by hash.
fn revision_order(left: &Rev, right: &Rev) -> Ordering {
    fn parts(rev: &Rev) -> (u64, &str) {
        match rev.0.split_once('-') {
            Some((generation, hash)) => (generation.parse().unwrap_or(0), hash),
            None => (0, rev.0.as_str()),
        }
    }
    parts(left).cmp(&parts(right))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_order_by_generation_then_hash() {
        let rev = |text: &str| Rev(text.to_owned());
        let mut revs = vec![rev("10-a"), rev("2-b"), rev("2-a"), rev("1-z")];
        revs.sort_by(revision_order);
        assert_eq!(revs, [rev("1-z"), rev("2-a"), rev("2-b"), rev("10-a")]);
    }
}
