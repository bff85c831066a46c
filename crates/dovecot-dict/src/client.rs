//! [`Client`]: a small dict protocol client for tests, benchmarks and `couchmail check`.
//!
//! It speaks as Dovecot 2.3.17+ does (one request at a time, replies in order), so what it sees is what Dovecot sees.

use std::path::Path;

use tokio::net::UnixStream;

use crate::connection::Connection;
use crate::error::{Error, ErrorKind};
use crate::reply::Reply;
use crate::request::{Command, Hello, IterateFlags, Request};

/// The longest reply line the client accepts; Dovecot sets no limit, this only bounds a broken server.
const MAX_REPLY_LINE_LENGTH: usize = 64 * 1024 * 1024;

/// A connection to a dict server, after its hello.
#[derive(Debug)]
pub struct Client {
    connection: Connection,
    next_transaction_id: u32,
}

impl Client {
    /// Connects to the socket at `path` and sends `hello`.
    pub async fn connect(path: impl AsRef<Path>, hello: &Hello) -> Result<Client, Error> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path)
            .await
            .map_err(|err| Error::io(format!("connecting to {}", path.display()), err))?;
        let mut client = Client { connection: Connection::new(stream, MAX_REPLY_LINE_LENGTH), next_transaction_id: 1 };
        client.send(&Request::Hello(hello.clone())).await?;
        Ok(client)
    }

    /// Sends one request and flushes it, without reading a reply.
    ///
    /// For requests that get none (begin, set, rollback, …) and for tests that read replies themselves.
    pub async fn send(&mut self, request: &Request) -> Result<(), Error> {
        self.connection.write_all(&request.encode()).await?;
        self.connection.flush().await
    }

    /// The value of `key` for `user`; a failure reply is an [`ErrorKind::ServerFailure`].
    pub async fn lookup(&mut self, user: &str, key: &str) -> Result<Option<String>, Error> {
        self.send(&Request::Lookup { key: key.to_owned(), user: user.to_owned() }).await?;
        let line = self.reply_line(Command::Lookup).await?;
        match Reply::parse_lookup(&line).map_err(|err| Error::protocol("reading a lookup reply", err))? {
            Reply::Value(value) => Ok(Some(value)),
            Reply::NotFound => Ok(None),
            Reply::Failed(message) => {
                Err(Error::new(ErrorKind::ServerFailure, format!("lookup of {key} failed: {message}")))
            }
            other => Err(Error::new(ErrorKind::Protocol, format!("unexpected lookup reply {other:?}"))),
        }
    }

    /// The rows below `path` for `user`; a failure line is an [`ErrorKind::ServerFailure`].
    pub async fn iterate(
        &mut self,
        user: &str,
        path: &str,
        flags: IterateFlags,
        max_rows: u64,
    ) -> Result<Vec<(String, String)>, Error> {
        self.send(&Request::Iterate { flags, max_rows, path: path.to_owned(), user: user.to_owned() }).await?;
        let mut rows = Vec::new();
        loop {
            let line = self.reply_line(Command::Iterate).await?;
            match Reply::parse_iterate(&line).map_err(|err| Error::protocol("reading an iterate reply", err))? {
                Reply::Row { key, value } => rows.push((key, value)),
                Reply::IterationEnd => return Ok(rows),
                Reply::Failed(message) => {
                    return Err(Error::new(ErrorKind::ServerFailure, format!("iteration of {path} failed: {message}")));
                }
                other => return Err(Error::new(ErrorKind::Protocol, format!("unexpected iterate reply {other:?}"))),
            }
        }
    }

    /// Sets `key` to `value` for `user` in a transaction of its own, as `doveadm dict set` does.
    pub async fn set(&mut self, user: &str, key: &str, value: &str) -> Result<(), Error> {
        let id = self.next_transaction_id;
        self.next_transaction_id = self.next_transaction_id.wrapping_add(1);
        self.connection.write_all(&Request::Begin { id, user: user.to_owned() }.encode()).await?;
        self.connection.write_all(&Request::Set { id, key: key.to_owned(), value: value.to_owned() }.encode()).await?;
        self.commit(id).await
    }

    /// Commits transaction `id`; a failure reply is an [`ErrorKind::ServerFailure`].
    pub async fn commit(&mut self, id: u32) -> Result<(), Error> {
        self.send(&Request::Commit { id }).await?;
        let line = self.reply_line(Command::Commit).await?;
        match Reply::parse_commit(&line).map_err(|err| Error::protocol("reading a commit reply", err))? {
            Reply::Committed { .. } => Ok(()),
            Reply::CommitFailed { error, .. } => {
                Err(Error::new(ErrorKind::ServerFailure, format!("commit of transaction {id} failed: {error}")))
            }
            other => Err(Error::new(ErrorKind::Protocol, format!("unexpected commit reply {other:?}"))),
        }
    }

    async fn reply_line(&mut self, command: Command) -> Result<Vec<u8>, Error> {
        self.connection.read_line().await?.ok_or_else(|| {
            Error::new(
                ErrorKind::UnexpectedEof,
                format!("server closed the connection before answering {}", command.name()),
            )
        })
    }
}
