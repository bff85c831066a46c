//! The wire unit of the dict protocol: one LF-terminated line of TAB-separated, tab-escaped fields.
//!
//! Dovecot escapes with `\x01` as the escape byte (`src/lib/strescape.c`, `str_append_tabescaped`):
//! `\x01` → `\x01` `1`, TAB → `\x01` `t`, CR → `\x01` `r`, LF → `\x01` `n`.
//! Its unescaper also turns `\x01` `0` into NUL, writes any other escaped byte as itself,
//! and drops a lone `\x01` at the end of a field; [`unescape`] does the same.
//! A line is split on TAB first and each field is unescaped afterwards (`t_strsplit_tabescaped`),
//! so an escaped TAB never splits a field.

use std::fmt;

/// The escape byte of Dovecot's tab-escaping.
pub const ESCAPE_BYTE: u8 = 0x01;

/// The longest request line accepted by default, without its LF.
///
/// Dovecot's own dict server reads at most `DICT_CLIENT_MAX_LINE_LENGTH` (64 KiB) per line.
pub const DEFAULT_MAX_LINE_LENGTH: usize = 64 * 1024;

/// Why [`check_line`] could not return a complete line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// No LF yet: more bytes are needed before the line can be parsed.
    Incomplete,
    /// No LF within the first `limit` bytes: the peer sent a line longer than allowed.
    TooLong {
        /// The limit that was exceeded, in bytes without the LF.
        limit: usize,
    },
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::Incomplete => f.write_str("incomplete line"),
            LineError::TooLong { limit } => write!(f, "line longer than {limit} bytes"),
        }
    }
}

impl std::error::Error for LineError {}

/// Finds the first complete line in `buffer`.
///
/// Returns `(content_len, consumed)`: the line's content is `buffer[..content_len]`
/// (without the LF, and without one CR before it, which Dovecot never sends but a person typing might),
/// and `consumed` bytes (content plus terminator) should be dropped from the buffer.
pub fn check_line(buffer: &[u8], max_line_length: usize) -> Result<(usize, usize), LineError> {
    // Only the first `max_line_length + 1` bytes can hold an acceptable line's LF.
    let search_len = buffer.len().min(max_line_length.saturating_add(1));
    match buffer[..search_len].iter().position(|&byte| byte == b'\n') {
        Some(lf_idx) => {
            let content_len = if lf_idx > 0 && buffer[lf_idx - 1] == b'\r' { lf_idx - 1 } else { lf_idx };
            Ok((content_len, lf_idx + 1))
        }
        None if buffer.len() > max_line_length => Err(LineError::TooLong { limit: max_line_length }),
        None => Err(LineError::Incomplete),
    }
}

/// Appends `raw` to `out` with Dovecot's tab-escaping applied.
pub fn escape_into(raw: &[u8], out: &mut Vec<u8>) {
    out.reserve(raw.len());
    for &byte in raw {
        match byte {
            ESCAPE_BYTE => out.extend_from_slice(&[ESCAPE_BYTE, b'1']),
            b'\t' => out.extend_from_slice(&[ESCAPE_BYTE, b't']),
            b'\r' => out.extend_from_slice(&[ESCAPE_BYTE, b'r']),
            b'\n' => out.extend_from_slice(&[ESCAPE_BYTE, b'n']),
            other => out.push(other),
        }
    }
}

/// Returns `raw` with Dovecot's tab-escaping applied.
pub fn escape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    escape_into(raw, &mut out);
    out
}

/// Reverses [`escape`], accepting everything Dovecot's unescaper accepts.
pub fn unescape(escaped: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(escaped.len());
    let mut bytes = escaped.iter();
    while let Some(&byte) = bytes.next() {
        if byte != ESCAPE_BYTE {
            out.push(byte);
            continue;
        }
        match bytes.next() {
            // A lone escape byte at the end is truncated input; Dovecot drops it.
            None => break,
            Some(b'0') => out.push(0),
            Some(b'1') => out.push(ESCAPE_BYTE),
            Some(b't') => out.push(b'\t'),
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(&other) => out.push(other),
        }
    }
    out
}

/// Splits a line's content on TAB and unescapes each field.
///
/// An empty line has no fields, as in Dovecot's `t_strsplit_tabescaped`.
pub fn split_fields(line: &[u8]) -> Vec<Vec<u8>> {
    if line.is_empty() {
        return Vec::new();
    }
    line.split(|&byte| byte == b'\t').map(unescape).collect()
}

/// Joins fields with TAB, escaping each one, and appends the result to `out` (without an LF).
pub fn join_fields_into<F: AsRef<[u8]>>(fields: &[F], out: &mut Vec<u8>) {
    for (field_idx, field) in fields.iter().enumerate() {
        if field_idx > 0 {
            out.push(b'\t');
        }
        escape_into(field.as_ref(), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_exactly_dovecots_four_bytes() {
        assert_eq!(escape(b"a\x01b\tc\rd\ne"), b"a\x011b\x01tc\x01rd\x01ne".to_vec());
        assert_eq!(escape(b"plain \\ / text"), b"plain \\ / text".to_vec());
        assert_eq!(escape(b""), b"".to_vec());
    }

    #[test]
    fn unescape_follows_dovecot_for_odd_input() {
        assert_eq!(unescape(b"\x010"), vec![0]);
        assert_eq!(unescape(b"x\x01zy"), b"xzy".to_vec());
        assert_eq!(unescape(b"trailing\x01"), b"trailing".to_vec());
        assert_eq!(unescape(b"\x01\x01"), vec![0x01]);
    }

    #[test]
    fn split_unescapes_after_splitting() {
        assert_eq!(split_fields(b"Lkey\x01twith tab\talice"), vec![b"Lkey\twith tab".to_vec(), b"alice".to_vec()]);
        assert_eq!(split_fields(b""), Vec::<Vec<u8>>::new());
        assert_eq!(split_fields(b"\t"), vec![Vec::new(), Vec::new()]);
    }

    #[test]
    fn join_and_split_are_inverse() {
        let fields: Vec<&[u8]> = vec![b"O\tkey", b"value\nwith\x01lines", b""];
        let mut line = Vec::new();
        join_fields_into(&fields, &mut line);
        assert!(!line.contains(&b'\n'));
        assert_eq!(split_fields(&line), fields.iter().map(|field| field.to_vec()).collect::<Vec<_>>());
    }

    #[test]
    fn check_line_finds_lines_and_limits() {
        assert_eq!(check_line(b"abc", 10), Err(LineError::Incomplete));
        assert_eq!(check_line(b"abc\nrest", 10), Ok((3, 4)));
        assert_eq!(check_line(b"abc\r\n", 10), Ok((3, 5)));
        assert_eq!(check_line(b"\n", 10), Ok((0, 1)));
        // Exactly the limit is fine; one byte more without an LF is not.
        assert_eq!(check_line(b"0123456789\n", 10), Ok((10, 11)));
        assert_eq!(check_line(b"0123456789", 10), Err(LineError::Incomplete));
        assert_eq!(check_line(b"01234567890", 10), Err(LineError::TooLong { limit: 10 }));
        assert_eq!(check_line(b"01234567890\n", 10), Err(LineError::TooLong { limit: 10 }));
    }
}
