//! The WebSocket frame codec and convenience constructors for server→client frames.
//!
//! Every binary WebSocket message is one prefix byte followed by one encoded
//! [`SdkSignalFrame`]. We always send [`FRAME_PREFIX`] (`0x05`) and accept `0x05` or
//! [`LEGACY_FRAME_PREFIX`] (`0x02`) on input, like the JS client does.

use prost::Message;

use crate::proto::sdk_notification_frame::NotificationLevel;
use crate::proto::sdk_signal_frame::Type;
use crate::proto::{
    SdkAudioAttendeeState, SdkAudioMetadataFrame, SdkAudioStatusFrame, SdkAudioStreamIdInfo,
    SdkAudioStreamIdInfoFrame, SdkBitrateFrame, SdkDataMessageFrame, SdkDataMessagePayload,
    SdkErrorFrame, SdkIndexFrame, SdkJoinAckFrame, SdkLeaveAckFrame, SdkNotificationFrame,
    SdkPauseResumeFrame, SdkPingPongFrame, SdkPingPongType, SdkPrimaryMeetingJoinAckFrame,
    SdkPrimaryMeetingLeaveFrame, SdkSignalFrame, SdkStreamDescriptor, SdkStreamMediaType,
    SdkSubscribeAckFrame,
};

/// The prefix byte of every message we send (the JS client's "RTC" frame type).
pub const FRAME_PREFIX: u8 = 0x05;

/// An older prefix byte that the JS client also accepts; we accept it on input too.
pub const LEGACY_FRAME_PREFIX: u8 = 0x02;

/// The largest WebSocket message (prefix byte included) that [`decode_frame`] accepts.
pub const MAX_FRAME_LEN: usize = 256 * 1024;

/// The data-message topic whose payloads carry an encoded
/// [`SdkTranscriptFrame`](crate::proto::SdkTranscriptFrame).
pub const TRANSCRIPTION_TOPIC: &str = "aws:chime:transcription";

/// Why a WebSocket message could not be turned into a [`SdkSignalFrame`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The message had no bytes at all.
    #[error("empty signaling message")]
    Empty,
    /// The message is longer than [`MAX_FRAME_LEN`].
    #[error("signaling message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Length of the rejected message, prefix included.
        len: usize,
        /// The limit, [`MAX_FRAME_LEN`].
        max: usize,
    },
    /// The first byte is neither `0x05` nor `0x02`.
    #[error("unknown signaling frame prefix byte {0:#04x}")]
    UnknownPrefix(u8),
    /// The bytes after the prefix are not a valid protobuf `SdkSignalFrame`.
    #[error(transparent)]
    Decode(#[from] prost::DecodeError),
    /// The protobuf parsed, but a proto2 `required` field is absent (named `Message.field`).
    #[error("required field {0} is missing")]
    MissingRequiredField(&'static str),
    /// The frame's `type` is not a value of [`Type`].
    #[error("unknown signaling frame type {0}")]
    UnknownFrameType(i32),
}

/// Encodes `frame` as one WebSocket binary message: [`FRAME_PREFIX`] followed by the protobuf.
pub fn encode_frame(frame: &SdkSignalFrame) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + frame.encoded_len());
    out.push(FRAME_PREFIX);
    // A `Vec<u8>` grows on demand (it reports `isize::MAX - len` bytes of room), so encoding
    // into it cannot run out of capacity.
    if let Err(err) = frame.encode(&mut out) {
        unreachable!("encoding into a Vec cannot fail: {err}");
    }
    out
}

/// Decodes one WebSocket binary message into a [`SdkSignalFrame`].
///
/// Checks, in order: the message is not empty and at most [`MAX_FRAME_LEN`] bytes, the prefix
/// is `0x05` or `0x02`, the rest is a valid protobuf, every proto2 `required` field is present
/// (`timestamp_ms`, `type`, and those of a `ping_pong` body and of video subscription
/// configurations), and `type` is a known [`Type`]. Never panics.
pub fn decode_frame(bytes: &[u8]) -> Result<SdkSignalFrame, FrameError> {
    let (&prefix, body) = bytes.split_first().ok_or(FrameError::Empty)?;
    if bytes.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len: bytes.len(),
            max: MAX_FRAME_LEN,
        });
    }
    if prefix != FRAME_PREFIX && prefix != LEGACY_FRAME_PREFIX {
        return Err(FrameError::UnknownPrefix(prefix));
    }
    let frame = SdkSignalFrame::decode(body)?;
    presence::check(body)?;
    if Type::try_from(frame.r#type).is_err() {
        return Err(FrameError::UnknownFrameType(frame.r#type));
    }
    Ok(frame)
}

/// prost leaves an absent `required` field at its default value, so presence is checked on a
/// second, lenient decode into views that hold those fields as `Option`s (all other fields are
/// skipped as unknown).
mod presence {
    use prost::Message;

    use super::FrameError;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Envelope {
        #[prost(uint64, optional, tag = "1")]
        timestamp_ms: Option<u64>,
        #[prost(int32, optional, tag = "2")]
        r#type: Option<i32>,
        #[prost(message, optional, tag = "6")]
        sub: Option<Subscribe>,
        #[prost(message, optional, tag = "20")]
        ping_pong: Option<PingPong>,
        #[prost(message, optional, tag = "25")]
        remote_video_update: Option<RemoteVideoUpdate>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Subscribe {
        #[prost(message, repeated, tag = "9")]
        video_subscription_configuration: Vec<VideoSubscription>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct RemoteVideoUpdate {
        #[prost(message, repeated, tag = "1")]
        added_or_updated_video_subscriptions: Vec<VideoSubscription>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct VideoSubscription {
        // `bytes` rather than `string`: UTF-8 was already checked by the real decode.
        #[prost(bytes = "vec", optional, tag = "1")]
        mid: Option<Vec<u8>>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct PingPong {
        #[prost(int32, optional, tag = "1")]
        r#type: Option<i32>,
        #[prost(uint32, optional, tag = "2")]
        ping_id: Option<u32>,
    }

    /// Fails with the first missing required field of the encoded `SdkSignalFrame` in `body`.
    pub(super) fn check(body: &[u8]) -> Result<(), FrameError> {
        let envelope = Envelope::decode(body)?;
        let missing = FrameError::MissingRequiredField;
        if envelope.timestamp_ms.is_none() {
            return Err(missing("SdkSignalFrame.timestamp_ms"));
        }
        if envelope.r#type.is_none() {
            return Err(missing("SdkSignalFrame.type"));
        }
        if let Some(ping_pong) = &envelope.ping_pong {
            if ping_pong.r#type.is_none() {
                return Err(missing("SdkPingPongFrame.type"));
            }
            if ping_pong.ping_id.is_none() {
                return Err(missing("SdkPingPongFrame.ping_id"));
            }
        }
        let subscriptions = envelope
            .sub
            .iter()
            .flat_map(|sub| &sub.video_subscription_configuration)
            .chain(
                envelope
                    .remote_video_update
                    .iter()
                    .flat_map(|update| &update.added_or_updated_video_subscriptions),
            );
        for subscription in subscriptions {
            if subscription.mid.is_none() {
                return Err(missing("SdkVideoSubscriptionConfiguration.mid"));
            }
        }
        Ok(())
    }
}

impl SdkSignalFrame {
    /// A frame of type `frame_type` with no error and no body.
    ///
    /// Most server→client types need their body (the JS client fails a join on a `JOIN_ACK`
    /// without `joinack` or an `INDEX` without `index`); prefer the typed constructors below.
    pub fn new(frame_type: Type, timestamp_ms: u64) -> Self {
        Self {
            timestamp_ms,
            r#type: frame_type as i32,
            ..Self::default()
        }
    }

    /// The frame type, or `None` if the raw value is not a known [`Type`] (prost's
    /// `r#type()` getter would silently return `JOIN` instead).
    /// [`decode_frame`] only returns frames for which this is `Some`.
    pub fn frame_type(&self) -> Option<Type> {
        Type::try_from(self.r#type).ok()
    }

    /// Adds an error status (and optional description) to the envelope.
    pub fn with_error(mut self, status: u32, description: Option<String>) -> Self {
        self.error = Some(SdkErrorFrame {
            status: Some(status),
            description,
        });
        self
    }

    /// The envelope's error status, if any.
    pub fn error_status(&self) -> Option<u32> {
        self.error.as_ref().and_then(|error| error.status)
    }

    /// `JOIN_ACK` carrying `ack` (the body must be present even when empty).
    pub fn join_ack(timestamp_ms: u64, ack: SdkJoinAckFrame) -> Self {
        Self {
            joinack: Some(ack),
            ..Self::new(Type::JoinAck, timestamp_ms)
        }
    }

    /// `INDEX` carrying the complete list of video sources.
    pub fn index(timestamp_ms: u64, index: SdkIndexFrame) -> Self {
        Self {
            index: Some(index),
            ..Self::new(Type::Index, timestamp_ms)
        }
    }

    /// `SUBSCRIBE_ACK` carrying the answer.
    pub fn subscribe_ack(timestamp_ms: u64, ack: SdkSubscribeAckFrame) -> Self {
        Self {
            suback: Some(ack),
            ..Self::new(Type::SubscribeAck, timestamp_ms)
        }
    }

    /// `AUDIO_STREAM_ID_INFO` carrying roster entries (a snapshot or deltas).
    pub fn audio_stream_id_info(timestamp_ms: u64, streams: Vec<SdkAudioStreamIdInfo>) -> Self {
        Self {
            audio_stream_id_info: Some(SdkAudioStreamIdInfoFrame { streams }),
            ..Self::new(Type::AudioStreamIdInfo, timestamp_ms)
        }
    }

    /// `AUDIO_METADATA` carrying volume / mute / signal-strength states.
    pub fn audio_metadata(timestamp_ms: u64, attendee_states: Vec<SdkAudioAttendeeState>) -> Self {
        Self {
            audio_metadata: Some(SdkAudioMetadataFrame { attendee_states }),
            ..Self::new(Type::AudioMetadata, timestamp_ms)
        }
    }

    /// `AUDIO_STATUS` with `status` (e.g. 410 meeting ended, 411 attendee removed).
    pub fn audio_status(timestamp_ms: u64, status: u32) -> Self {
        Self {
            audio_status: Some(SdkAudioStatusFrame {
                audio_status: Some(status),
            }),
            ..Self::new(Type::AudioStatus, timestamp_ms)
        }
    }

    /// `PING_PONG` of kind PING with `ping_id`.
    pub fn ping(timestamp_ms: u64, ping_id: u32) -> Self {
        Self {
            ping_pong: Some(SdkPingPongFrame::ping(ping_id)),
            ..Self::new(Type::PingPong, timestamp_ms)
        }
    }

    /// `PING_PONG` of kind PONG answering the ping `ping_id` (the id must be echoed).
    pub fn pong(timestamp_ms: u64, ping_id: u32) -> Self {
        Self {
            ping_pong: Some(SdkPingPongFrame::pong(ping_id)),
            ..Self::new(Type::PingPong, timestamp_ms)
        }
    }

    /// `LEAVE_ACK` (with its empty body).
    pub fn leave_ack(timestamp_ms: u64) -> Self {
        Self {
            leave_ack: Some(SdkLeaveAckFrame {}),
            ..Self::new(Type::LeaveAck, timestamp_ms)
        }
    }

    /// `DATA_MESSAGE` carrying `messages`.
    pub fn data_message(timestamp_ms: u64, messages: Vec<SdkDataMessagePayload>) -> Self {
        Self {
            data_message: Some(SdkDataMessageFrame { messages }),
            ..Self::new(Type::DataMessage, timestamp_ms)
        }
    }

    /// `PRIMARY_MEETING_JOIN_ACK` (with its empty body); a failure, e.g. 403, goes in the
    /// envelope's `error.status`.
    pub fn primary_meeting_join_ack(timestamp_ms: u64, error_status: Option<u32>) -> Self {
        let frame = Self {
            primary_meeting_join_ack: Some(SdkPrimaryMeetingJoinAckFrame {}),
            ..Self::new(Type::PrimaryMeetingJoinAck, timestamp_ms)
        };
        match error_status {
            Some(status) => frame.with_error(status, None),
            None => frame,
        }
    }

    /// `PRIMARY_MEETING_LEAVE` (with its empty body): demotes the client.
    pub fn primary_meeting_leave(timestamp_ms: u64) -> Self {
        Self {
            primary_meeting_leave: Some(SdkPrimaryMeetingLeaveFrame {}),
            ..Self::new(Type::PrimaryMeetingLeave, timestamp_ms)
        }
    }

    /// `BITRATES` carrying `bitrates`.
    pub fn bitrates(timestamp_ms: u64, bitrates: SdkBitrateFrame) -> Self {
        Self {
            bitrates: Some(bitrates),
            ..Self::new(Type::Bitrates, timestamp_ms)
        }
    }

    /// `PAUSE` (server side: only honoured under server-side adaption mode 4).
    pub fn pause(timestamp_ms: u64, body: SdkPauseResumeFrame) -> Self {
        Self {
            pause: Some(body),
            ..Self::new(Type::Pause, timestamp_ms)
        }
    }

    /// `RESUME`; the body travels in the `pause` field, as the protocol defines.
    pub fn resume(timestamp_ms: u64, body: SdkPauseResumeFrame) -> Self {
        Self {
            pause: Some(body),
            ..Self::new(Type::Resume, timestamp_ms)
        }
    }

    /// `NOTIFICATION` (the client only logs it).
    pub fn notification(
        timestamp_ms: u64,
        level: NotificationLevel,
        message: impl Into<String>,
    ) -> Self {
        Self {
            notification: Some(SdkNotificationFrame {
                level: Some(level as i32),
                message: Some(message.into()),
            }),
            ..Self::new(Type::Notification, timestamp_ms)
        }
    }
}

impl SdkErrorFrame {
    /// An error with only a status code.
    pub fn with_status(status: u32) -> Self {
        Self {
            status: Some(status),
            description: None,
        }
    }
}

impl SdkPingPongFrame {
    /// A ping with `ping_id`.
    pub fn ping(ping_id: u32) -> Self {
        Self {
            r#type: SdkPingPongType::Ping as i32,
            ping_id,
        }
    }

    /// A pong echoing `ping_id`.
    pub fn pong(ping_id: u32) -> Self {
        Self {
            r#type: SdkPingPongType::Pong as i32,
            ping_id,
        }
    }
}

impl SdkAudioStreamIdInfo {
    /// Roster entry: the attendee is present on `audio_stream_id` (ids start at 1; 0 is
    /// reserved).
    pub fn present(
        audio_stream_id: u32,
        attendee_id: impl Into<String>,
        external_user_id: impl Into<String>,
        muted: bool,
    ) -> Self {
        Self {
            audio_stream_id: Some(audio_stream_id),
            attendee_id: Some(attendee_id.into()),
            muted: Some(muted),
            external_user_id: Some(external_user_id.into()),
            dropped: None,
        }
    }

    /// Roster delta: only the mute state of `audio_stream_id` changed.
    pub fn mute_change(audio_stream_id: u32, muted: bool) -> Self {
        Self {
            audio_stream_id: Some(audio_stream_id),
            muted: Some(muted),
            ..Self::default()
        }
    }

    /// Roster delta: the attendee on `audio_stream_id` left (`dropped == false`) or dropped.
    pub fn departed(audio_stream_id: u32, dropped: bool) -> Self {
        Self {
            audio_stream_id: Some(audio_stream_id),
            dropped: Some(dropped),
            ..Self::default()
        }
    }
}

impl SdkAudioAttendeeState {
    /// A full state entry. `volume` is attenuation in dB (RFC 6464 level): 0 is the loudest,
    /// 42 and above is silent, so never send 0 to mean silence. `signal_strength` is 0..=2.
    pub fn new(audio_stream_id: u32, volume: u32, muted: bool, signal_strength: u32) -> Self {
        Self {
            audio_stream_id: Some(audio_stream_id),
            volume: Some(volume),
            muted: Some(muted),
            signal_strength: Some(signal_strength),
        }
    }
}

impl SdkStreamDescriptor {
    /// A video source for `INDEX` with `media_type = VIDEO` (the client ignores sources without
    /// it). Bitrates, frame rate and size can be filled in afterwards.
    pub fn video_source(
        stream_id: u32,
        group_id: u32,
        attendee_id: impl Into<String>,
        external_user_id: impl Into<String>,
    ) -> Self {
        Self {
            stream_id: Some(stream_id),
            group_id: Some(group_id),
            attendee_id: Some(attendee_id.into()),
            external_user_id: Some(external_user_id.into()),
            media_type: Some(SdkStreamMediaType::Video as i32),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_prefix_only_messages_are_rejected() {
        assert_eq!(decode_frame(&[]), Err(FrameError::Empty));
        assert_eq!(
            decode_frame(&[FRAME_PREFIX]),
            Err(FrameError::MissingRequiredField(
                "SdkSignalFrame.timestamp_ms"
            ))
        );
    }

    #[test]
    fn unknown_prefix_is_rejected() {
        let mut bytes = encode_frame(&SdkSignalFrame::leave_ack(1));
        bytes[0] = 0x03;
        assert_eq!(decode_frame(&bytes), Err(FrameError::UnknownPrefix(0x03)));
    }

    #[test]
    fn legacy_prefix_is_accepted() {
        let frame = SdkSignalFrame::pong(7, 3);
        let mut bytes = encode_frame(&frame);
        assert_eq!(bytes[0], FRAME_PREFIX);
        bytes[0] = LEGACY_FRAME_PREFIX;
        assert_eq!(decode_frame(&bytes), Ok(frame));
    }

    #[test]
    fn size_limit_counts_the_prefix() {
        let mut bytes = vec![0u8; MAX_FRAME_LEN + 1];
        bytes[0] = FRAME_PREFIX;
        assert_eq!(
            decode_frame(&bytes),
            Err(FrameError::TooLarge {
                len: MAX_FRAME_LEN + 1,
                max: MAX_FRAME_LEN
            })
        );
        // A message of exactly MAX_FRAME_LEN bytes is accepted.
        let with_data = |len: usize| {
            SdkSignalFrame::data_message(
                1,
                vec![SdkDataMessagePayload {
                    data: Some(vec![0xAB; len]),
                    ..Default::default()
                }],
            )
        };
        let overhead = encode_frame(&with_data(MAX_FRAME_LEN - 64)).len() - (MAX_FRAME_LEN - 64);
        let frame = with_data(MAX_FRAME_LEN - overhead);
        let bytes = encode_frame(&frame);
        assert_eq!(bytes.len(), MAX_FRAME_LEN);
        assert_eq!(decode_frame(&bytes), Ok(frame));
    }

    #[test]
    fn missing_timestamp_or_type_is_rejected() {
        // Only field 2 (type = 19): no timestamp.
        assert_eq!(
            decode_frame(&[FRAME_PREFIX, 0x10, 19]),
            Err(FrameError::MissingRequiredField(
                "SdkSignalFrame.timestamp_ms"
            ))
        );
        // Only field 1 (timestamp = 1): no type.
        assert_eq!(
            decode_frame(&[FRAME_PREFIX, 0x08, 1]),
            Err(FrameError::MissingRequiredField("SdkSignalFrame.type"))
        );
        // Both present but zero: still present, but 0 is not a frame type.
        assert_eq!(
            decode_frame(&[FRAME_PREFIX, 0x08, 0, 0x10, 0]),
            Err(FrameError::UnknownFrameType(0))
        );
    }

    #[test]
    fn missing_ping_id_is_rejected() {
        // timestamp 1, type PING_PONG, ping_pong { type PING } without ping_id.
        let bytes = [FRAME_PREFIX, 0x08, 1, 0x10, 19, 0xA2, 0x01, 2, 0x08, 1];
        assert_eq!(
            decode_frame(&bytes),
            Err(FrameError::MissingRequiredField("SdkPingPongFrame.ping_id"))
        );
    }

    #[test]
    fn unknown_frame_type_is_rejected() {
        // type 6 is a gap in the enum.
        let frame = SdkSignalFrame {
            r#type: 6,
            ..SdkSignalFrame::new(Type::Join, 5)
        };
        assert_eq!(frame.frame_type(), None);
        assert_eq!(
            decode_frame(&encode_frame(&frame)),
            Err(FrameError::UnknownFrameType(6))
        );
    }

    #[test]
    fn garbage_is_a_decode_error() {
        let err = decode_frame(&[FRAME_PREFIX, 0xFF, 0xFF, 0xFF]);
        assert!(matches!(err, Err(FrameError::Decode(_))), "{err:?}");
    }

    #[test]
    fn primary_meeting_join_ack_error_status() {
        let ok = SdkSignalFrame::primary_meeting_join_ack(1, None);
        assert_eq!(ok.error, None);
        assert!(ok.primary_meeting_join_ack.is_some());
        let denied = SdkSignalFrame::primary_meeting_join_ack(1, Some(403));
        assert_eq!(denied.error_status(), Some(403));
        assert_eq!(denied.frame_type(), Some(Type::PrimaryMeetingJoinAck));
    }
}
