//! The referential rules, applied on every write and removal.

use couchmail_model::Document;
use couchmail_store::Rev;

use crate::{Cascade, Directory, Entry, ListFilter, Result};

pub(crate) async fn get(_directory: &Directory, _id: &str) -> Result<Option<Entry>> {
    todo!()
}

pub(crate) async fn write(_directory: &Directory, _doc: &Document, _rev: Option<&Rev>) -> Result<Rev> {
    todo!()
}

pub(crate) async fn remove(
    _directory: &Directory,
    _id: &str,
    _rev: Option<&Rev>,
    _cascade: Cascade,
) -> Result<Vec<String>> {
    todo!()
}

pub(crate) async fn list(_directory: &Directory, _filter: &ListFilter) -> Result<Vec<Entry>> {
    todo!()
}
