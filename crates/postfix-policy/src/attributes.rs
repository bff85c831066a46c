//! Attribute lists, the wire unit of the policy delegation protocol: `name=value` lines ended by an empty line.
//!
//! Postfix sends each request as such a list and reads each reply the same way (SMTPD_POLICY_README, "Protocol
//! description"); lines end with a bare LF.
//! Parsing is bounded and incremental: [`AttributesDecoder`] scans each byte once, however the stream is cut, and
//! refuses a list as soon as a line, the attribute count or the whole list passes its [`Limits`], so a peer can
//! never make it buffer more than one maximal list plus the last read.
//!
//! What the codec accepts, deliberately:
//! - A line is everything before an LF; any CRs at its end are dropped, so a CRLF peer (a person typing into
//!   `nc`) works. A line that is empty after that ends the list.
//! - A name is one or more printable ASCII characters (`!` to `~`) other than `=`; Postfix's names are lower-case
//!   words with underscores. The value is everything after the first `=` and may be empty.
//! - A value that is not UTF-8 is kept, with each invalid sequence replaced by U+FFFD, and marked
//!   [`Attribute::lossy`]: such values come from SMTP clients (a HELO name, an address) through Postfix, so
//!   refusing them would make Postfix defer mail it could deliver.
//! - A name that appears twice is an error: a policy reading the first and a log reading the last would disagree,
//!   and Postfix never repeats a name.
//!
//! Every error but [`SyntaxError::Incomplete`] is final for the stream: the server closes the connection.

use std::borrow::Cow;
use std::fmt;

/// The longest line, in bytes before its LF, that a server accepts unless configured otherwise.
///
/// Postfix's longest values are addresses and certificate subjects, bounded by its 2048-byte SMTP line limit
/// (`line_length_limit`), so this leaves room while keeping a hostile peer's buffer small.
pub const DEFAULT_MAX_LINE_LEN: usize = 4096;

/// The most attributes one list may hold unless configured otherwise; Postfix 3.7 sends about 35.
pub const DEFAULT_MAX_ATTRIBUTES: usize = 100;

/// The longest list, in bytes including its final empty line, accepted unless configured otherwise.
///
/// A real request is well under 2 KiB.
pub const DEFAULT_MAX_LIST_LEN: usize = 64 * 1024;

/// Bounds on one attribute list; [`Default`] gives the `DEFAULT_*` constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest line, in bytes before its LF (CRs included).
    pub max_line_len: usize,
    /// The most attributes in one list.
    pub max_attributes: usize,
    /// The longest list, in bytes from its first byte to the LF of its empty line.
    pub max_list_len: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line_len: DEFAULT_MAX_LINE_LEN,
            max_attributes: DEFAULT_MAX_ATTRIBUTES,
            max_list_len: DEFAULT_MAX_LIST_LEN,
        }
    }
}

/// One `name=value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The name: printable ASCII without `=`.
    pub name: String,
    /// The value, possibly empty; never contains LF and never ends with CR.
    pub value: String,
    /// Whether the value arrived as bytes that are not UTF-8 and had invalid sequences replaced by U+FFFD.
    pub lossy: bool,
}

/// An attribute list in arrival order, with no name twice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    list: Vec<Attribute>,
}

impl Attributes {
    /// An empty list.
    pub fn new() -> Attributes {
        Attributes::default()
    }

    /// Appends `name=value`, refusing what could not be sent or read back as it is.
    ///
    /// ```
    /// use couchmail_postfix_policy::{Attributes, SyntaxError};
    ///
    /// let mut attributes = Attributes::new();
    /// attributes.push("sender", "alice@example.com").unwrap();
    /// assert_eq!(attributes.push("sender", "bob@example.com"), Err(SyntaxError::DuplicateName { name: "sender".into() }));
    /// assert_eq!(attributes.push("bad name", "x"), Err(SyntaxError::InvalidName { line_number: 2 }));
    /// assert_eq!(attributes.push("helo_name", "a\nb"), Err(SyntaxError::InvalidValue { name: "helo_name".into() }));
    /// ```
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) -> Result<(), SyntaxError> {
        let (name, value) = (name.into(), value.into());
        if !is_valid_name(name.as_bytes()) {
            return Err(SyntaxError::InvalidName { line_number: self.list.len() + 1 });
        }
        if value.contains('\n') || value.ends_with('\r') {
            return Err(SyntaxError::InvalidValue { name });
        }
        if self.get(&name).is_some() {
            return Err(SyntaxError::DuplicateName { name });
        }
        self.list.push(Attribute { name, value, lossy: false });
        Ok(())
    }

    /// The value of the attribute called `name`, if the list has one.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.find(name).map(|attribute| attribute.value.as_str())
    }

    /// The attribute called `name`, with its [`Attribute::lossy`] flag.
    pub fn find(&self, name: &str) -> Option<&Attribute> {
        self.list.iter().find(|attribute| attribute.name == name)
    }

    /// The attributes in arrival order.
    pub fn iter(&self) -> std::slice::Iter<'_, Attribute> {
        self.list.iter()
    }

    /// How many attributes the list holds.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the list holds no attribute.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Appends the list to `out` as it goes on the wire: one `name=value` line each, then an empty line.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for attribute in &self.list {
            out.extend_from_slice(attribute.name.as_bytes());
            out.push(b'=');
            out.extend_from_slice(attribute.value.as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
    }
}

impl IntoIterator for Attributes {
    type Item = Attribute;
    type IntoIter = std::vec::IntoIter<Attribute>;

    fn into_iter(self) -> Self::IntoIter {
        self.list.into_iter()
    }
}

impl<'a> IntoIterator for &'a Attributes {
    type Item = &'a Attribute;
    type IntoIter = std::slice::Iter<'a, Attribute>;

    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

/// Why some bytes are not (yet) an attribute list.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyntaxError {
    /// The bytes are a valid beginning of a list, and more are needed to finish it.
    Incomplete,
    /// A line is longer than [`Limits::max_line_len`].
    LineTooLong {
        /// The limit in force.
        max_len: usize,
    },
    /// The list has more than [`Limits::max_attributes`] attributes.
    TooManyAttributes {
        /// The limit in force.
        max: usize,
    },
    /// The list is longer than [`Limits::max_list_len`].
    ListTooLong {
        /// The limit in force.
        max_len: usize,
    },
    /// A non-empty line has no `=`.
    MissingEquals {
        /// The line's number within its list, from 1.
        line_number: usize,
    },
    /// A name is empty or has a byte that is not printable ASCII.
    InvalidName {
        /// The line's number within its list, from 1.
        line_number: usize,
    },
    /// A name appears twice in one list.
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// A value to send holds an LF or ends with a CR, so it would not be read back as it is.
    InvalidValue {
        /// The attribute's name.
        name: String,
    },
}

impl SyntaxError {
    /// Whether the bytes can still become a list once more arrive.
    pub fn is_incomplete(&self) -> bool {
        matches!(self, SyntaxError::Incomplete)
    }
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyntaxError::Incomplete => f.write_str("incomplete attribute list"),
            SyntaxError::LineTooLong { max_len } => write!(f, "attribute line is longer than {max_len} bytes"),
            SyntaxError::TooManyAttributes { max } => write!(f, "attribute list has more than {max} attributes"),
            SyntaxError::ListTooLong { max_len } => write!(f, "attribute list is longer than {max_len} bytes"),
            SyntaxError::MissingEquals { line_number } => write!(f, "attribute line {line_number} has no '='"),
            SyntaxError::InvalidName { line_number } => {
                write!(f, "attribute line {line_number} has an empty or non-printable name")
            }
            SyntaxError::DuplicateName { name } => write!(f, "attribute {name:?} appears twice"),
            SyntaxError::InvalidValue { name } => {
                write!(f, "value of attribute {name:?} has a line feed or ends with a carriage return")
            }
        }
    }
}

impl std::error::Error for SyntaxError {}

/// Parses one attribute list at the start of `bytes` under `limits`.
///
/// Returns the list and the number of bytes it used, so that a caller holding pipelined lists can step over it.
/// A cut-short input is [`SyntaxError::Incomplete`]; an input that can never become a valid list is any other error,
/// found as early as the bytes allow.
///
/// ```
/// use couchmail_postfix_policy::{Limits, SyntaxError, parse_attributes};
///
/// let (attributes, n_used) = parse_attributes(b"request=smtpd_access_policy\nsender=\n\nnext", &Limits::default()).unwrap();
/// assert_eq!((attributes.get("sender"), attributes.len(), n_used), (Some(""), 2, 37));
/// assert_eq!(parse_attributes(b"sender=a", &Limits::default()), Err(SyntaxError::Incomplete));
/// assert_eq!(parse_attributes(b"garbage\n\n", &Limits::default()), Err(SyntaxError::MissingEquals { line_number: 1 }));
/// ```
pub fn parse_attributes(bytes: &[u8], limits: &Limits) -> Result<(Attributes, usize), SyntaxError> {
    let mut decoder = AttributesDecoder::new(*limits);
    decoder.extend(bytes);
    match decoder.next_list()? {
        Some(attributes) => Ok((attributes, bytes.len() - decoder.buffered_len())),
        None => Err(SyntaxError::Incomplete),
    }
}

/// Splits a byte stream that arrives in arbitrary pieces into attribute lists.
///
/// The sans-I/O heart of a connection: bytes go in with [`AttributesDecoder::extend`] as they are read, and
/// [`AttributesDecoder::next_list`] hands out each complete list in order.
/// Each byte is scanned once, and lines are parsed as they complete, so a peer sending one byte at a time costs
/// no more than one sending everything at once.
#[derive(Debug)]
pub struct AttributesDecoder {
    limits: Limits,
    buffer: Vec<u8>,
    /// Where the current line starts; the current list starts at 0, since finished lists are drained.
    line_start_idx: usize,
    /// The first byte not yet searched for an LF.
    scan_idx: usize,
    /// The lines of the current list parsed so far.
    attributes: Attributes,
    /// The first error found; once set, the stream is lost and it is returned for ever.
    error: Option<SyntaxError>,
}

impl AttributesDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> AttributesDecoder {
        AttributesDecoder {
            limits,
            buffer: Vec::new(),
            line_start_idx: 0,
            scan_idx: 0,
            attributes: Attributes::new(),
            error: None,
        }
    }

    /// Appends bytes read from the peer.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete list, `Ok(None)` if more bytes are needed, or the error that ended the stream.
    pub fn next_list(&mut self) -> Result<Option<Attributes>, SyntaxError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        let result = self.scan();
        if let Err(error) = &result {
            self.error = Some(error.clone());
        }
        result
    }

    /// Whether no unconsumed byte is buffered, that is, the peer is between lists.
    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    /// The number of unconsumed bytes buffered, the current list's lines already parsed included.
    pub fn buffered_len(&self) -> usize {
        self.buffer.len()
    }

    fn scan(&mut self) -> Result<Option<Attributes>, SyntaxError> {
        loop {
            let Some(offset) = self.buffer[self.scan_idx..].iter().position(|&byte| byte == b'\n') else {
                self.scan_idx = self.buffer.len();
                // Refuse as soon as the partial line or list can no longer fit, not when its end arrives.
                self.check_lengths(self.buffer.len())?;
                return Ok(None);
            };
            let lf_idx = self.scan_idx + offset;
            self.check_lengths(lf_idx)?;
            if lf_idx + 1 > self.limits.max_list_len {
                return Err(SyntaxError::ListTooLong { max_len: self.limits.max_list_len });
            }
            let mut line = &self.buffer[self.line_start_idx..lf_idx];
            while let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.is_empty() {
                let attributes = std::mem::take(&mut self.attributes);
                self.buffer.drain(..=lf_idx);
                self.line_start_idx = 0;
                self.scan_idx = 0;
                return Ok(Some(attributes));
            }
            let attribute = parse_line(line, self.attributes.len() + 1)?;
            if self.attributes.len() == self.limits.max_attributes {
                return Err(SyntaxError::TooManyAttributes { max: self.limits.max_attributes });
            }
            if self.attributes.get(&attribute.name).is_some() {
                return Err(SyntaxError::DuplicateName { name: attribute.name });
            }
            self.attributes.list.push(attribute);
            self.line_start_idx = lf_idx + 1;
            self.scan_idx = lf_idx + 1;
        }
    }

    /// Checks the line that runs from `line_start_idx` to `end_idx` (its LF, or the end of what arrived so far),
    /// and the list up to there.
    fn check_lengths(&self, end_idx: usize) -> Result<(), SyntaxError> {
        if end_idx - self.line_start_idx > self.limits.max_line_len {
            return Err(SyntaxError::LineTooLong { max_len: self.limits.max_line_len });
        }
        if end_idx > self.limits.max_list_len {
            return Err(SyntaxError::ListTooLong { max_len: self.limits.max_list_len });
        }
        Ok(())
    }
}

/// Reads one non-empty line, CRs already dropped from its end.
fn parse_line(line: &[u8], line_number: usize) -> Result<Attribute, SyntaxError> {
    let equals_idx = line.iter().position(|&byte| byte == b'=').ok_or(SyntaxError::MissingEquals { line_number })?;
    let (name, value) = (&line[..equals_idx], &line[equals_idx + 1..]);
    if !is_valid_name(name) {
        return Err(SyntaxError::InvalidName { line_number });
    }
    // The name is printable ASCII, so this conversion cannot fail or lose anything.
    let name = String::from_utf8_lossy(name).into_owned();
    let (value, lossy) = match String::from_utf8_lossy(value) {
        Cow::Borrowed(value) => (value.to_owned(), false),
        Cow::Owned(value) => (value, true),
    };
    Ok(Attribute { name, value, lossy })
}

fn is_valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&byte| byte.is_ascii_graphic() && byte != b'=')
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SMALL: Limits = Limits { max_line_len: 16, max_attributes: 3, max_list_len: 40 };

    /// The largest list `SMALL` with more attributes allowed accepts: exactly 40 bytes.
    const LONGEST: [(&str, &str); 4] = [("a", "123456789"), ("b", "123456789"), ("c", "123456789"), ("d", "")];

    /// The attributes as name and value pairs, and the bytes used, that a parse should give.
    type Expected<'a> = Result<(&'a [(&'a str, &'a str)], usize), SyntaxError>;

    #[track_caller]
    fn check(input: &[u8], limits: Limits, expect: Expected<'_>) {
        let got = parse_attributes(input, &limits).map(|(attributes, n_used)| {
            let pairs: Vec<(String, String)> =
                attributes.iter().map(|attribute| (attribute.name.clone(), attribute.value.clone())).collect();
            (pairs, n_used)
        });
        let expect = expect.map(|(pairs, n_used)| {
            let pairs: Vec<(String, String)> =
                pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
            (pairs, n_used)
        });
        assert_eq!(got, expect, "input {:?}", String::from_utf8_lossy(input));
    }

    #[test]
    fn parses_lists_and_reports_the_bytes_used() {
        check(b"\n", SMALL, Ok((&[], 1)));
        check(b"a=1\nb=\n\n", SMALL, Ok((&[("a", "1"), ("b", "")], 8)));
        check(b"a=x=y\n\nrest", SMALL, Ok((&[("a", "x=y")], 7)));
        check(b"a= spaced \n\n", SMALL, Ok((&[("a", " spaced ")], 12)));
    }

    #[test]
    fn accepts_crlf_line_ends() {
        check(b"a=1\r\nb=2\r\r\n\r\n", SMALL, Ok((&[("a", "1"), ("b", "2")], 13)));
        check(b"a=1\r2\n\n", SMALL, Ok((&[("a", "1\r2")], 7)));
    }

    #[test]
    fn reports_incomplete_for_every_proper_prefix() {
        let list = b"request=smtpd_access_policy\nsender=a@b\n\n";
        for cut in 0..list.len() {
            check(&list[..cut], Limits::default(), Err(SyntaxError::Incomplete));
        }
        check(list, Limits::default(), Ok((&[("request", "smtpd_access_policy"), ("sender", "a@b")], list.len())));
    }

    #[test]
    fn refuses_garbage_lines() {
        check(b"garbage\n\n", SMALL, Err(SyntaxError::MissingEquals { line_number: 1 }));
        check(b"a=1\ngarbage\n", SMALL, Err(SyntaxError::MissingEquals { line_number: 2 }));
        check(b"=value\n", SMALL, Err(SyntaxError::InvalidName { line_number: 1 }));
        check(b"a b=1\n", SMALL, Err(SyntaxError::InvalidName { line_number: 1 }));
        check(b"\xff=1\n", SMALL, Err(SyntaxError::InvalidName { line_number: 1 }));
        check(b"a\0=1\n", SMALL, Err(SyntaxError::InvalidName { line_number: 1 }));
        check(b"a=1\na=1\n", SMALL, Err(SyntaxError::DuplicateName { name: "a".into() }));
    }

    #[test]
    fn keeps_values_that_are_not_utf8_and_marks_them() {
        let (attributes, _) = parse_attributes(b"helo_name=caf\xe9\nsender=ok\n\n", &SMALL).unwrap();
        let helo = attributes.find("helo_name").unwrap();
        assert_eq!((helo.value.as_str(), helo.lossy), ("caf\u{fffd}", true));
        assert!(!attributes.find("sender").unwrap().lossy);
    }

    #[test]
    fn refuses_over_long_lines_before_their_end_arrives() {
        check(&[b'a'; 17], SMALL, Err(SyntaxError::LineTooLong { max_len: 16 }));
        check(&[b'a'; 16], SMALL, Err(SyntaxError::Incomplete));
        check(b"a=23456789012345\n\n", SMALL, Ok((&[("a", "23456789012345")], 18)));
        check(b"a=234567890123456\n\n", SMALL, Err(SyntaxError::LineTooLong { max_len: 16 }));
    }

    #[test]
    fn refuses_over_long_and_over_full_lists() {
        check(b"a=1\nb=2\nc=3\nd=4\n\n", SMALL, Err(SyntaxError::TooManyAttributes { max: 3 }));
        check(b"a=1\nb=2\nc=3\n\n", SMALL, Ok((&[("a", "1"), ("b", "2"), ("c", "3")], 13)));
        let long = Limits { max_attributes: 100, ..SMALL };
        check(b"a=123456789\nb=123456789\nc=123456789\nd=\n\n", long, Ok((&LONGEST, 40)));
        check(b"a=123456789\nb=123456789\nc=123456789\nd=1\n", long, Err(SyntaxError::Incomplete));
        check(b"a=123456789\nb=123456789\nc=123456789\nd=1\n\n", long, Err(SyntaxError::ListTooLong { max_len: 40 }));
        check(b"a=123456789\nb=123456789\nc=123456789\nd=12345", long, Err(SyntaxError::ListTooLong { max_len: 40 }));
    }

    #[test]
    fn encodes_what_it_parses() {
        let mut attributes = Attributes::new();
        attributes.push("request", "smtpd_access_policy").unwrap();
        attributes.push("sender", "").unwrap();
        attributes.push("helo_name", "a\rb").unwrap();
        let mut wire = Vec::new();
        attributes.encode(&mut wire);
        assert_eq!(wire, b"request=smtpd_access_policy\nsender=\nhelo_name=a\rb\n\n");
        assert_eq!(parse_attributes(&wire, &Limits::default()), Ok((attributes, wire.len())));
    }

    #[test]
    fn decoder_yields_pipelined_lists_and_keeps_its_error() {
        let mut decoder = AttributesDecoder::new(SMALL);
        decoder.extend(b"a=1\n\nb=2\n\nbad\n\nc=3\n\n");
        assert_eq!(decoder.next_list().unwrap().unwrap().get("a"), Some("1"));
        assert_eq!(decoder.next_list().unwrap().unwrap().get("b"), Some("2"));
        assert_eq!(decoder.next_list(), Err(SyntaxError::MissingEquals { line_number: 1 }));
        assert_eq!(decoder.next_list(), Err(SyntaxError::MissingEquals { line_number: 1 }));
    }

    #[test]
    fn decoder_assembles_a_list_fed_byte_by_byte() {
        let mut decoder = AttributesDecoder::new(Limits::default());
        let wire = b"sender=a@b\nrecipient=c@d\n\n";
        for &byte in &wire[..wire.len() - 1] {
            decoder.extend(&[byte]);
            assert_eq!(decoder.next_list(), Ok(None));
            assert!(!decoder.is_empty());
        }
        decoder.extend(b"\n");
        assert_eq!(decoder.next_list().unwrap().unwrap().get("recipient"), Some("c@d"));
        assert!(decoder.is_empty());
    }

    fn any_list() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::btree_map("[a-z_]{1,12}", "[^\n]{0,20}", 0..8).prop_map(|map| {
            map.into_iter().map(|(name, value)| (name, value.trim_end_matches('\r').to_owned())).collect()
        })
    }

    proptest! {
        #[test]
        fn parse_inverts_encode(pairs in any_list(), tail in proptest::collection::vec(any::<u8>(), 0..20)) {
            let mut attributes = Attributes::new();
            for (name, value) in &pairs {
                attributes.push(name.as_str(), value.as_str()).unwrap();
            }
            let mut wire = Vec::new();
            attributes.encode(&mut wire);
            let list_len = wire.len();
            wire.extend_from_slice(&tail);
            prop_assert_eq!(parse_attributes(&wire, &Limits::default()), Ok((attributes, list_len)));
        }

        #[test]
        fn parse_never_panics_and_respects_limits(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok((attributes, n_used)) = parse_attributes(&bytes, &SMALL) {
                prop_assert!(attributes.len() <= SMALL.max_attributes);
                prop_assert!(n_used <= SMALL.max_list_len && n_used <= bytes.len());
            }
        }

        #[test]
        fn decoder_output_does_not_depend_on_how_bytes_are_split(
            lists in proptest::collection::vec(any_list(), 0..5),
            cuts in proptest::collection::vec(1usize..16, 0..60),
        ) {
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for pairs in &lists {
                let mut attributes = Attributes::new();
                for (name, value) in pairs {
                    attributes.push(name.as_str(), value.as_str()).unwrap();
                }
                attributes.encode(&mut wire);
                expected.push(attributes);
            }
            let mut decoder = AttributesDecoder::new(Limits::default());
            let mut decoded = Vec::new();
            let mut rest = &wire[..];
            let mut cuts = cuts.into_iter();
            while !rest.is_empty() {
                let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
                decoder.extend(&rest[..n]);
                rest = &rest[n..];
                while let Some(attributes) = decoder.next_list().unwrap() {
                    decoded.push(attributes);
                }
            }
            prop_assert_eq!(decoded, expected);
            prop_assert!(decoder.is_empty());
        }
    }
}
