//! The stack's TLS, checked from outside by testssl.sh (issue #6, item 4).
//!
//! One test runs Debian's `testssl` against the shared stack's four TLS
//! ports at once — 465 (submissions) and 993 (IMAPS) with implicit TLS, 587
//! and 25 with `-t smtp` STARTTLS — and, beside them, against the HTTPS port
//! of the REST API and web UI of a second stack whose `api.tls` is on (the
//! shared stack serves its API as plain HTTP on loopback, as `auto` does),
//! with a bounded set of checks (protocols, standard cipher groups, server
//! defaults, vulnerabilities) and a time limit per port. It reads each port's JSON report, saves it under the test's
//! output directory for inspection, and fails naming every finding of
//! severity HIGH or CRITICAL, and every scan problem, except the exempt ones
//! in [`EXEMPT`]: the stack's certificate is a self-signed development
//! certificate for another name by design, and testssl says so at those
//! severities. docs/tls.md has the command, the last result and the reasons.
//!
//! Without `testssl` the test prints a note and returns, except on CI
//! (`CI` set), where that is a failure: `cargo xtask test` installs it.
//!
//! A second test logs into the web UI over that HTTPS port, through the
//! harness's pinned client, and requires the session cookie to be `Secure`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use couchmail_testkit::stack::{ApiTransport, Daemons, MailStack, StackExtras, StackOptions};

use super::support::{PASSWORD, binary, runnable, shared};

/// The longest one port's scan may take; the ports run in parallel, so this
/// bounds the whole test (the five scans take 55 to 67 s together on 2 cores).
const PER_PORT: Duration = Duration::from_secs(150);

/// Findings that only describe the stack's development certificate, which
/// is self-signed by design: `(id, text the finding must contain, reason)`.
/// A real deployment uses an ACME or operator-provided certificate; none of
/// these says anything about the TLS settings render writes. The text keeps
/// an exemption from hiding a different finding under the same id.
pub const EXEMPT: &[(&str, &str, &str)] = &[
    (
        "cert_chain_of_trust",
        "self signed",
        "the development certificate is self-signed, so no chain leads to a trusted root",
    ),
    (
        "cert_revocation",
        "Neither CRL nor OCSP URI provided",
        "a self-signed certificate has no issuing CA, so no CRL or OCSP responder can revoke it",
    ),
];

/// The stack whose REST API and web UI speak HTTPS (`api.tls = "on"`),
/// shared by this file's tests: couchmail alone ([`Daemons::None`]), which
/// makes the same self-signed certificate as a full stack and serves the
/// API with it in a second, without Postfix and Dovecot; `None` when the
/// machine cannot run stacks.
fn https_api_stack() -> Option<&'static MailStack> {
    static STACK: OnceLock<Result<MailStack, String>> = OnceLock::new();
    if !runnable() {
        return None;
    }
    let started = STACK.get_or_init(|| {
        let options = StackOptions { daemons: Daemons::None };
        MailStack::try_start_with_api(binary(), options, None, StackExtras::default(), ApiTransport::Https)
    });
    match started {
        Ok(stack) => Some(stack),
        Err(err) => panic!("the stack with the API on HTTPS did not start:\n{err}"),
    }
}

/// One scanned port: its name in messages, its port, and testssl's STARTTLS protocol if any.
struct Target {
    name: &'static str,
    port: u16,
    starttls: Option<&'static str>,
}

/// One entry of testssl's flat JSON report.
#[derive(Debug, Default)]
struct Finding {
    id: String,
    severity: String,
    finding: String,
}

#[test]
fn testssl_finds_nothing_high_or_critical_on_any_tls_port() {
    if !testssl_installed() {
        return;
    }
    // Both stacks start at once: the API's alone takes about a second, the shared one several.
    let (stack, https_api) = std::thread::scope(|scope| {
        let https_api = scope.spawn(https_api_stack);
        (shared(), https_api.join().unwrap())
    });
    let (Some(stack), Some(https_api)) = (stack, https_api) else { return };
    let ports = stack.ports();
    let targets = [
        Target { name: "submissions (465)", port: ports.submissions, starttls: None },
        Target { name: "imaps (993)", port: ports.imaps, starttls: None },
        Target { name: "submission (587)", port: ports.submission, starttls: Some("smtp") },
        Target { name: "smtp (25)", port: ports.smtp, starttls: Some("smtp") },
        Target { name: "api (HTTPS, api.listen)", port: https_api.ports().api, starttls: None },
    ];
    let output = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tls-testssl");
    std::fs::create_dir_all(&output).unwrap();

    let started = Instant::now();
    let reports: Vec<(String, Result<Vec<Finding>, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = targets
            .iter()
            .map(|target| {
                let output = &output;
                scope.spawn(move || (target.name.to_owned(), scan(target, output)))
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().unwrap()).collect()
    });
    eprintln!("testssl scanned {} ports in {:?}; JSON in {}", targets.len(), started.elapsed(), output.display());

    let mut failures = String::new();
    for (name, report) in &reports {
        let findings = match report {
            Ok(findings) => findings,
            Err(err) => {
                writeln!(failures, "{name}: {err}").unwrap();
                continue;
            }
        };
        let mut by_severity: BTreeMap<&str, usize> = BTreeMap::new();
        for finding in findings {
            *by_severity.entry(finding.severity.as_str()).or_default() += 1;
        }
        eprintln!("{name}: {} findings by severity {by_severity:?}", findings.len());
        for finding in findings {
            let exempt = EXEMPT.iter().any(|(id, text, _)| *id == finding.id && finding.finding.contains(text));
            if matches!(finding.severity.as_str(), "HIGH" | "CRITICAL" | "FATAL") || finding.id == "scanProblem" {
                let mark = if exempt { "exempt" } else { "FAIL" };
                eprintln!("  [{mark}] {} {}: {}", finding.severity, finding.id, finding.finding);
                if !exempt {
                    writeln!(failures, "{name}: {} {}: {}", finding.severity, finding.id, finding.finding).unwrap();
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "testssl found HIGH/CRITICAL problems in the stack's TLS (reports in {}):\n{failures}\n{}\n{}",
        output.display(),
        stack.diagnostics(),
        https_api.diagnostics()
    );
}

#[test]
fn web_ui_login_over_https_sets_a_secure_session_cookie() {
    let Some(stack) = https_api_stack() else { return };
    let address = "alice@tls-web.test";
    stack.cli_ok(&["domain", "add", "tls-web.test"]);
    stack.cli_ok_with_input(&["mailbox", "add", address, "--password-stdin"], &format!("{PASSWORD}\n"));

    // The REST API answers over HTTPS through the harness's client, which trusts only the stack's certificate.
    let api = stack.api();
    assert!(api.base_url().starts_with("https://"), "{}", api.base_url());
    let health = api.get("/health");
    assert_eq!(health.status, 200, "{health:?}");

    let web = stack.web();
    let login = web.log_in(address, PASSWORD);
    assert_eq!(login.status, 303, "the login was not accepted: {login:?}\n{}", stack.diagnostics());
    let session = login.set_cookie("couchmail_session").unwrap_or_else(|| panic!("no session cookie: {login:?}"));
    let attributes: Vec<&str> = session.split(';').skip(1).map(str::trim).collect();
    assert!(attributes.contains(&"Secure"), "the session cookie over HTTPS is not Secure: {session}");
    assert!(attributes.contains(&"HttpOnly"), "{session}");

    // The cookie is the session: the page the login leads to (`/`, which sends a mailbox to its own `/me`)
    // shows who is logged in.
    let mut page = login;
    for _ in 0..3 {
        let Some(next) = page.location.clone().filter(|_| page.status == 303) else { break };
        page = web.get(&next);
    }
    assert_eq!(page.status, 200, "the page after the login: {page:?}");
    assert!(page.body.contains(&format!("<span id=\"whoami\">{address}</span>")), "{}", page.body);
}

/// Whether `testssl` can run; without it, a note off CI and a failure on CI.
fn testssl_installed() -> bool {
    let found = Command::new("testssl").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the TLS check: `testssl` (Debian testssl.sh) is missing"
        );
        eprintln!("note: skipping the TLS check: `testssl` (Debian package testssl.sh) is not installed");
    }
    found
}

/// Runs testssl against one port, within [`PER_PORT`], and reads its JSON report.
fn scan(target: &Target, output: &Path) -> Result<Vec<Finding>, String> {
    let stem = target.name.split_whitespace().next().unwrap_or(target.name);
    let json = output.join(format!("{stem}.json"));
    let log = output.join(format!("{stem}.log"));
    // testssl refuses to overwrite an earlier report.
    let _ = std::fs::remove_file(&json);
    let mut command = Command::new("testssl");
    command.args(["--quiet", "--color", "0", "--warnings", "batch", "--nodns", "min", "--ip", "one"]);
    command.args(["--connect-timeout", "10", "--openssl-timeout", "10"]);
    command.args(["--protocols", "--std", "--cipher-per-proto", "--server-defaults", "--vulnerable"]);
    if let Some(protocol) = target.starttls {
        command.args(["-t", protocol]);
    }
    command.arg("--jsonfile").arg(&json).arg(format!("127.0.0.1:{}", target.port));
    let log_file = std::fs::File::create(&log).map_err(|err| format!("cannot create {}: {err}", log.display()))?;
    let log_clone = log_file.try_clone().map_err(|err| format!("cannot share {}: {err}", log.display()))?;
    // A process group of its own, so that a scan over time stops with every openssl it started.
    use std::os::unix::process::CommandExt as _;
    command.process_group(0).stdin(Stdio::null()).stdout(log_file).stderr(log_clone);
    let mut child = command.spawn().map_err(|err| format!("cannot start testssl: {err}"))?;
    let started = Instant::now();
    loop {
        if child.try_wait().map_err(|err| format!("cannot wait for testssl: {err}"))?.is_some() {
            break;
        }
        if started.elapsed() > PER_PORT {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
            return Err(format!("testssl took longer than {PER_PORT:?}; its output is in {}", log.display()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("{}: testssl took {:?}", target.name, started.elapsed());
    let text = std::fs::read_to_string(&json).map_err(|err| {
        format!("testssl wrote no report {} ({err}); its output is in {}", json.display(), log.display())
    })?;
    let findings = parse_report(&text)?;
    if findings.is_empty() {
        return Err(format!("testssl's report {} has no findings; its output is in {}", json.display(), log.display()));
    }
    Ok(findings)
}

/// Reads testssl's flat JSON report: an array of objects whose values are
/// all strings. A few lines of parsing spare the crate a JSON dependency.
fn parse_report(text: &str) -> Result<Vec<Finding>, String> {
    let mut findings = Vec::new();
    let mut chars = text.chars();
    let mut current: Option<Finding> = None;
    let mut key: Option<String> = None;
    while let Some(character) = chars.next() {
        match character {
            '{' => current = Some(Finding::default()),
            '}' => findings.extend(current.take()),
            '"' => {
                let string = read_string(&mut chars)?;
                let Some(finding) = current.as_mut() else { return Err("a string outside an object".to_owned()) };
                match key.take() {
                    None => key = Some(string),
                    Some(name) => match name.as_str() {
                        "id" => finding.id = string,
                        "severity" => finding.severity = string,
                        "finding" => finding.finding = string,
                        _ => {}
                    },
                }
            }
            _ => {}
        }
    }
    if current.is_some() {
        return Err("the report ends inside an object".to_owned());
    }
    Ok(findings)
}

/// Reads a JSON string after its opening quote.
fn read_string(chars: &mut std::str::Chars<'_>) -> Result<String, String> {
    let mut string = String::new();
    loop {
        match chars.next() {
            None => return Err("the report ends inside a string".to_owned()),
            Some('"') => return Ok(string),
            Some('\\') => match chars.next() {
                Some('n') => string.push('\n'),
                Some('t') => string.push('\t'),
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    let code = u32::from_str_radix(&hex, 16).map_err(|err| format!("bad \\u{hex}: {err}"))?;
                    string.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                }
                Some(other) => string.push(other),
                None => return Err("the report ends inside an escape".to_owned()),
            },
            Some(other) => string.push(other),
        }
    }
}
