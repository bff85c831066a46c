//! A small SMTP client that returns every reply, so that a test can assert
//! the exact code at the exact step (250 at RCPT, 550 at RCPT, 530 at AUTH).
//!
//! It speaks EHLO, STARTTLS, implicit TLS, AUTH PLAIN, MAIL, RCPT, DATA,
//! RSET and QUIT, one command at a time (no pipelining), and nothing more.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;

use super::net::{IO_TIMEOUT, LineStream, connect_within};
use super::tls::TlsClient;

/// One SMTP reply: its code and the text of each line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text after the code of each line, in order.
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: do not try again.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// Whether an EHLO reply announces `keyword` (`AUTH`, `STARTTLS`), case-insensitively.
    pub fn has_extension(&self, keyword: &str) -> bool {
        self.lines
            .iter()
            .skip(1)
            .any(|line| line.split_whitespace().next().is_some_and(|first| first.eq_ignore_ascii_case(keyword)))
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} {}", self.code, self.lines.join(" / "))
    }
}

/// A transaction step that did not get the reply the caller needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The command, such as `RCPT TO:<bob@example.com>`.
    pub step: String,
    /// What the server answered.
    pub reply: Reply,
}

impl fmt::Display for Refused {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} answered {}", self.step, self.reply)
    }
}

/// A connection to an SMTP server.
#[derive(Debug)]
pub struct SmtpClient {
    stream: LineStream,
    greeting: Reply,
}

impl SmtpClient {
    /// Connects without TLS (ports 25 and 587) and reads the greeting.
    pub fn connect(server: SocketAddr, source: Option<IpAddr>) -> io::Result<SmtpClient> {
        SmtpClient::connect_within(server, source, None, IO_TIMEOUT)
    }

    /// Connects with implicit TLS (port 465) and reads the greeting.
    pub fn connect_tls(server: SocketAddr, source: Option<IpAddr>, tls: &TlsClient) -> io::Result<SmtpClient> {
        SmtpClient::connect_within(server, source, Some(tls), IO_TIMEOUT)
    }

    /// Connects, with implicit TLS when `tls` is given, and gives every
    /// later read and write `timeout`.
    pub fn connect_within(
        server: SocketAddr,
        source: Option<IpAddr>,
        tls: Option<&TlsClient>,
        timeout: std::time::Duration,
    ) -> io::Result<SmtpClient> {
        let tcp = connect_within(server, source, timeout)?;
        match tls {
            Some(tls) => SmtpClient::greet(LineStream::tls(tcp, tls)?),
            None => SmtpClient::greet(LineStream::plain(tcp)),
        }
    }

    fn greet(mut stream: LineStream) -> io::Result<SmtpClient> {
        let greeting = read_reply(&mut stream)?;
        Ok(SmtpClient { stream, greeting })
    }

    /// The server's greeting (220 when it serves us).
    pub fn greeting(&self) -> &Reply {
        &self.greeting
    }

    /// Whether the connection runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// Sends one command line (without CRLF) and reads the reply.
    pub fn command(&mut self, line: &str) -> io::Result<Reply> {
        self.stream.send(format!("{line}\r\n").as_bytes())?;
        read_reply(&mut self.stream)
    }

    /// `EHLO name`.
    pub fn ehlo(&mut self, name: &str) -> io::Result<Reply> {
        self.command(&format!("EHLO {name}"))
    }

    /// `STARTTLS`, and the handshake when the server agrees (220).
    pub fn starttls(&mut self, tls: &TlsClient) -> io::Result<Reply> {
        let reply = self.command("STARTTLS")?;
        if reply.code == 220 {
            self.stream.start_tls(tls)?;
        }
        Ok(reply)
    }

    /// `AUTH PLAIN` with the credentials in the initial response (RFC 4954).
    pub fn auth_plain(&mut self, user: &str, password: &str) -> io::Result<Reply> {
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.command(&format!("AUTH PLAIN {credentials}"))
    }

    /// `MAIL FROM:<sender>`.
    pub fn mail_from(&mut self, sender: &str) -> io::Result<Reply> {
        self.command(&format!("MAIL FROM:<{sender}>"))
    }

    /// `RCPT TO:<recipient>`.
    pub fn rcpt_to(&mut self, recipient: &str) -> io::Result<Reply> {
        self.command(&format!("RCPT TO:<{recipient}>"))
    }

    /// `DATA`, then the message (dot-stuffed) when the server says 354.
    /// Returns the final reply, or the reply to `DATA` when it was not 354.
    pub fn data(&mut self, message: &str) -> io::Result<Reply> {
        let start = self.command("DATA")?;
        if start.code != 354 {
            return Ok(start);
        }
        let mut body = String::with_capacity(message.len() + 8);
        for line in message.lines() {
            if line.starts_with('.') {
                body.push('.');
            }
            body.push_str(line);
            body.push_str("\r\n");
        }
        body.push_str(".\r\n");
        self.stream.send(body.as_bytes())?;
        read_reply(&mut self.stream)
    }

    /// `RSET`.
    pub fn rset(&mut self) -> io::Result<Reply> {
        self.command("RSET")
    }

    /// `QUIT`; a server that closes at once is fine.
    pub fn quit(mut self) {
        // The session is over either way: a lost connection here changes nothing.
        let _ = self.command("QUIT");
    }

    /// MAIL, every RCPT and DATA; the first reply that is not 2xx (354
    /// for DATA's start) ends the transaction as [`Refused`], naming the step.
    pub fn send(&mut self, sender: &str, recipients: &[&str], message: &str) -> io::Result<Result<Reply, Refused>> {
        let step = format!("MAIL FROM:<{sender}>");
        let reply = self.mail_from(sender)?;
        if !reply.is_positive() {
            return Ok(Err(Refused { step, reply }));
        }
        for recipient in recipients {
            let reply = self.rcpt_to(recipient)?;
            if !reply.is_positive() {
                // Leave the session usable for the next transaction.
                self.rset()?;
                return Ok(Err(Refused { step: format!("RCPT TO:<{recipient}>"), reply }));
            }
        }
        let reply = self.data(message)?;
        if !reply.is_positive() {
            return Ok(Err(Refused { step: "DATA".to_owned(), reply }));
        }
        Ok(Ok(reply))
    }
}

/// Reads one (possibly multi-line) reply.
fn read_reply(stream: &mut LineStream) -> io::Result<Reply> {
    let mut lines = Vec::new();
    loop {
        let line = stream.read_line()?;
        let code = line.get(..3).and_then(|digits| digits.parse::<u16>().ok());
        let separator = line.as_bytes().get(3).copied();
        let (Some(code), Some(b' ' | b'-') | None) = (code, separator) else {
            return Err(io::Error::other(format!("not an SMTP reply line: {line:?}")));
        };
        lines.push(line.get(4..).unwrap_or_default().to_owned());
        if separator != Some(b'-') {
            return Ok(Reply { code, lines });
        }
    }
}

/// A small RFC 5322 message with a unique Message-ID.
pub fn message(from: &str, to: &str, subject: &str, body: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let serial = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\
         Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n\
         Message-ID: <{}.{serial}@e2e.invalid>\r\n\r\n{body}\r\n",
        std::process::id()
    )
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;

    /// A scripted server: answers each line the client sends with the next canned reply.
    fn scripted(replies: &'static [&'static str]) -> (SocketAddr, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (socket, _) = listener.accept().unwrap();
            let mut writer = socket.try_clone().unwrap();
            let mut reader = BufReader::new(socket);
            writer.write_all(b"220 test ESMTP\r\n").unwrap();
            let mut received = Vec::new();
            let mut replies = replies.iter();
            let mut in_data = false;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 {
                    return received;
                }
                received.push(line.trim_end().to_owned());
                if in_data && line != ".\r\n" {
                    continue;
                }
                let Some(reply) = replies.next() else { return received };
                in_data = reply.starts_with("354");
                writer.write_all(reply.as_bytes()).unwrap();
            }
        });
        (address, server)
    }

    #[test]
    fn multi_line_replies_and_extensions() {
        let (address, server) = scripted(&["250-test\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n"]);
        let mut client = SmtpClient::connect(address, None).unwrap();
        assert_eq!(client.greeting().code, 220);
        let ehlo = client.ehlo("client.test").unwrap();
        assert_eq!(ehlo.code, 250);
        assert!(ehlo.has_extension("auth"));
        assert!(!ehlo.has_extension("STARTTLS"));
        assert!(!ehlo.has_extension("test"), "the first line is the greeting, not an extension");
        drop(client);
        assert_eq!(server.join().unwrap(), vec!["EHLO client.test"]);
    }

    #[test]
    fn send_stops_at_the_refusing_step_and_dot_stuffs() {
        let (address, server) = scripted(&["250 ok\r\n", "250 ok\r\n", "550 5.1.1 no such user\r\n", "250 reset\r\n"]);
        let mut client = SmtpClient::connect(address, None).unwrap();
        let refused = client.send("a@x.test", &["b@x.test", "c@x.test"], "hi").unwrap().unwrap_err();
        assert_eq!(refused.step, "RCPT TO:<c@x.test>");
        assert_eq!(refused.reply.code, 550);
        assert!(refused.reply.is_permanent());
        drop(client);
        assert_eq!(
            server.join().unwrap(),
            vec!["MAIL FROM:<a@x.test>", "RCPT TO:<b@x.test>", "RCPT TO:<c@x.test>", "RSET"]
        );

        let (address, server) = scripted(&["354 go\r\n", "250 queued\r\n"]);
        let mut client = SmtpClient::connect(address, None).unwrap();
        assert_eq!(client.data(".leading dot\nplain").unwrap().code, 250);
        drop(client);
        assert_eq!(server.join().unwrap(), vec!["DATA", "..leading dot", "plain", "."]);
    }

    #[test]
    fn garbage_is_an_error_not_a_reply() {
        let (address, server) = scripted(&["hello there\r\n"]);
        let mut client = SmtpClient::connect(address, None).unwrap();
        assert!(client.command("NOOP").is_err());
        drop(client);
        server.join().unwrap();
    }
}
