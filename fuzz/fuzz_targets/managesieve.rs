//! Fuzz target: arbitrary bytes through the ManageSieve command decoder, as one buffer and as a stream in pieces.
//!
//! Nothing may panic; the decoder must yield the same items however the input is split; every command has a name
//! and at most the words a line may hold, no string is larger than the literal limit; and every string decoded,
//! encoded again as the server encodes strings, decodes to itself.
#![no_main]

use couchmail_managesieve::{CommandDecoder, Decoded, Limits, Word, encode_string};
use libfuzzer_sys::fuzz_target;

/// Small limits, so that the over-long and over-large paths are reached with short inputs.
const LIMITS: Limits = Limits { max_line_len: 64, max_literal_len: 32 };

fn decode(data: &[u8], piece_len_from: Option<&[u8]>) -> Vec<Decoded> {
    let mut decoder = CommandDecoder::new(LIMITS);
    let mut items = Vec::new();
    match piece_len_from {
        None => {
            decoder.extend(data);
            while let Some(item) = decoder.next_item() {
                items.push(item);
            }
        }
        Some(sizes) => {
            let mut remaining = data;
            let mut piece_idx = 0;
            while !remaining.is_empty() {
                let piece_len = (usize::from(sizes[piece_idx % sizes.len()]) % 7 + 1).min(remaining.len());
                piece_idx += 1;
                decoder.extend(&remaining[..piece_len]);
                remaining = &remaining[piece_len..];
                while let Some(item) = decoder.next_item() {
                    items.push(item);
                }
            }
        }
    }
    items
}

fuzz_target!(|data: &[u8]| {
    let whole = decode(data, None);
    if !data.is_empty() {
        assert_eq!(decode(data, Some(data)), whole, "splitting the input changed what was decoded");
    }
    for item in &whole {
        let Decoded::Command(command) = item else { continue };
        assert!(!command.words.is_empty() && command.words.len() <= 16);
        for word in &command.words {
            let Word::String(bytes) = word else { continue };
            assert!(bytes.len() <= LIMITS.max_literal_len.max(1024));
            // Round trip through the server's own string encoding (a literal when quoting cannot carry it).
            let mut line = b"NOOP ".to_vec();
            encode_string(&mut line, bytes);
            line.extend_from_slice(b"\r\n");
            let mut decoder = CommandDecoder::new(Limits { max_line_len: 4096, max_literal_len: 4096 });
            decoder.extend(&line);
            match decoder.next_item() {
                Some(Decoded::Command(again)) => assert_eq!(again.words.get(1), Some(word)),
                other => panic!("an encoded string did not decode: {other:?}"),
            }
        }
    }
});
