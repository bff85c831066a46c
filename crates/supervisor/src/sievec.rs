//! Sieve scripts checked by Pigeonhole's own compiler, `sievec`.
//!
//! Pigeonhole is what runs the scripts at delivery, so its compiler is the
//! authority on what is valid (DESIGN.md §3); a script it refuses is never
//! stored. The script goes to `sievec` through a private temporary
//! directory, never through argv.
//!
//! `sievec` compiles every script as a global one, with the extensions of
//! `sieve_global_extensions` enabled; a user's script never gets those at
//! delivery. [`Sievec::check`] therefore removes them (`-x`), so that a
//! user's script that would run programs is refused when it is stored
//! instead of failing at every delivery. [`Sievec::compile`] keeps them: it
//! compiles couchmail's own global scripts.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// How long `sievec` may take before the check counts as failed.
const SIEVEC_TIMEOUT: Duration = Duration::from_secs(10);
/// The name the script has while `sievec` reads it; its messages start with it.
const SCRIPT_STEM: &str = "script";
/// Extensions only global scripts may use (render's `sieve_global_extensions`), removed when checking a user's.
/// sievec warns about the ones whose plugin is not loaded and goes on.
const GLOBAL_ONLY_EXTENSIONS: &str =
    "-vnd.dovecot.filter -vnd.dovecot.pipe -vnd.dovecot.execute -vnd.dovecot.environment";

/// Why a script was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SieveCheckError {
    /// `sievec` refused the script; one message a line, each starting with
    /// `line N:` where sievec names a line.
    Invalid(Vec<String>),
    /// `sievec` could not be run: the check is impossible, not the script wrong.
    Unavailable(String),
}

/// Runs `sievec` (at `program`, with Dovecot configuration `config` if
/// given, so that the same Sieve extensions are enabled as at delivery).
#[derive(Debug, Clone)]
pub struct Sievec {
    /// Path of the `sievec` binary.
    pub program: PathBuf,
    /// Dovecot configuration file to pass with `-c`.
    pub config: Option<PathBuf>,
}

impl Default for Sievec {
    fn default() -> Sievec {
        Sievec { program: PathBuf::from("/usr/bin/sievec"), config: None }
    }
}

impl Sievec {
    /// Compiles `script` and reports what `sievec` says about it.
    pub async fn check(&self, script: &str) -> Result<(), SieveCheckError> {
        let dir = tempfile::Builder::new()
            .prefix("couchmail-sievec-")
            .tempdir()
            .map_err(|err| SieveCheckError::Unavailable(format!("cannot create a temporary directory: {err}")))?;
        let source = dir.path().join(format!("{SCRIPT_STEM}.sieve"));
        let binary = dir.path().join(format!("{SCRIPT_STEM}.svbin"));
        tokio::fs::write(&source, script)
            .await
            .map_err(|err| SieveCheckError::Unavailable(format!("cannot write {}: {err}", source.display())))?;
        let mut cmd = Command::new(&self.program);
        if let Some(config) = &self.config {
            cmd.arg("-c").arg(config);
        }
        cmd.arg("-x").arg(GLOBAL_ONLY_EXTENSIONS);
        cmd.arg(&source).arg(&binary).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.kill_on_drop(true);
        let run = cmd.output();
        let output = match tokio::time::timeout(SIEVEC_TIMEOUT, run).await {
            Ok(Ok(output)) => output,
            Ok(Err(err)) => {
                return Err(SieveCheckError::Unavailable(format!(
                    "cannot run {}: {err} (install Debian's dovecot-sieve)",
                    self.program.display()
                )));
            }
            Err(_) => return Err(SieveCheckError::Unavailable(format!("sievec took longer than {SIEVEC_TIMEOUT:?}"))),
        };
        if output.status.success() {
            return Ok(());
        }
        let text = format!("{}{}", String::from_utf8_lossy(&output.stderr), String::from_utf8_lossy(&output.stdout));
        let messages = messages(&text, dir.path());
        if messages.is_empty() {
            return Err(SieveCheckError::Unavailable(format!("sievec failed ({}) without saying why", output.status)));
        }
        Err(SieveCheckError::Invalid(messages))
    }
}

impl Sievec {
    /// Compiles a global script in place: `name.sieve` to `name.svbin` beside it, readable by everyone.
    ///
    /// Dovecot runs global scripts as the mail user, which cannot write the
    /// binary next to root's files and would recompile the script at every
    /// delivery, logging an error each time; `sievec` itself writes the
    /// binary with mode 0600, which that user cannot read either.
    pub async fn compile(&self, script: &Path) -> Result<(), SieveCheckError> {
        let binary = script.with_extension("svbin");
        let mut cmd = Command::new(&self.program);
        if let Some(config) = &self.config {
            cmd.arg("-c").arg(config);
        }
        cmd.arg(script).arg(&binary).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.kill_on_drop(true);
        let output = match tokio::time::timeout(SIEVEC_TIMEOUT, cmd.output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(err)) => {
                return Err(SieveCheckError::Unavailable(format!("cannot run {}: {err}", self.program.display())));
            }
            Err(_) => return Err(SieveCheckError::Unavailable(format!("sievec took longer than {SIEVEC_TIMEOUT:?}"))),
        };
        if !output.status.success() {
            let text =
                format!("{}{}", String::from_utf8_lossy(&output.stderr), String::from_utf8_lossy(&output.stdout));
            return Err(SieveCheckError::Invalid(text.lines().map(str::to_owned).collect()));
        }
        tokio::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .await
            .map_err(|err| SieveCheckError::Unavailable(format!("cannot make {} readable: {err}", binary.display())))
    }
}

/// The lines of sievec's output that speak about the script, without the
/// temporary file's name.
fn messages(output: &str, dir: &Path) -> Vec<String> {
    let prefix = format!("{SCRIPT_STEM}: ");
    output
        .lines()
        .map(|line| line.replace(&dir.display().to_string(), ""))
        .filter_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
        .filter(|line| !line.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_only_what_concerns_the_script() {
        let out = "script: line 7: error: expected end of command ';'.\nscript: error: parse failed.\nsievec: Fatal: failed to compile sieve script '/tmp/x/script.sieve'\n";
        assert_eq!(
            messages(out, Path::new("/tmp/x")),
            vec!["line 7: error: expected end of command ';'.".to_owned(), "error: parse failed.".to_owned()]
        );
    }
}
