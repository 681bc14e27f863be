//! Meeting events delivered to a webhook by the real binary: the signature, the exact
//! envelope, the whole life of a meeting (media-plane joins included), and a receiver that
//! refuses for a while and then gets everything.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_chimesdkmeetings::types::{
    EngineTranscribeSettings, TranscribeLanguageCode, TranscriptionConfiguration,
};
use carillon_signaling::proto::sdk_signal_frame::Type as FrameType;
use carillon_signaling::proto::{SdkJoinFrame, SdkSignalFrame};
use carillon_signaling::{decode_frame, encode_frame};
use futures_util::{SinkExt, StreamExt};
use hmac::{KeyInit, Mac};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::harness::{CreatedMeeting, Server, create_meeting_with};

const SECRET: &str = "webhook-test-secret";

/// The server environment that sends every event to the webhook at `url`, signed.
fn webhook_env(url: &str) -> [(&'static str, &str); 2] {
    [
        ("CARILLON_WEBHOOKS", url),
        ("CARILLON_WEBHOOK_SECRET", SECRET),
    ]
}

/// One POST as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A minimal HTTP/1.1 receiver (keep-alive aware) that records every request and answers
/// 200, or 503 while `refuse` is set.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    refused: Arc<Mutex<u32>>,
    refuse: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/chime", listener.local_addr().unwrap());
        let receiver = Receiver::default();
        let r = receiver.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let r = r.clone();
                tokio::spawn(async move { r.serve(stream).await });
            }
        });
        (receiver, url)
    }

    async fn serve(&self, mut stream: tokio::net::TcpStream) {
        let mut buf = Vec::new();
        loop {
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i;
                }
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            let mut lines = head.lines();
            let request_line = lines.next().unwrap_or_default().to_owned();
            let headers: HashMap<String, String> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let length: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < head_end + 4 + length {
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body = buf[head_end + 4..head_end + 4 + length].to_vec();
            buf.drain(..head_end + 4 + length);
            assert!(
                request_line.starts_with("POST /hooks/chime "),
                "{request_line}"
            );
            let refuse = self.refuse.load(std::sync::atomic::Ordering::SeqCst);
            let answer: &[u8] = if refuse {
                *self.refused.lock().unwrap() += 1;
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy"
            } else {
                self.got.lock().unwrap().push(Received { headers, body });
                b"HTTP/1.1 204 No Content\r\n\r\n"
            };
            if stream.write_all(answer).await.is_err() {
                return;
            }
        }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until the deliveries (deduplicated by id) contain `want` of each event type.
    async fn wait_for(&self, want: &[(&str, usize)]) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.received();
            let counts = count_types(&dedupe(&got));
            if want
                .iter()
                .all(|(t, n)| counts.get(*t).copied().unwrap_or(0) >= *n)
            {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "timed out; have {counts:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn dedupe(got: &[Received]) -> Vec<serde_json::Value> {
    let mut seen = HashSet::new();
    got.iter()
        .map(Received::json)
        .filter(|v| seen.insert(v["id"].as_str().unwrap().to_owned()))
        .collect()
}

fn count_types(events: &[serde_json::Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for e in events {
        *counts
            .entry(e["detail"]["eventType"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

/// What a receiver does: HMAC-SHA256 of "<timestamp>.<body>", compared as hex.
fn signature_ok(secret: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    header == format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(signaling_url: &str, token: &str) -> Socket {
    let mut request = signaling_url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&format!("_aws_wt_session, {token}")).unwrap(),
    );
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

async fn expect(socket: &mut Socket, kind: FrameType) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Binary(bytes)))) => {
                if decode_frame(&bytes).unwrap().frame_type() == Some(kind) {
                    return;
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no {kind:?} frame: {other:?}"),
        }
    }
}

async fn send(socket: &mut Socket, frame: SdkSignalFrame) {
    socket
        .send(Message::Binary(encode_frame(&frame).into()))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_meeting_lifecycle_reaches_the_webhook_signed_and_exact() {
    let (receiver, url) = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        tmp.path(),
        &["--reconnect-grace", "100ms"],
        &webhook_env(&url),
    );
    let client = server.client();
    let CreatedMeeting {
        id: meeting_id,
        signaling,
        attendees,
    } = create_meeting_with(&client, "eu-west-2", "events-it", &["alice", "bob"]).await;
    let (alice, bob) = (&attendees[0], &attendees[1]);
    // A new attendee, then an idempotent repeat (no second AttendeeAdded).
    for _ in 0..2 {
        client
            .create_attendee()
            .meeting_id(&meeting_id)
            .external_user_id("carol")
            .send()
            .await
            .unwrap();
    }
    // Alice joins through the signaling WebSocket and leaves.
    let mut socket = open(&signaling, alice.join_token().unwrap()).await;
    send(
        &mut socket,
        SdkSignalFrame {
            join: Some(SdkJoinFrame {
                protocol_version: Some(2),
                flags: Some(2),
                audio_session_id: Some(1),
                ..Default::default()
            }),
            ..SdkSignalFrame::new(FrameType::Join, 0)
        },
    )
    .await;
    expect(&mut socket, FrameType::JoinAck).await;
    send(&mut socket, SdkSignalFrame::new(FrameType::Leave, 0)).await;
    expect(&mut socket, FrameType::LeaveAck).await;
    drop(socket);
    client
        .start_meeting_transcription()
        .meeting_id(&meeting_id)
        .transcription_configuration(
            TranscriptionConfiguration::builder()
                .engine_transcribe_settings(
                    EngineTranscribeSettings::builder()
                        .language_code(TranscribeLanguageCode::EnUs)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    client
        .stop_meeting_transcription()
        .meeting_id(&meeting_id)
        .send()
        .await
        .unwrap();
    client
        .delete_attendee()
        .meeting_id(&meeting_id)
        .attendee_id(bob.attendee_id().unwrap())
        .send()
        .await
        .unwrap();
    // The leave reaches the control plane asynchronously: let it land before the end.
    tokio::time::sleep(Duration::from_millis(300)).await;
    client
        .delete_meeting()
        .meeting_id(&meeting_id)
        .send()
        .await
        .unwrap();

    let want = [
        ("chime:MeetingStarted", 1),
        ("chime:AttendeeAdded", 3),
        ("chime:AttendeeAuthorized", 1),
        ("chime:AttendeeJoined", 1),
        ("chime:AttendeeLeft", 1),
        ("chime:TranscriptionStarted", 1),
        ("chime:TranscriptionStopped", 1),
        ("chime:AttendeeDeleted", 1),
        ("chime:MeetingEnded", 1),
    ];
    let got = receiver.wait_for(&want).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_all = receiver.received();
    assert!(got_all.len() >= got.len());
    let events = dedupe(&got_all);
    assert_eq!(
        count_types(&events),
        want.iter()
            .map(|(t, n)| (t.to_string(), *n))
            .collect::<HashMap<_, _>>(),
        "exactly these events, nothing invented"
    );

    for r in &got_all {
        let ts = &r.headers["x-carillon-timestamp"];
        let sig = &r.headers["x-carillon-signature"];
        assert_eq!(r.headers["content-type"], "application/json");
        let age = SystemTimeSecs::now() - ts.parse::<i64>().unwrap();
        assert!((-5..120).contains(&age), "timestamp {ts} is not now");
        assert!(signature_ok(SECRET, ts, &r.body, sig), "bad signature");
        // A tampered body (or a wrong secret) does not verify.
        let mut tampered = r.body.clone();
        let last = tampered.len() - 2;
        tampered[last] ^= 1;
        assert!(!signature_ok(SECRET, ts, &tampered, sig));
        assert!(!signature_ok("wrong", ts, &r.body, sig));
        assert_eq!(
            r.headers["x-carillon-event-id"],
            r.json()["id"].as_str().unwrap()
        );
    }

    let alice_id = alice.attendee_id().unwrap();
    for e in &events {
        let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        let mut sorted_keys = keys.clone();
        sorted_keys.sort();
        assert_eq!(
            sorted_keys,
            [
                "account",
                "detail",
                "detail-type",
                "id",
                "region",
                "resources",
                "source",
                "time",
                "version"
            ]
        );
        assert_eq!(e["version"], "0");
        assert_eq!(e["detail-type"], "Chime Meeting State Change");
        assert_eq!(e["source"], "aws.chime");
        assert_eq!(e["account"], "000000000000");
        assert_eq!(e["region"], "us-east-1");
        assert_eq!(e["resources"], serde_json::json!([]));
        let time = e["time"].as_str().unwrap();
        assert!(
            time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "{time}"
        );
        let d = &e["detail"];
        assert_eq!(d["version"], "0");
        assert_eq!(d["meetingId"], meeting_id.as_str());
        assert_eq!(d["externalMeetingId"], "events-it");
        assert_eq!(d["mediaRegion"], "eu-west-2");
        let ts = d["timestamp"].as_u64().expect("timestamp is a JSON number");
        assert_eq!(civil_time(ts), time, "time is the timestamp in seconds");
        let kind = d["eventType"].as_str().unwrap();
        match kind {
            "chime:AttendeeJoined" | "chime:AttendeeLeft" => {
                assert_eq!(d["attendeeId"], alice_id);
                assert_eq!(d["externalUserId"], "alice");
                assert_eq!(d["networkType"], "Voip");
            }
            "chime:AttendeeAuthorized" => {
                assert_eq!(d["attendeeId"], alice_id);
                assert!(d.get("networkType").is_none());
            }
            "chime:AttendeeDeleted" => {
                assert_eq!(d["attendeeId"], bob.attendee_id().unwrap());
                assert_eq!(d["externalUserId"], "bob");
            }
            "chime:TranscriptionStarted" | "chime:TranscriptionStopped" => {
                assert_eq!(d["transcriptionRegion"], "eu-west-2");
                let config: serde_json::Value =
                    serde_json::from_str(d["transcriptionConfiguration"].as_str().unwrap())
                        .unwrap();
                assert_eq!(config["EngineTranscribeSettings"]["LanguageCode"], "en-US");
            }
            "chime:MeetingStarted" | "chime:MeetingEnded" => {
                assert!(d.get("attendeeId").is_none());
            }
            _ => {}
        }
    }
    // A plausible order (deliveries are concurrent, so by the event timestamps): the
    // meeting starts first and ends last; authorized, joined, left in that order.
    let at = |t: &str| {
        events
            .iter()
            .find(|e| e["detail"]["eventType"] == t)
            .map(|e| e["detail"]["timestamp"].as_u64().unwrap())
            .unwrap()
    };
    let all: Vec<u64> = events
        .iter()
        .map(|e| e["detail"]["timestamp"].as_u64().unwrap())
        .collect();
    assert_eq!(at("chime:MeetingStarted"), *all.iter().min().unwrap());
    assert_eq!(at("chime:MeetingEnded"), *all.iter().max().unwrap());
    assert!(at("chime:AttendeeAuthorized") <= at("chime:AttendeeJoined"));
    assert!(at("chime:AttendeeJoined") <= at("chime:AttendeeLeft"));
    assert!(at("chime:TranscriptionStarted") <= at("chime:TranscriptionStopped"));
}

#[tokio::test]
async fn a_refusing_webhook_gets_everything_once_it_accepts_even_across_a_crash() {
    let (receiver, url) = Receiver::start().await;
    receiver
        .refuse
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let tmp = tempfile::tempdir().unwrap();
    let env = webhook_env(&url);
    let server = Server::start_with_env(tmp.path(), &[], &env);
    let client = server.client();
    let meeting = client
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("crash")
        .send()
        .await
        .unwrap();
    let meeting_id = meeting.meeting().unwrap().meeting_id().unwrap().to_owned();
    for i in 0..20 {
        client
            .create_attendee()
            .meeting_id(&meeting_id)
            .external_user_id(format!("user-{i}"))
            .send()
            .await
            .unwrap();
    }
    // The receiver refuses (503) at least once, then the server crashes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while *receiver.refused.lock().unwrap() == 0 {
        assert!(Instant::now() < deadline, "no delivery attempt");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop(true);
    receiver
        .refuse
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let server = Server::start_with_env(tmp.path(), &[], &env);
    let got = receiver
        .wait_for(&[("chime:MeetingStarted", 1), ("chime:AttendeeAdded", 20)])
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = dedupe(&receiver.received());
    assert_eq!(events.len(), 21, "nothing lost, nothing invented");
    assert!(got.len() >= 21);
    let users: HashSet<&str> = events
        .iter()
        .filter_map(|e| e["detail"]["externalUserId"].as_str())
        .collect();
    assert_eq!(users.len(), 20);
    drop(server);
}

#[tokio::test]
async fn attendees_still_connected_leave_before_the_meeting_ends_and_only_once() {
    let (receiver, url) = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(tmp.path(), &[], &webhook_env(&url));
    let client = server.client();
    let CreatedMeeting {
        id: meeting_id,
        signaling,
        attendees,
    } = create_meeting_with(
        &client,
        "us-east-1",
        "ends-while-connected",
        &["alice", "bob"],
    )
    .await;
    // Both join and stay connected.
    let mut sockets = Vec::new();
    for (i, a) in attendees.iter().enumerate() {
        let mut socket = open(&signaling, a.join_token().unwrap()).await;
        send(
            &mut socket,
            SdkSignalFrame {
                join: Some(SdkJoinFrame {
                    protocol_version: Some(2),
                    flags: Some(2),
                    audio_session_id: Some(i as u64 + 1),
                    ..Default::default()
                }),
                ..SdkSignalFrame::new(FrameType::Join, 0)
            },
        )
        .await;
        expect(&mut socket, FrameType::JoinAck).await;
        sockets.push(socket);
    }
    receiver.wait_for(&[("chime:AttendeeJoined", 2)]).await;
    client
        .delete_meeting()
        .meeting_id(&meeting_id)
        .send()
        .await
        .unwrap();
    receiver
        .wait_for(&[("chime:AttendeeLeft", 2), ("chime:MeetingEnded", 1)])
        .await;
    // The media plane closes the sockets and reports both departures after the end: they
    // must not come a second time.
    for mut socket in sockets {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Some(Ok(_))) = tokio::time::timeout_at(deadline, socket.next()).await {}
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = dedupe(&receiver.received());
    let counts = count_types(&events);
    assert_eq!(counts.get("chime:AttendeeLeft"), Some(&2), "{counts:?}");
    assert_eq!(counts.get("chime:MeetingEnded"), Some(&1), "{counts:?}");
    assert!(!counts.contains_key("chime:AttendeeDropped"), "{counts:?}");
    let time_of = |e: &serde_json::Value| e["detail"]["timestamp"].as_u64().unwrap();
    let ended = events
        .iter()
        .find(|e| e["detail"]["eventType"] == "chime:MeetingEnded")
        .map(time_of)
        .unwrap();
    let mut left_users = Vec::new();
    for e in events
        .iter()
        .filter(|e| e["detail"]["eventType"] == "chime:AttendeeLeft")
    {
        assert!(time_of(e) < ended, "AttendeeLeft sorts before MeetingEnded");
        assert_eq!(e["detail"]["networkType"], "Voip");
        left_users.push(e["detail"]["externalUserId"].as_str().unwrap().to_owned());
    }
    left_users.sort();
    assert_eq!(left_users, ["alice", "bob"]);
    assert_eq!(
        ended,
        events.iter().map(time_of).max().unwrap(),
        "nothing after the end"
    );
}

struct SystemTimeSecs;

impl SystemTimeSecs {
    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }
}

/// `time` as the envelope must render it for epoch milliseconds `ms` (civil from days).
fn civil_time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
