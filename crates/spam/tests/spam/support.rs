//! The harness: a stack rendered into a temporary directory, daemons under the real supervisor, fake couchmail
//! servers (auth endpoint, Sieve dict, socketmap) answering for a fixed set of users, and raw LMTP, SMTP and IMAP.
//!
//! Needs root and Debian's postfix, dovecot-core, dovecot-imapd, dovecot-lmtpd, dovecot-sieve, dovecot-auth-lua,
//! spamassassin, spamd, spamc, spamass-milter and openssl.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use couchmail_dovecot_auth::{AuthLookup, PassdbAnswer, UserFields, UserdbAnswer};
use couchmail_dovecot_dict::{DictError, SieveDict, SieveScripts};
use couchmail_render::{Outbound, Spam, SpamScore, Stack, render};
use couchmail_socketmap::{Lookup, Reply};
use couchmail_supervisor::system::{BayesCounts, bayes_counts, find_program};
use couchmail_supervisor::{ProcessSpec, State, StopSignal, Supervisor};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The users every test knows, in domain example.com.
pub const USERS: [&str; 3] = ["alice@example.com", "bob@example.com", "a!b@example.com"];

/// The GTUBE test message: any SpamAssassin scores it 1000 (it needs headers and a blank line before the body).
pub fn gtube(subject: &str) -> String {
    message(subject, "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X")
}

/// An ordinary message that scores low without network tests.
pub fn ham(subject: &str) -> String {
    message(
        subject,
        "Hi Alice,\r\n\r\nare we still on for lunch on Thursday? I can book the usual place for half past twelve.\r\n\
         Bring the draft of the report if you have it; I would like to go through the second chapter.\r\n\r\nCheers,\r\nCarol",
    )
}

fn message(subject: &str, body: &str) -> String {
    // A fixed Date keeps the score stable. Bayes tells messages apart by Message-ID and by a hash of the Date and
    // the body, so both carry the subject: two messages that shared a body would count as one.
    let id: String = subject.chars().filter(char::is_ascii_alphanumeric).collect();
    format!(
        "Date: Mon, 3 Mar 2025 10:00:00 +0000\r\nFrom: Carol <carol@example.net>\r\nTo: alice@example.com\r\n\
         Subject: {subject}\r\nMessage-ID: <{id}.20250303@example.net>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\n{body}\r\n({subject})\r\n"
    )
}

/// A rendered stack in a temporary directory, prepared for the daemons.
pub struct Tree {
    pub stack: Stack,
    _root: tempfile::TempDir,
}

impl Tree {
    /// Renders a dev stack with spam on (and the SMTP-time milter at 15 when `smtp_reject`), creates the layout of
    /// docs/runtime.md with its owners, a self-signed certificate, and runs [`couchmail_spam::prepare`].
    pub fn new(smtp_reject: bool) -> Tree {
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut stack = Stack::dev(root.path().join("data"));
        stack.auth_endpoint.secret = "spam-test-secret".to_owned();
        stack.outbound = Outbound::Error;
        // These tests run Postfix without couchmail's policy service, which they do not exercise.
        stack.policy = false;
        let [smtp, submission, submissions, imaps] = free_ports();
        stack.ports = couchmail_render::Ports { smtp, submission, submissions, imaps };
        let mut spam = Spam::new(&stack.paths);
        if smtp_reject {
            spam = spam.with_smtp_reject(&stack.paths, SpamScore::from_tenths(150));
        }
        stack.spam = Some(spam);
        make_layout(&stack);
        Tree { stack, _root: root }
    }

    /// Renders again (after a change to the stack) and prepares.
    pub async fn write(&self) {
        render(&self.stack).unwrap().write_to(&self.stack.paths.config_dir).unwrap();
        couchmail_spam::prepare(&self.stack).await.unwrap();
    }

    pub fn spam(&self) -> &Spam {
        self.stack.spam.as_ref().unwrap()
    }

    /// `address`'s bayes counters, read with sa-learn.
    pub async fn bayes(&self, address: &str) -> BayesCounts {
        bayes_counts(&self.stack.paths.spamassassin_site_dir(), &self.spam().user_dir(address), "vmail").await.unwrap()
    }

    /// The mail home of `address`, as the fake auth endpoint answers it.
    pub fn home(&self, address: &str) -> PathBuf {
        let (local, domain) = address.split_once('@').unwrap();
        self.stack.paths.mail_dir.join(domain).join(couchmail_dovecot_auth::home_component(local))
    }

    /// The messages in `address`'s mailbox `mailbox` (INBOX, Junk, Lists, Trash), as their texts.
    pub fn mailbox(&self, address: &str, mailbox: &str) -> Vec<String> {
        let maildir = match mailbox {
            "INBOX" => self.home(address).join("Maildir"),
            other => self.home(address).join("Maildir").join(format!(".{other}")),
        };
        let mut texts = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else { continue };
            for entry in entries {
                texts.push(std::fs::read_to_string(entry.unwrap().path()).unwrap());
            }
        }
        texts
    }

    /// The last lines of a log in the log directory, for failure messages.
    pub fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.stack.paths.log_dir.join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!("--- {name} ---\n{}", lines[lines.len().saturating_sub(30)..].join("\n"))
    }
}

fn free_ports() -> [u16; 4] {
    let listeners: Vec<TcpListener> = (0..4).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let ports: Vec<u16> = listeners.iter().map(|listener| listener.local_addr().unwrap().port()).collect();
    [ports[0], ports[1], ports[2], ports[3]]
}

fn ids(name: &str) -> (u32, u32) {
    let ids = couchmail_supervisor::system::user_ids(name).unwrap().unwrap_or_else(|| panic!("no user {name}"));
    (ids.uid, ids.gid)
}

fn make_dir(path: &Path, mode: u32, owner: Option<(u32, u32)>) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
}

/// The directories of couchmail's `up` (crates/couchmail/src/up/layout.rs) and a certificate.
fn make_layout(stack: &Stack) {
    let paths = &stack.paths;
    make_dir(&paths.data_dir, 0o711, None);
    make_dir(&paths.mail_dir, 0o700, Some((stack.vmail.uid, stack.vmail.gid)));
    make_dir(paths.tls_key.parent().unwrap(), 0o755, None);
    make_dir(&paths.postfix_queue_dir, 0o755, None);
    make_dir(&paths.postfix_data_dir, 0o700, Some(ids("postfix")));
    make_dir(&paths.dovecot_state_dir, 0o755, None);
    make_dir(&paths.log_dir, 0o750, None);
    make_dir(&paths.run_dir, 0o755, None);
    make_dir(paths.lmtp_socket.parent().unwrap(), 0o755, None);
    make_dir(&paths.dovecot_base_dir, 0o755, None);
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&paths.tls_key)
        .arg("-out")
        .arg(&paths.tls_certificate)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl could not make a certificate");
}

/// Daemons under the real supervisor; stopped by [`Daemons::stop`], or killed when dropped (a failed test).
pub struct Daemons {
    supervisor: Supervisor,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Daemons {
    pub fn start(specs: Vec<ProcessSpec>) -> Daemons {
        let supervisor = Supervisor::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn({
            let supervisor = supervisor.clone();
            async move {
                supervisor
                    .run(specs, async {
                        let _ = stopped.await;
                    })
                    .await
            }
        });
        Daemons { supervisor, stop: Some(stop), task: Some(task) }
    }

    /// Stops every daemon (SIGTERM, then SIGKILL after their grace period) and waits.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();
        }
    }

    fn running_pids(&self) -> Vec<u32> {
        self.supervisor
            .status()
            .into_iter()
            .filter_map(|status| match status.state {
                State::Running { pid } => Some(pid),
                _ => None,
            })
            .collect()
    }

    /// The pids of the daemon called `name` and of every process below it.
    pub fn process_tree(&self, name: &str) -> Vec<u32> {
        let Some(root) = self.supervisor.status().into_iter().find_map(|status| match status.state {
            State::Running { pid } if status.name == name => Some(pid),
            _ => None,
        }) else {
            return Vec::new();
        };
        let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
                Some((pid, ppid))
            })
            .collect();
        let mut tree = vec![root];
        let mut next_idx = 0;
        while let Some(&parent) = tree.get(next_idx) {
            next_idx += 1;
            tree.extend(parents.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
        }
        tree
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        let Some(stop) = self.stop.take() else { return };
        // A test failed before stopping its daemons: ask the supervisor, whose task still runs on the runtime's
        // other threads, and kill what is left after a while.
        let _ = stop.send(());
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.running_pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        for pid in self.running_pids() {
            let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
        }
    }
}

/// Dovecot from the rendered configuration, in the foreground.
pub fn dovecot_spec(stack: &Stack) -> ProcessSpec {
    ProcessSpec {
        name: "dovecot".to_owned(),
        program: find_program("dovecot"),
        args: vec!["-F".into(), "-c".into(), stack.paths.dovecot_config_file().into_os_string()],
        log_file: Some(stack.paths.dovecot_log.clone()),
        stop_signal: StopSignal::Term,
        stop_timeout: Duration::from_secs(10),
    }
}

/// Postfix from the rendered configuration, in the foreground.
pub fn postfix_spec(stack: &Stack) -> ProcessSpec {
    ProcessSpec {
        name: "postfix".to_owned(),
        program: find_program("postfix"),
        args: vec!["-c".into(), stack.paths.postfix_config_dir().into_os_string(), "start-fg".into()],
        log_file: Some(stack.paths.postfix_log.clone()),
        stop_signal: StopSignal::Term,
        stop_timeout: Duration::from_secs(10),
    }
}

/// Waits until `check` holds, failing with `what` and `diagnostics` after `timeout`.
pub async fn wait_for(
    what: &str,
    timeout: Duration,
    diagnostics: impl Fn() -> String,
    mut check: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", diagnostics());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ------------------------------------------------------------------- fake couchmail

/// The userdb of [`USERS`]: homes below the mail directory, as couchmail's auth endpoint answers.
struct Accounts {
    homes: HashMap<String, String>,
    uid: u32,
    gid: u32,
}

/// Every user's password in the fake passdb.
pub const PASSWORD: &str = "correct horse";

impl AuthLookup for Accounts {
    fn passdb(&self, user: &str) -> PassdbAnswer {
        match self.homes.contains_key(user) {
            true => PassdbAnswer::Found { password: format!("{{PLAIN}}{PASSWORD}") },
            false => PassdbAnswer::Unknown,
        }
    }

    fn userdb(&self, user: &str) -> UserdbAnswer {
        match self.homes.get(user) {
            Some(home) => {
                UserdbAnswer::Found(UserFields { home: home.clone(), uid: self.uid, gid: self.gid, quota_bytes: None })
            }
            None => UserdbAnswer::Unknown,
        }
    }

    fn iterate(&self) -> Option<Vec<String>> {
        Some(self.homes.keys().cloned().collect())
    }
}

/// Personal Sieve scripts by user; the id is the user name.
struct Scripts(HashMap<String, String>);

impl SieveScripts for Scripts {
    fn active_script_id(&self, user: &str) -> Result<Option<String>, DictError> {
        Ok(self.0.contains_key(user).then(|| format!("script-of-{}", user.replace('@', "-at-"))))
    }

    fn script_id(&self, user: &str, _name: &str) -> Result<Option<String>, DictError> {
        self.active_script_id(user)
    }

    fn script_text(&self, user: &str, _id: &str) -> Result<Option<String>, DictError> {
        Ok(self.0.get(user).cloned())
    }
}

/// The socketmap maps Postfix asks: example.com and its [`USERS`].
struct Maps;

impl Lookup for Maps {
    fn lookup(&self, map: &str, key: &str) -> Reply {
        match map {
            "domains" if key == "example.com" => Reply::ok("example.com"),
            "mailboxes" | "aliases" if USERS.contains(&key) => Reply::ok(key),
            _ => Reply::NotFound,
        }
    }
}

/// couchmail's servers, faked: the auth endpoint, the Sieve dict and the socketmap. Stopped when dropped.
pub struct Servers {
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Servers {
    /// Starts them on the stack's sockets and points the stack's auth endpoint at the HTTP one; call before
    /// [`Tree::write`]. `scripts` are personal Sieve scripts by user.
    pub async fn start(tree: &mut Tree, scripts: &[(&str, &str)]) -> Servers {
        let stack = &mut tree.stack;
        let mut stops = Vec::new();
        let homes: HashMap<String, String> = USERS
            .iter()
            .map(|user| {
                let (local, domain) = user.split_once('@').unwrap();
                let home = stack.paths.mail_dir.join(domain).join(couchmail_dovecot_auth::home_component(local));
                ((*user).to_owned(), home.to_string_lossy().into_owned())
            })
            .collect();
        let accounts = Arc::new(Accounts { homes, uid: stack.vmail.uid, gid: stack.vmail.gid });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        stack.auth_endpoint.base_url = format!("http://{address}");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let secret = stack.auth_endpoint.secret.clone();
        tokio::spawn(async move {
            let _ = couchmail_dovecot_auth::serve(listener, accounts, &secret, async {
                let _ = stopped.await;
            })
            .await;
        });
        stops.push(stop);

        let scripts: HashMap<String, String> =
            scripts.iter().map(|(user, script)| ((*user).to_owned(), (*script).to_owned())).collect();
        let dict = couchmail_dovecot_dict::bind(&stack.paths.dict_socket, 0o666).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(couchmail_dovecot_dict::run(
            dict,
            Arc::new(SieveDict::new(Scripts(scripts), "active")),
            couchmail_dovecot_dict::ServerConfig::default(),
            async {
                let _ = stopped.await;
            },
        ));
        stops.push(stop);

        let socketmap = couchmail_socketmap::Listener::bind_unix(&stack.paths.socketmap_socket, 0o666).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(couchmail_socketmap::run(
            socketmap,
            Arc::new(Maps),
            couchmail_socketmap::ServerConfig::default(),
            async {
                let _ = stopped.await;
            },
        ));
        stops.push(stop);
        Servers { stops }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

// ------------------------------------------------------------------- clients

/// Delivers `message` over LMTP to `recipients` in one transaction; answers the reply to each recipient after DATA.
pub async fn lmtp_deliver(socket: &Path, recipients: &[&str], message: &str) -> Vec<String> {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut replies = Vec::new();
    read_reply(&mut read).await;
    for command in std::iter::once("LHLO test.example".to_owned())
        .chain(std::iter::once("MAIL FROM:<carol@example.net>".to_owned()))
        .chain(recipients.iter().map(|recipient| format!("RCPT TO:<{recipient}>")))
        .chain(std::iter::once("DATA".to_owned()))
    {
        write.write_all(format!("{command}\r\n").as_bytes()).await.unwrap();
        let reply = read_reply(&mut read).await;
        assert!(reply.starts_with('2') || reply.starts_with('3'), "{command}: {reply}");
    }
    write.write_all(dot_stuffed(message).as_bytes()).await.unwrap();
    write.write_all(b".\r\n").await.unwrap();
    for _ in recipients {
        replies.push(read_reply(&mut read).await);
    }
    write.write_all(b"QUIT\r\n").await.unwrap();
    replies
}

fn dot_stuffed(message: &str) -> String {
    let mut out = String::new();
    for line in message.split_inclusive("\r\n") {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
    }
    if !out.ends_with("\r\n") {
        out.push_str("\r\n");
    }
    out
}

/// Reads one (possibly multi-line) SMTP/LMTP reply and answers its last line.
async fn read_reply(read: &mut (impl AsyncBufReadExt + Unpin)) -> String {
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(60), read.read_line(&mut line)).await.unwrap().unwrap();
        assert!(n > 0, "the server closed the connection");
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return line.trim_end().to_owned();
        }
    }
}

/// Sends `message` over SMTP on port 25 and answers the reply to the end of DATA.
pub async fn smtp_send(port: u16, recipient: &str, message: &str) -> String {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let banner = read_reply(&mut read).await;
    assert!(banner.starts_with("220"), "{banner}");
    for command in ["EHLO client.example.net".to_owned(), "MAIL FROM:<carol@example.net>".to_owned()]
        .into_iter()
        .chain([format!("RCPT TO:<{recipient}>"), "DATA".to_owned()])
    {
        write.write_all(format!("{command}\r\n").as_bytes()).await.unwrap();
        let reply = read_reply(&mut read).await;
        assert!(reply.starts_with('2') || reply.starts_with('3'), "{command}: {reply}");
    }
    write.write_all(dot_stuffed(message).as_bytes()).await.unwrap();
    write.write_all(b".\r\n").await.unwrap();
    let reply = read_reply(&mut read).await;
    write.write_all(b"QUIT\r\n").await.unwrap();
    reply
}

/// Logs in as `user` over IMAPS (the real imap-login and imap processes, with the imap protocol's plugins,
/// IMAPSieve included) and runs `commands`, pipelined; answers the whole session's output.
/// `openssl s_client` is the TLS client: it sends the script and waits for the server to close after LOGOUT.
pub async fn imap(stack: &Stack, user: &str, commands: &[&str]) -> String {
    let mut script = format!("l LOGIN \"{user}\" \"{PASSWORD}\"\r\n");
    for (idx, command) in commands.iter().enumerate() {
        script.push_str(&format!("a{idx} {command}\r\n"));
    }
    script.push_str("z LOGOUT\r\n");
    let mut child = tokio::process::Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &format!("127.0.0.1:{}", stack.ports.imaps)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(script.as_bytes()).await.unwrap();
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(text.contains("l OK"), "IMAP login as {user} failed:\n{text}\n{}", String::from_utf8_lossy(&output.stderr));
    for (idx, command) in commands.iter().enumerate() {
        assert!(text.contains(&format!("a{idx} OK")), "IMAP command {command} failed:\n{text}");
    }
    text
}
