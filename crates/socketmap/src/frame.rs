//! Netstrings, the wire unit of the socketmap protocol: `LEN:DATA,`.
//!
//! A netstring is a decimal length without leading zeros, a colon, exactly that many bytes of data and a comma
//! (D. J. Bernstein, <https://cr.yp.to/proto/netstrings.txt>).
//! Every socketmap request and every reply is one netstring (socketmap_table(5), PROTOCOL).
//!
//! Parsing is strict and bounded: the length is checked against a maximum while its digits arrive, so a peer can
//! never make us buffer more than one maximal frame, and a frame that is merely cut short ([`FrameError::Incomplete`])
//! is told apart from one that can never become valid (every other [`FrameError`]).
//! Netstrings carry no delimiter to resynchronise on: after a malformed frame the stream is lost and the connection
//! must be closed.

use std::fmt;

/// The largest request payload a server accepts unless configured otherwise.
///
/// Postfix sends `NAME KEY` where the key is an address or a domain (at most a few hundred bytes), so this leaves
/// ample room while keeping a hostile peer's buffer small.
pub const DEFAULT_MAX_REQUEST_LEN: usize = 10_000;

/// The largest reply payload Postfix accepts, not counting the netstring's length, colon and comma
/// (socketmap_table(5), REPLY FORMAT).
pub const MAX_REPLY_LEN: usize = 100_000;

/// Why some bytes are not (yet) a netstring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The bytes are a valid beginning of a netstring, and more are needed to finish it.
    Incomplete,
    /// The frame starts with `:`, so it has no length.
    EmptyLength,
    /// The length has a leading zero (`05:`), which netstrings forbid.
    LeadingZero,
    /// A byte other than a digit or `:` stands where the length should be.
    NotADigit {
        /// The offending byte.
        byte: u8,
    },
    /// The declared length exceeds the maximum this reader accepts.
    TooLong {
        /// The maximum payload length in force.
        max_len: usize,
    },
    /// The byte after the data is not the terminating `,`.
    MissingComma {
        /// The byte found instead.
        byte: u8,
    },
}

impl FrameError {
    /// Whether the bytes can still become a netstring once more arrive.
    pub fn is_incomplete(&self) -> bool {
        matches!(self, FrameError::Incomplete)
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Incomplete => f.write_str("incomplete netstring"),
            FrameError::EmptyLength => f.write_str("netstring has an empty length"),
            FrameError::LeadingZero => f.write_str("netstring length has a leading zero"),
            FrameError::NotADigit { byte } => {
                write!(f, "netstring length has a non-digit byte {:?}", char::from(*byte).escape_default().to_string())
            }
            FrameError::TooLong { max_len } => write!(f, "netstring is longer than {max_len} bytes"),
            FrameError::MissingComma { byte } => {
                write!(f, "netstring ends with {:?} instead of ','", char::from(*byte).escape_default().to_string())
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Parses one netstring at the start of `bytes`, accepting a payload of at most `max_len` bytes.
///
/// Returns the payload and the number of bytes the whole frame used, so that a caller holding several pipelined
/// frames can step over it.
/// An empty or cut-short input is [`FrameError::Incomplete`]; an input that can never become a valid frame is any
/// other error, detected as early as possible (an over-long length is refused as soon as its digits exceed
/// `max_len`, before any data arrives).
///
/// ```
/// use couchmail_socketmap::{parse_frame, FrameError};
///
/// assert_eq!(parse_frame(b"5:hello,6:next", 100), Ok((&b"hello"[..], 8)));
/// assert_eq!(parse_frame(b"5:hel", 100), Err(FrameError::Incomplete));
/// assert_eq!(parse_frame(b"5:hello;", 100), Err(FrameError::MissingComma { byte: b';' }));
/// ```
pub fn parse_frame(bytes: &[u8], max_len: usize) -> Result<(&[u8], usize), FrameError> {
    let mut len: usize = 0;
    let mut colon_idx = 0;
    loop {
        let Some(&byte) = bytes.get(colon_idx) else { return Err(FrameError::Incomplete) };
        match byte {
            b':' if colon_idx == 0 => return Err(FrameError::EmptyLength),
            b':' => break,
            b'0'..=b'9' => {
                // A second digit after a leading `0` makes a leading zero; `0:` alone is the empty netstring.
                if colon_idx > 0 && len == 0 {
                    return Err(FrameError::LeadingZero);
                }
                len = len
                    .checked_mul(10)
                    .and_then(|len| len.checked_add(usize::from(byte - b'0')))
                    .filter(|&len| len <= max_len)
                    .ok_or(FrameError::TooLong { max_len })?;
                colon_idx += 1;
            }
            byte => return Err(FrameError::NotADigit { byte }),
        }
    }
    let data_start = colon_idx + 1;
    // `len <= max_len` and `colon_idx` counts a handful of digits, so this cannot overflow for any sane `max_len`;
    // checked arithmetic keeps even `usize::MAX` from panicking.
    let comma_idx = data_start.checked_add(len).ok_or(FrameError::TooLong { max_len })?;
    let Some(&terminator) = bytes.get(comma_idx) else { return Err(FrameError::Incomplete) };
    if terminator != b',' {
        return Err(FrameError::MissingComma { byte: terminator });
    }
    Ok((&bytes[data_start..comma_idx], comma_idx + 1))
}

/// Appends `payload` to `out` as one netstring.
///
/// ```
/// let mut out = Vec::new();
/// couchmail_socketmap::encode_frame(b"NOTFOUND ", &mut out);
/// assert_eq!(out, b"9:NOTFOUND ,");
/// ```
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(payload.len() + 12);
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(payload);
    out.push(b',');
}

/// Splits a byte stream that arrives in arbitrary pieces into netstring payloads.
///
/// This is the sans-I/O heart of a connection: bytes go in with [`FrameDecoder::extend`] as they are read, and
/// [`FrameDecoder::next_frame`] hands out each complete payload in order.
/// The buffer never holds more than one maximal frame plus the last piece read, because a caller reads more only
/// when no complete frame is buffered, and a frame longer than the maximum is refused from its length alone.
///
/// ```
/// use couchmail_socketmap::FrameDecoder;
///
/// let mut decoder = FrameDecoder::new(100);
/// decoder.extend(b"3:abc,2:d");
/// assert_eq!(decoder.next_frame(), Ok(Some(b"abc".to_vec())));
/// assert_eq!(decoder.next_frame(), Ok(None));
/// decoder.extend(b"e,");
/// assert_eq!(decoder.next_frame(), Ok(Some(b"de".to_vec())));
/// assert!(decoder.is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
    /// Where the unconsumed bytes start; consumed bytes are dropped lazily, before the next extend.
    start_idx: usize,
    max_len: usize,
}

impl FrameDecoder {
    /// A decoder accepting payloads of at most `max_len` bytes.
    pub fn new(max_len: usize) -> FrameDecoder {
        FrameDecoder { buffer: Vec::new(), start_idx: 0, max_len }
    }

    /// Appends bytes just read from the peer.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start_idx > 0 {
            self.buffer.drain(..self.start_idx);
            self.start_idx = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Takes the next complete payload, or `Ok(None)` when more bytes are needed.
    ///
    /// An error means the stream is malformed for good: the same error comes back on every later call, and the
    /// connection should be closed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        match parse_frame(&self.buffer[self.start_idx..], self.max_len) {
            Ok((payload, n_used)) => {
                let payload = payload.to_vec();
                self.start_idx += n_used;
                if self.start_idx == self.buffer.len() {
                    self.buffer.clear();
                    self.start_idx = 0;
                }
                Ok(Some(payload))
            }
            Err(FrameError::Incomplete) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Whether no unconsumed byte is buffered, that is, the peer is between frames.
    pub fn is_empty(&self) -> bool {
        self.start_idx == self.buffer.len()
    }

    /// The number of unconsumed bytes buffered.
    pub fn buffered_len(&self) -> usize {
        self.buffer.len() - self.start_idx
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[track_caller]
    fn check(input: &[u8], max_len: usize, expect: Result<(&[u8], usize), FrameError>) {
        assert_eq!(parse_frame(input, max_len), expect, "input {:?}", String::from_utf8_lossy(input));
    }

    #[test]
    fn parses_complete_frames() {
        check(b"0:,", 10, Ok((b"", 3)));
        check(b"1:a,", 10, Ok((b"a", 4)));
        check(b"10:0123456789,", 10, Ok((b"0123456789", 14)));
        check(b"3:a,b,trailing", 10, Ok((b"a,b", 6)));
        check(b"2:\0\xff,", 10, Ok((b"\0\xff", 5)));
    }

    #[test]
    fn reports_incomplete_for_every_proper_prefix() {
        let frame = b"12:hello world!,";
        for cut in 0..frame.len() {
            check(&frame[..cut], 100, Err(FrameError::Incomplete));
        }
        check(frame, 100, Ok((b"hello world!", frame.len())));
    }

    #[test]
    fn refuses_malformed_lengths() {
        check(b":", 10, Err(FrameError::EmptyLength));
        check(b":abc,", 10, Err(FrameError::EmptyLength));
        check(b"01:a,", 10, Err(FrameError::LeadingZero));
        check(b"00:,", 10, Err(FrameError::LeadingZero));
        check(b"x:", 10, Err(FrameError::NotADigit { byte: b'x' }));
        check(b"1x:a,", 10, Err(FrameError::NotADigit { byte: b'x' }));
        check(b"-1:a,", 10, Err(FrameError::NotADigit { byte: b'-' }));
        check(b" 1:a,", 10, Err(FrameError::NotADigit { byte: b' ' }));
        check(b"1 :a,", 10, Err(FrameError::NotADigit { byte: b' ' }));
        check(b"+1:a,", 10, Err(FrameError::NotADigit { byte: b'+' }));
    }

    #[test]
    fn refuses_a_missing_colon_as_soon_as_a_non_digit_arrives() {
        check(b"5hello,", 10, Err(FrameError::NotADigit { byte: b'h' }));
        check(b"5,", 10, Err(FrameError::NotADigit { byte: b',' }));
    }

    #[test]
    fn refuses_a_missing_or_wrong_terminator() {
        check(b"1:ab", 10, Err(FrameError::MissingComma { byte: b'b' }));
        check(b"1:a;", 10, Err(FrameError::MissingComma { byte: b';' }));
        check(b"0:x", 10, Err(FrameError::MissingComma { byte: b'x' }));
    }

    #[test]
    fn refuses_over_long_frames_from_the_length_alone() {
        check(b"11", 10, Err(FrameError::TooLong { max_len: 10 }));
        check(b"11:", 10, Err(FrameError::TooLong { max_len: 10 }));
        check(b"10001", DEFAULT_MAX_REQUEST_LEN, Err(FrameError::TooLong { max_len: DEFAULT_MAX_REQUEST_LEN }));
        check(b"1000", DEFAULT_MAX_REQUEST_LEN, Err(FrameError::Incomplete));
        // Twenty-one digits overflow a u64; the bound is hit long before that.
        check(b"999999999999999999999:", usize::MAX, Err(FrameError::TooLong { max_len: usize::MAX }));
    }

    #[test]
    fn refuses_everything_but_the_empty_frame_when_the_maximum_is_zero() {
        check(b"0:,", 0, Ok((b"", 3)));
        check(b"1", 0, Err(FrameError::TooLong { max_len: 0 }));
    }

    #[test]
    fn encodes_length_prefix_and_comma() {
        let mut out = Vec::new();
        encode_frame(b"", &mut out);
        encode_frame(b"OK a,b", &mut out);
        assert_eq!(out, b"0:,6:OK a,b,");
    }

    #[test]
    fn decoder_yields_pipelined_frames_in_order() {
        let mut decoder = FrameDecoder::new(100);
        decoder.extend(b"1:a,2:bc,0:,");
        assert_eq!(decoder.next_frame(), Ok(Some(b"a".to_vec())));
        assert_eq!(decoder.buffered_len(), 8);
        assert_eq!(decoder.next_frame(), Ok(Some(b"bc".to_vec())));
        assert_eq!(decoder.next_frame(), Ok(Some(Vec::new())));
        assert_eq!(decoder.next_frame(), Ok(None));
        assert!(decoder.is_empty());
    }

    #[test]
    fn decoder_keeps_reporting_the_same_error() {
        let mut decoder = FrameDecoder::new(100);
        decoder.extend(b"1:a,1:bX");
        assert_eq!(decoder.next_frame(), Ok(Some(b"a".to_vec())));
        assert_eq!(decoder.next_frame(), Err(FrameError::MissingComma { byte: b'X' }));
        decoder.extend(b"1:c,");
        assert_eq!(decoder.next_frame(), Err(FrameError::MissingComma { byte: b'X' }));
    }

    #[test]
    fn decoder_assembles_a_frame_fed_byte_by_byte() {
        let mut decoder = FrameDecoder::new(100);
        let wire = b"11:mailboxes a,";
        for &byte in &wire[..wire.len() - 1] {
            decoder.extend(&[byte]);
            assert_eq!(decoder.next_frame(), Ok(None));
            assert!(!decoder.is_empty());
        }
        decoder.extend(b",");
        assert_eq!(decoder.next_frame(), Ok(Some(b"mailboxes a".to_vec())));
        assert!(decoder.is_empty());
    }

    proptest! {
        #[test]
        fn parse_inverts_encode(payload in proptest::collection::vec(any::<u8>(), 0..300), tail in proptest::collection::vec(any::<u8>(), 0..20)) {
            let mut wire = Vec::new();
            encode_frame(&payload, &mut wire);
            let frame_len = wire.len();
            wire.extend_from_slice(&tail);
            prop_assert_eq!(parse_frame(&wire, 300), Ok((&payload[..], frame_len)));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), max_len in 0usize..2000) {
            if let Ok((payload, n_used)) = parse_frame(&bytes, max_len) {
                prop_assert!(payload.len() <= max_len);
                prop_assert!(n_used <= bytes.len());
            }
        }

        #[test]
        fn parse_never_panics_on_digit_heavy_input(bytes in "[0-9:,]{0,40}", max_len in any::<usize>()) {
            let _ = parse_frame(bytes.as_bytes(), max_len);
        }

        #[test]
        fn decoder_output_does_not_depend_on_how_bytes_are_split(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
            cuts in proptest::collection::vec(1usize..16, 0..40),
        ) {
            let mut wire = Vec::new();
            for payload in &payloads {
                encode_frame(payload, &mut wire);
            }
            let mut decoder = FrameDecoder::new(40);
            let mut decoded = Vec::new();
            let mut rest = &wire[..];
            let mut cuts = cuts.into_iter();
            while !rest.is_empty() {
                let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
                decoder.extend(&rest[..n]);
                rest = &rest[n..];
                while let Some(payload) = decoder.next_frame().unwrap() {
                    decoded.push(payload);
                }
            }
            prop_assert_eq!(decoded, payloads);
            prop_assert!(decoder.is_empty());
        }
    }
}
