//! The TLS side of STARTTLS: a [`TlsAcceptor`] from the stack's PEM certificate chain and private key, TLS 1.2 and
//! 1.3 only (rustls offers no older protocol and only AEAD cipher suites with forward secrecy).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
pub use tokio_rustls::TlsAcceptor;

use crate::Error;

/// An acceptor serving the certificate chain in `cert` with the key in `key` (both PEM).
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, Error> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| Error::new(format!("reading the TLS certificate {}: {error}", cert.display())))?;
    if chain.is_empty() {
        return Err(Error::new(format!("{} holds no PEM certificate", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|error| Error::new(format!("reading the TLS key {}: {error}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| Error::new(format!("setting up TLS: {error}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| Error::new(format!("the TLS certificate and key do not go together: {error}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
