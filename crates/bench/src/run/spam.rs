//! SpamAssassin's scan latency per message and spamd's memory (issue #5's "Measure").
//!
//! spamd runs as `couchmail up` runs it: the rendered `local.cf` of a stack with spam on (`couchmail_render::render`
//! with `Spam::new`'s defaults: no network tests, two children), copies of the system's `*.pre` files beside it
//! (`couchmail_spam::copy_pre_files`), and the command line of `couchmail_spam::daemons` (H7's `spamd_daemon`:
//! per-user virtual config directories, children as vmail, a unix socket).
//! Each kind of message is scanned over SPAMC with couchmail's own client (`couchmail_spam::SpamdClient`, what the
//! delivery path's spamc speaks), a few times untimed, then timed one scan at a time.
//! spamd is stopped with SIGTERM by its pid, which also ends its children.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use couchmail_render::{Spam, Stack, VmailIds};
use couchmail_spam::SpamdClient;
use couchmail_supervisor::system::user_ids;

use super::process::{self, ChildGuard};
use crate::socketmap_client::percentile_us;

/// The recipient every message is scanned for: spamd gives it a directory of its own, as for any user.
const SCAN_USER: &str = "alice@example.com";
/// How long spamd may take to load its rules and answer a `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One kind of message and how its scans went.
#[derive(Debug, Clone)]
pub struct ScanRun {
    pub kind: &'static str,
    pub bytes: usize,
    pub scans: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub score: f64,
    pub is_spam: bool,
}

/// Memory of spamd's parent and children after the scans, summed from /proc/PID/smaps_rollup.
#[derive(Debug, Clone, Default)]
pub struct SpamdMemory {
    pub n_processes: usize,
    pub parent_rss_kib: u64,
    pub parent_pss_kib: u64,
    pub total_rss_kib: u64,
    pub total_pss_kib: u64,
}

#[derive(Debug, Clone)]
pub struct SpamResults {
    pub command: String,
    pub spamd_version: String,
    pub max_children: u32,
    pub ready_s: f64,
    pub runs: Vec<ScanRun>,
    pub memory: SpamdMemory,
}

/// The messages scanned: a short ham, a longer ham with an attachment, and GTUBE.
pub fn messages() -> Vec<(&'static str, String)> {
    vec![
        ("small ham", small_ham()),
        ("ham with a 100 KiB attachment", ham_with_attachment(100 * 1024)),
        ("GTUBE (spam)", gtube()),
    ]
}

pub fn run(scratch: &std::path::Path, scans_per_kind: usize) -> Result<SpamResults> {
    let vmail = user_ids("vmail").context("look up vmail")?.context("the vmail account is missing")?;
    let root = scratch.join("spam");
    let mut stack = Stack::dev(root.join("data"));
    stack.vmail = VmailIds { uid: vmail.uid, gid: vmail.gid };
    // The rendered Dovecot files need a secret for the auth endpoint; nothing here asks it.
    stack.auth_endpoint.secret = super::random_hex();
    let spam = Spam::new(&stack.paths);
    stack.spam = Some(spam.clone());
    couchmail_render::render(&stack)
        .context("render a stack with spam on")?
        .write_to(&stack.paths.config_dir)
        .context("write the rendered stack")?;
    // What `couchmail_spam::prepare` makes for spamd (the Sieve scripts it also compiles are Dovecot's).
    std::fs::create_dir_all(&stack.paths.log_dir).context("make the log directory")?;
    std::fs::create_dir_all(&spam.user_dir_root).context("make spamd's per-user root")?;
    std::os::unix::fs::chown(&spam.user_dir_root, Some(vmail.uid), Some(vmail.gid))
        .context("give spamd's per-user root to vmail")?;
    let socket_dir = spam.spamd_socket.parent().context("spamd's socket has no directory")?;
    std::fs::create_dir_all(socket_dir).context("make spamd's socket directory")?;
    couchmail_spam::copy_pre_files(
        std::path::Path::new(couchmail_spam::SYSTEM_SITE_CONFIG_DIR),
        &stack.paths.spamassassin_site_dir(),
    )
    .context("copy SpamAssassin's *.pre files")?;

    let specs = couchmail_spam::daemons(&stack);
    let spec = specs.iter().find(|spec| spec.name == "spamd").context("the stack runs no spamd")?;
    let log_file = spec.log_file.clone().unwrap_or_else(|| stack.paths.log_dir.join("spamd.log"));
    let log = std::fs::File::create(&log_file).context("create spamd's log")?;
    let mut command = Command::new(&spec.program);
    command.args(&spec.args).stdin(Stdio::null()).stdout(log.try_clone().context("spamd's log")?).stderr(log);
    let shown = process::shown(&command);
    eprintln!("bench: {shown}");
    let started = Instant::now();
    let spamd =
        SpamdGuard(Some(ChildGuard::new(command.spawn().with_context(|| format!("cannot start `{shown}`"))?, "spamd")));
    let spamd_version = process::stdout_of(Command::new(&spec.program).arg("--version"))
        .map(|text| text.lines().next().unwrap_or_default().to_owned())
        .unwrap_or_default();

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("start tokio")?;
    let client = SpamdClient::new(&spam.spamd_socket).with_timeout(Duration::from_secs(30));
    let ready_s = runtime.block_on(async {
        loop {
            match client.ping().await {
                Ok(()) => return Ok(started.elapsed().as_secs_f64()),
                Err(error) if started.elapsed() > READY_TIMEOUT => {
                    let log = std::fs::read_to_string(&log_file).unwrap_or_default();
                    bail!("spamd did not answer within {READY_TIMEOUT:?}: {error}\n{log}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })?;

    let mut runs = Vec::new();
    for (kind, message) in messages() {
        let message = message.into_bytes();
        let (latencies, verdict) = runtime.block_on(async {
            // A child compiles some rules on its first scans: warm both children up before timing.
            let mut verdict = None;
            for _ in 0..4 {
                verdict = Some(client.check(SCAN_USER, &message).await.with_context(|| format!("scan {kind}"))?);
            }
            let mut latencies = Vec::with_capacity(scans_per_kind);
            for _ in 0..scans_per_kind {
                let asked = Instant::now();
                verdict = Some(client.check(SCAN_USER, &message).await.with_context(|| format!("scan {kind}"))?);
                latencies.push(asked.elapsed());
            }
            anyhow::Ok((latencies, verdict.context("no scan")?))
        })?;
        let mut latencies = latencies;
        latencies.sort_unstable();
        runs.push(ScanRun {
            kind,
            bytes: message.len(),
            scans: latencies.len(),
            p50_ms: percentile_us(&latencies, 0.50) / 1000.0,
            p99_ms: percentile_us(&latencies, 0.99) / 1000.0,
            max_ms: percentile_us(&latencies, 1.0) / 1000.0,
            score: verdict.score,
            is_spam: verdict.is_spam,
        });
    }
    for scan_run in &runs {
        let expect_spam = scan_run.kind.starts_with("GTUBE");
        ensure!(
            scan_run.is_spam == expect_spam,
            "spamd scored the {} {} (spam: {}), expected spam: {expect_spam}",
            scan_run.kind,
            scan_run.score,
            scan_run.is_spam
        );
    }

    let spamd_pid = spamd.pid();
    let memory = spamd_memory(spamd_pid);
    spamd.stop()?;
    Ok(SpamResults { command: shown, spamd_version, max_children: spam.max_children, ready_s, runs, memory })
}

/// Sums the memory of spamd's parent and its children.
fn spamd_memory(parent_pid: u32) -> SpamdMemory {
    let (parent_rss_kib, parent_pss_kib) = rollup_kib(parent_pid).unwrap_or_default();
    let mut memory = SpamdMemory {
        n_processes: 1,
        parent_rss_kib,
        parent_pss_kib,
        total_rss_kib: parent_rss_kib,
        total_pss_kib: parent_pss_kib,
    };
    for child_pid in process::children_of(parent_pid) {
        if let Some((rss, pss)) = rollup_kib(child_pid) {
            memory.n_processes += 1;
            memory.total_rss_kib += rss;
            memory.total_pss_kib += pss;
        }
    }
    memory
}

/// A process's RSS and PSS in KiB, from /proc/PID/smaps_rollup.
fn rollup_kib(pid: u32) -> Option<(u64, u64)> {
    parse_rollup(&std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?)
}

/// The `Rss:` and `Pss:` lines of a smaps_rollup text, in KiB.
pub fn parse_rollup(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((field("Rss:")?, field("Pss:")?))
}

/// spamd, stopped with SIGTERM by its pid so that it ends its children too; SIGKILL (by [`ChildGuard`]) only if
/// that does not work.
struct SpamdGuard(Option<ChildGuard>);

impl SpamdGuard {
    fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, ChildGuard::pid)
    }

    fn stop(mut self) -> Result<()> {
        let Some(mut guard) = self.0.take() else { return Ok(()) };
        terminate(&mut guard);
        match guard.child.try_wait().context("wait for spamd")? {
            Some(_) => Ok(()),
            None => bail!("spamd did not stop within 10 s of SIGTERM"),
        }
    }
}

impl Drop for SpamdGuard {
    fn drop(&mut self) {
        if let Some(mut guard) = self.0.take() {
            terminate(&mut guard);
        }
    }
}

/// Sends SIGTERM to our own spamd by its pid and waits up to 10 s for it to end.
fn terminate(guard: &mut ChildGuard) {
    if let Ok(None) = guard.child.try_wait() {
        let _ = Command::new("kill").args(["-TERM", &guard.pid().to_string()]).status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = guard.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn headers(subject: &str, content_type: &str) -> String {
    format!(
        "Return-Path: <carol@example.org>\r\n\
         Received: from mail.example.org (mail.example.org [192.0.2.10])\r\n\
         \tby mx.example.com (Postfix) with ESMTPS id 4Xk2b31qzJz9sWn\r\n\
         \tfor <alice@example.com>; Tue, 24 Nov 2026 09:12:44 +0000 (UTC)\r\n\
         From: Carol Example <carol@example.org>\r\n\
         To: Alice Example <alice@example.com>\r\n\
         Subject: {subject}\r\n\
         Date: Tue, 24 Nov 2026 09:12:40 +0000\r\n\
         Message-ID: <20261124091240.4711@mail.example.org>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: {content_type}\r\n"
    )
}

const HAM_BODY: &str = "Hi Alice,\r\n\r\nare we still on for lunch on Thursday? I can book the usual place for half \
past twelve.\r\nBring the draft of the report if you have it; I would like to go through the second chapter.\r\n\r\n\
Cheers,\r\nCarol\r\n";

/// A short personal message, plain text.
pub(super) fn small_ham() -> String {
    format!("{}\r\n{HAM_BODY}", headers("Lunch on Thursday", "text/plain; charset=utf-8"))
}

/// The short message as the text part of a multipart message with a binary attachment of `n_bytes` (base64, in
/// lines of 76 characters), bytes from a fixed pseudo-random sequence so that every run scans the same message.
pub fn ham_with_attachment(n_bytes: usize) -> String {
    use base64::Engine as _;
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let attachment: Vec<u8> = (0..n_bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(attachment);
    let boundary = "=-=couchmail-bench-boundary=-=";
    let mut message = headers("Draft of the report", &format!("multipart/mixed; boundary=\"{boundary}\"")) + "\r\n";
    message.push_str(&format!("--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{HAM_BODY}\r\n"));
    message.push_str(&format!(
        "--{boundary}\r\nContent-Type: application/pdf; name=\"report-draft.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"report-draft.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    ));
    for line in encoded.as_bytes().chunks(76) {
        message.push_str(&String::from_utf8_lossy(line));
        message.push_str("\r\n");
    }
    message.push_str(&format!("--{boundary}--\r\n"));
    message
}

/// SpamAssassin's test message, which any SpamAssassin scores 1000.
fn gtube() -> String {
    format!(
        "{}\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n",
        headers("Test", "text/plain; charset=us-ascii")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollups_give_rss_and_pss() {
        let text = "55d0c6a2e000-7ffd1c5f4000 ---p 00000000 00:00 0                          [rollup]\n\
                    Rss:               51200 kB\nPss:               20480 kB\nPss_Anon:          10240 kB\n";
        assert_eq!(parse_rollup(text), Some((51200, 20480)));
        assert_eq!(parse_rollup("Rss: 1 kB\n"), None);
    }

    #[test]
    fn the_attachment_is_base64_of_the_size_asked() {
        let message = ham_with_attachment(3000);
        let body: String = message
            .split("Content-Transfer-Encoding: base64\r\n\r\n")
            .nth(1)
            .unwrap()
            .split("\r\n--")
            .next()
            .unwrap()
            .replace("\r\n", "");
        use base64::Engine as _;
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(body).unwrap().len(), 3000);
        assert!(message.lines().all(|line| line.len() <= 998));
        assert_eq!(ham_with_attachment(3000), message, "the same bytes every run");
    }

    #[test]
    fn every_message_has_headers_and_a_body() {
        for (kind, message) in messages() {
            assert!(message.contains("\r\n\r\n"), "{kind}");
            assert!(message.starts_with("Return-Path:"), "{kind}");
        }
        assert!(gtube().contains("GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL"));
    }
}
