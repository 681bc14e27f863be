//! SDP offers and UDP datagrams into the media engine (`carillon_media::Engine`).
//!
//! Input: `<offer>\0` then datagrams, each as a 2-byte big-endian length and its bytes. A
//! joined session SUBSCRIBEs with the offer (also through the SDP helpers of
//! `carillon_media::sdp`), then every datagram arrives from the client's address and from an
//! unknown one, and time moves on.
//!
//! Beyond "never panics": the SUBSCRIBE gets exactly one SUBSCRIBE_ACK, whatever the offer.

#![no_main]

use std::time::{Duration, Instant};

use carillon_control::{Capabilities, MediaCapability};
use carillon_media::{Engine, EngineConfig, Output, Participant, ParticipantKey, sdp};
use carillon_signaling::proto::sdk_signal_frame::Type as FrameType;
use carillon_signaling::proto::{SdkJoinFrame, SdkSignalFrame, SdkSubscribeFrame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (offer, mut rest) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let offer = String::from_utf8_lossy(offer).into_owned();
    let _ = sdp::OfferLayout::parse(&offer);
    let _ = sdp::without_audio_transport_cc(&offer);
    let _ = sdp::ssrcs_by_mid(&offer);
    let _ = sdp::label_video_tracks(&offer, &["0".to_owned(), "1".to_owned()]);

    let server = "127.0.0.1:3478".parse().unwrap();
    let client = "127.0.0.1:5000".parse().unwrap();
    let mut now = Instant::now();
    let mut engine = Engine::new(EngineConfig::new(server), now, 1_700_000_000_000);
    let all = Capabilities {
        audio: MediaCapability::SendReceive,
        video: MediaCapability::SendReceive,
        content: MediaCapability::SendReceive,
    };
    engine.open_session(
        now,
        1,
        Participant {
            meeting: "4101582d-72d2-451b-8ac0-f0f127992713".parse().unwrap(),
            key: ParticipantKey {
                attendee: "00000000-0000-0000-0000-000000000001".parse().unwrap(),
                content: false,
            },
            external_user_id: "fuzz".into(),
            capabilities: all,
            primary: None,
        },
    );
    engine.handle_frame(
        now,
        1,
        SdkSignalFrame {
            join: Some(SdkJoinFrame {
                protocol_version: Some(2),
                audio_session_id: Some(1),
                ..Default::default()
            }),
            ..SdkSignalFrame::new(FrameType::Join, 0)
        },
    );
    engine.handle_frame(
        now,
        1,
        SdkSignalFrame {
            sub: Some(SdkSubscribeFrame {
                duplex: Some(3),
                receive_stream_ids: vec![0, 1],
                sdp_offer: Some(offer),
                ..Default::default()
            }),
            ..SdkSignalFrame::new(FrameType::Subscribe, 0)
        },
    );
    let mut acks = 0;
    let mut count = |engine: &mut Engine| {
        while let Some(output) = engine.poll_output() {
            if let Output::Frame { frame, .. } = output
                && frame.frame_type() == Some(FrameType::SubscribeAck)
            {
                acks += 1;
            }
        }
    };
    count(&mut engine);
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let datagram = &rest[2..2 + len];
        rest = &rest[2 + len..];
        engine.handle_datagram(now, client, server, datagram);
        engine.handle_datagram(now, "10.1.2.3:9".parse().unwrap(), server, datagram);
        now += Duration::from_millis(7);
        engine.handle_timeout(now);
        count(&mut engine);
    }
    assert_eq!(acks, 1, "one SUBSCRIBE_ACK per SUBSCRIBE");
});
