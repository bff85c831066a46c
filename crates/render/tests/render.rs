//! Tests of couchmail-render: golden files, the security baseline read off the
//! rendered text, and the real checkers (`postfix check`, `doveconf -n`, `luac`)
//! run on the files written into a temporary tree laid out as docs/runtime.md says.
//!
//! The checker tests run as root (CI does) and need Postfix, Dovecot with
//! dovecot-auth-lua and dovecot-sieve, and Lua 5.4 (Debian package `lua5.4`,
//! the Lua Dovecot 2.3 on Debian 12 is linked against).
#![allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use couchmail_render::{Listen, Outbound, Paths, Postscreen, Rendered, Spam, SpamScore, Stack, render};

const GOLDEN_SECRET: &str = "golden-secret-\"quoted\"\\";

/// The fixed dev stack of the golden files.
fn golden_dev_stack() -> Stack {
    let mut stack = Stack::dev("/srv/couchmail-dev");
    stack.auth_endpoint.secret = GOLDEN_SECRET.to_owned();
    stack.outbound = Outbound::Error;
    stack
}

/// The fixed production stack of the golden files, with the `sieve_before` hook set and SpamAssassin on,
/// refusing at SMTP time from 15.
fn golden_production_stack() -> Stack {
    let mut stack = Stack::production();
    stack.hostname = "mail.example.com".to_owned();
    stack.auth_endpoint.secret = GOLDEN_SECRET.to_owned();
    stack.sieve_before = Some("/var/lib/couchmail/sieve/before.sieve".into());
    stack.spam = Some(production_spam(&stack.paths));
    stack.policy = true;
    stack
}

fn production_spam(paths: &Paths) -> Spam {
    Spam::new(paths).with_smtp_reject(paths, SpamScore::from_tenths(150))
}

// ---------------------------------------------------------------- golden files

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The modes and groups of a rendered set, one `mode group path` line per file.
fn modes_listing(rendered: &Rendered) -> String {
    rendered.iter().map(|(path, file)| format!("{:04o} {} {path}\n", file.mode, file.group.unwrap_or("-"))).collect()
}

/// Compares `rendered` with `tests/golden/<name>/` exactly, or rewrites the
/// golden files when `UPDATE_EXPECT=1`.
fn check_golden(name: &str, rendered: &Rendered) {
    let dir = golden_root().join(name);
    let modes_path = golden_root().join(format!("{name}.modes"));
    if std::env::var_os("UPDATE_EXPECT").is_some_and(|value| value == "1") {
        if dir.exists() {
            fs::remove_dir_all(&dir).unwrap();
        }
        for (path, file) in rendered.iter() {
            let target = dir.join(path);
            fs::create_dir_all(target.parent().unwrap()).unwrap();
            fs::write(&target, &file.contents).unwrap();
        }
        fs::write(&modes_path, modes_listing(rendered)).unwrap();
        return;
    }
    let mut on_disk = Vec::new();
    collect_files(&dir, &dir, &mut on_disk);
    on_disk.sort();
    let rendered_paths: Vec<String> = rendered.iter().map(|(path, _)| path.to_owned()).collect();
    assert_eq!(on_disk, rendered_paths, "golden files of {name} differ in their set (UPDATE_EXPECT=1 rewrites them)");
    for (path, file) in rendered.iter() {
        let expected = fs::read_to_string(dir.join(path)).unwrap();
        if expected != file.contents {
            let first_difference = expected
                .lines()
                .zip(file.contents.lines())
                .enumerate()
                .find(|(_, (want, got))| want != got)
                .map(|(line_idx, (want, got))| format!("line {}:\n  golden:   {want}\n  rendered: {got}", line_idx + 1))
                .unwrap_or_else(|| "the files differ in length".to_owned());
            panic!("{name}/{path} differs from the golden file (UPDATE_EXPECT=1 rewrites it), {first_difference}");
        }
    }
    assert_eq!(fs::read_to_string(&modes_path).unwrap(), modes_listing(rendered), "{name}.modes");
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(root, &path, out);
        } else {
            out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
        }
    }
}

#[test]
fn dev_stack_matches_golden_files() {
    check_golden("dev", &render(&golden_dev_stack()).unwrap());
}

#[test]
fn production_stack_matches_golden_files() {
    check_golden("production", &render(&golden_production_stack()).unwrap());
}

#[test]
fn rendering_is_deterministic() {
    let stack = golden_production_stack();
    assert_eq!(render(&stack).unwrap(), render(&stack.clone()).unwrap());
}

// ------------------------------------------------ security baseline, on the text

fn rendered_text(stack: &Stack, path: &str) -> String {
    render(stack).unwrap().get(path).unwrap().contents.clone()
}

/// The value of a top-level or plugin-section `key = value` line, the last one
/// winning as in Postfix and Dovecot. Settings nested deeper (listeners) are skipped.
fn setting(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter(|line| !line.starts_with("    "))
        .filter_map(|line| line.trim().split_once(" = ").or_else(|| line.trim().strip_suffix(" =").map(|k| (k, ""))))
        .filter(|(name, _)| *name == key)
        .map(|(_, value)| value.to_owned())
        .next_back()
}

/// The non-comment service lines of master.cf, split into columns.
fn master_services(master_cf: &str) -> Vec<Vec<String>> {
    master_cf
        .lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with(' ') && !line.is_empty())
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// The `-o` options of the master.cf service whose name ends with `:port`.
fn service_options(master_cf: &str, port: u16) -> Vec<String> {
    let mut options = Vec::new();
    let mut in_service = false;
    for line in master_cf.lines() {
        if !line.starts_with(' ') {
            in_service = line.split_whitespace().next().is_some_and(|name| name.ends_with(&format!(":{port}")));
        } else if in_service {
            options.push(line.trim().to_owned());
        }
    }
    options
}

#[test]
fn postfix_never_trusts_client_addresses_and_requires_tls_for_auth() {
    for stack in [golden_dev_stack(), golden_production_stack()] {
        let main_cf = rendered_text(&stack, "postfix/main.cf");
        let master_cf = rendered_text(&stack, "postfix/master.cf");
        for text in [&main_cf, &master_cf] {
            assert!(!text.contains("permit_mynetworks"), "permit_mynetworks must never appear");
            assert!(!text.contains("permit_auth_destination"));
        }
        assert_eq!(setting(&main_cf, "compatibility_level").as_deref(), Some("3.6"));
        assert_eq!(setting(&main_cf, "smtpd_tls_auth_only").as_deref(), Some("yes"));
        assert_eq!(setting(&main_cf, "smtpd_sasl_auth_enable").as_deref(), Some("no"));
        assert_eq!(setting(&main_cf, "smtpd_helo_required").as_deref(), Some("yes"));
        assert_eq!(setting(&main_cf, "disable_vrfy_command").as_deref(), Some("yes"));
        assert_eq!(setting(&main_cf, "mydestination").as_deref(), Some(""));
        assert_eq!(setting(&main_cf, "smtpd_relay_restrictions").as_deref(), Some("reject_unauth_destination"));
        assert!(setting(&main_cf, "smtpd_recipient_restrictions").unwrap().contains("reject_unlisted_recipient"));
        assert_eq!(setting(&main_cf, "smtpd_tls_security_level").as_deref(), Some("may"));
        for key in ["smtpd_tls_protocols", "smtpd_tls_mandatory_protocols"] {
            assert_eq!(setting(&main_cf, key).as_deref(), Some(">=TLSv1.2"), "{key}");
        }
        let ciphers = setting(&main_cf, "tls_high_cipherlist").unwrap();
        assert!(ciphers.starts_with("ECDHE-ECDSA-AES128-GCM-SHA256:") && !ciphers.contains("CBC"));
        assert_eq!(setting(&main_cf, "smtpd_tls_ciphers").as_deref(), Some("high"));
        assert_eq!(setting(&main_cf, "smtpd_tls_mandatory_ciphers").as_deref(), Some("high"));
    }
}

#[test]
fn every_postfix_service_runs_outside_a_chroot() {
    let master_cf = rendered_text(&golden_production_stack(), "postfix/master.cf");
    let services = master_services(&master_cf);
    assert!(services.len() > 20, "{services:?}");
    for columns in &services {
        assert_eq!(columns.len(), 8, "{columns:?}");
        assert_eq!(columns[4], "n", "chroot column of {columns:?}");
    }
    assert!(services.iter().any(|columns| columns[0] == "postlog" && columns[1] == "unix-dgram"));
    for absent in ["local", "virtual"] {
        assert!(!services.iter().any(|columns| columns[0] == absent), "{absent} is not needed");
    }
}

#[test]
fn only_submission_ports_offer_auth_and_they_demand_it() {
    let stack = golden_dev_stack();
    let master_cf = rendered_text(&stack, "postfix/master.cf");
    assert!(service_options(&master_cf, stack.ports.smtp).is_empty(), "port 25 keeps main.cf: no AUTH");
    for port in [stack.ports.submission, stack.ports.submissions] {
        let options = service_options(&master_cf, port);
        for expected in [
            "-o smtpd_sasl_auth_enable=yes",
            "-o smtpd_tls_security_level=encrypt",
            "-o { smtpd_client_restrictions = permit_sasl_authenticated, reject }",
            "-o { smtpd_sender_restrictions = reject_non_fqdn_sender, reject_sender_login_mismatch }",
            "-o { smtpd_relay_restrictions = permit_sasl_authenticated, reject }",
        ] {
            assert!(options.iter().any(|option| option == expected), "port {port} lacks {expected}: {options:?}");
        }
    }
    assert!(service_options(&master_cf, stack.ports.submissions).contains(&"-o smtpd_tls_wrappermode=yes".to_owned()));
    assert!(!service_options(&master_cf, stack.ports.submission).contains(&"-o smtpd_tls_wrappermode=yes".to_owned()));
}

#[test]
fn postfix_reads_couchmail_maps_and_delivers_over_lmtp() {
    let stack = golden_dev_stack();
    let main_cf = rendered_text(&stack, "postfix/main.cf");
    let socketmap = format!("socketmap:unix:{}", stack.paths.socketmap_socket.display());
    for (key, map) in [
        ("virtual_mailbox_domains", "domains"),
        ("virtual_alias_domains", "alias-domains"),
        ("virtual_mailbox_maps", "mailboxes"),
        ("virtual_alias_maps", "aliases"),
        ("smtpd_sender_login_maps", "senders"),
    ] {
        assert_eq!(setting(&main_cf, key), Some(format!("{socketmap}:{map}")), "{key}");
    }
    assert_eq!(
        setting(&main_cf, "virtual_transport"),
        Some(format!("lmtp:unix:{}", stack.paths.lmtp_socket.display()))
    );
    assert_eq!(setting(&main_cf, "smtpd_sasl_path"), Some(stack.paths.auth_socket.display().to_string()));
    assert_eq!(setting(&main_cf, "recipient_delimiter").as_deref(), Some("+"));
    assert_eq!(setting(&main_cf, "default_transport").as_deref(), Some("error:outbound mail is disabled"));
    let production = rendered_text(&golden_production_stack(), "postfix/main.cf");
    assert_eq!(setting(&production, "default_transport").as_deref(), Some("smtp"));
}

#[test]
fn listeners_bind_the_configured_address() {
    let dev = golden_dev_stack();
    let master_cf = rendered_text(&dev, "postfix/master.cf");
    let names: Vec<String> = master_services(&master_cf).into_iter().map(|columns| columns[0].clone()).collect();
    for port in [2525, 2587, 4465] {
        assert!(names.contains(&format!("127.0.0.1:{port}")), "{names:?}");
    }
    assert_eq!(setting(&rendered_text(&dev, "postfix/main.cf"), "inet_interfaces").as_deref(), Some("127.0.0.1"));
    assert_eq!(setting(&rendered_text(&dev, "dovecot/dovecot.conf"), "listen").as_deref(), Some("127.0.0.1"));

    let mut ipv6 = golden_dev_stack();
    ipv6.listen = Listen::Address("::1".parse().unwrap());
    let names: Vec<String> = master_services(&rendered_text(&ipv6, "postfix/master.cf"))
        .into_iter()
        .map(|columns| columns[0].clone())
        .collect();
    assert!(names.contains(&"[::1]:2525".to_owned()), "{names:?}");
    assert_eq!(setting(&rendered_text(&ipv6, "postfix/main.cf"), "inet_protocols").as_deref(), Some("ipv6"));
}

#[test]
fn dovecot_serves_imap_over_tls_only() {
    for stack in [golden_dev_stack(), golden_production_stack()] {
        let conf = rendered_text(&stack, "dovecot/dovecot.conf");
        assert_eq!(setting(&conf, "protocols").as_deref(), Some("imap lmtp"));
        assert_eq!(setting(&conf, "ssl").as_deref(), Some("required"));
        assert_eq!(setting(&conf, "ssl_min_protocol").as_deref(), Some("TLSv1.2"));
        assert_eq!(setting(&conf, "disable_plaintext_auth").as_deref(), Some("yes"));
        assert_eq!(setting(&conf, "auth_username_format").as_deref(), Some("%Lu"));
        assert!(conf.contains("inet_listener imap {\n    port = 0\n  }"), "the plain IMAP listener must be off");
        assert!(conf.contains(&format!("inet_listener imaps {{\n    port = {}\n    ssl = yes\n", stack.ports.imaps)));
        assert!(conf.contains(&format!(
            "unix_listener {} {{\n    group = postfix\n    mode = 0600\n",
            stack.paths.lmtp_socket.display()
        )));
        assert!(conf.contains(&format!(
            "unix_listener {} {{\n    group = postfix\n    mode = 0660\n",
            stack.paths.auth_socket.display()
        )));
    }
}

#[test]
fn sieve_before_appears_only_when_set() {
    let mut without_spam = golden_production_stack();
    without_spam.spam = None;
    let with_hook = rendered_text(&without_spam, "dovecot/dovecot.conf");
    assert_eq!(setting(&with_hook, "sieve_before").as_deref(), Some("/var/lib/couchmail/sieve/before.sieve"));
    assert_eq!(setting(&with_hook, "sieve_before2"), None);
    // With spam on, the spam filter runs first and the hook second.
    let with_spam = rendered_text(&golden_production_stack(), "dovecot/dovecot.conf");
    assert_eq!(setting(&with_spam, "sieve_before").as_deref(), Some("/run/couchmail/dovecot/spam/filter.sieve"));
    assert_eq!(setting(&with_spam, "sieve_before2").as_deref(), Some("/var/lib/couchmail/sieve/before.sieve"));
    let without_hook = rendered_text(&golden_dev_stack(), "dovecot/dovecot.conf");
    assert!(!without_hook.contains("sieve_before"));
    assert_eq!(
        setting(&without_hook, "sieve"),
        Some("dict:proxy:/srv/couchmail-dev/run/dict:sieve;name=active;bindir=~/.sieve-bin".to_owned())
    );
}

#[test]
fn the_secret_is_only_in_auth_lua() {
    let rendered = render(&golden_dev_stack()).unwrap();
    for (path, file) in rendered.iter() {
        let holds_secret = file.contents.contains("golden-secret");
        assert_eq!(holds_secret, path == "dovecot/auth.lua", "{path}");
        if holds_secret {
            assert_eq!((file.mode, file.group), (0o640, Some("dovecot")));
        } else {
            assert_eq!((file.mode, file.group), (0o644, None));
        }
    }
}

#[test]
fn every_file_says_it_is_generated() {
    for stack in [golden_dev_stack(), golden_production_stack()] {
        for (path, file) in render(&stack).unwrap().iter() {
            // A shell script must start with its interpreter line; the notice comes right after it.
            let mut lines = file.contents.lines().skip_while(|line| line.starts_with("#!"));
            let first_line = lines.next().unwrap();
            assert!(first_line.contains("Generated by `couchmail render`: do not edit"), "{path}: {first_line}");
        }
    }
}

#[test]
fn render_refuses_an_empty_secret() {
    let mut stack = golden_dev_stack();
    stack.auth_endpoint.secret.clear();
    assert_eq!(render(&stack).unwrap_err().to_string(), "auth_endpoint.secret: must not be empty");
}

// ----------------------------------------------------------- the real checkers

/// A temporary tree laid out as docs/runtime.md says, with the rendered files written into it.
struct Tree {
    _root: tempfile::TempDir,
    stack: Stack,
}

/// `(uid, gid)` of a system user, from `/etc/passwd`.
fn user_ids(name: &str) -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    let line =
        passwd.lines().find(|line| line.split(':').next() == Some(name)).unwrap_or_else(|| panic!("no user {name}"));
    let fields: Vec<&str> = line.split(':').collect();
    (fields[2].parse().unwrap(), fields[3].parse().unwrap())
}

fn make_dir(path: &Path, mode: u32) {
    fs::create_dir_all(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Renders `stack` (whose paths lie below `root`) and creates what the daemons expect to exist.
fn build_tree(root: tempfile::TempDir, stack: Stack) -> Tree {
    // The temporary directory is 0700; the daemons' users must be able to pass through it.
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let paths = &stack.paths;
    // 0711, not 0750: vmail and postfix must pass through it (see `Paths::data_dir`).
    make_dir(&paths.data_dir, 0o711);
    make_dir(&paths.mail_dir, 0o700);
    std::os::unix::fs::chown(&paths.mail_dir, Some(stack.vmail.uid), Some(stack.vmail.gid)).unwrap();
    make_dir(paths.tls_key.parent().unwrap(), 0o755);
    fs::write(&paths.tls_certificate, "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n").unwrap();
    fs::write(&paths.tls_key, "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n").unwrap();
    fs::set_permissions(&paths.tls_key, fs::Permissions::from_mode(0o600)).unwrap();
    make_dir(&paths.postfix_queue_dir, 0o755);
    make_dir(&paths.postfix_data_dir, 0o700);
    let (postfix_uid, postfix_gid) = user_ids("postfix");
    std::os::unix::fs::chown(&paths.postfix_data_dir, Some(postfix_uid), Some(postfix_gid)).unwrap();
    make_dir(&paths.dovecot_state_dir, 0o755);
    make_dir(&paths.log_dir, 0o750);
    make_dir(&paths.run_dir, 0o755);
    make_dir(&paths.dovecot_base_dir, 0o755);
    render(&stack).unwrap().write_to(&paths.config_dir).unwrap();
    Tree { _root: root, stack }
}

fn dev_tree() -> Tree {
    let root = tempfile::tempdir().unwrap();
    let mut stack = Stack::dev(root.path().join("data"));
    stack.auth_endpoint.secret = "test-secret".to_owned();
    stack.outbound = Outbound::Error;
    build_tree(root, stack)
}

fn production_tree() -> Tree {
    let root = tempfile::tempdir().unwrap();
    let mut stack = golden_production_stack();
    stack.paths = Paths::new(root.path().join("data"), root.path().join("run"));
    stack.sieve_before = Some(root.path().join("data/sieve/before.sieve"));
    stack.spam = Some(production_spam(&stack.paths));
    build_tree(root, stack)
}

/// Finds a daemon's tool on PATH or in /usr/sbin, where Debian puts Postfix and Dovecot.
fn tool(name: &str) -> PathBuf {
    let search = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&search)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed (Debian: postfix, dovecot-core, lua5.4)"))
}

/// Runs a checker and fails on a non-zero exit or any line mentioning a warning.
fn run_silent(program: &str, args: &[&str]) -> String {
    let output = Command::new(tool(program)).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{program} {args:?} failed ({}):\n{stdout}\n{stderr}", output.status);
    for line in stdout.lines().chain(stderr.lines()) {
        assert!(!line.to_lowercase().contains("warning"), "{program} {args:?} warned: {line}\n{stdout}\n{stderr}");
    }
    stdout
}

fn check_postfix(tree: &Tree) {
    let config_dir = tree.stack.paths.postfix_config_dir();
    let config_dir = config_dir.to_str().unwrap();
    run_silent("postfix", &["-c", config_dir, "check"]);
    // postfix-script logs its permission warnings through postlog, which writes
    // to maillog_file alone when stderr is not a terminal: read the log too.
    let log = fs::read_to_string(&tree.stack.paths.postfix_log).unwrap_or_default();
    for line in log.lines() {
        let line = line.to_lowercase();
        assert!(!["warning", "fatal", "error"].iter().any(|word| line.contains(word)), "postfix logged: {line}\n{log}");
    }
    // postconf reports unknown or unused parameters as warnings; -n lists what main.cf sets.
    let set = run_silent("postconf", &["-c", config_dir, "-n"]);
    assert!(set.contains("smtpd_tls_auth_only = yes"), "{set}");
    run_silent("postconf", &["-c", config_dir, "-M"]);
}

fn check_dovecot(tree: &Tree) -> String {
    let config_file = tree.stack.paths.dovecot_config_file();
    run_silent("doveconf", &["-c", config_file.to_str().unwrap(), "-n"])
}

#[test]
fn postfix_check_accepts_the_dev_tree() {
    check_postfix(&dev_tree());
}

#[test]
fn postfix_check_accepts_the_production_tree() {
    check_postfix(&production_tree());
}

#[test]
fn doveconf_accepts_the_dev_tree() {
    let tree = dev_tree();
    let settings = check_dovecot(&tree);
    assert!(settings.contains("disable_plaintext_auth = yes") || !settings.contains("disable_plaintext_auth = no"));
    assert!(settings.contains("ssl = required"), "{settings}");
    assert!(
        settings.contains(&format!("args = file={} blocking=yes", tree.stack.paths.dovecot_auth_script().display()))
    );
}

#[test]
fn doveconf_accepts_the_production_tree() {
    let tree = production_tree();
    let settings = check_dovecot(&tree);
    assert!(
        settings
            .contains(&format!("sieve_before2 = {}", tree.stack.paths.data_dir.join("sieve/before.sieve").display()))
    );
    assert!(settings.contains(&format!("sieve_before = {}", tree.stack.paths.spam_sieve_scripts()[0].display())));
    assert!(settings.contains("mail_plugins = \" quota imap_quota imap_sieve\""), "{settings}");
    // `*, ::` is Dovecot's default, which `doveconf -n` leaves out.
    assert!(!settings.contains("listen ="), "{settings}");
}

#[test]
fn write_to_sets_modes_and_the_dovecot_group() {
    let tree = dev_tree();
    let (_, dovecot_gid) = user_ids("dovecot");
    let script = fs::metadata(tree.stack.paths.dovecot_auth_script()).unwrap();
    assert_eq!(script.permissions().mode() & 0o7777, 0o640);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&script), dovecot_gid);
    let main_cf = fs::metadata(tree.stack.paths.postfix_config_dir().join("main.cf")).unwrap();
    assert_eq!(main_cf.permissions().mode() & 0o7777, 0o644);
}

// ------------------------------------------------------------------- auth.lua

#[test]
fn auth_lua_compiles_with_lua_5_4() {
    let tree = dev_tree();
    run_silent("luac5.4", &["-p", tree.stack.paths.dovecot_auth_script().to_str().unwrap()]);
}

/// A stand-in for Dovecot's Lua API: `dovecot.http.client` answers from a
/// table of canned responses keyed by URL and records the headers sent.
const FAKE_DOVECOT: &str = r#"
local answers = {}
local seen = {}
dovecot = {
  auth = {
    PASSDB_RESULT_OK = "OK", PASSDB_RESULT_USER_UNKNOWN = "UNKNOWN", PASSDB_RESULT_USER_DISABLED = "DISABLED",
    PASSDB_RESULT_INTERNAL_FAILURE = "TEMPFAIL", USERDB_RESULT_OK = "OK", USERDB_RESULT_USER_UNKNOWN = "UNKNOWN",
    USERDB_RESULT_INTERNAL_FAILURE = "TEMPFAIL",
  },
  http = {
    client = function(settings)
      assert(settings.max_attempts == 1 and settings.request_timeout_msecs > 0 and settings.connect_timeout_msecs > 0)
      return {
        request = function(_, options)
          assert(options.method == "GET")
          local headers = {}
          return {
            add_header = function(_, name, value) headers[name] = value end,
            submit = function()
              seen[#seen + 1] = { url = options.url, authorization = headers["Authorization"] }
              local answer = answers[options.url] or { 9003, "", "connect() failed: Connection refused" }
              return {
                status = function() return answer[1] end,
                payload = function() return answer[2] end,
                reason = function() return answer[3] end,
              }
            end,
          }
        end,
      }
    end,
  },
}
"#;

const LUA_CHECKS: &str = r#"
local base = "http://127.0.0.1:8091"
answers[base .. "/dovecot/passdb/alice%40example.com"] = { 200, "password={ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA\n", "OK" }
answers[base .. "/dovecot/passdb/bob%40example.com"] = { 404, "", "Not Found" }
answers[base .. "/dovecot/passdb/carol%40example.com"] = { 403, "", "Forbidden" }
answers[base .. "/dovecot/passdb/dave%40example.com"] = { 503, "", "Service Unavailable" }
answers[base .. "/dovecot/passdb/erin%40example.com"] = { 200, "home=/x\n", "OK" }
answers[base .. "/dovecot/userdb/alice%40example.com"] = { 200, "home=/m/example.com/alice\nuid=5000\ngid=5000\nquota_rule=*:bytes=1000\n", "OK" }
answers[base .. "/dovecot/userdb/bob%40example.com"] = { 404, "", "Not Found" }
answers[base .. "/dovecot/userdb/carol%40example.com"] = { 403, "", "Forbidden" }
answers[base .. "/dovecot/iterate"] = { 200, "alice@example.com\nbob@example.com\n", "OK" }

local result, fields = auth_passdb_lookup({ user = "alice@example.com" })
assert(result == "OK", result)
assert(fields.password == "{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", fields.password)
assert(seen[#seen].authorization == "Bearer " .. EXPECTED_SECRET, seen[#seen].authorization)
assert((auth_passdb_lookup({ user = "bob@example.com" })) == "UNKNOWN")
assert((auth_passdb_lookup({ user = "carol@example.com" })) == "DISABLED")
assert((auth_passdb_lookup({ user = "dave@example.com" })) == "TEMPFAIL")
assert((auth_passdb_lookup({ user = "erin@example.com" })) == "TEMPFAIL", "200 without a password is a failure")
local refused, message = auth_passdb_lookup({ user = "frank@example.com" })
assert(refused == "TEMPFAIL" and string.find(message, "9003"), message)

auth_passdb_lookup({ user = "a b/c?d%e+f@example.com" })
assert(seen[#seen].url == base .. "/dovecot/passdb/a%20b%2Fc%3Fd%25e%2Bf%40example.com", seen[#seen].url)

local found, user = auth_userdb_lookup({ user = "alice@example.com" })
assert(found == "OK")
assert(user.home == "/m/example.com/alice" and user.uid == "5000" and user.gid == "5000")
assert(user.quota_rule == "*:bytes=1000", user.quota_rule)
assert((auth_userdb_lookup({ user = "bob@example.com" })) == "UNKNOWN")
assert((auth_userdb_lookup({ user = "carol@example.com" })) == "TEMPFAIL")
assert((auth_userdb_lookup({ user = "frank@example.com" })) == "TEMPFAIL")

local users = auth_userdb_iterate()
assert(#users == 2 and users[1] == "alice@example.com" and users[2] == "bob@example.com")
answers[base .. "/dovecot/iterate"] = { 9008, "", "Request timed out" }
assert(not pcall(auth_userdb_iterate), "a failed iteration must raise")
print("auth.lua checks passed")
"#;

#[test]
fn auth_lua_maps_every_endpoint_answer() {
    let tree = dev_tree();
    let script = fs::read_to_string(tree.stack.paths.dovecot_auth_script()).unwrap();
    let harness = format!(
        "{FAKE_DOVECOT}\n{script}\nlocal EXPECTED_SECRET = {secret:?}\n{LUA_CHECKS}",
        secret = tree.stack.auth_endpoint.secret
    );
    let harness_path = tree.stack.paths.run_dir.join("auth-harness.lua");
    fs::write(&harness_path, harness).unwrap();
    let output = run_silent("lua5.4", &[harness_path.to_str().unwrap()]);
    assert!(output.contains("auth.lua checks passed"), "{output}");
}

#[test]
fn auth_lua_carries_a_secret_with_quotes_and_backslashes_intact() {
    let root = tempfile::tempdir().unwrap();
    let mut stack = Stack::dev(root.path().join("data"));
    stack.auth_endpoint.secret = GOLDEN_SECRET.to_owned();
    let script = render(&stack).unwrap().get("dovecot/auth.lua").unwrap().contents.clone();
    let probe = format!("{FAKE_DOVECOT}\n{script}\nio.write(SECRET_PROBE())\n")
        .replace("local SECRET = ", "function SECRET_PROBE() return SECRET end\nSECRET = ");
    let probe_path = root.path().join("probe.lua");
    fs::write(&probe_path, probe).unwrap();
    assert_eq!(run_silent("lua5.4", &[probe_path.to_str().unwrap()]), GOLDEN_SECRET);
}

// ------------------------------------------------------------------ SpamAssassin

#[test]
fn spam_off_renders_no_spam_file_or_setting() {
    let rendered = render(&golden_dev_stack()).unwrap();
    let paths: Vec<&str> = rendered.iter().map(|(path, _)| path).collect();
    assert_eq!(paths, ["dovecot/auth.lua", "dovecot/dovecot.conf", "postfix/main.cf", "postfix/master.cf"]);
    for (path, file) in rendered.iter() {
        // bl.spamcop.net, a DNSBL of postscreen's, is not spamc.
        let contents: String =
            file.contents.lines().filter(|line| !line.starts_with("postscreen_dnsbl_sites")).collect();
        for absent in ["imap_sieve", "sieve_extprograms", "smtpd_milters", "spamc", "imapsieve"] {
            assert!(!contents.contains(absent), "{path} mentions {absent}");
        }
    }
}

#[test]
fn spam_without_smtp_reject_adds_no_milter() {
    let mut stack = golden_dev_stack();
    stack.spam = Some(Spam::new(&stack.paths));
    let rendered = render(&stack).unwrap();
    assert!(rendered.get("dovecot/spam/filter.sieve").is_some());
    for path in ["postfix/main.cf", "postfix/master.cf"] {
        assert!(!rendered.get(path).unwrap().contents.contains("milter"), "{path}");
    }
    let conf = &rendered.get("dovecot/dovecot.conf").unwrap().contents;
    assert_eq!(setting(conf, "sieve_before").as_deref(), Some("/srv/couchmail-dev/run/dovecot/spam/filter.sieve"));
    assert_eq!(setting(conf, "sieve_before2"), None, "no administrator hook in the dev stack");
}

#[test]
fn smtp_reject_asks_the_milter_on_port_25_only() {
    let mut stack = golden_dev_stack();
    stack.spam = Some(production_spam(&stack.paths));
    let main_cf = rendered_text(&stack, "postfix/main.cf");
    let master_cf = rendered_text(&stack, "postfix/master.cf");
    assert_eq!(
        setting(&main_cf, "smtpd_milters").as_deref(),
        Some("unix:/srv/couchmail-dev/run/spamass-milter/spamass.sock")
    );
    assert_eq!(
        setting(&main_cf, "milter_default_action").as_deref(),
        Some("accept"),
        "a dead milter must not stop mail"
    );
    // Port 25's smtpd sits behind postscreen and keeps main.cf's milter.
    let mx_line = master_cf.lines().find(|line| line.starts_with("127.0.0.1:2525 ")).unwrap();
    assert!(mx_line.ends_with("postscreen"), "{mx_line}");
    let mut after_pass = master_cf.lines().skip_while(|line| !line.starts_with("smtpd ")).skip(1);
    assert!(after_pass.next().is_some_and(|line| !line.starts_with(' ')), "smtpd pass has no options:\n{master_cf}");
    for port in [stack.ports.submission, stack.ports.submissions] {
        assert!(service_options(&master_cf, port).contains(&"-o smtpd_milters=".to_owned()), "port {port}");
    }
}

#[test]
fn spamassassin_keeps_bayes_per_user_and_off_the_network() {
    let mut stack = golden_production_stack();
    let local_cf = rendered_text(&stack, "spamassassin/local.cf");
    let options: Vec<&str> = local_cf.lines().filter(|line| !line.starts_with('#')).collect();
    for expected in ["use_bayes 1", "bayes_auto_learn 0", "dns_available no", "skip_rbl_checks 1", "report_safe 0"] {
        assert!(options.contains(&expected), "{expected} missing:\n{local_cf}");
    }
    assert!(options.contains(&"required_score 5.0"));
    assert!(!options.iter().any(|line| line.starts_with("bayes_path")), "one bayes_path would serve every user");
    stack.spam.as_mut().unwrap().network_tests = true;
    let with_network = rendered_text(&stack, "spamassassin/local.cf");
    assert!(with_network.lines().any(|line| line == "dns_available yes"));
    assert!(with_network.lines().any(|line| line == "skip_rbl_checks 0"));
}

#[test]
fn spam_scripts_compile_with_the_rendered_dovecot_configuration() {
    let tree = production_tree();
    let config = tree.stack.paths.dovecot_config_file();
    for script in tree.stack.paths.spam_sieve_scripts() {
        let binary = script.with_extension("svbin");
        run_silent("sievec", &["-c", config.to_str().unwrap(), script.to_str().unwrap(), binary.to_str().unwrap()]);
        assert!(binary.is_file(), "{}", binary.display());
    }
}

/// A stand-in for spamc that prints its arguments, one a line, and copies standard input to standard output.
const FAKE_SPAMC: &str = "#!/bin/sh\nfor argument in \"$@\"; do printf '%s\\n' \"$argument\"; done\ncat\n";

/// Runs a rendered wrapper with `args` and `input`; answers its exit code and output.
fn run_wrapper(program: &Path, args: &[&str], input: &str) -> (i32, String) {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn wrappers_pass_the_same_user_name_as_spamd_user_name() {
    let root = tempfile::tempdir().unwrap();
    let mut stack = golden_production_stack();
    stack.paths = Paths::new(root.path().join("data"), root.path().join("run"));
    let fake_spamc = root.path().join("fake-spamc");
    fs::write(&fake_spamc, FAKE_SPAMC).unwrap();
    fs::set_permissions(&fake_spamc, fs::Permissions::from_mode(0o755)).unwrap();
    let mut spam = production_spam(&stack.paths);
    spam.spamc_program = fake_spamc;
    stack.spam = Some(spam);
    let config_dir = stack.paths.config_dir.clone();
    render(&stack).unwrap().write_to(&config_dir).unwrap();
    let filter = config_dir.join(couchmail_render::SPAM_FILTER_PROGRAM);
    let learn = config_dir.join(couchmail_render::SPAM_LEARN_PROGRAM);

    for address in
        ["alice@example.com", "a!b@example.com", "a#b@example.com", "o'brien@example.com", "a/b@x.example", ".x@.."]
    {
        let expected_user = couchmail_render::spamd_user_name(address);
        let (status, output) = run_wrapper(&filter, &[address], "Subject: x\n\nbody\n");
        assert_eq!(status, 0, "{address}: {output}");
        let lines: Vec<&str> = output.lines().collect();
        let user_idx = lines.iter().position(|line| *line == "-u").unwrap();
        assert_eq!(lines[user_idx + 1], expected_user, "{address}");
        assert!(lines.contains(&"-x"), "spamc must report failures instead of passing mail through: {output}");
        assert!(output.ends_with("Subject: x\n\nbody\n"), "the message goes to spamc unchanged: {output}");

        let (status, output) = run_wrapper(&learn, &["spam", address], "Subject: x\n\nbody\n");
        assert_eq!(status, 0, "{address}");
        assert!(output.is_empty(), "spamc's answer is not for Dovecot: {output}");
    }
    assert_eq!(run_wrapper(&learn, &["forget", "alice@example.com"], "").0, 64, "only spam and ham are learned");
    assert_eq!(run_wrapper(&filter, &["alice"], "").0, 64, "a user name without a domain is refused");
}

// -------------------------------------------------------------------- postscreen

#[test]
fn postscreen_is_on_by_default_in_front_of_port_25() {
    for stack in [golden_dev_stack(), golden_production_stack()] {
        let main_cf = rendered_text(&stack, "postfix/main.cf");
        let master_cf = rendered_text(&stack, "postfix/master.cf");
        let services = master_services(&master_cf);
        let find = |name: &str| services.iter().find(|columns| columns[0] == name).cloned();
        let mx = find(&services[0][0]).unwrap();
        assert!(mx[0].ends_with(&format!(":{}", stack.ports.smtp)) || mx[0] == stack.ports.smtp.to_string());
        assert_eq!((mx[1].as_str(), mx[6].as_str(), mx[7].as_str()), ("inet", "1", "postscreen"), "{mx:?}");
        assert_eq!(find("smtpd").unwrap()[1..], ["pass", "-", "-", "n", "-", "-", "smtpd"]);
        assert_eq!(find("dnsblog").unwrap()[7], "dnsblog");
        assert_eq!(find("tlsproxy").unwrap()[7], "tlsproxy");
        assert_eq!(setting(&main_cf, "postscreen_greet_action").as_deref(), Some("enforce"));
        assert_eq!(setting(&main_cf, "postscreen_dnsbl_action").as_deref(), Some("enforce"));
        assert_eq!(setting(&main_cf, "postscreen_dnsbl_threshold").as_deref(), Some("3"));
        assert_eq!(setting(&main_cf, "postscreen_dnsbl_allowlist_threshold").as_deref(), Some("-1"));
        let sites = setting(&main_cf, "postscreen_dnsbl_sites").unwrap();
        assert!(sites.starts_with("zen.spamhaus.org=127.0.0.[2..11]*3, bl.spamcop.net=127.0.0.2*2, "), "{sites}");
        assert_eq!(
            setting(&main_cf, "postscreen_access_list").as_deref(),
            Some("cidr:{ { 127.0.0.0/8 permit }, { ::1/128 permit } }")
        );
        assert_eq!(
            setting(&main_cf, "postscreen_cache_map").as_deref(),
            Some("btree:$data_directory/postscreen_cache")
        );
    }
}

#[test]
fn postscreen_off_leaves_plain_smtpd_on_port_25() {
    let mut stack = golden_dev_stack();
    stack.postscreen = None;
    let main_cf = rendered_text(&stack, "postfix/main.cf");
    let master_cf = rendered_text(&stack, "postfix/master.cf");
    assert!(!main_cf.contains("postscreen") && !master_cf.contains("postscreen"));
    let services = master_services(&master_cf);
    let mx = services.iter().find(|columns| columns[0] == "127.0.0.1:2525").unwrap();
    assert_eq!(mx[7], "smtpd");
    for absent in ["dnsblog", "tlsproxy"] {
        assert!(!services.iter().any(|columns| columns[0] == absent), "{absent}");
    }
}

#[test]
fn render_refuses_a_postscreen_threshold_of_zero() {
    let mut stack = golden_dev_stack();
    stack.postscreen.as_mut().unwrap().dnsbl_threshold = 0;
    assert_eq!(render(&stack).unwrap_err().to_string(), "postscreen.dnsbl_threshold: must be greater than 0");
}

#[test]
fn postfix_check_accepts_postscreen_with_test_settings() {
    let root = tempfile::tempdir().unwrap();
    let mut stack = Stack::dev(root.path().join("data"));
    stack.auth_endpoint.secret = "test-secret".to_owned();
    stack.outbound = Outbound::Error;
    stack.postscreen = Some(Postscreen {
        dnsbl_sites: vec!["dnsbl.test=127.0.0.2*3".parse().unwrap(), "dnswl.test*-2".parse().unwrap()],
        dnsbl_threshold: 3,
        dnsbl_allowlist_threshold: -1,
        allowlist: vec!["192.0.2.0/24".parse().unwrap(), "2001:db8::/32".parse().unwrap()],
        greet_wait_secs: Some(2),
    });
    let tree = build_tree(root, stack);
    check_postfix(&tree);
    let config_dir = tree.stack.paths.postfix_config_dir();
    let postconf = run_silent("postconf", &["-c", config_dir.to_str().unwrap(), "postscreen_greet_wait"]);
    assert_eq!(postconf.trim(), "postscreen_greet_wait = 2s");
    // Postfix reads the inline allowlist as a CIDR table: the first network permits, others are unknown.
    let access_list = run_silent("postconf", &["-c", config_dir.to_str().unwrap(), "-h", "postscreen_access_list"]);
    let table = access_list.trim();
    let lookup = |address: &str| {
        Command::new(tool("postmap")).args(["-c", config_dir.to_str().unwrap(), "-q", address, table]).output().unwrap()
    };
    assert_eq!(String::from_utf8_lossy(&lookup("192.0.2.7").stdout).trim(), "permit");
    assert_eq!(String::from_utf8_lossy(&lookup("2001:db8::9").stdout).trim(), "permit");
    assert_eq!(lookup("198.51.100.1").status.code(), Some(1), "not found");
}
