//! Fuzz target: arbitrary bytes through the policy codec (attribute lists, requests, actions), as one buffer and as a stream cut into pieces.
//!
//! Nothing may panic; every list found must respect the limits and encode back to a list that parses the same;
//! every request built from a list must round-trip through its attributes; the decoder must yield the same lists
//! however the input is split; and any action text, once written, must read back to the same bytes.
#![no_main]

use couchmail_postfix_policy::{Action, Attributes, AttributesDecoder, Limits, PolicyRequest, parse_attributes};
use libfuzzer_sys::fuzz_target;

/// Small limits as well as the defaults, so that every refusal is reached with short inputs.
const SMALL: Limits = Limits { max_line_len: 24, max_attributes: 4, max_list_len: 64 };

/// No limits, for reading back what we encoded: a value that was not UTF-8 grows when its bytes become U+FFFD.
const UNLIMITED: Limits = Limits { max_line_len: usize::MAX, max_attributes: usize::MAX, max_list_len: usize::MAX };

fuzz_target!(|data: &[u8]| {
    for limits in [SMALL, Limits::default()] {
        // The whole input parsed list after list, as a server reads a pipelined buffer.
        let mut lists = Vec::new();
        let mut rest = data;
        while let Ok((attributes, n_used)) = parse_attributes(rest, &limits) {
            assert!(n_used > 0 && n_used <= limits.max_list_len && n_used <= rest.len());
            assert!(attributes.len() <= limits.max_attributes);
            check_list(&attributes);
            lists.push(attributes);
            rest = &rest[n_used..];
        }

        // The same input fed to the decoder in pieces whose sizes come from the input itself.
        let mut decoder = AttributesDecoder::new(limits);
        let mut decoded = Vec::new();
        let mut remaining = data;
        let mut piece_idx = 0;
        'feed: while !remaining.is_empty() {
            let piece_len = (usize::from(data[piece_idx % data.len()]) % 7 + 1).min(remaining.len());
            piece_idx += 1;
            decoder.extend(&remaining[..piece_len]);
            remaining = &remaining[piece_len..];
            loop {
                match decoder.next_list() {
                    Ok(Some(attributes)) => decoded.push(attributes),
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
            // A list in progress is refused as soon as it passes the limit, so no more than that is ever held.
            assert!(decoder.buffered_len() <= limits.max_list_len);
        }
        assert_eq!(decoded, lists);
    }

    // The input as action text, the way a handler's text reaches the wire.
    let text = String::from_utf8_lossy(data);
    let action = Action::parse(&text);
    let written = action.to_string();
    assert!(written.bytes().all(|byte| (b' '..=b'~').contains(&byte)), "{written:?}");
    assert_eq!(Action::parse(&written).to_string(), written);
    let mut reply = Vec::new();
    action.encode(&mut reply);
    let (attributes, n_used) = parse_attributes(&reply, &Limits::default()).expect("an encoded reply is a list");
    assert_eq!(n_used, reply.len());
    assert_eq!(attributes.get("action").map(Action::parse), Some(Action::parse(&written)));
});

/// A parsed list encodes back to bytes that parse to the same names and values, and, if it is a request, the
/// request survives a trip through its attributes.
fn check_list(attributes: &Attributes) {
    let mut rebuilt = Attributes::new();
    for attribute in attributes {
        rebuilt.push(attribute.name.as_str(), attribute.value.as_str()).expect("a parsed attribute can be sent");
    }
    let mut wire = Vec::new();
    rebuilt.encode(&mut wire);
    let (reparsed, n_used) = parse_attributes(&wire, &UNLIMITED).expect("an encoded list parses");
    assert_eq!(n_used, wire.len());
    assert_eq!(reparsed, rebuilt);

    if let Ok(request) = PolicyRequest::from_attributes(attributes.clone()) {
        let attributes = request.to_attributes().expect("a parsed request can be sent");
        let mut round_trip = PolicyRequest::from_attributes(attributes).expect("a sent request parses");
        // What was not UTF-8 on the wire is UTF-8 (with U+FFFD) once sent again.
        round_trip.lossy = request.lossy.clone();
        assert_eq!(round_trip, request);
    }
}
