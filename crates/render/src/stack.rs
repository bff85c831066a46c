//! The input of rendering: where everything of one couchmail stack lives and how its daemons are reached.
//!
//! Plain data with the defaults of docs/runtime.md; `render` checks it before it writes a single line.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// Everything the Postfix and Dovecot configuration depends on.
///
/// Build one with [`Stack::dev`] or [`Stack::production`], then set what the
/// caller knows better (the host name, the auth secret) and hand it to
/// [`render`](crate::render).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    /// The machine's fully qualified name: Postfix's `myhostname`, Dovecot's `hostname`.
    pub hostname: String,
    /// Where the SMTP and IMAP listeners bind.
    pub listen: Listen,
    /// The public ports of Postfix and Dovecot.
    pub ports: Ports,
    /// Every file, directory and socket of the runtime layout.
    pub paths: Paths,
    /// The user and group that own the mail store.
    pub vmail: VmailIds,
    /// couchmail's internal HTTP endpoint that Dovecot's Lua passdb and userdb ask.
    pub auth_endpoint: AuthEndpoint,
    /// Seconds Dovecot waits before answering a failed login.
    pub auth_failure_delay_secs: u32,
    /// How long Dovecot may reuse an answer of the auth endpoint.
    pub auth_cache: AuthCache,
    /// The largest message Postfix accepts, in bytes (`message_size_limit`).
    pub message_size_limit: u64,
    /// A Sieve script every delivery runs before the user's own (Pigeonhole `sieve_before`).
    pub sieve_before: Option<PathBuf>,
    /// Whether Postfix delivers mail for other domains.
    pub outbound: Outbound,
    /// Dovecot's `postmaster_address`; `None` means `postmaster@<hostname>`.
    pub postmaster_address: Option<String>,
    /// SpamAssassin: scanning at delivery per recipient, training from IMAP, optionally refusing at SMTP time.
    /// `None` leaves it out of every file. [`Spam::new`](crate::Spam::new) gives the defaults for a layout.
    pub spam: Option<crate::Spam>,
    /// postscreen(8) in front of port 25 (pregreet and weighted DNSBL tests, an allowlist).
    /// `None` leaves plain smtpd on the port. [`Postscreen::default`](crate::Postscreen::default) is the
    /// production setting.
    pub postscreen: Option<crate::Postscreen>,
    /// Whether Postfix asks couchmail's policy service (`paths.policy_socket`) at RCPT on every
    /// port and at end of data on the submission ports; whoever runs the stack must serve it,
    /// or Postfix defers all mail (`451 4.3.5`).
    pub policy: bool,
}

impl Stack {
    /// The `--dev` layout: everything under `data_dir` (which must be absolute),
    /// listeners on 127.0.0.1 and high ports.
    ///
    /// The auth secret is empty and must be set: `render` refuses an empty one.
    pub fn dev(data_dir: impl Into<PathBuf>) -> Stack {
        let data_dir = data_dir.into();
        let run_dir = data_dir.join("run");
        Stack {
            listen: Listen::Address(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ports: Ports { smtp: 2525, submissions: 4465, submission: 2587, imaps: 9993 },
            paths: Paths::new(data_dir, run_dir),
            ..Stack::production()
        }
    }

    /// The production layout: data in `/var/lib/couchmail`, runtime files in
    /// `/run/couchmail`, listeners on every interface and the standard ports.
    ///
    /// The host name is `localhost` and the auth secret is empty: the caller
    /// sets both (`render` refuses an empty secret).
    pub fn production() -> Stack {
        Stack {
            hostname: "localhost".to_owned(),
            listen: Listen::AllInterfaces,
            ports: Ports { smtp: 25, submissions: 465, submission: 587, imaps: 993 },
            paths: Paths::new("/var/lib/couchmail", "/run/couchmail"),
            vmail: VmailIds { uid: 5000, gid: 5000 },
            auth_endpoint: AuthEndpoint { base_url: "http://127.0.0.1:8091".to_owned(), secret: String::new() },
            auth_failure_delay_secs: 2,
            auth_cache: AuthCache::default(),
            message_size_limit: 25 * 1024 * 1024,
            sieve_before: None,
            outbound: Outbound::Direct,
            postmaster_address: None,
            spam: None,
            postscreen: Some(crate::Postscreen::default()),
            // `couchmail up` serves the policy socket (`paths.policy_socket`).
            policy: true,
        }
    }
}

/// Where listeners bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// Every IPv4 and IPv6 address of the machine.
    AllInterfaces,
    /// One address, for example 127.0.0.1 in development and tests.
    Address(IpAddr),
}

/// The public ports; all four must differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// SMTP for other mail servers (MX): STARTTLS offered, no AUTH.
    pub smtp: u16,
    /// Submission with STARTTLS required and AUTH (RFC 6409).
    pub submission: u16,
    /// Submission over implicit TLS with AUTH (RFC 8314).
    pub submissions: u16,
    /// IMAP over implicit TLS (RFC 8314).
    pub imaps: u16,
}

/// The runtime layout of docs/runtime.md. Every path must be absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// couchmail's data directory (root, 0711, not the 0750 docs/runtime.md
    /// first said: vmail must pass through it to the mail homes and the
    /// `postfix` user to its data directory; 0711 lets them pass without listing).
    pub data_dir: PathBuf,
    /// The SQLite store.
    pub store: PathBuf,
    /// Mail homes live below it as `<domain>/<local>` (vmail, 0700).
    pub mail_dir: PathBuf,
    /// The TLS certificate chain in PEM, leaf first.
    pub tls_certificate: PathBuf,
    /// The TLS private key in PEM (root, 0600).
    pub tls_key: PathBuf,
    /// Postfix's `queue_directory` (root-owned, Postfix creates what is inside).
    pub postfix_queue_dir: PathBuf,
    /// Postfix's `data_directory` (owned by the `postfix` user).
    pub postfix_data_dir: PathBuf,
    /// Dovecot's `state_dir`.
    pub dovecot_state_dir: PathBuf,
    /// The directory of the daemons' log files (root, 0750).
    pub log_dir: PathBuf,
    /// Postfix's `maillog_file`; must lie inside `log_dir`.
    pub postfix_log: PathBuf,
    /// Dovecot's `log_path`.
    pub dovecot_log: PathBuf,
    /// The runtime directory (root, 0755).
    pub run_dir: PathBuf,
    /// Where the rendered files are written; the keys of [`Rendered`](crate::Rendered) are relative to it.
    pub config_dir: PathBuf,
    /// couchmail's Postfix socketmap server.
    pub socketmap_socket: PathBuf,
    /// couchmail's Dovecot dict server (Sieve scripts).
    pub dict_socket: PathBuf,
    /// couchmail's Postfix policy service (listings, greylisting, sending limits).
    pub policy_socket: PathBuf,
    /// Dovecot's LMTP listener for Postfix.
    pub lmtp_socket: PathBuf,
    /// Dovecot's SASL auth listener for Postfix.
    pub auth_socket: PathBuf,
    /// Dovecot's `base_dir`.
    pub dovecot_base_dir: PathBuf,
}

impl Paths {
    /// The layout of docs/runtime.md below a data directory and a runtime directory.
    pub fn new(data_dir: impl Into<PathBuf>, run_dir: impl Into<PathBuf>) -> Paths {
        let data_dir = data_dir.into();
        let run_dir = run_dir.into();
        let log_dir = data_dir.join("log");
        Paths {
            store: data_dir.join("couchmail.db"),
            mail_dir: data_dir.join("mail"),
            tls_certificate: data_dir.join("tls/cert.pem"),
            tls_key: data_dir.join("tls/key.pem"),
            postfix_queue_dir: data_dir.join("postfix/spool"),
            postfix_data_dir: data_dir.join("postfix/data"),
            dovecot_state_dir: data_dir.join("dovecot/state"),
            postfix_log: log_dir.join("postfix.log"),
            dovecot_log: log_dir.join("dovecot.log"),
            log_dir,
            config_dir: run_dir.clone(),
            socketmap_socket: run_dir.join("socketmap"),
            dict_socket: run_dir.join("dict"),
            policy_socket: run_dir.join("policy"),
            lmtp_socket: run_dir.join("dovecot/lmtp"),
            auth_socket: run_dir.join("dovecot/auth-postfix"),
            dovecot_base_dir: run_dir.join("dovecot/base"),
            run_dir,
            data_dir,
        }
    }

    /// The directory to pass to `postfix -c`.
    pub fn postfix_config_dir(&self) -> PathBuf {
        self.config_dir.join("postfix")
    }

    /// The file to pass to `dovecot -c` and `doveconf -c`.
    pub fn dovecot_config_file(&self) -> PathBuf {
        self.config_dir.join(DOVECOT_CONF)
    }

    /// The rendered Lua passdb and userdb script.
    pub fn dovecot_auth_script(&self) -> PathBuf {
        self.config_dir.join(DOVECOT_AUTH_LUA)
    }

    /// Every path with the name of its field, in declaration order, so that checks can name the culprit.
    pub(crate) fn named(&self) -> [(&'static str, &Path); 19] {
        [
            ("paths.data_dir", &self.data_dir),
            ("paths.store", &self.store),
            ("paths.mail_dir", &self.mail_dir),
            ("paths.tls_certificate", &self.tls_certificate),
            ("paths.tls_key", &self.tls_key),
            ("paths.postfix_queue_dir", &self.postfix_queue_dir),
            ("paths.postfix_data_dir", &self.postfix_data_dir),
            ("paths.dovecot_state_dir", &self.dovecot_state_dir),
            ("paths.log_dir", &self.log_dir),
            ("paths.postfix_log", &self.postfix_log),
            ("paths.dovecot_log", &self.dovecot_log),
            ("paths.run_dir", &self.run_dir),
            ("paths.config_dir", &self.config_dir),
            ("paths.socketmap_socket", &self.socketmap_socket),
            ("paths.dict_socket", &self.dict_socket),
            ("paths.policy_socket", &self.policy_socket),
            ("paths.lmtp_socket", &self.lmtp_socket),
            ("paths.auth_socket", &self.auth_socket),
            ("paths.dovecot_base_dir", &self.dovecot_base_dir),
        ]
    }
}

/// Relative path of Postfix's main.cf inside the configuration directory.
pub const POSTFIX_MAIN_CF: &str = "postfix/main.cf";
/// Relative path of Postfix's master.cf inside the configuration directory.
pub const POSTFIX_MASTER_CF: &str = "postfix/master.cf";
/// Relative path of dovecot.conf inside the configuration directory.
pub const DOVECOT_CONF: &str = "dovecot/dovecot.conf";
/// Relative path of the Lua passdb and userdb script inside the configuration directory.
pub const DOVECOT_AUTH_LUA: &str = "dovecot/auth.lua";

/// The numeric user and group that own the mail store (`vmail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmailIds {
    /// User id; also Dovecot's `first_valid_uid` and `last_valid_uid`.
    pub uid: u32,
    /// Group id; also Dovecot's `first_valid_gid` and `last_valid_gid`.
    pub gid: u32,
}

/// couchmail's internal HTTP endpoint for Dovecot (docs/runtime.md, "Dovecot auth over HTTP").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthEndpoint {
    /// `http://<IP literal>:<port>`, optionally followed by a path prefix.
    pub base_url: String,
    /// The bearer secret; written only into the Lua script (root:dovecot 0640).
    pub secret: String,
}

/// Dovecot's auth cache (`auth_cache_size`, `auth_cache_ttl`, `auth_cache_negative_ttl`).
///
/// A cached answer outlives a change in couchmail: an old password keeps
/// working and a removed mailbox keeps logging in for up to `ttl_secs`,
/// unless couchmail flushes the cache (`doveadm auth cache flush`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthCache {
    /// Memory for cached answers, in bytes.
    pub size_bytes: u64,
    /// How long a positive answer is reused, in seconds.
    pub ttl_secs: u32,
    /// How long "unknown user" is reused, in seconds.
    pub negative_ttl_secs: u32,
}

impl Default for AuthCache {
    /// 10 MiB, one minute for answers and five seconds for unknown users, so
    /// that a mailbox created right after a failed login works almost at once.
    fn default() -> AuthCache {
        AuthCache { size_bytes: 10 * 1024 * 1024, ttl_secs: 60, negative_ttl_secs: 5 }
    }
}

/// What Postfix does with mail for domains it does not serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    /// Deliver it directly to the recipient's MX (`default_transport = smtp`).
    Direct,
    /// Bounce it (`default_transport = error:…`): tests use this so that nothing ever leaves the machine.
    Error,
}
