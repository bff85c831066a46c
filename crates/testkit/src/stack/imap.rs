//! A small IMAP4rev1 client over implicit TLS: LOGIN, SELECT, SEARCH,
//! FETCH of header fields, LIST and LOGOUT, each returning the tagged
//! status with the untagged lines before it.
//!
//! Literals from the server (`{N}` at a line's end) are read and joined
//! into the logical line; the client itself only sends quoted strings.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};

use super::net::{IO_TIMEOUT, LineStream, connect_within};
use super::tls::TlsClient;

/// The result word of a tagged response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `OK`
    Ok,
    /// `NO`: refused (wrong password, no such mailbox).
    No,
    /// `BAD`: a protocol error.
    Bad,
    /// No tagged answer: the server closed the connection, perhaps after
    /// `* BYE` (Dovecot closes silently after an internal login failure).
    Closed,
}

/// The answer to one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The tagged status.
    pub status: Status,
    /// The tagged line's text after the status, such as `[AUTHENTICATIONFAILED] Authentication failed.`
    pub text: String,
    /// The untagged (`* `) lines before it, without the `* `, literals inlined.
    pub untagged: Vec<String>,
}

impl Response {
    /// Whether the status is `OK`.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }
}

impl fmt::Display for Response {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:?} {}", self.status, self.text)
    }
}

/// A connection to an IMAP server.
#[derive(Debug)]
pub struct ImapClient {
    stream: LineStream,
    greeting: String,
    next_tag: u32,
}

impl ImapClient {
    /// Connects with implicit TLS (port 993) and reads the `* OK` greeting.
    pub fn connect_tls(server: SocketAddr, source: Option<IpAddr>, tls: &TlsClient) -> io::Result<ImapClient> {
        ImapClient::connect_tls_within(server, source, tls, IO_TIMEOUT)
    }

    /// [`connect_tls`](Self::connect_tls) with `timeout` for every read and write.
    pub fn connect_tls_within(
        server: SocketAddr,
        source: Option<IpAddr>,
        tls: &TlsClient,
        timeout: std::time::Duration,
    ) -> io::Result<ImapClient> {
        let mut stream = LineStream::tls(connect_within(server, source, timeout)?, tls)?;
        let greeting = stream.read_line()?;
        if !greeting.starts_with("* OK") {
            return Err(io::Error::other(format!("not an IMAP greeting: {greeting:?}")));
        }
        Ok(ImapClient { stream, greeting, next_tag: 1 })
    }

    /// The server's greeting line.
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    /// Sends `command` (without tag and CRLF) and reads up to its tagged response.
    pub fn command(&mut self, command: &str) -> io::Result<Response> {
        let tag = format!("t{}", self.next_tag);
        self.next_tag += 1;
        self.stream.send(format!("{tag} {command}\r\n").as_bytes())?;
        let mut untagged = Vec::new();
        loop {
            let line = match self.read_logical_line() {
                Ok(line) => line,
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                    let bye = untagged.iter().rev().find_map(|line: &String| line.strip_prefix("BYE"));
                    let text = bye.map_or_else(|| "(closed without an answer)".to_owned(), |bye| bye.trim().to_owned());
                    return Ok(Response { status: Status::Closed, text, untagged });
                }
                Err(err) => return Err(err),
            };
            if let Some(rest) = line.strip_prefix("* ") {
                untagged.push(rest.to_owned());
                continue;
            }
            let Some(rest) = line.strip_prefix(&tag).and_then(|rest| rest.strip_prefix(' ')) else {
                return Err(io::Error::other(format!("unexpected line after `{tag} {command}`: {line:?}")));
            };
            let (word, text) = rest.split_once(' ').unwrap_or((rest, ""));
            let status = match word.to_ascii_uppercase().as_str() {
                "OK" => Status::Ok,
                "NO" => Status::No,
                "BAD" => Status::Bad,
                _ => return Err(io::Error::other(format!("not a tagged status: {line:?}"))),
            };
            return Ok(Response { status, text: text.to_owned(), untagged });
        }
    }

    /// A line with every literal it announces read and inlined.
    fn read_logical_line(&mut self) -> io::Result<String> {
        let mut line = self.stream.read_line()?;
        while let Some(size) = literal_size(&line) {
            let bytes = self.stream.read_bytes(size)?;
            line.push_str("\r\n");
            line.push_str(&String::from_utf8_lossy(&bytes));
            line.push_str(&self.stream.read_line()?);
        }
        Ok(line)
    }

    /// `LOGIN user password`.
    pub fn login(&mut self, user: &str, password: &str) -> io::Result<Response> {
        self.command(&format!("LOGIN {} {}", quote(user), quote(password)))
    }

    /// `SELECT mailbox`.
    pub fn select(&mut self, mailbox: &str) -> io::Result<Response> {
        self.command(&format!("SELECT {}", quote(mailbox)))
    }

    /// `SEARCH criteria`: the sequence numbers found (an error unless OK).
    pub fn search(&mut self, criteria: &str) -> io::Result<Vec<u32>> {
        let response = self.command(&format!("SEARCH {criteria}"))?;
        if !response.is_ok() {
            return Err(io::Error::other(format!("SEARCH {criteria} answered {response}")));
        }
        Ok(response
            .untagged
            .iter()
            .filter_map(|line| line.strip_prefix("SEARCH"))
            .flat_map(|numbers| numbers.split_whitespace().filter_map(|number| number.parse().ok()))
            .collect())
    }

    /// The named header fields of message `sequence`, as the raw header
    /// block (`Subject: …\r\n…`), fetched without setting `\Seen`.
    pub fn fetch_header_fields(&mut self, sequence: u32, fields: &[&str]) -> io::Result<String> {
        let wanted = fields.join(" ");
        let response = self.command(&format!("FETCH {sequence} (BODY.PEEK[HEADER.FIELDS ({wanted})])"))?;
        if !response.is_ok() {
            return Err(io::Error::other(format!("FETCH {sequence} answered {response}")));
        }
        response
            .untagged
            .iter()
            .find(|line| line.starts_with(&format!("{sequence} FETCH")))
            .and_then(|line| line.split_once("\r\n").map(|(_, rest)| rest.trim_end_matches(')').trim_end().to_owned()))
            .ok_or_else(|| io::Error::other(format!("FETCH {sequence} returned no header: {:?}", response.untagged)))
    }

    /// `LIST "" *`: the names of every mailbox.
    pub fn list(&mut self) -> io::Result<Vec<String>> {
        let response = self.command("LIST \"\" *")?;
        if !response.is_ok() {
            return Err(io::Error::other(format!("LIST answered {response}")));
        }
        Ok(response
            .untagged
            .iter()
            .filter(|line| line.starts_with("LIST "))
            .filter_map(|line| list_name(line))
            .collect())
    }

    /// `LOGOUT`; a server that closes at once is fine.
    pub fn logout(mut self) {
        // The session is over either way: a lost connection here changes nothing.
        let _ = self.command("LOGOUT");
    }
}

/// An IMAP quoted string.
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The size of the literal a line ends with (`{12}` or `{12+}`).
fn literal_size(line: &str) -> Option<usize> {
    let open = line.strip_suffix('}')?.rfind('{')?;
    line[open + 1..line.len() - 1].trim_end_matches('+').parse().ok()
}

/// The mailbox name of a `LIST (\flags) "/" name` line, unquoted.
fn list_name(line: &str) -> Option<String> {
    let after_flags = &line[line.find(')')? + 1..];
    let after_delimiter = after_flags.trim_start();
    let rest = if let Some(quoted) = after_delimiter.strip_prefix('"') {
        &quoted[quoted.find('"')? + 1..]
    } else {
        // NIL delimiter.
        after_delimiter.strip_prefix("NIL")?
    };
    let name = rest.trim();
    Some(match name.strip_prefix('"').and_then(|name| name.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_escape_backslash_and_quote() {
        assert_eq!(quote(r#"pa"ss\word"#), r#""pa\"ss\\word""#);
    }

    #[test]
    fn literal_sizes() {
        assert_eq!(literal_size("* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {25}"), Some(25));
        assert_eq!(literal_size("a {7+}"), Some(7));
        assert_eq!(literal_size("* OK done"), None);
        assert_eq!(literal_size("* OK {x}"), None);
    }

    #[test]
    fn list_names() {
        assert_eq!(list_name(r#"LIST (\HasNoChildren) "." INBOX"#).as_deref(), Some("INBOX"));
        assert_eq!(list_name(r#"LIST (\HasNoChildren \Sent) "/" "Sent Items""#).as_deref(), Some("Sent Items"));
        assert_eq!(list_name(r#"LIST (\Noselect) NIL "Top""#).as_deref(), Some("Top"));
    }
}
