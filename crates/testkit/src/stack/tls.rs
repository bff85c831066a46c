//! TLS for the test clients: rustls with a verifier that trusts exactly one
//! certificate, the stack's own self-signed one.
//!
//! Pinning the certificate, rather than accepting any, keeps the tests
//! honest: a client that reaches the wrong server (or a daemon that serves
//! another certificate than the one `couchmail up` made) fails the handshake.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

/// A TLS client configuration that trusts one certificate.
#[derive(Clone, Debug)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

impl TlsClient {
    /// Trusts the first certificate of the PEM file at `path` (the leaf).
    pub fn pinned_to_pem_file(path: &Path) -> io::Result<TlsClient> {
        let pem = std::fs::read_to_string(path)
            .map_err(|err| io::Error::new(err.kind(), format!("cannot read {}: {err}", path.display())))?;
        let certificate = first_certificate(&pem)
            .ok_or_else(|| io::Error::other(format!("{} holds no PEM certificate", path.display())))?;
        TlsClient::pinned(certificate)
    }

    /// Trusts exactly `certificate` (DER).
    pub fn pinned(certificate: Vec<u8>) -> io::Result<TlsClient> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = PinnedCertificate {
            certificate: CertificateDer::from(certificate),
            algorithms: provider.signature_verification_algorithms,
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(TlsClient { config: Arc::new(config) })
    }

    /// The rustls configuration, for an HTTP client that speaks TLS itself
    /// (reqwest's `tls_backend_preconfigured`, as [`Api`](super::Api) does).
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// Runs the TLS handshake over `tcp` to the end, so that a refused
    /// certificate or protocol shows here and not at the first read.
    pub fn handshake(&self, mut tcp: TcpStream) -> io::Result<TlsStream> {
        // The name is not checked (the verifier pins the certificate), but SNI needs one.
        let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
        let mut connection = ClientConnection::new(self.config.clone(), name).map_err(io::Error::other)?;
        while connection.is_handshaking() {
            connection.complete_io(&mut tcp)?;
        }
        Ok(TlsStream { inner: StreamOwned::new(connection, tcp) })
    }
}

/// An established TLS connection.
#[derive(Debug)]
pub struct TlsStream {
    inner: StreamOwned<ClientConnection, TcpStream>,
}

impl TlsStream {
    /// The negotiated protocol version, for example `TLSv1_3`.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.inner.conn.protocol_version()
    }
}

impl Read for TlsStream {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buffer) {
            // A server that closes without close_notify (Postfix after 221 does) is a plain end of stream here.
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            other => other,
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.inner.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The DER bytes of the first `CERTIFICATE` block of a PEM text.
pub fn first_certificate(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = start + pem[start..].find("-----END CERTIFICATE-----")?;
    let base64: String = pem[start..end].chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(base64).ok()
}

/// Accepts the server's certificate when it is byte for byte the pinned
/// one; handshake signatures are still verified with the provider's
/// algorithms, so the server must hold the matching key.
#[derive(Debug)]
struct PinnedCertificate {
    certificate: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.certificate.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, certificate, signature, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, certificate, signature, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_certificate_decodes_the_first_block_only() {
        let pem = "junk\n-----BEGIN CERTIFICATE-----\nAAEC\nAw==\n-----END CERTIFICATE-----\n\
                   -----BEGIN CERTIFICATE-----\nBAU=\n-----END CERTIFICATE-----\n";
        assert_eq!(first_certificate(pem), Some(vec![0, 1, 2, 3]));
        assert_eq!(first_certificate("-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n"), None);
    }
}
