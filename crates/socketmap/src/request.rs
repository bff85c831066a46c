//! Requests (`NAME KEY`) and the [`Lookup`] trait that answers them.
//!
//! The socketmap protocol has a single request, a lookup (socketmap_table(5), REQUEST FORMAT).
//! [`Request::answer`] holds the whole per-request policy, so that the server loop only moves bytes: keys that no
//! map can hold get `NOTFOUND ` without asking the [`Lookup`], a panicking lookup gets `TEMP`, and a reply too
//! large for Postfix gets `TEMP` with a log line naming the key.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use tracing::{error, warn};

use crate::frame::encode_frame;
use crate::reply::{REPLY_TOO_LARGE, Reply};

/// Answers lookups for the server: the narrow view a protocol handler has of couchmail's data.
///
/// The server calls [`Lookup::lookup`] on its async worker threads, once per request, and sends what it returns.
/// The crate knows no map names; the implementation decides which maps exist.
///
/// Contract for implementations:
/// - Answer from memory and return quickly: the call must not block or wait on a store (it runs inline on the
///   runtime, and Postfix waits for the reply while it holds an SMTP session open).
/// - Return [`Reply::Temp`] while the data is not ready (before the first index snapshot), so Postfix defers
///   instead of rejecting mail for addresses that do exist.
/// - Never return [`Reply::Perm`] for data: a missing key is [`Reply::NotFound`], a failure is `TEMP`.
///   `PERM` is only for a request that is wrong in itself, such as an unknown map name.
/// - `map` and `key` are never empty and are valid UTF-8; the key arrives as Postfix sent it (Postfix lower-cases
///   keys for tables that ask for it, but an implementation should not rely on that).
/// - A panic is contained: the server answers `TEMP internal error`, logs it, and keeps serving.
///
/// ```
/// use couchmail_socketmap::{Lookup, Reply};
///
/// struct Domains;
///
/// impl Lookup for Domains {
///     fn lookup(&self, map: &str, key: &str) -> Reply {
///         match (map, key) {
///             ("domains", "example.com") => Reply::ok("example.com"),
///             ("domains", _) => Reply::NotFound,
///             _ => Reply::perm(format!("unknown map {map}")),
///         }
///     }
/// }
/// ```
pub trait Lookup: Send + Sync + 'static {
    /// Looks `key` up in the map called `map`.
    fn lookup(&self, map: &str, key: &str) -> Reply;
}

/// One lookup request: the map name and the key, split at the first space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The map name, the last field of Postfix's `socketmap:unix:PATH:NAME`; never empty, never contains a space.
    pub map: &'a [u8],
    /// The key: arbitrary bytes, possibly empty, possibly containing spaces.
    pub key: &'a [u8],
}

impl<'a> Request<'a> {
    /// Reads a request from a netstring payload.
    ///
    /// ```
    /// use couchmail_socketmap::{Request, RequestError};
    ///
    /// let request = Request::parse(b"aliases info@example.com").unwrap();
    /// assert_eq!(request.map, b"aliases");
    /// assert_eq!(request.key, b"info@example.com");
    /// assert_eq!(Request::parse(b"aliases"), Err(RequestError::MissingSpace));
    /// ```
    pub fn parse(payload: &'a [u8]) -> Result<Request<'a>, RequestError> {
        let space_idx = payload.iter().position(|&byte| byte == b' ').ok_or(RequestError::MissingSpace)?;
        if space_idx == 0 {
            return Err(RequestError::EmptyMapName);
        }
        Ok(Request { map: &payload[..space_idx], key: &payload[space_idx + 1..] })
    }

    /// Appends this request to `out` as one netstring.
    ///
    /// The caller makes sure `map` is non-empty and has no space; otherwise the server reads a different request.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut payload = Vec::with_capacity(self.map.len() + 1 + self.key.len());
        payload.extend_from_slice(self.map);
        payload.push(b' ');
        payload.extend_from_slice(self.key);
        encode_frame(&payload, out);
    }

    /// Answers this request with `lookup`, keeping every promise the server makes to Postfix.
    ///
    /// - A key or map name that is not UTF-8, or an empty key, gets `NOTFOUND `: couchmail holds only UTF-8 names
    ///   and addresses and no empty key, so no map can contain it, and it is not worth an error.
    /// - A panic inside `lookup` gets `TEMP internal error` and a log line at error level.
    /// - A reply over [`MAX_REPLY_LEN`](crate::MAX_REPLY_LEN) gets `TEMP reply too large` and a log line naming
    ///   the key, because Postfix would refuse it.
    pub fn answer(&self, lookup: &dyn Lookup) -> Reply {
        let (Ok(map), Ok(key)) = (std::str::from_utf8(self.map), std::str::from_utf8(self.key)) else {
            return Reply::NotFound;
        };
        if key.is_empty() {
            return Reply::NotFound;
        }
        let reply = match catch_unwind(AssertUnwindSafe(|| lookup.lookup(map, key))) {
            Ok(reply) => reply,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("non-string panic payload");
                error!(map, key, panic = message, "socketmap lookup panicked; answering TEMP");
                return Reply::temp("internal error");
            }
        };
        if !reply.fits() {
            warn!(map, key, payload_len = reply.payload_len(), "socketmap reply too large for postfix; answering TEMP");
            return Reply::temp(REPLY_TOO_LARGE);
        }
        reply
    }
}

impl fmt::Display for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", String::from_utf8_lossy(self.map), String::from_utf8_lossy(self.key))
    }
}

/// Why a well-framed payload is not a request.
///
/// Framing is intact after these, so the server answers `PERM` and keeps the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// No space separates the map name from the key.
    MissingSpace,
    /// The payload starts with a space, so the map name is empty.
    EmptyMapName,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequestError::MissingSpace => "request has no space between map name and key",
            RequestError::EmptyMapName => "request has an empty map name",
        })
    }
}

impl std::error::Error for RequestError {}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::frame::{MAX_REPLY_LEN, parse_frame};

    /// Echoes the key from map `echo`, and misbehaves on request.
    struct FakeLookup;

    impl Lookup for FakeLookup {
        fn lookup(&self, map: &str, key: &str) -> Reply {
            match (map, key) {
                ("echo", "panic") => panic!("asked to panic"),
                ("echo", "huge") => Reply::ok("x".repeat(MAX_REPLY_LEN)),
                ("echo", key) => Reply::ok(key),
                _ => Reply::perm("unknown map"),
            }
        }
    }

    #[test]
    fn splits_at_the_first_space() {
        let request = Request::parse(b"map key with spaces").unwrap();
        assert_eq!(request, Request { map: b"map", key: b"key with spaces" });
        assert_eq!(Request::parse(b"map "), Ok(Request { map: b"map", key: b"" }));
        assert_eq!(Request::parse(b" key"), Err(RequestError::EmptyMapName));
        assert_eq!(Request::parse(b""), Err(RequestError::MissingSpace));
        assert_eq!(Request::parse(b"mapkey"), Err(RequestError::MissingSpace));
    }

    #[test]
    fn answers_through_the_lookup() {
        let answer = |payload: &[u8]| Request::parse(payload).unwrap().answer(&FakeLookup);
        assert_eq!(answer(b"echo alice@example.com"), Reply::ok("alice@example.com"));
        assert_eq!(answer(b"other alice@example.com"), Reply::perm("unknown map"));
    }

    #[test]
    fn answers_not_found_for_keys_no_map_can_hold() {
        let answer = |payload: &[u8]| Request::parse(payload).unwrap().answer(&FakeLookup);
        assert_eq!(answer(b"echo \xff\xfe"), Reply::NotFound);
        assert_eq!(answer(b"ech\xc3 key"), Reply::NotFound);
        assert_eq!(answer(b"echo "), Reply::NotFound);
    }

    #[test]
    fn contains_panics_and_over_large_replies() {
        let answer = |payload: &[u8]| Request::parse(payload).unwrap().answer(&FakeLookup);
        assert_eq!(answer(b"echo panic"), Reply::temp("internal error"));
        assert_eq!(answer(b"echo huge"), Reply::temp("reply too large"));
    }

    proptest! {
        #[test]
        fn parse_inverts_encode(map in "[^ ]{1,20}", key in proptest::collection::vec(any::<u8>(), 0..40)) {
            let request = Request { map: map.as_bytes(), key: &key };
            let mut wire = Vec::new();
            request.encode(&mut wire);
            let (payload, n_used) = parse_frame(&wire, 100).unwrap();
            prop_assert_eq!(n_used, wire.len());
            prop_assert_eq!(Request::parse(payload), Ok(request));
        }

        #[test]
        fn parse_and_answer_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(request) = Request::parse(&payload) {
                prop_assert!(!request.map.is_empty());
                let _ = request.answer(&FakeLookup);
            }
        }
    }
}
