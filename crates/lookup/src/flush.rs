//! Which of Dovecot's cached auth answers a batch of changed documents makes stale.
//!
//! Dovecot caches passdb and userdb answers (`auth_cache_ttl`), so a changed or removed password would keep
//! working until the entry expires. couchmail learns which documents each batch changed from
//! [`Index::subscribe_changes`](couchmail_index::Index::subscribe_changes) and flushes what they touch
//! (`doveadm auth cache flush [user …]`).

use std::collections::BTreeSet;

use couchmail_model::DocKind;

/// What to forget of Dovecot's auth cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flush {
    /// Everything: a domain or an alias domain changed, which can enable or disable every user in it.
    All,
    /// These users (sorted, each once); empty when nothing cached is affected.
    Users(Vec<String>),
}

impl Flush {
    /// Whether there is nothing to flush.
    pub fn is_empty(&self) -> bool {
        matches!(self, Flush::Users(users) if users.is_empty())
    }
}

/// What to flush after the documents `ids` changed.
///
/// A mailbox (`mailbox:<address>`) changes that user's password, state or fields; a domain or an alias domain
/// may change any user's, so it flushes everything. Aliases, Sieve scripts and tokens are not in Dovecot's auth
/// cache, nor is anything else. An id is taken as written: the index keys documents by their `_id`.
pub fn users_to_flush(ids: &[String]) -> Flush {
    let mut users = BTreeSet::new();
    for id in ids {
        let Some((prefix, key)) = id.split_once(':') else {
            continue;
        };
        match prefix.parse::<DocKind>() {
            Ok(DocKind::Domain | DocKind::DomainAlias) => return Flush::All,
            Ok(DocKind::Mailbox) if !key.is_empty() => {
                users.insert(key.to_owned());
            }
            Ok(_) | Err(_) => {}
        }
    }
    Flush::Users(users.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    #[test]
    fn mailboxes_flush_their_users() {
        let flush = users_to_flush(&ids(&[
            "mailbox:bob@example.com",
            "alias:info@example.com",
            "mailbox:alice@example.com",
            "sieve:alice@example.com:main",
            "token:abc",
            "mailbox:bob@example.com",
        ]));
        assert_eq!(flush, Flush::Users(ids(&["alice@example.com", "bob@example.com"])));
        assert!(!flush.is_empty());
    }

    #[test]
    fn domains_and_alias_domains_flush_everything() {
        assert_eq!(users_to_flush(&ids(&["mailbox:bob@example.com", "domain:example.com"])), Flush::All);
        assert_eq!(users_to_flush(&ids(&["domain-alias:example.net"])), Flush::All);
    }

    #[test]
    fn other_documents_flush_nothing() {
        for batch in [
            ids(&[]),
            ids(&["alias:@example.com", "sieve:alice@example.com:main", "token:abc"]),
            ids(&["gadget:x", "nocolon", "mailbox:", ":"]),
        ] {
            let flush = users_to_flush(&batch);
            assert_eq!(flush, Flush::Users(Vec::new()), "{batch:?}");
            assert!(flush.is_empty());
        }
    }
}
