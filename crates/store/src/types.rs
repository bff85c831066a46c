//! The values the store trades in.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Body;

/// A position in the changes feed. Opaque: compare only for equality, and
/// hand back to the store that gave it (CouchDB's are not integers).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seq(pub String);

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A document revision, `<generation>-<hash>` as in CouchDB.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rev(pub String);

impl fmt::Display for Rev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A live document as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RawDoc {
    /// `_id`
    pub id: String,
    /// `_rev`
    pub rev: Rev,
    /// Everything else, `type` included.
    pub body: Body,
}

/// One entry of the changes feed: a document at its latest revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Where this change sits in the feed.
    pub seq: Seq,
    /// `_id`
    pub id: String,
    /// The revision this change produced.
    pub rev: Rev,
    /// The body, or `None` for a tombstone.
    pub body: Option<Body>,
}

impl Change {
    /// Whether the document was deleted.
    pub fn is_deleted(&self) -> bool {
        self.body.is_none()
    }
}

/// A batch from the changes feed.
#[derive(Debug, Clone, PartialEq)]
pub struct Changes {
    /// The changes, in sequence order.
    pub changes: Vec<Change>,
    /// Where to continue from: the last change's sequence, or the `since`
    /// given when there was none.
    pub last_seq: Option<Seq>,
}

/// Paging for [`Store::list`](crate::Store::list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only `_id`s after this one.
    pub start_after: Option<String>,
    /// At most this many documents; `None` for all.
    pub limit: Option<usize>,
}

/// A document with replication conflicts: besides the winning revision, which every replica
/// agrees on and every read returns, one or more losing revisions are live.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// `_id`
    pub id: String,
    /// The revision reads return.
    pub winner: RawDoc,
    /// The other live revisions, in revision order.
    pub losers: Vec<RawDoc>,
}
