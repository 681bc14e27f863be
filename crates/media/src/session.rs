//! One signaling connection (a WebSocket) and, once it has subscribed, its WebRTC peer.

use std::collections::HashSet;
use std::time::Instant;

use carillon_control::{Capabilities, MeetingId};
use str0m::Rtc;
use str0m::media::{Mid, Pt};

use crate::meeting::ParticipantKey;

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
}

/// A signaling session.
pub struct Session {
    pub participant: Participant,
    /// JOIN received and answered.
    pub joined: bool,
    /// LEAVE received: its departure is a clean "left".
    pub left: bool,
    pub peer: Option<Peer>,
    /// Stream ids this receiver paused (PAUSE frames).
    pub paused: HashSet<u32>,
    /// Last media packet received from this client (signal strength).
    pub last_media: Option<Instant>,
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
        }
    }

    /// True when this session is allowed to publish video (camera, or content for a content
    /// session).
    pub fn may_send_video(&self) -> bool {
        let caps = &self.participant.capabilities;
        if self.participant.key.content {
            caps.content.sends()
        } else {
            caps.video.sends()
        }
    }

    /// True when this session may receive a video of this kind.
    pub fn may_receive_video(&self, content: bool) -> bool {
        let caps = &self.participant.capabilities;
        if content {
            caps.content.receives()
        } else {
            caps.video.receives()
        }
    }
}

/// The str0m peer of a session and what the engine knows about its m-lines.
pub struct Peer {
    pub rtc: Rtc,
    /// ICE ufrag of the client's offer: a new one means a new RTCPeerConnection.
    pub remote_ufrag: Option<String>,
    pub audio_mid: Option<Mid>,
    pub opus_pt: Option<Pt>,
    /// The client's camera m-line (video it may publish).
    pub camera_mid: Option<Mid>,
    /// Our send-only video m-lines and the stream each carries (0: nothing).
    pub video_out: Vec<(Mid, u32)>,
    pub next_timeout: Instant,
    /// Time of this peer's earliest entry in the engine's timer heap, if it has one.
    pub scheduled: Option<Instant>,
    /// RTP clock of the mixed audio we send (48 kHz).
    pub audio_rtp: u32,
}
