//! SpamAssassin in the stack: spamd's site configuration, the Sieve scripts and wrappers Dovecot runs to scan and
//! to train, and a user's `user_prefs` (docs/spam.md has the design and why).
//!
//! - Delivery: a global `sieve_before` script pipes each message through `spamc -u <recipient>` (Pigeonhole's
//!   `vnd.dovecot.filter`), so that every recipient gets their own bayes database and threshold, then files a message
//!   marked `X-Spam-Flag: YES` into Junk and stops, before the user's own script runs.
//! - Training: IMAPSieve scripts run `spamc -L spam|ham` for the logged-in user when a message is copied or moved
//!   into Junk, or out of Junk anywhere but Trash (`vnd.dovecot.pipe`).
//! - SMTP time (optional): Postfix asks spamass-milter, which refuses a message at or above the reject score.
//!
//! spamd keeps per-user state below [`Spam::user_dir_root`] as `<domain>/<local part>` (`--virtual-config-dir`).
//! spamd replaces every character outside `A-Za-z0-9-+_.,@=` in a user name by `_`, which would give `a!b@x` and
//! `a#b@x` one directory and one bayes database. The wrappers therefore pass an encoded name ([`spamd_user_name`]):
//! a part made only of `a-z0-9.+-` and not starting with a dot stays as it is, any other part becomes `=` and the
//! hex of its bytes. Plain parts never contain `=`, so the encoding is one-to-one, spamd never needs to replace
//! anything, and no part is ever `.` or `..`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::stack::{Paths, Stack};
use crate::text::{GENERATED, path_text};

/// Relative path of spamd's site `local.cf` (the directory is `spamd --siteconfigpath`).
pub const SPAMASSASSIN_LOCAL_CF: &str = "spamassassin/local.cf";
/// Relative path of the global Sieve script that scans every delivery (`sieve_before`).
pub const SPAM_FILTER_SIEVE: &str = "dovecot/spam/filter.sieve";
/// Relative path of the IMAPSieve script that learns spam (a copy or move into Junk).
pub const SPAM_LEARN_SPAM_SIEVE: &str = "dovecot/spam/learn-spam.sieve";
/// Relative path of the IMAPSieve script that learns ham (a copy or move out of Junk, except into Trash).
pub const SPAM_LEARN_HAM_SIEVE: &str = "dovecot/spam/learn-ham.sieve";
/// Relative path of Pigeonhole's `sieve_filter_bin_dir`.
const FILTER_BIN_DIR: &str = "dovecot/spam/filter-bin";
/// Relative path of Pigeonhole's `sieve_pipe_bin_dir`.
const PIPE_BIN_DIR: &str = "dovecot/spam/pipe-bin";
/// The filter program's name, as the Sieve script calls it.
const FILTER_PROGRAM: &str = "couchmail-spamc";
/// The learning program's name, as the IMAPSieve scripts call it.
const LEARN_PROGRAM: &str = "couchmail-learn";
/// Relative path of the filter program: [`FILTER_BIN_DIR`] / [`FILTER_PROGRAM`].
pub const SPAM_FILTER_PROGRAM: &str = "dovecot/spam/filter-bin/couchmail-spamc";
/// Relative path of the learning program: [`PIPE_BIN_DIR`] / [`LEARN_PROGRAM`].
pub const SPAM_LEARN_PROGRAM: &str = "dovecot/spam/pipe-bin/couchmail-learn";

/// The user spamass-milter scans as at SMTP time: one site-wide identity, never a recipient's (a message may have
/// many recipients, and no user's bayes data should decide another's mail). It is [`spamd_user_name`] of
/// `smtp@`, an address with an empty domain, which no mailbox can have; its directory is `<root>/=/smtp`.
pub const SMTP_SCAN_USER: &str = "smtp@=";

/// The special-use mailbox spam is filed into and training watches.
pub const JUNK_MAILBOX: &str = "Junk";
/// The special-use mailbox a move out of Junk into is not ham.
pub const TRASH_MAILBOX: &str = "Trash";

/// SpamAssassin in the stack; `None` in [`Stack::spam`] leaves it out entirely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spam {
    /// spamd's unix socket. spamd creates it owned by vmail, group [`Spam::socket_group`], mode 0660.
    pub spamd_socket: PathBuf,
    /// Per-user directories live below it as `<domain>/<local part>` (vmail, 0700): each user's bayes
    /// database and the `user_prefs` couchmail writes from the store.
    pub user_dir_root: PathBuf,
    /// The site-wide `required_score`: at or above it a message is spam and goes to Junk. A user's
    /// `user_prefs` overrides it.
    pub required_score: SpamScore,
    /// Refusing mail at SMTP time; `None` scans at delivery only.
    pub smtp_reject: Option<SmtpReject>,
    /// DNS-based tests (DNSBLs, URI blocklists, SPF, DKIM). Off by default: a machine without a resolver would
    /// wait for every lookup to time out, and tests must never reach the network.
    pub network_tests: bool,
    /// Larger messages are delivered unscanned (`spamc -s`; SpamAssassin's default is 500 KiB, spamc's limit 256 MiB).
    pub max_scan_bytes: u64,
    /// Seconds one scan or one learning may take before the message is delivered unscanned (or not learned).
    pub scan_timeout_secs: u32,
    /// How many messages spamd scans at once (`--max-children`); each child costs about 60 MB.
    pub max_children: u32,
    /// The group of spamd's socket besides vmail: spamass-milter's, when it runs.
    pub socket_group: String,
    /// The `spamc` program the wrappers run.
    pub spamc_program: PathBuf,
}

impl Spam {
    /// The defaults of docs/spam.md for a runtime layout: spamd's socket in `<run>/spamd/`, per-user data in
    /// `<data>/spamassassin/`, a required score of 5.0, no SMTP-time refusal, no network tests.
    pub fn new(paths: &Paths) -> Spam {
        Spam {
            spamd_socket: paths.run_dir.join("spamd/spamd.sock"),
            user_dir_root: paths.data_dir.join("spamassassin"),
            required_score: SpamScore::from_tenths(50),
            smtp_reject: None,
            network_tests: false,
            max_scan_bytes: 500 * 1024,
            scan_timeout_secs: 20,
            max_children: 2,
            socket_group: "vmail".to_owned(),
            spamc_program: PathBuf::from("/usr/bin/spamc"),
        }
    }

    /// Turns on the SMTP-time refusal at `score` through spamass-milter, with its socket in
    /// `<run>/spamass-milter/` and spamd's socket shared with the milter's group.
    pub fn with_smtp_reject(mut self, paths: &Paths, score: SpamScore) -> Spam {
        self.smtp_reject = Some(SmtpReject { milter_socket: paths.run_dir.join("spamass-milter/spamass.sock"), score });
        self.socket_group = SPAMASS_MILTER_USER.to_owned();
        self
    }

    /// Where spamd keeps `address`'s bayes database and `user_prefs`.
    pub fn user_dir(&self, address: &str) -> PathBuf {
        user_dir(&self.user_dir_root, address)
    }
}

/// The account Debian's spamass-milter package creates; the milter runs as it.
pub const SPAMASS_MILTER_USER: &str = "spamass-milter";

/// Refusing spam at SMTP time: Postfix asks spamass-milter at the end of DATA, and a message scoring at or above
/// [`SmtpReject::score`] is refused with 550 5.7.1. The sending server tells its user, so nobody here sends a
/// bounce to a forged sender (no backscatter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpReject {
    /// The milter's unix socket (spamass-milter, group postfix, 0660).
    pub milter_socket: PathBuf,
    /// The score at or above which a message is refused: a whole number (spamass-milter compares whole points),
    /// above the required score, so that mail between the two still reaches the user, in Junk, where a mistake
    /// can be found.
    pub score: SpamScore,
}

/// A SpamAssassin score with one decimal, such as `5.0` or `-1.5`: exact, so that a [`Stack`] compares as equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpamScore {
    tenths: i32,
}

impl SpamScore {
    /// A score from tenths: `from_tenths(55)` is 5.5.
    pub const fn from_tenths(tenths: i32) -> SpamScore {
        SpamScore { tenths }
    }

    /// The score in tenths.
    pub const fn tenths(self) -> i32 {
        self.tenths
    }
}

impl fmt::Display for SpamScore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.tenths < 0 { "-" } else { "" };
        let magnitude = self.tenths.unsigned_abs();
        write!(f, "{sign}{}.{}", magnitude / 10, magnitude % 10)
    }
}

/// A score that is not a number with at most one decimal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseSpamScoreError(String);

impl fmt::Display for ParseSpamScoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a score such as 5, 6.5 or -1.5 (one decimal at most, from -999 to 999)", self.0)
    }
}

impl std::error::Error for ParseSpamScoreError {}

impl FromStr for SpamScore {
    type Err = ParseSpamScoreError;

    fn from_str(text: &str) -> Result<SpamScore, ParseSpamScoreError> {
        let error = || ParseSpamScoreError(text.to_owned());
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, "0"));
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
        if !digits(whole) || !digits(fraction) || whole.len() > 3 || fraction.len() > 1 {
            return Err(error());
        }
        let whole: i32 = whole.parse().map_err(|_| error())?;
        let fraction: i32 = fraction.parse().map_err(|_| error())?;
        let tenths = whole * 10 + fraction;
        Ok(SpamScore { tenths: if negative { -tenths } else { tenths } })
    }
}

/// The user name the wrappers pass to spamd for `address` (see the module documentation): each part of
/// `local@domain` stays when it is made of `a-z0-9.+-` only and does not start with a dot, and becomes `=` and the
/// lower-case hex of its bytes otherwise.
pub fn spamd_user_name(address: &str) -> String {
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    format!("{}@{}", encode_part(local), encode_part(domain))
}

/// The directory spamd uses for `address` below `root` (`--virtual-config-dir=<root>/%d/%l`).
pub fn user_dir(root: &Path, address: &str) -> PathBuf {
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    root.join(encode_part(domain)).join(encode_part(local))
}

fn encode_part(part: &str) -> String {
    // A part starting with a dot is never plain, so that no part is `.` or `..` and none is a hidden directory.
    if !part.is_empty() && !part.starts_with('.') && part.bytes().all(is_plain_byte) {
        return part.to_owned();
    }
    let mut encoded = String::with_capacity(1 + 2 * part.len());
    encoded.push('=');
    for byte in part.bytes() {
        encoded.push_str(&format!("{byte:02x}"));
    }
    encoded
}

fn is_plain_byte(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit() || b".+-".contains(&byte)
}

/// The `user_prefs` couchmail writes for a user whose threshold differs from the site's (spamd reads it as a
/// score-only configuration: only options such as `required_score` count).
pub fn user_prefs(required_score: SpamScore) -> String {
    format!(
        "# Generated by couchmail from the store: do not edit, changes are overwritten.\n\
         # The user's threshold: at or above it a message goes to Junk.\n\
         required_score {required_score}\n"
    )
}

/// The shell function both wrappers use to turn an address into spamd's user name; [`spamd_user_name`] is
/// its twin in Rust, and a test holds the two to the same answers.
const SHELL_ENCODE: &str = r#"# spamd replaces characters outside A-Za-z0-9-+_.,@= with "_", which could give two users one directory:
# a part of the address made of a-z0-9.+- only and not starting with "." stays, any other becomes "=" and the hex.
encode() {
  case $1 in
    '' | .* | *[!abcdefghijklmnopqrstuvwxyz0123456789.+-]*)
      printf '=%s' "$(printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n')" ;;
    *) printf '%s' "$1" ;;
  esac
}
case $user in
  *@*) ;;
  *) echo "$0: user $user is not an address" >&2; exit 64 ;;
esac
spamd_user="$(encode "${user%@*}")@$(encode "${user##*@}")"
"#;

/// Renders every SpamAssassin file of `stack` (nothing when spam is off), keyed by relative path, with its mode.
pub(crate) fn files(stack: &Stack) -> Vec<(&'static str, String, u32)> {
    let Some(spam) = &stack.spam else { return Vec::new() };
    vec![
        (SPAMASSASSIN_LOCAL_CF, local_cf(spam), 0o644),
        (SPAM_FILTER_SIEVE, filter_sieve(), 0o644),
        (SPAM_LEARN_SPAM_SIEVE, learn_spam_sieve(), 0o644),
        (SPAM_LEARN_HAM_SIEVE, learn_ham_sieve(), 0o644),
        (SPAM_FILTER_PROGRAM, filter_wrapper(spam), 0o755),
        (SPAM_LEARN_PROGRAM, learn_wrapper(spam), 0o755),
    ]
}

/// spamd's site `local.cf`, next to copies of the system's `*.pre` files (`--siteconfigpath` replaces
/// /etc/spamassassin, so without them spamd would load no plugins).
fn local_cf(spam: &Spam) -> String {
    let mut text = String::new();
    text.push_str(&format!("# {GENERATED}\n"));
    text.push_str(
        "# SpamAssassin site configuration of the couchmail stack (spamd --siteconfigpath); docs/spam.md.\n\n",
    );
    text.push_str("# The verdict goes into X-Spam-* headers only: the message stays as sent, and Sieve files it.\n");
    text.push_str(&format!("required_score {}\n", spam.required_score));
    text.push_str("report_safe 0\n\n");
    text.push_str(
        "# Bayes per user: spamd's --virtual-config-dir gives each user a directory, and bayes_path must not\n",
    );
    text.push_str("# be set here, or every user would share one database. Users train by moving mail in and out of\n");
    text.push_str("# Junk; auto-learning would learn the filter's own mistakes.\n");
    text.push_str("use_bayes 1\n");
    text.push_str("bayes_auto_learn 0\n\n");
    if spam.network_tests {
        text.push_str("# Network tests are on: DNS blocklists, URI blocklists, SPF and DKIM.\n");
        text.push_str("dns_available yes\n");
        text.push_str("skip_rbl_checks 0\n");
    } else {
        text.push_str("# No network tests: no DNS blocklists, URI blocklists, SPF or DKIM lookups.\n");
        text.push_str("dns_available no\n");
        text.push_str("skip_rbl_checks 1\n");
    }
    text.push_str("# Collaborative checksum networks are never asked: they send message digests to third parties.\n");
    for (plugin, option) in [("Razor2", "use_razor2"), ("Pyzor", "use_pyzor"), ("DCC", "use_dcc")] {
        text.push_str(&format!("ifplugin Mail::SpamAssassin::Plugin::{plugin}\n{option} 0\nendif\n"));
    }
    text
}

/// The `sieve_before` script: scan as the recipient, then file spam into Junk and stop.
///
/// Pigeonhole runs the global and personal scripts as one sequence, and a script runs only if the one before it
/// ended with its (implicit) keep in force. `fileinto` cancels the implicit keep, so spam never reaches the user's
/// own script: no vacation reply and no forward goes to a spammer. Everything else ends here with the implicit
/// keep untouched, and the user's script sees the message with its X-Spam-* headers.
fn filter_sieve() -> String {
    format!(
        "# {GENERATED}\n\
         # Runs before the user's own script (sieve_before) on every delivery; docs/spam.md.\n\
         require [\"vnd.dovecot.filter\", \"vnd.dovecot.environment\", \"variables\", \"fileinto\", \"mailbox\"];\n\
         \n\
         # The wrapper runs spamc as the recipient (the Dovecot user name of this delivery). It fails when spamd\n\
         # cannot scan (down, too slow): the test is then false, the message stays as it was, and X-Spam headers\n\
         # a sender forged are not looked at. A message over the size limit comes back unscanned.\n\
         if filter \"{FILTER_PROGRAM}\" \"${{env.vnd.dovecot.username}}\" {{\n\
         \x20 if header :is \"X-Spam-Flag\" \"YES\" {{\n\
         \x20   fileinto :create \"{JUNK_MAILBOX}\";\n\
         \x20   stop;\n\
         \x20 }}\n\
         }}\n"
    )
}

/// The IMAPSieve script for a copy, move or append into Junk: learn it as spam for the logged-in user.
fn learn_spam_sieve() -> String {
    format!(
        "# {GENERATED}\n\
         # IMAPSieve: a message copied, moved or appended into {JUNK_MAILBOX} is spam for the logged-in user; docs/spam.md.\n\
         require [\"vnd.dovecot.pipe\", \"copy\", \"imapsieve\", \"environment\", \"variables\"];\n\
         \n\
         # imap.user is the authenticated user, never anything the message says, so nothing is learned for another user.\n\
         # :copy keeps the message: without it IMAPSieve would mark it deleted.\n\
         if environment :matches \"imap.user\" \"*\" {{\n\
         \x20 pipe :copy \"{LEARN_PROGRAM}\" [\"spam\", \"${{1}}\"];\n\
         }}\n"
    )
}

/// The IMAPSieve script for a copy or move out of Junk: learn it as ham, unless it went to Trash.
fn learn_ham_sieve() -> String {
    format!(
        "# {GENERATED}\n\
         # IMAPSieve: a message copied or moved out of {JUNK_MAILBOX} is ham for the logged-in user; docs/spam.md.\n\
         require [\"vnd.dovecot.pipe\", \"copy\", \"imapsieve\", \"environment\", \"variables\"];\n\
         \n\
         # Deleting spam says nothing about it, and a move within {JUNK_MAILBOX} is no verdict either.\n\
         # imap.mailbox is the destination of the copy or move.\n\
         if environment :matches \"imap.mailbox\" \"*\" {{\n\
         \x20 if string :matches \"${{1}}\" [\"{TRASH_MAILBOX}\", \"{TRASH_MAILBOX}.*\", \"{JUNK_MAILBOX}\", \"{JUNK_MAILBOX}.*\"] {{\n\
         \x20   stop;\n\
         \x20 }}\n\
         }}\n\
         if environment :matches \"imap.user\" \"*\" {{\n\
         \x20 pipe :copy \"{LEARN_PROGRAM}\" [\"ham\", \"${{1}}\"];\n\
         }}\n"
    )
}

/// The common spamc options: the socket, the time limit, the size limit, and `-x` so that a failure is an exit
/// status Dovecot logs instead of a silent pass-through.
fn spamc_command(spam: &Spam) -> String {
    format!(
        "{spamc} -x -U {socket} -t {timeout} -s {max_size}",
        spamc = path_text(&spam.spamc_program),
        socket = path_text(&spam.spamd_socket),
        timeout = spam.scan_timeout_secs,
        max_size = spam.max_scan_bytes,
    )
}

/// `couchmail-spamc USER`: Pigeonhole's filter program, the message on standard input, the scanned message out.
fn filter_wrapper(spam: &Spam) -> String {
    format!(
        "#!/bin/sh\n\
         # {GENERATED}\n\
         # couchmail-spamc USER: scans the message on standard input as USER with spamd and prints it with\n\
         # X-Spam-* headers added (Pigeonhole vnd.dovecot.filter); docs/spam.md.\n\
         # A failure exits non-zero, and the Sieve script then delivers the message as it was; a message over\n\
         # the size limit is printed back unscanned.\n\
         user=${{1-}}\n\
         {SHELL_ENCODE}\
         exec {command} -u \"$spamd_user\"\n",
        command = spamc_command(spam),
    )
}

/// `couchmail-learn spam|ham USER`: Pigeonhole's pipe program for training.
fn learn_wrapper(spam: &Spam) -> String {
    format!(
        "#!/bin/sh\n\
         # {GENERATED}\n\
         # couchmail-learn spam|ham USER: teaches USER's bayes database the message on standard input\n\
         # (Pigeonhole vnd.dovecot.pipe from IMAPSieve); docs/spam.md.\n\
         case ${{1-}} in\n\
         \x20 spam | ham) ;;\n\
         \x20 *) echo \"$0: the first argument must be spam or ham\" >&2; exit 64 ;;\n\
         esac\n\
         user=${{2-}}\n\
         {SHELL_ENCODE}\
         exec {command} -u \"$spamd_user\" -L \"$1\" >/dev/null\n",
        command = spamc_command(spam),
    )
}

/// Dovecot `plugin` settings for spam; `hook` is the administrator's own `sieve_before`, which runs second.
pub(crate) fn dovecot_plugin_settings(stack: &Stack, spam: &Spam) -> Vec<(String, String)> {
    let paths = &stack.paths;
    let config = |relative: &str| path_text(&paths.config_dir.join(relative));
    // The program may take the scan timeout; Pigeonhole's own limit comes a little later, so that spamc reports.
    let exec_timeout = format!("{}s", spam.scan_timeout_secs + 10);
    let mut settings = vec![
        ("sieve_plugins".to_owned(), "sieve_extprograms sieve_imapsieve".to_owned()),
        (
            "sieve_global_extensions".to_owned(),
            "+vnd.dovecot.filter +vnd.dovecot.pipe +vnd.dovecot.environment".to_owned(),
        ),
        ("sieve_filter_bin_dir".to_owned(), config(FILTER_BIN_DIR)),
        ("sieve_filter_exec_timeout".to_owned(), exec_timeout.clone()),
        ("sieve_pipe_bin_dir".to_owned(), config(PIPE_BIN_DIR)),
        ("sieve_pipe_exec_timeout".to_owned(), exec_timeout),
        ("sieve_before".to_owned(), config(SPAM_FILTER_SIEVE)),
    ];
    if let Some(hook) = &stack.sieve_before {
        settings.push(("sieve_before2".to_owned(), path_text(hook)));
    }
    settings.extend([
        ("imapsieve_mailbox1_name".to_owned(), JUNK_MAILBOX.to_owned()),
        ("imapsieve_mailbox1_causes".to_owned(), "COPY APPEND".to_owned()),
        ("imapsieve_mailbox1_before".to_owned(), format!("file:{}", config(SPAM_LEARN_SPAM_SIEVE))),
        ("imapsieve_mailbox2_name".to_owned(), "*".to_owned()),
        ("imapsieve_mailbox2_from".to_owned(), JUNK_MAILBOX.to_owned()),
        ("imapsieve_mailbox2_causes".to_owned(), "COPY".to_owned()),
        ("imapsieve_mailbox2_before".to_owned(), format!("file:{}", config(SPAM_LEARN_HAM_SIEVE))),
    ]);
    settings
}

impl Paths {
    /// spamd's `--siteconfigpath`: the rendered `local.cf` and the copied `*.pre` files.
    pub fn spamassassin_site_dir(&self) -> PathBuf {
        self.config_dir.join("spamassassin")
    }

    /// The global Sieve scripts of the spam filter, which must be compiled (`sievec`) after they are written:
    /// Dovecot runs them as vmail and cannot save the binaries next to root's files.
    pub fn spam_sieve_scripts(&self) -> [PathBuf; 3] {
        [SPAM_FILTER_SIEVE, SPAM_LEARN_SPAM_SIEVE, SPAM_LEARN_HAM_SIEVE].map(|relative| self.config_dir.join(relative))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_print_with_one_decimal() {
        for (tenths, text) in [(50, "5.0"), (65, "6.5"), (-15, "-1.5"), (-5, "-0.5"), (0, "0.0"), (1000, "100.0")] {
            assert_eq!(SpamScore::from_tenths(tenths).to_string(), text);
        }
    }

    #[test]
    fn scores_parse_with_at_most_one_decimal() {
        for (text, tenths) in [("5", 50), ("5.0", 50), ("6.5", 65), ("-1.5", -15), ("-0.5", -5), ("15", 150)] {
            assert_eq!(text.parse::<SpamScore>().unwrap().tenths(), tenths, "{text}");
        }
        for bad in ["", "-", "5.", ".5", "5.25", "five", "1e3", "+5", "1000", " 5", "5 "] {
            assert!(bad.parse::<SpamScore>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn plain_addresses_pass_unchanged_and_others_are_hex_encoded() {
        assert_eq!(spamd_user_name("alice@example.com"), "alice@example.com");
        assert_eq!(spamd_user_name("first.last+x-y@sub.example.com"), "first.last+x-y@sub.example.com");
        assert_eq!(spamd_user_name("a!b@example.com"), "=612162@example.com");
        assert_eq!(spamd_user_name("a_b@example.com"), "=615f62@example.com");
        assert_eq!(spamd_user_name("a/b@example.com"), "=612f62@example.com");
        // Addresses spamd would otherwise fold into one directory stay apart.
        assert_ne!(spamd_user_name("a!b@example.com"), spamd_user_name("a#b@example.com"));
        assert_eq!(user_dir(Path::new("/d"), "a/b@example.com"), Path::new("/d/example.com/=612f62"));
        assert_eq!(spamd_user_name("smtp@"), SMTP_SCAN_USER);
        assert_eq!(user_dir(Path::new("/d"), "..@.."), Path::new("/d/=2e2e/=2e2e"));
        assert_eq!(user_dir(Path::new("/d"), "smtp@"), Path::new("/d/=/smtp"));
    }

    #[test]
    fn program_paths_are_their_directories_and_names() {
        assert_eq!(SPAM_FILTER_PROGRAM, format!("{FILTER_BIN_DIR}/{FILTER_PROGRAM}"));
        assert_eq!(SPAM_LEARN_PROGRAM, format!("{PIPE_BIN_DIR}/{LEARN_PROGRAM}"));
    }

    #[test]
    fn user_prefs_carries_the_threshold() {
        let prefs = user_prefs(SpamScore::from_tenths(65));
        assert!(prefs.lines().any(|line| line == "required_score 6.5"), "{prefs}");
        assert!(prefs.starts_with("# Generated by couchmail"));
    }
}
