//! Configuration: `couchmail.toml`, environment overrides and flags, in two
//! stages (STYLE.md rule 23).
//!
//! [`RawConfig`] mirrors the file: every key optional, unknown keys refused.
//! [`Config::load`] layers the sources — built-in defaults, then the file,
//! then `COUCHMAIL_*` environment variables, then flags — and validates the
//! result into a [`Config`] the rest of the binary uses without further
//! checks.
//! Every error names where the bad value came from (the file, the variable or
//! the flag), the key, and what to write instead.
//!
//! This module does not read the environment itself: `main` hands it the
//! variables, so that the layering can be tested with plain maps. The one
//! default it cannot know — the machine's host name — stays `None` in
//! [`Config::hostname`] for `up` and `render` to ask the system.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use couchmail_greylist::GreylistConfig;
use couchmail_model::{IpNetwork, MAX_HOURLY_LIMIT};
use couchmail_policy::PolicyConfig;
use couchmail_render::{Cidr, DnsblSite, Listen, MAX_GREET_WAIT_SECS, Outbound, Ports, Postscreen, SpamScore};
use serde::Deserialize;
use tracing_subscriber::filter::LevelFilter;

/// The file read when neither `--config` nor `$COUCHMAIL_CONFIG` names one.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/couchmail/couchmail.toml";
/// The variable that names the configuration file.
pub const CONFIG_ENV: &str = "COUCHMAIL_CONFIG";
/// The variable that may carry the CouchDB password instead of `couchdb.password_file`.
pub const COUCHDB_PASSWORD_ENV: &str = "COUCHMAIL_COUCHDB_PASSWORD";
/// Where `couchmail up --dev` keeps its data unless told otherwise.
pub const DEV_DATA_DIR: &str = "./.couchmail-dev";
/// The API port when none is configured.
const DEFAULT_API_PORT: u16 = 8080;
/// Where the Dovecot auth endpoint listens when nothing is configured.
const DEFAULT_AUTH_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8091);
/// The public ports of docs/runtime.md.
const PRODUCTION_PORTS: Ports = Ports { smtp: 25, submission: 587, submissions: 465, imaps: 993 };
/// The public ports under `--dev`.
const DEV_PORTS: Ports = Ports { smtp: 2525, submission: 2587, submissions: 4465, imaps: 9993 };
/// The ManageSieve port (RFC 5804's registered port) when nothing is configured.
const MANAGESIEVE_PORT: u16 = 4190;
/// The ManageSieve port under `--dev`.
const DEV_MANAGESIEVE_PORT: u16 = 14190;
/// Postfix's `message_size_limit` when nothing is configured.
const DEFAULT_MESSAGE_SIZE_LIMIT: u64 = 25 << 20;

/// One configuration key: how it is spelled in the file and in the
/// environment, its default and what it does. The key table of
/// `docs/config.md` is generated from [`KEYS`] (STYLE.md rule 24): a unit
/// test fails when it is stale, and `UPDATE_EXPECT=1` rewrites it.
pub struct KeyDoc {
    /// The key in `couchmail.toml`, dotted for tables (`api.listen`).
    pub key: &'static str,
    /// The environment variable that overrides it.
    pub env: &'static str,
    /// The default, as a person would write it.
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the docs/config.md generator, a test"))]
    pub default: &'static str,
    /// What it does.
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the docs/config.md generator, a test"))]
    pub about: &'static str,
}

/// Every key, in the order `docs/config.md` lists them.
pub const KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "store",
        env: "COUCHMAIL_STORE",
        default: "`sqlite:<data_dir>/couchmail.db`",
        about: "Where the documents live. `sqlite:PATH` (also `sqlite://PATH`) is the embedded store in one file. \
                `couchdb:http://HOST:PORT/DATABASE` (or `couchdb:https://…`) is a database on Apache CouchDB 3.x, \
                created on first use together with its validation function and indexes; the last path segment \
                names the database. Credentials never go into the URL (one with `user:password@` is refused): set \
                `couchdb.username` and `couchdb.password_file`.",
    },
    KeyDoc {
        key: "couchdb.username",
        env: "COUCHMAIL_COUCHDB_USERNAME",
        default: "none: no authentication",
        about: "The CouchDB user couchmail logs in as (HTTP basic authentication), for a `couchdb:` store. It is made \
                the database's only member (`_security`), so that other CouchDB users cannot read the password \
                hashes. Needs a password: `couchdb.password_file` or `COUCHMAIL_COUCHDB_PASSWORD`.",
    },
    KeyDoc {
        key: "couchdb.password_file",
        env: "COUCHMAIL_COUCHDB_PASSWORD_FILE",
        default: "none",
        about: "A file holding the password of `couchdb.username` on its first line, read once at start. It must be \
                readable by its owner only (mode 0600 or 0400): a file that group or others may read is refused. \
                Instead of a file, the environment variable `COUCHMAIL_COUCHDB_PASSWORD` may carry the password \
                (not both). The password is never logged or printed, and never goes into the configuration file.",
    },
    KeyDoc {
        key: "couchdb.ca_file",
        env: "COUCHMAIL_COUCHDB_CA_FILE",
        default: "none: the system's authorities",
        about: "PEM certificates of extra authorities to trust for a `couchdb:https://` store, for a CouchDB \
                behind a private CA.",
    },
    KeyDoc {
        key: "data_dir",
        env: "COUCHMAIL_DATA_DIR",
        default: "`/var/lib/couchmail`; with `--dev`: `./.couchmail-dev`",
        about: "couchmail's own files: the default SQLite store, `admin-token` (the first admin's bearer token, mode \
                0600, written on first run), the self-signed certificate (`tls/`), the mail homes (`mail/`), \
                Postfix's queue, Dovecot's state and the daemons' logs (`log/`); docs/runtime.md lists them. `up` \
                creates it with mode 0711, so that `vmail` and `postfix` can reach their subdirectories.",
    },
    KeyDoc {
        key: "runtime_dir",
        env: "COUCHMAIL_RUNTIME_DIR",
        default: "`/run/couchmail`; with `--dev`: `<data_dir>/run`",
        about: "Sockets and files that live as long as `couchmail up` runs: the rendered Postfix and Dovecot \
                configuration, the socketmap and dict sockets, Dovecot's sockets. `up` creates it with mode 0755.",
    },
    KeyDoc {
        key: "hostname",
        env: "COUCHMAIL_HOSTNAME",
        default: "the machine's fully qualified name (`hostname --fqdn`); with `--dev`: `localhost`",
        about: "The name the mail server greets with (Postfix's `myhostname`, Dovecot's `hostname`) and the name \
                of the self-signed certificate. Letters, digits, `-` and dots.",
    },
    KeyDoc {
        key: "api.listen",
        env: "COUCHMAIL_API_LISTEN",
        default: "`127.0.0.1:8080`",
        about: "IP address and port of the REST API and the web UI (`[::1]:8080` for IPv6, `0.0.0.0:8443` for every \
                IPv4 address; host names are not resolved; port 0 picks a free port, which `up` prints). A \
                non-loopback address needs TLS (`api.tls`). With `--dev` a non-loopback address is replaced by \
                `127.0.0.1` with the same port.",
    },
    KeyDoc {
        key: "api.tls",
        env: "COUCHMAIL_API_TLS",
        default: "`auto`",
        about: "Whether the API and web UI listener speaks HTTPS, with the stack's certificate (`tls.cert` and \
                `tls.key`, or the self-signed one) and TLS 1.2 or 1.3 only, as the mail ports. `auto`: HTTPS when \
                `api.listen` is not a loopback address, plain HTTP on loopback. `on`: HTTPS on any address. `off`: \
                plain HTTP, accepted on a loopback address only (for a TLS proxy on the same host, which should \
                send `X-Forwarded-Proto: https`). Under HTTPS the web UI's cookies are `Secure`.",
    },
    KeyDoc {
        key: "mail.listen",
        env: "COUCHMAIL_MAIL_LISTEN",
        default: "`all`; with `--dev`: `127.0.0.1`",
        about: "Where Postfix's SMTP ports and Dovecot's IMAPS port listen: `all` (every IPv4 and IPv6 address) or \
                one IP address.",
    },
    KeyDoc {
        key: "mail.smtp_port",
        env: "COUCHMAIL_MAIL_SMTP_PORT",
        default: "`25`; with `--dev`: `2525`",
        about: "SMTP for other mail servers (MX): STARTTLS offered, no AUTH, mail only for the domains couchmail serves.",
    },
    KeyDoc {
        key: "mail.submission_port",
        env: "COUCHMAIL_MAIL_SUBMISSION_PORT",
        default: "`587`; with `--dev`: `2587`",
        about: "Submission for mail clients: STARTTLS required, then AUTH.",
    },
    KeyDoc {
        key: "mail.submissions_port",
        env: "COUCHMAIL_MAIL_SUBMISSIONS_PORT",
        default: "`465`; with `--dev`: `4465`",
        about: "Submission for mail clients over implicit TLS, then AUTH.",
    },
    KeyDoc {
        key: "mail.imaps_port",
        env: "COUCHMAIL_MAIL_IMAPS_PORT",
        default: "`993`; with `--dev`: `9993`",
        about: "IMAP over implicit TLS (there is no plain IMAP port).",
    },
    KeyDoc {
        key: "mail.outbound",
        env: "COUCHMAIL_MAIL_OUTBOUND",
        default: "`direct`",
        about: "What Postfix does with mail for other domains: `direct` delivers it to the recipient's MX; \
                `disabled` bounces it, so that nothing ever leaves the machine (tests, trial runs).",
    },
    KeyDoc {
        key: "mail.auth_failure_delay_secs",
        env: "COUCHMAIL_MAIL_AUTH_FAILURE_DELAY_SECS",
        default: "`2`",
        about: "Seconds Dovecot waits before answering a failed login (slows password guessing; tests use 0).",
    },
    KeyDoc {
        key: "mail.daemons",
        env: "COUCHMAIL_MAIL_DAEMONS",
        default: "`true`",
        about: "Whether `up` runs Postfix and Dovecot itself (as root). `false` (also `up --no-daemons`) runs only \
                couchmail's own servers — API, socketmap, dict, auth endpoint — for Postfix and Dovecot managed \
                elsewhere with the files of `couchmail render`.",
    },
    KeyDoc {
        key: "mail.message_size_limit",
        env: "COUCHMAIL_MAIL_MESSAGE_SIZE_LIMIT",
        default: "`25M`",
        about: "The largest message Postfix accepts: bytes, or a number with K, M or G (powers of 1024).",
    },
    KeyDoc {
        key: "postscreen.enabled",
        env: "COUCHMAIL_POSTSCREEN_ENABLED",
        default: "`true`",
        about: "Whether postscreen(8) answers port 25 before smtpd: a client that talks before its turn (pregreet) \
                or whose weighted DNSBL score reaches `postscreen.dnsbl_threshold` is refused at RCPT TO with a 550 \
                that says why; a client that passes is remembered (in Postfix's data directory) and handed to smtpd \
                at once on later visits. `false` leaves smtpd alone on port 25.",
    },
    KeyDoc {
        key: "postscreen.dnsbl_sites",
        env: "COUCHMAIL_POSTSCREEN_DNSBL_SITES",
        default: "`[\"zen.spamhaus.org=127.0.0.[2..11]*3\", \"bl.spamcop.net=127.0.0.2*2\", \
                  \"b.barracudacentral.org=127.0.0.2*2\", \"psbl.surriel.com=127.0.0.2\", \
                  \"list.dnswl.org=127.0.[0..255].0*-2\", \"list.dnswl.org=127.0.[0..255].1*-3\", \
                  \"list.dnswl.org=127.0.[0..255].[2..3]*-4\"]`",
        about: "The DNS blocklists postscreen asks about every new client, as Postfix writes them: \
                `zone[=reply pattern][*weight]` (postconf(5), `postscreen_dnsbl_sites`); a client's score is the sum \
                of the weights of the lists that name it, and allowlists (DNSWL) carry negative weights. The reply \
                pattern keeps a list's error answers from counting as listings. `[]` turns the DNSBL test off; in \
                the environment, separate entries with commas. Public DNSBLs refuse queries that come through large \
                public resolvers (8.8.8.8, 1.1.1.1, often a cloud provider's): run a recursive resolver on the mail \
                server itself (unbound or Knot Resolver on 127.0.0.1, in /etc/resolv.conf), or the lists answer \
                nothing. Barracuda answers registered resolvers only.",
    },
    KeyDoc {
        key: "postscreen.dnsbl_threshold",
        env: "COUCHMAIL_POSTSCREEN_DNSBL_THRESHOLD",
        default: "`3`",
        about: "The DNSBL score at which a client is refused (1 to 100). With the default sites Spamhaus ZEN alone \
                refuses; SpamCop or Barracuda alone does not.",
    },
    KeyDoc {
        key: "postscreen.dnsbl_allowlist_threshold",
        env: "COUCHMAIL_POSTSCREEN_DNSBL_ALLOWLIST_THRESHOLD",
        default: "`-1`",
        about: "A DNSBL score at or below which a client skips postscreen's other tests (-100 to 0; 0 turns this \
                off): with the default sites, a DNSWL listing that no blocklist outweighs.",
    },
    KeyDoc {
        key: "postscreen.allowlist",
        env: "COUCHMAIL_POSTSCREEN_ALLOWLIST",
        default: "`[\"127.0.0.0/8\", \"::1/128\"]`",
        about: "Client networks that skip every postscreen test (CIDR, such as `\"192.0.2.0/24\"`, or single \
                addresses; host bits must be zero); in the environment, separated by commas. Nothing else is \
                trusted by address (`mynetworks` is not used). Loopback is listed so that local programs and \
                monitoring reach smtpd at once; a proxy on this host that forwards port 25 would make every client \
                loopback, so remove it there. `[]` screens everyone.",
    },
    KeyDoc {
        key: "postscreen.greet_wait_secs",
        env: "COUCHMAIL_POSTSCREEN_GREET_WAIT_SECS",
        default: "Postfix's: 6, or 2 under stress",
        about: "How long postscreen waits, with a new client, for a pregreeting client and for the DNSBL answers \
                (1 to 60 seconds). Every new client waits this long once.",
    },
    KeyDoc {
        key: "policy.greylisting",
        env: "COUCHMAIL_POLICY_GREYLISTING",
        default: "`true`",
        about: "Whether mail from a client, sender and recipient never seen together is deferred once (451 4.7.1 \
                Greylisted) and accepted when the client retries after `policy.greylist_delay_secs`. A domain or \
                mailbox overrides it with its `greylisting` setting. Clients that log in, clients in \
                `policy.trusted_networks` and clients, senders and recipients on an allow listing are never \
                greylisted. The state lives in `<data_dir>/greylist.db` and survives restarts.",
    },
    KeyDoc {
        key: "policy.greylist_delay_secs",
        env: "COUCHMAIL_POLICY_GREYLIST_DELAY_SECS",
        default: "`300`",
        about: "How long a greylisted client must wait before its retry is accepted (seconds).",
    },
    KeyDoc {
        key: "policy.greylist_retry_window_secs",
        env: "COUCHMAIL_POLICY_GREYLIST_RETRY_WINDOW_SECS",
        default: "`86400`",
        about: "How long after the first attempt a retry still counts (seconds, longer than the delay); a later \
                retry starts over.",
    },
    KeyDoc {
        key: "policy.greylist_expiry_days",
        env: "COUCHMAIL_POLICY_GREYLIST_EXPIRY_DAYS",
        default: "`35`",
        about: "How long a client, sender and recipient that passed stay known without new mail (days).",
    },
    KeyDoc {
        key: "policy.greylist_auto_allow_after",
        env: "COUCHMAIL_POLICY_GREYLIST_AUTO_ALLOW_AFTER",
        default: "`5`",
        about: "After this many passed triplets, a client network is no longer greylisted at all; `0` turns this \
                off.",
    },
    KeyDoc {
        key: "policy.allow_clients",
        env: "COUCHMAIL_POLICY_ALLOW_CLIENTS",
        default: "`[]`",
        about: "Client networks never greylisted (CIDR or single addresses); in the environment, separated by \
                commas.",
    },
    KeyDoc {
        key: "policy.allow_sender_domains",
        env: "COUCHMAIL_POLICY_ALLOW_SENDER_DOMAINS",
        default: "`[]`",
        about: "Sender domains never greylisted (`example.com`; `.example.com` also covers its subdomains).",
    },
    KeyDoc {
        key: "policy.allow_recipients",
        env: "COUCHMAIL_POLICY_ALLOW_RECIPIENTS",
        default: "`[]`",
        about: "Recipient addresses (`postmaster@example.com`) or domains (`example.com`) never greylisted.",
    },
    KeyDoc {
        key: "policy.trusted_networks",
        env: "COUCHMAIL_POLICY_TRUSTED_NETWORKS",
        default: "`[\"127.0.0.0/8\", \"::1/128\"]`",
        about: "Client networks that are never greylisted and, unless they log in, never rate-limited: local \
                programs, monitoring, your own relays. Loopback is trusted by default, so mail injected on this \
                host is never greylisted; a proxy on this host that forwards port 25 would make every client \
                loopback, so remove it there. Block listings still apply. `[]` trusts no one.",
    },
    KeyDoc {
        key: "policy.messages_per_hour",
        env: "COUCHMAIL_POLICY_MESSAGES_PER_HOUR",
        default: "`200`",
        about: "Messages a logged-in user may send in any hour unless its mailbox or domain says otherwise; over \
                it, the next message is deferred (450 4.7.1). `0` means no limit.",
    },
    KeyDoc {
        key: "policy.recipients_per_hour",
        env: "COUCHMAIL_POLICY_RECIPIENTS_PER_HOUR",
        default: "`1000`",
        about: "Recipients a logged-in user may send to in any hour, summed over its messages, unless its mailbox \
                or domain says otherwise. `0` means no limit.",
    },
    KeyDoc {
        key: "spam.enabled",
        env: "COUCHMAIL_SPAM_ENABLED",
        default: "`true`; `false` with `--dev`",
        about: "Whether `up` runs SpamAssassin (spamd, and spamass-milter for `spam.smtp_reject_score`; their Debian \
                packages are installed with Postfix's). Every message is scanned at delivery as its recipient, with \
                that user's threshold and bayes database, and spam is filed into Junk before the user's own Sieve \
                script; moving mail into Junk trains it as spam, out of Junk as ham. spamd costs about 170 MiB. With \
                `mail.daemons = false`, `render` writes the configuration for it but `up` runs nothing.",
    },
    KeyDoc {
        key: "spam.threshold",
        env: "COUCHMAIL_SPAM_THRESHOLD",
        default: "`5.0`",
        about: "The site-wide score at or above which a message is spam and filed into Junk (0.0 to 100.0, one \
                decimal). A mailbox's `spam_threshold`, else its domain's, overrides it for that mailbox.",
    },
    KeyDoc {
        key: "spam.smtp_reject_score",
        env: "COUCHMAIL_SPAM_SMTP_REJECT_SCORE",
        default: "`15`",
        about: "The score at or above which Postfix refuses a message at SMTP time (550 5.7.1), before it is queued: \
                a whole number above `spam.threshold`; `0` turns the refusal off. It is site-wide because the milter \
                scans once per message, whoever the recipients are: the `spam_reject` of a domain or mailbox is \
                stored and shown but not used yet.",
    },
    KeyDoc {
        key: "managesieve.enabled",
        env: "COUCHMAIL_MANAGESIEVE_ENABLED",
        default: "`true`",
        about: "Whether `up` serves ManageSieve (RFC 5804, docs/managesieve.md), so that mail clients can upload and \
                activate their Sieve scripts. It listens on `mail.listen`'s address, offers STARTTLS with the \
                certificate of the mail ports and accepts passwords only after it.",
    },
    KeyDoc {
        key: "managesieve.port",
        env: "COUCHMAIL_MANAGESIEVE_PORT",
        default: "`4190`; with `--dev`: `14190`",
        about: "The ManageSieve port. When it is not configured and the port is taken (by a system Dovecot's \
                managesieved, say), `up` warns and runs without ManageSieve; a configured port that cannot be \
                bound stops `up`.",
    },
    KeyDoc {
        key: "managesieve.max_scripts",
        env: "COUCHMAIL_MANAGESIEVE_MAX_SCRIPTS",
        default: "`32`",
        about: "The most Sieve scripts one mailbox may keep through ManageSieve (`NO (QUOTA/MAXSCRIPTS)` beyond).",
    },
    KeyDoc {
        key: "managesieve.max_script_bytes",
        env: "COUCHMAIL_MANAGESIEVE_MAX_SCRIPT_BYTES",
        default: "`262144`",
        about: "The largest script accepted through ManageSieve, in bytes (`NO (QUOTA/MAXSIZE)` beyond; a larger \
                literal is read and discarded). At most 262144, the store's own limit.",
    },
    KeyDoc {
        key: "managesieve.max_connections",
        env: "COUCHMAIL_MANAGESIEVE_MAX_CONNECTIONS",
        default: "`256`",
        about: "ManageSieve connections served at once; more wait in the kernel's listen queue.",
    },
    KeyDoc {
        key: "tls.cert",
        env: "COUCHMAIL_TLS_CERT",
        default: "none: a self-signed certificate in `<data_dir>/tls/cert.pem`",
        about: "The TLS certificate chain (PEM, leaf first) of the SMTP and IMAP ports. Set it together with \
                `tls.key`. Without both, `up` makes a self-signed certificate for `hostname`, `localhost` and \
                127.0.0.1 once and reuses it; mail clients will warn about it.",
    },
    KeyDoc {
        key: "tls.key",
        env: "COUCHMAIL_TLS_KEY",
        default: "none: `<data_dir>/tls/key.pem` (mode 0600)",
        about: "The private key (PEM) of `tls.cert`; keep it mode 0600, readable by root only.",
    },
    KeyDoc {
        key: "auth.listen",
        env: "COUCHMAIL_AUTH_LISTEN",
        default: "`127.0.0.1:8091`",
        about: "IP address and port of the internal endpoint Dovecot's Lua passdb and userdb ask \
                (docs/runtime.md). Loopback only.",
    },
    KeyDoc {
        key: "log.level",
        env: "COUCHMAIL_LOG_LEVEL",
        default: "`info` for `up`, `warn` for other commands",
        about: "`off`, `error`, `warn`, `info`, `debug` or `trace`. `RUST_LOG`, when set, takes precedence and \
                accepts per-module directives (`RUST_LOG=couchmail_index=debug`).",
    },
    KeyDoc {
        key: "log.format",
        env: "COUCHMAIL_LOG_FORMAT",
        default: "`text`",
        about: "`text` (one line per event) or `json` (one object per event), on stderr.",
    },
];

/// `couchmail.toml` as written: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `store = "sqlite:/var/lib/couchmail/couchmail.db"`
    pub store: Option<String>,
    /// `data_dir = "/var/lib/couchmail"`
    pub data_dir: Option<String>,
    /// `runtime_dir = "/run/couchmail"`
    pub runtime_dir: Option<String>,
    /// `hostname = "mail.example.com"`
    pub hostname: Option<String>,
    /// `[couchdb]`
    #[serde(default)]
    pub couchdb: RawCouchDb,
    /// `[api]`
    #[serde(default)]
    pub api: RawApi,
    /// `[mail]`
    #[serde(default)]
    pub mail: RawMail,
    /// `[postscreen]`
    #[serde(default)]
    pub postscreen: RawPostscreen,
    /// `[policy]`
    #[serde(default)]
    pub policy: RawPolicy,
    /// `[spam]`
    #[serde(default)]
    pub spam: RawSpam,
    /// `[managesieve]`
    #[serde(default)]
    pub managesieve: RawManageSieve,
    /// `[tls]`
    #[serde(default)]
    pub tls: RawTls,
    /// `[auth]`
    #[serde(default)]
    pub auth: RawAuth,
    /// `[log]`
    #[serde(default)]
    pub log: RawLog,
}

/// The `[couchdb]` table. There is deliberately no `password` key: the
/// password lives in a file of its own (or the environment), never here.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawCouchDb {
    /// `username = "couchmail"`
    pub username: Option<String>,
    /// `password_file = "/etc/couchmail/couchdb-password"`
    pub password_file: Option<String>,
    /// `ca_file = "/etc/couchmail/couchdb-ca.pem"`
    pub ca_file: Option<String>,
}

/// The `[api]` table.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// `listen = "127.0.0.1:8080"`
    pub listen: Option<String>,
    /// `tls = "auto"`, `"on"` or `"off"`
    pub tls: Option<String>,
}

/// The `[mail]` table.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawMail {
    /// `listen = "all"`
    pub listen: Option<String>,
    /// `smtp_port = 25`
    pub smtp_port: Option<u16>,
    /// `submission_port = 587`
    pub submission_port: Option<u16>,
    /// `submissions_port = 465`
    pub submissions_port: Option<u16>,
    /// `imaps_port = 993`
    pub imaps_port: Option<u16>,
    /// `outbound = "direct"`
    pub outbound: Option<String>,
    /// `auth_failure_delay_secs = 2`
    pub auth_failure_delay_secs: Option<u32>,
    /// `daemons = true`
    pub daemons: Option<bool>,
    /// `message_size_limit = "25M"` or `26214400`
    pub message_size_limit: Option<RawSize>,
}

/// A size written as a number of bytes or as text with a unit.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum RawSize {
    /// `26214400`
    Bytes(u64),
    /// `"25M"`
    Text(String),
}

/// The `[postscreen]` table.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawPostscreen {
    /// `enabled = true`
    pub enabled: Option<bool>,
    /// `dnsbl_sites = ["zen.spamhaus.org=127.0.0.[2..11]*3"]`
    pub dnsbl_sites: Option<Vec<String>>,
    /// `dnsbl_threshold = 3`
    pub dnsbl_threshold: Option<i64>,
    /// `dnsbl_allowlist_threshold = -1`
    pub dnsbl_allowlist_threshold: Option<i64>,
    /// `allowlist = ["127.0.0.0/8", "::1/128"]`
    pub allowlist: Option<Vec<String>>,
    /// `greet_wait_secs = 6`
    pub greet_wait_secs: Option<i64>,
}

/// The `[policy]` table.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// `greylisting = true`
    pub greylisting: Option<bool>,
    /// `greylist_delay_secs = 300`
    pub greylist_delay_secs: Option<u64>,
    /// `greylist_retry_window_secs = 86400`
    pub greylist_retry_window_secs: Option<u64>,
    /// `greylist_expiry_days = 35`
    pub greylist_expiry_days: Option<u64>,
    /// `greylist_auto_allow_after = 5`
    pub greylist_auto_allow_after: Option<u32>,
    /// `allow_clients = ["192.0.2.0/24"]`
    pub allow_clients: Option<Vec<String>>,
    /// `allow_sender_domains = ["example.com"]`
    pub allow_sender_domains: Option<Vec<String>>,
    /// `allow_recipients = ["postmaster@example.com"]`
    pub allow_recipients: Option<Vec<String>>,
    /// `trusted_networks = ["127.0.0.0/8", "::1/128"]`
    pub trusted_networks: Option<Vec<String>>,
    /// `messages_per_hour = 200`
    pub messages_per_hour: Option<u32>,
    /// `recipients_per_hour = 1000`
    pub recipients_per_hour: Option<u32>,
}

/// The `[spam]` table.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawSpam {
    /// `enabled = true`
    pub enabled: Option<bool>,
    /// `threshold = 5.0`
    pub threshold: Option<f64>,
    /// `smtp_reject_score = 15`
    pub smtp_reject_score: Option<u32>,
}

/// The `[managesieve]` table.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawManageSieve {
    /// `enabled = true`
    pub enabled: Option<bool>,
    /// `port = 4190`
    pub port: Option<u16>,
    /// `max_scripts = 32`
    pub max_scripts: Option<u32>,
    /// `max_script_bytes = 262144`
    pub max_script_bytes: Option<u32>,
    /// `max_connections = 256`
    pub max_connections: Option<u32>,
}

/// The `[tls]` table.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// `cert = "/etc/letsencrypt/live/mail.example.com/fullchain.pem"`
    pub cert: Option<String>,
    /// `key = "/etc/letsencrypt/live/mail.example.com/privkey.pem"`
    pub key: Option<String>,
}

/// The `[auth]` table.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// `listen = "127.0.0.1:8091"`
    pub listen: Option<String>,
}

/// The `[log]` table.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `level = "info"`
    pub level: Option<String>,
    /// `format = "text"`
    pub format: Option<String>,
}

impl RawConfig {
    /// Every key set in the file, by its [`KEYS`] name, as text: the file
    /// and the environment then go through one parser per key.
    fn into_pairs(self) -> Vec<(&'static str, String)> {
        let RawConfig {
            store,
            data_dir,
            runtime_dir,
            hostname,
            couchdb,
            api,
            mail,
            postscreen,
            policy,
            spam,
            managesieve,
            tls,
            auth,
            log,
        } = self;
        let size = |size: RawSize| match size {
            RawSize::Bytes(bytes) => bytes.to_string(),
            RawSize::Text(text) => text,
        };
        let pairs = [
            ("store", store),
            ("data_dir", data_dir),
            ("runtime_dir", runtime_dir),
            ("hostname", hostname),
            ("couchdb.username", couchdb.username),
            ("couchdb.password_file", couchdb.password_file),
            ("couchdb.ca_file", couchdb.ca_file),
            ("api.listen", api.listen),
            ("api.tls", api.tls),
            ("mail.listen", mail.listen),
            ("mail.smtp_port", mail.smtp_port.map(|port| port.to_string())),
            ("mail.submission_port", mail.submission_port.map(|port| port.to_string())),
            ("mail.submissions_port", mail.submissions_port.map(|port| port.to_string())),
            ("mail.imaps_port", mail.imaps_port.map(|port| port.to_string())),
            ("mail.outbound", mail.outbound),
            ("mail.auth_failure_delay_secs", mail.auth_failure_delay_secs.map(|secs| secs.to_string())),
            ("mail.daemons", mail.daemons.map(|daemons| daemons.to_string())),
            ("mail.message_size_limit", mail.message_size_limit.map(size)),
            ("postscreen.enabled", postscreen.enabled.map(|enabled| enabled.to_string())),
            ("postscreen.dnsbl_sites", postscreen.dnsbl_sites.map(|sites| sites.join(", "))),
            ("postscreen.dnsbl_threshold", postscreen.dnsbl_threshold.map(|threshold| threshold.to_string())),
            (
                "postscreen.dnsbl_allowlist_threshold",
                postscreen.dnsbl_allowlist_threshold.map(|threshold| threshold.to_string()),
            ),
            ("postscreen.allowlist", postscreen.allowlist.map(|networks| networks.join(", "))),
            ("postscreen.greet_wait_secs", postscreen.greet_wait_secs.map(|secs| secs.to_string())),
            ("policy.greylisting", policy.greylisting.map(|on| on.to_string())),
            ("policy.greylist_delay_secs", policy.greylist_delay_secs.map(|secs| secs.to_string())),
            ("policy.greylist_retry_window_secs", policy.greylist_retry_window_secs.map(|secs| secs.to_string())),
            ("policy.greylist_expiry_days", policy.greylist_expiry_days.map(|days| days.to_string())),
            ("policy.greylist_auto_allow_after", policy.greylist_auto_allow_after.map(|count| count.to_string())),
            ("policy.allow_clients", policy.allow_clients.map(|list| list.join(", "))),
            ("policy.allow_sender_domains", policy.allow_sender_domains.map(|list| list.join(", "))),
            ("policy.allow_recipients", policy.allow_recipients.map(|list| list.join(", "))),
            ("policy.trusted_networks", policy.trusted_networks.map(|list| list.join(", "))),
            ("policy.messages_per_hour", policy.messages_per_hour.map(|count| count.to_string())),
            ("policy.recipients_per_hour", policy.recipients_per_hour.map(|count| count.to_string())),
            ("spam.enabled", spam.enabled.map(|on| on.to_string())),
            ("spam.threshold", spam.threshold.map(|score| score.to_string())),
            ("spam.smtp_reject_score", spam.smtp_reject_score.map(|score| score.to_string())),
            ("managesieve.enabled", managesieve.enabled.map(|on| on.to_string())),
            ("managesieve.port", managesieve.port.map(|port| port.to_string())),
            ("managesieve.max_scripts", managesieve.max_scripts.map(|count| count.to_string())),
            ("managesieve.max_script_bytes", managesieve.max_script_bytes.map(|bytes| bytes.to_string())),
            ("managesieve.max_connections", managesieve.max_connections.map(|count| count.to_string())),
            ("tls.cert", tls.cert),
            ("tls.key", tls.key),
            ("auth.listen", auth.listen),
            ("log.level", log.level),
            ("log.format", log.format),
        ];
        pairs.into_iter().filter_map(|(key, value)| Some((key, value?))).collect()
    }
}

/// A configuration file and its text.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// Where it was read from, for error messages.
    pub path: PathBuf,
    /// Its contents.
    pub text: String,
}

/// Values given as command-line flags, the strongest source.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--store URL`
    pub store: Option<String>,
    /// `up --listen ADDR`
    pub listen: Option<String>,
    /// `up --data-dir DIR`
    pub data_dir: Option<PathBuf>,
    /// `up --no-daemons`
    pub no_daemons: bool,
}

/// Everything the configuration is built from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The configuration file, if one is used.
    pub file: Option<ConfigFile>,
    /// The process environment (only `COUCHMAIL_*` variables are read).
    pub env: BTreeMap<String, String>,
    /// Flags.
    pub flags: Overrides,
    /// `--dev`: development defaults (a local data directory, loopback, high ports).
    pub dev: bool,
}

/// Where the documents live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite:PATH`: the embedded store in one file.
    Sqlite(PathBuf),
    /// `couchdb:http(s)://HOST:PORT[/PREFIX]/DATABASE`: a database on Apache CouchDB.
    CouchDb {
        /// The server's base URL (`http://127.0.0.1:5984`, or with the path of a reverse proxy), without
        /// credentials and without a trailing slash.
        server: String,
        /// The database: the URL's last path segment.
        database: String,
    },
}

impl StoreUrl {
    /// Parses `sqlite:PATH` (also `sqlite://PATH`) and `couchdb:http(s)://HOST[:PORT][/PREFIX]/DATABASE`.
    ///
    /// A CouchDB URL with credentials (`user:password@`) is refused, and the message does not
    /// repeat the URL: the password belongs in `couchdb.password_file`, where it is never echoed.
    pub fn parse(input: &str) -> Result<StoreUrl, String> {
        if let Some(rest) = input.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err("the SQLite store needs a file path, as in `sqlite:/var/lib/couchmail/couchmail.db`".into());
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        if let Some(rest) = input.strip_prefix("couchdb:") {
            return parse_couchdb_url(rest);
        }
        if input.starts_with("http:") || input.starts_with("https:") {
            return Err("write a CouchDB store as `couchdb:` followed by the database's URL, as in \
                        `couchdb:http://127.0.0.1:5984/couchmail`"
                .into());
        }
        Err("a store URL starts with `sqlite:` or `couchdb:`, as in `sqlite:/var/lib/couchmail/couchmail.db` or \
             `couchdb:http://127.0.0.1:5984/couchmail`"
            .into())
    }

    /// Whether this is a CouchDB store.
    pub fn is_couchdb(&self) -> bool {
        matches!(self, StoreUrl::CouchDb { .. })
    }
}

/// Parses what follows `couchdb:`.
fn parse_couchdb_url(url: &str) -> Result<StoreUrl, String> {
    const EXAMPLE: &str = "as in `couchdb:http://127.0.0.1:5984/couchmail`";
    let Some((scheme, after_scheme)) = url.split_once("://") else {
        return Err(format!("a CouchDB store is `couchdb:` followed by an http:// or https:// URL, {EXAMPLE}"));
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!("a CouchDB URL starts with http:// or https://, {EXAMPLE}"));
    }
    let authority_end = after_scheme.find('/').unwrap_or(after_scheme.len());
    let (authority, path) = after_scheme.split_at(authority_end);
    if authority.contains('@') {
        return Err("the CouchDB URL carries credentials, which would end up in logs and process lists; remove \
                    `user:password@` from it and set couchdb.username and couchdb.password_file instead"
            .into());
    }
    if authority.is_empty() {
        return Err(format!("the CouchDB URL names no server, {EXAMPLE}"));
    }
    if path.contains(['?', '#']) {
        return Err(format!("the CouchDB URL may not have a query or fragment, {EXAMPLE}"));
    }
    let path = path.trim_end_matches('/');
    let (prefix, database) = path.rsplit_once('/').unwrap_or(("", ""));
    if database.is_empty() {
        return Err(format!("the CouchDB URL must end with the database's name, {EXAMPLE}"));
    }
    // CouchDB's rule for database names, less `/`, which would need escaping in a URL.
    let valid_name = database.starts_with(|c: char| c.is_ascii_lowercase())
        && database.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_$()+-".contains(&b));
    if !valid_name {
        return Err(format!(
            "`{database}` is not a CouchDB database name: start with a lower-case letter, then lower-case \
             letters, digits and _$()+-"
        ));
    }
    Ok(StoreUrl::CouchDb { server: format!("{scheme}://{authority}{prefix}"), database: database.to_owned() })
}

/// `input` with any `user:password@` of a URL in it replaced by `***@`, for error messages
/// about a store URL that may carry a password.
pub fn redact_userinfo(input: &str) -> String {
    let Some(scheme_end) = input.find("://").map(|idx| idx + 3) else { return input.to_owned() };
    let authority_end = input[scheme_end..].find('/').map_or(input.len(), |idx| scheme_end + idx);
    match input[scheme_end..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &input[..scheme_end], &input[scheme_end + at..]),
        None => input.to_owned(),
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            StoreUrl::CouchDb { server, database } => write!(f, "couchdb:{server}/{database}"),
        }
    }
}

/// A secret value: compared and cloned like a string, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that hands it on.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where the CouchDB password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// `couchdb.password_file`: read when the store is opened.
    File(PathBuf),
    /// `COUCHMAIL_COUCHDB_PASSWORD`.
    Env(Secret),
}

/// The `[couchdb]` settings, used when a store URL is a `couchdb:` one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CouchDbSettings {
    /// The user name and where its password is; both or neither.
    pub login: Option<(String, PasswordSource)>,
    /// Extra authorities for https.
    pub ca_file: Option<PathBuf>,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event.
    Json,
}

/// The `[log]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// The configured level; `None` leaves the choice to the command.
    pub level: Option<LevelFilter>,
    /// Text or JSON.
    pub format: LogFormat,
}

/// The `[mail]` settings: how Postfix and Dovecot face the world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailConfig {
    /// Where the SMTP and IMAPS ports listen.
    pub listen: Listen,
    /// The four public ports, all different.
    pub ports: Ports,
    /// What happens to mail for other domains.
    pub outbound: Outbound,
    /// Dovecot's `auth_failure_delay`.
    pub auth_failure_delay_secs: u32,
    /// Whether `up` runs Postfix and Dovecot.
    pub daemons: bool,
    /// Postfix's `message_size_limit`, in bytes.
    pub message_size_limit: u64,
}

/// ManageSieve's settings (`[managesieve]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManageSieveSettings {
    /// The TCP port, on `mail.listen`'s address.
    pub port: u16,
    /// Whether the port was configured: then failing to bind it stops `up`; the default port only warns.
    pub port_configured: bool,
    /// The most scripts per mailbox.
    pub max_scripts: usize,
    /// The largest script, in bytes.
    pub max_script_bytes: usize,
    /// Connections served at once.
    pub max_connections: usize,
}

/// A configured certificate and key (both or neither).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, PEM.
    pub cert: PathBuf,
    /// The private key, PEM.
    pub key: PathBuf,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The configuration file that was read, if any.
    pub file: Option<PathBuf>,
    /// Where the documents live.
    pub store: StoreUrl,
    /// How to log in to CouchDB, for `couchdb:` stores.
    pub couchdb: CouchDbSettings,
    /// Where the REST API and the web UI listen (a loopback address unless [`Config::api_tls`]).
    pub api_listen: SocketAddr,
    /// Whether that listener speaks HTTPS with the stack's certificate (`api.tls`, resolved).
    pub api_tls: bool,
    /// couchmail's own files.
    pub data_dir: PathBuf,
    /// Sockets and files that live as long as `up` runs.
    pub runtime_dir: PathBuf,
    /// The mail server's name; `None`: ask the system (`up` and `render` do).
    pub hostname: Option<String>,
    /// Postfix and Dovecot.
    pub mail: MailConfig,
    /// postscreen in front of port 25; `None` when `postscreen.enabled = false`.
    pub postscreen: Option<Postscreen>,
    /// The policy service's settings (`[policy]`).
    pub policy: PolicySettings,
    /// SpamAssassin; `None` when `spam.enabled = false`.
    pub spam: Option<SpamSettings>,
    /// ManageSieve; `None` when `managesieve.enabled = false`.
    pub managesieve: Option<ManageSieveSettings>,
    /// A configured certificate; `None`: `up` makes a self-signed one.
    pub tls: Option<TlsFiles>,
    /// Where the Dovecot auth endpoint listens (a loopback address).
    pub auth_listen: SocketAddr,
    /// Logging.
    pub log: LogConfig,
    /// Whether development defaults were applied (`--dev`).
    pub dev: bool,
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone)]
enum Origin {
    File(PathBuf),
    Env(&'static str),
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "in {}", path.display()),
            Origin::Env(name) => write!(f, "in environment variable {name}"),
            Origin::Flag(name) => write!(f, "in flag {name}"),
        }
    }
}

/// A value with its origin.
#[derive(Debug, Clone)]
struct Setting {
    value: String,
    origin: Origin,
}

/// The sources merged key by key (by [`KEYS`] name), before validation.
#[derive(Debug, Default)]
struct Merged {
    settings: BTreeMap<&'static str, Setting>,
}

impl Merged {
    fn set(&mut self, key: &'static str, value: String, origin: Origin) {
        debug_assert!(KEYS.iter().any(|doc| doc.key == key), "`{key}` is not in KEYS");
        self.settings.insert(key, Setting { value, origin });
    }

    /// Removes and parses `key`; `None` when no source set it. A parse error
    /// names the key, the value and its origin.
    fn take<T>(&mut self, key: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> anyhow::Result<Option<T>> {
        let Some(setting) = self.settings.remove(key) else { return Ok(None) };
        match parse(&setting.value) {
            Ok(value) => Ok(Some(value)),
            Err(why) => bail!("invalid {key} `{}` {}: {why}", setting.value, setting.origin),
        }
    }

    /// Removes `key` unparsed, with its origin, for checks that need both.
    fn take_with_origin(&mut self, key: &str) -> Option<Setting> {
        self.settings.remove(key)
    }
}

impl Config {
    /// Layers defaults < file < environment < flags and validates the result.
    pub fn load(sources: Sources) -> anyhow::Result<Config> {
        let mut merged = Merged::default();
        let file_path = sources.file.as_ref().map(|file| file.path.clone());
        if let Some(file) = sources.file {
            let raw: RawConfig = toml::from_str(&file.text).with_context(|| {
                format!(
                    "{} is not a valid couchmail configuration (see docs/config.md for the keys)",
                    file.path.display()
                )
            })?;
            for (key, value) in raw.into_pairs() {
                merged.set(key, value, Origin::File(file.path.clone()));
            }
        }
        for key_doc in KEYS {
            let Some(value) = sources.env.get(key_doc.env).filter(|value| !value.is_empty()) else { continue };
            merged.set(key_doc.key, value.clone(), Origin::Env(key_doc.env));
        }
        let flags = sources.flags;
        if let Some(value) = flags.store {
            merged.set("store", value, Origin::Flag("--store"));
        }
        if let Some(value) = flags.listen {
            merged.set("api.listen", value, Origin::Flag("--listen"));
        }
        if let Some(value) = flags.data_dir {
            let Ok(value) = value.into_os_string().into_string() else {
                bail!("invalid data_dir in flag --data-dir: write a path in UTF-8");
            };
            merged.set("data_dir", value, Origin::Flag("--data-dir"));
        }
        if flags.no_daemons {
            merged.set("mail.daemons", "false".to_owned(), Origin::Flag("--no-daemons"));
        }
        let couchdb_password = sources.env.get(COUCHDB_PASSWORD_ENV).filter(|value| !value.is_empty()).cloned();
        validate(merged, couchdb_password.map(Secret::new), file_path, sources.dev)
    }
}

fn validate(
    mut merged: Merged,
    couchdb_password: Option<Secret>,
    file: Option<PathBuf>,
    dev: bool,
) -> anyhow::Result<Config> {
    let data_dir = match merged.take("data_dir", parse_dir)? {
        Some(dir) => dir,
        None if dev => PathBuf::from(DEV_DATA_DIR),
        None => PathBuf::from("/var/lib/couchmail"),
    };
    let runtime_dir = match merged.take("runtime_dir", parse_dir)? {
        Some(dir) => dir,
        None if dev => data_dir.join("run"),
        None => PathBuf::from("/run/couchmail"),
    };
    let store = match merged.take_with_origin("store") {
        // Not `take`: its message repeats the value, which may carry a password here.
        Some(setting) => StoreUrl::parse(&setting.value).map_err(|why| {
            anyhow::anyhow!("invalid store `{}` {}: {why}", redact_userinfo(&setting.value), setting.origin)
        })?,
        None => StoreUrl::Sqlite(data_dir.join("couchmail.db")),
    };
    let couchdb = validate_couchdb(&mut merged, couchdb_password)?;
    let hostname = match merged.take("hostname", parse_hostname)? {
        Some(hostname) => Some(hostname),
        None if dev => Some("localhost".to_owned()),
        None => None,
    };
    let (api_listen, api_tls) = validate_api(&mut merged, dev)?;
    let mail = validate_mail(&mut merged, dev)?;
    let postscreen = validate_postscreen(&mut merged)?;
    let policy = validate_policy(&mut merged)?;
    let spam = validate_spam(&mut merged, dev)?;
    let managesieve = validate_managesieve(&mut merged, dev, &mail)?;
    let tls = match (merged.take_with_origin("tls.cert"), merged.take_with_origin("tls.key")) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let cert_path = parse_dir(&cert.value)
                .map_err(|why| anyhow::anyhow!("invalid tls.cert `{}` {}: {why}", cert.value, cert.origin))?;
            let key_path = parse_dir(&key.value)
                .map_err(|why| anyhow::anyhow!("invalid tls.key `{}` {}: {why}", key.value, key.origin))?;
            Some(TlsFiles { cert: cert_path, key: key_path })
        }
        (Some(one), None) | (None, Some(one)) => bail!(
            "tls.cert and tls.key go together, but only one is set {}: set both under [tls], or neither for a \
             self-signed certificate",
            one.origin
        ),
    };
    let auth_listen = match merged.take_with_origin("auth.listen") {
        Some(setting) => {
            let addr = parse_listen(&setting.value)
                .map_err(|why| anyhow::anyhow!("invalid auth.listen `{}` {}: {why}", setting.value, setting.origin))?;
            if !addr.ip().is_loopback() {
                bail!(
                    "invalid auth.listen `{}` {}: the Dovecot auth endpoint is internal and listens on loopback \
                     only; write listen = \"127.0.0.1:{}\" under [auth]",
                    setting.value,
                    setting.origin,
                    addr.port()
                );
            }
            addr
        }
        None => DEFAULT_AUTH_LISTEN,
    };
    let level = merged.take("log.level", parse_level)?;
    let format = merged
        .take("log.format", |value| match value {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("write format = \"text\" or \"json\"".to_owned()),
        })?
        .unwrap_or_default();
    debug_assert!(merged.settings.is_empty(), "keys left unvalidated: {:?}", merged.settings.keys());
    Ok(Config {
        file,
        store,
        couchdb,
        api_listen,
        api_tls,
        data_dir,
        runtime_dir,
        hostname,
        mail,
        postscreen,
        policy,
        spam,
        managesieve,
        tls,
        auth_listen,
        log: LogConfig { level, format },
        dev,
    })
}

/// `api.tls` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApiTls {
    Auto,
    On,
    Off,
}

/// `api.listen` and whether it speaks HTTPS: plain HTTP is for loopback only (passwords and session cookies
/// cross this port), so a non-loopback address with `api.tls = "off"` is refused.
fn validate_api(merged: &mut Merged, dev: bool) -> anyhow::Result<(SocketAddr, bool)> {
    let tls = merged
        .take_with_origin("api.tls")
        .map(|setting| {
            let parsed = match setting.value.as_str() {
                "auto" => ApiTls::Auto,
                "on" => ApiTls::On,
                "off" => ApiTls::Off,
                _ => bail!(
                    "invalid api.tls `{}` {}: write tls = \"auto\", \"on\" or \"off\" under [api]",
                    setting.value,
                    setting.origin
                ),
            };
            Ok((parsed, setting.origin))
        })
        .transpose()?;
    let listen = match merged.take_with_origin("api.listen") {
        Some(setting) => {
            let addr = parse_listen(&setting.value)
                .map_err(|why| anyhow::anyhow!("invalid api.listen `{}` {}: {why}", setting.value, setting.origin))?;
            Some((addr, setting))
        }
        None => None,
    };
    let addr = match &listen {
        // --dev promises loopback: keep the configured port only.
        Some((addr, _)) if dev && !addr.ip().is_loopback() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        Some((addr, _)) => *addr,
        None => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_API_PORT),
    };
    let https = match &tls {
        None | Some((ApiTls::Auto, _)) => !addr.ip().is_loopback(),
        Some((ApiTls::On, _)) => true,
        Some((ApiTls::Off, tls_origin)) => {
            if let Some((_, setting)) = listen.as_ref().filter(|_| !addr.ip().is_loopback()) {
                bail!(
                    "invalid api.listen `{}` {}: api.tls is \"off\" {tls_origin}, and plain HTTP is served on \
                     loopback only (passwords and session cookies cross this port); remove tls = \"off\" under \
                     [api] to serve HTTPS there with the stack's certificate (tls.cert and tls.key), or write \
                     listen = \"127.0.0.1:{}\" under [api] and put a TLS proxy in front",
                    setting.value,
                    setting.origin,
                    addr.port()
                );
            }
            false
        }
    };
    Ok((addr, https))
}

fn validate_couchdb(merged: &mut Merged, password: Option<Secret>) -> anyhow::Result<CouchDbSettings> {
    let username = merged.take("couchdb.username", |value| {
        if value.is_empty() || value.contains(':') || value.chars().any(char::is_control) {
            Err("write a CouchDB user name, without `:` or control characters".to_owned())
        } else {
            Ok(value.to_owned())
        }
    })?;
    let password_file = merged.take_with_origin("couchdb.password_file");
    let ca_file = merged.take("couchdb.ca_file", parse_dir)?;
    let password = match (password_file, password) {
        (Some(file), Some(_)) => bail!(
            "the CouchDB password is given twice, by couchdb.password_file {} and by {COUCHDB_PASSWORD_ENV}: \
             keep one",
            file.origin
        ),
        (Some(file), None) => Some(PasswordSource::File(parse_dir(&file.value).map_err(|why| {
            anyhow::anyhow!("invalid couchdb.password_file `{}` {}: {why}", file.value, file.origin)
        })?)),
        (None, Some(secret)) => Some(PasswordSource::Env(secret)),
        (None, None) => None,
    };
    let login = match (username, password) {
        (Some(username), Some(password)) => Some((username, password)),
        (None, None) => None,
        (Some(_), None) => bail!(
            "couchdb.username is set but no password: set couchdb.password_file (a file of mode 0600) or \
             {COUCHDB_PASSWORD_ENV}"
        ),
        (None, Some(_)) => {
            bail!("a CouchDB password is set but no couchdb.username: set the user the password belongs to")
        }
    };
    Ok(CouchDbSettings { login, ca_file })
}

fn validate_mail(merged: &mut Merged, dev: bool) -> anyhow::Result<MailConfig> {
    let listen = match merged.take("mail.listen", parse_mail_listen)? {
        Some(listen) => listen,
        None if dev => Listen::Address(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        None => Listen::AllInterfaces,
    };
    let defaults = if dev { DEV_PORTS } else { PRODUCTION_PORTS };
    let ports = Ports {
        smtp: merged.take("mail.smtp_port", parse_port)?.unwrap_or(defaults.smtp),
        submission: merged.take("mail.submission_port", parse_port)?.unwrap_or(defaults.submission),
        submissions: merged.take("mail.submissions_port", parse_port)?.unwrap_or(defaults.submissions),
        imaps: merged.take("mail.imaps_port", parse_port)?.unwrap_or(defaults.imaps),
    };
    let named = [
        ("mail.smtp_port", ports.smtp),
        ("mail.submission_port", ports.submission),
        ("mail.submissions_port", ports.submissions),
        ("mail.imaps_port", ports.imaps),
    ];
    for (port_idx, (key, port)) in named.iter().enumerate() {
        if let Some((other, _)) = named[..port_idx].iter().find(|(_, earlier)| earlier == port) {
            bail!("{key} and {other} are both {port}: every mail port needs a port of its own");
        }
    }
    let outbound = merged
        .take("mail.outbound", |value| match value {
            "direct" => Ok(Outbound::Direct),
            "disabled" => Ok(Outbound::Error),
            _ => Err("write outbound = \"direct\" or \"disabled\"".to_owned()),
        })?
        .unwrap_or(Outbound::Direct);
    let auth_failure_delay_secs = merged
        .take("mail.auth_failure_delay_secs", |value| {
            value
                .parse::<u32>()
                .ok()
                .filter(|secs| *secs <= 60)
                .ok_or_else(|| "write whole seconds, 0 to 60".to_owned())
        })?
        .unwrap_or(2);
    let daemons = merged.take("mail.daemons", parse_bool)?.unwrap_or(true);
    let message_size_limit = merged
        .take("mail.message_size_limit", |value| {
            crate::cli::parse_size(value)
                .and_then(|bytes| if bytes < 1024 { Err("write at least 1K".to_owned()) } else { Ok(bytes) })
        })?
        .unwrap_or(DEFAULT_MESSAGE_SIZE_LIMIT);
    Ok(MailConfig { listen, ports, outbound, auth_failure_delay_secs, daemons, message_size_limit })
}

/// The largest DNSBL threshold (and, negated, allowlist threshold) accepted: a bigger one is a typo.
const MAX_DNSBL_SCORE: i64 = 100;

fn validate_postscreen(merged: &mut Merged) -> anyhow::Result<Option<Postscreen>> {
    let enabled = merged.take("postscreen.enabled", parse_bool)?.unwrap_or(true);
    let defaults = Postscreen::default();
    let dnsbl_sites = merged.take("postscreen.dnsbl_sites", parse_list::<DnsblSite>)?;
    let dnsbl_threshold = merged.take("postscreen.dnsbl_threshold", |value| {
        value
            .parse::<i64>()
            .ok()
            .filter(|threshold| (1..=MAX_DNSBL_SCORE).contains(threshold))
            .and_then(|threshold| u32::try_from(threshold).ok())
            .ok_or_else(|| format!("write a whole number from 1 to {MAX_DNSBL_SCORE}"))
    })?;
    let dnsbl_allowlist_threshold = merged.take("postscreen.dnsbl_allowlist_threshold", |value| {
        value
            .parse::<i64>()
            .ok()
            .filter(|threshold| (-MAX_DNSBL_SCORE..=0).contains(threshold))
            .and_then(|threshold| i32::try_from(threshold).ok())
            .ok_or_else(|| format!("write a whole number from -{MAX_DNSBL_SCORE} to 0 (0 turns it off)"))
    })?;
    let allowlist = merged.take("postscreen.allowlist", parse_list::<Cidr>)?;
    let greet_wait_secs = merged.take("postscreen.greet_wait_secs", |value| {
        value
            .parse::<u32>()
            .ok()
            .filter(|secs| (1..=MAX_GREET_WAIT_SECS).contains(secs))
            .ok_or_else(|| format!("write whole seconds, 1 to {MAX_GREET_WAIT_SECS}"))
    })?;
    if !enabled {
        return Ok(None);
    }
    Ok(Some(Postscreen {
        dnsbl_sites: dnsbl_sites.unwrap_or(defaults.dnsbl_sites),
        dnsbl_threshold: dnsbl_threshold.unwrap_or(defaults.dnsbl_threshold),
        dnsbl_allowlist_threshold: dnsbl_allowlist_threshold.unwrap_or(defaults.dnsbl_allowlist_threshold),
        allowlist: allowlist.unwrap_or(defaults.allowlist),
        greet_wait_secs: greet_wait_secs.or(defaults.greet_wait_secs),
    }))
}

/// The `[policy]` settings: what `up` turns into `couchmail_policy::PolicyConfig` once the data directory is
/// known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySettings {
    /// Whether recipients are greylisted unless their domain or mailbox opts out.
    pub greylisting: bool,
    /// The greylisting engine's delay, window, expiry, auto-allow and static allowlists.
    pub greylist: GreylistConfig,
    /// Clients never greylisted nor, unless they log in, rate-limited.
    pub trusted_networks: Vec<IpNetwork>,
    /// The default hourly message limit per SASL user; `None` for none.
    pub messages_per_hour: Option<u32>,
    /// The default hourly recipient limit per SASL user; `None` for none.
    pub recipients_per_hour: Option<u32>,
}

impl PolicySettings {
    /// The policy service's configuration, with its state files in `data_dir`.
    pub fn policy_config(&self, data_dir: &Path) -> PolicyConfig {
        PolicyConfig {
            greylisting: self.greylisting,
            greylist: self.greylist.clone(),
            trusted_networks: self.trusted_networks.clone(),
            messages_per_hour: self.messages_per_hour,
            recipients_per_hour: self.recipients_per_hour,
            ..PolicyConfig::new(data_dir)
        }
    }
}

/// The largest greylisting delay or retry window accepted, in seconds: a week.
const MAX_GREYLIST_SECS: u64 = 7 * 24 * 60 * 60;

fn validate_policy(merged: &mut Merged) -> anyhow::Result<PolicySettings> {
    let defaults = PolicyConfig::new(Path::new("/"));
    let secs = |value: &str| {
        value
            .parse::<u64>()
            .ok()
            .filter(|secs| (1..=MAX_GREYLIST_SECS).contains(secs))
            .ok_or_else(|| format!("write whole seconds, 1 to {MAX_GREYLIST_SECS}"))
    };
    let hourly = |value: &str| {
        let limit = value
            .parse::<u32>()
            .ok()
            .filter(|limit| *limit <= MAX_HOURLY_LIMIT)
            .ok_or_else(|| format!("write a whole number from 0 (no limit) to {MAX_HOURLY_LIMIT}"))?;
        Ok(Some(limit).filter(|limit| *limit > 0))
    };
    let greylisting = merged.take("policy.greylisting", parse_bool)?.unwrap_or(defaults.greylisting);
    let mut greylist = defaults.greylist.clone();
    if let Some(delay) = merged.take("policy.greylist_delay_secs", secs)? {
        greylist.delay = Duration::from_secs(delay);
    }
    if let Some(window) = merged.take("policy.greylist_retry_window_secs", secs)? {
        greylist.retry_window = Duration::from_secs(window);
    }
    if greylist.delay >= greylist.retry_window {
        bail!(
            "invalid policy.greylist_delay_secs {}: it must be shorter than policy.greylist_retry_window_secs {}",
            greylist.delay.as_secs(),
            greylist.retry_window.as_secs()
        );
    }
    if let Some(days) = merged.take("policy.greylist_expiry_days", |value| {
        value
            .parse::<u64>()
            .ok()
            .filter(|days| (1..=3650).contains(days))
            .ok_or_else(|| "write whole days, 1 to 3650".to_owned())
    })? {
        greylist.pass_expiry = Duration::from_secs(days * 24 * 60 * 60);
    }
    if let Some(count) = merged.take("policy.greylist_auto_allow_after", |value| {
        value.parse::<u32>().map_err(|_| "write a whole number (0 turns auto-allow off)".to_owned())
    })? {
        greylist.auto_allow_after = Some(count).filter(|count| *count > 0);
    }
    if let Some(clients) = merged.take("policy.allow_clients", parse_list::<IpNetwork>)? {
        greylist.allowlist.client_networks = clients;
    }
    if let Some(domains) = merged.take("policy.allow_sender_domains", |value| {
        let domains = parse_list::<String>(value)?;
        match domains.iter().find(|domain| domain.contains('@') || domain.trim_start_matches('.').is_empty()) {
            Some(bad) => Err(format!("{bad:?} is not a domain: write `example.com` or `.example.com`")),
            None => Ok(domains.into_iter().map(|domain| domain.to_lowercase()).collect()),
        }
    })? {
        greylist.allowlist.sender_domains = domains;
    }
    if let Some(recipients) = merged.take("policy.allow_recipients", parse_list::<String>)? {
        greylist.allowlist.recipients = recipients.into_iter().map(|recipient| recipient.to_lowercase()).collect();
    }
    let trusted_networks =
        merged.take("policy.trusted_networks", parse_list::<IpNetwork>)?.unwrap_or_else(default_trusted_networks);
    let messages_per_hour = merged.take("policy.messages_per_hour", hourly)?.unwrap_or(defaults.messages_per_hour);
    let recipients_per_hour =
        merged.take("policy.recipients_per_hour", hourly)?.unwrap_or(defaults.recipients_per_hour);
    Ok(PolicySettings { greylisting, greylist, trusted_networks, messages_per_hour, recipients_per_hour })
}

/// The `[spam]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpamSettings {
    /// The site-wide threshold for Junk.
    pub threshold: SpamScore,
    /// The SMTP-time refusal score; `None` scans at delivery only.
    pub smtp_reject_score: Option<SpamScore>,
}

fn validate_managesieve(
    merged: &mut Merged,
    dev: bool,
    mail: &MailConfig,
) -> anyhow::Result<Option<ManageSieveSettings>> {
    let enabled = merged.take("managesieve.enabled", parse_bool)?.unwrap_or(true);
    let configured_port = merged.take("managesieve.port", parse_port)?;
    let count = |value: &str| {
        value
            .parse::<usize>()
            .ok()
            .filter(|count| *count >= 1)
            .ok_or_else(|| "write a whole number of at least 1".to_owned())
    };
    let max_scripts = merged.take("managesieve.max_scripts", count)?.unwrap_or(32);
    let max_connections = merged.take("managesieve.max_connections", count)?.unwrap_or(256);
    let largest = couchmail_model::MAX_SIEVE_SCRIPT_BYTES;
    let max_script_bytes = merged
        .take("managesieve.max_script_bytes", |value| {
            value
                .parse::<usize>()
                .ok()
                .filter(|bytes| (1..=largest).contains(bytes))
                .ok_or_else(|| format!("write a number of bytes from 1 to {largest}"))
        })?
        .unwrap_or(largest);
    if !enabled {
        return Ok(None);
    }
    let port = configured_port.unwrap_or(if dev { DEV_MANAGESIEVE_PORT } else { MANAGESIEVE_PORT });
    let ports = &mail.ports;
    if [ports.smtp, ports.submission, ports.submissions, ports.imaps].contains(&port) {
        bail!("managesieve.port {port} is also a mail port: give ManageSieve a port of its own");
    }
    Ok(Some(ManageSieveSettings {
        port,
        port_configured: configured_port.is_some(),
        max_scripts,
        max_script_bytes,
        max_connections,
    }))
}

fn validate_spam(merged: &mut Merged, dev: bool) -> anyhow::Result<Option<SpamSettings>> {
    // `--dev` is for trying couchmail out: spamd's 170 MiB and its packages wait until asked for.
    let enabled = merged.take("spam.enabled", parse_bool)?.unwrap_or(!dev);
    let threshold = merged
        .take("spam.threshold", |value| {
            value
                .parse::<SpamScore>()
                .ok()
                .filter(|score| (0..=1000).contains(&score.tenths()))
                .ok_or_else(|| "write a score from 0.0 to 100.0 with at most one decimal, such as 5.0".to_owned())
        })?
        .unwrap_or(SpamScore::from_tenths(50));
    let reject = merged.take_with_origin("spam.smtp_reject_score");
    let smtp_reject_score = match reject {
        None => Some(SpamScore::from_tenths(150)),
        Some(setting) => {
            let score = setting.value.parse::<i32>().ok().filter(|score| (0..=100).contains(score));
            match score {
                Some(0) => None,
                Some(score) if score * 10 > threshold.tenths() => Some(SpamScore::from_tenths(score * 10)),
                _ => bail!(
                    "invalid spam.smtp_reject_score `{}` {}: write a whole number above spam.threshold ({}) and at \
                     most 100, or 0 to refuse nothing at SMTP time",
                    setting.value,
                    setting.origin,
                    threshold
                ),
            }
        }
    };
    if !enabled {
        return Ok(None);
    }
    Ok(Some(SpamSettings { threshold, smtp_reject_score }))
}

/// Loopback, IPv4 and IPv6: programs on this host are trusted by default.
fn default_trusted_networks() -> Vec<IpNetwork> {
    ["127.0.0.0/8", "::1/128"].iter().filter_map(|network| network.parse().ok()).collect()
}

/// A comma-separated list (a TOML array arrives joined with commas); empty entries are skipped, so an empty
/// text is an empty list.
fn parse_list<T>(input: &str) -> Result<Vec<T>, String>
where
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    input
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| item.parse().map_err(|err: T::Err| err.to_string()))
        .collect()
}

fn parse_dir(input: &str) -> Result<PathBuf, String> {
    if input.is_empty() {
        return Err("write a path, as in \"/var/lib/couchmail\"".to_owned());
    }
    Ok(PathBuf::from(input))
}

fn parse_listen(input: &str) -> Result<SocketAddr, String> {
    input.parse::<SocketAddr>().map_err(|_| {
        "write an IP address and a port, as in \"127.0.0.1:8080\" or \"[::1]:8080\" (host names are not resolved)"
            .to_owned()
    })
}

fn parse_mail_listen(input: &str) -> Result<Listen, String> {
    if input == "all" {
        return Ok(Listen::AllInterfaces);
    }
    match input.parse::<IpAddr>() {
        Ok(address) if address.is_unspecified() => {
            Err("write \"all\" for every address (IPv4 and IPv6), or one address".to_owned())
        }
        Ok(address) => Ok(Listen::Address(address)),
        Err(_) => Err("write \"all\" or one IP address, as in \"127.0.0.1\" (host names are not resolved)".to_owned()),
    }
}

fn parse_port(input: &str) -> Result<u16, String> {
    input.parse::<u16>().ok().filter(|port| *port != 0).ok_or_else(|| "write a port from 1 to 65535".to_owned())
}

fn parse_bool(input: &str) -> Result<bool, String> {
    match input.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err("write true or false".to_owned()),
    }
}

/// A host name as Postfix and Dovecot take it: dot-separated labels of
/// letters, digits and inner hyphens; lower-cased.
fn parse_hostname(input: &str) -> Result<String, String> {
    let hostname = input.trim_end_matches('.').to_ascii_lowercase();
    let labels_ok = hostname.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
    });
    if hostname.is_empty() || hostname.len() > 253 || !labels_ok {
        return Err("write a host name such as \"mail.example.com\" (letters, digits, `-` and dots)".to_owned());
    }
    Ok(hostname)
}

fn parse_level(input: &str) -> Result<LevelFilter, String> {
    match input.to_ascii_lowercase().as_str() {
        "off" => Ok(LevelFilter::OFF),
        "error" => Ok(LevelFilter::ERROR),
        "warn" => Ok(LevelFilter::WARN),
        "info" => Ok(LevelFilter::INFO),
        "debug" => Ok(LevelFilter::DEBUG),
        "trace" => Ok(LevelFilter::TRACE),
        _ => Err("write one of off, error, warn, info, debug, trace".to_owned()),
    }
}

/// Finds and reads the configuration file: `--config PATH`, else
/// `$COUCHMAIL_CONFIG`, else [`DEFAULT_CONFIG_FILE`] if it exists. A file
/// named explicitly must exist.
pub fn read_config_file(flag: Option<&Path>, env: &BTreeMap<String, String>) -> anyhow::Result<Option<ConfigFile>> {
    let (path, named) = match (flag, env.get(CONFIG_ENV).filter(|value| !value.is_empty())) {
        (Some(path), _) => (path.to_owned(), "--config"),
        (None, Some(path)) => (PathBuf::from(path), CONFIG_ENV),
        (None, None) => {
            let path = PathBuf::from(DEFAULT_CONFIG_FILE);
            if !path.exists() {
                return Ok(None);
            }
            (path, "the default location")
        }
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read configuration file {} (named by {named})", path.display()))?;
    Ok(Some(ConfigFile { path, text }))
}

/// The `COUCHMAIL_*` variables of the process environment: the one place
/// that reads it for configuration.
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars().filter(|(name, _)| name.starts_with("COUCHMAIL_")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Option<ConfigFile> {
        Some(ConfigFile { path: PathBuf::from("/etc/couchmail/couchmail.toml"), text: text.to_owned() })
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn load(sources: Sources) -> Config {
        Config::load(sources).unwrap()
    }

    fn load_err(sources: Sources) -> String {
        format!("{:#}", Config::load(sources).unwrap_err())
    }

    #[test]
    fn defaults_without_any_source() {
        let config = load(Sources::default());
        assert_eq!(config.store, StoreUrl::Sqlite(PathBuf::from("/var/lib/couchmail/couchmail.db")));
        assert_eq!(config.api_listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/couchmail"));
        assert_eq!(config.runtime_dir, PathBuf::from("/run/couchmail"));
        assert_eq!(config.log, LogConfig { level: None, format: LogFormat::Text });
        assert!(!config.dev);
    }

    #[test]
    fn file_sets_every_key() {
        let config = load(Sources {
            file: file(
                r#"
                store = "sqlite:/srv/mail/db.sqlite"
                data_dir = "/srv/mail"
                runtime_dir = "/run/cm"
                [api]
                listen = "[::1]:9000"
                [log]
                level = "debug"
                format = "json"
                "#,
            ),
            ..Sources::default()
        });
        assert_eq!(config.store, StoreUrl::Sqlite(PathBuf::from("/srv/mail/db.sqlite")));
        assert_eq!(config.api_listen, "[::1]:9000".parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from("/srv/mail"));
        assert_eq!(config.runtime_dir, PathBuf::from("/run/cm"));
        assert_eq!(config.log, LogConfig { level: Some(LevelFilter::DEBUG), format: LogFormat::Json });
        assert_eq!(config.file, Some(PathBuf::from("/etc/couchmail/couchmail.toml")));
    }

    #[test]
    fn precedence_is_file_then_env_then_flag() {
        let text = "store = \"sqlite:/from/file\"\ndata_dir = \"/file/data\"\n[api]\nlisten = \"127.0.0.1:1111\"\n";
        let from_file = load(Sources { file: file(text), ..Sources::default() });
        assert_eq!(from_file.store, StoreUrl::Sqlite(PathBuf::from("/from/file")));
        assert_eq!(from_file.api_listen.port(), 1111);

        let environment = env(&[
            ("COUCHMAIL_STORE", "sqlite:/from/env"),
            ("COUCHMAIL_API_LISTEN", "127.0.0.1:2222"),
            ("COUCHMAIL_DATA_DIR", "/env/data"),
        ]);
        let from_env = load(Sources { file: file(text), env: environment.clone(), ..Sources::default() });
        assert_eq!(from_env.store, StoreUrl::Sqlite(PathBuf::from("/from/env")));
        assert_eq!(from_env.api_listen.port(), 2222);
        assert_eq!(from_env.data_dir, PathBuf::from("/env/data"));

        let flags = Overrides {
            store: Some("sqlite:/from/flag".into()),
            listen: Some("127.0.0.1:3333".into()),
            data_dir: Some("/flag/data".into()),
            no_daemons: false,
        };
        let from_flag = load(Sources { file: file(text), env: environment, flags, dev: false });
        assert_eq!(from_flag.store, StoreUrl::Sqlite(PathBuf::from("/from/flag")));
        assert_eq!(from_flag.api_listen.port(), 3333);
        assert_eq!(from_flag.data_dir, PathBuf::from("/flag/data"));
    }

    #[test]
    fn empty_environment_variable_counts_as_unset() {
        let config = load(Sources {
            file: file("store = \"sqlite:/from/file\""),
            env: env(&[("COUCHMAIL_STORE", "")]),
            ..Sources::default()
        });
        assert_eq!(config.store, StoreUrl::Sqlite(PathBuf::from("/from/file")));
    }

    #[test]
    fn store_follows_data_dir_unless_set() {
        let config = load(Sources { env: env(&[("COUCHMAIL_DATA_DIR", "/d")]), ..Sources::default() });
        assert_eq!(config.store, StoreUrl::Sqlite(PathBuf::from("/d/couchmail.db")));
    }

    #[test]
    fn dev_defaults_stay_local_and_keep_the_configured_port() {
        let config = load(Sources { dev: true, ..Sources::default() });
        assert_eq!(config.data_dir, PathBuf::from(DEV_DATA_DIR));
        assert_eq!(config.runtime_dir, PathBuf::from(DEV_DATA_DIR).join("run"));
        assert_eq!(config.store, StoreUrl::Sqlite(PathBuf::from(DEV_DATA_DIR).join("couchmail.db")));
        assert_eq!(config.api_listen, "127.0.0.1:8080".parse().unwrap());

        let config = load(Sources {
            file: file("data_dir = \"/configured\"\n[api]\nlisten = \"0.0.0.0:9999\""),
            dev: true,
            ..Sources::default()
        });
        assert_eq!(config.data_dir, PathBuf::from("/configured"));
        assert_eq!(config.api_listen, "127.0.0.1:9999".parse().unwrap());
    }

    #[test]
    fn api_tls_auto_is_https_off_loopback_only() {
        let api = |text: &str, environment: &[(&str, &str)]| {
            let config = load(Sources { file: file(text), env: env(environment), ..Sources::default() });
            (config.api_listen.to_string(), config.api_tls)
        };
        assert_eq!(api("", &[]), ("127.0.0.1:8080".to_owned(), false));
        assert_eq!(api("[api]\nlisten = \"[::1]:8080\"", &[]), ("[::1]:8080".to_owned(), false));
        assert_eq!(api("[api]\nlisten = \"0.0.0.0:8443\"", &[]), ("0.0.0.0:8443".to_owned(), true));
        assert_eq!(api("[api]\nlisten = \"192.0.2.7:443\"\ntls = \"auto\"", &[]), ("192.0.2.7:443".to_owned(), true));
        assert_eq!(api("[api]\ntls = \"on\"", &[]), ("127.0.0.1:8080".to_owned(), true));
        assert_eq!(api("[api]\nlisten = \"[::]:443\"\ntls = \"on\"", &[]), ("[::]:443".to_owned(), true));
        assert_eq!(api("[api]\ntls = \"off\"", &[]), ("127.0.0.1:8080".to_owned(), false));
        assert_eq!(api("", &[("COUCHMAIL_API_TLS", "on")]), ("127.0.0.1:8080".to_owned(), true));
        // --dev keeps the API on loopback, where auto is plain HTTP and off is accepted.
        let dev = |text: &str| {
            let config = load(Sources { file: file(text), dev: true, ..Sources::default() });
            (config.api_listen.to_string(), config.api_tls)
        };
        assert_eq!(dev("[api]\nlisten = \"0.0.0.0:9999\""), ("127.0.0.1:9999".to_owned(), false));
        assert_eq!(dev("[api]\nlisten = \"0.0.0.0:9999\"\ntls = \"off\""), ("127.0.0.1:9999".to_owned(), false));
        assert_eq!(dev("[api]\ntls = \"on\""), ("127.0.0.1:8080".to_owned(), true));
    }

    #[test]
    fn plain_http_off_loopback_is_refused_naming_source_and_fix() {
        let err =
            load_err(Sources { file: file("[api]\nlisten = \"0.0.0.0:8080\"\ntls = \"off\""), ..Sources::default() });
        assert!(err.contains("invalid api.listen `0.0.0.0:8080` in /etc/couchmail/couchmail.toml"), "{err}");
        assert!(err.contains("api.tls is \"off\""), "{err}");
        assert!(err.contains("remove tls = \"off\""), "{err}");
        assert!(err.contains("listen = \"127.0.0.1:8080\""), "{err}");

        let err = load_err(Sources {
            file: file("[api]\ntls = \"off\""),
            env: env(&[("COUCHMAIL_API_LISTEN", "10.0.0.1:80")]),
            ..Sources::default()
        });
        assert!(err.contains("COUCHMAIL_API_LISTEN"), "{err}");
        assert!(err.contains("api.tls is \"off\" in /etc/couchmail/couchmail.toml"), "{err}");

        let err = load_err(Sources { file: file("[api]\ntls = \"yes\""), ..Sources::default() });
        assert!(err.contains("invalid api.tls `yes`"), "{err}");
        assert!(err.contains("\"auto\", \"on\" or \"off\""), "{err}");
    }

    #[test]
    fn listen_must_be_ip_and_port() {
        let err = load_err(Sources {
            flags: Overrides { listen: Some("localhost:80".into()), ..Overrides::default() },
            ..Sources::default()
        });
        assert!(err.contains("--listen"), "{err}");
        assert!(err.contains("127.0.0.1:8080"), "{err}");
    }

    #[test]
    fn couchdb_store_urls() {
        let parsed = |input: &str| StoreUrl::parse(input).unwrap();
        assert_eq!(
            parsed("couchdb:http://127.0.0.1:5984/couchmail"),
            StoreUrl::CouchDb { server: "http://127.0.0.1:5984".into(), database: "couchmail".into() }
        );
        assert_eq!(
            parsed("couchdb:https://couch.example.com/db/mail-2/"),
            StoreUrl::CouchDb { server: "https://couch.example.com/db".into(), database: "mail-2".into() }
        );
        assert_eq!(parsed("couchdb:http://[::1]:5984/m").to_string(), "couchdb:http://[::1]:5984/m");
        for (input, why) in [
            ("couchdb:http://127.0.0.1:5984", "end with the database"),
            ("couchdb:http://127.0.0.1:5984/", "end with the database"),
            ("couchdb:ftp://h/db", "http:// or https://"),
            ("couchdb:127.0.0.1:5984/db", "http:// or https://"),
            ("couchdb:http:///db", "names no server"),
            ("couchdb:http://h/db?x=1", "query"),
            ("couchdb:http://h/Mail", "not a CouchDB database name"),
            ("http://127.0.0.1:5984/couchmail", "couchdb:http://"),
        ] {
            let err = StoreUrl::parse(input).unwrap_err();
            assert!(err.contains(why), "{input}: {err}");
        }
    }

    #[test]
    fn a_couchdb_url_with_credentials_is_refused_without_echoing_them() {
        for source in [
            Sources {
                file: file("store = \"couchdb:http://admin:hunter2@127.0.0.1:5984/mail\""),
                ..Sources::default()
            },
            Sources { env: env(&[("COUCHMAIL_STORE", "couchdb:http://admin:hunter2@h/mail")]), ..Sources::default() },
            Sources {
                flags: Overrides { store: Some("couchdb:https://admin:hunter2@h/mail".into()), ..Overrides::default() },
                ..Sources::default()
            },
        ] {
            let err = load_err(source);
            assert!(!err.contains("hunter2"), "{err}");
            assert!(err.contains("couchdb.password_file") && err.contains("***@"), "{err}");
        }
        assert_eq!(redact_userinfo("couchdb:http://a:b@c@h:1/db"), "couchdb:http://***@h:1/db");
        assert_eq!(redact_userinfo("couchdb:http://h/x@y"), "couchdb:http://h/x@y");
        assert_eq!(redact_userinfo("sqlite:/a@b"), "sqlite:/a@b");
    }

    #[test]
    fn couchdb_login_from_file_and_environment() {
        let config = load(Sources {
            file: file(
                "store = \"couchdb:http://127.0.0.1:5984/mail\"\n[couchdb]\nusername = \"cm\"\n\
                 password_file = \"/etc/couchmail/pw\"\nca_file = \"/etc/ca.pem\"",
            ),
            ..Sources::default()
        });
        assert!(config.store.is_couchdb());
        assert_eq!(
            config.couchdb,
            CouchDbSettings {
                login: Some(("cm".into(), PasswordSource::File("/etc/couchmail/pw".into()))),
                ca_file: Some("/etc/ca.pem".into()),
            }
        );
        let config = load(Sources {
            env: env(&[("COUCHMAIL_COUCHDB_USERNAME", "cm"), (COUCHDB_PASSWORD_ENV, "hunter2")]),
            ..Sources::default()
        });
        assert_eq!(config.couchdb.login, Some(("cm".into(), PasswordSource::Env(Secret::new("hunter2")))));
        // The configuration is logged at debug level: the password must not be in it.
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn couchdb_login_needs_both_halves_and_one_password() {
        let err = load_err(Sources { file: file("[couchdb]\nusername = \"cm\""), ..Sources::default() });
        assert!(err.contains("no password") && err.contains("couchdb.password_file"), "{err}");
        let err = load_err(Sources { env: env(&[(COUCHDB_PASSWORD_ENV, "hunter2")]), ..Sources::default() });
        assert!(err.contains("no couchdb.username"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = load_err(Sources {
            file: file("[couchdb]\nusername = \"cm\"\npassword_file = \"/pw\""),
            env: env(&[(COUCHDB_PASSWORD_ENV, "hunter2")]),
            ..Sources::default()
        });
        assert!(err.contains("given twice"), "{err}");
        let err = load_err(Sources { file: file("[couchdb]\npassword = \"hunter2\""), ..Sources::default() });
        assert!(err.contains("password"), "{err}");
        let err = load_err(Sources { file: file("[couchdb]\nusername = \"a:b\""), ..Sources::default() });
        assert!(err.contains("couchdb.username"), "{err}");
    }

    #[test]
    fn store_url_forms() {
        assert_eq!(StoreUrl::parse("sqlite:rel/db"), Ok(StoreUrl::Sqlite(PathBuf::from("rel/db"))));
        assert_eq!(StoreUrl::parse("sqlite:///abs/db"), Ok(StoreUrl::Sqlite(PathBuf::from("/abs/db"))));
        assert!(StoreUrl::parse("sqlite:").is_err());
        assert!(StoreUrl::parse("/var/lib/couchmail/couchmail.db").unwrap_err().contains("sqlite:"));
        assert_eq!(StoreUrl::Sqlite(PathBuf::from("/a/b")).to_string(), "sqlite:/a/b");
    }

    #[test]
    fn unknown_keys_are_refused_with_the_file_named() {
        let err = load_err(Sources { file: file("stroe = \"sqlite:/x\""), ..Sources::default() });
        assert!(err.contains("/etc/couchmail/couchmail.toml"), "{err}");
        assert!(err.contains("stroe"), "{err}");
        let err = load_err(Sources { file: file("[api]\nport = 80"), ..Sources::default() });
        assert!(err.contains("port"), "{err}");
    }

    #[test]
    fn bad_log_settings_say_what_to_write() {
        let err = load_err(Sources { env: env(&[("COUCHMAIL_LOG_LEVEL", "loud")]), ..Sources::default() });
        assert!(err.contains("log.level") && err.contains("COUCHMAIL_LOG_LEVEL") && err.contains("debug"), "{err}");
        let err = load_err(Sources { file: file("[log]\nformat = \"xml\""), ..Sources::default() });
        assert!(err.contains("log.format") && err.contains("json"), "{err}");
    }

    #[test]
    fn config_file_lookup_order() {
        let dir = tempfile::tempdir().unwrap();
        let flag_file = dir.path().join("flag.toml");
        let env_file = dir.path().join("env.toml");
        std::fs::write(&flag_file, "store = \"sqlite:/flag\"").unwrap();
        std::fs::write(&env_file, "store = \"sqlite:/env\"").unwrap();
        let environment = env(&[(CONFIG_ENV, env_file.to_str().unwrap())]);

        let found = read_config_file(Some(&flag_file), &environment).unwrap().unwrap();
        assert_eq!(found.path, flag_file);
        let found = read_config_file(None, &environment).unwrap().unwrap();
        assert_eq!(found.path, env_file);

        let missing = dir.path().join("missing.toml");
        let err = format!("{:#}", read_config_file(Some(&missing), &environment).unwrap_err());
        assert!(err.contains("missing.toml") && err.contains("--config"), "{err}");
    }

    #[test]
    fn mail_defaults_follow_the_runtime_layout() {
        let production = load(Sources::default());
        assert_eq!(production.hostname, None);
        assert_eq!(production.mail.listen, Listen::AllInterfaces);
        assert_eq!(production.mail.ports, PRODUCTION_PORTS);
        assert_eq!(production.mail.outbound, Outbound::Direct);
        assert_eq!(production.mail.auth_failure_delay_secs, 2);
        assert!(production.mail.daemons);
        assert_eq!(production.mail.message_size_limit, 25 << 20);
        assert_eq!(production.tls, None);
        assert_eq!(production.auth_listen, "127.0.0.1:8091".parse().unwrap());

        let dev = load(Sources { dev: true, ..Sources::default() });
        assert_eq!(dev.hostname.as_deref(), Some("localhost"));
        assert_eq!(dev.mail.listen, Listen::Address("127.0.0.1".parse().unwrap()));
        assert_eq!(
            (dev.mail.ports.smtp, dev.mail.ports.submission, dev.mail.ports.submissions, dev.mail.ports.imaps),
            (2525, 2587, 4465, 9993)
        );
    }

    #[test]
    fn mail_keys_from_the_file() {
        let config = load(Sources {
            file: file(
                r#"
                hostname = "Mail.Example.COM."
                [mail]
                listen = "::1"
                smtp_port = 12525
                submission_port = 12587
                submissions_port = 14465
                imaps_port = 19993
                outbound = "disabled"
                auth_failure_delay_secs = 0
                daemons = false
                message_size_limit = "10M"
                [tls]
                cert = "/etc/ssl/mail.pem"
                key = "/etc/ssl/mail.key"
                [auth]
                listen = "127.0.0.1:18091"
                "#,
            ),
            dev: true,
            ..Sources::default()
        });
        assert_eq!(config.hostname.as_deref(), Some("mail.example.com"));
        assert_eq!(config.mail.listen, Listen::Address("::1".parse().unwrap()));
        assert_eq!(config.mail.ports, Ports { smtp: 12525, submission: 12587, submissions: 14465, imaps: 19993 });
        assert_eq!(config.mail.outbound, Outbound::Error);
        assert_eq!(config.mail.auth_failure_delay_secs, 0);
        assert!(!config.mail.daemons);
        assert_eq!(config.mail.message_size_limit, 10 << 20);
        assert_eq!(
            config.tls,
            Some(TlsFiles { cert: PathBuf::from("/etc/ssl/mail.pem"), key: PathBuf::from("/etc/ssl/mail.key") })
        );
        assert_eq!(config.auth_listen, "127.0.0.1:18091".parse().unwrap());

        let bytes = load(Sources { file: file("[mail]\nmessage_size_limit = 2048"), ..Sources::default() });
        assert_eq!(bytes.mail.message_size_limit, 2048);
    }

    #[test]
    fn mail_keys_from_the_environment_and_no_daemons_flag() {
        let environment = env(&[
            ("COUCHMAIL_HOSTNAME", "mx.example.org"),
            ("COUCHMAIL_MAIL_LISTEN", "all"),
            ("COUCHMAIL_MAIL_SMTP_PORT", "2600"),
            ("COUCHMAIL_MAIL_OUTBOUND", "disabled"),
            ("COUCHMAIL_MAIL_DAEMONS", "no"),
            ("COUCHMAIL_MAIL_AUTH_FAILURE_DELAY_SECS", "0"),
            ("COUCHMAIL_TLS_CERT", "/c.pem"),
            ("COUCHMAIL_TLS_KEY", "/k.pem"),
            ("COUCHMAIL_AUTH_LISTEN", "[::1]:9000"),
        ]);
        let config = load(Sources { env: environment, dev: true, ..Sources::default() });
        assert_eq!(config.hostname.as_deref(), Some("mx.example.org"));
        assert_eq!(config.mail.listen, Listen::AllInterfaces);
        assert_eq!(config.mail.ports.smtp, 2600);
        assert_eq!(config.mail.ports.imaps, 9993);
        assert_eq!(config.mail.outbound, Outbound::Error);
        assert!(!config.mail.daemons);
        assert_eq!(config.auth_listen, "[::1]:9000".parse().unwrap());

        let flags = Overrides { no_daemons: true, ..Overrides::default() };
        let config = load(Sources { file: file("[mail]\ndaemons = true"), flags, ..Sources::default() });
        assert!(!config.mail.daemons);
    }

    #[test]
    fn bad_mail_values_name_key_origin_and_fix() {
        let cases = [
            ("[mail]\nsmtp_port = 0", "mail.smtp_port", "1 to 65535"),
            ("[mail]\nlisten = \"0.0.0.0\"", "mail.listen", "\"all\""),
            ("[mail]\nlisten = \"mail.example.com\"", "mail.listen", "one IP address"),
            ("[mail]\noutbound = \"relay\"", "mail.outbound", "\"disabled\""),
            ("[mail]\nmessage_size_limit = \"big\"", "mail.message_size_limit", "K, M, G or T"),
            ("[mail]\nauth_failure_delay_secs = 600", "mail.auth_failure_delay_secs", "0 to 60"),
            ("hostname = \"mail example\"", "hostname", "mail.example.com"),
            ("[auth]\nlisten = \"0.0.0.0:8091\"", "auth.listen", "loopback only"),
            ("[tls]\ncert = \"/c.pem\"", "tls.cert and tls.key go together", "neither"),
            ("[mail]\nsmtp_port = 2525\nimaps_port = 2525", "mail.imaps_port and mail.smtp_port", "own"),
        ];
        for (text, key, fix) in cases {
            let err = load_err(Sources { file: file(text), ..Sources::default() });
            assert!(err.contains(key), "{text}: {err}");
            assert!(err.contains(fix), "{text}: {err}");
        }
        let err = load_err(Sources { env: env(&[("COUCHMAIL_MAIL_DAEMONS", "maybe")]), ..Sources::default() });
        assert!(err.contains("COUCHMAIL_MAIL_DAEMONS") && err.contains("true or false"), "{err}");
        let err = load_err(Sources { file: file("[mail]\nsmtp_port = \"x\""), ..Sources::default() });
        assert!(err.contains("smtp_port"), "{err}");
    }

    #[test]
    fn postscreen_is_on_with_the_production_settings_unless_configured() {
        for dev in [false, true] {
            let config = load(Sources { dev, ..Sources::default() });
            assert_eq!(config.postscreen, Some(Postscreen::default()), "dev {dev}");
        }
        let config = load(Sources { file: file("[postscreen]\nenabled = false"), ..Sources::default() });
        assert_eq!(config.postscreen, None);
        let config = load(Sources { env: env(&[("COUCHMAIL_POSTSCREEN_ENABLED", "no")]), ..Sources::default() });
        assert_eq!(config.postscreen, None);
    }

    #[test]
    fn policy_defaults_trust_loopback_and_keys_override_them() {
        let config = load(Sources::default());
        let policy = &config.policy;
        assert!(policy.greylisting);
        let trusted: Vec<String> = policy.trusted_networks.iter().map(ToString::to_string).collect();
        assert_eq!(trusted, ["127.0.0.0/8", "::1"]);
        assert_eq!((policy.messages_per_hour, policy.recipients_per_hour), (Some(200), Some(1000)));
        let built = policy.policy_config(Path::new("/var/lib/couchmail"));
        assert_eq!(built.greylist_state, Path::new("/var/lib/couchmail/greylist.db"));
        assert!(built.is_trusted("127.0.0.1".parse().unwrap()));

        let config = load(Sources {
            file: file(
                "[policy]\ngreylisting = false\ngreylist_delay_secs = 2\ngreylist_auto_allow_after = 0\n\
                 trusted_networks = []\nmessages_per_hour = 0\nallow_clients = [\"192.0.2.0/24\"]\n\
                 allow_sender_domains = [\"Example.COM\"]",
            ),
            ..Sources::default()
        });
        let policy = &config.policy;
        assert!(!policy.greylisting);
        assert_eq!(policy.greylist.delay, Duration::from_secs(2));
        assert_eq!(policy.greylist.auto_allow_after, None);
        assert!(policy.trusted_networks.is_empty());
        assert_eq!(policy.messages_per_hour, None, "0 is no limit");
        assert_eq!(policy.greylist.allowlist.client_networks.len(), 1);
        assert_eq!(policy.greylist.allowlist.sender_domains, ["example.com"]);

        for (text, key) in [
            ("[policy]\ngreylist_delay_secs = 90000", "policy.greylist_delay_secs"),
            ("[policy]\nmessages_per_hour = 4000000000", "policy.messages_per_hour"),
            ("[policy]\ntrusted_networks = [\"not a network\"]", "policy.trusted_networks"),
            ("[policy]\nallow_sender_domains = [\"a@b.example\"]", "policy.allow_sender_domains"),
        ] {
            let err = Config::load(Sources { file: file(text), ..Sources::default() }).unwrap_err();
            assert!(format!("{err:#}").contains(key), "{text}: {err:#}");
        }
    }

    #[test]
    fn spam_is_on_with_a_reject_score_of_15_unless_configured() {
        let spam = load(Sources::default()).spam.unwrap();
        assert_eq!((spam.threshold.tenths(), spam.smtp_reject_score.map(SpamScore::tenths)), (50, Some(150)));
        let spam = load(Sources { file: file("[spam]\nthreshold = 6.5\nsmtp_reject_score = 0"), ..Sources::default() })
            .spam
            .unwrap();
        assert_eq!((spam.threshold.tenths(), spam.smtp_reject_score), (65, None));
        assert_eq!(load(Sources { file: file("[spam]\nenabled = false"), ..Sources::default() }).spam, None);
        assert_eq!(load(Sources { dev: true, ..Sources::default() }).spam, None, "off under --dev unless asked");
        let asked = load(Sources { file: file("[spam]\nenabled = true"), dev: true, ..Sources::default() });
        assert!(asked.spam.is_some());
        for text in ["[spam]\nsmtp_reject_score = 5", "[spam]\nthreshold = 6.55", "[spam]\nsmtp_reject_score = 101"] {
            let err = Config::load(Sources { file: file(text), ..Sources::default() }).unwrap_err();
            assert!(format!("{err:#}").contains("spam."), "{text}: {err:#}");
        }
    }

    #[test]
    fn managesieve_is_on_at_4190_unless_configured() {
        let managesieve = load(Sources::default()).managesieve.unwrap();
        assert_eq!((managesieve.port, managesieve.port_configured), (4190, false));
        assert_eq!((managesieve.max_scripts, managesieve.max_script_bytes), (32, 262_144));
        assert_eq!(load(Sources { dev: true, ..Sources::default() }).managesieve.unwrap().port, 14190);
        let configured = load(Sources {
            file: file("[managesieve]\nport = 24190\nmax_scripts = 5\nmax_script_bytes = 1000"),
            env: env(&[("COUCHMAIL_MANAGESIEVE_MAX_CONNECTIONS", "7")]),
            ..Sources::default()
        })
        .managesieve
        .unwrap();
        assert_eq!(
            (configured.port, configured.port_configured, configured.max_scripts, configured.max_script_bytes),
            (24190, true, 5, 1000)
        );
        assert_eq!(configured.max_connections, 7);
        assert_eq!(
            load(Sources { file: file("[managesieve]\nenabled = false"), ..Sources::default() }).managesieve,
            None
        );
        for text in
            ["[managesieve]\nport = 587", "[managesieve]\nmax_script_bytes = 262145", "[managesieve]\nmax_scripts = 0"]
        {
            let err = Config::load(Sources { file: file(text), ..Sources::default() }).unwrap_err();
            assert!(format!("{err:#}").contains("managesieve."), "{text}: {err:#}");
        }
    }

    #[test]
    fn postscreen_keys_from_the_file_and_the_environment() {
        let config = load(Sources {
            file: file(
                r#"
                [postscreen]
                dnsbl_sites = ["dnsbl.test=127.0.0.[2..11]*3", "Dnswl.Test*-2"]
                dnsbl_threshold = 4
                dnsbl_allowlist_threshold = 0
                allowlist = ["192.0.2.0/24", "2001:db8::1"]
                greet_wait_secs = 2
                "#,
            ),
            ..Sources::default()
        });
        let postscreen = config.postscreen.unwrap();
        let sites: Vec<String> = postscreen.dnsbl_sites.iter().map(ToString::to_string).collect();
        assert_eq!(sites, ["dnsbl.test=127.0.0.[2..11]*3", "dnswl.test*-2"]);
        assert_eq!((postscreen.dnsbl_threshold, postscreen.dnsbl_allowlist_threshold), (4, 0));
        let allowlist: Vec<String> = postscreen.allowlist.iter().map(ToString::to_string).collect();
        assert_eq!(allowlist, ["192.0.2.0/24", "2001:db8::1/128"]);
        assert_eq!(postscreen.greet_wait_secs, Some(2));

        let config = load(Sources {
            file: file("[postscreen]\ndnsbl_sites = []\nallowlist = []"),
            env: env(&[
                ("COUCHMAIL_POSTSCREEN_ALLOWLIST", "10.0.0.0/8, 192.0.2.0/24"),
                ("COUCHMAIL_POSTSCREEN_DNSBL_THRESHOLD", "2"),
            ]),
            ..Sources::default()
        });
        let postscreen = config.postscreen.unwrap();
        assert!(postscreen.dnsbl_sites.is_empty(), "an empty list turns the DNSBL test off");
        assert_eq!(postscreen.allowlist.len(), 2, "the environment overrides the file");
        assert_eq!(postscreen.dnsbl_threshold, 2);
        assert_eq!(postscreen.greet_wait_secs, None, "Postfix's default");
    }

    #[test]
    fn bad_postscreen_values_name_key_origin_and_fix() {
        let cases = [
            ("[postscreen]\ndnsbl_sites = [\"zen.spamhaus.org*0\"]", "postscreen.dnsbl_sites", "not 0"),
            ("[postscreen]\ndnsbl_sites = [\"bad zone\"]", "postscreen.dnsbl_sites", "zen.spamhaus.org"),
            ("[postscreen]\ndnsbl_threshold = 0", "postscreen.dnsbl_threshold", "1 to 100"),
            ("[postscreen]\ndnsbl_allowlist_threshold = 1", "postscreen.dnsbl_allowlist_threshold", "-100 to 0"),
            ("[postscreen]\nallowlist = [\"192.0.2.1/24\"]", "postscreen.allowlist", "\"192.0.2.0/24\""),
            ("[postscreen]\nallowlist = [\"mail.example.com\"]", "postscreen.allowlist", "network"),
            ("[postscreen]\ngreet_wait_secs = 0", "postscreen.greet_wait_secs", "1 to 60"),
            ("[postscreen]\nenabled = \"maybe\"", "enabled", "line 2"),
            ("[postscreen]\nthreshold = 3", "unknown field `threshold`", "dnsbl_threshold"),
        ];
        for (text, key, fix) in cases {
            let err = load_err(Sources { file: file(text), ..Sources::default() });
            assert!(err.contains(key), "{text}: {err}");
            assert!(err.contains(fix), "{text}: {err}");
        }
        let err = load_err(Sources {
            env: env(&[("COUCHMAIL_POSTSCREEN_DNSBL_SITES", "dnsbl.test*x")]),
            ..Sources::default()
        });
        assert!(err.contains("COUCHMAIL_POSTSCREEN_DNSBL_SITES") && err.contains("weight"), "{err}");
    }

    #[test]
    fn every_key_has_an_env_variable_named_after_it() {
        for key in KEYS {
            let expected = format!("COUCHMAIL_{}", key.key.replace('.', "_").to_ascii_uppercase());
            assert_eq!(key.env, expected, "{}", key.key);
        }
    }

    /// The key table of docs/config.md, as generated from [`KEYS`].
    fn key_table() -> String {
        let mut table = String::from("| key | environment variable | default | what it does |\n|---|---|---|---|\n");
        for key in KEYS {
            table.push_str(&format!("| `{}` | `{}` | {} | {} |\n", key.key, key.env, key.default, key.about));
        }
        table
    }

    #[test]
    fn docs_key_table_is_generated_from_keys() {
        const BEGIN: &str = "<!-- begin generated: config keys -->\n";
        const END: &str = "<!-- end generated: config keys -->";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md");
        let docs = std::fs::read_to_string(path).unwrap();
        let start = docs.find(BEGIN).expect("docs/config.md has the begin marker") + BEGIN.len();
        let end = docs.find(END).expect("docs/config.md has the end marker");
        let expected = key_table();
        if docs[start..end] != expected {
            if std::env::var_os("UPDATE_EXPECT").is_some() {
                std::fs::write(path, format!("{}{expected}{}", &docs[..start], &docs[end..])).unwrap();
            } else {
                panic!(
                    "docs/config.md is stale: run `UPDATE_EXPECT=1 cargo test -p couchmail config` to regenerate it"
                );
            }
        }
        assert!(docs.contains(CONFIG_ENV));
    }
}
