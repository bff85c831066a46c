//! SpamAssassin's part of `couchmail up`: the directories and files the rendered configuration expects, the
//! daemons, and waiting until they answer.
//!
//! The order is: render and write the files ([`Rendered::write_to`](couchmail_render::Rendered::write_to)),
//! [`prepare`], start [`daemons`] before Postfix and Dovecot, then [`wait_until_ready`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use couchmail_render::{SMTP_SCAN_USER, SPAMASS_MILTER_USER, Spam, Stack};
use couchmail_supervisor::system::{Leftover, find_program, user_ids};
use couchmail_supervisor::{
    ProcessSpec, Sievec, SpamassMilterOptions, SpamdOptions, spamass_milter_daemon, spamd_daemon,
};

use crate::client::SpamdClient;
use crate::error::{Error, ErrorKind};

/// Where Debian's SpamAssassin keeps the `*.pre` files that load its plugins.
pub const SYSTEM_SITE_CONFIG_DIR: &str = "/etc/spamassassin";
/// The account spamd's children run as; it owns the mail store and the per-user spam data.
const MAIL_USER: &str = "vmail";
/// The group of the milter's socket directory: Postfix's smtpd connects to the socket inside.
const POSTFIX_GROUP: &str = "postfix";
/// What a sender's server is told when a message is refused at SMTP time (after `550 5.7.1`).
const REJECT_TEXT: &str = "Message refused as spam; if this is a mistake, write to postmaster";

/// Creates what the rendered SpamAssassin configuration expects, after the files are written. Needs root.
///
/// - the per-user root ([`Spam::user_dir_root`]), vmail, 0700: spamd's children create each user's directory in it;
/// - spamd's socket directory, root, 0755 (spamd creates the socket as vmail, 0660, with [`Spam::socket_group`]);
/// - the milter's socket directory, spamass-milter:postfix, 2750 (setgid), when it runs;
/// - copies of the system's `*.pre` files beside the rendered `local.cf`: `--siteconfigpath` replaces
///   /etc/spamassassin, and without them spamd loads no plugin and cannot scan;
/// - the compiled global Sieve scripts, readable by vmail ([`Sievec::compile`]).
///
/// Does nothing when spam is off.
pub async fn prepare(stack: &Stack) -> Result<(), Error> {
    let Some(spam) = &stack.spam else { return Ok(()) };
    let paths = &stack.paths;
    make_dir(&spam.user_dir_root, 0o700, Some((stack.vmail.uid, stack.vmail.gid)))?;
    if let Some(socket_dir) = spam.spamd_socket.parent() {
        make_dir(socket_dir, 0o755, None)?;
    }
    if let Some(reject) = &spam.smtp_reject
        && let Some(socket_dir) = reject.milter_socket.parent()
    {
        // Setgid: the socket spamass-milter creates inside belongs to group postfix, so smtpd can connect.
        let milter = account(SPAMASS_MILTER_USER)?;
        let postfix = account(POSTFIX_GROUP)?;
        make_dir(socket_dir, 0o2750, Some((milter.0, postfix.1)))?;
    }
    copy_pre_files(Path::new(SYSTEM_SITE_CONFIG_DIR), &paths.spamassassin_site_dir())?;
    let sievec = Sievec { program: find_program("sievec"), config: Some(paths.dovecot_config_file()) };
    for script in paths.spam_sieve_scripts() {
        sievec.compile(&script).await.map_err(|err| {
            Error::new(format!("compiling {}", script.display()), ErrorKind::Sieve(format!("{err:?}")))
        })?;
    }
    Ok(())
}

/// The daemons of spam in `stack`, to start before Postfix and Dovecot: spamd, and spamass-milter when mail is
/// refused at SMTP time. Empty when spam is off. Logs go to `spamd.log` and `spamass-milter.log` in the log directory.
pub fn daemons(stack: &Stack) -> Vec<ProcessSpec> {
    let Some(spam) = &stack.spam else { return Vec::new() };
    let mut specs = vec![spamd_daemon(&spamd_options(stack, spam))];
    if let Some(options) = milter_options(stack, spam) {
        specs.push(spamass_milter_daemon(&options));
    }
    specs
}

/// The spam daemons an earlier run of `stack` may have left running, found by their pid files.
pub fn leftovers(stack: &Stack) -> Vec<Leftover> {
    let Some(spam) = &stack.spam else { return Vec::new() };
    let mut leftovers = vec![Leftover::Spamd { pid_file: spamd_options(stack, spam).pid_file }];
    if let Some(options) = milter_options(stack, spam) {
        leftovers.push(Leftover::SpamassMilter { pid_file: options.pid_file });
    }
    leftovers
}

/// Waits until spamd answers a `PING` and the milter's socket exists (spamd needs a second or two to load its
/// rules). Answers at once when spam is off.
pub async fn wait_until_ready(stack: &Stack, timeout: Duration) -> Result<(), Error> {
    let Some(spam) = &stack.spam else { return Ok(()) };
    let deadline = tokio::time::Instant::now() + timeout;
    let client = SpamdClient::new(&spam.spamd_socket).with_timeout(Duration::from_secs(5));
    loop {
        match client.ping().await {
            Ok(()) => break,
            Err(err) if tokio::time::Instant::now() >= deadline => return Err(err),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    if let Some(reject) = &spam.smtp_reject {
        while !reject.milter_socket.exists() {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::new(
                    format!("waiting for spamass-milter's socket {}", reject.milter_socket.display()),
                    ErrorKind::Timeout,
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

fn spamd_options(stack: &Stack, spam: &Spam) -> SpamdOptions {
    let mut options = SpamdOptions::new(
        stack.paths.spamassassin_site_dir(),
        &spam.user_dir_root,
        &spam.spamd_socket,
        stack.paths.log_dir.join("spamd.log"),
    );
    options.user = MAIL_USER.to_owned();
    options.socket_group = spam.socket_group.clone();
    options.max_children = spam.max_children;
    options
}

fn milter_options(stack: &Stack, spam: &Spam) -> Option<SpamassMilterOptions> {
    let reject = spam.smtp_reject.as_ref()?;
    let socket_dir = reject.milter_socket.parent().map(Path::to_owned).unwrap_or_default();
    Some(SpamassMilterOptions {
        program: find_program("spamass-milter"),
        setpriv: find_program("setpriv"),
        user: SPAMASS_MILTER_USER.to_owned(),
        socket: reject.milter_socket.clone(),
        reject_score: reject.score.tenths() / 10,
        reject_text: REJECT_TEXT.to_owned(),
        spamd_socket: spam.spamd_socket.clone(),
        scan_user: SMTP_SCAN_USER.to_owned(),
        scan_timeout_secs: spam.scan_timeout_secs,
        max_scan_bytes: spam.max_scan_bytes,
        log_file: stack.paths.log_dir.join("spamass-milter.log"),
        pid_file: socket_dir.join("spamass-milter.pid"),
    })
}

/// The uid and primary gid of a system account.
fn account(name: &str) -> Result<(u32, u32), Error> {
    match user_ids(name) {
        Ok(Some(ids)) => Ok((ids.uid, ids.gid)),
        Ok(None) => Err(Error::new("looking up system accounts", ErrorKind::MissingAccount(name.to_owned()))),
        Err(err) => Err(Error::new("looking up system accounts", ErrorKind::Sieve(err.to_string()))),
    }
}

/// Creates `dir` (and missing parents), then sets its mode and, if given, its owner and group.
fn make_dir(dir: &Path, mode: u32, owner: Option<(u32, u32)>) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let io = |err| Error::new(format!("preparing {}", dir.display()), ErrorKind::Io(err));
    std::fs::create_dir_all(dir).map_err(io)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(io)?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(io)
}

/// Copies every `*.pre` file of `from` into `to` (mode 0644), replacing older copies; answers the copied paths.
pub fn copy_pre_files(from: &Path, to: &Path) -> Result<Vec<PathBuf>, Error> {
    use std::os::unix::fs::PermissionsExt;
    let action = || format!("copying SpamAssassin's *.pre files from {} to {}", from.display(), to.display());
    let entries = std::fs::read_dir(from).map_err(|err| Error::new(action(), ErrorKind::Io(err)))?;
    let mut sources: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "pre") && path.is_file())
        .collect();
    sources.sort();
    if sources.is_empty() {
        return Err(Error::new(
            action(),
            ErrorKind::MissingSiteFiles(format!("{} holds no *.pre file", from.display())),
        ));
    }
    std::fs::create_dir_all(to).map_err(|err| Error::new(action(), ErrorKind::Io(err)))?;
    let mut copied = Vec::new();
    for source in sources {
        let Some(name) = source.file_name() else { continue };
        let target = to.join(name);
        std::fs::copy(&source, &target).map_err(|err| Error::new(action(), ErrorKind::Io(err)))?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644))
            .map_err(|err| Error::new(action(), ErrorKind::Io(err)))?;
        copied.push(target);
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use couchmail_render::SpamScore;

    #[test]
    fn no_daemon_and_no_leftover_without_spam() {
        let stack = Stack::dev("/srv/cm");
        assert!(daemons(&stack).is_empty());
        assert!(leftovers(&stack).is_empty());
    }

    #[test]
    fn spamd_runs_first_and_the_milter_only_with_an_smtp_reject_score() {
        let mut stack = Stack::dev("/srv/cm");
        stack.spam = Some(Spam::new(&stack.paths));
        let names: Vec<String> = daemons(&stack).into_iter().map(|spec| spec.name).collect();
        assert_eq!(names, ["spamd"]);
        stack.spam = Some(Spam::new(&stack.paths).with_smtp_reject(&stack.paths, SpamScore::from_tenths(150)));
        let specs = daemons(&stack);
        let names: Vec<&str> = specs.iter().map(|spec| spec.name.as_str()).collect();
        assert_eq!(names, ["spamd", "spamass-milter"]);
        let milter_args: Vec<String> = specs[1].args.iter().map(|arg| arg.to_string_lossy().into_owned()).collect();
        assert!(milter_args.windows(2).any(|pair| pair == ["-r", "15"]), "{milter_args:?}");
        assert!(milter_args.windows(2).any(|pair| pair == ["-u", SMTP_SCAN_USER]), "{milter_args:?}");
        assert_eq!(specs[0].log_file.as_deref(), Some(Path::new("/srv/cm/log/spamd.log")));
        let spamd_args: Vec<String> = specs[0].args.iter().map(|arg| arg.to_string_lossy().into_owned()).collect();
        assert!(spamd_args.contains(&"--socketgroup=spamass-milter".to_owned()), "{spamd_args:?}");
        assert_eq!(leftovers(&stack).len(), 2);
    }

    #[test]
    fn pre_files_are_copied_and_nothing_else() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        std::fs::write(from.path().join("v310.pre"), "loadplugin X\n").unwrap();
        std::fs::write(from.path().join("local.cf"), "required_score 1\n").unwrap();
        let copied = copy_pre_files(from.path(), to.path()).unwrap();
        assert_eq!(copied, vec![to.path().join("v310.pre")]);
        assert!(!to.path().join("local.cf").exists(), "the rendered local.cf must never be replaced");
        let empty = tempfile::tempdir().unwrap();
        let err = copy_pre_files(empty.path(), to.path()).unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::MissingSiteFiles(_)), "{err}");
    }
}
