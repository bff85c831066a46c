//! Typed requests of the dict protocol (majors 3 and 4), parsed from and encoded to lines.
//!
//! Formats, as Dovecot 2.3.17+ clients send them (`src/lib-dict/dict-client.c`) and the dict server reads them
//! (`src/dict/dict-connection.c`, `src/dict/dict-commands.c`); `<user>` moved from the hello into each command in 2.3.17:
//!
//! | line | reply |
//! |---|---|
//! | `H<major>\t<minor>\t<value type>\t<obsolete user>\t<dict name>` | none |
//! | `L<key>\t<user>` | `O<value>`, `N` or `F<error>` |
//! | `I<flags>\t<max rows>\t<path>\t<user>` | `O<key>\t<value>` rows, then an empty line or `F<error>` |
//! | `B<id>\t<user>` | none |
//! | `S<id>\t<key>\t<value>`, `U<id>\t<key>`, `A<id>\t<key>\t<diff>`, `T<id>\t<secs>\t<nsecs>` | none |
//! | `C<id>` | `O<id>`, `N<id>`, `W<id>\t<error>` or `F<id>\t<error>` |
//! | `D<id>` (asynchronous commit, older clients) | as `C`, prefixed with `A` |
//! | `R<id>` | none |
//!
//! Extra trailing fields are ignored, as Dovecot's own server does for the hello.

use crate::error::{ParseError, ParseErrorKind};
use crate::line::{escape_into, split_fields};

/// The dict protocol majors this crate speaks: 3 (Dovecot 2.3.17 and later) and 4 (Dovecot 2.4).
pub const SUPPORTED_MAJOR_VERSIONS: [u32; 2] = [3, 4];

/// The first byte of a request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// `H`: the handshake.
    Hello,
    /// `L`: look up one key.
    Lookup,
    /// `I`: list keys below a path.
    Iterate,
    /// `B`: begin a transaction.
    Begin,
    /// `C`: commit a transaction.
    Commit,
    /// `D`: commit a transaction, reply prefixed with `A` (older clients).
    CommitAsync,
    /// `R`: roll a transaction back.
    Rollback,
    /// `S`: set a key inside a transaction.
    Set,
    /// `U`: unset a key inside a transaction.
    Unset,
    /// `A`: add to a numeric key inside a transaction.
    AtomicInc,
    /// `T`: set the transaction's timestamp.
    Timestamp,
}

impl Command {
    /// The command named by a line's first byte.
    pub fn from_byte(byte: u8) -> Option<Command> {
        Some(match byte {
            b'H' => Command::Hello,
            b'L' => Command::Lookup,
            b'I' => Command::Iterate,
            b'B' => Command::Begin,
            b'C' => Command::Commit,
            b'D' => Command::CommitAsync,
            b'R' => Command::Rollback,
            b'S' => Command::Set,
            b'U' => Command::Unset,
            b'A' => Command::AtomicInc,
            b'T' => Command::Timestamp,
            _ => return None,
        })
    }

    /// The byte that starts this command's lines.
    pub fn as_byte(self) -> u8 {
        match self {
            Command::Hello => b'H',
            Command::Lookup => b'L',
            Command::Iterate => b'I',
            Command::Begin => b'B',
            Command::Commit => b'C',
            Command::CommitAsync => b'D',
            Command::Rollback => b'R',
            Command::Set => b'S',
            Command::Unset => b'U',
            Command::AtomicInc => b'A',
            Command::Timestamp => b'T',
        }
    }

    /// A lowercase name for logs and error messages.
    pub fn name(self) -> &'static str {
        match self {
            Command::Hello => "hello",
            Command::Lookup => "lookup",
            Command::Iterate => "iterate",
            Command::Begin => "begin",
            Command::Commit => "commit",
            Command::CommitAsync => "async commit",
            Command::Rollback => "rollback",
            Command::Set => "set",
            Command::Unset => "unset",
            Command::AtomicInc => "atomic-inc",
            Command::Timestamp => "timestamp",
        }
    }
}

/// The handshake a client sends first; Dovecot's server sends nothing back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The protocol major: 3 from Dovecot 2.3.17+, 4 from Dovecot 2.4.
    pub major: u32,
    /// The protocol minor; Dovecot 2.3.19 sends 2.
    pub minor: u32,
    /// Dovecot's `enum dict_data_type` (0 = string, 1 = unsigned integer).
    pub value_type: u32,
    /// Empty since 2.3.17: the user now travels with each command.
    pub obsolete_user: String,
    /// The dict name, the part after the socket path in `proxy:<socket>:<name>`.
    pub dict_name: String,
}

impl Hello {
    /// The hello a Dovecot of protocol `major` sends for the dict `dict_name`.
    pub fn new(major: u32, dict_name: impl Into<String>) -> Hello {
        // Dovecot 2.3.19 sends minor 2; 2.4 restarted the minor with its new major.
        let minor = if major == 3 { 2 } else { 0 };
        Hello { major, minor, value_type: 0, obsolete_user: String::new(), dict_name: dict_name.into() }
    }
}

/// The flags of an iteration, Dovecot's `enum dict_iterate_flags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IterateFlags(u32);

impl IterateFlags {
    /// List every key below the path, not only one level.
    pub const RECURSE: IterateFlags = IterateFlags(0x01);
    /// Sort rows by key.
    pub const SORT_BY_KEY: IterateFlags = IterateFlags(0x02);
    /// Sort rows by value.
    pub const SORT_BY_VALUE: IterateFlags = IterateFlags(0x04);
    /// Send keys only, each with an empty value.
    pub const NO_VALUE: IterateFlags = IterateFlags(0x08);
    /// Treat the path as one exact key (a lookup answered as rows).
    pub const EXACT_KEY: IterateFlags = IterateFlags(0x10);
    /// The client iterates asynchronously; it changes nothing on the wire.
    pub const ASYNC: IterateFlags = IterateFlags(0x20);

    /// Flags from their wire value; unknown bits are kept and ignored.
    pub fn from_bits(bits: u32) -> IterateFlags {
        IterateFlags(bits)
    }

    /// The wire value.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `other` is set in `self`.
    pub fn contains(self, other: IterateFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for IterateFlags {
    type Output = IterateFlags;

    fn bitor(self, rhs: IterateFlags) -> IterateFlags {
        IterateFlags(self.0 | rhs.0)
    }
}

/// One request line, typed.
///
/// Keys, paths and users of reads must be UTF-8 (they are looked up);
/// keys and values of writes are only logged, so invalid UTF-8 there is replaced rather than refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `H`: the handshake.
    Hello(Hello),
    /// `L<key>\t<user>`.
    Lookup {
        /// The dict key, for example `priv/sieve/name/active`.
        key: String,
        /// The user the key belongs to.
        user: String,
    },
    /// `I<flags>\t<max rows>\t<path>\t<user>`.
    Iterate {
        /// How to iterate.
        flags: IterateFlags,
        /// At most this many rows; 0 means no limit.
        max_rows: u64,
        /// The key prefix to list.
        path: String,
        /// The user the keys belong to.
        user: String,
    },
    /// `B<id>\t<user>`.
    Begin {
        /// The transaction id the client chose.
        id: u32,
        /// The user the transaction writes for.
        user: String,
    },
    /// `C<id>`.
    Commit {
        /// The transaction id.
        id: u32,
    },
    /// `D<id>`.
    CommitAsync {
        /// The transaction id.
        id: u32,
    },
    /// `R<id>`.
    Rollback {
        /// The transaction id.
        id: u32,
    },
    /// `S<id>\t<key>\t<value>`.
    Set {
        /// The transaction id.
        id: u32,
        /// The key to set.
        key: String,
        /// The value to set.
        value: String,
    },
    /// `U<id>\t<key>`.
    Unset {
        /// The transaction id.
        id: u32,
        /// The key to remove.
        key: String,
    },
    /// `A<id>\t<key>\t<diff>`.
    AtomicInc {
        /// The transaction id.
        id: u32,
        /// The numeric key to change.
        key: String,
        /// The amount to add.
        diff: i64,
    },
    /// `T<id>\t<secs>\t<nsecs>`.
    Timestamp {
        /// The transaction id.
        id: u32,
        /// Seconds since the epoch.
        secs: i64,
        /// Nanoseconds.
        nsecs: u32,
    },
}

impl Request {
    /// Parses one line's content (without its LF).
    ///
    /// Never panics, whatever the bytes; this is the fuzz target's entry point.
    pub fn parse(line: &[u8]) -> Result<Request, ParseError> {
        let Some((&first_byte, rest)) = line.split_first() else {
            return Err(ParseError::new(None, ParseErrorKind::Empty, "empty line"));
        };
        let Some(command) = Command::from_byte(first_byte) else {
            return Err(ParseError::new(
                None,
                ParseErrorKind::UnknownCommand,
                format!("unknown command byte 0x{first_byte:02x}"),
            ));
        };
        let fields = Fields { command, fields: split_fields(rest) };
        Ok(match command {
            Command::Hello => Request::Hello(Hello {
                major: fields.number(0, "major version")?,
                minor: fields.number(1, "minor version")?,
                value_type: fields.number(2, "value type")?,
                obsolete_user: fields.lossy(3, "user")?,
                dict_name: fields.lossy(4, "dict name")?,
            }),
            Command::Lookup => Request::Lookup { key: fields.text(0, "key")?, user: fields.text(1, "user")? },
            Command::Iterate => Request::Iterate {
                flags: IterateFlags::from_bits(fields.number(0, "flags")?),
                max_rows: fields.number(1, "max rows")?,
                path: fields.text(2, "path")?,
                user: fields.text(3, "user")?,
            },
            Command::Begin => Request::Begin {
                id: fields.number(0, "transaction id")?,
                // Clients before 2.3.17 sent no user here; they are refused at the hello anyway.
                user: fields.optional_text(1, "user")?,
            },
            Command::Commit => Request::Commit { id: fields.number(0, "transaction id")? },
            Command::CommitAsync => Request::CommitAsync { id: fields.number(0, "transaction id")? },
            Command::Rollback => Request::Rollback { id: fields.number(0, "transaction id")? },
            Command::Set => Request::Set {
                id: fields.number(0, "transaction id")?,
                key: fields.lossy(1, "key")?,
                value: fields.lossy(2, "value")?,
            },
            Command::Unset => Request::Unset { id: fields.number(0, "transaction id")?, key: fields.lossy(1, "key")? },
            Command::AtomicInc => Request::AtomicInc {
                id: fields.number(0, "transaction id")?,
                key: fields.lossy(1, "key")?,
                diff: fields.number(2, "diff")?,
            },
            Command::Timestamp => Request::Timestamp {
                id: fields.number(0, "transaction id")?,
                secs: fields.number(1, "seconds")?,
                nsecs: fields.number(2, "nanoseconds")?,
            },
        })
    }

    /// The command this request is.
    pub fn command(&self) -> Command {
        match self {
            Request::Hello(_) => Command::Hello,
            Request::Lookup { .. } => Command::Lookup,
            Request::Iterate { .. } => Command::Iterate,
            Request::Begin { .. } => Command::Begin,
            Request::Commit { .. } => Command::Commit,
            Request::CommitAsync { .. } => Command::CommitAsync,
            Request::Rollback { .. } => Command::Rollback,
            Request::Set { .. } => Command::Set,
            Request::Unset { .. } => Command::Unset,
            Request::AtomicInc { .. } => Command::AtomicInc,
            Request::Timestamp { .. } => Command::Timestamp,
        }
    }

    /// Appends the request as a line, LF included, to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.command().as_byte());
        let fields: Vec<String> = match self {
            Request::Hello(hello) => vec![
                hello.major.to_string(),
                hello.minor.to_string(),
                hello.value_type.to_string(),
                hello.obsolete_user.clone(),
                hello.dict_name.clone(),
            ],
            Request::Lookup { key, user } => vec![key.clone(), user.clone()],
            Request::Iterate { flags, max_rows, path, user } => {
                vec![flags.bits().to_string(), max_rows.to_string(), path.clone(), user.clone()]
            }
            Request::Begin { id, user } => vec![id.to_string(), user.clone()],
            Request::Commit { id } | Request::CommitAsync { id } | Request::Rollback { id } => vec![id.to_string()],
            Request::Set { id, key, value } => vec![id.to_string(), key.clone(), value.clone()],
            Request::Unset { id, key } => vec![id.to_string(), key.clone()],
            Request::AtomicInc { id, key, diff } => vec![id.to_string(), key.clone(), diff.to_string()],
            Request::Timestamp { id, secs, nsecs } => vec![id.to_string(), secs.to_string(), nsecs.to_string()],
        };
        for (field_idx, field) in fields.iter().enumerate() {
            if field_idx > 0 {
                out.push(b'\t');
            }
            escape_into(field.as_bytes(), out);
        }
        out.push(b'\n');
    }

    /// The request as a line, LF included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

/// The unescaped fields after the command byte, with typed accessors that name what is missing.
struct Fields {
    command: Command,
    fields: Vec<Vec<u8>>,
}

impl Fields {
    fn raw(&self, field_idx: usize, what: &str) -> Result<&[u8], ParseError> {
        self.fields
            .get(field_idx)
            .map(Vec::as_slice)
            .ok_or_else(|| ParseError::new(Some(self.command), ParseErrorKind::MissingField, format!("missing {what}")))
    }

    fn text(&self, field_idx: usize, what: &str) -> Result<String, ParseError> {
        let raw = self.raw(field_idx, what)?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| ParseError::new(Some(self.command), ParseErrorKind::NotUtf8, format!("{what} is not UTF-8")))
    }

    fn optional_text(&self, field_idx: usize, what: &str) -> Result<String, ParseError> {
        if field_idx < self.fields.len() { self.text(field_idx, what) } else { Ok(String::new()) }
    }

    fn lossy(&self, field_idx: usize, what: &str) -> Result<String, ParseError> {
        Ok(String::from_utf8_lossy(self.raw(field_idx, what)?).into_owned())
    }

    fn number<N: std::str::FromStr>(&self, field_idx: usize, what: &str) -> Result<N, ParseError> {
        let raw = self.raw(field_idx, what)?;
        // Dovecot's str_to_uint and friends take plain decimal digits (with a sign for signed types only).
        let parsed =
            std::str::from_utf8(raw).ok().filter(|text| !text.starts_with('+')).and_then(|text| text.parse().ok());
        parsed.ok_or_else(|| {
            ParseError::new(
                Some(self.command),
                ParseErrorKind::BadNumber,
                format!("{what} {:?} is not a number", String::from_utf8_lossy(raw)),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(line: &[u8]) -> Request {
        match Request::parse(line) {
            Ok(request) => request,
            Err(err) => panic!("{:?} did not parse: {err}", String::from_utf8_lossy(line)),
        }
    }

    fn parse_err(line: &[u8]) -> ParseError {
        match Request::parse(line) {
            Ok(request) => panic!("{:?} parsed as {request:?}", String::from_utf8_lossy(line)),
            Err(err) => err,
        }
    }

    #[test]
    fn parses_what_dovecot_2_3_19_sends() {
        // Captured from `doveadm dict get/iter/set` of Dovecot 2.3.19.1 against a listening socket.
        assert_eq!(parse_ok(b"H3\t2\t0\t\tsieve"), Request::Hello(Hello::new(3, "sieve")));
        assert_eq!(
            parse_ok(b"Lpriv/sieve/name/active\talice"),
            Request::Lookup { key: "priv/sieve/name/active".into(), user: "alice".into() }
        );
        assert_eq!(
            parse_ok(b"I24\t0\tpriv/sieve/\talice"),
            Request::Iterate {
                flags: IterateFlags::NO_VALUE | IterateFlags::EXACT_KEY,
                max_rows: 0,
                path: "priv/sieve/".into(),
                user: "alice".into()
            }
        );
        assert_eq!(parse_ok(b"B1\talice"), Request::Begin { id: 1, user: "alice".into() });
        assert_eq!(
            parse_ok(b"S1\tpriv/x\ta\x01tb"),
            Request::Set { id: 1, key: "priv/x".into(), value: "a\tb".into() }
        );
        assert_eq!(parse_ok(b"U1\tpriv/x"), Request::Unset { id: 1, key: "priv/x".into() });
        assert_eq!(parse_ok(b"A1\tpriv/x\t-5"), Request::AtomicInc { id: 1, key: "priv/x".into(), diff: -5 });
        assert_eq!(parse_ok(b"T1\t1700000000\t5"), Request::Timestamp { id: 1, secs: 1_700_000_000, nsecs: 5 });
        assert_eq!(parse_ok(b"C1"), Request::Commit { id: 1 });
        assert_eq!(parse_ok(b"D7"), Request::CommitAsync { id: 7 });
        assert_eq!(parse_ok(b"R1"), Request::Rollback { id: 1 });
    }

    #[test]
    fn hello_of_dovecot_2_4_and_extra_fields() {
        assert_eq!(parse_ok(b"H4\t0\t0\t\tsieve"), Request::Hello(Hello::new(4, "sieve")));
        assert_eq!(parse_ok(b"H4\t0\t0\t\tsieve\tfuture"), Request::Hello(Hello::new(4, "sieve")));
        let Request::Hello(old) = parse_ok(b"H2\t2\t1\tbob\tquota") else { panic!("not a hello") };
        assert_eq!((old.major, old.value_type, old.obsolete_user.as_str()), (2, 1, "bob"));
    }

    #[test]
    fn malformed_lines_name_their_command() {
        let err = parse_err(b"Lonly-a-key");
        assert_eq!((err.command(), err.kind()), (Some(Command::Lookup), ParseErrorKind::MissingField));
        let err = parse_err(b"Ix\t0\tpath\tuser");
        assert_eq!((err.command(), err.kind()), (Some(Command::Iterate), ParseErrorKind::BadNumber));
        let err = parse_err(b"L\xff\tuser");
        assert_eq!((err.command(), err.kind()), (Some(Command::Lookup), ParseErrorKind::NotUtf8));
        let err = parse_err(b"C+1");
        assert_eq!((err.command(), err.kind()), (Some(Command::Commit), ParseErrorKind::BadNumber));
        let err = parse_err(b"H3\t2\t0");
        assert_eq!((err.command(), err.kind()), (Some(Command::Hello), ParseErrorKind::MissingField));
        assert_eq!(parse_err(b"").kind(), ParseErrorKind::Empty);
        let err = parse_err(b"Zzz");
        assert_eq!((err.command(), err.kind()), (None, ParseErrorKind::UnknownCommand));
        assert_eq!(parse_err(b"B99999999999\tuser").kind(), ParseErrorKind::BadNumber);
    }

    #[test]
    fn encode_then_parse_is_identity() {
        let requests = vec![
            Request::Hello(Hello::new(4, "sieve")),
            Request::Lookup { key: "priv/sieve/data/a\tb".into(), user: "al\nice".into() },
            Request::Iterate { flags: IterateFlags::RECURSE, max_rows: 10, path: "priv/".into(), user: "u".into() },
            Request::Begin { id: 3, user: "u".into() },
            Request::Set { id: 3, key: "k".into(), value: "v\x01\r\n".into() },
            Request::Unset { id: 3, key: "k".into() },
            Request::AtomicInc { id: 3, key: "k".into(), diff: i64::MIN },
            Request::Timestamp { id: 3, secs: -1, nsecs: 999 },
            Request::Commit { id: 3 },
            Request::CommitAsync { id: u32::MAX },
            Request::Rollback { id: 0 },
        ];
        for request in requests {
            let line = request.encode();
            assert_eq!(line.iter().filter(|&&byte| byte == b'\n').count(), 1, "{request:?}");
            assert_eq!(Request::parse(&line[..line.len() - 1]), Ok(request));
        }
    }

    #[test]
    fn commands_round_trip_through_their_byte() {
        for byte in 0..=u8::MAX {
            if let Some(command) = Command::from_byte(byte) {
                assert_eq!(command.as_byte(), byte);
            }
        }
    }
}
