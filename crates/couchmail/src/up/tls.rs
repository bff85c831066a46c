//! The TLS certificate of the SMTP and IMAP ports: the configured one, or a
//! self-signed one that `up` makes once and reuses.
//!
//! The self-signed certificate names the host name, `localhost` and
//! 127.0.0.1, so that a client on the machine itself can verify it when
//! told to trust it. It is valid for 397 days (the longest lifetime browsers
//! accept for a public certificate; TLS checkers flag longer ones) and remade
//! when the host name changes or fewer than 30 days remain (the names it was
//! made for and its end are kept beside it in `names`). The key is written
//! 0600 before any byte of it, the certificate 0644.

use std::fs::{OpenOptions, Permissions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::exit::{Exit, Failure};

/// The file beside a self-signed certificate that lists the names it was made for, then
/// `valid-until <unix seconds>`.
const NAMES_FILE: &str = "names";

/// How long a self-signed certificate is valid.
const SELF_SIGNED_DAYS: i64 = 397;

/// A self-signed certificate with fewer days left than this is remade at start.
const RENEW_DAYS_BEFORE_END: i64 = 30;

/// The certificate the daemons use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The chain, PEM.
    pub cert: PathBuf,
    /// The private key, PEM.
    pub key: PathBuf,
    /// Whether `up` made it (clients will warn).
    pub self_signed: bool,
}

/// Checks a configured certificate: both files must be readable PEM, a
/// certificate and a private key (Dovecot would only find out at the first
/// TLS handshake).
pub fn configured(cert: &Path, key: &Path) -> anyhow::Result<Certificate> {
    for (what, path, marker) in [("certificate", cert, "-----BEGIN CERTIFICATE-----"), ("key", key, "PRIVATE KEY-----")]
    {
        let fix = "point tls.cert and tls.key at readable PEM files (certificate chain and private key), or remove \
                   both for a self-signed certificate";
        let text = std::fs::read_to_string(path).map_err(|err| {
            Failure::new(Exit::Usage, format!("cannot read the TLS {what} {}: {err}", path.display())).hint(fix)
        })?;
        if !text.contains(marker) {
            return Err(Failure::new(Exit::Usage, format!("{} holds no PEM {what} (no `{marker}`)", path.display()))
                .hint(fix)
                .into());
        }
    }
    Ok(Certificate { cert: cert.to_owned(), key: key.to_owned(), self_signed: false })
}

/// The self-signed certificate at `cert` and `key` for `hostname`, made when
/// missing or made for other names.
pub fn self_signed(cert: &Path, key: &Path, hostname: &str) -> anyhow::Result<Certificate> {
    let names = subject_names(hostname);
    let names_file = cert.with_file_name(NAMES_FILE);
    let wanted = names.join("\n");
    let now = time::OffsetDateTime::now_utc();
    let renew_after = now + time::Duration::days(RENEW_DAYS_BEFORE_END);
    let reusable = cert.is_file()
        && key.is_file()
        && std::fs::read_to_string(&names_file).is_ok_and(|written| {
            let (made_for, valid_until) = match written.trim().rsplit_once('\n') {
                Some((made_for, last)) => (made_for, last.strip_prefix("valid-until ")),
                None => (written.trim(), None),
            };
            let valid_until = valid_until.and_then(|seconds| seconds.parse::<i64>().ok());
            made_for == wanted && valid_until.is_some_and(|end| end > renew_after.unix_timestamp())
        });
    if !reusable {
        let valid_until = make(cert, key, &names, now)?;
        std::fs::write(&names_file, format!("{wanted}\nvalid-until {}\n", valid_until.unix_timestamp()))
            .with_context(|| format!("cannot write {}", names_file.display()))?;
        tracing::info!(cert = %cert.display(), names = ?names, "made a self-signed TLS certificate");
    }
    Ok(Certificate { cert: cert.to_owned(), key: key.to_owned(), self_signed: true })
}

/// The names a self-signed certificate covers: the host name, `localhost`, 127.0.0.1.
fn subject_names(hostname: &str) -> Vec<String> {
    let mut names = vec![hostname.to_owned()];
    for extra in ["localhost", "127.0.0.1"] {
        if !names.iter().any(|name| name == extra) {
            names.push(extra.to_owned());
        }
    }
    names
}

/// Makes a certificate valid from a day before `now` (clocks differ) for [`SELF_SIGNED_DAYS`];
/// returns its end.
fn make(cert: &Path, key: &Path, names: &[String], now: time::OffsetDateTime) -> anyhow::Result<time::OffsetDateTime> {
    let mut params = rcgen::CertificateParams::new(names.to_vec()).context("cannot describe the certificate")?;
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(SELF_SIGNED_DAYS);
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, names[0].clone());
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "couchmail (self-signed)");
    let key_pair = rcgen::KeyPair::generate().context("cannot generate a TLS key")?;
    let certificate = params.self_signed(&key_pair).context("cannot sign the certificate")?;
    write_file(key, &key_pair.serialize_pem(), 0o600)?;
    write_file(cert, &certificate.pem(), 0o644)?;
    Ok(params.not_after)
}

/// Writes `text` to `path` with `mode`, tightening the mode of an existing file first.
fn write_file(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.set_permissions(Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_made_once_per_host_name() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let first = self_signed(&cert, &key, "mail.example.com").unwrap();
        assert!(first.self_signed);
        let pem = std::fs::read_to_string(&cert).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        assert!(std::fs::read_to_string(&key).unwrap().contains("PRIVATE KEY"));
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&cert).unwrap().permissions().mode() & 0o777, 0o644);

        self_signed(&cert, &key, "mail.example.com").unwrap();
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), pem, "reused");
        self_signed(&cert, &key, "mx.example.com").unwrap();
        assert_ne!(std::fs::read_to_string(&cert).unwrap(), pem, "remade for a new name");
    }

    #[test]
    fn self_signed_lasts_397_days_and_is_remade_near_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        self_signed(&cert, &key, "mail.example.com").unwrap();
        let names = std::fs::read_to_string(dir.path().join(NAMES_FILE)).unwrap();
        let end: i64 = names.lines().last().unwrap().strip_prefix("valid-until ").unwrap().parse().unwrap();
        let days_left = (end - time::OffsetDateTime::now_utc().unix_timestamp()) / 86_400;
        assert!((396..=397).contains(&days_left), "{days_left} days");

        // Ten days left: remade. A names file of an older couchmail, without an end: remade.
        let pem = std::fs::read_to_string(&cert).unwrap();
        let soon = time::OffsetDateTime::now_utc().unix_timestamp() + 10 * 86_400;
        std::fs::write(
            dir.path().join(NAMES_FILE),
            format!("mail.example.com\nlocalhost\n127.0.0.1\nvalid-until {soon}\n"),
        )
        .unwrap();
        self_signed(&cert, &key, "mail.example.com").unwrap();
        let remade = std::fs::read_to_string(&cert).unwrap();
        assert_ne!(remade, pem, "not remade with ten days left");
        std::fs::write(dir.path().join(NAMES_FILE), "mail.example.com\nlocalhost\n127.0.0.1\n").unwrap();
        self_signed(&cert, &key, "mail.example.com").unwrap();
        assert_ne!(std::fs::read_to_string(&cert).unwrap(), remade, "an endless old certificate was kept");
    }

    #[test]
    fn names_cover_loopback_once() {
        assert_eq!(subject_names("mail.example.com"), ["mail.example.com", "localhost", "127.0.0.1"]);
        assert_eq!(subject_names("localhost"), ["localhost", "127.0.0.1"]);
    }

    #[test]
    fn configured_files_must_be_readable() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n").unwrap();
        let key = dir.path().join("key.pem");
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n").unwrap();
        let err = configured(&cert, &dir.path().join("missing.pem")).unwrap_err();
        assert_eq!(crate::exit::classify(&err).0, Exit::Usage);
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "garbage").unwrap();
        let err = configured(&garbage, &key).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        assert!(!configured(&cert, &key).unwrap().self_signed);
    }
}
