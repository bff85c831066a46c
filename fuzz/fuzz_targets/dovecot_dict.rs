//! Fuzz target: arbitrary bytes through the dict server's line framing, request parser and reply parsers.
//!
//! Nothing may panic, and every request that parses must encode to a line that parses back to itself.
#![no_main]

use couchmail_dovecot_dict::line::{DEFAULT_MAX_LINE_LENGTH, check_line};
use couchmail_dovecot_dict::{Reply, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Frame the input as the server does, then parse each complete line.
    let mut rest = data;
    while let Ok((content_len, consumed)) = check_line(rest, DEFAULT_MAX_LINE_LENGTH) {
        let line = &rest[..content_len];
        if let Ok(request) = Request::parse(line) {
            let encoded = request.encode();
            assert_eq!(Request::parse(&encoded[..encoded.len() - 1]).as_ref(), Ok(&request));
        }
        let _ = Reply::parse_lookup(line);
        let _ = Reply::parse_iterate(line);
        let _ = Reply::parse_commit(line);
        rest = &rest[consumed..];
    }
    // The whole input as one line, LFs and all, must not panic either.
    let _ = Request::parse(data);
});
