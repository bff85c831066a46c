//! The fault-injection suite of issue #6: nothing is lost when parts fail.
//!
//! One stack as the product runs it — `couchmail up` supervising Postfix, Dovecot, spamd and
//! spamass-milter ([`Daemons::Couchmail`](couchmail_testkit::stack::Daemons::Couchmail), not the
//! harness's own daemons; spam scanning on, with the SMTP-time milter), on a CouchDB-compatible store
//! (pouchdb-server) — receives 1 000 small messages, each with its own Message-ID, for four
//! mailboxes in two domains. A client thread sends them over port 25 as a real MTA would: one
//! session for many messages; on a 4xx reply or a broken connection it waits briefly and
//! sends the same message again on a new connection; a 5xx fails the test (nothing may
//! bounce); it waits for the end-of-data reply as long as RFC 5321 asks (minutes), so that
//! its own impatience never duplicates a message.
//!
//! While it sends, with sending in between, the test
//! 1. kills `couchmail up` with SIGKILL and starts it again as an admin (or systemd) would,
//!    with `couchmail up`: the new one must stop the Postfix, Dovecot, spamd and milter the
//!    dead one left running, and start its own;
//! 2. kills Dovecot's master with SIGKILL: the supervisor in `up` restarts it;
//! 3. kills spamd with SIGKILL: the supervisor restarts it;
//! 4. stops the store (pouchdb-server) for a while and starts it again.
//!
//! After recovery (the deferred queue flushed with `postqueue -f`, as Postfix would retry
//! after its backoff) every Message-ID is in the Maildir of its mailbox exactly once (any
//! folder: a message filed into Junk is not lost), no other message was delivered (no bounce
//! or notice), Postfix logged no `status=bounced` and its queue is empty.
//!
//! One exception is allowed, and named in the test's output: a second copy of a message whose
//! LMTP delivery Postfix logged as cut after its end of data. Dovecot's LMTP process, when its
//! master is killed during a delivery, saves the message and then answers `421 4.3.2 Shutting
//! down` instead of `250`, so Postfix must deliver it again; this is the duplicate SMTP itself
//! allows (RFC 1047), and it is not couchmail's to prevent short of deduplicating deliveries
//! (docs/runtime.md). Any other duplicate fails the test.
//!
//! Only processes of this stack are killed: couchmail by the pid of the process the harness
//! started, the daemons by their own pid files under the stack's directory, checked to run
//! below that couchmail.
//!
//! Greylisting does not apply to the loopback client (the harness's default policy configuration).
//! On a 2-core machine the whole test takes about 2 minutes (110 s alone, 170 s beside other
//! builds; the SMTP-time spam scan of each message sets the pace); every wait is bounded.
//! docs/runtime.md describes the suite.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use couchmail_testkit::pouchdb::PouchServer;
use couchmail_testkit::stack::{MailStack, SmtpClient, StackExtras, StackOptions, process};
use rustix::process::Signal;

use super::support::{binary, domain_with_mailboxes, poll, runnable};

/// How many messages the client sends.
const N_MESSAGES: usize = 1000;
/// The mailboxes they go to, in turn.
const MAILBOXES: [&str; 4] =
    ["alice@faults-one.test", "bob@faults-one.test", "carol@faults-two.test", "dave@faults-two.test"];
/// The envelope sender: outside every local domain, so that a bounce would show in Postfix's log.
const SENDER: &str = "sender@faults-outside.example";
/// How long a client waits before it sends a deferred message again.
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// How long the client waits for any reply (RFC 5321 §4.5.3.2 asks for minutes; a shorter wait after
/// the end of data could make it send again a message the server already took).
const REPLY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long sending all messages may take, faults included.
const SENDING_LIMIT: Duration = Duration::from_secs(300);
/// How long the deliveries may take once sending is done.
const DELIVERY_LIMIT: Duration = Duration::from_secs(120);
/// How long a supervised daemon may take to be back.
const RESTART_LIMIT: Duration = Duration::from_secs(60);
/// How many 4xx replies the client must see from the orphaned Postfix before couchmail is started again.
const DEFERRALS_WITHOUT_COUCHMAIL: usize = 5;
/// How long the store stays down.
const STORE_OUTAGE: Duration = Duration::from_secs(5);

/// What the client thread did, shared with the test.
#[derive(Default)]
struct Progress {
    /// Messages accepted (250 after the data).
    accepted: AtomicUsize,
    /// 4xx replies, each followed by a retry.
    deferrals: AtomicUsize,
    /// Connections that failed or broke, each followed by a retry.
    connection_errors: AtomicUsize,
    /// 5xx replies: each is a failure of the test.
    refusals: Mutex<Vec<String>>,
    /// The latest deferrals and connection errors, for failure messages.
    sample_deferrals: Mutex<Vec<String>>,
    /// Set by the test to stop the client early (a failed step).
    abandon: AtomicBool,
}

/// Tells the client to give up when dropped: at the end of sending, or while a failed step unwinds.
struct Abandon<'a>(&'a Progress);

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        self.0.abandon.store(true, Ordering::Relaxed);
    }
}

/// Message number `index`: small, plain, with its own Message-ID.
fn message(index: usize, recipient: &str) -> String {
    format!(
        "From: <{SENDER}>\r\nTo: <{recipient}>\r\nSubject: fault suite message {index}\r\n\
         Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: {}\r\n\r\n\
         Hello,\r\nthis is message {index} of the fault suite, sent while parts of the stack fail.\r\n",
        message_id(index)
    )
}

/// The Message-ID of message `index`.
fn message_id(index: usize) -> String {
    format!("<fault-{index}@faults.e2e.invalid>")
}

/// The recipient of message `index`.
fn recipient(index: usize) -> &'static str {
    MAILBOXES[index % MAILBOXES.len()]
}

/// Sends every message to `server`, retrying each until it is accepted or refused for good.
fn send_all(server: SocketAddr, progress: &Progress) {
    let deadline = Instant::now() + SENDING_LIMIT;
    let mut session: Option<SmtpClient> = None;
    let mut index = 0;
    while index < N_MESSAGES {
        if progress.abandon.load(Ordering::Relaxed) || Instant::now() >= deadline {
            return;
        }
        let mut client = match session.take() {
            Some(client) => client,
            None => match open_session(server) {
                Ok(client) => client,
                Err(why) => {
                    note_deferral(progress, &progress.connection_errors, index, why);
                    std::thread::sleep(RETRY_PAUSE);
                    continue;
                }
            },
        };
        let rcpt = recipient(index);
        match client.send(SENDER, &[rcpt], &message(index, rcpt)) {
            Ok(Ok(_)) => {
                progress.accepted.fetch_add(1, Ordering::Relaxed);
                index += 1;
                session = Some(client);
            }
            Ok(Err(refused)) if refused.reply.is_transient() => {
                note_deferral(progress, &progress.deferrals, index, refused.to_string());
                // A new connection for the retry, as an MTA's next attempt would be.
                client.quit();
                std::thread::sleep(RETRY_PAUSE);
            }
            Ok(Err(refused)) => {
                progress.refusals.lock().unwrap().push(format!("message {index} to {rcpt}: {refused}"));
                client.quit();
                index += 1;
            }
            Err(err) => {
                note_deferral(progress, &progress.connection_errors, index, err.to_string());
                std::thread::sleep(RETRY_PAUSE);
            }
        }
    }
    if let Some(client) = session {
        client.quit();
    }
}

/// A session greeted with 220 and EHLO answered with 250.
fn open_session(server: SocketAddr) -> Result<SmtpClient, String> {
    let mut client = SmtpClient::connect_within(server, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), None, REPLY_TIMEOUT)
        .map_err(|err| format!("connect: {err}"))?;
    if client.greeting().code != 220 {
        return Err(format!("greeting: {}", client.greeting()));
    }
    let ehlo = client.ehlo("mx.faults-outside.example").map_err(|err| format!("EHLO: {err}"))?;
    if ehlo.code != 250 {
        return Err(format!("EHLO: {ehlo}"));
    }
    Ok(client)
}

fn note_deferral(progress: &Progress, counter: &AtomicUsize, index: usize, why: String) {
    counter.fetch_add(1, Ordering::Relaxed);
    let mut samples = progress.sample_deferrals.lock().unwrap();
    // The latest ones tell most about a stall.
    if samples.len() >= 20 {
        samples.remove(0);
    }
    samples.push(format!("message {index}: {why}"));
}

/// Waits until the client has `count` messages accepted (or finished); false after `SENDING_LIMIT`.
fn wait_for_accepted(progress: &Progress, count: usize, sending: &std::thread::ScopedJoinHandle<'_, ()>) -> bool {
    poll(SENDING_LIMIT, || (progress.accepted.load(Ordering::Relaxed) >= count || sending.is_finished()).then_some(()))
        .is_some()
}

/// Every message file in the Maildirs below `root` (`cur` and `new` of every folder), with its
/// Message-ID (`None` when it has none).
fn delivered_messages(root: &Path) -> Vec<(PathBuf, Option<String>)> {
    let mut found = Vec::new();
    let mut directories = vec![root.to_owned()];
    while let Some(directory) = directories.pop() {
        let Ok(entries) = std::fs::read_dir(&directory) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                directories.push(path);
            } else if directory.file_name().is_some_and(|name| name == "cur" || name == "new") {
                let text = std::fs::read(&path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
                found.push((path, text.ok().as_deref().and_then(header_message_id)));
            }
        }
    }
    found
}

/// The Message-ID header of a message's header section.
fn header_message_id(message: &str) -> Option<String> {
    message.lines().take_while(|line| !line.trim_end().is_empty()).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("message-id").then(|| value.trim().to_owned())
    })
}

/// The mailbox address a Maildir file belongs to: `<mail root>/<domain>/<local>/Maildir/…`.
fn owner(mail_root: &Path, path: &Path) -> String {
    let mut parts = path.strip_prefix(mail_root).unwrap_or(path).components();
    let domain = parts.next().map(|part| part.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
    let local = parts.next().map(|part| part.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
    format!("{local}@{domain}")
}

/// The live process of `pid_file` below couchmail, waiting for one different from `previous`
/// (the supervisor restarts with a backoff, and a daemon writes its pid file as it starts).
fn wait_for_supervised(stack: &MailStack, pid_file: &Path, previous: Option<u32>) -> u32 {
    let found = poll(RESTART_LIMIT, || stack.supervised_pid(pid_file).filter(|pid| Some(*pid) != previous));
    let (pid, _) = found.unwrap_or_else(|| {
        panic!("no process of {} below couchmail (previous {previous:?})\n{}", pid_file.display(), stack.diagnostics())
    });
    pid
}

/// Kills `pid` with SIGKILL and waits until it is gone (reaped by its parent, or a zombie).
fn kill_and_wait(stack: &MailStack, pid: u32, what: &str) {
    let before = process::process_info(pid);
    process::signal_process(pid, Signal::KILL);
    let gone = poll(Duration::from_secs(10), || {
        let now = process::process_info(pid);
        let dead = now.is_none()
            || now != before
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')));
        dead.then_some(())
    });
    assert!(gone.is_some(), "{what} ({pid}) survived SIGKILL\n{}", stack.diagnostics());
}

/// Whether `pid` still runs the program it ran as `before`.
fn still_running(pid: u32, before: &Option<process::ProcessInfo>) -> bool {
    let Some(before) = before else { return false };
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
        .unwrap_or(true);
    process::process_info(pid).is_some_and(|now| now.command_line == before.command_line) && !zombie
}

#[test]
fn no_message_is_lost_bounced_or_duplicated_while_couchmail_dovecot_spamd_and_the_store_fail() {
    if !runnable() {
        return;
    }
    let Some(mut store) = PouchServer::start_on_disk_if_installed()
        .unwrap_or_else(|error| panic!("pouchdb-server did not start: {error}"))
    else {
        return;
    };
    let started = Instant::now();
    let extras = StackExtras { netns: None, config: "\n[spam]\nenabled = true\nsmtp_reject_score = 15\n".to_owned() };
    let store_url = format!("couchdb:{}/couchmail", store.url());
    let stack = MailStack::try_start_with_extras(binary(), StackOptions::default(), Some(&store_url), extras)
        .unwrap_or_else(|error| panic!("the stack did not start: {error}\n{}", store.log()));
    domain_with_mailboxes(&stack, "faults-one.test", &["alice", "bob"]);
    domain_with_mailboxes(&stack, "faults-two.test", &["carol", "dave"]);
    let ready = started.elapsed();

    let progress = Progress::default();
    let smtp = stack.address(stack.ports().smtp);
    std::thread::scope(|scope| {
        let sending = scope.spawn(|| send_all(smtp, &progress));
        // A failed step stops the client at once instead of letting it send on until its limit.
        let _abandon_on_failure = Abandon(&progress);
        let mut timeline = Vec::new();
        let mut mark = |what: &str| {
            timeline.push(format!(
                "{:6.1} s  {what} (accepted {})",
                started.elapsed().as_secs_f64(),
                progress.accepted.load(Ordering::Relaxed)
            ));
        };
        let step = |count: usize| {
            let reached = wait_for_accepted(&progress, count, &sending);
            if !reached || sending.is_finished() && progress.accepted.load(Ordering::Relaxed) < N_MESSAGES {
                panic!(
                    "the client stalled at {} accepted messages (waiting for {count}); samples: {:#?}\n{}",
                    progress.accepted.load(Ordering::Relaxed),
                    progress.sample_deferrals.lock().unwrap(),
                    stack.diagnostics()
                );
            }
        };

        // 1. couchmail dies; its daemons keep running, orphaned, until `couchmail up` runs again.
        step(N_MESSAGES / 10);
        let orphans: Vec<(u32, Option<process::ProcessInfo>)> =
            [stack.postfix_master_pid_file(), stack.dovecot_master_pid_file(), stack.spamd_pid_file()]
                .iter()
                .map(|pid_file| {
                    let pid = stack.supervised_pid(pid_file).unwrap_or_else(|| {
                        panic!("no process of {} below couchmail\n{}", pid_file.display(), stack.diagnostics())
                    });
                    (pid, process::process_info(pid))
                })
                .collect();
        let status = stack.kill_couchmail().unwrap_or_else(|error| panic!("{error}\n{}", stack.diagnostics()));
        assert_eq!(status, 128 + 9, "couchmail's exit status after SIGKILL\n{}", stack.diagnostics());
        mark("killed couchmail");
        // The orphaned Postfix answers 4xx while nobody answers its lookups; an admin takes a moment to notice.
        let deferrals = progress.deferrals.load(Ordering::Relaxed);
        let deferred = poll(Duration::from_secs(10), || {
            (progress.deferrals.load(Ordering::Relaxed) >= deferrals + DEFERRALS_WITHOUT_COUCHMAIL).then_some(())
        });
        assert!(
            deferred.is_some(),
            "without couchmail, Postfix did not defer {DEFERRALS_WITHOUT_COUCHMAIL} attempts; samples: {:#?}\n{}",
            progress.sample_deferrals.lock().unwrap(),
            stack.diagnostics()
        );
        stack.start_couchmail().unwrap_or_else(|error| panic!("couchmail up after SIGKILL: {error}"));
        mark("couchmail up again");
        for (pid, before) in &orphans {
            assert!(
                !still_running(*pid, before),
                "the new couchmail up left the old {before:?} running\n{}",
                stack.diagnostics()
            );
        }
        stack.postqueue_flush().unwrap();

        // 2. Dovecot's master dies; the supervisor starts it again.
        step(N_MESSAGES * 3 / 10);
        let dovecot = wait_for_supervised(&stack, &stack.dovecot_master_pid_file(), None);
        kill_and_wait(&stack, dovecot, "Dovecot's master");
        mark("killed Dovecot");
        wait_for_supervised(&stack, &stack.dovecot_master_pid_file(), Some(dovecot));
        stack.wait_until_ready(RESTART_LIMIT).unwrap_or_else(|error| panic!("after Dovecot's restart: {error}"));
        mark("Dovecot back");
        stack.postqueue_flush().unwrap();

        // 3. spamd dies; the supervisor starts it again.
        step(N_MESSAGES / 2);
        let spamd = wait_for_supervised(&stack, &stack.spamd_pid_file(), None);
        kill_and_wait(&stack, spamd, "spamd");
        mark("killed spamd");
        wait_for_supervised(&stack, &stack.spamd_pid_file(), Some(spamd));
        mark("spamd back");
        stack.postqueue_flush().unwrap();

        // 4. The store goes away for a while and comes back.
        step(N_MESSAGES * 7 / 10);
        store.stop().unwrap_or_else(|error| panic!("stopping the store: {error}"));
        mark("stopped the store");
        let accepted_at_stop = progress.accepted.load(Ordering::Relaxed);
        std::thread::sleep(STORE_OUTAGE);
        assert!(
            progress.accepted.load(Ordering::Relaxed) > accepted_at_stop,
            "no message was accepted while the store was down\n{}",
            stack.diagnostics()
        );
        store.start_again().unwrap_or_else(|error| panic!("starting the store again: {error}"));
        mark("store back");

        sending.join().unwrap();
        mark("client done");
        eprintln!("fault suite timeline:\n{}", timeline.join("\n"));
    });
    let refusals = progress.refusals.lock().unwrap().clone();
    assert!(refusals.is_empty(), "messages were refused for good: {refusals:#?}\n{}", stack.diagnostics());
    let accepted = progress.accepted.load(Ordering::Relaxed);
    assert_eq!(
        accepted,
        N_MESSAGES,
        "the client did not get every message accepted within {SENDING_LIMIT:?}; samples: {:#?}\n{}",
        progress.sample_deferrals.lock().unwrap(),
        stack.diagnostics()
    );
    let sent = started.elapsed();

    // Recovery: Postfix retries what it deferred (as after its backoff) until the queue is empty.
    let mail_root = stack.data_dir().join("mail");
    let mut last_flush = Instant::now();
    let delivered = poll(DELIVERY_LIMIT, || {
        if last_flush.elapsed() >= Duration::from_secs(5) {
            stack.postqueue_flush().unwrap();
            last_flush = Instant::now();
        }
        let n_delivered = delivered_messages(&mail_root).len();
        (n_delivered >= N_MESSAGES && stack.postqueue().contains("Mail queue is empty")).then_some(())
    });
    let messages = delivered_messages(&mail_root);
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut strangers = Vec::new();
    for (path, message_id) in &messages {
        match message_id {
            Some(message_id) if message_id.starts_with("<fault-") => {
                seen.entry(message_id.clone()).or_default().push(owner(&mail_root, path));
            }
            _ => strangers.push(format!("{} ({message_id:?})", path.display())),
        }
    }
    let lost: Vec<usize> = (0..N_MESSAGES).filter(|index| !seen.contains_key(&message_id(*index))).collect();
    let log = stack.postfix_log();
    // A delivery cut between Dovecot's save and its answer is one Postfix must repeat, and says
    // so (RFC 1047's window): those second copies are told apart from any other duplicate.
    let (cut_deliveries, duplicated): (Vec<_>, Vec<_>) = seen
        .iter()
        .filter(|(_, owners)| owners.len() > 1)
        .partition(|(message_id, owners)| owners.len() == 2 && delivery_was_cut(&log, message_id));
    let misplaced: Vec<String> = (0..N_MESSAGES)
        .filter_map(|index| {
            let owners = seen.get(&message_id(index))?;
            (owners.iter().any(|owner| owner != recipient(index))).then(|| format!("{index} in {owners:?}"))
        })
        .collect();
    let bounced: Vec<&str> = log.lines().filter(|line| line.contains("status=bounced")).collect();
    assert!(
        delivered.is_some() && lost.is_empty(),
        "{} messages lost (first: {:?}); queue: {}\n{}",
        lost.len(),
        &lost[..lost.len().min(20)],
        stack.postqueue(),
        stack.diagnostics()
    );
    assert!(duplicated.is_empty(), "duplicated: {duplicated:#?}");
    assert!(misplaced.is_empty(), "delivered to the wrong mailbox: {misplaced:#?}");
    assert!(strangers.is_empty(), "messages nobody sent (bounces, notices): {strangers:#?}");
    assert!(bounced.is_empty(), "Postfix bounced mail: {bounced:#?}");
    let queue = stack.postqueue();
    assert!(queue.contains("Mail queue is empty"), "Postfix's queue is not empty:\n{queue}");
    eprintln!(
        "fault suite: {N_MESSAGES} messages, each delivered once ({} twice after Dovecot cut the delivery after \
         saving: {:?}); stack ready after {:.1} s, all accepted after {:.1} s, all delivered after {:.1} s; the \
         client retried {} 4xx replies and {} connection errors; Postfix deferred {} deliveries",
        cut_deliveries.len(),
        cut_deliveries.iter().map(|(message_id, _)| message_id).collect::<Vec<_>>(),
        ready.as_secs_f64(),
        sent.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        progress.deferrals.load(Ordering::Relaxed),
        progress.connection_errors.load(Ordering::Relaxed),
        log.matches("status=deferred").count()
    );
    stack.stop().unwrap_or_else(|error| panic!("the harness's stop: {error}"));
}

/// Whether Postfix's log shows that an LMTP delivery of `message_id` ended after its end of
/// data without Dovecot's answer, or with Dovecot shutting down instead of answering: then
/// the message may have been saved, and Postfix delivers it again. Dovecot's LMTP process
/// does this when its master is killed during a delivery (it saves, then answers `421 4.3.2
/// Shutting down`); it is the one duplicate SMTP itself allows (RFC 1047, RFC 5321 §6.1).
fn delivery_was_cut(log: &str, message_id: &str) -> bool {
    let queue_ids: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(&format!("message-id={message_id}")))
        .filter_map(|line| line.split(": ").nth(1))
        .collect();
    log.lines().any(|line| {
        queue_ids.iter().any(|queue_id| line.contains(&format!("{queue_id}: to=<")))
            && line.contains("status=deferred")
            && (line.contains("(in reply to end of DATA command)") || line.contains("while sending end of data"))
    })
}

#[test]
fn only_a_delivery_cut_after_its_end_of_data_explains_a_second_copy() {
    let log = "\
        Nov 25 08:14:51 mail postfix/cleanup[2516]: E672: message-id=<fault-299@faults.e2e.invalid>\n\
        Nov 25 08:14:52 mail postfix/lmtp[1568]: E672: to=<dave@faults-two.test>, relay=x, dsn=4.3.2, \
        status=deferred (host x said: 421 4.3.2 mail.e2e.test Shutting down (in reply to end of DATA command))\n\
        Nov 25 08:14:51 mail postfix/cleanup[2516]: F00D: message-id=<fault-300@faults.e2e.invalid>\n\
        Nov 25 08:14:52 mail postfix/lmtp[1568]: F00D: to=<alice@faults-one.test>, relay=x, dsn=4.4.2, \
        status=deferred (lost connection with x while sending end of data -- message may be sent more than once)\n\
        Nov 25 08:14:51 mail postfix/cleanup[2516]: BEEF: message-id=<fault-301@faults.e2e.invalid>\n\
        Nov 25 08:14:52 mail postfix/lmtp[1568]: BEEF: to=<bob@faults-one.test>, relay=x, dsn=4.4.1, \
        status=deferred (connect to x: Connection refused)\n";
    assert!(delivery_was_cut(log, "<fault-299@faults.e2e.invalid>"));
    assert!(delivery_was_cut(log, "<fault-300@faults.e2e.invalid>"));
    assert!(!delivery_was_cut(log, "<fault-301@faults.e2e.invalid>"), "refused before any data");
    assert!(!delivery_was_cut(log, "<fault-302@faults.e2e.invalid>"), "never deferred");
}

#[test]
fn message_ids_are_read_from_the_header_section_only() {
    let message = message(7, "alice@faults-one.test");
    assert_eq!(header_message_id(&message).as_deref(), Some("<fault-7@faults.e2e.invalid>"));
    assert_eq!(header_message_id("Subject: x\r\n\r\nMessage-ID: <body@x>\r\n"), None);
    assert_eq!(header_message_id("message-id:  <a@b> \r\n\r\n").as_deref(), Some("<a@b>"));
    let root = Path::new("/srv/mail");
    assert_eq!(owner(root, &root.join("faults-two.test/dave/Maildir/.Junk/cur/1.x")), "dave@faults-two.test");
}
