//! Fuzz target: arbitrary bytes through the socketmap codec, as one buffer and as a stream cut into pieces.
//!
//! Nothing may panic; every frame found must respect the maximum and re-encode to the bytes it came from; every
//! request that parses must round-trip; and the decoder must yield the same frames however the input is split.
#![no_main]

use couchmail_socketmap::{DEFAULT_MAX_REQUEST_LEN, FrameDecoder, Reply, Request, encode_frame, parse_frame};
use libfuzzer_sys::fuzz_target;

/// A small maximum as well as the default, so that the over-long path is reached with short inputs.
const SMALL_MAX_LEN: usize = 16;

fuzz_target!(|data: &[u8]| {
    for max_len in [SMALL_MAX_LEN, DEFAULT_MAX_REQUEST_LEN] {
        // The whole input parsed frame after frame, as a server reads a pipelined buffer.
        let mut frames = Vec::new();
        let mut rest = data;
        while let Ok((payload, n_used)) = parse_frame(rest, max_len) {
            assert!(payload.len() <= max_len);
            let mut encoded = Vec::new();
            encode_frame(payload, &mut encoded);
            assert_eq!(&encoded[..], &rest[..n_used]);
            check_payload(payload);
            frames.push(payload.to_vec());
            rest = &rest[n_used..];
        }

        // The same input fed to the decoder in pieces whose sizes come from the input itself.
        let mut decoder = FrameDecoder::new(max_len);
        let mut decoded = Vec::new();
        let mut remaining = data;
        let mut piece_idx = 0;
        'feed: while !remaining.is_empty() {
            let piece_len = (usize::from(data[piece_idx % data.len()]) % 7 + 1).min(remaining.len());
            piece_idx += 1;
            decoder.extend(&remaining[..piece_len]);
            remaining = &remaining[piece_len..];
            loop {
                match decoder.next_frame() {
                    Ok(Some(payload)) => decoded.push(payload),
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
        }
        assert_eq!(decoded, frames);
    }
    // The whole input as one payload must not panic either.
    check_payload(data);
});

fn check_payload(payload: &[u8]) {
    if let Ok(request) = Request::parse(payload) {
        assert!(!request.map.is_empty());
        let mut encoded = Vec::new();
        request.encode(&mut encoded);
        let (round_trip, _) = parse_frame(&encoded, usize::MAX).expect("an encoded request is a frame");
        assert_eq!(Request::parse(round_trip), Ok(request));
    }
    if let Ok(reply) = Reply::parse(payload) {
        let mut encoded = Vec::new();
        reply.encode(&mut encoded);
        assert!(parse_frame(&encoded, couchmail_socketmap::MAX_REPLY_LEN).is_ok());
    }
}
