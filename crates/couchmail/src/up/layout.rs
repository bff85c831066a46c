//! The directories of docs/runtime.md, with their owners and modes.
//!
//! `up` creates what is missing and corrects the mode and owner of what
//! exists, so that a data directory made by an older version (0750) is
//! brought in line. Postfix creates the inside of its queue itself
//! (`postfix check`); Dovecot the inside of its base and state directories.
//!
//! The daemons' users (`vmail`, `postfix`, `dovecot`) must be able to pass
//! through every directory above the data and runtime directories; a
//! private parent (a 0700 home directory or temporary directory) would make
//! delivery fail much later with an obscure error, so it is refused here.

use std::fs::{DirBuilder, Permissions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use couchmail_render::Paths;
use couchmail_supervisor::system::UserIds;

use crate::exit::{Exit, Failure};

/// Who owns a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// root:root.
    Root,
    /// The mail store's user.
    Vmail,
    /// Postfix's own user.
    Postfix,
}

/// One directory to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSpec {
    /// Where.
    pub path: PathBuf,
    /// Its permission bits.
    pub mode: u32,
    /// Its owner (and group).
    pub owner: Owner,
}

/// The system users that own parts of the tree.
#[derive(Debug, Clone, Copy)]
pub struct Owners {
    /// `vmail`.
    pub vmail: UserIds,
    /// `postfix`.
    pub postfix: UserIds,
}

/// Every directory of the full stack, parents first.
pub fn full_tree(paths: &Paths) -> Vec<DirSpec> {
    let dir = |path: &Path, mode: u32, owner: Owner| DirSpec { path: path.to_owned(), mode, owner };
    let parent = |path: &Path| path.parent().map_or_else(|| path.to_owned(), Path::to_owned);
    vec![
        // 0711: vmail and postfix pass through to their directories without listing the others.
        dir(&paths.data_dir, 0o711, Owner::Root),
        dir(&paths.mail_dir, 0o700, Owner::Vmail),
        dir(&parent(&paths.tls_key), 0o755, Owner::Root),
        dir(&parent(&paths.postfix_queue_dir), 0o755, Owner::Root),
        dir(&paths.postfix_queue_dir, 0o755, Owner::Root),
        dir(&paths.postfix_data_dir, 0o700, Owner::Postfix),
        dir(&parent(&paths.dovecot_state_dir), 0o755, Owner::Root),
        dir(&paths.dovecot_state_dir, 0o755, Owner::Root),
        dir(&paths.log_dir, 0o750, Owner::Root),
        dir(&paths.run_dir, 0o755, Owner::Root),
        dir(&parent(&paths.lmtp_socket), 0o755, Owner::Root),
        dir(&paths.dovecot_base_dir, 0o755, Owner::Root),
    ]
}

/// The directories couchmail's own servers need when the daemons run elsewhere.
pub fn servers_only(paths: &Paths) -> Vec<DirSpec> {
    vec![
        DirSpec { path: paths.data_dir.clone(), mode: 0o711, owner: Owner::Root },
        DirSpec { path: paths.run_dir.clone(), mode: 0o755, owner: Owner::Root },
    ]
}

/// Creates `specs` in order; with `owners`, also sets every owner (needs
/// root). Existing directories get the mode (and owner) of their spec.
pub fn create(specs: &[DirSpec], owners: Option<&Owners>) -> anyhow::Result<()> {
    for spec in specs {
        let path = &spec.path;
        if !path.is_dir() {
            DirBuilder::new().recursive(true).mode(spec.mode).create(path).map_err(|err| {
                Failure::new(Exit::Other, format!("cannot create directory {}: {err}", path.display())).hint(
                    "run as a user who may create it (root for /var/lib and /run), or choose data_dir and \
                     runtime_dir elsewhere",
                )
            })?;
        }
        std::fs::set_permissions(path, Permissions::from_mode(spec.mode))
            .with_context(|| format!("cannot set the mode of {} to {:o}", path.display(), spec.mode))?;
        if let Some(owners) = owners {
            let ids = match spec.owner {
                Owner::Root => UserIds { uid: 0, gid: 0 },
                Owner::Vmail => owners.vmail,
                Owner::Postfix => owners.postfix,
            };
            std::os::unix::fs::chown(path, Some(ids.uid), Some(ids.gid))
                .with_context(|| format!("cannot give {} to uid {} gid {}", path.display(), ids.uid, ids.gid))?;
        }
    }
    Ok(())
}

/// Refuses a directory above `dir` that others cannot pass through (no `x` for others).
pub fn check_reachable(dir: &Path) -> anyhow::Result<()> {
    for ancestor in dir.ancestors().skip(1) {
        let Ok(metadata) = std::fs::metadata(ancestor) else { continue };
        if metadata.permissions().mode() & 0o001 == 0 {
            return Err(Failure::new(
                Exit::Other,
                format!(
                    "{} lies inside {}, which other users cannot enter (mode {:o}); Postfix, Dovecot and vmail \
                     must reach it",
                    dir.display(),
                    ancestor.display(),
                    metadata.permissions().mode() & 0o777
                ),
            )
            .hint(format!(
                "choose data_dir (COUCHMAIL_DATA_DIR) and runtime_dir elsewhere, such as /var/lib/couchmail-dev, or \
                 run `chmod o+x {}`",
                ancestor.display()
            ))
            .into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn full_tree_follows_docs_runtime_md() {
        let paths = Paths::new("/srv/cm", "/srv/cm/run");
        let tree = full_tree(&paths);
        let find = |path: &str| tree.iter().find(|spec| spec.path == Path::new(path)).unwrap().clone();
        assert_eq!((find("/srv/cm").mode, find("/srv/cm").owner), (0o711, Owner::Root));
        assert_eq!((find("/srv/cm/mail").mode, find("/srv/cm/mail").owner), (0o700, Owner::Vmail));
        assert_eq!(find("/srv/cm/postfix/data").owner, Owner::Postfix);
        assert_eq!(find("/srv/cm/log").mode, 0o750);
        assert_eq!(find("/srv/cm/run").mode, 0o755);
        assert_eq!(find("/srv/cm/run/dovecot/base").mode, 0o755);
        // Parents come before children, so that each gets its own mode.
        for (spec_idx, spec) in tree.iter().enumerate() {
            for later in &tree[spec_idx + 1..] {
                assert!(!spec.path.starts_with(&later.path) || spec.path == later.path, "{spec:?} before {later:?}");
            }
        }
    }

    #[test]
    fn create_makes_and_corrects_modes() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, Permissions::from_mode(0o750)).unwrap();
        let paths = Paths::new(&data, data.join("run"));
        create(&full_tree(&paths), None).unwrap();
        assert_eq!(mode(&data), 0o711, "an existing directory gets its mode");
        assert_eq!(mode(&paths.mail_dir), 0o700);
        assert_eq!(mode(&paths.log_dir), 0o750);
        assert!(paths.dovecot_base_dir.is_dir());
    }

    #[test]
    fn owners_are_set_when_given() {
        // Tests run as root here; as another user chown to root fails, which is what `up` reports.
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path().join("data"), dir.path().join("run"));
        let owners = Owners { vmail: UserIds { uid: 4242, gid: 4243 }, postfix: UserIds { uid: 4244, gid: 4245 } };
        create(&full_tree(&paths), Some(&owners)).unwrap();
        use std::os::unix::fs::MetadataExt;
        let mail = std::fs::metadata(&paths.mail_dir).unwrap();
        assert_eq!((mail.uid(), mail.gid()), (4242, 4243));
        let postfix = std::fs::metadata(&paths.postfix_data_dir).unwrap();
        assert_eq!((postfix.uid(), postfix.gid()), (4244, 4245));
        assert_eq!(std::fs::metadata(&paths.data_dir).unwrap().uid(), 0);
    }

    #[test]
    fn a_private_parent_is_refused_with_a_fix() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("private");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(dir.path(), Permissions::from_mode(0o755)).unwrap();
        let err = check_reachable(&private.join("data")).unwrap_err();
        assert!(err.to_string().contains("mode 700"), "{err}");
        let (_, hint) = crate::exit::classify(&err);
        assert!(hint.unwrap().contains(&format!("chmod o+x {}", private.display())));
        std::fs::set_permissions(&private, Permissions::from_mode(0o711)).unwrap();
        check_reachable(&private.join("data")).unwrap();
    }
}
