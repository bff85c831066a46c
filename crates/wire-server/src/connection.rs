//! A socket with its read buffer and pending output: reads whole protocol messages through a [`Decoder`], queues
//! encoded output and flushes it.
//!
//! Output is queued and written just before the connection waits for more input, so the replies to pipelined
//! requests leave in one write and a lone request still gets its reply at once.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout, timeout_at};

/// How many bytes one read asks for; requests of the protocols served are far shorter, so one read usually holds
/// whole messages.
const READ_CHUNK_LEN: usize = 4096;

/// A bounded, incremental decoder of one protocol's messages.
pub trait Decoder {
    /// A decoded message.
    type Item;
    /// Why the buffered bytes are not a message; the stream cannot be resynchronised after it.
    type Error;

    /// Appends bytes read from the peer.
    fn extend(&mut self, bytes: &[u8]);

    /// The next complete message, `None` while more bytes are needed.
    fn next_item(&mut self) -> Result<Option<Self::Item>, Self::Error>;

    /// Whether no byte of a message is buffered.
    fn is_empty(&self) -> bool;
}

/// How long a connection may take, in each direction.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// How long to wait for the first byte of a message; `None` waits for ever.
    pub idle: Option<Duration>,
    /// How long the rest of a message may take once its first byte is in, and how long a flush may take.
    pub message: Duration,
}

/// Why a connection could not read or write; the protocol crate turns it into its own error with its own words.
#[derive(Debug)]
pub enum ConnectionError<E> {
    /// The decoder refused the bytes.
    Decode(E),
    /// Nothing arrived for the whole idle timeout.
    IdleTimeout,
    /// A message begun did not complete within the message timeout.
    ReadTimeout,
    /// The peer did not take our bytes within the message timeout.
    WriteTimeout,
    /// The peer closed the connection in the middle of a message.
    UnexpectedEof,
    /// Reading failed.
    Read(io::Error),
    /// Writing failed.
    Write(io::Error),
}

/// A stream with its decoder and its queue of output.
pub struct Connection<S, D> {
    stream: S,
    decoder: D,
    read_chunk: Vec<u8>,
    /// Encoded messages waiting to be written; bytes leave from the front.
    output: Vec<u8>,
    timeouts: Timeouts,
}

impl<S: AsyncRead + AsyncWrite + Unpin, D: Decoder> Connection<S, D> {
    /// A connection reading `stream` through `decoder`.
    pub fn new(stream: S, decoder: D, timeouts: Timeouts) -> Connection<S, D> {
        Connection { stream, decoder, read_chunk: vec![0; READ_CHUNK_LEN], output: Vec::new(), timeouts }
    }

    /// Reads the next message, first flushing queued output if it has to wait for the peer.
    ///
    /// Returns `Ok(None)` when the peer closed the connection cleanly between messages, and
    /// [`ConnectionError::UnexpectedEof`] when it closed in the middle of one.
    /// Cancel safety: dropping the future loses no input and no output; bytes read stay buffered, and queued output
    /// that was not written yet stays queued.
    pub async fn read(&mut self) -> Result<Option<D::Item>, ConnectionError<D::Error>> {
        // A message already begun when this call starts gets the message timeout from now.
        let mut message_deadline = (!self.decoder.is_empty()).then(|| Instant::now() + self.timeouts.message);
        loop {
            if let Some(item) = self.decoder.next_item().map_err(ConnectionError::Decode)? {
                return Ok(Some(item));
            }
            self.flush().await?;
            let read = self.stream.read(&mut self.read_chunk);
            let n_read = match (message_deadline, self.timeouts.idle) {
                (Some(deadline), _) => timeout_at(deadline, read).await.map_err(|_| ConnectionError::ReadTimeout)?,
                (None, Some(idle)) => timeout(idle, read).await.map_err(|_| ConnectionError::IdleTimeout)?,
                (None, None) => read.await,
            }
            .map_err(ConnectionError::Read)?;
            if n_read == 0 {
                if self.decoder.is_empty() {
                    return Ok(None);
                }
                return Err(ConnectionError::UnexpectedEof);
            }
            self.decoder.extend(&self.read_chunk[..n_read]);
            message_deadline.get_or_insert_with(|| Instant::now() + self.timeouts.message);
        }
    }

    /// The buffer that [`Connection::flush`] writes out; encoders append to it.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    /// Whether the peer has sent part of a message that is not complete yet, or complete messages not yet read.
    pub fn has_buffered_input(&self) -> bool {
        !self.decoder.is_empty()
    }

    /// Writes all queued output within the message timeout, so that a peer that does not read cannot hold us.
    pub async fn flush<E>(&mut self) -> Result<(), ConnectionError<E>> {
        if self.output.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + self.timeouts.message;
        while !self.output.is_empty() {
            let n_written = timeout_at(deadline, self.stream.write(&self.output))
                .await
                .map_err(|_| ConnectionError::WriteTimeout)?
                .map_err(ConnectionError::Write)?;
            if n_written == 0 {
                return Err(ConnectionError::Write(io::ErrorKind::WriteZero.into()));
            }
            self.output.drain(..n_written);
        }
        timeout_at(deadline, self.stream.flush())
            .await
            .map_err(|_| ConnectionError::WriteTimeout)?
            .map_err(ConnectionError::Write)
    }
}
