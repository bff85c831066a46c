//! Properties of the codec over arbitrary input: escaping round trips, and parsers never panic.

use couchmail_dovecot_dict::line::{check_line, escape, join_fields_into, split_fields, unescape};
use couchmail_dovecot_dict::{Reply, Request, SieveKey, dict_escape, dict_unescape};
use proptest::prelude::*;

proptest! {
    #[test]
    fn escape_then_unescape_is_identity(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
        let escaped = escape(&raw);
        prop_assert!(!escaped.iter().any(|byte| matches!(byte, b'\t' | b'\n' | b'\r')));
        prop_assert_eq!(unescape(&escaped), raw);
    }

    #[test]
    fn joined_fields_split_back(fields in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 2..6)) {
        let mut line = Vec::new();
        join_fields_into(&fields, &mut line);
        prop_assert!(!line.contains(&b'\n'));
        prop_assert_eq!(split_fields(&line), fields);
    }

    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Request::parse(&bytes);
        let _ = Reply::parse_lookup(&bytes);
        let _ = Reply::parse_iterate(&bytes);
        let _ = Reply::parse_commit(&bytes);
        let _ = unescape(&bytes);
        let _ = check_line(&bytes, 64);
    }

    #[test]
    fn lines_that_start_with_a_command_byte_parse_and_round_trip(
        command in proptest::sample::select(b"HLIBCDRSUAT".to_vec()),
        rest in proptest::collection::vec(prop_oneof![Just(b'\t'), Just(0x01u8), b'0'..=b'9', any::<u8>()], 0..128),
    ) {
        let mut line = vec![command];
        line.extend(rest);
        // What parses re-encodes to a line that parses back to the same request (the fuzz target checks this too).
        if let Ok(request) = Request::parse(&line) {
            let encoded = request.encode();
            prop_assert_eq!(Request::parse(&encoded[..encoded.len() - 1]), Ok(request));
        }
    }

    #[test]
    fn lookups_round_trip_for_any_text(key in any::<String>(), user in any::<String>()) {
        let request = Request::Lookup { key, user };
        let line = request.encode();
        prop_assert_eq!(line.iter().filter(|&&byte| byte == b'\n').count(), 1);
        prop_assert_eq!(Request::parse(&line[..line.len() - 1]), Ok(request));
    }

    #[test]
    fn values_round_trip_through_replies(value in any::<String>()) {
        let reply = Reply::Value(value);
        let line = reply.encode();
        prop_assert_eq!(Reply::parse_lookup(&line[..line.len() - 1]), Ok(reply));
    }

    #[test]
    fn sieve_keys_round_trip(name in "[^\u{0}]{1,40}") {
        prop_assert_eq!(dict_unescape(&dict_escape(&name)), name.clone());
        let key = SieveKey::Name(name);
        prop_assert_eq!(SieveKey::parse(&key.to_key()), Some(key));
    }
}
