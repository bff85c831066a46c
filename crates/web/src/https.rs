//! HTTPS for the API and web UI listener: the same router as [`serve_with`](crate::serve_with), behind TLS 1.2
//! and 1.3 (rustls with the ring provider, as the mail ports and ManageSieve), with the stack's certificate.
//!
//! [`serve_https`] hands axum's own server a listener ([`TlsListener`]) whose connections are already
//! through their TLS handshake, so that keep-alive, graceful shutdown and `ConnectInfo<SocketAddr>` (which the
//! login throttle reads) work exactly as on the plain listener. Each handshake runs in a task of its own with a
//! deadline ([`HttpsConfig::handshake_timeout`]), so a client that stalls or fails its handshake never holds up
//! anyone else; at most [`HttpsConfig::max_handshakes`] run at once, and a connection beyond that is closed at
//! once rather than queued behind the slow ones.
//!
//! Under TLS every cookie of the web UI is `Secure` ([`UiConfig::secure_cookies`](crate::UiConfig)), and
//! invitation links start with `https://`.
//!
//! # Security
//!
//! Peers: anyone who can reach the listener, which may be any address. TLS 1.0 and 1.1 and SSL are not offered
//! (rustls implements none of them); cipher suites are rustls's defaults (AEAD with forward secrecy only). ALPN
//! offers `http/1.1` only, the one HTTP version the server speaks. Plain HTTP sent to the port gets a TLS alert,
//! never an HTTP answer.
//! Privilege needed: reading the private key, which is the stack's key and readable by root only in production.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::{ApiState, UiConfig, router_with};

/// How long a client may take over its TLS handshake when nothing else is configured.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS handshakes under way at once when nothing else is configured.
pub const DEFAULT_MAX_HANDSHAKES: usize = 256;

/// Connections through their handshake that the server has not taken yet; the server takes each at once, so
/// a few are plenty.
const READY_QUEUE: usize = 16;

/// The TLS side of [`serve_https`]: the server's certificate and key, and the limits on handshakes.
#[derive(Clone)]
pub struct HttpsConfig {
    /// rustls's settings: TLS 1.2 and 1.3 only, the ring provider, ALPN `http/1.1`.
    tls: Arc<rustls::ServerConfig>,
    /// A client whose TLS handshake is not done this long after it connected is disconnected.
    pub handshake_timeout: Duration,
    /// Handshakes under way at once; a connection arriving beyond that is closed at once.
    pub max_handshakes: usize,
}

impl std::fmt::Debug for HttpsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsConfig")
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_handshakes", &self.max_handshakes)
            .finish_non_exhaustive()
    }
}

impl HttpsConfig {
    /// Serves the certificate chain `chain` (the server's certificate first) with its private key `key`.
    ///
    /// # Errors
    /// `InvalidInput` when the chain is empty or the key does not go with the certificate.
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> io::Result<HttpsConfig> {
        if chain.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the TLS certificate chain is empty"));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|err| io::Error::other(format!("cannot set up TLS: {err}")))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|err| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("the TLS certificate and key do not go together: {err}"),
                )
            })?;
        // Only HTTP/1.1 is served (axum's http2 feature is off), so a client must not pick h2.
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(HttpsConfig {
            tls: Arc::new(tls),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
        })
    }

    /// Serves the PEM certificate chain in the file `cert` with the PEM private key in the file `key`: the
    /// files `couchmail up` gives Postfix and Dovecot.
    ///
    /// # Errors
    /// When a file cannot be read or holds no certificate or key (the message names the file), or when the
    /// key does not go with the certificate.
    pub fn from_pem_files(cert: &Path, key: &Path) -> io::Result<HttpsConfig> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
            .map_err(|err| pem_error("certificate", cert, err))?;
        if chain.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} holds no PEM certificate", cert.display()),
            ));
        }
        let private_key = PrivateKeyDer::from_pem_file(key).map_err(|err| pem_error("key", key, err))?;
        HttpsConfig::new(chain, private_key)
    }
}

/// A PEM file that could not be read, as an error naming it.
fn pem_error(what: &str, path: &Path, err: rustls::pki_types::pem::Error) -> io::Error {
    match err {
        rustls::pki_types::pem::Error::Io(err) => {
            io::Error::new(err.kind(), format!("cannot read the TLS {what} {}: {err}", path.display()))
        }
        other => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cannot read the TLS {what} {}: {other}", path.display()),
        ),
    }
}

/// [`serve_with`](crate::serve_with) over TLS: serves the API and the web UI on `listener` until `shutdown`
/// completes, then lets requests in flight finish. The UI's cookies are `Secure` whatever `ui` says.
pub async fn serve_https(
    listener: TcpListener,
    state: ApiState,
    ui: UiConfig,
    https: HttpsConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let local_addr = listener.local_addr()?;
    tracing::info!(%local_addr, "REST API and web UI listening (HTTPS)");
    let ui = UiConfig { secure_cookies: true, ..ui };
    let app = router_with(state, ui).into_make_service_with_connect_info::<SocketAddr>();
    // axum gives `ConnectInfo<SocketAddr>` for a listener of its own or one wrapped by `tap_io`; the tap also
    // turns Nagle off, so that small responses are not held back waiting for an acknowledgement.
    let listener = TlsListener::new(listener, local_addr, https).tap_io(|stream: &mut TlsStream<TcpStream>| {
        if let Err(err) = stream.get_ref().0.set_nodelay(true) {
            tracing::trace!(%err, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// A listener whose connections have finished their TLS handshake. A task accepts TCP connections and starts a
/// handshake task for each; finished handshakes arrive through a channel. Dropping the listener (axum does at
/// shutdown) stops accepting, frees the port and ends the handshakes under way.
struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    fn new(listener: TcpListener, local_addr: SocketAddr, https: HttpsConfig) -> TlsListener {
        let (sender, ready) = mpsc::channel(READY_QUEUE);
        let accept_task = tokio::spawn(accept_loop(listener, https, sender));
        TlsListener { local_addr, ready, accept_task }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            None => {
                // The accept task ends only when this listener is dropped, so this is a panic in it: the
                // listener is dead, and waiting forever is what a listener with no clients does.
                tracing::error!("the HTTPS accept task ended; no more connections are taken");
                std::future::pending().await
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// Accepts TCP connections until the server stops taking handshaken ones, and starts a handshake task for each.
async fn accept_loop(
    listener: TcpListener,
    https: HttpsConfig,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let acceptor = TlsAcceptor::from(https.tls.clone());
    let handshakes = Arc::new(Semaphore::new(https.max_handshakes));
    loop {
        let accepted = tokio::select! {
            () = ready.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(connection) => connection,
            Err(err) if is_connection_error(&err) => continue,
            Err(err) => {
                // Out of file descriptors, most likely: wait for some to be closed rather than spin.
                tracing::error!(%err, "cannot accept an HTTPS connection");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = https.max_handshakes, "too many TLS handshakes under way; connection closed");
            continue;
        };
        let (acceptor, ready, timeout) = (acceptor.clone(), ready.clone(), https.handshake_timeout);
        tokio::spawn(async move {
            let _permit = permit;
            let handshake = tokio::time::timeout(timeout, acceptor.accept(stream));
            let stream = tokio::select! {
                () = ready.closed() => return,
                result = handshake => match result {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        tracing::debug!(%peer, %err, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, timeout_secs = timeout.as_secs_f64(), "TLS handshake timed out");
                        return;
                    }
                },
            };
            // Fails only when the server has stopped, and then the connection is simply closed.
            let _ = ready.send((stream, peer)).await;
        });
    }
}

/// Errors that concern one connection only (as axum's own listener sorts them).
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = HttpsConfig::from_pem_files(&missing, &missing).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no pem here\n").unwrap();
        let err = HttpsConfig::from_pem_files(&empty, &missing).unwrap_err();
        assert!(err.to_string().contains("holds no PEM certificate"), "{err}");
    }

    #[test]
    fn an_empty_chain_is_refused() {
        let key = PrivateKeyDer::Pkcs8(Vec::new().into());
        let err = HttpsConfig::new(Vec::new(), key).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
