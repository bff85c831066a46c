//! Project tasks, run as `cargo xtask <task>`: the README's two commands
//! (`run`, `test`) and the chores around them (`tidy`, `bench`).
//!
//! xtask is plain Rust so that the tasks work the same on a developer's
//! machine and in CI, with nothing but cargo installed.

mod bench;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const HELP: &str = "\
cargo xtask <task>

Tasks:
  run [ARGS…]   build couchmail (release) and run the whole stack locally:
                `couchmail up --dev` with the embedded store on loopback
  test          every check CI runs: formatting, clippy, tidy, all tests
  tidy          source rules: every .rs opens with //!, no #[ignore] or #[should_panic]
  bench         run the benchmarks and rewrite docs/benchmarks.md
";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let root = project_root();
    std::env::set_current_dir(&root).with_context(|| format!("cannot enter {}", root.display()))?;
    match task.as_str() {
        "run" => run(&rest),
        "test" => test(),
        "tidy" => tidy::check(&root),
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
    cmd.args(["run", "--release", "--locked", "--package", "couchmail", "--", "up", "--dev"]).args(args);
    exec(&mut cmd)
}

/// `cargo xtask test`: the README's second command, and all of CI.
fn test() -> Result<()> {
    exec(cargo().args(["fmt", "--all", "--", "--check"])).context("code is not formatted: run `cargo fmt --all`")?;
    tidy::check(&project_root())?;
    exec(cargo().args(["clippy", "--locked", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    exec(cargo().args(["test", "--locked", "--workspace", "--all-targets"]))?;
    exec(cargo().args(["test", "--locked", "--workspace", "--doc"]))?;
    Ok(())
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
