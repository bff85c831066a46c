//! Fuzzing on stable Rust: builds the cargo-fuzz project in `fuzz/` with libFuzzer's coverage instrumentation and
//! runs each target for a bounded time.
//!
//! `cargo xtask test` runs every target briefly (the smoke run CI relies on); `cargo xtask fuzz` runs longer and
//! records the result in docs/fuzzing.md. cargo-fuzz itself needs nightly only for `-Zsanitizer`; the coverage
//! passes libFuzzer needs are stable codegen options, so CI needs nothing beyond stable cargo and a C++ compiler.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The coverage instrumentation libFuzzer steers by, as cargo-fuzz passes it (minus the nightly-only sanitizer).
const INSTRUMENTATION_RUSTFLAGS: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "--cfg",
    "fuzzing",
];

/// The memory a target may use before libFuzzer calls it an out-of-memory finding.
const RSS_LIMIT_MB: u32 = 2048;

/// The time one input may take before libFuzzer calls it a timeout finding; our parsers are linear, so seconds
/// mean a loop.
const UNIT_TIMEOUT_SECONDS: u32 = 10;

/// How long past `-max_total_time` a fuzzer may keep running (finishing a slow unit, writing its corpus) before it
/// is killed, so that CI stays bounded whatever the fuzzer does.
const GRACE: Duration = Duration::from_secs(60);

/// The default length of `cargo xtask fuzz`, per target.
pub const DEFAULT_LONG_SECONDS: u64 = 300;

/// The default length of the smoke run in `cargo xtask test`, per target.
pub const DEFAULT_SMOKE_SECONDS: u64 = 20;

const DOC_PATH: &str = "docs/fuzzing.md";
const TABLE_BEGIN: &str = "<!-- fuzz-results: begin (rewritten by `cargo xtask fuzz`) -->";
const TABLE_END: &str = "<!-- fuzz-results: end -->";
const NOTES_BEGIN: &str = "<!-- fuzz-notes: begin (written by hand, kept by `cargo xtask fuzz`) -->";
const NOTES_END: &str = "<!-- fuzz-notes: end -->";
/// What the notes say until someone writes them.
const DEFAULT_NOTES: &str = "No finding so far.";
const TABLE_HEADER: &str = "| Target | Seconds | Executions | Executions/s | Coverage (edges) | Corpus (inputs) | Findings | Date |\n\
                            |---|--:|--:|--:|--:|--:|---|---|";

/// One fuzz target: a file `fuzz/fuzz_targets/<name>.rs` and a `[[bin]]` of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    /// The first line of the target's `//!` comment, without its "Fuzz target: " prefix.
    pub summary: String,
}

/// What one bounded run of one target reached.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    pub executions: Option<u64>,
    pub executions_per_second: Option<u64>,
    pub coverage: Option<u64>,
    pub corpus_inputs: Option<u64>,
    pub findings: Vec<Finding>,
}

/// An input libFuzzer saved because it crashed, hung or exhausted memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `crash`, `timeout`, `oom`, `leak` or `slow-unit`, from the artifact's file name.
    pub kind: String,
    pub artifact: PathBuf,
    /// The panic message, when the target panicked.
    pub message: Option<String>,
}

struct TargetReport {
    target: Target,
    seconds: u64,
    outcome: Outcome,
    binary: PathBuf,
    log: PathBuf,
}

/// `cargo xtask test`'s fuzz step: every target for `seconds`; fails on any finding.
pub fn smoke(root: &Path, seconds: u64) -> Result<()> {
    let targets = targets(root)?;
    let reports = build_and_run(root, &targets, seconds)?;
    fail_on_findings(&reports)
}

/// `cargo xtask fuzz [--seconds N] [TARGET…]`: the longer run; rewrites docs/fuzzing.md from what it reached.
pub fn long(root: &Path, args: &[String]) -> Result<()> {
    let (seconds, names) = parse_long_args(args)?;
    let all_targets = targets(root)?;
    let chosen = if names.is_empty() {
        all_targets.clone()
    } else {
        let mut chosen = Vec::new();
        for name in &names {
            let Some(target) = all_targets.iter().find(|target| &target.name == name) else {
                let known: Vec<&str> = all_targets.iter().map(|target| target.name.as_str()).collect();
                bail!("no fuzz target `{name}`; the targets are: {}", known.join(", "));
            };
            chosen.push(target.clone());
        }
        chosen
    };
    let reports = build_and_run(root, &chosen, seconds)?;
    write_doc(root, &all_targets, &reports)?;
    fail_on_findings(&reports)
}

fn parse_long_args(args: &[String]) -> Result<(u64, Vec<String>)> {
    let mut seconds = DEFAULT_LONG_SECONDS;
    let mut names = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        // `--time` is the same option under the name libFuzzer's `-max_total_time` suggests.
        if arg == "--seconds" || arg == "--time" {
            let value = args.next().with_context(|| format!("{arg} needs a number"))?;
            seconds = parse_seconds(value)?;
        } else if let Some(value) = arg.strip_prefix("--seconds=").or_else(|| arg.strip_prefix("--time=")) {
            seconds = parse_seconds(value)?;
        } else if arg.starts_with('-') {
            bail!("unknown option `{arg}` for `cargo xtask fuzz [--seconds N] [TARGET…]`");
        } else {
            names.push(arg.clone());
        }
    }
    Ok((seconds, names))
}

/// Reads a positive number of seconds.
pub fn parse_seconds(value: &str) -> Result<u64> {
    let seconds: u64 = value.parse().with_context(|| format!("`{value}` is not a number of seconds"))?;
    if seconds == 0 {
        bail!("fuzzing for 0 seconds would run nothing");
    }
    Ok(seconds)
}

/// The targets, found from `fuzz/fuzz_targets/*.rs` so that a new target needs no change here.
pub fn targets(root: &Path) -> Result<Vec<Target>> {
    let dir = root.join("fuzz/fuzz_targets");
    let mut targets = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_none_or(|extension| extension != "rs") {
            continue;
        }
        let name = path.file_stem().and_then(|stem| stem.to_str()).context("a fuzz target's name is not UTF-8")?;
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let summary = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("//!"))
            .map(|line| line.trim().trim_start_matches("Fuzz target:").trim().to_owned())
            .unwrap_or_default();
        targets.push(Target { name: name.to_owned(), summary });
    }
    targets.sort_by(|left, right| left.name.cmp(&right.name));
    if targets.is_empty() {
        bail!("no fuzz targets in {}", dir.display());
    }
    Ok(targets)
}

/// Where fuzzing keeps its build, corpora, artifacts and logs: beside the main build, never inside the checkout's
/// sources, and in a directory of its own because the instrumentation flags would otherwise invalidate the main
/// build cache.
fn work_dir(root: &Path) -> PathBuf {
    let main_target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let main_target = if main_target.is_absolute() { main_target } else { root.join(main_target) };
    main_target.join("fuzz")
}

fn build_and_run(root: &Path, targets: &[Target], seconds: u64) -> Result<Vec<TargetReport>> {
    let work_dir = work_dir(root);
    let binaries = build(root, &work_dir, targets)?;
    let mut reports = Vec::new();
    for (target, binary) in targets.iter().zip(&binaries) {
        reports.push(run_target(&work_dir, target, binary, seconds)?);
    }
    eprintln!("fuzz: summary ({seconds} s per target)");
    for report in &reports {
        eprintln!("  {}", report_line(report));
    }
    Ok(reports)
}

/// Builds the targets in release mode (debug assertions on, from fuzz/Cargo.toml) for the host triple, so that
/// build scripts and proc-macros, which run on the host without `--target`'s flags, are not instrumented.
fn build(root: &Path, work_dir: &Path, targets: &[Target]) -> Result<Vec<PathBuf>> {
    let host = host_triple()?;
    let lock_path = root.join("fuzz/Cargo.lock");
    let lock_before = std::fs::read(&lock_path).ok();
    let mut command = crate::cargo();
    command
        .args(["build", "--release", "--manifest-path", "fuzz/Cargo.toml", "--target", &host])
        .args(targets.iter().flat_map(|target| ["--bin", target.name.as_str()]))
        .env("CARGO_TARGET_DIR", work_dir)
        .env("RUSTFLAGS", INSTRUMENTATION_RUSTFLAGS.join(" "))
        // The encoded form takes precedence over RUSTFLAGS, so one inherited from the caller would drop ours.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS");
    let n_targets = targets.len();
    eprintln!("fuzz: building {n_targets} target(s) in {} with the coverage instrumentation", work_dir.display());
    crate::exec(&mut command).context("cannot build the fuzz targets")?;
    // The fuzz project is not in the workspace, so a dependency added to a fuzzed crate reaches its lock file only
    // here; say so rather than let the change go unnoticed.
    if std::fs::read(&lock_path).ok() != lock_before {
        eprintln!("fuzz: note: cargo updated fuzz/Cargo.lock; commit it");
    }
    Ok(targets.iter().map(|target| work_dir.join(&host).join("release").join(&target.name)).collect())
}

fn host_triple() -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(rustc).arg("-vV").stdin(Stdio::null()).output().context("cannot run rustc -vV")?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV did not name the host triple")
}

fn run_target(work_dir: &Path, target: &Target, binary: &Path, seconds: u64) -> Result<TargetReport> {
    let corpus = work_dir.join("corpus").join(&target.name);
    let artifacts = work_dir.join("artifacts").join(&target.name);
    let logs = work_dir.join("logs");
    for dir in [&corpus, &artifacts, &logs] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let log = logs.join(format!("{}.log", target.name));
    let log_file = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut artifact_prefix = artifacts.into_os_string();
    artifact_prefix.push("/");

    let mut command = Command::new(binary);
    command
        .arg(&corpus)
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-timeout={UNIT_TIMEOUT_SECONDS}"))
        .arg("-print_final_stats=1")
        .arg({
            let mut arg = std::ffi::OsString::from("-artifact_prefix=");
            arg.push(&artifact_prefix);
            arg
        })
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().context("cannot share the fuzz log")?)
        .stderr(log_file);
    eprintln!("fuzz: running {} for {seconds} s (corpus {}, log {})", target.name, corpus.display(), log.display());
    let started = Instant::now();
    let mut child = command.spawn().with_context(|| format!("cannot start {}", binary.display()))?;
    let deadline = Duration::from_secs(seconds) + GRACE;
    let status = loop {
        if let Some(status) = child.try_wait().context("cannot wait for the fuzzer")? {
            break status;
        }
        if started.elapsed() > deadline {
            // Killing our own child by handle; libFuzzer has no children of its own in this mode.
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{} ran {} s past its {seconds} s limit and was killed; see {}",
                target.name,
                GRACE.as_secs(),
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&log).with_context(|| format!("cannot read {}", log.display()))?;
    let outcome = parse_log(&text);
    if !status.success() && outcome.findings.is_empty() {
        let (name, shown_log, last_lines) = (&target.name, log.display(), tail(&text, 30));
        bail!("{name} exited with {status} without saving an input; last lines of {shown_log}:\n{last_lines}");
    }
    let report = TargetReport { target: target.clone(), seconds, outcome, binary: binary.to_path_buf(), log };
    eprintln!("fuzz: {}", report_line(&report));
    if !report.outcome.findings.is_empty() {
        eprintln!("fuzz: last lines of {}:\n{}", report.log.display(), tail(&text, 15));
    }
    Ok(report)
}

/// Reads what libFuzzer printed: the final statistics (`-print_final_stats=1`), the last status line (coverage and
/// corpus size), every saved input, and the panic message if the target panicked.
pub fn parse_log(text: &str) -> Outcome {
    let stat = |name: &str| {
        text.lines()
            .rev()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim_start_matches(':').trim().parse().ok())
    };
    let last_status = text.lines().rev().find(|line| line.starts_with('#') && line.contains(" cov: "));
    let status_field = |name: &str| {
        let line = last_status?;
        let mut words = line.split_whitespace();
        words.find(|word| *word == name)?;
        let value = words.next()?;
        // `corp: 69/636b` counts inputs before the slash.
        value.split('/').next()?.parse().ok()
    };
    let message = panic_message(text);
    let findings = text
        .lines()
        .filter_map(|line| line.split_once("Test unit written to ").map(|(_, path)| path.trim()))
        .map(|path| {
            let artifact = PathBuf::from(path);
            let kind = artifact
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.split_once('-'))
                .map(|(kind, _)| kind.to_owned())
                .unwrap_or_else(|| "unknown".to_owned());
            Finding { message: if kind == "crash" { message.clone() } else { None }, kind, artifact }
        })
        .collect();
    Outcome {
        executions: stat("stat::number_of_executed_units"),
        executions_per_second: stat("stat::average_exec_per_sec"),
        coverage: status_field("cov:"),
        corpus_inputs: status_field("corp:"),
        findings,
    }
}

/// The first panic in the log, as "<message> (at <location>)": Rust prints `thread '<name>' [(<id>)] panicked at
/// <location>:` and the message on the next line.
fn panic_message(text: &str) -> Option<String> {
    let mut lines = text.lines();
    let location = lines.find_map(|line| {
        let (_, location) = line.strip_prefix("thread '")?.split_once(" panicked at ")?;
        Some(location.trim().trim_end_matches(':').to_owned())
    })?;
    let message = lines.next().map(str::trim).filter(|line| !line.is_empty()).unwrap_or("(no message)");
    Some(format!("{message} (at {location})"))
}

fn tail(text: &str, n_lines: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n_lines)..].join("\n")
}

fn report_line(report: &TargetReport) -> String {
    let outcome = &report.outcome;
    let mut line = format!("{}: {} s, {} executions", report.target.name, report.seconds, shown(outcome.executions));
    if let Some(per_second) = outcome.executions_per_second {
        let _ = write!(line, " ({per_second}/s)");
    }
    let _ = write!(line, ", coverage {} edges, corpus {}", shown(outcome.coverage), shown(outcome.corpus_inputs));
    if outcome.findings.is_empty() {
        line.push_str(", no findings");
    }
    for finding in &outcome.findings {
        let _ = write!(line, "\n    {} input saved at {}", finding.kind, finding.artifact.display());
        if let Some(message) = &finding.message {
            let _ = write!(line, "\n    panic: {message}");
        }
    }
    line
}

fn shown(value: Option<u64>) -> String {
    value.map_or_else(|| "?".to_owned(), |value| value.to_string())
}

fn fail_on_findings(reports: &[TargetReport]) -> Result<()> {
    let failed: Vec<&TargetReport> = reports.iter().filter(|report| !report.outcome.findings.is_empty()).collect();
    if failed.is_empty() {
        return Ok(());
    }
    let mut message = String::from("fuzzing found inputs that break a target:");
    for report in failed {
        for finding in &report.outcome.findings {
            let artifact = finding.artifact.display();
            let _ = write!(message, "\n  {}: {} input saved at {artifact}", report.target.name, finding.kind);
            if let Some(panic) = &finding.message {
                let _ = write!(message, "\n    panic: {panic}");
            }
        }
        let (binary, log) = (report.binary.display(), report.log.display());
        let _ = write!(message, "\n  replay an input with: {binary} <input>\n  full log: {log}");
    }
    bail!(message)
}

/// Rewrites docs/fuzzing.md: the fixed text with the target list, and the results table, where rows of targets not
/// run this time are kept from the previous file.
fn write_doc(root: &Path, all_targets: &[Target], reports: &[TargetReport]) -> Result<()> {
    let path = root.join(DOC_PATH);
    let previous = std::fs::read_to_string(&path).unwrap_or_default();
    let date = today()?;
    let machine = machine_description()?;
    let mut rows = Vec::new();
    for target in all_targets {
        if let Some(report) = reports.iter().find(|report| report.target.name == target.name) {
            rows.push(table_row(report, &date));
        } else if let Some(row) = previous_row(&previous, &target.name) {
            rows.push(row);
        }
    }
    let notes = previous_notes(&previous).unwrap_or(DEFAULT_NOTES);
    let text = render_doc(all_targets, &rows, &machine, notes);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("fuzz: wrote {DOC_PATH}");
    Ok(())
}

fn table_row(report: &TargetReport, date: &str) -> String {
    let outcome = &report.outcome;
    let findings = if outcome.findings.is_empty() {
        "none".to_owned()
    } else {
        outcome
            .findings
            .iter()
            .map(|finding| match &finding.message {
                Some(message) => format!("{}: {}", finding.kind, message.replace('|', "\\|")),
                None => finding.kind.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    format!(
        "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
        report.target.name,
        report.seconds,
        shown(outcome.executions),
        shown(outcome.executions_per_second),
        shown(outcome.coverage),
        shown(outcome.corpus_inputs),
        findings,
        date
    )
}

fn previous_row(previous: &str, name: &str) -> Option<String> {
    let prefix = format!("| `{name}` |");
    previous.lines().find(|line| line.starts_with(&prefix)).map(str::to_owned)
}

/// The hand-written notes of the previous file (the commands of long runs, findings and their fixes), between
/// their markers.
fn previous_notes(previous: &str) -> Option<&str> {
    let (_, rest) = previous.split_once(NOTES_BEGIN)?;
    let (notes, _) = rest.split_once(NOTES_END)?;
    Some(notes.trim())
}

fn render_doc(targets: &[Target], rows: &[String], machine: &str, notes: &str) -> String {
    let mut text = String::from(
        "# Fuzzing\n\
         \n\
         The parsers that read bytes from peers are fuzzed with libFuzzer, one target per parser (the list below is \
         every file in `fuzz/fuzz_targets/`, which `cargo xtask fuzz` and `cargo xtask test` run without being told).\n\
         Every target asserts more than \"no panic\": encodings round-trip, stream splitting does not change the \
         result, and accepted names follow the rule stated in the target.\n\
         \n\
         ## Targets\n\
         \n",
    );
    for target in targets {
        let _ = writeln!(text, "- `{}` (`fuzz/fuzz_targets/{}.rs`): {}", target.name, target.name, target.summary);
    }
    let _ = write!(
        text,
        "\n\
         ## Running\n\
         \n\
         ```sh\n\
         cargo xtask fuzz                          # every target, {DEFAULT_LONG_SECONDS} s each; rewrites the table below\n\
         cargo xtask fuzz --seconds 60 socketmap   # one target, one minute (`--time` is the same option)\n\
         nice -n 19 cargo xtask fuzz --time 180    # a long run that leaves the machine to other work\n\
         cargo xtask test                          # CI: every target {DEFAULT_SMOKE_SECONDS} s after the tests \
         (`--fuzz-seconds N` to change)\n\
         ```\n\
         \n\
         This works on stable Rust: xtask builds `fuzz/` (a cargo-fuzz project outside the workspace) with the same \
         coverage instrumentation cargo-fuzz passes (`{}`), for the host triple so that build scripts and proc-macros \
         stay uninstrumented, in release mode with debug assertions and overflow checks on.\n\
         Only AddressSanitizer (`-Zsanitizer`) needs nightly; our crates forbid `unsafe`, so it would mostly check \
         dependencies.\n\
         `cargo fuzz run <target>` works too, on nightly.\n\
         \n\
         Everything lives under `$CARGO_TARGET_DIR/fuzz/` (default `target/fuzz/`), not in git: the build, \
         `corpus/<target>/` (kept between runs, so each run starts where the last stopped), \
         `artifacts/<target>/` (inputs that crashed, hung for over {UNIT_TIMEOUT_SECONDS} s or used over \
         {RSS_LIMIT_MB} MB) and `logs/<target>.log`.\n\
         A finding fails the command and prints the saved input's path; replay it with \
         `$CARGO_TARGET_DIR/fuzz/<host triple>/release/<target> <input>`.\n\
         \n\
         ## Last run\n\
         \n\
         Figures from `cargo xtask fuzz` on {machine}.\n\
         Executions are libFuzzer's `stat::number_of_executed_units`; coverage and corpus are from its last status line.\n\
         \n",
        INSTRUMENTATION_RUSTFLAGS.join(" ")
    );
    let _ = writeln!(text, "{TABLE_BEGIN}\n{TABLE_HEADER}");
    for row in rows {
        let _ = writeln!(text, "{row}");
    }
    let _ = writeln!(text, "{TABLE_END}");
    let _ = writeln!(text, "\n## Long runs and findings\n\n{NOTES_BEGIN}\n{notes}\n{NOTES_END}");
    text
}

fn today() -> Result<String> {
    let output = Command::new("date").arg("+%Y-%m-%d").stdin(Stdio::null()).output().context("cannot run date")?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The CPU model, core count and compiler, so that executions per second can be compared across runs.
fn machine_description() -> Result<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "an unknown CPU".to_owned());
    let n_cores = std::thread::available_parallelism().map_or(1, usize::from);
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(rustc).arg("--version").stdin(Stdio::null()).output().context("cannot run rustc")?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    Ok(format!("{model}, {n_cores} cores, {version}, one target at a time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAN_LOG: &str = "\
INFO: Running with entropic power schedule (0xFF, 100).
#2\tINITED cov: 12 ft: 13 corp: 1/1b exec/s: 0 rss: 26Mb
#109741\tREDUCE cov: 158 ft: 514 corp: 69/672b lim: 967 exec/s: 109741 rss: 27Mb L: 26/142 MS: 2 CrossOver-
#324083\tDONE   cov: 158 ft: 514 corp: 69/636b lim: 3040 exec/s: 54013 rss: 27Mb
Done 324083 runs in 6 second(s)
stat::number_of_executed_units: 324083
stat::average_exec_per_sec:     54013
stat::new_units_added:          116
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              27
";

    const CRASH_LOG: &str = "\
#1000\tNEW    cov: 40 ft: 41 corp: 5/20b lim: 4 exec/s: 0 rss: 26Mb L: 4/4 MS: 1 ChangeBit-

thread '<unnamed>' (4242) panicked at fuzz_targets/dovecot_auth.rs:20:5:
decode_user disagrees with the rule for \"a@b|c\"
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
==4242== ERROR: libFuzzer: deadly signal
MS: 1 ChangeBit-; base unit: 0000
0x61,0x40,0x62,
a@b
artifact_prefix='/var/tmp/t/fuzz/artifacts/dovecot_auth/'; \
Test unit written to /var/tmp/t/fuzz/artifacts/dovecot_auth/crash-86f7e437faa5a7fce15d1ddcb9eaeaea377667b8
Base64: YUBi
";

    #[test]
    fn a_clean_run_reports_its_final_statistics() {
        let outcome = parse_log(CLEAN_LOG);
        assert_eq!(
            outcome,
            Outcome {
                executions: Some(324_083),
                executions_per_second: Some(54_013),
                coverage: Some(158),
                corpus_inputs: Some(69),
                findings: Vec::new(),
            }
        );
    }

    #[test]
    fn a_crash_reports_the_saved_input_and_the_panic() {
        let outcome = parse_log(CRASH_LOG);
        assert_eq!(outcome.executions, None);
        assert_eq!(outcome.coverage, Some(40));
        assert_eq!(
            outcome.findings,
            [Finding {
                kind: "crash".to_owned(),
                artifact: PathBuf::from(
                    "/var/tmp/t/fuzz/artifacts/dovecot_auth/crash-86f7e437faa5a7fce15d1ddcb9eaeaea377667b8"
                ),
                message: Some(
                    "decode_user disagrees with the rule for \"a@b|c\" (at fuzz_targets/dovecot_auth.rs:20:5)"
                        .to_owned()
                ),
            }]
        );
    }

    #[test]
    fn a_timeout_is_a_finding_without_a_panic() {
        let log = "ALARM: working on the last Unit for 10 seconds\n\
                   artifact_prefix='a/'; Test unit written to a/timeout-0123\n";
        let outcome = parse_log(log);
        assert_eq!(outcome.findings.len(), 1);
        assert_eq!(outcome.findings[0].kind, "timeout");
        assert_eq!(outcome.findings[0].message, None);
    }

    #[test]
    fn panics_are_read_with_or_without_a_thread_id() {
        assert_eq!(
            panic_message("thread 'main' panicked at src/x.rs:1:2:\nboom\n").as_deref(),
            Some("boom (at src/x.rs:1:2)")
        );
        assert_eq!(
            panic_message("thread '<unnamed>' (7) panicked at src/y.rs:3:4:\nbang\n").as_deref(),
            Some("bang (at src/y.rs:3:4)")
        );
        assert_eq!(panic_message("thread 'main' (7) is fine\n"), None);
    }

    #[test]
    fn long_run_arguments() {
        let args = |list: &[&str]| list.iter().map(|arg| arg.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_long_args(&[]).unwrap(), (DEFAULT_LONG_SECONDS, Vec::new()));
        assert_eq!(
            parse_long_args(&args(&["--seconds", "60", "socketmap"])).unwrap(),
            (60, vec!["socketmap".to_owned()])
        );
        assert_eq!(parse_long_args(&args(&["--seconds=5"])).unwrap(), (5, Vec::new()));
        assert_eq!(parse_long_args(&args(&["--time", "180"])).unwrap(), (180, Vec::new()));
        assert_eq!(parse_long_args(&args(&["--time=7", "a", "b"])).unwrap(), (7, vec!["a".to_owned(), "b".to_owned()]));
        assert!(parse_long_args(&args(&["--time"])).is_err());
        assert!(parse_long_args(&args(&["--seconds"])).is_err());
        assert!(parse_long_args(&args(&["--seconds", "0"])).is_err());
        assert!(parse_long_args(&args(&["--minutes", "1"])).is_err());
    }

    #[test]
    fn the_doc_keeps_rows_of_targets_not_run() {
        let targets = vec![
            Target { name: "alpha".to_owned(), summary: "first".to_owned() },
            Target { name: "beta".to_owned(), summary: "second".to_owned() },
        ];
        let old_rows = vec!["| `alpha` | 60 | 1 | 1 | 1 | 1 | none | 2000-01-01 |".to_owned()];
        let previous = render_doc(&targets, &old_rows, "a machine", "Ran for a week.\n\nFound nothing.");
        assert_eq!(previous_row(&previous, "alpha").as_deref(), Some(old_rows[0].as_str()));
        assert_eq!(previous_notes(&previous), Some("Ran for a week.\n\nFound nothing."));
        assert_eq!(previous_notes("# Fuzzing\nno markers\n"), None);
        assert_eq!(previous_row(&previous, "beta"), None);
        let report = TargetReport {
            target: targets[1].clone(),
            seconds: 5,
            outcome: parse_log(CLEAN_LOG),
            binary: PathBuf::from("beta"),
            log: PathBuf::from("beta.log"),
        };
        assert_eq!(table_row(&report, "2000-01-02"), "| `beta` | 5 | 324083 | 54013 | 158 | 69 | none | 2000-01-02 |");
    }

    #[test]
    fn every_target_file_is_found_and_has_a_bin() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let names: Vec<String> = targets(root).unwrap().into_iter().map(|target| target.name).collect();
        // New targets join without a change here; these four must stay.
        for expected in ["dovecot_auth", "dovecot_dict", "postfix_policy", "socketmap"] {
            assert!(names.iter().any(|name| name == expected), "{expected} is missing from {names:?}");
        }
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "targets run in name order");
        let manifest = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap();
        for name in &names {
            assert!(manifest.contains(&format!("name = \"{name}\"")), "fuzz/Cargo.toml has no [[bin]] {name}");
        }
    }
}
