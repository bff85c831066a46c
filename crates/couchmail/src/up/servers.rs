//! couchmail's own servers, in-process: the index follower, the REST API,
//! the socketmap server for Postfix, the policy service for Postfix
//! (listings, greylisting, sending limits), the dict server for Pigeonhole
//! and the auth endpoint for Dovecot's Lua passdb and userdb.
//! Each listener is added to the [`StackHealth`] the API reports.
//!
//! Every server answers from the shared [`Index`] through the adapters of
//! `couchmail-lookup` and stops when the shared stop signal turns true.
//! Sockets are bound before any daemon starts, with the modes and groups of
//! docs/runtime.md: socketmap and policy root:postfix 0660, dict root:vmail 0660.
//! Each bind is a step that can fail with a message naming the socket or
//! address, and the next step to take.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use couchmail_directory::Directory;
use couchmail_index::{FollowConfig, Index};
use couchmail_lookup::{Accounts, IndexSieve, MailLayout, Maps};
use couchmail_render::Paths;
use couchmail_store::Store;
use couchmail_supervisor::system;
use couchmail_web::{ApiState, UiConfig};

use super::health::StackHealth;
use super::{Services, Shutdown};
use crate::exit::{Exit, Failure};

/// The Sieve location's `name=` option in the rendered dovecot.conf: the name that means "the active script".
const ACTIVE_SCRIPT_NAME: &str = "active";

/// Binds the TCP listener of the auth endpoint (first, so that a port 0 is
/// known before the configuration is rendered).
pub async fn bind_auth(address: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    bind_tcp(address, "the Dovecot auth endpoint", "auth.listen, COUCHMAIL_AUTH_LISTEN").await
}

/// Binds the REST API's listener.
pub async fn bind_api(address: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    bind_tcp(address, "the REST API", "`--listen 127.0.0.1:PORT`, api.listen, COUCHMAIL_API_LISTEN").await
}

async fn bind_tcp(address: SocketAddr, what: &str, keys: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await.map_err(|err| {
        Failure::new(Exit::Other, format!("cannot listen on {address} for {what}: {err}"))
            .hint(format!("stop what uses that port (an earlier couchmail?), or choose another port with {keys}"))
            .into()
    })
}

/// What the servers serve from.
pub struct Sources {
    /// The store, for the index follower.
    pub store: Arc<dyn Store>,
    /// The live index.
    pub index: Arc<Index>,
    /// The write path, for the API.
    pub directory: Directory,
    /// The policy service's configuration; `None` does not serve it.
    pub policy: Option<couchmail_policy::PolicyConfig>,
    /// The daemons and listeners, for the dashboard and `/api/v1/status`; each listener is added as it is bound.
    pub health: Arc<StackHealth>,
}

/// The servers' bound listeners.
pub struct Listeners {
    /// The REST API.
    pub api: tokio::net::TcpListener,
    /// The API's TLS (`api.tls`); `None` serves plain HTTP.
    pub api_https: Option<couchmail_web::HttpsConfig>,
    /// The auth endpoint.
    pub auth: tokio::net::TcpListener,
    /// The auth endpoint's bearer secret.
    pub auth_secret: String,
}

/// Where the unix-socket servers listen; their files are removed at stop.
pub struct Sockets {
    /// The socketmap socket.
    pub socketmap: PathBuf,
    /// The dict socket.
    pub dict: PathBuf,
    /// The policy service's socket, when served.
    pub policy: Option<PathBuf>,
}

/// Starts the index follower and every server as tasks of `services`.
pub async fn start(
    services: &mut Services,
    stop: &Shutdown,
    sources: Sources,
    listeners: Listeners,
    paths: &Paths,
    mail_layout: MailLayout,
) -> anyhow::Result<Sockets> {
    let Sources { store, index, directory, policy, health } = sources;
    // The greylisting state is opened before anything starts so that a bad file stops `up` with its name.
    let policy = match policy {
        Some(config) => {
            let state = config.greylist_state.clone();
            let policy = couchmail_policy::Policy::open(config, index.clone()).map_err(|err| {
                Failure::new(
                    Exit::Other,
                    format!("cannot open the policy service's state ({}): {err}", state.display()),
                )
                .hint(format!(
                    "check that {} and ratelimit.db beside it are readable SQLite files owned by root; move them \
                     away to start with empty greylisting and rate-limit state",
                    state.display()
                ))
            })?;
            Some(policy)
        }
        None => None,
    };
    services.spawn("index follower", {
        let (store, index, stopped) = (store, index.clone(), stop.stopped());
        // A checkpoint lets the next start resume the changes feed instead of reading the
        // whole store again, which matters over CouchDB's HTTP.
        let follow_config = FollowConfig {
            checkpoint: Some(paths.data_dir.join(couchmail_index::CHECKPOINT_FILE_NAME)),
            ..FollowConfig::default()
        };
        async move {
            couchmail_index::follow_with(follow_config, store, index, stopped).await;
            Ok(())
        }
    });

    if let Ok(address) = listeners.api.local_addr() {
        health.add_listener("REST API and web UI", address);
    }
    if let Ok(address) = listeners.auth.local_addr() {
        health.add_listener("Dovecot auth endpoint", address);
    }
    services.spawn("REST API", {
        let stack: Arc<dyn couchmail_web::StackStatus> = health.clone();
        let state = ApiState { directory, index: index.clone(), stack: Some(stack) };
        let (listener, https, stopped) = (listeners.api, listeners.api_https, stop.stopped());
        async move {
            match https {
                Some(https) => couchmail_web::serve_https(listener, state, UiConfig::default(), https, stopped).await,
                None => couchmail_web::serve(listener, state, stopped).await,
            }
            .context("the REST API failed")
        }
    });

    let socketmap_listener = couchmail_socketmap::Listener::bind_unix(&paths.socketmap_socket, 0o660)
        .await
        .map_err(|err| socket_failure("the socketmap server", &paths.socketmap_socket, &err))?;
    give_group(&paths.socketmap_socket, "postfix")?;
    health.add_listener("socketmap for Postfix", paths.socketmap_socket.display());
    services.spawn("socketmap server", {
        let lookup = Arc::new(Maps::new(index.clone()));
        let stopped = stop.stopped();
        async move {
            let stats = couchmail_socketmap::run(socketmap_listener, lookup, Default::default(), stopped).await;
            tracing::debug!(?stats, "socketmap server stopped");
            Ok(())
        }
    });

    let policy_socket = match policy {
        Some(policy) => {
            let listener = couchmail_postfix_policy::Listener::bind_unix(&paths.policy_socket, 0o660)
                .await
                .map_err(|err| socket_failure("the policy service", &paths.policy_socket, &err))?;
            give_group(&paths.policy_socket, "postfix")?;
            health.add_listener("policy service for Postfix", paths.policy_socket.display());
            services.spawn("policy service", {
                let stopped = stop.stopped();
                async move {
                    let stats = couchmail_postfix_policy::run(
                        listener,
                        Arc::new(policy),
                        couchmail_postfix_policy::ServerConfig::default(),
                        stopped,
                    )
                    .await;
                    tracing::debug!(?stats, "policy service stopped");
                    Ok(())
                }
            });
            Some(paths.policy_socket.clone())
        }
        None => None,
    };

    let dict_listener = couchmail_dovecot_dict::bind(&paths.dict_socket, 0o660)
        .map_err(|err| socket_failure("the Sieve dict server", &paths.dict_socket, &err))?;
    give_group(&paths.dict_socket, "vmail")?;
    health.add_listener("Sieve dict for Dovecot", paths.dict_socket.display());
    services.spawn("dict server", {
        let lookup =
            Arc::new(couchmail_dovecot_dict::SieveDict::new(IndexSieve::new(index.clone()), ACTIVE_SCRIPT_NAME));
        let stopped = stop.stopped();
        async move {
            couchmail_dovecot_dict::run(dict_listener, lookup, Default::default(), stopped).await;
            Ok(())
        }
    });

    services.spawn("Dovecot auth endpoint", {
        let lookup = Arc::new(Accounts::new(index, mail_layout));
        let (listener, secret, stopped) = (listeners.auth, listeners.auth_secret, stop.stopped());
        async move {
            couchmail_dovecot_auth::serve(listener, lookup, &secret, stopped)
                .await
                .context("the Dovecot auth endpoint failed")
        }
    });

    Ok(Sockets { socketmap: paths.socketmap_socket.clone(), dict: paths.dict_socket.clone(), policy: policy_socket })
}

impl Sockets {
    /// Removes the socket files (the socketmap listener removes its own
    /// when dropped; this also covers the dict and policy sockets).
    pub fn remove(&self) {
        for path in [Some(&self.socketmap), Some(&self.dict), self.policy.as_ref()].into_iter().flatten() {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => tracing::warn!(path = %path.display(), %err, "cannot remove socket"),
            }
        }
    }
}

fn socket_failure(what: &str, path: &Path, err: &dyn std::fmt::Display) -> anyhow::Error {
    Failure::new(Exit::Other, format!("cannot listen on {} for {what}: {err}", path.display()))
        .hint("is another couchmail running with the same runtime_dir? Stop it, or choose another runtime_dir")
        .into()
}

/// Gives `path` to `group` (so its daemon may connect) when running as root
/// and the group exists; otherwise the socket keeps root's group and a
/// warning says who cannot reach it.
fn give_group(path: &Path, group: &str) -> anyhow::Result<()> {
    let gid = system::group_id(group).context("cannot read /etc/group")?;
    match gid {
        Some(gid) if rustix::process::geteuid().is_root() => std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("cannot give {} to group {group}", path.display())),
        _ => {
            tracing::warn!(
                socket = %path.display(),
                group,
                "cannot give the socket to its daemon's group (not root, or no such group); members of {group} \
                 cannot connect"
            );
            Ok(())
        }
    }
}
