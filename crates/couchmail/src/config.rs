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
//! variables, so that the layering can be tested with plain maps.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;
use tracing_subscriber::filter::LevelFilter;

/// The file read when neither `--config` nor `$COUCHMAIL_CONFIG` names one.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/couchmail/couchmail.toml";
/// The variable that names the configuration file.
pub const CONFIG_ENV: &str = "COUCHMAIL_CONFIG";
/// Where `couchmail up --dev` keeps its data unless told otherwise.
pub const DEV_DATA_DIR: &str = "./.couchmail-dev";
/// The API port when none is configured.
const DEFAULT_API_PORT: u16 = 8080;

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
                `couchdb:` and `http(s):` URLs are recognised and refused until the CouchDB backend arrives (issue #4).",
    },
    KeyDoc {
        key: "data_dir",
        env: "COUCHMAIL_DATA_DIR",
        default: "`/var/lib/couchmail`; with `up --dev`: `./.couchmail-dev`",
        about: "couchmail's own files: the default SQLite store and `admin-token`, the first admin's bearer token \
                (mode 0600, written on first run). `up` creates it with mode 0750.",
    },
    KeyDoc {
        key: "runtime_dir",
        env: "COUCHMAIL_RUNTIME_DIR",
        default: "`/run/couchmail`; with `up --dev`: `<data_dir>/run`",
        about: "Sockets and files that live as long as `couchmail up` runs (issue #3 puts the Postfix and Dovecot \
                sockets here). `up` creates it with mode 0755.",
    },
    KeyDoc {
        key: "api.listen",
        env: "COUCHMAIL_API_LISTEN",
        default: "`127.0.0.1:8080`",
        about: "IP address and port of the REST API (`[::1]:8080` for IPv6; host names are not resolved; port 0 picks \
                a free port, which `up` prints). Only loopback addresses are accepted until the API gets TLS with \
                issue #3. With `up --dev` a non-loopback address is replaced by `127.0.0.1` with the same port.",
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
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `store = "sqlite:/var/lib/couchmail/couchmail.db"`
    pub store: Option<String>,
    /// `data_dir = "/var/lib/couchmail"`
    pub data_dir: Option<PathBuf>,
    /// `runtime_dir = "/run/couchmail"`
    pub runtime_dir: Option<PathBuf>,
    /// `[api]`
    #[serde(default)]
    pub api: RawApi,
    /// `[log]`
    #[serde(default)]
    pub log: RawLog,
}

/// The `[api]` table.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// `listen = "127.0.0.1:8080"`
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
    /// `up --dev`: development defaults (a local data directory, loopback).
    pub dev: bool,
}

/// Where the documents live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite:PATH`: the embedded store in one file.
    Sqlite(PathBuf),
}

impl StoreUrl {
    /// Parses `sqlite:PATH` (also `sqlite://PATH`); `couchdb:`/`http:` URLs are
    /// recognised and refused until issue #4 brings the CouchDB backend.
    pub fn parse(input: &str) -> Result<StoreUrl, String> {
        if let Some(rest) = input.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err("the SQLite store needs a file path, as in `sqlite:/var/lib/couchmail/couchmail.db`".into());
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        if ["couchdb:", "http:", "https:"].iter().any(|scheme| input.starts_with(scheme)) {
            return Err("the CouchDB store is not supported yet (issue #4); use `sqlite:PATH`".into());
        }
        Err("a store URL starts with `sqlite:`, as in `sqlite:/var/lib/couchmail/couchmail.db`".into())
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
        }
    }
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

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The configuration file that was read, if any.
    pub file: Option<PathBuf>,
    /// Where the documents live.
    pub store: StoreUrl,
    /// Where the REST API listens (always a loopback address for now).
    pub api_listen: SocketAddr,
    /// couchmail's own files.
    pub data_dir: PathBuf,
    /// Sockets and files that live as long as `up` runs.
    pub runtime_dir: PathBuf,
    /// Logging.
    pub log: LogConfig,
    /// Whether development defaults were applied (`up --dev`).
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
struct Setting<T> {
    value: T,
    origin: Origin,
}

/// The sources merged key by key, before validation.
#[derive(Debug, Default)]
struct Merged {
    store: Option<Setting<String>>,
    data_dir: Option<Setting<PathBuf>>,
    runtime_dir: Option<Setting<PathBuf>>,
    api_listen: Option<Setting<String>>,
    log_level: Option<Setting<String>>,
    log_format: Option<Setting<String>>,
}

impl Merged {
    fn apply(&mut self, raw: RawConfig, origin: &Origin) {
        let set = |value| Some(Setting { value, origin: origin.clone() });
        if let Some(value) = raw.store {
            self.store = set(value);
        }
        if let Some(value) = raw.data_dir {
            self.data_dir = Some(Setting { value, origin: origin.clone() });
        }
        if let Some(value) = raw.runtime_dir {
            self.runtime_dir = Some(Setting { value, origin: origin.clone() });
        }
        if let Some(value) = raw.api.listen {
            self.api_listen = set(value);
        }
        if let Some(value) = raw.log.level {
            self.log_level = set(value);
        }
        if let Some(value) = raw.log.format {
            self.log_format = set(value);
        }
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
            merged.apply(raw, &Origin::File(file.path));
        }
        for key_doc in KEYS {
            let Some(value) = sources.env.get(key_doc.env).filter(|value| !value.is_empty()) else { continue };
            let origin = Origin::Env(key_doc.env);
            let value = value.clone();
            match key_doc.key {
                "store" => merged.store = Some(Setting { value, origin }),
                "data_dir" => merged.data_dir = Some(Setting { value: PathBuf::from(value), origin }),
                "runtime_dir" => merged.runtime_dir = Some(Setting { value: PathBuf::from(value), origin }),
                "api.listen" => merged.api_listen = Some(Setting { value, origin }),
                "log.level" => merged.log_level = Some(Setting { value, origin }),
                "log.format" => merged.log_format = Some(Setting { value, origin }),
                other => unreachable!("KEYS names key `{other}`, which is not handled here"),
            }
        }
        let flags = sources.flags;
        if let Some(value) = flags.store {
            merged.store = Some(Setting { value, origin: Origin::Flag("--store") });
        }
        if let Some(value) = flags.listen {
            merged.api_listen = Some(Setting { value, origin: Origin::Flag("--listen") });
        }
        if let Some(value) = flags.data_dir {
            merged.data_dir = Some(Setting { value, origin: Origin::Flag("--data-dir") });
        }
        validate(merged, file_path, sources.dev)
    }
}

fn validate(merged: Merged, file: Option<PathBuf>, dev: bool) -> anyhow::Result<Config> {
    let data_dir = match merged.data_dir {
        Some(setting) if setting.value.as_os_str().is_empty() => {
            bail!("data_dir is empty {}: write a directory, as in data_dir = \"/var/lib/couchmail\"", setting.origin)
        }
        Some(setting) => setting.value,
        None if dev => PathBuf::from(DEV_DATA_DIR),
        None => PathBuf::from("/var/lib/couchmail"),
    };
    let runtime_dir = match merged.runtime_dir {
        Some(setting) if setting.value.as_os_str().is_empty() => {
            bail!("runtime_dir is empty {}: write a directory, as in runtime_dir = \"/run/couchmail\"", setting.origin)
        }
        Some(setting) => setting.value,
        None if dev => data_dir.join("run"),
        None => PathBuf::from("/run/couchmail"),
    };
    let store = match merged.store {
        Some(setting) => StoreUrl::parse(&setting.value)
            .map_err(|why| anyhow::anyhow!("invalid store `{}` {}: {why}", setting.value, setting.origin))?,
        None => StoreUrl::Sqlite(data_dir.join("couchmail.db")),
    };
    let api_listen = match merged.api_listen {
        Some(setting) => {
            let addr = parse_listen(&setting.value)
                .map_err(|why| anyhow::anyhow!("invalid api.listen `{}` {}: {why}", setting.value, setting.origin))?;
            if dev && !addr.ip().is_loopback() {
                // --dev promises loopback: keep the configured port only.
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
            } else if !addr.ip().is_loopback() {
                bail!(
                    "invalid api.listen `{}` {}: the API has no TLS yet (issue #3), so it listens on loopback only; \
                     write listen = \"127.0.0.1:{}\" under [api]",
                    setting.value,
                    setting.origin,
                    addr.port()
                );
            } else {
                addr
            }
        }
        None => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_API_PORT),
    };
    let level = match merged.log_level {
        Some(setting) => Some(
            parse_level(&setting.value)
                .map_err(|why| anyhow::anyhow!("invalid log.level `{}` {}: {why}", setting.value, setting.origin))?,
        ),
        None => None,
    };
    let format = match merged.log_format {
        Some(setting) => match setting.value.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => bail!("invalid log.format `{other}` {}: write format = \"text\" or \"json\"", setting.origin),
        },
        None => LogFormat::Text,
    };
    Ok(Config { file, store, api_listen, data_dir, runtime_dir, log: LogConfig { level, format }, dev })
}

fn parse_listen(input: &str) -> Result<SocketAddr, String> {
    input.parse::<SocketAddr>().map_err(|_| {
        "write an IP address and a port, as in \"127.0.0.1:8080\" or \"[::1]:8080\" (host names are not resolved)"
            .to_owned()
    })
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
    fn non_loopback_listen_is_refused_naming_source_and_fix() {
        let err = load_err(Sources { file: file("[api]\nlisten = \"0.0.0.0:8080\""), ..Sources::default() });
        assert!(err.contains("api.listen"), "{err}");
        assert!(err.contains("/etc/couchmail/couchmail.toml"), "{err}");
        assert!(err.contains("issue #3"), "{err}");
        assert!(err.contains("127.0.0.1:8080"), "{err}");

        let err = load_err(Sources { env: env(&[("COUCHMAIL_API_LISTEN", "10.0.0.1:80")]), ..Sources::default() });
        assert!(err.contains("COUCHMAIL_API_LISTEN"), "{err}");
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
    fn couchdb_store_is_not_supported_yet() {
        let err =
            load_err(Sources { file: file("store = \"couchdb:http://127.0.0.1:5984/mail\""), ..Sources::default() });
        assert!(err.contains("not supported yet (issue #4)"), "{err}");
        assert!(err.contains("store"), "{err}");
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
