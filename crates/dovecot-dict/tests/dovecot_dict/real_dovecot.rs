//! Dovecot's own clients against the server: `doveadm dict` (Dovecot 2.3.19 here) and Pigeonhole's `sieve-test`.
//!
//! Each test prints a note and returns when the tool is not installed; CI installs Dovecot, so there they run.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use couchmail_dovecot_dict::{
    DEFAULT_SCRIPT_NAME, DictError, READ_ONLY_MESSAGE, ServerConfig, SieveDict, SieveScripts,
};

use super::support::{TestServer, standard_lookup};

const DOVEADM: &str = "/usr/bin/doveadm";
const SIEVE_TEST: &str = "/usr/bin/sieve-test";
const RUNUSER: &str = "/usr/sbin/runuser";

/// A user's script, with its id derived from the text as couchmail's index derives it.
const SCRIPT: &str =
    "require \"fileinto\";\r\nif header :contains \"subject\" \"hello\" {\r\n  fileinto \"Greetings\";\r\n}\r\n";
const SCRIPT_ID: &str = "sha256-0123abcd";

/// One user, one active script.
struct OneUser {
    user: &'static str,
}

impl SieveScripts for OneUser {
    fn active_script_id(&self, user: &str) -> Result<Option<String>, DictError> {
        Ok((user == self.user).then(|| SCRIPT_ID.to_owned()))
    }

    fn script_id(&self, _user: &str, _name: &str) -> Result<Option<String>, DictError> {
        Ok(None)
    }

    fn script_text(&self, user: &str, id: &str) -> Result<Option<String>, DictError> {
        Ok((user == self.user && id == SCRIPT_ID).then(|| SCRIPT.to_owned()))
    }
}

fn installed(tool: &str) -> bool {
    if Path::new(tool).exists() {
        return true;
    }
    eprintln!("note: {tool} is not installed; skipping this test against real Dovecot");
    false
}

/// A minimal configuration so the tools ignore the machine's /etc/dovecot.
fn write_dovecot_config(dir: &Path) -> PathBuf {
    let base_dir = dir.join("run");
    std::fs::create_dir_all(&base_dir).unwrap();
    let config = dir.join("dovecot.conf");
    let text = format!(
        "base_dir = {base}\nlog_path = /dev/stderr\nmail_home = {home}/%u\nmail_location = maildir:~/Maildir\n",
        base = base_dir.display(),
        home = dir.join("home").display(),
    );
    std::fs::write(&config, text).unwrap();
    config
}

fn run_tool(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|err| panic!("running {program}: {err}"))
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {:?}\nstderr: {:?}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `doveadm -f tab dict get` prints an empty header line, the value, and an LF.
fn doveadm_value(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout.strip_prefix('\n').and_then(|rest| rest.strip_suffix('\n')).unwrap_or(&stdout).to_owned()
}

#[tokio::test]
async fn doveadm_dict_get_reads_a_sieve_script_through_the_server() {
    if !installed(DOVEADM) {
        return;
    }
    let lookup = Arc::new(SieveDict::new(OneUser { user: "alice@example.com" }, "active"));
    let server = TestServer::start(lookup, ServerConfig::default()).await;
    let config = write_dovecot_config(server.dir.path());
    let config = config.to_str().unwrap();
    let dict_uri = format!("proxy:{}:sieve", server.socket.display());
    let socket_args = |user: &'static str, key: &'static str| -> Vec<String> {
        ["-c", config, "-f", "tab", "dict", "get", "-u", user, &dict_uri, key]
            .iter()
            .map(|arg| arg.to_string())
            .collect()
    };
    let doveadm = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_tool(DOVEADM, &args)
        })
        .await
        .unwrap()
    };

    let output = doveadm(socket_args("alice@example.com", "priv/sieve/name/active")).await;
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(doveadm_value(&output), SCRIPT_ID, "{}", describe(&output));

    let output = doveadm(socket_args("alice@example.com", "priv/sieve/data/sha256-0123abcd")).await;
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(doveadm_value(&output), SCRIPT, "{}", describe(&output));

    // A user without a script: doveadm says the key was not found and exits non-zero, without an error line.
    let output = doveadm(socket_args("bob@example.com", "priv/sieve/name/active")).await;
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(!String::from_utf8_lossy(&output.stderr).contains("failure"), "{}", describe(&output));
    server.stop().await;
}

#[tokio::test]
async fn doveadm_dict_writes_are_refused_and_iteration_works() {
    if !installed(DOVEADM) {
        return;
    }
    let server = TestServer::start(Arc::new(standard_lookup()), ServerConfig::default()).await;
    let config = write_dovecot_config(server.dir.path()).to_str().unwrap().to_owned();
    let dict_uri = format!("proxy:{}:sieve", server.socket.display());

    let output = tokio::task::spawn_blocking({
        let (config, dict_uri) = (config.clone(), dict_uri.clone());
        move || {
            let args =
                ["-c", &config, "dict", "set", "-u", "alice@example.com", &dict_uri, "priv/sieve/name/active", "x"];
            run_tool(DOVEADM, &args)
        }
    })
    .await
    .unwrap();
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains(READ_ONLY_MESSAGE), "{}", describe(&output));

    let output = tokio::task::spawn_blocking(move || {
        let args = ["-c", &config, "-f", "tab", "dict", "iter", "-u", "alice@example.com", &dict_uri, "priv/list/"];
        run_tool(DOVEADM, &args)
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "key\tvalue\npriv/list/a\t1\npriv/list/b\t2\n",
        "{}",
        describe(&output)
    );
    server.stop().await;
}

fn running_as_root() -> bool {
    let output = run_tool("id", &["-u"]);
    String::from_utf8_lossy(&output.stdout).trim() == "0"
}

#[tokio::test]
async fn pigeonhole_files_mail_with_a_script_served_by_couchmail() {
    if !installed(SIEVE_TEST) || !installed(RUNUSER) {
        return;
    }
    if !running_as_root() {
        eprintln!(
            "note: sieve-test refuses to run as root and this test switches to nobody, which needs root; skipping"
        );
        return;
    }
    // sieve-test opens a dict location without a script name, so Pigeonhole asks for "default".
    let lookup = Arc::new(SieveDict::new(OneUser { user: "nobody" }, DEFAULT_SCRIPT_NAME));
    let server = TestServer::start_with_mode(lookup, ServerConfig::default(), 0o666).await;
    let dir = server.dir.path().to_owned();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = write_dovecot_config(&dir);
    let mail = dir.join("mail.eml");
    std::fs::write(&mail, "From: carol@example.org\nTo: nobody@example.com\nSubject: hello there\n\nHi!\n").unwrap();
    let location = format!("dict:proxy:{}:sieve;name=active", server.socket.display());

    let output = tokio::task::spawn_blocking(move || {
        let args =
            ["-u", "nobody", "--", SIEVE_TEST, "-c", config.to_str().unwrap(), &location, mail.to_str().unwrap()];
        run_tool(RUNUSER, &args)
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("store message in folder: Greetings"),
        "{}",
        describe(&output)
    );
    server.stop().await;
}
