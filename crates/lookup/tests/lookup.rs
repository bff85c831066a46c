//! The adapters wired as `couchmail up` wires them: a real store followed into an index, served through the
//! real socketmap, dict and Dovecot auth servers, with auth-cache flushes computed from the index's changes.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use couchmail_dovecot_dict::{Hello, SieveDict};
use couchmail_index::{FollowConfig, Index, Snapshot, follow_with};
use couchmail_lookup::{Accounts, Flush, IndexSieve, MailLayout, Maps, users_to_flush};
use couchmail_model::{Document, Password, PasswordHash, SieveName};
use couchmail_socketmap::{Listener, Reply, ServerConfig};
use couchmail_store::Store;
use couchmail_testkit::TempStore;
use couchmail_testkit::fixtures::{alias, domain, domain_alias, mailbox, sieve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// Long enough for a slow CI machine, short enough to fail fast.
const PATIENCE: Duration = Duration::from_secs(10);

const SECRET: &str = "test-secret";

fn alice(hash: &PasswordHash) -> Document {
    let mut document = mailbox("alice@example.com");
    if let Document::Mailbox(mailbox) = &mut document {
        mailbox.password = Some(hash.clone());
        mailbox.sieve_active = Some(SieveName::parse("main").unwrap());
    }
    document
}

async fn put(store: &dyn Store, document: &Document) {
    let current = store.get(&document.id()).await.unwrap().map(|doc| doc.rev);
    store.put(&document.id(), current.as_ref(), &document.to_body()).await.unwrap();
}

/// `GET path` on the auth endpoint with the bearer secret: the status and the body.
async fn http_get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {SECRET}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn the_servers_answer_from_a_followed_store() {
    let temp = TempStore::new().await;
    let store: Arc<dyn Store> = temp.store.clone();
    let hash = PasswordHash::new(&Password::new("correct horse battery".to_owned()).unwrap());
    for document in [
        domain("example.com"),
        domain_alias("example.net", "example.com"),
        alice(&hash),
        mailbox("bob@example.com"),
        alias("info@example.com", &["alice@example.com", "bob@example.com"]),
        alias("@example.com", &["bob@example.com"]),
        sieve("alice@example.com", "main", "keep;\n"),
    ] {
        put(&*store, &document).await;
    }

    let index = Arc::new(Index::default());
    let mut changes = index.subscribe_changes();
    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let config = FollowConfig { poll_wait: Duration::from_millis(200), ..FollowConfig::default() };
    let follower =
        tokio::spawn(follow_with(config, Arc::clone(&store), Arc::clone(&index), until_stopped(stopped.clone())));

    let dir = tempfile::tempdir().unwrap();
    let socketmap_path = dir.path().join("socketmap");
    let socketmap_listener = Listener::bind_unix(&socketmap_path, 0o660).await.unwrap();
    let socketmap = tokio::spawn(couchmail_socketmap::run(
        socketmap_listener,
        Arc::new(Maps::new(Arc::clone(&index))),
        ServerConfig::default(),
        until_stopped(stopped.clone()),
    ));
    let dict_path = dir.path().join("dict");
    let dict_listener = couchmail_dovecot_dict::bind(&dict_path, 0o660).unwrap();
    let dict = tokio::spawn(couchmail_dovecot_dict::run(
        dict_listener,
        Arc::new(SieveDict::new(IndexSieve::new(Arc::clone(&index)), "active")),
        couchmail_dovecot_dict::ServerConfig::default(),
        until_stopped(stopped.clone()),
    ));
    let auth_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let auth_address = auth_listener.local_addr().unwrap();
    let layout = MailLayout { mail_root: PathBuf::from("/srv/mail"), uid: 5000, gid: 5000 };
    let auth = tokio::spawn(couchmail_dovecot_auth::serve(
        auth_listener,
        Arc::new(Accounts::new(Arc::clone(&index), layout)),
        SECRET,
        until_stopped(stopped.clone()),
    ));

    index.wait_until(Snapshot::is_ready, PATIENCE).await.expect("the index becomes ready");

    let mut client = couchmail_socketmap::Client::connect_unix(&socketmap_path).await.unwrap();
    for (map, key, expected) in [
        ("domains", "example.com", Reply::ok("example.com")),
        ("alias-domains", "example.net", Reply::ok("example.com")),
        ("mailboxes", "alice+news@example.com", Reply::ok("alice+news@example.com")),
        ("aliases", "alice+news@example.com", Reply::ok("alice+news@example.com")),
        ("aliases", "info@example.net", Reply::ok("info@example.com")),
        ("aliases", "info@example.com", Reply::ok("alice@example.com,bob@example.com")),
        ("aliases", "nobody@example.com", Reply::ok("bob@example.com")),
        ("senders", "info@example.com", Reply::ok("alice@example.com,bob@example.com")),
        ("senders", "nobody@example.com", Reply::NotFound),
        ("transport", "example.com", Reply::perm("unknown map transport")),
    ] {
        assert_eq!(client.lookup(map, key).await.unwrap(), expected, "{map} {key}");
    }

    let mut dict_client = couchmail_dovecot_dict::Client::connect(&dict_path, &Hello::new(3, "sieve")).await.unwrap();
    let id = dict_client.lookup("alice@example.com", "priv/sieve/name/active").await.unwrap().unwrap();
    let script = dict_client.lookup("alice@example.com", &format!("priv/sieve/data/{id}")).await.unwrap();
    assert_eq!(script.as_deref(), Some("keep;\n"));

    assert_eq!(
        http_get(auth_address, "/dovecot/passdb/alice@example.com").await,
        (200, format!("password={}\n", hash.as_str()))
    );
    let (status, body) = http_get(auth_address, "/dovecot/userdb/alice@example.com").await;
    assert_eq!((status, body.as_str()), (200, "home=/srv/mail/example.com/alice\nuid=5000\ngid=5000\n"));
    assert_eq!(http_get(auth_address, "/dovecot/iterate").await, (200, "alice@example.com\n".to_owned()));

    // A new password reaches the passdb, and the change names alice's cached answers as stale.
    let new_hash = PasswordHash::new(&Password::new("another horse battery".to_owned()).unwrap());
    put(&*store, &alice(&new_hash)).await;
    let batch = tokio::time::timeout(PATIENCE, changes.recv()).await.expect("a batch arrives").unwrap();
    assert_eq!(users_to_flush(&batch), Flush::Users(vec!["alice@example.com".to_owned()]));
    assert_eq!(
        http_get(auth_address, "/dovecot/passdb/alice@example.com").await,
        (200, format!("password={}\n", new_hash.as_str()))
    );

    stop.send(true).unwrap();
    drop(client);
    drop(dict_client);
    tokio::time::timeout(PATIENCE, follower).await.unwrap().unwrap();
    tokio::time::timeout(PATIENCE, socketmap).await.unwrap().unwrap();
    tokio::time::timeout(PATIENCE, dict).await.unwrap().unwrap();
    tokio::time::timeout(PATIENCE, auth).await.unwrap().unwrap().unwrap();
}
