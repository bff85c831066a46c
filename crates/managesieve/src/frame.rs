//! The client's side of the wire (RFC 5804 §4): commands are lines of atoms, quoted strings and literals, ended by
//! CRLF; [`CommandDecoder`] cuts a byte stream into [`Command`]s under fixed bounds.
//!
//! Literals from the client are non-synchronizing (`{n+}` CRLF, then n octets at once: RFC 5804 §4,
//! `literal-c2s`), as ManageSieve has no continuation request for them. A synchronizing `{n}` is read the same way
//! (its octets are expected at once too), as some clients send it and waiting for a `+` they would never get helps
//! nobody.
//!
//! Nothing here closes a connection: a line that breaks the syntax, is too long, or carries a literal over the
//! limit is skipped up to its CRLF — the octets of its literals read and thrown away, never buffered — and becomes a
//! [`Decoded::Refused`] that the session answers with `NO`, so the client can go on.

use std::fmt;

/// The longest command line accepted, literal octets not counted (RFC 5804 §4 bounds quoted strings at 1024 octets).
pub const DEFAULT_MAX_LINE_LEN: usize = 8 * 1024;

/// The largest literal accepted by default: a Sieve script of the store's largest size (couchmail-model's
/// `MAX_SIEVE_SCRIPT_BYTES`).
pub const DEFAULT_MAX_LITERAL_LEN: usize = 256 * 1024;

/// The longest quoted string (RFC 5804 §4: `quoted` is "limited to 1024 octets between the <">s").
const MAX_QUOTED_LEN: usize = 1024;

/// The most words on one command line; no command takes more than three arguments.
const MAX_WORDS: usize = 16;

/// The most digits of a literal's length; more cannot be a length worth reading.
const MAX_LENGTH_DIGITS: usize = 19;

/// One word of a command: an atom (the command's name, a number) or a string (quoted or literal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Word {
    /// A bare word: `PUTSCRIPT`, `1024`.
    Atom(String),
    /// A quoted string or a literal, as bytes (a script's encoding is checked where it is used).
    String(Vec<u8>),
}

impl Word {
    /// The word as a command name or number, if it is an atom.
    pub fn as_atom(&self) -> Option<&str> {
        match self {
            Word::Atom(atom) => Some(atom),
            Word::String(_) => None,
        }
    }

    /// The word as a string argument, if it is a string.
    pub fn as_string(&self) -> Option<&[u8]> {
        match self {
            Word::String(bytes) => Some(bytes),
            Word::Atom(_) => None,
        }
    }
}

/// A complete command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The words, the command's name first.
    pub words: Vec<Word>,
}

/// Why a command line was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A literal longer than the limit; its octets were read and discarded.
    LiteralTooLarge {
        /// The length the client announced.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The line (literals aside) is longer than the limit.
    LineTooLong {
        /// The limit.
        max: usize,
    },
    /// The line breaks RFC 5804's syntax.
    Syntax(&'static str),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::LiteralTooLarge { len, max } => {
                write!(f, "literal of {len} octets is larger than the limit of {max}")
            }
            Refusal::LineTooLong { max } => write!(f, "command line is longer than {max} octets"),
            Refusal::Syntax(why) => write!(f, "syntax error: {why}"),
        }
    }
}

/// What the decoder found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A well-formed command line.
    Command(Command),
    /// A line that was skipped; the stream is in step again after it.
    Refused(Refusal),
}

/// The bounds of a [`CommandDecoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest line, literal octets not counted.
    pub max_line_len: usize,
    /// The largest single literal, and the most literal octets in one command.
    pub max_literal_len: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_line_len: DEFAULT_MAX_LINE_LEN, max_literal_len: DEFAULT_MAX_LITERAL_LEN }
    }
}

/// Cuts the client's bytes into command lines; memory stays bounded by the limits whatever the client sends.
#[derive(Debug)]
pub struct CommandDecoder {
    limits: Limits,
    /// Bytes received and not yet consumed.
    buffer: Vec<u8>,
    /// Words of the line being read, once parsed.
    words: Vec<Word>,
    /// Line octets (literal octets not counted) of the words already parsed.
    line_len: usize,
    /// Literal octets of the words already parsed.
    literal_len: usize,
    /// Set once the current line is known to be refused: the rest of it is skipped.
    refusal: Option<Refusal>,
    /// Literal octets still to be thrown away.
    n_to_discard: u64,
}

impl CommandDecoder {
    /// A decoder with `limits`.
    pub fn new(limits: Limits) -> CommandDecoder {
        CommandDecoder {
            limits,
            buffer: Vec::new(),
            words: Vec::new(),
            line_len: 0,
            literal_len: 0,
            refusal: None,
            n_to_discard: 0,
        }
    }

    /// Appends bytes read from the client.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
        self.discard_literal_octets();
    }

    /// The next complete line, `None` while more bytes are needed.
    pub fn next_item(&mut self) -> Option<Decoded> {
        loop {
            self.discard_literal_octets();
            if self.n_to_discard > 0 {
                return None;
            }
            if self.refusal.is_some() {
                match self.skip_line() {
                    Skip::Done(refusal) => return Some(Decoded::Refused(refusal)),
                    // The line goes on after a literal, whose octets are being discarded.
                    Skip::PastLiteral => continue,
                    Skip::NeedMore => return None,
                }
            }
            match self.parse_word() {
                // Each scanner refuses a token that would take the line over its limit as soon as it sees the
                // byte too many, so what is buffered meanwhile stays bounded, and a line is refused for the same
                // reason however its bytes arrive.
                Step::NeedMore => return None,
                // A literal's octets were checked against the literal limit when its header was read.
                Step::AwaitLiteral => return None,
                Step::Word => {
                    if self.line_len > self.limits.max_line_len {
                        self.refuse(Refusal::LineTooLong { max: self.limits.max_line_len });
                    }
                }
                Step::EndOfLine => {
                    let words = std::mem::take(&mut self.words);
                    self.reset_line();
                    if words.is_empty() {
                        return Some(Decoded::Refused(Refusal::Syntax("empty command line")));
                    }
                    return Some(Decoded::Command(Command { words }));
                }
                Step::Refused(refusal) => self.refuse(refusal),
            }
        }
    }

    /// Whether no byte of a line is buffered (the client is between commands).
    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
            && self.words.is_empty()
            && self.refusal.is_none()
            && self.n_to_discard == 0
            && self.line_len == 0
    }

    /// The bytes buffered and not yet consumed, taken out; used when STARTTLS hands the stream over, where nothing
    /// may follow the command in the clear.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buffer)
    }

    fn reset_line(&mut self) {
        self.words.clear();
        self.line_len = 0;
        self.literal_len = 0;
        self.refusal = None;
    }

    fn refuse(&mut self, refusal: Refusal) {
        self.words.clear();
        if self.refusal.is_none() {
            self.refusal = Some(refusal);
        }
    }

    fn discard_literal_octets(&mut self) {
        if self.n_to_discard == 0 {
            return;
        }
        let n_dropped = usize::try_from(self.n_to_discard).unwrap_or(usize::MAX).min(self.buffer.len());
        self.buffer.drain(..n_dropped);
        self.n_to_discard -= n_dropped as u64;
    }

    /// Skips the refused line up to its CRLF, throwing away the octets of any literal announced at the end of a
    /// physical line; answers the refusal once the line is over.
    fn skip_line(&mut self) -> Skip {
        let Some(lf_idx) = self.buffer.iter().position(|&byte| byte == b'\n') else {
            // Keep only a tail long enough to hold a literal header, so a long line costs no memory.
            let keep = MAX_LENGTH_DIGITS + 4;
            if self.buffer.len() > keep {
                let n_drop = self.buffer.len() - keep;
                self.buffer.drain(..n_drop);
            }
            return Skip::NeedMore;
        };
        let line: Vec<u8> = self.buffer.drain(..=lf_idx).collect();
        let content = line.strip_suffix(b"\n").unwrap_or(&line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        match literal_header_at_end(content) {
            Some(len) => {
                self.n_to_discard = len;
                Skip::PastLiteral
            }
            None => {
                let refusal = self.refusal.take().unwrap_or(Refusal::Syntax("malformed command line"));
                self.reset_line();
                Skip::Done(refusal)
            }
        }
    }

    /// Parses the next word (or the line's end) from the front of the buffer.
    fn parse_word(&mut self) -> Step {
        let Some(&first) = self.buffer.first() else { return Step::NeedMore };
        match first {
            b' ' => {
                if self.words.is_empty() {
                    return Step::Refused(Refusal::Syntax("command line starts with a space"));
                }
                self.consume(1);
                Step::Word
            }
            b'\r' => match self.buffer.get(1) {
                None => Step::NeedMore,
                Some(b'\n') => {
                    self.buffer.drain(..2);
                    Step::EndOfLine
                }
                Some(_) => Step::Refused(Refusal::Syntax("CR not followed by LF")),
            },
            // A bare LF ends a line as well: lenient, like Dovecot, since refusing it helps nobody.
            b'\n' => {
                self.buffer.drain(..1);
                Step::EndOfLine
            }
            b'"' => self.parse_quoted(),
            b'{' => self.parse_literal(),
            _ if is_atom_char(first) => self.parse_atom(),
            _ => Step::Refused(Refusal::Syntax("unexpected character")),
        }
    }

    fn consume(&mut self, n_bytes: usize) {
        self.buffer.drain(..n_bytes);
        self.line_len += n_bytes;
    }

    fn push_word(&mut self, word: Word) -> Step {
        if self.words.len() >= MAX_WORDS {
            return Step::Refused(Refusal::Syntax("too many arguments"));
        }
        self.words.push(word);
        Step::Word
    }

    /// Whether a token of `token_len` bytes so far would take the line over its limit.
    fn over_line_limit(&self, token_len: usize) -> bool {
        self.line_len + token_len > self.limits.max_line_len
    }

    fn parse_atom(&mut self) -> Step {
        let mut len = 0;
        loop {
            if self.over_line_limit(len + 1) {
                return Step::Refused(Refusal::LineTooLong { max: self.limits.max_line_len });
            }
            match self.buffer.get(len) {
                None => return Step::NeedMore,
                Some(&byte) if is_atom_char(byte) => len += 1,
                Some(_) => break,
            }
        }
        // Atom characters are ASCII, so this cannot fail; a failure would be a bug here, not the client's.
        let atom = String::from_utf8_lossy(&self.buffer[..len]).into_owned();
        self.consume(len);
        self.push_word(Word::Atom(atom))
    }

    fn parse_quoted(&mut self) -> Step {
        let mut value = Vec::new();
        let mut idx = 1;
        loop {
            if self.over_line_limit(idx + 1) {
                return Step::Refused(Refusal::LineTooLong { max: self.limits.max_line_len });
            }
            let Some(&byte) = self.buffer.get(idx) else { return Step::NeedMore };
            match byte {
                b'"' => break,
                b'\\' => {
                    if self.over_line_limit(idx + 2) {
                        return Step::Refused(Refusal::LineTooLong { max: self.limits.max_line_len });
                    }
                    let Some(&escaped) = self.buffer.get(idx + 1) else { return Step::NeedMore };
                    if escaped != b'"' && escaped != b'\\' {
                        return Step::Refused(Refusal::Syntax("a quoted string escapes only \" and \\"));
                    }
                    value.push(escaped);
                    idx += 2;
                }
                b'\r' | b'\n' | 0 => {
                    return Step::Refused(Refusal::Syntax("a quoted string may not hold CR, LF or NUL"));
                }
                _ => {
                    value.push(byte);
                    idx += 1;
                }
            }
            if value.len() > MAX_QUOTED_LEN {
                return Step::Refused(Refusal::Syntax("a quoted string is limited to 1024 octets"));
            }
        }
        self.consume(idx + 1);
        self.push_word(Word::String(value))
    }

    fn parse_literal(&mut self) -> Step {
        // `{` digits [`+`] `}` CRLF
        let mut idx = 1;
        let mut len: u64 = 0;
        loop {
            if self.over_line_limit(idx + 1) {
                return Step::Refused(Refusal::LineTooLong { max: self.limits.max_line_len });
            }
            let Some(&byte) = self.buffer.get(idx) else { return Step::NeedMore };
            if !byte.is_ascii_digit() {
                break;
            }
            if idx > MAX_LENGTH_DIGITS {
                return Step::Refused(Refusal::Syntax("literal length has too many digits"));
            }
            len = len * 10 + u64::from(byte - b'0');
            idx += 1;
        }
        if idx == 1 {
            return Step::Refused(Refusal::Syntax("literal without a length"));
        }
        if self.over_line_limit(idx + 1) {
            return Step::Refused(Refusal::LineTooLong { max: self.limits.max_line_len });
        }
        if self.buffer.get(idx) == Some(&b'+') {
            idx += 1;
        }
        for expected in [b'}', b'\r', b'\n'] {
            if self.over_line_limit(idx + 1) {
                return Step::Refused(Refusal::LineTooLong { max: self.limits.max_line_len });
            }
            match self.buffer.get(idx) {
                None => return Step::NeedMore,
                Some(&byte) if byte == expected => idx += 1,
                Some(_) => return Step::Refused(Refusal::Syntax("malformed literal header")),
            }
        }
        let max = self.limits.max_literal_len;
        let fits = usize::try_from(len).is_ok_and(|len| len <= max && self.literal_len + len <= max);
        if !fits {
            // The header is consumed here and the octets discarded, so that skipping the rest of the line does not
            // read them as commands.
            self.buffer.drain(..idx);
            self.n_to_discard = len;
            return Step::Refused(Refusal::LiteralTooLarge { len, max });
        }
        let len = len as usize;
        if self.buffer.len() < idx + len {
            return Step::AwaitLiteral;
        }
        let value = self.buffer[idx..idx + len].to_vec();
        self.buffer.drain(..idx + len);
        self.line_len += idx;
        self.literal_len += len;
        self.push_word(Word::String(value))
    }
}

impl Default for CommandDecoder {
    fn default() -> CommandDecoder {
        CommandDecoder::new(Limits::default())
    }
}

impl couchmail_wire_server::Decoder for CommandDecoder {
    type Item = Decoded;
    type Error = std::convert::Infallible;

    fn extend(&mut self, bytes: &[u8]) {
        CommandDecoder::extend(self, bytes);
    }

    fn next_item(&mut self) -> Result<Option<Decoded>, std::convert::Infallible> {
        Ok(CommandDecoder::next_item(self))
    }

    fn is_empty(&self) -> bool {
        CommandDecoder::is_empty(self)
    }
}

enum Skip {
    /// The refused line is over.
    Done(Refusal),
    /// A literal at the end of a physical line is being discarded; the line goes on after it.
    PastLiteral,
    /// More bytes are needed to find the line's end.
    NeedMore,
}

enum Step {
    /// More bytes of the line are needed.
    NeedMore,
    /// A literal's header is in and its octets (within the limit) are awaited.
    AwaitLiteral,
    Word,
    EndOfLine,
    Refused(Refusal),
}

/// RFC 5804 §4 `ATOM-CHAR`: any CHAR except `atom-specials` (`(`, `)`, `{`, SP, CTL, `%`, `*`, `"`, `\`, `]`).
fn is_atom_char(byte: u8) -> bool {
    byte.is_ascii_graphic() && !matches!(byte, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// The length of a literal announced at the end of a line: `{123+}` or `{123}`.
fn literal_header_at_end(line: &[u8]) -> Option<u64> {
    let inner = line.strip_suffix(b"}")?;
    let inner = inner.strip_suffix(b"+").unwrap_or(inner);
    let open_idx = inner.iter().rposition(|&byte| byte == b'{')?;
    let digits = &inner[open_idx + 1..];
    if digits.is_empty() || digits.len() > MAX_LENGTH_DIGITS || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Encodes `text` as a ManageSieve string for the server's replies: quoted when it can be, else a literal
/// (`literal-s2c`: `{n}` CRLF and the octets, RFC 5804 §4).
pub fn encode_string(output: &mut Vec<u8>, text: &[u8]) {
    let quotable = text.len() <= MAX_QUOTED_LEN && !text.iter().any(|&byte| matches!(byte, b'\r' | b'\n' | 0));
    if quotable {
        output.push(b'"');
        for &byte in text {
            if byte == b'"' || byte == b'\\' {
                output.push(b'\\');
            }
            output.push(byte);
        }
        output.push(b'"');
    } else {
        encode_literal(output, text);
    }
}

/// Encodes `text` as a literal (`{n}` CRLF and the octets).
pub fn encode_literal(output: &mut Vec<u8>, text: &[u8]) {
    output.extend_from_slice(format!("{{{}}}\r\n", text.len()).as_bytes());
    output.extend_from_slice(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(limits: Limits, input: &[u8]) -> Vec<Decoded> {
        // Byte by byte, so that every partial state is exercised.
        let mut decoder = CommandDecoder::new(limits);
        let mut out = Vec::new();
        for byte in input {
            decoder.extend(std::slice::from_ref(byte));
            while let Some(item) = decoder.next_item() {
                out.push(item);
            }
        }
        // And all at once, which must agree.
        let mut whole = CommandDecoder::new(limits);
        whole.extend(input);
        let mut at_once = Vec::new();
        while let Some(item) = whole.next_item() {
            at_once.push(item);
        }
        assert_eq!(out, at_once, "byte-by-byte and whole decoding differ");
        out
    }

    fn check(input: &str, expect: &[&str]) {
        let shown: Vec<String> = decode_all(Limits { max_line_len: 64, max_literal_len: 16 }, input.as_bytes())
            .into_iter()
            .map(|item| match item {
                Decoded::Command(command) => command
                    .words
                    .iter()
                    .map(|word| match word {
                        Word::Atom(atom) => atom.clone(),
                        Word::String(bytes) => format!("<{}>", String::from_utf8_lossy(bytes)),
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                Decoded::Refused(refusal) => format!("refused: {refusal}"),
            })
            .collect();
        assert_eq!(shown, expect);
    }

    #[test]
    fn atoms_quoted_strings_and_literals() {
        check("CAPABILITY\r\n", &["CAPABILITY"]);
        check("getscript \"my \\\"x\\\" \\\\\"\r\n", &["getscript <my \"x\" \\>"]);
        check("PUTSCRIPT \"a\" {5+}\r\nkeep;\r\n", &["PUTSCRIPT <a> <keep;>"]);
        check("PUTSCRIPT {1+}\r\na {4}\r\nk\r\n;\r\n", &["PUTSCRIPT <a> <k\r\n;>"]);
        check("HAVESPACE \"a\" 1000\r\nNOOP\nLOGOUT\r\n", &["HAVESPACE <a> 1000", "NOOP", "LOGOUT"]);
        check("AUTHENTICATE \"PLAIN\" {0+}\r\n\r\n", &["AUTHENTICATE <PLAIN> <>"]);
    }

    #[test]
    fn syntax_errors_skip_the_line_and_go_on() {
        check("\r\nNOOP\r\n", &["refused: syntax error: empty command line", "NOOP"]);
        check(" NOOP\r\nNOOP\r\n", &["refused: syntax error: command line starts with a space", "NOOP"]);
        check("NOOP \"a\\b\"\r\nNOOP\r\n", &["refused: syntax error: a quoted string escapes only \" and \\", "NOOP"]);
        check("NOOP (x)\r\nNOOP\r\n", &["refused: syntax error: unexpected character", "NOOP"]);
        check("NOOP {x}\r\nNOOP\r\n", &["refused: syntax error: literal without a length", "NOOP"]);
        check("NOOP {3+]\r\nNOOP\r\n", &["refused: syntax error: malformed literal header", "NOOP"]);
        check("NOOP \rX\r\nNOOP\r\n", &["refused: syntax error: CR not followed by LF", "NOOP"]);
        check("NOOP \"a\r\nNOOP\r\n", &["refused: syntax error: a quoted string may not hold CR, LF or NUL", "NOOP"]);
        // A refused line's literal is skipped too, even when its octets look like commands.
        check("NOOP ( {6+}\r\nLOGOUT\r\nNOOP\r\n", &["refused: syntax error: unexpected character", "NOOP"]);
    }

    #[test]
    fn oversized_literals_are_discarded_and_the_stream_stays_in_step() {
        let literal = "x".repeat(17);
        check(
            &format!("PUTSCRIPT \"a\" {{17+}}\r\n{literal}\r\nNOOP\r\n"),
            &["refused: literal of 17 octets is larger than the limit of 16", "NOOP"],
        );
        // Octets that look like a command inside the discarded literal are not read as one.
        check(
            "PUTSCRIPT \"a\" {20+}\r\nLOGOUT\r\nLOGOUT\r\nLOGO\r\nNOOP\r\n",
            &["refused: literal of 20 octets is larger than the limit of 16", "NOOP"],
        );
        // Two literals that fit alone but not together.
        check(
            "PUTSCRIPT {10+}\r\n0123456789 {10+}\r\n0123456789\r\nNOOP\r\n",
            &["refused: literal of 10 octets is larger than the limit of 16", "NOOP"],
        );
        // A later literal on a line already refused is discarded too.
        check(
            "PUTSCRIPT {17+}\r\n01234567890123456 {3+}\r\nabc\r\nNOOP\r\n",
            &["refused: literal of 17 octets is larger than the limit of 16", "NOOP"],
        );
    }

    #[test]
    fn a_huge_literal_costs_no_memory() {
        let mut decoder = CommandDecoder::new(Limits::default());
        decoder.extend(b"PUTSCRIPT \"a\" {1000000000+}\r\n");
        assert_eq!(decoder.next_item(), None, "the refusal comes once the line is over, after the literal's octets");
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..10 {
            decoder.extend(&chunk);
            assert_eq!(decoder.next_item(), None);
            assert!(decoder.buffer.capacity() <= 2 << 20, "discarded octets are not kept");
        }
        assert!(!decoder.is_empty());
    }

    #[test]
    fn long_lines_are_refused_without_buffering_them() {
        let long = "A".repeat(100);
        check(&format!("{long}\r\nNOOP\r\n"), &["refused: command line is longer than 64 octets", "NOOP"]);
        let mut decoder = CommandDecoder::new(Limits { max_line_len: 64, max_literal_len: 16 });
        for _ in 0..1000 {
            decoder.extend(&[b'A'; 1000]);
            assert_eq!(decoder.next_item(), None);
        }
        assert!(decoder.buffer.len() < 1024, "a refused line is not kept: {}", decoder.buffer.len());
        decoder.extend(b"\r\nNOOP\r\n");
        assert_eq!(decoder.next_item(), Some(Decoded::Refused(Refusal::LineTooLong { max: 64 })));
        assert!(matches!(decoder.next_item(), Some(Decoded::Command(_))));
        assert!(decoder.is_empty());
    }

    #[test]
    fn long_quoted_strings_and_too_many_words_are_refused() {
        let mut decoder = CommandDecoder::new(Limits { max_line_len: 4096, max_literal_len: 16 });
        decoder.extend(format!("NOOP \"{}\"\r\n", "q".repeat(1025)).as_bytes());
        assert_eq!(
            decoder.next_item(),
            Some(Decoded::Refused(Refusal::Syntax("a quoted string is limited to 1024 octets")))
        );
        decoder.extend(format!("NOOP{}\r\n", " a".repeat(20)).as_bytes());
        assert_eq!(decoder.next_item(), Some(Decoded::Refused(Refusal::Syntax("too many arguments"))));
        assert!(decoder.is_empty());
    }

    #[test]
    fn encodes_strings_quoted_or_as_literals() {
        let mut out = Vec::new();
        encode_string(&mut out, b"say \"hi\" \\");
        assert_eq!(out, b"\"say \\\"hi\\\" \\\\\"");
        let mut out = Vec::new();
        encode_string(&mut out, b"line 1\r\nline 2");
        assert_eq!(out, b"{14}\r\nline 1\r\nline 2");
    }

    #[test]
    fn a_literal_header_at_the_end_of_a_line_is_found() {
        assert_eq!(literal_header_at_end(b"PUTSCRIPT \"x\" {12+}"), Some(12));
        assert_eq!(literal_header_at_end(b"x {7}"), Some(7));
        assert_eq!(literal_header_at_end(b"x {}"), None);
        assert_eq!(literal_header_at_end(b"x {1a}"), None);
        assert_eq!(literal_header_at_end(b"x"), None);
    }
}
