//! End-to-end delivery (issue #6): Postfix's own `smtp-source` into port 25, through Postfix and Dovecot's LMTP,
//! into Maildirs, for three setups in one run, with the memory and CPU time of every process of each stack.
//!
//! - **Full stack**: `couchmail up` with SpamAssassin on (spamass-milter at SMTP time, a per-recipient scan at
//!   delivery), greylisting on with the source address allowlisted (the harness's loopback clients are trusted).
//! - **No spam scan**: the same without SpamAssassin.
//! - **Static maps**: the same Postfix and Dovecot configuration, rendered by couchmail for the previous setup,
//!   with couchmail taken out: LMDB maps made with `postmap` for domains, mailboxes, aliases and sender logins, no
//!   policy service, Dovecot's passdb and userdb from a passwd-file, Sieve scripts from files; couchmail itself is
//!   stopped before the mail flows. This is the classic setup couchmail replaces, so (no spam scan) against (static
//!   maps) is what couchmail's brain costs.
//!
//! Each stack is started by couchmail-testkit's `MailStack` (the end-to-end tests' harness: a directory of its own
//! under /var/tmp, free ports on 127.0.0.1), so Maildirs are on disk as in production, not in memory.
//! Per setup: the idle stack's memory, then an untimed warm-up (a few messages per mailbox: processes start,
//! spamd's children compile their rules), then the timed run: one `smtp-source` per mailbox, each with a few
//! parallel sessions, one message per connection as servers of other domains send, while a thread samples the
//! stack's processes; it ends when every message is a file in a Maildir.
//! The latency of each message is Postfix's own `delay=` on its LMTP delivery line: from the moment smtpd opened
//! its queue file (during the SMTP transaction, before the milter scan) to Dovecot's `250` for it.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use couchmail_supervisor::system::user_ids;
use couchmail_testkit::stack::{Daemons, MailStack, StackExtras, StackOptions};

use super::memory::{self, Peaks, Sampler, Snapshot, StackRoots};
use super::process::{self, ChildGuard};

/// Postfix's load generator, from Debian's postfix package.
pub const SMTP_SOURCE: &str = "/usr/sbin/smtp-source";
/// The domain every benchmark mailbox is in.
const DOMAIN: &str = "bench.test";
/// The envelope sender and HELO name of the load generator.
const SENDER: &str = "carol@source.test";
const HELO: &str = "mail.source.test";
/// Messages per mailbox sent before the timed run.
const WARM_UP_PER_MAILBOX: usize = 5;
/// How often the sampler reads the stack's processes.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(200);
/// The longest a run may take to put every message on disk, so that a broken stack cannot hold the benchmark.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(600);
/// The digits Postfix logs after the decimal point of a delay (its default is 2: hundredths of a second).
const DELAY_DIGITS: u32 = 4;

/// The three setups, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    FullStack,
    NoSpam,
    StaticMaps,
}

impl Setup {
    pub const ALL: [Setup; 3] = [Setup::FullStack, Setup::NoSpam, Setup::StaticMaps];

    pub fn letter(self) -> &'static str {
        match self {
            Setup::FullStack => "a",
            Setup::NoSpam => "b",
            Setup::StaticMaps => "c",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Setup::FullStack => "couchmail, spam scan on",
            Setup::NoSpam => "couchmail, no spam scan",
            Setup::StaticMaps => "static LMDB maps + passwd-file, no couchmail",
        }
    }
}

/// What a run needs.
pub struct DeliveryConfig<'a> {
    /// couchmail's binary (release build).
    pub couchmail: &'a Path,
    /// Where the message file and the load generator's logs go.
    pub scratch: &'a Path,
    /// The `{ARGON2ID}…` hash the static setup's passwd-file gives every mailbox.
    pub hash: &'a str,
    /// Messages in the timed run of the setups without the spam scan.
    pub messages: usize,
    /// Messages in the timed run of the setup with the spam scan (two SpamAssassin scans per message).
    pub spam_messages: usize,
    /// Mailboxes the messages are spread over, one `smtp-source` each.
    pub mailboxes: usize,
    /// Parallel SMTP sessions of each `smtp-source`.
    pub sessions_per_mailbox: usize,
    /// Messages sent one at a time after the timed run, for the latency at light load.
    pub light_messages: usize,
}

/// The figures of one setup.
#[derive(Debug, Clone)]
pub struct DeliveryRun {
    pub setup: Setup,
    pub messages: usize,
    pub sessions: usize,
    /// From `MailStack` start to a stack answering on every port.
    pub start_s: f64,
    /// From the first `smtp-source` start to the last one's exit: every message accepted (queued).
    pub source_s: f64,
    /// From the first `smtp-source` start to the last message's file in a Maildir.
    pub delivered_s: f64,
    pub latency: Latency,
    /// The same for messages sent one at a time over a single session once the timed run is over: the path's own
    /// latency, without the wait behind other messages that dominates under load.
    pub light_latency: Latency,
    pub light_messages: usize,
    /// CPU seconds per daemon over the light-load run.
    pub light_cpu_s: Vec<(&'static str, f64)>,
    /// Messages filed into a folder other than INBOX (Junk, by the spam filter).
    pub not_in_inbox: usize,
    pub idle: Snapshot,
    pub peaks: Peaks,
    /// CPU seconds per daemon over the timed run, in [`memory::DAEMONS`] order.
    pub cpu_s: Vec<(&'static str, f64)>,
    /// The load average (1 min) when the timed run ended.
    pub load_after: String,
}

impl DeliveryRun {
    pub fn accepted_per_s(&self) -> f64 {
        self.messages as f64 / self.source_s
    }

    pub fn delivered_per_s(&self) -> f64 {
        self.messages as f64 / self.delivered_s
    }

    /// CPU milliseconds per message, every process of the stack together.
    pub fn cpu_ms_per_message(&self) -> f64 {
        self.cpu_s.iter().map(|(_, cpu_s)| cpu_s).sum::<f64>() * 1000.0 / self.messages as f64
    }

    /// The same for the messages sent one at a time.
    pub fn light_cpu_ms_per_message(&self) -> f64 {
        self.light_cpu_s.iter().map(|(_, cpu_s)| cpu_s).sum::<f64>() * 1000.0 / self.light_messages as f64
    }
}

/// Postfix's `delay=` and `delays=a/b/c/d` over the timed run's LMTP deliveries, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    pub n_deliveries: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Medians of the four parts: before the queue manager (the SMTP transaction from the queue file's creation,
    /// milter included, and cleanup), in the queue manager, LMTP connection setup, LMTP transmission.
    pub parts_p50_ms: [f64; 4],
}

pub struct DeliveryResults {
    pub runs: Vec<DeliveryRun>,
    pub commands: Vec<String>,
    pub message_bytes: usize,
    /// Header lines of the message (continuation lines included).
    pub message_header_lines: usize,
}

impl DeliveryResults {
    pub fn run(&self, setup: Setup) -> Option<&DeliveryRun> {
        self.runs.iter().find(|run| run.setup == setup)
    }
}

pub fn run(config: &DeliveryConfig<'_>) -> Result<DeliveryResults> {
    if !Path::new(SMTP_SOURCE).exists() {
        bail!("{SMTP_SOURCE} is missing: it comes with Debian's postfix package");
    }
    let message_file = config.scratch.join("delivery-message.eml");
    // smtp-source ends every line with CRLF itself.
    let message = super::spam::small_ham().replace("\r\n", "\n");
    std::fs::write(&message_file, &message).context("write the message smtp-source sends")?;
    let mut results = DeliveryResults {
        runs: Vec::new(),
        commands: Vec::new(),
        message_bytes: message.replace('\n', "\r\n").len(),
        message_header_lines: message.lines().take_while(|line| !line.is_empty()).count(),
    };
    for setup in Setup::ALL {
        let run = run_setup(config, setup, &message_file, &mut results.commands)
            .with_context(|| format!("end-to-end delivery, setup ({}) {}", setup.letter(), setup.label()))?;
        eprintln!(
            "bench: delivery ({}) {}: {:.1} messages/s delivered, p50 {:.1} ms, p99 {:.1} ms",
            setup.letter(),
            setup.label(),
            run.delivered_per_s(),
            run.latency.p50_ms,
            run.latency.p99_ms
        );
        results.runs.push(run);
    }
    Ok(results)
}

fn run_setup(
    config: &DeliveryConfig<'_>,
    setup: Setup,
    message_file: &Path,
    commands: &mut Vec<String>,
) -> Result<DeliveryRun> {
    let messages = if setup == Setup::FullStack { config.spam_messages } else { config.messages };
    let per_mailbox = messages.div_ceil(config.mailboxes);
    let messages = per_mailbox * config.mailboxes;
    let mut extras = StackExtras::default();
    if setup == Setup::FullStack {
        extras.config = "\n[spam]\nenabled = true\n".to_owned();
    }
    let daemons = if setup == Setup::StaticMaps { Daemons::Harness } else { Daemons::Couchmail };
    eprintln!("bench: delivery ({}): starting a stack ({})", setup.letter(), setup.label());
    let started = Instant::now();
    let stack = MailStack::try_start_with_extras(config.couchmail, StackOptions { daemons }, None, extras)
        .map_err(|err| anyhow::anyhow!("the stack did not start: {err}"))?;
    let start_s = started.elapsed().as_secs_f64();
    commands.push(format!(
        "{} --config {} up{}   # ({}), started by couchmail-testkit's MailStack",
        config.couchmail.display(),
        stack.config_file().display(),
        if daemons == Daemons::Harness { " --no-daemons" } else { "" },
        setup.letter()
    ));
    if daemons == Daemons::Harness {
        let rendered = stack.root().join("rendered");
        commands.push(format!(
            "{} --config {} render --out {}",
            config.couchmail.display(),
            stack.config_file().display(),
            rendered.display()
        ));
        commands.push(format!("postfix -c {} start-fg", rendered.join("postfix").display()));
        commands.push(format!("dovecot -F -c {}", rendered.join("dovecot/dovecot.conf").display()));
    }
    let outcome = measure(config, setup, &stack, message_file, per_mailbox, messages, start_s, commands);
    if outcome.is_err() {
        eprintln!("{}", stack.diagnostics());
    }
    let stopped = stack.stop().map_err(|err| anyhow::anyhow!("the stack did not stop cleanly: {err}"));
    let run = outcome?;
    stopped?;
    Ok(run)
}

#[allow(clippy::too_many_arguments)]
fn measure(
    config: &DeliveryConfig<'_>,
    setup: Setup,
    stack: &MailStack,
    message_file: &Path,
    per_mailbox: usize,
    messages: usize,
    start_s: f64,
    commands: &mut Vec<String>,
) -> Result<DeliveryRun> {
    let postfix_dir = match setup {
        Setup::StaticMaps => stack.root().join("rendered/postfix"),
        Setup::FullStack | Setup::NoSpam => stack.runtime_dir().join("postfix"),
    };
    let mailboxes: Vec<String> = (1..=config.mailboxes).map(|number| format!("user{number}@{DOMAIN}")).collect();
    match setup {
        Setup::StaticMaps => switch_to_static_maps(stack, &postfix_dir, &mailboxes, config.hash, commands)?,
        Setup::FullStack | Setup::NoSpam => {
            cli(stack, &["domain", "add", DOMAIN])?;
            for mailbox in &mailboxes {
                cli(stack, &["mailbox", "add", mailbox])?;
            }
        }
    }
    // Hundredths of a second are too coarse for deliveries that take a few milliseconds; the parameter only
    // changes what Postfix logs.
    let mut postconf = Command::new("postconf");
    postconf.arg("-c").arg(&postfix_dir).arg("-e").arg(format!("delay_logging_resolution_limit={DELAY_DIGITS}"));
    commands.push(process::shown(&postconf));
    process::output(&mut postconf)?;
    let mut reload = Command::new("postfix");
    reload.arg("-c").arg(&postfix_dir).arg("reload");
    commands.push(process::shown(&reload));
    process::output(&mut reload)?;

    let roots = StackRoots {
        couchmail_marker: (setup != Setup::StaticMaps).then(|| stack.config_file().to_string_lossy().into_owned()),
        postfix_pid_file: stack.postfix_master_pid_file(),
        dovecot_pid_file: stack.runtime_dir().join("dovecot/base/master.pid"),
        directory: stack.root().to_path_buf(),
    };
    let idle = memory::snapshot(&roots);

    let address = format!("127.0.0.1:{}", stack.ports().smtp);
    let mail_root = stack.data_dir().join("mail");
    // The warm-up also waits for the new mailboxes to reach couchmail's index: a refused recipient makes
    // smtp-source fail, and it is tried again.
    let warm_up_deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let result = send(&address, &mailboxes, 1, WARM_UP_PER_MAILBOX, message_file, config.scratch, "warm-up");
        match result {
            Ok(_) => break,
            Err(err) if Instant::now() > warm_up_deadline => return Err(err.context("the warm-up failed")),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
    let warm_up_messages = WARM_UP_PER_MAILBOX * mailboxes.len();
    wait_for_files(&mail_root, warm_up_messages, Duration::from_secs(120)).context("the warm-up's messages")?;
    // Messages of failed warm-up attempts may still be on their way: wait until the count settles.
    let mut settled = count_messages(&mail_root);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = count_messages(&mail_root);
        if now == settled {
            break;
        }
        settled = now;
    }

    let log_path = stack.data_dir().join("log/postfix.log");
    let log_offset = std::fs::metadata(&log_path).map(|metadata| metadata.len()).unwrap_or(0);
    let before = memory::snapshot(&roots);
    let sampler = Sampler::start(roots.clone(), SAMPLE_INTERVAL);
    eprintln!(
        "bench: delivery ({}): {messages} messages over {} sessions into {} mailboxes",
        setup.letter(),
        config.sessions_per_mailbox * mailboxes.len(),
        mailboxes.len()
    );
    let started = Instant::now();
    let shown =
        send(&address, &mailboxes, config.sessions_per_mailbox, per_mailbox, message_file, config.scratch, "run");
    let source_s = started.elapsed().as_secs_f64();
    let shown = match shown {
        Ok(shown) => shown,
        Err(err) => {
            sampler.finish();
            return Err(err);
        }
    };
    commands.push(shown);
    let delivered = wait_for_files(&mail_root, settled + messages, DELIVERY_TIMEOUT);
    let delivered_s = started.elapsed().as_secs_f64();
    let peaks = sampler.finish();
    delivered.with_context(|| format!("the timed run's messages; postqueue -p: {}", stack.postqueue()))?;
    let after = memory::snapshot(&roots);
    let load_after = super::machine::load_average();

    let log = std::fs::read(&log_path).with_context(|| format!("read {}", log_path.display()))?;
    let log_text = String::from_utf8_lossy(log.get(usize::try_from(log_offset).unwrap_or(0)..).unwrap_or_default());
    let latency = latency_from_log(&log_text);
    if latency.n_deliveries != messages {
        bail!("Postfix logged {} LMTP deliveries for {messages} messages", latency.n_deliveries);
    }
    let not_in_inbox = count_messages_outside_inbox(&mail_root);

    // Under the timed run's load most of a message's delay is its wait behind the others (smtp-source hands
    // messages over faster than they are delivered, and a setup that accepts faster queues more), so the path's
    // own latency is measured apart: one session, one message after the other, into an otherwise idle stack.
    let light_offset = std::fs::metadata(&log_path).map(|metadata| metadata.len()).unwrap_or(0);
    let light_before = memory::snapshot(&roots);
    let light_shown = send(&address, &mailboxes[..1], 1, config.light_messages, message_file, config.scratch, "light")?;
    commands.push(light_shown);
    wait_for_files(&mail_root, settled + messages + config.light_messages, DELIVERY_TIMEOUT)
        .context("the light-load run's messages")?;
    let light_cpu_s = cpu_delta(&light_before, &memory::snapshot(&roots));
    let log = std::fs::read(&log_path).with_context(|| format!("read {}", log_path.display()))?;
    let log_text = String::from_utf8_lossy(log.get(usize::try_from(light_offset).unwrap_or(0)..).unwrap_or_default());
    let light_latency = latency_from_log(&log_text);
    if light_latency.n_deliveries != config.light_messages {
        bail!(
            "Postfix logged {} LMTP deliveries for {} messages sent one at a time",
            light_latency.n_deliveries,
            config.light_messages
        );
    }
    let cpu_s = cpu_delta(&before, &after);
    Ok(DeliveryRun {
        setup,
        messages,
        sessions: config.sessions_per_mailbox * mailboxes.len(),
        start_s,
        source_s,
        delivered_s,
        latency,
        light_latency,
        light_messages: config.light_messages,
        light_cpu_s,
        not_in_inbox,
        idle,
        peaks,
        cpu_s,
        load_after,
    })
}

/// CPU seconds each daemon spent between two snapshots, in [`memory::DAEMONS`] order.
fn cpu_delta(before: &Snapshot, after: &Snapshot) -> Vec<(&'static str, f64)> {
    let (before_cpu, after_cpu) = (before.cpu_per_daemon(), after.cpu_per_daemon());
    memory::DAEMONS
        .iter()
        .filter(|daemon| after_cpu.contains_key(*daemon))
        .map(|daemon| {
            let spent = after_cpu.get(daemon).copied().unwrap_or(0.0) - before_cpu.get(daemon).copied().unwrap_or(0.0);
            (*daemon, spent.max(0.0))
        })
        .collect()
}

/// Runs one `smtp-source` per mailbox at once, each with `sessions` parallel sessions sending `per_mailbox`
/// messages (one per connection), and waits for all; returns the first one's command line.
fn send(
    address: &str,
    mailboxes: &[String],
    sessions: usize,
    per_mailbox: usize,
    message_file: &Path,
    scratch: &Path,
    what: &str,
) -> Result<String> {
    let mut children = Vec::new();
    let mut first_shown = String::new();
    for (mailbox_idx, mailbox) in mailboxes.iter().enumerate() {
        let mut command = Command::new(SMTP_SOURCE);
        command
            .args(["-s", &sessions.to_string(), "-m", &per_mailbox.to_string()])
            .args(["-M", HELO, "-f", SENDER, "-t", mailbox])
            .arg("-F")
            .arg(message_file)
            .arg(address);
        if mailbox_idx == 0 {
            first_shown = process::shown(&command);
        }
        let log = scratch.join(format!("smtp-source-{what}-{mailbox_idx}.log"));
        let log_file = std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().context("share the smtp-source log")?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("start {SMTP_SOURCE}"))?;
        children.push((ChildGuard::new(child, "smtp-source"), log));
    }
    for (mut guard, log) in children {
        let (status, _) = guard.wait_with_stderr()?;
        if !status.success() {
            let logged = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("smtp-source ({what}) failed ({status}): {}", logged.trim());
        }
    }
    Ok(first_shown)
}

/// Waits until the Maildirs under `mail_root` hold at least `expected` messages.
fn wait_for_files(mail_root: &Path, expected: usize, limit: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let found = count_messages(mail_root);
        if found >= expected {
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!("{found} of {expected} messages reached the Maildirs within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Messages in every Maildir folder below `dir`: the files in `new/` and `cur/` directories.
pub fn count_messages(dir: &Path) -> usize {
    let mut n_messages = 0;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    for entry in entries.flatten() {
        let Ok(file_type) = entry.file_type() else { continue };
        if !file_type.is_dir() {
            continue;
        }
        let name = entry.file_name();
        if name == "new" || name == "cur" {
            n_messages += std::fs::read_dir(entry.path()).map(|files| files.flatten().count()).unwrap_or(0);
        } else if name != "tmp" {
            n_messages += count_messages(&entry.path());
        }
    }
    n_messages
}

/// Messages in Maildir folders other than INBOX (`Maildir/.Junk/new` and the like).
fn count_messages_outside_inbox(mail_root: &Path) -> usize {
    let mut total = 0;
    let Ok(domains) = std::fs::read_dir(mail_root) else { return 0 };
    for domain in domains.flatten() {
        let Ok(homes) = std::fs::read_dir(domain.path()) else { continue };
        for home in homes.flatten() {
            let Ok(folders) = std::fs::read_dir(home.path().join("Maildir")) else { continue };
            for folder in folders.flatten() {
                if folder.file_name().to_string_lossy().starts_with('.') {
                    total += count_messages(&folder.path());
                }
            }
        }
    }
    total
}

/// Postfix's delays of the LMTP deliveries in a stretch of its log.
pub fn latency_from_log(log: &str) -> Latency {
    let mut totals = Vec::new();
    let mut parts: [Vec<f64>; 4] = Default::default();
    for line in log.lines() {
        if !line.contains("/lmtp[") || !line.contains(" status=sent ") {
            continue;
        }
        let Some(delay) = field(line, "delay=").and_then(|value| value.parse::<f64>().ok()) else { continue };
        totals.push(delay * 1000.0);
        if let Some(delays) = field(line, "delays=") {
            for (part_idx, value) in delays.split('/').take(4).enumerate() {
                if let Ok(value) = value.parse::<f64>() {
                    parts[part_idx].push(value * 1000.0);
                }
            }
        }
    }
    let percentile = |values: &mut Vec<f64>, fraction: f64| -> f64 {
        if values.is_empty() {
            return f64::NAN;
        }
        values.sort_by(f64::total_cmp);
        let rank = ((values.len() as f64 * fraction).ceil() as usize).clamp(1, values.len());
        values[rank - 1]
    };
    let mut parts_p50_ms = [f64::NAN; 4];
    for (part_idx, values) in parts.iter_mut().enumerate() {
        parts_p50_ms[part_idx] = percentile(values, 0.5);
    }
    Latency {
        n_deliveries: totals.len(),
        p50_ms: percentile(&mut totals, 0.5),
        p90_ms: percentile(&mut totals, 0.9),
        p99_ms: percentile(&mut totals, 0.99),
        max_ms: percentile(&mut totals, 1.0),
        parts_p50_ms,
    }
}

/// The value of `name` in a Postfix log line: up to the next comma or space.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}"))? + 1 + name.len();
    let rest = &line[start..];
    Some(&rest[..rest.find([',', ' ']).unwrap_or(rest.len())])
}

fn cli(stack: &MailStack, args: &[&str]) -> Result<()> {
    let output = stack.cli(args);
    if !output.status.success() {
        bail!("couchmail {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// Turns a stack started with `Daemons::Harness` into the classic setup: LMDB maps, no policy service,
/// passwd-file, Sieve from files; reloads Postfix and Dovecot, checks that both answer from the new sources, and
/// stops couchmail.
fn switch_to_static_maps(
    stack: &MailStack,
    postfix_dir: &Path,
    mailboxes: &[String],
    hash: &str,
    commands: &mut Vec<String>,
) -> Result<()> {
    let maps_dir = stack.root().join("static-maps");
    std::fs::create_dir_all(&maps_dir).with_context(|| format!("create {}", maps_dir.display()))?;
    std::fs::set_permissions(&maps_dir, std::fs::Permissions::from_mode(0o755)).context("open the maps directory")?;
    let mut maps: Vec<(&str, String)> = vec![
        ("domains", format!("{DOMAIN} OK\n")),
        ("alias-domains", String::new()),
        ("mailboxes", String::new()),
        ("aliases", format!("postmaster@{DOMAIN} {}\n", mailboxes[0])),
        ("senders", String::new()),
    ];
    for mailbox in mailboxes {
        let _ = writeln!(maps[2].1, "{mailbox} OK");
        // As couchmail's aliases map does: a mailbox maps to itself, so that a catch-all cannot swallow it.
        let _ = writeln!(maps[3].1, "{mailbox} {mailbox}");
        let _ = writeln!(maps[4].1, "{mailbox} {mailbox}");
    }
    for (name, content) in &maps {
        let path = maps_dir.join(name);
        std::fs::write(&path, content).with_context(|| format!("write {}", path.display()))?;
        let mut postmap = Command::new("postmap");
        postmap.arg("-c").arg(postfix_dir).arg(format!("lmdb:{}", path.display()));
        commands.push(process::shown(&postmap));
        process::output(&mut postmap)?;
    }
    for file in ["main.cf", "master.cf"] {
        let path = postfix_dir.join(file);
        let text = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        std::fs::write(&path, static_postfix_config(&text, &maps_dir))
            .with_context(|| format!("write {}", path.display()))?;
    }

    let vmail = user_ids("vmail").context("look up vmail")?.context("the vmail account is missing")?;
    let passwd_path = maps_dir.join("passwd");
    let mail_root = stack.data_dir().join("mail");
    let mut passwd = String::new();
    for mailbox in mailboxes {
        let (local, domain) = mailbox.split_once('@').context("a mailbox without @")?;
        let home = mail_root.join(domain).join(local);
        let _ = writeln!(passwd, "{mailbox}:{hash}:{}:{}::{}::", vmail.uid, vmail.gid, home.display());
    }
    std::fs::write(&passwd_path, passwd).with_context(|| format!("write {}", passwd_path.display()))?;
    let dovecot_config = stack.root().join("rendered/dovecot/dovecot.conf");
    let text =
        std::fs::read_to_string(&dovecot_config).with_context(|| format!("read {}", dovecot_config.display()))?;
    std::fs::write(&dovecot_config, static_dovecot_config(&text, &passwd_path))
        .with_context(|| format!("write {}", dovecot_config.display()))?;

    let mut reload = Command::new("postfix");
    reload.arg("-c").arg(postfix_dir).arg("reload");
    commands.push(process::shown(&reload));
    process::output(&mut reload)?;
    let mut reload = Command::new("doveadm");
    reload.arg("-c").arg(&dovecot_config).arg("reload");
    commands.push(process::shown(&reload));
    process::output(&mut reload)?;
    stack.stop_couchmail().map_err(|err| anyhow::anyhow!("stop couchmail: {err}"))?;

    // Both must now answer without couchmail: Postfix from LMDB, Dovecot's userdb from the passwd-file (its auth
    // process may take a moment to come back after the reload).
    let mut lookup = Command::new("postmap");
    lookup
        .arg("-c")
        .arg(postfix_dir)
        .args(["-q", &mailboxes[0]])
        .arg(format!("lmdb:{}", maps_dir.join("mailboxes").display()));
    process::output(&mut lookup)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut user = Command::new("doveadm");
        user.arg("-c").arg(&dovecot_config).args(["user", &mailboxes[0]]);
        match process::stdout_of(&mut user) {
            Ok(answer) if answer.contains(&mail_root.to_string_lossy().into_owned()) => break,
            Ok(answer) if Instant::now() > deadline => bail!("doveadm user answered `{answer}` after the switch"),
            Err(err) if Instant::now() > deadline => return Err(err.context("Dovecot's passwd-file userdb")),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    Ok(())
}

/// A rendered Postfix file with couchmail's socketmaps replaced by LMDB files of the same names in `maps_dir`,
/// and couchmail's policy service by `permit` (what is left when no policy service is asked).
pub fn static_postfix_config(text: &str, maps_dir: &Path) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut line = line.to_owned();
        while let Some(start) = line.find("socketmap:unix:") {
            let end = token_end(&line, start);
            let name = line[start..end].rsplit(':').next().unwrap_or_default().to_owned();
            line.replace_range(start..end, &format!("lmdb:{}", maps_dir.join(name).display()));
        }
        while let Some(start) = line.find("check_policy_service unix:") {
            let end = token_end(&line, start + "check_policy_service ".len());
            line.replace_range(start..end, "permit");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Where a map or socket name that starts at `start` ends: at white space, a comma or a closing brace.
fn token_end(line: &str, start: usize) -> usize {
    line[start..].find(|c: char| c.is_whitespace() || c == ',' || c == '}').map_or(line.len(), |offset| start + offset)
}

/// A rendered dovecot.conf with the Lua passdb and userdb replaced by `passwd` and Sieve scripts read from files
/// (none exist) instead of couchmail's dict server.
pub fn static_dovecot_config(text: &str, passwd: &Path) -> String {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let indent = &line[..line.len() - line.trim_start().len()];
        let trimmed = line.trim();
        if trimmed == "driver = lua" {
            let _ = writeln!(out, "{indent}driver = passwd-file");
            if lines.peek().is_some_and(|next| next.trim().starts_with("args = ")) {
                lines.next();
            }
            let _ = writeln!(out, "{indent}args = username_format=%u {}", passwd.display());
        } else if trimmed.starts_with("sieve = dict:") {
            let _ = writeln!(out, "{indent}sieve = file:~/sieve;active=~/.dovecot.sieve");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socketmaps_become_lmdb_files_and_the_policy_service_goes() {
        let main_cf = "virtual_mailbox_maps = socketmap:unix:/run/cm/socketmap:mailboxes\n\
                       smtpd_recipient_restrictions = reject_unlisted_recipient, check_policy_service unix:/run/cm/policy\n\
                       virtual_alias_maps = socketmap:unix:/run/cm/socketmap:aliases, socketmap:unix:/s:alias-domains\n\
                       smtp_tls_security_level = may\n";
        let master_cf = "  -o { smtpd_end_of_data_restrictions = check_policy_service unix:/run/cm/policy }\n";
        let maps = Path::new("/m");
        assert_eq!(
            static_postfix_config(main_cf, maps),
            "virtual_mailbox_maps = lmdb:/m/mailboxes\n\
             smtpd_recipient_restrictions = reject_unlisted_recipient, permit\n\
             virtual_alias_maps = lmdb:/m/aliases, lmdb:/m/alias-domains\n\
             smtp_tls_security_level = may\n"
        );
        assert_eq!(static_postfix_config(master_cf, maps), "  -o { smtpd_end_of_data_restrictions = permit }\n");
    }

    #[test]
    fn dovecot_reads_a_passwd_file_and_sieve_files() {
        let conf = "passdb {\n  driver = lua\n  args = file=/run/auth.lua blocking=yes\n}\n\
                    userdb {\n  driver = lua\n  args = file=/run/auth.lua blocking=yes\n}\n\
                    plugin {\n  sieve = dict:proxy:/run/dict:sieve;name=active\n  quota = maildir:User quota\n}\n";
        assert_eq!(
            static_dovecot_config(conf, Path::new("/m/passwd")),
            "passdb {\n  driver = passwd-file\n  args = username_format=%u /m/passwd\n}\n\
             userdb {\n  driver = passwd-file\n  args = username_format=%u /m/passwd\n}\n\
             plugin {\n  sieve = file:~/sieve;active=~/.dovecot.sieve\n  quota = maildir:User quota\n}\n"
        );
    }

    #[test]
    fn latency_comes_from_the_lmtp_lines_that_delivered() {
        let log = "\
Nov 25 07:00:00 h postfix/smtpd[1]: 4A: client=localhost[127.0.0.1]
Nov 25 07:00:00 h postfix/lmtp[2]: 4A: to=<u@b.test>, relay=h[/run/lmtp], delay=0.0123, delays=0.01/0.0003/0.0005/0.0015, dsn=2.0.0, status=sent (250 2.0.0 Saved)
Nov 25 07:00:00 h postfix/lmtp[2]: 4B: to=<u@b.test>, relay=h[/run/lmtp], delay=0.03, delays=0.02/0/0/0.01, dsn=2.0.0, status=sent (250 2.0.0 Saved)
Nov 25 07:00:00 h postfix/lmtp[2]: 4C: to=<u@b.test>, relay=h[/run/lmtp], delay=5, delays=0/0/0/5, dsn=4.0.0, status=deferred (timeout)
";
        let latency = latency_from_log(log);
        assert_eq!(latency.n_deliveries, 2);
        assert!((latency.p50_ms - 12.3).abs() < 1e-9);
        assert!((latency.max_ms - 30.0).abs() < 1e-9);
        assert!((latency.parts_p50_ms[0] - 10.0).abs() < 1e-9);
        assert_eq!(latency_from_log("").n_deliveries, 0);
    }

    #[test]
    fn messages_are_counted_in_every_folder_but_not_in_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("b.test/u/Maildir");
        for (folder, n_files) in [("new", 2), ("cur", 1), ("tmp", 5), (".Junk/new", 3)] {
            std::fs::create_dir_all(maildir.join(folder)).unwrap();
            for file_idx in 0..n_files {
                std::fs::write(maildir.join(folder).join(file_idx.to_string()), "x").unwrap();
            }
        }
        std::fs::write(maildir.join("dovecot.index"), "x").unwrap();
        assert_eq!(count_messages(dir.path()), 6);
        assert_eq!(count_messages_outside_inbox(dir.path()), 3);
    }
}
