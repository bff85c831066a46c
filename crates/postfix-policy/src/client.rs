//! A small policy client, for tests, load generators and `couchmail check`.
//!
//! It speaks what Postfix's smtpd speaks (one attribute list out, one back, many per connection), so what it sees
//! is what Postfix would see.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use couchmail_wire_server::Stream;

use crate::action::Action;
use crate::attributes::Limits;
use crate::connection::{Connection, Timeouts};
use crate::error::{Error, ErrorKind};
use crate::request::PolicyRequest;

/// How long a reply may take: Postfix's `smtpd_policy_service_timeout` default.
const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(100);

/// A connection to a policy server.
///
/// ```no_run
/// # async fn example() -> Result<(), couchmail_postfix_policy::Error> {
/// use couchmail_postfix_policy::{Client, PolicyRequest, ProtocolState};
///
/// let mut client = Client::connect_unix("/run/couchmail/policy").await?;
/// let request = PolicyRequest {
///     protocol_state: Some(ProtocolState::Rcpt),
///     client_address: Some("192.0.2.1".into()),
///     sender: Some("bob@example.net".into()),
///     recipient: Some("alice@example.com".into()),
///     ..PolicyRequest::default()
/// };
/// println!("{}", client.ask(&request).await?);
/// # Ok(())
/// # }
/// ```
pub struct Client {
    connection: Connection<Stream>,
}

impl Client {
    /// Connects to a server on a unix socket.
    pub async fn connect_unix(path: impl AsRef<Path>) -> Result<Client, Error> {
        Ok(Client::new(Stream::connect_unix(path.as_ref(), "policy").await?))
    }

    /// Connects to a server on TCP.
    pub async fn connect_tcp(address: SocketAddr) -> Result<Client, Error> {
        Ok(Client::new(Stream::connect_tcp(address, "policy").await?))
    }

    fn new(stream: Stream) -> Client {
        let timeouts = Timeouts { idle: Some(DEFAULT_REPLY_TIMEOUT), list: DEFAULT_REPLY_TIMEOUT };
        Client { connection: Connection::new(stream, Limits::default(), timeouts) }
    }

    /// Sends `request` and waits for the action.
    ///
    /// A request that cannot be sent as it is gives [`ErrorKind::InvalidRequest`]; the server closing the
    /// connection instead of answering gives [`ErrorKind::UnexpectedEof`]; a reply without `action` gives
    /// [`ErrorKind::MissingAction`].
    /// Not cancel safe: a call dropped half-way leaves its reply on the wire, so drop the client with it.
    pub async fn ask(&mut self, request: &PolicyRequest) -> Result<Action, Error> {
        let attributes = request
            .to_attributes()
            .map_err(|error| Error::new(ErrorKind::InvalidRequest(error), "encoding policy request"))?;
        attributes.encode(self.connection.output());
        let reply = self
            .connection
            .read_attributes()
            .await?
            .ok_or_else(|| Error::new(ErrorKind::UnexpectedEof, "policy server closed the connection"))?;
        let action = reply
            .get("action")
            .ok_or_else(|| Error::new(ErrorKind::MissingAction, "policy reply has no action attribute"))?;
        Ok(Action::parse(action))
    }
}
