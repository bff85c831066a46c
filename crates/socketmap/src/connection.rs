//! A socket with its read buffer and pending output: reads netstring payloads, queues and flushes netstrings.
//!
//! Both the server's handler and the client use it.
//! Output is queued and written out just before the connection waits for more input, so that the replies to a
//! batch of pipelined requests leave in one write, and a lone request still gets its reply at once.

use std::time::Duration;

use couchmail_wire_server::ConnectionError;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{Error, ErrorKind};
use crate::frame::{FrameDecoder, FrameError};

/// How long a connection may take, in each direction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// How long to wait for the first byte of a frame; `None` waits for ever.
    pub(crate) idle: Option<Duration>,
    /// How long the rest of a frame may take once its first byte is in, and how long a flush may take.
    pub(crate) frame: Duration,
}

impl couchmail_wire_server::Decoder for FrameDecoder {
    type Item = Vec<u8>;
    type Error = FrameError;

    fn extend(&mut self, bytes: &[u8]) {
        FrameDecoder::extend(self, bytes);
    }

    fn next_item(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        self.next_frame()
    }

    fn is_empty(&self) -> bool {
        FrameDecoder::is_empty(self)
    }
}

/// A netstring connection: the shared connection over a [`FrameDecoder`], with socketmap's errors.
pub(crate) struct Connection<S> {
    inner: couchmail_wire_server::Connection<S, FrameDecoder>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub(crate) fn new(stream: S, max_frame_len: usize, timeouts: Timeouts) -> Connection<S> {
        let timeouts = couchmail_wire_server::Timeouts { idle: timeouts.idle, message: timeouts.frame };
        Connection { inner: couchmail_wire_server::Connection::new(stream, FrameDecoder::new(max_frame_len), timeouts) }
    }

    /// Reads the next frame's payload, first flushing queued output if it has to wait for the peer.
    ///
    /// Returns `Ok(None)` when the peer closed the connection cleanly between frames, and
    /// [`ErrorKind::UnexpectedEof`] when it closed in the middle of one.
    /// Cancel safety: dropping the future loses no input and no output; bytes read stay buffered, and queued output
    /// that was not written yet stays queued.
    pub(crate) async fn read_frame(&mut self) -> Result<Option<Vec<u8>>, Error> {
        self.inner.read().await.map_err(connection_error)
    }

    /// The buffer that [`Connection::flush`] writes out; encoders append to it.
    pub(crate) fn output(&mut self) -> &mut Vec<u8> {
        self.inner.output()
    }

    /// Whether the peer has sent part of a frame that is not complete yet, or complete frames not yet read.
    pub(crate) fn has_buffered_input(&self) -> bool {
        self.inner.has_buffered_input()
    }

    /// Writes all queued output, within the frame timeout (a peer that does not read must not hold us for ever).
    pub(crate) async fn flush(&mut self) -> Result<(), Error> {
        self.inner.flush().await.map_err(connection_error)
    }
}

/// Puts a connection failure in socketmap's words.
fn connection_error(error: ConnectionError<FrameError>) -> Error {
    match error {
        ConnectionError::Decode(error) => Error::new(ErrorKind::Frame(error), "malformed frame"),
        ConnectionError::IdleTimeout => Error::new(ErrorKind::IdleTimeout, "idle timeout"),
        ConnectionError::ReadTimeout => Error::new(ErrorKind::Timeout, "timed out reading a frame"),
        ConnectionError::WriteTimeout => Error::new(ErrorKind::Timeout, "timed out writing to peer"),
        ConnectionError::UnexpectedEof => {
            Error::new(ErrorKind::UnexpectedEof, "peer closed the connection in the middle of a frame")
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

    const TIMEOUTS: Timeouts = Timeouts { idle: None, frame: Duration::from_secs(5) };

    #[tokio::test]
    async fn reads_frames_and_reports_clean_and_unclean_eof() {
        let (mut peer, ours) = duplex(64);
        let mut connection = Connection::new(ours, 100, TIMEOUTS);
        peer.write_all(b"1:a,2:bc,1:").await.unwrap();
        drop(peer);
        assert_eq!(connection.read_frame().await.unwrap(), Some(b"a".to_vec()));
        assert_eq!(connection.read_frame().await.unwrap(), Some(b"bc".to_vec()));
        let error = connection.read_frame().await.unwrap_err();
        assert_eq!(error.kind(), &ErrorKind::UnexpectedEof);

        let (peer, ours) = duplex(64);
        let mut connection = Connection::new(ours, 100, TIMEOUTS);
        drop(peer);
        assert_eq!(connection.read_frame().await.unwrap(), None);
    }

    #[tokio::test]
    async fn flushes_queued_output_before_waiting_for_input() {
        let (mut peer, ours) = duplex(64);
        let mut connection = Connection::new(ours, 100, TIMEOUTS);
        connection.output().extend_from_slice(b"3:out,");
        let reader = tokio::spawn(async move {
            let mut reply = [0; 6];
            peer.read_exact(&mut reply).await.unwrap();
            assert_eq!(&reply, b"3:out,");
            peer.write_all(b"2:in,").await.unwrap();
            peer
        });
        assert_eq!(connection.read_frame().await.unwrap(), Some(b"in".to_vec()));
        drop(reader.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_idle_peers_and_slow_frames() {
        let timeouts = Timeouts { idle: Some(Duration::from_secs(60)), frame: Duration::from_secs(10) };
        let (_peer, ours) = duplex(64);
        let mut connection = Connection::new(ours, 100, timeouts);
        let error = connection.read_frame().await.unwrap_err();
        assert_eq!(error.kind(), &ErrorKind::IdleTimeout);

        let (mut peer, ours) = duplex(64);
        let mut connection = Connection::new(ours, 100, timeouts);
        peer.write_all(b"5:ab").await.unwrap();
        let started = Instant::now();
        let error = connection.read_frame().await.unwrap_err();
        assert_eq!(error.kind(), &ErrorKind::Timeout);
        assert_eq!(started.elapsed().as_secs(), 10);
    }

    #[tokio::test]
    async fn refuses_malformed_frames() {
        let (mut peer, ours) = duplex(64);
        let mut connection = Connection::new(ours, 100, TIMEOUTS);
        peer.write_all(b"1:a,x").await.unwrap();
        assert_eq!(connection.read_frame().await.unwrap(), Some(b"a".to_vec()));
        let error = connection.read_frame().await.unwrap_err();
        assert!(matches!(error.kind(), ErrorKind::Frame(_)), "{error}");
    }
}
