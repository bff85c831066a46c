//! What every end-to-end test needs: the shared stack, accounts with a
//! known password, unique subjects, and bounded polling that measures.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use couchmail_testkit::stack::imap::Status;
use couchmail_testkit::stack::{self, MailStack, Reply, StackOptions};

/// The password of every mailbox the tests make.
pub const PASSWORD: &str = "correct horse battery staple";
/// How long a delivery may take from SMTP to IMAP.
pub const DELIVERY: Duration = Duration::from_secs(15);
/// How fast a change in couchmail must reach Postfix and Dovecot (issue #3).
pub const LIVE: Duration = Duration::from_secs(1);

/// The couchmail binary under test.
pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_couchmail"))
}

/// Whether the machine can run the stack. Without root or the daemons a
/// test prints why and returns, except on CI, where that is a failure.
pub fn runnable() -> bool {
    match stack::preflight() {
        Ok(()) => true,
        Err(err) if std::env::var_os("CI").is_some() => panic!("CI must run the end-to-end tests: {err}"),
        Err(err) => {
            eprintln!("note: skipping an end-to-end test: {err}");
            false
        }
    }
}

/// The stack shared by this test binary; `None` when the machine cannot run it.
pub fn shared() -> Option<&'static MailStack> {
    runnable().then(|| stack::shared(binary()))
}

/// A stack of the test's own, for tests that stop couchmail.
pub fn own(options: StackOptions) -> Option<MailStack> {
    runnable().then(|| MailStack::start_with(binary(), options))
}

/// Adds `domain` and a mailbox with [`PASSWORD`] for each local part, and
/// waits until Postfix sees them all.
pub fn domain_with_mailboxes(stack: &MailStack, domain: &str, locals: &[&str]) {
    stack.cli_ok(&["domain", "add", domain]);
    for local in locals {
        stack.add_mailbox(&format!("{local}@{domain}"), PASSWORD);
    }
    match locals.last() {
        Some(last) => wait_for_rcpt(stack, &format!("{last}@{domain}"), 250),
        None => wait_for_rcpt(stack, &format!("nobody-yet@{domain}"), 550),
    }
}

/// Waits (at most 5 s) until `RCPT TO:<recipient>` answers `code`: a test
/// that sets something up lets it become live before relying on it (the
/// tests of live changes measure that time; the others only wait for it).
pub fn wait_for_rcpt(stack: &MailStack, recipient: &str, code: u16) {
    let mut last = None;
    let outcome = poll(Duration::from_secs(5), || {
        let reply = rcpt_reply(stack, recipient);
        let done = reply.code == code;
        last = Some(reply);
        done.then_some(())
    });
    assert!(
        outcome.is_some(),
        "RCPT TO:<{recipient}> never answered {code}; last: {}\n{}",
        last.map(|reply| reply.to_string()).unwrap_or_default(),
        stack.diagnostics()
    );
}

/// A subject no other test (or run) uses.
pub fn subject(label: &str) -> String {
    static SERIAL: AtomicU32 = AtomicU32::new(0);
    format!("{label} {}-{}", std::process::id(), SERIAL.fetch_add(1, Ordering::Relaxed))
}

/// A sender address outside every domain of the tests, new each call:
/// smtpd caches address resolution per (sender, recipient) across
/// sessions, so a probe that must see a change asks with a new sender.
pub fn outside_sender() -> String {
    static SERIAL: AtomicU32 = AtomicU32::new(0);
    format!("probe{}-{}@outside.example", std::process::id(), SERIAL.fetch_add(1, Ordering::Relaxed))
}

/// The reply to `RCPT TO:<recipient>` on port 25 in a fresh session
/// (the reply to MAIL if that already failed).
pub fn rcpt_reply(stack: &MailStack, recipient: &str) -> Reply {
    let mut client = stack.smtp();
    let ehlo = client.ehlo("client.e2e.test").unwrap();
    assert_eq!(ehlo.code, 250, "EHLO answered {ehlo}");
    let mail = client.mail_from(&outside_sender()).unwrap();
    if !mail.is_positive() {
        return mail;
    }
    let reply = client.rcpt_to(recipient).unwrap();
    client.quit();
    reply
}

/// Polls `probe` every 20 ms until it returns `Some`, or `timeout`;
/// returns the value and how long it took from the call.
pub fn poll<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<(T, Duration)> {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return Some((value, started.elapsed()));
        }
        if started.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls until `recipient` gets an RCPT reply with `code` and asserts it
/// came within [`LIVE`] of `since` (when the change was written); `what`
/// names the change for the message.
pub fn expect_rcpt_within_live(stack: &MailStack, what: &str, since: Instant, recipient: &str, code: u16) {
    let mut last = None;
    // Poll a little past the limit, so that a slow change is measured, not just missed.
    let outcome = poll((LIVE * 3).saturating_sub(since.elapsed()), || {
        let reply = rcpt_reply(stack, recipient);
        let done = reply.code == code;
        last = Some(reply);
        done.then_some(())
    });
    match outcome {
        Some(((), _)) => assert!(
            since.elapsed() < LIVE,
            "{what}: RCPT TO:<{recipient}> answered {code} only after {:?} (limit {LIVE:?})\n{}",
            since.elapsed(),
            stack.diagnostics()
        ),
        None => panic!(
            "{what}: RCPT TO:<{recipient}> never answered {code} within {:?}; last: {}\n{}",
            LIVE * 3,
            last.map(|reply| reply.to_string()).unwrap_or_default(),
            stack.diagnostics()
        ),
    }
}

/// Polls IMAP logins until one's outcome is `accepted` (each from a fresh
/// client address) and asserts it came within [`LIVE`] of `since`. A
/// refusal must be a clean `NO`: a connection Dovecot drops after an
/// internal failure (a stale cached password, then an unknown user) is not one.
pub fn expect_login_within_live(
    stack: &MailStack,
    what: &str,
    since: Instant,
    (user, password): (&str, &str),
    accepted: bool,
) {
    let mut last = None;
    let outcome = poll((LIVE * 3).saturating_sub(since.elapsed()), || {
        let source: IpAddr = stack::fresh_client_ip();
        let response = stack.imap_login(user, password, source);
        let done = if accepted { response.is_ok() } else { response.status == Status::No };
        last = Some(response);
        done.then_some(())
    });
    let expected = if accepted { "accepted" } else { "refused" };
    match outcome {
        Some(((), _)) => assert!(
            since.elapsed() < LIVE,
            "{what}: IMAP LOGIN {user} was {expected} only after {:?} (limit {LIVE:?})\n{}",
            since.elapsed(),
            stack.diagnostics()
        ),
        None => panic!(
            "{what}: IMAP LOGIN {user} was never {expected} within {:?}; last: {}\n{}",
            LIVE * 3,
            last.map(|response| response.to_string()).unwrap_or_default(),
            stack.diagnostics()
        ),
    }
}

/// Waits (at most 5 s) until the Sieve dict hands out `script` as `user`'s
/// active script, asking exactly as Pigeonhole does at delivery (name →
/// content id → script). The CLI writes the store from another process, so
/// its change reaches the running index a moment later; a test that then
/// delivers mail waits for that moment instead of racing it.
pub fn wait_for_active_sieve(stack: &MailStack, user: &str, script: &str) {
    let served = active_sieve_served(stack, user, |data| data == script);
    assert!(served.is_some(), "the Sieve dict never served the new script of {user}\n{}", stack.diagnostics());
}

/// The active script of `user` as the Sieve dict hands it out (name → content id → script, as
/// Pigeonhole asks at delivery) once `wanted` accepts it, within 5 s; `None` if it never does.
pub fn active_sieve_served(stack: &MailStack, user: &str, wanted: impl Fn(&str) -> bool) -> Option<String> {
    use couchmail_dovecot_dict::{Client, Hello};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let hello =
        Hello { major: 3, minor: 2, value_type: 0, obsolete_user: String::new(), dict_name: "sieve".to_owned() };
    let served = poll(Duration::from_secs(5), || {
        runtime.block_on(async {
            let mut client = Client::connect(stack.dict_socket(), &hello).await.ok()?;
            let id = client.lookup(user, "priv/sieve/name/active").await.ok()??;
            let data = client.lookup(user, &format!("priv/sieve/data/{id}")).await.ok()??;
            wanted(&data).then_some(data)
        })
    });
    served.map(|(script, _)| script)
}
