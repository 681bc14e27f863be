//! The media engine: every live meeting of this node, every signaling session, every WebRTC
//! peer. Sans-IO: the adapter feeds it WebSocket frames, UDP datagrams, control-plane notices
//! and timeouts, and drains [`Output`]s (datagrams to send, frames to write, sockets to close,
//! events to report, promotions to authorize). One engine runs on one thread and owns
//! everything it touches, so there are no locks in the media path.
//!
//! Contract: after any `handle_*` call (or a run of `handle_datagram` calls for datagrams that
//! were already queued), drain [`Engine::poll_output`] until it returns `None`, then wait
//! until [`Engine::poll_timeout`] (or new input) and call [`Engine::handle_timeout`].
//!
//! Every broadcast of a meeting is a [`FeedItem`] delivered to the meeting's own connections
//! and to the connections of its replica meetings (see `feed.rs`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use carillon_control::{AttendeeId, Capabilities, MeetingId};
use carillon_mixer::MixerConfig;
use carillon_signaling::proto::sdk_signal_frame::Type as FrameType;
use carillon_signaling::proto::{
    SdkAudioAttendeeState, SdkAudioStreamIdInfo, SdkDataMessagePayload, SdkJoinAckFrame,
    SdkJoinFrame, SdkMeetingSessionCredentials, SdkPingPongType, SdkSignalFrame,
    SdkStreamAllocation, SdkStreamMediaType, SdkStreamServiceType, SdkSubscribeAckFrame,
    SdkSubscribeFrame, SdkTrackMapping,
};
use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpPacket, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Rtc};

use crate::data;
use crate::feed::{FeedItem, FeedMirror, FeedRequest, FeedSnapshot, VideoCodec, VideoPackets};
use crate::forward::{Rebase, RtpPayload};
use crate::hibernate::{self, Hibernated, Replay};
use crate::meeting::{Meeting, MeetingLimits, ParticipantKey, Presence, VideoSource};
use crate::sdp::{self, Direction, OfferLayout};
use crate::session::{
    AudioPath, MediaLines, Participant, Peer, Promotion, Session, SessionId, VideoTx,
};
use crate::srtp::{self, KeyCapture, RtpOut, RtpSealer, SrtpKeys};
use crate::stun;

/// Node-wide media settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The UDP address advertised as the ICE host candidate (the media socket).
    pub candidate: SocketAddr,
    /// Published camera videos per meeting (Chime's default quota: 25).
    pub max_video_publishers: usize,
    /// Content shares per meeting (2).
    pub max_content_shares: usize,
    /// Attendees present in a meeting at once (promotions beyond it get 409).
    pub max_attendees: usize,
    /// Remote videos a client may subscribe to (JOIN_ACK.video_subscription_limit).
    pub video_subscription_limit: u32,
    pub mixer: MixerConfig,
    /// How long a dropped connection keeps its place in the roster for a reconnect.
    pub reconnect_grace: Duration,
    /// AUDIO_METADATA cadence.
    pub metadata_interval: Duration,
    /// Data messages per second and burst, per meeting.
    pub data_rate: (f64, u32),
    /// A connection whose client sent no frame for this long is closed as dropped (clients
    /// PING every 10 s; a vanished network otherwise leaves a half-open TCP connection).
    pub client_silence_timeout: Duration,
    /// Seal the mixed audio ourselves (see [`crate::srtp`]); off, it goes through str0m's
    /// send path like everything else (slower; kept as the fallback and for comparison).
    pub seal_mixed_audio: bool,
    /// Let replica viewers that only listen drop their `Rtc` (see [`crate::hibernate`]).
    pub hibernate_viewers: bool,
}

impl EngineConfig {
    pub fn new(candidate: SocketAddr) -> Self {
        EngineConfig {
            candidate,
            max_video_publishers: 25,
            max_content_shares: 2,
            max_attendees: 250,
            video_subscription_limit: 25,
            mixer: MixerConfig::default(),
            reconnect_grace: Duration::from_secs(10),
            metadata_interval: Duration::from_millis(250),
            data_rate: (100.0, 200),
            client_silence_timeout: Duration::from_secs(45),
            seal_mixed_audio: true,
            hibernate_viewers: true,
        }
    }
}

/// What happened, in Chime's event vocabulary (`chime:Attendee…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEventKind {
    AttendeeJoined,
    AttendeeLeft,
    AttendeeDropped,
    AttendeeVideoStarted,
    AttendeeVideoStopped,
    AttendeeContentJoined,
    AttendeeContentLeft,
    AttendeeContentDropped,
    AttendeeContentVideoStarted,
    AttendeeContentVideoStopped,
}

/// An event for the control plane (connection counting) and event delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaEvent {
    pub kind: MediaEventKind,
    pub meeting: MeetingId,
    pub attendee: AttendeeId,
    pub external_user_id: String,
}

/// Engine output, in the order it must be acted on.
#[derive(Debug)]
pub enum Output {
    Transmit {
        source: SocketAddr,
        destination: SocketAddr,
        contents: Vec<u8>,
    },
    /// A signaling frame for a session's WebSocket. A broadcast hands the same frame (one
    /// `Arc`) to every receiving session in a row, so the adapter can encode it once.
    Frame {
        session: SessionId,
        frame: Arc<SdkSignalFrame>,
    },
    /// Close a session's WebSocket (after the frames queued before this).
    Close {
        session: SessionId,
        code: u16,
    },
    Event(MediaEvent),
    /// A replica connection asks to be promoted with these credentials: the adapter checks
    /// them against the primary meeting and answers with [`Engine::promotion_authorized`] or
    /// [`Engine::promotion_refused`].
    Authorize {
        session: SessionId,
        primary: MeetingId,
        credentials: SdkMeetingSessionCredentials,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Departure {
    Left,
    Dropped,
}

/// Minimum spacing of keyframe requests to one publisher.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(300);
/// One mixed audio frame.
const FRAME: Duration = Duration::from_millis(20);
/// How long a mix tick may wait for a mixed speaker's frame that is due but not here yet
/// (the sender's timer or the network ran a little late). Waiting delays one output frame by
/// at most this; not waiting conceals the frame and adds a whole frame of playout delay to
/// that speaker until it is cut again.
const MIX_GRACE: Duration = Duration::from_millis(8);
/// The smallest move of a meeting's mix ticks worth making (see `Engine::advance_ticks`).
const MIN_TICK_ADVANCE: Duration = Duration::from_millis(2);
/// Recently deleted attendees remembered (see `Engine::deleted`).
const DELETED_REMEMBERED: usize = 4096;
/// How often connections are checked for silent clients.
const LIVENESS_SWEEP: Duration = Duration::from_secs(5);
/// Close code for a connection closed because its client went silent: the client reconnects
/// on 4500–4599 if it is in fact still there.
const SILENT_CLIENT_CLOSE: u16 = 4500;
/// Due timeouts a peer's drain handles inline before leaving the rest to the timer heap.
const MAX_IMMEDIATE_TIMEOUTS: u32 = 4;
/// Recently ended meetings remembered, so a late WebSocket is told the meeting ended.
const ENDED_REMEMBERED: usize = 4096;

/// The frames of one feed item that several connections get byte for byte: built once per
/// fan-out, not once per connection (a 250-attendee meeting's volume update is one frame, not
/// 250 copies of it).
#[derive(Default)]
struct SharedFrames {
    /// The roster, volume or data frame: the same for everyone who gets it.
    common: Option<Arc<SdkSignalFrame>>,
    /// The INDEX, by `at_capacity` (false, true).
    index: [Option<Arc<SdkSignalFrame>>; 2],
}

impl SharedFrames {
    fn common(&mut self, build: impl FnOnce() -> SdkSignalFrame) -> Arc<SdkSignalFrame> {
        self.common.get_or_insert_with(|| Arc::new(build())).clone()
    }

    fn index(
        &mut self,
        at_capacity: bool,
        build: impl FnOnce() -> SdkSignalFrame,
    ) -> Arc<SdkSignalFrame> {
        self.index[usize::from(at_capacity)]
            .get_or_insert_with(|| Arc::new(build()))
            .clone()
    }
}

/// The media engine. See the module docs for the driving contract.
pub struct Engine {
    config: EngineConfig,
    base: Instant,
    base_epoch_ms: u64,
    cert: DtlsCert,
    sessions: HashMap<SessionId, Session>,
    meetings: HashMap<MeetingId, Meeting>,
    ended: VecDeque<MeetingId>,
    /// Recently deleted attendees, so a connection authenticated just before the deletion is
    /// still refused.
    deleted: VecDeque<(MeetingId, AttendeeId)>,
    by_addr: HashMap<SocketAddr, SessionId>,
    timers: BinaryHeap<Reverse<(Instant, SessionId)>>,
    outputs: VecDeque<Output>,
    rtc_events: VecDeque<(SessionId, Event)>,
    dirty: Vec<SessionId>,
    /// Time of the last datagram or timeout, whose effects [`Engine::poll_output`] settles.
    pending_at: Instant,
    keyframe_requested: HashMap<SessionId, Instant>,
    /// Next sweep for silent clients.
    next_liveness: Instant,
    /// Reused lists for fan-out (no allocation per packet).
    scratch_sessions: Vec<SessionId>,
    scratch_meetings: Vec<MeetingId>,
    /// Times a meeting's mix ticks were moved earlier (see `Engine::advance_ticks`).
    tick_advances: u64,
}

impl Engine {
    /// `epoch_ms` is the wall-clock time at `now` (data messages carry wall-clock stamps).
    pub fn new(config: EngineConfig, now: Instant, epoch_ms: u64) -> Engine {
        let provider = str0m::crypto::from_feature_flags();
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .expect("the crypto provider can generate a DTLS certificate");
        Engine {
            config,
            base: now,
            base_epoch_ms: epoch_ms,
            cert,
            sessions: HashMap::new(),
            meetings: HashMap::new(),
            ended: VecDeque::new(),
            deleted: VecDeque::new(),
            by_addr: HashMap::new(),
            timers: BinaryHeap::new(),
            outputs: VecDeque::new(),
            rtc_events: VecDeque::new(),
            dirty: Vec::new(),
            pending_at: now,
            keyframe_requested: HashMap::new(),
            next_liveness: now + LIVENESS_SWEEP,
            scratch_sessions: Vec::new(),
            scratch_meetings: Vec::new(),
            tick_advances: 0,
        }
    }

    /// The next output to act on.
    pub fn poll_output(&mut self) -> Option<Output> {
        // Pending effects are worked out one peer at a time, as outputs are taken: a fan-out's
        // first packets leave while later receivers are still being written to, and only one
        // peer's packets wait in memory at a time (not a whole tick's, each in its own
        // MTU-sized buffer).
        while self.outputs.is_empty() && self.settle_step(self.pending_at) {}
        self.outputs.pop_front()
    }

    /// When `handle_timeout` must be called at the latest.
    pub fn poll_timeout(&self) -> Instant {
        // Stale heap entries only make us wake early; handle_timeout discards them.
        let mut next = self.timers.peek().map_or(
            self.base + Duration::from_secs(86_400 * 365),
            |Reverse((t, _))| *t,
        );
        if !self.sessions.is_empty() {
            next = next.min(self.next_liveness);
        }
        for meeting in self.meetings.values() {
            // A replica mixes nothing: its connections hear the primary's mix.
            if !meeting.is_replica() && self.has_audience(meeting) {
                next = next.min(meeting.mix_at).min(meeting.next_metadata);
            }
            for p in meeting.roster.values() {
                if let Some(t) = p.grace_until {
                    next = next.min(t);
                }
            }
            for source in &meeting.sources {
                if let Some(t) = source.hold.deadline() {
                    next = next.min(t);
                }
            }
        }
        next
    }

    /// Number of live sessions (for metrics and tests).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Connections whose mixed audio the engine seals itself rather than sending it through
    /// str0m (for metrics and tests).
    pub fn sealed_audio_count(&self) -> usize {
        self.sessions
            .values()
            .filter(|s| {
                s.hibernated.is_some()
                    || s.peer
                        .as_ref()
                        .is_some_and(|p| matches!(p.audio_path, AudioPath::Sealed(_)))
            })
            .count()
    }

    /// Replica viewers' connections that hibernate now (for metrics and tests).
    pub fn hibernated_count(&self) -> usize {
        self.sessions
            .values()
            .filter(|s| s.hibernated.is_some())
            .count()
    }

    /// Times a meeting's mix ticks were moved earlier to meet its speakers' packets (for
    /// metrics and tests).
    pub fn tick_advance_count(&self) -> u64 {
        self.tick_advances
    }

    fn epoch_ms(&self, now: Instant) -> u64 {
        self.base_epoch_ms + now.saturating_duration_since(self.base).as_millis() as u64
    }

    // ----- sessions -----

    /// A WebSocket was accepted for an authenticated participant.
    pub fn open_session(&mut self, now: Instant, session: SessionId, participant: Participant) {
        let ended = self.ended.contains(&participant.meeting)
            || participant.primary.is_some_and(|p| self.ended.contains(&p));
        let deleted = self
            .deleted
            .contains(&(participant.meeting, participant.key.attendee));
        if deleted && !ended {
            // DeleteAttendee arrived between authentication and here.
            let ts = self.epoch_ms(now);
            self.send(session, SdkSignalFrame::audio_status(ts, 411));
            self.outputs.push_back(Output::Close {
                session,
                code: 4411,
            });
            return;
        }
        if ended {
            // The meeting ended between authentication and here.
            let ts = self.epoch_ms(now);
            self.send(session, SdkSignalFrame::audio_status(ts, 410));
            self.outputs.push_back(Output::Close {
                session,
                code: 4410,
            });
            return;
        }
        let mut state = Session::new(participant);
        state.last_frame = Some(now);
        self.sessions.insert(session, state);
    }

    /// The WebSocket of a session is gone (closed by the client or the network).
    pub fn close_session(&mut self, now: Instant, sid: SessionId) {
        self.demote(now, sid, false);
        self.clear_peer(sid);
        let Some(session) = self.sessions.remove(&sid) else {
            return;
        };
        let key = session.participant.key;
        let meeting_id = session.participant.meeting;
        let Some(meeting) = self.meetings.get_mut(&meeting_id) else {
            return;
        };
        meeting.sessions.remove(&sid);
        let ours = meeting
            .roster
            .get(&key)
            .is_some_and(|p| p.session == Some(sid));
        if ours && !session.left {
            // Unexpected: keep the roster place for a reconnect with the same audio session.
            if let Some(p) = meeting.roster.get_mut(&key) {
                p.session = None;
                p.grace_until = Some(now + self.config.reconnect_grace);
            }
            self.stop_publishing(meeting_id, key, now);
        }
        self.settle(now);
    }

    /// One frame received on a session's WebSocket.
    pub fn handle_frame(&mut self, now: Instant, sid: SessionId, frame: SdkSignalFrame) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        session.last_frame = Some(now);
        match frame.frame_type() {
            Some(FrameType::Join) => {
                if let Some(join) = frame.join {
                    self.on_join(now, sid, join);
                }
            }
            Some(FrameType::Subscribe) => {
                if let Some(sub) = frame.sub {
                    self.on_subscribe(now, sid, sub);
                }
            }
            Some(FrameType::PingPong) => {
                if let Some(ping) = frame.ping_pong
                    && ping.r#type() == SdkPingPongType::Ping
                {
                    let ts = self.epoch_ms(now);
                    self.send(sid, SdkSignalFrame::pong(ts, ping.ping_id));
                }
            }
            Some(FrameType::AudioControl) => {
                if let Some(control) = frame.audio_control {
                    self.on_mute(sid, control.muted.unwrap_or(false), now);
                }
            }
            Some(FrameType::Leave) => self.on_leave(now, sid),
            Some(FrameType::DataMessage) => {
                if let Some(data) = frame.data_message {
                    self.on_data(now, sid, data.messages);
                }
            }
            Some(FrameType::RemoteVideoUpdate) => {
                if let Some(update) = frame.remote_video_update {
                    self.on_remote_video_update(now, sid, update);
                }
            }
            Some(FrameType::Pause) | Some(FrameType::Resume) => {
                let resume = frame.frame_type() == Some(FrameType::Resume);
                if let Some(p) = frame.pause {
                    self.on_pause(now, sid, &p.stream_ids, resume);
                }
            }
            Some(FrameType::PrimaryMeetingJoin) => {
                let credentials = frame.primary_meeting_join.and_then(|j| j.credentials);
                self.on_primary_meeting_join(now, sid, credentials);
            }
            Some(FrameType::PrimaryMeetingLeave) => self.demote(now, sid, false),
            // Telemetry and frames the server does not act on.
            _ => {}
        }
        self.settle(now);
    }

    // ----- control plane notices -----

    /// DeleteAttendee: the attendee's connections get AUDIO_STATUS 411 and are closed; replica
    /// connections promoted as this attendee are demoted (PRIMARY_MEETING_LEAVE) and continue.
    pub fn attendee_deleted(&mut self, now: Instant, meeting_id: MeetingId, attendee: AttendeeId) {
        if self.deleted.len() == DELETED_REMEMBERED {
            self.deleted.pop_front();
        }
        self.deleted.push_back((meeting_id, attendee));
        let promoted: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                s.participant.primary == Some(meeting_id)
                    && s.promoted
                        .as_ref()
                        .is_some_and(|p| p.key.attendee == attendee)
            })
            .map(|(id, _)| *id)
            .collect();
        for sid in promoted {
            self.demote(now, sid, true);
        }
        let doomed: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                s.participant.meeting == meeting_id && s.participant.key.attendee == attendee
            })
            .map(|(id, _)| *id)
            .collect();
        for sid in doomed {
            self.end_session(now, sid, 411);
        }
        // A participant waiting for a reconnect is gone too.
        let waiting: Vec<ParticipantKey> = self
            .meetings
            .get(&meeting_id)
            .map(|m| {
                m.roster
                    .iter()
                    .filter(|(k, p)| k.attendee == attendee && p.session.is_none())
                    .map(|(k, _)| *k)
                    .collect()
            })
            .unwrap_or_default();
        for key in waiting {
            self.depart(now, meeting_id, key, Departure::Left);
        }
        self.settle(now);
    }

    /// DeleteMeeting or an automatic end: everyone gets AUDIO_STATUS 410 and is closed. (The
    /// control plane sends this for a primary's replicas too.)
    pub fn meeting_ended(&mut self, now: Instant, meeting_id: MeetingId) {
        if self.ended.len() == ENDED_REMEMBERED {
            self.ended.pop_front();
        }
        self.ended.push_back(meeting_id);
        // Promoted replica connections leave the primary first (their replica continues
        // until its own end notice).
        let promoted: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.participant.primary == Some(meeting_id) && s.promoted.is_some())
            .map(|(id, _)| *id)
            .collect();
        for sid in promoted {
            self.demote(now, sid, false);
        }
        let doomed: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.participant.meeting == meeting_id)
            .map(|(id, _)| *id)
            .collect();
        if let Some(meeting) = self.meetings.get(&meeting_id) {
            for (key, p) in &meeting.roster {
                let kind = if key.content {
                    MediaEventKind::AttendeeContentLeft
                } else {
                    MediaEventKind::AttendeeLeft
                };
                self.outputs.push_back(Output::Event(MediaEvent {
                    kind,
                    meeting: meeting_id,
                    attendee: key.attendee,
                    external_user_id: p.external_user_id.clone(),
                }));
            }
        }
        for sid in doomed {
            let ts = self.epoch_ms(now);
            let joined = self.sessions.get(&sid).is_some_and(|s| s.joined);
            // A promoted replica connection leaves the primary's roster too.
            self.demote(now, sid, false);
            self.clear_peer(sid);
            self.sessions.remove(&sid);
            if joined {
                self.send(sid, SdkSignalFrame::audio_status(ts, 410));
                self.outputs.push_back(Output::Close {
                    session: sid,
                    code: 1000,
                });
            } else {
                // Before JOIN_ACK the client reads the close code: 4410 is MeetingEnded.
                self.outputs.push_back(Output::Close {
                    session: sid,
                    code: 4410,
                });
            }
        }
        if let Some(meeting) = self.meetings.remove(&meeting_id)
            && let Some(primary) = meeting.primary
        {
            if let Some(p) = self.meetings.get_mut(&primary) {
                p.replicas.remove(&meeting_id);
            }
            self.forget_if_idle(primary, now);
        }
        self.settle(now);
    }

    /// UpdateAttendeeCapabilities / BatchUpdateAttendeeCapabilitiesExcept, applied live.
    pub fn capabilities_changed(
        &mut self,
        now: Instant,
        meeting_id: MeetingId,
        attendee: AttendeeId,
        capabilities: Capabilities,
    ) {
        let affected: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                (s.participant.meeting == meeting_id && s.participant.key.attendee == attendee)
                    || (s.participant.primary == Some(meeting_id)
                        && s.promoted
                            .as_ref()
                            .is_some_and(|p| p.key.attendee == attendee))
            })
            .map(|(id, _)| *id)
            .collect();
        for sid in affected {
            let Some(session) = self.sessions.get_mut(&sid) else {
                continue;
            };
            match session.promoted.as_mut() {
                Some(p) if session.participant.primary == Some(meeting_id) => {
                    p.capabilities = capabilities
                }
                _ => session.participant.capabilities = capabilities,
            }
            let Some(acting) = session.acting().map(|a| (a.meeting, a.key)) else {
                continue;
            };
            let may_send_video = session.may_send_video();
            let joined = session.joined;
            if let Some(meeting) = self.meetings.get_mut(&acting.0)
                && let Some(stream) = meeting
                    .roster
                    .get(&acting.1)
                    .filter(|p| p.session == Some(sid))
                    .map(|p| p.audio_stream_id)
                && !meeting.is_replica()
            {
                if Session::sends_audio(capabilities, acting.1) {
                    meeting.mix_source(stream, acting.1);
                } else {
                    meeting.mixer.remove_source(stream);
                }
            }
            if !may_send_video {
                self.stop_publishing(acting.0, acting.1, now);
            }
            if joined {
                self.send_index(sid, now);
            }
        }
        self.settle(now);
    }

    /// The adapter accepted a promotion's credentials: the connection now acts in the primary
    /// meeting as `attendee`, unless the primary already holds `capacity` attendees or that
    /// attendee is connected (409).
    pub fn promotion_authorized(
        &mut self,
        now: Instant,
        sid: SessionId,
        attendee: AttendeeId,
        external_user_id: String,
        capabilities: Capabilities,
        capacity: usize,
    ) {
        let ts = self.epoch_ms(now);
        let Some(session) = self.sessions.get(&sid).filter(|s| s.joined) else {
            return;
        };
        let Some(primary) = session.participant.primary else {
            self.send(sid, SdkSignalFrame::primary_meeting_join_ack(ts, Some(403)));
            return;
        };
        let muted = session.muted;
        if session.promoted.is_some() {
            self.demote(now, sid, false);
        }
        // A promoted connection publishes: its audio must be received and mixed.
        self.wake(now, sid);
        let key = ParticipantKey {
            attendee,
            content: false,
        };
        let meeting = self.meeting_mut(primary, None, now);
        let full = meeting.attendee_count() >= capacity.min(meeting.limits.max_attendees);
        if full || meeting.roster.contains_key(&key) {
            // At capacity, or that attendee is already connected to the primary.
            self.send(sid, SdkSignalFrame::primary_meeting_join_ack(ts, Some(409)));
            self.settle(now);
            return;
        }
        let stream = meeting.allocate_audio_stream_id();
        meeting.roster.insert(
            key,
            Presence {
                audio_stream_id: stream,
                external_user_id: external_user_id.clone(),
                muted,
                session: Some(sid),
                audio_session_id: None,
                grace_until: None,
            },
        );
        if Session::sends_audio(capabilities, key) {
            meeting.mix_source(stream, key);
        }
        if let Some(session) = self.sessions.get_mut(&sid) {
            session.promoted = Some(Promotion {
                key,
                external_user_id: external_user_id.clone(),
                capabilities,
            });
        }
        self.send(sid, SdkSignalFrame::primary_meeting_join_ack(ts, None));
        self.publish(
            primary,
            FeedItem::Roster(vec![SdkAudioStreamIdInfo::present(
                stream,
                key.wire_id(),
                external_user_id.clone(),
                muted,
            )]),
            now,
        );
        self.event(
            MediaEventKind::AttendeeJoined,
            primary,
            key,
            &external_user_id,
        );
        self.send_index(sid, now);
        self.settle(now);
    }

    /// The adapter refused a promotion (bad credentials: 403).
    pub fn promotion_refused(&mut self, now: Instant, sid: SessionId, status: u32) {
        let ts = self.epoch_ms(now);
        if self.sessions.contains_key(&sid) {
            self.send(
                sid,
                SdkSignalFrame::primary_meeting_join_ack(ts, Some(status)),
            );
        }
    }

    // ----- network -----

    /// One UDP datagram received on the media socket.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
    ) {
        let first_byte = contents.first().copied();
        let raw = contents;
        let mapped = self.by_addr.get(&source).copied();
        let hibernated = mapped.or_else(|| {
            // A new address: only a STUN check with the credentials we issued matches.
            let ufrag = stun::addressed_to(raw)?;
            self.sessions
                .iter()
                .find(|(_, s)| {
                    s.hibernated
                        .as_ref()
                        .is_some_and(|h| h.replay.ice.ufrag == ufrag && h.accepts(raw))
                })
                .map(|(sid, _)| *sid)
        });
        if let Some(sid) = hibernated
            && let Some(h) = self
                .sessions
                .get_mut(&sid)
                .and_then(|s| s.hibernated.as_mut())
        {
            if mapped.is_none() {
                self.by_addr.insert(source, sid);
            }
            if let Some(answer) = h.on_datagram(now, source, raw) {
                self.outputs.push_back(Output::Transmit {
                    source: destination,
                    destination: source,
                    contents: answer,
                });
            }
            return;
        }
        let Ok(contents) = contents.try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        let known = mapped.filter(|sid| {
            self.sessions
                .get(sid)
                .and_then(|s| s.peer.as_ref())
                .is_some_and(|p| p.rtc.accepts(&input))
        });
        let target = known.or_else(|| {
            // A new address: only STUN from a client whose ICE credentials we issued matches.
            self.sessions
                .iter()
                .find(|(_, s)| s.peer.as_ref().is_some_and(|p| p.rtc.accepts(&input)))
                .map(|(sid, _)| *sid)
        });
        let Some(sid) = target else {
            return;
        };
        if mapped != Some(sid) {
            self.by_addr.insert(source, sid);
        }
        if let Some(peer) = self.sessions.get_mut(&sid).and_then(|s| s.peer.as_mut()) {
            // RTP/RTCP from an address that passed an ICE check: the pair the client uses
            // now, and so where the audio we seal ourselves goes (symmetric RTP).
            if known.is_some() && matches!(first_byte, Some(128..=191)) {
                peer.media_destination = Some(source);
            }
            if let Some(replay) = peer.replay.as_mut() {
                replay.observe(source, raw);
            }
            if let Err(e) = peer.rtc.handle_input(input) {
                tracing::debug!(session = sid, error = %e, "peer rejected input");
            }
        }
        // Only this peer is drained now (str0m holds one received RTP packet at a time). What
        // it leads to — packets forwarded to receivers, answers — waits for `poll_output`, so
        // datagrams taken from the socket together leave together: a receiver's share of a
        // whole video frame goes out in one batch instead of one packet per pass.
        self.pending_at = now;
        self.drain_peer(sid, now);
    }

    /// Drives every timer that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Packets of datagrams handled just before (not yet settled) go to the mixer before a
        // tick could count them missing.
        self.settle(self.pending_at);
        while let Some(Reverse((t, sid))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(peer) = self.sessions.get_mut(&sid).and_then(|s| s.peer.as_mut()) else {
                continue;
            };
            if peer.scheduled == Some(t) {
                peer.scheduled = None;
            }
            if peer.next_timeout <= now {
                if let Err(e) = peer.rtc.handle_input(Input::Timeout(now)) {
                    tracing::debug!(session = sid, error = %e, "peer timeout failed");
                }
                mark_dirty(&mut self.dirty, peer, sid);
            } else if peer.scheduled.is_none() {
                peer.scheduled = Some(peer.next_timeout);
                self.timers.push(Reverse((peer.next_timeout, sid)));
            }
        }
        let meetings: Vec<MeetingId> = self.meetings.keys().copied().collect();
        for id in meetings {
            self.meeting_timers(now, id);
        }
        if now >= self.next_liveness {
            self.next_liveness = now + LIVENESS_SWEEP;
            self.close_silent_clients(now);
            self.hibernate_viewers(now);
            let kept: Vec<MeetingId> = self
                .meetings
                .iter()
                .filter(|(_, m)| m.sessions.is_empty() && m.roster.is_empty())
                .map(|(id, _)| *id)
                .collect();
            for id in kept {
                self.forget_if_idle(id, now);
            }
        }
        // What the timers led to (a tick's fan-out) is worked out by `poll_output`.
        self.pending_at = now;
    }

    /// Closes the connections of clients that stopped sending frames. The adapter then
    /// reports them closed, which keeps their roster place for the reconnect grace period and
    /// then reports them dropped.
    fn close_silent_clients(&mut self, now: Instant) {
        let limit = self.config.client_silence_timeout;
        let silent: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                s.last_frame
                    .is_some_and(|t| now.saturating_duration_since(t) >= limit)
            })
            .map(|(sid, _)| *sid)
            .collect();
        for sid in silent {
            tracing::debug!(session = sid, "client silent: closing its connection");
            if let Some(session) = self.sessions.get_mut(&sid) {
                // Once: the adapter's close report follows.
                session.last_frame = None;
            }
            self.outputs.push_back(Output::Close {
                session: sid,
                code: SILENT_CLIENT_CLOSE,
            });
        }
    }

    // ----- internals: delivery -----

    fn send(&mut self, session: SessionId, frame: SdkSignalFrame) {
        self.send_shared(session, Arc::new(frame));
    }

    fn send_shared(&mut self, session: SessionId, frame: Arc<SdkSignalFrame>) {
        self.outputs.push_back(Output::Frame { session, frame });
    }

    fn event(
        &mut self,
        kind: MediaEventKind,
        meeting: MeetingId,
        key: ParticipantKey,
        external: &str,
    ) {
        let kind = match (key.content, kind) {
            (true, MediaEventKind::AttendeeJoined) => MediaEventKind::AttendeeContentJoined,
            (true, MediaEventKind::AttendeeLeft) => MediaEventKind::AttendeeContentLeft,
            (true, MediaEventKind::AttendeeDropped) => MediaEventKind::AttendeeContentDropped,
            (true, MediaEventKind::AttendeeVideoStarted) => {
                MediaEventKind::AttendeeContentVideoStarted
            }
            (true, MediaEventKind::AttendeeVideoStopped) => {
                MediaEventKind::AttendeeContentVideoStopped
            }
            (_, kind) => kind,
        };
        self.outputs.push_back(Output::Event(MediaEvent {
            kind,
            meeting,
            attendee: key.attendee,
            external_user_id: external.to_owned(),
        }));
    }

    /// The meeting, created on first use (a replica's primary may have no connection yet). A
    /// replica subscribes to its primary's feed when it is created.
    fn meeting_mut(
        &mut self,
        id: MeetingId,
        primary: Option<MeetingId>,
        now: Instant,
    ) -> &mut Meeting {
        if !self.meetings.contains_key(&id) {
            let limits = MeetingLimits {
                max_video_publishers: self.config.max_video_publishers,
                max_content_shares: self.config.max_content_shares,
                max_attendees: self.config.max_attendees,
            };
            let mut meeting = Meeting::new(
                id,
                limits,
                self.config.mixer.clone(),
                self.config.data_rate,
                primary,
                now,
            );
            if let Some(primary) = primary {
                let snapshot = self.subscribe_feed(primary, id, now);
                meeting.mirror = Some(FeedMirror::new(snapshot, now));
            }
            self.meetings.insert(id, meeting);
        }
        self.meetings.get_mut(&id).expect("inserted above")
    }

    // ----- the feed (see feed.rs) -----

    /// A replica subscribes to its primary's feed: from now on it gets every item the
    /// primary publishes, after this snapshot.
    fn subscribe_feed(
        &mut self,
        primary: MeetingId,
        replica: MeetingId,
        now: Instant,
    ) -> FeedSnapshot {
        let primary = self.meeting_mut(primary, None, now);
        primary.replicas.insert(replica);
        primary.snapshot(now)
    }

    /// What a replica asks of its primary.
    fn feed_request(&mut self, primary: MeetingId, request: FeedRequest, now: Instant) {
        match request {
            FeedRequest::Keyframe { stream } => self.request_keyframe(primary, stream, now, false),
        }
    }

    /// Whether anyone listens to a meeting's feed (its own or its replicas' connections).
    fn has_audience(&self, meeting: &Meeting) -> bool {
        !meeting.sessions.is_empty()
            || meeting
                .replicas
                .iter()
                .any(|r| self.meetings.get(r).is_some_and(|m| !m.sessions.is_empty()))
    }

    /// Publishes an item of a meeting's feed: to its own connections and to every replica
    /// subscribed to it. A replica's own broadcasts go nowhere: its attendees are invisible.
    fn publish(&mut self, meeting_id: MeetingId, item: FeedItem, now: Instant) {
        let Some(meeting) = self.meetings.get(&meeting_id) else {
            return;
        };
        if meeting.is_replica() {
            return;
        }
        let mut replicas = std::mem::take(&mut self.scratch_meetings);
        replicas.clear();
        replicas.extend(meeting.replicas.iter().copied());
        self.fan_out(meeting_id, &item, now);
        for &replica in &replicas {
            self.on_feed(replica, &item, now);
        }
        self.scratch_meetings = replicas;
    }

    /// A replica receives one item of its primary's feed: its mirror follows, and its
    /// connections get the item.
    fn on_feed(&mut self, replica: MeetingId, item: &FeedItem, now: Instant) {
        if let Some(mirror) = self
            .meetings
            .get_mut(&replica)
            .and_then(|m| m.mirror.as_mut())
        {
            mirror.apply(item, now);
        }
        self.fan_out(replica, item, now);
    }

    /// Hands an item to every joined connection of one meeting.
    fn fan_out(&mut self, meeting_id: MeetingId, item: &FeedItem, now: Instant) {
        let Some(meeting) = self.meetings.get(&meeting_id) else {
            return;
        };
        let mut sessions = std::mem::take(&mut self.scratch_sessions);
        sessions.clear();
        sessions.extend(meeting.sessions.iter().copied());
        let mut shared = SharedFrames::default();
        for &sid in &sessions {
            if self.sessions.get(&sid).is_some_and(|s| s.joined) {
                self.apply(sid, item, &mut shared, now);
            }
        }
        self.scratch_sessions = sessions;
    }

    /// The participant publishing `stream` in what a session receives: its own meeting's
    /// index, or for a replica connection the mirror of its primary's.
    fn video_publisher(&self, session: &Session, stream: u32) -> Option<ParticipantKey> {
        let meeting = self.meetings.get(&session.participant.meeting)?;
        match &meeting.mirror {
            Some(mirror) => mirror.index().publisher_of(stream),
            None => meeting.source(stream).map(|s| s.key),
        }
    }

    /// A receiver needs a keyframe of `stream`: from its own meeting's publisher, or through
    /// the feed from its primary's.
    fn want_keyframe(&mut self, sid: SessionId, stream: u32, now: Instant, force: bool) {
        let Some(session) = self.sessions.get(&sid) else {
            return;
        };
        match session.participant.primary {
            Some(primary) => self.feed_request(primary, FeedRequest::Keyframe { stream }, now),
            None => {
                let meeting = session.participant.meeting;
                self.request_keyframe(meeting, stream, now, force);
            }
        }
    }

    /// One feed item, adapted to one receiving connection. Frames that are the same for
    /// several connections are built once, in `shared`.
    fn apply(&mut self, sid: SessionId, item: &FeedItem, shared: &mut SharedFrames, now: Instant) {
        let ts = self.epoch_ms(now);
        match item {
            FeedItem::Roster(entries) => {
                let frame =
                    shared.common(|| SdkSignalFrame::audio_stream_id_info(ts, entries.clone()));
                self.send_shared(sid, frame);
            }
            FeedItem::Index(index) => {
                let Some(session) = self.sessions.get(&sid) else {
                    return;
                };
                let at_capacity = match session.acting() {
                    None => true,
                    Some(a) => {
                        let room = if a.key.content {
                            index.room_for_content
                        } else {
                            index.room_for_camera
                        };
                        let publishing = index
                            .frame
                            .sources
                            .iter()
                            .any(|s| s.attendee_id.as_deref() == Some(&a.key.wire_id()));
                        !(session.may_send_video() && (publishing || room))
                    }
                };
                let frame = shared.index(at_capacity, || {
                    let mut frame = index.frame.clone();
                    frame.at_capacity = Some(at_capacity);
                    SdkSignalFrame::index(ts, frame)
                });
                self.send_shared(sid, frame);
            }
            FeedItem::Metadata(states) => {
                if self
                    .sessions
                    .get(&sid)
                    .is_some_and(|s| !s.participant.key.content)
                {
                    let frame =
                        shared.common(|| SdkSignalFrame::audio_metadata(ts, states.clone()));
                    self.send_shared(sid, frame);
                }
            }
            FeedItem::Data { messages, sender } => {
                let own = self
                    .sessions
                    .get(&sid)
                    .and_then(|s| s.acting().map(|a| a.key));
                if own != Some(*sender) {
                    let frame =
                        shared.common(|| SdkSignalFrame::data_message(ts, messages.clone()));
                    self.send_shared(sid, frame);
                }
            }
            FeedItem::Audio { shared, minus_one } => self.write_audio(sid, shared, minus_one, now),
            FeedItem::Video(frame) => self.write_video(sid, frame, now),
        }
    }

    fn write_audio(
        &mut self,
        sid: SessionId,
        shared: &Arc<[u8]>,
        minus_one: &[(u32, Arc<[u8]>)],
        now: Instant,
    ) {
        let Some(session) = self.sessions.get(&sid) else {
            return;
        };
        if !session.receives_audio() {
            return;
        }
        // A speaker in the mix hears the mix without themselves (and without their own
        // content share's audio): the minus-one mix of their attendee's group.
        let own = session.acting().and_then(|a| {
            self.meetings
                .get(&a.meeting)?
                .audio_group_of(a.key.attendee)
        });
        let packet = own
            .and_then(|group| minus_one.iter().find(|(g, _)| *g == group))
            .map_or_else(|| shared.clone(), |(_, p)| p.clone());
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        if let Some(h) = session.hibernated.as_mut() {
            let Some(pt) = h.lines.opus_pt else {
                return;
            };
            let contents = sealed_mix(&h.sealer, &h.lines, pt, &packet);
            self.outputs.push_back(Output::Transmit {
                source: self.config.candidate,
                destination: h.destination,
                contents,
            });
            h.lines.mix_sent();
            return;
        }
        let Some(peer) = session.peer.as_mut() else {
            return;
        };
        let (Some(mid), Some(pt)) = (peer.lines.audio_mid, peer.lines.opus_pt) else {
            return;
        };
        if !peer.rtc.is_connected() {
            return;
        }
        if matches!(peer.audio_path, AudioPath::Undecided) {
            // The handshake exports the keys before str0m reports the connection, so a
            // connected peer without captured keys only means we cannot seal: str0m sends.
            let keys = peer.keys.get();
            let ssrc = peer
                .rtc
                .direct_api()
                .stream_tx_by_mid(mid, None)
                .map(|stream| *stream.ssrc());
            peer.audio_path = match keys.zip(ssrc).and_then(|(k, ssrc)| RtpSealer::new(k, ssrc)) {
                Some(sealer) => AudioPath::Sealed(sealer),
                None => AudioPath::Str0m,
            };
            tracing::debug!(session = sid, profile = ?keys.map(|k| k.profile), path = ?peer.audio_path, "mixed audio path");
        }
        match (&peer.audio_path, peer.media_destination) {
            (AudioPath::Sealed(sealer), Some(destination)) => {
                let contents = sealed_mix(sealer, &peer.lines, pt, &packet);
                self.outputs.push_back(Output::Transmit {
                    source: self.config.candidate,
                    destination,
                    contents,
                });
            }
            (AudioPath::Sealed(_), None) => return,
            _ => {
                let mut api = peer.rtc.direct_api();
                let Some(stream) = api.stream_tx_by_mid(mid, None) else {
                    return;
                };
                let (seq, time, marker) = peer.lines.next_mix();
                stream.write_rtp(RtpWrite::new(pt, seq.into(), time, now, packet).marker(marker));
                mark_dirty(&mut self.dirty, peer, sid);
            }
        }
        peer.lines.mix_sent();
    }

    fn write_video(&mut self, sid: SessionId, video: &VideoPackets, now: Instant) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        if session.acting().map(|a| a.key) == Some(video.publisher)
            || session.paused.contains(&video.stream_id)
            || !session.may_receive_video(video.content)
        {
            return;
        }
        let Some(peer) = session.peer.as_mut() else {
            return;
        };
        if !peer.rtc.is_connected() {
            return;
        }
        let codec = match video.codec {
            VideoCodec::Vp8 => Codec::Vp8,
        };
        let mut wrote = false;
        for i in 0..peer.lines.video_out.len() {
            let (mid, stream) = peer.lines.video_out[i];
            if stream != video.stream_id {
                continue;
            }
            let Some(tx) = peer.lines.video_tx.iter_mut().find(|t| t.mid == mid) else {
                continue;
            };
            let pt = match tx.pt {
                Some(pt) => pt,
                None => match payload_type(&peer.rtc, mid, codec) {
                    Some(pt) => *tx.pt.insert(pt),
                    None => continue,
                },
            };
            let rebase = &mut tx.rebase;
            let mut api = peer.rtc.direct_api();
            let Some(stream_tx) = api.stream_tx_by_mid(mid, None) else {
                continue;
            };
            for packet in &video.packets {
                let Some((seq, time)) = rebase.map(video.stream_id, packet.seq, packet.time) else {
                    continue;
                };
                stream_tx.write_rtp(
                    RtpWrite::new(pt, seq.into(), time, now, packet.payload.clone())
                        .marker(packet.marker)
                        .nackable(true),
                );
                wrote = true;
            }
        }
        if wrote {
            if let Some(replay) = peer.replay.as_mut() {
                replay.sent_video = true;
            }
            mark_dirty(&mut self.dirty, peer, sid);
        }
    }

    /// The complete INDEX to one connection: its own meeting's, or for a replica connection
    /// its mirror of the primary's.
    fn send_index(&mut self, sid: SessionId, now: Instant) {
        let Some(meeting) = self
            .sessions
            .get(&sid)
            .and_then(|s| self.meetings.get(&s.participant.meeting))
        else {
            return;
        };
        let index = match &meeting.mirror {
            Some(mirror) => mirror.index().clone(),
            None => meeting.index(),
        };
        self.apply(
            sid,
            &FeedItem::Index(index),
            &mut SharedFrames::default(),
            now,
        );
    }

    fn broadcast_index(&mut self, meeting_id: MeetingId, now: Instant) {
        if let Some(index) = self.meetings.get(&meeting_id).map(Meeting::index) {
            self.publish(meeting_id, FeedItem::Index(index), now);
        }
    }

    // ----- internals: signaling -----

    fn on_join(&mut self, now: Instant, sid: SessionId, join: SdkJoinFrame) {
        let Some(session) = self.sessions.get(&sid) else {
            return;
        };
        if session.joined {
            return;
        }
        let participant = session.participant.clone();
        let key = participant.key;
        let meeting_id = participant.meeting;
        let meeting = self.meeting_mut(meeting_id, participant.primary, now);
        meeting.sessions.insert(sid);
        let audio_session_id = join.audio_session_id;
        let mut superseded = None;
        let announce = match meeting.roster.get_mut(&key) {
            Some(presence) => {
                let previous = presence.session.replace(sid);
                let same_device = presence.audio_session_id.is_some()
                    && presence.audio_session_id == audio_session_id;
                if let Some(old) = previous.filter(|old| *old != sid) {
                    superseded = Some((old, same_device));
                }
                presence.grace_until = None;
                presence.audio_session_id = audio_session_id;
                None
            }
            None => {
                let stream = meeting.allocate_audio_stream_id();
                meeting.roster.insert(
                    key,
                    Presence {
                        audio_stream_id: stream,
                        external_user_id: participant.external_user_id.clone(),
                        muted: false,
                        session: Some(sid),
                        audio_session_id,
                        grace_until: None,
                    },
                );
                Some(stream)
            }
        };
        let stream = meeting.stream_id_of(&key).expect("just inserted");
        if Session::sends_audio(participant.capabilities, key) && !meeting.is_replica() {
            meeting.mix_source(stream, key);
        }
        if let Some((old, same_device)) = superseded {
            // The same attendee on another connection: a reconnect of the same audio session
            // replaces it silently; another device makes the old one stop (301).
            meeting.sessions.remove(&old);
            self.demote(now, old, false);
            self.clear_peer(old);
            self.sessions.remove(&old);
            if !same_device {
                let ts = self.epoch_ms(now);
                self.send(old, SdkSignalFrame::audio_status(ts, 301));
            }
            self.outputs.push_back(Output::Close {
                session: old,
                code: 1000,
            });
            self.stop_publishing(meeting_id, key, now);
        }
        if let Some(stream) = announce {
            // Replica attendees are invisible: `deliver` drops a replica's own broadcasts.
            self.publish(
                meeting_id,
                FeedItem::Roster(vec![SdkAudioStreamIdInfo::present(
                    stream,
                    key.wire_id(),
                    participant.external_user_id.clone(),
                    false,
                )]),
                now,
            );
            self.event(
                MediaEventKind::AttendeeJoined,
                meeting_id,
                key,
                &participant.external_user_id,
            );
        }

        let ts = self.epoch_ms(now);
        self.send(
            sid,
            SdkSignalFrame::join_ack(
                ts,
                SdkJoinAckFrame {
                    video_subscription_limit: Some(self.config.video_subscription_limit),
                    wants_compressed_sdp: Some(false),
                    ..Default::default()
                },
            ),
        );
        if let Some(session) = self.sessions.get_mut(&sid) {
            session.joined = true;
        }
        // The snapshot of what this connection receives: for a replica connection, the
        // replica's mirror of its primary.
        self.send_index(sid, now);
        let meeting = self.meeting_mut(meeting_id, participant.primary, now);
        let (snapshot, replay) = match meeting.mirror.as_mut() {
            Some(mirror) => (mirror.roster(), mirror.replay(&key.wire_id(), now)),
            None => (
                meeting.roster_snapshot(),
                meeting.retention.replay(&key.wire_id(), now),
            ),
        };
        self.send(sid, SdkSignalFrame::audio_stream_id_info(ts, snapshot));
        if !replay.is_empty() {
            self.send(sid, SdkSignalFrame::data_message(ts, replay));
        }
    }

    fn on_leave(&mut self, now: Instant, sid: SessionId) {
        let ts = self.epoch_ms(now);
        self.send(sid, SdkSignalFrame::leave_ack(ts));
        self.demote(now, sid, false);
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        if session.left || !session.joined {
            return;
        }
        session.left = true;
        let key = session.participant.key;
        let meeting_id = session.participant.meeting;
        let ours = self
            .meetings
            .get(&meeting_id)
            .and_then(|m| m.roster.get(&key))
            .is_some_and(|p| p.session == Some(sid));
        // The entry stays (without a peer) until the adapter reports the socket closed.
        self.clear_peer(sid);
        if let Some(m) = self.meetings.get_mut(&meeting_id) {
            m.sessions.remove(&sid);
        }
        if ours {
            self.depart(now, meeting_id, key, Departure::Left);
        }
    }

    /// Ends a session from the server side with an AUDIO_STATUS code.
    fn end_session(&mut self, now: Instant, sid: SessionId, status: u32) {
        self.demote(now, sid, false);
        self.clear_peer(sid);
        let Some(session) = self.sessions.remove(&sid) else {
            return;
        };
        let key = session.participant.key;
        let meeting_id = session.participant.meeting;
        let ts = self.epoch_ms(now);
        if session.joined {
            self.send(sid, SdkSignalFrame::audio_status(ts, status));
            self.outputs.push_back(Output::Close {
                session: sid,
                code: 1000,
            });
        } else {
            self.outputs.push_back(Output::Close {
                session: sid,
                code: 4000 + status as u16,
            });
        }
        let ours = match self.meetings.get_mut(&meeting_id) {
            Some(m) => {
                m.sessions.remove(&sid);
                m.roster.get(&key).is_some_and(|p| p.session == Some(sid))
            }
            None => false,
        };
        if ours && !session.left {
            self.depart(now, meeting_id, key, Departure::Left);
        }
    }

    /// Removes a participant from the roster and tells everyone.
    fn depart(&mut self, now: Instant, meeting_id: MeetingId, key: ParticipantKey, how: Departure) {
        self.stop_publishing(meeting_id, key, now);
        let Some(meeting) = self.meetings.get_mut(&meeting_id) else {
            return;
        };
        let Some(presence) = meeting.roster.remove(&key) else {
            return;
        };
        meeting.mixer.remove_source(presence.audio_stream_id);
        // Neither attendee id nor muted means "gone"; `dropped` only when it was not a leave.
        let entry = SdkAudioStreamIdInfo {
            audio_stream_id: Some(presence.audio_stream_id),
            dropped: (how == Departure::Dropped).then_some(true),
            ..Default::default()
        };
        self.publish(meeting_id, FeedItem::Roster(vec![entry]), now);
        let kind = match how {
            Departure::Left => MediaEventKind::AttendeeLeft,
            Departure::Dropped => MediaEventKind::AttendeeDropped,
        };
        self.event(kind, meeting_id, key, &presence.external_user_id);
        self.forget_if_idle(meeting_id, now);
    }

    /// Drops a meeting's state once nobody is connected to it or through it — unless it still
    /// holds data messages within their lifetime, which a late joiner must get (the liveness
    /// sweep retries once they expire).
    fn forget_if_idle(&mut self, meeting_id: MeetingId, now: Instant) {
        let idle = self.meetings.get_mut(&meeting_id).is_some_and(|m| {
            m.roster.is_empty()
                && m.sessions.is_empty()
                && m.replicas.is_empty()
                && !m.retention.holds_messages(now)
        });
        if idle
            && let Some(m) = self.meetings.remove(&meeting_id)
            && let Some(primary) = m.primary
        {
            if let Some(p) = self.meetings.get_mut(&primary) {
                p.replicas.remove(&meeting_id);
            }
            self.forget_if_idle(primary, now);
        }
    }

    /// Ends a replica connection's promotion. `by_server`: the primary attendee was deleted,
    /// so the client is told with PRIMARY_MEETING_LEAVE (a client-initiated leave needs no
    /// answer).
    fn demote(&mut self, now: Instant, sid: SessionId, by_server: bool) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let (Some(promotion), Some(primary)) =
            (session.promoted.take(), session.participant.primary)
        else {
            return;
        };
        let joined = session.joined;
        let ours = self
            .meetings
            .get(&primary)
            .and_then(|m| m.roster.get(&promotion.key))
            .is_some_and(|p| p.session == Some(sid));
        if ours {
            self.depart(now, primary, promotion.key, Departure::Left);
        }
        if by_server {
            let ts = self.epoch_ms(now);
            self.send(sid, SdkSignalFrame::primary_meeting_leave(ts));
        }
        if joined {
            self.send_index(sid, now);
        }
    }

    fn on_primary_meeting_join(
        &mut self,
        now: Instant,
        sid: SessionId,
        credentials: Option<SdkMeetingSessionCredentials>,
    ) {
        let ts = self.epoch_ms(now);
        let Some(session) = self.sessions.get(&sid) else {
            return;
        };
        match (session.participant.primary, credentials) {
            // Before JOIN there is nothing to promote: refused, but answered (the client
            // waits for the ack).
            (Some(primary), Some(credentials))
                if !session.participant.key.content && session.joined =>
            {
                self.outputs.push_back(Output::Authorize {
                    session: sid,
                    primary,
                    credentials,
                });
            }
            // Not a replica connection, or no credentials: 403.
            _ => self.send(sid, SdkSignalFrame::primary_meeting_join_ack(ts, Some(403))),
        }
    }

    fn on_mute(&mut self, sid: SessionId, muted: bool, now: Instant) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        // Remembered for a later promotion of a replica viewer.
        session.muted = muted;
        let Some((meeting_id, key)) = session.acting().map(|a| (a.meeting, a.key)) else {
            return;
        };
        let Some(presence) = self
            .meetings
            .get_mut(&meeting_id)
            .and_then(|m| m.roster.get_mut(&key))
            .filter(|p| p.session == Some(sid))
        else {
            return;
        };
        if presence.muted == muted {
            return;
        }
        presence.muted = muted;
        let stream = presence.audio_stream_id;
        self.publish(
            meeting_id,
            FeedItem::Roster(vec![SdkAudioStreamIdInfo::mute_change(stream, muted)]),
            now,
        );
    }

    fn on_data(&mut self, now: Instant, sid: SessionId, messages: Vec<SdkDataMessagePayload>) {
        let Some(session) = self.sessions.get(&sid).filter(|s| s.joined) else {
            return;
        };
        let ts = self.epoch_ms(now);
        let ingest_ns =
            i64::try_from(u128::from(self.epoch_ms(now)) * 1_000_000).unwrap_or(i64::MAX);
        let acting = session
            .acting()
            .map(|a| (a.meeting, a.key, a.external_user_id.to_owned()));
        let Some((meeting_id, sender_key, sender_external)) = acting else {
            // A replica viewer may not send: every message comes back marked throttled.
            let refused: Vec<SdkDataMessagePayload> = messages
                .into_iter()
                .filter(data::is_valid)
                .map(|mut m| {
                    m.ingest_time_ns = Some(0);
                    m
                })
                .collect();
            if !refused.is_empty() {
                self.send(sid, SdkSignalFrame::data_message(ts, refused));
            }
            return;
        };
        let sender = sender_key.wire_id();
        let mut accepted = Vec::new();
        let mut throttled = Vec::new();
        let Some(meeting) = self.meetings.get_mut(&meeting_id) else {
            return;
        };
        for mut message in messages.into_iter().filter(data::is_valid) {
            message.sender_attendee_id = Some(sender.clone());
            message.sender_external_user_id = Some(sender_external.clone());
            if meeting.throttle.allow(now) {
                message.ingest_time_ns = Some(ingest_ns);
                meeting.retention.keep(&message, now);
                accepted.push(message);
            } else {
                // ingest_time_ns = 0 is how the client learns a message was throttled.
                message.ingest_time_ns = Some(0);
                throttled.push(message);
            }
        }
        if !throttled.is_empty() {
            self.send(sid, SdkSignalFrame::data_message(ts, throttled));
        }
        if !accepted.is_empty() {
            self.publish(
                meeting_id,
                FeedItem::Data {
                    messages: accepted,
                    sender: sender_key,
                },
                now,
            );
        }
    }

    fn on_remote_video_update(
        &mut self,
        now: Instant,
        sid: SessionId,
        update: carillon_signaling::proto::SdkRemoteVideoUpdateFrame,
    ) {
        let Some(session) = self.sessions.get(&sid) else {
            return;
        };
        let own_key = session.acting().map(|a| a.key);
        let allowed: Vec<(String, u32)> = update
            .added_or_updated_video_subscriptions
            .iter()
            .filter_map(|c| {
                let stream = c.stream_id.unwrap_or(0);
                let publisher = self.video_publisher(session, stream)?;
                let ok = Some(publisher) != own_key && session.may_receive_video(publisher.content);
                ok.then(|| (c.mid.clone(), stream))
            })
            .collect();
        if !allowed.is_empty() {
            // Video for a hibernated viewer goes through an `Rtc` again.
            self.wake(now, sid);
        }
        let Some(peer) = self.sessions.get_mut(&sid).and_then(|s| s.peer.as_mut()) else {
            return;
        };
        let mut newly = Vec::new();
        for (mid, stream) in allowed {
            let mid = Mid::from(mid.as_str());
            if let Some(slot) = peer.lines.video_out.iter_mut().find(|(m, _)| *m == mid)
                && slot.1 != stream
            {
                slot.1 = stream;
                newly.push(stream);
            }
        }
        for mid in &update.removed_video_subscription_mids {
            let mid = Mid::from(mid.as_str());
            if let Some(slot) = peer.lines.video_out.iter_mut().find(|(m, _)| *m == mid) {
                slot.1 = 0;
            }
        }
        for stream in newly {
            self.want_keyframe(sid, stream, now, true);
        }
    }

    fn on_pause(&mut self, now: Instant, sid: SessionId, streams: &[u32], resume: bool) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        for stream in streams {
            if resume {
                session.paused.remove(stream);
            } else {
                session.paused.insert(*stream);
            }
        }
        if resume {
            for stream in streams {
                self.want_keyframe(sid, *stream, now, true);
            }
        }
    }

    // ----- internals: media -----

    /// A new `Rtc`, and the capture its DTLS handshake exports the SRTP keys into. With
    /// `seed`, str0m's random choices are that seed's (see [`crate::hibernate`]). With
    /// `resume`, it continues a connection that hibernated: the same ICE credentials, and DTLS
    /// already connected with the keys it had.
    fn new_rtc(
        &self,
        now: Instant,
        seed: Option<u64>,
        resume: Option<(&SrtpKeys, &IceCreds)>,
    ) -> (Rtc, KeyCapture) {
        let build = || {
            let builder = Rtc::builder();
            let builder = if self.config.seal_mixed_audio || resume.is_some() {
                builder.set_crypto_provider(srtp::capturing_provider())
            } else {
                builder
            };
            let builder = match resume {
                Some((_, ice)) => builder.set_local_ice_credentials(ice.clone()),
                None => builder,
            };
            let builder = builder
                .set_ice_lite(true)
                .set_dtls_cert(self.cert.clone())
                .clear_codecs()
                .enable_opus(true, false)
                .enable_vp8(true)
                // Packets, not frames: video is forwarded packet by packet (no depacketizing,
                // no repacketizing, no waiting for a frame's last packet) and our mixer has its
                // own jitter buffer for audio.
                .set_rtp_mode(true);
            match seed {
                Some(seed) => hibernate::seeded(seed, || builder.build(now)),
                None => builder.build(now),
            }
        };
        let (mut rtc, keys) = match resume {
            Some((keys, _)) => srtp::with_resumed_dtls(keys, build),
            None => srtp::with_key_capture(build),
        };
        if let Ok(candidate) = Candidate::host(self.config.candidate, "udp") {
            rtc.add_local_candidate(candidate);
        }
        (rtc, keys)
    }

    /// Replica viewers that only listen, whose connection settled, give up their `Rtc` (see
    /// [`crate::hibernate`]); hibernated ones the client stopped checking are forgotten, as an
    /// `Rtc` would report them disconnected.
    fn hibernate_viewers(&mut self, now: Instant) {
        let gone: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.hibernated.as_ref().is_some_and(|h| !h.alive(now)))
            .map(|(sid, _)| *sid)
            .collect();
        for sid in gone {
            tracing::debug!(session = sid, "hibernated viewer stopped its ICE checks");
            self.clear_peer(sid);
        }
        if !self.config.hibernate_viewers {
            return;
        }
        for (sid, session) in self.sessions.iter_mut() {
            let ready = session.in_replica()
                && session.promoted.is_none()
                && session.peer.as_ref().is_some_and(|p| {
                    p.rtc.is_connected()
                        && matches!(p.audio_path, AudioPath::Sealed(_))
                        && p.media_destination.is_some()
                        && p.lines.video_out.iter().all(|(_, stream)| *stream == 0)
                        && p.keys.get().is_some()
                        && p.replay.as_ref().is_some_and(|r| r.ready(now))
                });
            if !ready {
                continue;
            }
            let peer = *session.peer.take().expect("checked above");
            let (AudioPath::Sealed(sealer), Some(destination), Some(keys), Some(replay)) = (
                peer.audio_path,
                peer.media_destination,
                peer.keys.get().cloned(),
                peer.replay,
            ) else {
                continue;
            };
            tracing::debug!(session = sid, "replica viewer hibernated");
            session.hibernated = Some(Box::new(Hibernated {
                replay,
                keys,
                sealer,
                destination,
                lines: peer.lines,
                last_check: now,
            }));
        }
    }

    /// Gives a hibernated connection an `Rtc` again, continuing the same ICE pair, DTLS
    /// session and SRTP streams (see [`crate::hibernate`]).
    fn wake(&mut self, now: Instant, sid: SessionId) {
        let Some(h) = self
            .sessions
            .get_mut(&sid)
            .and_then(|s| s.hibernated.take())
        else {
            return;
        };
        let Hibernated {
            mut replay,
            keys,
            sealer,
            destination,
            lines,
            last_check: _,
        } = *h;
        let (mut rtc, capture) = self.new_rtc(now, Some(replay.seed), Some((&keys, &replay.ice)));
        for (k, offer) in replay.offers.iter().enumerate() {
            let seed = replay.seed.wrapping_add(1 + k as u64);
            let accepted = SdpOffer::from_sdp_string(offer)
                .map_err(|e| e.to_string())
                .and_then(|offer| {
                    hibernate::seeded(seed, || rtc.sdp_api().accept_offer(offer))
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = accepted {
                // Cannot happen for offers str0m accepted before; the client will find its
                // connection dead and reconnect.
                tracing::warn!(session = sid, error = %e, "a hibernated connection could not be replayed");
                self.by_addr.retain(|_, s| *s != sid);
                return;
            }
        }
        // The client's own nomination, as received: the new `Rtc` nominates the same pair.
        if let Some((source, request)) = &replay.nomination
            && let Ok(contents) = request.as_slice().try_into()
        {
            let input = Input::Receive(
                now,
                Receive {
                    proto: Protocol::Udp,
                    source: *source,
                    destination: self.config.candidate,
                    contents,
                },
            );
            if let Err(e) = rtc.handle_input(input) {
                tracing::debug!(session = sid, error = %e, "replayed nomination refused");
            }
        }
        // A new SRTP receive context would start the client's audio at rollover counter 0.
        if let (Some((ssrc, roc)), Some(mid)) = (replay.client_rtp.roc(), lines.audio_mid)
            && roc > 0
        {
            let mut api = rtc.direct_api();
            let ssrc = ssrc.into();
            if api.stream_rx(&ssrc).is_none() {
                api.expect_stream_rx(ssrc, None, mid, None);
            }
            if let Some(stream) = api.stream_rx(&ssrc) {
                stream.reset_roc(roc);
            }
        }
        // The seeded replay gives the mix's m-line the SSRC it had: the browser knows that one
        // from our answer, and later answers of the new `Rtc` must agree with it.
        if let Some(mid) = lines.audio_mid
            && let Some(stream) = rtc.direct_api().stream_tx_by_mid(mid, None)
            && *stream.ssrc() != sealer.ssrc()
        {
            tracing::warn!(
                session = sid,
                "a replayed connection chose another SSRC for the mix"
            );
        }
        replay.reindexer = srtp::SrtcpReindexer::new(&keys, replay.srtcp_next);
        tracing::debug!(session = sid, "hibernated viewer woken");
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        session.peer = Some(Box::new(Peer {
            rtc,
            keys: capture,
            audio_path: AudioPath::Sealed(sealer),
            media_destination: Some(destination),
            lines,
            next_timeout: now,
            scheduled: None,
            dirty: false,
            replay: Some(replay),
        }));
        self.pending_at = now;
        self.drain_peer(sid, now);
    }

    /// Forgets a session's peer (and the addresses that routed to it).
    fn clear_peer(&mut self, sid: SessionId) {
        if let Some(session) = self.sessions.get_mut(&sid)
            && (session.peer.take().is_some() | session.hibernated.take().is_some())
        {
            self.by_addr.retain(|_, s| *s != sid);
        }
    }

    fn on_subscribe(&mut self, now: Instant, sid: SessionId, sub: SdkSubscribeFrame) {
        let ts = self.epoch_ms(now);
        let reject = |engine: &mut Engine, description: &str| {
            tracing::debug!(session = sid, reason = description, "SUBSCRIBE rejected");
            let frame = SdkSignalFrame::subscribe_ack(ts, SdkSubscribeAckFrame::default())
                .with_error(400, Some(description.to_owned()));
            engine.send(sid, frame);
        };
        let Some(session) = self.sessions.get(&sid) else {
            return;
        };
        if !session.joined {
            return reject(self, "SUBSCRIBE before JOIN");
        }
        // The client reports its mute state on every SUBSCRIBE (AUDIO_CONTROL only for later
        // changes): someone muted before the audio started must show as muted.
        if let Some(muted) = sub.audio_muted {
            self.on_mute(sid, muted, now);
        }
        let Some(session) = self.sessions.get(&sid) else {
            return;
        };
        let Some(offer_text) = sub.sdp_offer.clone().filter(|s| !s.is_empty()) else {
            return reject(
                self,
                "SUBSCRIBE without sdp_offer (compressed SDP is not supported)",
            );
        };
        let layout = match OfferLayout::parse(&offer_text) {
            Ok(layout) => layout,
            Err(e) => return reject(self, &e.to_string()),
        };
        let offer_sdp = sdp::without_audio_transport_cc(&offer_text);
        let Ok(offer) = SdpOffer::from_sdp_string(&offer_sdp) else {
            return reject(self, "the SDP offer could not be parsed");
        };
        if let Some(h) = &session.hibernated {
            // Same RTCPeerConnection: it renegotiates, which needs the `Rtc` back.
            if h.lines.remote_ufrag == layout.ice_ufrag {
                self.wake(now, sid);
            } else {
                self.clear_peer(sid);
            }
        }
        let Some(session) = self.sessions.get(&sid) else {
            return;
        };
        let reuse = session
            .peer
            .as_ref()
            .is_some_and(|p| p.lines.remote_ufrag == layout.ice_ufrag);
        if !reuse {
            // A replica viewer's connection may hibernate later: its choices must replay.
            let seed = session.in_replica().then(random_seed);
            self.clear_peer(sid);
            let (mut rtc, keys) = self.new_rtc(now, seed, None);
            let replay = seed.map(|seed| {
                let ice = rtc.direct_api().local_ice_credentials();
                Box::new(Replay::new(seed, ice))
            });
            let session = self.sessions.get_mut(&sid).expect("checked above");
            session.peer = Some(Box::new(Peer {
                replay,
                rtc,
                keys,
                audio_path: AudioPath::Undecided,
                media_destination: None,
                lines: MediaLines {
                    remote_ufrag: layout.ice_ufrag.clone(),
                    audio_seq: 1,
                    ..MediaLines::default()
                },
                next_timeout: now,
                scheduled: None,
                dirty: false,
            }));
        }
        let session = self.sessions.get_mut(&sid).expect("checked above");
        let peer = session.peer.as_mut().expect("created above");
        let accepted = match peer.replay.as_ref() {
            Some(replay) => hibernate::seeded(replay.next_offer_seed(), || {
                peer.rtc.sdp_api().accept_offer(offer)
            }),
            None => peer.rtc.sdp_api().accept_offer(offer),
        };
        let answer = match accepted {
            Ok(answer) => {
                if let Some(replay) = peer.replay.as_mut() {
                    replay.record_offer(offer_sdp);
                }
                answer
            }
            Err(e) => {
                let message = format!("the SDP offer was not accepted: {e}");
                return reject(self, &message);
            }
        };
        peer.lines.audio_mid = layout.audio().map(|s| Mid::from(s.mid.as_str()));
        peer.lines.camera_mid = layout.camera().map(|s| Mid::from(s.mid.as_str()));
        peer.lines.opus_pt = peer
            .lines
            .audio_mid
            .and_then(|mid| payload_type(&peer.rtc, mid, Codec::Opus));

        let acting = session
            .acting()
            .map(|a| (a.meeting, a.key, a.external_user_id.to_owned()));
        let may_send_video = session.may_send_video();
        let duplex = sub.duplex.unwrap_or(SdkStreamServiceType::Rx as i32);
        let video_streams: Vec<_> = sub
            .send_streams
            .iter()
            .filter(|d| d.media_type == Some(SdkStreamMediaType::Video as i32))
            .collect();
        let camera_sending = layout.camera().is_some_and(|c| {
            !c.stopped && matches!(c.direction, Direction::SendRecv | Direction::SendOnly)
        });
        let wants_publish = duplex != SdkStreamServiceType::Rx as i32
            && !video_streams.is_empty()
            && camera_sending;

        let mut allocations = Vec::new();
        let mut refused = false;
        let mut index_changed = false;
        let mut started = None;
        match (&acting, wants_publish && may_send_video) {
            (Some((meeting_id, key, external)), true)
                if self
                    .meetings
                    .get(meeting_id)
                    .is_some_and(|m| m.has_room_for(key)) =>
            {
                let meeting = self.meetings.get_mut(meeting_id).expect("checked above");
                let first = video_streams[0];
                let was = meeting.publishes(key);
                let (stream, group, changed) = meeting.publish(
                    *key,
                    external,
                    sid,
                    &layout.camera().expect("camera_sending").mid,
                    first.max_bitrate_kbps.unwrap_or(1400),
                    first.framerate.unwrap_or(15),
                );
                index_changed |= changed;
                if !was {
                    started = Some((*meeting_id, *key, external.clone()));
                }
                allocations = video_streams
                    .iter()
                    .map(|d| SdkStreamAllocation {
                        track_label: d.track_label.clone(),
                        stream_id: Some(stream),
                        group_id: Some(group),
                    })
                    .collect();
            }
            _ => refused = wants_publish,
        }

        // Which remote stream each of the client's receiving video m-lines gets.
        let video_sections: Vec<&sdp::Section> = layout.video_sections().collect();
        let mut ids = sub.receive_stream_ids.clone();
        if ids.len() == video_sections.len() + 1 && ids.first() == Some(&0) {
            // The C++ SDK prepends a 0 for the audio m-line.
            ids.remove(0);
        }
        let own_key = acting.as_ref().map(|a| a.1);
        let session = self.sessions.get(&sid).expect("checked above");
        let peer = session.peer.as_ref().expect("created above");
        let mut video_out = Vec::new();
        let mut newly = Vec::new();
        let mut receive_mids = Vec::new();
        for (i, section) in video_sections.iter().enumerate() {
            if section.stopped || section.direction != Direction::RecvOnly {
                continue;
            }
            receive_mids.push(section.mid.clone());
            let mid = Mid::from(section.mid.as_str());
            let wanted = ids.get(i).copied().unwrap_or(0);
            let valid = self
                .video_publisher(session, wanted)
                .is_some_and(|p| Some(p) != own_key && session.may_receive_video(p.content));
            let stream = if valid { wanted } else { 0 };
            if stream != 0 && !peer.lines.video_out.contains(&(mid, stream)) {
                newly.push(stream);
            }
            video_out.push((mid, stream));
        }
        let sdp_answer = sdp::label_video_tracks(&answer.to_sdp_string(), &receive_mids);
        let ssrcs = sdp::ssrcs_by_mid(&sdp_answer);
        let tracks: Vec<SdkTrackMapping> = video_out
            .iter()
            .filter(|(_, stream)| *stream != 0)
            .filter_map(|(mid, stream)| {
                let ssrc = ssrcs.iter().find(|(m, _)| m == &mid.to_string())?.1;
                Some(SdkTrackMapping {
                    stream_id: Some(*stream),
                    ssrc: Some(ssrc),
                    track_label: Some(format!("v_{mid}")),
                })
            })
            .collect();
        if let Some(peer) = self.sessions.get_mut(&sid).and_then(|s| s.peer.as_mut()) {
            // An m-line we keep sending on keeps its numbering (and its payload type);
            // its payload type is looked up again only for a new one.
            let mut kept = std::mem::take(&mut peer.lines.video_tx);
            peer.lines.video_tx = video_out
                .iter()
                .map(|(mid, _)| match kept.iter().position(|t| t.mid == *mid) {
                    Some(i) => kept.swap_remove(i),
                    None => VideoTx {
                        mid: *mid,
                        pt: None,
                        rebase: Rebase::default(),
                    },
                })
                .collect();
            peer.lines.video_out = video_out;
        }

        let mut frame = SdkSignalFrame::subscribe_ack(
            ts,
            SdkSubscribeAckFrame {
                duplex: Some(duplex),
                allocations,
                sdp_answer: Some(sdp_answer),
                tracks,
                ..Default::default()
            },
        );
        if refused {
            // VideoCallSwitchToViewOnly: the client removes its local tile and keeps going.
            frame = frame.with_error(206, Some("video publishing is not available".to_owned()));
        }
        self.send(sid, frame);
        if let Some((meeting_id, key, _)) = &acting
            && (!wants_publish || refused)
        {
            self.stop_publishing(*meeting_id, *key, now);
        }
        if let Some((meeting_id, key, external)) = started {
            self.event(
                MediaEventKind::AttendeeVideoStarted,
                meeting_id,
                key,
                &external,
            );
        }
        if index_changed && let Some((meeting_id, _, _)) = &acting {
            self.broadcast_index(*meeting_id, now);
        } else if refused {
            self.send_index(sid, now);
        }
        for stream in newly {
            self.want_keyframe(sid, stream, now, true);
        }
        self.mark(sid);
    }

    /// Withdraws a participant's published video, if any, and tells everyone.
    fn stop_publishing(&mut self, meeting_id: MeetingId, key: ParticipantKey, now: Instant) {
        let Some(meeting) = self.meetings.get_mut(&meeting_id) else {
            return;
        };
        let external = meeting
            .sources
            .iter()
            .find(|s| s.key == key)
            .map(|s| s.external_user_id.clone());
        if meeting.unpublish(&key) {
            self.broadcast_index(meeting_id, now);
            self.event(
                MediaEventKind::AttendeeVideoStopped,
                meeting_id,
                key,
                &external.unwrap_or_default(),
            );
        }
    }

    /// Asks the publisher of `stream` for a keyframe (PLI), at most every 300 ms.
    fn request_keyframe(&mut self, meeting_id: MeetingId, stream: u32, now: Instant, force: bool) {
        let Some(source) = self
            .meetings
            .get(&meeting_id)
            .and_then(|m| m.source(stream))
        else {
            return;
        };
        let publisher = source.session;
        let mid = Mid::from(source.mid.as_str());
        if !force
            && self
                .keyframe_requested
                .get(&publisher)
                .is_some_and(|t| now.saturating_duration_since(*t) < KEYFRAME_INTERVAL)
        {
            return;
        }
        if let Some(peer) = self
            .sessions
            .get_mut(&publisher)
            .and_then(|s| s.peer.as_mut())
            && let Some(stream) = peer.rtc.direct_api().stream_rx_by_mid(mid, None)
        {
            // PLI: our VP8 parameters always offer it (str0m's defaults), and browsers
            // answer it.
            stream.request_keyframe(KeyframeRequestKind::Pli);
            self.keyframe_requested.insert(publisher, now);
            self.mark(publisher);
        }
    }

    /// Queues a peer for draining (once, however often it is marked before the next pass).
    fn mark(&mut self, sid: SessionId) {
        if let Some(peer) = self.sessions.get_mut(&sid).and_then(|s| s.peer.as_mut()) {
            mark_dirty(&mut self.dirty, peer, sid);
        }
    }

    /// Drains str0m outputs of dirty peers and handles their events, until quiet.
    fn settle(&mut self, now: Instant) {
        while self.settle_step(now) {}
    }

    /// One step of settling: drains a dirty peer or, when none is left, handles one str0m
    /// event. False when there was nothing to do.
    fn settle_step(&mut self, now: Instant) -> bool {
        if let Some(sid) = self.dirty.pop() {
            self.drain_peer(sid, now);
        } else if let Some((sid, event)) = self.rtc_events.pop_front() {
            self.on_rtc_event(now, sid, event);
        } else {
            return false;
        }
        true
    }

    fn drain_peer(&mut self, sid: SessionId, now: Instant) {
        let Some(peer) = self.sessions.get_mut(&sid).and_then(|s| s.peer.as_mut()) else {
            return;
        };
        peer.dirty = false;
        // A timeout that is already due (str0m asks for one right after a write, to packetize
        // it) is handled here rather than through the timer heap and another turn of the
        // event loop: that is one wake-up per packet sent.
        let mut immediate = 0;
        loop {
            match peer.rtc.poll_output() {
                Ok(str0m::Output::Transmit(t)) => {
                    // DTLS (first byte 20-63) and RTP/RTCP (128-191) go to the pair in use;
                    // STUN answers (0-3) go to whichever pair was checked.
                    if matches!(t.contents.first(), Some(20..=63 | 128..=191)) {
                        peer.media_destination = Some(t.destination);
                    }
                    let contents = match peer.replay.as_mut() {
                        Some(replay) => {
                            let profile = peer.keys.get().map(|k| k.profile);
                            match replay.outgoing(t.contents.into(), profile) {
                                Some(contents) => contents,
                                None => continue,
                            }
                        }
                        None => t.contents.into(),
                    };
                    self.outputs.push_back(Output::Transmit {
                        source: t.source,
                        destination: t.destination,
                        contents,
                    })
                }
                Ok(str0m::Output::Event(e)) => self.rtc_events.push_back((sid, e)),
                Ok(str0m::Output::Timeout(t)) if t <= now && immediate < MAX_IMMEDIATE_TIMEOUTS => {
                    immediate += 1;
                    if let Err(e) = peer.rtc.handle_input(Input::Timeout(now)) {
                        tracing::debug!(session = sid, error = %e, "peer timeout failed");
                    }
                }
                Ok(str0m::Output::Timeout(t)) => {
                    peer.next_timeout = t;
                    break;
                }
                Err(e) => {
                    tracing::debug!(session = sid, error = %e, "peer failed");
                    peer.rtc.disconnect();
                    break;
                }
            }
        }
        // One heap entry per peer at its earliest time; later times are re-pushed when it pops.
        if peer.scheduled.is_none_or(|s| peer.next_timeout < s) {
            peer.scheduled = Some(peer.next_timeout);
            self.timers.push(Reverse((peer.next_timeout, sid)));
        }
    }

    fn on_rtc_event(&mut self, now: Instant, sid: SessionId, event: Event) {
        match event {
            Event::RtpPacket(packet) => self.on_rtp(now, sid, packet),
            Event::KeyframeRequest(req) => {
                let Some(session) = self.sessions.get(&sid) else {
                    return;
                };
                let stream = session
                    .peer
                    .as_ref()
                    .and_then(|p| p.lines.video_out.iter().find(|(m, _)| *m == req.mid))
                    .map(|(_, stream)| *stream)
                    .filter(|s| *s != 0);
                if let Some(stream) = stream {
                    self.want_keyframe(sid, stream, now, false);
                }
            }
            Event::Connected => {
                if let Some(replay) = self
                    .sessions
                    .get_mut(&sid)
                    .and_then(|s| s.peer.as_mut())
                    .and_then(|p| p.replay.as_mut())
                {
                    replay.connected_at.get_or_insert(now);
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                // The client will reconnect with a new peer connection.
                self.clear_peer(sid);
            }
            _ => {}
        }
    }

    fn on_rtp(&mut self, now: Instant, sid: SessionId, packet: RtpPacket) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        session.last_media = Some(now);
        let Some(peer) = session.peer.as_mut() else {
            return;
        };
        let Some(mid) = peer
            .rtc
            .direct_api()
            .stream_rx(&packet.header.ssrc)
            .map(|s| s.mid())
        else {
            return;
        };
        let audio_mid = peer.lines.audio_mid;
        // Camera video is forwarded if it is VP8 (the only video codec negotiated).
        let camera_vp8 = Some(mid) == peer.lines.camera_mid
            && payload_codec(&peer.rtc, packet.header.payload_type) == Some(Codec::Vp8);
        // A replica viewer's uplink goes nowhere.
        let Some(acting) = session.acting() else {
            return;
        };
        let (meeting_id, key, audio_sends) = (
            acting.meeting,
            acting.key,
            Session::sends_audio(acting.capabilities, acting.key),
        );
        if Some(mid) == audio_mid {
            if !audio_sends {
                return;
            }
            let Some(meeting) = self.meetings.get_mut(&meeting_id) else {
                return;
            };
            let Some(presence) = meeting.roster.get(&key).filter(|p| p.session == Some(sid)) else {
                return;
            };
            if presence.muted || meeting.is_replica() {
                return;
            }
            let stream = presence.audio_stream_id;
            let level = packet
                .header
                .ext_vals
                .audio_level
                .map(|l| l.unsigned_abs().min(127));
            meeting.mixer.push(
                stream,
                packet.time.numer() as u32,
                &packet.payload,
                level,
                now,
            );
            // A tick waiting for a late frame is tried again at once.
            meeting.mix_at = meeting.mix_at.min(meeting.next_mix);
            return;
        }
        if !camera_vp8 {
            return;
        }
        let Some(source) = self.meetings.get_mut(&meeting_id).and_then(|m| {
            m.sources
                .iter_mut()
                .find(|s| s.key == key && s.session == sid)
        }) else {
            return;
        };
        let payload = RtpPayload {
            seq: *packet.seq_no,
            time: packet.header.timestamp,
            marker: packet.header.marker,
            payload: packet.payload,
        };
        if let Some(packets) = source.hold.push(payload, now) {
            let item = video_item(source, packets);
            self.publish(meeting_id, item, now);
        }
    }

    /// Mixer ticks, AUDIO_METADATA and reconnect deadlines of one meeting.
    fn meeting_timers(&mut self, now: Instant, meeting_id: MeetingId) {
        // Frames whose last packet did not come in time go as they are.
        let due: Vec<FeedItem> = self
            .meetings
            .get_mut(&meeting_id)
            .map(|m| {
                m.sources
                    .iter_mut()
                    .filter_map(|s| {
                        let packets = s.hold.take_due(now)?;
                        Some(video_item(s, packets))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for item in due {
            self.publish(meeting_id, item, now);
        }
        // Reconnect grace periods that ran out: the participant dropped.
        let expired: Vec<ParticipantKey> = self
            .meetings
            .get(&meeting_id)
            .map(|m| {
                m.roster
                    .iter()
                    .filter(|(_, p)| p.grace_until.is_some_and(|t| t <= now))
                    .map(|(k, _)| *k)
                    .collect()
            })
            .unwrap_or_default();
        for key in expired {
            self.depart(now, meeting_id, key, Departure::Dropped);
        }
        let Some(meeting) = self.meetings.get(&meeting_id) else {
            return;
        };
        if meeting.is_replica() || !self.has_audience(meeting) {
            return;
        }
        let meeting = self.meetings.get_mut(&meeting_id).expect("checked above");
        if now.saturating_duration_since(meeting.next_mix) > 10 * FRAME {
            // Too far behind (a stall): skip ahead rather than burst.
            meeting.next_mix = now;
        }
        let mut frames = 0;
        let first_due = meeting.next_mix;
        let waits = meeting.next_mix <= now
            && now < meeting.next_mix + MIX_GRACE
            && meeting.mixer.awaits_mixed_frame(now);
        if waits {
            // Tried again when the frame arrives (see `on_rtp`), or at the grace's end.
            meeting.mix_at = meeting.next_mix + MIX_GRACE;
        } else {
            while meeting.next_mix <= now {
                meeting.next_mix += FRAME;
                frames += 1;
            }
            meeting.mix_at = meeting.next_mix;
        }
        let metadata_due = meeting.next_metadata <= now;
        if metadata_due {
            meeting.next_metadata = now + self.config.metadata_interval;
        }
        for i in 0..frames {
            self.mix(now, first_due + FRAME * i, meeting_id);
        }
        if frames > 0 {
            self.advance_ticks(now, meeting_id);
        }
        if metadata_due {
            self.audio_metadata(now, meeting_id);
        }
    }

    /// Moves a meeting's mix ticks earlier when every mixed speaker's packets have arrived
    /// well ahead of them for a while (see `Mixer::tick_advance`): the phase of the ticks
    /// against the speakers' packets is otherwise an accident of when the meeting started,
    /// and costs up to a frame of delay on everything the listeners hear.
    fn advance_ticks(&mut self, now: Instant, meeting_id: MeetingId) {
        let Some(meeting) = self.meetings.get_mut(&meeting_id) else {
            return;
        };
        let Some(advance) = meeting.mixer.tick_advance() else {
            return;
        };
        if advance < MIN_TICK_ADVANCE {
            return;
        }
        let next = meeting
            .next_mix
            .checked_sub(advance)
            .unwrap_or(meeting.next_mix)
            .max(now);
        meeting.next_mix = next;
        meeting.mix_at = next;
        meeting.mixer.ticks_moved();
        self.tick_advances += 1;
        tracing::debug!(meeting = %meeting_id, ?advance, "mix ticks moved earlier");
    }

    /// One 20 ms mixed frame (the one due at `due`) to every listener of a meeting and of its
    /// replicas.
    fn mix(&mut self, now: Instant, due: Instant, meeting_id: MeetingId) {
        let Some(meeting) = self.meetings.get_mut(&meeting_id) else {
            return;
        };
        let frame = meeting.mixer.tick_scheduled(now, due);
        let item = FeedItem::Audio {
            shared: Arc::from(&frame.shared[..]),
            minus_one: frame
                .minus_one
                .iter()
                .map(|(id, p)| (*id, Arc::from(&p[..])))
                .collect(),
        };
        self.publish(meeting_id, item, now);
    }

    /// Volume and signal indicators (sparse: the client treats absent attendees as silent and
    /// at full signal strength).
    fn audio_metadata(&mut self, now: Instant, meeting_id: MeetingId) {
        let Some(meeting) = self.meetings.get(&meeting_id) else {
            return;
        };
        let mut states: Vec<SdkAudioAttendeeState> = Vec::new();
        let mut speakers = Vec::new();
        for presence in meeting.roster.values() {
            let stream = presence.audio_stream_id;
            let level = meeting.mixer.level(stream).unwrap_or(127);
            let volume = (!presence.muted && level < 100).then_some(u32::from(level));
            if volume.is_some() {
                speakers.push(stream);
            }
            let strength = match presence
                .session
                .and_then(|s| self.sessions.get(&s))
                .and_then(|s| s.last_media)
            {
                Some(t) if now.saturating_duration_since(t) < Duration::from_secs(2) => 2,
                Some(t) if now.saturating_duration_since(t) < Duration::from_secs(10) => 1,
                _ if presence.session.is_some() => 2,
                _ => 0,
            };
            let signal = (strength < 2).then_some(strength);
            if volume.is_some() || signal.is_some() {
                states.push(SdkAudioAttendeeState {
                    audio_stream_id: Some(stream),
                    volume,
                    muted: None,
                    signal_strength: signal,
                });
            }
        }
        if speakers.is_empty() && !meeting.last_speakers.is_empty() {
            // Nobody speaks any more: one explicit silent entry resets everyone's indicator.
            let stream = meeting.last_speakers[0];
            states.push(SdkAudioAttendeeState {
                audio_stream_id: Some(stream),
                volume: Some(127),
                muted: None,
                signal_strength: None,
            });
        }
        if let Some(m) = self.meetings.get_mut(&meeting_id) {
            m.last_speakers = speakers;
        }
        if !states.is_empty() {
            self.publish(meeting_id, FeedItem::Metadata(states), now);
        }
    }
}

/// The SRTP packet of a mixed-audio frame, numbered as the connection's next one.
fn sealed_mix(sealer: &RtpSealer, lines: &MediaLines, pt: Pt, payload: &[u8]) -> Vec<u8> {
    let (seq, timestamp, marker) = lines.next_mix();
    sealer.seal(RtpOut {
        payload_type: *pt,
        marker,
        seq,
        timestamp,
        payload,
    })
}

/// A seed for str0m's choices on a new connection (see [`crate::hibernate`]).
fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    // The system generator failing leaves a fixed seed: SSRCs are not secrets.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// Packets of a published (VP8) video, as its meeting's feed carries them.
fn video_item(source: &VideoSource, packets: Vec<RtpPayload>) -> FeedItem {
    FeedItem::Video(VideoPackets {
        stream_id: source.stream_id,
        content: source.key.content,
        publisher: source.key,
        codec: VideoCodec::Vp8,
        packets,
    })
}

/// The payload type negotiated on `mid` for `codec`.
fn payload_type(rtc: &Rtc, mid: Mid, codec: Codec) -> Option<Pt> {
    let media = rtc.media(mid)?;
    rtc.codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == codec && media.remote_pts().contains(&p.pt()))
        .map(|p| p.pt())
}

/// The codec of a payload type.
fn payload_codec(rtc: &Rtc, pt: Pt) -> Option<Codec> {
    rtc.codec_config()
        .params()
        .iter()
        .find(|p| p.pt() == pt)
        .map(|p| p.spec().codec)
}

/// Queues `peer` for the next drain unless it already is.
fn mark_dirty(dirty: &mut Vec<SessionId>, peer: &mut Peer, sid: SessionId) {
    if !peer.dirty {
        peer.dirty = true;
        dirty.push(sid);
    }
}
