//! How the supervisor runs SpamAssassin's daemons: spamd, and spamass-milter for Postfix (docs/spam.md).
//!
//! Both run in the foreground, so that the supervisor sees them exit and stops their whole process group.
//!
//! # Security
//! spamd starts as root only to create its socket with the right owner; it serves every connection in a child
//! running as the mail user (`--username`), and reads and writes per-user data only there. Its socket is mode 0660,
//! owned by the mail user and by the milter's group: spamd believes the user name a client sends and lets clients
//! train (`--allow-tell`), so no other local account may connect. spamass-milter never runs as root: `setpriv`
//! starts it as its own account, with umask 007, in a setgid directory of group `postfix`, so that its socket is
//! `spamass-milter:postfix`, mode 0770, and Postfix's smtpd (and nobody else) can connect. (Debian's 0.4.0 has no
//! option to set the socket's group.)

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::system::find_program;
use crate::{ProcessSpec, StopSignal};

/// The Debian packages SpamAssassin in the stack needs: the daemon and its rules, the client, and the milter.
pub const SPAM_DEBIAN_PACKAGES: &[&str] = &["spamassassin", "spamd", "spamc", "spamass-milter"];

/// How long spamd and the milter get to stop before they are killed (a scan in progress finishes first).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How to run spamd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpamdOptions {
    /// The `spamd` program.
    pub program: PathBuf,
    /// `--siteconfigpath`: the rendered `local.cf` beside copies of the system's `*.pre` files.
    pub site_config_dir: PathBuf,
    /// Per-user directories live below it as `<domain>/<local part>` (`--virtual-config-dir=<root>/%d/%l`).
    pub user_dir_root: PathBuf,
    /// The unix socket spamd listens on.
    pub socket: PathBuf,
    /// The socket's group (the milter's, or the mail user's own group).
    pub socket_group: String,
    /// The account the children run as and the socket's owner: `vmail`.
    pub user: String,
    /// `--max-children`: how many messages are scanned at once.
    pub max_children: u32,
    /// Where spamd's log goes (it logs to standard error).
    pub log_file: PathBuf,
    /// Where spamd writes its pid, so that a run that died without stopping it can find it
    /// ([`Leftover::Spamd`](crate::system::Leftover::Spamd)).
    pub pid_file: PathBuf,
}

impl SpamdOptions {
    /// Options with Debian's program path, the `vmail` account and two children; the pid file is `spamd.pid`
    /// beside the socket.
    pub fn new(
        site_config_dir: impl Into<PathBuf>,
        user_dir_root: impl Into<PathBuf>,
        socket: impl Into<PathBuf>,
        log_file: impl Into<PathBuf>,
    ) -> SpamdOptions {
        let socket = socket.into();
        SpamdOptions {
            pid_file: socket.with_file_name("spamd.pid"),
            program: find_program("spamd"),
            site_config_dir: site_config_dir.into(),
            user_dir_root: user_dir_root.into(),
            socket,
            socket_group: "vmail".to_owned(),
            user: "vmail".to_owned(),
            max_children: 2,
            log_file: log_file.into(),
        }
    }
}

/// spamd as a supervised daemon.
///
/// `--nouser-config` with `--virtual-config-dir` makes spamd keep each user's bayes database and `user_prefs`
/// in that user's own directory and nowhere else; `--allow-tell` lets `spamc -L` train over the socket.
/// There is no `--daemonize`: the supervisor holds the process. The pid file is only for finding a spamd that
/// an earlier run left behind.
pub fn spamd_daemon(options: &SpamdOptions) -> ProcessSpec {
    let mut virtual_config_dir = OsString::from("--virtual-config-dir=");
    virtual_config_dir.push(options.user_dir_root.join("%d/%l"));
    let mut site_config = OsString::from("--siteconfigpath=");
    site_config.push(&options.site_config_dir);
    let mut socket = OsString::from("--socketpath=");
    socket.push(&options.socket);
    let mut pid_file = OsString::from("--pidfile=");
    pid_file.push(&options.pid_file);
    let args = vec![
        site_config,
        virtual_config_dir,
        "--nouser-config".into(),
        format!("--username={}", options.user).into(),
        "--allow-tell".into(),
        socket,
        format!("--socketowner={}", options.user).into(),
        format!("--socketgroup={}", options.socket_group).into(),
        "--socketmode=0660".into(),
        format!("--max-children={}", options.max_children).into(),
        "--syslog=stderr".into(),
        pid_file,
    ];
    ProcessSpec {
        name: "spamd".to_owned(),
        program: options.program.clone(),
        args,
        log_file: Some(options.log_file.clone()),
        stop_signal: StopSignal::Term,
        stop_timeout: STOP_TIMEOUT,
    }
}

/// How to run spamass-milter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpamassMilterOptions {
    /// The `spamass-milter` program.
    pub program: PathBuf,
    /// `setpriv`, which starts it as [`SpamassMilterOptions::user`].
    pub setpriv: PathBuf,
    /// The account it runs as (Debian's package creates `spamass-milter`).
    pub user: String,
    /// The socket Postfix connects to, in a directory that is setgid to Postfix's group (the socket gets that group,
    /// and mode 0770 from the umask).
    pub socket: PathBuf,
    /// Messages scoring this many whole points or more are refused. spamass-milter reads scores as whole numbers.
    pub reject_score: i32,
    /// The text of the refusal, after `550 5.7.1`.
    pub reject_text: String,
    /// spamd's socket.
    pub spamd_socket: PathBuf,
    /// The user the scan runs as: one site-wide identity (docs/spam.md).
    pub scan_user: String,
    /// Seconds a scan may take; a scan that fails or takes longer lets the message through.
    pub scan_timeout_secs: u32,
    /// Larger messages are not scanned.
    pub max_scan_bytes: u64,
    /// Where its standard output and error go (it logs through syslog otherwise).
    pub log_file: PathBuf,
    /// Where it writes its pid (`-P`), in a directory it may write
    /// ([`Leftover::SpamassMilter`](crate::system::Leftover::SpamassMilter)).
    pub pid_file: PathBuf,
}

/// The shell line that sets the umask for the milter's socket and then becomes the rest of the arguments.
const UMASK_THEN_EXEC: &str = "umask 007 && exec \"$@\"";

/// spamass-milter as a supervised daemon.
///
/// `-M` leaves the message untouched (delivery scans again, per recipient, and adds the headers the user sees),
/// `-I` skips authenticated clients, `-r` refuses at the reject score. spamc runs without `-x`, so a failed scan
/// returns the message unscanned and the milter accepts it. `sh` sets the umask and `exec`s `setpriv`, which
/// `exec`s the milter: one process, in the supervisor's process group.
pub fn spamass_milter_daemon(options: &SpamassMilterOptions) -> ProcessSpec {
    let mut args: Vec<OsString> = vec![
        "-c".into(),
        UMASK_THEN_EXEC.into(),
        "spamass-milter".into(),
        options.setpriv.clone().into(),
        format!("--reuid={}", options.user).into(),
        format!("--regid={}", options.user).into(),
        "--init-groups".into(),
        "--inh-caps=-all".into(),
        "--".into(),
        options.program.clone().into(),
        "-p".into(),
        options.socket.clone().into(),
        "-P".into(),
        options.pid_file.clone().into(),
        "-M".into(),
        "-I".into(),
        "-r".into(),
        options.reject_score.to_string().into(),
        "-R".into(),
        options.reject_text.clone().into(),
        "--".into(),
        "-U".into(),
        options.spamd_socket.clone().into(),
        "-u".into(),
        options.scan_user.clone().into(),
    ];
    args.extend(["-t".into(), options.scan_timeout_secs.to_string().into()]);
    args.extend(["-s".into(), options.max_scan_bytes.to_string().into()]);
    ProcessSpec {
        name: "spamass-milter".to_owned(),
        program: PathBuf::from("/bin/sh"),
        args,
        log_file: Some(options.log_file.clone()),
        stop_signal: StopSignal::Term,
        stop_timeout: STOP_TIMEOUT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(args: &[OsString]) -> Vec<String> {
        args.iter().map(|arg| arg.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn spamd_keeps_users_apart_and_listens_on_its_socket_only() {
        let mut options =
            SpamdOptions::new("/run/cm/spamassassin", "/var/lib/cm/spamassassin", "/run/cm/spamd/spamd.sock", "/l");
        options.program = "/usr/sbin/spamd".into();
        options.socket_group = "spamass-milter".into();
        let spec = spamd_daemon(&options);
        assert_eq!(spec.name, "spamd");
        assert_eq!(
            text(&spec.args),
            [
                "--siteconfigpath=/run/cm/spamassassin",
                "--virtual-config-dir=/var/lib/cm/spamassassin/%d/%l",
                "--nouser-config",
                "--username=vmail",
                "--allow-tell",
                "--socketpath=/run/cm/spamd/spamd.sock",
                "--socketowner=vmail",
                "--socketgroup=spamass-milter",
                "--socketmode=0660",
                "--max-children=2",
                "--syslog=stderr",
                "--pidfile=/run/cm/spamd/spamd.pid",
            ]
        );
        assert!(!text(&spec.args).iter().any(|arg| arg.starts_with("--listen") || arg == "-d"));
    }

    #[test]
    fn the_milter_drops_root_and_leaves_messages_alone() {
        let options = SpamassMilterOptions {
            program: "/usr/sbin/spamass-milter".into(),
            setpriv: "/usr/bin/setpriv".into(),
            user: "spamass-milter".into(),
            socket: "/run/cm/spamass-milter/spamass.sock".into(),
            reject_score: 15,
            reject_text: "spam refused".into(),
            spamd_socket: "/run/cm/spamd/spamd.sock".into(),
            scan_user: "smtp@=".into(),
            scan_timeout_secs: 20,
            max_scan_bytes: 512_000,
            log_file: "/l".into(),
            pid_file: "/run/cm/spamass-milter/spamass-milter.pid".into(),
        };
        let spec = spamass_milter_daemon(&options);
        assert_eq!(spec.program, PathBuf::from("/bin/sh"));
        let args = text(&spec.args);
        assert_eq!(args[..4], ["-c", UMASK_THEN_EXEC, "spamass-milter", "/usr/bin/setpriv"]);
        assert_eq!(
            args[4..9],
            ["--reuid=spamass-milter", "--regid=spamass-milter", "--init-groups", "--inh-caps=-all", "--"]
        );
        assert_eq!(args[9], "/usr/sbin/spamass-milter");
        let milter_end = args.iter().rposition(|arg| arg == "--").unwrap();
        let milter = &args[10..milter_end];
        let spamc = &args[milter_end + 1..];
        assert!(milter.windows(2).any(|pair| pair == ["-r", "15"]), "{milter:?}");
        assert!(milter.contains(&"-M".to_owned()) && milter.contains(&"-I".to_owned()), "{milter:?}");
        assert_eq!(spamc, ["-U", "/run/cm/spamd/spamd.sock", "-u", "smtp@=", "-t", "20", "-s", "512000"]);
        assert!(!spamc.contains(&"-x".to_owned()), "a failed scan must let the message through");
    }
}
