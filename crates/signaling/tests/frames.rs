//! Wire-level tests of the signaling messages and the frame codec.
//!
//! Byte vectors here are written from the field table of the protocol (field numbers, wire
//! types), independently of the prost attributes in `src/proto.rs`, so a wrong tag or scalar
//! type in the hand-written structs fails a test.

use carillon_signaling::proto::sdk_notification_frame::NotificationLevel;
use carillon_signaling::proto::*;
use carillon_signaling::{
    FRAME_PREFIX, FrameError, FrameType, LEGACY_FRAME_PREFIX, MAX_FRAME_LEN, TRANSCRIPTION_TOPIC,
    decode_frame, encode_frame,
};
use proptest::prelude::*;
use proptest::strategy::Union;
use prost::Message;

/// A minimal protobuf wire writer/reader, independent of prost.
mod wire {
    pub fn varint(mut value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (value & 0x7F) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    fn key(tag: u32, wire_type: u8) -> Vec<u8> {
        varint((u64::from(tag) << 3) | u64::from(wire_type))
    }

    /// A varint field (uint32/uint64/int32/int64/bool/enum).
    pub fn uint(tag: u32, value: u64) -> Vec<u8> {
        [key(tag, 0), varint(value)].concat()
    }

    /// A length-delimited field (string/bytes/message/packed).
    pub fn len(tag: u32, body: &[u8]) -> Vec<u8> {
        [key(tag, 2), varint(body.len() as u64), body.to_vec()].concat()
    }

    pub fn string(tag: u32, value: &str) -> Vec<u8> {
        len(tag, value.as_bytes())
    }

    /// The prefixed WebSocket message for an envelope made of `fields`.
    pub fn frame(fields: &[Vec<u8>]) -> Vec<u8> {
        [vec![0x05], fields.concat()].concat()
    }

    fn read_varint(bytes: &[u8], pos: &mut usize) -> u64 {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let byte = bytes[*pos];
            *pos += 1;
            value |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return value;
            }
            shift += 7;
        }
    }

    /// `(tag, wire type)` of each top-level field of an encoded message.
    pub fn fields(bytes: &[u8]) -> Vec<(u32, u8)> {
        let mut pos = 0;
        let mut out = Vec::new();
        while pos < bytes.len() {
            let key = read_varint(bytes, &mut pos);
            let (tag, wire_type) = ((key >> 3) as u32, (key & 7) as u8);
            match wire_type {
                0 => {
                    read_varint(bytes, &mut pos);
                }
                1 => pos += 8,
                2 => pos += read_varint(bytes, &mut pos) as usize,
                5 => pos += 4,
                other => panic!("unexpected wire type {other}"),
            }
            out.push((tag, wire_type));
        }
        out
    }
}

/// Encodes, checks the prefix, decodes, and checks equality and deterministic re-encoding.
fn round_trip(frame: &SdkSignalFrame) -> Vec<u8> {
    let bytes = encode_frame(frame);
    assert_eq!(bytes[0], FRAME_PREFIX);
    let decoded = decode_frame(&bytes).unwrap_or_else(|e| panic!("{frame:?}: {e}"));
    assert_eq!(&decoded, frame);
    assert_eq!(encode_frame(&decoded), bytes);
    bytes
}

fn s(value: &str) -> Option<String> {
    Some(value.to_owned())
}

const ATTENDEE: &str = "6f1ba0a1-3c2d-4e8f-9a0b-1c2d3e4f5a6b";

fn video_subscription(mid: &str, stream_id: u32) -> SdkVideoSubscriptionConfiguration {
    SdkVideoSubscriptionConfiguration {
        mid: mid.to_owned(),
        attendee_id: s(ATTENDEE),
        stream_id: Some(stream_id),
        priority: Some(1),
        target_bitrate_kbps: Some(1200),
        group_id: Some(2),
        quality_adaptation_preference: Some(SdkVideoQualityAdaptationPreference::Balanced as i32),
    }
}

/// One realistic frame per type; the exhaustive `match` makes sure no type is forgotten.
fn sample(frame_type: FrameType) -> SdkSignalFrame {
    const TS: u64 = 1_750_000_123_456;
    match frame_type {
        FrameType::Join => SdkSignalFrame {
            join: Some(SdkJoinFrame {
                protocol_version: Some(2),
                flags: Some(SdkJoinFlags::HasStreamUpdate as u32),
                client_details: Some(SdkClientDetails {
                    platform_name: s("chrome"),
                    platform_version: s("156.0.0.0"),
                    client_source: s("amazon-chime-sdk-js"),
                    chime_sdk_version: s("3.32.0"),
                    client_utc_offset: s("+00:00"),
                    os_name: s("Linux"),
                    ..Default::default()
                }),
                audio_session_id: Some(2_845_012_345),
                wants_compressed_sdp: Some(true),
                server_side_network_adaption: Some(SdkServerSideNetworkAdaption::Default as i32),
                supported_server_side_network_adaptions: vec![
                    SdkServerSideNetworkAdaption::BandwidthProbing as i32,
                    SdkServerSideNetworkAdaption::BandwidthProbingAndVideoQualityAdaption as i32,
                ],
                wants_all_temporal_layers_in_index: Some(false),
                disable_periodic_keyframe_request_on_content_sender: Some(false),
                ..Default::default()
            }),
            ..SdkSignalFrame::new(FrameType::Join, TS)
        },
        FrameType::JoinAck => SdkSignalFrame::join_ack(
            TS,
            SdkJoinAckFrame {
                turn_credentials: Some(SdkTurnCredentials {
                    username: s("1750000123:6f1ba0a1"),
                    password: s("c2VjcmV0"),
                    ttl: Some(86_400),
                    uris: vec![
                        "turn:turn.example.test:3478?transport=udp".to_owned(),
                        "turns:turn.example.test:443?transport=tcp".to_owned(),
                    ],
                }),
                video_subscription_limit: Some(25),
                wants_compressed_sdp: Some(false),
                default_server_side_network_adaption: Some(
                    SdkServerSideNetworkAdaption::BandwidthProbing as i32,
                ),
            },
        ),
        FrameType::Subscribe => SdkSignalFrame {
            sub: Some(SdkSubscribeFrame {
                duplex: Some(SdkStreamServiceType::Duplex as i32),
                send_streams: vec![
                    SdkStreamDescriptor {
                        stream_id: Some(1),
                        framerate: Some(15),
                        max_bitrate_kbps: Some(600),
                        track_label: s("AmazonChimeExpressAudio"),
                        group_id: Some(1),
                        avg_bitrate_bps: Some(400_000),
                        attendee_id: s(ATTENDEE),
                        media_type: Some(SdkStreamMediaType::Audio as i32),
                        ..Default::default()
                    },
                    SdkStreamDescriptor {
                        stream_id: Some(2),
                        framerate: Some(15),
                        max_bitrate_kbps: Some(1400),
                        group_id: Some(2),
                        attendee_id: s(ATTENDEE),
                        media_type: Some(SdkStreamMediaType::Video as i32),
                        ..Default::default()
                    },
                ],
                receive_stream_ids: vec![0, 12],
                sdp_offer: s("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"),
                audio_host: s("0123abcd.k.m3.ue1.app.chime.aws:3478"),
                audio_checkin: Some(false),
                audio_muted: Some(false),
                compressed_sdp_offer: None,
                video_subscription_configuration: vec![video_subscription("2", 12)],
            }),
            ..SdkSignalFrame::new(FrameType::Subscribe, TS)
        },
        FrameType::SubscribeAck => SdkSignalFrame::subscribe_ack(
            TS,
            SdkSubscribeAckFrame {
                duplex: Some(SdkStreamServiceType::Duplex as i32),
                allocations: vec![SdkStreamAllocation {
                    track_label: s("b7BpJg1h"),
                    stream_id: Some(12),
                    group_id: Some(2),
                }],
                sdp_answer: s("v=0\r\na=ice-lite\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"),
                tracks: vec![SdkTrackMapping {
                    stream_id: Some(12),
                    ssrc: Some(98_763_720),
                    track_label: s("v_2"),
                }],
                compressed_sdp_answer: None,
            },
        )
        .with_error(206, s("switched to view only")),
        FrameType::Index => SdkSignalFrame::index(
            TS,
            SdkIndexFrame {
                at_capacity: Some(false),
                sources: vec![SdkStreamDescriptor {
                    max_bitrate_kbps: Some(1400),
                    avg_bitrate_bps: Some(900_000),
                    framerate: Some(15),
                    width: Some(960),
                    height: Some(540),
                    ..SdkStreamDescriptor::video_source(12, 2, ATTENDEE, "alice")
                }],
                paused_at_source_ids: vec![12],
                num_participants: Some(2),
                supported_receive_codec_intersection: vec![
                    SdkVideoCodecCapability::Vp8 as i32,
                    SdkVideoCodecCapability::H264ConstrainedBaselineProfile as i32,
                ],
            },
        ),
        FrameType::Pause => SdkSignalFrame::pause(
            TS,
            SdkPauseResumeFrame {
                stream_ids: vec![12],
                group_ids: vec![2],
            },
        ),
        FrameType::Resume => SdkSignalFrame::resume(
            TS,
            SdkPauseResumeFrame {
                stream_ids: vec![12, 14],
                group_ids: vec![2, 3],
            },
        ),
        FrameType::Leave => SdkSignalFrame {
            leave: Some(SdkLeaveFrame {}),
            ..SdkSignalFrame::new(FrameType::Leave, TS)
        },
        FrameType::LeaveAck => SdkSignalFrame::leave_ack(TS),
        FrameType::Bitrates => SdkSignalFrame::bitrates(
            TS,
            SdkBitrateFrame {
                bitrates: vec![SdkBitrate {
                    source_stream_id: Some(12),
                    avg_bitrate_bps: Some(880_000),
                }],
                server_available_outgoing_bitrate: Some(2500),
            },
        ),
        FrameType::AudioControl => SdkSignalFrame {
            audio_control: Some(SdkAudioControlFrame { muted: Some(true) }),
            ..SdkSignalFrame::new(FrameType::AudioControl, TS)
        },
        FrameType::AudioMetadata => SdkSignalFrame::audio_metadata(
            TS,
            vec![
                SdkAudioAttendeeState::new(1, 20, false, 2),
                SdkAudioAttendeeState {
                    audio_stream_id: Some(2),
                    muted: Some(true),
                    ..Default::default()
                },
            ],
        ),
        FrameType::AudioStreamIdInfo => SdkSignalFrame::audio_stream_id_info(
            TS,
            vec![
                SdkAudioStreamIdInfo::present(1, ATTENDEE, "alice", false),
                SdkAudioStreamIdInfo::mute_change(2, true),
                SdkAudioStreamIdInfo::departed(3, true),
            ],
        ),
        FrameType::PingPong => SdkSignalFrame::ping(TS, 42),
        FrameType::AudioStatus => SdkSignalFrame::audio_status(TS, 410),
        FrameType::ClientMetric => SdkSignalFrame {
            client_metric: Some(SdkClientMetricFrame {
                global_metrics: vec![SdkMetric {
                    r#type: Some(sdk_metric::Type::VideoAvailableReceiveBandwidth as i32),
                    value: Some(2_500_000.0),
                }],
                stream_metric_frames: vec![SdkStreamMetricFrame {
                    stream_id: Some(12),
                    group_id: Some(2),
                    metrics: vec![SdkMetric {
                        r#type: Some(sdk_metric::Type::VideoDecodeFps as i32),
                        value: Some(14.5),
                    }],
                    dimensions: vec![SdkStreamDimension {
                        r#type: Some(sdk_stream_dimension::Type::VideoDecoderName as i32),
                        value: Some(SdkDimensionValue {
                            string_value: s("libvpx"),
                            ..Default::default()
                        }),
                    }],
                    media_type: Some(SdkStreamMediaType::Video as i32),
                }],
            }),
            ..SdkSignalFrame::new(FrameType::ClientMetric, TS)
        },
        FrameType::DataMessage => SdkSignalFrame::data_message(
            TS,
            vec![SdkDataMessagePayload {
                topic: s("chat"),
                data: Some(b"{\"text\":\"hello\"}".to_vec()),
                lifetime_ms: Some(300_000),
                sender_attendee_id: s(ATTENDEE),
                ingest_time_ns: Some(1_750_000_123_456_789_012),
                sender_external_user_id: s("alice"),
            }],
        ),
        FrameType::RemoteVideoUpdate => SdkSignalFrame {
            remote_video_update: Some(SdkRemoteVideoUpdateFrame {
                added_or_updated_video_subscriptions: vec![video_subscription("3", 14)],
                removed_video_subscription_mids: vec!["4".to_owned()],
            }),
            ..SdkSignalFrame::new(FrameType::RemoteVideoUpdate, TS)
        },
        FrameType::PrimaryMeetingJoin => SdkSignalFrame {
            primary_meeting_join: Some(SdkPrimaryMeetingJoinFrame {
                credentials: Some(SdkMeetingSessionCredentials {
                    attendee_id: s(ATTENDEE),
                    external_user_id: s("alice"),
                    join_token: s("NmYxYmEwYTEtM2MyZDpjNGVm"),
                }),
            }),
            ..SdkSignalFrame::new(FrameType::PrimaryMeetingJoin, TS)
        },
        FrameType::PrimaryMeetingJoinAck => SdkSignalFrame::primary_meeting_join_ack(TS, None),
        FrameType::PrimaryMeetingLeave => SdkSignalFrame::primary_meeting_leave(TS),
        FrameType::Notification => {
            SdkSignalFrame::notification(TS, NotificationLevel::Warning, "meeting ends in 5 min")
        }
        FrameType::MeetingSessionTiming => SdkSignalFrame {
            meeting_session_timing: Some(SdkMeetingSessionTimingFrame {
                signaling: vec![SdkMeetingSessionSignalingTiming {
                    start_ms: Some(0),
                    join_sent_ms: Some(12),
                    join_ack_received_ms: Some(20),
                    transport_connected_ms: Some(5),
                    create_offer_ms: Some(30),
                    set_local_description_ms: Some(31),
                    set_remote_description_ms: Some(80),
                    ice_gathering_start_ms: Some(32),
                    ice_gathering_complete_ms: Some(60),
                    ice_connected_ms: Some(120),
                    subscribe_sent_ms: Some(61),
                    subscribe_ack_ms: Some(75),
                    timed_out: Some(false),
                }],
                remote_audio: vec![SdkMeetingSessionRemoteAudioTiming {
                    added_ms: Some(80),
                    first_packet_received_ms: Some(130),
                    first_frame_rendered_ms: Some(150),
                    timed_out: Some(false),
                    removed: Some(false),
                }],
                local_audio: vec![SdkMeetingSessionLocalAudioTiming {
                    added_ms: Some(1),
                    first_frame_captured_ms: Some(40),
                    first_packet_sent_ms: Some(125),
                    timed_out: Some(false),
                    removed: Some(false),
                }],
                local_video: vec![SdkMeetingSessionLocalVideoTiming {
                    added_ms: Some(500),
                    first_frame_captured_ms: Some(540),
                    first_frame_sent_ms: Some(700),
                    timed_out: Some(false),
                    removed: Some(false),
                }],
                remote_videos: vec![SdkMeetingSessionRemoteVideoTiming {
                    group_id: Some(2),
                    added_ms: Some(900),
                    first_packet_received_ms: Some(950),
                    first_frame_rendered_ms: Some(990),
                    timed_out: Some(false),
                    removed: Some(true),
                }],
            }),
            ..SdkSignalFrame::new(FrameType::MeetingSessionTiming, TS)
        },
    }
}

/// Every frame type with its number and the envelope tag of its body, from the reference table.
const FRAME_TYPES: [(FrameType, i32, u32); 23] = [
    (FrameType::Join, 1, 4),
    (FrameType::JoinAck, 2, 5),
    (FrameType::Subscribe, 3, 6),
    (FrameType::SubscribeAck, 4, 7),
    (FrameType::Index, 5, 8),
    (FrameType::Pause, 7, 10),
    (FrameType::Resume, 8, 10),
    (FrameType::Leave, 9, 11),
    (FrameType::LeaveAck, 10, 12),
    (FrameType::Bitrates, 13, 14),
    (FrameType::AudioControl, 16, 17),
    (FrameType::AudioMetadata, 17, 18),
    (FrameType::AudioStreamIdInfo, 18, 19),
    (FrameType::PingPong, 19, 20),
    (FrameType::AudioStatus, 20, 21),
    (FrameType::ClientMetric, 21, 22),
    (FrameType::DataMessage, 22, 23),
    (FrameType::RemoteVideoUpdate, 24, 25),
    (FrameType::PrimaryMeetingJoin, 25, 26),
    (FrameType::PrimaryMeetingJoinAck, 26, 27),
    (FrameType::PrimaryMeetingLeave, 27, 28),
    (FrameType::Notification, 34, 35),
    (FrameType::MeetingSessionTiming, 43, 44),
];

#[test]
fn frame_type_enum_is_exactly_the_reference_set() {
    let known: Vec<i32> = (-10..200)
        .filter(|v| FrameType::try_from(*v).is_ok())
        .collect();
    let expected: Vec<i32> = FRAME_TYPES.iter().map(|(_, number, _)| *number).collect();
    assert_eq!(known, expected);
    for (frame_type, number, _) in FRAME_TYPES {
        assert_eq!(frame_type as i32, number, "{frame_type:?}");
    }
}

#[test]
fn every_frame_type_round_trips_with_its_body_at_the_reference_tag() {
    for (frame_type, number, body_tag) in FRAME_TYPES {
        let frame = sample(frame_type);
        assert_eq!(frame.frame_type(), Some(frame_type));
        assert_eq!(frame.r#type(), frame_type);
        let bytes = round_trip(&frame);
        let mut expected = vec![(1, 0), (2, 0)];
        if frame.error.is_some() {
            expected.push((3, 2));
        }
        expected.push((body_tag, 2));
        assert_eq!(wire::fields(&bytes[1..]), expected, "{frame_type:?}");
        // The type is field 2, a varint with the frame type number.
        let type_field = wire::uint(2, number as u64);
        assert!(
            bytes.windows(type_field.len()).any(|w| w == type_field),
            "{frame_type:?}"
        );
    }
}

#[test]
fn other_enums_match_the_reference_values() {
    assert_eq!(SdkJoinFlags::HasStreamUpdate as i32, 2);
    assert_eq!(SdkJoinFlags::CompleteVideoSourcesList as i32, 16);
    assert_eq!(SdkJoinFlags::ExcludeSelfContentInIndex as i32, 32);
    assert_eq!(SdkServerSideNetworkAdaption::Default as i32, 1);
    assert_eq!(SdkServerSideNetworkAdaption::None as i32, 2);
    assert_eq!(SdkServerSideNetworkAdaption::BandwidthProbing as i32, 3);
    assert_eq!(
        SdkServerSideNetworkAdaption::BandwidthProbingAndVideoQualityAdaption as i32,
        4
    );
    assert_eq!(SdkStreamServiceType::Rx as i32, 1);
    assert_eq!(SdkStreamServiceType::Tx as i32, 2);
    assert_eq!(SdkStreamServiceType::Duplex as i32, 3);
    assert_eq!(SdkStreamMediaType::Audio as i32, 1);
    assert_eq!(SdkStreamMediaType::Video as i32, 2);
    assert_eq!(SdkPingPongType::Ping as i32, 1);
    assert_eq!(SdkPingPongType::Pong as i32, 2);
    assert_eq!(NotificationLevel::Info as i32, 1);
    assert_eq!(NotificationLevel::Warning as i32, 2);
    assert_eq!(NotificationLevel::Error as i32, 3);
    assert_eq!(SdkVideoQualityAdaptationPreference::Balanced as i32, 1);
    assert_eq!(
        SdkVideoQualityAdaptationPreference::MaintainFramerate as i32,
        2
    );
    assert_eq!(
        SdkVideoQualityAdaptationPreference::MaintainResolution as i32,
        3
    );
    let codecs: Vec<i32> = (0..20)
        .filter(|v| SdkVideoCodecCapability::try_from(*v).is_ok())
        .collect();
    assert_eq!(codecs, [1, 2, 3, 4, 5, 6, 8, 11]);
    assert_eq!(SdkVideoCodecCapability::Vp9Profile0 as i32, 8);
    assert_eq!(SdkVideoCodecCapability::Av1MainProfile as i32, 11);
    let metrics: Vec<i32> = (0..300)
        .filter(|v| sdk_metric::Type::try_from(*v).is_ok())
        .collect();
    assert_eq!(metrics.len(), 99);
    assert_eq!(metrics.first(), Some(&1));
    assert_eq!(metrics.last(), Some(&128));
    assert!((1..=49).all(|v| metrics.contains(&v)));
    assert!((86..=128).all(|v| metrics.contains(&v)));
    assert_eq!(sdk_metric::Type::CpuPressureState as i32, 113);
    assert_eq!(sdk_metric::Type::VideoEncodeWidth as i32, 86);
    assert_eq!(sdk_stream_dimension::Type::VideoProcessorName as i32, 5);
    assert_eq!(sdk_transcription_status::Type::Failed as i32, 5);
    assert_eq!(sdk_transcript_item::Type::Punctuation as i32, 2);
}

// ---------------------------------------------------------------------------------------------
// Literal byte vectors
// ---------------------------------------------------------------------------------------------

#[test]
fn join_ack_bytes() {
    let frame = SdkSignalFrame::join_ack(
        1000,
        SdkJoinAckFrame {
            video_subscription_limit: Some(25),
            wants_compressed_sdp: Some(false),
            ..Default::default()
        },
    );
    let expected = [
        0x05, // prefix
        0x08, 0xE8, 0x07, // 1: timestamp_ms = 1000
        0x10, 0x02, // 2: type = JOIN_ACK
        0x2A, 0x04, // 5: joinack, 4 bytes
        0x10, 0x19, // joinack 2: video_subscription_limit = 25
        0x18, 0x00, // joinack 3: wants_compressed_sdp = false
    ];
    assert_eq!(encode_frame(&frame), expected);
    assert_eq!(decode_frame(&expected), Ok(frame));

    // An empty JOIN_ACK body is still present on the wire.
    let empty = SdkSignalFrame::join_ack(1, SdkJoinAckFrame::default());
    assert_eq!(
        encode_frame(&empty),
        [0x05, 0x08, 0x01, 0x10, 0x02, 0x2A, 0x00]
    );
}

#[test]
fn join_ack_turn_credentials_bytes() {
    let credentials = [
        wire::string(1, "user"),
        wire::string(2, "pass"),
        wire::uint(3, 300),
        wire::string(4, "turn:a:3478"),
        wire::string(4, "turns:b:443"),
    ]
    .concat();
    let bytes = wire::frame(&[
        wire::uint(1, 7),
        wire::uint(2, 2),
        wire::len(5, &wire::len(1, &credentials)),
    ]);
    let frame = decode_frame(&bytes).unwrap();
    let turn = frame.joinack.unwrap().turn_credentials.unwrap();
    assert_eq!(turn.username.as_deref(), Some("user"));
    assert_eq!(turn.password.as_deref(), Some("pass"));
    assert_eq!(turn.ttl, Some(300));
    assert_eq!(turn.uris, ["turn:a:3478", "turns:b:443"]);
}

#[test]
fn index_bytes_put_media_type_at_field_9() {
    let frame = SdkSignalFrame::index(
        1,
        SdkIndexFrame {
            sources: vec![SdkStreamDescriptor {
                stream_id: Some(2),
                group_id: Some(1),
                media_type: Some(SdkStreamMediaType::Video as i32),
                ..Default::default()
            }],
            num_participants: Some(2),
            ..Default::default()
        },
    );
    let expected = [
        0x05, // prefix
        0x08, 0x01, // 1: timestamp_ms = 1
        0x10, 0x05, // 2: type = INDEX
        0x42, 0x0A, // 8: index, 10 bytes
        0x12, 0x06, // index 2: sources[0], 6 bytes
        0x08, 0x02, // descriptor 1: stream_id = 2
        0x30, 0x01, // descriptor 6: group_id = 1
        0x48, 0x02, // descriptor 9: media_type = VIDEO
        0x20, 0x02, // index 4: num_participants = 2
    ];
    assert_eq!(encode_frame(&frame), expected);
    assert_eq!(decode_frame(&expected), Ok(frame));
}

#[test]
fn index_descriptor_fields_decode_from_reference_numbers() {
    let descriptor = [
        wire::uint(1, 12),
        wire::uint(2, 15),
        wire::uint(3, 1400),
        wire::string(4, "label"),
        wire::uint(6, 2),
        wire::uint(7, 900_000),
        wire::string(8, ATTENDEE),
        wire::uint(9, 2),
        wire::string(10, "alice"),
        wire::uint(11, 1280),
        wire::uint(12, 720),
    ]
    .concat();
    let index = [
        wire::uint(1, 1),
        wire::len(2, &descriptor),
        wire::uint(3, 12),
        wire::uint(3, 14),
        wire::uint(4, 3),
        wire::uint(5, 1),
        wire::uint(5, 11),
    ]
    .concat();
    let bytes = wire::frame(&[wire::uint(1, 1), wire::uint(2, 5), wire::len(8, &index)]);
    let index = decode_frame(&bytes).unwrap().index.unwrap();
    assert_eq!(
        index,
        SdkIndexFrame {
            at_capacity: Some(true),
            sources: vec![SdkStreamDescriptor {
                stream_id: Some(12),
                framerate: Some(15),
                max_bitrate_kbps: Some(1400),
                track_label: s("label"),
                group_id: Some(2),
                avg_bitrate_bps: Some(900_000),
                attendee_id: s(ATTENDEE),
                media_type: Some(2),
                external_user_id: s("alice"),
                width: Some(1280),
                height: Some(720),
            }],
            paused_at_source_ids: vec![12, 14],
            num_participants: Some(3),
            supported_receive_codec_intersection: vec![1, 11],
        }
    );
    assert_eq!(
        index
            .supported_receive_codec_intersection()
            .collect::<Vec<_>>(),
        [
            SdkVideoCodecCapability::Vp8,
            SdkVideoCodecCapability::Av1MainProfile
        ]
    );
    // Re-encoding reproduces the unpacked repeated fields byte for byte.
    assert_eq!(encode_frame(&decode_frame(&bytes).unwrap()), bytes);
}

#[test]
fn ping_pong_bytes() {
    let pong = SdkSignalFrame::pong(5, 3);
    let expected = [
        0x05, // prefix
        0x08, 0x05, // 1: timestamp_ms = 5
        0x10, 0x13, // 2: type = PING_PONG (19)
        0xA2, 0x01, 0x04, // 20: ping_pong, 4 bytes
        0x08, 0x02, // ping_pong 1: type = PONG
        0x10, 0x03, // ping_pong 2: ping_id = 3
    ];
    assert_eq!(encode_frame(&pong), expected);
    assert_eq!(decode_frame(&expected), Ok(pong));

    // A client PING with id 1 decodes, and the required fields are encoded even when zero.
    let ping = decode_frame(&[
        0x05, 0x08, 0x01, 0x10, 0x13, 0xA2, 0x01, 0x04, 0x08, 0x01, 0x10, 0x01,
    ])
    .unwrap();
    let body = ping.ping_pong.unwrap();
    assert_eq!(body.r#type(), SdkPingPongType::Ping);
    assert_eq!(body.ping_id, 1);
    assert_eq!(
        encode_frame(&SdkSignalFrame::ping(0, 0)),
        [
            0x05, 0x08, 0x00, 0x10, 0x13, 0xA2, 0x01, 0x04, 0x08, 0x01, 0x10, 0x00
        ]
    );
}

#[test]
fn data_message_bytes_use_int64_ingest_time_at_field_5() {
    let frame = SdkSignalFrame::data_message(
        1,
        vec![SdkDataMessagePayload {
            topic: s("chat"),
            data: Some(b"hi".to_vec()),
            lifetime_ms: None,
            sender_attendee_id: s("a"),
            ingest_time_ns: Some(150),
            sender_external_user_id: s("b"),
        }],
    );
    let expected = [
        0x05, // prefix
        0x08, 0x01, // 1: timestamp_ms = 1
        0x10, 0x16, // 2: type = DATA_MESSAGE (22)
        0xBA, 0x01, 0x15, // 23: data_message, 21 bytes
        0x0A, 0x13, // data_message 1: messages[0], 19 bytes
        0x0A, 0x04, b'c', b'h', b'a', b't', // payload 1: topic
        0x12, 0x02, b'h', b'i', // payload 2: data
        0x22, 0x01, b'a', // payload 4: sender_attendee_id
        0x28, 0x96, 0x01, // payload 5: ingest_time_ns = 150 (int64, not zigzag)
        0x32, 0x01, b'b', // payload 6: sender_external_user_id
    ];
    assert_eq!(encode_frame(&frame), expected);
    assert_eq!(decode_frame(&expected), Ok(frame));

    // int64 encodes a negative value as a 10-byte two's-complement varint.
    let negative = SdkDataMessagePayload {
        ingest_time_ns: Some(-1),
        ..Default::default()
    };
    assert_eq!(
        negative.encode_to_vec(),
        [
            0x28, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01
        ]
    );
    // The throttled marker (0) is present on the wire, not omitted.
    let throttled = SdkDataMessagePayload {
        ingest_time_ns: Some(0),
        ..Default::default()
    };
    assert_eq!(throttled.encode_to_vec(), [0x28, 0x00]);
}

#[test]
fn audio_status_and_primary_meeting_join_ack_bytes() {
    assert_eq!(
        encode_frame(&SdkSignalFrame::audio_status(1, 410)),
        [
            0x05, 0x08, 0x01, // timestamp_ms = 1
            0x10, 0x14, // type = AUDIO_STATUS (20)
            0xAA, 0x01, 0x03, // 21: audio_status, 3 bytes
            0x08, 0x9A, 0x03, // audio_status 1 = 410
        ]
    );
    assert_eq!(
        encode_frame(&SdkSignalFrame::primary_meeting_join_ack(1, Some(403))),
        [
            0x05, 0x08, 0x01, // timestamp_ms = 1
            0x10, 0x1A, // type = PRIMARY_MEETING_JOIN_ACK (26)
            0x1A, 0x03, 0x08, 0x93, 0x03, // 3: error { status = 403 }
            0xDA, 0x01, 0x00, // 27: primary_meeting_join_ack, empty
        ]
    );
    assert_eq!(
        encode_frame(&SdkSignalFrame::notification(
            1,
            NotificationLevel::Info,
            "x"
        )),
        [
            0x05, 0x08, 0x01, // timestamp_ms = 1
            0x10, 0x22, // type = NOTIFICATION (34)
            0x9A, 0x02, 0x05, // 35: notification, 5 bytes
            0x08, 0x01, // level = INFO
            0x12, 0x01, b'x', // message
        ]
    );
}

#[test]
fn roster_and_metadata_bytes() {
    let roster = SdkSignalFrame::audio_stream_id_info(
        1,
        vec![
            SdkAudioStreamIdInfo::present(1, "a", "b", false),
            SdkAudioStreamIdInfo::departed(2, true),
        ],
    );
    let present = [
        wire::uint(1, 1),
        wire::string(2, "a"),
        wire::uint(3, 0),
        wire::string(4, "b"),
    ]
    .concat();
    let departed = [wire::uint(1, 2), wire::uint(5, 1)].concat();
    let body = [wire::len(1, &present), wire::len(1, &departed)].concat();
    assert_eq!(
        encode_frame(&roster),
        wire::frame(&[wire::uint(1, 1), wire::uint(2, 18), wire::len(19, &body)])
    );

    let metadata =
        SdkSignalFrame::audio_metadata(1, vec![SdkAudioAttendeeState::new(3, 42, true, 1)]);
    let state = [
        wire::uint(1, 3),
        wire::uint(2, 42),
        wire::uint(3, 1),
        wire::uint(4, 1),
    ]
    .concat();
    assert_eq!(
        encode_frame(&metadata),
        wire::frame(&[
            wire::uint(1, 1),
            wire::uint(2, 17),
            wire::len(18, &wire::len(1, &state)),
        ])
    );
}

#[test]
fn subscribe_ack_and_bitrates_bytes() {
    let ack = SdkSignalFrame::subscribe_ack(
        1,
        SdkSubscribeAckFrame {
            duplex: Some(SdkStreamServiceType::Rx as i32),
            allocations: vec![SdkStreamAllocation {
                track_label: s("t"),
                stream_id: Some(3),
                group_id: Some(4),
            }],
            sdp_answer: s("v=0"),
            tracks: vec![SdkTrackMapping {
                stream_id: Some(12),
                ssrc: Some(5),
                track_label: s("v_2"),
            }],
            compressed_sdp_answer: Some(vec![1, 2]),
        },
    );
    let allocation = [wire::string(1, "t"), wire::uint(2, 3), wire::uint(3, 4)].concat();
    let track = [wire::uint(1, 12), wire::uint(2, 5), wire::string(3, "v_2")].concat();
    let body = [
        wire::uint(1, 1),
        wire::len(2, &allocation),
        wire::string(3, "v=0"),
        wire::len(4, &track),
        wire::len(5, &[1, 2]),
    ]
    .concat();
    assert_eq!(
        encode_frame(&ack),
        wire::frame(&[wire::uint(1, 1), wire::uint(2, 4), wire::len(7, &body)])
    );

    let bitrates = SdkSignalFrame::bitrates(
        1,
        SdkBitrateFrame {
            bitrates: vec![SdkBitrate {
                source_stream_id: Some(12),
                avg_bitrate_bps: Some(1000),
            }],
            server_available_outgoing_bitrate: Some(800),
        },
    );
    let body = [
        wire::len(1, &[wire::uint(1, 12), wire::uint(2, 1000)].concat()),
        wire::uint(2, 800),
    ]
    .concat();
    assert_eq!(
        encode_frame(&bitrates),
        wire::frame(&[wire::uint(1, 1), wire::uint(2, 13), wire::len(14, &body)])
    );
}

// ---------------------------------------------------------------------------------------------
// Client frames as the JS client builds them
// ---------------------------------------------------------------------------------------------

fn js_join_bytes(extra_join_fields: &[Vec<u8>]) -> Vec<u8> {
    let client_details = [
        wire::string(5, "chrome"),
        wire::string(6, "156.0.7420.0"),
        wire::string(7, "amazon-chime-sdk-js"),
        wire::string(8, "3.32.0"),
        wire::string(9, "+00:00"),
        wire::string(10, "Linux"),
    ]
    .concat();
    let join = [
        wire::uint(1, 2),
        wire::uint(3, 2),
        wire::len(4, &client_details),
        wire::uint(6, 3_141_592_653),
        wire::uint(7, 1),
        wire::uint(10, 1),
        wire::uint(12, 0),
        wire::uint(13, 0),
        extra_join_fields.concat(),
    ]
    .concat();
    wire::frame(&[
        wire::uint(1, 1_750_000_000_000),
        wire::uint(2, 1),
        wire::len(4, &join),
    ])
}

#[test]
fn decodes_join_as_sent_by_the_js_client() {
    let frame = decode_frame(&js_join_bytes(&[])).unwrap();
    assert_eq!(frame.timestamp_ms, 1_750_000_000_000);
    assert_eq!(frame.frame_type(), Some(FrameType::Join));
    let join = frame.join.unwrap();
    assert_eq!(
        join,
        SdkJoinFrame {
            protocol_version: Some(2),
            max_num_of_videos: None,
            flags: Some(2),
            client_details: Some(SdkClientDetails {
                platform_name: s("chrome"),
                platform_version: s("156.0.7420.0"),
                client_source: s("amazon-chime-sdk-js"),
                chime_sdk_version: s("3.32.0"),
                client_utc_offset: s("+00:00"),
                os_name: s("Linux"),
                ..Default::default()
            }),
            audio_session_id: Some(3_141_592_653),
            wants_compressed_sdp: Some(true),
            server_side_network_adaption: Some(1),
            supported_server_side_network_adaptions: vec![],
            wants_all_temporal_layers_in_index: Some(false),
            disable_periodic_keyframe_request_on_content_sender: Some(false),
        }
    );
    assert_eq!(join.flags() & SdkJoinFlags::HasStreamUpdate as u32, 2);
    assert_eq!(
        join.server_side_network_adaption(),
        SdkServerSideNetworkAdaption::Default
    );
}

#[test]
fn join_tolerates_reserved_and_unknown_fields_and_reads_unpacked_adaptions() {
    let frame = decode_frame(&js_join_bytes(&[
        wire::uint(11, 3),
        wire::uint(11, 4),
        wire::uint(8, 1),
        wire::string(9, "reserved"),
        wire::string(99, "from the future"),
    ]))
    .unwrap();
    let join = frame.join.unwrap();
    assert_eq!(
        join.supported_server_side_network_adaptions()
            .collect::<Vec<_>>(),
        [
            SdkServerSideNetworkAdaption::BandwidthProbing,
            SdkServerSideNetworkAdaption::BandwidthProbingAndVideoQualityAdaption
        ]
    );
}

#[test]
fn decodes_subscribe_as_sent_by_the_js_client() {
    let audio_stream = [
        wire::uint(1, 1),
        wire::uint(2, 15),
        wire::uint(3, 600),
        wire::string(4, "AmazonChimeExpressAudio"),
        wire::uint(6, 1),
        wire::uint(7, 400_000),
        wire::string(8, ATTENDEE),
        wire::uint(9, 1),
    ]
    .concat();
    let subscription = [
        wire::string(1, "1"),
        wire::string(2, ATTENDEE),
        wire::uint(3, 12),
        wire::uint(6, 2),
        wire::uint(7, 1),
    ]
    .concat();
    let sub = [
        wire::uint(1, 1),
        wire::len(2, &audio_stream),
        wire::uint(3, 0),
        wire::uint(3, 12),
        wire::string(4, "v=0\r\n"),
        wire::string(5, "0123abcd.k.m3.ue1.app.chime.aws:3478"),
        wire::uint(6, 0),
        wire::uint(7, 1),
        wire::len(9, &subscription),
    ]
    .concat();
    let bytes = wire::frame(&[wire::uint(1, 9), wire::uint(2, 3), wire::len(6, &sub)]);
    let sub = decode_frame(&bytes).unwrap().sub.unwrap();
    assert_eq!(sub.duplex(), SdkStreamServiceType::Rx);
    assert_eq!(sub.receive_stream_ids, [0, 12]);
    assert_eq!(sub.sdp_offer.as_deref(), Some("v=0\r\n"));
    assert_eq!(
        sub.audio_host.as_deref(),
        Some("0123abcd.k.m3.ue1.app.chime.aws:3478")
    );
    assert_eq!(sub.audio_checkin, Some(false));
    assert_eq!(sub.audio_muted, Some(true));
    assert_eq!(sub.compressed_sdp_offer, None);
    let audio = &sub.send_streams[0];
    assert_eq!(audio.media_type(), SdkStreamMediaType::Audio);
    assert_eq!(
        audio.track_label.as_deref(),
        Some("AmazonChimeExpressAudio")
    );
    assert_eq!(
        (audio.stream_id, audio.group_id, audio.framerate),
        (Some(1), Some(1), Some(15))
    );
    assert_eq!(
        (audio.max_bitrate_kbps, audio.avg_bitrate_bps),
        (Some(600), Some(400_000))
    );
    assert_eq!(audio.attendee_id.as_deref(), Some(ATTENDEE));
    let config = &sub.video_subscription_configuration[0];
    assert_eq!(config.mid, "1");
    assert_eq!(config.stream_id, Some(12));
    assert_eq!(config.group_id, Some(2));
    assert_eq!(
        config.quality_adaptation_preference(),
        SdkVideoQualityAdaptationPreference::Balanced
    );
    // Re-encoding keeps receive_stream_ids unpacked (key 0x18 per element), as proto2 does.
    let reencoded = SdkSubscribeFrame {
        receive_stream_ids: vec![0, 12],
        ..Default::default()
    }
    .encode_to_vec();
    assert_eq!(reencoded, [0x18, 0x00, 0x18, 0x0C]);
}

#[test]
fn packed_repeated_scalars_are_accepted_too() {
    let packed = wire::len(3, &[0x00, 0x0C]);
    let bytes = wire::frame(&[wire::uint(1, 1), wire::uint(2, 3), wire::len(6, &packed)]);
    let sub = decode_frame(&bytes).unwrap().sub.unwrap();
    assert_eq!(sub.receive_stream_ids, [0, 12]);
}

#[test]
fn decodes_remote_video_update_and_requires_mid() {
    let config = [
        wire::string(1, "3"),
        wire::uint(3, 14),
        wire::uint(4, 2),
        wire::uint(5, 800),
    ]
    .concat();
    let body = [wire::len(1, &config), wire::string(2, "4")].concat();
    let bytes = wire::frame(&[wire::uint(1, 1), wire::uint(2, 24), wire::len(25, &body)]);
    let update = decode_frame(&bytes).unwrap().remote_video_update.unwrap();
    assert_eq!(update.added_or_updated_video_subscriptions[0].mid, "3");
    assert_eq!(
        update.added_or_updated_video_subscriptions[0].priority,
        Some(2)
    );
    assert_eq!(
        update.added_or_updated_video_subscriptions[0].target_bitrate_kbps,
        Some(800)
    );
    assert_eq!(update.removed_video_subscription_mids, ["4"]);

    // The same without `mid`.
    let config = [wire::uint(3, 14)].concat();
    let bytes = wire::frame(&[
        wire::uint(1, 1),
        wire::uint(2, 24),
        wire::len(25, &wire::len(1, &config)),
    ]);
    assert_eq!(
        decode_frame(&bytes),
        Err(FrameError::MissingRequiredField(
            "SdkVideoSubscriptionConfiguration.mid"
        ))
    );
    // And inside SUBSCRIBE.
    let bytes = wire::frame(&[
        wire::uint(1, 1),
        wire::uint(2, 3),
        wire::len(6, &wire::len(9, &config)),
    ]);
    assert_eq!(
        decode_frame(&bytes),
        Err(FrameError::MissingRequiredField(
            "SdkVideoSubscriptionConfiguration.mid"
        ))
    );
}

#[test]
fn missing_ping_pong_type_is_rejected() {
    let bytes = wire::frame(&[
        wire::uint(1, 1),
        wire::uint(2, 19),
        wire::len(20, &wire::uint(2, 1)),
    ]);
    assert_eq!(
        decode_frame(&bytes),
        Err(FrameError::MissingRequiredField("SdkPingPongFrame.type"))
    );
}

#[test]
fn client_metric_with_unknown_metric_and_dimension_types_decodes() {
    // Field 2 of SdkMetric is a double: key 0x11 (tag 2, wire type 1), 8 bytes little-endian.
    let value = [vec![0x11], 0.25f64.to_le_bytes().to_vec()].concat();
    let metric = [wire::uint(1, 9999), value].concat();
    let dimension = [
        wire::uint(1, 77),
        wire::len(2, &[wire::uint(3, 5), wire::uint(2, 1)].concat()),
    ]
    .concat();
    let stream = [
        wire::uint(3, 12),
        wire::uint(4, 2),
        wire::len(5, &metric),
        wire::len(6, &dimension),
        wire::uint(7, 2),
    ]
    .concat();
    let body = [wire::len(1, &metric), wire::len(2, &stream)].concat();
    let bytes = wire::frame(&[wire::uint(1, 1), wire::uint(2, 21), wire::len(22, &body)]);
    let metrics = decode_frame(&bytes).unwrap().client_metric.unwrap();
    assert_eq!(metrics.global_metrics[0].r#type, Some(9999));
    assert_eq!(metrics.global_metrics[0].value, Some(0.25));
    let stream = &metrics.stream_metric_frames[0];
    assert_eq!((stream.stream_id, stream.group_id), (Some(12), Some(2)));
    assert_eq!(stream.media_type(), SdkStreamMediaType::Video);
    assert_eq!(stream.dimensions[0].r#type, Some(77));
    let value = stream.dimensions[0].value.as_ref().unwrap();
    assert_eq!((value.uint_value, value.bool_value), (Some(5), Some(true)));
}

#[test]
fn declared_defaults_apply_to_unset_fields() {
    assert_eq!(SdkJoinFrame::default().protocol_version(), 2);
    assert_eq!(SdkJoinFrame::default().protocol_version, None);
    assert_eq!(
        SdkSubscribeFrame::default().duplex(),
        SdkStreamServiceType::Rx
    );
    assert_eq!(
        SdkNotificationFrame::default().level(),
        NotificationLevel::Error
    );
    // Unset optionals are not written.
    assert!(SdkJoinFrame::default().encode_to_vec().is_empty());
}

#[test]
fn transcript_travels_inside_a_data_message() {
    let transcript = SdkTranscriptFrame {
        events: vec![
            SdkTranscriptEvent {
                event: Some(sdk_transcript_event::Event::Status(
                    SdkTranscriptionStatus {
                        r#type: Some(sdk_transcription_status::Type::Started as i32),
                        event_time: Some(1_750_000_000_000),
                        transcription_region: s("us-east-1"),
                        transcription_configuration: s("{\"EngineTranscribeSettings\":{}}"),
                        message: None,
                    },
                )),
            },
            SdkTranscriptEvent {
                event: Some(sdk_transcript_event::Event::Transcript(SdkTranscript {
                    results: vec![SdkTranscriptResult {
                        alternatives: vec![SdkTranscriptAlternative {
                            items: vec![SdkTranscriptItem {
                                content: s("hello"),
                                end_time: Some(1200),
                                speaker_attendee_id: s(ATTENDEE),
                                speaker_external_user_id: s("alice"),
                                start_time: Some(900),
                                r#type: Some(sdk_transcript_item::Type::Pronunciation as i32),
                                vocabulary_filter_match: Some(false),
                                confidence: Some(0.98),
                                stable: Some(true),
                            }],
                            transcript: s("hello"),
                            entities: vec![SdkTranscriptEntity {
                                category: s("PII"),
                                confidence: Some(0.5),
                                content: s("hello"),
                                end_time: Some(1200),
                                start_time: Some(900),
                                r#type: s("NAME"),
                            }],
                        }],
                        channel_id: s("ch_0"),
                        end_time: Some(1200),
                        is_partial: Some(false),
                        result_id: s("r-1"),
                        start_time: Some(900),
                        language_code: s("en-US"),
                        language_identification: vec![SdkTranscriptLanguageWithScore {
                            language_code: s("en-US"),
                            score: Some(0.9),
                        }],
                    }],
                })),
            },
        ],
    };
    let data = transcript.encode_to_vec();
    // events[0] is field 1 of the frame; its status is field 1, the transcript field 2.
    assert_eq!(wire::fields(&data), [(1, 2), (1, 2)]);
    let frame = SdkSignalFrame::data_message(
        1,
        vec![SdkDataMessagePayload {
            topic: s(TRANSCRIPTION_TOPIC),
            data: Some(data),
            ..Default::default()
        }],
    );
    let decoded = decode_frame(&round_trip(&frame)).unwrap();
    let payload = &decoded.data_message.unwrap().messages[0];
    assert_eq!(payload.topic.as_deref(), Some("aws:chime:transcription"));
    let inner = SdkTranscriptFrame::decode(payload.data.as_deref().unwrap()).unwrap();
    assert_eq!(inner, transcript);
}

#[test]
fn legacy_prefix_and_rejections() {
    let mut bytes = encode_frame(&SdkSignalFrame::leave_ack(3));
    bytes[0] = LEGACY_FRAME_PREFIX;
    assert_eq!(decode_frame(&bytes), Ok(SdkSignalFrame::leave_ack(3)));
    bytes[0] = 0x00;
    assert_eq!(decode_frame(&bytes), Err(FrameError::UnknownPrefix(0)));
    assert_eq!(decode_frame(&[]), Err(FrameError::Empty));
    let too_large = vec![FRAME_PREFIX; MAX_FRAME_LEN + 1];
    assert!(matches!(
        decode_frame(&too_large),
        Err(FrameError::TooLarge { .. })
    ));
    // Type 6 and 99 are not in the enum.
    for unknown in [0, 6, 23, 99, -1] {
        let bytes = wire::frame(&[wire::uint(1, 1), wire::uint(2, unknown as i64 as u64)]);
        assert_eq!(
            decode_frame(&bytes),
            Err(FrameError::UnknownFrameType(unknown))
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Property tests (the fuzz tests of this crate)
// ---------------------------------------------------------------------------------------------

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,16}"
}

fn opt<S: Strategy>(strategy: S) -> impl Strategy<Value = Option<S::Value>> {
    proptest::option::of(strategy)
}

fn finite_f64() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("NaN is not equal to itself", |v| !v.is_nan())
}

fn list<S: Strategy>(strategy: S) -> impl Strategy<Value = Vec<S::Value>> {
    proptest::collection::vec(strategy, 0..4)
}

fn descriptor() -> impl Strategy<Value = SdkStreamDescriptor> {
    (
        (opt(any::<u32>()), opt(any::<u32>()), opt(any::<u32>())),
        (opt(text()), opt(any::<u32>()), opt(any::<u32>())),
        (opt(text()), opt(any::<i32>()), opt(text())),
        (opt(any::<u32>()), opt(any::<u32>())),
    )
        .prop_map(|(a, b, c, d)| SdkStreamDescriptor {
            stream_id: a.0,
            framerate: a.1,
            max_bitrate_kbps: a.2,
            track_label: b.0,
            group_id: b.1,
            avg_bitrate_bps: b.2,
            attendee_id: c.0,
            media_type: c.1,
            external_user_id: c.2,
            width: d.0,
            height: d.1,
        })
}

fn video_subscription_config() -> impl Strategy<Value = SdkVideoSubscriptionConfiguration> {
    (
        text(),
        opt(text()),
        opt(any::<u32>()),
        opt(any::<u32>()),
        opt(any::<u32>()),
        opt(any::<u32>()),
        opt(any::<i32>()),
    )
        .prop_map(
            |(mid, attendee_id, stream_id, priority, target, group_id, pref)| {
                SdkVideoSubscriptionConfiguration {
                    mid,
                    attendee_id,
                    stream_id,
                    priority,
                    target_bitrate_kbps: target,
                    group_id,
                    quality_adaptation_preference: pref,
                }
            },
        )
}

fn metric() -> impl Strategy<Value = SdkMetric> {
    (opt(any::<i32>()), opt(finite_f64())).prop_map(|(r#type, value)| SdkMetric { r#type, value })
}

/// A frame of a known type carrying a body for that type (and sometimes an error).
fn well_formed_frame() -> impl Strategy<Value = SdkSignalFrame> {
    type Body = BoxedStrategy<SdkSignalFrame>;
    let join: Body = (
        (opt(any::<u32>()), opt(any::<u32>()), opt(any::<u32>())),
        opt((
            opt(text()),
            opt(text()),
            opt(text()),
            opt(text()),
            opt(text()),
        )),
        (opt(any::<u64>()), opt(any::<bool>()), opt(any::<i32>())),
        (list(any::<i32>()), opt(any::<bool>()), opt(any::<bool>())),
    )
        .prop_map(|(a, details, b, c)| SdkSignalFrame {
            join: Some(SdkJoinFrame {
                protocol_version: a.0,
                max_num_of_videos: a.1,
                flags: a.2,
                client_details: details.map(|d| SdkClientDetails {
                    platform_name: d.0,
                    platform_version: d.1,
                    client_source: d.2,
                    chime_sdk_version: d.3,
                    os_version: d.4,
                    ..Default::default()
                }),
                audio_session_id: b.0,
                wants_compressed_sdp: b.1,
                server_side_network_adaption: b.2,
                supported_server_side_network_adaptions: c.0,
                wants_all_temporal_layers_in_index: c.1,
                disable_periodic_keyframe_request_on_content_sender: c.2,
            }),
            ..SdkSignalFrame::new(FrameType::Join, 0)
        })
        .boxed();
    let join_ack: Body = (
        opt((opt(text()), opt(text()), opt(any::<u32>()), list(text()))),
        opt(any::<u32>()),
        opt(any::<bool>()),
        opt(any::<i32>()),
    )
        .prop_map(|(turn, limit, compressed, adaption)| {
            SdkSignalFrame::join_ack(
                0,
                SdkJoinAckFrame {
                    turn_credentials: turn.map(|t| SdkTurnCredentials {
                        username: t.0,
                        password: t.1,
                        ttl: t.2,
                        uris: t.3,
                    }),
                    video_subscription_limit: limit,
                    wants_compressed_sdp: compressed,
                    default_server_side_network_adaption: adaption,
                },
            )
        })
        .boxed();
    let subscribe: Body = (
        (opt(any::<i32>()), list(descriptor()), list(any::<u32>())),
        (
            opt(text()),
            opt(text()),
            opt(any::<bool>()),
            opt(any::<bool>()),
        ),
        (opt(list(any::<u8>())), list(video_subscription_config())),
    )
        .prop_map(|(a, b, c)| SdkSignalFrame {
            sub: Some(SdkSubscribeFrame {
                duplex: a.0,
                send_streams: a.1,
                receive_stream_ids: a.2,
                sdp_offer: b.0,
                audio_host: b.1,
                audio_checkin: b.2,
                audio_muted: b.3,
                compressed_sdp_offer: c.0,
                video_subscription_configuration: c.1,
            }),
            ..SdkSignalFrame::new(FrameType::Subscribe, 0)
        })
        .boxed();
    let subscribe_ack: Body = (
        opt(any::<i32>()),
        list((opt(text()), opt(any::<u32>()), opt(any::<u32>()))),
        opt(text()),
        list((opt(any::<u32>()), opt(any::<u32>()), opt(text()))),
        opt(list(any::<u8>())),
    )
        .prop_map(|(duplex, allocations, answer, tracks, compressed)| {
            SdkSignalFrame::subscribe_ack(
                0,
                SdkSubscribeAckFrame {
                    duplex,
                    allocations: allocations
                        .into_iter()
                        .map(|a| SdkStreamAllocation {
                            track_label: a.0,
                            stream_id: a.1,
                            group_id: a.2,
                        })
                        .collect(),
                    sdp_answer: answer,
                    tracks: tracks
                        .into_iter()
                        .map(|t| SdkTrackMapping {
                            stream_id: t.0,
                            ssrc: t.1,
                            track_label: t.2,
                        })
                        .collect(),
                    compressed_sdp_answer: compressed,
                },
            )
        })
        .boxed();
    let index: Body = (
        opt(any::<bool>()),
        list(descriptor()),
        list(any::<u32>()),
        opt(any::<u32>()),
        list(any::<i32>()),
    )
        .prop_map(|(at_capacity, sources, paused, participants, codecs)| {
            SdkSignalFrame::index(
                0,
                SdkIndexFrame {
                    at_capacity,
                    sources,
                    paused_at_source_ids: paused,
                    num_participants: participants,
                    supported_receive_codec_intersection: codecs,
                },
            )
        })
        .boxed();
    let pause_resume: Body = (any::<bool>(), list(any::<u32>()), list(any::<u32>()))
        .prop_map(|(pause, stream_ids, group_ids)| {
            let body = SdkPauseResumeFrame {
                stream_ids,
                group_ids,
            };
            if pause {
                SdkSignalFrame::pause(0, body)
            } else {
                SdkSignalFrame::resume(0, body)
            }
        })
        .boxed();
    let leave: Body = any::<bool>()
        .prop_map(|ack| {
            if ack {
                SdkSignalFrame::leave_ack(0)
            } else {
                SdkSignalFrame {
                    leave: Some(SdkLeaveFrame {}),
                    ..SdkSignalFrame::new(FrameType::Leave, 0)
                }
            }
        })
        .boxed();
    let bitrates: Body = (
        list((opt(any::<u32>()), opt(any::<u32>()))),
        opt(any::<u32>()),
    )
        .prop_map(|(bitrates, available)| {
            SdkSignalFrame::bitrates(
                0,
                SdkBitrateFrame {
                    bitrates: bitrates
                        .into_iter()
                        .map(|b| SdkBitrate {
                            source_stream_id: b.0,
                            avg_bitrate_bps: b.1,
                        })
                        .collect(),
                    server_available_outgoing_bitrate: available,
                },
            )
        })
        .boxed();
    let audio_control: Body = opt(any::<bool>())
        .prop_map(|muted| SdkSignalFrame {
            audio_control: Some(SdkAudioControlFrame { muted }),
            ..SdkSignalFrame::new(FrameType::AudioControl, 0)
        })
        .boxed();
    let audio_metadata: Body = list((
        opt(any::<u32>()),
        opt(any::<u32>()),
        opt(any::<bool>()),
        opt(any::<u32>()),
    ))
    .prop_map(|states| {
        SdkSignalFrame::audio_metadata(
            0,
            states
                .into_iter()
                .map(|s| SdkAudioAttendeeState {
                    audio_stream_id: s.0,
                    volume: s.1,
                    muted: s.2,
                    signal_strength: s.3,
                })
                .collect(),
        )
    })
    .boxed();
    let audio_stream_id_info: Body = list((
        opt(any::<u32>()),
        opt(text()),
        opt(any::<bool>()),
        opt(text()),
        opt(any::<bool>()),
    ))
    .prop_map(|streams| {
        SdkSignalFrame::audio_stream_id_info(
            0,
            streams
                .into_iter()
                .map(|s| SdkAudioStreamIdInfo {
                    audio_stream_id: s.0,
                    attendee_id: s.1,
                    muted: s.2,
                    external_user_id: s.3,
                    dropped: s.4,
                })
                .collect(),
        )
    })
    .boxed();
    let ping_pong: Body = (any::<i32>(), any::<u32>())
        .prop_map(|(r#type, ping_id)| SdkSignalFrame {
            ping_pong: Some(SdkPingPongFrame { r#type, ping_id }),
            ..SdkSignalFrame::new(FrameType::PingPong, 0)
        })
        .boxed();
    let audio_status: Body = any::<u32>()
        .prop_map(|status| SdkSignalFrame::audio_status(0, status))
        .boxed();
    let client_metric: Body = (
        list(metric()),
        list((
            opt(any::<u32>()),
            opt(any::<u32>()),
            list(metric()),
            list((
                opt(any::<i32>()),
                opt((opt(text()), opt(any::<bool>()), opt(any::<u64>()))),
            )),
            opt(any::<i32>()),
        )),
    )
        .prop_map(|(global_metrics, streams)| SdkSignalFrame {
            client_metric: Some(SdkClientMetricFrame {
                global_metrics,
                stream_metric_frames: streams
                    .into_iter()
                    .map(|s| SdkStreamMetricFrame {
                        stream_id: s.0,
                        group_id: s.1,
                        metrics: s.2,
                        dimensions: s
                            .3
                            .into_iter()
                            .map(|(r#type, value)| SdkStreamDimension {
                                r#type,
                                value: value.map(|v| SdkDimensionValue {
                                    string_value: v.0,
                                    bool_value: v.1,
                                    uint_value: v.2,
                                }),
                            })
                            .collect(),
                        media_type: s.4,
                    })
                    .collect(),
            }),
            ..SdkSignalFrame::new(FrameType::ClientMetric, 0)
        })
        .boxed();
    let data_message: Body = list((
        (opt(text()), opt(list(any::<u8>())), opt(any::<u32>())),
        (opt(text()), opt(any::<i64>()), opt(text())),
    ))
    .prop_map(|messages| {
        SdkSignalFrame::data_message(
            0,
            messages
                .into_iter()
                .map(|(a, b)| SdkDataMessagePayload {
                    topic: a.0,
                    data: a.1,
                    lifetime_ms: a.2,
                    sender_attendee_id: b.0,
                    ingest_time_ns: b.1,
                    sender_external_user_id: b.2,
                })
                .collect(),
        )
    })
    .boxed();
    let remote_video_update: Body = (list(video_subscription_config()), list(text()))
        .prop_map(|(added, removed)| SdkSignalFrame {
            remote_video_update: Some(SdkRemoteVideoUpdateFrame {
                added_or_updated_video_subscriptions: added,
                removed_video_subscription_mids: removed,
            }),
            ..SdkSignalFrame::new(FrameType::RemoteVideoUpdate, 0)
        })
        .boxed();
    let primary: Body = (
        0u8..3,
        opt((opt(text()), opt(text()), opt(text()))),
        opt(any::<u32>()),
    )
        .prop_map(|(which, credentials, status)| match which {
            0 => SdkSignalFrame {
                primary_meeting_join: Some(SdkPrimaryMeetingJoinFrame {
                    credentials: credentials.map(|c| SdkMeetingSessionCredentials {
                        attendee_id: c.0,
                        external_user_id: c.1,
                        join_token: c.2,
                    }),
                }),
                ..SdkSignalFrame::new(FrameType::PrimaryMeetingJoin, 0)
            },
            1 => SdkSignalFrame::primary_meeting_join_ack(0, status),
            _ => SdkSignalFrame::primary_meeting_leave(0),
        })
        .boxed();
    let notification: Body = (opt(any::<i32>()), opt(text()))
        .prop_map(|(level, message)| SdkSignalFrame {
            notification: Some(SdkNotificationFrame { level, message }),
            ..SdkSignalFrame::new(FrameType::Notification, 0)
        })
        .boxed();
    let timing: Body = (
        list((list(opt(any::<i64>())), opt(any::<bool>()))),
        list((opt(any::<i64>()), opt(any::<i64>()), opt(any::<bool>()))),
        list((opt(any::<u32>()), opt(any::<i64>()), opt(any::<bool>()))),
    )
        .prop_map(|(signaling, audio, video)| SdkSignalFrame {
            meeting_session_timing: Some(SdkMeetingSessionTimingFrame {
                signaling: signaling
                    .into_iter()
                    .map(|(times, timed_out)| {
                        let at = |i: usize| times.get(i).copied().flatten();
                        SdkMeetingSessionSignalingTiming {
                            start_ms: at(0),
                            join_sent_ms: at(1),
                            join_ack_received_ms: at(2),
                            subscribe_ack_ms: at(3),
                            timed_out,
                            ..Default::default()
                        }
                    })
                    .collect(),
                remote_audio: audio
                    .iter()
                    .map(|a| SdkMeetingSessionRemoteAudioTiming {
                        added_ms: a.0,
                        first_frame_rendered_ms: a.1,
                        removed: a.2,
                        ..Default::default()
                    })
                    .collect(),
                local_audio: audio
                    .iter()
                    .map(|a| SdkMeetingSessionLocalAudioTiming {
                        first_frame_captured_ms: a.0,
                        first_packet_sent_ms: a.1,
                        timed_out: a.2,
                        ..Default::default()
                    })
                    .collect(),
                local_video: audio
                    .iter()
                    .map(|a| SdkMeetingSessionLocalVideoTiming {
                        added_ms: a.1,
                        first_frame_sent_ms: a.0,
                        removed: a.2,
                        ..Default::default()
                    })
                    .collect(),
                remote_videos: video
                    .into_iter()
                    .map(|v| SdkMeetingSessionRemoteVideoTiming {
                        group_id: v.0,
                        first_packet_received_ms: v.1,
                        timed_out: v.2,
                        ..Default::default()
                    })
                    .collect(),
            }),
            ..SdkSignalFrame::new(FrameType::MeetingSessionTiming, 0)
        })
        .boxed();

    let bodies = Union::new(vec![
        join,
        join_ack,
        subscribe,
        subscribe_ack,
        index,
        pause_resume,
        leave,
        bitrates,
        audio_control,
        audio_metadata,
        audio_stream_id_info,
        ping_pong,
        audio_status,
        client_metric,
        data_message,
        remote_video_update,
        primary,
        notification,
        timing,
    ]);
    (bodies, any::<u64>(), opt((opt(any::<u32>()), opt(text())))).prop_map(
        |(mut frame, timestamp_ms, error)| {
            frame.timestamp_ms = timestamp_ms;
            if let Some((status, description)) = error {
                frame.error = Some(SdkErrorFrame {
                    status,
                    description,
                });
            }
            frame
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_frame(&bytes);
    }

    #[test]
    fn decode_never_panics_on_prefixed_arbitrary_bytes(
        prefix in prop_oneof![Just(FRAME_PREFIX), Just(LEGACY_FRAME_PREFIX)],
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let bytes = [vec![prefix], body].concat();
        let _ = decode_frame(&bytes);
    }

    #[test]
    fn decode_never_panics_on_mutated_frames(
        frame in well_formed_frame(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut bytes = encode_frame(&frame);
        for (at, byte, op) in edits {
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => { bytes.truncate(i.max(1)); }
            }
        }
        if let Ok(decoded) = decode_frame(&bytes) {
            // Whatever decodes is a known frame type with its required fields set.
            prop_assert!(decoded.frame_type().is_some());
        }
    }

    #[test]
    fn well_formed_frames_round_trip(frame in well_formed_frame()) {
        let bytes = encode_frame(&frame);
        prop_assert_eq!(bytes[0], FRAME_PREFIX);
        prop_assert_eq!(decode_frame(&bytes), Ok(frame));
    }
}
