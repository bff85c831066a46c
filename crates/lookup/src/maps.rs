//! Postfix's lookup tables, answered from the index over the socketmap protocol.
//!
//! Postfix sends a socketmap (a TCP-based table, virtual(5)) the whole address, once: it does not retry
//! `user@domain` after `user+ext@domain`, nor `@domain` after `user@domain`. The index does those steps
//! ([`Snapshot::resolve_recipient`], [`Snapshot::deliverable_mailbox`], [`Snapshot::sender_logins`]).

use std::sync::Arc;

use couchmail_index::{Index, Recipient, Snapshot};
use couchmail_socketmap::{Lookup, MAX_REPLY_LEN, Reply};

/// The map names [`Maps`] answers, as in `socketmap:unix:<socket>:<name>`.
pub const MAP_NAMES: [&str; 5] = ["domains", "alias-domains", "mailboxes", "aliases", "senders"];

/// The reason sent with `TEMP` while the index is not built yet.
pub const NOT_READY: &str = "index not ready";

/// Postfix's lookup tables, answered from the index.
///
/// | map | Postfix parameter | `OK` answer |
/// |---|---|---|
/// | `domains` | `virtual_mailbox_domains` | an active real domain: itself |
/// | `alias-domains` | `virtual_alias_domains` | an alias domain whose target is active: the target |
/// | `mailboxes` | `virtual_mailbox_maps` | the key, when it or the key without its `+extension` is an active mailbox in an active domain |
/// | `aliases` | `virtual_alias_maps` | the addresses the key resolves to (see [`Snapshot::resolve_recipient`]), comma-joined; a mailbox maps to itself |
/// | `senders` | `smtpd_sender_login_maps` | the logins allowed to send as the key, comma-joined |
///
/// Anything else in a known map is `NOTFOUND `. Keys are folded to lower-case ASCII first.
/// While the index is not ready every map answers `TEMP index not ready`, so Postfix defers instead of rejecting.
/// An unknown map name is `PERM unknown map <name>`: a configuration error, never an answer about data.
#[derive(Clone)]
pub struct Maps {
    index: Arc<Index>,
}

impl Maps {
    /// Answers from `index`.
    pub fn new(index: Arc<Index>) -> Maps {
        Maps { index }
    }
}

impl std::fmt::Debug for Maps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maps").field("ready", &self.index.is_ready()).finish()
    }
}

/// One of [`MAP_NAMES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Map {
    Domains,
    AliasDomains,
    Mailboxes,
    Aliases,
    Senders,
}

impl Map {
    fn parse(name: &str) -> Option<Map> {
        Some(match name {
            "domains" => Map::Domains,
            "alias-domains" => Map::AliasDomains,
            "mailboxes" => Map::Mailboxes,
            "aliases" => Map::Aliases,
            "senders" => Map::Senders,
            _ => return None,
        })
    }
}

impl Lookup for Maps {
    fn lookup(&self, map: &str, key: &str) -> Reply {
        let Some(parsed) = Map::parse(map) else {
            return Reply::perm(format!("unknown map {map}"));
        };
        // One snapshot per request, so readiness and the answer agree.
        let snapshot = self.index.snapshot();
        if !snapshot.is_ready() {
            return Reply::temp(NOT_READY);
        }
        let key = key.to_ascii_lowercase();
        let reply = answer(&snapshot, parsed, &key);
        if reply.fits() {
            return reply;
        }
        // The model bounds every answer but `senders` (see `fit_logins`), so this needs data the model refuses.
        tracing::error!(map, key, len = reply.payload_len(), "socketmap answer longer than Postfix accepts");
        Reply::temp("answer too long")
    }
}

fn answer(snapshot: &Snapshot, map: Map, key: &str) -> Reply {
    match map {
        Map::Domains => match snapshot.domain(key) {
            Some(domain) if domain.is_active() => Reply::ok(domain.name()),
            _ => Reply::NotFound,
        },
        Map::AliasDomains => snapshot.alias_domain_target(key).map_or(Reply::NotFound, Reply::ok),
        Map::Mailboxes => match snapshot.deliverable_mailbox(key) {
            Some(_) => Reply::ok(key),
            None => Reply::NotFound,
        },
        Map::Aliases => match snapshot.resolve_recipient(key) {
            // Mapping to itself stops Postfix's recursion, and keeps the extension for Dovecot.
            Some(Recipient::Mailbox(_)) => Reply::ok(key),
            Some(Recipient::Alias(alias) | Recipient::CatchAll(alias)) if !alias.targets_joined().is_empty() => {
                Reply::ok(alias.targets_joined())
            }
            Some(Recipient::AliasDomain(rewritten)) => Reply::Ok(rewritten),
            Some(Recipient::Alias(_) | Recipient::CatchAll(_)) | None => Reply::NotFound,
        },
        Map::Senders => {
            let logins = snapshot.sender_logins(key);
            if logins.is_empty() { Reply::NotFound } else { Reply::Ok(fit_logins(key, &logins)) }
        }
    }
}

/// `logins` comma-joined, cut at the last login that fits in a reply.
///
/// An alias reaching hundreds of mailboxes through other aliases can grant more logins than a reply holds.
/// Dropping the last ones (the list is sorted, so always the same ones) refuses those few senders; a `TEMP`
/// would instead defer every message sent as that address, by anyone, for good.
fn fit_logins(key: &str, logins: &[String]) -> String {
    // `OK ` precedes the data in the reply payload.
    let room = MAX_REPLY_LEN - "OK ".len();
    let mut joined = String::new();
    for (login_idx, login) in logins.iter().enumerate() {
        let separator = usize::from(login_idx > 0);
        if joined.len() + separator + login.len() > room {
            tracing::warn!(
                key,
                n_logins = logins.len(),
                n_answered = login_idx,
                "too many sender logins for one socketmap reply; answering the first ones"
            );
            break;
        }
        if separator == 1 {
            joined.push(',');
        }
        joined.push_str(login);
    }
    joined
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use couchmail_index::Snapshot;
    use couchmail_model::{Document, MAX_ALIAS_TARGETS};
    use couchmail_testkit::fixtures::{alias, domain, domain_alias, inactive, mailbox};

    use super::*;

    fn maps_of(documents: Vec<Document>) -> Maps {
        Maps::new(Arc::new(Index::from_snapshot(Snapshot::from_documents(documents))))
    }

    /// Real domains with and without a catch-all, an inactive one, alias domains of each.
    fn maps() -> Maps {
        maps_of(vec![
            domain("example.com"),
            domain("example.org"),
            inactive(domain("off.example")),
            domain_alias("example.net", "example.com"),
            domain_alias("example.info", "example.org"),
            domain_alias("dead.example", "off.example"),
            mailbox("alice@example.com"),
            mailbox("bob@example.com"),
            inactive(mailbox("carol@example.com")),
            mailbox("dave@off.example"),
            mailbox("erin@example.org"),
            alias("info@example.com", &["alice@example.com", "bob@example.com"]),
            alias("bob+lists@example.com", &["erin@example.org"]),
            inactive(alias("old@example.com", &["bob@example.com"])),
            inactive(alias("old@example.org", &["erin@example.org"])),
            alias("@example.com", &["alice@example.com"]),
            alias("shared@off.example", &["dave@off.example"]),
        ])
    }

    /// Asks `map` for each key and compares with the expected reply (`None` for `NOTFOUND `).
    fn check(maps: &Maps, map: &str, cases: &[(&str, Option<&str>)]) {
        for (key, expected) in cases {
            let expected = expected.map_or(Reply::NotFound, Reply::ok);
            assert_eq!(maps.lookup(map, key), expected, "{map} {key}");
        }
    }

    #[test]
    fn domains_are_the_active_real_domains() {
        check(
            &maps(),
            "domains",
            &[
                ("example.com", Some("example.com")),
                ("Example.COM", Some("example.com")),
                ("off.example", None),
                ("example.net", None),
                ("elsewhere.example", None),
            ],
        );
    }

    #[test]
    fn alias_domains_answer_their_active_target() {
        check(
            &maps(),
            "alias-domains",
            &[
                ("example.net", Some("example.com")),
                ("EXAMPLE.info", Some("example.org")),
                ("dead.example", None),
                ("example.com", None),
                ("elsewhere.example", None),
            ],
        );
    }

    #[test]
    fn mailboxes_are_active_and_keep_the_key_with_its_extension() {
        check(
            &maps(),
            "mailboxes",
            &[
                ("alice@example.com", Some("alice@example.com")),
                ("Alice@Example.com", Some("alice@example.com")),
                ("alice+tag@example.com", Some("alice+tag@example.com")),
                ("carol@example.com", None),
                ("carol+tag@example.com", None),
                ("dave@off.example", None),
                ("info@example.com", None),
                ("nobody@example.com", None),
                ("alice@example.net", None),
                ("+tag@example.com", None),
            ],
        );
    }

    #[test]
    fn aliases_resolve_mailboxes_aliases_catch_alls_and_extensions() {
        check(
            &maps(),
            "aliases",
            &[
                // A mailbox maps to itself, so the catch-all cannot swallow it.
                ("alice@example.com", Some("alice@example.com")),
                ("ALICE@example.com", Some("alice@example.com")),
                ("alice+tag@example.com", Some("alice+tag@example.com")),
                // An alias, also under an extension.
                ("info@example.com", Some("alice@example.com,bob@example.com")),
                ("info+x@example.com", Some("alice@example.com,bob@example.com")),
                // An address with an extension that exists itself wins over the stripped one.
                ("bob+lists@example.com", Some("erin@example.org")),
                ("bob+other@example.com", Some("bob+other@example.com")),
                // Unknown, and inactive aliases: the catch-all, since Postfix will not ask for `@domain`.
                ("nobody@example.com", Some("alice@example.com")),
                ("nobody+x@example.com", Some("alice@example.com")),
                ("old@example.com", Some("alice@example.com")),
                ("@example.com", Some("alice@example.com")),
                // No catch-all: refused at RCPT.
                ("nobody@example.org", None),
                ("old@example.org", None),
                // An inactive mailbox is refused, never handed to the catch-all.
                ("carol@example.com", None),
                ("carol+x@example.com", None),
                // Alias domains rewrite, extension kept, only what resolves in the target domain.
                ("alice@example.net", Some("alice@example.com")),
                ("alice+tag@example.net", Some("alice+tag@example.com")),
                ("nobody@example.net", Some("nobody@example.com")),
                ("erin@example.info", Some("erin@example.org")),
                ("nobody@example.info", None),
                ("carol@example.net", None),
                ("@example.net", None),
                // Inactive and unknown domains.
                ("dave@off.example", None),
                ("shared@off.example", None),
                ("dave@dead.example", None),
                ("someone@elsewhere.example", None),
                ("noat", None),
            ],
        );
    }

    #[test]
    fn senders_are_the_logins_that_own_an_address() {
        check(
            &maps(),
            "senders",
            &[
                ("alice@example.com", Some("alice@example.com")),
                ("Alice@Example.com", Some("alice@example.com")),
                ("alice+tag@example.com", Some("alice@example.com")),
                ("alice@example.net", Some("alice@example.com")),
                ("alice+tag@example.net", Some("alice@example.com")),
                ("info@example.com", Some("alice@example.com,bob@example.com")),
                ("info+x@example.net", Some("alice@example.com,bob@example.com")),
                ("bob+lists@example.com", Some("erin@example.org")),
                ("carol@example.com", None),
                ("old@example.com", None),
                // A catch-all grants nothing.
                ("nobody@example.com", None),
                ("dave@off.example", None),
                ("someone@elsewhere.example", None),
            ],
        );
    }

    #[test]
    fn not_ready_is_temp_and_unknown_maps_are_perm() {
        let maps = Maps::new(Arc::new(Index::default()));
        for map in MAP_NAMES {
            assert_eq!(maps.lookup(map, "alice@example.com"), Reply::temp(NOT_READY), "{map}");
        }
        assert_eq!(maps.lookup("virtual", "alice@example.com"), Reply::perm("unknown map virtual"));
        let maps = super::tests::maps();
        assert_eq!(maps.lookup("Domains", "example.com"), Reply::perm("unknown map Domains"));
        assert_eq!(maps.lookup("transport", "example.com"), Reply::perm("unknown map transport"));
    }

    #[test]
    fn a_published_snapshot_is_seen_by_the_next_lookup() {
        let index = Arc::new(Index::default());
        let maps = Maps::new(Arc::clone(&index));
        assert_eq!(maps.lookup("domains", "example.com"), Reply::temp(NOT_READY));
        index.publish(Snapshot::from_documents([domain("example.com")]));
        assert_eq!(maps.lookup("domains", "example.com"), Reply::ok("example.com"));
    }

    /// An address of exactly 254 octets (the model's limit), distinct for each `idx`.
    fn longest_address(idx: usize) -> String {
        let domain = format!("{}.{}.{}.example", "a".repeat(63), "b".repeat(63), "c".repeat(53));
        let local = format!("{idx:0>64}");
        let address = format!("{local}@{domain}");
        assert_eq!(address.len(), 254);
        address
    }

    #[test]
    fn the_largest_alias_fits_in_one_reply() {
        let targets: Vec<String> = (0..MAX_ALIAS_TARGETS).map(longest_address).collect();
        let target_refs: Vec<&str> = targets.iter().map(String::as_str).collect();
        let maps = maps_of(vec![domain("example.com"), alias("big@example.com", &target_refs)]);
        let reply = maps.lookup("aliases", "big@example.com");
        assert_eq!(reply, Reply::ok(targets.join(",")));
        assert!(reply.fits(), "{} bytes", reply.payload_len());
        // The catch-all path answers the same bound.
        let maps = maps_of(vec![domain("example.com"), alias("@example.com", &target_refs)]);
        assert!(maps.lookup("aliases", "anyone@example.com").fits());
    }

    #[test]
    fn too_many_sender_logins_are_cut_to_fit() {
        // Two groups of 250 long-named mailboxes under one alias: 500 logins of 254 octets, 127 000 bytes.
        let domain_name = longest_address(0).split_once('@').unwrap().1.to_owned();
        let members: Vec<String> = (0..500).map(longest_address).collect();
        let mut documents = vec![domain(&domain_name), domain("example.com")];
        documents.extend(members.iter().map(|member| mailbox(member)));
        let first: Vec<&str> = members[..250].iter().map(String::as_str).collect();
        let second: Vec<&str> = members[250..].iter().map(String::as_str).collect();
        documents.push(alias("first@example.com", &first));
        documents.push(alias("second@example.com", &second));
        documents.push(alias("all@example.com", &["first@example.com", "second@example.com"]));
        let maps = maps_of(documents);

        let reply = maps.lookup("senders", "all@example.com");
        assert!(reply.fits(), "{} bytes", reply.payload_len());
        let answered: Vec<&str> = reply.text().split(',').collect();
        assert!(answered.len() > 300 && answered.len() < 500, "{} logins", answered.len());
        // The sorted list's first ones are kept, whole.
        let mut sorted = members.clone();
        sorted.sort();
        assert_eq!(answered, sorted[..answered.len()].iter().map(String::as_str).collect::<Vec<_>>());
    }
}
