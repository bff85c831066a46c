//! The export format and the copying shared by `export`, `import` and
//! `migrate`.
//!
//! An export is JSON Lines: a header line
//! `{"format":"couchmail-export","version":1,"secrets":BOOL}`, then one line
//! per live document, `{"_id":ID,…body}`, in `_id` order (bytewise), with
//! object keys sorted and no `_rev`. Nothing in it depends on the store or
//! the time of the export, so the same documents always give the same bytes:
//! export → import → export is byte-identical, on SQLite as on CouchDB.
//!
//! Secrets ([`SECRET_FIELDS`]): without `--include-secrets` an export leaves
//! out mailbox password hashes, and leaves out API tokens and web UI
//! invitations whole, because such a document is only its secret's hash plus
//! labels (it cannot be imported without it). Importing such a file keeps the
//! secrets the store already has: a mailbox keeps its password, tokens and
//! invitations are left alone.
//!
//! Writing ([`apply`]): the whole input is validated through the model first
//! ([`parse_export`]; nothing is written if one line is bad). Then each
//! document is written straight to the store, not through the directory's
//! referential rules, in dependency order (domains, domain aliases,
//! mailboxes, aliases, Sieve scripts, tokens) so that a reader following
//! the changes feed meets a domain before its mailboxes. The documents come
//! from a store whose directory enforced those rules, and going around them
//! is what lets a mailbox whose `sieve_active` names a script be restored
//! before that script. A document that does not exist is created, one with
//! the same body is left alone, one that differs is overwritten (the file
//! wins); documents in the store but not in the file are kept.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use couchmail_model::{DocKind, Document};
use couchmail_store::{Body, ListOptions, RawDoc, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `format` of the header line.
pub const FORMAT: &str = "couchmail-export";
/// The format's version: readers refuse others.
pub const VERSION: u64 = 1;
/// The fields that hold secrets, by document type.
pub const SECRET_FIELDS: &[(DocKind, &str)] =
    &[(DocKind::Mailbox, "password"), (DocKind::Token, "secret_sha256"), (DocKind::Invitation, "secret_sha256")];
/// The document types that are nothing without their secret: left out whole.
pub const SECRET_KINDS: &[DocKind] = &[DocKind::Token, DocKind::Invitation];
/// How many documents are read from the store per request.
const PAGE: usize = 500;
/// How many bad lines an import lists before it summarises the rest.
const MAX_LISTED_ERRORS: usize = 20;

/// The first line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u64,
    /// Whether secret fields and token documents are included.
    pub secrets: bool,
}

impl Header {
    /// The header of a file written now.
    pub fn new(secrets: bool) -> Header {
        Header { format: FORMAT.to_owned(), version: VERSION, secrets }
    }
}

/// A stored document that the model refuses, left behind by `export` and `migrate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invalid {
    /// `_id`
    pub id: String,
    /// Why, as the model says it.
    pub reason: String,
}

/// Every live document of `store` in `_id` order, split into those the model
/// accepts and those it refuses. `progress` counts them as they arrive.
pub async fn read_all(
    store: &dyn Store,
    progress: &indicatif::ProgressBar,
) -> couchmail_store::Result<(Vec<RawDoc>, Vec<Invalid>)> {
    let mut valid = Vec::new();
    let mut invalid = Vec::new();
    let mut options = ListOptions { start_after: None, limit: Some(PAGE) };
    loop {
        let page = store.list("", &options).await?;
        let Some(last) = page.last() else { break };
        options.start_after = Some(last.id.clone());
        let page_len = page.len();
        progress.inc(page_len as u64);
        for doc in page {
            match Document::from_stored(&doc.id, &doc.body) {
                Ok(_) => valid.push(doc),
                Err(err) => invalid.push(Invalid { id: doc.id, reason: err.to_string() }),
            }
        }
        if page_len < PAGE {
            break;
        }
    }
    // Bytewise `_id` order whatever the backend's collation, so that exports compare byte for byte.
    valid.sort_by(|a, b| a.id.cmp(&b.id));
    invalid.sort_by(|a, b| a.id.cmp(&b.id));
    Ok((valid, invalid))
}

/// The document type named by an `_id`'s prefix, if it is one.
fn kind_of(id: &str) -> Option<DocKind> {
    id.split_once(':').and_then(|(prefix, _)| prefix.parse().ok())
}

/// `body` as an export leaves it without secrets; `None` for a document left
/// out whole.
pub fn without_secrets(id: &str, body: &Body) -> Option<Body> {
    let kind = kind_of(id)?;
    if SECRET_KINDS.contains(&kind) {
        return None;
    }
    let mut body = body.clone();
    for (_, field) in SECRET_FIELDS.iter().filter(|(secret_kind, _)| *secret_kind == kind) {
        body.remove(*field);
    }
    Some(body)
}

/// One export line, without the newline: `{"_id":…}` first, then the body's
/// keys in sorted order, nested objects sorted too.
pub fn export_line(id: &str, body: &Body) -> String {
    let mut line = String::from("{\"_id\":");
    line.push_str(&Value::String(id.to_owned()).to_string());
    let mut keys: Vec<&String> = body.keys().collect();
    keys.sort();
    for key in keys {
        let value = canonical(&body[key.as_str()]);
        // Writing into a String cannot fail.
        let _ = write!(line, ",{}:{value}", Value::String(key.clone()));
    }
    line.push('}');
    line
}

/// `value` with every object's keys in sorted order, whatever order the map type keeps.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(entries.into_iter().map(|(key, value)| (key.clone(), canonical(value))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// One document of an export file, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Its line number, from 1.
    pub number: usize,
    /// `_id`
    pub id: String,
    /// The body, `type` included.
    pub body: Body,
}

/// A validated export file.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    /// Its header.
    pub header: Header,
    /// Its documents, in file order.
    pub lines: Vec<Line>,
}

/// Why an export file cannot be imported: every bad line, numbered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseErrors {
    /// `line N: why`, in line order.
    pub errors: Vec<String>,
}

impl std::fmt::Display for ParseErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n_errors = self.errors.len();
        write!(f, "{n_errors} invalid line{}; nothing was written", if n_errors == 1 { "" } else { "s" })?;
        for error in self.errors.iter().take(MAX_LISTED_ERRORS) {
            write!(f, "\n  {error}")?;
        }
        if n_errors > MAX_LISTED_ERRORS {
            write!(f, "\n  … and {} more", n_errors - MAX_LISTED_ERRORS)?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseErrors {}

/// Parses and validates an export file: the header, then every document
/// through the model. Blank lines are skipped; `_rev` is ignored (a file
/// made by other tools may carry it); a repeated `_id` is an error.
pub fn parse_export(text: &str) -> Result<Export, ParseErrors> {
    let mut errors = Vec::new();
    let mut numbered =
        text.lines().enumerate().map(|(idx, line)| (idx + 1, line)).filter(|(_, l)| !l.trim().is_empty());
    let header = match numbered.next() {
        None => return Err(ParseErrors { errors: vec!["line 1: the file is empty, not a couchmail export".into()] }),
        Some((number, line)) => match serde_json::from_str::<Header>(line) {
            Ok(header) if header.format == FORMAT && header.version == VERSION => header,
            Ok(header) if header.format == FORMAT => {
                return Err(ParseErrors {
                    errors: vec![format!(
                        "line {number}: export format version {} is not one this couchmail reads (version {VERSION})",
                        header.version
                    )],
                });
            }
            _ => {
                return Err(ParseErrors {
                    errors: vec![format!(
                        "line {number}: not a couchmail export header; the first line must be \
                         {{\"format\":\"{FORMAT}\",\"version\":{VERSION},\"secrets\":true|false}}"
                    )],
                });
            }
        },
    };
    let mut lines = Vec::new();
    let mut first_seen: BTreeMap<String, usize> = BTreeMap::new();
    for (number, text) in numbered {
        match parse_line(text) {
            Ok((id, body)) => {
                if let Some(first) = first_seen.get(&id) {
                    errors.push(format!("line {number}: `{id}` appears again (first on line {first})"));
                    continue;
                }
                first_seen.insert(id.clone(), number);
                lines.push(Line { number, id, body });
            }
            Err(why) => errors.push(format!("line {number}: {why}")),
        }
    }
    if errors.is_empty() { Ok(Export { header, lines }) } else { Err(ParseErrors { errors }) }
}

fn parse_line(text: &str) -> Result<(String, Body), String> {
    let value: Value = serde_json::from_str(text).map_err(|err| format!("not JSON: {err}"))?;
    let Value::Object(mut body) = value else { return Err("not a JSON object".into()) };
    let id = match body.remove("_id") {
        Some(Value::String(id)) => id,
        Some(_) => return Err("`_id` is not a string".into()),
        None => return Err("has no `_id`".into()),
    };
    body.remove("_rev");
    if let Some(key) = body.keys().find(|key| key.starts_with('_')) {
        return Err(format!("`{id}`: field `{key}` is reserved (fields starting with `_` are the store's)"));
    }
    Document::from_stored(&id, &body).map_err(|err| format!("`{id}`: {err}"))?;
    Ok((id, body))
}

/// What [`apply`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// Documents that did not exist.
    pub created: usize,
    /// Documents that existed with another body, now overwritten.
    pub updated: usize,
    /// Documents that existed with the same body.
    pub unchanged: usize,
}

/// The order in which documents are written: what others refer to first.
fn write_rank(id: &str) -> usize {
    kind_of(id).and_then(|kind| DocKind::ALL.iter().position(|k| *k == kind)).unwrap_or(DocKind::ALL.len())
}

/// Writes `docs` into `store`: creates the missing, overwrites the different,
/// leaves the same alone. `secrets_included: false` means the documents lack
/// their secret fields on purpose, so the store's are kept.
pub async fn apply(
    store: &dyn Store,
    docs: Vec<(String, Body)>,
    secrets_included: bool,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<Applied> {
    let mut docs = docs;
    docs.sort_by(|a, b| match write_rank(&a.0).cmp(&write_rank(&b.0)) {
        Ordering::Equal => a.0.cmp(&b.0),
        other => other,
    });
    let mut applied = Applied::default();
    for (id, mut body) in docs {
        let existing = store.get(&id).await.map_err(|err| written_so_far(err, &id, applied))?;
        match existing {
            None => {
                store.put(&id, None, &body).await.map_err(|err| written_so_far(err, &id, applied))?;
                applied.created += 1;
            }
            Some(current) => {
                if !secrets_included {
                    keep_secrets(&id, &current.body, &mut body);
                }
                if current.body == body {
                    applied.unchanged += 1;
                } else {
                    store.put(&id, Some(&current.rev), &body).await.map_err(|err| written_so_far(err, &id, applied))?;
                    applied.updated += 1;
                }
            }
        }
        progress.inc(1);
    }
    Ok(applied)
}

/// Copies the stored secret fields that `body` lacks into it.
fn keep_secrets(id: &str, stored: &Body, body: &mut Body) {
    let Some(kind) = kind_of(id) else { return };
    for (_, field) in SECRET_FIELDS.iter().filter(|(secret_kind, _)| *secret_kind == kind) {
        if let Some(secret) = stored.get(*field).filter(|_| !body.contains_key(*field)) {
            body.insert((*field).to_owned(), secret.clone());
        }
    }
}

fn written_so_far(err: couchmail_store::Error, id: &str, applied: Applied) -> anyhow::Error {
    anyhow::Error::new(err).context(format!(
        "cannot write `{id}` (so far {} created, {} updated; running the command again continues where it stopped)",
        applied.created, applied.updated
    ))
}

#[cfg(test)]
mod tests {
    use couchmail_store::SqliteStore;
    use serde_json::json;

    use super::*;

    fn body(value: Value) -> Body {
        value.as_object().unwrap().clone()
    }

    const HASH: &str = "{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Kd4Xq5Y0H0G1YV0n8m9XcA";

    #[test]
    fn header_is_fixed_text() {
        assert_eq!(
            serde_json::to_string(&Header::new(false)).unwrap(),
            r#"{"format":"couchmail-export","version":1,"secrets":false}"#
        );
    }

    #[test]
    fn lines_put_the_id_first_and_sort_keys_at_every_depth() {
        let line = export_line(
            "domain:example.com",
            &body(json!({"type": "domain", "active": true, "spam": {"z": 1, "a": [{"y": 2, "b": 3}]}})),
        );
        assert_eq!(
            line,
            r#"{"_id":"domain:example.com","active":true,"spam":{"a":[{"b":3,"y":2}],"z":1},"type":"domain"}"#
        );
    }

    #[test]
    fn secrets_are_stripped_and_tokens_left_out() {
        let mailbox = body(json!({"type": "mailbox", "password": HASH, "name": "A"}));
        assert_eq!(
            without_secrets("mailbox:a@example.com", &mailbox),
            Some(body(json!({"type": "mailbox", "name": "A"})))
        );
        let token =
            body(json!({"type": "token", "secret_sha256": "ab".repeat(32), "principal": "admin", "created": 0}));
        assert_eq!(without_secrets("token:abc", &token), None);
        let invitation = body(json!({"type": "invitation", "secret_sha256": "cd".repeat(32), "domain": "example.com"}));
        assert_eq!(without_secrets("invitation:abc", &invitation), None, "an invitation is its secret's hash");
        let domain = body(json!({"type": "domain", "active": true}));
        assert_eq!(without_secrets("domain:example.com", &domain), Some(domain.clone()));
    }

    #[test]
    fn every_bad_line_is_named_and_the_rest_is_not_returned() {
        let text = concat!(
            r#"{"format":"couchmail-export","version":1,"secrets":true}"#,
            "\n",
            r#"{"_id":"domain:example.com","type":"domain","active":true}"#,
            "\n",
            "not json\n",
            r#"{"_id":"mailbox:Alice@example.com","type":"mailbox"}"#,
            "\n",
            r#"{"_id":"domain:example.com","type":"domain","active":false}"#,
            "\n",
            r#"{"type":"domain"}"#,
            "\n",
            r#"{"_id":"alias:x@example.com","type":"alias","targets":[],"_deleted":true}"#,
            "\n",
        );
        let errors = parse_export(text).unwrap_err().errors;
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert!(errors[0].starts_with("line 3: not JSON"), "{errors:#?}");
        assert!(errors[1].starts_with("line 4: `mailbox:Alice@example.com`: _id"), "{errors:#?}");
        assert!(errors[2].contains("line 5: `domain:example.com` appears again (first on line 2)"), "{errors:#?}");
        assert!(errors[3].starts_with("line 6: has no `_id`"), "{errors:#?}");
        assert!(errors[4].starts_with("line 7:") && errors[4].contains("_deleted"), "{errors:#?}");
    }

    #[test]
    fn header_problems_are_line_1() {
        for text in ["", "{\"format\":\"other\"}\n", "[]\n"] {
            let errors = parse_export(text).unwrap_err().errors;
            assert!(errors[0].starts_with("line 1:"), "{errors:?}");
        }
        let errors = parse_export("{\"format\":\"couchmail-export\",\"version\":2,\"secrets\":true}").unwrap_err();
        assert!(errors.errors[0].contains("version 2"), "{errors}");
    }

    #[test]
    fn parse_keeps_unknown_fields_and_drops_rev() {
        let text = "{\"format\":\"couchmail-export\",\"version\":1,\"secrets\":false}\n\n\
                    {\"_id\":\"domain:example.com\",\"_rev\":\"1-x\",\"type\":\"domain\",\"future\":1}\n";
        let export = parse_export(text).unwrap();
        assert!(!export.header.secrets);
        assert_eq!(
            export.lines,
            [Line { number: 3, id: "domain:example.com".into(), body: body(json!({"type": "domain", "future": 1})) }]
        );
    }

    #[test]
    fn many_errors_are_summarised() {
        let mut text = String::from("{\"format\":\"couchmail-export\",\"version\":1,\"secrets\":true}\n");
        for _ in 0..25 {
            text.push_str("{}\n");
        }
        let message = parse_export(&text).unwrap_err().to_string();
        assert!(message.starts_with("25 invalid lines; nothing was written"), "{message}");
        assert!(message.ends_with("… and 5 more"), "{message}");
    }

    #[tokio::test]
    async fn apply_creates_updates_leaves_alone_and_keeps_stored_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("db")).await.unwrap();
        let hidden = indicatif::ProgressBar::hidden();
        store.put("domain:example.com", None, &body(json!({"type": "domain", "active": true}))).await.unwrap();
        store
            .put("mailbox:a@example.com", None, &body(json!({"type": "mailbox", "password": HASH, "name": "A"})))
            .await
            .unwrap();
        let docs = vec![
            ("mailbox:a@example.com".to_owned(), body(json!({"type": "mailbox", "name": "A"}))),
            ("domain:example.com".to_owned(), body(json!({"type": "domain", "active": false}))),
            ("domain:example.org".to_owned(), body(json!({"type": "domain", "active": true}))),
        ];
        let applied = apply(&store, docs.clone(), false, &hidden).await.unwrap();
        assert_eq!(applied, Applied { created: 1, updated: 1, unchanged: 1 });
        let mailbox = store.get("mailbox:a@example.com").await.unwrap().unwrap();
        assert_eq!(mailbox.body["password"], HASH);
        assert_eq!(apply(&store, docs.clone(), false, &hidden).await.unwrap().unchanged, 3);

        // With secrets included, a file without a password means no password.
        let applied = apply(&store, docs, true, &hidden).await.unwrap();
        assert_eq!(applied, Applied { created: 0, updated: 1, unchanged: 2 });
        let mailbox = store.get("mailbox:a@example.com").await.unwrap().unwrap();
        assert!(!mailbox.body.contains_key("password"));
    }

    #[tokio::test]
    async fn read_all_pages_sorts_and_sets_invalid_documents_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("db")).await.unwrap();
        for domain_idx in (0..(PAGE + 3)).rev() {
            let id = format!("domain:d{domain_idx:04}.example");
            store.put(&id, None, &body(json!({"type": "domain", "active": true}))).await.unwrap();
        }
        store.put("mailbox:broken", None, &body(json!({"type": "mailbox"}))).await.unwrap();
        let (valid, invalid) = read_all(&store, &indicatif::ProgressBar::hidden()).await.unwrap();
        assert_eq!(valid.len(), PAGE + 3);
        assert!(valid.windows(2).all(|pair| pair[0].id < pair[1].id));
        assert_eq!(invalid.len(), 1);
        assert_eq!(invalid[0].id, "mailbox:broken");
    }

    #[test]
    fn writes_go_in_dependency_order() {
        let mut ids =
            vec!["token:x", "sieve:a@b.c:s", "alias:x@b.c", "mailbox:a@b.c", "domain-alias:b.d", "domain:b.c"];
        ids.sort_by_key(|id| write_rank(id));
        assert_eq!(ids, ["domain:b.c", "domain-alias:b.d", "mailbox:a@b.c", "alias:x@b.c", "sieve:a@b.c:s", "token:x"]);
    }
}
