//! A small socketmap client, for tests, benchmarks and `couchmail check`.
//!
//! It speaks exactly what Postfix's client speaks (one netstring request, one netstring reply, many per connection),
//! so what it sees is what Postfix would see.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use couchmail_wire_server::Stream;

use crate::connection::{Connection, Timeouts};
use crate::error::{Error, ErrorKind};
use crate::frame::MAX_REPLY_LEN;
use crate::reply::Reply;
use crate::request::Request;

/// How long a reply may take, as long as Postfix's own socketmap client waits (100 seconds).
const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(100);

/// A connection to a socketmap server.
///
/// ```no_run
/// # async fn example() -> Result<(), couchmail_socketmap::Error> {
/// use couchmail_socketmap::{Client, Reply};
///
/// let mut client = Client::connect_unix("/run/couchmail/socketmap").await?;
/// if let Reply::Ok(value) = client.lookup("mailboxes", "alice@example.com").await? {
///     println!("{value}");
/// }
/// # Ok(())
/// # }
/// ```
pub struct Client {
    connection: Connection<Stream>,
}

impl Client {
    /// Connects to a server on a unix socket.
    pub async fn connect_unix(path: impl AsRef<Path>) -> Result<Client, Error> {
        Ok(Client::new(Stream::connect_unix(path.as_ref(), "socketmap").await?))
    }

    /// Connects to a server on TCP.
    pub async fn connect_tcp(address: SocketAddr) -> Result<Client, Error> {
        Ok(Client::new(Stream::connect_tcp(address, "socketmap").await?))
    }

    fn new(stream: Stream) -> Client {
        let timeouts = Timeouts { idle: Some(DEFAULT_REPLY_TIMEOUT), frame: DEFAULT_REPLY_TIMEOUT };
        Client { connection: Connection::new(stream, MAX_REPLY_LEN, timeouts) }
    }

    /// Looks `key` up in `map` and waits for the reply.
    ///
    /// `map` must be non-empty and contain no space ([`ErrorKind::InvalidRequest`] otherwise); the server closing
    /// the connection instead of answering is [`ErrorKind::UnexpectedEof`].
    /// Not cancel safe: a lookup dropped half-way leaves its reply on the wire, so drop the client with it.
    pub async fn lookup(&mut self, map: &str, key: &str) -> Result<Reply, Error> {
        if map.is_empty() || map.contains(' ') {
            return Err(Error::new(ErrorKind::InvalidRequest, format!("invalid socketmap map name {map:?}")));
        }
        Request { map: map.as_bytes(), key: key.as_bytes() }.encode(self.connection.output());
        let payload = self
            .connection
            .read_frame()
            .await?
            .ok_or_else(|| Error::new(ErrorKind::UnexpectedEof, "socketmap server closed the connection"))?;
        Reply::parse(&payload).map_err(|error| Error::new(ErrorKind::Reply(error), "reading socketmap reply"))
    }
}
