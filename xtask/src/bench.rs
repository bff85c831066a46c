//! `cargo xtask bench`: runs the benchmarks and rewrites docs/benchmarks.md.
//!
//! Performance is measured, never asserted in tests. This task builds the benchmark programs in release mode
//! (`couchmail-bench` from crates/bench, and the index crate's `index_bench` example), then hands over to
//! `couchmail-bench all`, which runs every measure of issues #2 to #6 beside its alternative in one run and
//! writes the report. couchmail itself is built in release mode too: issue #6's end-to-end delivery runs it with
//! `couchmail up` beside the same Postfix and Dovecot on static maps. It needs root, the Debian packages it
//! compares against (postfix, postfix-lmdb, postfix-pgsql, postgresql, dovecot-core, dovecot-auth-lua, the
//! SpamAssassin packages `couchmail up` runs), and pouchdb-server, the stand-in for CouchDB that
//! `cargo xtask packages` installs under /var/tmp/couchmail-pouchdb.
//!
//! ```text
//! cargo xtask bench            # everything (under fifteen minutes on two cores), rewrites docs/benchmarks.md
//! cargo xtask bench --quick    # small sizes, a smoke test of every step; prints the report instead
//! cargo xtask bench --out FILE # write the report elsewhere
//! cargo xtask bench --only-issue5 # only issue #5's policy and spamd measures, spliced into docs/benchmarks.md
//! cargo xtask bench --only-delivery # only issue #6's delivery and memory measures, spliced likewise
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

const USAGE: &str =
    "usage: cargo xtask bench [--quick] [--only-issue5 | --only-delivery] [--out FILE] [--work-dir DIR]";

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut quick = false;
    let mut only_issue5 = false;
    let mut only_delivery = false;
    let mut out: Option<PathBuf> = None;
    let mut work_dir: Option<PathBuf> = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--only-issue5" => only_issue5 = true,
            "--only-delivery" => only_delivery = true,
            "--out" => out = Some(PathBuf::from(args.next().context(USAGE)?)),
            "--work-dir" => work_dir = Some(PathBuf::from(args.next().context(USAGE)?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown option `{other}`\n{USAGE}"),
        }
    }
    if only_issue5 && only_delivery {
        bail!("--only-issue5 and --only-delivery exclude each other\n{USAGE}");
    }
    // A full run rewrites the committed report, and a run of one issue's measures alone splices into it; a quick
    // run only shows it, unless told where to write.
    if out.is_none() && (!quick || only_issue5) {
        out = Some(root.join("docs/benchmarks.md"));
    }

    crate::exec(crate::cargo().args(["build", "--release", "--locked", "--package", "couchmail-bench"]))?;
    crate::exec(crate::cargo().args([
        "build",
        "--release",
        "--locked",
        "--package",
        "couchmail",
        "--bin",
        "couchmail",
    ]))?;
    crate::exec(crate::cargo().args([
        "build",
        "--release",
        "--locked",
        "--package",
        "couchmail-index",
        "--example",
        "index_bench",
    ]))?;
    let release_dir = target_dir(root).join("release");

    let mut shown_command = String::from("cargo xtask bench");
    let mut bench = std::process::Command::new(release_dir.join("couchmail-bench"));
    bench.arg("all").arg("--index-bench").arg(release_dir.join("examples/index_bench"));
    bench.arg("--couchmail").arg(release_dir.join("couchmail"));
    if quick {
        bench.arg("--quick");
        shown_command.push_str(" --quick");
    }
    if only_issue5 {
        bench.arg("--only-issue5");
        shown_command.push_str(" --only-issue5");
    }
    if only_delivery {
        bench.arg("--only-delivery");
        shown_command.push_str(" --only-delivery");
    }
    if let Some(out) = &out {
        bench.arg("--out").arg(out);
    }
    if let Some(work_dir) = &work_dir {
        bench.arg("--work-dir").arg(work_dir);
    }
    bench.args(["--command", &shown_command]);
    crate::exec(&mut bench)
}

/// Where cargo puts build output: `CARGO_TARGET_DIR` when set (relative to the workspace root), else `target/`.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}
