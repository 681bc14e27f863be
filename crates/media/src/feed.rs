//! The feed: everything a meeting broadcasts to its audience, as data.
//!
//! A meeting's own connections and the connections of its replica meetings receive the same
//! [`FeedItem`]s; each receiving connection adapts an item to itself (its INDEX capacity flag,
//! its minus-one audio, the videos it subscribed to). This is the primary → replica link of
//! media replication: replicas on this node get the items directly; a replica on another node
//! would get the same items over the network and apply them the same way.

use std::sync::Arc;
use std::time::Instant;

use carillon_signaling::proto::{
    SdkAudioAttendeeState, SdkAudioStreamIdInfo, SdkDataMessagePayload, SdkIndexFrame,
};
use str0m::format::PayloadParams;
use str0m::media::MediaTime;

use crate::session::SessionId;

/// One item of a meeting's feed.
#[derive(Debug, Clone)]
pub enum FeedItem {
    /// Roster delta (AUDIO_STREAM_ID_INFO entries).
    Roster(Vec<SdkAudioStreamIdInfo>),
    /// The complete video index. Receivers set `at_capacity` for themselves from the room
    /// flags and their own right to publish.
    Index {
        frame: SdkIndexFrame,
        room_for_camera: bool,
        room_for_content: bool,
    },
    /// Volume and signal indicators.
    Metadata(Vec<SdkAudioAttendeeState>),
    /// Stamped data messages (never sent back to the sending connection).
    Data {
        messages: Vec<SdkDataMessagePayload>,
        sender: Option<SessionId>,
    },
    /// One 20 ms frame of mixed audio: the shared packet, encoded once for every listener who
    /// is not speaking, and the minus-one packets of the groups in the mix (by mixer group:
    /// an attendee, its voice and its content share together).
    Audio {
        shared: Arc<[u8]>,
        minus_one: Vec<(u32, Arc<[u8]>)>,
    },
    /// One video frame of a published stream, read once and fanned out.
    Video(VideoFrame),
}

/// A video frame as received from its publisher.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    pub stream_id: u32,
    /// A content share (receivers need the Content capability) rather than a camera.
    pub content: bool,
    /// The publishing connection (it does not receive its own video).
    pub publisher: SessionId,
    pub params: PayloadParams,
    pub network_time: Instant,
    pub time: MediaTime,
    pub data: Arc<[u8]>,
}
