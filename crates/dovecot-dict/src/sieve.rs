//! Pigeonhole's dict storage keys mapped onto [`SieveScripts`], so the binary supplies data, not protocol.
//!
//! Pigeonhole 0.5 (`src/lib-sieve/storage/dict/sieve-dict-script.c`) reads a user's script in two lookups:
//! `priv/sieve/name/<name>` gives a script id, then `priv/sieve/data/<id>` gives the script text.
//! Both path components are escaped with Dovecot's `dict_escape_string` (`/` → `\|`, `\` → `\\`).
//! `<name>` is the location's `name=` option (`sieve = dict:proxy:<socket>:sieve;name=active`),
//! or `default` (`SIEVE_DICT_SCRIPT_DEFAULT`) when the option is absent, as `sieve-test` does.
//!
//! A name that is not found means the user has no script: Pigeonhole logs it at debug level and delivers normally.
//! A failed lookup, or an id whose data is missing, is a temporary failure: delivery is deferred and retried.
//! Pigeonhole keeps a compiled binary per script and recompiles only when the id changes,
//! so an id must change whenever the text does (a content hash does).

use crate::lookup::{DictError, DictLookup};

/// The key prefix of script names.
pub const NAME_PATH: &str = "priv/sieve/name/";

/// The key prefix of script texts.
pub const DATA_PATH: &str = "priv/sieve/data/";

/// The script name Pigeonhole asks for when its location has no `name=` option.
pub const DEFAULT_SCRIPT_NAME: &str = "default";

/// Where Sieve scripts come from: couchmail's index, or a fake in tests.
///
/// Like [`DictLookup`], implementations answer from memory and must not block;
/// an `Err` defers delivery, `Ok(None)` means "there is none".
pub trait SieveScripts: Send + Sync + 'static {
    /// The id of `user`'s active script, or `None` when the user has no active script.
    fn active_script_id(&self, user: &str) -> Result<Option<String>, DictError>;

    /// The id of `user`'s script called `name`, active or not.
    fn script_id(&self, user: &str, name: &str) -> Result<Option<String>, DictError>;

    /// The text of `user`'s script with id `id`.
    fn script_text(&self, user: &str, id: &str) -> Result<Option<String>, DictError>;
}

/// A [`DictLookup`] that answers Pigeonhole's keys from [`SieveScripts`].
#[derive(Debug, Clone)]
pub struct SieveDict<S> {
    scripts: S,
    active_name: String,
}

impl<S: SieveScripts> SieveDict<S> {
    /// Serves `scripts`, answering the name `active_name` (the `name=` of Pigeonhole's location) with the active script.
    ///
    /// A script that is itself called `active_name` is reachable only as the active script.
    pub fn new(scripts: S, active_name: impl Into<String>) -> SieveDict<S> {
        SieveDict { scripts, active_name: active_name.into() }
    }

    /// The scripts this dict serves.
    pub fn scripts(&self) -> &S {
        &self.scripts
    }
}

impl<S: SieveScripts> DictLookup for SieveDict<S> {
    fn lookup(&self, user: &str, key: &str) -> Result<Option<String>, DictError> {
        let Some(sieve_key) = SieveKey::parse(key) else {
            return Ok(None);
        };
        if user.is_empty() {
            // Answering "not found" would silently skip a filter; an empty user is a configuration mistake.
            return Err(DictError::new(format!("private key {key} was asked for without a user")));
        }
        match sieve_key {
            SieveKey::Name(name) if name == self.active_name => self.scripts.active_script_id(user),
            SieveKey::Name(name) => self.scripts.script_id(user, &name),
            SieveKey::Data(id) => self.scripts.script_text(user, &id),
        }
    }

    /// Pigeonhole's dict storage never lists keys, so there is nothing to iterate.
    fn iterate(&self, _user: &str, _path: &str, _recurse: bool) -> Result<Vec<(String, String)>, DictError> {
        Ok(Vec::new())
    }
}

/// A key Pigeonhole's dict storage reads, with its path component unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SieveKey {
    /// `priv/sieve/name/<name>`: which script id the name stands for.
    Name(String),
    /// `priv/sieve/data/<id>`: the text of a script id.
    Data(String),
}

impl SieveKey {
    /// The Sieve key `key` is, or `None` for any other key.
    pub fn parse(key: &str) -> Option<SieveKey> {
        let (make, escaped): (fn(String) -> SieveKey, &str) = if let Some(rest) = key.strip_prefix(NAME_PATH) {
            (SieveKey::Name, rest)
        } else if let Some(rest) = key.strip_prefix(DATA_PATH) {
            (SieveKey::Data, rest)
        } else {
            return None;
        };
        // Pigeonhole escapes `/` inside the component, so a raw one means a deeper key that is not ours.
        if escaped.is_empty() || escaped.contains('/') {
            return None;
        }
        Some(make(dict_unescape(escaped)))
    }

    /// The dict key, escaped as Pigeonhole writes it.
    pub fn to_key(&self) -> String {
        match self {
            SieveKey::Name(name) => format!("{NAME_PATH}{}", dict_escape(name)),
            SieveKey::Data(id) => format!("{DATA_PATH}{}", dict_escape(id)),
        }
    }
}

/// Dovecot's `dict_escape_string`: makes `component` safe as one path component of a dict key.
pub fn dict_escape(component: &str) -> String {
    let mut escaped = String::with_capacity(component.len());
    for character in component.chars() {
        match character {
            '/' => escaped.push_str("\\|"),
            '\\' => escaped.push_str("\\\\"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Dovecot's `dict_unescape_string`: `\|` is `/`, `\` before anything else is dropped, a trailing `\` is dropped.
pub fn dict_unescape(component: &str) -> String {
    let mut unescaped = String::with_capacity(component.len());
    let mut characters = component.chars();
    while let Some(character) = characters.next() {
        if character != '\\' {
            unescaped.push(character);
            continue;
        }
        match characters.next() {
            Some('|') => unescaped.push('/'),
            Some(other) => unescaped.push(other),
            None => break,
        }
    }
    unescaped
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Users with named scripts, one of them active; ids are `<user>:<name>:v1`.
    #[derive(Default)]
    struct FakeScripts {
        scripts: HashMap<(String, String), String>,
        active: HashMap<String, String>,
        broken_user: Option<String>,
    }

    impl FakeScripts {
        fn with_script(mut self, user: &str, name: &str, text: &str, active: bool) -> FakeScripts {
            self.scripts.insert((user.to_owned(), name.to_owned()), text.to_owned());
            if active {
                self.active.insert(user.to_owned(), name.to_owned());
            }
            self
        }

        fn check(&self, user: &str) -> Result<(), DictError> {
            match &self.broken_user {
                Some(broken) if broken == user => Err(DictError::new("index not ready")),
                _ => Ok(()),
            }
        }
    }

    impl SieveScripts for FakeScripts {
        fn active_script_id(&self, user: &str) -> Result<Option<String>, DictError> {
            self.check(user)?;
            Ok(self.active.get(user).map(|name| format!("{user}:{name}:v1")))
        }

        fn script_id(&self, user: &str, name: &str) -> Result<Option<String>, DictError> {
            self.check(user)?;
            let key = (user.to_owned(), name.to_owned());
            Ok(self.scripts.contains_key(&key).then(|| format!("{user}:{name}:v1")))
        }

        fn script_text(&self, user: &str, id: &str) -> Result<Option<String>, DictError> {
            self.check(user)?;
            let Some(name) = id.strip_prefix(&format!("{user}:")).and_then(|rest| rest.strip_suffix(":v1")) else {
                return Ok(None);
            };
            Ok(self.scripts.get(&(user.to_owned(), name.to_owned())).cloned())
        }
    }

    fn dict() -> SieveDict<FakeScripts> {
        let scripts = FakeScripts::default()
            .with_script("alice@example.com", "vacation", "vacation \"away\";", true)
            .with_script("alice@example.com", "spam/filter", "discard;", false)
            .with_script("bob@example.com", "active", "keep;", false);
        SieveDict::new(scripts, "active")
    }

    #[test]
    fn active_name_maps_to_the_active_script_and_its_text() {
        let dict = dict();
        let id = dict.lookup("alice@example.com", "priv/sieve/name/active").unwrap();
        assert_eq!(id.as_deref(), Some("alice@example.com:vacation:v1"));
        let data_key = SieveKey::Data(id.unwrap()).to_key();
        assert_eq!(dict.lookup("alice@example.com", &data_key).unwrap().as_deref(), Some("vacation \"away\";"));
    }

    #[test]
    fn no_active_script_is_not_found_not_an_error() {
        // Bob has a script literally named "active", but none is active: the configured name wins.
        assert_eq!(dict().lookup("bob@example.com", "priv/sieve/name/active"), Ok(None));
        assert_eq!(dict().lookup("carol@example.com", "priv/sieve/name/active"), Ok(None));
    }

    #[test]
    fn other_names_are_escaped_path_components() {
        let dict = dict();
        let key = SieveKey::Name("spam/filter".into()).to_key();
        assert_eq!(key, "priv/sieve/name/spam\\|filter");
        assert_eq!(
            dict.lookup("alice@example.com", &key).unwrap().as_deref(),
            Some("alice@example.com:spam/filter:v1")
        );
        assert!(dict.lookup("alice@example.com", "priv/sieve/name/vacation").unwrap().is_some());
        assert_eq!(dict.lookup("alice@example.com", "priv/sieve/name/missing"), Ok(None));
    }

    #[test]
    fn unknown_ids_and_foreign_keys_are_not_found() {
        let dict = dict();
        assert_eq!(dict.lookup("alice@example.com", "priv/sieve/data/nope"), Ok(None));
        // Another user's id does not reveal the script.
        assert_eq!(dict.lookup("bob@example.com", "priv/sieve/data/alice@example.com:vacation:v1"), Ok(None));
        for key in ["priv/quota/storage", "shared/sieve/name/active", "priv/sieve/name/", "priv/sieve/name/a/b"] {
            assert_eq!(dict.lookup("alice@example.com", key), Ok(None), "{key}");
        }
        assert_eq!(dict.iterate("alice@example.com", "priv/sieve/", true), Ok(Vec::new()));
    }

    #[test]
    fn errors_and_missing_users_fail_instead_of_dropping_filters() {
        let mut scripts = FakeScripts::default().with_script("alice@example.com", "x", "keep;", true);
        scripts.broken_user = Some("alice@example.com".into());
        let dict = SieveDict::new(scripts, "active");
        assert_eq!(dict.lookup("alice@example.com", "priv/sieve/name/active"), Err(DictError::new("index not ready")));
        assert!(dict.lookup("", "priv/sieve/name/active").is_err());
    }

    #[test]
    fn default_name_is_an_ordinary_name_unless_configured() {
        let scripts = FakeScripts::default().with_script("alice@example.com", "main", "keep;", true);
        let dict = SieveDict::new(scripts, DEFAULT_SCRIPT_NAME);
        assert!(dict.lookup("alice@example.com", "priv/sieve/name/default").unwrap().is_some());
        assert_eq!(dict.scripts().active.len(), 1);
    }

    #[test]
    fn dict_escaping_matches_dovecot() {
        assert_eq!(dict_escape("a/b\\c"), "a\\|b\\\\c");
        assert_eq!(dict_unescape("a\\|b\\\\c"), "a/b\\c");
        assert_eq!(dict_unescape("x\\y"), "xy");
        assert_eq!(dict_unescape("trailing\\"), "trailing");
        for component in ["", "plain", "/", "\\", "\\|", "a/\\/b"] {
            assert_eq!(dict_unescape(&dict_escape(component)), component);
        }
    }
}
