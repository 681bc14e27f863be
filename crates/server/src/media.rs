//! The media adapter: runs the sans-IO `carillon_media::Engine` on its own thread with the UDP
//! socket, and connects it to the WebSocket sessions and the control plane by channels.
//!
//! Threads: the media thread (one current-thread runtime: UDP, engine, timers) and the HTTP
//! runtime (WebSockets, REST). Frames cross between them as encoded bytes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use carillon_control::{Capabilities, MeetingId, Notice};
use carillon_media::{
    Engine, EngineConfig, MediaEvent, MediaEventKind, Output, Participant, ParticipantKey,
    SessionId,
};
use carillon_signaling::proto::{SdkMeetingSessionCredentials, SdkSignalFrame};
use carillon_signaling::{decode_frame, encode_frame};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::app::App;
use crate::udp_send::BatchSender;
use crate::websocket::{self, Handshake, Socket};

/// Commands for the media thread.
enum Command {
    Open {
        session: SessionId,
        participant: Participant,
        outbound: mpsc::UnboundedSender<Outbound>,
    },
    Frame {
        session: SessionId,
        frame: Box<SdkSignalFrame>,
    },
    Closed {
        session: SessionId,
    },
    Notice(Notice),
    /// The control plane's answer to a promotion request.
    Promotion {
        session: SessionId,
        /// The promoted participant and the primary's attendee capacity, or a status.
        result: Result<(Participant, usize), u32>,
    },
}

/// A replica connection's request to be promoted into its primary meeting.
pub struct PromotionRequest {
    session: SessionId,
    primary: MeetingId,
    credentials: SdkMeetingSessionCredentials,
}

/// What the media thread asks a WebSocket task to do.
enum Outbound {
    Frame(Bytes),
    Close(u16),
}

/// The HTTP side's handle on the media thread.
pub struct MediaHandle {
    commands: mpsc::UnboundedSender<Command>,
    next_session: AtomicU64,
}

impl MediaHandle {
    /// Hands a control-plane notice (attendee deleted, meeting ended, capabilities changed)
    /// to the live meetings.
    pub fn notice(&self, notice: Notice) {
        let _ = self.commands.send(Command::Notice(notice));
    }
}

/// What the media thread asks of the control plane.
pub struct Upcalls {
    pub events: mpsc::UnboundedReceiver<MediaEvent>,
    pub promotions: mpsc::UnboundedReceiver<PromotionRequest>,
}

/// Starts the media thread on `socket`. Media events and promotion requests come back on the
/// returned receivers.
pub fn start(
    socket: std::net::UdpSocket,
    config: EngineConfig,
) -> std::io::Result<(MediaHandle, Upcalls)> {
    socket.set_nonblocking(true)?;
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (promotions_tx, promotions_rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("carillon-media".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime starts");
            runtime.block_on(run(socket, config, command_rx, events_tx, promotions_tx));
        })?;
    Ok((
        MediaHandle {
            commands,
            next_session: AtomicU64::new(1),
        },
        Upcalls {
            events: events_rx,
            promotions: promotions_rx,
        },
    ))
}

/// Datagrams sent between two looks at the socket during a long fan-out.
const DRAIN_EVERY: usize = 64;

/// Hands up to `max` already-queued datagrams to the engine, without waiting.
fn drain_socket(
    socket: &tokio::net::UdpSocket,
    engine: &mut Engine,
    local: std::net::SocketAddr,
    buf: &mut [u8],
    max: usize,
) {
    for _ in 0..max {
        match socket.try_recv_from(buf) {
            Ok((n, source)) => engine.handle_datagram(Instant::now(), source, local, &buf[..n]),
            Err(_) => break,
        }
    }
}

async fn run(
    socket: std::net::UdpSocket,
    config: EngineConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<MediaEvent>,
    promotions: mpsc::UnboundedSender<PromotionRequest>,
) {
    let socket = match tokio::net::UdpSocket::from_std(socket) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "media socket unusable");
            return;
        }
    };
    let local = socket.local_addr().unwrap_or(config.candidate);
    let epoch_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut engine = Engine::new(config, Instant::now(), epoch_ms);
    let mut sessions: HashMap<SessionId, mpsc::UnboundedSender<Outbound>> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    let mut sender = BatchSender::new();
    let mut last_encoded: Option<(Arc<SdkSignalFrame>, Bytes)> = None;
    loop {
        let deadline = tokio::time::Instant::from_std(engine.poll_timeout());
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                if let Ok((n, source)) = received {
                    engine.handle_datagram(Instant::now(), source, local, &buf[..n]);
                    // Take what else is already queued before doing anything else.
                    drain_socket(&socket, &mut engine, local, &mut buf, 64);
                }
            }
            command = commands.recv() => {
                let Some(command) = command else { return };
                let now = Instant::now();
                match command {
                    Command::Open { session, participant, outbound } => {
                        sessions.insert(session, outbound);
                        engine.open_session(now, session, participant);
                    }
                    Command::Frame { session, frame } => engine.handle_frame(now, session, *frame),
                    Command::Closed { session } => {
                        sessions.remove(&session);
                        engine.close_session(now, session);
                    }
                    Command::Promotion { session, result } => match result {
                        Ok((p, capacity)) => engine.promotion_authorized(
                            now,
                            session,
                            p.key.attendee,
                            p.external_user_id,
                            p.capabilities,
                            capacity,
                        ),
                        Err(status) => engine.promotion_refused(now, session, status),
                    },
                    Command::Notice(notice) => match notice {
                        Notice::MeetingEnded { meeting, .. } => engine.meeting_ended(now, meeting),
                        Notice::AttendeeDeleted { meeting, attendee } => engine.attendee_deleted(now, meeting, attendee),
                        Notice::CapabilitiesChanged { meeting, attendee, capabilities } => {
                            engine.capabilities_changed(now, meeting, attendee, capabilities)
                        }
                    },
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                // Datagrams that arrived while the thread was busy go first: a mix tick run
                // before them would count them late, and the jitter buffer would keep that
                // lateness (our own stall, not the network's) as playout delay.
                drain_socket(&socket, &mut engine, local, &mut buf, 256);
                engine.handle_timeout(Instant::now());
            }
        }
        let mut sent = 0usize;
        while let Some(output) = engine.poll_output() {
            match output {
                Output::Transmit {
                    destination,
                    contents,
                    ..
                } => {
                    sender.send(&socket, destination, &contents).await;
                    sent += 1;
                    // A fan-out to a thousand listeners keeps this loop busy for ~8 ms. Media
                    // arriving meanwhile is taken in now and then, so it is stamped when it
                    // came (the jitter buffers judge a speaker's lateness by that) and
                    // forwarded video does not wait for the whole fan-out.
                    if sent.is_multiple_of(DRAIN_EVERY) {
                        drain_socket(&socket, &mut engine, local, &mut buf, 64);
                    }
                }
                Output::Frame { session, frame } => {
                    // A broadcast is one frame for many sessions in a row: encoded once.
                    let bytes = match &last_encoded {
                        Some((last, bytes)) if Arc::ptr_eq(last, &frame) => bytes.clone(),
                        _ => {
                            let bytes = Bytes::from(encode_frame(&frame));
                            last_encoded = Some((frame, bytes.clone()));
                            bytes
                        }
                    };
                    if let Some(tx) = sessions.get(&session) {
                        let _ = tx.send(Outbound::Frame(bytes));
                    }
                }
                Output::Close { session, code } => {
                    if let Some(tx) = sessions.remove(&session) {
                        let _ = tx.send(Outbound::Close(code));
                    }
                }
                Output::Event(event) => {
                    let _ = events.send(event);
                }
                Output::Authorize {
                    session,
                    primary,
                    credentials,
                } => {
                    let _ = promotions.send(PromotionRequest {
                        session,
                        primary,
                        credentials,
                    });
                }
            }
        }
        sender.flush(&socket).await;
    }
}

/// Applies media events to the control plane (who is connected, for the idle rule) and logs
/// them (the events hook that event delivery builds on).
pub async fn apply_events(app: Arc<App>, mut events: mpsc::UnboundedReceiver<MediaEvent>) {
    while let Some(event) = events.recv().await {
        tracing::info!(kind = ?event.kind, meeting = %event.meeting, attendee = %event.attendee, "media event");
        let now = app.clock.now_ms();
        // Connection counting (the idle rule) and the event, in one commit.
        let ((), pending) = app.mutate(|plane| {
            match event.kind {
                MediaEventKind::AttendeeJoined => {
                    plane.attendee_connected(event.meeting, event.attendee, now)
                }
                MediaEventKind::AttendeeLeft | MediaEventKind::AttendeeDropped => {
                    plane.attendee_disconnected(event.meeting, event.attendee, now)
                }
                _ => {}
            }
            crate::events::record_media_event(plane, &event, now);
        });
        if let Err(e) = pending.finish().await {
            tracing::error!(error = %e, "store commit failed while recording a connection");
        }
    }
}

/// The subprotocol the Chime client offers beside its join token, echoed on acceptance.
const SESSION_PROTOCOL: &str = "_aws_wt_session";

/// `GET /control/<MeetingId>`: the signaling WebSocket. The join token arrives as the second
/// WebSocket subprotocol (`_aws_wt_session, <JoinToken>`); the first is echoed.
pub async fn signaling(
    State(app): State<Arc<App>>,
    Path(meeting): Path<String>,
    request: Request,
) -> Response {
    let (mut parts, _) = request.into_parts();
    let upgrade = match Handshake::from_request(&mut parts, SESSION_PROTOCOL) {
        Ok(upgrade) => upgrade,
        Err(refused) => return refused.into_response(),
    };
    // The join token is the client's other subprotocol.
    let token = websocket::offered_protocols(&parts.headers)
        .find(|p| *p != SESSION_PROTOCOL)
        .map(str::to_owned);
    let participant = match (meeting.parse::<MeetingId>(), token) {
        (Ok(meeting), Some(token)) => authenticate(&app, meeting, &token),
        _ => Err(Rejection::Forbidden),
    };
    let Some(media) = app.media.as_ref() else {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "media plane not running",
        )
            .into_response();
    };
    let session = media.next_session.fetch_add(1, Ordering::Relaxed);
    let commands = media.commands.clone();
    // Rejections still upgrade, then close with a code the client maps to a final status
    // (a failed upgrade would only make it retry for two minutes).
    upgrade.accept(move |socket| async move {
        match participant {
            Ok(participant) => serve_socket(socket, session, participant, commands).await,
            Err(rejection) => reject(socket, rejection).await,
        }
    })
}

enum Rejection {
    Forbidden,
    MeetingEnded,
}

fn authenticate(app: &App, meeting: MeetingId, token: &str) -> Result<Participant, Rejection> {
    let now = app.clock.now_ms();
    let (base, content) = match token.strip_suffix("#content") {
        Some(base) => (base, true),
        None => (token, false),
    };
    let mut plane = app.plane();
    let Some(attendee) = plane.authenticate(meeting, base, now) else {
        return Err(if plane.get_meeting(meeting, now).is_err() {
            Rejection::MeetingEnded
        } else {
            Rejection::Forbidden
        });
    };
    let primary = plane
        .get_meeting(meeting, now)
        .ok()
        .and_then(|m| m.spec.primary_meeting_id);
    drop(plane);
    crate::events::authorized(app, meeting, &attendee, content);
    let capabilities: Capabilities = attendee.capabilities;
    Ok(Participant {
        meeting,
        key: ParticipantKey {
            attendee: attendee.id,
            content,
        },
        external_user_id: if content {
            format!("{}#content", attendee.external_user_id)
        } else {
            attendee.external_user_id
        },
        capabilities,
        primary,
    })
}

/// Checks promotion credentials against the primary meeting: the join token must belong to
/// the named attendee of that meeting (403 otherwise).
pub async fn authorize_promotions(
    app: Arc<App>,
    mut requests: mpsc::UnboundedReceiver<PromotionRequest>,
) {
    while let Some(request) = requests.recv().await {
        let now = app.clock.now_ms();
        let token = request.credentials.join_token.clone().unwrap_or_default();
        let claimed = request.credentials.attendee_id.clone().unwrap_or_default();
        let (attendee, capacity) = {
            let mut plane = app.plane();
            (
                plane.authenticate(request.primary, &token, now),
                plane.attendee_capacity(request.primary, now),
            )
        };
        let result = match (attendee, capacity) {
            (Some(a), Some(capacity)) if a.id.to_string().eq_ignore_ascii_case(&claimed) => {
                crate::events::authorized(&app, request.primary, &a, false);
                Ok((
                    Participant {
                        meeting: request.primary,
                        key: ParticipantKey {
                            attendee: a.id,
                            content: false,
                        },
                        external_user_id: a.external_user_id,
                        capabilities: a.capabilities,
                        primary: None,
                    },
                    capacity,
                ))
            }
            _ => Err(403),
        };
        if let Some(media) = &app.media {
            let _ = media.commands.send(Command::Promotion {
                session: request.session,
                result,
            });
        }
    }
}

async fn reject(mut socket: Socket, rejection: Rejection) {
    let (status, code) = match rejection {
        Rejection::Forbidden => (403, 4403),
        Rejection::MeetingEnded => (410, 4410),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let frame = encode_frame(&SdkSignalFrame::audio_status(now, status));
    let _ = websocket::send_binary(&mut socket, frame.into()).await;
    let _ = socket.send(close(code, "rejected")).await;
}

async fn serve_socket(
    mut socket: Socket,
    session: SessionId,
    participant: Participant,
    commands: mpsc::UnboundedSender<Command>,
) {
    let (outbound_tx, mut outbound) = mpsc::unbounded_channel();
    if commands
        .send(Command::Open {
            session,
            participant,
            outbound: outbound_tx,
        })
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            message = socket.next() => match message {
                Some(Ok(Message::Binary(bytes))) => match decode_frame(&bytes) {
                    Ok(frame) => {
                        let _ = commands.send(Command::Frame { session, frame: Box::new(frame) });
                    }
                    Err(e) => tracing::debug!(session, error = %e, "undecodable signaling frame"),
                },
                Some(Err(tungstenite::Error::Capacity(e))) => {
                    // A message over the 1 MiB cap: say why before closing (1009, RFC 6455).
                    tracing::debug!(session, error = %e, "signaling message too big");
                    let _ = socket.send(close(1009, "message too big")).await;
                    break;
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            out = outbound.recv() => match out {
                Some(Outbound::Frame(bytes)) => {
                    if websocket::send_binary(&mut socket, bytes).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Close(code)) => {
                    let _ = socket.send(close(code, "")).await;
                    // Give the client a moment to read the close before the TCP connection goes.
                    let _ = tokio::time::timeout(Duration::from_secs(1), socket.next()).await;
                    break;
                }
                None => break,
            },
        }
    }
    let _ = commands.send(Command::Closed { session });
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
}
