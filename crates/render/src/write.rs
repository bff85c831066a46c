//! The one place this crate touches the file system: writing [`Rendered`] files into a directory.
//!
//! Kept apart from rendering so that everything else stays pure; the
//! binary may as well write the files itself from [`Rendered::iter`].

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::WriteError;
use crate::rendered::Rendered;

impl Rendered {
    /// Writes every file below `dir` with its mode and group, creating
    /// subdirectories (0755) as needed.
    ///
    /// Each file is written to a temporary name and renamed into place, so a
    /// daemon reading its configuration never sees half a file. Setting a
    /// group needs root (it is looked up in `/etc/group`).
    pub fn write_to(&self, dir: &Path) -> Result<(), WriteError> {
        for (relative_path, file) in self.iter() {
            let path = dir.join(relative_path);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(|source| error("create directory", parent, source))?;
            }
            let temporary = temporary_path(&path);
            let mut handle = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temporary)
                .map_err(|source| error("create", &temporary, source))?;
            handle.write_all(file.contents.as_bytes()).map_err(|source| error("write", &temporary, source))?;
            handle.sync_all().map_err(|source| error("sync", &temporary, source))?;
            if let Some(group) = file.group {
                let gid = group_id(group).map_err(|source| error("look up group of", &temporary, source))?;
                std::os::unix::fs::chown(&temporary, None, Some(gid))
                    .map_err(|source| error("change group of", &temporary, source))?;
            }
            fs::set_permissions(&temporary, fs::Permissions::from_mode(file.mode))
                .map_err(|source| error("set mode of", &temporary, source))?;
            fs::rename(&temporary, &path).map_err(|source| error("rename into place", &path, source))?;
        }
        Ok(())
    }
}

fn error(action: &'static str, path: &Path, source: std::io::Error) -> WriteError {
    WriteError { action, path: path.to_owned(), source }
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|name| name.to_os_string()).unwrap_or_default();
    name.push(".couchmail-tmp");
    path.with_file_name(name)
}

/// The numeric id of `group` from `/etc/group` (std has no getgrnam).
fn group_id(group: &str) -> std::io::Result<u32> {
    let groups = fs::read_to_string("/etc/group")?;
    group_id_in(&groups, group)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("group {group} is not in /etc/group")))
}

/// Finds `group` in the text of an `/etc/group` file (`name:password:gid:members`).
fn group_id_in(groups: &str, group: &str) -> Option<u32> {
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != group {
            return None;
        }
        fields.nth(1)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_id_is_read_from_the_third_field() {
        let groups = "root:x:0:\ndovecotx:x:7:\ndovecot:x:107:\n";
        assert_eq!(group_id_in(groups, "dovecot"), Some(107));
        assert_eq!(group_id_in(groups, "root"), Some(0));
        assert_eq!(group_id_in(groups, "postfix"), None);
    }
}
