//! The auth endpoint over real HTTP, with a fake lookup.
#![allow(clippy::unwrap_used)] // Tests unwrap: a failure is the test failing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use couchmail_dovecot_auth::{AuthLookup, PassdbAnswer, UserFields, UserdbAnswer};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

struct Fake {
    ready: AtomicBool,
}

impl AuthLookup for Fake {
    fn passdb(&self, user: &str) -> PassdbAnswer {
        if !self.ready.load(Ordering::SeqCst) {
            return PassdbAnswer::NotReady;
        }
        match user {
            "alice@example.com" => {
                PassdbAnswer::Found { password: "{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into() }
            }
            "off@example.com" => PassdbAnswer::Disabled,
            "broken@example.com" => PassdbAnswer::Found { password: "x\nuid=0".into() },
            _ => PassdbAnswer::Unknown,
        }
    }

    fn userdb(&self, user: &str) -> UserdbAnswer {
        if !self.ready.load(Ordering::SeqCst) {
            return UserdbAnswer::NotReady;
        }
        match user {
            "alice@example.com" => UserdbAnswer::Found(UserFields {
                home: "/var/lib/couchmail/mail/example.com/alice".into(),
                uid: 5000,
                gid: 5000,
                quota_bytes: Some(1 << 30),
            }),
            _ => UserdbAnswer::Unknown,
        }
    }

    fn iterate(&self) -> Option<Vec<String>> {
        self.ready.load(Ordering::SeqCst).then(|| vec!["alice@example.com".into(), "bob@example.com".into()])
    }
}

struct Server {
    base: String,
    fake: Arc<Fake>,
    client: reqwest::Client,
}

impl Server {
    async fn start() -> Server {
        let fake = Arc::new(Fake { ready: AtomicBool::new(true) });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let lookup = fake.clone() as Arc<dyn AuthLookup>;
        tokio::spawn(couchmail_dovecot_auth::serve(listener, lookup, SECRET, std::future::pending()));
        // The workspace builds reqwest without a TLS provider of its own (`rustls-no-provider`),
        // and a client without one panics even for plain http: install ring, the workspace's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Server { base, fake, client: reqwest::Client::new() }
    }

    async fn get(&self, path: &str, secret: Option<&str>) -> (u16, String) {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(secret) = secret {
            req = req.bearer_auth(secret);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }
}

#[tokio::test]
async fn passdb_answers() {
    let server = Server::start().await;
    let (status, body) = server.get("/dovecot/passdb/alice%40example.com", Some(SECRET)).await;
    assert_eq!(status, 200);
    assert_eq!(body, "password={ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA\n");
    assert_eq!(server.get("/dovecot/passdb/nobody@example.com", Some(SECRET)).await.0, 404);
    assert_eq!(server.get("/dovecot/passdb/off@example.com", Some(SECRET)).await.0, 403);
    assert_eq!(server.get("/dovecot/passdb/Alice@example.com", Some(SECRET)).await.0, 400);
    assert_eq!(server.get("/dovecot/passdb/not-an-address", Some(SECRET)).await.0, 400);
    // A value that would inject a second field is never sent.
    let (status, body) = server.get("/dovecot/passdb/broken@example.com", Some(SECRET)).await;
    assert_eq!(status, 500);
    assert!(!body.contains("uid=0"));
}

#[tokio::test]
async fn userdb_and_iterate_answer() {
    let server = Server::start().await;
    let (status, body) = server.get("/dovecot/userdb/alice@example.com", Some(SECRET)).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "home=/var/lib/couchmail/mail/example.com/alice\nuid=5000\ngid=5000\nquota_rule=*:bytes=1073741824\n"
    );
    assert_eq!(server.get("/dovecot/userdb/nobody@example.com", Some(SECRET)).await.0, 404);
    let (status, body) = server.get("/dovecot/iterate", Some(SECRET)).await;
    assert_eq!(status, 200);
    assert_eq!(body, "alice@example.com\nbob@example.com\n");
}

#[tokio::test]
async fn not_ready_is_a_temporary_failure() {
    let server = Server::start().await;
    server.fake.ready.store(false, Ordering::SeqCst);
    for path in ["/dovecot/passdb/alice@example.com", "/dovecot/userdb/alice@example.com", "/dovecot/iterate"] {
        assert_eq!(server.get(path, Some(SECRET)).await.0, 503, "{path}");
    }
}

#[tokio::test]
async fn the_secret_is_required() {
    let server = Server::start().await;
    for secret in [None, Some(""), Some("wrong"), Some(&SECRET[..SECRET.len() - 1])] {
        for path in ["/dovecot/passdb/alice@example.com", "/dovecot/userdb/alice@example.com", "/dovecot/iterate"] {
            let (status, body) = server.get(path, secret).await;
            assert_eq!(status, 401, "{path} with {secret:?}");
            assert!(!body.contains("ARGON2ID"));
        }
    }
}
