//! Meeting events: the domain record of something Chime reports as a
//! `Chime Meeting State Change`, and where it must be delivered.
//!
//! The control plane emits an [`Event`] as a [`crate::Change::Event`] in the same call that
//! changes the state, so the store writes both in one transaction (the outbox). Turning the
//! record into the EventBridge JSON envelope and delivering it is `carillon-events`' job.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::ids::{AttendeeId, MeetingId};
use crate::model::{EpochMillis, Meeting, Notifications};

/// `detail.eventType`, without the `chime:` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    MeetingStarted,
    MeetingEnded,
    AttendeeAdded,
    AttendeeDeleted,
    AttendeeAuthorized,
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
    TranscriptionStarted,
    TranscriptionStopped,
}

impl EventKind {
    /// Every kind.
    pub const ALL: &'static [EventKind] = &[
        EventKind::MeetingStarted,
        EventKind::MeetingEnded,
        EventKind::AttendeeAdded,
        EventKind::AttendeeDeleted,
        EventKind::AttendeeAuthorized,
        EventKind::AttendeeJoined,
        EventKind::AttendeeLeft,
        EventKind::AttendeeDropped,
        EventKind::AttendeeVideoStarted,
        EventKind::AttendeeVideoStopped,
        EventKind::AttendeeContentJoined,
        EventKind::AttendeeContentLeft,
        EventKind::AttendeeContentDropped,
        EventKind::AttendeeContentVideoStarted,
        EventKind::AttendeeContentVideoStopped,
        EventKind::TranscriptionStarted,
        EventKind::TranscriptionStopped,
    ];

    /// The wire value of `detail.eventType`.
    pub fn event_type(self) -> &'static str {
        match self {
            EventKind::MeetingStarted => "chime:MeetingStarted",
            EventKind::MeetingEnded => "chime:MeetingEnded",
            EventKind::AttendeeAdded => "chime:AttendeeAdded",
            EventKind::AttendeeDeleted => "chime:AttendeeDeleted",
            EventKind::AttendeeAuthorized => "chime:AttendeeAuthorized",
            EventKind::AttendeeJoined => "chime:AttendeeJoined",
            EventKind::AttendeeLeft => "chime:AttendeeLeft",
            EventKind::AttendeeDropped => "chime:AttendeeDropped",
            EventKind::AttendeeVideoStarted => "chime:AttendeeVideoStarted",
            EventKind::AttendeeVideoStopped => "chime:AttendeeVideoStopped",
            EventKind::AttendeeContentJoined => "chime:AttendeeContentJoined",
            EventKind::AttendeeContentLeft => "chime:AttendeeContentLeft",
            EventKind::AttendeeContentDropped => "chime:AttendeeContentDropped",
            EventKind::AttendeeContentVideoStarted => "chime:AttendeeContentVideoStarted",
            EventKind::AttendeeContentVideoStopped => "chime:AttendeeContentVideoStopped",
            EventKind::TranscriptionStarted => "chime:TranscriptionStarted",
            EventKind::TranscriptionStopped => "chime:TranscriptionStopped",
        }
    }

    /// Audio (and content) session events carry `networkType`.
    pub fn has_network_type(self) -> bool {
        matches!(
            self,
            EventKind::AttendeeJoined
                | EventKind::AttendeeLeft
                | EventKind::AttendeeDropped
                | EventKind::AttendeeContentJoined
                | EventKind::AttendeeContentLeft
                | EventKind::AttendeeContentDropped
        )
    }

    /// The kind's stable one-byte code in stored records (never reuse or renumber one).
    pub fn code(self) -> u8 {
        match self {
            EventKind::MeetingStarted => 1,
            EventKind::MeetingEnded => 2,
            EventKind::AttendeeAdded => 3,
            EventKind::AttendeeDeleted => 4,
            EventKind::AttendeeAuthorized => 5,
            EventKind::AttendeeJoined => 6,
            EventKind::AttendeeLeft => 7,
            EventKind::AttendeeDropped => 8,
            EventKind::AttendeeVideoStarted => 9,
            EventKind::AttendeeVideoStopped => 10,
            EventKind::AttendeeContentJoined => 11,
            EventKind::AttendeeContentLeft => 12,
            EventKind::AttendeeContentDropped => 13,
            EventKind::AttendeeContentVideoStarted => 14,
            EventKind::AttendeeContentVideoStopped => 15,
            EventKind::TranscriptionStarted => 16,
            EventKind::TranscriptionStopped => 17,
        }
    }

    /// The kind of a [`EventKind::code`].
    pub fn from_code(code: u8) -> Option<EventKind> {
        EventKind::ALL.iter().copied().find(|k| k.code() == code)
    }

    /// Events reported by the media plane for the content-share attendee (`<id>#content`).
    pub fn is_content(self) -> bool {
        matches!(
            self,
            EventKind::AttendeeContentJoined
                | EventKind::AttendeeContentLeft
                | EventKind::AttendeeContentDropped
                | EventKind::AttendeeContentVideoStarted
                | EventKind::AttendeeContentVideoStopped
        )
    }
}

/// Where an event goes. The key ([`EventTarget::key`]) names a target in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventTarget {
    /// `NotificationsConfiguration.SqsQueueArn`.
    Sqs(String),
    /// `NotificationsConfiguration.SnsTopicArn`.
    Sns(String),
    /// `NotificationsConfiguration.LambdaFunctionArn`.
    Lambda(String),
    /// The default event bus of the meeting's control region (`CARILLON_EVENTBRIDGE=1`).
    EventBridge,
    /// A configured webhook URL.
    Webhook(String),
}

impl EventTarget {
    /// A stable text key: `sqs:<arn>`, `sns:<arn>`, `lambda:<arn>`, `eventbridge`,
    /// `webhook:<url>`.
    pub fn key(&self) -> String {
        match self {
            EventTarget::Sqs(arn) => format!("sqs:{arn}"),
            EventTarget::Sns(arn) => format!("sns:{arn}"),
            EventTarget::Lambda(arn) => format!("lambda:{arn}"),
            EventTarget::EventBridge => "eventbridge".to_owned(),
            EventTarget::Webhook(url) => format!("webhook:{url}"),
        }
    }

    /// Parses a key written by [`EventTarget::key`].
    pub fn from_key(key: &str) -> Option<EventTarget> {
        if key == "eventbridge" {
            return Some(EventTarget::EventBridge);
        }
        let (kind, rest) = key.split_once(':')?;
        let rest = rest.to_owned();
        match kind {
            "sqs" => Some(EventTarget::Sqs(rest)),
            "sns" => Some(EventTarget::Sns(rest)),
            "lambda" => Some(EventTarget::Lambda(rest)),
            "webhook" => Some(EventTarget::Webhook(rest)),
            _ => None,
        }
    }

    /// The targets a meeting's `NotificationsConfiguration` names.
    pub fn of_notifications(notifications: Option<&Notifications>) -> Vec<EventTarget> {
        let Some(n) = notifications else {
            return Vec::new();
        };
        let mut targets = Vec::new();
        if let Some(arn) = &n.sqs_queue_arn {
            targets.push(EventTarget::Sqs(arn.clone()));
        }
        if let Some(arn) = &n.sns_topic_arn {
            targets.push(EventTarget::Sns(arn.clone()));
        }
        if let Some(arn) = &n.lambda_function_arn {
            targets.push(EventTarget::Lambda(arn.clone()));
        }
        targets
    }
}

/// The transcription fields of `TranscriptionStarted` / `TranscriptionStopped`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTranscription {
    /// `detail.transcriptionRegion`.
    pub region: String,
    /// `detail.transcriptionConfiguration`: the configuration as a JSON string.
    pub configuration_json: String,
}

/// The envelope's `id`: a random (version 4) UUID fixed when the event happens, so a retried
/// delivery carries the same one and consumers can deduplicate. Kept as 16 bytes (no text is
/// formatted on the API path); printed as the lower-case hyphenated form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(uuid::Uuid);

impl EventId {
    /// A fresh random id.
    pub fn random(rng: &mut dyn RngCore) -> EventId {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        EventId(uuid::Builder::from_random_bytes(bytes).into_uuid())
    }

    /// The 16 raw bytes (stored records).
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.into_bytes()
    }

    /// The id of 16 raw bytes written by [`EventId::to_bytes`].
    pub fn from_bytes(bytes: [u8; 16]) -> EventId {
        EventId(uuid::Uuid::from_bytes(bytes))
    }
}

impl FromStr for EventId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<EventId, uuid::Error> {
        uuid::Uuid::parse_str(s).map(EventId)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What every event of one meeting carries, and where its events go. Built once per meeting
/// and shared by all of its events, so emitting an event copies none of these strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeeting {
    pub meeting_id: MeetingId,
    pub external_meeting_id: String,
    pub media_region: String,
    /// The region of the control endpoint that created the meeting (the envelope's `region`).
    pub control_region: String,
    pub account: String,
    /// Every target the meeting's events go to. Not part of the stored record (the outbox
    /// rows name their target), so empty when read back from the store.
    pub targets: Vec<EventTarget>,
}

impl EventMeeting {
    /// The event context of `meeting`, whose events go to its `NotificationsConfiguration`
    /// and to `global`; `None` when that is nowhere (then no event is written at all).
    pub fn of(meeting: &Meeting, global: &[EventTarget]) -> Option<Arc<EventMeeting>> {
        let mut targets = EventTarget::of_notifications(meeting.spec.notifications.as_ref());
        targets.extend(global.iter().cloned());
        if targets.is_empty() {
            return None;
        }
        Some(Arc::new(EventMeeting {
            meeting_id: meeting.id,
            external_meeting_id: meeting.spec.external_meeting_id.clone(),
            media_region: meeting.spec.media_region.clone(),
            control_region: meeting.control_region.clone(),
            account: meeting.account_id.clone(),
            targets,
        }))
    }
}

/// The attendee an attendee event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventAttendee {
    /// The base attendee.
    pub id: AttendeeId,
    /// The content-share attendee: `detail.attendeeId` is then `<AttendeeId>#content`.
    pub content: bool,
    /// `detail.externalUserId` as sent (with `#content` for the content-share attendee).
    pub external_user_id: String,
}

impl EventAttendee {
    /// `detail.attendeeId`.
    pub fn attendee_id(&self) -> String {
        if self.content {
            format!("{}#content", self.id)
        } else {
            self.id.to_string()
        }
    }
}

/// One meeting event, as written to the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The envelope's `id`: stable across retries, so consumers can deduplicate.
    pub id: EventId,
    pub kind: EventKind,
    /// When it happened (`time` and `detail.timestamp`).
    pub time: EpochMillis,
    /// The meeting's fields and the targets, shared with the meeting's other events.
    pub meeting: Arc<EventMeeting>,
    /// Attendee events only.
    pub attendee: Option<EventAttendee>,
    /// Transcription events only.
    pub transcription: Option<EventTranscription>,
}
