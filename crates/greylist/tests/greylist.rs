//! The greylisting engine over a real state file, with a hand-moved clock.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly on an unexpected error")]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use couchmail_greylist::{
    Allowlist, Attempt, Clock, Counts, ErrorKind, Greylist, GreylistConfig, ManualClock, PassReason, Verdict,
};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(60 * 60);
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// An engine on a state file in its own temporary directory, with a clock that only moves when told.
struct TestGreylist {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    config: GreylistConfig,
    greylist: Option<Greylist>,
}

impl TestGreylist {
    fn new() -> TestGreylist {
        TestGreylist::with(GreylistConfig::default())
    }

    fn with(config: GreylistConfig) -> TestGreylist {
        let dir = tempfile::tempdir().unwrap();
        // A fixed, realistic start, so that failures read the same every run.
        let clock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000)));
        let mut test = TestGreylist { dir, clock, config, greylist: None };
        test.reopen();
        test
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("greylist.db")
    }

    /// Closes the engine and opens the same file again, as a restart does.
    fn reopen(&mut self) {
        self.greylist = None;
        let greylist = Greylist::open_with_clock(self.path(), self.config.clone(), self.clock.clone()).unwrap();
        self.greylist = Some(greylist);
    }

    fn engine(&self) -> &Greylist {
        self.greylist.as_ref().unwrap()
    }

    fn check(&self, client: &str, sender: &str, recipient: &str) -> Verdict {
        let attempt = Attempt { client_address: client.parse().unwrap(), sender, recipient };
        self.engine().check(&attempt).unwrap()
    }

    fn advance(&self, duration: Duration) {
        self.clock.advance(duration);
    }

    fn counts(&self) -> Counts {
        self.engine().counts().unwrap()
    }

    /// Pending triplets, passed triplets, client networks.
    fn counts_tuple(&self) -> (u64, u64, u64) {
        let counts = self.counts();
        (counts.n_pending, counts.n_passed, counts.n_clients)
    }

    /// Takes a new triplet through its delay so that it has passed.
    fn pass(&self, client: &str, sender: &str, recipient: &str) {
        assert!(matches!(self.check(client, sender, recipient), Verdict::Defer { .. }));
        self.advance(6 * MINUTE);
        assert!(matches!(self.check(client, sender, recipient), Verdict::Pass(PassReason::Retried { .. })));
    }
}

fn defer(retry_after: Duration) -> Verdict {
    Verdict::Defer { retry_after }
}

const CLIENT: &str = "192.0.2.10";
const SENDER: &str = "bob@example.net";
const RECIPIENT: &str = "alice@example.com";

#[test]
fn a_first_attempt_is_deferred_for_the_whole_delay() {
    let test = TestGreylist::new();
    assert_eq!(test.check(CLIENT, SENDER, RECIPIENT), defer(5 * MINUTE));
    assert_eq!(test.counts_tuple(), (1, 0, 0));
}

#[test]
fn an_early_retry_is_deferred_for_the_rest_of_the_delay_without_moving_the_first_sighting() {
    let test = TestGreylist::new();
    test.check(CLIENT, SENDER, RECIPIENT);
    test.advance(2 * MINUTE);
    assert_eq!(test.check(CLIENT, SENDER, RECIPIENT), defer(3 * MINUTE));
    test.advance(2 * MINUTE + Duration::from_secs(59));
    assert_eq!(test.check(CLIENT, SENDER, RECIPIENT), defer(Duration::from_secs(1)));
    test.advance(Duration::from_secs(1));
    assert_eq!(test.check(CLIENT, SENDER, RECIPIENT), Verdict::Pass(PassReason::Retried { waited: 5 * MINUTE }));
}

#[test]
fn a_retry_after_the_delay_passes_and_is_remembered() {
    let test = TestGreylist::new();
    test.check(CLIENT, SENDER, RECIPIENT);
    test.advance(40 * MINUTE);
    assert_eq!(test.check(CLIENT, SENDER, RECIPIENT), Verdict::Pass(PassReason::Retried { waited: 40 * MINUTE }));
    test.advance(3 * DAY);
    assert_eq!(test.check(CLIENT, SENDER, RECIPIENT), Verdict::Pass(PassReason::Known));
    assert_eq!(test.counts_tuple(), (0, 1, 1));
    // Another recipient of the same sender is a triplet of its own.
    assert_eq!(test.check(CLIENT, SENDER, "carol@example.com"), defer(5 * MINUTE));
}

#[test]
fn a_retry_after_the_window_starts_over() {
    let test = TestGreylist::new();
    test.check(CLIENT, SENDER, RECIPIENT);
    test.advance(DAY + MINUTE);
    assert_eq!(test.check(CLIENT, SENDER, RECIPIENT), defer(5 * MINUTE));
    test.advance(4 * MINUTE);
    assert_eq!(test.check(CLIENT, SENDER, RECIPIENT), defer(MINUTE));
    test.advance(MINUTE);
    assert_eq!(test.check(CLIENT, SENDER, RECIPIENT), Verdict::Pass(PassReason::Retried { waited: 5 * MINUTE }));
}

#[test]
fn a_passed_triplet_is_forgotten_after_the_pass_expiry_unless_seen_again() {
    let test = TestGreylist::new();
    test.pass(CLIENT, SENDER, RECIPIENT);
    test.pass(CLIENT, "newsletter@example.net", RECIPIENT);
    // The sender writes every ten days for two months: always known.
    for _ in 0..6 {
        test.advance(10 * DAY);
        assert_eq!(test.check(CLIENT, SENDER, RECIPIENT), Verdict::Pass(PassReason::Known));
    }
    // The newsletter, silent for 60 days, is greylisted again.
    assert_eq!(test.check(CLIENT, "newsletter@example.net", RECIPIENT), defer(5 * MINUTE));
}

#[test]
fn auto_allows_a_client_network_after_five_passed_triplets() {
    let test = TestGreylist::new();
    for sender_idx in 0..4 {
        test.pass("192.0.2.10", &format!("sender{sender_idx}@example.net"), RECIPIENT);
    }
    // Four are not enough.
    assert_eq!(test.check("192.0.2.10", "new@example.net", RECIPIENT), defer(5 * MINUTE));
    // The fifth passes from another address of the same /24.
    test.advance(6 * MINUTE);
    assert!(matches!(
        test.check("192.0.2.99", "new@example.net", RECIPIENT),
        Verdict::Pass(PassReason::Retried { .. })
    ));
    assert_eq!(
        test.check("192.0.2.200", "someone-else@example.org", "dave@example.com"),
        Verdict::Pass(PassReason::AutoAllowedClient)
    );
    // Another network is not.
    assert_eq!(test.check("192.0.3.10", "someone-else@example.org", "dave@example.com"), defer(5 * MINUTE));
    // Auto-allowed clients are forgotten like triplets.
    test.advance(36 * DAY);
    assert_eq!(test.check("192.0.2.200", "later@example.org", "dave@example.com"), defer(5 * MINUTE));
}

#[test]
fn auto_allow_can_be_turned_off_or_raised() {
    let test = TestGreylist::with(GreylistConfig { auto_allow_after: None, ..GreylistConfig::default() });
    for sender_idx in 0..8 {
        test.pass(CLIENT, &format!("sender{sender_idx}@example.net"), RECIPIENT);
    }
    assert_eq!(test.check(CLIENT, "new@example.net", RECIPIENT), defer(5 * MINUTE));

    let test = TestGreylist::with(GreylistConfig { auto_allow_after: Some(2), ..GreylistConfig::default() });
    test.pass(CLIENT, "one@example.net", RECIPIENT);
    test.pass(CLIENT, "two@example.net", RECIPIENT);
    assert_eq!(test.check(CLIENT, "three@example.net", RECIPIENT), Verdict::Pass(PassReason::AutoAllowedClient));
}

#[test]
fn allowlisted_attempts_pass_without_touching_the_state() {
    let allowlist = Allowlist {
        client_networks: vec!["198.51.100.0/24".parse().unwrap(), "2001:db8:feed::/48".parse().unwrap()],
        sender_domains: vec!["partner.example".into(), ".bigmail.example".into()],
        recipients: vec!["postmaster@example.com".into(), "@no-greylisting.example.com".into()],
    };
    let test = TestGreylist::with(GreylistConfig { allowlist, ..GreylistConfig::default() });
    let cases = [
        ("198.51.100.7", SENDER, RECIPIENT, PassReason::AllowlistedClient),
        ("::ffff:198.51.100.7", SENDER, RECIPIENT, PassReason::AllowlistedClient),
        ("2001:db8:feed:1::1", SENDER, RECIPIENT, PassReason::AllowlistedClient),
        (CLIENT, "Bob@Partner.Example", RECIPIENT, PassReason::AllowlistedSender),
        (CLIENT, "bob@out.bigmail.example", RECIPIENT, PassReason::AllowlistedSender),
        (CLIENT, SENDER, "Postmaster@example.com", PassReason::AllowlistedRecipient),
        (CLIENT, SENDER, "anyone@no-greylisting.example.com", PassReason::AllowlistedRecipient),
    ];
    for (client, sender, recipient, reason) in cases {
        assert_eq!(test.check(client, sender, recipient), Verdict::Pass(reason), "{client} {sender} {recipient}");
    }
    assert_eq!(test.counts_tuple(), (0, 0, 0));
    // Near misses are greylisted.
    assert!(matches!(test.check(CLIENT, "bob@bigmail.example", RECIPIENT), Verdict::Defer { .. }));
    assert!(matches!(test.check(CLIENT, "bob@notpartner.example", RECIPIENT), Verdict::Defer { .. }));
    assert!(matches!(test.check(CLIENT, SENDER, "abuse@example.com"), Verdict::Defer { .. }));
    assert!(matches!(test.check("198.51.101.7", SENDER, RECIPIENT), Verdict::Defer { .. }));
}

#[test]
fn groups_ipv6_clients_by_64_and_ipv4_clients_by_24() {
    let test = TestGreylist::new();
    test.check("2001:db8:1:2::25", SENDER, RECIPIENT);
    test.check("192.0.2.25", SENDER, RECIPIENT);
    test.advance(6 * MINUTE);
    // A retry from another address of the same networks passes.
    assert!(matches!(test.check("2001:db8:1:2:ffff:ffff:ffff:1", SENDER, RECIPIENT), Verdict::Pass(_)));
    assert!(matches!(test.check("192.0.2.250", SENDER, RECIPIENT), Verdict::Pass(_)));
    assert!(matches!(test.check("::ffff:192.0.2.1", SENDER, RECIPIENT), Verdict::Pass(PassReason::Known)));
    // Neighbouring networks are strangers.
    assert_eq!(test.check("2001:db8:1:3::25", SENDER, RECIPIENT), defer(5 * MINUTE));
    assert_eq!(test.check("192.0.3.25", SENDER, RECIPIENT), defer(5 * MINUTE));
}

#[test]
fn prefix_lengths_are_configurable() {
    let config = GreylistConfig { ipv4_prefix_len: 32, ipv6_prefix_len: 48, ..GreylistConfig::default() };
    let test = TestGreylist::with(config);
    test.check("192.0.2.25", SENDER, RECIPIENT);
    test.check("2001:db8:1:2::25", SENDER, RECIPIENT);
    test.advance(6 * MINUTE);
    assert_eq!(test.check("192.0.2.26", SENDER, RECIPIENT), defer(5 * MINUTE));
    assert!(matches!(test.check("2001:db8:1:ffff::1", SENDER, RECIPIENT), Verdict::Pass(_)));
}

#[test]
fn a_retry_with_a_rewritten_sender_is_the_same_triplet() {
    let test = TestGreylist::new();
    test.check(CLIENT, "list-bounces-1234-alice=example.com@lists.example.org", RECIPIENT);
    test.check(CLIENT, "prvs=1234abcdef=bob@example.net", RECIPIENT);
    test.check(CLIENT, "SRS0=AbCd=T4=example.org=carol@forwarder.example.net", RECIPIENT);
    test.advance(6 * MINUTE);
    // The next message of each: a new VERP number, a new BATV tag, a new SRS hash and day.
    for sender in [
        "list-bounces-1299-alice=example.com@lists.example.org",
        "prvs=2345bcdef0=Bob@Example.NET",
        "SRS0=XyZw=T5=example.org=carol@forwarder.example.net",
    ] {
        assert!(matches!(test.check(CLIENT, sender, RECIPIENT), Verdict::Pass(PassReason::Retried { .. })), "{sender}");
    }
    assert_eq!(test.counts().n_passed, 3);
}

#[test]
fn the_null_sender_is_greylisted_as_a_sender_of_its_own() {
    let test = TestGreylist::new();
    test.check(CLIENT, "", RECIPIENT);
    test.advance(6 * MINUTE);
    assert!(matches!(test.check(CLIENT, "<>", RECIPIENT), Verdict::Pass(PassReason::Retried { .. })));
    assert_eq!(test.check(CLIENT, "mailer-daemon@example.net", RECIPIENT), defer(5 * MINUTE));
}

#[test]
fn state_survives_a_restart() {
    let mut test = TestGreylist::new();
    test.check(CLIENT, SENDER, RECIPIENT);
    test.pass(CLIENT, "known@example.net", RECIPIENT);
    test.reopen();
    assert_eq!(test.counts_tuple(), (1, 1, 1));
    assert!(matches!(test.check(CLIENT, SENDER, RECIPIENT), Verdict::Pass(PassReason::Retried { .. })));
    test.reopen();
    assert_eq!(test.check(CLIENT, SENDER, RECIPIENT), Verdict::Pass(PassReason::Known));
    assert_eq!(test.check(CLIENT, "known@example.net", RECIPIENT), Verdict::Pass(PassReason::Known));
}

#[test]
fn the_state_file_is_private() {
    let mode_of = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let mut test = TestGreylist::new();
    test.check(CLIENT, SENDER, RECIPIENT);
    assert_eq!(mode_of(&test.path()), 0o600);
    let mut wal_path = test.path().into_os_string();
    wal_path.push("-wal");
    assert_eq!(mode_of(Path::new(&wal_path)), 0o600, "the WAL file holds the same addresses");
    // A file someone loosened is tightened again on open.
    test.greylist = None;
    std::fs::set_permissions(test.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    test.reopen();
    assert_eq!(mode_of(&test.path()), 0o600);
}

#[test]
fn purge_deletes_what_expired_and_nothing_else() {
    // Only the explicit purge below runs (and the one at the first check, with nothing to do).
    let test = TestGreylist::with(GreylistConfig { purge_interval: 1000 * DAY, ..GreylistConfig::default() });
    test.pass(CLIENT, "old@example.net", RECIPIENT);
    test.check(CLIENT, "abandoned@example.net", RECIPIENT);
    test.advance(30 * DAY);
    test.pass(CLIENT, "recent@example.net", RECIPIENT);
    test.check(CLIENT, "pending@example.net", RECIPIENT);
    test.advance(6 * DAY);
    let stats = test.engine().purge().unwrap();
    assert_eq!((stats.n_pending, stats.n_passed, stats.n_clients), (2, 1, 0));
    assert_eq!(test.counts_tuple(), (0, 1, 1));
    assert_eq!(test.check(CLIENT, "recent@example.net", RECIPIENT), Verdict::Pass(PassReason::Known));
}

#[test]
fn checks_purge_by_themselves_once_the_interval_has_passed() {
    let mut test = TestGreylist::new();
    for sender_idx in 0..20 {
        test.check(CLIENT, &format!("flood{sender_idx}@example.net"), RECIPIENT);
    }
    assert_eq!(test.counts().n_pending, 20);
    test.advance(DAY + HOUR);
    test.check(CLIENT, SENDER, RECIPIENT);
    assert_eq!(test.counts().n_pending, 1, "the check after the interval purged the closed windows");
    // The first check after a restart purges what expired while the process was down.
    test.check(CLIENT, "another@example.net", RECIPIENT);
    test.reopen();
    test.advance(DAY + MINUTE);
    test.check(CLIENT, "after-restart@example.net", RECIPIENT);
    assert_eq!(test.counts().n_pending, 1);
}

#[test]
fn a_flood_of_unique_triplets_evicts_itself_not_the_passed_ones() {
    let config = GreylistConfig { max_triplets: 100, auto_allow_after: None, ..GreylistConfig::default() };
    let test = TestGreylist::with(config);
    for sender_idx in 0..10 {
        test.pass(CLIENT, &format!("friend{sender_idx}@example.net"), RECIPIENT);
    }
    for sender_idx in 0..1000 {
        test.check("203.0.113.1", &format!("spam{sender_idx}@example.org"), RECIPIENT);
    }
    let counts = test.counts();
    assert!(counts.n_pending + counts.n_passed <= 100, "{counts:?}");
    assert_eq!(counts.n_passed, 10);
    for sender_idx in 0..10 {
        let verdict = test.check(CLIENT, &format!("friend{sender_idx}@example.net"), RECIPIENT);
        assert_eq!(verdict, Verdict::Pass(PassReason::Known));
    }
    // The newest of the flood survive, so a legitimate sender caught in it still gets through on retry.
    test.advance(6 * MINUTE);
    assert!(matches!(test.check("203.0.113.1", "spam999@example.org", RECIPIENT), Verdict::Pass(_)));
}

#[test]
fn at_the_cap_with_nothing_pending_the_least_recently_seen_passed_triplet_goes() {
    let test =
        TestGreylist::with(GreylistConfig { max_triplets: 3, auto_allow_after: None, ..GreylistConfig::default() });
    for sender in ["a@example.net", "b@example.net", "c@example.net"] {
        test.pass(CLIENT, sender, RECIPIENT);
    }
    // Seen again within 1% of the expiry, "a" is not refreshed (hits stay read-only); a day later it is, and
    // "b" becomes the least recently seen.
    test.advance(HOUR);
    test.check(CLIENT, "a@example.net", RECIPIENT);
    test.advance(DAY);
    test.check(CLIENT, "a@example.net", RECIPIENT);
    test.check(CLIENT, "d@example.net", RECIPIENT);
    assert_eq!(test.counts_tuple(), (1, 2, 1));
    assert_eq!(test.check(CLIENT, "a@example.net", RECIPIENT), Verdict::Pass(PassReason::Known));
    assert_eq!(test.check(CLIENT, "c@example.net", RECIPIENT), Verdict::Pass(PassReason::Known));
    assert!(matches!(test.check(CLIENT, "b@example.net", RECIPIENT), Verdict::Defer { .. }));
}

#[test]
fn a_clock_stepped_back_starts_a_triplet_over() {
    let test = TestGreylist::new();
    let start = test.clock.now();
    test.check(CLIENT, SENDER, RECIPIENT);
    test.clock.set(start - HOUR);
    assert_eq!(test.check(CLIENT, SENDER, RECIPIENT), defer(5 * MINUTE));
    test.advance(5 * MINUTE);
    assert!(matches!(test.check(CLIENT, SENDER, RECIPIENT), Verdict::Pass(PassReason::Retried { .. })));
}

#[test]
fn refuses_a_config_that_cannot_work_and_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("greylist.db");
    let config = GreylistConfig { delay: 2 * DAY, ..GreylistConfig::default() };
    let error = Greylist::open(&path, config).map(|_| ()).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidConfig, "{error}");

    drop(Greylist::open(&path, GreylistConfig::default()).unwrap());
    rusqlite::Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let error = Greylist::open(&path, GreylistConfig::default()).map(|_| ()).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NewerSchema, "{error}");
}
