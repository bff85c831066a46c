//! Per-user thresholds: the `user_prefs` file spamd reads from each user's directory.
//!
//! The store holds thresholds per mailbox and per domain; couchmail resolves them to one score per user (the
//! mailbox's own, else its domain's, else none) and calls [`write_user_prefs`] when it changes. A user without a
//! threshold of their own has no `user_prefs` and gets the site's `required_score` from `local.cf`. spamd reads the
//! file at every scan, so a change counts from the next message on, without any reload.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use couchmail_render::{Spam, SpamScore, VmailIds, user_prefs};

use crate::error::{Error, ErrorKind};

/// The file spamd reads in a user's directory.
const USER_PREFS: &str = "user_prefs";

/// Writes `address`'s `user_prefs` with `required_score`, or removes it when `None`; answers whether anything
/// changed. Creates the user's directory (vmail, 0700) as spamd would. The file is written to a temporary name
/// and renamed, so spamd never reads half of it. Needs root, or to run as vmail.
pub fn write_user_prefs(
    spam: &Spam,
    vmail: VmailIds,
    address: &str,
    required_score: Option<SpamScore>,
) -> Result<bool, Error> {
    let user_dir = spam.user_dir(address);
    let path = user_dir.join(USER_PREFS);
    let action = || format!("writing {}", path.display());
    let io = |err| Error::new(action(), ErrorKind::Io(err));
    let Some(score) = required_score else {
        return match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(io(err)),
        };
    };
    let contents = user_prefs(score);
    if std::fs::read_to_string(&path).is_ok_and(|current| current == contents) {
        return Ok(false);
    }
    make_user_dirs(&spam.user_dir_root, &user_dir, vmail).map_err(io)?;
    let temporary = user_dir.join(".user_prefs.couchmail-tmp");
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temporary).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::os::unix::fs::chown(&temporary, Some(vmail.uid), Some(vmail.gid)).map_err(io)?;
    std::fs::rename(&temporary, &path).map_err(io)?;
    Ok(true)
}

/// Removes everything spamd keeps for `address` (bayes database and `user_prefs`), for a mailbox that is deleted;
/// answers whether there was anything.
pub fn remove_user_data(spam: &Spam, address: &str) -> Result<bool, Error> {
    let user_dir = spam.user_dir(address);
    match std::fs::remove_dir_all(&user_dir) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(Error::new(format!("removing {}", user_dir.display()), ErrorKind::Io(err))),
    }
}

/// Creates `root` and the domain's and user's directories below it with spamd's owner and mode.
fn make_user_dirs(root: &Path, user_dir: &Path, vmail: VmailIds) -> std::io::Result<()> {
    let mut dirs = Vec::new();
    let mut current = user_dir;
    while current.starts_with(root) {
        dirs.push(current);
        let Some(parent) = current.parent() else { break };
        current = parent;
    }
    if let Some(parent) = root.parent() {
        std::fs::create_dir_all(parent)?;
    }
    for dir in dirs.into_iter().rev() {
        match std::fs::create_dir(dir) {
            Ok(()) => {
                std::os::unix::fs::chown(dir, Some(vmail.uid), Some(vmail.gid))?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use couchmail_render::Paths;
    use std::os::unix::fs::MetadataExt;

    fn spam_in(dir: &Path) -> Spam {
        Spam::new(&Paths::new(dir.join("data"), dir.join("run")))
    }

    #[test]
    fn prefs_are_written_once_changed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let spam = spam_in(dir.path());
        let own = VmailIds { uid: own_uid(), gid: own_gid() };
        let score = SpamScore::from_tenths(65);
        assert!(write_user_prefs(&spam, own, "a!b@example.com", Some(score)).unwrap());
        let path = dir.path().join("data/spamassassin/example.com/=612162/user_prefs");
        assert!(std::fs::read_to_string(&path).unwrap().contains("required_score 6.5"));
        let metadata = std::fs::metadata(&path).unwrap();
        assert_eq!((metadata.mode() & 0o777, metadata.uid()), (0o600, own.uid));
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777, 0o700);
        assert!(!write_user_prefs(&spam, own, "a!b@example.com", Some(score)).unwrap(), "same score, no write");
        assert!(write_user_prefs(&spam, own, "a!b@example.com", Some(SpamScore::from_tenths(40))).unwrap());
        assert!(std::fs::read_to_string(&path).unwrap().contains("required_score 4.0"));
        assert!(write_user_prefs(&spam, own, "a!b@example.com", None).unwrap());
        assert!(!path.exists());
        assert!(!write_user_prefs(&spam, own, "a!b@example.com", None).unwrap());
        assert!(remove_user_data(&spam, "a!b@example.com").unwrap());
        assert!(!path.parent().unwrap().exists());
        assert!(!remove_user_data(&spam, "a!b@example.com").unwrap());
    }

    fn own_uid() -> u32 {
        std::fs::metadata("/proc/self").map(|metadata| metadata.uid()).unwrap_or(0)
    }

    fn own_gid() -> u32 {
        std::fs::metadata("/proc/self").map(|metadata| metadata.gid()).unwrap_or(0)
    }
}
