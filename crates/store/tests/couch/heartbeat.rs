//! The long-poll against a server that behaves as CouchDB 3.x does with `heartbeat=`: it keeps
//! the answer open with blank lines until a change arrives, whatever `timeout=` said.
//! pouchdb-server behind the test proxy does not show this, so a small fake server does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use couchmail_store::{CouchConfig, CouchStore, Seq, Store};

/// A fake CouchDB that records the request lines of `_changes` requests.
struct FakeCouch {
    url: String,
    changes_requests: Arc<Mutex<Vec<String>>>,
}

const CHANGE: &str = r#"{"seq":"7-x","id":"domain:news.example","changes":[{"rev":"1-a"}],"doc":{"_id":"domain:news.example","_rev":"1-a","type":"domain"}}"#;

impl FakeCouch {
    fn start() -> FakeCouch {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let changes_requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = changes_requests.clone();
        // The thread ends with the test process; each connection's thread ends on its own.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let recorded = recorded.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &recorded);
                });
            }
        });
        FakeCouch { url, changes_requests }
    }
}

fn serve(stream: TcpStream, recorded: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut content_length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse().unwrap_or(0);
        }
    }
    reader.read_exact(&mut vec![0; content_length])?;
    let mut stream = stream;
    let method = request_line.split(' ').next().unwrap_or_default().to_owned();
    if request_line.contains("/_changes") {
        recorded.lock().unwrap().push(request_line.clone());
        return stream_changes(&mut stream, &request_line);
    }
    let (status, body) = match method.as_str() {
        "HEAD" => ("200 OK", ""),
        "PUT" => ("201 Created", r#"{"ok":true,"id":"x","rev":"1-x"}"#),
        _ => ("404 Not Found", r#"{"error":"not_found","reason":"missing"}"#),
    };
    let length = if method == "HEAD" { 0 } else { body.len() };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )?;
    if method != "HEAD" {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}

fn chunk(stream: &mut TcpStream, text: &str) -> std::io::Result<()> {
    write!(stream, "{:x}\r\n{text}\r\n", text.len())?;
    stream.flush()
}

/// `since=quiet`: heartbeats only (for at most 20 s); `since=news`: a change after 300 ms of
/// heartbeats; `since=slow`: a change that starts at 200 ms and ends at 900 ms.
fn stream_changes(stream: &mut TcpStream, request_line: &str) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )?;
    chunk(stream, "{\"results\":[\n")?;
    let started = Instant::now();
    let heartbeat = |stream: &mut TcpStream, until: Duration| -> std::io::Result<()> {
        while started.elapsed() < until {
            std::thread::sleep(Duration::from_millis(50));
            chunk(stream, "\n")?;
        }
        Ok(())
    };
    if request_line.contains("since=quiet") {
        return heartbeat(stream, Duration::from_secs(20));
    }
    if request_line.contains("since=slow") {
        heartbeat(stream, Duration::from_millis(200))?;
        let (head, tail) = CHANGE.split_at(40);
        chunk(stream, head)?;
        std::thread::sleep(Duration::from_millis(700));
        chunk(stream, tail)?;
    } else {
        heartbeat(stream, Duration::from_millis(300))?;
        chunk(stream, CHANGE)?;
    }
    chunk(stream, "\n],\n\"last_seq\":\"7-x\"}\n")?;
    stream.write_all(b"0\r\n\r\n")?;
    stream.flush()
}

async fn connect(fake: &FakeCouch) -> CouchStore {
    CouchStore::connect(CouchConfig::new(fake.url.clone(), "couchmail")).await.unwrap()
}

#[tokio::test]
async fn a_long_poll_kept_open_by_heartbeats_ends_with_the_wait() {
    let fake = FakeCouch::start();
    let store = connect(&fake).await;
    let since = Seq("quiet".to_owned());
    let wait = Duration::from_millis(600);
    let started = Instant::now();
    let changes = store.changes(Some(&since), 10, wait).await.unwrap();
    let elapsed = started.elapsed();
    assert!(changes.changes.is_empty());
    assert_eq!(changes.last_seq, Some(since));
    assert!(elapsed >= wait - Duration::from_millis(50), "returned after {elapsed:?}, before the wait");
    assert!(elapsed < wait + Duration::from_millis(900), "returned after {elapsed:?}, long after the wait");

    let requests = fake.changes_requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    for parameter in ["feed=longpoll", "heartbeat=10000", "timeout=", "since=quiet"] {
        assert!(requests[0].contains(parameter), "{parameter} missing from {}", requests[0]);
    }
}

#[tokio::test]
async fn a_change_after_heartbeats_is_returned_at_once() {
    let fake = FakeCouch::start();
    let store = connect(&fake).await;
    let started = Instant::now();
    let changes = store.changes(Some(&Seq("news".to_owned())), 10, Duration::from_secs(10)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    let ids: Vec<&str> = changes.changes.iter().map(|change| change.id.as_str()).collect();
    assert_eq!(ids, ["domain:news.example"]);
    assert_eq!(changes.last_seq, Some(Seq("7-x".to_owned())));
}

#[tokio::test]
async fn a_change_that_began_within_the_wait_is_read_to_its_end() {
    let fake = FakeCouch::start();
    let store = connect(&fake).await;
    let started = Instant::now();
    let changes = store.changes(Some(&Seq("slow".to_owned())), 10, Duration::from_millis(400)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(800), "the answer cannot be whole before 900 ms");
    assert_eq!(changes.changes.len(), 1, "the change arriving across the end of the wait was dropped");
    assert_eq!(changes.changes[0].body.as_ref().unwrap()["type"], "domain");
}

#[tokio::test]
async fn a_plain_read_of_the_feed_asks_for_no_heartbeat() {
    let fake = FakeCouch::start();
    let store = connect(&fake).await;
    store.changes(Some(&Seq("news".to_owned())), 10, Duration::ZERO).await.unwrap();
    let requests = fake.changes_requests.lock().unwrap().clone();
    assert!(!requests[0].contains("heartbeat") && !requests[0].contains("feed="), "{}", requests[0]);
}
