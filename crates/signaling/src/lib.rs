//! The Chime SDK signaling protocol, as spoken by the unmodified `amazon-chime-sdk-js` client.
//!
//! * [`proto`] holds the protobuf messages (`SdkSignalFrame` and every body), written by hand
//!   with prost derives from the public field table; no `protoc`/`prost-build` step.
//! * [`frame`] is the WebSocket codec plus short constructors for server→client frames.
//!
//! # Framing
//!
//! The client opens one WebSocket per session and exchanges **binary** messages only. Each
//! message is one prefix byte followed by exactly one encoded [`proto::SdkSignalFrame`]:
//!
//! ```text
//! +------+--------------------------------------+
//! | 0x05 | SdkSignalFrame (protobuf, proto2)    |
//! +------+--------------------------------------+
//! ```
//!
//! The client strips the first byte and accepts `0x05` or `0x02` (anything else is only
//! logged). The server always sends `0x05` ([`encode_frame`]) and accepts both on input
//! ([`decode_frame`]).
//!
//! # proto2 caveats
//!
//! * The protocol is proto2. `timestamp_ms` and `type` of the envelope are `required`, as are
//!   both fields of `SdkPingPongFrame` and `mid` of `SdkVideoSubscriptionConfiguration`. The JS
//!   client's decoder rejects a frame that lacks one, and so does [`decode_frame`] (prost by
//!   itself would silently default them).
//! * A frame the client cannot decode is **silently dropped**; that includes a frame whose
//!   `type` is not in its enum. So the server must never send a type outside
//!   [`FrameType`]: build frames with the typed constructors ([`proto::SdkSignalFrame::new`],
//!   [`proto::SdkSignalFrame::join_ack`], …), which cannot produce an unknown type.
//!   On input, an unknown type is reported as [`FrameError::UnknownFrameType`] so the caller can
//!   log and ignore it.
//! * Enum-typed fields inside bodies are raw `i32`s, so values added by newer clients (notably
//!   the ~100 metric types of `CLIENT_METRIC`) decode without error.
//! * Repeated scalars are encoded unpacked (proto2's default); decoding accepts both forms.
//! * Several server→client frames are useless without their body (a `JOIN_ACK` without
//!   `joinack`, an `INDEX` without `index` or a `SUBSCRIBE_ACK` without `suback` fail the
//!   client's join), which is another reason to use the constructors.

pub mod frame;
pub mod proto;

pub use frame::{
    FRAME_PREFIX, FrameError, LEGACY_FRAME_PREFIX, MAX_FRAME_LEN, TRANSCRIPTION_TOPIC,
    decode_frame, encode_frame,
};
pub use proto::sdk_signal_frame::Type as FrameType;
