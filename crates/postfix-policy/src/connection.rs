//! A socket with its read buffer and pending output: reads attribute lists, queues and flushes replies.
//!
//! Both the server's handler and the client use it.
//! Output is queued and written just before the connection waits for more input, so the replies to pipelined
//! requests leave in one write and a lone request still gets its reply at once.

use std::time::Duration;

use couchmail_wire_server::ConnectionError;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::attributes::{Attributes, AttributesDecoder, Limits, SyntaxError};
use crate::error::{Error, ErrorKind};

/// How long a connection may take, in each direction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// How long to wait for the first byte of a list; `None` waits for ever.
    pub(crate) idle: Option<Duration>,
    /// How long the rest of a list may take once its first byte is in, and how long a flush may take.
    pub(crate) list: Duration,
}

impl couchmail_wire_server::Decoder for AttributesDecoder {
    type Item = Attributes;
    type Error = SyntaxError;

    fn extend(&mut self, bytes: &[u8]) {
        AttributesDecoder::extend(self, bytes);
    }

    fn next_item(&mut self) -> Result<Option<Attributes>, SyntaxError> {
        self.next_list()
    }

    fn is_empty(&self) -> bool {
        AttributesDecoder::is_empty(self)
    }
}

/// A policy connection: the shared connection over an [`AttributesDecoder`], with the policy crate's errors.
pub(crate) struct Connection<S> {
    inner: couchmail_wire_server::Connection<S, AttributesDecoder>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub(crate) fn new(stream: S, limits: Limits, timeouts: Timeouts) -> Connection<S> {
        let timeouts = couchmail_wire_server::Timeouts { idle: timeouts.idle, message: timeouts.list };
        Connection { inner: couchmail_wire_server::Connection::new(stream, AttributesDecoder::new(limits), timeouts) }
    }

    /// Reads the next attribute list, first flushing queued output if it has to wait for the peer.
    ///
    /// Returns `Ok(None)` when the peer closed the connection cleanly between lists, and
    /// [`ErrorKind::UnexpectedEof`] when it closed in the middle of one.
    /// Cancel safety: dropping the future loses no input and no output.
    pub(crate) async fn read_attributes(&mut self) -> Result<Option<Attributes>, Error> {
        self.inner.read().await.map_err(connection_error)
    }

    /// The buffer that [`Connection::flush`] writes out; encoders append to it.
    pub(crate) fn output(&mut self) -> &mut Vec<u8> {
        self.inner.output()
    }

    /// Whether the peer has sent part of a list that is not complete yet, or complete lists not yet read.
    pub(crate) fn has_buffered_input(&self) -> bool {
        self.inner.has_buffered_input()
    }

    /// Writes all queued output within the list timeout, so that a peer that does not read cannot hold us.
    pub(crate) async fn flush(&mut self) -> Result<(), Error> {
        self.inner.flush().await.map_err(connection_error)
    }
}

/// Puts a connection failure in the policy crate's words.
fn connection_error(error: ConnectionError<SyntaxError>) -> Error {
    match error {
        ConnectionError::Decode(error) => Error::new(ErrorKind::Syntax(error), "malformed request"),
        ConnectionError::IdleTimeout => Error::new(ErrorKind::IdleTimeout, "idle timeout"),
        ConnectionError::ReadTimeout => Error::new(ErrorKind::Timeout, "timed out reading a request"),
        ConnectionError::WriteTimeout => Error::new(ErrorKind::Timeout, "timed out writing to peer"),
        ConnectionError::UnexpectedEof => {
            Error::new(ErrorKind::UnexpectedEof, "peer closed the connection in the middle of a request")
        }
        ConnectionError::Read(error) => Error::io("reading from peer", error),
        ConnectionError::Write(error) => Error::io("writing to peer", error),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};
    use tokio::time::Instant;

    use super::*;

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
