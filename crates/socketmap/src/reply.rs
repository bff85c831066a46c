//! Replies: `OK <data>`, `NOTFOUND `, `TEMP <reason>`, `TIMEOUT <reason>` and `PERM <reason>`.
//!
//! Each reply is one netstring whose payload is a status word, a space and the data or reason
//! (socketmap_table(5), REPLY FORMAT).
//! Postfix refuses a reply longer than [`MAX_REPLY_LEN`] bytes, so [`Reply::encode`] never produces one.

use std::fmt;

use crate::frame::{MAX_REPLY_LEN, encode_frame};

/// The reason sent in place of a reply that would exceed [`MAX_REPLY_LEN`].
pub(crate) const REPLY_TOO_LARGE: &str = "reply too large";

/// One socketmap reply.
///
/// What each status makes Postfix do: `OK` is a hit, `NOTFOUND` a miss, `TEMP` and `TIMEOUT` a lookup error that
/// defers the mail (a 4xx reply, never a bounce), `PERM` a configuration error (Postfix also defers on table errors,
/// but logs it as a permanent fault and an operator must act).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `OK <data>`: the key was found, with this value.
    Ok(String),
    /// `NOTFOUND `: the key is not in the map (the space is part of the protocol).
    NotFound,
    /// `TEMP <reason>`: the lookup failed for now; Postfix will try again later.
    Temp(String),
    /// `TIMEOUT <reason>`: the lookup timed out; Postfix treats it like `TEMP`.
    Timeout(String),
    /// `PERM <reason>`: the request itself is wrong (an unknown map, a malformed request), never an answer about data.
    Perm(String),
}

impl Reply {
    /// `OK <data>`.
    pub fn ok(data: impl Into<String>) -> Reply {
        Reply::Ok(data.into())
    }

    /// `TEMP <reason>`.
    pub fn temp(reason: impl Into<String>) -> Reply {
        Reply::Temp(reason.into())
    }

    /// `TIMEOUT <reason>`.
    pub fn timeout(reason: impl Into<String>) -> Reply {
        Reply::Timeout(reason.into())
    }

    /// `PERM <reason>`.
    pub fn perm(reason: impl Into<String>) -> Reply {
        Reply::Perm(reason.into())
    }

    /// The status word on the wire: `OK`, `NOTFOUND`, `TEMP`, `TIMEOUT` or `PERM`.
    pub fn status(&self) -> &'static str {
        match self {
            Reply::Ok(_) => "OK",
            Reply::NotFound => "NOTFOUND",
            Reply::Temp(_) => "TEMP",
            Reply::Timeout(_) => "TIMEOUT",
            Reply::Perm(_) => "PERM",
        }
    }

    /// The data of `OK`, or the reason of `TEMP`, `TIMEOUT` and `PERM`; empty for `NOTFOUND`.
    pub fn text(&self) -> &str {
        match self {
            Reply::Ok(text) | Reply::Temp(text) | Reply::Timeout(text) | Reply::Perm(text) => text,
            Reply::NotFound => "",
        }
    }

    /// The length of the payload (status, space, text), which Postfix limits to [`MAX_REPLY_LEN`].
    pub fn payload_len(&self) -> usize {
        self.status().len() + 1 + self.text().len()
    }

    /// Whether Postfix would accept this reply's size.
    pub fn fits(&self) -> bool {
        self.payload_len() <= MAX_REPLY_LEN
    }

    /// Appends this reply to `out` as one netstring.
    ///
    /// A reply that does not [`fit`](Reply::fits) is replaced by `TEMP reply too large`: Postfix would drop the
    /// connection on it and log an error anyway, and a temporary failure defers the mail instead of losing it.
    /// The server logs the key that produced it before it gets here.
    pub fn encode(&self, out: &mut Vec<u8>) {
        if !self.fits() {
            return Reply::temp(REPLY_TOO_LARGE).encode(out);
        }
        let mut payload = Vec::with_capacity(self.payload_len());
        payload.extend_from_slice(self.status().as_bytes());
        payload.push(b' ');
        payload.extend_from_slice(self.text().as_bytes());
        encode_frame(&payload, out);
    }

    /// Reads a reply from a netstring payload, as a client does.
    ///
    /// Postfix only ever reads the status word and, for `OK`, the data; text after `NOTFOUND ` is ignored the same
    /// way here.
    pub fn parse(payload: &[u8]) -> Result<Reply, ReplyError> {
        let space_idx = payload.iter().position(|&byte| byte == b' ').ok_or(ReplyError::MissingSpace)?;
        let (status, text) = (&payload[..space_idx], &payload[space_idx + 1..]);
        let text = || String::from_utf8(text.to_vec()).map_err(|_| ReplyError::NotUtf8);
        match status {
            b"OK" => Ok(Reply::Ok(text()?)),
            b"NOTFOUND" => Ok(Reply::NotFound),
            b"TEMP" => Ok(Reply::Temp(text()?)),
            b"TIMEOUT" => Ok(Reply::Timeout(text()?)),
            b"PERM" => Ok(Reply::Perm(text()?)),
            _ => Err(ReplyError::UnknownStatus),
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.text())
    }
}

/// Why a reply payload could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyError {
    /// No space separates the status from the text.
    MissingSpace,
    /// The status word is none of `OK`, `NOTFOUND`, `TEMP`, `TIMEOUT`, `PERM`.
    UnknownStatus,
    /// The data or reason is not UTF-8, which no couchmail server sends.
    NotUtf8,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplyError::MissingSpace => "reply has no space after its status",
            ReplyError::UnknownStatus => "reply has an unknown status",
            ReplyError::NotUtf8 => "reply text is not utf-8",
        })
    }
}

impl std::error::Error for ReplyError {}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::frame::parse_frame;

    fn wire(reply: &Reply) -> Vec<u8> {
        let mut out = Vec::new();
        reply.encode(&mut out);
        out
    }

    #[test]
    fn encodes_every_status() {
        assert_eq!(wire(&Reply::ok("alice@example.com")), b"20:OK alice@example.com,");
        assert_eq!(wire(&Reply::NotFound), b"9:NOTFOUND ,");
        assert_eq!(wire(&Reply::temp("index not ready")), b"20:TEMP index not ready,");
        assert_eq!(wire(&Reply::timeout("slow")), b"12:TIMEOUT slow,");
        assert_eq!(wire(&Reply::perm("unknown map")), b"16:PERM unknown map,");
        assert_eq!(wire(&Reply::ok("")), b"3:OK ,");
    }

    #[test]
    fn replaces_a_reply_postfix_would_refuse() {
        let largest = Reply::ok("x".repeat(MAX_REPLY_LEN - 3));
        assert!(largest.fits());
        assert_eq!(wire(&largest).len(), MAX_REPLY_LEN + "100000:,".len());

        let too_large = Reply::ok("x".repeat(MAX_REPLY_LEN - 2));
        assert!(!too_large.fits());
        assert_eq!(wire(&too_large), b"20:TEMP reply too large,");
    }

    #[test]
    fn parses_what_postfix_would_read() {
        assert_eq!(Reply::parse(b"OK a,b"), Ok(Reply::ok("a,b")));
        assert_eq!(Reply::parse(b"OK "), Ok(Reply::ok("")));
        assert_eq!(Reply::parse(b"NOTFOUND "), Ok(Reply::NotFound));
        assert_eq!(Reply::parse(b"NOTFOUND ignored"), Ok(Reply::NotFound));
        assert_eq!(Reply::parse(b"TEMP x y"), Ok(Reply::temp("x y")));
        assert_eq!(Reply::parse(b"NOTFOUND"), Err(ReplyError::MissingSpace));
        assert_eq!(Reply::parse(b"ok x"), Err(ReplyError::UnknownStatus));
        assert_eq!(Reply::parse(b""), Err(ReplyError::MissingSpace));
        assert_eq!(Reply::parse(b"OK \xff"), Err(ReplyError::NotUtf8));
    }

    fn any_reply() -> impl Strategy<Value = Reply> {
        let text = ".{0,40}";
        prop_oneof![
            text.prop_map(Reply::Ok),
            Just(Reply::NotFound),
            text.prop_map(Reply::Temp),
            text.prop_map(Reply::Timeout),
            text.prop_map(Reply::Perm),
        ]
    }

    proptest! {
        #[test]
        fn parse_inverts_encode(reply in any_reply()) {
            let wire = wire(&reply);
            let (payload, n_used) = parse_frame(&wire, MAX_REPLY_LEN).unwrap();
            prop_assert_eq!(n_used, wire.len());
            prop_assert_eq!(payload.len(), reply.payload_len());
            prop_assert_eq!(Reply::parse(payload), Ok(reply));
        }

        #[test]
        fn parse_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Reply::parse(&payload);
        }
    }
}
