//! Users' Sieve scripts for Pigeonhole's dict storage, answered from the index.

use std::sync::Arc;

use couchmail_dovecot_dict::{DictError, SieveScripts};
use couchmail_index::{Index, SieveEntry, Snapshot};

use crate::maps::NOT_READY;

/// Sieve scripts from the index, for [`couchmail_dovecot_dict::SieveDict`].
///
/// Ids are content hashes, so Pigeonhole recompiles exactly when a script changes.
/// Pigeonhole reads a script in two lookups (name → id, then id → text); a script replaced between the two is
/// still read, because the index also answers each script's previous content id
/// ([`Snapshot::sieve_by_id`]). A script deleted between the two is not found, which defers that one
/// delivery; the retry finds no script and delivers normally.
/// While the index is not ready every lookup fails, so delivery is deferred rather than done without the
/// user's filters.
#[derive(Clone)]
pub struct IndexSieve {
    index: Arc<Index>,
}

impl IndexSieve {
    /// Answers from `index`.
    pub fn new(index: Arc<Index>) -> IndexSieve {
        IndexSieve { index }
    }

    fn ready_snapshot(&self) -> Result<Arc<Snapshot>, DictError> {
        let snapshot = self.index.snapshot();
        if snapshot.is_ready() { Ok(snapshot) } else { Err(DictError::new(NOT_READY)) }
    }
}

impl std::fmt::Debug for IndexSieve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexSieve").field("ready", &self.index.is_ready()).finish()
    }
}

impl SieveScripts for IndexSieve {
    fn active_script_id(&self, user: &str) -> Result<Option<String>, DictError> {
        let snapshot = self.ready_snapshot()?;
        Ok(snapshot.active_sieve(user).map(|(content_id, _)| content_id.to_owned()))
    }

    fn script_id(&self, user: &str, name: &str) -> Result<Option<String>, DictError> {
        let snapshot = self.ready_snapshot()?;
        Ok(snapshot.sieve(user, name).map(SieveEntry::content_id).map(str::to_owned))
    }

    fn script_text(&self, user: &str, id: &str) -> Result<Option<String>, DictError> {
        let snapshot = self.ready_snapshot()?;
        Ok(snapshot.sieve_by_id(user, id).map(str::to_owned))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use couchmail_dovecot_dict::{DictLookup, SieveDict, SieveKey};
    use couchmail_model::Document;
    use couchmail_testkit::fixtures::{domain, mailbox, sieve, with_sieve_active};

    use super::*;

    fn documents() -> Vec<Document> {
        vec![
            domain("example.com"),
            with_sieve_active(mailbox("alice@example.com"), "main"),
            mailbox("bob@example.com"),
            sieve("alice@example.com", "main", "keep;\n"),
            sieve("alice@example.com", "vacation", "discard;\n"),
            sieve("bob@example.com", "main", "stop;\n"),
        ]
    }

    fn index() -> Arc<Index> {
        Arc::new(Index::from_snapshot(Snapshot::from_documents(documents())))
    }

    #[test]
    fn active_script_by_id_and_scripts_by_name() {
        let scripts = IndexSieve::new(index());
        let active_id = scripts.active_script_id("alice@example.com").unwrap().unwrap();
        assert_eq!(scripts.script_text("alice@example.com", &active_id).unwrap().as_deref(), Some("keep;\n"));
        assert_eq!(scripts.script_id("alice@example.com", "main").unwrap(), Some(active_id.clone()));
        let vacation_id = scripts.script_id("alice@example.com", "vacation").unwrap().unwrap();
        assert_ne!(vacation_id, active_id);
        assert_eq!(scripts.script_text("alice@example.com", &vacation_id).unwrap().as_deref(), Some("discard;\n"));

        // Bob has a script but none active; carol has nothing.
        assert_eq!(scripts.active_script_id("bob@example.com").unwrap(), None);
        assert_eq!(scripts.active_script_id("carol@example.com").unwrap(), None);
        assert_eq!(scripts.script_id("alice@example.com", "missing").unwrap(), None);
        // Another user's id reveals nothing.
        let bob_id = scripts.script_id("bob@example.com", "main").unwrap().unwrap();
        assert_eq!(scripts.script_text("alice@example.com", &bob_id).unwrap(), None);
        assert_eq!(scripts.script_text("alice@example.com", "nope").unwrap(), None);
    }

    #[test]
    fn not_ready_fails_so_delivery_defers() {
        let scripts = IndexSieve::new(Arc::new(Index::default()));
        assert_eq!(scripts.active_script_id("alice@example.com"), Err(DictError::new(NOT_READY)));
        assert_eq!(scripts.script_id("alice@example.com", "main"), Err(DictError::new(NOT_READY)));
        assert_eq!(scripts.script_text("alice@example.com", "x"), Err(DictError::new(NOT_READY)));
    }

    #[test]
    fn a_script_replaced_between_name_and_data_is_still_read() {
        let index = index();
        let dict = SieveDict::new(IndexSieve::new(Arc::clone(&index)), "active");
        let old_id = dict.lookup("alice@example.com", "priv/sieve/name/active").unwrap().unwrap();

        // The script changes between Pigeonhole's two lookups.
        let mut snapshot = (*index.snapshot()).clone();
        snapshot.insert_document(&sieve("alice@example.com", "main", "fileinto \"x\";\n"));
        index.publish(snapshot);

        let old_text = dict.lookup("alice@example.com", &SieveKey::Data(old_id.clone()).to_key()).unwrap();
        assert_eq!(old_text.as_deref(), Some("keep;\n"));
        // The next delivery sees the new id and the new text.
        let new_id = dict.lookup("alice@example.com", "priv/sieve/name/active").unwrap().unwrap();
        assert_ne!(new_id, old_id);
        let new_text = dict.lookup("alice@example.com", &SieveKey::Data(new_id).to_key()).unwrap();
        assert_eq!(new_text.as_deref(), Some("fileinto \"x\";\n"));
    }
}
