//! The media engine under a simulated clock: str0m clients that behave like the Chime browser
//! client (JOIN, SUBSCRIBE with a browser-like offer, Opus tones, VP8 frames), connected to the
//! engine through in-memory "sockets". No threads, no sleeping, no network.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audiopus::coder::{Decoder, Encoder};
use audiopus::{Application, Channels, SampleRate};
use carillon_control::{AttendeeId, Capabilities, MediaCapability, MeetingId};
use carillon_media::{Engine, EngineConfig, MediaEventKind, Output, Participant, ParticipantKey};
use carillon_signaling::proto::sdk_signal_frame::Type as FrameType;
use carillon_signaling::proto::*;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Rtc};

const SERVER: &str = "127.0.0.1:3478";

struct Client {
    session: u64,
    key: ParticipantKey,
    addr: SocketAddr,
    /// The address the server sees, when a NAT in between rebound the client to another.
    nat: Option<SocketAddr>,
    rtc: Option<Rtc>,
    pending: Option<SdpPendingOffer>,
    audio_mid: Option<Mid>,
    camera_mid: Option<Mid>,
    recv_mids: Vec<Mid>,
    timeout: Instant,
    inbox: Vec<SdkSignalFrame>,
    closed: Option<u16>,
    connected: bool,
    tone: Option<(f32, Encoder)>,
    tone_phase: f32,
    rtp: u64,
    decoder: Decoder,
    heard: Vec<i16>,
    video_frames: HashMap<Mid, usize>,
    publishing: bool,
    /// Video frames written (each one packet here).
    video_sent: usize,
    frame_count: u64,
    audio_session_id: u64,
}

impl Client {
    /// The address the server sees this client at.
    fn seen_at(&self) -> SocketAddr {
        self.nat.unwrap_or(self.addr)
    }
}

struct Sim {
    now: Instant,
    engine: Engine,
    clients: Vec<Client>,
    events: Vec<carillon_media::MediaEvent>,
    meeting: MeetingId,
    /// Where the next `connect` goes: (meeting, its primary).
    target: (MeetingId, Option<MeetingId>),
    next_session: u64,
    authorize: Vec<(u64, MeetingId, SdkMeetingSessionCredentials)>,
    /// `audio_muted` of the SUBSCRIBE frames sent.
    subscribe_muted: Option<bool>,
    /// Video datagrams (the only ones over 500 bytes here) to drop on their way to or from
    /// a client: (client address, how many more).
    drop_video: Option<(SocketAddr, u32)>,
    /// Every frame output as the engine gave it: (session, frame), to see what is shared.
    frame_outputs: Vec<(u64, Arc<SdkSignalFrame>)>,
}

fn caps(audio: MediaCapability, video: MediaCapability, content: MediaCapability) -> Capabilities {
    Capabilities {
        audio,
        video,
        content,
    }
}

impl Sim {
    fn new() -> Sim {
        let now = Instant::now();
        let config = EngineConfig::new(SERVER.parse().unwrap());
        let meeting: MeetingId = "4101582d-72d2-451b-8ac0-f0f127992713".parse().unwrap();
        Sim {
            now,
            engine: Engine::new(config, now, 1_700_000_000_000),
            clients: Vec::new(),
            events: Vec::new(),
            meeting,
            target: (meeting, None),
            next_session: 1,
            authorize: Vec::new(),
            subscribe_muted: None,
            drop_video: None,
            frame_outputs: Vec::new(),
        }
    }

    /// Opens a session (the WebSocket) for a new attendee; returns the client index.
    /// A meeting of a speaker (440 Hz) and a silent listener, both joined and subscribed; and
    /// the listener.
    fn speaker_and_listener() -> (Sim, usize) {
        let mut sim = Sim::new();
        let speaker = sim.connect("speaker", Some(440.0), all());
        let listener = sim.connect("listener", None, all());
        for c in [speaker, listener] {
            sim.join(c);
            sim.subscribe(c, false, &[]);
        }
        (sim, listener)
    }

    fn connect(&mut self, name: &str, tone: Option<f32>, capabilities: Capabilities) -> usize {
        let n = self.clients.len() as u8 + 1;
        let attendee: AttendeeId = format!("00000000-0000-0000-0000-0000000000{n:02x}")
            .parse()
            .unwrap();
        self.connect_as(
            attendee,
            false,
            name,
            tone,
            capabilities,
            1000 + u64::from(n),
        )
    }

    fn connect_as(
        &mut self,
        attendee: AttendeeId,
        content: bool,
        name: &str,
        tone: Option<f32>,
        capabilities: Capabilities,
        audio_session_id: u64,
    ) -> usize {
        let session = self.next_session;
        self.next_session += 1;
        let key = ParticipantKey { attendee, content };
        self.engine.open_session(
            self.now,
            session,
            Participant {
                meeting: self.target.0,
                key,
                external_user_id: name.to_owned(),
                capabilities,
                primary: self.target.1,
            },
        );
        let encoder = tone.map(|f| {
            (
                f,
                Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip).unwrap(),
            )
        });
        self.clients.push(Client {
            session,
            key,
            addr: format!("10.0.0.{}:{}", session, 5000 + session)
                .parse()
                .unwrap(),
            nat: None,
            rtc: None,
            pending: None,
            audio_mid: None,
            camera_mid: None,
            recv_mids: Vec::new(),
            timeout: self.now,
            inbox: Vec::new(),
            closed: None,
            connected: false,
            tone: encoder,
            tone_phase: 0.0,
            rtp: 0,
            decoder: Decoder::new(SampleRate::Hz48000, Channels::Mono).unwrap(),
            heard: Vec::new(),
            video_frames: HashMap::new(),
            publishing: false,
            video_sent: 0,
            frame_count: 0,
            audio_session_id,
        });
        self.clients.len() - 1
    }

    fn frame(&mut self, c: usize, frame: SdkSignalFrame) {
        let session = self.clients[c].session;
        self.engine.handle_frame(self.now, session, frame);
        self.pump();
    }

    fn join(&mut self, c: usize) {
        let frame = SdkSignalFrame {
            join: Some(SdkJoinFrame {
                protocol_version: Some(2),
                flags: Some(2),
                audio_session_id: Some(self.clients[c].audio_session_id),
                wants_compressed_sdp: Some(true),
                ..Default::default()
            }),
            ..SdkSignalFrame::new(FrameType::Join, 0)
        };
        self.frame(c, frame);
    }

    /// A browser-like offer: audio sendrecv, the camera line, then `receivers` recvonly video
    /// lines; SUBSCRIBE with the given stream ids for the receive lines.
    fn subscribe(&mut self, c: usize, publish: bool, receive: &[u32]) {
        let now = self.now;
        let client = &mut self.clients[c];
        let rtc = client.rtc.get_or_insert_with(|| {
            let mut rtc = Rtc::builder()
                .clear_codecs()
                .enable_opus(true, false)
                .enable_vp8(true)
                .build(now);
            rtc.add_local_candidate(Candidate::host(client.addr, "udp").unwrap());
            rtc
        });
        let mut api = rtc.sdp_api();
        if client.audio_mid.is_none() {
            client.audio_mid =
                Some(api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None));
            client.camera_mid = Some(api.add_media(
                MediaKind::Video,
                if publish {
                    Direction::SendRecv
                } else {
                    Direction::Inactive
                },
                None,
                None,
                None,
            ));
        } else if publish != client.publishing {
            let dir = if publish {
                Direction::SendRecv
            } else {
                Direction::Inactive
            };
            api.set_direction(client.camera_mid.unwrap(), dir);
        }
        while client.recv_mids.len() < receive.len() {
            let mid = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
            client.recv_mids.push(mid);
        }
        client.publishing = publish;
        let (offer, pending) = api.apply().expect("the offer has changes");
        client.pending = Some(pending);
        let mut ids = vec![0];
        ids.extend_from_slice(receive);
        let mut send_streams = vec![SdkStreamDescriptor {
            media_type: Some(SdkStreamMediaType::Audio as i32),
            track_label: Some("AmazonChimeExpressAudio".into()),
            stream_id: Some(1),
            group_id: Some(1),
            ..Default::default()
        }];
        if publish {
            send_streams.push(SdkStreamDescriptor {
                media_type: Some(SdkStreamMediaType::Video as i32),
                track_label: Some("AmazonChimeExpressVideo".into()),
                stream_id: Some(2),
                group_id: Some(2),
                max_bitrate_kbps: Some(1400),
                framerate: Some(15),
                ..Default::default()
            });
        }
        let frame = SdkSignalFrame {
            sub: Some(SdkSubscribeFrame {
                duplex: Some(if publish {
                    SdkStreamServiceType::Duplex
                } else {
                    SdkStreamServiceType::Rx
                } as i32),
                send_streams,
                receive_stream_ids: ids,
                sdp_offer: Some(offer.to_sdp_string()),
                audio_host: Some("127.0.0.1:3478".into()),
                audio_muted: self.subscribe_muted,
                ..Default::default()
            }),
            ..SdkSignalFrame::new(FrameType::Subscribe, 0)
        };
        self.frame(c, frame);
        let ack = self.clients[c]
            .inbox
            .iter()
            .rev()
            .find(|f| f.frame_type() == Some(FrameType::SubscribeAck))
            .cloned()
            .expect("a SUBSCRIBE_ACK");
        let sdp = ack.suback.unwrap().sdp_answer.unwrap();
        let answer = SdpAnswer::from_sdp_string(&sdp).unwrap();
        let client = &mut self.clients[c];
        let pending = client.pending.take().unwrap();
        client
            .rtc
            .as_mut()
            .unwrap()
            .sdp_api()
            .accept_answer(pending, answer)
            .unwrap();
        self.pump();
    }

    /// Moves engine outputs to clients and client outputs to the engine until quiet.
    fn pump(&mut self) {
        let server: SocketAddr = SERVER.parse().unwrap();
        loop {
            let mut progress = false;
            while let Some(output) = self.engine.poll_output() {
                progress = true;
                match output {
                    Output::Transmit {
                        destination,
                        contents,
                        ..
                    } => {
                        if self.loses_video(destination, contents.len()) {
                            continue;
                        }
                        if let Some(client) =
                            self.clients.iter_mut().find(|c| c.seen_at() == destination)
                            && let Some(rtc) = client.rtc.as_mut()
                        {
                            let input = Input::Receive(
                                self.now,
                                Receive {
                                    proto: Protocol::Udp,
                                    source: server,
                                    destination: client.addr,
                                    contents: contents.as_slice().try_into().unwrap(),
                                },
                            );
                            let _ = rtc.handle_input(input);
                        }
                    }
                    Output::Frame { session, frame } => {
                        if let Some(client) = self.clients.iter_mut().find(|c| c.session == session)
                        {
                            client.inbox.push((*frame).clone());
                        }
                        self.frame_outputs.push((session, frame));
                    }
                    Output::Close { session, code } => {
                        if let Some(client) = self.clients.iter_mut().find(|c| c.session == session)
                        {
                            client.closed = Some(code);
                        }
                    }
                    Output::Event(e) => self.events.push(e),
                    Output::Authorize {
                        session,
                        primary,
                        credentials,
                    } => self.authorize.push((session, primary, credentials)),
                }
            }
            let mut to_server = Vec::new();
            for client in &mut self.clients {
                let seen_at = client.seen_at();
                let Some(rtc) = client.rtc.as_mut() else {
                    continue;
                };
                loop {
                    match rtc.poll_output() {
                        Ok(str0m::Output::Transmit(t)) => {
                            to_server.push((seen_at, t.contents.to_vec()))
                        }
                        Ok(str0m::Output::Timeout(t)) => {
                            client.timeout = t;
                            break;
                        }
                        Ok(str0m::Output::Event(e)) => match e {
                            Event::Connected => client.connected = true,
                            Event::MediaData(data) => {
                                if Some(data.mid) == client.audio_mid {
                                    let mut pcm = vec![0i16; 5760];
                                    if let Ok(n) = client.decoder.decode(
                                        Some(&data.data[..]),
                                        &mut pcm[..],
                                        false,
                                    ) {
                                        client.heard.extend_from_slice(&pcm[..n]);
                                    }
                                } else {
                                    *client.video_frames.entry(data.mid).or_default() += 1;
                                }
                            }
                            _ => {}
                        },
                        Err(_) => break,
                    }
                }
            }
            for (source, contents) in to_server {
                progress = true;
                if self.loses_video(source, contents.len()) {
                    continue;
                }
                self.engine
                    .handle_datagram(self.now, source, server, &contents);
            }
            if !progress {
                break;
            }
        }
    }

    /// Advances simulated time, sending 20 ms of audio per client and a video frame every
    /// 60 ms from publishers.
    fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        let mut next_media = self.now;
        while self.now < end {
            let mut next = end.min(next_media).min(self.engine.poll_timeout());
            for c in &self.clients {
                if c.rtc.is_some() {
                    next = next.min(c.timeout);
                }
            }
            self.now = next.max(self.now);
            self.engine.handle_timeout(self.now);
            for c in &mut self.clients {
                if let Some(rtc) = c.rtc.as_mut() {
                    let _ = rtc.handle_input(Input::Timeout(self.now));
                }
            }
            if self.now >= next_media {
                next_media += Duration::from_millis(20);
                self.send_media();
            }
            self.pump();
        }
    }

    /// The last half second a client heard.
    fn last_heard(&self, c: usize) -> &[i16] {
        let heard = &self.clients[c].heard;
        &heard[heard.len().saturating_sub(24_000)..]
    }

    /// Whether a client's last half second holds `freq` at an audible level.
    fn hears(&self, c: usize, freq: f32) -> bool {
        tone_power(self.last_heard(c), freq) > AUDIBLE
    }

    /// Runs like a real client session: every client PINGs every 10 s (a silent one is
    /// closed after 45 s).
    fn run_pinging(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            for c in 0..self.clients.len() {
                if self.clients[c].closed.is_none() {
                    self.frame(c, SdkSignalFrame::ping(0, 1));
                }
            }
            self.run(Duration::from_secs(10).min(end - self.now));
        }
    }

    fn send_media(&mut self) {
        let now = self.now;
        for client in &mut self.clients {
            if !client.connected || client.closed.is_some() {
                continue;
            }
            let rtc = client.rtc.as_mut().unwrap();
            if let (Some(mid), Some((freq, encoder))) = (client.audio_mid, client.tone.as_mut()) {
                let mut pcm = [0i16; 960];
                for s in pcm.iter_mut() {
                    *s = (client.tone_phase.sin() * 8000.0) as i16;
                    client.tone_phase += 2.0 * std::f32::consts::PI * *freq / 48_000.0;
                }
                client.tone_phase %= 2.0 * std::f32::consts::PI;
                let mut packet = [0u8; 400];
                let n = encoder.encode(&pcm, &mut packet).unwrap();
                if let Some(writer) = rtc.writer(mid) {
                    let pt = writer.payload_params().next().unwrap().pt();
                    let time = MediaTime::new(client.rtp, Frequency::FORTY_EIGHT_KHZ);
                    writer
                        .audio_level(-20, true)
                        .write(pt, now, time, packet[..n].to_vec())
                        .unwrap();
                }
                client.rtp += 960;
            }
            if client.publishing && client.frame_count.is_multiple_of(3) {
                let mid = client.camera_mid.unwrap();
                if let Some(writer) = rtc.writer(mid) {
                    let pt = writer.payload_params().next().unwrap().pt();
                    // A small VP8-looking frame: byte 0 bit 0 clear marks a keyframe.
                    let mut data = vec![0x10u8; 600];
                    data[0] = if client.frame_count % 30 == 0 {
                        0x10
                    } else {
                        0x11
                    };
                    let time = MediaTime::new(client.frame_count * 3000, Frequency::NINETY_KHZ);
                    if writer.write(pt, now, time, data).is_ok() {
                        client.video_sent += 1;
                    }
                }
            }
            client.frame_count += 1;
        }
        self.pump();
    }

    /// Whether a datagram of `len` bytes to or from the client at `addr` is lost on the way
    /// (see `drop_video`); counts it.
    fn loses_video(&mut self, addr: SocketAddr, len: usize) -> bool {
        match self.drop_video.as_mut() {
            Some((lossy, left)) if *lossy == addr && *left > 0 && len > 500 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }

    /// The last frame of `kind` output to client `c`, as the engine shared it.
    fn last_output(&self, c: usize, kind: FrameType) -> Arc<SdkSignalFrame> {
        let session = self.clients[c].session;
        self.frame_outputs
            .iter()
            .rev()
            .find(|(s, f)| *s == session && f.frame_type() == Some(kind))
            .map(|(_, f)| f.clone())
            .expect("a frame of that kind")
    }

    /// The latest frame of a kind a client received.
    fn last_frame(&self, c: usize, kind: FrameType) -> &SdkSignalFrame {
        self.clients[c]
            .inbox
            .iter()
            .rev()
            .find(|f| f.frame_type() == Some(kind))
            .unwrap_or_else(|| panic!("client {c} received no {kind:?}"))
    }

    fn frames(&self, c: usize, kind: FrameType) -> Vec<&SdkSignalFrame> {
        self.clients[c]
            .inbox
            .iter()
            .filter(|f| f.frame_type() == Some(kind))
            .collect()
    }

    /// The roster as the client would reconstruct it from AUDIO_STREAM_ID_INFO frames.
    fn roster(&self, c: usize) -> HashMap<String, (String, bool)> {
        let mut by_stream: HashMap<u32, (String, String, bool)> = HashMap::new();
        for frame in self.frames(c, FrameType::AudioStreamIdInfo) {
            for s in &frame.audio_stream_id_info.as_ref().unwrap().streams {
                let id = s.audio_stream_id.unwrap();
                match (&s.attendee_id, s.muted) {
                    (Some(a), muted) => {
                        by_stream.insert(
                            id,
                            (
                                a.clone(),
                                s.external_user_id.clone().unwrap_or_default(),
                                muted.unwrap_or(false),
                            ),
                        );
                    }
                    (None, Some(m)) => {
                        if let Some(e) = by_stream.get_mut(&id) {
                            e.2 = m;
                        }
                    }
                    (None, None) => {
                        by_stream.remove(&id);
                    }
                }
            }
        }
        by_stream
            .into_values()
            .map(|(a, e, m)| (a, (e, m)))
            .collect()
    }

    fn index(&self, c: usize) -> SdkIndexFrame {
        self.last_frame(c, FrameType::Index).index.clone().unwrap()
    }

    fn stream_of(&self, c: usize, attendee: &str) -> u32 {
        self.index(c)
            .sources
            .iter()
            .find(|s| s.attendee_id.as_deref() == Some(attendee))
            .and_then(|s| s.stream_id)
            .unwrap_or_else(|| panic!("{attendee} publishes"))
    }
}

/// The tone power above which a tone counts as heard.
const AUDIBLE: f64 = 100.0;

/// Energy of one frequency in a PCM buffer (Goertzel), normalised by length.
fn tone_power(pcm: &[i16], freq: f32) -> f64 {
    let w = 2.0 * std::f64::consts::PI * f64::from(freq) / 48_000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in pcm {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (pcm.len() as f64).powi(2)
}

fn all() -> Capabilities {
    caps(
        MediaCapability::SendReceive,
        MediaCapability::SendReceive,
        MediaCapability::SendReceive,
    )
}

fn attendee_of(sim: &Sim, c: usize) -> String {
    sim.clients[c].key.wire_id()
}

#[test]
fn join_sequence_and_roster() {
    let mut sim = Sim::new();
    let a = sim.connect("alice", None, all());
    sim.join(a);
    let types: Vec<_> = sim.clients[a]
        .inbox
        .iter()
        .map(|f| f.frame_type().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            FrameType::JoinAck,
            FrameType::Index,
            FrameType::AudioStreamIdInfo
        ]
    );
    let ack = sim.clients[a].inbox[0].joinack.clone().unwrap();
    assert_eq!(ack.wants_compressed_sdp, Some(false));
    // The first roster frame is a snapshot that includes the joiner itself.
    assert_eq!(sim.roster(a).len(), 1);
    let b = sim.connect("bob", None, all());
    sim.join(b);
    assert_eq!(sim.roster(b).len(), 2);
    assert_eq!(
        sim.roster(a)
            .get(&attendee_of(&sim, b))
            .map(|r| r.0.as_str()),
        Some("bob")
    );
    assert!(
        sim.events
            .iter()
            .any(|e| e.kind == MediaEventKind::AttendeeJoined && e.external_user_id == "bob")
    );
    // Stream ids start at 1 (0 is reserved) and are distinct.
    let snapshot = &sim.frames(b, FrameType::AudioStreamIdInfo)[0]
        .audio_stream_id_info
        .as_ref()
        .unwrap()
        .streams;
    let mut ids: Vec<u32> = snapshot
        .iter()
        .map(|s| s.audio_stream_id.unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, [1, 2]);

    // Mute is seen by everyone, the muted one included.
    sim.frame(
        a,
        SdkSignalFrame {
            audio_control: Some(SdkAudioControlFrame { muted: Some(true) }),
            ..SdkSignalFrame::new(FrameType::AudioControl, 0)
        },
    );
    assert!(sim.roster(b)[&attendee_of(&sim, a)].1);
    assert!(sim.roster(a)[&attendee_of(&sim, a)].1);
    // A broadcast is one frame for all its receivers (the adapter encodes it once).
    assert!(Arc::ptr_eq(
        &sim.last_output(a, FrameType::AudioStreamIdInfo),
        &sim.last_output(b, FrameType::AudioStreamIdInfo)
    ));

    // PING gets a PONG with the same id.
    sim.frame(a, SdkSignalFrame::ping(0, 7));
    let pong = sim
        .last_frame(a, FrameType::PingPong)
        .ping_pong
        .clone()
        .unwrap();
    assert_eq!(pong.ping_id, 7);
    assert_eq!(pong.r#type(), SdkPingPongType::Pong);

    // LEAVE: LEAVE_ACK, and the others see a clean departure (not dropped).
    sim.frame(b, SdkSignalFrame::new(FrameType::Leave, 0));
    assert_eq!(sim.frames(b, FrameType::LeaveAck).len(), 1);
    let last = sim
        .last_frame(a, FrameType::AudioStreamIdInfo)
        .audio_stream_id_info
        .clone()
        .unwrap();
    assert_eq!(last.streams[0].attendee_id, None);
    assert_eq!(last.streams[0].dropped, None);
    assert!(
        sim.events
            .iter()
            .any(|e| e.kind == MediaEventKind::AttendeeLeft && e.external_user_id == "bob")
    );
}

#[test]
fn three_way_audio_each_hears_the_others_not_itself() {
    three_way_audio(true);
}

/// The fallback: the mix through str0m's send path (a connection whose SRTP profile we do not
/// seal ourselves takes it).
#[test]
fn three_way_audio_through_str0m_each_hears_the_others_not_itself() {
    three_way_audio(false);
}

fn three_way_audio(seal: bool) {
    let mut sim = Sim::new();
    sim.engine = Engine::new(
        EngineConfig {
            seal_mixed_audio: seal,
            ..EngineConfig::new(SERVER.parse().unwrap())
        },
        sim.now,
        1_700_000_000_000,
    );
    let freqs = [440.0f32, 660.0, 880.0];
    let clients: Vec<usize> = freqs
        .iter()
        .enumerate()
        .map(|(i, f)| sim.connect(&format!("user-{i}"), Some(*f), all()))
        .collect();
    for &c in &clients {
        sim.join(c);
    }
    for &c in &clients {
        sim.subscribe(c, false, &[]);
    }
    sim.run(Duration::from_secs(3));
    // The mix reaches every client sealed by the engine (crate::srtp), not through str0m: the
    // clients' str0m decrypting it is what proves the keys, the IV and the header right.
    let sealed = if seal { clients.len() } else { 0 };
    assert_eq!(sim.engine.sealed_audio_count(), sealed);
    for &c in &clients {
        assert!(sim.clients[c].connected, "client {c} connected");
        let heard = &sim.clients[c].heard;
        // A continuous downstream: about 50 packets per second of 960 samples.
        assert!(
            heard.len() > 48_000 * 2,
            "client {c} heard {} samples",
            heard.len()
        );
        let tail = &heard[heard.len() - 48_000..];
        let powers: Vec<f64> = freqs.iter().map(|f| tone_power(tail, *f)).collect();
        let own = powers[c];
        for (i, p) in powers.iter().enumerate() {
            if i != c {
                assert!(*p > own * 100.0, "client {c}: {:?}", powers);
            }
        }
    }
    // Volume indicators arrive for the speakers.
    let metadata = sim.frames(0, FrameType::AudioMetadata);
    assert!(!metadata.is_empty());
    let states = &metadata
        .last()
        .unwrap()
        .audio_metadata
        .as_ref()
        .unwrap()
        .attendee_states;
    assert!(
        states.iter().any(|s| s.volume.is_some_and(|v| v < 42)),
        "{states:?}"
    );
}

/// The mix ticks move earlier to meet the speakers' packets (`Engine::advance_ticks`), and the
/// listeners go on hearing them without a gap. Where the packets first fall against the ticks
/// is whatever the meeting's start made it; a phase jump of 11 ms half-way makes sure they
/// fall well ahead of the ticks at some point (at worst after one rewind), so the ticks move.
#[test]
fn the_mix_ticks_move_to_meet_the_speakers_packets() {
    let (mut sim, listener) = Sim::speaker_and_listener();
    // The next run's packets go out 11 ms later in the 20 ms cycle than this one's.
    sim.run(Duration::from_millis(3011));
    sim.run(Duration::from_secs(3));
    let moves = sim.engine.tick_advance_count();
    // Once per settled phase, not every window.
    assert!((1..=3).contains(&moves), "{moves} moves");
    let heard = &sim.clients[listener].heard;
    let tail = &heard[heard.len() - 48_000..];
    for (i, chunk) in tail.chunks(960).enumerate() {
        assert!(
            tone_power(chunk, 440.0) > 1e6,
            "the listener's last second, frame {i}: {}",
            tone_power(chunk, 440.0)
        );
    }
}

#[test]
fn the_mixed_audio_follows_a_client_whose_nat_rebinds_it() {
    let (mut sim, b) = Sim::speaker_and_listener();
    sim.run(Duration::from_secs(2));
    assert!(sim.clients[b].connected);
    // The listener's NAT gives it a new public port: its ICE checks and media now come from
    // there, and the audio must follow (the old port reaches nobody any more).
    sim.clients[b].nat = Some("10.0.0.99:40000".parse().unwrap());
    sim.run(Duration::from_secs(6));
    let before = sim.clients[b].heard.len();
    sim.run(Duration::from_secs(1));
    let heard = &sim.clients[b].heard[before..];
    assert!(
        heard.len() >= 48_000 * 9 / 10,
        "heard {} samples in 1 s",
        heard.len()
    );
    assert!(tone_power(heard, 440.0) > 0.0);
}

#[test]
fn video_is_published_indexed_and_forwarded() {
    let mut sim = Sim::new();
    let a = sim.connect("alice", None, all());
    let b = sim.connect("bob", None, all());
    let viewer = sim.connect(
        "viewer",
        None,
        caps(
            MediaCapability::SendReceive,
            MediaCapability::Receive,
            MediaCapability::None,
        ),
    );
    for c in [a, b, viewer] {
        sim.join(c);
    }
    sim.subscribe(a, true, &[]);
    let ack = sim
        .last_frame(a, FrameType::SubscribeAck)
        .suback
        .clone()
        .unwrap();
    assert_eq!(ack.allocations.len(), 1, "one allocation for the camera");
    let a_id = attendee_of(&sim, a);
    let stream = sim.stream_of(b, &a_id);
    assert_eq!(ack.allocations[0].stream_id, Some(stream));
    let source = sim.index(b).sources[0].clone();
    assert_eq!(source.media_type, Some(SdkStreamMediaType::Video as i32));
    assert_eq!(source.external_user_id.as_deref(), Some("alice"));
    assert!(
        sim.events
            .iter()
            .any(|e| e.kind == MediaEventKind::AttendeeVideoStarted)
    );

    // The viewer may not publish: 206 on its SUBSCRIBE_ACK and at_capacity in its INDEX.
    sim.subscribe(viewer, true, &[stream]);
    let refused = sim.last_frame(viewer, FrameType::SubscribeAck).clone();
    assert_eq!(refused.error.as_ref().and_then(|e| e.status), Some(206));
    assert_eq!(sim.index(viewer).at_capacity, Some(true));
    assert_eq!(
        sim.index(viewer).sources.len(),
        1,
        "a refused publisher adds no source"
    );
    assert_eq!(sim.index(b).at_capacity, Some(false));

    sim.subscribe(b, false, &[stream]);
    let ack = sim
        .last_frame(b, FrameType::SubscribeAck)
        .suback
        .clone()
        .unwrap();
    let mid = sim.clients[b].recv_mids[0];
    assert_eq!(ack.tracks.len(), 1);
    assert_eq!(
        ack.tracks[0].track_label.as_deref(),
        Some(format!("v_{mid}").as_str())
    );
    assert_eq!(ack.tracks[0].stream_id, Some(stream));
    assert!(
        ack.sdp_answer
            .unwrap()
            .contains(&format!("a=msid:v_{mid} "))
    );

    sim.run(Duration::from_secs(3));
    let got = sim.clients[b].video_frames.get(&mid).copied().unwrap_or(0);
    assert!(got > 20, "bob received {got} frames of alice's camera");
    let seen_by_viewer: usize = sim.clients[viewer].video_frames.values().sum();
    assert!(
        seen_by_viewer > 20,
        "the receive-only viewer sees video too"
    );

    // Stopping the camera removes the source for everyone.
    sim.subscribe(a, false, &[]);
    assert!(sim.index(b).sources.is_empty());
    assert!(
        sim.events
            .iter()
            .any(|e| e.kind == MediaEventKind::AttendeeVideoStopped)
    );
}

/// Alice publishes her camera, each of `receivers` subscribes to it, and a second of media
/// flows.
fn camera_and_receivers(receivers: &[&str]) -> (Sim, usize, Vec<usize>) {
    let mut sim = Sim::new();
    let a = sim.connect("alice", None, all());
    let rs: Vec<usize> = receivers
        .iter()
        .map(|name| sim.connect(name, None, all()))
        .collect();
    sim.join(a);
    for &r in &rs {
        sim.join(r);
    }
    sim.subscribe(a, true, &[]);
    let stream = sim.stream_of(rs[0], &attendee_of(&sim, a));
    for &r in &rs {
        sim.subscribe(r, false, &[stream]);
    }
    sim.run(Duration::from_secs(1));
    (sim, a, rs)
}

impl Sim {
    /// Loses one video datagram to or from client `c`, three times, a second apart.
    fn lose_video_three_times(&mut self, c: usize) {
        let addr = self.clients[c].addr;
        for _ in 0..3 {
            self.drop_video = Some((addr, 1));
            self.run(Duration::from_secs(1));
            assert_eq!(
                self.drop_video,
                Some((addr, 0)),
                "a video packet was dropped"
            );
        }
    }

    fn video_frames_received(&self, c: usize) -> usize {
        self.clients[c].video_frames.values().sum()
    }
}

#[test]
fn a_forwarded_video_packet_lost_on_the_way_is_resent() {
    let (mut sim, _, rs) = camera_and_receivers(&["bob", "carol"]);
    let (lossy, clean) = (rs[0], rs[1]);
    // One forwarded packet (a whole frame here) lost at a time: the receiver NACKs its
    // number and the server answers from its retransmission history.
    sim.lose_video_three_times(lossy);
    sim.run(Duration::from_millis(500));
    let clean_frames = sim.video_frames_received(clean);
    assert!(clean_frames > 50, "carol received {clean_frames} frames");
    assert_eq!(
        sim.video_frames_received(lossy),
        clean_frames,
        "every frame bob lost reached him again"
    );
}

#[test]
fn a_video_packet_lost_on_the_way_in_is_recovered_and_forwarded() {
    let (mut sim, a, rs) = camera_and_receivers(&["bob"]);
    let b = rs[0];
    let before = (sim.clients[a].video_sent, sim.video_frames_received(b));
    // The server NACKs the publisher; the repair arrives as RTX, is turned back into the
    // packet it repairs and forwarded under that packet's number.
    sim.lose_video_three_times(a);
    sim.clients[a].publishing = false;
    sim.run(Duration::from_millis(500));
    let sent = sim.clients[a].video_sent - before.0;
    let got = sim.video_frames_received(b) - before.1;
    assert!(sent > 40, "alice sent {sent} frames");
    assert_eq!(got, sent, "every frame alice sent reached bob");
}

#[test]
fn data_messages_fan_out_throttle_and_replay() {
    let mut sim = Sim::new();
    let a = sim.connect("alice", None, all());
    let b = sim.connect("bob", None, all());
    sim.join(a);
    sim.join(b);
    let message = |topic: &str, lifetime: Option<u32>| SdkDataMessagePayload {
        topic: Some(topic.into()),
        data: Some(b"hello".to_vec()),
        lifetime_ms: lifetime,
        ..Default::default()
    };
    sim.frame(
        a,
        SdkSignalFrame::data_message(0, vec![message("chat", Some(60_000))]),
    );
    let got = sim.frames(b, FrameType::DataMessage);
    assert_eq!(got.len(), 1);
    let m = &got[0].data_message.as_ref().unwrap().messages[0];
    assert_eq!(
        m.sender_attendee_id.as_deref(),
        Some(attendee_of(&sim, a).as_str())
    );
    assert_eq!(m.sender_external_user_id.as_deref(), Some("alice"));
    assert!(m.ingest_time_ns.unwrap() >= 1_700_000_000_000_000_000);
    // Not echoed to the sender; invalid topics are dropped.
    assert!(sim.frames(a, FrameType::DataMessage).is_empty());
    sim.frame(
        a,
        SdkSignalFrame::data_message(0, vec![message("bad topic!", None)]),
    );
    assert_eq!(sim.frames(b, FrameType::DataMessage).len(), 1);

    // A late joiner gets the message that has a lifetime.
    let c = sim.connect("carol", None, all());
    sim.join(c);
    let replay = sim.frames(c, FrameType::DataMessage);
    assert_eq!(replay.len(), 1);
    assert_eq!(
        replay[0].data_message.as_ref().unwrap().messages[0]
            .data
            .as_deref(),
        Some(&b"hello"[..])
    );

    // Over the burst, messages come back to the sender with ingest_time_ns = 0.
    let burst: Vec<_> = (0..250).map(|_| message("chat", None)).collect();
    sim.frame(b, SdkSignalFrame::data_message(0, burst));
    let throttled: usize = sim
        .frames(b, FrameType::DataMessage)
        .iter()
        .flat_map(|f| f.data_message.as_ref().unwrap().messages.iter())
        .filter(|m| m.ingest_time_ns == Some(0))
        .count();
    assert_eq!(throttled, 51, "burst of 200 minus the first message");
}

#[test]
fn lifecycle_statuses_and_reconnects() {
    let mut sim = Sim::new();
    let a = sim.connect("alice", None, all());
    let b = sim.connect("bob", None, all());
    sim.join(a);
    sim.join(b);
    let frames_before = sim.frames(a, FrameType::AudioStreamIdInfo).len();

    // Bob's WebSocket drops and he reconnects with the same audio session: nobody notices.
    let b_attendee = sim.clients[b].key.attendee;
    let b_session = sim.clients[b].session;
    sim.engine.close_session(sim.now, b_session);
    sim.pump();
    let b2 = sim.connect_as(
        b_attendee,
        false,
        "bob",
        None,
        all(),
        sim.clients[b].audio_session_id,
    );
    sim.join(b2);
    assert_eq!(
        sim.frames(a, FrameType::AudioStreamIdInfo).len(),
        frames_before
    );
    assert_eq!(
        sim.roster(b2).len(),
        2,
        "the reconnect gets a full snapshot"
    );

    // The same attendee from another device: the old connection gets 301.
    let b3 = sim.connect_as(b_attendee, false, "bob", None, all(), 99);
    sim.join(b3);
    assert!(
        sim.frames(b2, FrameType::AudioStatus).iter().any(|f| f
            .audio_status
            .as_ref()
            .unwrap()
            .audio_status
            == Some(301))
    );
    assert!(sim.clients[b2].closed.is_some());
    assert_eq!(
        sim.frames(a, FrameType::AudioStreamIdInfo).len(),
        frames_before
    );

    // A drop without reconnect becomes "dropped" after the grace period.
    let b3_session = sim.clients[b3].session;
    sim.engine.close_session(sim.now, b3_session);
    sim.run(Duration::from_secs(11));
    let last = sim
        .last_frame(a, FrameType::AudioStreamIdInfo)
        .audio_stream_id_info
        .clone()
        .unwrap();
    assert_eq!(last.streams[0].dropped, Some(true));
    assert!(
        sim.events
            .iter()
            .any(|e| e.kind == MediaEventKind::AttendeeDropped)
    );

    // DeleteAttendee: 411 and close.
    let c = sim.connect("carol", None, all());
    sim.join(c);
    let carol = sim.clients[c].key.attendee;
    sim.engine.attendee_deleted(sim.now, sim.meeting, carol);
    sim.pump();
    assert!(
        sim.frames(c, FrameType::AudioStatus).iter().any(|f| f
            .audio_status
            .as_ref()
            .unwrap()
            .audio_status
            == Some(411))
    );
    assert!(sim.clients[c].closed.is_some());
    assert!(!sim.roster(a).contains_key(&carol.to_string()));

    // DeleteMeeting: 410 for everyone; a socket that had not joined yet closes with 4410.
    let late = sim.connect("late", None, all());
    sim.engine.meeting_ended(sim.now, sim.meeting);
    sim.pump();
    assert!(
        sim.frames(a, FrameType::AudioStatus).iter().any(|f| f
            .audio_status
            .as_ref()
            .unwrap()
            .audio_status
            == Some(410))
    );
    assert_eq!(sim.clients[late].closed, Some(4410));
    assert_eq!(sim.engine.session_count(), 0);
}

#[test]
fn content_share_is_a_separate_participant() {
    let mut sim = Sim::new();
    let a = sim.connect("alice", None, all());
    let b = sim.connect("bob", None, all());
    sim.join(a);
    sim.join(b);
    let alice = sim.clients[a].key.attendee;
    let share = sim.connect_as(alice, true, "alice#content", None, all(), 5);
    sim.join(share);
    let content_id = format!("{alice}#content");
    assert!(sim.roster(b).contains_key(&content_id));
    sim.subscribe(share, true, &[]);
    let stream = sim.stream_of(b, &content_id);
    assert!(
        sim.events
            .iter()
            .any(|e| e.kind == MediaEventKind::AttendeeContentJoined)
    );
    assert!(
        sim.events
            .iter()
            .any(|e| e.kind == MediaEventKind::AttendeeContentVideoStarted)
    );
    sim.subscribe(b, false, &[stream]);
    sim.run(Duration::from_secs(2));
    assert!(sim.clients[b].video_frames.values().sum::<usize>() > 10);
    // Two content shares at most.
    let c = sim.connect("carol", None, all());
    sim.join(c);
    let carol = sim.clients[c].key.attendee;
    let share2 = sim.connect_as(carol, true, "carol#content", None, all(), 6);
    sim.join(share2);
    sim.subscribe(share2, true, &[]);
    let d = sim.connect("dave", None, all());
    sim.join(d);
    let dave = sim.clients[d].key.attendee;
    let share3 = sim.connect_as(dave, true, "dave#content", None, all(), 7);
    sim.join(share3);
    sim.subscribe(share3, true, &[]);
    let ack = sim.last_frame(share3, FrameType::SubscribeAck).clone();
    assert_eq!(ack.error.as_ref().and_then(|e| e.status), Some(206));
}

#[test]
fn capabilities_are_enforced_live() {
    let mut sim = Sim::new();
    let listener = sim.connect(
        "listener",
        Some(440.0),
        caps(
            MediaCapability::Receive,
            MediaCapability::None,
            MediaCapability::None,
        ),
    );
    let speaker = sim.connect("speaker", Some(660.0), all());
    let deaf = sim.connect(
        "deaf",
        None,
        caps(
            MediaCapability::None,
            MediaCapability::None,
            MediaCapability::None,
        ),
    );
    for c in [listener, speaker, deaf] {
        sim.join(c);
        sim.subscribe(c, false, &[]);
    }
    sim.run(Duration::from_secs(2));
    // The receive-only attendee is not mixed in: the speaker does not hear 440 Hz.
    let tail = sim.last_heard(speaker);
    assert!(tone_power(tail, 440.0) < 1.0, "{}", tone_power(tail, 440.0));
    assert!(sim.hears(listener, 660.0));
    // Audio None receives no audio at all.
    assert!(sim.clients[deaf].heard.is_empty());

    // Upgraded live: the listener may now speak.
    let attendee = sim.clients[listener].key.attendee;
    sim.engine
        .capabilities_changed(sim.now, sim.meeting, attendee, all());
    sim.run(Duration::from_secs(2));
    let heard = &sim.clients[speaker].heard;
    let tail = &heard[heard.len() - 24_000..];
    assert!(tone_power(tail, 440.0) > AUDIBLE);
}

mod robustness {
    //! Outside input never panics the engine: arbitrary SDP offers, arbitrary frames, garbage
    //! datagrams.
    use super::*;
    use proptest::prelude::*;

    fn real_offer() -> String {
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host("10.0.0.9:5000".parse().unwrap(), "udp").unwrap());
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        api.apply().unwrap().0.to_sdp_string()
    }

    fn joined_sim() -> (Sim, usize) {
        let mut sim = Sim::new();
        let a = sim.connect("alice", None, all());
        let b = sim.connect("bob", None, all());
        sim.join(a);
        sim.join(b);
        sim.subscribe(b, true, &[]);
        (sim, a)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

        #[test]
        fn sdp_helpers_never_panic(text in ".{0,400}", mids in proptest::collection::vec("[0-9a-z]{1,3}", 0..4)) {
            let _ = carillon_media::sdp::OfferLayout::parse(&text);
            let _ = carillon_media::sdp::label_video_tracks(&text, &mids);
            let _ = carillon_media::sdp::ssrcs_by_mid(&text);
            let _ = carillon_media::sdp::without_audio_transport_cc(&text);
        }

        #[test]
        fn mutated_offers_never_panic(cuts in proptest::collection::vec((0usize..4000, any::<u8>()), 1..8), ids in proptest::collection::vec(0u32..5, 0..5)) {
            let (mut sim, a) = joined_sim();
            let mut offer = real_offer().into_bytes();
            for (pos, byte) in cuts {
                if !offer.is_empty() {
                    let i = pos % offer.len();
                    offer[i] = byte;
                }
            }
            let offer = String::from_utf8_lossy(&offer).into_owned();
            sim.frame(a, SdkSignalFrame {
                sub: Some(SdkSubscribeFrame {
                    duplex: Some(3),
                    send_streams: vec![SdkStreamDescriptor { media_type: Some(2), ..Default::default() }],
                    receive_stream_ids: ids,
                    sdp_offer: Some(offer),
                    ..Default::default()
                }),
                ..SdkSignalFrame::new(FrameType::Subscribe, 0)
            });
            // Whatever happened, the client got exactly one SUBSCRIBE_ACK.
            prop_assert_eq!(sim.frames(a, FrameType::SubscribeAck).len(), 1);
        }

        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), datagram in proptest::collection::vec(any::<u8>(), 0..300)) {
            let (mut sim, a) = joined_sim();
            let mut framed = vec![0x05];
            framed.extend_from_slice(&bytes);
            if let Ok(frame) = carillon_signaling::decode_frame(&framed) {
                sim.frame(a, frame);
            }
            let server: SocketAddr = SERVER.parse().unwrap();
            sim.engine.handle_datagram(sim.now, "10.9.9.9:9".parse().unwrap(), server, &datagram);
            let b_addr = sim.clients[1].addr;
            sim.engine.handle_datagram(sim.now, b_addr, server, &datagram);
            sim.run(Duration::from_millis(100));
        }
    }
}

#[test]
fn replica_viewers_receive_the_primary_and_can_be_promoted() {
    let mut sim = Sim::new();
    let primary = sim.meeting;
    let a = sim.connect("alice", Some(440.0), all());
    let b = sim.connect("bob", Some(660.0), all());
    let replica: MeetingId = "5101582d-72d2-451b-8ac0-f0f127992713".parse().unwrap();
    sim.target = (replica, Some(primary));
    let r1 = sim.connect("viewer-1", Some(1030.0), all());
    let r2 = sim.connect("viewer-2", Some(1180.0), all());
    for c in [a, b, r1, r2] {
        sim.join(c);
    }
    // Replica viewers see the primary's roster, without themselves or each other; nobody sees them.
    let names = |sim: &Sim, c: usize| {
        let mut v: Vec<String> = sim.roster(c).values().map(|(e, _)| e.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(names(&sim, r1), ["alice", "bob"]);
    assert_eq!(names(&sim, a), ["alice", "bob"]);
    // They may not publish.
    assert_eq!(sim.index(r1).at_capacity, Some(true));
    sim.subscribe(a, true, &[]);
    let a_stream = sim.stream_of(r1, &attendee_of(&sim, a));
    sim.subscribe(b, false, &[a_stream]);
    sim.subscribe(r1, true, &[a_stream]);
    let refused = sim.last_frame(r1, FrameType::SubscribeAck).clone();
    assert_eq!(refused.error.as_ref().and_then(|e| e.status), Some(206));
    sim.subscribe(r2, false, &[a_stream]);
    sim.run(Duration::from_secs(3));

    for viewer in [r1, r2] {
        let t = sim.last_heard(viewer);
        // 1030 and 1180 Hz stay clear of the 440/660 Hz mix's distortion products.
        let (heard, viewers) = (
            tone_power(t, 440.0).min(tone_power(t, 660.0)),
            tone_power(t, 1030.0).max(tone_power(t, 1180.0)),
        );
        assert!(heard > AUDIBLE, "viewer hears A and B");
        assert!(
            viewers * 1000.0 < heard,
            "viewers are never mixed: {viewers} vs {heard}"
        );
        assert!(
            sim.clients[viewer].video_frames.values().sum::<usize>() > 20,
            "viewer sees A's camera"
        );
    }
    // Relative to the tone A does hear: codec artifacts leave a trace at every frequency, and
    // its level depends on the libopus build.
    let a_tail = sim.last_heard(a);
    assert!(
        tone_power(a_tail, 1030.0) * 10_000.0 < tone_power(a_tail, 660.0),
        "A never hears a viewer"
    );

    // A viewer's data messages are refused (returned as throttled); the primary's reach it.
    sim.frame(
        r1,
        SdkSignalFrame::data_message(
            0,
            vec![SdkDataMessagePayload {
                topic: Some("chat".into()),
                data: Some(b"hi".to_vec()),
                ..Default::default()
            }],
        ),
    );
    let back = sim
        .last_frame(r1, FrameType::DataMessage)
        .data_message
        .clone()
        .unwrap();
    assert_eq!(back.messages[0].ingest_time_ns, Some(0));
    assert!(sim.frames(a, FrameType::DataMessage).is_empty());
    sim.frame(
        a,
        SdkSignalFrame::data_message(
            0,
            vec![SdkDataMessagePayload {
                topic: Some("chat".into()),
                data: Some(b"from the stage".to_vec()),
                ..Default::default()
            }],
        ),
    );
    let got = sim
        .last_frame(r2, FrameType::DataMessage)
        .data_message
        .clone()
        .unwrap();
    assert_eq!(
        got.messages[0].sender_external_user_id.as_deref(),
        Some("alice")
    );

    // Promotion: the adapter checks the credentials, then R1 acts as a primary attendee.
    let promoted: AttendeeId = "00000000-0000-0000-0000-0000000000f1".parse().unwrap();
    let credentials = SdkMeetingSessionCredentials {
        attendee_id: Some(promoted.to_string()),
        external_user_id: Some("viewer-1-promoted".into()),
        join_token: Some("token".into()),
    };
    sim.frame(
        r1,
        SdkSignalFrame {
            primary_meeting_join: Some(SdkPrimaryMeetingJoinFrame {
                credentials: Some(credentials.clone()),
            }),
            ..SdkSignalFrame::new(FrameType::PrimaryMeetingJoin, 0)
        },
    );
    let (session, to, creds) = sim.authorize.pop().expect("an authorization request");
    assert_eq!(
        (session, to, creds),
        (sim.clients[r1].session, primary, credentials)
    );
    sim.engine.promotion_authorized(
        sim.now,
        session,
        promoted,
        "viewer-1-promoted".into(),
        all(),
        250,
    );
    sim.pump();
    let ack = sim.last_frame(r1, FrameType::PrimaryMeetingJoinAck).clone();
    assert!(ack.error.is_none());
    assert!(names(&sim, a).contains(&"viewer-1-promoted".to_owned()));
    assert!(names(&sim, r2).contains(&"viewer-1-promoted".to_owned()));
    assert_eq!(sim.index(r1).at_capacity, Some(false));
    sim.run(Duration::from_secs(2));
    assert!(sim.hears(a, 1030.0), "A hears the promoted viewer");
    assert!(sim.hears(r2, 1030.0), "the other viewer hears it too");
    let r1_tail = sim.last_heard(r1);
    assert!(
        tone_power(r1_tail, 1030.0) * 10_000.0 < tone_power(r1_tail, 660.0),
        "not itself"
    );
    // The promoted connection may publish now (a re-offer: one more receive line).
    sim.subscribe(r1, true, &[a_stream, 0]);
    let ack = sim.last_frame(r1, FrameType::SubscribeAck).clone();
    assert!(ack.error.is_none());
    assert!(
        sim.index(b)
            .sources
            .iter()
            .any(|s| s.attendee_id.as_deref() == Some(promoted.to_string().as_str()))
    );

    // Client demotion: gone from the primary, back to viewing.
    sim.frame(r1, SdkSignalFrame::new(FrameType::PrimaryMeetingLeave, 0));
    assert!(!names(&sim, a).contains(&"viewer-1-promoted".to_owned()));
    assert_eq!(sim.index(b).sources.len(), 1);
    assert_eq!(sim.index(r1).at_capacity, Some(true));

    // Promote again, then DeleteAttendee of the primary attendee demotes with PRIMARY_MEETING_LEAVE.
    sim.engine.promotion_authorized(
        sim.now,
        session,
        promoted,
        "viewer-1-promoted".into(),
        all(),
        250,
    );
    sim.pump();
    assert!(names(&sim, a).contains(&"viewer-1-promoted".to_owned()));
    sim.engine.attendee_deleted(sim.now, primary, promoted);
    sim.pump();
    assert_eq!(sim.frames(r1, FrameType::PrimaryMeetingLeave).len(), 1);
    assert!(
        sim.clients[r1].closed.is_none(),
        "the replica connection continues"
    );
    assert!(!names(&sim, a).contains(&"viewer-1-promoted".to_owned()));

    // A refused promotion and a promotion asked outside a replica both get an error status.
    sim.engine.promotion_refused(sim.now, session, 403);
    sim.pump();
    let ack = sim.last_frame(r1, FrameType::PrimaryMeetingJoinAck).clone();
    assert_eq!(ack.error.and_then(|e| e.status), Some(403));
    sim.frame(
        a,
        SdkSignalFrame {
            primary_meeting_join: Some(SdkPrimaryMeetingJoinFrame { credentials: None }),
            ..SdkSignalFrame::new(FrameType::PrimaryMeetingJoin, 0)
        },
    );
    let ack = sim.last_frame(a, FrameType::PrimaryMeetingJoinAck).clone();
    assert_eq!(ack.error.and_then(|e| e.status), Some(403));

    // The primary ends: the control plane ends its replicas, then it; everyone gets 410.
    sim.engine.meeting_ended(sim.now, replica);
    sim.engine.meeting_ended(sim.now, primary);
    sim.pump();
    for c in [a, b, r1, r2] {
        assert!(
            sim.frames(c, FrameType::AudioStatus).iter().any(|f| f
                .audio_status
                .as_ref()
                .unwrap()
                .audio_status
                == Some(410)),
            "client {c} got 410"
        );
    }
    assert_eq!(sim.engine.session_count(), 0);
}

/// A primary with a speaker (440 Hz) and a replica viewer who only listens (its own tone,
/// 1030 Hz, goes nowhere until it is promoted), both subscribed.
fn speaker_and_listening_viewer() -> (Sim, usize, usize) {
    let mut sim = Sim::new();
    let primary = sim.meeting;
    let a = sim.connect("alice", Some(440.0), all());
    let replica: MeetingId = "5101582d-72d2-451b-8ac0-f0f127992713".parse().unwrap();
    sim.target = (replica, Some(primary));
    let r = sim.connect("viewer", Some(1030.0), all());
    for c in [a, r] {
        sim.join(c);
        sim.subscribe(c, false, &[]);
    }
    (sim, a, r)
}

fn promote(sim: &mut Sim, r: usize, attendee: &str) {
    let promoted: AttendeeId = attendee.parse().unwrap();
    let session = sim.clients[r].session;
    sim.engine
        .promotion_authorized(sim.now, session, promoted, "promoted".into(), all(), 250);
    sim.pump();
}

#[test]
fn a_listening_viewer_drops_its_rtc_keeps_hearing_and_gets_it_back_when_promoted() {
    let (mut sim, a, r) = speaker_and_listening_viewer();
    sim.run_pinging(Duration::from_secs(12));
    assert_eq!(sim.engine.hibernated_count(), 1, "the viewer hibernated");
    assert_eq!(sim.engine.sealed_audio_count(), 2);

    // Without an `Rtc` it keeps hearing the primary, and its ICE checks are answered: the
    // client's ICE would give up within 30 s otherwise.
    let before = sim.clients[r].heard.len();
    sim.run_pinging(Duration::from_secs(40));
    assert_eq!(sim.engine.hibernated_count(), 1);
    assert!(sim.clients[r].connected);
    let heard = sim.clients[r].heard.len() - before;
    assert!(
        heard >= 39 * 48_000,
        "40 s of mixed audio, without a gap: {heard} samples"
    );
    assert!(sim.hears(r, 440.0), "the viewer hears A");
    assert!(
        tone_power(sim.last_heard(a), 1030.0) * 10_000.0
            < tone_power(sim.last_heard(a), 440.0) + 1.0,
        "A does not hear the viewer"
    );

    // Promotion gives the connection an `Rtc` again, on the same ICE pair and DTLS session:
    // its audio reaches the mix at once, and it still hears A.
    promote(&mut sim, r, "00000000-0000-0000-0000-0000000000f1");
    assert_eq!(sim.engine.hibernated_count(), 0);
    sim.run_pinging(Duration::from_secs(2));
    assert!(sim.hears(a, 1030.0), "A hears the promoted viewer");
    assert!(sim.hears(r, 440.0), "the viewer hears A");

    // The woken `Rtc` takes part in a renegotiation: the promoted viewer publishes a camera.
    sim.subscribe(r, true, &[]);
    let ack = sim.last_frame(r, FrameType::SubscribeAck).clone();
    assert!(ack.error.is_none());
    sim.run_pinging(Duration::from_secs(1));
    assert_eq!(
        sim.index(a).sources.len(),
        1,
        "the viewer's camera is in the index"
    );

    // Demoted, it only listens again (its camera is refused), and hibernates again.
    sim.frame(r, SdkSignalFrame::new(FrameType::PrimaryMeetingLeave, 0));
    sim.subscribe(r, false, &[]);
    sim.run_pinging(Duration::from_secs(12));
    assert_eq!(sim.engine.hibernated_count(), 1, "hibernated again");
    sim.run_pinging(Duration::from_secs(2));
    assert!(sim.hears(r, 440.0), "the viewer hears A");
}

#[test]
fn a_viewer_of_video_keeps_its_rtc_and_a_video_subscription_wakes_a_hibernated_one() {
    let (mut sim, a, r) = speaker_and_listening_viewer();
    sim.subscribe(a, true, &[]);
    let a_stream = sim.stream_of(r, &attendee_of(&sim, a));
    // A second viewer watches A's camera: it keeps its `Rtc`, also after it stops watching
    // (str0m numbered the video's retransmissions; a rebuilt `Rtc` would number them again).
    let w = sim.connect("watcher", None, all());
    sim.join(w);
    sim.subscribe(w, false, &[a_stream]);
    // The listening viewer gets a receive line, with nothing on it yet.
    sim.subscribe(r, false, &[0]);
    sim.run_pinging(Duration::from_secs(12));
    assert!(sim.video_frames_received(w) > 20);
    let unsubscribe = |sim: &mut Sim, c: usize| {
        let mid = sim.clients[c].recv_mids[0].to_string();
        sim.frame(
            c,
            SdkSignalFrame {
                remote_video_update: Some(SdkRemoteVideoUpdateFrame {
                    removed_video_subscription_mids: vec![mid],
                    ..Default::default()
                }),
                ..SdkSignalFrame::new(FrameType::RemoteVideoUpdate, 0)
            },
        );
    };
    unsubscribe(&mut sim, w);
    sim.run_pinging(Duration::from_secs(12));
    assert_eq!(
        sim.engine.hibernated_count(),
        1,
        "only the listening viewer"
    );

    // A video subscription without a new offer wakes it, and A's video reaches it.
    let mid = sim.clients[r].recv_mids[0].to_string();
    sim.frame(
        r,
        SdkSignalFrame {
            remote_video_update: Some(SdkRemoteVideoUpdateFrame {
                added_or_updated_video_subscriptions: vec![SdkVideoSubscriptionConfiguration {
                    mid,
                    stream_id: Some(a_stream),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..SdkSignalFrame::new(FrameType::RemoteVideoUpdate, 0)
        },
    );
    assert_eq!(sim.engine.hibernated_count(), 0);
    sim.run_pinging(Duration::from_secs(2));
    assert!(
        sim.video_frames_received(r) > 10,
        "the woken viewer gets A's video"
    );
}

#[test]
fn the_mute_state_in_subscribe_is_seen_by_the_others() {
    let mut sim = Sim::new();
    let a = sim.connect("alice", None, all());
    let b = sim.connect("bob", None, all());
    sim.join(a);
    sim.join(b);
    // Alice muted before her audio started: only SUBSCRIBE says so.
    sim.subscribe_muted = Some(true);
    sim.subscribe(a, false, &[]);
    let alice = attendee_of(&sim, a);
    assert_eq!(sim.roster(b)[&alice], ("alice".to_owned(), true));
    // An unchanged state is not broadcast again.
    let before = sim.frames(b, FrameType::AudioStreamIdInfo).len();
    sim.frame(
        a,
        SdkSignalFrame {
            audio_control: Some(SdkAudioControlFrame { muted: Some(true) }),
            ..SdkSignalFrame::new(FrameType::AudioControl, 0)
        },
    );
    assert_eq!(sim.frames(b, FrameType::AudioStreamIdInfo).len(), before);
}

#[test]
fn retained_data_messages_outlive_an_empty_meeting() {
    let mut sim = Sim::new();
    let a = sim.connect("alice", None, all());
    sim.join(a);
    let kept = SdkDataMessagePayload {
        topic: Some("chat".into()),
        data: Some(b"still here".to_vec()),
        lifetime_ms: Some(60_000),
        ..Default::default()
    };
    sim.frame(a, SdkSignalFrame::data_message(0, vec![kept]));
    sim.frame(a, SdkSignalFrame::new(FrameType::Leave, 0));
    let session = sim.clients[a].session;
    sim.engine.close_session(sim.now, session);
    // Nobody is in the meeting for 30 s; then Bob joins and still gets the message.
    sim.run(Duration::from_secs(30));
    let b = sim.connect("bob", None, all());
    sim.join(b);
    let replay = sim.frames(b, FrameType::DataMessage);
    assert_eq!(replay.len(), 1);
    assert_eq!(
        replay[0].data_message.as_ref().unwrap().messages[0]
            .data
            .as_deref(),
        Some(&b"still here"[..])
    );
    // Once the lifetime is over, the idle meeting is forgotten: nothing to replay.
    sim.frame(b, SdkSignalFrame::new(FrameType::Leave, 0));
    let session = sim.clients[b].session;
    sim.engine.close_session(sim.now, session);
    sim.run(Duration::from_secs(40));
    let c = sim.connect("carol", None, all());
    sim.join(c);
    assert!(sim.frames(c, FrameType::DataMessage).is_empty());
}

#[test]
fn a_connection_authenticated_before_its_attendee_was_deleted_is_refused() {
    let mut sim = Sim::new();
    let a = sim.connect("alice", None, all());
    sim.join(a);
    let ghost: AttendeeId = "00000000-0000-0000-0000-0000000000aa".parse().unwrap();
    sim.engine.attendee_deleted(sim.now, sim.meeting, ghost);
    let g = sim.connect_as(ghost, false, "ghost", None, all(), 77);
    sim.pump();
    let status = sim.frames(g, FrameType::AudioStatus);
    assert_eq!(
        status[0].audio_status.as_ref().unwrap().audio_status,
        Some(411)
    );
    assert_eq!(sim.clients[g].closed, Some(4411));
    assert!(!sim.roster(a).values().any(|(name, _)| name == "ghost"));
}

#[test]
fn a_silent_client_is_closed_and_then_reported_dropped() {
    let mut sim = Sim::new();
    let a = sim.connect("alice", None, all());
    let b = sim.connect("bob", None, all());
    sim.join(a);
    sim.join(b);
    // Alice pings every 10 s like the browser; Bob's network vanished (no frames at all).
    for i in 1..=5 {
        sim.frame(a, SdkSignalFrame::ping(0, i));
        sim.run(Duration::from_secs(10));
    }
    assert_eq!(sim.clients[a].closed, None);
    assert_eq!(sim.clients[b].closed, Some(4500));
    // The adapter reports the close; after the reconnect grace Bob is dropped.
    let session = sim.clients[b].session;
    sim.engine.close_session(sim.now, session);
    sim.frame(a, SdkSignalFrame::ping(0, 6));
    sim.run(Duration::from_secs(11));
    let bob = attendee_of(&sim, b);
    assert!(!sim.roster(a).contains_key(&bob));
    assert!(
        sim.events
            .iter()
            .any(|e| e.kind == MediaEventKind::AttendeeDropped)
    );
}

#[test]
fn a_sharer_does_not_hear_its_own_content_audio() {
    let mut sim = Sim::new();
    let a = sim.connect("alice", None, all());
    let b = sim.connect("bob", Some(440.0), all());
    let alice = sim.clients[a].key.attendee;
    let share = sim.connect_as(alice, true, "alice#content", Some(660.0), all(), 9);
    for c in [a, b, share] {
        sim.join(c);
        sim.subscribe(c, c == share, &[]);
    }
    sim.run(Duration::from_secs(2));
    let (alice_hears, bob_hears) = (sim.last_heard(a), sim.last_heard(b));
    assert!(
        tone_power(bob_hears, 660.0) > AUDIBLE,
        "the shared tab's audio is mixed"
    );
    assert!(tone_power(alice_hears, 440.0) > AUDIBLE);
    assert!(
        tone_power(alice_hears, 660.0) * 10_000.0 < tone_power(alice_hears, 440.0),
        "the sharer hears everyone but its own shared tab"
    );
    // Content audio is governed by the Content capability.
    let content_off = caps(
        MediaCapability::SendReceive,
        MediaCapability::SendReceive,
        MediaCapability::None,
    );
    sim.engine
        .capabilities_changed(sim.now, sim.meeting, alice, content_off);
    sim.run(Duration::from_secs(1));
    let bob_hears = sim.last_heard(b);
    assert!(
        tone_power(&bob_hears[12_000..], 660.0) * 1_000.0
            < tone_power(&bob_hears[12_000..], 440.0) + 1.0
    );
}

#[test]
fn promotion_is_refused_when_the_primary_is_full_or_the_attendee_is_there() {
    let mut sim = Sim::new();
    let primary = sim.meeting;
    let a = sim.connect("alice", None, all());
    let b = sim.connect("bob", None, all());
    let replica: MeetingId = "5101582d-72d2-451b-8ac0-f0f127992713".parse().unwrap();
    sim.target = (replica, Some(primary));
    let r = sim.connect("viewer", None, all());
    for c in [a, b, r] {
        sim.join(c);
    }
    let session = sim.clients[r].session;
    let last_ack = |sim: &Sim| {
        sim.frames(r, FrameType::PrimaryMeetingJoinAck)
            .last()
            .and_then(|f| f.error.as_ref())
            .and_then(|e| e.status)
    };
    let newcomer: AttendeeId = "00000000-0000-0000-0000-0000000000f1".parse().unwrap();
    // The primary holds two attendees and may hold two.
    sim.engine
        .promotion_authorized(sim.now, session, newcomer, "new".into(), all(), 2);
    sim.pump();
    assert_eq!(last_ack(&sim), Some(409));
    // Alice's own credentials while Alice is connected.
    let alice = sim.clients[a].key.attendee;
    sim.engine
        .promotion_authorized(sim.now, session, alice, "alice".into(), all(), 250);
    sim.pump();
    assert_eq!(last_ack(&sim), Some(409));
    // Room for one more: accepted; then the viewer's connection drops, which demotes it.
    sim.engine
        .promotion_authorized(sim.now, session, newcomer, "new".into(), all(), 3);
    sim.pump();
    assert_eq!(last_ack(&sim), None);
    assert!(sim.roster(a).values().any(|(name, _)| name == "new"));
    sim.engine.close_session(sim.now, session);
    sim.pump();
    assert!(!sim.roster(a).values().any(|(name, _)| name == "new"));
    assert!(
        sim.events
            .iter()
            .any(|e| e.kind == MediaEventKind::AttendeeLeft
                && e.meeting == primary
                && e.attendee == newcomer)
    );
}
