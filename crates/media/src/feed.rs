//! The feed: the primary → replica link of media replication, as data.
//!
//! A meeting publishes everything it broadcasts as [`FeedItem`]s. Its own connections receive
//! them, and so does every replica meeting subscribed to it. A replica never reads its
//! primary's state: it subscribes with a [`FeedSnapshot`] (roster, video index, retained data
//! messages), keeps a [`FeedMirror`] of that state up to date from the items that follow, and
//! answers its own connections (joins, subscriptions) from the mirror. What a replica asks of
//! its primary goes the other way as a [`FeedRequest`].
//!
//! The types carry no node-local handles (no session ids, no clocks, no codec-library state):
//! participants are named by attendee id, time by RTP clocks, codecs by name. On one node the
//! engine hands items, snapshots and requests over directly; a replica on another node can
//! receive the same values over the network and apply them the same way.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use carillon_signaling::proto::{
    SdkAudioAttendeeState, SdkAudioStreamIdInfo, SdkDataMessagePayload, SdkIndexFrame,
};

use crate::data::Retention;
use crate::forward::RtpPayload;
use crate::meeting::ParticipantKey;

/// One item of a meeting's feed.
#[derive(Debug, Clone)]
pub enum FeedItem {
    /// Roster delta (AUDIO_STREAM_ID_INFO entries).
    Roster(Vec<SdkAudioStreamIdInfo>),
    /// The complete video index. Receivers set `at_capacity` for themselves from the room
    /// flags and their own right to publish.
    Index(FeedIndex),
    /// Volume and signal indicators.
    Metadata(Vec<SdkAudioAttendeeState>),
    /// Stamped data messages, never delivered back to their sender.
    Data {
        messages: Vec<SdkDataMessagePayload>,
        sender: ParticipantKey,
    },
    /// One 20 ms frame of mixed audio: the shared packet, encoded once for every listener who
    /// is not speaking, and the minus-one packets of the groups in the mix (by mixer group:
    /// an attendee, its voice and its content share together).
    Audio {
        shared: Arc<[u8]>,
        minus_one: Vec<(u32, Arc<[u8]>)>,
    },
    /// Video packets of a published stream, read once and fanned out.
    Video(VideoPackets),
}

/// The complete video index of a meeting.
#[derive(Debug, Clone, Default)]
pub struct FeedIndex {
    pub frame: SdkIndexFrame,
    pub room_for_camera: bool,
    pub room_for_content: bool,
}

impl FeedIndex {
    /// The participant publishing `stream`, if it is in the index.
    pub fn publisher_of(&self, stream: u32) -> Option<ParticipantKey> {
        if stream == 0 {
            return None;
        }
        self.frame
            .sources
            .iter()
            .find(|s| s.stream_id == Some(stream))
            .and_then(|s| ParticipantKey::parse(s.attendee_id.as_deref()?))
    }
}

/// Video codecs the server forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
}

/// Video RTP packets of one published stream as received from its publisher (SRTP removed, a
/// retransmission already turned back into the packet it repairs): usually one whole frame.
#[derive(Debug, Clone)]
pub struct VideoPackets {
    pub stream_id: u32,
    /// A content share (receivers need the Content capability) rather than a camera.
    pub content: bool,
    /// Who published it (its own connections do not receive it).
    pub publisher: ParticipantKey,
    pub codec: VideoCodec,
    pub packets: Vec<RtpPayload>,
}

/// The state a subscriber needs before the items that follow make sense.
#[derive(Debug, Clone, Default)]
pub struct FeedSnapshot {
    /// The full roster (AUDIO_STREAM_ID_INFO entries of everyone present).
    pub roster: Vec<SdkAudioStreamIdInfo>,
    pub index: FeedIndex,
    /// Data messages still within their lifetime, with their remaining lifetime in ms.
    pub retained: Vec<(SdkDataMessagePayload, u32)>,
}

/// What a replica asks of its primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedRequest {
    /// A receiver needs a keyframe of this stream (it just subscribed, resumed, or lost one).
    Keyframe { stream: u32 },
}

/// A replica's copy of its primary's state, kept from the snapshot and the items since.
#[derive(Debug, Default)]
pub struct FeedMirror {
    /// Roster entries by audio stream id.
    roster: BTreeMap<u32, SdkAudioStreamIdInfo>,
    index: FeedIndex,
    retention: Retention,
}

impl FeedMirror {
    /// A mirror starting from `snapshot`, taken at `now`.
    pub fn new(snapshot: FeedSnapshot, now: Instant) -> FeedMirror {
        let mut mirror = FeedMirror {
            index: snapshot.index,
            ..FeedMirror::default()
        };
        mirror.apply_roster(&snapshot.roster);
        for (message, remaining_ms) in &snapshot.retained {
            mirror.retention.keep_for(message, *remaining_ms, now);
        }
        mirror
    }

    /// Brings the mirror up to date with one item of the feed.
    pub fn apply(&mut self, item: &FeedItem, now: Instant) {
        match item {
            FeedItem::Roster(entries) => self.apply_roster(entries),
            FeedItem::Index(index) => self.index = index.clone(),
            FeedItem::Data { messages, .. } => {
                for message in messages {
                    self.retention.keep(message, now);
                }
            }
            FeedItem::Metadata(_) | FeedItem::Audio { .. } | FeedItem::Video(_) => {}
        }
    }

    fn apply_roster(&mut self, entries: &[SdkAudioStreamIdInfo]) {
        for entry in entries {
            let Some(stream) = entry.audio_stream_id else {
                continue;
            };
            match (&entry.attendee_id, entry.muted) {
                // Presence (a full entry).
                (Some(_), _) => {
                    self.roster.insert(stream, entry.clone());
                }
                // A mute change.
                (None, Some(muted)) => {
                    if let Some(present) = self.roster.get_mut(&stream) {
                        present.muted = Some(muted);
                    }
                }
                // Left or dropped.
                (None, None) => {
                    self.roster.remove(&stream);
                }
            }
        }
    }

    /// The full roster, for a joining connection.
    pub fn roster(&self) -> Vec<SdkAudioStreamIdInfo> {
        self.roster.values().cloned().collect()
    }

    pub fn index(&self) -> &FeedIndex {
        &self.index
    }

    /// Retained data messages for a joining connection speaking as `receiver`.
    pub fn replay(&mut self, receiver: &str, now: Instant) -> Vec<SdkDataMessagePayload> {
        self.retention.replay(receiver, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8, content: bool) -> ParticipantKey {
        ParticipantKey {
            attendee: format!("00000000-0000-0000-0000-0000000000{n:02x}")
                .parse()
                .unwrap(),
            content,
        }
    }

    #[test]
    fn a_mirror_follows_the_roster_index_and_data() {
        let now = Instant::now();
        let alice = key(1, false);
        let snapshot = FeedSnapshot {
            roster: vec![SdkAudioStreamIdInfo::present(
                1,
                alice.wire_id(),
                "alice",
                false,
            )],
            index: FeedIndex::default(),
            retained: vec![(
                SdkDataMessagePayload {
                    topic: Some("chat".into()),
                    sender_attendee_id: Some(alice.wire_id()),
                    lifetime_ms: Some(60_000),
                    ..Default::default()
                },
                1_000,
            )],
        };
        let mut mirror = FeedMirror::new(snapshot, now);
        let bob = key(2, false);
        let share = key(2, true);
        mirror.apply(
            &FeedItem::Roster(vec![
                SdkAudioStreamIdInfo::present(2, bob.wire_id(), "bob", false),
                SdkAudioStreamIdInfo::mute_change(1, true),
            ]),
            now,
        );
        let mut index = FeedIndex::default();
        index.frame.sources.push(
            carillon_signaling::proto::SdkStreamDescriptor::video_source(
                7,
                7,
                share.wire_id(),
                "bob#content".to_owned(),
            ),
        );
        mirror.apply(&FeedItem::Index(index), now);
        let roster = mirror.roster();
        assert_eq!(roster.len(), 2);
        assert_eq!(roster[0].muted, Some(true));
        assert_eq!(mirror.index().publisher_of(7), Some(share));
        assert_eq!(mirror.index().publisher_of(8), None);
        // Alice's retained message is not replayed to Alice; it is to Bob, until it expires.
        assert!(mirror.replay(&alice.wire_id(), now).is_empty());
        assert_eq!(mirror.replay(&bob.wire_id(), now).len(), 1);
        let later = now + std::time::Duration::from_millis(1_001);
        assert!(mirror.replay(&bob.wire_id(), later).is_empty());
        // Leaving removes the entry.
        mirror.apply(
            &FeedItem::Roster(vec![SdkAudioStreamIdInfo {
                audio_stream_id: Some(2),
                ..Default::default()
            }]),
            now,
        );
        assert_eq!(mirror.roster().len(), 1);
    }
}
