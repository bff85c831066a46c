//! Project tasks, run as `cargo xtask <task>`: the README's two commands
//! (`run`, `test`) and the chores around them (`tidy`, `fuzz`, `bench`).
//!
//! xtask is plain Rust so that the tasks work the same on a developer's
//! machine and in CI, with nothing but cargo installed.

mod bench;
mod fuzz;
mod packages;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const HELP: &str = "\
cargo xtask <task>

Tasks:
  run [ARGS…]   build couchmail (release) and run the whole stack locally:
                `couchmail up --dev` with the embedded store on loopback
  test [--fuzz-seconds N]
                every check CI runs, in order: the Debian packages the tests
                need (installed when missing, as root), formatting, tidy,
                clippy, all tests (unit, integration, end-to-end, doc), then
                each fuzz target for N seconds (default 20; 0 skips)
  packages      install the Debian packages the tests need and create the
                vmail account (as root; the first step of `test`)
  tidy          source rules: every .rs opens with //!, no #[ignore] or #[should_panic]
  fuzz [--seconds N] [TARGET…]
                run the fuzz targets longer (default 300 s each) and rewrite
                docs/fuzzing.md with what they reached
  bench         run the benchmarks and rewrite docs/benchmarks.md

Environment:
  COUCHMAIL_TEST_RUNNER=cargo   use `cargo test` even when cargo-nextest is installed
";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let root = project_root();
    std::env::set_current_dir(&root).with_context(|| format!("cannot enter {}", root.display()))?;
    match task.as_str() {
        "run" => run(&rest),
        "test" => test(&root, &rest),
        "packages" => packages::ensure(),
        "tidy" => tidy::check(&root),
        "fuzz" => fuzz::long(&root, &rest),
        "bench" => bench::run(&root, &rest),
        "" | "help" | "-h" | "--help" => {
            print!("{HELP}");
            Ok(())
        }
        other => bail!("unknown task `{other}`\n\n{HELP}"),
    }
}

/// `cargo xtask run`: the README's first command.
fn run(args: &[String]) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["run", "--release", "--locked", "--package", "couchmail", "--", "up", "--dev"]);
    // `--dev` keeps its data in the checkout, which Postfix and Dovecot must be
    // able to enter; a checkout under a private home (root's is 0700) cannot be.
    let data_dir_chosen = std::env::var_os("COUCHMAIL_DATA_DIR").is_some()
        || args.iter().any(|arg| arg.starts_with("--data-dir") || arg.starts_with("--config"));
    if !data_dir_chosen && !others_can_enter(&project_root()) {
        eprintln!(
            "note: {} is private to its owner; keeping the data in {DEV_DATA_FALLBACK}",
            project_root().display()
        );
        cmd.args(["--data-dir", DEV_DATA_FALLBACK]);
    }
    cmd.args(args);
    exec(&mut cmd)
}

/// Where `cargo xtask run` keeps its data when the checkout is private.
const DEV_DATA_FALLBACK: &str = "/var/lib/couchmail-dev";

/// Whether every directory from `/` down to `dir` lets other users pass (o+x).
fn others_can_enter(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    dir.ancestors().all(|ancestor| std::fs::metadata(ancestor).is_ok_and(|meta| meta.permissions().mode() & 0o001 != 0))
}

/// `cargo xtask test`: the README's second command, and all of CI.
fn test(root: &Path, args: &[String]) -> Result<()> {
    let fuzz_seconds = parse_test_args(args)?;
    let mut steps = Steps::default();
    let result = run_test_steps(root, fuzz_seconds, &mut steps);
    steps.print_summary(&result);
    result
}

fn run_test_steps(root: &Path, fuzz_seconds: u64, steps: &mut Steps) -> Result<()> {
    steps.run("packages", packages::ensure)?;
    steps.run("fmt", || {
        exec(cargo().args(["fmt", "--all", "--", "--check"]))
            .and_then(|()| exec(cargo().args(["fmt", "--manifest-path", "fuzz/Cargo.toml", "--", "--check"])))
            .context("code is not formatted: run `cargo fmt --all` (and the same with --manifest-path fuzz/Cargo.toml)")
    })?;
    steps.run("tidy", || tidy::check(root))?;
    steps.run("clippy", || {
        exec(cargo().args(["clippy", "--locked", "--workspace", "--all-targets", "--", "-D", "warnings"]))
    })?;
    let runner = TestRunner::choose();
    steps.run(runner.step_name(), || exec(&mut runner.command()))?;
    steps.run("doc tests", || exec(cargo().args(["test", "--locked", "--workspace", "--doc"])))?;
    if fuzz_seconds == 0 {
        eprintln!("==> fuzz smoke: skipped (--fuzz-seconds 0)");
    } else {
        steps.run("fuzz smoke", || fuzz::smoke(root, fuzz_seconds))?;
    }
    Ok(())
}

fn parse_test_args(args: &[String]) -> Result<u64> {
    let mut fuzz_seconds = fuzz::DEFAULT_SMOKE_SECONDS;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = match arg.strip_prefix("--fuzz-seconds") {
            Some("") => args.next().context("--fuzz-seconds needs a number")?.as_str(),
            Some(rest) if rest.starts_with('=') => &rest[1..],
            _ => bail!("unknown argument `{arg}` for `cargo xtask test [--fuzz-seconds N]`"),
        };
        fuzz_seconds = value.parse().with_context(|| format!("`{value}` is not a number of seconds"))?;
    }
    Ok(fuzz_seconds)
}

/// How the workspace's tests run: cargo-nextest when installed (each test in its own process, and one closing
/// `N tests run: N passed, N failed` line for the whole workspace), else `cargo test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TestRunner {
    Nextest,
    CargoTest,
}

impl TestRunner {
    fn choose() -> TestRunner {
        if std::env::var("COUCHMAIL_TEST_RUNNER").is_ok_and(|runner| runner == "cargo") {
            return TestRunner::CargoTest;
        }
        let nextest_installed = cargo()
            .args(["nextest", "--version"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if nextest_installed { TestRunner::Nextest } else { TestRunner::CargoTest }
    }

    fn step_name(self) -> &'static str {
        match self {
            TestRunner::Nextest => "tests (nextest)",
            TestRunner::CargoTest => "tests (cargo test)",
        }
    }

    /// Every target of every crate (unit, integration and end-to-end tests, and the tests inside examples and
    /// benches), running on after a failure so that one CI run shows every failing test.
    fn command(self) -> Command {
        let mut command = cargo();
        match self {
            TestRunner::Nextest => command.args(["nextest", "run"]),
            TestRunner::CargoTest => command.arg("test"),
        };
        command.args(["--locked", "--workspace", "--all-targets", "--no-fail-fast"]);
        command
    }
}

/// The steps of `cargo xtask test` and how long each took, for the closing summary.
#[derive(Default)]
struct Steps {
    started: Option<Instant>,
    finished: Vec<(&'static str, Duration)>,
    failed: Option<&'static str>,
}

impl Steps {
    fn run(&mut self, name: &'static str, step: impl FnOnce() -> Result<()>) -> Result<()> {
        eprintln!("==> {name}");
        let started = Instant::now();
        self.started.get_or_insert(started);
        let result = step();
        match &result {
            Ok(()) => self.finished.push((name, started.elapsed())),
            Err(_) => self.failed = Some(name),
        }
        result.with_context(|| format!("step `{name}` failed"))
    }

    fn print_summary(&self, result: &Result<()>) {
        let total = self.started.map(|started| started.elapsed()).unwrap_or_default();
        let verdict = if result.is_ok() { "passed" } else { "FAILED" };
        eprintln!("==> cargo xtask test {verdict} in {}", shown_duration(total));
        for (name, took) in &self.finished {
            eprintln!("    {name:<20} {:>8}", shown_duration(*took));
        }
        if let Some(name) = self.failed {
            eprintln!("    {name:<20} failed");
        }
    }
}

fn shown_duration(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else {
        format!("{}m{:02}s", duration.as_secs() / 60, duration.as_secs() % 60)
    }
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs `cmd`, echoing it, and fails if it fails.
fn exec(cmd: &mut Command) -> Result<()> {
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
    );
    eprintln!("$ {shown}");
    let status = cmd.status().with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| arg.to_string()).collect()
    }

    #[test]
    fn test_arguments() {
        assert_eq!(parse_test_args(&[]).unwrap(), fuzz::DEFAULT_SMOKE_SECONDS);
        assert_eq!(parse_test_args(&strings(&["--fuzz-seconds", "3"])).unwrap(), 3);
        assert_eq!(parse_test_args(&strings(&["--fuzz-seconds=0"])).unwrap(), 0);
        assert!(parse_test_args(&strings(&["--fuzz-seconds"])).is_err());
        assert!(parse_test_args(&strings(&["--fuzz-seconds", "x"])).is_err());
        assert!(parse_test_args(&strings(&["--fuzz-secondsx"])).is_err());
        assert!(parse_test_args(&strings(&["--quick"])).is_err());
    }

    #[test]
    fn both_runners_cover_every_target_of_the_workspace() {
        for runner in [TestRunner::Nextest, TestRunner::CargoTest] {
            let args: Vec<String> = runner.command().get_args().map(|arg| arg.to_string_lossy().into_owned()).collect();
            for wanted in ["--locked", "--workspace", "--all-targets"] {
                assert!(args.iter().any(|arg| arg == wanted), "{runner:?} lacks {wanted}: {args:?}");
            }
        }
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(shown_duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(shown_duration(Duration::from_secs(372)), "6m12s");
    }
}
