//! Source rules that neither rustfmt nor clippy check (STYLE.md 11 and 28).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Fails listing every violation: a `.rs` file that does not open with a
/// `//!` comment, or a test that is ignored or expected to panic.
pub fn check(root: &Path) -> Result<()> {
    let mut files = Vec::new();
    // fuzz/ is outside the workspace, so clippy never sees it, but its targets follow the same rules.
    for dir in ["crates", "xtask", "fuzz"] {
        collect_rust_files(&root.join(dir), &mut files)?;
    }
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
        let shown = file.strip_prefix(root).unwrap_or(file).display();
        if !text.trim_start().starts_with("//!") {
            problems.push(format!("{shown}: does not open with a `//!` comment saying what it is for"));
        }
        for (line_idx, line) in text.lines().enumerate() {
            for banned in ["#[ignore", "#[should_panic"] {
                if line.trim_start().starts_with(banned) {
                    problems.push(format!(
                        "{shown}:{}: `{banned}]`: assert today's behaviour and add a FIXME instead",
                        line_idx + 1
                    ));
                }
            }
        }
    }
    if !problems.is_empty() {
        bail!("tidy found {} problem(s):\n  {}", problems.len(), problems.join("\n  "));
    }
    eprintln!("tidy: {} files ok", files.len());
    Ok(())
}

fn collect_rust_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            // A crate's own `fuzz` directory would be a separate project; the checked root `fuzz/` is passed directly.
            if path.file_name().is_some_and(|n| n == "target" || n == "fuzz") {
                continue;
            }
            collect_rust_files(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    Ok(())
}
