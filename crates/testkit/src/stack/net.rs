//! The transport under the SMTP and IMAP clients: a TCP connection from a
//! chosen loopback address, with timeouts, CRLF lines and an in-place
//! upgrade to TLS.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::tls::{TlsClient, TlsStream};

/// How long any connect, read or write may take before the client gives up.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest line a client accepts; a longer one is an error, not a hang.
const MAX_LINE: usize = 1024 * 1024;

/// Connects to `server`, from `source` when given (any address in 127/8 is
/// ours to use, and Dovecot's login penalty counts failures per client
/// address, so tests that fail logins on purpose use their own).
pub fn connect(server: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    connect_within(server, source, IO_TIMEOUT)
}

/// [`connect`] with another timeout for the connect and every later read
/// and write (readiness checks want a hung server to fail fast).
pub fn connect_within(server: SocketAddr, source: Option<IpAddr>, timeout: Duration) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(server), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(source) = source {
        socket
            .bind(&SockAddr::from(SocketAddr::new(source, 0)))
            .map_err(|err| io::Error::new(err.kind(), format!("cannot bind to {source}: {err}")))?;
    }
    socket
        .connect_timeout(&SockAddr::from(server), timeout)
        .map_err(|err| io::Error::new(err.kind(), format!("cannot connect to {server}: {err}")))?;
    let tcp: TcpStream = socket.into();
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// A plain or TLS stream.
#[derive(Debug)]
pub enum Stream {
    /// Before STARTTLS, or on a port without TLS.
    Plain(TcpStream),
    /// After the handshake.
    Tls(Box<TlsStream>),
}

impl Read for Stream {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buffer),
            Stream::Tls(tls) => tls.read(buffer),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.write(bytes),
            Stream::Tls(tls) => tls.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}

/// A stream read line by line (and, for IMAP literals, byte by byte).
#[derive(Debug)]
pub struct LineStream {
    stream: Option<Stream>,
    buffer: Vec<u8>,
}

impl LineStream {
    /// Wraps a plain TCP connection.
    pub fn plain(tcp: TcpStream) -> LineStream {
        LineStream { stream: Some(Stream::Plain(tcp)), buffer: Vec::new() }
    }

    /// Connects with implicit TLS.
    pub fn tls(tcp: TcpStream, tls: &TlsClient) -> io::Result<LineStream> {
        Ok(LineStream { stream: Some(Stream::Tls(Box::new(tls.handshake(tcp)?))), buffer: Vec::new() })
    }

    /// Whether the connection runs over TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Some(Stream::Tls(_)))
    }

    fn stream(&mut self) -> io::Result<&mut Stream> {
        self.stream.as_mut().ok_or_else(|| io::Error::other("the connection was lost during a TLS upgrade"))
    }

    /// Upgrades a plain connection to TLS (after STARTTLS was accepted).
    /// Bytes the server sent before the handshake would be a protocol
    /// violation (a STARTTLS injection), so they are an error.
    pub fn start_tls(&mut self, tls: &TlsClient) -> io::Result<()> {
        if !self.buffer.is_empty() {
            return Err(io::Error::other(format!(
                "the server sent {} bytes after agreeing to start TLS",
                self.buffer.len()
            )));
        }
        match self.stream.take() {
            Some(Stream::Plain(tcp)) => {
                self.stream = Some(Stream::Tls(Box::new(tls.handshake(tcp)?)));
                Ok(())
            }
            Some(tls_stream @ Stream::Tls(_)) => {
                self.stream = Some(tls_stream);
                Err(io::Error::other("the connection already runs over TLS"))
            }
            None => Err(io::Error::other("the connection was lost during a TLS upgrade")),
        }
    }

    /// Sends `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stream = self.stream()?;
        stream.write_all(bytes)?;
        stream.flush()
    }

    /// Reads one line, without its line end; end of stream is an error.
    pub fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&byte| byte == b'\n') {
                let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if self.buffer.len() > MAX_LINE {
                return Err(io::Error::other(format!("a line longer than {MAX_LINE} bytes")));
            }
            self.fill()?;
        }
    }

    /// Reads exactly `count` bytes (an IMAP literal).
    pub fn read_bytes(&mut self, count: usize) -> io::Result<Vec<u8>> {
        if count > MAX_LINE {
            return Err(io::Error::other(format!("a literal of {count} bytes is more than a test expects")));
        }
        while self.buffer.len() < count {
            self.fill()?;
        }
        Ok(self.buffer.drain(..count).collect())
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let read = self.stream()?.read(&mut chunk)?;
        if read == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection"));
        }
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }
}
