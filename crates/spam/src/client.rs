//! A small SPAMC client: `PING`, `CHECK` and `TELL` over spamd's unix socket.
//!
//! The protocol is SpamAssassin's `spamd/PROTOCOL`: a request line `METHOD SPAMC/1.5`, headers
//! (`User`, `Content-length`, and for `TELL` `Message-class` and `Set`), an empty line and the message;
//! the answer is `SPAMD/1.x <code> <text>`, headers (`Spam: True ; 1001.7 / 5.0`, `DidSet: local`),
//! an empty line and, for some methods, a body. spamd closes the connection after one answer.
//!
//! The mail path itself runs Debian's `spamc` from the rendered wrappers; this client is for `couchmail` (readiness,
//! checks, training from the API) and for measuring. It passes the same user names as the wrappers
//! ([`spamd_user_name`]), so it reaches the same per-user data.

use std::path::{Path, PathBuf};
use std::time::Duration;

use couchmail_render::spamd_user_name;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::error::{Error, ErrorKind};

/// The protocol version this client speaks.
const VERSION: &str = "SPAMC/1.5";
/// The largest answer accepted: headers only for the methods used here, so a little is plenty.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// What a message is, for training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageClass {
    /// Unwanted mail.
    Spam,
    /// Wanted mail.
    Ham,
}

impl MessageClass {
    fn as_str(self) -> &'static str {
        match self {
            MessageClass::Spam => "spam",
            MessageClass::Ham => "ham",
        }
    }
}

/// spamd's verdict on one message for one user.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Whether the score reached the user's threshold.
    pub is_spam: bool,
    /// The message's score.
    pub score: f64,
    /// The user's threshold (`required_score`).
    pub threshold: f64,
}

/// What a `TELL` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// The message was learned now.
    Newly,
    /// The user's database already held it with that class.
    AlreadyKnown,
}

/// Talks to spamd over its unix socket.
#[derive(Debug, Clone)]
pub struct SpamdClient {
    socket: PathBuf,
    timeout: Duration,
}

impl SpamdClient {
    /// A client of the spamd listening at `socket`, waiting at most 30 s for an answer.
    pub fn new(socket: impl Into<PathBuf>) -> SpamdClient {
        SpamdClient { socket: socket.into(), timeout: Duration::from_secs(30) }
    }

    /// The same client with another limit on each request.
    pub fn with_timeout(mut self, timeout: Duration) -> SpamdClient {
        self.timeout = timeout;
        self
    }

    /// The socket this client connects to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Succeeds when spamd answers `PONG`.
    pub async fn ping(&self) -> Result<(), Error> {
        let answer = self.request("PING", &[], b"").await?;
        if answer.text != "PONG" {
            return Err(Error::new(
                "pinging spamd",
                ErrorKind::Protocol(format!("expected PONG, got {}", answer.text)),
            ));
        }
        Ok(())
    }

    /// Scans `message` as `address` (with that user's bayes database and threshold).
    pub async fn check(&self, address: &str, message: &[u8]) -> Result<Verdict, Error> {
        let user = spamd_user_name(address);
        let answer = self.request("CHECK", &[("User", &user)], message).await?;
        let action = || format!("checking a message for {address}");
        let spam = answer.header("Spam").ok_or_else(|| Error::new(action(), protocol("no Spam header")))?;
        parse_spam_header(spam).ok_or_else(|| Error::new(action(), protocol(&format!("bad Spam header {spam:?}"))))
    }

    /// Trains `address`'s bayes database with `message` as `class` (spamd needs `--allow-tell`).
    pub async fn learn(&self, address: &str, message: &[u8], class: MessageClass) -> Result<Learned, Error> {
        let user = spamd_user_name(address);
        let headers = [("User", user.as_str()), ("Message-class", class.as_str()), ("Set", "local")];
        let answer = self.request("TELL", &headers, message).await?;
        Ok(match answer.header("DidSet") {
            Some(set) if set.contains("local") => Learned::Newly,
            _ => Learned::AlreadyKnown,
        })
    }

    async fn request(&self, method: &str, headers: &[(&str, &str)], message: &[u8]) -> Result<Answer, Error> {
        let action = format!("asking spamd at {} ({method})", self.socket.display());
        let exchange = async {
            let mut stream = UnixStream::connect(&self.socket).await?;
            let mut request = format!("{method} {VERSION}\r\n");
            for (name, value) in headers {
                request.push_str(&format!("{name}: {value}\r\n"));
            }
            if method != "PING" {
                request.push_str(&format!("Content-length: {}\r\n", message.len()));
            }
            request.push_str("\r\n");
            stream.write_all(request.as_bytes()).await?;
            stream.write_all(message).await?;
            stream.shutdown().await?;
            let mut answer = Vec::new();
            stream.take(MAX_ANSWER_BYTES).read_to_end(&mut answer).await?;
            Ok::<Vec<u8>, std::io::Error>(answer)
        };
        let bytes = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(err)) => return Err(Error::new(action, ErrorKind::Io(err))),
            Err(_) => return Err(Error::new(action, ErrorKind::Timeout)),
        };
        let answer = parse_answer(&bytes).map_err(|kind| Error::new(&action, kind))?;
        if answer.code != 0 {
            return Err(Error::new(action, ErrorKind::Spamd { code: answer.code, message: answer.text }));
        }
        Ok(answer)
    }
}

fn protocol(what: &str) -> ErrorKind {
    ErrorKind::Protocol(what.to_owned())
}

/// The status line and headers of an answer.
#[derive(Debug, PartialEq)]
struct Answer {
    code: u32,
    text: String,
    headers: Vec<(String, String)>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

/// Reads `SPAMD/1.x <code> <text>` and the headers up to the empty line; the body is not needed here.
fn parse_answer(bytes: &[u8]) -> Result<Answer, ErrorKind> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut fields = status.splitn(3, ' ');
    let version = fields.next().unwrap_or_default();
    if !version.starts_with("SPAMD/") {
        return Err(protocol(&format!("status line {status:?}")));
    }
    let code =
        fields.next().and_then(|code| code.parse().ok()).ok_or_else(|| protocol(&format!("status {status:?}")))?;
    let text = fields.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| protocol(&format!("header line {line:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok(Answer { code, text, headers })
}

/// Reads `True ; 1001.7 / 5.0` (or `False`, or `Yes`/`No` from older servers).
fn parse_spam_header(value: &str) -> Option<Verdict> {
    let (flag, scores) = value.split_once(';')?;
    let is_spam = match flag.trim() {
        "True" | "Yes" => true,
        "False" | "No" => false,
        _ => return None,
    };
    let (score, threshold) = scores.split_once('/')?;
    Some(Verdict { is_spam, score: score.trim().parse().ok()?, threshold: threshold.trim().parse().ok()? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_a_status_line_and_headers() {
        let answer =
            parse_answer(b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1001.7 / 5.0\r\nContent-length: 0\r\n\r\n").unwrap();
        assert_eq!((answer.code, answer.text.as_str()), (0, "EX_OK"));
        assert_eq!(answer.header("spam"), Some("True ; 1001.7 / 5.0"));
        let error = parse_answer(b"SPAMD/1.0 76 Bad header line: (EOF)\r\n").unwrap();
        assert_eq!((error.code, error.text.as_str()), (76, "Bad header line: (EOF)"));
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_answer(b"").is_err());
        assert!(parse_answer(b"SPAMD/1.1 zero EX_OK\r\n").is_err());
    }

    #[test]
    fn the_spam_header_gives_verdict_score_and_threshold() {
        assert_eq!(
            parse_spam_header("True ; 1001.7 / 5.0"),
            Some(Verdict { is_spam: true, score: 1001.7, threshold: 5.0 })
        );
        assert_eq!(
            parse_spam_header("False ; -0.3 / 6.5"),
            Some(Verdict { is_spam: false, score: -0.3, threshold: 6.5 })
        );
        assert_eq!(parse_spam_header("Maybe ; 1 / 2"), None);
        assert_eq!(parse_spam_header("True 1 / 2"), None);
    }
}
