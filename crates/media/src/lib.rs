//! The media plane of Carillon, sans IO.
//!
//! [`Engine`] owns every live meeting of a node: the signaling sessions the browser clients
//! open at `SignalingUrl` (the Chime protobuf protocol), one `str0m::Rtc` per client peer
//! connection (ICE-lite, DTLS-SRTP, BUNDLE, rtcp-mux), the roster and video index of each
//! meeting, the audio mixer (`carillon-mixer`: every listener gets one Opus stream of the
//! loudest speakers except themselves) and the video forwarding (SFU).
//!
//! Everything is driven from outside: WebSocket frames, UDP datagrams, control-plane notices
//! (attendee deleted, meeting ended, capabilities changed) and timeouts go in; datagrams to
//! send, frames to write, sockets to close and events go out. Time is always an argument,
//! so the whole media plane runs under a simulated clock in tests.

pub mod data;
pub mod engine;
pub mod feed;
pub mod forward;
pub mod hibernate;
pub mod meeting;
pub mod sdp;
pub mod session;
pub mod srtp;
pub mod stun;

pub use engine::{Engine, EngineConfig, MediaEvent, MediaEventKind, Output};
pub use feed::FeedItem;
pub use meeting::ParticipantKey;
pub use session::{Participant, SessionId};
