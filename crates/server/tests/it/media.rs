//! The signaling WebSocket of the real binary: authentication by subprotocol, rejections, and
//! how the control plane and the live meeting plane follow each other (connections keep a
//! meeting alive; DeleteAttendee and DeleteMeeting reach the connected clients).

use std::time::Duration;

use carillon_signaling::proto::sdk_signal_frame::Type as FrameType;
use carillon_signaling::proto::{
    SdkDataMessageFrame, SdkDataMessagePayload, SdkJoinFrame, SdkSignalFrame,
};
use carillon_signaling::{decode_frame, encode_frame};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::harness::{Server, create_meeting_with};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(signaling_url: &str, token: &str) -> (Socket, String) {
    let url = format!(
        "{signaling_url}?X-Chime-Control-Protocol-Version=3&X-Amzn-Chime-Send-Close-On-Error=1"
    );
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&format!("_aws_wt_session, {token}")).unwrap(),
    );
    let (socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    let protocol = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (socket, protocol)
}

async fn send(socket: &mut Socket, frame: SdkSignalFrame) {
    socket
        .send(Message::Binary(encode_frame(&frame).into()))
        .await
        .unwrap();
}

/// Reads frames until one of `kind` arrives (or the socket closes: then None and the code).
async fn expect(socket: &mut Socket, kind: FrameType) -> Result<SdkSignalFrame, Option<u16>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let next = tokio::time::timeout_at(deadline, socket.next()).await;
        match next {
            Ok(Some(Ok(Message::Binary(bytes)))) => {
                let frame = decode_frame(&bytes).expect("the server sends valid frames");
                if frame.frame_type() == Some(kind) {
                    return Ok(frame);
                }
            }
            Ok(Some(Ok(Message::Close(close)))) => return Err(close.map(|c| u16::from(c.code))),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_))) | Ok(None) => return Err(None),
            Err(_) => panic!("no {kind:?} frame within 5 s"),
        }
    }
}

async fn join(socket: &mut Socket, audio_session_id: u64) {
    send(
        socket,
        SdkSignalFrame {
            join: Some(SdkJoinFrame {
                protocol_version: Some(2),
                flags: Some(2),
                audio_session_id: Some(audio_session_id),
                ..Default::default()
            }),
            ..SdkSignalFrame::new(FrameType::Join, 0)
        },
    )
    .await;
    expect(socket, FrameType::JoinAck).await.unwrap();
    expect(socket, FrameType::Index).await.unwrap();
    expect(socket, FrameType::AudioStreamIdInfo).await.unwrap();
}

struct Meeting {
    id: String,
    signaling: String,
    tokens: Vec<(String, String)>,
}

async fn meeting_with(server: &Server, users: &[&str]) -> Meeting {
    let created = create_meeting_with(&server.client(), "us-east-1", "signaling-test", users).await;
    Meeting {
        id: created.id,
        signaling: created.signaling,
        tokens: created
            .attendees
            .iter()
            .map(|a| {
                (
                    a.attendee_id().unwrap().to_owned(),
                    a.join_token().unwrap().to_owned(),
                )
            })
            .collect(),
    }
}

#[tokio::test]
async fn join_token_as_subprotocol_and_rejections() {
    let server = Server::start(&[]);
    let m = meeting_with(&server, &["alice"]).await;
    let (mut socket, protocol) = open(&m.signaling, &m.tokens[0].1).await;
    assert_eq!(protocol, "_aws_wt_session");
    join(&mut socket, 1).await;

    // A wrong token: the upgrade succeeds, then AUDIO_STATUS 403 and close 4403.
    let (mut bad, _) = open(&m.signaling, "bm90LWEtdG9rZW4").await;
    let status = expect(&mut bad, FrameType::AudioStatus).await.unwrap();
    assert_eq!(status.audio_status.unwrap().audio_status, Some(403));
    assert_eq!(
        expect(&mut bad, FrameType::JoinAck).await.err(),
        Some(Some(4403))
    );

    // Another meeting's URL with a valid token is refused too.
    let other = meeting_with(&server, &["bob"]).await;
    let wrong_meeting = m.signaling.replace(&m.id, &other.id);
    let (mut bad, _) = open(&wrong_meeting, &m.tokens[0].1).await;
    assert_eq!(
        expect(&mut bad, FrameType::JoinAck).await.err(),
        Some(Some(4403))
    );

    // An ended meeting answers 410 / 4410 (MeetingEnded).
    server
        .client()
        .delete_meeting()
        .meeting_id(&other.id)
        .send()
        .await
        .unwrap();
    let (mut ended, _) = open(&other.signaling, &other.tokens[0].1).await;
    let status = expect(&mut ended, FrameType::AudioStatus).await.unwrap();
    assert_eq!(status.audio_status.unwrap().audio_status, Some(410));
}

/// A message larger than the server's WebSocket fragment (1 KiB) leaves as several frames
/// and arrives as the one message it was.
#[tokio::test]
async fn a_message_larger_than_a_fragment_arrives_whole() {
    let server = Server::start(&[]);
    let m = meeting_with(&server, &["alice", "bob"]).await;
    let (mut alice, _) = open(&m.signaling, &m.tokens[0].1).await;
    join(&mut alice, 1).await;
    let (mut bob, _) = open(&m.signaling, &m.tokens[1].1).await;
    join(&mut bob, 2).await;
    let data: Vec<u8> = (0..2048u32).map(|i| (i * 7 % 251) as u8).collect();
    send(
        &mut alice,
        SdkSignalFrame {
            data_message: Some(SdkDataMessageFrame {
                messages: vec![SdkDataMessagePayload {
                    topic: Some("big".into()),
                    data: Some(data.clone()),
                    ..Default::default()
                }],
            }),
            ..SdkSignalFrame::new(FrameType::DataMessage, 0)
        },
    )
    .await;
    let received = expect(&mut bob, FrameType::DataMessage).await.unwrap();
    assert!(encode_frame(&received).len() > 2 * 1024);
    let message = &received.data_message.unwrap().messages[0];
    assert_eq!(message.data.as_deref(), Some(&data[..]));
    assert_eq!(message.topic.as_deref(), Some("big"));
}

/// A client message over the 1 MiB cap closes the connection with 1009 (message too big).
#[tokio::test]
async fn an_oversized_message_closes_with_1009() {
    let server = Server::start(&[]);
    let m = meeting_with(&server, &["alice"]).await;
    let (mut alice, _) = open(&m.signaling, &m.tokens[0].1).await;
    join(&mut alice, 1).await;
    let _ = alice.send(Message::Binary(vec![5u8; 1 << 21].into())).await;
    assert_eq!(
        expect(&mut alice, FrameType::JoinAck).await.err(),
        Some(Some(1009))
    );
}

#[tokio::test]
async fn a_connected_attendee_keeps_the_meeting_alive() {
    let server = Server::start(&["--reconnect-grace", "100ms"]);
    let m = meeting_with(&server, &["alice"]).await;
    let client = server.client();
    let (mut socket, _) = open(&m.signaling, &m.tokens[0].1).await;
    join(&mut socket, 7).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Ten minutes pass while alice is connected: the meeting stays.
    server.advance_clock(10 * 60).await;
    client.get_meeting().meeting_id(&m.id).send().await.unwrap();
    // She leaves; five minutes later nobody has been connected, and the meeting ends.
    send(&mut socket, SdkSignalFrame::new(FrameType::Leave, 0)).await;
    expect(&mut socket, FrameType::LeaveAck).await.unwrap();
    drop(socket);
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.advance_clock(4 * 60).await;
    client.get_meeting().meeting_id(&m.id).send().await.unwrap();
    server.advance_clock(61).await;
    let err = client
        .get_meeting()
        .meeting_id(&m.id)
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_not_found_exception());
}

#[tokio::test]
async fn delete_attendee_and_delete_meeting_reach_connected_clients() {
    let server = Server::start(&[]);
    let m = meeting_with(&server, &["alice", "bob"]).await;
    let (mut alice, _) = open(&m.signaling, &m.tokens[0].1).await;
    let (mut bob, _) = open(&m.signaling, &m.tokens[1].1).await;
    join(&mut alice, 1).await;
    join(&mut bob, 2).await;
    let client = server.client();
    let started = std::time::Instant::now();
    client
        .delete_attendee()
        .meeting_id(&m.id)
        .attendee_id(&m.tokens[1].0)
        .send()
        .await
        .unwrap();
    let status = expect(&mut bob, FrameType::AudioStatus).await.unwrap();
    assert_eq!(status.audio_status.unwrap().audio_status, Some(411));
    assert!(started.elapsed() < Duration::from_secs(1));
    // Alice saw Bob arrive, and now sees him leave.
    let arrival = expect(&mut alice, FrameType::AudioStreamIdInfo)
        .await
        .unwrap();
    assert_eq!(
        arrival.audio_stream_id_info.unwrap().streams[0]
            .attendee_id
            .as_deref(),
        Some(m.tokens[1].0.as_str())
    );
    let departure = expect(&mut alice, FrameType::AudioStreamIdInfo)
        .await
        .unwrap();
    let entry = &departure.audio_stream_id_info.unwrap().streams[0];
    assert!(entry.attendee_id.is_none() && entry.muted.is_none());

    let started = std::time::Instant::now();
    client
        .delete_meeting()
        .meeting_id(&m.id)
        .send()
        .await
        .unwrap();
    let status = expect(&mut alice, FrameType::AudioStatus).await.unwrap();
    assert_eq!(status.audio_status.unwrap().audio_status, Some(410));
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn an_auto_ended_primary_ends_its_replicas_connections() {
    let server = Server::start(&[]);
    let client = server.client();
    let primary = meeting_with(&server, &["host"]).await;
    let replica = client
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("overflow")
        .primary_meeting_id(&primary.id)
        .send()
        .await
        .unwrap();
    let replica = replica.meeting().unwrap();
    let replica_id = replica.meeting_id().unwrap().to_owned();
    let signaling = replica
        .media_placement()
        .unwrap()
        .signaling_url()
        .unwrap()
        .to_owned();
    let viewer = client
        .create_attendee()
        .meeting_id(&replica_id)
        .external_user_id("viewer")
        .send()
        .await
        .unwrap();
    let token = viewer.attendee().unwrap().join_token().unwrap().to_owned();
    let (mut socket, _) = open(&signaling, &token).await;
    join(&mut socket, 1).await;
    // A replica viewer does not keep the primary alive: five minutes with nobody in the
    // primary end it, and its replica with it.
    server.advance_clock(5 * 60 + 1).await;
    let started = std::time::Instant::now();
    let status = expect(&mut socket, FrameType::AudioStatus).await.unwrap();
    assert_eq!(status.audio_status.unwrap().audio_status, Some(410));
    // The lifecycle sweeper runs once a second; the notice reaches the connection at once.
    assert!(started.elapsed() < Duration::from_millis(1_500));
    for id in [&primary.id, &replica_id] {
        let err = client
            .get_meeting()
            .meeting_id(id)
            .send()
            .await
            .unwrap_err();
        assert!(err.into_service_error().is_not_found_exception());
    }
}
