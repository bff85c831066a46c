//! Typed replies of the dict protocol, encoded by the server and parsed by the client.
//!
//! Which reply a line is depends on the command it answers (`O` is a value, a row or a commit),
//! so parsing takes that command; see `cmd_lookup_callback`, `cmd_iterate_flush` and `cmd_commit_finish`
//! in Dovecot's `src/dict/dict-commands.c`.
//! Dovecot's server appends four timing fields when the client's minor is 1 or more; clients treat them as optional,
//! so this server sends none and the parsers ignore extra fields.

use crate::error::{ParseError, ParseErrorKind};
use crate::line::{escape_into, split_fields};
use crate::request::Command;

/// One reply line, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Lookup: `O<value>`.
    Value(String),
    /// Lookup: `N`, the key has no value.
    NotFound,
    /// Lookup or iteration: `F<error>`, which Dovecot reports as a temporary failure.
    Failed(String),
    /// Iteration: `O<key>\t<value>`, one per row.
    Row {
        /// The row's key.
        key: String,
        /// The row's value, empty when the client asked for keys only.
        value: String,
    },
    /// Iteration: the empty line that ends a successful iteration.
    IterationEnd,
    /// Commit: `O<id>`, prefixed with `A` for an asynchronous commit.
    Committed {
        /// The transaction id (Dovecot calls it obsolete but still sends it).
        id: u32,
        /// Whether the commit was `D` rather than `C`.
        async_commit: bool,
    },
    /// Commit: `F<id>\t<error>`, prefixed with `A` for an asynchronous commit.
    CommitFailed {
        /// The transaction id.
        id: u32,
        /// Why the commit failed.
        error: String,
        /// Whether the commit was `D` rather than `C`.
        async_commit: bool,
    },
}

impl Reply {
    /// Appends the reply as a line, LF included, to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Value(value) => {
                out.push(b'O');
                escape_into(value.as_bytes(), out);
            }
            Reply::NotFound => out.push(b'N'),
            Reply::Failed(error) => {
                out.push(b'F');
                escape_into(error.as_bytes(), out);
            }
            Reply::Row { key, value } => {
                out.push(b'O');
                escape_into(key.as_bytes(), out);
                out.push(b'\t');
                escape_into(value.as_bytes(), out);
            }
            Reply::IterationEnd => {}
            Reply::Committed { id, async_commit } => {
                if *async_commit {
                    out.push(b'A');
                }
                out.push(b'O');
                out.extend_from_slice(id.to_string().as_bytes());
            }
            Reply::CommitFailed { id, error, async_commit } => {
                if *async_commit {
                    out.push(b'A');
                }
                out.push(b'F');
                out.extend_from_slice(id.to_string().as_bytes());
                out.push(b'\t');
                escape_into(error.as_bytes(), out);
            }
        }
        out.push(b'\n');
    }

    /// The reply as a line, LF included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Parses a reply line (without its LF) to a lookup.
    pub fn parse_lookup(line: &[u8]) -> Result<Reply, ParseError> {
        let fields = split_fields(line);
        let Some((status, value)) = fields.first().and_then(|first| first.split_first()) else {
            return Err(unexpected(Command::Lookup, line));
        };
        match status {
            b'O' => Ok(Reply::Value(utf8(Command::Lookup, value)?)),
            b'N' => Ok(Reply::NotFound),
            b'F' => Ok(Reply::Failed(String::from_utf8_lossy(value).into_owned())),
            _ => Err(unexpected(Command::Lookup, line)),
        }
    }

    /// Parses a reply line (without its LF) to an iteration: a row, the end, or a failure.
    pub fn parse_iterate(line: &[u8]) -> Result<Reply, ParseError> {
        let fields = split_fields(line);
        let Some(first) = fields.first() else {
            return Ok(Reply::IterationEnd);
        };
        match first.split_first() {
            // A line of timing fields only (first field empty) also ends an iteration.
            None => Ok(Reply::IterationEnd),
            Some((b'O', key)) => {
                let value = fields.get(1).ok_or_else(|| {
                    ParseError::new(Some(Command::Iterate), ParseErrorKind::MissingField, "row without a value")
                })?;
                Ok(Reply::Row { key: utf8(Command::Iterate, key)?, value: utf8(Command::Iterate, value)? })
            }
            Some((b'F', error)) => Ok(Reply::Failed(String::from_utf8_lossy(error).into_owned())),
            Some(_) => Err(unexpected(Command::Iterate, line)),
        }
    }

    /// Parses a reply line (without its LF) to a commit.
    pub fn parse_commit(line: &[u8]) -> Result<Reply, ParseError> {
        let fields = split_fields(line);
        let first = fields.first().map(Vec::as_slice).unwrap_or_default();
        let (async_commit, first) = match first.strip_prefix(b"A") {
            Some(rest) => (true, rest),
            None => (false, first),
        };
        let Some((&status, id_text)) = first.split_first() else {
            return Err(unexpected(Command::Commit, line));
        };
        let id = std::str::from_utf8(id_text).ok().and_then(|text| text.parse::<u32>().ok()).ok_or_else(|| {
            ParseError::new(Some(Command::Commit), ParseErrorKind::BadNumber, "commit reply without a transaction id")
        })?;
        match status {
            b'O' => Ok(Reply::Committed { id, async_commit }),
            b'F' | b'W' | b'N' => {
                let error = fields.get(1).map(|error| String::from_utf8_lossy(error).into_owned()).unwrap_or_default();
                let error = if status == b'N' { "transaction found nothing to change".to_owned() } else { error };
                Ok(Reply::CommitFailed { id, error, async_commit })
            }
            _ => Err(unexpected(Command::Commit, line)),
        }
    }
}

fn utf8(command: Command, raw: &[u8]) -> Result<String, ParseError> {
    String::from_utf8(raw.to_vec())
        .map_err(|_| ParseError::new(Some(command), ParseErrorKind::NotUtf8, "reply is not UTF-8"))
}

fn unexpected(command: Command, line: &[u8]) -> ParseError {
    ParseError::new(
        Some(command),
        ParseErrorKind::UnknownCommand,
        format!("unexpected reply {:?}", String::from_utf8_lossy(line)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(reply: &Reply) -> Vec<u8> {
        let mut line = reply.encode();
        assert_eq!(line.pop(), Some(b'\n'));
        line
    }

    #[test]
    fn encodes_the_bytes_dovecot_expects() {
        assert_eq!(Reply::Value("a\tb".into()).encode(), b"Oa\x01tb\n".to_vec());
        assert_eq!(Reply::NotFound.encode(), b"N\n".to_vec());
        assert_eq!(Reply::Failed("index not ready".into()).encode(), b"Findex not ready\n".to_vec());
        assert_eq!(Reply::Row { key: "k".into(), value: "v\n".into() }.encode(), b"Ok\tv\x01n\n".to_vec());
        assert_eq!(Reply::IterationEnd.encode(), b"\n".to_vec());
        assert_eq!(Reply::Committed { id: 4, async_commit: false }.encode(), b"O4\n".to_vec());
        assert_eq!(
            Reply::CommitFailed { id: 4, error: "read\tonly".into(), async_commit: true }.encode(),
            b"AF4\tread\x01tonly\n".to_vec()
        );
    }

    #[test]
    fn parsers_invert_the_encoder() {
        for reply in [Reply::Value("x\x01y".into()), Reply::NotFound, Reply::Failed("e".into())] {
            assert_eq!(Reply::parse_lookup(&line_of(&reply)), Ok(reply));
        }
        for reply in
            [Reply::Row { key: "a/b".into(), value: "".into() }, Reply::IterationEnd, Reply::Failed("e".into())]
        {
            assert_eq!(Reply::parse_iterate(&line_of(&reply)), Ok(reply));
        }
        for reply in [
            Reply::Committed { id: 9, async_commit: false },
            Reply::Committed { id: 9, async_commit: true },
            Reply::CommitFailed { id: 9, error: "no\nway".into(), async_commit: false },
        ] {
            assert_eq!(Reply::parse_commit(&line_of(&reply)), Ok(reply));
        }
    }

    #[test]
    fn parsers_ignore_dovecots_timing_fields() {
        assert_eq!(Reply::parse_lookup(b"Ov\t1\t2\t3\t4"), Ok(Reply::Value("v".into())));
        assert_eq!(Reply::parse_iterate(b"\t1\t2\t3\t4"), Ok(Reply::IterationEnd));
        assert_eq!(Reply::parse_commit(b"O1\t1\t2\t3\t4"), Ok(Reply::Committed { id: 1, async_commit: false }));
    }

    #[test]
    fn parsers_refuse_what_does_not_fit() {
        assert!(Reply::parse_lookup(b"").is_err());
        assert!(Reply::parse_lookup(b"X").is_err());
        assert!(Reply::parse_iterate(b"Okey-without-value").is_err());
        assert!(Reply::parse_commit(b"O").is_err());
        assert!(Reply::parse_commit(b"Q1").is_err());
    }
}
