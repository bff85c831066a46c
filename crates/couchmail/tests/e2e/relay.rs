//! The classic open-relay and sender-spoofing tricks against ports 25, 587
//! and 465: each must be refused with a 5xx at MAIL or RCPT, and nothing may
//! be queued or logged as sent for a domain the stack does not serve.
//!
//! One test runs the whole battery on the shared stack, records what each
//! trick got (printed, so a run shows the table), and fails once at the end
//! naming every trick that got through. One thing is accepted on purpose:
//! the null sender `<>` from an authenticated user (read receipts need it).

use std::fmt::Write as _;

use couchmail_testkit::stack::{MailStack, Reply, SmtpClient, fresh_client_ip};

use super::support::{PASSWORD, domain_with_mailboxes, outside_sender, shared};

/// The domain the battery serves.
const SERVED: &str = "relaytrick.test";
/// The outside domain every trick tries to reach; no other test uses it, so
/// any trace of it in the queue or in Postfix's log comes from this battery.
const TARGET: &str = "relay-target.example";

/// Where a trick is tried.
#[derive(Clone, Copy, Debug)]
enum Port {
    /// Port 25, the MX, no AUTH.
    Mx,
    /// Port 587 after STARTTLS, not authenticated.
    Submission,
    /// Port 465 (implicit TLS), not authenticated.
    Submissions,
    /// Port 587 after STARTTLS and AUTH as alice.
    SubmissionAuthenticated,
    /// Port 465 after AUTH as alice.
    SubmissionsAuthenticated,
}

/// What one trick got: the reply to MAIL, and to RCPT when MAIL was accepted.
struct Outcome {
    port: Port,
    trick: String,
    mail: Reply,
    rcpt: Option<Reply>,
}

impl Outcome {
    /// Refused for good at MAIL or at RCPT.
    fn is_refused(&self) -> bool {
        self.mail.is_permanent() || self.rcpt.as_ref().is_some_and(Reply::is_permanent)
    }

    fn describe(&self) -> String {
        let rcpt = self.rcpt.as_ref().map_or_else(|| "(not asked)".to_owned(), ToString::to_string);
        format!("{:?} {}: MAIL {} | RCPT {}", self.port, self.trick, self.mail, rcpt)
    }
}

/// A session on `port`, after EHLO (and STARTTLS and AUTH where the port says so).
fn session(stack: &MailStack, port: Port) -> SmtpClient {
    let alice = format!("alice@{SERVED}");
    let mut client = match port {
        Port::Mx => stack.smtp(),
        Port::Submission | Port::SubmissionAuthenticated => {
            let mut client = stack.submission(fresh_client_ip());
            client.ehlo("client.e2e.test").unwrap();
            let starttls = client.starttls(&stack.tls()).unwrap();
            assert_eq!(starttls.code, 220, "STARTTLS on 587 answered {starttls}");
            client
        }
        Port::Submissions | Port::SubmissionsAuthenticated => stack.submissions(fresh_client_ip()),
    };
    let ehlo = client.ehlo("client.e2e.test").unwrap();
    assert_eq!(ehlo.code, 250, "{port:?}: EHLO answered {ehlo}");
    if matches!(port, Port::SubmissionAuthenticated | Port::SubmissionsAuthenticated) {
        let auth = client.auth_plain(&alice, PASSWORD).unwrap();
        assert_eq!(auth.code, 235, "{port:?}: AUTH as {alice} answered {auth}\n{}", stack.diagnostics());
    }
    client
}

/// Tries one envelope in a fresh session: a session per trick keeps smtpd's
/// error counter (and the delays it adds) from mixing the tricks up.
fn attempt(stack: &MailStack, port: Port, trick: &str, sender: &str, recipient: &str) -> Outcome {
    let mut client = session(stack, port);
    let mail = client.mail_from(sender).unwrap();
    let rcpt = mail.is_positive().then(|| client.rcpt_to(recipient).unwrap());
    client.quit();
    Outcome { port, trick: format!("{trick} (MAIL FROM:<{sender}> RCPT TO:<{recipient}>)"), mail, rcpt }
}

/// The recipient tricks that try to make a served domain forward elsewhere.
fn recipient_tricks() -> Vec<(&'static str, String)> {
    vec![
        ("plain relay", format!("user@{TARGET}")),
        ("percent hack", format!("user%{TARGET}@{SERVED}")),
        ("percent hack on a real mailbox", format!("alice%{TARGET}@{SERVED}")),
        ("bang path in a served domain", format!("{TARGET}!user@{SERVED}")),
        ("bare bang path", format!("{TARGET}!user")),
        ("quoted local part with @", format!("\"user@{TARGET}\"@{SERVED}")),
        ("source route", format!("@{SERVED}:user@{TARGET}")),
        ("IP literal of the server", "user@[127.0.0.1]".to_owned()),
        ("IP literal of root on the server", "root@[127.0.0.1]".to_owned()),
        ("IP literal of postmaster on the server", "postmaster@[127.0.0.1]".to_owned()),
        ("IP literal elsewhere", "user@[192.0.2.1]".to_owned()),
    ]
}

#[test]
fn open_relay_and_sender_spoofing_tricks_are_all_refused() {
    let Some(stack) = shared() else { return };
    domain_with_mailboxes(stack, SERVED, &["alice", "bob"]);
    let (alice, bob) = (format!("alice@{SERVED}"), format!("bob@{SERVED}"));
    let mut outcomes = Vec::new();

    // Unauthenticated: every recipient trick, on every port.
    for port in [Port::Mx, Port::Submission, Port::Submissions] {
        for (trick, recipient) in recipient_tricks() {
            let sender = match port {
                Port::Mx => outside_sender(),
                _ => alice.clone(),
            };
            outcomes.push(attempt(stack, port, trick, &sender, &recipient));
        }
    }
    // Unauthenticated submission even to a served mailbox, claiming to be a local user.
    for port in [Port::Submission, Port::Submissions] {
        outcomes.push(attempt(stack, port, "unauthenticated submission to a local mailbox", &alice, &bob));
    }

    // Authenticated as alice: the sender must be hers.
    for port in [Port::SubmissionAuthenticated, Port::SubmissionsAuthenticated] {
        outcomes.push(attempt(stack, port, "as another local user", &bob, &format!("user@{TARGET}")));
        outcomes.push(attempt(stack, port, "as another domain's address", &format!("ceo@{TARGET}"), &bob));
        outcomes.push(attempt(stack, port, "as a user%domain form of bob", &format!("bob%{TARGET}@{SERVED}"), &bob));
    }

    // The null sender: a bounce may always come in on port 25, but never relay; on the
    // submission ports it needs AUTH like any other sender.
    outcomes.push(attempt(stack, Port::Mx, "null sender relay", "", &format!("user@{TARGET}")));
    for port in [Port::Submission, Port::Submissions] {
        outcomes.push(attempt(stack, port, "unauthenticated null sender", "", &format!("user@{TARGET}")));
        outcomes.push(attempt(stack, port, "unauthenticated null sender to a local mailbox", "", &bob));
    }

    // An authenticated null sender is accepted, on purpose: RFC 8098 requires MAIL FROM:<>
    // for the read receipts (MDNs) mail clients submit, and Postfix's
    // reject_sender_login_mismatch leaves <> alone. It hides no one: the
    // login is in Postfix's log (sasl_username), and the From: header was never checked anyway.
    for port in [Port::SubmissionAuthenticated, Port::SubmissionsAuthenticated] {
        let null = attempt(stack, port, "authenticated null sender to a local mailbox", "", &bob);
        eprintln!("accepted on purpose: {}", null.describe());
        assert!(
            null.mail.is_positive() && null.rcpt.as_ref().is_some_and(Reply::is_positive),
            "an authenticated null sender (read receipts) must be accepted: {}\n{}",
            null.describe(),
            stack.diagnostics()
        );
    }

    let mut table = String::new();
    for outcome in &outcomes {
        let verdict = if outcome.is_refused() { "refused" } else { "ACCEPTED" };
        let _ = writeln!(table, "{verdict}: {}", outcome.describe());
    }
    eprintln!("relay battery:\n{table}");

    let accepted: Vec<String> =
        outcomes.iter().filter(|outcome| !outcome.is_refused()).map(Outcome::describe).collect();
    assert!(
        accepted.is_empty(),
        "tricks that were not refused with a 5xx at MAIL or RCPT:\n{}\n\nfull table:\n{table}\n{}",
        accepted.join("\n"),
        stack.diagnostics()
    );

    // Nothing reached the queue or the log as a delivery attempt to the outside.
    let queue = stack.postqueue();
    let queued: Vec<&str> = queue.lines().filter(|line| is_outside(line)).collect();
    assert!(queued.is_empty(), "postqueue -p lists outside recipients:\n{}\n\n{queue}", queued.join("\n"));
    let log = stack.postfix_log();
    // Refusals log as NOQUEUE with to=<…> too; a delivery attempt is the line with a status=.
    let sent: Vec<&str> =
        log.lines().filter(|line| line.contains(" to=<") && line.contains("status=") && is_outside(line)).collect();
    assert!(sent.is_empty(), "Postfix tried to deliver to outside recipients:\n{}", sent.join("\n"));
}

/// Whether a line names one of the outside destinations of the battery.
fn is_outside(line: &str) -> bool {
    line.contains(TARGET) || line.contains("[127.0.0.1]>") || line.contains("[192.0.2.1]")
}
