//! Raw-byte conversations with a running server, written as Dovecot 2.3.19 and 2.4 write them.

use std::sync::Arc;
use std::time::Duration;

use couchmail_dovecot_dict::{Client, ErrorKind, Hello, IterateFlags, READ_ONLY_MESSAGE, ServerConfig};
use tokio::io::AsyncWriteExt;

use super::support::{
    BROKEN_USER, FAILING_PATH, FakeLookup, PANIC_KEY, TestServer, assert_closed, assert_silent, converse,
    standard_lookup,
};

const ESCAPED_SCRIPT: &[u8] = b"Orequire \"fileinto\";\x01r\x01nfileinto\x01t\"x\";\x01n\x011end\n";

async fn standard_server() -> TestServer {
    TestServer::start(Arc::new(standard_lookup()), ServerConfig::default()).await
}

fn read_only_reply(prefix: &str, id: u32) -> Vec<u8> {
    format!("{prefix}F{id}\t{READ_ONLY_MESSAGE}\n").into_bytes()
}

#[tokio::test]
async fn hello_of_major_3_and_4_is_accepted_without_a_reply() {
    let server = standard_server().await;
    for hello in [&b"H3\t2\t0\t\tsieve\n"[..], b"H4\t0\t0\t\tsieve\n", b"H4\t0\t0\t\tsieve\tlater-field\n"] {
        let mut stream = server.connect().await;
        stream.write_all(hello).await.unwrap();
        assert_silent(&mut stream, Duration::from_millis(100)).await;
        converse(&mut stream, b"Lpriv/sieve/name/active\talice@example.com\n", b"Oid-1\n").await;
    }
    server.stop().await;
}

#[tokio::test]
async fn other_majors_and_missing_hellos_are_refused_by_closing() {
    let lookup = Arc::new(standard_lookup());
    let server = TestServer::start(lookup.clone(), ServerConfig::default()).await;
    for first_line in [
        &b"H2\t2\t0\talice\tsieve\n"[..],
        b"H5\t0\t0\t\tsieve\n",
        b"H3\t2\n",
        b"Lpriv/sieve/name/active\talice@example.com\n",
        b"\n",
        b"\x00\xff garbage\n",
    ] {
        let mut stream = server.connect().await;
        stream.write_all(first_line).await.unwrap();
        assert_closed(&mut stream).await;
    }
    assert_eq!(lookup.n_calls(), 0);
    server.stop().await;
}

#[tokio::test]
async fn lookup_found_not_found_and_failure() {
    let server = standard_server().await;
    let mut stream = server.hello().await;
    converse(&mut stream, b"Lpriv/sieve/name/active\talice@example.com\n", b"Oid-1\n").await;
    converse(&mut stream, b"Lpriv/sieve/data/id-1\talice@example.com\n", ESCAPED_SCRIPT).await;
    converse(&mut stream, b"Lpriv/sieve/name/active\tcarol@example.com\n", b"N\n").await;
    converse(&mut stream, format!("Lpriv/sieve/name/active\t{BROKEN_USER}\n").as_bytes(), b"Findex not ready\n").await;
    // A malformed lookup still gets an answer, so the client's replies stay in order.
    converse(&mut stream, b"Lpriv/no-user\n", b"Fmalformed lookup line: missing user\n").await;
    converse(&mut stream, b"L\xff\talice@example.com\n", b"Fmalformed lookup line: key is not UTF-8\n").await;
    converse(&mut stream, b"Lpriv/sieve/name/active\talice@example.com\n", b"Oid-1\n").await;
    server.stop().await;
}

#[tokio::test]
async fn a_panicking_lookup_is_a_failure_and_the_server_lives_on() {
    let server = standard_server().await;
    let mut stream = server.hello().await;
    let panicking = format!("L{PANIC_KEY}\talice@example.com\n");
    converse(&mut stream, panicking.as_bytes(), b"Finternal error in couchmail's dict lookup\n").await;
    converse(&mut stream, b"Lpriv/sieve/name/active\talice@example.com\n", b"Oid-1\n").await;
    let mut other = server.hello().await;
    converse(&mut other, b"Lpriv/sieve/name/active\talice@example.com\n", b"Oid-1\n").await;
    server.stop().await;
}

#[tokio::test]
async fn iterate_sends_rows_then_an_empty_line() {
    let server = standard_server().await;
    let mut stream = server.hello().await;
    let one_level = b"Opriv/list/a\t1\nOpriv/list/b\t2\n\n";
    converse(&mut stream, b"I0\t0\tpriv/list/\talice@example.com\n", one_level).await;
    let recursive = b"Opriv/list/a\t1\nOpriv/list/b\t2\nOpriv/list/deeper/c\t3\n\n";
    converse(&mut stream, b"I1\t0\tpriv/list/\talice@example.com\n", recursive).await;
    converse(&mut stream, b"I1\t2\tpriv/list/\talice@example.com\n", b"Opriv/list/a\t1\nOpriv/list/b\t2\n\n").await;
    converse(&mut stream, b"I8\t0\tpriv/list/\talice@example.com\n", b"Opriv/list/a\t\nOpriv/list/b\t\n\n").await;
    converse(&mut stream, b"I16\t0\tpriv/sieve/name/active\talice@example.com\n", b"Opriv/sieve/name/active\tid-1\n\n")
        .await;
    converse(&mut stream, b"I16\t0\tpriv/sieve/name/none\talice@example.com\n", b"\n").await;
    converse(&mut stream, b"I0\t0\tpriv/list/\tbob@example.com\n", b"Opriv/list/a\tbob's\n\n").await;
    converse(&mut stream, b"I0\t0\tpriv/nothing/\talice@example.com\n", b"\n").await;
    server.stop().await;
}

#[tokio::test]
async fn iterate_failures_end_with_a_single_failure_line() {
    let server = standard_server().await;
    let mut stream = server.hello().await;
    let failing = format!("I0\t0\t{FAILING_PATH}\talice@example.com\n");
    converse(&mut stream, failing.as_bytes(), b"Fiteration backend down\n").await;
    let broken = format!("I0\t0\tpriv/list/\t{BROKEN_USER}\n");
    converse(&mut stream, broken.as_bytes(), b"Findex not ready\n").await;
    converse(
        &mut stream,
        b"Ix\t0\tpriv/list/\talice@example.com\n",
        b"Fmalformed iterate line: flags \"x\" is not a number\n",
    )
    .await;
    converse(&mut stream, b"I0\t0\tpriv/list/\talice@example.com\n", b"Opriv/list/a\t1\nOpriv/list/b\t2\n\n").await;
    server.stop().await;
}

#[tokio::test]
async fn iterate_sorts_when_asked() {
    let lookup = FakeLookup::default().with("u", "p/a", "3").with("u", "p/b", "1").with("u", "p/c", "2");
    let server = TestServer::start(Arc::new(lookup), ServerConfig::default()).await;
    let mut stream = server.hello().await;
    converse(&mut stream, b"I4\t0\tp/\tu\n", b"Op/b\t1\nOp/c\t2\nOp/a\t3\n\n").await;
    converse(&mut stream, b"I2\t0\tp/\tu\n", b"Op/a\t3\nOp/b\t1\nOp/c\t2\n\n").await;
    server.stop().await;
}

#[tokio::test]
async fn escaping_round_trips_through_the_server() {
    let server = standard_server().await;
    let mut stream = server.hello().await;
    // The key arrives escaped and is looked up unescaped.
    converse(&mut stream, b"Lpriv/key\x01twith tab\talice@example.com\n", b"Otabbed\n").await;
    // The client side unescapes what the server escaped.
    let mut client = Client::connect(&server.socket, &Hello::new(4, "sieve")).await.unwrap();
    let script = client.lookup("alice@example.com", "priv/sieve/data/id-1").await.unwrap();
    assert_eq!(script.as_deref(), Some("require \"fileinto\";\r\nfileinto\t\"x\";\n\x01end"));
    assert_eq!(client.lookup("alice@example.com", "priv/key\twith tab").await.unwrap().as_deref(), Some("tabbed"));
    let rows = client.iterate("alice@example.com", "priv/sieve/", IterateFlags::RECURSE, 0).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].1, "require \"fileinto\";\r\nfileinto\t\"x\";\n\x01end");
    server.stop().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let server = standard_server().await;
    let mut stream = server.connect().await;
    let requests = b"H3\t2\t0\t\tsieve\n\
        Lpriv/sieve/name/active\talice@example.com\n\
        I0\t0\tpriv/list/\talice@example.com\n\
        B1\talice@example.com\n\
        T1\t1700000000\t0\n\
        C1\n\
        Lpriv/sieve/name/active\tcarol@example.com\n\
        B2\talice@example.com\n\
        S2\tpriv/x\ty\n\
        C2\n\
        Lpriv/sieve/data/id-1\talice@example.com\n";
    let mut expected = b"Oid-1\nOpriv/list/a\t1\nOpriv/list/b\t2\n\nO1\nN\n".to_vec();
    expected.extend_from_slice(&read_only_reply("", 2));
    expected.extend_from_slice(ESCAPED_SCRIPT);
    converse(&mut stream, requests, &expected).await;

    // Many lookups in one write, split across reads at arbitrary places, are all answered.
    let mut many = Vec::new();
    for _ in 0..500 {
        many.extend_from_slice(b"Lpriv/sieve/name/active\talice@example.com\n");
    }
    converse(&mut stream, &many, &b"Oid-1\n".repeat(500)).await;
    server.stop().await;
}

#[tokio::test]
async fn a_commit_with_writes_is_refused_and_the_connection_keeps_working() {
    let server = standard_server().await;
    let mut stream = server.hello().await;
    converse(&mut stream, b"B1\talice@example.com\nS1\tpriv/sieve/data/x\tdiscard;\nC1\n", &read_only_reply("", 1))
        .await;
    converse(&mut stream, b"Lpriv/sieve/name/active\talice@example.com\n", b"Oid-1\n").await;
    converse(&mut stream, b"B2\talice@example.com\nU2\tpriv/sieve/name/active\nC2\n", &read_only_reply("", 2)).await;
    converse(&mut stream, b"B3\talice@example.com\nA3\tpriv/quota\t5\nD3\n", &read_only_reply("A", 3)).await;
    // Without writes a commit succeeds; a rollback gets no reply at all.
    converse(&mut stream, b"B4\talice@example.com\nC4\n", b"O4\n").await;
    converse(
        &mut stream,
        b"B5\talice@example.com\nS5\tk\tv\nR5\nLpriv/sieve/name/active\talice@example.com\n",
        b"Oid-1\n",
    )
    .await;
    // A transaction id may be reused once it is finished.
    converse(&mut stream, b"B1\talice@example.com\nC1\n", b"O1\n").await;
    converse(&mut stream, b"C77\n", b"F77\ttransaction 77 was never begun\n").await;

    let mut client = Client::connect(&server.socket, &Hello::new(3, "sieve")).await.unwrap();
    let err = client.set("alice@example.com", "priv/sieve/name/active", "id-2").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ServerFailure);
    assert!(err.to_string().contains(READ_ONLY_MESSAGE), "{err}");
    assert_eq!(client.lookup("alice@example.com", "priv/sieve/name/active").await.unwrap().as_deref(), Some("id-1"));
    server.stop().await;
}

#[tokio::test]
async fn transaction_misuse_closes_the_connection() {
    let server = standard_server().await;
    for misuse in [
        &b"S9\tkey\tvalue\n"[..],
        b"R9\n",
        b"T9\t1\t2\n",
        b"B1\tu\nB1\tu\n",
        b"Bx\tu\n",
        b"Cnot-a-number\n",
        b"S1\n",
        b"H3\t2\t0\t\tsieve\n",
        b"Qunknown\n",
        b"\n",
    ] {
        let mut stream = server.hello().await;
        stream.write_all(misuse).await.unwrap();
        assert_closed(&mut stream).await;
    }
    let mut stream = server.hello().await;
    converse(&mut stream, b"Lpriv/sieve/name/active\talice@example.com\n", b"Oid-1\n").await;
    server.stop().await;
}

#[tokio::test]
async fn too_many_open_transactions_close_the_connection() {
    let config = ServerConfig { max_open_transactions: 2, ..ServerConfig::default() };
    let server = TestServer::start(Arc::new(standard_lookup()), config).await;
    let mut stream = server.hello().await;
    converse(&mut stream, b"B1\tu\nB2\tu\nC1\n", b"O1\n").await;
    stream.write_all(b"B3\tu\nB4\tu\n").await.unwrap();
    assert_closed(&mut stream).await;
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_line_closes_only_its_connection() {
    let config = ServerConfig { max_line_length: 1024, ..ServerConfig::default() };
    let server = TestServer::start(Arc::new(standard_lookup()), config).await;
    let mut patient = server.hello().await;
    converse(&mut patient, b"Lpriv/sieve/name/active\talice@example.com\n", b"Oid-1\n").await;

    let mut flooding = server.hello().await;
    let mut huge = b"L".to_vec();
    huge.extend(std::iter::repeat_n(b'k', 4096));
    // No LF at all: the limit alone must end it.
    let _ = flooding.write_all(&huge).await;
    assert_closed(&mut flooding).await;

    // A line of exactly the limit is still fine.
    let mut exact = b"Lpriv/".to_vec();
    exact.extend(std::iter::repeat_n(b'k', 1024 - exact.len() - b"\tu".len()));
    exact.extend_from_slice(b"\tu\n");
    assert_eq!(exact.len(), 1025);
    converse(&mut patient, &exact, b"N\n").await;
    converse(&mut patient, b"Lpriv/sieve/name/active\talice@example.com\n", b"Oid-1\n").await;
    server.stop().await;
}

#[tokio::test]
async fn requests_before_an_oversized_line_are_still_answered() {
    let config = ServerConfig { max_line_length: 1024, ..ServerConfig::default() };
    let server = TestServer::start(Arc::new(standard_lookup()), config).await;
    let mut stream = server.hello().await;
    let mut requests = b"Lpriv/sieve/name/active\talice@example.com\n".to_vec();
    requests.extend(std::iter::repeat_n(b'L', 2048));
    let _ = stream.write_all(&requests).await;
    assert_eq!(super::support::read_exactly(&mut stream, 6).await, b"Oid-1\n");
    assert_closed(&mut stream).await;
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_line_at_the_default_limit_is_refused() {
    let server = standard_server().await;
    let mut flooding = server.hello().await;
    let mut huge = b"Lpriv/".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 70 * 1024));
    huge.extend_from_slice(b"\talice@example.com\n");
    let _ = flooding.write_all(&huge).await;
    assert_closed(&mut flooding).await;
    let mut other = server.hello().await;
    converse(&mut other, b"Lpriv/sieve/name/active\talice@example.com\n", b"Oid-1\n").await;
    server.stop().await;
}

#[tokio::test]
async fn garbage_never_stops_the_server() {
    let server = standard_server().await;
    // A small deterministic generator: the same garbage on every run, so a failure can be replayed.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..64 {
        let mut stream = if next() % 2 == 0 { server.hello().await } else { server.connect().await };
        let n_bytes = (next() % 300) as usize;
        let garbage: Vec<u8> = (0..n_bytes).map(|_| (next() % 256) as u8).collect();
        let _ = stream.write_all(&garbage).await;
        let _ = stream.shutdown().await;
        // Whatever came back, the connection ends: by the server closing it or by our EOF.
        let mut rest = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest))
                .await
                .expect("server neither answered nor closed");
    }
    let mut stream = server.hello().await;
    converse(&mut stream, b"Lpriv/sieve/name/active\talice@example.com\n", b"Oid-1\n").await;
    server.stop().await;
}

#[tokio::test]
async fn an_eof_inside_a_line_is_not_answered() {
    let server = standard_server().await;
    let mut stream = server.hello().await;
    stream.write_all(b"Lpriv/sieve/name/active\talice@example.com").await.unwrap();
    stream.shutdown().await.unwrap();
    assert_closed(&mut stream).await;
    server.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let config = ServerConfig { idle_timeout: Duration::from_millis(200), ..ServerConfig::default() };
    let server = TestServer::start(Arc::new(standard_lookup()), config).await;
    let mut idle = server.hello().await;
    converse(&mut idle, b"Lpriv/sieve/name/active\talice@example.com\n", b"Oid-1\n").await;
    let started = std::time::Instant::now();
    assert_closed(&mut idle).await;
    assert!(started.elapsed() >= Duration::from_millis(150), "closed too early: {:?}", started.elapsed());
    server.stop().await;
}

#[tokio::test]
async fn the_connection_limit_queues_further_clients() {
    let config = ServerConfig { max_connections: 1, ..ServerConfig::default() };
    let server = TestServer::start(Arc::new(standard_lookup()), config).await;
    let mut first = server.hello().await;
    converse(&mut first, b"Lpriv/sieve/name/active\talice@example.com\n", b"Oid-1\n").await;

    let mut second = server.hello().await;
    second.write_all(b"Lpriv/sieve/name/active\talice@example.com\n").await.unwrap();
    assert_silent(&mut second, Duration::from_millis(300)).await;

    drop(first);
    converse(&mut second, b"", b"Oid-1\n").await;
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_returns() {
    let server = standard_server().await;
    let mut stream = server.hello().await;
    converse(&mut stream, b"Lpriv/sieve/name/active\talice@example.com\n", b"Oid-1\n").await;
    let socket = server.socket.clone();
    server.stop().await;
    assert_closed(&mut stream).await;
    assert!(tokio::net::UnixStream::connect(&socket).await.is_err());
}
