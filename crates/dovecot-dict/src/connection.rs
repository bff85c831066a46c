//! [`Connection`]: one unix socket with its read buffer, read as lines and written as buffered lines.

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::UnixStream;

use crate::error::{Error, ErrorKind};
use crate::line::{LineError, check_line};

/// How many bytes one read asks the socket for.
const READ_CHUNK: usize = 8 * 1024;

/// A socket speaking the dict protocol, on either side.
///
/// Reads are cancel-safe: a read abandoned by `select!` or a timeout loses no bytes,
/// because partial lines stay in the connection's own buffer.
#[derive(Debug)]
pub struct Connection {
    stream: BufWriter<UnixStream>,
    buffer: Vec<u8>,
    max_line_length: usize,
}

impl Connection {
    /// Wraps `stream`, refusing lines longer than `max_line_length` bytes (LF excluded).
    pub fn new(stream: UnixStream, max_line_length: usize) -> Connection {
        Connection { stream: BufWriter::new(stream), buffer: Vec::with_capacity(READ_CHUNK), max_line_length }
    }

    /// The next line's content, without its LF.
    ///
    /// `Ok(None)` is a clean end of the stream; a stream that ends inside a line is an [`ErrorKind::UnexpectedEof`],
    /// and a line over the limit is an [`ErrorKind::LineTooLong`] (the connection should then be closed).
    pub async fn read_line(&mut self) -> Result<Option<Vec<u8>>, Error> {
        loop {
            if let Some(line) = self.take_line()? {
                return Ok(Some(line));
            }
            self.buffer.reserve(READ_CHUNK);
            let n_read = self.stream.read_buf(&mut self.buffer).await.map_err(|err| Error::io("read failed", err))?;
            if n_read == 0 {
                if self.buffer.is_empty() {
                    return Ok(None);
                }
                return Err(Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("peer closed the connection inside a line of {} bytes", self.buffer.len()),
                ));
            }
        }
    }

    /// Whether a complete line is already buffered, so the next [`read_line`](Self::read_line) will not wait.
    ///
    /// The server flushes its replies only when this is false, so pipelined requests share one write;
    /// an over-long line counts as none, so replies to the requests before it still leave before the connection closes.
    pub fn has_buffered_line(&self) -> bool {
        check_line(&self.buffer, self.max_line_length).is_ok()
    }

    /// Queues bytes for the peer; they leave on [`flush`](Self::flush) or when the write buffer fills.
    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.stream.write_all(bytes).await.map_err(|err| Error::io("write failed", err))
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.stream.flush().await.map_err(|err| Error::io("flush failed", err))
    }

    fn take_line(&mut self) -> Result<Option<Vec<u8>>, Error> {
        match check_line(&self.buffer, self.max_line_length) {
            Ok((content_len, consumed)) => {
                let line = self.buffer[..content_len].to_vec();
                self.buffer.drain(..consumed);
                Ok(Some(line))
            }
            Err(LineError::Incomplete) => Ok(None),
            Err(LineError::TooLong { limit }) => {
                Err(Error::new(ErrorKind::LineTooLong, format!("peer sent a line longer than {limit} bytes")))
            }
        }
    }
}
