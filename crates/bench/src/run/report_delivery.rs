//! The report's issue #6 sections: end-to-end delivery through the three setups, and the memory of each stack's
//! processes, idle and under that load.

use std::fmt::Write as _;

use super::delivery::{DeliveryResults, Setup};
use super::memory::{DAEMONS, Totals};

/// The heading the delivery sections start with; [`splice`] finds them by it.
pub const DELIVERY_HEADING: &str = "\n## End-to-end delivery: smtp-source → Postfix → LMTP → Maildir (issue #6)\n";
/// The heading that follows them in a full report.
pub const NEXT_HEADING: &str = "\n## Index build and memory (issue #2)\n";

/// The delivery and memory sections. `spliced_on` is the date of a run that measured only these
/// (`--only-delivery`).
pub fn sections(results: &DeliveryResults, quick: bool, spliced_on: Option<&str>) -> String {
    let mut out = String::new();
    out.push_str(DELIVERY_HEADING);
    let _ = writeln!(out);
    if let Some(date) = spliced_on {
        let quick_note = if quick { " with `--quick` sizes (a smoke test: do not quote these numbers)" } else { "" };
        let _ = writeln!(
            out,
            "These two sections were measured on {date} by `couchmail-bench all --only-delivery`{quick_note}, on their own, and spliced into the report of the full run.\n"
        );
    }
    headline(&mut out, results);
    let _ = writeln!(
        out,
        "Postfix's own load generator, `smtp-source` (Debian's postfix package), sends the same {}-byte plain-text message ({} lines of headers, a short personal note; spam scores it as ham) to port 25 of a stack on 127.0.0.1, where postscreen (loopback is on its access list), smtpd, cleanup and the queue manager hand it to Dovecot over LMTP, which writes it into the recipient's Maildir on disk (/var/tmp).",
        results.message_bytes, results.message_header_lines,
    );
    let _ = writeln!(
        out,
        "Three setups, each a fresh stack started by couchmail-testkit's `MailStack` (the end-to-end tests' harness), one after another in this run:\n"
    );
    let _ = writeln!(
        out,
        "- **(a) {}**: `couchmail up` as shipped, SpamAssassin on: spamass-milter scans each message at SMTP time (spamd, one site-wide user) and Dovecot's `sieve_before` filter scans it again per recipient at delivery; greylisting on, with the source address allowlisted (127.0.0.0/8 is in `policy.trusted_networks` by default, so the policy service, still asked at RCPT for every recipient, lets the source through without greylisting or rate limits).",
        Setup::FullStack.label()
    );
    let _ = writeln!(
        out,
        "- **(b) {}**: the same without SpamAssassin: Postfix asks couchmail's socketmap (domains, mailboxes, aliases) and policy service at RCPT, Dovecot's LMTP asks couchmail's auth endpoint (Lua userdb over HTTP) and its dict server (the recipient's active Sieve script, none here) for every delivery.",
        Setup::NoSpam.label()
    );
    let _ = writeln!(
        out,
        "- **(c) {}**: the Postfix and Dovecot configuration couchmail rendered for (b) (`couchmail render --out`), rewritten by the benchmark: every `socketmap:` becomes an LMDB file of the same name made with `postmap` (the domain, the mailboxes, an alias, the sender logins), the policy service becomes `permit`, Dovecot's Lua passdb and userdb become a `passwd-file` (same homes, same vmail ids, the same argon2id hash), and Sieve scripts are read from files (there are none); Postfix and Dovecot are reloaded, and couchmail is stopped before the mail flows. This is the classic setup couchmail replaces.\n",
        Setup::StaticMaps.label()
    );
    if let Some(run) = results.runs.first() {
        let mailboxes = run.sessions / sessions_per_mailbox(results).max(1);
        let _ = writeln!(
            out,
            "In each setup {} mailboxes get one `smtp-source` each, all started at once, each running {} sessions in parallel ({} in all) and one message per connection, as servers of other domains send; (a) sends fewer messages than (b) and (c), because every message costs it two SpamAssassin scans of about 60 ms on a two-core machine.",
            mailboxes,
            sessions_per_mailbox(results),
            run.sessions
        );
    }
    let _ = writeln!(
        out,
        "Before the timed run, {} messages per mailbox go through untimed (processes start, spamd's children compile their rules, the new mailboxes reach couchmail's index).",
        5
    );
    let _ = writeln!(
        out,
        "**Delivered/s** is the number of messages divided by the time from starting the `smtp-source` processes to the last message's file appearing in a Maildir (the benchmark counts the files in `new/` and `cur/` of every folder every 20 ms); **accepted/s** divides by the time until the last `smtp-source` exited, when every message had been queued."
    );
    let _ = writeln!(
        out,
        "**Latency** is per message, from Postfix's own log: the `delay=` of each LMTP delivery line, which runs from the moment smtpd created the message's queue file (during the SMTP transaction, so the milter's scan is inside it) to Dovecot's `250` for it; the run sets `delay_logging_resolution_limit = 4` (Postfix logs hundredths of a second by default). `delays=a/b/c/d` splits it: before the queue manager (the rest of the SMTP transaction, milter included, and cleanup), waiting in the queue manager, LMTP connection setup, LMTP transmission (Dovecot's userdb lookup, Sieve, the Maildir write)."
    );
    let _ = writeln!(
        out,
        "**CPU per message** sums every process of the stack over the timed run (live processes' own time plus what each has reaped from children that exited: `smtpd`, `lmtp` and `spamc` processes that came and went count), divided by the messages; `smtp-source` itself is not counted.\n"
    );

    let _ = writeln!(
        out,
        "| Setup | Messages | Sessions | Accepted/s | Delivered/s | ÷ (c) | CPU per message (ms) | ÷ (c) | Stack ready in (s) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let static_run = results.run(Setup::StaticMaps);
    for run in &results.runs {
        let throughput_ratio = static_run.map_or(f64::NAN, |base| run.delivered_per_s() / base.delivered_per_s());
        let cpu_ratio = static_run.map_or(f64::NAN, |base| run.cpu_ms_per_message() / base.cpu_ms_per_message());
        let _ = writeln!(
            out,
            "| ({}) {} | {} | {} | {:.1} | {:.1} | {} | {} | {} | {:.1} |",
            run.setup.letter(),
            run.setup.label(),
            run.messages,
            run.sessions,
            run.accepted_per_s(),
            run.delivered_per_s(),
            ratio(throughput_ratio),
            fixed(run.cpu_ms_per_message(), 2),
            ratio(cpu_ratio),
            run.start_s,
        );
    }

    let light_messages = results.runs.first().map_or(0, |run| run.light_messages);
    let _ = writeln!(
        out,
        "
Latency per message (Postfix's `delay=`), under the load above and for {light_messages} messages sent one at a time over one session once the load is over (into the first mailbox, into an otherwise idle stack):
"
    );
    let _ = writeln!(
        out,
        "| Setup | Under load p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | One at a time p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | ÷ (c) (p50) | One at a time: CPU per message (ms) | ÷ (c) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in &results.runs {
        let (load, light) = (&run.latency, &run.light_latency);
        let light_ratio = static_run.map_or(f64::NAN, |base| light.p50_ms / base.light_latency.p50_ms);
        let light_cpu_ratio =
            static_run.map_or(f64::NAN, |base| run.light_cpu_ms_per_message() / base.light_cpu_ms_per_message());
        let _ = writeln!(
            out,
            "| ({}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run.setup.letter(),
            fixed(load.p50_ms, 1),
            fixed(load.p90_ms, 1),
            fixed(load.p99_ms, 1),
            fixed(load.max_ms, 1),
            fixed(light.p50_ms, 1),
            fixed(light.p90_ms, 1),
            fixed(light.p99_ms, 1),
            fixed(light.max_ms, 1),
            ratio(light_ratio),
            fixed(run.light_cpu_ms_per_message(), 2),
            ratio(light_cpu_ratio),
        );
    }
    let _ = writeln!(
        out,
        "
Under load, most of a message's delay is its wait in the queue behind the others: `smtp-source` hands messages over faster than they can be delivered, so the queue grows through the run, and a setup that accepts faster (no policy request, no socketmap lookup in smtpd) builds a longer queue and shows a longer delay; the one-at-a-time column is the path's own latency."
    );

    let _ = writeln!(
        out,
        "
Median of each part of the latency (`delays=a/b/c/d`, ms), under load and one at a time:
"
    );
    let _ = writeln!(
        out,
        "| Setup | before qmgr | in qmgr | LMTP connect | LMTP transmit | one at a time: before qmgr | in qmgr | LMTP connect | LMTP transmit |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in &results.runs {
        let (load, light) = (&run.latency.parts_p50_ms, &run.light_latency.parts_p50_ms);
        let _ = write!(out, "| ({}) |", run.setup.letter());
        for value in load.iter().chain(light.iter()) {
            let _ = write!(out, " {} |", fixed(*value, 1));
        }
        let _ = writeln!(out);
    }

    let _ = writeln!(
        out,
        "
CPU per message by daemon over the timed run (ms):
"
    );
    let _ = write!(out, "| Setup |");
    for daemon in DAEMONS {
        let _ = write!(out, " {daemon} |");
    }
    let _ = writeln!(out, " total | Load (1 min) after |");
    let _ = writeln!(out, "|---|{}---:|---|", "---:|".repeat(DAEMONS.len()));
    for run in &results.runs {
        let _ = write!(out, "| ({}) |", run.setup.letter());
        for daemon in DAEMONS {
            match run.cpu_s.iter().find(|(name, _)| *name == daemon) {
                Some((_, cpu_s)) => {
                    let _ = write!(out, " {} |", fixed(cpu_s * 1000.0 / run.messages as f64, 2));
                }
                None => out.push_str(" — |"),
            }
        }
        let _ = writeln!(
            out,
            " {} | {} |",
            fixed(run.cpu_ms_per_message(), 2),
            run.load_after.split(',').next().unwrap_or_default()
        );
    }
    if let Some(run) = results.run(Setup::FullStack)
        && run.not_in_inbox > 0
    {
        let _ = writeln!(out, "\nIn (a), {} messages were filed outside INBOX (Junk).", run.not_in_inbox);
    }
    explain(&mut out, results);
    memory_section(&mut out, results);
    out
}

fn sessions_per_mailbox(results: &DeliveryResults) -> usize {
    // Every setup runs the same sessions per mailbox; the command line of the first smtp-source says how many.
    results
        .commands
        .iter()
        .find(|command| command.contains("smtp-source"))
        .and_then(|command| {
            let mut words = command.split_whitespace();
            words.find(|word| *word == "-s")?;
            words.next()?.parse().ok()
        })
        .unwrap_or(1)
}

/// The figure that matters, first: what couchmail's brain costs against static maps.
fn headline(out: &mut String, results: &DeliveryResults) {
    let (Some(brain), Some(base)) = (results.run(Setup::NoSpam), results.run(Setup::StaticMaps)) else { return };
    let throughput_ratio = brain.delivered_per_s() / base.delivered_per_s();
    let cpu_ratio = brain.light_cpu_ms_per_message() / base.light_cpu_ms_per_message();
    let _ = writeln!(
        out,
        "**Overhead of couchmail's brain, (b) against (c): {:.2}× the throughput ({:.1} against {:.1} messages/s delivered under load), {:.2}× the CPU per message ({:.2} against {:.2} ms, one at a time), a message's own latency {} against {} ms (median, one at a time; p99 {} against {} ms).**",
        throughput_ratio,
        brain.delivered_per_s(),
        base.delivered_per_s(),
        cpu_ratio,
        brain.light_cpu_ms_per_message(),
        base.light_cpu_ms_per_message(),
        fixed(brain.light_latency.p50_ms, 1),
        fixed(base.light_latency.p50_ms, 1),
        fixed(brain.light_latency.p99_ms, 1),
        fixed(base.light_latency.p99_ms, 1),
    );
    if let Some(full) = results.run(Setup::FullStack) {
        let _ = writeln!(
            out,
            "With the spam scan on, (a) delivers {:.1} messages/s ({:.2}× (c)), and a message alone takes {} ms (median).",
            full.delivered_per_s(),
            full.delivered_per_s() / base.delivered_per_s(),
            fixed(full.light_latency.p50_ms, 1),
        );
    }
    let _ = writeln!(out);
}

/// What the delivery numbers mean.
fn explain(out: &mut String, results: &DeliveryResults) {
    let (Some(brain), Some(base)) = (results.run(Setup::NoSpam), results.run(Setup::StaticMaps)) else { return };
    let couchmail_ms = |cpu_s: &[(&str, f64)], messages: usize| {
        cpu_s.iter().find(|(name, _)| *name == "couchmail").map_or(0.0, |(_, cpu)| *cpu) * 1000.0 / messages as f64
    };
    let own_ms = couchmail_ms(&brain.light_cpu_s, brain.light_messages);
    let difference_ms = brain.light_cpu_ms_per_message() - base.light_cpu_ms_per_message();
    let _ = writeln!(
        out,
        "\nIn (b), couchmail's own process spends {:.2} ms of CPU per message under load and {own_ms:.2} ms one at a time: the socketmap lookups of smtpd, cleanup and trivial-rewrite, the policy request at RCPT, and for each LMTP delivery the userdb request over HTTP and the Sieve dict lookup.",
        couchmail_ms(&brain.cpu_s, brain.messages),
    );
    if difference_ms < own_ms {
        let _ = writeln!(
            out,
            "One at a time, the whole stack's CPU per message differs from (c) by {difference_ms:+.2} ms, less than couchmail's own share: Postfix's and Dovecot's CPU moved between the two setups by more than couchmail adds, which on this machine, shared with other work (the load column), is run-to-run noise rather than a saving."
        );
    } else {
        let _ = writeln!(
            out,
            "One at a time, the whole stack's CPU per message exceeds (c)'s by {difference_ms:+.2} ms, of which {own_ms:.2} ms is couchmail's own; the rest is Postfix and Dovecot making those requests instead of reading an LMDB file and a passwd-file (and run-to-run noise: the machine is shared with other work, see the load column)."
        );
    }
    let _ = writeln!(
        out,
        "Both cores are shared by `smtp-source`, Postfix, Dovecot and couchmail, so throughput is bounded by CPU and moves by several percent from run to run; under load a setup that accepts faster also runs a longer queue, so the one-at-a-time figures, without a queue, are the cleaner measure of a message's path. (c)'s {:.1} messages/s is this machine's ceiling for Postfix and Dovecot alone.",
        base.delivered_per_s()
    );
}

fn memory_section(out: &mut String, results: &DeliveryResults) {
    let _ = writeln!(out, "\n## Memory of the whole stack, idle and under load (issue #6)\n");
    let _ = writeln!(
        out,
        "Every process of each stack above, read from /proc: `couchmail up` (found by its configuration file on its command line), Postfix's and Dovecot's masters (from their pid files) and every descendant of them, each counted under its nearest ancestor that is a daemon's main process (spamd and spamass-milter run under `couchmail up` but count as themselves; the harness's guard shells are left out)."
    );
    let _ = writeln!(
        out,
        "**Idle** is read once the stack is ready and its mailboxes made, before any mail; **peak** is the highest sum seen by a sampler that reads every process every 200 ms during the timed run (the total's peak is the highest total at one moment, not the sum of the daemons' peaks)."
    );
    let _ = writeln!(
        out,
        "RSS is `VmRSS` from /proc/PID/status, which counts a page shared by several processes (Postfix's and Dovecot's libraries, spamd's children forked from a parent that loaded the rules) once in each; PSS, from /proc/PID/smaps_rollup, divides each shared page between the processes that map it, so summed PSS is what the stack costs the machine.\n"
    );
    let _ = write!(out, "| Daemon |");
    for run in &results.runs {
        let letter = run.setup.letter();
        let _ = write!(
            out,
            " ({letter}) processes idle → peak | ({letter}) RSS idle (MiB) | ({letter}) RSS peak (MiB) | ({letter}) PSS idle (MiB) | ({letter}) PSS peak (MiB) |"
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "|---|{}", "---:|---:|---:|---:|---:|".repeat(results.runs.len()));
    for daemon in DAEMONS {
        if !results.runs.iter().any(|run| run.peaks.per_daemon.contains_key(daemon)) {
            continue;
        }
        let _ = write!(out, "| {daemon} |");
        for run in &results.runs {
            let idle = run.idle.per_daemon().into_iter().find(|(name, _)| *name == daemon).map(|(_, totals)| totals);
            let peak = run.peaks.per_daemon.get(daemon).copied();
            memory_cells(out, idle, peak);
        }
        let _ = writeln!(out);
    }
    let _ = write!(out, "| **total** |");
    for run in &results.runs {
        memory_cells(out, Some(run.idle.total()), Some(run.peaks.total));
    }
    let _ = writeln!(out);

    if let (Some(brain), Some(base)) = (results.run(Setup::NoSpam), results.run(Setup::StaticMaps)) {
        let couchmail_idle = brain.idle.per_daemon().into_iter().find(|(name, _)| *name == "couchmail");
        if let Some((_, couchmail)) = couchmail_idle {
            let _ = writeln!(
                out,
                "\ncouchmail itself holds {} MiB resident idle ({} MiB at its peak under load); the stack without the spam scan totals {} MiB PSS idle against {} MiB for the static setup.",
                mib(couchmail.rss_kib),
                brain.peaks.per_daemon.get("couchmail").map_or_else(|| "—".to_owned(), |peak| mib(peak.rss_kib)),
                mib(brain.idle.total().pss_kib),
                mib(base.idle.total().pss_kib),
            );
        }
    }

    let Some(full) = results.run(Setup::FullStack) else { return };
    let _ = writeln!(out, "\nProcess by process, setup (a) (the full stack):\n");
    let _ = writeln!(
        out,
        "| Daemon | Process | Processes idle → peak | RSS idle (MiB) | RSS peak (MiB) | PSS idle (MiB) | PSS peak (MiB) |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|");
    let idle_names = full.idle.per_name();
    for ((daemon_idx, name), peak) in &full.peaks.per_name {
        let daemon = DAEMONS.get(*daemon_idx).copied().unwrap_or("other");
        let idle = idle_names.get(&(*daemon_idx, name.clone())).copied();
        let _ = write!(out, "| {daemon} | `{}` |", name.replace('|', "\\|"));
        memory_cells(out, idle, Some(*peak));
        let _ = writeln!(out);
    }
    for ((daemon_idx, name), idle) in &idle_names {
        if full.peaks.per_name.contains_key(&(*daemon_idx, name.clone())) {
            continue;
        }
        let daemon = DAEMONS.get(*daemon_idx).copied().unwrap_or("other");
        let _ = write!(out, "| {daemon} | `{}` (gone under load) |", name.replace('|', "\\|"));
        memory_cells(out, Some(*idle), None);
        let _ = writeln!(out);
    }
}

fn memory_cells(out: &mut String, idle: Option<Totals>, peak: Option<Totals>) {
    let processes =
        |totals: Option<Totals>| totals.map_or_else(|| "0".to_owned(), |totals| totals.n_processes.to_string());
    let rss = |totals: Option<Totals>| totals.map_or_else(|| "—".to_owned(), |totals| mib(totals.rss_kib));
    let pss = |totals: Option<Totals>| totals.map_or_else(|| "—".to_owned(), |totals| mib(totals.pss_kib));
    let _ = write!(
        out,
        " {} → {} | {} | {} | {} | {} |",
        processes(idle),
        processes(peak),
        rss(idle),
        rss(peak),
        pss(idle),
        pss(peak)
    );
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn fixed(value: f64, decimals: usize) -> String {
    if value.is_finite() { format!("{value:.decimals$}") } else { "—".to_owned() }
}

fn ratio(value: f64) -> String {
    if value.is_finite() { format!("{value:.2}×") } else { "—".to_owned() }
}

/// `report` with the delivery sections replaced by `sections`, or inserted before the index section (or the end).
pub fn splice(report: &str, sections: &str) -> String {
    let (before, after) = match report.find(DELIVERY_HEADING) {
        Some(start) => {
            let end = report[start + 1..].find(NEXT_HEADING).map_or(report.len(), |offset| start + 1 + offset);
            (&report[..start], &report[end..])
        }
        None => match report.find(NEXT_HEADING) {
            Some(start) => (&report[..start], &report[start..]),
            None => (report, ""),
        },
    };
    format!("{before}{sections}{after}")
}

#[cfg(test)]
mod tests {
    use super::super::delivery::{DeliveryRun, Latency};
    use super::super::memory::{Peaks, ProcessSample, Snapshot};
    use super::*;

    fn run(setup: Setup, delivered_s: f64, cpu_s: f64) -> DeliveryRun {
        let process = |daemon, rss_kib| ProcessSample {
            pid: 1,
            daemon,
            name: "proc".to_owned(),
            rss_kib,
            pss_kib: rss_kib / 2,
            cpu_s: 0.0,
        };
        let idle = Snapshot { processes: vec![process("couchmail", 10_240), process("Postfix", 20_480)] };
        let mut peaks = Peaks::default();
        peaks.record(&idle);
        DeliveryRun {
            setup,
            messages: 1000,
            sessions: 8,
            start_s: 3.0,
            source_s: delivered_s / 2.0,
            delivered_s,
            latency: Latency {
                n_deliveries: 1000,
                p50_ms: 10.0,
                p90_ms: 20.0,
                p99_ms: 30.0,
                max_ms: 40.0,
                parts_p50_ms: [1.0; 4],
            },
            light_latency: Latency {
                n_deliveries: 20,
                p50_ms: delivered_s,
                p90_ms: 6.0,
                p99_ms: 7.0,
                max_ms: 8.0,
                parts_p50_ms: [1.0; 4],
            },
            light_messages: 20,
            light_cpu_s: vec![("couchmail", cpu_s / 100.0), ("Postfix", cpu_s / 100.0)],
            not_in_inbox: 0,
            idle,
            peaks,
            cpu_s: vec![("couchmail", cpu_s / 2.0), ("Postfix", cpu_s / 2.0)],
            load_after: "1.00, 1.00, 1.00".to_owned(),
        }
    }

    #[test]
    fn the_headline_names_the_ratio_of_b_to_c() {
        let results = DeliveryResults {
            runs: vec![
                run(Setup::FullStack, 20.0, 8.0),
                run(Setup::NoSpam, 10.0, 4.0),
                run(Setup::StaticMaps, 8.0, 2.0),
            ],
            commands: vec!["/usr/sbin/smtp-source -s 2 -m 250 x".to_owned()],
            message_bytes: 700,
            message_header_lines: 11,
        };
        assert!((results.runs[1].delivered_per_s() - 100.0).abs() < 1e-9);
        let text = sections(&results, false, None);
        assert!(text.starts_with(DELIVERY_HEADING), "{text}");
        assert!(text.contains("(b) against (c): 0.80× the throughput (100.0 against 125.0 messages/s delivered under load), 2.00× the CPU per message (4.00 against 2.00 ms, one at a time), a message's own latency 10.0 against 8.0 ms"), "{text}");
        assert!(text.contains("| **total** |"), "{text}");
        assert!(text.contains("exceeds (c)'s by +2.00 ms, of which 2.00 ms is couchmail's own"), "{text}");
        assert!(text.contains("4 mailboxes get one `smtp-source` each"), "{text}");
    }

    #[test]
    fn delivery_sections_replace_older_ones_before_the_index_section() {
        let report = format!("# Benchmarks\n\n## Running it\n{NEXT_HEADING}\nindex\n");
        let first = format!("{DELIVERY_HEADING}\nfirst\n");
        let spliced = splice(&report, &first);
        assert_eq!(spliced, format!("# Benchmarks\n\n## Running it\n{first}{NEXT_HEADING}\nindex\n"));
        let again = splice(&spliced, &format!("{DELIVERY_HEADING}\nsecond\n"));
        assert!(again.contains("second") && !again.contains("first"), "{again}");
        assert!(again.ends_with(&format!("{NEXT_HEADING}\nindex\n")), "{again}");
    }
}
