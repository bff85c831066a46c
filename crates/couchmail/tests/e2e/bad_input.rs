//! Garbage on couchmail's socketmap and dict sockets and on its auth
//! endpoint gets an error or a closed connection, while other clients —
//! and a whole delivery through Postfix and Dovecot — keep being served.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use couchmail_testkit::stack::MailStack;

use super::support::{DELIVERY, PASSWORD, domain_with_mailboxes, shared, subject};

/// What a server did with bytes it should not accept.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// It closed the connection (or reset it), perhaps after an answer.
    Closed(String),
    /// It answered and kept the connection open.
    Answered(String),
}

/// Sends `bytes` and reads until the server closes or stays quiet for half a second.
fn outcome(stream: &mut (impl Read + Write), bytes: &[u8]) -> Outcome {
    if let Err(err) = stream.write_all(bytes).and_then(|()| stream.flush()) {
        // Refusing to read a flood is a fine way to refuse it.
        return Outcome::Closed(format!("(write failed: {err})"));
    }
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Outcome::Closed(String::from_utf8_lossy(&answer).into_owned()),
            Ok(read) => answer.extend_from_slice(&chunk[..read]),
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Outcome::Answered(String::from_utf8_lossy(&answer).into_owned());
            }
            Err(_) => return Outcome::Closed(String::from_utf8_lossy(&answer).into_owned()),
        }
    }
}

fn unix(path: &std::path::Path) -> UnixStream {
    let stream = UnixStream::connect(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    stream
}

fn netstring(text: &str) -> Vec<u8> {
    format!("{}:{text},", text.len()).into_bytes()
}

/// A well-formed socketmap lookup on a fresh connection.
fn socketmap_lookup(stack: &MailStack, map: &str, key: &str) -> String {
    let mut stream = unix(&stack.socketmap_socket());
    match outcome(&mut stream, &netstring(&format!("{map} {key}"))) {
        Outcome::Answered(answer) => answer,
        Outcome::Closed(answer) => {
            panic!("socketmap closed a good request (answer {answer:?})\n{}", stack.diagnostics())
        }
    }
}

#[test]
fn garbage_on_the_socketmap_is_refused_and_good_clients_are_still_served() {
    let Some(stack) = shared() else { return };
    domain_with_mailboxes(stack, "bad-socketmap.test", &["alice"]);
    // A client that stays connected while others misbehave.
    let mut patient = unix(&stack.socketmap_socket());

    let garbage: [&[u8]; 4] =
        [b"this is not a netstring\n", b"99999999999999999999:mailboxes x,", b"5:hello;", b"\x00\xff\x00\xff,,,:::"];
    for bytes in garbage {
        let mut stream = unix(&stack.socketmap_socket());
        let result = outcome(&mut stream, bytes);
        match &result {
            Outcome::Closed(_) => {}
            Outcome::Answered(answer) => assert!(
                answer.contains("PERM") || answer.contains("TEMP"),
                "garbage {bytes:?} got neither an error nor a close: {result:?}"
            ),
        }
        assert!(!format!("{result:?}").contains("OK "), "garbage {bytes:?} was answered OK: {result:?}");
    }
    // A frame announcing far more than the 100000-byte limit, then streaming.
    let mut flood = unix(&stack.socketmap_socket());
    let mut oversized = b"2000000:mailboxes ".to_vec();
    oversized.extend(std::iter::repeat_n(b'a', 300_000));
    assert!(matches!(outcome(&mut flood, &oversized), Outcome::Closed(_)), "an oversized frame was not refused");

    let answer = outcome(&mut patient, &netstring("mailboxes alice@bad-socketmap.test"));
    assert!(
        matches!(&answer, Outcome::Answered(text) if text.contains(":OK ")),
        "the patient client was not served: {answer:?}"
    );
    let fresh = socketmap_lookup(stack, "mailboxes", "nobody@bad-socketmap.test");
    assert!(fresh.contains(":NOTFOUND "), "{fresh:?}");
    delivery_still_works(stack, "alice@bad-socketmap.test");
}

#[test]
fn garbage_on_the_dict_socket_is_refused_and_good_clients_are_still_served() {
    let Some(stack) = shared() else { return };
    domain_with_mailboxes(stack, "bad-dict.test", &["alice"]);

    let mut no_hello = unix(&stack.dict_socket());
    let result = outcome(&mut no_hello, b"Lpriv/sieve/name/active\talice@bad-dict.test\n");
    assert!(
        matches!(&result, Outcome::Closed(_)) || matches!(&result, Outcome::Answered(text) if text.starts_with('F')),
        "a lookup without hello: {result:?}"
    );
    let mut wrong_version = unix(&stack.dict_socket());
    let result = outcome(&mut wrong_version, b"H9\t9\t0\t\tsieve\nLpriv/sieve/name/active\talice@bad-dict.test\n");
    assert!(
        !matches!(&result, Outcome::Answered(text) if text.starts_with('O')),
        "an unknown major version: {result:?}"
    );
    let mut binary = unix(&stack.dict_socket());
    let result = outcome(&mut binary, b"\x00\xff\xfe garbage \x01\x02\n\n\n");
    assert!(!matches!(&result, Outcome::Answered(text) if text.starts_with('O')), "binary garbage: {result:?}");
    let mut flood = unix(&stack.dict_socket());
    let mut long_line = b"H3\t2\t0\t\tsieve\nL".to_vec();
    long_line.extend(std::iter::repeat_n(b'x', 2_000_000));
    let result = outcome(&mut flood, &long_line);
    assert!(matches!(result, Outcome::Closed(_)), "a 2 MB line was not refused: {result:?}");

    let mut good = unix(&stack.dict_socket());
    let answer = outcome(&mut good, b"H3\t2\t0\t\tsieve\nLpriv/sieve/name/active\talice@bad-dict.test\n");
    assert_eq!(answer, Outcome::Answered("N\n".to_owned()), "no script is active for alice");
    delivery_still_works(stack, "alice@bad-dict.test");
}

#[test]
fn garbage_on_the_auth_endpoint_is_refused_and_logins_still_work() {
    let Some(stack) = shared() else { return };
    domain_with_mailboxes(stack, "bad-auth.test", &["alice"]);
    let address = stack.address(stack.ports().auth);
    let connect = || {
        let stream = TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        stream.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        stream
    };

    let result = outcome(&mut connect(), b"THIS IS NOT HTTP\r\n\r\n");
    assert!(
        matches!(&result, Outcome::Closed(text) if text.is_empty() || text.starts_with("HTTP/1.1 4")),
        "non-HTTP bytes: {result:?}"
    );
    let unauthenticated =
        b"GET /dovecot/passdb/alice%40bad-auth.test HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let result = outcome(&mut connect(), unauthenticated);
    assert!(format!("{result:?}").contains("HTTP/1.1 401"), "a request without the secret: {result:?}");
    assert!(!format!("{result:?}").contains("ARGON2"), "a hash leaked without the secret: {result:?}");
    let mut huge_header = b"GET /dovecot/passdb/alice HTTP/1.1\r\nX-Flood: ".to_vec();
    huge_header.extend(std::iter::repeat_n(b'a', 1_000_000));
    let result = outcome(&mut connect(), &huge_header);
    assert!(
        matches!(&result, Outcome::Closed(text) if text.is_empty() || text.starts_with("HTTP/1.1 4")),
        "a 1 MB header: {result:?}"
    );

    let login = stack.imap_login("alice@bad-auth.test", PASSWORD, std::net::IpAddr::from([127, 0, 0, 1]));
    assert!(login.is_ok(), "a login after the garbage: {login}\n{}", stack.diagnostics());
    delivery_still_works(stack, "alice@bad-auth.test");
}

/// A whole delivery: socketmap (Postfix), auth endpoint (Dovecot's userdb), dict (Sieve).
fn delivery_still_works(stack: &MailStack, user: &str) {
    let subject = subject("after the garbage");
    stack.deliver("sender@outside.example", user, &subject);
    stack.expect_message(user, PASSWORD, "INBOX", &subject, DELIVERY);
}
