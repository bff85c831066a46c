//! `couchmail render --out DIR`, and the one place that turns a [`Config`]
//! into the render crate's [`Stack`], shared with `up`.
//!
//! `render` writes the files `up` would write into its runtime directory —
//! `postfix/main.cf`, `postfix/master.cf`, `dovecot/dovecot.conf` and
//! `dovecot/auth.lua` — into DIR instead, with the modes rendered and
//! without changing owners, so that a person can read them and Postfix and
//! Dovecot managed outside couchmail can run from them.
//! Every path inside them is the runtime layout of the configuration
//! (docs/runtime.md), except that Dovecot finds `auth.lua` in DIR.
//!
//! Without a configured certificate, `render` also makes the self-signed one
//! that the files name (in `<data_dir>/tls/`), as `up` would.
//!
//! The auth secret: `up` with its own daemons makes a fresh one at every
//! start and keeps it in memory. Daemons run elsewhere need a secret that
//! outlives a restart of couchmail, so `render` and `up --no-daemons` share
//! `<data_dir>/auth-secret` (0600, made on first use).

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use couchmail_render::{AuthEndpoint, Paths, Rendered, Spam, Stack, VmailIds};
use couchmail_supervisor::system;
use serde::Serialize;

use crate::config::{Config, StoreUrl};
use crate::exit::{Exit, Failure};
use crate::output;

/// The file in the data directory that holds the auth secret shared with
/// Dovecot when couchmail does not run Dovecot itself.
pub const AUTH_SECRET_FILE: &str = "auth-secret";
/// The id of user and group `vmail` when no such user exists yet.
pub const DEFAULT_VMAIL_ID: u32 = 5000;

/// What [`stack`] needs beyond the configuration.
#[derive(Debug, Clone)]
pub struct StackInputs {
    /// The mail server's name.
    pub hostname: String,
    /// Where the auth endpoint really listens (its port may have been 0).
    pub auth_listen: SocketAddr,
    /// The bearer secret of the auth endpoint.
    pub auth_secret: String,
    /// The mail store's user and group.
    pub vmail: VmailIds,
    /// Where the rendered files go; `None`: the runtime directory.
    pub config_dir: Option<PathBuf>,
}

/// The render crate's view of `config`, whose paths must be absolute
/// (see [`make_paths_absolute`]).
pub fn stack(config: &Config, inputs: StackInputs) -> Stack {
    let mut paths = Paths::new(&config.data_dir, &config.runtime_dir);
    // Only an SQLite store is a file of the layout; a CouchDB one leaves the default, unused.
    if let StoreUrl::Sqlite(store) = &config.store {
        paths.store = store.clone();
    }
    if let Some(tls) = &config.tls {
        paths.tls_certificate = tls.cert.clone();
        paths.tls_key = tls.key.clone();
    }
    if let Some(config_dir) = inputs.config_dir {
        paths.config_dir = config_dir;
    }
    let mut stack = Stack::production();
    stack.hostname = inputs.hostname;
    stack.listen = config.mail.listen;
    stack.ports = config.mail.ports;
    stack.paths = paths;
    stack.vmail = inputs.vmail;
    stack.auth_endpoint =
        AuthEndpoint { base_url: format!("http://{}", inputs.auth_listen), secret: inputs.auth_secret };
    stack.auth_failure_delay_secs = config.mail.auth_failure_delay_secs;
    stack.message_size_limit = config.mail.message_size_limit;
    stack.outbound = config.mail.outbound;
    stack.sieve_before = None;
    stack.postscreen = config.postscreen.clone();
    stack.spam = config.spam.map(|settings| {
        let spam = Spam { required_score: settings.threshold, ..Spam::new(&stack.paths) };
        match settings.smtp_reject_score {
            Some(score) => spam.with_smtp_reject(&stack.paths, score),
            None => spam,
        }
    });
    stack
}

/// Renders `stack`, turning a refused value into exit 2 that names the key to change.
pub fn render_stack(stack: &Stack) -> anyhow::Result<Rendered> {
    couchmail_render::render(stack).map_err(|err| {
        let hint = match err.field() {
            "hostname" => {
                "set `hostname` in the configuration (COUCHMAIL_HOSTNAME) to the server's DNS name".to_owned()
            }
            field if field.starts_with("paths.") => {
                "keep data_dir, runtime_dir and tls paths to letters, digits and /._+-@".to_owned()
            }
            _ => "correct the configuration (docs/config.md lists every key) and run the command again".to_owned(),
        };
        Failure::new(Exit::Usage, format!("cannot render the Postfix and Dovecot configuration: {err}"))
            .hint(hint)
            .into()
    })
}

/// Makes the data, runtime, store and TLS paths absolute (the daemons run
/// elsewhere than the working directory).
pub fn make_paths_absolute(config: &mut Config) -> anyhow::Result<()> {
    config.data_dir = absolute(&config.data_dir)?;
    config.runtime_dir = absolute(&config.runtime_dir)?;
    if let StoreUrl::Sqlite(store) = &config.store {
        config.store = StoreUrl::Sqlite(absolute(store)?);
    }
    if let Some(tls) = &mut config.tls {
        tls.cert = absolute(&tls.cert)?;
        tls.key = absolute(&tls.key)?;
    }
    Ok(())
}

/// `path`, absolute.
pub fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot make {} absolute", path.display()))
}

/// The configured host name, else the machine's.
pub async fn hostname(config: &Config) -> String {
    match &config.hostname {
        Some(hostname) => hostname.clone(),
        None => system::fully_qualified_hostname().await.to_ascii_lowercase(),
    }
}

/// The ids of user `vmail`, or [`DEFAULT_VMAIL_ID`] when it does not exist (yet).
pub fn vmail_ids() -> anyhow::Result<VmailIds> {
    let ids = system::user_ids("vmail").context("cannot look up user vmail")?;
    Ok(ids.map_or(VmailIds { uid: DEFAULT_VMAIL_ID, gid: DEFAULT_VMAIL_ID }, |ids| VmailIds {
        uid: ids.uid,
        gid: ids.gid,
    }))
}

/// The auth secret kept in `<data_dir>/auth-secret`, made (random, 0600)
/// when missing; the data directory is made (0711) when missing.
pub fn persistent_auth_secret(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(AUTH_SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("cannot read the auth secret {}", path.display())),
    }
    if !data_dir.is_dir() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    }
    let secret = new_auth_secret();
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write the auth secret {}", path.display()))?;
    file.set_permissions(Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {} to mode 0600", path.display()))?;
    writeln!(file, "{secret}").with_context(|| format!("cannot write the auth secret {}", path.display()))?;
    Ok(secret)
}

/// A fresh 256-bit bearer secret, in hex.
pub fn new_auth_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// One written file, as `render --json` lists it.
#[derive(Debug, Serialize)]
struct WrittenFile {
    path: String,
    mode: String,
    /// The group the file needs; `render` does not set it (`up` does).
    group: Option<&'static str>,
}

/// `couchmail render --out DIR`.
pub async fn run(config: &Config, out: &Path, json: bool) -> anyhow::Result<()> {
    let mut config = config.clone();
    make_paths_absolute(&mut config)?;
    let out = absolute(out)?;
    if config.auth_listen.port() == 0 {
        return Err(Failure::new(Exit::Usage, "auth.listen has port 0, which rendered files cannot name")
            .hint("set a fixed port under [auth] listen, as in \"127.0.0.1:8091\"")
            .into());
    }
    let inputs = StackInputs {
        hostname: hostname(&config).await,
        auth_listen: config.auth_listen,
        auth_secret: persistent_auth_secret(&config.data_dir)?,
        vmail: vmail_ids()?,
        config_dir: Some(out.clone()),
    };
    let stack = stack(&config, inputs);
    let rendered = render_stack(&stack)?;
    if config.tls.is_none() {
        // The files name the self-signed certificate; make it, so that they work as written.
        if let Some(tls_dir) = stack.paths.tls_key.parent() {
            std::fs::create_dir_all(tls_dir).with_context(|| format!("cannot create {}", tls_dir.display()))?;
        }
        crate::up::tls::self_signed(&stack.paths.tls_certificate, &stack.paths.tls_key, &stack.hostname)?;
    }
    let written = write_files(&rendered, &out)?;
    if json {
        return output::json(&written);
    }
    let mut text = String::new();
    for file in &written {
        let group = file.group.map(|group| format!(" (needs group {group}: chgrp {group} {})", file.path));
        text.push_str(&format!("{} {}{}\n", file.mode, file.path, group.unwrap_or_default()));
    }
    output::text(&text)
}

/// Writes every file below `dir` with its mode, through a temporary name,
/// without changing owner or group.
fn write_files(rendered: &Rendered, dir: &Path) -> anyhow::Result<Vec<WrittenFile>> {
    let mut written = Vec::new();
    for (relative_path, file) in rendered.iter() {
        let path = dir.join(relative_path);
        if let Some(parent) = path.parent() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .with_context(|| format!("cannot create directory {}", parent.display()))?;
        }
        let temporary = path.with_extension("couchmail-tmp");
        let mut handle = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .with_context(|| format!("cannot create {}", temporary.display()))?;
        handle.write_all(file.contents.as_bytes()).with_context(|| format!("cannot write {}", temporary.display()))?;
        handle
            .set_permissions(Permissions::from_mode(file.mode))
            .with_context(|| format!("cannot set the mode of {}", temporary.display()))?;
        std::fs::rename(&temporary, &path).with_context(|| format!("cannot move {} into place", path.display()))?;
        written.push(WrittenFile {
            path: path.display().to_string(),
            mode: format!("{:04o}", file.mode),
            group: file.group,
        });
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Sources;

    fn inputs() -> StackInputs {
        StackInputs {
            hostname: "mail.example.com".to_owned(),
            auth_listen: "127.0.0.1:18091".parse().unwrap(),
            auth_secret: "s3cret".to_owned(),
            vmail: VmailIds { uid: 5000, gid: 5000 },
            config_dir: None,
        }
    }

    #[test]
    fn stack_carries_the_configuration() {
        let mut config = Config::load(Sources { dev: true, ..Sources::default() }).unwrap();
        config.data_dir = PathBuf::from("/srv/cm");
        config.runtime_dir = PathBuf::from("/srv/cm/run");
        config.store = StoreUrl::Sqlite(PathBuf::from("/srv/cm/couchmail.db"));
        config.mail.auth_failure_delay_secs = 0;
        config.mail.outbound = couchmail_render::Outbound::Error;
        config.tls = Some(crate::config::TlsFiles { cert: "/etc/c.pem".into(), key: "/etc/k.pem".into() });
        let stack = stack(&config, inputs());
        assert_eq!(stack.hostname, "mail.example.com");
        assert_eq!(stack.ports.smtp, 2525);
        assert_eq!(stack.paths.socketmap_socket, PathBuf::from("/srv/cm/run/socketmap"));
        assert_eq!(stack.paths.config_dir, PathBuf::from("/srv/cm/run"));
        assert_eq!(stack.paths.tls_key, PathBuf::from("/etc/k.pem"));
        assert_eq!(stack.auth_endpoint.base_url, "http://127.0.0.1:18091");
        assert_eq!(stack.auth_failure_delay_secs, 0);
        assert_eq!(stack.outbound, couchmail_render::Outbound::Error);
        assert_eq!(stack.postscreen, Some(couchmail_render::Postscreen::default()));
        let rendered = render_stack(&stack).unwrap();
        let main_cf = &rendered.get("postfix/main.cf").unwrap().contents;
        assert!(main_cf.contains("default_transport = error:"), "{main_cf}");
        assert!(main_cf.contains("smtpd_tls_chain_files = /etc/k.pem, /etc/c.pem"), "{main_cf}");
    }

    #[test]
    fn a_bad_hostname_is_a_usage_error_naming_the_key() {
        let mut config = Config::load(Sources { dev: true, ..Sources::default() }).unwrap();
        config.data_dir = PathBuf::from("/srv/cm");
        config.runtime_dir = PathBuf::from("/srv/cm/run");
        let stack = stack(&config, StackInputs { hostname: "bad_name".into(), ..inputs() });
        let err = render_stack(&stack).unwrap_err();
        let (exit, hint) = crate::exit::classify(&err);
        assert_eq!(exit, Exit::Usage);
        assert!(hint.unwrap().contains("hostname"));
    }

    #[test]
    fn the_persistent_secret_is_made_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let first = persistent_auth_secret(&data_dir).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(persistent_auth_secret(&data_dir).unwrap(), first);
        let mode = std::fs::metadata(data_dir.join(AUTH_SECRET_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_ne!(new_auth_secret(), new_auth_secret());
    }
}
