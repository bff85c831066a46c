//! Issue #2's measures: index build time and resident memory per size, and write-to-index propagation on SQLite.
//!
//! Both come from the index crate's own benchmark program (crates/index/examples/index_bench.rs), run once per
//! size in a process of its own so that each resident-memory figure belongs to one size alone; each size runs
//! with glibc's default malloc arenas and with `MALLOC_ARENA_MAX=2`.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::Value;

use super::process::{output, shown};

/// One `index_bench build` run.
#[derive(Debug, Clone)]
pub struct BuildRun {
    pub mailboxes: usize,
    pub malloc_arena_max: Option<&'static str>,
    /// The whole process, populating the store included.
    pub process_wall_s: f64,
    pub result: Value,
}

/// One `index_bench propagate` run.
#[derive(Debug, Clone)]
pub struct PropagateRun {
    pub result: Value,
}

/// What issue #2's benchmark measured, with the commands it ran.
#[derive(Debug, Clone, Default)]
pub struct IndexResults {
    pub builds: Vec<BuildRun>,
    pub propagate: Option<PropagateRun>,
    pub commands: Vec<String>,
}

pub fn run(
    index_bench: &Path,
    work_dir: &Path,
    sizes: &[usize],
    propagate_samples: usize,
    propagate_mailboxes: usize,
) -> Result<IndexResults> {
    let mut results = IndexResults::default();
    for &mailboxes in sizes {
        for malloc_arena_max in [None, Some("2")] {
            let mut command = Command::new(index_bench);
            command.args(["build", "--mailboxes", &mailboxes.to_string(), "--dir"]).arg(work_dir);
            command.env_remove("MALLOC_ARENA_MAX");
            if let Some(arenas) = malloc_arena_max {
                command.env("MALLOC_ARENA_MAX", arenas);
            }
            let shown_command = match malloc_arena_max {
                Some(arenas) => format!("MALLOC_ARENA_MAX={arenas} {}", shown(&command)),
                None => shown(&command),
            };
            eprintln!("bench: {shown_command}");
            let started = Instant::now();
            let result = json_line(&mut command)?;
            let process_wall_s = started.elapsed().as_secs_f64();
            results.commands.push(shown_command);
            results.builds.push(BuildRun { mailboxes, malloc_arena_max, process_wall_s, result });
        }
    }
    let mut command = Command::new(index_bench);
    command
        .args(["propagate", "--samples", &propagate_samples.to_string()])
        .args(["--mailboxes", &propagate_mailboxes.to_string(), "--dir"])
        .arg(work_dir);
    eprintln!("bench: {}", shown(&command));
    results.commands.push(shown(&command));
    results.propagate = Some(PropagateRun { result: json_line(&mut command)? });
    Ok(results)
}

/// Runs `command` and parses the last line of its stdout as JSON.
fn json_line(command: &mut Command) -> Result<Value> {
    let shown_command = shown(command);
    let output = output(command)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().rev().find(|line| line.trim_start().starts_with('{'));
    let line = line.with_context(|| format!("`{shown_command}` printed no JSON line: {stdout}"))?;
    serde_json::from_str(line).with_context(|| format!("`{shown_command}` printed `{line}`"))
}
