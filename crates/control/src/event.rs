//! Meeting events: the domain record of something Chime reports as a
//! `Chime Meeting State Change`, and where it must be delivered.
//!
//! The control plane emits an [`Event`] as a [`crate::Change::Event`] in the same call that
//! changes the state, so the store writes both in one transaction (the outbox). Turning the
//! record into the EventBridge JSON envelope and delivering it is `carillon-events`' job.

use serde::{Deserialize, Serialize};

use crate::ids::MeetingId;
use crate::model::{EpochMillis, Notifications};

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventTranscription {
    /// `detail.transcriptionRegion`.
    pub region: String,
    /// `detail.transcriptionConfiguration`: the configuration as a JSON string.
    pub configuration_json: String,
}

/// One meeting event, as written to the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The envelope's `id` (a UUID): stable across retries, so consumers can deduplicate.
    pub id: String,
    pub kind: EventKind,
    /// When it happened (`time` and `detail.timestamp`).
    pub time: EpochMillis,
    pub account: String,
    /// The region of the control endpoint that created the meeting (the envelope's `region`).
    pub control_region: String,
    pub media_region: String,
    pub meeting_id: MeetingId,
    pub external_meeting_id: String,
    /// `<AttendeeId>` or, for content-share events, `<AttendeeId>#content`.
    pub attendee_id: Option<String>,
    pub external_user_id: Option<String>,
    pub transcription: Option<EventTranscription>,
    /// Every target this event goes to, fixed when it happened. Not part of the stored
    /// record (the outbox's delivery rows name the targets), so empty when read back.
    #[serde(skip)]
    pub targets: Vec<EventTarget>,
}
