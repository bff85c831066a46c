//! The whole path, with Dovecot and Postfix running from render's output next to spamd and spamass-milter:
//! spam filed into Junk before the user's own Sieve script, per-user thresholds at delivery, training by IMAP moves
//! for the mover only, refusal of blatant spam at SMTP time, and mail still delivered while spamd is down.

use std::time::Duration;

use couchmail_render::SpamScore;
use couchmail_spam::SpamdClient;
use couchmail_supervisor::system::{BayesCounts, postfix_check};

use super::support::{
    Daemons, Servers, Tree, dovecot_spec, gtube, ham, imap, lmtp_deliver, postfix_spec, smtp_send, wait_for,
};

/// bob files everything into Lists: his script runs only for what the spam filter lets through.
const BOB_SCRIPT: &str = "require \"fileinto\";\nfileinto \"Lists\";\n";

/// The sequence number of the message whose subject contains `subject` in `mailbox`.
async fn find(tree: &Tree, user: &str, mailbox: &str, subject: &str) -> u32 {
    let output =
        imap(&tree.stack, user, &[&format!("SELECT {mailbox}"), &format!("SEARCH SUBJECT \"{subject}\"")]).await;
    output
        .lines()
        .find_map(|line| line.strip_prefix("* SEARCH "))
        .and_then(|numbers| numbers.split_whitespace().next())
        .and_then(|number| number.trim().parse().ok())
        .unwrap_or_else(|| panic!("no message {subject:?} in {user}'s {mailbox}:\n{output}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spam_is_filed_trained_and_refused_per_user_and_never_lost() {
    let mut tree = Tree::new(true);
    let servers = Servers::start(&mut tree, &[("bob@example.com", BOB_SCRIPT)]).await;
    tree.write().await;
    postfix_check(&tree.stack.paths.postfix_config_dir()).await.unwrap();
    let spam_daemons = Daemons::start(couchmail_spam::daemons(&tree.stack));
    if let Err(err) = couchmail_spam::wait_until_ready(&tree.stack, Duration::from_secs(60)).await {
        panic!("{err}\n{}\n{}", tree.log_tail("spamd.log"), tree.log_tail("spamass-milter.log"));
    }
    let mail_daemons = Daemons::start(vec![dovecot_spec(&tree.stack), postfix_spec(&tree.stack)]);
    let diagnostics = || {
        format!("{}\n{}\n{}", tree.log_tail("dovecot.log"), tree.log_tail("postfix.log"), tree.log_tail("spamd.log"))
    };
    let lmtp = tree.stack.paths.lmtp_socket.clone();
    wait_for("Dovecot's LMTP socket", Duration::from_secs(30), diagnostics, || lmtp.exists()).await;
    let smtp_port = tree.stack.ports.smtp;
    wait_for("Postfix on port 25", Duration::from_secs(30), diagnostics, || {
        std::net::TcpStream::connect(("127.0.0.1", smtp_port)).is_ok()
    })
    .await;

    // GTUBE to two users in one LMTP transaction: each gets it in Junk, and bob's own script never sees it.
    let replies = lmtp_deliver(&lmtp, &["alice@example.com", "bob@example.com"], &gtube("gtube-lmtp")).await;
    assert!(replies.iter().all(|reply| reply.starts_with("250")), "{replies:?}\n{}", diagnostics());
    for user in ["alice@example.com", "bob@example.com"] {
        let junk = tree.mailbox(user, "Junk");
        assert_eq!(junk.len(), 1, "{user}'s Junk\n{}", diagnostics());
        assert!(junk[0].contains("X-Spam-Flag: YES"), "{}", junk[0]);
        assert!(tree.mailbox(user, "INBOX").is_empty(), "{user}");
    }
    assert!(tree.mailbox("bob@example.com", "Lists").is_empty(), "bob's script ran for spam");

    // An ordinary message reaches the INBOX scanned, and bob's script runs on it and sees the scan.
    let replies = lmtp_deliver(&lmtp, &["alice@example.com", "bob@example.com"], &ham("lunch-lmtp")).await;
    assert!(replies.iter().all(|reply| reply.starts_with("250")), "{replies:?}");
    let inbox = tree.mailbox("alice@example.com", "INBOX");
    assert_eq!(inbox.len(), 1, "{}", diagnostics());
    assert!(inbox[0].contains("X-Spam-Status: No"), "{}", inbox[0]);
    let lists = tree.mailbox("bob@example.com", "Lists");
    assert_eq!(lists.len(), 1, "bob's script must run after the filter\n{}", diagnostics());
    assert!(lists[0].contains("X-Spam-Status: No"), "{}", lists[0]);

    // Thresholds are per user: with alice's below the message's score, the same message is spam for her alone.
    let score = SpamdClient::new(&tree.spam().spamd_socket)
        .check("alice@example.com", ham("threshold").as_bytes())
        .await
        .unwrap()
        .score;
    let low = SpamScore::from_tenths((score * 10.0).floor() as i32 - 10);
    couchmail_spam::write_user_prefs(tree.spam(), tree.stack.vmail, "alice@example.com", Some(low)).unwrap();
    let replies = lmtp_deliver(&lmtp, &["alice@example.com", "bob@example.com"], &ham("threshold")).await;
    assert!(replies.iter().all(|reply| reply.starts_with("250")), "{replies:?}");
    assert_eq!(tree.mailbox("alice@example.com", "Junk").len(), 2, "alice's threshold {low}");
    assert_eq!(tree.mailbox("bob@example.com", "Lists").len(), 2, "bob keeps the site's threshold");
    couchmail_spam::write_user_prefs(tree.spam(), tree.stack.vmail, "alice@example.com", None).unwrap();

    // SMTP: blatant spam is refused at the end of DATA (the sender's server bounces, not us); the rest is delivered.
    let reply = smtp_send(smtp_port, "alice@example.com", &gtube("gtube-smtp")).await;
    assert!(
        reply.starts_with("550 5.7.1"),
        "{reply}\n{}\n{}",
        tree.log_tail("postfix.log"),
        tree.log_tail("spamd.log")
    );
    let reply = smtp_send(smtp_port, "alice@example.com", &ham("lunch-smtp")).await;
    assert!(reply.starts_with("250"), "{reply}");
    wait_for("the SMTP message in alice's INBOX", Duration::from_secs(30), diagnostics, || {
        tree.mailbox("alice@example.com", "INBOX").len() == 2
    })
    .await;

    // Training: a move into Junk teaches alice spam, a move out of Junk teaches her ham, a move to Trash nothing;
    // bob's database never changes.
    assert_eq!(tree.bayes("alice@example.com").await, BayesCounts::default());
    let lunch = find(&tree, "alice@example.com", "INBOX", "lunch-lmtp").await;
    let session = imap(&tree.stack, "alice@example.com", &["SELECT INBOX", &format!("MOVE {lunch} Junk")]).await;
    let alice = tree.bayes("alice@example.com").await;
    assert_eq!((alice.spam, alice.ham), (1, 0), "{alice:?}\n{session}\n{}", tree.log_tail("spamd.log"));
    let threshold = find(&tree, "alice@example.com", "Junk", "threshold").await;
    imap(&tree.stack, "alice@example.com", &["SELECT Junk", &format!("MOVE {threshold} INBOX")]).await;
    let alice = tree.bayes("alice@example.com").await;
    assert_eq!((alice.spam, alice.ham), (1, 1), "{alice:?}");
    let gtube_idx = find(&tree, "alice@example.com", "Junk", "gtube-lmtp").await;
    imap(&tree.stack, "alice@example.com", &["SELECT Junk", &format!("MOVE {gtube_idx} Trash")]).await;
    assert_eq!(tree.bayes("alice@example.com").await, alice, "a move to Trash is no verdict");
    assert_eq!(tree.mailbox("alice@example.com", "Trash").len(), 1);
    assert_eq!(tree.bayes("bob@example.com").await, BayesCounts::default(), "bob trained nothing");

    // The global scripts were compiled before use: no delivery or IMAP session had to compile (or failed to save)
    // a binary, or hit any other error.
    let dovecot_log = std::fs::read_to_string(&tree.stack.paths.dovecot_log).unwrap();
    assert!(!dovecot_log.contains("Error:"), "{dovecot_log}");

    // spamd and the milter down: mail is still accepted and delivered, unscanned, to the INBOX.
    spam_daemons.stop().await;
    let replies = lmtp_deliver(&lmtp, &["bob@example.com"], &gtube("gtube-spamd-down")).await;
    assert!(replies[0].starts_with("250"), "{replies:?}\n{}", diagnostics());
    let lists = tree.mailbox("bob@example.com", "Lists");
    let unscanned = lists.iter().find(|text| text.contains("gtube-spamd-down")).expect("delivered to bob's script");
    assert!(!unscanned.contains("X-Spam-"), "{unscanned}");
    let dovecot_log = std::fs::read_to_string(&tree.stack.paths.dovecot_log).unwrap();
    assert!(
        dovecot_log.lines().any(|line| line.contains("couchmail-spamc") && line.contains("non-zero exit code")),
        "the failed scan must show in Dovecot's log:\n{dovecot_log}"
    );
    let reply = smtp_send(smtp_port, "alice@example.com", &gtube("gtube-smtp-down")).await;
    assert!(reply.starts_with("250"), "a dead milter must not refuse mail: {reply}");
    wait_for("the unscanned SMTP message in alice's INBOX", Duration::from_secs(30), diagnostics, || {
        tree.mailbox("alice@example.com", "INBOX").iter().any(|text| text.contains("gtube-smtp-down"))
    })
    .await;

    mail_daemons.stop().await;
    drop(servers);
}
