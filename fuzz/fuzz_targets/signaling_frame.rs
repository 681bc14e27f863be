//! `carillon_signaling::decode_frame` on arbitrary WebSocket messages.
//!
//! Beyond "never panics": a frame that decodes re-encodes (with `encode_frame`) to bytes that
//! decode to the same frame.

#![no_main]

use carillon_signaling::{MAX_FRAME_LEN, decode_frame, encode_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = decode_frame(data) else {
        return;
    };
    let bytes = encode_frame(&frame);
    // Packed repeated fields re-encode unpacked, so a frame near the limit can outgrow it.
    if bytes.len() <= MAX_FRAME_LEN {
        assert_eq!(
            decode_frame(&bytes).as_ref(),
            Ok(&frame),
            "round trip of {data:?}"
        );
    }
});
