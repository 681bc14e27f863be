//! One signaling connection (a WebSocket) and, once it has subscribed, its WebRTC peer.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Instant;

use carillon_control::{Capabilities, MeetingId};
use str0m::Rtc;
use str0m::media::{Mid, Pt};

use crate::forward::Rebase;
use crate::hibernate::{Hibernated, Replay};
use crate::meeting::ParticipantKey;
use crate::srtp::{KeyCapture, RtpSealer};

/// The adapter's id for a WebSocket connection.
pub type SessionId = u64;

/// Who is connecting, as the control plane authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub meeting: MeetingId,
    pub key: ParticipantKey,
    /// The attendee's ExternalUserId (`#content` is appended for content shares).
    pub external_user_id: String,
    pub capabilities: Capabilities,
    /// The primary meeting, when this participant joined a replica meeting.
    pub primary: Option<MeetingId>,
}

/// A replica connection promoted into its primary meeting: it acts there as this attendee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    pub key: ParticipantKey,
    pub external_user_id: String,
    pub capabilities: Capabilities,
}

/// Who a session acts as: where its audio, video and data are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acting<'a> {
    pub meeting: MeetingId,
    pub key: ParticipantKey,
    pub external_user_id: &'a str,
    pub capabilities: Capabilities,
}

/// A signaling session.
pub struct Session {
    pub participant: Participant,
    /// JOIN received and answered.
    pub joined: bool,
    /// LEAVE received: its departure is a clean "left".
    pub left: bool,
    /// Boxed: a str0m `Rtc` is tens of kilobytes, and sessions live in a hash map whose
    /// spare slots would each hold one inline.
    pub peer: Option<Box<Peer>>,
    /// Stream ids this receiver paused (PAUSE frames).
    pub paused: HashSet<u32>,
    /// Last media packet received from this client (signal strength).
    pub last_media: Option<Instant>,
    /// Set while a replica connection is promoted into the primary meeting.
    pub promoted: Option<Promotion>,
    /// The client's mute state (AUDIO_CONTROL, SUBSCRIBE), also while it is not in a roster.
    pub muted: bool,
    /// When the client last sent a frame (it PINGs every 10 s): a silent client is gone.
    pub last_frame: Option<Instant>,
    /// A replica viewer's connection while it has no `Rtc` (see [`crate::hibernate`]); then
    /// `peer` is `None`.
    pub hibernated: Option<Box<Hibernated>>,
}

impl Session {
    pub fn new(participant: Participant) -> Session {
        Session {
            participant,
            joined: false,
            left: false,
            peer: None,
            paused: HashSet::new(),
            last_media: None,
            promoted: None,
            muted: false,
            last_frame: None,
            hibernated: None,
        }
    }

    /// Whether this is a connection to a replica meeting.
    pub fn in_replica(&self) -> bool {
        self.participant.primary.is_some()
    }

    /// Who this session publishes as, if it may publish at all (a replica viewer may not).
    pub fn acting(&self) -> Option<Acting<'_>> {
        match (&self.promoted, self.participant.primary) {
            (Some(p), Some(primary)) => Some(Acting {
                meeting: primary,
                key: p.key,
                external_user_id: &p.external_user_id,
                capabilities: p.capabilities,
            }),
            (None, Some(_)) => None,
            (_, None) => Some(Acting {
                meeting: self.participant.meeting,
                key: self.participant.key,
                external_user_id: &self.participant.external_user_id,
                capabilities: self.participant.capabilities,
            }),
        }
    }

    /// The capabilities that govern what this session receives.
    fn receive_capabilities(&self) -> Capabilities {
        self.acting()
            .map_or(self.participant.capabilities, |a| a.capabilities)
    }

    /// True when this session may publish video now (camera, or content for a content
    /// session); a replica viewer never may.
    pub fn may_send_video(&self) -> bool {
        self.acting().is_some_and(|a| {
            if a.key.content {
                a.capabilities.content.sends()
            } else {
                a.capabilities.video.sends()
            }
        })
    }

    /// True when this session may receive a video of this kind.
    pub fn may_receive_video(&self, content: bool) -> bool {
        let caps = self.receive_capabilities();
        if content {
            caps.content.receives()
        } else {
            caps.video.receives()
        }
    }

    /// True when this session's audio goes into the mix: a content share's audio is governed
    /// by the Content capability, a connection's own by Audio.
    pub fn sends_audio(capabilities: Capabilities, key: ParticipantKey) -> bool {
        if key.content {
            capabilities.content.sends()
        } else {
            capabilities.audio.sends()
        }
    }

    /// True when this session receives mixed audio.
    pub fn receives_audio(&self) -> bool {
        !self.participant.key.content
            && self.receive_capabilities().audio != carillon_control::MediaCapability::None
    }
}

/// One of our send-only video m-lines.
pub struct VideoTx {
    pub mid: Mid,
    /// VP8's payload type on it, once looked up.
    pub pt: Option<Pt>,
    pub rebase: Rebase,
}

/// What the engine knows about a connection's m-lines, and its numbering on them: what an
/// `Rtc` of the connection negotiated, kept as it is when the `Rtc` is dropped and rebuilt
/// (see [`crate::hibernate`]).
#[derive(Default)]
pub struct MediaLines {
    /// ICE ufrag of the client's offer: a new one means a new RTCPeerConnection.
    pub remote_ufrag: Option<String>,
    pub audio_mid: Option<Mid>,
    pub opus_pt: Option<Pt>,
    /// The client's camera m-line (video it may publish).
    pub camera_mid: Option<Mid>,
    /// Our send-only video m-lines and the stream each carries (0: nothing).
    pub video_out: Vec<(Mid, u32)>,
    /// Per video m-line we send on: its payload type and its numbering.
    pub video_tx: Vec<VideoTx>,
    /// RTP clock of the mixed audio we send (48 kHz).
    pub audio_rtp: u32,
    /// Sequence number of the next mixed-audio packet we send.
    pub audio_seq: u64,
}

impl MediaLines {
    /// The numbering of our next mixed-audio packet: sequence number, RTP time, and the
    /// marker (the first packet starts a talkspurt for the client's jitter buffer).
    pub fn next_mix(&self) -> (u64, u32, bool) {
        (self.audio_seq, self.audio_rtp, self.audio_seq == 1)
    }

    /// One mixed-audio packet (20 ms at 48 kHz) went out.
    pub fn mix_sent(&mut self) {
        self.audio_seq += 1;
        self.audio_rtp = self.audio_rtp.wrapping_add(960);
    }
}

/// The str0m peer of a session and what the engine knows about its m-lines.
pub struct Peer {
    pub rtc: Rtc,
    pub lines: MediaLines,
    pub next_timeout: Instant,
    /// Time of this peer's earliest entry in the engine's timer heap, if it has one.
    pub scheduled: Option<Instant>,
    /// Queued in the engine's list of peers to drain (each peer is drained once per pass).
    pub dirty: bool,
    /// The SRTP keys of this connection, once its DTLS handshake has exported them.
    pub keys: KeyCapture,
    /// How the mixed audio leaves: sealed by us once the keys are known, or through str0m.
    pub audio_path: AudioPath,
    /// Where the sealed audio goes: the address the client last sent media from (or, before
    /// that, where str0m sent its DTLS and RTCP): the ICE pair in use.
    pub media_destination: Option<SocketAddr>,
    /// What rebuilds this connection's `Rtc` after it hibernated: kept for replica sessions.
    pub replay: Option<Box<Replay>>,
}

/// How a peer's mixed audio is sent.
#[derive(Default)]
pub enum AudioPath {
    /// Not decided yet (no keys yet).
    #[default]
    Undecided,
    /// Sealed by the engine (see [`crate::srtp`]).
    Sealed(RtpSealer),
    /// Through str0m's RTP mode: a profile we do not seal ourselves.
    Str0m,
}

impl std::fmt::Debug for AudioPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AudioPath::Undecided => "undecided",
            AudioPath::Sealed(_) => "sealed by the engine",
            AudioPath::Str0m => "through str0m",
        })
    }
}
