//! One simulated Chime SDK client: the signaling WebSocket (JOIN → SUBSCRIBE with a browser-like
//! offer made by str0m's SdpApi), then a str0m `Rtc` over its own UDP socket on 127.0.0.1
//! (ICE with the server's ICE-lite candidate, DTLS-SRTP, media).
//!
//! Every client runs on the one single-threaded runtime. To keep the client side cheap (it
//! shares the machine with the server):
//!
//! * only *probe* clients hand received RTP to str0m (SRTP decrypt, depacketize, decode and
//!   measure latency); the others classify each datagram by its clear-text RTP header (RFC 7983
//!   demultiplexing, payload type, SSRC and sequence number for loss), count it and drop it.
//!   STUN, DTLS and RTCP always go to str0m, so every client stays a complete WebRTC peer as far
//!   as the server can tell;
//! * senders and probes are tasks that wake on every datagram and timer (their timing is what
//!   is measured). A plain receiver, once its media flows, moves to *bulk* mode: its socket
//!   leaves the reactor and one sweeper task drains every bulk socket every few milliseconds
//!   and runs their str0m timers. That costs about one `recvfrom` per packet instead of a
//!   reactor wake-up, a task poll and two system calls.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use carillon_signaling::proto::{
    SdkJoinFrame, SdkSignalFrame, SdkStreamDescriptor, SdkStreamMediaType, SdkStreamServiceType,
    SdkSubscribeFrame,
};
use carillon_signaling::{FrameType, decode_frame, encode_frame};
use futures_util::{SinkExt, StreamExt};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::OwnedSemaphorePermit;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::media::{self, AudioLoop, Calibration, FRAME, LOOP_FRAMES, OnsetDetector};
use crate::rx_stamp;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long each signaling step may take before the client counts as failed.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// Bulk peers swept between two yields to the scheduler.
const SWEEP_SLICE: usize = 100;
/// An audio onset this long after the latest burst is not that burst's.
const MAX_AUDIO_LATENCY: Duration = Duration::from_millis(150);

/// Counters of everything the clients sent and received. Rates come from the difference of two
/// snapshots.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub rx_audio_packets: u64,
    pub rx_audio_bytes: u64,
    pub rx_video_packets: u64,
    pub rx_video_bytes: u64,
    pub rx_rtcp: u64,
    pub rx_other: u64,
    /// RTP packets missing from the sequence numbers seen (per SSRC).
    pub rx_lost: u64,
    pub tx_audio_packets: u64,
    pub tx_video_frames: u64,
    pub tx_datagrams: u64,
    pub tx_errors: u64,
    pub ws_frames: u64,
    pub bursts_sent: u64,
    pub onsets: u64,
    pub onsets_unmatched: u64,
    pub video_frames_measured: u64,
}

impl Counters {
    pub fn since(&self, before: &Counters) -> Counters {
        Counters {
            rx_audio_packets: self.rx_audio_packets - before.rx_audio_packets,
            rx_audio_bytes: self.rx_audio_bytes - before.rx_audio_bytes,
            rx_video_packets: self.rx_video_packets - before.rx_video_packets,
            rx_video_bytes: self.rx_video_bytes - before.rx_video_bytes,
            rx_rtcp: self.rx_rtcp - before.rx_rtcp,
            rx_other: self.rx_other - before.rx_other,
            rx_lost: self.rx_lost - before.rx_lost,
            tx_audio_packets: self.tx_audio_packets - before.tx_audio_packets,
            tx_video_frames: self.tx_video_frames - before.tx_video_frames,
            tx_datagrams: self.tx_datagrams - before.tx_datagrams,
            tx_errors: self.tx_errors - before.tx_errors,
            ws_frames: self.ws_frames - before.ws_frames,
            bursts_sent: self.bursts_sent - before.bursts_sent,
            onsets: self.onsets - before.onsets,
            onsets_unmatched: self.onsets_unmatched - before.onsets_unmatched,
            video_frames_measured: self.video_frames_measured - before.video_frames_measured,
        }
    }
}

/// Latency samples, in microseconds.
#[derive(Debug, Default)]
pub struct Samples {
    /// WebSocket open → SUBSCRIBE_ACK received.
    pub join: Vec<u64>,
    /// Connect call → WebSocket open (TCP + HTTP upgrade).
    pub ws_open: Vec<u64>,
    /// WebSocket open → JOIN_ACK received (part of `join`).
    pub join_ack: Vec<u64>,
    /// JOIN_ACK → the INDEX that the server sends right after it (part of `join`).
    pub index_after_ack: Vec<u64>,
    /// SUBSCRIBE sent → SUBSCRIBE_ACK received (part of `join`).
    pub subscribe_ack: Vec<u64>,
    /// SUBSCRIBE_ACK → str0m `Connected` (ICE + DTLS).
    pub ice: Vec<u64>,
    /// Mixed-audio burst: speaker send → probe receive (measurement window only).
    pub audio: Vec<u64>,
    /// Video frame: publisher send → probe receive (measurement window only).
    pub video: Vec<u64>,
    /// How late the senders' 20 ms / frame timers fired (a sign of an overloaded client).
    pub tick_lag: Vec<u64>,
    /// How long a probe's datagrams waited in its socket before being read (kept out of the
    /// latencies above by the kernel's receive stamps).
    pub rx_lag: Vec<u64>,
}

/// State shared by all clients of the process (single-threaded: `Rc` + cells).
pub struct Shared {
    pub epoch: Instant,
    pub measuring: Cell<bool>,
    pub counters: RefCell<Counters>,
    pub samples: RefCell<Samples>,
    /// Send times of recent bursts (all speakers), with the speaker's index.
    bursts: RefCell<VecDeque<(Instant, usize)>>,
    /// Per speaker: bursts sent and onsets detected (all probes), measurement window only.
    pub per_speaker: RefCell<std::collections::BTreeMap<usize, SpeakerStats>>,
    /// Clients whose media flows (connected and receiving).
    pub ready: Cell<usize>,
    /// Clients that got their SUBSCRIBE_ACK.
    pub joined: Cell<usize>,
    /// Clients that failed before their media flowed, with the reason.
    pub failures: RefCell<Vec<String>>,
    /// Clients that failed after their media flowed (dropped: ICE lost, WebSocket closed…).
    pub dropped: RefCell<Vec<String>>,
    /// Every client task (signaling readers included), aborted at the end of the run.
    pub tasks: RefCell<Vec<tokio::task::AbortHandle>>,
    /// Receivers in bulk mode, driven by [`sweep_bulk`].
    pub bulk: RefCell<Vec<Peer>>,
    pub audio: AudioLoop,
    pub calibration: Calibration,
}

impl Shared {
    pub fn new(audio: AudioLoop, calibration: Calibration) -> Shared {
        Shared {
            epoch: Instant::now(),
            measuring: Cell::new(false),
            counters: RefCell::default(),
            samples: RefCell::default(),
            bursts: RefCell::new(VecDeque::new()),
            per_speaker: RefCell::default(),
            ready: Cell::new(0),
            joined: Cell::new(0),
            failures: RefCell::default(),
            dropped: RefCell::default(),
            tasks: RefCell::default(),
            bulk: RefCell::default(),
            audio,
            calibration,
        }
    }

    /// Records a client's failure: a setup failure, or a drop once its media flowed.
    fn fail(&self, was_ready: bool, failure: String) {
        if was_ready {
            self.dropped.borrow_mut().push(failure);
        } else {
            self.failures.borrow_mut().push(failure);
        }
    }

    fn count(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut self.counters.borrow_mut());
    }

    fn note_burst(&self, at: Instant, speaker: usize) {
        let mut bursts = self.bursts.borrow_mut();
        bursts.push_back((at, speaker));
        if bursts.len() > 64 {
            bursts.pop_front();
        }
        drop(bursts);
        if self.measuring.get() {
            self.count(|c| c.bursts_sent += 1);
            self.per_speaker
                .borrow_mut()
                .entry(speaker)
                .or_default()
                .sent += 1;
        }
    }

    /// The latest burst sent at or before `at`.
    fn burst_before(&self, at: Instant) -> Option<(Instant, usize)> {
        self.bursts
            .borrow()
            .iter()
            .rev()
            .find(|(t, _)| *t <= at)
            .copied()
    }
}

/// One speaker's bursts in the measurement window.
#[derive(Debug, Clone, Default)]
pub struct SpeakerStats {
    pub sent: u64,
    /// Onsets detected, summed over all probes.
    pub heard: u64,
    pub latency: Vec<u64>,
}

/// What a client does in the meeting.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    /// Sends the audio loop; `index` of `of` speakers spreads their bursts and send phases.
    Speaker { index: usize, of: usize },
    /// Receives the mix only.
    Listener,
    /// Publishes its camera (and receives the mix); its frames start `phase` into the
    /// frame interval.
    Publisher {
        index: u32,
        fps: u32,
        frame_bytes: usize,
        phase: Duration,
    },
    /// Subscribes to `publishers` cameras.
    Receiver { publishers: usize },
    /// JOINs and keeps its WebSocket, never subscribes (no media): isolates the cost of the
    /// signaling connection.
    SignalingOnly,
}

pub struct ClientSpec {
    pub signaling_url: String,
    pub join_token: String,
    pub audio_session_id: u64,
    pub role: Role,
    /// Hands received RTP to str0m and measures latency (see the module doc).
    pub probe: bool,
}

/// Starts a client task; it runs until aborted (see [`Shared::tasks`]). Failures are recorded
/// in `shared`. `permit` is released once the SUBSCRIBE_ACK has arrived (it bounds how many
/// joins run at once).
pub fn spawn(spec: ClientSpec, shared: Rc<Shared>, permit: OwnedSemaphorePermit) {
    let task = tokio::task::spawn_local(run(spec, shared.clone(), permit));
    shared.tasks.borrow_mut().push(task.abort_handle());
}

async fn run(spec: ClientSpec, shared: Rc<Shared>, permit: OwnedSemaphorePermit) {
    let label = format!("{:?} {}", spec.role, spec.audio_session_id);
    let ready = Rc::new(Cell::new(false));
    if let Err(e) = run_inner(spec, shared.clone(), permit, &label, ready.clone()).await {
        shared.fail(ready.get(), format!("{label}: {e}"));
    }
}

/// After the join the signaling socket is only read: a task of its own, so that the media
/// loop's wake-ups never poll it.
async fn read_signaling(mut ws: Socket, shared: Rc<Shared>, label: String, ready: Rc<Cell<bool>>) {
    let failure = loop {
        match ws.next().await {
            Some(Ok(Message::Binary(bytes))) => {
                shared.count(|c| c.ws_frames += 1);
                if let Ok(frame) = decode_frame(&bytes)
                    && frame.frame_type() == Some(FrameType::AudioStatus)
                {
                    let status = frame.audio_status.and_then(|s| s.audio_status);
                    break format!("AUDIO_STATUS {status:?} while connected");
                }
            }
            Some(Ok(Message::Close(close))) => break format!("WebSocket closed: {close:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => break format!("WebSocket: {e}"),
            None => break "WebSocket ended".into(),
        }
    };
    shared.fail(ready.get(), format!("{label}: {failure}"));
}

async fn open(url: &str, token: &str) -> Result<Socket, String> {
    let url =
        format!("{url}?X-Chime-Control-Protocol-Version=3&X-Amzn-Chime-Send-Close-On-Error=1");
    let mut request = url
        .into_client_request()
        .map_err(|e| format!("signaling URL: {e}"))?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&format!("_aws_wt_session, {token}"))
            .map_err(|e| format!("join token: {e}"))?,
    );
    // tungstenite zero-fills its whole read buffer (128 KiB by default) on every read
    // attempt, and the client loop polls the socket on every wake-up: keep it small.
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    let (socket, _) = tokio::time::timeout(STEP_TIMEOUT, connect)
        .await
        .map_err(|_| "WebSocket connect timed out".to_owned())?
        .map_err(|e| format!("WebSocket connect: {e}"))?;
    Ok(socket)
}

async fn send(ws: &mut Socket, frame: &SdkSignalFrame) -> Result<(), String> {
    ws.send(Message::Binary(encode_frame(frame).into()))
        .await
        .map_err(|e| format!("WebSocket send: {e}"))
}

/// Reads frames until `want` says it has what it needs.
async fn read_until(
    ws: &mut Socket,
    shared: &Shared,
    mut want: impl FnMut(&SdkSignalFrame) -> Result<bool, String>,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| "timed out waiting for the server".to_owned())?;
        match message {
            Some(Ok(Message::Binary(bytes))) => {
                shared.count(|c| c.ws_frames += 1);
                let frame = decode_frame(&bytes).map_err(|e| format!("bad frame: {e}"))?;
                if frame.frame_type() == Some(FrameType::AudioStatus) {
                    let status = frame.audio_status.and_then(|s| s.audio_status);
                    return Err(format!("AUDIO_STATUS {status:?}"));
                }
                if want(&frame)? {
                    return Ok(());
                }
            }
            Some(Ok(Message::Close(close))) => return Err(format!("WebSocket closed: {close:?}")),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("WebSocket: {e}")),
            None => return Err("WebSocket ended".into()),
        }
    }
}

async fn run_inner(
    spec: ClientSpec,
    shared: Rc<Shared>,
    permit: OwnedSemaphorePermit,
    label: &str,
    ready_flag: Rc<Cell<bool>>,
) -> Result<(), String> {
    let sock = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("UDP bind: {e}"))?;
    if spec.probe {
        rx_stamp::enable(&sock).map_err(|e| format!("SO_TIMESTAMPNS: {e}"))?;
    }
    let local = sock.local_addr().map_err(|e| e.to_string())?;

    // The offer, made before the WebSocket opens so the join latency holds no client work.
    let mut rtc = Rtc::builder()
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").map_err(|e| e.to_string())?);
    let publisher = matches!(spec.role, Role::Publisher { .. });
    let receive = match spec.role {
        Role::Receiver { publishers } => publishers,
        _ => 0,
    };
    let mut api = rtc.sdp_api();
    let audio_mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let camera_mid = api.add_media(
        MediaKind::Video,
        if publisher {
            Direction::SendRecv
        } else {
            Direction::Inactive
        },
        None,
        None,
        None,
    );
    let recv_mids: Vec<Mid> = (0..receive)
        .map(|_| api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None))
        .collect();
    let (offer, pending) = api.apply().ok_or("str0m made no offer")?;
    let offer = offer.to_sdp_string();

    // Signaling: JOIN, then SUBSCRIBE once JOIN_ACK and INDEX are in.
    let connect_start = Instant::now();
    let mut ws = open(&spec.signaling_url, &spec.join_token).await?;
    let opened = Instant::now();
    let join = SdkSignalFrame {
        join: Some(SdkJoinFrame {
            protocol_version: Some(2),
            flags: Some(2),
            audio_session_id: Some(spec.audio_session_id),
            ..Default::default()
        }),
        ..SdkSignalFrame::new(FrameType::Join, 0)
    };
    send(&mut ws, &join).await?;
    let (mut join_ack, mut index) = (None, None);
    read_until(&mut ws, &shared, |frame| {
        match frame.frame_type() {
            Some(FrameType::JoinAck) => join_ack = Some(Instant::now()),
            Some(FrameType::Index) => index = frame.index.clone(),
            _ => {}
        }
        Ok(join_ack.is_some() && index.is_some())
    })
    .await?;
    let indexed = Instant::now();
    let join_acked = join_ack.unwrap_or(indexed);
    if matches!(spec.role, Role::SignalingOnly) {
        shared
            .samples
            .borrow_mut()
            .join_ack
            .push(media::micros_since(opened, join_acked));
        ready_flag.set(true);
        shared.joined.set(shared.joined.get() + 1);
        shared.ready.set(shared.ready.get() + 1);
        drop(permit);
        read_signaling(ws, shared.clone(), label.to_owned(), ready_flag).await;
        return Ok(());
    }
    // A receiver subscribes to the cameras in the INDEX (waiting for all publishers).
    let video_sources = |index: &carillon_signaling::proto::SdkIndexFrame| -> Vec<u32> {
        index
            .sources
            .iter()
            .filter(|s| s.media_type == Some(SdkStreamMediaType::Video as i32))
            .filter_map(|s| s.stream_id)
            .collect()
    };
    let mut streams = index.as_ref().map(video_sources).unwrap_or_default();
    if streams.len() < receive {
        read_until(&mut ws, &shared, |frame| {
            if let Some(i) = &frame.index {
                streams = video_sources(i);
            }
            Ok(streams.len() >= receive)
        })
        .await?;
    }
    streams.truncate(receive);
    let mut receive_stream_ids = vec![0];
    receive_stream_ids.extend_from_slice(&streams);
    let mut send_streams = vec![SdkStreamDescriptor {
        media_type: Some(SdkStreamMediaType::Audio as i32),
        track_label: Some("AmazonChimeExpressAudio".into()),
        stream_id: Some(1),
        group_id: Some(1),
        ..Default::default()
    }];
    if publisher {
        send_streams.push(SdkStreamDescriptor {
            media_type: Some(SdkStreamMediaType::Video as i32),
            track_label: Some("AmazonChimeExpressVideo".into()),
            stream_id: Some(2),
            group_id: Some(2),
            max_bitrate_kbps: Some(1500),
            framerate: Some(30),
            ..Default::default()
        });
    }
    let subscribe = SdkSignalFrame {
        sub: Some(SdkSubscribeFrame {
            duplex: Some(if publisher {
                SdkStreamServiceType::Duplex
            } else {
                SdkStreamServiceType::Rx
            } as i32),
            send_streams,
            receive_stream_ids,
            sdp_offer: Some(offer),
            audio_host: Some("127.0.0.1".into()),
            ..Default::default()
        }),
        ..SdkSignalFrame::new(FrameType::Subscribe, 0)
    };
    let subscribed = Instant::now();
    send(&mut ws, &subscribe).await?;
    let mut ack = None;
    read_until(&mut ws, &shared, |frame| {
        if frame.frame_type() == Some(FrameType::SubscribeAck) {
            if let Some(status) = frame.error_status()
                && status != 200
            {
                return Err(format!("SUBSCRIBE_ACK status {status}"));
            }
            ack = frame.suback.clone();
        }
        Ok(ack.is_some())
    })
    .await?;
    let acked = Instant::now();
    let answer = ack
        .and_then(|a| a.sdp_answer)
        .ok_or("SUBSCRIBE_ACK without an SDP answer")?;
    let answer = SdpAnswer::from_sdp_string(&answer).map_err(|e| format!("SDP answer: {e}"))?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .map_err(|e| format!("accept_answer: {e}"))?;
    {
        let mut samples = shared.samples.borrow_mut();
        samples.join.push(media::micros_since(opened, acked));
        samples
            .ws_open
            .push(media::micros_since(connect_start, opened));
        samples
            .join_ack
            .push(media::micros_since(opened, join_acked));
        samples
            .index_after_ack
            .push(media::micros_since(join_acked, indexed));
        samples
            .subscribe_ack
            .push(media::micros_since(subscribed, acked));
    }
    let reader = tokio::task::spawn_local(read_signaling(
        ws,
        shared.clone(),
        label.to_owned(),
        ready_flag.clone(),
    ));
    shared.tasks.borrow_mut().push(reader.abort_handle());
    shared.joined.set(shared.joined.get() + 1);
    drop(permit);

    let audio_pt = rtc
        .codec_config()
        .find(|p| p.spec().codec == Codec::Opus)
        .map(|p| *p.pt())
        .ok_or("no Opus payload type")?;
    let detector = match (spec.probe, spec.role) {
        (true, Role::Listener) => Some(OnsetDetector::new()?),
        _ => None,
    };
    let mut peer = Peer {
        shared: shared.clone(),
        label: label.to_owned(),
        ready_flag,
        rtc,
        sock: PeerSocket::Async(sock),
        deadline: Instant::now(),
        seqs: Vec::new(),
        rx_audio: 0,
        local,
        role: spec.role,
        probe: spec.probe,
        audio_mid,
        camera_mid,
        recv_mids,
        audio_pt,
        detector,
        acked,
        connected: false,
        got_audio: false,
        got_video: false,
        ready: false,
        last_burst: None,
        loop_pos: 0,
        rtp: 0,
        frames: 0,
        keyframe: true,
        pt_cache: None,
        rx_at: Instant::now(),
    };

    // Senders tick on a fixed schedule; speakers spread their phases and burst positions.
    let base = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut ticker = match spec.role {
        Role::Speaker { index, of } => {
            peer.loop_pos = index * LOOP_FRAMES / of.max(1);
            let phase = FRAME * index as u32 / of.max(1) as u32;
            Some(tokio::time::interval_at(base + phase, FRAME))
        }
        Role::Publisher { fps, phase, .. } => Some(tokio::time::interval_at(
            base + phase,
            Duration::from_secs(1) / fps.max(1),
        )),
        _ => None,
    };

    let bulk = !spec.probe && matches!(spec.role, Role::Listener | Role::Receiver { .. });
    let mut buf = vec![0u8; 2048];
    peer.deadline = peer.drain()?;
    let sleep = tokio::time::sleep_until(peer.deadline.into());
    tokio::pin!(sleep);
    loop {
        let mut dirty = false;
        tokio::select! {
            biased;
            received = peer.recv_from(&mut buf) => {
                let (n, source, at) = received.map_err(|e| format!("UDP receive: {e}"))?;
                dirty |= peer.on_datagram(source, at, &buf[..n]);
                // Take what else is queued without another trip through the scheduler.
                while let Some((n, source, at)) = peer.try_recv_from(&mut buf) {
                    dirty |= peer.on_datagram(source, at, &buf[..n]);
                }
            }
            scheduled = async {
                match ticker.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            } => {
                let now = Instant::now();
                if shared.measuring.get() {
                    let lag = now.saturating_duration_since(scheduled.into_std());
                    shared.samples.borrow_mut().tick_lag.push(lag.as_micros() as u64);
                }
                peer.send_media(now)?;
                dirty = true;
            }
            () = &mut sleep => {
                peer.rtc
                    .handle_input(Input::Timeout(Instant::now()))
                    .map_err(|e| format!("str0m timeout: {e}"))?;
                dirty = true;
            }
        }
        if dirty {
            let next = peer.drain()?;
            if next != peer.deadline {
                peer.deadline = next;
                sleep.as_mut().reset(next.into());
            }
        }
        if bulk && peer.ready {
            let peer = peer.into_bulk()?;
            shared.bulk.borrow_mut().push(peer);
            return Ok(());
        }
    }
}

/// Drives the bulk-mode receivers: every `interval`, drains each one's socket and runs its
/// str0m timer when due. A peer that fails is recorded and dropped.
pub async fn sweep_bulk(shared: Rc<Shared>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; 2048];
    loop {
        ticker.tick().await;
        // In slices, yielding in between, so that senders and probes (whose timing is
        // measured) are not held up behind a sweep of thousands of sockets.
        let mut next = 0;
        while sweep_slice(&shared, &mut buf, &mut next) {
            tokio::task::yield_now().await;
        }
    }
}

/// Diagnostics of the bulk peers: (audio packets received, SSRCs seen) of each.
pub fn bulk_diagnostics(shared: &Shared) -> Vec<(u64, usize)> {
    shared
        .bulk
        .borrow()
        .iter()
        .map(|p| (p.rx_audio, p.seqs.len()))
        .collect()
}

/// Sweeps the bulk peers from `*next` on, at most [`SWEEP_SLICE`] of them; false when there
/// were none left.
fn sweep_slice(shared: &Shared, buf: &mut [u8], next: &mut usize) -> bool {
    let mut bulk = shared.bulk.borrow_mut();
    if *next >= bulk.len() {
        return false;
    }
    let end = *next + SWEEP_SLICE;
    let mut failed = Vec::new();
    while *next < end.min(bulk.len()) {
        match bulk[*next].sweep(buf) {
            Ok(()) => *next += 1,
            Err(e) => {
                let peer = bulk.swap_remove(*next);
                failed.push(format!("{}: {e}", peer.label));
            }
        }
    }
    drop(bulk);
    shared.dropped.borrow_mut().extend(failed);
    true
}

/// A peer's UDP socket: registered with the runtime, or (bulk mode) a plain non-blocking
/// socket the sweeper reads.
enum PeerSocket {
    Async(UdpSocket),
    Bulk(std::net::UdpSocket),
}

pub struct Peer {
    shared: Rc<Shared>,
    label: String,
    /// Shared with the task wrapper and the signaling reader: failures after this are drops.
    ready_flag: Rc<Cell<bool>>,
    rtc: Rtc,
    sock: PeerSocket,
    /// When str0m wants `Input::Timeout` next.
    deadline: Instant,
    /// Highest RTP sequence number seen per SSRC (loss accounting).
    seqs: Vec<(u32, u16)>,
    /// Audio RTP packets this peer received.
    rx_audio: u64,
    local: SocketAddr,
    role: Role,
    probe: bool,
    audio_mid: Mid,
    camera_mid: Mid,
    recv_mids: Vec<Mid>,
    audio_pt: u8,
    detector: Option<OnsetDetector>,
    acked: Instant,
    connected: bool,
    got_audio: bool,
    got_video: bool,
    ready: bool,
    /// The burst this probe matched last (a burst is counted once).
    last_burst: Option<Instant>,
    loop_pos: usize,
    rtp: u64,
    frames: u64,
    keyframe: bool,
    pt_cache: Option<str0m::media::Pt>,
    /// When the datagram being handled arrived (the kernel's stamp on probes).
    rx_at: Instant,
}

impl Peer {
    /// The next datagram and when it arrived (see `rx_stamp`).
    async fn recv_from(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr, Instant)> {
        match &self.sock {
            PeerSocket::Async(s) => {
                let (n, source, at, waited) = s
                    .async_io(Interest::READABLE, || rx_stamp::recv(s, buf))
                    .await?;
                self.note_rx_lag(waited);
                Ok((n, source, at))
            }
            PeerSocket::Bulk(_) => std::future::pending().await,
        }
    }

    fn try_recv_from(&self, buf: &mut [u8]) -> Option<(usize, SocketAddr, Instant)> {
        match &self.sock {
            PeerSocket::Async(s) => {
                let (n, source, at, waited) = s
                    .try_io(Interest::READABLE, || rx_stamp::recv(s, buf))
                    .ok()?;
                self.note_rx_lag(waited);
                Some((n, source, at))
            }
            PeerSocket::Bulk(s) => s
                .recv_from(buf)
                .ok()
                .map(|(n, source)| (n, source, Instant::now())),
        }
    }

    /// A probe's datagram waited this long between arriving and being read.
    fn note_rx_lag(&self, waited: Duration) {
        if self.probe && self.shared.measuring.get() {
            let lag = waited.as_micros() as u64;
            self.shared.samples.borrow_mut().rx_lag.push(lag);
        }
    }

    /// Takes the socket out of the reactor: the sweeper reads it from now on.
    fn into_bulk(mut self) -> Result<Peer, String> {
        if let PeerSocket::Async(s) = self.sock {
            let s = s.into_std().map_err(|e| format!("socket into_std: {e}"))?;
            s.set_nonblocking(true)
                .map_err(|e| format!("socket set_nonblocking: {e}"))?;
            self.sock = PeerSocket::Bulk(s);
        }
        Ok(self)
    }

    /// One sweep of a bulk-mode peer.
    fn sweep(&mut self, buf: &mut [u8]) -> Result<(), String> {
        let mut dirty = false;
        while let Some((n, source, at)) = self.try_recv_from(buf) {
            dirty |= self.on_datagram(source, at, &buf[..n]);
        }
        let now = Instant::now();
        if now >= self.deadline {
            self.rtc
                .handle_input(Input::Timeout(now))
                .map_err(|e| format!("str0m timeout: {e}"))?;
            dirty = true;
        }
        if dirty {
            self.deadline = self.drain()?;
        }
        Ok(())
    }

    /// Counts RTP sequence-number gaps of one SSRC.
    fn track_loss(&mut self, data: &[u8]) {
        let seq = u16::from_be_bytes([data[2], data[3]]);
        let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        match self.seqs.iter_mut().find(|(s, _)| *s == ssrc) {
            Some((_, last)) => {
                let gap = seq.wrapping_sub(*last);
                // Forward by less than half the space: newer (a larger step means reordering
                // or a duplicate, which does not move the highest number).
                if gap != 0 && gap < 0x8000 {
                    let lost = u64::from(gap - 1);
                    if lost > 0 {
                        self.shared.count(|c| c.rx_lost += lost);
                    }
                    *last = seq;
                }
            }
            None => self.seqs.push((ssrc, seq)),
        }
    }

    /// One datagram from the server. Returns whether str0m got input (and must be polled).
    fn on_datagram(&mut self, source: SocketAddr, at: Instant, data: &[u8]) -> bool {
        self.rx_at = at;
        let Some(&first) = data.first() else {
            return false;
        };
        let to_rtc = if (128..=191).contains(&first) && data.len() >= 12 {
            let pt = data[1] & 0x7f;
            if (64..=95).contains(&pt) {
                // RTCP (packet types 192–223 with the marker bit position folded in).
                self.shared.count(|c| c.rx_rtcp += 1);
                true
            } else {
                let bytes = data.len() as u64;
                self.track_loss(data);
                if pt == self.audio_pt {
                    self.got_audio = true;
                    self.rx_audio += 1;
                    self.shared.count(|c| {
                        c.rx_audio_packets += 1;
                        c.rx_audio_bytes += bytes;
                    });
                } else {
                    self.got_video = true;
                    self.shared.count(|c| {
                        c.rx_video_packets += 1;
                        c.rx_video_bytes += bytes;
                    });
                }
                self.probe
            }
        } else {
            // STUN (0–3) or DTLS (20–63).
            self.shared.count(|c| c.rx_other += 1);
            true
        };
        if to_rtc && let Ok(contents) = data.try_into() {
            let input = Input::Receive(
                self.rx_at,
                Receive {
                    proto: Protocol::Udp,
                    source,
                    destination: self.local,
                    contents,
                },
            );
            // A datagram str0m refuses (e.g. a late retransmission) is no failure.
            let _ = self.rtc.handle_input(input);
        }
        self.check_ready();
        to_rtc
    }

    fn check_ready(&mut self) {
        if self.ready || !self.connected || !self.got_audio {
            return;
        }
        if matches!(self.role, Role::Receiver { .. }) && !self.got_video {
            return;
        }
        self.ready = true;
        self.ready_flag.set(true);
        self.shared.ready.set(self.shared.ready.get() + 1);
    }

    /// Polls str0m until it asks for a timeout: sends what it transmits, handles its events.
    fn drain(&mut self) -> Result<Instant, String> {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return Ok(t),
                Ok(Output::Transmit(t)) => {
                    let sent = match &self.sock {
                        PeerSocket::Async(s) => s.try_send_to(&t.contents, t.destination),
                        PeerSocket::Bulk(s) => s.send_to(&t.contents, t.destination),
                    };
                    match sent {
                        Ok(_) => self.shared.count(|c| c.tx_datagrams += 1),
                        Err(_) => self.shared.count(|c| c.tx_errors += 1),
                    }
                }
                Ok(Output::Event(event)) => self.on_event(event)?,
                Err(e) => return Err(format!("str0m: {e}")),
            }
        }
    }

    fn on_event(&mut self, event: Event) -> Result<(), String> {
        match event {
            Event::Connected => {
                self.connected = true;
                let ice = media::micros_since(self.acked, Instant::now());
                self.shared.samples.borrow_mut().ice.push(ice);
                self.check_ready();
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                return Err("ICE disconnected".into());
            }
            Event::KeyframeRequest(request) if request.mid == self.camera_mid => {
                self.keyframe = true;
            }
            Event::MediaData(data) => {
                if data.mid == self.audio_mid {
                    if let Some(detector) = self.detector.as_mut()
                        && detector.push(&data.data)
                    {
                        self.on_onset();
                    }
                } else if self.recv_mids.contains(&data.mid)
                    && self.shared.measuring.get()
                    && let Some(sent) = media::video_stamp(&data.data)
                {
                    let received = media::micros_since(self.shared.epoch, self.rx_at);
                    self.shared
                        .samples
                        .borrow_mut()
                        .video
                        .push(received.saturating_sub(sent));
                    self.shared.count(|c| c.video_frames_measured += 1);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A burst arrived in the decoded mix: match it to the speaker's send time.
    fn on_onset(&mut self) {
        let Some((sent, speaker)) = self.shared.burst_before(self.rx_at) else {
            return;
        };
        if self.last_burst == Some(sent) {
            return;
        }
        self.last_burst = Some(sent);
        if !self.shared.measuring.get() {
            return;
        }
        let codec = FRAME * self.shared.calibration.frames as u32;
        let latency = self
            .rx_at
            .saturating_duration_since(sent)
            .saturating_sub(codec);
        if latency > MAX_AUDIO_LATENCY {
            self.shared.count(|c| c.onsets_unmatched += 1);
            return;
        }
        self.shared.count(|c| c.onsets += 1);
        let mut per_speaker = self.shared.per_speaker.borrow_mut();
        let stats = per_speaker.entry(speaker).or_default();
        stats.heard += 1;
        stats.latency.push(latency.as_micros() as u64);
        self.shared
            .samples
            .borrow_mut()
            .audio
            .push(latency.as_micros() as u64);
    }

    fn send_media(&mut self, now: Instant) -> Result<(), String> {
        if !self.connected {
            return Ok(());
        }
        match self.role {
            Role::Speaker { .. } => {
                let audio = &self.shared.audio;
                let packet = audio.packets[self.loop_pos].clone();
                let level = audio.levels[self.loop_pos];
                let Some(writer) = self.rtc.writer(self.audio_mid) else {
                    return Ok(());
                };
                let pt = match self.pt_cache {
                    Some(pt) => pt,
                    None => {
                        let pt = writer
                            .payload_params()
                            .next()
                            .ok_or("no audio payload type")?
                            .pt();
                        self.pt_cache = Some(pt);
                        pt
                    }
                };
                let time = MediaTime::new(self.rtp, Frequency::FORTY_EIGHT_KHZ);
                writer
                    .audio_level(level, true)
                    .write(pt, now, time, packet)
                    .map_err(|e| format!("audio write: {e}"))?;
                if self.loop_pos == 0
                    && let Role::Speaker { index, .. } = self.role
                {
                    self.shared.note_burst(now, index);
                }
                self.loop_pos = (self.loop_pos + 1) % LOOP_FRAMES;
                self.rtp += media::FRAME_SAMPLES as u64;
                self.shared.count(|c| c.tx_audio_packets += 1);
            }
            Role::Publisher {
                index,
                fps,
                frame_bytes,
                ..
            } => {
                let Some(writer) = self.rtc.writer(self.camera_mid) else {
                    return Ok(());
                };
                let pt = match self.pt_cache {
                    Some(pt) => pt,
                    None => {
                        let pt = writer
                            .payload_params()
                            .find(|p| p.spec().codec == Codec::Vp8)
                            .ok_or("no VP8 payload type")?
                            .pt();
                        self.pt_cache = Some(pt);
                        pt
                    }
                };
                let keyframe = self.keyframe || self.frames.is_multiple_of(u64::from(fps) * 2);
                self.keyframe = false;
                let sent = media::micros_since(self.shared.epoch, Instant::now());
                let data = media::video_frame(frame_bytes, keyframe, sent, index);
                let time =
                    MediaTime::new(self.frames * 90_000 / u64::from(fps), Frequency::NINETY_KHZ);
                writer
                    .write(pt, now, time, data)
                    .map_err(|e| format!("video write: {e}"))?;
                self.frames += 1;
                self.shared.count(|c| c.tx_video_frames += 1);
            }
            Role::Listener | Role::Receiver { .. } | Role::SignalingOnly => {}
        }
        Ok(())
    }
}
