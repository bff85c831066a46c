//! The command line, declared with clap's derive API.
//!
//! `couchmail [--config PATH] [--json] <group> <action>`: one group per kind
//! of document, plus `up` and `status`. Every command carries a one-line
//! about and an example in its `after_help`, so that `--help` teaches.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The exit codes, as `couchmail --help` shows them (docs/cli.md too).
const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  ok
  1  other error
  2  usage: wrong arguments or configuration
  3  not found
  4  conflict: changed by someone else meanwhile, or already exists
  5  invalid input: an address, size, password or field breaks a rule
  6  store unavailable
  7  refused: others depend on it (use --cascade), or a rule between documents forbids it

Examples:
  couchmail up --dev
  couchmail domain add example.com --quota-default 2G
  couchmail mailbox add alice@example.com --name 'Alice Liddell'
  couchmail mailbox passwd alice@example.com
  couchmail mailbox update alice@example.com --greylisting off --spam-threshold 6.5
  couchmail listing add block sender-domain spam.example --note 'pill spam'
  couchmail --json mailbox list --domain example.com
  couchmail export --include-secrets --output backup.jsonl";

/// CouchMail: multi-domain mail accounts in one store, served to Postfix and
/// Dovecot.
#[derive(Debug, Parser)]
#[command(name = "couchmail", version, about, after_help = EXIT_CODES_HELP, propagate_version = true)]
pub struct Cli {
    /// Configuration file (default: $COUCHMAIL_CONFIG, else /etc/couchmail/couchmail.toml if it exists).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Store to use, overriding the configuration: sqlite:PATH or couchdb:http://HOST:PORT/DATABASE.
    #[arg(long, global = true, value_name = "URL")]
    pub store: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole mail stack: couchmail's servers, Postfix and Dovecot (as root).
    #[command(
        after_help = "Examples:\n  sudo couchmail up --dev\n  sudo couchmail up --config /etc/couchmail/couchmail.toml\n  \
                      couchmail up --no-daemons --listen 127.0.0.1:8081"
    )]
    Up(UpArgs),
    /// Write the Postfix and Dovecot configuration for the current configuration into a directory.
    #[command(after_help = "Examples:\n  couchmail render --out /tmp/couchmail-config\n  \
                            couchmail render --dev --out ./rendered")]
    Render(RenderArgs),
    /// Show whether the store is reachable and how many documents it holds.
    #[command(after_help = "Example:\n  couchmail status --json")]
    Status,
    /// Manage the mail domains couchmail serves.
    #[command(subcommand, after_help = "Example:\n  couchmail domain add example.com --quota-default 2G")]
    Domain(DomainCommand),
    /// Manage domain aliases: other names for a domain.
    #[command(subcommand, after_help = "Example:\n  couchmail domain-alias add example.net --target example.com")]
    DomainAlias(DomainAliasCommand),
    /// Manage mailboxes: the users who receive mail and log in.
    #[command(subcommand, after_help = "Example:\n  couchmail mailbox add alice@example.com --name 'Alice'")]
    Mailbox(MailboxCommand),
    /// Manage aliases: addresses that forward to others (`@domain` catches all).
    #[command(subcommand, after_help = "Example:\n  couchmail alias add info@example.com --to alice@example.com")]
    Alias(AliasCommand),
    /// Manage the Sieve scripts that filter a mailbox's mail at delivery.
    #[command(
        subcommand,
        after_help = "Example:\n  couchmail sieve put alice@example.com vacation vacation.sieve --activate"
    )]
    Sieve(SieveCommand),
    /// Manage API bearer tokens.
    #[command(subcommand, after_help = "Example:\n  couchmail token create --admin --label ops")]
    Token(TokenCommand),
    /// Manage blocklists and allowlists: senders, sender domains and client networks, for everyone, a domain or a
    /// mailbox.
    #[command(subcommand, after_help = LISTING_HELP)]
    Listing(ListingCommand),
    /// Write every document to a JSON Lines file, without secrets unless asked.
    #[command(after_help = "Examples:\n  couchmail export --output backup.jsonl\n  \
                            couchmail export --include-secrets --output full-backup.jsonl")]
    Export(ExportArgs),
    /// Read a file written by `export`: create what is missing, overwrite what differs.
    #[command(after_help = "Examples:\n  couchmail import backup.jsonl\n  couchmail --json import - < backup.jsonl")]
    Import(ImportArgs),
    /// Copy every document, secrets included, from one store to another and check the copy.
    #[command(after_help = "Examples:\n  couchmail migrate --from sqlite:/var/lib/couchmail/couchmail.db \
                            --to couchdb:http://127.0.0.1:5984/couchmail\n  \
                            couchmail migrate --from couchdb:http://127.0.0.1:5984/couchmail --to sqlite:/tmp/copy.db")]
    Migrate(MigrateArgs),
    /// List and settle documents that replication left with conflicting revisions (CouchDB).
    #[command(subcommand, after_help = "Example:\n  couchmail conflicts list")]
    Conflicts(ConflictsCommand),
}

/// `couchmail export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to FILE (created with mode 0600) instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Include mailbox password hashes and API tokens.
    #[arg(long)]
    pub include_secrets: bool,
}

/// `couchmail import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file written by `couchmail export`; `-` reads standard input.
    pub file: PathBuf,
}

/// `couchmail migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The store to copy from, as `sqlite:PATH` or `couchdb:URL` (the `[couchdb]` settings log in).
    #[arg(long, value_name = "STORE_URL")]
    pub from: String,
    /// The store to copy into; a missing SQLite file or CouchDB database is created.
    #[arg(long, value_name = "STORE_URL")]
    pub to: String,
    /// Copy into a store that already holds documents (those not in the source are kept).
    #[arg(long)]
    pub into_non_empty: bool,
    /// Leave behind stored documents the model refuses, instead of stopping.
    #[arg(long)]
    pub skip_invalid: bool,
}

/// `couchmail conflicts …`
#[derive(Debug, Subcommand)]
pub enum ConflictsCommand {
    /// List documents with conflicting revisions and how they differ (secrets shown as fingerprints).
    #[command(after_help = "Example:\n  couchmail --json conflicts list")]
    List,
    /// Keep one revision of a document and discard the others.
    #[command(after_help = "Example:\n  couchmail conflicts resolve mailbox:alice@example.com --keep 3-9f2c…")]
    Resolve {
        /// The document's `_id`, as `conflicts list` shows it.
        id: String,
        /// The revision to keep: the current winner or one of the losers.
        #[arg(long, value_name = "REV")]
        keep: String,
    },
}

/// `couchmail up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Development mode: data in ./.couchmail-dev, everything on 127.0.0.1 and high ports, host name localhost.
    #[arg(long)]
    pub dev: bool,
    /// Run only couchmail's own servers, not Postfix and Dovecot (mail.daemons = false).
    #[arg(long)]
    pub no_daemons: bool,
    /// Where the REST API listens (a loopback IP and port), overriding the configuration.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// couchmail's data directory, overriding the configuration.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `couchmail render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The directory to write `postfix/` and `dovecot/` into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Render the development layout (as `up --dev` runs it).
    #[arg(long)]
    pub dev: bool,
}

/// `--active` / `--inactive`, for updates.
#[derive(Debug, Args, Default)]
#[group(multiple = false)]
pub struct ActiveFlags {
    /// Make it active.
    #[arg(long)]
    pub active: bool,
    /// Make it inactive: no mail, no logins.
    #[arg(long)]
    pub inactive: bool,
}

impl ActiveFlags {
    /// The requested state, if any.
    pub fn requested(&self) -> Option<bool> {
        match (self.active, self.inactive) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }
}

/// `couchmail domain …`
#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Add a domain.
    #[command(after_help = "Examples:\n  couchmail domain add example.com --quota-default 2G --max-mailboxes 50\n  \
                            couchmail domain add example.org --greylisting off --spam-threshold 5 --spam-reject 15")]
    Add {
        /// The domain (Unicode names are stored in A-label form).
        domain: String,
        /// Quota of new mailboxes that set none (bytes, or with a K/M/G/T suffix).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        quota_default: Option<u64>,
        /// Most mailboxes the domain may hold.
        #[arg(long, value_name = "N")]
        max_mailboxes: Option<u32>,
        /// Add it inactive: it receives no mail until activated.
        #[arg(long)]
        inactive: bool,
        #[command(flatten)]
        policy: PolicyFlags,
    },
    /// List domains.
    #[command(after_help = "Example:\n  couchmail domain list --json")]
    List,
    /// Show one domain.
    #[command(after_help = "Example:\n  couchmail domain show example.com")]
    Show {
        /// The domain.
        domain: String,
    },
    /// Change a domain's settings.
    #[command(after_help = "Examples:\n  couchmail domain update example.com --quota-default 5G --inactive\n  \
                            couchmail domain update example.com --spam-threshold 6.5 --messages-per-hour 100\n  \
                            couchmail domain update example.com --greylisting inherit")]
    Update {
        /// The domain.
        domain: String,
        /// New default quota (bytes, or with a K/M/G/T suffix).
        #[arg(long, value_name = "SIZE", value_parser = parse_size, conflicts_with = "no_quota_default")]
        quota_default: Option<u64>,
        /// Remove the default quota.
        #[arg(long)]
        no_quota_default: bool,
        /// New mailbox limit.
        #[arg(long, value_name = "N", conflicts_with = "no_max_mailboxes")]
        max_mailboxes: Option<u32>,
        /// Remove the mailbox limit.
        #[arg(long)]
        no_max_mailboxes: bool,
        #[command(flatten)]
        active: ActiveFlags,
        #[command(flatten)]
        policy: PolicyFlags,
    },
    /// Remove a domain.
    #[command(after_help = "Example:\n  couchmail domain rm example.com --cascade")]
    Rm {
        /// The domain.
        domain: String,
        /// Also remove its mailboxes, aliases, domain aliases, Sieve scripts, tokens and listings.
        #[arg(long)]
        cascade: bool,
    },
}

/// `couchmail domain-alias …`
#[derive(Debug, Subcommand)]
pub enum DomainAliasCommand {
    /// Make ALIAS another name for a domain: user@ALIAS reaches user@TARGET.
    #[command(after_help = "Example:\n  couchmail domain-alias add example.net --target example.com")]
    Add {
        /// The alias domain.
        alias: String,
        /// The domain it stands for.
        #[arg(long, value_name = "DOMAIN")]
        target: String,
    },
    /// List domain aliases.
    #[command(after_help = "Example:\n  couchmail domain-alias list")]
    List,
    /// Show one domain alias.
    #[command(after_help = "Example:\n  couchmail domain-alias show example.net")]
    Show {
        /// The alias domain.
        alias: String,
    },
    /// Remove a domain alias.
    #[command(after_help = "Example:\n  couchmail domain-alias rm example.net")]
    Rm {
        /// The alias domain.
        alias: String,
    },
}

/// `couchmail mailbox …`
#[derive(Debug, Subcommand)]
pub enum MailboxCommand {
    /// Add a mailbox.
    #[command(after_help = "Examples:\n  couchmail mailbox add alice@example.com --name 'Alice' --quota 2G\n  \
                            printf '%s\\n' \"$PASSWORD\" | couchmail mailbox add bob@example.com --password-stdin")]
    Add {
        /// The address, which is also the login.
        address: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Quota (bytes, or with a K/M/G/T suffix); default: the domain's.
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        quota: Option<u64>,
        /// A role: `admin` or `domain-admin:DOMAIN` (repeatable).
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        policy: PolicyFlags,
    },
    /// List mailboxes.
    #[command(after_help = "Example:\n  couchmail mailbox list --domain example.com")]
    List {
        /// Only this domain's.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Show one mailbox (never its password hash).
    #[command(after_help = "Example:\n  couchmail mailbox show alice@example.com --json")]
    Show {
        /// The address.
        address: String,
    },
    /// Change a mailbox.
    #[command(after_help = "Examples:\n  \
                            couchmail mailbox update alice@example.com --quota 5G --add-role domain-admin:example.com\n  \
                            couchmail mailbox update alice@example.com --greylisting off --spam-threshold 4.5\n  \
                            couchmail mailbox update bob@example.com --messages-per-hour 0\n  \
                            couchmail mailbox update bob@example.com --messages-per-hour inherit")]
    Update {
        /// The address.
        address: String,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        /// New quota (bytes, or with a K/M/G/T suffix).
        #[arg(long, value_name = "SIZE", value_parser = parse_size, conflicts_with = "no_quota")]
        quota: Option<u64>,
        /// Remove the mailbox's own quota: the domain's default applies.
        #[arg(long)]
        no_quota: bool,
        #[command(flatten)]
        active: ActiveFlags,
        /// Grant a role: `admin` or `domain-admin:DOMAIN` (repeatable).
        #[arg(long = "add-role", value_name = "ROLE")]
        add_roles: Vec<String>,
        /// Take a role away (repeatable).
        #[arg(long = "remove-role", value_name = "ROLE")]
        remove_roles: Vec<String>,
        #[command(flatten)]
        policy: PolicyFlags,
    },
    /// Set a mailbox's password (asked twice on a terminal, or read from stdin).
    #[command(after_help = "Examples:\n  couchmail mailbox passwd alice@example.com\n  \
                            printf '%s\\n' \"$PASSWORD\" | couchmail mailbox passwd alice@example.com --stdin")]
    Passwd {
        /// The address.
        address: String,
        /// Read the password from the first line of standard input instead of asking.
        #[arg(long)]
        stdin: bool,
    },
    /// Remove a mailbox.
    #[command(after_help = "Example:\n  couchmail mailbox rm alice@example.com --cascade")]
    Rm {
        /// The address.
        address: String,
        /// Also remove its Sieve scripts, tokens and listings, and take it out of the aliases that target it.
        #[arg(long)]
        cascade: bool,
    },
}

/// `couchmail alias …`
#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Add an alias; `@domain` is the domain's catch-all.
    #[command(
        after_help = "Examples:\n  couchmail alias add info@example.com --to alice@example.com --to bob@example.com\n  \
                            couchmail alias add @example.com --to postmaster@example.com"
    )]
    Add {
        /// The alias address, or `@domain` for a catch-all.
        key: String,
        /// Where mail goes (repeatable).
        #[arg(long = "to", value_name = "ADDRESS", required = true)]
        targets: Vec<String>,
    },
    /// List aliases.
    #[command(after_help = "Example:\n  couchmail alias list --domain example.com")]
    List {
        /// Only this domain's.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Show one alias.
    #[command(after_help = "Example:\n  couchmail alias show info@example.com")]
    Show {
        /// The alias address or `@domain`.
        key: String,
    },
    /// Change an alias's targets or state.
    #[command(
        after_help = "Example:\n  couchmail alias update info@example.com --add-target carol@example.com --remove-target bob@example.com"
    )]
    Update {
        /// The alias address or `@domain`.
        key: String,
        /// Add a target (repeatable).
        #[arg(long = "add-target", value_name = "ADDRESS")]
        add_targets: Vec<String>,
        /// Remove a target (repeatable).
        #[arg(long = "remove-target", value_name = "ADDRESS")]
        remove_targets: Vec<String>,
        #[command(flatten)]
        active: ActiveFlags,
    },
    /// Remove an alias.
    #[command(after_help = "Example:\n  couchmail alias rm info@example.com")]
    Rm {
        /// The alias address or `@domain`.
        key: String,
    },
}

/// `couchmail sieve …`
#[derive(Debug, Subcommand)]
pub enum SieveCommand {
    /// Store a Sieve script (create or replace) from FILE or standard input.
    #[command(after_help = "Examples:\n  couchmail sieve put alice@example.com vacation vacation.sieve --activate\n  \
                            couchmail sieve put alice@example.com spam - < spam.sieve")]
    Put {
        /// The mailbox.
        address: String,
        /// The script's name.
        name: String,
        /// The file to read; `-` or nothing reads standard input.
        file: Option<PathBuf>,
        /// Make it the mailbox's active script.
        #[arg(long)]
        activate: bool,
    },
    /// List a mailbox's scripts.
    #[command(after_help = "Example:\n  couchmail sieve list alice@example.com")]
    List {
        /// The mailbox.
        address: String,
    },
    /// Print a script.
    #[command(after_help = "Example:\n  couchmail sieve show alice@example.com vacation > vacation.sieve")]
    Show {
        /// The mailbox.
        address: String,
        /// The script's name.
        name: String,
    },
    /// Make a script the one that runs at delivery.
    #[command(after_help = "Example:\n  couchmail sieve activate alice@example.com vacation")]
    Activate {
        /// The mailbox.
        address: String,
        /// The script's name.
        name: String,
    },
    /// Run no script at delivery.
    #[command(after_help = "Example:\n  couchmail sieve deactivate alice@example.com")]
    Deactivate {
        /// The mailbox.
        address: String,
    },
    /// Remove a script (deactivating it first if it is active).
    #[command(after_help = "Example:\n  couchmail sieve rm alice@example.com vacation")]
    Rm {
        /// The mailbox.
        address: String,
        /// The script's name.
        name: String,
    },
}

/// `couchmail token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a bearer token for the REST API; it is printed once, store it then.
    #[command(after_help = "Examples:\n  couchmail token create --admin --label ops\n  \
                            couchmail token create --mailbox alice@example.com --label phone")]
    Create {
        /// A token for the administrator.
        #[arg(long, conflicts_with = "mailbox", required_unless_present = "mailbox")]
        admin: bool,
        /// A token that acts as this mailbox's owner (with the mailbox's roles).
        #[arg(long, value_name = "ADDRESS")]
        mailbox: Option<String>,
        /// What the token is for.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List tokens (never their secrets).
    #[command(after_help = "Example:\n  couchmail token list --json")]
    List,
    /// Revoke a token: it stops working at once.
    #[command(after_help = "Example:\n  couchmail token revoke 3f9a2c")]
    Revoke {
        /// The token's id, as `token list` shows it.
        id: String,
    },
}

/// What `couchmail listing --help` says before the examples.
const LISTING_HELP: &str = "\
A listing blocks or allows mail at RCPT time, before greylisting:
  block  refused with 554 5.7.1, saying whose blocklist the sender is on
  allow  never greylisted, and a block of a wider scope does not apply
It matches one kind of thing:
  sender         an envelope sender address (also with a +extension)
  sender-domain  a sender domain and all its subdomains
  client         the SMTP client's IPv4 or IPv6 address, or a network in CIDR notation
for one scope:
  (no flag)          global: mail to every recipient (the admin's list)
  --domain DOMAIN    mail to the domain's addresses (its domain admins' list)
  --mailbox ADDRESS  mail to one mailbox (its owner's list)
The narrowest scope with a matching listing decides, and within a scope allow beats block.
Values are stored in one normal form (lower case, A-labels, a network's host bits cleared),
so one entry is never listed twice. The key SCOPE:ACTION:KIND:VALUE names a listing in
`show`, `update` and `rm`: the first four columns of `listing list`, joined by `:`.

Examples:
  couchmail listing add block client 192.0.2.0/24 --note 'dictionary attacks'
  couchmail listing add allow sender-domain partner.example --domain example.com
  couchmail listing add block sender spam@bad.example --mailbox alice@example.com
  couchmail listing list --mailbox alice@example.com
  couchmail listing rm global:block:client:192.0.2.0/24
  couchmail listing rm block sender spam@bad.example --mailbox alice@example.com";

/// `block` or `allow`, as typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListingActionArg {
    /// Refuse at RCPT with 554 5.7.1.
    Block,
    /// Never greylist, and ignore blocks of wider scopes.
    Allow,
}

/// What a listing matches, as typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListingKindArg {
    /// An envelope sender address.
    Sender,
    /// A sender domain and its subdomains.
    SenderDomain,
    /// A client IP address or CIDR network.
    Client,
}

/// `--domain` / `--mailbox`: a listing's scope; neither is global.
#[derive(Debug, Args, Default)]
#[group(multiple = false)]
pub struct ListingScopeFlags {
    /// Mail to this domain's addresses: its domain admins' list (without --domain or --mailbox: global).
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Mail to this mailbox only: its owner's list.
    #[arg(long, value_name = "ADDRESS")]
    pub mailbox: Option<String>,
}

/// Which listing `show`, `update` and `rm` mean: its key, or the words given to `add`.
#[derive(Debug, Args)]
pub struct ListingTarget {
    /// The key SCOPE:ACTION:KIND:VALUE, or ACTION KIND VALUE with the scope's --domain or --mailbox as for `add`.
    #[arg(required = true, num_args = 1..=3, value_name = "KEY | ACTION KIND VALUE")]
    pub words: Vec<String>,
    #[command(flatten)]
    pub scope: ListingScopeFlags,
}

/// `couchmail listing …`
#[derive(Debug, Subcommand)]
pub enum ListingCommand {
    /// Block or allow a sender, a sender domain or a client network, for everyone, a domain or a mailbox.
    #[command(
        after_help = "Examples:\n  couchmail listing add block client 192.0.2.77/24   # stored as 192.0.2.0/24\n  \
                            couchmail listing add block sender-domain spam.example --note 'pill spam'\n  \
                            couchmail listing add allow client 2001:db8::/32 --domain example.com\n  \
                            couchmail listing add allow sender boss@partner.example --mailbox alice@example.com"
    )]
    Add {
        /// `block` or `allow`.
        action: ListingActionArg,
        /// What to match: `sender`, `sender-domain` or `client`.
        kind: ListingKindArg,
        /// An address, a domain, or an IP address or CIDR network, by KIND.
        value: String,
        #[command(flatten)]
        scope: ListingScopeFlags,
        /// Why it is listed, for the people who manage the list (at most 256 characters; never shown to senders).
        #[arg(long, value_name = "TEXT", default_value = "")]
        note: String,
    },
    /// List listings: all of them, the global ones, a domain's (with its mailboxes'), or a mailbox's.
    #[command(after_help = "Examples:\n  couchmail listing list\n  couchmail listing list --global\n  \
                            couchmail listing list --domain example.com\n  \
                            couchmail --json listing list --mailbox alice@example.com")]
    List {
        /// Only the global listings.
        #[arg(long, conflicts_with_all = ["domain", "mailbox"])]
        global: bool,
        /// Only this domain's listings and its mailboxes'.
        #[arg(long, value_name = "DOMAIN", conflicts_with = "mailbox")]
        domain: Option<String>,
        /// Only this mailbox's listings.
        #[arg(long, value_name = "ADDRESS")]
        mailbox: Option<String>,
    },
    /// Show one listing.
    #[command(after_help = "Examples:\n  couchmail listing show global:block:client:192.0.2.0/24\n  \
                            couchmail listing show block sender spam@bad.example --mailbox alice@example.com")]
    Show {
        #[command(flatten)]
        target: ListingTarget,
    },
    /// Change a listing's note (what it matches cannot change: remove it and add another).
    #[command(
        after_help = "Example:\n  couchmail listing update global:block:client:192.0.2.0/24 --note 'ticket 1234'"
    )]
    Update {
        #[command(flatten)]
        target: ListingTarget,
        /// The new note; `''` removes it.
        #[arg(long, value_name = "TEXT", required = true)]
        note: String,
    },
    /// Remove a listing.
    #[command(
        visible_alias = "remove",
        after_help = "Examples:\n  couchmail listing rm global:block:client:192.0.2.0/24\n  \
                      couchmail listing rm allow sender-domain partner.example --domain example.com"
    )]
    Rm {
        #[command(flatten)]
        target: ListingTarget,
    },
}

/// `on`, `off` or `inherit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Toggle {
    /// Turn it on.
    On,
    /// Turn it off.
    Off,
    /// Remove the own value: a mailbox takes its domain's, a domain the configuration's.
    Inherit,
}

/// A setting's new value, or `inherit` to remove the own value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Setting<T> {
    /// Set it to this.
    Value(T),
    /// Remove it: a mailbox takes its domain's, a domain the configuration's.
    Inherit,
}

/// The mail-policy settings of a domain or mailbox (issue #5); every flag is optional and leaves the setting
/// alone when absent.
#[derive(Debug, Args, Default, Clone)]
#[command(next_help_heading = "Mail policy (`inherit`: a mailbox takes its domain's, a domain the configuration's)")]
pub struct PolicyFlags {
    /// Greylisting of mail from unknown senders.
    #[arg(long, value_name = "on|off|inherit", hide_possible_values = true)]
    pub greylisting: Option<Toggle>,
    /// SpamAssassin score (0 to 100, one decimal) from which mail is filed into Junk.
    #[arg(long, value_name = "SCORE|inherit", value_parser = parse_score_setting, allow_negative_numbers = true)]
    pub spam_threshold: Option<Setting<f64>>,
    /// Score from which mail should be refused at SMTP time; above the spam threshold. Recorded but not
    /// applied yet: the SMTP-time refusal scans once per message with the site-wide `spam.smtp_reject_score`.
    #[arg(long, value_name = "SCORE|inherit", value_parser = parse_score_setting, allow_negative_numbers = true)]
    pub spam_reject: Option<Setting<f64>>,
    /// Messages a logged-in user may send per hour (0: none).
    #[arg(long, value_name = "N|inherit", value_parser = parse_limit_setting)]
    pub messages_per_hour: Option<Setting<u32>>,
    /// Recipients a logged-in user may send to per hour, summed over messages.
    #[arg(long, value_name = "N|inherit", value_parser = parse_limit_setting)]
    pub recipients_per_hour: Option<Setting<u32>>,
}

impl PolicyFlags {
    /// Whether no policy flag was given.
    pub fn is_empty(&self) -> bool {
        self.greylisting.is_none()
            && self.spam_threshold.is_none()
            && self.spam_reject.is_none()
            && self.messages_per_hour.is_none()
            && self.recipients_per_hour.is_none()
    }
}

/// Parses `--spam-threshold`/`--spam-reject`: a number or `inherit`. Bounds and the one decimal are the model's
/// to check, so that breaking them is invalid input (exit 5) rather than a usage error.
fn parse_score_setting(input: &str) -> Result<Setting<f64>, String> {
    if input == "inherit" {
        return Ok(Setting::Inherit);
    }
    match input.trim().parse::<f64>() {
        Ok(score) if score.is_finite() => Ok(Setting::Value(score)),
        _ => Err(format!("`{input}` is not a score: write a number such as 6.5, or `inherit`")),
    }
}

/// Parses `--messages-per-hour`/`--recipients-per-hour`: a whole number or `inherit`.
fn parse_limit_setting(input: &str) -> Result<Setting<u32>, String> {
    if input == "inherit" {
        return Ok(Setting::Inherit);
    }
    input.trim().parse::<u32>().map(Setting::Value).map_err(|_| {
        format!("`{input}` is not a number of messages or recipients: write one such as 100, or `inherit`")
    })
}

/// Parses a size: bytes, or a number with a K, M, G or T suffix (powers of
/// 1024; `KiB`, `KB` and `k` are read the same).
pub fn parse_size(input: &str) -> Result<u64, String> {
    let trimmed = input.trim();
    let digits_end = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    let invalid = || format!("`{input}` is not a size: write bytes or a number with K, M, G or T, as in 2G");
    let number: u64 = digits.parse().map_err(|_| invalid())?;
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit.strip_suffix("IB").or_else(|| unit.strip_suffix('B')).unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(invalid()),
    };
    number.checked_mul(1 << shift).ok_or_else(|| format!("`{input}` is too large"))
}

/// Formats a size with the largest unit that divides it exactly.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes != 0 && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes_with_suffixes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("3 KB"), Ok(3 << 10));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert!(parse_size("2X").unwrap_err().contains("2G"));
        assert!(parse_size("").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("99999999999T").unwrap_err().contains("too large"));
    }

    #[test]
    fn policy_settings_take_inherit() {
        assert_eq!(parse_score_setting("6.5"), Ok(Setting::Value(6.5)));
        assert_eq!(parse_score_setting("inherit"), Ok(Setting::Inherit));
        assert!(parse_score_setting("lots").unwrap_err().contains("6.5"));
        assert!(parse_score_setting("inf").is_err());
        assert_eq!(parse_limit_setting("0"), Ok(Setting::Value(0)));
        assert_eq!(parse_limit_setting("inherit"), Ok(Setting::Inherit));
        assert!(parse_limit_setting("-1").is_err());
        assert!(parse_limit_setting("1.5").is_err());
        assert!(PolicyFlags::default().is_empty());
    }

    #[test]
    fn listing_targets_take_a_key_or_three_words() {
        let cli = Cli::try_parse_from(["couchmail", "listing", "rm", "global:block:client:192.0.2.0/24"]).unwrap();
        let Command::Listing(ListingCommand::Rm { target }) = cli.command else { panic!("{cli:?}") };
        assert_eq!(target.words, ["global:block:client:192.0.2.0/24"]);
        let cli = Cli::try_parse_from([
            "couchmail",
            "listing",
            "remove",
            "block",
            "client",
            "192.0.2.1",
            "--domain",
            "a.example",
        ])
        .unwrap();
        let Command::Listing(ListingCommand::Rm { target }) = cli.command else { panic!("{cli:?}") };
        assert_eq!(target.words.len(), 3);
        assert_eq!(target.scope.domain.as_deref(), Some("a.example"));
        assert!(Cli::try_parse_from(["couchmail", "listing", "rm", "a", "b", "c", "d"]).is_err());
        assert!(Cli::try_parse_from(["couchmail", "listing", "rm"]).is_err());
        assert!(
            Cli::try_parse_from([
                "couchmail",
                "listing",
                "add",
                "block",
                "client",
                "192.0.2.1",
                "--domain",
                "a.example",
                "--mailbox",
                "b@a.example"
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["couchmail", "listing", "list", "--global", "--domain", "a.example"]).is_err());
    }

    #[test]
    fn sizes_format_back() {
        assert_eq!(format_size(2 << 30), "2G");
        assert_eq!(format_size(1536 << 20), "1536M");
        assert_eq!(format_size(1000), "1000");
        assert_eq!(format_size(0), "0");
        for input in ["5G", "3T", "17M", "9K", "123"] {
            assert_eq!(format_size(parse_size(input).unwrap()), input);
        }
    }

    #[test]
    fn every_command_has_an_example() {
        fn walk(command: &clap::Command, path: &str) {
            for sub in command.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                let after = sub.get_after_help().map(|s| s.to_string()).unwrap_or_default();
                assert!(after.contains("couchmail "), "`{path}` has no example in after_help");
                assert!(sub.get_about().is_some(), "`{path}` has no about");
                walk(sub, &path);
            }
        }
        walk(&Cli::command(), "couchmail");
    }
}
