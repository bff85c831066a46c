//! The engine's settings and allowlists, checked once when the engine opens.

use std::net::IpAddr;
use std::time::Duration;

use couchmail_model::IpNetwork;

use crate::error::{Error, ErrorKind};

/// How greylisting behaves; [`Default`] gives the usual values (those of postgrey, give or take).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreylistConfig {
    /// How long a new triplet is deferred: a retry at least this long after the first attempt passes (5 min).
    pub delay: Duration,
    /// How long after the first attempt a retry still counts (24 h): a later retry starts over, as if new.
    ///
    /// Real mail servers retry within minutes to hours; what comes back after a day is more likely a new
    /// campaign than a retry.
    pub retry_window: Duration,
    /// How long a triplet that passed is remembered after it was last seen (35 days), so that a monthly
    /// newsletter is not delayed every month.
    pub pass_expiry: Duration,
    /// After this many of its triplets have passed, a client network passes without a triplet check (5); `None`
    /// turns auto-allowing off. The client's record expires like a triplet, [`GreylistConfig::pass_expiry`] after
    /// it was last seen.
    pub auto_allow_after: Option<u32>,
    /// How many leading bits of an IPv4 client address make its network (24): big senders retry from another
    /// address of the same pool.
    pub ipv4_prefix_len: u8,
    /// How many leading bits of an IPv6 client address make its network (64, the usual end-site subnet).
    pub ipv6_prefix_len: u8,
    /// The most triplets the state file holds (1 000 000, some 100 to 600 bytes each on disk).
    ///
    /// At the cap the oldest are evicted, triplets still waiting for their retry first, so that a flood of unique
    /// triplets evicts itself and not the senders that already passed.
    pub max_triplets: u64,
    /// How often expired records are purged (1 h); the purge runs inside a check once this has passed.
    pub purge_interval: Duration,
    /// Attempts that are never greylisted.
    pub allowlist: Allowlist,
}

impl Default for GreylistConfig {
    fn default() -> GreylistConfig {
        GreylistConfig {
            delay: Duration::from_secs(5 * 60),
            retry_window: Duration::from_secs(24 * 60 * 60),
            pass_expiry: Duration::from_secs(35 * 24 * 60 * 60),
            auto_allow_after: Some(5),
            ipv4_prefix_len: 24,
            ipv6_prefix_len: 64,
            max_triplets: 1_000_000,
            purge_interval: Duration::from_secs(60 * 60),
            allowlist: Allowlist::default(),
        }
    }
}

impl GreylistConfig {
    /// Checks that the values can work together, and normalises the allowlists.
    pub(crate) fn validated(mut self) -> Result<GreylistConfig, Error> {
        let invalid = |message: String| Err(Error::new(ErrorKind::InvalidConfig, message));
        if self.delay >= self.retry_window {
            return invalid(format!(
                "greylisting delay {:?} must be shorter than the retry window {:?}",
                self.delay, self.retry_window
            ));
        }
        if self.pass_expiry.is_zero() {
            return invalid("greylisting pass expiry must be longer than zero".to_owned());
        }
        if self.ipv4_prefix_len > 32 || self.ipv6_prefix_len > 128 {
            return invalid(format!(
                "greylisting prefix lengths {}/{} exceed 32 for IPv4 or 128 for IPv6",
                self.ipv4_prefix_len, self.ipv6_prefix_len
            ));
        }
        if self.max_triplets == 0 || self.max_triplets > i64::MAX as u64 {
            return invalid(format!("greylisting max_triplets {} is out of range", self.max_triplets));
        }
        if self.auto_allow_after == Some(0) {
            return invalid("greylisting auto_allow_after must be at least 1 (or off)".to_owned());
        }
        self.allowlist = self.allowlist.normalized()?;
        Ok(self)
    }

    /// The network greylisting groups `address` into.
    pub fn client_network(&self, address: IpAddr) -> IpNetwork {
        let address = address.to_canonical();
        IpNetwork::containing(address, if address.is_ipv4() { self.ipv4_prefix_len } else { self.ipv6_prefix_len })
    }
}

/// Attempts that pass without greylisting.
///
/// Entries are matched without regard to case:
/// - `client_networks`: the client address lies in one of these networks (your own relays, big senders known to
///   retry badly).
/// - `sender_domains`: the envelope sender's domain, as sent (before any SRS or BATV rewriting is undone), is
///   `example.com` exactly, or for an entry written `.example.com`, any subdomain of it. Envelope senders are
///   easily forged, so prefer client networks.
/// - `recipients`: the recipient is this address (`postmaster@example.com`), or for an entry written
///   `@example.com`, any address in that domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    /// Client networks that are never greylisted.
    pub client_networks: Vec<IpNetwork>,
    /// Sender domains that are never greylisted: `example.com`, or `.example.com` for its subdomains.
    pub sender_domains: Vec<String>,
    /// Recipients that are never greylisted: `user@example.com`, or `@example.com` for a whole domain.
    pub recipients: Vec<String>,
}

impl Allowlist {
    fn normalized(mut self) -> Result<Allowlist, Error> {
        for domain in &mut self.sender_domains {
            *domain = domain.trim().to_lowercase();
            if domain.trim_start_matches('.').is_empty() || domain.contains('@') {
                return Err(Error::new(ErrorKind::InvalidConfig, format!("{domain:?} is not a sender domain")));
            }
        }
        for recipient in &mut self.recipients {
            *recipient = recipient.trim().to_lowercase();
            if !recipient.contains('@') || recipient.ends_with('@') {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!("{recipient:?} is neither a recipient address nor @domain"),
                ));
            }
        }
        Ok(self)
    }

    pub(crate) fn allows_client(&self, address: IpAddr) -> bool {
        self.client_networks.iter().any(|network| network.contains(address))
    }

    /// `domain` is lower-case.
    pub(crate) fn allows_sender_domain(&self, domain: &str) -> bool {
        self.sender_domains.iter().any(|entry| match entry.strip_prefix('.') {
            Some(parent) => domain.strip_suffix(parent).is_some_and(|head| head.ends_with('.')),
            None => entry == domain,
        })
    }

    /// `recipient` is lower-case.
    pub(crate) fn allows_recipient(&self, recipient: &str) -> bool {
        let domain = recipient.rsplit_once('@').map(|(_, domain)| domain);
        self.recipients.iter().any(|entry| match entry.strip_prefix('@') {
            Some(entry_domain) => domain == Some(entry_domain),
            None => entry == recipient,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_settings_that_cannot_work() {
        let check = |config: GreylistConfig| config.validated().map(|_| ()).map_err(|error| error.kind());
        assert_eq!(check(GreylistConfig::default()), Ok(()));
        let delay = Duration::from_secs(3600);
        assert!(check(GreylistConfig { delay, retry_window: delay, ..GreylistConfig::default() }).is_err());
        assert!(check(GreylistConfig { pass_expiry: Duration::ZERO, ..GreylistConfig::default() }).is_err());
        assert!(check(GreylistConfig { ipv4_prefix_len: 33, ..GreylistConfig::default() }).is_err());
        assert!(check(GreylistConfig { ipv6_prefix_len: 129, ..GreylistConfig::default() }).is_err());
        assert!(check(GreylistConfig { max_triplets: 0, ..GreylistConfig::default() }).is_err());
        assert!(check(GreylistConfig { auto_allow_after: Some(0), ..GreylistConfig::default() }).is_err());
        assert_eq!(check(GreylistConfig { auto_allow_after: None, ..GreylistConfig::default() }), Ok(()));
        let bad_domain = Allowlist { sender_domains: vec!["a@example.com".into()], ..Allowlist::default() };
        assert!(check(GreylistConfig { allowlist: bad_domain, ..GreylistConfig::default() }).is_err());
        let bad_recipient = Allowlist { recipients: vec!["example.com".into()], ..Allowlist::default() };
        assert_eq!(
            check(GreylistConfig { allowlist: bad_recipient, ..GreylistConfig::default() }),
            Err(ErrorKind::InvalidConfig)
        );
    }

    #[test]
    fn groups_clients_into_networks() {
        let config = GreylistConfig::default();
        let network = |address: &str| config.client_network(address.parse().unwrap()).to_string();
        assert_eq!(network("192.0.2.77"), "192.0.2.0/24");
        assert_eq!(network("::ffff:192.0.2.77"), "192.0.2.0/24");
        assert_eq!(network("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
    }

    #[test]
    fn matches_allowlist_entries() {
        let allowlist = Allowlist {
            client_networks: vec!["198.51.100.0/24".parse().unwrap()],
            sender_domains: vec!["Example.COM".into(), ".lists.example.org".into()],
            recipients: vec!["Postmaster@example.com".into(), "@open.example.com".into()],
        }
        .normalized()
        .unwrap();
        assert!(allowlist.allows_client("198.51.100.9".parse().unwrap()));
        assert!(!allowlist.allows_client("198.51.101.9".parse().unwrap()));
        assert!(allowlist.allows_sender_domain("example.com"));
        assert!(!allowlist.allows_sender_domain("sub.example.com"));
        assert!(!allowlist.allows_sender_domain("badexample.com"));
        assert!(allowlist.allows_sender_domain("a.lists.example.org"));
        assert!(!allowlist.allows_sender_domain("lists.example.org"));
        assert!(!allowlist.allows_sender_domain("xlists.example.org"));
        assert!(allowlist.allows_recipient("postmaster@example.com"));
        assert!(!allowlist.allows_recipient("abuse@example.com"));
        assert!(allowlist.allows_recipient("anyone@open.example.com"));
        assert!(!allowlist.allows_recipient("anyone@sub.open.example.com"));
    }
}
