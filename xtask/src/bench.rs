//! `cargo xtask bench`: runs the benchmarks and rewrites docs/benchmarks.md.

use std::path::Path;

use anyhow::Result;

pub fn run(_root: &Path, _args: &[String]) -> Result<()> {
    anyhow::bail!("not wired yet")
}
