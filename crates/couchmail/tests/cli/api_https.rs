//! `couchmail up` with `api.tls = "on"`: the API and the web UI answer over HTTPS with the stack's self-signed
//! certificate (the one Postfix and Dovecot get), the summary says `https://`, the web UI's cookies are
//! `Secure`, and plain HTTP to the port gets no HTTP answer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

use crate::{Env, http_get, start_up, stop_up};

/// One request over TLS, trusting only the certificate in `ca_file`: the whole response (head and body).
fn https_request(addr: &str, request: &str, ca_file: &Path) -> std::io::Result<String> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca_file).unwrap() {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = addr.rsplit_once(':').unwrap().0;
    let connection = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from(host.to_owned()).unwrap())
        .map_err(std::io::Error::other)?;
    let socket = TcpStream::connect(addr)?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut stream = rustls::StreamOwned::new(connection, socket);
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        // A server may close without TLS's close_notify once the response is complete.
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(err) => return Err(err),
    }
    Ok(String::from_utf8_lossy(&response).into_owned())
}

#[test]
fn up_serves_the_api_and_web_ui_over_https_when_api_tls_is_on() {
    let env = Env::new();
    let data_dir = env.dir.path().join("data");
    std::fs::write(env.dir.path().join("couchmail.toml"), "[api]\ntls = \"on\"\n").unwrap();
    let (mut up, summary) = start_up(&env, &data_dir);
    let api_url = summary["api_url"].as_str().unwrap();
    let addr = api_url.strip_prefix("https://").unwrap().strip_suffix("/api/v1").unwrap().to_owned();
    assert_eq!(summary["self_signed"], true);
    let certificate = Path::new(summary["tls_certificate"].as_str().unwrap()).to_owned();

    let health = format!("GET /api/v1/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = https_request(&addr, &health, &certificate).unwrap();
        if response.starts_with("HTTP/1.1 200") {
            let body: Value = serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap();
            assert_eq!(body["index_ready"], true);
            break;
        }
        assert!(Instant::now() < deadline, "health never became ready: {response}");
        std::thread::sleep(Duration::from_millis(50));
    }

    let login = format!("GET /login HTTP/1.1\r\nHost: {addr}\r\nAccept: text/html\r\nConnection: close\r\n\r\n");
    let response = https_request(&addr, &login, &certificate).unwrap();
    let cookie = response
        .lines()
        .find(|line| line.to_ascii_lowercase().starts_with("set-cookie: couchmail_csrf="))
        .unwrap_or_else(|| panic!("no form cookie: {response}"));
    assert!(cookie.contains("; Secure"), "{cookie}");

    // Plain HTTP to the port: no HTTP answer (a TLS alert, or nothing, or a reset).
    match http_get(&addr, "/api/v1/health", None) {
        Ok((status, body)) => assert_eq!(status, 0, "plain HTTP was answered: {body}"),
        Err(err) => assert!(
            !matches!(err.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock),
            "plain HTTP hung: {err}"
        ),
    }
    assert_eq!(stop_up(&mut up), Some(0));
}
