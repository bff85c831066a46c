//! The output of rendering: relative paths mapped to file contents and the permissions they need.

use std::collections::BTreeMap;

use crate::check::check;
use crate::error::Error;
use crate::stack::{DOVECOT_AUTH_LUA, DOVECOT_CONF, POSTFIX_MAIN_CF, POSTFIX_MASTER_CF, Stack};
use crate::{dovecot, lua, postfix, spam};

/// Renders every configuration file of `stack`.
///
/// The same `Stack` always gives the same bytes: nothing depends on the
/// clock, the machine or a hash map's order. A value that the files cannot
/// carry safely (a relative path, a space in a path, an empty secret) is
/// refused with the name of its field.
pub fn render(stack: &Stack) -> Result<Rendered, Error> {
    check(stack)?;
    let mut files = BTreeMap::new();
    files.insert(POSTFIX_MAIN_CF.to_owned(), RenderedFile::public(postfix::main_cf(stack)));
    files.insert(POSTFIX_MASTER_CF.to_owned(), RenderedFile::public(postfix::master_cf(stack)));
    files.insert(DOVECOT_CONF.to_owned(), RenderedFile::public(dovecot::dovecot_conf(stack)));
    files.insert(
        DOVECOT_AUTH_LUA.to_owned(),
        RenderedFile { contents: lua::auth_lua(stack), mode: 0o640, group: Some("dovecot") },
    );
    for (path, contents, mode) in spam::files(stack) {
        files.insert(path.to_owned(), RenderedFile { contents, mode, group: None });
    }
    Ok(Rendered { files })
}

/// Rendered files by path relative to [`Paths::config_dir`](crate::Paths::config_dir), in path order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    files: BTreeMap<String, RenderedFile>,
}

impl Rendered {
    /// Every file, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RenderedFile)> {
        self.files.iter().map(|(path, file)| (path.as_str(), file))
    }

    /// The file at `relative_path` (`postfix/main.cf`), if rendered.
    pub fn get(&self, relative_path: &str) -> Option<&RenderedFile> {
        self.files.get(relative_path)
    }

    /// How many files there are.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there are none (never, for a rendered stack).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// One file: its text and the permissions it must be written with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// The whole file.
    pub contents: String,
    /// Unix permission bits, for example `0o640`.
    pub mode: u32,
    /// The group that must own the file (the owner is root); `None` keeps root's group.
    pub group: Option<&'static str>,
}

impl RenderedFile {
    /// A file without secrets: root-owned, readable by everyone, as Postfix and Dovecot expect.
    fn public(contents: String) -> RenderedFile {
        RenderedFile { contents, mode: 0o644, group: None }
    }
}
