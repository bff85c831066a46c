//! The policy service's settings: every default in one struct, checked once when it opens.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use couchmail_greylist::GreylistConfig;
use couchmail_model::{IpNetwork, MAX_HOURLY_LIMIT};

use crate::error::{Error, ErrorKind};

/// The file name of the greylisting state in the data directory.
pub const GREYLIST_STATE_FILE: &str = "greylist.db";
/// The file name of the rate-limit state in the data directory.
pub const RATE_LIMIT_STATE_FILE: &str = "ratelimit.db";

/// How the policy service decides, and where it keeps its state.
///
/// [`PolicyConfig::new`] gives the defaults: greylisting on (5 minutes, H6's [`GreylistConfig`] defaults), no
/// trusted networks, and 200 messages and 1000 recipients an hour per SASL user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Whether recipients are greylisted unless their domain or mailbox opts out (`greylisting: false`); with
    /// `false`, only those that opt in (`greylisting: true`) are.
    pub greylisting: bool,
    /// The greylisting engine's settings: delay, retry window, expiry, auto-allow, static allowlists.
    pub greylist: GreylistConfig,
    /// Where the greylisting engine keeps its triplets (SQLite, created 0600).
    pub greylist_state: PathBuf,
    /// Clients in these networks are never greylisted (and, unless they log in, never rate-limited): your
    /// own relays and monitoring. Listings still apply to them.
    pub trusted_networks: Vec<IpNetwork>,
    /// Messages a SASL user may send per [`PolicyConfig::rate_window`] unless its mailbox or domain says
    /// otherwise (`messages_per_hour`); `None` for no limit.
    pub messages_per_hour: Option<u32>,
    /// Recipients a SASL user may send to per window, summed over its messages (`recipients_per_hour`);
    /// `None` for no limit.
    pub recipients_per_hour: Option<u32>,
    /// The sliding window the limits count over: an hour, as their names say; shorter only in tests.
    pub rate_window: Duration,
    /// Where sending counts are kept so that a restart does not reset them (SQLite, created 0600); `None`
    /// keeps them in memory only.
    pub rate_limit_state: Option<PathBuf>,
}

impl PolicyConfig {
    /// The defaults, with state files `greylist.db` and `ratelimit.db` in `data_dir`.
    pub fn new(data_dir: &Path) -> PolicyConfig {
        PolicyConfig {
            greylisting: true,
            greylist: GreylistConfig::default(),
            greylist_state: data_dir.join(GREYLIST_STATE_FILE),
            trusted_networks: Vec::new(),
            messages_per_hour: Some(200),
            recipients_per_hour: Some(1000),
            rate_window: Duration::from_secs(60 * 60),
            rate_limit_state: Some(data_dir.join(RATE_LIMIT_STATE_FILE)),
        }
    }

    /// Whether `address` is in a trusted network.
    pub fn is_trusted(&self, address: IpAddr) -> bool {
        self.trusted_networks.iter().any(|network| network.contains(address))
    }

    /// Checks what the greylisting engine does not check itself.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        for (name, limit) in
            [("messages_per_hour", self.messages_per_hour), ("recipients_per_hour", self.recipients_per_hour)]
        {
            if limit.is_some_and(|limit| limit > MAX_HOURLY_LIMIT) {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!(
                        "policy {name} {} is over the most accepted, {MAX_HOURLY_LIMIT}",
                        limit.unwrap_or_default()
                    ),
                ));
            }
        }
        if self.rate_window.is_zero() || self.rate_window > Duration::from_secs(24 * 60 * 60) {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("policy rate window {:?} must be longer than zero and at most a day", self.rate_window),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_name_their_files() {
        let config = PolicyConfig::new(Path::new("/var/lib/couchmail"));
        assert!(config.validate().is_ok());
        assert_eq!(config.greylist_state, Path::new("/var/lib/couchmail/greylist.db"));
        assert_eq!(config.rate_limit_state.as_deref(), Some(Path::new("/var/lib/couchmail/ratelimit.db")));
        let too_many = PolicyConfig { messages_per_hour: Some(MAX_HOURLY_LIMIT + 1), ..config.clone() };
        assert_eq!(too_many.validate().map_err(|error| error.kind()), Err(ErrorKind::InvalidConfig));
        let no_window = PolicyConfig { rate_window: Duration::ZERO, ..config.clone() };
        assert!(no_window.validate().is_err());
    }

    #[test]
    fn trusted_networks_match_their_clients() {
        let config = PolicyConfig {
            trusted_networks: vec!["10.0.0.0/8".parse().unwrap()],
            ..PolicyConfig::new(Path::new("/tmp"))
        };
        assert!(config.is_trusted("10.1.2.3".parse().unwrap()));
        assert!(!config.is_trusted("192.0.2.1".parse().unwrap()));
    }
}
