//! A socket with its read buffer and pending output: reads attribute lists, queues and flushes replies.
//!
//! Both the server's handler and the client use it.
//! Output is queued and written just before the connection waits for more input, so the replies to pipelined
//! requests leave in one write and a lone request still gets its reply at once.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout, timeout_at};

use crate::attributes::{Attributes, AttributesDecoder, Limits};
use crate::error::{Error, ErrorKind};

/// How many bytes one read asks for; a Postfix request is about 1 KiB, so one read usually holds it whole.
const READ_CHUNK_LEN: usize = 4096;

/// How long a connection may take, in each direction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// How long to wait for the first byte of a list; `None` waits for ever.
    pub(crate) idle: Option<Duration>,
    /// How long the rest of a list may take once its first byte is in, and how long a flush may take.
    pub(crate) list: Duration,
}

pub(crate) struct Connection<S> {
    stream: S,
    decoder: AttributesDecoder,
    read_chunk: Vec<u8>,
    /// Encoded replies waiting to be written; bytes leave from the front.
    output: Vec<u8>,
    timeouts: Timeouts,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub(crate) fn new(stream: S, limits: Limits, timeouts: Timeouts) -> Connection<S> {
        Connection {
            stream,
            decoder: AttributesDecoder::new(limits),
            read_chunk: vec![0; READ_CHUNK_LEN],
            output: Vec::new(),
            timeouts,
        }
    }

    /// Reads the next attribute list, first flushing queued output if it has to wait for the peer.
    ///
    /// Returns `Ok(None)` when the peer closed the connection cleanly between lists, and
    /// [`ErrorKind::UnexpectedEof`] when it closed in the middle of one.
    /// Cancel safety: dropping the future loses no input and no output.
    pub(crate) async fn read_attributes(&mut self) -> Result<Option<Attributes>, Error> {
        // A list already begun when this call starts gets the list timeout from now.
        let mut list_deadline = (!self.decoder.is_empty()).then(|| Instant::now() + self.timeouts.list);
        loop {
            if let Some(attributes) =
                self.decoder.next_list().map_err(|error| Error::new(ErrorKind::Syntax(error), "malformed request"))?
            {
                return Ok(Some(attributes));
            }
            self.flush().await?;
            let read = self.stream.read(&mut self.read_chunk);
            let n_read = match (list_deadline, self.timeouts.idle) {
                (Some(deadline), _) => timeout_at(deadline, read)
                    .await
                    .map_err(|_| Error::new(ErrorKind::Timeout, "timed out reading a request"))?,
                (None, Some(idle)) => {
                    timeout(idle, read).await.map_err(|_| Error::new(ErrorKind::IdleTimeout, "idle timeout"))?
                }
                (None, None) => read.await,
            }
            .map_err(|error| Error::io("reading from peer", error))?;
            if n_read == 0 {
                if self.decoder.is_empty() {
                    return Ok(None);
                }
                return Err(Error::new(
                    ErrorKind::UnexpectedEof,
                    "peer closed the connection in the middle of a request",
                ));
            }
            self.decoder.extend(&self.read_chunk[..n_read]);
            list_deadline.get_or_insert_with(|| Instant::now() + self.timeouts.list);
        }
    }

    /// The buffer that [`Connection::flush`] writes out; encoders append to it.
    pub(crate) fn output(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    /// Whether the peer has sent part of a list that is not complete yet, or complete lists not yet read.
    pub(crate) fn has_buffered_input(&self) -> bool {
        !self.decoder.is_empty()
    }

    /// Writes all queued output within the list timeout, so that a peer that does not read cannot hold us.
    pub(crate) async fn flush(&mut self) -> Result<(), Error> {
        if self.output.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + self.timeouts.list;
        let timed_out = |_| Error::new(ErrorKind::Timeout, "timed out writing to peer");
        while !self.output.is_empty() {
            let n_written = timeout_at(deadline, self.stream.write(&self.output))
                .await
                .map_err(timed_out)?
                .map_err(|error| Error::io("writing to peer", error))?;
            if n_written == 0 {
                return Err(Error::io("writing to peer", std::io::ErrorKind::WriteZero.into()));
            }
            self.output.drain(..n_written);
        }
        timeout_at(deadline, self.stream.flush())
            .await
            .map_err(timed_out)?
            .map_err(|error| Error::io("writing to peer", error))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::duplex;

    use super::*;
    use crate::attributes::SyntaxError;

    const TIMEOUTS: Timeouts = Timeouts { idle: None, list: Duration::from_secs(5) };

    #[tokio::test]
    async fn reads_lists_and_reports_clean_and_unclean_eof() {
        let (mut peer, ours) = duplex(64);
        let mut connection = Connection::new(ours, Limits::default(), TIMEOUTS);
        peer.write_all(b"a=1\n\nb=2\n\nc=").await.unwrap();
        drop(peer);
        assert_eq!(connection.read_attributes().await.unwrap().unwrap().get("a"), Some("1"));
        assert_eq!(connection.read_attributes().await.unwrap().unwrap().get("b"), Some("2"));
        let error = connection.read_attributes().await.unwrap_err();
        assert_eq!(error.kind(), &ErrorKind::UnexpectedEof);

        let (peer, ours) = duplex(64);
        let mut connection = Connection::new(ours, Limits::default(), TIMEOUTS);
        drop(peer);
        assert_eq!(connection.read_attributes().await.unwrap(), None);
    }

    #[tokio::test]
    async fn flushes_queued_output_before_waiting_for_input() {
        let (mut peer, ours) = duplex(64);
        let mut connection = Connection::new(ours, Limits::default(), TIMEOUTS);
        connection.output().extend_from_slice(b"action=ok\n\n");
        let reader = tokio::spawn(async move {
            let mut reply = [0; 11];
            peer.read_exact(&mut reply).await.unwrap();
            assert_eq!(&reply, b"action=ok\n\n");
            peer.write_all(b"a=1\n\n").await.unwrap();
            peer
        });
        assert_eq!(connection.read_attributes().await.unwrap().unwrap().get("a"), Some("1"));
        drop(reader.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_idle_peers_and_slow_requests() {
        let timeouts = Timeouts { idle: Some(Duration::from_secs(60)), list: Duration::from_secs(10) };
        let (_peer, ours) = duplex(64);
        let mut connection = Connection::new(ours, Limits::default(), timeouts);
        let error = connection.read_attributes().await.unwrap_err();
        assert_eq!(error.kind(), &ErrorKind::IdleTimeout);

        // A slowloris peer: a byte every second never finishes a request within the timeout.
        let (mut peer, ours) = duplex(64);
        let mut connection = Connection::new(ours, Limits::default(), timeouts);
        let drip = tokio::spawn(async move {
            for _ in 0..30 {
                if peer.write_all(b"a").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let started = Instant::now();
        let error = connection.read_attributes().await.unwrap_err();
        assert_eq!(error.kind(), &ErrorKind::Timeout);
        assert_eq!(started.elapsed().as_secs(), 10);
        drop(connection);
        drip.await.unwrap();
    }

    #[tokio::test]
    async fn refuses_malformed_lists() {
        let (mut peer, ours) = duplex(64);
        let mut connection = Connection::new(ours, Limits::default(), TIMEOUTS);
        peer.write_all(b"a=1\n\nnonsense\n").await.unwrap();
        assert!(connection.read_attributes().await.unwrap().is_some());
        let error = connection.read_attributes().await.unwrap_err();
        assert_eq!(error.kind(), &ErrorKind::Syntax(SyntaxError::MissingEquals { line_number: 1 }));
    }
}
