//! A client's connection: the stream (plain or, after STARTTLS, TLS), the command decoder and queued output.
//!
//! couchmail-wire-server's `Connection` cannot hand its stream back for the TLS handshake, so this one keeps the
//! same rules (replies queued and flushed before waiting for input; idle and command timeouts) and adds
//! [`Connection::start_tls`].

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout, timeout_at};

use crate::frame::{CommandDecoder, Decoded};

/// How many bytes one read asks for.
const READ_CHUNK_LEN: usize = 16 * 1024;

/// A byte stream the session can run over.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

/// Why reading or writing stopped.
#[derive(Debug)]
pub(crate) enum ConnectionError {
    /// Nothing arrived for the whole idle timeout.
    IdleTimeout,
    /// A command begun did not complete in time, or the client did not take our bytes in time.
    Timeout,
    /// The client closed the connection in the middle of a command.
    UnexpectedEof,
    /// The stream failed.
    Io(io::Error),
}

impl std::fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectionError::IdleTimeout => f.write_str("idle timeout"),
            ConnectionError::Timeout => f.write_str("command or write timeout"),
            ConnectionError::UnexpectedEof => f.write_str("closed in the middle of a command"),
            ConnectionError::Io(error) => write!(f, "{error}"),
        }
    }
}

pub(crate) struct Connection {
    stream: Box<dyn Io>,
    decoder: CommandDecoder,
    read_chunk: Vec<u8>,
    output: Vec<u8>,
    idle_timeout: Duration,
    command_timeout: Duration,
}

impl Connection {
    pub(crate) fn new(
        stream: Box<dyn Io>,
        decoder: CommandDecoder,
        idle_timeout: Duration,
        command_timeout: Duration,
    ) -> Connection {
        Connection {
            stream,
            decoder,
            read_chunk: vec![0; READ_CHUNK_LEN],
            output: Vec::new(),
            idle_timeout,
            command_timeout,
        }
    }

    /// The output queue; replies are appended here and leave at the next flush.
    pub(crate) fn output(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    /// The next command line, flushing queued output before waiting; `Ok(None)` on a clean close between commands.
    ///
    /// Cancel safety: dropping the future loses no input (bytes read are in the decoder) and no output.
    pub(crate) async fn read(&mut self) -> Result<Option<Decoded>, ConnectionError> {
        let mut deadline = (!self.decoder.is_empty()).then(|| Instant::now() + self.command_timeout);
        loop {
            if let Some(item) = self.decoder.next_item() {
                return Ok(Some(item));
            }
            self.flush().await?;
            let read = self.stream.read(&mut self.read_chunk);
            let n_read = match deadline {
                Some(deadline) => timeout_at(deadline, read).await.map_err(|_| ConnectionError::Timeout)?,
                None => timeout(self.idle_timeout, read).await.map_err(|_| ConnectionError::IdleTimeout)?,
            }
            .map_err(ConnectionError::Io)?;
            if n_read == 0 {
                return if self.decoder.is_empty() { Ok(None) } else { Err(ConnectionError::UnexpectedEof) };
            }
            self.decoder.extend(&self.read_chunk[..n_read]);
            deadline.get_or_insert_with(|| Instant::now() + self.command_timeout);
        }
    }

    /// Writes the queued output within the command timeout, so a client that does not read cannot hold us.
    pub(crate) async fn flush(&mut self) -> Result<(), ConnectionError> {
        if self.output.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + self.command_timeout;
        timeout_at(deadline, self.stream.write_all(&self.output))
            .await
            .map_err(|_| ConnectionError::Timeout)?
            .map_err(ConnectionError::Io)?;
        self.output.clear();
        timeout_at(deadline, self.stream.flush())
            .await
            .map_err(|_| ConnectionError::Timeout)?
            .map_err(ConnectionError::Io)
    }

    /// Whether the client sent bytes after the last command; after STARTTLS that would be a plaintext injection
    /// (the bytes must not be read as if they came over TLS).
    pub(crate) fn has_buffered_input(&self) -> bool {
        !self.decoder.is_empty()
    }

    /// Flushes, then runs the server side of a TLS handshake over the stream within the command timeout.
    pub(crate) async fn start_tls(
        mut self,
        acceptor: &tokio_rustls::TlsAcceptor,
    ) -> Result<Connection, ConnectionError> {
        self.flush().await?;
        // Bytes sent in the clear after STARTTLS are dropped, never read as TLS-protected commands.
        drop(self.decoder.take_buffered());
        let Connection { stream, decoder, read_chunk, output, idle_timeout, command_timeout } = self;
        let tls = timeout(command_timeout, acceptor.accept(stream))
            .await
            .map_err(|_| ConnectionError::Timeout)?
            .map_err(ConnectionError::Io)?;
        Ok(Connection { stream: Box::new(tls), decoder, read_chunk, output, idle_timeout, command_timeout })
    }
}
