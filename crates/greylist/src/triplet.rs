//! Delivery attempts and the normalised triplets greylisting remembers them by.
//!
//! A triplet is (client network, sender, recipient). Each part is normalised so that a legitimate retry of the same
//! message lands on the same triplet, even when it comes from another address of the sender's pool or with a
//! sender address rewritten per message:
//! - the client address becomes its network (/24 for IPv4, /64 for IPv6 by default);
//! - the sender is lower-cased; the null sender stays `<>`; BATV tags (`prvs=TAG=user@`, `btv1==TAG==user@`) and
//!   SRS rewriting (`SRS0=HASH=TT=domain=user@forwarder`, and `SRS1`) are undone to the address they wrap;
//!   a `+extension` is dropped from the local part; and every run of digits standing alone between separators in
//!   the local part becomes `#` (`bounce-123-456@` and `bounce-124-457@` are one sender), as postgrey does for
//!   VERP bounce addresses;
//! - the recipient is lower-cased only: it is our own user's address, chosen by the sender and stable per message.
//!
//! Each part is cut to [`MAX_PART_LEN`] bytes, so one record stays small whatever a client sends.

use std::fmt;
use std::net::IpAddr;

use couchmail_model::IpNetwork;
use sha2::{Digest, Sha256};

use crate::config::GreylistConfig;

/// The longest sender or recipient kept, in bytes: RFC 5321's limit on a whole path (section 4.5.3.1.3).
pub const MAX_PART_LEN: usize = 256;

/// The null sender, as stored.
pub const NULL_SENDER: &str = "<>";

/// One delivery attempt as the SMTP server sees it at RCPT: who connects, the envelope sender, one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt<'a> {
    /// The SMTP client's address.
    pub client_address: IpAddr,
    /// The envelope sender as sent, without angle brackets; empty (or `<>`) for the null sender.
    pub sender: &'a str,
    /// The envelope recipient, without angle brackets.
    pub recipient: &'a str,
}

/// The normalised (client network, sender, recipient) that greylisting remembers.
///
/// ```
/// use couchmail_greylist::{Attempt, GreylistConfig, Triplet};
///
/// let attempt = Attempt {
///     client_address: "192.0.2.77".parse().unwrap(),
///     sender: "prvs=1234abcdef=List-Bounces+12345@Example.NET",
///     recipient: "Alice@example.com",
/// };
/// let triplet = Triplet::new(&attempt, &GreylistConfig::default());
/// assert_eq!(triplet.to_string(), "192.0.2.0/24 list-bounces@example.net alice@example.com");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Triplet {
    /// The client's network.
    pub client_network: IpNetwork,
    /// The normalised sender, or `<>`.
    pub sender: String,
    /// The lower-cased recipient.
    pub recipient: String,
}

impl Triplet {
    /// Normalises `attempt` under `config`'s network prefix lengths.
    pub fn new(attempt: &Attempt<'_>, config: &GreylistConfig) -> Triplet {
        Triplet {
            client_network: config.client_network(attempt.client_address),
            sender: normalize_sender(attempt.sender),
            recipient: cut(normalize_address(attempt.recipient)),
        }
    }

    /// The row key: the first 8 bytes of SHA-256 over the three parts, so that a row's key is small and of fixed
    /// size whatever the addresses. Two triplets sharing a key would share a record; with 64 bits, a million
    /// records make that about one chance in thirty million, and it would at worst let one message skip its delay.
    pub(crate) fn key(&self) -> i64 {
        let mut hasher = Sha256::new();
        hasher.update(self.client_network.to_cidr_string().as_bytes());
        hasher.update([0]);
        hasher.update(self.sender.as_bytes());
        hasher.update([0]);
        hasher.update(self.recipient.as_bytes());
        let digest = hasher.finalize();
        let mut first_bytes = [0; 8];
        first_bytes.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(first_bytes)
    }
}

impl fmt::Display for Triplet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.client_network.to_cidr_string(), self.sender, self.recipient)
    }
}

/// The envelope sender's domain, lower-cased, as sent; `None` for the null sender or an address without domain.
pub(crate) fn sender_domain(sender: &str) -> Option<String> {
    let sender = normalize_address(sender);
    let (_, domain) = sender.rsplit_once('@')?;
    (!domain.is_empty()).then(|| domain.to_owned())
}

/// Drops angle brackets (never part of an envelope address; Postfix sends addresses without them) and surrounding
/// blanks, and lower-cases.
pub(crate) fn normalize_address(address: &str) -> String {
    address.replace(['<', '>'], "").trim().to_lowercase()
}

/// Normalises an envelope sender as described in the module documentation.
pub fn normalize_sender(sender: &str) -> String {
    let sender = normalize_address(sender);
    if sender.is_empty() {
        return NULL_SENDER.to_owned();
    }
    let (local, domain) = match sender.rsplit_once('@') {
        Some((local, domain)) => (local, Some(domain)),
        None => (sender.as_str(), None),
    };
    let (mut local, mut domain) = (local, domain);
    // Wrappers can nest (a BATV-tagged sender forwarded with SRS); each step strictly shortens `local`.
    loop {
        if let Some((original_local, original_domain)) = unwrap_srs(local) {
            (local, domain) = (original_local, Some(original_domain));
        } else if let Some(user) = unwrap_batv(local) {
            local = user;
        } else {
            break;
        }
    }
    // Blanks that the extension hid would be trimmed from the whole address next time: trim them now.
    let local = local.split('+').next().unwrap_or_default().trim();
    let local = replace_lone_digit_runs(local);
    match domain.map(str::trim) {
        Some(domain) => cut(format!("{local}@{domain}")),
        // Only an extension (`+tag`) with no domain leaves nothing; nothing is what the null sender is.
        None if local.is_empty() => NULL_SENDER.to_owned(),
        None => cut(local),
    }
}

/// `SRS0=HASH=TT=domain=local` (separator `=`, `+` or `-` after `SRS0`), or `SRS1=HASH=forwarder==HASH=TT=domain=local`,
/// gives `(local, domain)`; anything else gives `None`.
fn unwrap_srs(local: &str) -> Option<(&str, &str)> {
    let srs0_body = if let Some(rest) = strip_tag(local, "srs0") {
        rest
    } else {
        let rest = strip_tag(local, "srs1")?;
        let (_, srs0_body) = rest.split_once("==")?;
        srs0_body
    };
    let mut fields = srs0_body.splitn(4, '=');
    let (_hash, _timestamp) = (fields.next()?, fields.next()?);
    let (domain, original_local) = (fields.next()?, fields.next()?);
    (!domain.is_empty() && !original_local.is_empty()).then_some((original_local, domain))
}

/// Strips `tag` and one SRS separator (`=`, `+` or `-`) from the start of `local`.
fn strip_tag<'a>(local: &'a str, tag: &str) -> Option<&'a str> {
    local.strip_prefix(tag)?.strip_prefix(['=', '+', '-'])
}

/// `prvs=TAG=user` or `prvs=user=TAG` (both orders exist in the wild), `msprvs1=TAG=user` and `btv1==TAG==user`
/// give `user`; anything else gives `None`.
fn unwrap_batv(local: &str) -> Option<&str> {
    if let Some(rest) = local.strip_prefix("btv1==") {
        return rest.split_once("==").map(|(_, user)| user).filter(|user| !user.is_empty());
    }
    let rest = local.strip_prefix("prvs=").or_else(|| local.strip_prefix("msprvs1="))?;
    match rest.split_once('=') {
        Some((tag, user)) if looks_like_batv_tag(tag) && !user.is_empty() => Some(user),
        Some((user, tag)) if looks_like_batv_tag(tag) && !user.is_empty() => Some(user),
        _ => None,
    }
}

/// A BATV tag: a key digit, three day digits and six hex digits of hash (draft-levine-smtp-batv, prvs).
fn looks_like_batv_tag(tag: &str) -> bool {
    tag.len() == 10 && tag.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// Replaces each run of ASCII digits that has no letter or digit on either side with `#`.
fn replace_lone_digit_runs(local: &str) -> String {
    let mut out = String::with_capacity(local.len());
    let chars: Vec<char> = local.chars().collect();
    let mut char_idx = 0;
    while char_idx < chars.len() {
        if !chars[char_idx].is_ascii_digit() {
            out.push(chars[char_idx]);
            char_idx += 1;
            continue;
        }
        let run_start_idx = char_idx;
        while char_idx < chars.len() && chars[char_idx].is_ascii_digit() {
            char_idx += 1;
        }
        let before_is_word = run_start_idx > 0 && chars[run_start_idx - 1].is_alphanumeric();
        let after_is_word = chars.get(char_idx).is_some_and(|c| c.is_alphanumeric());
        if before_is_word || after_is_word {
            out.extend(&chars[run_start_idx..char_idx]);
        } else {
            out.push('#');
        }
    }
    out
}

/// Cuts `text` to at most [`MAX_PART_LEN`] bytes at a character boundary.
fn cut(mut text: String) -> String {
    if text.len() > MAX_PART_LEN {
        let mut end_idx = MAX_PART_LEN;
        while !text.is_char_boundary(end_idx) {
            end_idx -= 1;
        }
        text.truncate(end_idx);
    }
    text
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[track_caller]
    fn check(sender: &str, expect: &str) {
        assert_eq!(normalize_sender(sender), expect, "sender {sender:?}");
    }

    #[test]
    fn keeps_the_null_sender() {
        check("", "<>");
        check("<>", "<>");
        check(" <> ", "<>");
        check("<<>>", "<>");
    }

    #[test]
    fn lower_cases_and_strips_brackets_and_extensions() {
        check("Bob@Example.NET", "bob@example.net");
        check("<bob@example.net>", "bob@example.net");
        check("bob+news@example.net", "bob@example.net");
        check("bob+a+b@example.net", "bob@example.net");
        check("first-last@example.net", "first-last@example.net");
        check("postmaster", "postmaster");
        check("+tag", "<>");
        check("<->+", "-");
    }

    #[test]
    fn folds_verp_numbers() {
        check("bounce-123-456@lists.example.net", "bounce-#-#@lists.example.net");
        check("bounces-4242-alice=example.com@lists.example.net", "bounces-#-alice=example.com@lists.example.net");
        check("12345@example.net", "#@example.net");
        check("user2@example.net", "user2@example.net");
        check("2fa@example.net", "2fa@example.net");
        check("a.1.b@example.net", "a.#.b@example.net");
    }

    #[test]
    fn undoes_batv() {
        check("prvs=1234abcdef=bob@example.net", "bob@example.net");
        check("prvs=bob=1234abcdef@example.net", "bob@example.net");
        check("msprvs1=18000abcde=bob@example.net", "bob@example.net");
        check("btv1==0123456789==bob@example.net", "bob@example.net");
        // Not a BATV tag: only the lone number is folded.
        check("prvs=short=bob@example.net", "prvs=short=bob@example.net");
    }

    #[test]
    fn undoes_srs() {
        check("SRS0=HHH=TT=example.org=bob@forwarder.example.net", "bob@example.org");
        check("srs0+hhh=tt=example.org=bob=x@forwarder.example.net", "bob=x@example.org");
        check("SRS1=HHH=fwd1.example==HHH=TT=example.org=bob@fwd2.example.net", "bob@example.org");
        // An SRS-wrapped sender gets the same treatment as any other.
        check("SRS0=HHH=TT=example.org=bob+tag@forwarder.example.net", "bob@example.org");
        // Too few fields: not SRS.
        check("srs0=hhh=tt@forwarder.example.net", "srs0=hhh=tt@forwarder.example.net");
        check("srs0=hhh=tt= example.org =bob@forwarder.example.net", "bob@example.org");
    }

    #[test]
    fn cuts_long_parts_at_a_character_boundary() {
        let long = format!("{}@example.net", "é".repeat(300));
        let normalized = normalize_sender(&long);
        assert!(normalized.len() <= MAX_PART_LEN && normalized.len() >= MAX_PART_LEN - 1);
        let triplet = Triplet::new(
            &Attempt { client_address: "192.0.2.1".parse().unwrap(), sender: "", recipient: &long },
            &GreylistConfig::default(),
        );
        assert!(triplet.recipient.len() <= MAX_PART_LEN);
    }

    #[test]
    fn finds_the_sender_domain_as_sent() {
        assert_eq!(sender_domain("Bob@Example.NET").as_deref(), Some("example.net"));
        assert_eq!(sender_domain("SRS0=H=T=example.org=bob@fwd.example.net").as_deref(), Some("fwd.example.net"));
        assert_eq!(sender_domain(""), None);
        assert_eq!(sender_domain("bob@"), None);
        assert_eq!(sender_domain("postmaster"), None);
    }

    #[test]
    fn keys_tell_triplets_apart() {
        let config = GreylistConfig::default();
        let triplet = |client: &str, sender: &str, recipient: &str| {
            Triplet::new(&Attempt { client_address: client.parse().unwrap(), sender, recipient }, &config)
        };
        let base = triplet("192.0.2.1", "a@b", "c@d");
        assert_eq!(base.key(), triplet("192.0.2.200", "A@B", "C@D").key());
        assert_ne!(base.key(), triplet("192.0.3.1", "a@b", "c@d").key());
        assert_ne!(base.key(), triplet("192.0.2.1", "a@bc", "@d").key());
        assert_ne!(base.key(), triplet("192.0.2.1", "", "c@d").key());
    }

    #[test]
    fn undoes_nested_wrappers() {
        check("SRS0=HHH=TT=example.org=prvs=1234abcdef=bob@fwd.example.net", "bob@example.org");
        check("SRS0=H=T=example.org=SRS0=H2=T2=example.com=bob@fwd.example.net", "bob@example.com");
    }

    proptest! {
        // Short enough that the cut to MAX_PART_LEN never applies: a cut local part can end in digits that were
        // kept for the letter after them.
        #[test]
        fn normalizing_twice_changes_nothing(sender in "\\PC{0,40}|[-+=@<>a-zA-Z0-9]{0,80}") {
            let once = normalize_sender(&sender);
            prop_assert!(once.len() <= MAX_PART_LEN);
            prop_assert_eq!(normalize_sender(&once), once.clone());
        }
    }
}
