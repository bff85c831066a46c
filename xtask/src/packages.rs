//! The machine the tests need: Debian packages for the real daemons and clients, and the `vmail` account.
//!
//! CI may start on a fresh Debian 12 machine, so `cargo xtask test` installs what is missing before anything else
//! (DESIGN.md §4: non-interactive, Postfix preseeded to "No configuration", and no daemon started on ports 25 or
//! 143 by the packages' maintainer scripts).

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Every Debian package the tests use, in one place.
///
/// The end-to-end suites run Postfix (`postfix`, `postmap`; `postfix-lmdb` for the comparison maps) and Dovecot with
/// its IMAP and LMTP servers, Pigeonhole Sieve (`sievec`, `sieve-test`) and the Lua passdb/userdb; `lua5.4` checks
/// the rendered auth script; `swaks` and `openssl` are real SMTP and TLS clients; `ca-certificates` for TLS; `g++`
/// compiles libFuzzer for the fuzz smoke run; `knot` (Knot DNS) serves the DNS blocklist of the postscreen test, run
/// with the stack in a network namespace made with `iproute2`'s `ip netns`; `spamassassin`, `spamd`, `spamc` and
/// `spamass-milter` scan mail (docs/spam.md; `couchmail_supervisor::SPAM_DEBIAN_PACKAGES` is the same list for `up`);
/// `testssl.sh` (the command `testssl`) checks the stack's TLS ports (docs/tls.md); `chromium` and `chromium-driver`
/// (the command `chromedriver`) run the web UI's browser tests (docs/web-ui-tests.md).
pub const DEBIAN_PACKAGES: &[&str] = &[
    "postfix",
    "postfix-lmdb",
    "dovecot-core",
    "dovecot-imapd",
    "dovecot-lmtpd",
    "dovecot-sieve",
    "dovecot-auth-lua",
    "lua5.4",
    "swaks",
    "sieve-connect", // a real ManageSieve client for e2e::managesieve
    "openssl",
    "ca-certificates",
    "g++",
    "knot",
    "iproute2",
    "spamassassin",
    "spamd",
    "spamc",
    "spamass-milter",
    "testssl.sh",
    "chromium",
    "chromium-driver",
];

/// The account that owns every mailbox on disk (DESIGN.md §3: Dovecot's userdb answers uid and gid 5000).
const VMAIL_NAME: &str = "vmail";
const VMAIL_ID: u32 = 5000;

/// Keeps packages' maintainer scripts from starting daemons (policy-rc.d(8): exit status 101 means "action forbidden").
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";
const POLICY_RC_D_SCRIPT: &str =
    "#!/bin/sh\n# Written by `cargo xtask test` while it installs packages; removed afterwards.\nexit 101\n";

/// Without this answer Postfix's postinst asks which mail configuration to write, and writes one that starts a
/// listener on port 25.
const POSTFIX_DEBCONF: &str = "postfix postfix/main_mailer_type select No configuration\n";

/// Installs the missing packages and creates the `vmail` account, or says what to do when not root.
pub fn ensure() -> Result<()> {
    let missing = missing_packages(DEBIAN_PACKAGES)?;
    let is_root = running_as_root()?;
    if missing.is_empty() {
        eprintln!("packages: all {} Debian packages the tests need are installed", DEBIAN_PACKAGES.len());
    } else if !is_root {
        bail!(
            "the tests need these Debian packages, which are not installed: {}\n\
             run `cargo xtask test` as root (it installs them), or install them yourself:\n  \
             apt-get install --no-install-recommends {}",
            missing.join(" "),
            DEBIAN_PACKAGES.join(" ")
        );
    } else {
        install(&missing)?;
        let still_missing = missing_packages(DEBIAN_PACKAGES)?;
        if !still_missing.is_empty() {
            bail!("apt-get finished but these packages are still not installed: {}", still_missing.join(" "));
        }
    }
    ensure_vmail(is_root)?;
    ensure_pouchdb()
}

/// Where the CouchDB backend's tests find pouchdb-server (`couchmail_testkit::pouchdb::POUCHDB_DIR`).
const POUCHDB_DIR: &str = "/var/tmp/couchmail-pouchdb";

/// The pouchdb-server the tests are written against, and the LevelDB adapter it needs once npm skips optional
/// packages (DESIGN.md §4: the optional ones compile SQLite bindings, which fails here).
const POUCHDB_VERSION: &str = "4.2.0";
const POUCHDB_PACKAGES: &[&str] = &["pouchdb-server@4.2.0", "pouchdb-adapter-leveldb@7"];

/// Installs pouchdb-server with npm into [`POUCHDB_DIR`] unless that version is there already.
///
/// Apache CouchDB cannot be installed on the CI machine, so the CouchDB backend is tested against this
/// CouchDB-compatible server.
fn ensure_pouchdb() -> Result<()> {
    let directory = Path::new(POUCHDB_DIR);
    let manifest = directory.join("node_modules/pouchdb-server/package.json");
    let installed = std::fs::read_to_string(&manifest).ok().and_then(|text| manifest_version(&text));
    if installed.as_deref() == Some(POUCHDB_VERSION) && directory.join("node_modules/.bin/pouchdb-server").exists() {
        eprintln!("packages: pouchdb-server {POUCHDB_VERSION} is installed in {POUCHDB_DIR}");
        return Ok(());
    }
    std::fs::create_dir_all(directory).with_context(|| format!("cannot create {POUCHDB_DIR}"))?;
    if !directory.join("package.json").exists() {
        // npm installs into the nearest directory with a package.json; without one it would climb to `/`.
        std::fs::write(directory.join("package.json"), "{ \"private\": true }\n")
            .with_context(|| format!("cannot write {POUCHDB_DIR}/package.json"))?;
    }
    eprintln!("packages: installing {} with npm into {POUCHDB_DIR}", POUCHDB_PACKAGES.join(" "));
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--omit=optional"])
        .args(POUCHDB_PACKAGES)
        .current_dir(directory)
        .stdin(Stdio::null())
        .status()
        .context("cannot run npm: the CouchDB tests need Node.js and npm (apt-get install nodejs npm)")?;
    if !status.success() {
        bail!("npm install of {} in {POUCHDB_DIR} failed with {status}", POUCHDB_PACKAGES.join(" "));
    }
    Ok(())
}

/// The top-level `"version"` of an npm package.json, found without a JSON parser: npm writes it on its own line.
fn manifest_version(manifest: &str) -> Option<String> {
    manifest.lines().find_map(|line| {
        let value = line.trim().strip_prefix("\"version\"")?.trim_start().strip_prefix(':')?.trim();
        let value = value.trim_end_matches(',').trim().strip_prefix('"')?.strip_suffix('"')?;
        Some(value.to_owned())
    })
}

/// The packages among `packages` that dpkg does not report as installed.
fn missing_packages(packages: &[&str]) -> Result<Vec<String>> {
    // dpkg-query exits 1 when it knows nothing of some package, and still prints the ones it knows.
    let output = Command::new("dpkg-query")
        .args(["--show", "--showformat=${Package}\t${Status}\n"])
        .args(packages)
        .stdin(Stdio::null())
        .output()
        .context("cannot run dpkg-query: the tests need a Debian 12 machine (see README)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(not_installed(packages, &stdout))
}

/// Reads `dpkg-query --showformat='${Package}\t${Status}\n'` output and returns the packages it does not show as
/// installed (absent, removed, or half-configured).
fn not_installed(packages: &[&str], dpkg_query_output: &str) -> Vec<String> {
    let installed: Vec<&str> = dpkg_query_output
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(_, status)| status.trim() == "install ok installed")
        .map(|(package, _)| package.split(':').next().unwrap_or(package))
        .collect();
    packages.iter().filter(|package| !installed.contains(package)).map(|package| package.to_string()).collect()
}

fn install(missing: &[String]) -> Result<()> {
    eprintln!("packages: installing {}", missing.join(" "));
    preseed_postfix()?;
    let _policy = PolicyRcDGuard::install(Path::new(POLICY_RC_D))?;
    apt_get(&["update", "-q"])?;
    let mut install_args = vec![
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        // Keep any configuration file already on the machine rather than ask.
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
    ];
    install_args.extend(missing.iter().map(String::as_str));
    apt_get(&install_args)
}

fn preseed_postfix() -> Result<()> {
    eprintln!("packages: preseeding debconf: {}", POSTFIX_DEBCONF.trim_end());
    let mut child = Command::new("debconf-set-selections")
        .stdin(Stdio::piped())
        .spawn()
        .context("cannot run debconf-set-selections")?;
    child
        .stdin
        .take()
        .context("debconf-set-selections has no stdin")?
        .write_all(POSTFIX_DEBCONF.as_bytes())
        .context("cannot write to debconf-set-selections")?;
    let status = child.wait().context("cannot wait for debconf-set-selections")?;
    if !status.success() {
        bail!("debconf-set-selections failed ({status})");
    }
    Ok(())
}

fn apt_get(args: &[&str]) -> Result<()> {
    let mut command = Command::new("apt-get");
    command
        // Another apt (unattended-upgrades on a fresh machine) may hold the lock for a while.
        .args(["-o", "DPkg::Lock::Timeout=300"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("DEBCONF_NONINTERACTIVE_SEEN", "true")
        .env("APT_LISTCHANGES_FRONTEND", "none")
        .stdin(Stdio::null());
    crate::exec(&mut command)
}

/// A `policy-rc.d` that forbids starting services, present while it lives; one that was already there is left alone.
struct PolicyRcDGuard {
    /// The file this guard wrote and must remove, if it wrote one.
    created: Option<PathBuf>,
}

impl PolicyRcDGuard {
    fn install(path: &Path) -> Result<PolicyRcDGuard> {
        let shown = path.display();
        if path.exists() {
            eprintln!("packages: {shown} exists already; leaving it as it is");
            return Ok(PolicyRcDGuard { created: None });
        }
        std::fs::write(path, POLICY_RC_D_SCRIPT).with_context(|| format!("cannot write {shown}"))?;
        let guard = PolicyRcDGuard { created: Some(path.to_path_buf()) };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {shown} executable"))?;
        eprintln!("packages: wrote {shown} (exit 101) so that no daemon starts during the install");
        Ok(guard)
    }
}

impl Drop for PolicyRcDGuard {
    fn drop(&mut self) {
        let Some(path) = &self.created else { return };
        match std::fs::remove_file(path) {
            Ok(()) => eprintln!("packages: removed {}", path.display()),
            Err(err) => eprintln!("packages: warning: cannot remove {}: {err}", path.display()),
        }
    }
}

/// Creates group and user `vmail` (5000/5000, no login shell) when missing, and checks their ids when present.
fn ensure_vmail(is_root: bool) -> Result<()> {
    let group_id = account_id("group", VMAIL_NAME)?;
    let user_id = account_id("passwd", VMAIL_NAME)?;
    for (kind, found) in [("group", group_id), ("user", user_id)] {
        if let Some(id) = found
            && id != VMAIL_ID
        {
            bail!("{kind} {VMAIL_NAME} exists with id {id}, but the tests expect {VMAIL_ID}");
        }
    }
    if group_id.is_some() && user_id.is_some() {
        eprintln!("packages: {VMAIL_NAME} user and group exist ({VMAIL_ID}:{VMAIL_ID})");
        return Ok(());
    }
    if !is_root {
        bail!(
            "the tests need a `{VMAIL_NAME}` user and group with id {VMAIL_ID}: run `cargo xtask test` as root, or \
             create them: groupadd -g {VMAIL_ID} {VMAIL_NAME} && useradd -u {VMAIL_ID} -g {VMAIL_ID} -d /nonexistent \
             -M -s /usr/sbin/nologin {VMAIL_NAME}"
        );
    }
    let id = VMAIL_ID.to_string();
    if group_id.is_none() {
        eprintln!("packages: creating group {VMAIL_NAME} ({VMAIL_ID})");
        crate::exec(Command::new("groupadd").args(["--gid", &id, VMAIL_NAME]))?;
    }
    if user_id.is_none() {
        eprintln!("packages: creating user {VMAIL_NAME} ({VMAIL_ID}, no login shell)");
        crate::exec(Command::new("useradd").args([
            "--uid",
            &id,
            "--gid",
            &id,
            "--home-dir",
            "/nonexistent",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            VMAIL_NAME,
        ]))?;
    }
    Ok(())
}

/// The numeric id of `name` in the `database` (`passwd` or `group`) getent reads, or `None` if absent.
fn account_id(database: &str, name: &str) -> Result<Option<u32>> {
    let output = Command::new("getent")
        .args([database, name])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run getent {database} {name}"))?;
    // getent exits 2 when the key is not found.
    if !output.status.success() {
        return Ok(None);
    }
    let line = String::from_utf8_lossy(&output.stdout);
    let id = line
        .split(':')
        .nth(2)
        .and_then(|field| field.trim().parse().ok())
        .with_context(|| format!("cannot read the id in getent's answer {:?}", line.trim()))?;
    Ok(Some(id))
}

/// Whether this process runs with effective uid 0: /proc/self belongs to the process's effective user.
fn running_as_root() -> Result<bool> {
    let metadata = std::fs::metadata("/proc/self").context("cannot read /proc/self to learn whether we are root")?;
    Ok(metadata.uid() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_versions_are_read() {
        let manifest = "{\n  \"name\": \"pouchdb-server\",\n  \"version\": \"4.2.0\",\n  \"deps\": {}\n}\n";
        assert_eq!(manifest_version(manifest).as_deref(), Some("4.2.0"));
        assert_eq!(manifest_version("{ \"name\": \"x\" }"), None);
    }

    #[test]
    fn only_fully_installed_packages_count() {
        let output = "postfix\tinstall ok installed\n\
                      dovecot-core\tdeinstall ok config-files\n\
                      swaks\tinstall ok half-configured\n\
                      openssl:amd64\tinstall ok installed\n";
        let missing = not_installed(&["postfix", "dovecot-core", "swaks", "openssl", "lua5.4"], output);
        assert_eq!(missing, ["dovecot-core", "swaks", "lua5.4"]);
    }

    #[test]
    fn the_list_names_each_package_once() {
        let mut sorted = DEBIAN_PACKAGES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), DEBIAN_PACKAGES.len());
    }

    #[test]
    fn policy_rc_d_lives_as_long_as_its_guard_and_a_foreign_one_stays() {
        let dir = std::env::temp_dir().join(format!("xtask-policy-rc-d-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("policy-rc.d");
        {
            let _guard = PolicyRcDGuard::install(&path).unwrap();
            // Run through sh rather than exec'd: another test thread forking while the file was open for writing
            // would make exec fail with ETXTBSY.
            let status = Command::new("sh").arg(&path).status().unwrap();
            assert_eq!(status.code(), Some(101), "policy-rc.d must forbid starting services");
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o755);
        }
        assert!(!path.exists(), "the guard must remove the file it wrote");

        std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
        drop(PolicyRcDGuard::install(&path).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "#!/bin/sh\nexit 0\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn this_machine_reports_some_packages() {
        // dpkg itself is installed on every Debian machine, so an empty answer would mean the query is broken.
        assert_eq!(missing_packages(&["dpkg"]).unwrap(), Vec::<String>::new());
        assert_eq!(missing_packages(&["no-such-package-couchmail"]).unwrap(), ["no-such-package-couchmail"]);
    }
}
