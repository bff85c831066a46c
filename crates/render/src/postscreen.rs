//! postscreen(8) in front of port 25: the settings, and the main.cf and master.cf lines they become.
//!
//! postscreen answers every connection to port 25 first, before any smtpd(8)
//! process is spent on it (POSTSCREEN_README). It runs two of its tests here:
//! - The pregreet test: postscreen sends the first line of a multi-line
//!   `220-` greeting and waits `postscreen_greet_wait`; a client that talks
//!   before the greeting is complete is a spambot that does not speak SMTP
//!   properly.
//! - The DNSBL test: while waiting, it asks every list of
//!   `postscreen_dnsbl_sites` about the client's address and adds the weights
//!   of the lists that name it; a score at or above `postscreen_dnsbl_threshold`
//!   fails the test. Allowlists (DNSWL) carry negative weights, and a score at
//!   or below `postscreen_dnsbl_allowlist_threshold` lets the client skip the
//!   other tests.
//!
//! Both tests `enforce`: a failing client talks to postscreen's built-in
//! dummy server, which refuses every RCPT TO with a 550 that says why
//! (`550 5.7.1 Service unavailable; client [192.0.2.1] blocked using
//! zen.spamhaus.org`, `550 5.5.1 Protocol error`), so that the sending
//! server reports the refusal to its user and nothing here bounces. A client
//! that passes is remembered in `postscreen_cache_map` (in Postfix's data
//! directory) and handed to smtpd through `smtpd pass` right away on its
//! next visits.
//!
//! Clients in [`Postscreen::allowlist`] skip every test
//! (`postscreen_access_list`). By default that is loopback only: this stack
//! never uses `mynetworks` (nothing is permitted for a client's address, see
//! `postfix.rs`), so `permit_mynetworks` is deliberately not in the access
//! list; loopback listed here explicitly does what Postfix's default
//! `permit_mynetworks` does for the local machine.
//!
//! Public DNSBLs refuse queries that reach them through large public
//! resolvers (8.8.8.8, 1.1.1.1, …) and some answer those with error codes
//! that look like listings: the machine needs a recursive resolver of its own
//! (unbound or Knot Resolver on 127.0.0.1). The reply patterns of the default
//! sites count only real listings, so an error code never rejects mail.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use couchmail_model::IpNetwork;

use crate::error::{Error, ErrorKind};
use crate::postfix::Service;
use crate::text::Text;

/// postscreen's settings; [`Stack::postscreen`](crate::Stack::postscreen) `None` keeps plain smtpd on port 25.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Postscreen {
    /// The DNSBLs (and DNSWLs, with negative weights) asked about every new client (`postscreen_dnsbl_sites`).
    /// Empty turns the DNSBL test off.
    pub dnsbl_sites: Vec<DnsblSite>,
    /// The combined weight at which a client fails the DNSBL test (`postscreen_dnsbl_threshold`); at least 1.
    pub dnsbl_threshold: u32,
    /// A combined weight at or below which a client skips the other tests
    /// (`postscreen_dnsbl_allowlist_threshold`); 0 turns that off, and it may not be above 0.
    pub dnsbl_allowlist_threshold: i32,
    /// Client networks that skip every test (`postscreen_access_list`).
    pub allowlist: Vec<Cidr>,
    /// How long postscreen waits for a pregreeting client and for the DNSBL answers, in seconds
    /// (`postscreen_greet_wait`, 1 to 60); `None` keeps Postfix's default of 6 s, 2 s under stress.
    pub greet_wait_secs: Option<u32>,
}

/// The DNSBL sites of [`Postscreen::default`], as Postfix writes them.
///
/// Spamhaus ZEN alone rejects (weight 3 at threshold 3; only its listing codes
/// 127.0.0.2 to 127.0.0.11 count, not the 127.255.255.x errors it gives public
/// resolvers). SpamCop and Barracuda (which answers only registered resolvers)
/// are more aggressive and need a second opinion; PSBL adds a point. DNSWL
/// subtracts by trust level (its 127.0.0.255 "over the free limit" answer
/// matches none of the patterns).
pub const DEFAULT_DNSBL_SITES: &[&str] = &[
    "zen.spamhaus.org=127.0.0.[2..11]*3",
    "bl.spamcop.net=127.0.0.2*2",
    "b.barracudacentral.org=127.0.0.2*2",
    "psbl.surriel.com=127.0.0.2",
    "list.dnswl.org=127.0.[0..255].0*-2",
    "list.dnswl.org=127.0.[0..255].1*-3",
    "list.dnswl.org=127.0.[0..255].[2..3]*-4",
];

/// The DNSBL threshold of [`Postscreen::default`].
pub const DEFAULT_DNSBL_THRESHOLD: u32 = 3;

/// The DNSWL threshold of [`Postscreen::default`]: any DNSWL listing not outweighed by blocklists.
pub const DEFAULT_DNSBL_ALLOWLIST_THRESHOLD: i32 = -1;

/// The allowlist of [`Postscreen::default`]: the local machine's loopback addresses.
pub const DEFAULT_ALLOWLIST: &[&str] = &["127.0.0.0/8", "::1/128"];

/// The longest `postscreen_greet_wait` accepted, in seconds; senders give up on a greeting after 5 minutes,
/// but waiting longer than a minute only ties up postscreen.
pub const MAX_GREET_WAIT_SECS: u32 = 60;

impl Default for Postscreen {
    /// The production settings: the weighted [`DEFAULT_DNSBL_SITES`] at threshold 3, DNSWL allowlisting at -1,
    /// loopback allowlisted, Postfix's own greet wait.
    fn default() -> Postscreen {
        Postscreen {
            dnsbl_sites: DEFAULT_DNSBL_SITES.iter().filter_map(|site| site.parse().ok()).collect(),
            dnsbl_threshold: DEFAULT_DNSBL_THRESHOLD,
            dnsbl_allowlist_threshold: DEFAULT_DNSBL_ALLOWLIST_THRESHOLD,
            allowlist: DEFAULT_ALLOWLIST.iter().filter_map(|cidr| cidr.parse().ok()).collect(),
            greet_wait_secs: None,
        }
    }
}

/// Why a DNSBL site or a network could not be parsed; the message says what to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsePostscreenError {
    input: String,
    why: String,
}

impl ParsePostscreenError {
    fn new(input: &str, why: impl Into<String>) -> ParsePostscreenError {
        ParsePostscreenError { input: input.to_owned(), why: why.into() }
    }
}

impl fmt::Display for ParsePostscreenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.input, self.why)
    }
}

impl std::error::Error for ParsePostscreenError {}

/// One entry of `postscreen_dnsbl_sites`: `domain[=pattern][*weight]`, as postconf(5) describes it.
///
/// ```
/// use couchmail_render::DnsblSite;
///
/// let site: DnsblSite = "Zen.Spamhaus.org=127.0.0.[2..11]*3".parse().unwrap();
/// assert_eq!(site.domain(), "zen.spamhaus.org");
/// assert_eq!(site.weight(), 3);
/// assert_eq!(site.to_string(), "zen.spamhaus.org=127.0.0.[2..11]*3");
/// assert!("zen.spamhaus.org*0".parse::<DnsblSite>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsblSite {
    domain: String,
    reply: Option<String>,
    weight: i32,
}

impl DnsblSite {
    /// The list's DNS zone, lower-cased.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The answers that count as a listing (`127.0.0.[2..11]`); `None` counts every answer.
    pub fn reply(&self) -> Option<&str> {
        self.reply.as_deref()
    }

    /// What a listing adds to the client's score; negative for allowlists. Never 0.
    pub fn weight(&self) -> i32 {
        self.weight
    }
}

/// The largest weight accepted for one site: a bigger number is a typo, not a policy.
const MAX_WEIGHT: i32 = 100;

impl FromStr for DnsblSite {
    type Err = ParsePostscreenError;

    fn from_str(input: &str) -> Result<DnsblSite, ParsePostscreenError> {
        let error = |why: &str| ParsePostscreenError::new(input, why);
        let (rest, weight) = match input.rsplit_once('*') {
            Some((rest, weight)) => {
                let weight = weight
                    .parse::<i32>()
                    .ok()
                    .filter(|weight| *weight != 0 && weight.abs() <= MAX_WEIGHT)
                    .ok_or_else(|| error("the weight after `*` must be a whole number from -100 to 100, not 0"))?;
                (rest, weight)
            }
            None => (input, 1),
        };
        let (domain, reply) = match rest.split_once('=') {
            Some((domain, reply)) => (domain, Some(reply)),
            None => (rest, None),
        };
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if !is_dns_name(&domain) {
            return Err(error("write a DNS zone such as zen.spamhaus.org (letters, digits, `-`, `_` and dots)"));
        }
        if let Some(reply) = reply
            && !is_reply_pattern(reply)
        {
            return Err(error(
                "the pattern after `=` must be four dot-separated parts, each a number from 0 to 255 or a list in \
                 brackets such as [2..11] or [2;4]",
            ));
        }
        Ok(DnsblSite { domain, reply: reply.map(str::to_owned), weight })
    }
}

impl fmt::Display for DnsblSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.domain)?;
        if let Some(reply) = &self.reply {
            write!(f, "={reply}")?;
        }
        if self.weight != 1 {
            write!(f, "*{}", self.weight)?;
        }
        Ok(())
    }
}

/// Dot-separated labels of letters, digits, `-` and `_` (DNSBL keys such as Spamhaus DQS use them).
fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        })
}

/// `d.d.d.d` where each part is an octet or `[item;item…]` with items `n` or `n..m` (postconf(5)).
fn is_reply_pattern(pattern: &str) -> bool {
    let octet = |text: &str| text.len() <= 3 && text.parse::<u8>().is_ok();
    let parts: Vec<&str> = pattern.split('.').collect();
    // `..` inside brackets splits a part too, so join the pieces of a bracketed part back together.
    let mut joined: Vec<String> = Vec::new();
    let mut open = false;
    for part in parts {
        if open {
            if let Some(last) = joined.last_mut() {
                last.push('.');
                last.push_str(part);
            }
        } else {
            joined.push(part.to_owned());
        }
        open = joined.last().is_some_and(|last| last.starts_with('[') && !last.ends_with(']'));
    }
    !open
        && joined.len() == 4
        && joined.iter().all(|part| match part.strip_prefix('[').and_then(|inner| inner.strip_suffix(']')) {
            Some(items) => items.split(';').all(|item| match item.split_once("..") {
                Some((low, high)) => octet(low) && octet(high) && low.parse::<u8>().ok() <= high.parse::<u8>().ok(),
                None => octet(item),
            }),
            None => octet(part),
        })
}

/// A network in CIDR notation whose host bits are zero, as cidr_table(5) requires: a
/// [`couchmail_model::IpNetwork`] in the notation of Postfix's tables.
///
/// It differs from the model's normal form in what it accepts and writes, not in what it means: an address
/// with host bits set (`192.0.2.1/24`) is refused rather than cleared, as a typo in the configuration
/// (Postfix itself skips such a rule), an IPv6 address may be written in brackets (`[2001:db8::1]`), and the
/// prefix length is always written (`2001:db8::1/128`).
///
/// ```
/// use couchmail_render::Cidr;
///
/// assert_eq!("192.0.2.0/24".parse::<Cidr>().unwrap().to_string(), "192.0.2.0/24");
/// assert_eq!("2001:db8::1".parse::<Cidr>().unwrap().to_string(), "2001:db8::1/128");
/// let err = "192.0.2.1/24".parse::<Cidr>().unwrap_err().to_string();
/// assert!(err.contains("192.0.2.0/24"), "{err}");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(IpNetwork);

impl Cidr {
    /// The network's first address.
    pub fn network(&self) -> IpAddr {
        self.0.address()
    }

    /// The prefix length, 0 to 32 for IPv4 and 0 to 128 for IPv6.
    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    /// Whether `address` lies inside the network (an IPv4-mapped IPv6 address counting as IPv4).
    pub fn contains(&self, address: IpAddr) -> bool {
        self.0.contains(address)
    }

    /// The network in the model's terms.
    pub fn ip_network(&self) -> IpNetwork {
        self.0
    }
}

impl FromStr for Cidr {
    type Err = ParsePostscreenError;

    fn from_str(input: &str) -> Result<Cidr, ParsePostscreenError> {
        let error = |why: String| ParsePostscreenError::new(input, why);
        let (address, prefix_len) = match input.split_once('/') {
            Some((address, prefix_len)) => (address, Some(prefix_len)),
            None => (input, None),
        };
        let address = address.trim_start_matches('[').trim_end_matches(']');
        let host: IpAddr = address.parse().map_err(|_| {
            error("write an IP address or a network such as \"192.0.2.0/24\" or \"2001:db8::/32\"".to_owned())
        })?;
        let unbracketed = match prefix_len {
            Some(prefix_len) => format!("{address}/{prefix_len}"),
            None => address.to_owned(),
        };
        let network = IpNetwork::parse(&unbracketed).map_err(|err| error(err.message))?;
        if network.address() != host {
            return Err(error(format!(
                "the address has bits set beyond the /{} prefix, which Postfix skips: write \"{}\"",
                network.prefix_len(),
                network.to_cidr_string()
            )));
        }
        Ok(Cidr(network))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_cidr_string())
    }
}

/// Refuses thresholds Postfix would misread; the sites and networks are valid by construction.
pub(crate) fn check(postscreen: &Postscreen) -> Result<(), Error> {
    if postscreen.dnsbl_threshold == 0 {
        return Err(Error::new("postscreen.dnsbl_threshold", ErrorKind::Zero));
    }
    if postscreen.dnsbl_allowlist_threshold > 0 {
        return Err(Error::new("postscreen.dnsbl_allowlist_threshold", ErrorKind::TooLarge(0)));
    }
    if let Some(secs) = postscreen.greet_wait_secs {
        if secs == 0 {
            return Err(Error::new("postscreen.greet_wait_secs", ErrorKind::Zero));
        }
        if secs > MAX_GREET_WAIT_SECS {
            return Err(Error::new("postscreen.greet_wait_secs", ErrorKind::TooLarge(MAX_GREET_WAIT_SECS.into())));
        }
    }
    Ok(())
}

/// The postscreen section of main.cf.
pub(crate) fn main_cf(postscreen: &Postscreen, text: &mut Text) {
    text.comment("postscreen(8) answers port 25 first and hands the clients that pass to smtpd (postscreen.rs).");
    text.comment("A client that talks before its turn, or whose DNSBL score reaches the threshold, is refused at");
    text.comment("RCPT TO with a 550 that says why; one that passes is cached and goes straight through next time.");
    text.comment("Public DNSBLs refuse queries from large public resolvers: this machine needs a resolver of its own.");
    text.comment("mynetworks is not trusted anywhere, so the access list names the allowlisted networks itself.");
    let rules: Vec<String> = postscreen.allowlist.iter().map(|cidr| format!("{{ {cidr} permit }}")).collect();
    if rules.is_empty() {
        text.setting("postscreen_access_list", "");
    } else {
        text.setting("postscreen_access_list", &format!("cidr:{{ {} }}", rules.join(", ")));
    }
    text.setting("postscreen_greet_action", "enforce");
    if let Some(secs) = postscreen.greet_wait_secs {
        text.setting("postscreen_greet_wait", &format!("{secs}s"));
    }
    let sites: Vec<String> = postscreen.dnsbl_sites.iter().map(DnsblSite::to_string).collect();
    text.setting("postscreen_dnsbl_sites", &sites.join(", "));
    text.setting("postscreen_dnsbl_threshold", &postscreen.dnsbl_threshold.to_string());
    text.setting("postscreen_dnsbl_allowlist_threshold", &postscreen.dnsbl_allowlist_threshold.to_string());
    text.setting("postscreen_dnsbl_action", "enforce");
    text.setting("postscreen_cache_map", "btree:$data_directory/postscreen_cache");
}

/// The master.cf services of port 25 with postscreen in front, as postscreen(8) lists them:
/// postscreen on the port (one process), smtpd behind it, the DNSBL lookup helper and the
/// TLS proxy postscreen uses when a client it is still testing asks for STARTTLS.
pub(crate) fn mx_services(inet_name: String) -> Vec<Service<'static>> {
    vec![
        Service::new(inet_name, "inet", "postscreen").private("n").max_processes("1"),
        Service::new("smtpd", "pass", "smtpd"),
        Service::new("dnsblog", "unix", "dnsblog").max_processes("0"),
        Service::new("tlsproxy", "unix", "tlsproxy").max_processes("0"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_sites_all_parse_and_print_as_written() {
        let postscreen = Postscreen::default();
        assert_eq!(postscreen.dnsbl_sites.len(), DEFAULT_DNSBL_SITES.len());
        for (site, written) in postscreen.dnsbl_sites.iter().zip(DEFAULT_DNSBL_SITES) {
            assert_eq!(&site.to_string(), written);
        }
        assert_eq!(postscreen.allowlist.len(), DEFAULT_ALLOWLIST.len());
        check(&postscreen).unwrap();
    }

    #[test]
    fn one_spamhaus_listing_rejects_and_one_spamcop_listing_does_not() {
        let postscreen = Postscreen::default();
        let weight = |domain: &str| {
            postscreen.dnsbl_sites.iter().find(|site| site.domain() == domain).map(DnsblSite::weight).unwrap()
        };
        let threshold = i32::try_from(postscreen.dnsbl_threshold).unwrap();
        assert!(weight("zen.spamhaus.org") >= threshold);
        assert!(weight("bl.spamcop.net") < threshold);
        assert!(weight("bl.spamcop.net") + weight("b.barracudacentral.org") >= threshold);
        assert!(postscreen.dnsbl_sites.iter().any(|site| site.weight() < 0), "DNSWL lowers scores");
    }

    #[test]
    fn dnsbl_sites_parse() {
        let site: DnsblSite = "dnsbl.test".parse().unwrap();
        assert_eq!((site.domain(), site.reply(), site.weight()), ("dnsbl.test", None, 1));
        let site: DnsblSite = "list.dnswl.org=127.0.[0..255].[2;3]*-4".parse().unwrap();
        assert_eq!((site.reply(), site.weight()), (Some("127.0.[0..255].[2;3]"), -4));
        assert_eq!(site.to_string(), "list.dnswl.org=127.0.[0..255].[2;3]*-4");
        for bad in [
            "",
            "dnsbl.test*0",
            "dnsbl.test*x",
            "dnsbl.test*1000",
            "bad domain",
            "-x.test",
            "dnsbl.test=127.0.0",
            "dnsbl.test=127.0.0.256",
            "dnsbl.test=127.0.0.[2..",
            "dnsbl.test=127.0.0.[9..2]",
            "dnsbl.test=127.0.0.2,other.test",
            "dnsbl.test=127.0.0.$x",
            "a,b",
        ] {
            assert!(bad.parse::<DnsblSite>().is_err(), "{bad:?} was accepted");
        }
        let err = "dnsbl.test*0".parse::<DnsblSite>().unwrap_err().to_string();
        assert!(err.contains("dnsbl.test*0") && err.contains("weight"), "{err}");
    }

    #[test]
    fn networks_parse_and_match() {
        let loopback: Cidr = "127.0.0.0/8".parse().unwrap();
        assert!(loopback.contains("127.0.0.2".parse().unwrap()));
        assert!(!loopback.contains("128.0.0.1".parse().unwrap()));
        assert!(!loopback.contains("::1".parse().unwrap()));
        let everything: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains("192.0.2.1".parse().unwrap()));
        let one: Cidr = "[2001:db8::1]".parse().unwrap();
        assert_eq!((one.prefix_len(), one.to_string().as_str()), (128, "2001:db8::1/128"));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        for bad in ["", "localhost", "10.0.0.0/33", "::/129", "10.0.0.1/8", "10.0.0.0/x", "10.0.0.0/8 permit"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn check_refuses_thresholds_postfix_would_misread() {
        let mut postscreen = Postscreen { dnsbl_threshold: 0, ..Postscreen::default() };
        assert_eq!(check(&postscreen).unwrap_err().field(), "postscreen.dnsbl_threshold");
        postscreen.dnsbl_threshold = 1;
        postscreen.dnsbl_allowlist_threshold = 1;
        assert_eq!(check(&postscreen).unwrap_err().field(), "postscreen.dnsbl_allowlist_threshold");
        postscreen.dnsbl_allowlist_threshold = 0;
        for (secs, ok) in [(0, false), (1, true), (60, true), (61, false)] {
            postscreen.greet_wait_secs = Some(secs);
            assert_eq!(check(&postscreen).is_ok(), ok, "greet_wait_secs {secs}");
        }
    }

    #[test]
    fn main_cf_lines() {
        let mut postscreen = Postscreen {
            dnsbl_sites: vec!["dnsbl.test=127.0.0.2*3".parse().unwrap(), "dnswl.test*-2".parse().unwrap()],
            dnsbl_threshold: 3,
            dnsbl_allowlist_threshold: -1,
            allowlist: vec!["192.0.2.0/24".parse().unwrap(), "2001:db8::/32".parse().unwrap()],
            greet_wait_secs: Some(2),
        };
        let mut text = Text::default();
        main_cf(&postscreen, &mut text);
        let text = text.finish();
        for line in [
            "postscreen_access_list = cidr:{ { 192.0.2.0/24 permit }, { 2001:db8::/32 permit } }",
            "postscreen_greet_action = enforce",
            "postscreen_greet_wait = 2s",
            "postscreen_dnsbl_sites = dnsbl.test=127.0.0.2*3, dnswl.test*-2",
            "postscreen_dnsbl_threshold = 3",
            "postscreen_dnsbl_allowlist_threshold = -1",
            "postscreen_dnsbl_action = enforce",
            "postscreen_cache_map = btree:$data_directory/postscreen_cache",
        ] {
            assert!(text.lines().any(|written| written == line), "{line:?} missing from\n{text}");
        }
        postscreen.allowlist.clear();
        postscreen.dnsbl_sites.clear();
        postscreen.greet_wait_secs = None;
        let mut text = Text::default();
        main_cf(&postscreen, &mut text);
        let text = text.finish();
        assert!(text.lines().any(|line| line == "postscreen_access_list ="), "{text}");
        assert!(text.lines().any(|line| line == "postscreen_dnsbl_sites ="), "{text}");
        assert!(!text.contains("postscreen_greet_wait"), "{text}");
    }
}
