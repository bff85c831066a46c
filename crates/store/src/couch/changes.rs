//! The changes feed: `GET /{db}/_changes`, long-polled with heartbeats while the caller waits.
//!
//! A long-poll asks for a heartbeat, a blank line the server sends while it has nothing to say,
//! so that the client's per-read idle timeout ([`READ_IDLE_TIMEOUT`]) tells a quiet server from
//! a dead connection. CouchDB documents that a heartbeat overrides `timeout=` and keeps the
//! answer open until a change arrives, so the end of the caller's wait is the client's to
//! enforce: when nothing but the answer's opening and heartbeats has come by then, the request
//! is dropped and the answer is "nothing new" (the sequence is unchanged, so nothing is lost).
//! Once a change has begun to arrive, the answer is read to its end, bounded only by the idle
//! timeout and a generous overall limit ([`LONG_POLL_SAFETY`]).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::time::Instant;

use super::http::{READ_IDLE_TIMEOUT, REQUEST_TIMEOUT, error_from_response};
use super::{CouchStore, raw_doc};
use crate::{Change, Changes, Error, ErrorKind, Result, Rev, Seq};

/// How often a long-polling server sends a heartbeat line: well inside [`READ_IDLE_TIMEOUT`].
const HEARTBEAT: Duration = Duration::from_secs(10);

/// The longest wait one long-poll honours. A server that honours `timeout=` and ignores the
/// heartbeat stays silent that long, which must stay inside [`READ_IDLE_TIMEOUT`]; a caller
/// asking for more gets "nothing new" sooner, which the contract ("waits up to") allows.
const MAX_LONG_POLL_WAIT: Duration = Duration::from_secs(50);

/// The overall bound on a long-poll beyond its wait, for an answer that began to arrive and
/// then trickles.
const LONG_POLL_SAFETY: Duration = Duration::from_secs(60);

// A silent server must be a dead one only after several missed heartbeats, or after a wait
// longer than any this module lets a server hold an answer.
const _: () = assert!(HEARTBEAT.as_secs() * 3 < READ_IDLE_TIMEOUT.as_secs());
const _: () = assert!(MAX_LONG_POLL_WAIT.as_secs() < READ_IDLE_TIMEOUT.as_secs());

/// How a `_changes` answer opens, before any change; a long-poll sends heartbeats after it.
const RESULTS_OPENING: &[u8] = b"{\"results\":[";

impl CouchStore {
    pub(super) async fn changes_feed(&self, since: Option<&Seq>, limit: usize, wait: Duration) -> Result<Changes> {
        if since.is_some_and(|seq| seq.0.is_empty()) {
            return Err(Error::new(ErrorKind::BadRequest, "an empty sequence was never handed out by the store"));
        }
        let limit = limit.max(1);
        let deadline = Instant::now() + wait.min(MAX_LONG_POLL_WAIT);
        let given_since = since.cloned();
        let mut since = given_since.clone();
        let mut changes = Vec::new();
        // Design documents share the feed but are the store's own: they are skipped, and more
        // is read while a full batch held some, so that a batch holds `limit` changes when the
        // feed has them. Only the first read may wait.
        loop {
            let remaining =
                if changes.is_empty() { deadline.saturating_duration_since(Instant::now()) } else { Duration::ZERO };
            let wanted = limit - changes.len();
            let Some((results, last_seq)) = self.changes_once(since.as_ref(), wanted, remaining).await? else { break };
            let result_count = results.len();
            for result in results {
                let seq = seq_text(result.get("seq"))?;
                let id = result.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
                if id.starts_with('_') {
                    continue;
                }
                changes.push(change(seq, id, &result)?);
            }
            if result_count == 0 {
                break;
            }
            since = Some(seq_text(Some(&last_seq))?);
            let drained = result_count < wanted;
            if changes.len() >= limit || (drained && (!changes.is_empty() || remaining.is_zero())) {
                break;
            }
        }
        // As the contract says: the last change's sequence, or the `since` given when there was
        // none — also when only design documents went by, which a later read passes again.
        let last_seq = changes.last().map(|change| change.seq.clone()).or(given_since);
        Ok(Changes { changes, last_seq })
    }

    /// One `_changes` request; `None` when no change arrived within the wait.
    async fn changes_once(
        &self,
        since: Option<&Seq>,
        limit: usize,
        wait: Duration,
    ) -> Result<Option<(Vec<Value>, Value)>> {
        let action = "read the changes feed";
        let mut query = vec![("limit", limit.to_string()), ("include_docs", "true".to_owned())];
        if let Some(since) = since {
            query.push(("since", since.0.clone()));
        }
        let long_poll = !wait.is_zero();
        if long_poll {
            query.push(("feed", "longpoll".to_owned()));
            query.push(("heartbeat", HEARTBEAT.as_millis().to_string()));
            // CouchDB lets the heartbeat override this; a server that honours it answers
            // "nothing new" itself, which saves dropping the connection.
            query.push(("timeout", wait.as_millis().max(1).to_string()));
        }
        let builder = self.request(Method::GET, &format!("{}/_changes", self.database_url)).query(&query);
        let total_timeout = if long_poll { wait + LONG_POLL_SAFETY } else { REQUEST_TIMEOUT };
        let quiet_until = long_poll.then(|| Instant::now() + wait);
        let sending = self.send_with_timeout(builder, total_timeout, action);
        let response = match quiet_until {
            Some(deadline) => match tokio::time::timeout_at(deadline, sending).await {
                Ok(response) => response?,
                Err(_quiet) => return Ok(None),
            },
            None => sending.await?,
        };
        if response.status() == StatusCode::BAD_REQUEST {
            let error = error_from_response(response, action).await;
            return Err(Error::new(
                ErrorKind::BadRequest,
                format!("changes since {:?} refused", since.map(|seq| &seq.0)),
            )
            .with_source(error));
        }
        if !response.status().is_success() {
            return Err(error_from_response(response, action).await);
        }
        let Some(body) = self.read_changes_body(response, quiet_until).await? else { return Ok(None) };
        let value: Value = serde_json::from_slice(&body).map_err(|error| {
            Error::new(ErrorKind::Internal, format!("cannot read the answer to {action} from {}", self.description))
                .with_source(error)
        })?;
        let results = match value.get("results") {
            Some(Value::Array(results)) => results.clone(),
            _ => return Err(Error::new(ErrorKind::Internal, "CouchDB's _changes answer has no results")),
        };
        let last_seq = value.get("last_seq").cloned().unwrap_or(Value::Null);
        Ok(Some((results, last_seq)))
    }

    /// The whole body of a `_changes` answer; `None` when `quiet_until` passed with nothing but
    /// the answer's opening and heartbeats received.
    async fn read_changes_body(
        &self,
        mut response: reqwest::Response,
        quiet_until: Option<Instant>,
    ) -> Result<Option<Vec<u8>>> {
        let action = "read the changes feed";
        let mut body = Vec::new();
        let mut news = quiet_until.is_none();
        loop {
            let next = match quiet_until {
                Some(deadline) if !news => match tokio::time::timeout_at(deadline, response.chunk()).await {
                    Ok(next) => next,
                    Err(_quiet) => return Ok(None),
                },
                _ => response.chunk().await,
            };
            match next {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk);
                    news = news || carries_news(&body);
                }
                Ok(None) => return Ok(Some(body)),
                Err(error) => return Err(self.unavailable(action, error)),
            }
        }
    }
}

/// Whether a long-poll answer read so far holds more than its opening and heartbeat lines:
/// a change, or the answer's end.
fn carries_news(body: &[u8]) -> bool {
    let mut significant = body.iter().filter(|byte| !byte.is_ascii_whitespace());
    let mut opening = RESULTS_OPENING.iter();
    loop {
        match (significant.next(), opening.next()) {
            (None, _) => return false,
            (Some(_), None) => return true,
            (Some(byte), Some(expected)) if byte != expected => return true,
            _ => {}
        }
    }
}

/// A sequence as text: CouchDB 3.x's are strings, older servers' numbers.
fn seq_text(value: Option<&Value>) -> Result<Seq> {
    match value {
        Some(Value::String(text)) => Ok(Seq(text.clone())),
        Some(Value::Number(number)) => Ok(Seq(number.to_string())),
        other => Err(Error::new(ErrorKind::Internal, format!("CouchDB handed out an unusable sequence {other:?}"))),
    }
}

fn change(seq: Seq, id: String, result: &Value) -> Result<Change> {
    let rev = result
        .pointer("/changes/0/rev")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::new(ErrorKind::Internal, format!("change of {id:?} has no revision")))?;
    let deleted = result.get("deleted").and_then(Value::as_bool).unwrap_or(false);
    let body = if deleted {
        None
    } else {
        let doc = result
            .get("doc")
            .cloned()
            .ok_or_else(|| Error::new(ErrorKind::Internal, format!("change of {id:?} came without its document")))?;
        Some(raw_doc(doc)?.body)
    };
    Ok(Change { seq, id, rev: Rev(rev.to_owned()), body })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sequences_are_kept_as_text() {
        assert_eq!(seq_text(Some(&json!(12))).unwrap(), Seq("12".to_owned()));
        assert_eq!(seq_text(Some(&json!("3-g1AAAA"))).unwrap(), Seq("3-g1AAAA".to_owned()));
        assert_eq!(seq_text(None).unwrap_err().kind(), ErrorKind::Internal);
    }

    #[test]
    fn heartbeats_are_no_news() {
        for quiet in ["", "{", "{\"results\":[", "{\"results\":[\n", "{\"results\":[\n\n\n", "\n{ \"results\" : [\n"] {
            assert!(!carries_news(quiet.as_bytes()), "{quiet:?}");
        }
        for news in ["{\"results\":[{", "{\"results\":[\n\n],\"last_seq\":\"5\"}", "{\"error\"", "[]"] {
            assert!(carries_news(news.as_bytes()), "{news:?}");
        }
    }
}
