//! ManageSieve (RFC 5804) served by `couchmail up`, end to end: a real client (Debian's `sieve-connect`) uploads
//! and activates a script over STARTTLS, and a message sent over SMTP is then filed by it (Pigeonhole reads the new
//! active script through the dict); a protocol client of our own checks the refusals on the wire — authentication
//! before TLS, a wrong password, bad commands, an oversized literal and a script sievec refuses each get `NO`, and
//! the session goes on.
//!
//! Each test runs a stack of its own; the harness gives every stack its own ManageSieve port.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Instant;

use base64::Engine as _;
use couchmail_testkit::stack::net::LineStream;
use couchmail_testkit::stack::{MailStack, StackOptions};

use super::support::{self, DELIVERY, PASSWORD, domain_with_mailboxes, subject, wait_for_active_sieve};

/// A stack whose ManageSieve listens on a free port; `None` when the machine cannot run it.
fn stack_with_managesieve() -> Option<(MailStack, u16)> {
    if !support::runnable() {
        return None;
    }
    let stack = MailStack::try_start(support::binary(), StackOptions::default())
        .unwrap_or_else(|err| panic!("the stack did not start: {err}"));
    let port = stack.ports().managesieve;
    Some((stack, port))
}

/// A script that files mail whose subject contains `needle` into `folder`.
fn file_into(needle: &str, folder: &str) -> String {
    format!(
        "require \"fileinto\";\r\nif header :contains \"subject\" \"{needle}\" {{\r\n  fileinto \"{folder}\";\r\n}}\r\n"
    )
}

/// Runs `sieve-connect` against the stack as `user`, the password on a file descriptor (never in argv), over
/// STARTTLS without checking the self-signed certificate.
fn sieve_connect(stack: &MailStack, port: u16, user: &str, args: &[&str]) -> String {
    let mut child = Command::new("sieve-connect")
        .args(["--server", "127.0.0.1", "--port", &port.to_string(), "--user", user, "--passwordfd", "0"])
        .args(["--notlsverify", "--noclearauth", "--nosrv"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run sieve-connect (apt-get install sieve-connect): {err}"));
    child.stdin.take().unwrap().write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let shown = format!(
        "sieve-connect {args:?} exited {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{shown}\n{}", stack.diagnostics());
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn sieve_connect_uploads_and_activates_a_script_that_files_the_next_delivery() {
    let Some((stack, port)) = stack_with_managesieve() else { return };
    let started = Instant::now();
    domain_with_mailboxes(&stack, "managesieve.test", &["carol"]);
    let user = "carol@managesieve.test";
    let script = file_into("[receipt]", "Receipts");
    let local = stack.root().join("receipts.sieve");
    std::fs::write(&local, &script).unwrap();
    let local = local.to_string_lossy().into_owned();

    sieve_connect(&stack, port, user, &["--upload", "--localsieve", &local, "--remotesieve", "receipts"]);
    sieve_connect(&stack, port, user, &["--activate", "--remotesieve", "receipts"]);
    let listed = sieve_connect(&stack, port, user, &["--list"]);
    assert!(listed.contains("receipts"), "sieve-connect --list: {listed}");
    // What the client uploaded is the store's document, served to Pigeonhole through the dict.
    wait_for_active_sieve(&stack, user, &script);

    let filed = subject("[receipt] coffee");
    stack.deliver("shop@outside.example", user, &filed);
    stack.expect_message(user, PASSWORD, "Receipts", &filed, DELIVERY);
    assert_eq!(stack.count_messages(user, PASSWORD, "INBOX", &filed), 0, "filed mail is not in INBOX too");

    let downloaded = stack.root().join("downloaded.sieve");
    let downloaded_arg = downloaded.to_string_lossy().into_owned();
    sieve_connect(&stack, port, user, &["--download", "--remotesieve", "receipts", "--localsieve", &downloaded_arg]);
    assert_eq!(std::fs::read_to_string(&downloaded).unwrap(), script);
    eprintln!("managesieve e2e (sieve-connect): {:?} after the stack started", started.elapsed());
    stack.stop().unwrap();
}

/// A ManageSieve client over the harness's line stream.
struct Client {
    stream: LineStream,
}

impl Client {
    /// The lines of one response up to and including its OK, NO or BYE line; literals inlined as `<text>`.
    fn response(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = self.stream.read_line().unwrap();
            while let Some(open) = line.rfind('{')
                && let Some(len) = line.strip_suffix('}').and_then(|head| head[open + 1..].parse::<usize>().ok())
            {
                let octets = self.stream.read_bytes(len).unwrap();
                line.truncate(open);
                line.push_str(&format!("<{}>", String::from_utf8_lossy(&octets)));
                line.push_str(&self.stream.read_line().unwrap());
            }
            let done =
                ["OK", "NO", "BYE"].iter().any(|status| line == *status || line.starts_with(&format!("{status} ")));
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    fn command(&mut self, command: &str) -> Vec<String> {
        self.stream.send(format!("{command}\r\n").as_bytes()).unwrap();
        self.response()
    }

    fn status(&mut self, command: &str) -> String {
        self.command(command).pop().unwrap()
    }
}

/// The answer to `AUTHENTICATE` on a new connection after STARTTLS.
fn login_over_tls(stack: &MailStack, port: u16, user: &str, password: &str) -> String {
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let mut client = Client { stream: LineStream::plain(tcp) };
    client.response();
    assert_eq!(client.status("STARTTLS"), "OK \"Begin TLS negotiation now.\"");
    client.stream.start_tls(&stack.tls()).unwrap();
    client.response();
    client.status(&format!("AUTHENTICATE \"PLAIN\" \"{}\"", plain(user, password)))
}

fn plain(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

#[test]
fn refusals_on_the_wire_get_no_and_the_session_goes_on() {
    let Some((stack, port)) = stack_with_managesieve() else { return };
    let started = Instant::now();
    domain_with_mailboxes(&stack, "managesieve-wire.test", &["dave"]);
    let user = "dave@managesieve-wire.test";
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let mut client = Client { stream: LineStream::plain(tcp) };

    let greeting = client.response();
    assert!(greeting.contains(&"\"STARTTLS\"".to_owned()), "{greeting:?}");
    assert!(greeting.contains(&"\"SASL\" \"\"".to_owned()), "no password before TLS: {greeting:?}");
    assert_eq!(
        client.status(&format!("AUTHENTICATE \"PLAIN\" \"{}\"", plain(user, PASSWORD))),
        "NO (ENCRYPT-NEEDED) \"Use STARTTLS first.\""
    );
    assert_eq!(client.status("STARTTLS"), "OK \"Begin TLS negotiation now.\"");
    client.stream.start_tls(&stack.tls()).unwrap();
    let capabilities = client.response();
    assert!(capabilities.contains(&"\"SASL\" \"PLAIN\"".to_owned()), "{capabilities:?}");
    assert!(capabilities.iter().any(|line| line.starts_with("\"SIEVE\" \"fileinto")), "{capabilities:?}");

    assert_eq!(
        client.status(&format!("AUTHENTICATE \"PLAIN\" \"{}\"", plain(user, "wrong password"))),
        "NO \"Authentication failed.\""
    );
    assert_eq!(client.status(&format!("AUTHENTICATE \"PLAIN\" \"{}\"", plain(user, PASSWORD))), "OK \"Logged in.\"");

    assert_eq!(client.status("FROBNICATE"), "NO \"Unknown command.\"");
    assert_eq!(client.status("PUTSCRIPT \"x\""), "NO \"Syntax: PUTSCRIPT <name> <script>\"");
    assert_eq!(client.status("NOOP ((("), "NO \"syntax error: unexpected character\"");
    let oversized = "#".repeat(300_000);
    assert_eq!(
        client.status(&format!("PUTSCRIPT \"big\" {{{}+}}\r\n{oversized}", oversized.len())),
        "NO (QUOTA/MAXSIZE) \"literal of 300000 octets is larger than the limit of 262144\""
    );
    assert_eq!(client.status("NOOP \"still-here\""), "OK (TAG \"still-here\") \"Done.\"");

    // sievec's messages come back with the line they name.
    let refused = client.command("PUTSCRIPT \"broken\" \"require \\\"fileinto\\\"; fileinto;\"");
    let refused = refused.last().unwrap();
    assert!(refused.starts_with("NO ") && refused.contains("line 1"), "{refused}");
    assert_eq!(client.status("GETSCRIPT \"broken\""), "NO (NONEXISTENT) \"There is no script named \\\"broken\\\".\"");

    let script = file_into("[ticket]", "Tickets");
    assert_eq!(
        client.status(&format!("PUTSCRIPT \"tickets\" {{{}+}}\r\n{script}", script.len())),
        "OK \"Putscript completed.\""
    );
    assert_eq!(client.status("SETACTIVE \"tickets\""), "OK \"Setactive completed.\"");
    assert_eq!(client.command("LISTSCRIPTS"), ["\"tickets\" ACTIVE", "OK \"Listscripts completed.\""]);
    assert_eq!(
        client.status("DELETESCRIPT \"tickets\""),
        "NO (ACTIVE) \"The active script cannot be deleted; deactivate it first.\""
    );
    wait_for_active_sieve(&stack, user, &script);
    let filed = subject("[ticket] printer on fire");
    stack.deliver("helpdesk@outside.example", user, &filed);
    stack.expect_message(user, PASSWORD, "Tickets", &filed, DELIVERY);

    assert_eq!(client.status("LOGOUT"), "OK \"Logout completed.\"");

    // An inactive mailbox cannot log in, with the right password too.
    stack.cli_ok(&["mailbox", "update", user, "--inactive"]);
    let refused = support::poll(std::time::Duration::from_secs(5), || {
        let status = login_over_tls(&stack, port, user, PASSWORD);
        (status == "NO \"Authentication failed.\"").then_some(())
    });
    assert!(refused.is_some(), "an inactive mailbox still logs in\n{}", stack.diagnostics());
    eprintln!("managesieve e2e (wire): {:?} after the stack started", started.elapsed());
    stack.stop().unwrap();
}
