//! One live meeting on this node: its roster (audio stream ids), its published videos (the
//! INDEX), its data-message throttle and replay buffer, and its audio mixer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use carillon_control::{AttendeeId, MeetingId};
use carillon_mixer::{Mixer, MixerConfig};
use carillon_signaling::proto::{SdkAudioStreamIdInfo, SdkIndexFrame, SdkStreamDescriptor};

use crate::data::{Retention, Throttle};
use crate::feed::{FeedIndex, FeedMirror, FeedSnapshot};
use crate::forward::FrameHold;
use crate::session::SessionId;

/// Who a connection speaks for: an attendee, or that attendee's content share
/// (`<AttendeeId>#content`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantKey {
    pub attendee: AttendeeId,
    pub content: bool,
}

impl ParticipantKey {
    /// Parses the attendee id as the client sees it (`<AttendeeId>[#content]`).
    pub fn parse(wire_id: &str) -> Option<ParticipantKey> {
        let (id, content) = match wire_id.strip_suffix("#content") {
            Some(id) => (id, true),
            None => (wire_id, false),
        };
        Some(ParticipantKey {
            attendee: id.parse().ok()?,
            content,
        })
    }

    /// The attendee id as the client sees it.
    pub fn wire_id(&self) -> String {
        if self.content {
            format!("{}#content", self.attendee)
        } else {
            self.attendee.to_string()
        }
    }
}

/// An entry of the roster.
#[derive(Debug, Clone)]
pub struct Presence {
    pub audio_stream_id: u32,
    pub external_user_id: String,
    pub muted: bool,
    /// The live session, or `None` while waiting for a reconnect.
    pub session: Option<SessionId>,
    pub audio_session_id: Option<u64>,
    /// End of the reconnect grace period after an unexpected disconnect.
    pub grace_until: Option<Instant>,
}

/// A published video (camera or content share).
#[derive(Debug, Clone)]
pub struct VideoSource {
    pub key: ParticipantKey,
    pub external_user_id: String,
    pub session: SessionId,
    /// The publisher's m-line carrying it.
    pub mid: String,
    pub stream_id: u32,
    pub group_id: u32,
    pub max_bitrate_kbps: u32,
    pub framerate: u32,
    /// Packets of the current frame, waiting for its last one.
    pub hold: FrameHold,
}

/// Per-meeting limits.
#[derive(Debug, Clone)]
pub struct MeetingLimits {
    pub max_video_publishers: usize,
    pub max_content_shares: usize,
    /// Attendees present at once (a promotion beyond this is refused with 409).
    pub max_attendees: usize,
}

/// The state of one meeting.
pub struct Meeting {
    pub id: MeetingId,
    pub roster: BTreeMap<ParticipantKey, Presence>,
    next_audio_stream_id: u32,
    pub sources: Vec<VideoSource>,
    /// Stable (stream id, group id) per participant, so a republish keeps its ids.
    video_ids: HashMap<ParticipantKey, (u32, u32)>,
    /// The mixer group of each attendee: its voice and its content share's audio, which
    /// neither of its connections hears.
    audio_groups: HashMap<carillon_control::AttendeeId, u32>,
    next_video_id: u32,
    pub throttle: Throttle,
    pub retention: Retention,
    pub mixer: Mixer,
    /// The tick grid: when the next mixed frame is due.
    pub next_mix: Instant,
    /// When to try that tick: `next_mix`, or later while it waits for a mixed speaker's late
    /// frame (see `Engine::meeting_timers`).
    pub mix_at: Instant,
    pub next_metadata: Instant,
    /// Stream ids that carried a volume in the last AUDIO_METADATA.
    pub last_speakers: Vec<u32>,
    pub sessions: BTreeSet<SessionId>,
    pub limits: MeetingLimits,
    /// For a replica: its primary. Its roster is then private bookkeeping (reconnects, second
    /// devices) that nobody sees; its connections receive the primary's feed.
    pub primary: Option<MeetingId>,
    /// For a primary: replica meetings on this node that receive its feed.
    pub replicas: BTreeSet<MeetingId>,
    /// For a replica: its copy of the primary's state, from the primary's feed.
    pub mirror: Option<FeedMirror>,
}

impl Meeting {
    pub fn new(
        id: MeetingId,
        limits: MeetingLimits,
        mixer: MixerConfig,
        data_rate: (f64, u32),
        primary: Option<MeetingId>,
        now: Instant,
    ) -> Meeting {
        Meeting {
            id,
            roster: BTreeMap::new(),
            next_audio_stream_id: 1,
            sources: Vec::new(),
            video_ids: HashMap::new(),
            audio_groups: HashMap::new(),
            next_video_id: 1,
            throttle: Throttle::new(data_rate.0, data_rate.1, now),
            retention: Retention::default(),
            mixer: Mixer::new(mixer).expect("the mixer configuration is valid"),
            next_mix: now,
            mix_at: now,
            next_metadata: now,
            last_speakers: Vec::new(),
            sessions: BTreeSet::new(),
            limits,
            primary,
            replicas: BTreeSet::new(),
            mirror: None,
        }
    }

    /// True for a replica meeting.
    pub fn is_replica(&self) -> bool {
        self.primary.is_some()
    }

    /// Attendees (not content shares) present in the roster.
    pub fn attendee_count(&self) -> usize {
        self.roster.keys().filter(|k| !k.content).count()
    }

    /// The mixer group of an attendee (allocated on first use, stable for the meeting).
    pub fn audio_group(&mut self, attendee: carillon_control::AttendeeId) -> u32 {
        let next = self.audio_groups.len() as u32 + 1;
        *self.audio_groups.entry(attendee).or_insert(next)
    }

    /// Registers the audio of a participant's connection with the mixer, in its attendee's
    /// group.
    pub fn mix_source(&mut self, stream: u32, key: ParticipantKey) {
        let group = self.audio_group(key.attendee);
        self.mixer.add_source_in_group(stream, group);
    }

    /// The mixer group of an attendee, if it has one.
    pub fn audio_group_of(&self, attendee: carillon_control::AttendeeId) -> Option<u32> {
        self.audio_groups.get(&attendee).copied()
    }

    /// A fresh audio stream id (0 is reserved by the protocol).
    pub fn allocate_audio_stream_id(&mut self) -> u32 {
        let id = self.next_audio_stream_id;
        self.next_audio_stream_id += 1;
        id
    }

    /// The full roster, for the first AUDIO_STREAM_ID_INFO after a (re)join.
    pub fn roster_snapshot(&self) -> Vec<SdkAudioStreamIdInfo> {
        self.roster
            .iter()
            .map(|(key, p)| {
                SdkAudioStreamIdInfo::present(
                    p.audio_stream_id,
                    key.wire_id(),
                    p.external_user_id.clone(),
                    p.muted,
                )
            })
            .collect()
    }

    /// The stream id of a participant, if present.
    pub fn stream_id_of(&self, key: &ParticipantKey) -> Option<u32> {
        self.roster.get(key).map(|p| p.audio_stream_id)
    }

    /// The participant a live session speaks for.
    pub fn key_of_session(&self, session: SessionId) -> Option<ParticipantKey> {
        self.roster
            .iter()
            .find(|(_, p)| p.session == Some(session))
            .map(|(k, _)| *k)
    }

    /// Whether one more camera (or content share) may be published.
    pub fn has_room_for(&self, key: &ParticipantKey) -> bool {
        if self.sources.iter().any(|s| s.key == *key) {
            return true;
        }
        if key.content {
            self.sources.iter().filter(|s| s.key.content).count() < self.limits.max_content_shares
        } else {
            self.sources.iter().filter(|s| !s.key.content).count()
                < self.limits.max_video_publishers
        }
    }

    /// Registers (or updates) a participant's published video; returns its (stream, group) ids
    /// and whether the INDEX changed.
    pub fn publish(
        &mut self,
        key: ParticipantKey,
        external_user_id: &str,
        session: SessionId,
        mid: &str,
        max_bitrate_kbps: u32,
        framerate: u32,
    ) -> (u32, u32, bool) {
        let (stream_id, group_id) = *self.video_ids.entry(key).or_insert_with(|| {
            let ids = (self.next_video_id, self.next_video_id);
            self.next_video_id += 1;
            ids
        });
        if let Some(existing) = self.sources.iter_mut().find(|s| s.key == key) {
            let changed = existing.mid != mid || existing.session != session;
            existing.mid = mid.to_owned();
            existing.session = session;
            existing.max_bitrate_kbps = max_bitrate_kbps;
            existing.framerate = framerate;
            return (stream_id, group_id, changed);
        }
        self.sources.push(VideoSource {
            key,
            external_user_id: external_user_id.to_owned(),
            session,
            mid: mid.to_owned(),
            stream_id,
            group_id,
            max_bitrate_kbps,
            framerate,
            hold: FrameHold::default(),
        });
        (stream_id, group_id, true)
    }

    /// Removes a participant's published video; true if there was one.
    pub fn unpublish(&mut self, key: &ParticipantKey) -> bool {
        let before = self.sources.len();
        self.sources.retain(|s| s.key != *key);
        self.sources.len() != before
    }

    /// The complete INDEX: each receiver derives its own `at_capacity`.
    pub fn index(&self) -> FeedIndex {
        let cameras = self.sources.iter().filter(|s| !s.key.content).count();
        let shares = self.sources.iter().filter(|s| s.key.content).count();
        FeedIndex {
            frame: SdkIndexFrame {
                sources: self
                    .sources
                    .iter()
                    .map(|s| {
                        let mut d = SdkStreamDescriptor::video_source(
                            s.stream_id,
                            s.group_id,
                            s.key.wire_id(),
                            s.external_user_id.clone(),
                        );
                        d.max_bitrate_kbps = Some(s.max_bitrate_kbps);
                        d.avg_bitrate_bps = Some(s.max_bitrate_kbps.saturating_mul(1000) / 2);
                        d.framerate = Some(s.framerate);
                        d
                    })
                    .collect(),
                num_participants: Some(self.attendee_count() as u32),
                ..Default::default()
            },
            room_for_camera: cameras < self.limits.max_video_publishers,
            room_for_content: shares < self.limits.max_content_shares,
        }
    }

    /// What a replica needs when it subscribes to this meeting's feed.
    pub fn snapshot(&mut self, now: Instant) -> FeedSnapshot {
        FeedSnapshot {
            roster: self.roster_snapshot(),
            index: self.index(),
            retained: self.retention.snapshot(now),
        }
    }

    /// Whether `key` publishes a video now.
    pub fn publishes(&self, key: &ParticipantKey) -> bool {
        self.sources.iter().any(|s| s.key == *key)
    }

    /// The source carrying `stream_id`.
    pub fn source(&self, stream_id: u32) -> Option<&VideoSource> {
        self.sources.iter().find(|s| s.stream_id == stream_id)
    }
}
