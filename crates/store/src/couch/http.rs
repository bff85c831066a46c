//! The HTTP side of the CouchDB backend: the client, requests with credentials, and CouchDB's
//! answers mapped onto [`ErrorKind`]s.
//!
//! https uses rustls with the `ring` provider (as the rest of the workspace) and trusts the
//! system's certificate authorities plus those of [`CouchConfig::ca_file`](super::CouchConfig),
//! for a server with a private CA. Credentials travel only in the `Authorization` header, never
//! in a URL, so no error or log line can show the password.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

use super::CouchStore;
use crate::{Error, ErrorKind, Result};

/// How long a request other than a long-poll may take before the server counts as unavailable.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long opening a connection (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the server may stay silent in the middle of an answer before the connection counts
/// as dead. Long-polls ask for a heartbeat line far more often than this; a server that honours
/// `timeout=` instead stays silent at most as long as the longest wait, which `changes` keeps
/// below this.
pub(super) const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds the HTTP client for a server at `base`.
///
/// # Errors
/// `BadRequest` when `ca_file` cannot be read or holds no usable certificate.
pub(super) fn build_client(base: &Url, ca_file: Option<&Path>) -> Result<reqwest::Client> {
    let tls = tls_config(base.scheme() == "https", ca_file)?;
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_IDLE_TIMEOUT)
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|error| Error::new(ErrorKind::Internal, "cannot build an HTTP client").with_source(error))
}

/// The rustls configuration: the ring provider, and [`trusted_roots`].
fn tls_config(https: bool, ca_file: Option<&Path>) -> Result<rustls::ClientConfig> {
    let roots = trusted_roots(https, ca_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().map_err(
        |error| {
            Error::new(ErrorKind::Internal, "the TLS provider supports no safe protocol version").with_source(error)
        },
    )?;
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// The authorities trusted: every certificate of `ca_file`, plus the system's for https (they
/// are not read for plain http, which never uses them).
fn trusted_roots(https: bool, ca_file: Option<&Path>) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = ca_file {
        for certificate in certificates_in(path)? {
            roots.add(certificate).map_err(|error| {
                Error::new(
                    ErrorKind::BadRequest,
                    format!("the CouchDB CA file {} holds a certificate that cannot be a trust anchor", path.display()),
                )
                .with_source(error)
            })?;
        }
    }
    if https {
        let system = rustls_native_certs::load_native_certs();
        for error in &system.errors {
            tracing::debug!(%error, "skipped part of the system's certificate authorities");
        }
        let (added, ignored) = roots.add_parsable_certificates(system.certs);
        tracing::debug!(added, ignored, "trusting the system's certificate authorities for CouchDB");
        if roots.is_empty() {
            tracing::warn!(
                "no trusted certificate authority found for https to CouchDB: install the system's CA bundle or set a CA file"
            );
        }
    }
    Ok(roots)
}

/// The PEM certificates in `path`; an unreadable file or one without any is a `BadRequest`
/// naming the file.
fn certificates_in(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).map_err(|error| {
        Error::new(ErrorKind::BadRequest, format!("cannot read the CouchDB CA file {}", path.display()))
            .with_source(error)
    })?;
    let certificates = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|error| {
        Error::new(ErrorKind::BadRequest, format!("the CouchDB CA file {} is not valid PEM", path.display()))
            .with_source(error)
    })?;
    if certificates.is_empty() {
        return Err(Error::new(
            ErrorKind::BadRequest,
            format!(
                "the CouchDB CA file {} holds no certificate — give a PEM file with a -----BEGIN CERTIFICATE----- block",
                path.display()
            ),
        ));
    }
    Ok(certificates)
}

impl CouchStore {
    pub(super) fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, url);
        match &self.credentials {
            Some(credentials) => builder.basic_auth(&credentials.username, Some(&credentials.password)),
            None => builder,
        }
    }

    pub(super) async fn send(&self, builder: reqwest::RequestBuilder, action: &str) -> Result<reqwest::Response> {
        self.send_with_timeout(builder, REQUEST_TIMEOUT, action).await
    }

    pub(super) async fn send_with_timeout(
        &self,
        builder: reqwest::RequestBuilder,
        timeout: Duration,
        action: &str,
    ) -> Result<reqwest::Response> {
        builder.timeout(timeout).send().await.map_err(|error| self.unavailable(action, error))
    }

    /// The error for a request that got no answer: the server is down, unreachable, or its
    /// certificate is not trusted.
    pub(super) fn unavailable(&self, action: &str, error: reqwest::Error) -> Error {
        // reqwest's own message only names the URL; the innermost cause says what went wrong
        // (refused, timed out, an untrusted certificate).
        let mut root_cause = None;
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            root_cause = Some(cause.to_string());
            source = cause.source();
        }
        let detail = root_cause.map(|cause| format!(" ({cause})")).unwrap_or_default();
        let advice = if detail.to_lowercase().contains("certificate") {
            " — if a private authority issued the server's certificate, give its PEM as the CouchDB CA file"
        } else {
            ""
        };
        Error::new(ErrorKind::Unavailable, format!("cannot {action} at {}{detail}{advice}", self.description))
            .with_source(error)
    }

    pub(super) async fn json(&self, response: reqwest::Response, action: &str) -> Result<Value> {
        response.json::<Value>().await.map_err(|error| {
            // A body cut short by the server or the clock is an outage; a body that is not JSON is a bug.
            let kind =
                if error.is_decode() && !error.is_timeout() { ErrorKind::Internal } else { ErrorKind::Unavailable };
            Error::new(kind, format!("cannot read the answer to {action} from {}", self.description)).with_source(error)
        })
    }

    /// A GET of `url` answered with JSON; `None` on 404.
    pub(super) async fn get_json(&self, url: &str, action: &str) -> Result<Option<Value>> {
        let response = self.send(self.request(Method::GET, url), action).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(error_from_response(response, action).await);
        }
        self.json(response, action).await.map(Some)
    }
}

/// CouchDB's `error` and `reason` from an answer body, as `error: reason`.
async fn couch_reason(response: reqwest::Response) -> (Option<String>, String) {
    match response.json::<Value>().await {
        Ok(value) => {
            let error = value.get("error").and_then(Value::as_str).map(str::to_owned);
            let reason = value.get("reason").and_then(Value::as_str).unwrap_or("");
            let shown = format!("{}: {reason}", error.as_deref().unwrap_or("unknown"));
            (error, shown)
        }
        Err(_) => (None, "no JSON reason given".to_owned()),
    }
}

/// The error for a non-success answer, with CouchDB's own reason.
pub(super) async fn error_from_response(response: reqwest::Response, action: &str) -> Error {
    let status = response.status();
    let (_, reason) = couch_reason(response).await;
    let kind = match status {
        StatusCode::CONFLICT => ErrorKind::Conflict,
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        StatusCode::BAD_REQUEST => ErrorKind::BadRequest,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ErrorKind::Unavailable,
        status if status.is_server_error() => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    };
    let advice = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            " — check the CouchDB credentials and the database's _security"
        }
        _ => "",
    };
    Error::new(kind, format!("cannot {action}: CouchDB answered {status} ({reason}){advice}"))
}

/// The error for a non-success answer to a document write: a 403 `forbidden` is the database's
/// `validate_doc_update` refusing the document, a bad request whose reason CouchDB gave.
pub(super) async fn write_error_from_response(response: reqwest::Response, action: &str) -> Error {
    if response.status() != StatusCode::FORBIDDEN {
        return error_from_response(response, action).await;
    }
    let (error, reason) = couch_reason(response).await;
    if error.as_deref() == Some("forbidden") {
        return refused(action, &reason);
    }
    Error::new(
        ErrorKind::Unavailable,
        format!(
            "cannot {action}: CouchDB answered 403 Forbidden ({reason}) — check the CouchDB credentials and the database's _security"
        ),
    )
}

/// A write the database refused: `reason` is CouchDB's `error: reason`.
pub(super) fn refused(action: &str, reason: &str) -> Error {
    Error::new(ErrorKind::BadRequest, format!("cannot {action}: CouchDB refused the document ({reason})"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so that ids with `/`,
/// `+`, `?`, `#` or `%` stay one path segment and mean themselves.
pub(super) fn encode_path_segment(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_path_segment("mailbox:a+b@example.com"), "mailbox%3Aa%2Bb%40example.com");
        assert_eq!(encode_path_segment("a/b?c#d%e f"), "a%2Fb%3Fc%23d%25e%20f");
        assert_eq!(encode_path_segment("ü"), "%C3%BC");
        assert_eq!(encode_path_segment("Az09-._~"), "Az09-._~");
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nowhere.pem");
        let error = tls_config(true, Some(&path)).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadRequest);
        assert!(error.to_string().contains("cannot read the CouchDB CA file"), "{error}");
        assert!(error.to_string().contains("nowhere.pem"), "{error}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let error = tls_config(false, Some(&path)).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadRequest);
        assert!(error.to_string().contains("holds no certificate"), "{error}");
        assert!(error.to_string().contains("empty.pem"), "{error}");

        // A private key is PEM too, but no certificate.
        std::fs::write(&path, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
        let error = tls_config(false, Some(&path)).unwrap_err();
        assert!(error.to_string().contains("holds no certificate"), "{error}");
    }

    #[test]
    fn a_ca_file_with_a_broken_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.pem");
        std::fs::write(&path, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        let error = tls_config(false, Some(&path)).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadRequest);
        assert!(error.to_string().contains("broken.pem"), "{error}");
    }

    #[test]
    fn https_trusts_the_system_authorities_and_the_ca_file() {
        // The CI machine has Debian's CA bundle; https must trust what it holds, plain http
        // needs none of it.
        let bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
        if !bundle.exists() {
            return;
        }
        assert!(trusted_roots(true, None).unwrap().len() > 10);
        assert!(trusted_roots(false, None).unwrap().is_empty());

        let bundle_text = std::fs::read_to_string(bundle).unwrap();
        let end_marker = "-----END CERTIFICATE-----\n";
        let first_end = bundle_text.find(end_marker).unwrap() + end_marker.len();
        let first_begin = bundle_text[..first_end].find("-----BEGIN CERTIFICATE-----").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, &bundle_text[first_begin..first_end]).unwrap();
        assert_eq!(trusted_roots(false, Some(&path)).unwrap().len(), 1);
        tls_config(true, Some(&path)).unwrap();
    }
}
