//! Certificates for the TLS mode: a fresh test authority and a server certificate it issued
//! for `127.0.0.1` and `localhost`.
//!
//! An authority plus a leaf, rather than one self-signed leaf, is what every TLS client
//! accepts as "a private CA": webpki-based clients (rustls, so reqwest with rustls) refuse a
//! certificate that is its own issuer as an end entity in some configurations, and OpenSSL
//! wants the trust anchor to be a CA. The caller trusts the authority's PEM.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// What the TLS mode needs: the server's configuration, and for clients the authority.
pub(super) struct Certificates {
    /// The authority's certificate, PEM.
    pub ca_pem: String,
    /// The proxy's TLS configuration (leaf and authority as the chain).
    pub server_config: Arc<rustls::ServerConfig>,
    /// A client configuration that trusts the authority alone.
    pub client_config: Arc<rustls::ClientConfig>,
}

/// Turns rcgen's error about `what` into a message.
fn error(what: &'static str) -> impl Fn(rcgen::Error) -> String {
    move |error| format!("cannot make the test {what}: {error}")
}

impl Certificates {
    pub(super) fn generate() -> Result<Certificates, String> {
        let mut authority_params = CertificateParams::new(Vec::<String>::new()).map_err(error("authority"))?;
        authority_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        authority_params.distinguished_name.push(DnType::CommonName, "CouchMail test authority");
        authority_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let authority_key = KeyPair::generate().map_err(error("authority's key"))?;
        let authority = CertifiedIssuer::self_signed(authority_params, authority_key).map_err(error("authority"))?;

        // rcgen makes an IP address subject name of a text that parses as one.
        let mut leaf_params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .map_err(error("server certificate"))?;
        leaf_params.distinguished_name.push(DnType::CommonName, "localhost");
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().map_err(error("server key"))?;
        let leaf = leaf_params.signed_by(&leaf_key, &authority).map_err(error("server certificate"))?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = vec![leaf.der().clone(), CertificateDer::from(authority.der().to_vec())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("no TLS versions for the test server: {error}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|error| format!("rustls refused the test server certificate: {error}"))?;

        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(authority.der().to_vec()))
            .map_err(|error| format!("rustls refused the test authority: {error}"))?;
        let client_config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("no TLS versions for the test client: {error}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Certificates {
            ca_pem: authority.pem(),
            server_config: Arc::new(server_config),
            client_config: Arc::new(client_config),
        })
    }
}
