//! The visual editor's promises, tested over generated rule sets: the round
//! trip rules → Sieve → rules is exact, JSON carries the rules unchanged,
//! scripts the editor did not write are refused, Pigeonhole's `sievec`
//! accepts what the editor writes, and Pigeonhole's `sieve-test` runs a few
//! written rule sets on sample messages as the rules mean.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly on an unexpected error")]

use couchmail_sieve_rules::{
    Action, AddressPart, Condition, EnvelopePart, MatchType, Matching, NotRepresentable, Rule, RuleSet, SizeComparison,
    SizeUnit, from_sieve, to_sieve,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// Text without control characters, with Sieve's special characters and non-ASCII letters mixed in often.
fn one_line_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 \"\\\\*?#;{}\\[\\](),.:-]{1,16}",
        "\\PC{1,24}",
        "[a-z]{1,4}\t[a-z \t]{0,6}",
        Just("\\\"".to_owned()),
        Just("text:".to_owned()),
    ]
    .prop_filter("not blank", |text| !text.trim().is_empty())
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Subject".to_owned()),
        Just("List-Id".to_owned()),
        Just("X-Spam-Flag".to_owned()),
        "[A-Za-z][A-Za-z0-9-]{0,14}",
    ]
}

fn address_header() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["From", "To", "Cc", "Bcc", "Sender", "Reply-To", "delivered-to", "Resent-From"])
        .prop_map(str::to_owned)
}

fn address() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,8}([.+_-][a-z0-9]{1,4})?@[a-z0-9]{1,8}(-[a-z0-9]{1,3})?\\.(com|org|example|xn--bcher-kva)"
}

fn folder() -> impl Strategy<Value = String> {
    let level = prop_oneof![
        "[A-Za-z0-9_.-]{1,10}",
        "[A-Za-z0-9][A-Za-z0-9 _.\"\\\\-]{0,8}[A-Za-z0-9]",
        "[\\p{L}]{1,6}",
        Just("INBOX".to_owned()),
    ];
    prop::collection::vec(level, 1..4).prop_map(|levels| levels.join("/"))
}

fn match_type() -> impl Strategy<Value = MatchType> {
    prop_oneof![Just(MatchType::Is), Just(MatchType::Contains), Just(MatchType::Matches)]
}

fn address_part() -> impl Strategy<Value = AddressPart> {
    prop_oneof![Just(AddressPart::All), Just(AddressPart::Localpart), Just(AddressPart::Domain)]
}

fn condition() -> impl Strategy<Value = Condition> {
    prop_oneof![
        (prop::collection::vec(header_name(), 1..4), match_type(), one_line_text(), any::<bool>())
            .prop_map(|(headers, match_type, value, not)| Condition::Header { headers, match_type, value, not }),
        (prop::collection::vec(address_header(), 1..3), address_part(), match_type(), one_line_text(), any::<bool>())
            .prop_map(|(headers, part, match_type, value, not)| Condition::Address {
                headers,
                part,
                match_type,
                value,
                not
            }),
        (
            prop_oneof![Just(EnvelopePart::From), Just(EnvelopePart::To)],
            address_part(),
            match_type(),
            one_line_text(),
            any::<bool>()
        )
            .prop_map(|(field, part, match_type, value, not)| Condition::Envelope {
                field,
                part,
                match_type,
                value,
                not
            }),
        (
            prop_oneof![Just(SizeComparison::Over), Just(SizeComparison::Under)],
            prop_oneof![0..2000u64, 0..=couchmail_sieve_rules::MAX_SIZE_AMOUNT],
            prop_oneof![Just(SizeUnit::Bytes), Just(SizeUnit::K), Just(SizeUnit::M), Just(SizeUnit::G)],
            any::<bool>()
        )
            .prop_map(|(comparison, amount, unit, not)| Condition::Size { comparison, amount, unit, not }),
    ]
}

/// Vacation texts: one line, or several with lines that need dot-stuffing and optional trailing line breaks.
fn reason() -> impl Strategy<Value = String> {
    let line = prop_oneof!["[a-zA-Z .,!\"\\\\]{0,12}", Just(".".to_owned()), Just("..".to_owned()), "\\.[a-z]{1,4}"];
    prop_oneof![one_line_text(), prop::collection::vec(line, 2..6).prop_map(|lines| lines.join("\n")),]
        .prop_filter("not blank", |text| !text.trim().is_empty())
}

fn plain_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (folder(), any::<bool>()).prop_map(|(folder, create)| Action::Fileinto { folder, create }),
        (address(), any::<bool>()).prop_map(|(address, copy)| Action::Redirect { address, copy }),
        Just(Action::Discard),
        Just(Action::Keep),
    ]
}

fn vacation() -> impl Strategy<Value = Action> {
    (1..=couchmail_sieve_rules::MAX_VACATION_DAYS, prop::option::of(one_line_text()), reason(), {
        prop::collection::vec(address(), 0..3)
    })
        .prop_map(|(days, subject, reason, addresses)| Action::Vacation { days, subject, reason, addresses })
}

fn actions() -> impl Strategy<Value = Vec<Action>> {
    (prop::collection::vec(plain_action(), 0..4), prop::option::of(vacation()), 0..4usize, any::<bool>()).prop_map(
        |(mut actions, vacation, vacation_idx, stop)| {
            if let Some(vacation) = vacation {
                actions.insert(vacation_idx.min(actions.len()), vacation);
            }
            if stop || actions.is_empty() {
                actions.push(Action::Stop);
            }
            actions
        },
    )
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        one_line_text(),
        any::<bool>(),
        prop_oneof![Just(Matching::All), Just(Matching::Any)],
        prop::collection::vec(condition(), 0..4),
        actions(),
    )
        .prop_map(|(name, enabled, matching, conditions, actions)| Rule {
            name,
            enabled,
            matching,
            conditions,
            actions,
        })
}

fn rule_set() -> impl Strategy<Value = RuleSet> {
    prop::collection::vec(rule(), 0..5).prop_map(|rules| RuleSet { rules })
}

proptest! {
    #![proptest_config(Config { cases: 512, failure_persistence: None, ..Config::default() })]

    #[test]
    fn generated_rules_are_valid(rules in rule_set()) {
        prop_assert_eq!(rules.validate(), Ok(()));
    }

    #[test]
    fn rules_survive_sieve_and_back(rules in rule_set()) {
        let script = to_sieve(&rules).unwrap();
        let parsed = from_sieve(&script).map_err(|err| TestCaseError::fail(format!("{err}\n{script}")))?;
        prop_assert_eq!(&parsed, &rules, "{}", script);
        // The canonical form is a fixed point: writing the parsed rules gives the same script.
        prop_assert_eq!(to_sieve(&parsed).unwrap(), script);
    }

    #[test]
    fn rules_survive_json_and_back(rules in rule_set()) {
        let json = serde_json::to_string(&rules).unwrap();
        let parsed: RuleSet = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(parsed, rules);
    }

    #[test]
    fn arbitrary_text_never_panics_the_parser(text in "\\PC{0,200}") {
        let _ = from_sieve(&text);
        let _ = from_sieve(&format!("# couchmail-rules v1\n{text}"));
    }

    #[test]
    fn mangled_editor_output_never_panics_the_parser(rules in rule_set(), cut in 0..2000usize) {
        let script = to_sieve(&rules).unwrap();
        let mut cut = cut.min(script.len());
        while !script.is_char_boundary(cut) {
            cut -= 1;
        }
        if let Ok(parsed) = from_sieve(&script[..cut]) {
            // A prefix that still parses is a smaller valid rule set.
            prop_assert!(parsed.rules.len() <= rules.rules.len());
        }
    }
}

/// Hand-written scripts, the kind users and other tools write: none is the editor's.
const FOREIGN_SCRIPTS: &[&str] = &[
    "require \"fileinto\";\nif header :contains \"Subject\" \"[SPAM]\" { fileinto \"Junk\"; }\n",
    "require [\"fileinto\", \"imap4flags\"];\nif header :is \"X-Spam-Flag\" \"YES\" { addflag \"\\\\Seen\"; fileinto \"Junk\"; }\n",
    "require [\"variables\", \"fileinto\"];\nif header :matches \"List-Id\" \"*<*>\" { fileinto \"Lists/${2}\"; }\n",
    "require \"vacation\";\nvacation :days 7 \"I am away\";\n",
    "if exists \"X-Virus\" { discard; }\n",
    "keep;\n",
    "",
    "# couchmail-rules v1\nrequire [\"fileinto\", \"regex\"];\n# rule \"r\"\nif header :regex \"Subject\" \"^x\" { fileinto \"X\"; }\n",
    "# couchmail-rules v1\n# rule \"r\"\nif true { keep; } elsif true { discard; }\n",
    "# couchmail-rules v1\n# rule \"r\"\nif allof (true) { keep; }\ndiscard;\n",
    "# couchmail-rules v1\nrequire \"include\";\ninclude :personal \"other\";\n",
    "# couchmail-rules v1\n# rule \"r\"\nif not allof (true) { keep; }\n",
    "# couchmail-rules v1\n# rule \"r\"\nif header :count \"ge\" \"Received\" \"5\" { keep; }\n",
    "# couchmail-rules v1\n# rule \"r\"\nif allof (true) { if true { keep; } }\n",
    "# couchmail-rules v1\nrequire \"fileinto\";\n# rule \"r\"\nif allof (true) { fileinto \"a\nb\"; }\n",
];

#[test]
fn scripts_the_editor_did_not_write_are_not_representable() {
    for script in FOREIGN_SCRIPTS {
        let result: Result<RuleSet, NotRepresentable> = from_sieve(script);
        let err = result.expect_err(script);
        assert!(!err.reason.is_empty(), "{script}");
    }
}

#[test]
fn the_browser_tests_rule_is_written_as_documented() {
    let rules = RuleSet::documented_example();
    let json = serde_json::json!({
        "rules": [{
            "name": "To folder",
            "match": "all",
            "conditions": [{ "kind": "header", "headers": ["Subject"], "match_type": "contains", "value": "X" }],
            "actions": [{ "kind": "fileinto", "folder": "Folder", "create": true }]
        }]
    });
    assert_eq!(serde_json::from_value::<RuleSet>(json).unwrap(), rules);
    assert_eq!(
        to_sieve(&rules).unwrap(),
        "# couchmail-rules v1\nrequire [\"fileinto\", \"mailbox\"];\n\n# rule \"To folder\"\nif allof (header :contains \"Subject\" \"X\") {\n    fileinto :create \"Folder\";\n}\n"
    );
}

#[test]
fn unknown_json_fields_are_refused() {
    let json = serde_json::json!({ "rules": [{ "name": "a", "actions": [{ "kind": "fileinto", "folder": "F", "extra": 1 }] }] });
    assert!(serde_json::from_value::<RuleSet>(json).is_err());
    let json = serde_json::json!({ "rules": [{ "name": "a", "actions": [{ "kind": "keep" }], "extra": 1 }] });
    assert!(serde_json::from_value::<RuleSet>(json).is_err());
    let json = serde_json::json!({ "rules": [{ "name": "a", "actions": [{ "kind": "addflag" }] }] });
    assert!(serde_json::from_value::<RuleSet>(json).is_err());
}

/// How many generated scripts `sievec` checks.
const N_SIEVEC_SCRIPTS: usize = 300;
/// How many `sievec` processes run at once.
const SIEVEC_PARALLEL: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sievec_accepts_what_the_editor_writes() {
    let program = couchmail_supervisor::system::find_program("sievec");
    if !program.is_file() {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI must run the sievec check: install dovecot-sieve");
        eprintln!("skipping: sievec is not installed (Debian's dovecot-sieve)");
        return;
    }
    let sievec = couchmail_supervisor::Sievec { program, config: None };
    // A fixed seed, so that a failure names a script that fails again on the next run.
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let strategy = rule_set();
    let mut scripts = Vec::with_capacity(N_SIEVEC_SCRIPTS);
    while scripts.len() < N_SIEVEC_SCRIPTS {
        let rules = strategy.new_tree(&mut runner).unwrap().current();
        if rules.rules.is_empty() {
            continue;
        }
        scripts.push(to_sieve(&rules).unwrap());
    }
    let mut n_checked = 0;
    for batch in scripts.chunks(SIEVEC_PARALLEL) {
        let mut checks = tokio::task::JoinSet::new();
        for script in batch {
            let sievec = sievec.clone();
            let script = script.clone();
            checks.spawn(async move {
                let result = sievec.check(&script).await;
                (script, result)
            });
        }
        while let Some(joined) = checks.join_next().await {
            let (script, result) = joined.unwrap();
            if let Err(err) = result {
                panic!("sievec refused a script the editor wrote: {err:?}\n{script}");
            }
            n_checked += 1;
        }
    }
    assert_eq!(n_checked, N_SIEVEC_SCRIPTS);
    eprintln!("sievec accepted {n_checked} generated scripts");
}

/// Runs Pigeonhole's `sieve-test` on `script` and `message` (envelope sender `from`) and returns what it says the
/// script does; `None` when it cannot run here (allowed outside CI only).
/// Pigeonhole will not run as root, so under root the tool runs as `nobody` through `setpriv`.
fn sieve_test(script: &str, message: &str, from: &str) -> Option<String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let in_ci = std::env::var("CI").as_deref() == Ok("true");
    let program = couchmail_supervisor::system::find_program("sieve-test");
    if !program.is_file() {
        assert!(!in_ci, "CI must run sieve-test: install dovecot-sieve");
        eprintln!("skipping: sieve-test is not installed (Debian's dovecot-sieve)");
        return None;
    }
    let me = std::fs::metadata("/proc/self").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let script_path = dir.path().join("rules.sieve");
    let message_path = dir.path().join("message.eml");
    std::fs::write(&script_path, script).unwrap();
    std::fs::write(&message_path, message).unwrap();
    for path in [&script_path, &message_path] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut command = std::process::Command::new("timeout");
    command.arg("20");
    let (uid, gid) = if me.uid() == 0 {
        let setpriv = couchmail_supervisor::system::find_program("setpriv");
        if !setpriv.is_file() {
            assert!(!in_ci, "CI must run sieve-test: as root that needs setpriv (util-linux)");
            eprintln!("skipping: running sieve-test as root needs setpriv");
            return None;
        }
        command.arg(setpriv).args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        (65534, 65534)
    } else {
        (me.uid(), me.gid())
    };
    command
        .arg(program)
        .args(["-o", &format!("mail_uid={uid}"), "-o", &format!("mail_gid={gid}"), "-f", from])
        .args(["-r", "me@example.com"])
        .arg(&script_path)
        .arg(&message_path)
        .env("HOME", dir.path())
        .stdin(std::process::Stdio::null());
    let output = command.output().unwrap();
    // The reply's text is printed with CRLF line ends.
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
        .replace("\r\n", "\n");
    assert!(output.status.success(), "sieve-test failed:\n{text}\n{script}");
    Some(text)
}

fn message(from: &str, subject: &str) -> String {
    format!("From: {from}\r\nTo: me@example.com\r\nSubject: {subject}\r\nMessage-ID: <1@example.com>\r\n\r\nHello.\r\n")
}

fn header_rule(name: &str, value: &str, actions: Vec<Action>) -> Rule {
    Rule {
        name: name.to_owned(),
        enabled: true,
        matching: Matching::All,
        conditions: vec![Condition::Header {
            headers: vec!["Subject".to_owned()],
            match_type: MatchType::Contains,
            value: value.to_owned(),
            not: false,
        }],
        actions,
    }
}

#[test]
fn pigeonhole_runs_the_written_rules_as_they_mean() {
    let into_folder =
        header_rule("To folder", "X", vec![Action::Fileinto { folder: "Folder".to_owned(), create: true }]);
    let script = to_sieve(&RuleSet { rules: vec![into_folder.clone()] }).unwrap();
    let Some(matched) = sieve_test(&script, &message("a@example.org", "about X"), "a@example.org") else { return };
    assert!(matched.contains("store message in folder: Folder"), "{matched}");
    assert!(matched.contains("create mailbox if it does not exist"), "{matched}");
    let other = sieve_test(&script, &message("a@example.org", "about Y"), "a@example.org").unwrap();
    assert!(!other.contains("Folder") && other.contains("store message in folder: INBOX"), "{other}");

    // A disabled rule stays in the script and never fires.
    let disabled = Rule { enabled: false, ..into_folder };
    let script = to_sieve(&RuleSet { rules: vec![disabled] }).unwrap();
    let result = sieve_test(&script, &message("a@example.org", "about X"), "a@example.org").unwrap();
    assert!(!result.contains("Folder"), "{result}");

    // Any-of address and size, not, envelope, and stop ending the run.
    let rules = RuleSet {
        rules: vec![
            Rule {
                name: "copy friends".to_owned(),
                enabled: true,
                matching: Matching::Any,
                conditions: vec![
                    Condition::Address {
                        headers: vec!["From".to_owned()],
                        part: AddressPart::Domain,
                        match_type: MatchType::Is,
                        value: "friends.example".to_owned(),
                        not: false,
                    },
                    Condition::Size { comparison: SizeComparison::Over, amount: 5, unit: SizeUnit::M, not: false },
                ],
                actions: vec![Action::Redirect { address: "bob@example.com".to_owned(), copy: true }],
            },
            Rule {
                name: "alice".to_owned(),
                enabled: true,
                matching: Matching::All,
                conditions: vec![Condition::Envelope {
                    field: EnvelopePart::From,
                    part: AddressPart::Localpart,
                    match_type: MatchType::Is,
                    value: "alice".to_owned(),
                    not: false,
                }],
                actions: vec![Action::Fileinto { folder: "Alice".to_owned(), create: false }, Action::Stop],
            },
            Rule {
                name: "not urgent".to_owned(),
                enabled: true,
                matching: Matching::All,
                conditions: vec![Condition::Header {
                    headers: vec!["Subject".to_owned()],
                    match_type: MatchType::Contains,
                    value: "urgent".to_owned(),
                    not: true,
                }],
                actions: vec![Action::Discard],
            },
        ],
    };
    let script = to_sieve(&rules).unwrap();
    let friend = sieve_test(&script, &message("carol@friends.example", "urgent: hi"), "carol@friends.example").unwrap();
    assert!(friend.contains("redirect message to: <bob@example.com>"), "{friend}");
    assert!(friend.contains("preserve implicit keep") && !friend.contains("discard"), "{friend}");
    let alice = sieve_test(&script, &message("alice@a.example", "hello"), "alice@a.example").unwrap();
    assert!(
        alice.contains("store message in folder: Alice") && !alice.contains("discard"),
        "stop ends the run: {alice}"
    );
    let stranger = sieve_test(&script, &message("x@elsewhere.example", "hello"), "x@elsewhere.example").unwrap();
    assert!(stranger.contains("discard") && !stranger.contains("redirect"), "{stranger}");

    // A vacation reply's text comes back as written, dot-stuffing undone.
    let away = Rule {
        name: "away".to_owned(),
        enabled: true,
        matching: Matching::All,
        conditions: vec![],
        actions: vec![Action::Vacation {
            days: 3,
            subject: Some("Away \"now\"".to_owned()),
            reason: "Back soon.\n.\n..two dots".to_owned(),
            addresses: vec![],
        }],
    };
    let script = to_sieve(&RuleSet { rules: vec![away] }).unwrap();
    let reply = sieve_test(&script, &message("x@elsewhere.example", "hello"), "x@elsewhere.example").unwrap();
    assert!(reply.contains("send vacation message"), "{reply}");
    assert!(reply.contains("START MESSAGE\nBack soon.\n.\n..two dots\n\nEND MESSAGE"), "{reply}");
}
