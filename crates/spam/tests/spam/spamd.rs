//! spamd alone, as the supervisor runs it: scores per user, thresholds per user, training per user, and the
//! rendered wrappers as Dovecot runs them (as vmail).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use couchmail_render::{SPAM_FILTER_PROGRAM, SPAM_LEARN_PROGRAM, SpamScore};
use couchmail_spam::{Learned, MessageClass, SpamdClient};
use couchmail_supervisor::system::{BayesCounts, find_program};
use tokio::io::AsyncWriteExt;

use super::support::{Daemons, Tree, gtube, ham};

/// Starts spamd for `tree` and waits until it answers.
async fn start_spamd(tree: &Tree) -> Daemons {
    tree.write().await;
    let daemons = Daemons::start(couchmail_spam::daemons(&tree.stack));
    if let Err(err) = couchmail_spam::wait_until_ready(&tree.stack, Duration::from_secs(60)).await {
        panic!("spamd did not answer: {err}\n{}", tree.log_tail("spamd.log"));
    }
    daemons
}

/// Runs `program` as `user` (through setpriv, as Dovecot's mail processes run as vmail) with `input`.
async fn run_as(user: &str, program: &Path, args: &[&str], input: &str) -> (i32, String) {
    let mut child = tokio::process::Command::new(find_program("setpriv"))
        .args([format!("--reuid={user}"), format!("--regid={user}"), "--init-groups".to_owned(), "--".to_owned()])
        .arg(program)
        .args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Write while the program runs: spamc may answer before it has read everything (a message over its limit).
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_owned();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(input.as_bytes()).await;
    });
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.unwrap().unwrap();
    writer.await.unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spamd_scores_thresholds_and_learns_per_user() {
    let tree = Tree::new(false);
    let daemons = start_spamd(&tree).await;
    let spam = tree.spam();
    let config = &tree.stack.paths.config_dir;

    // The socket is vmail's and nobody else's: spamd believes the user name a client sends.
    let socket = std::fs::metadata(&spam.spamd_socket).unwrap();
    assert_eq!((socket.uid(), socket.mode() & 0o777), (tree.stack.vmail.uid, 0o660));
    let (status, output) =
        run_as("nobody", &config.join(SPAM_FILTER_PROGRAM), &["alice@example.com"], &gtube("x")).await;
    assert_ne!(status, 0, "another account must not reach spamd: {output}");

    // The filter wrapper, as Pigeonhole runs it: GTUBE comes back marked.
    let filter = config.join(SPAM_FILTER_PROGRAM);
    let (status, output) = run_as("vmail", &filter, &["alice@example.com"], &gtube("wrapper")).await;
    assert_eq!(status, 0, "{output}\n{}", tree.log_tail("spamd.log"));
    assert!(output.contains("X-Spam-Flag: YES"), "{output}");
    let (status, output) = run_as("vmail", &filter, &["alice@example.com"], &ham("wrapper")).await;
    assert_eq!(status, 0, "{output}");
    assert!(output.contains("X-Spam-Status: No"), "{output}");
    // A message over the size limit comes back unscanned and unchanged.
    let big = format!("{}{}\r\n", ham("big"), "x".repeat(600 * 1024));
    let (status, output) = run_as("vmail", &filter, &["alice@example.com"], &big).await;
    assert_eq!((status, output.len()), (0, big.len()));
    assert!(!output.contains("X-Spam-"));

    // Thresholds are per user: bob's user_prefs makes the same message spam for him only.
    let client = SpamdClient::new(&spam.spamd_socket);
    let message = ham("threshold").into_bytes();
    let for_alice = client.check("alice@example.com", &message).await.unwrap();
    assert!(!for_alice.is_spam && for_alice.threshold == 5.0, "{for_alice:?}");
    let low = SpamScore::from_tenths((for_alice.score * 10.0).floor() as i32 - 10);
    assert!(couchmail_spam::write_user_prefs(spam, tree.stack.vmail, "bob@example.com", Some(low)).unwrap());
    let for_bob = client.check("bob@example.com", &message).await.unwrap();
    assert!(for_bob.is_spam, "bob's threshold {low} must make {for_bob:?} spam");
    assert_eq!(client.check("alice@example.com", &message).await.unwrap(), for_alice);
    assert!(client.check("alice@example.com", gtube("client").as_bytes()).await.unwrap().is_spam);

    // Training through the learn wrapper changes the trainer's database and nobody else's.
    let learn = config.join(SPAM_LEARN_PROGRAM);
    assert_eq!(tree.bayes("alice@example.com").await, BayesCounts::default());
    let (status, output) = run_as("vmail", &learn, &["spam", "alice@example.com"], &gtube("learn")).await;
    assert_eq!(status, 0, "{output}\n{}", tree.log_tail("spamd.log"));
    let (status, output) = run_as("vmail", &learn, &["ham", "alice@example.com"], &ham("learn")).await;
    assert_eq!(status, 0, "{output}");
    let alice = tree.bayes("alice@example.com").await;
    assert_eq!((alice.spam, alice.ham), (1, 1), "{alice:?}");
    assert!(alice.tokens > 0);
    assert_eq!(tree.bayes("bob@example.com").await, BayesCounts::default(), "bob learned nothing");

    // Addresses that spamd alone would fold into one directory keep their own databases.
    let message = ham("odd local part").into_bytes();
    assert_eq!(client.learn("a!b@example.com", &message, MessageClass::Ham).await.unwrap(), Learned::Newly);
    assert_eq!(client.learn("a!b@example.com", &message, MessageClass::Ham).await.unwrap(), Learned::AlreadyKnown);
    assert_eq!(tree.bayes("a!b@example.com").await.ham, 1);
    assert_eq!(tree.bayes("a#b@example.com").await, BayesCounts::default());
    assert!(tree.spam().user_dir("a!b@example.com").ends_with("example.com/=612162"));
    assert!(!tree.spam().user_dir_root.join("example.com/a_b").exists());
    let user_dir = std::fs::metadata(spam.user_dir("alice@example.com")).unwrap();
    assert_eq!((user_dir.uid(), user_dir.permissions().mode() & 0o777), (tree.stack.vmail.uid, 0o700));

    daemons.stop().await;
    assert!(!spam.spamd_socket.exists() || SpamdClient::new(&spam.spamd_socket).ping().await.is_err());
}

/// The "Measure": scan latency per message and spamd's memory, printed (run with `--nocapture` to read
/// them; docs/spam.md has a recorded run). The bounds only catch a broken setup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_latency_and_memory() {
    let tree = Tree::new(false);
    let daemons = start_spamd(&tree).await;
    let client = SpamdClient::new(&tree.spam().spamd_socket);
    let message = ham("latency").into_bytes();
    // The first scan of a child compiles rules lazily; measure the steady state.
    for _ in 0..3 {
        client.check("alice@example.com", &message).await.unwrap();
    }
    let mut samples = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        client.check("alice@example.com", &message).await.unwrap();
        samples.push(started.elapsed());
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    let p90 = samples[samples.len() * 9 / 10];

    // The delivery path: the shell wrapper and spamc, as Pigeonhole runs them.
    let filter = tree.stack.paths.config_dir.join(SPAM_FILTER_PROGRAM);
    let mut wrapper_samples = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let (status, _) = run_as("vmail", &filter, &["alice@example.com"], &ham("latency")).await;
        assert_eq!(status, 0);
        wrapper_samples.push(started.elapsed());
    }
    wrapper_samples.sort();
    let wrapper_median = wrapper_samples[wrapper_samples.len() / 2];

    let (rss_kib, pss_kib, n_processes) = memory(&daemons.process_tree("spamd"));
    eprintln!(
        "spamd: {} bytes per message, median {median:?}, p90 {p90:?} over SPAMC; median {wrapper_median:?} through \
         the filter wrapper; {n_processes} processes, RSS {} MiB summed, PSS {} MiB",
        message.len(),
        rss_kib / 1024,
        pss_kib / 1024,
    );
    assert!(median < Duration::from_secs(2), "{median:?}");
    assert!(n_processes >= 2, "spamd runs a parent and at least one child");
    daemons.stop().await;
}

/// Summed RSS and PSS in KiB of `pids`, from /proc/PID/smaps_rollup, and how many there were.
fn memory(pids: &[u32]) -> (u64, u64, usize) {
    let mut rss = 0;
    let mut pss = 0;
    for pid in pids {
        let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else { continue };
        for line in rollup.lines() {
            let value = || line.split_whitespace().nth(1).and_then(|kib| kib.parse::<u64>().ok()).unwrap_or(0);
            if line.starts_with("Rss:") {
                rss += value();
            } else if line.starts_with("Pss:") {
                pss += value();
            }
        }
    }
    (rss, pss, pids.len())
}
