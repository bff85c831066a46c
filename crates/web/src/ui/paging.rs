//! Search and paging over keys taken from the index: a case-insensitive
//! substring filter, sorted order, and `after` (the last key of the previous
//! page) with `limit`, as the API pages.
//!
//! The index holds every domain, mailbox and alias in memory, so filtering
//! and sorting tens of thousands of keys per request costs a few
//! milliseconds and never touches the store.

use minijinja::{Value, context};
use serde::Deserialize;

use crate::ui::page::url_encode;

/// Rows per page unless asked otherwise.
pub(crate) const DEFAULT_LIMIT: usize = 50;
/// Most rows on one page.
pub(crate) const MAX_LIMIT: usize = 500;

/// The query of a list page.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    /// Only keys containing this (case-insensitive).
    #[serde(default)]
    pub(crate) q: Option<String>,
    /// The last key of the previous page.
    #[serde(default)]
    pub(crate) after: Option<String>,
    /// Only this domain's entries.
    #[serde(default)]
    pub(crate) domain: Option<String>,
    /// Rows per page.
    #[serde(default)]
    pub(crate) limit: Option<usize>,
}

impl ListQuery {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
    }

    /// The search text, lower-cased, if any.
    pub(crate) fn needle(&self) -> Option<String> {
        self.q.as_deref().map(str::trim).filter(|q| !q.is_empty()).map(str::to_lowercase)
    }

    /// The domain asked for, if any.
    pub(crate) fn domain(&self) -> Option<&str> {
        self.domain.as_deref().map(str::trim).filter(|domain| !domain.is_empty())
    }
}

/// One page of entries.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Paged<T> {
    /// The entries of this page, in the order of their keys.
    pub(crate) items: Vec<T>,
    /// The `after` of the next page, when there is one.
    pub(crate) next: Option<String>,
    /// How many keys match the search, over all pages.
    pub(crate) total: usize,
}

/// The page `query` asks for out of `entries`, each known by its `key` (searched, sorted and paged on).
pub(crate) fn page_by<T>(
    entries: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> &str,
    query: &ListQuery,
) -> Paged<T> {
    let needle = query.needle();
    let mut entries: Vec<T> = entries
        .into_iter()
        .filter(|entry| needle.as_deref().is_none_or(|needle| key(entry).contains(needle)))
        .collect();
    entries.sort_unstable_by(|a, b| key(a).cmp(key(b)));
    let total = entries.len();
    let after = query.after.as_deref().filter(|after| !after.is_empty());
    let start = after.map_or(0, |after| entries.partition_point(|entry| key(entry) <= after));
    let limit = query.limit();
    let end = (start + limit).min(total);
    let items: Vec<T> = entries.drain(start.min(end)..end).collect();
    let next = if end < total { items.last().map(|entry| key(entry).to_owned()) } else { None };
    Paged { items, next, total }
}

impl<T> Paged<T> {
    /// What every list page's template reads of the page at `base`: the search `q`, the `domain`, the `next`
    /// page's link and the `total`.
    pub(crate) fn context(&self, base: &str, query: &ListQuery) -> Value {
        context! {
            q => query.q.as_deref(),
            domain => query.domain(),
            next => self.next_href(base, query),
            total => self.total,
        }
    }

    /// The link to the next page of `base`, keeping the search and the domain.
    pub(crate) fn next_href(&self, base: &str, query: &ListQuery) -> Option<String> {
        let after = self.next.as_ref()?;
        let mut href = format!("{base}?after={}", url_encode(after));
        if let Some(q) = query.q.as_deref().filter(|q| !q.trim().is_empty()) {
            href.push_str(&format!("&q={}", url_encode(q)));
        }
        if let Some(domain) = query.domain() {
            href.push_str(&format!("&domain={}", url_encode(domain)));
        }
        if let Some(limit) = query.limit {
            href.push_str(&format!("&limit={limit}"));
        }
        Some(href)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("user{i:05}@a.example")).collect()
    }

    fn page(keys: Vec<String>, query: &ListQuery) -> Paged<String> {
        page_by(keys, String::as_str, query)
    }

    #[test]
    fn pages_follow_after() {
        let query = ListQuery { limit: Some(10), ..ListQuery::default() };
        let first = page(keys(25), &query);
        assert_eq!(first.items.len(), 10);
        assert_eq!(first.total, 25);
        assert_eq!(first.next.as_deref(), Some("user00009@a.example"));
        let query = ListQuery { limit: Some(10), after: first.next.clone(), ..ListQuery::default() };
        let second = page(keys(25), &query);
        assert_eq!(second.items[0], "user00010@a.example");
        let query = ListQuery { limit: Some(10), after: second.next.clone(), ..ListQuery::default() };
        let third = page(keys(25), &query);
        assert_eq!(third.items.len(), 5);
        assert_eq!(third.next, None);
        assert_eq!(third.next_href("/mailboxes", &query), None);
        assert_eq!(
            first.next_href("/mailboxes", &ListQuery { q: Some("a b".to_owned()), ..ListQuery::default() }).unwrap(),
            "/mailboxes?after=user00009@a.example&q=a%20b"
        );
    }

    #[test]
    fn search_is_a_substring() {
        let query = ListQuery { q: Some(" USER0001".to_owned()), ..ListQuery::default() };
        let found = page(keys(200), &query);
        assert_eq!(found.total, 10);
        assert!(found.items.iter().all(|key| key.starts_with("user0001")));
    }
}
