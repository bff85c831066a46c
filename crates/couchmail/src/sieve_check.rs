//! Sieve scripts are checked by Pigeonhole's `sievec` before the directory
//! stores them (DESIGN.md §3): the adapter from the supervisor's [`Sievec`]
//! to the directory's [`ScriptCheck`].
//!
//! `sievec` reads the Dovecot configuration that `up` rendered, when there
//! is one, so that the same Sieve extensions are enabled as at delivery;
//! otherwise Debian's default configuration.
//! A refused script is an invalid `script` field (API 400, CLI exit 5) whose
//! message holds sievec's line-numbered messages; a `sievec` that cannot run
//! makes the write fail as unavailable rather than store an unchecked script.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use couchmail_directory::{Error, ErrorKind, ScriptCheck};
use couchmail_model::ValidationError;
use couchmail_supervisor::system::find_program;
use couchmail_supervisor::{SieveCheckError, Sievec};

use crate::config::Config;

/// A [`ScriptCheck`] that asks `sievec`.
#[derive(Debug, Clone)]
pub struct SievecCheck {
    sievec: Sievec,
}

impl SievecCheck {
    /// Checks with `sievec` and the Dovecot configuration `up` renders into
    /// the runtime directory, if it is there.
    pub fn for_config(config: &Config) -> Arc<dyn ScriptCheck> {
        let rendered = config.runtime_dir.join(couchmail_render::DOVECOT_CONF);
        SievecCheck::with_dovecot_config(&rendered)
    }

    /// Checks with `sievec -c dovecot_conf` when that file exists, else with
    /// Dovecot's default configuration.
    pub fn with_dovecot_config(dovecot_conf: &Path) -> Arc<dyn ScriptCheck> {
        let config = dovecot_conf.is_file().then(|| dovecot_conf.to_owned());
        Arc::new(SievecCheck { sievec: Sievec { program: find_program("sievec"), config } })
    }
}

impl ScriptCheck for SievecCheck {
    fn check<'a>(
        &'a self,
        script: &'a str,
    ) -> Pin<Box<dyn Future<Output = couchmail_directory::Result<()>> + Send + 'a>> {
        Box::pin(async move {
            match self.sievec.check(script).await {
                Ok(()) => Ok(()),
                Err(SieveCheckError::Invalid(messages)) => {
                    Err(ValidationError::field("script", messages.join("\n")).into())
                }
                Err(SieveCheckError::Unavailable(why)) => {
                    Err(Error::new(ErrorKind::Unavailable, format!("cannot check the Sieve script with sievec: {why}")))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_script_is_an_invalid_script_field_with_a_line_number() {
        let check = SievecCheck::with_dovecot_config(Path::new("/nonexistent/dovecot.conf"));
        check.check("require \"fileinto\";\nfileinto \"Junk\";\n").await.unwrap();
        let err = check.check("require \"fileinto\";\nif header :contains \"subject\" \"x\" {\n  fileinto\n}\n").await;
        let err = err.unwrap_err();
        match err.kind() {
            ErrorKind::Invalid(validation) => {
                assert_eq!(validation.field, "script");
                assert!(validation.message.contains("line 4: error"), "{}", validation.message);
            }
            other => panic!("expected an invalid script, got {other:?}: {err}"),
        }
    }

    #[tokio::test]
    async fn a_missing_sievec_makes_the_write_unavailable() {
        let check = SievecCheck { sievec: Sievec { program: "/nonexistent/sievec".into(), config: None } };
        let err = check.check("keep;").await.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Unavailable), "{err}");
        assert!(err.to_string().contains("dovecot-sieve"), "{err}");
    }
}
