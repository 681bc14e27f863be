//! Domain records: what a meeting and an attendee are, as stored and as returned.

use serde::{Deserialize, Serialize};

use crate::ids::{AttendeeId, MeetingId};

/// Milliseconds since the Unix epoch. Time is always passed in, never read here.
pub type EpochMillis = u64;

/// Declares a closed set of wire strings as a Rust enum with `as_str` / `parse`.
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in model order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the exact wire spelling.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }

            /// The allowed values, for error messages: `[A, B, C]`.
            pub fn allowed() -> String {
                let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                format!("[{}]", names.join(", "))
            }
        }
    };
}

wire_enum!(
    /// `MediaCapabilities`.
    MediaCapability { SendReceive = "SendReceive", Send = "Send", Receive = "Receive", None = "None" }
);
wire_enum!(
    /// `MeetingFeatureStatus`.
    FeatureStatus { Available = "AVAILABLE", Unavailable = "UNAVAILABLE" }
);
wire_enum!(
    /// `VideoResolution`.
    VideoResolution { None = "None", Hd = "HD", Fhd = "FHD" }
);
wire_enum!(
    /// `ContentResolution`.
    ContentResolution { None = "None", Fhd = "FHD", Uhd = "UHD" }
);
wire_enum!(
    /// `MediaPlacementNetworkType`.
    NetworkType { Ipv4Only = "Ipv4Only", DualStack = "DualStack" }
);

impl MediaCapability {
    /// Whether the attendee may receive this media.
    pub fn receives(self) -> bool {
        matches!(self, Self::SendReceive | Self::Receive)
    }
    /// Whether the attendee may send this media.
    pub fn sends(self) -> bool {
        matches!(self, Self::SendReceive | Self::Send)
    }
}

/// `AttendeeCapabilities`: all three members are required whenever the structure is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub audio: MediaCapability,
    pub video: MediaCapability,
    pub content: MediaCapability,
}

impl Capabilities {
    /// SendReceive for everything: the default when the meeting allows all media.
    pub const ALL: Capabilities = Capabilities {
        audio: MediaCapability::SendReceive,
        video: MediaCapability::SendReceive,
        content: MediaCapability::SendReceive,
    };
}

/// `MeetingFeaturesConfiguration`, kept exactly as given so it can be echoed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingFeatures {
    pub audio: Option<AudioFeatures>,
    pub video: Option<VideoFeatures>,
    pub content: Option<ContentFeatures>,
    pub attendee: Option<AttendeeFeatures>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioFeatures {
    pub echo_reduction: Option<FeatureStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoFeatures {
    pub max_resolution: Option<VideoResolution>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentFeatures {
    pub max_resolution: Option<ContentResolution>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttendeeFeatures {
    pub max_count: Option<u32>,
}

impl MeetingFeatures {
    /// Effective video resolution cap (the model's default is HD).
    pub fn video_resolution(&self) -> VideoResolution {
        self.video
            .as_ref()
            .and_then(|v| v.max_resolution)
            .unwrap_or(VideoResolution::Hd)
    }

    /// Effective content resolution cap (the model's default is FHD).
    pub fn content_resolution(&self) -> ContentResolution {
        self.content
            .as_ref()
            .and_then(|c| c.max_resolution)
            .unwrap_or(ContentResolution::Fhd)
    }

    /// `Attendee.MaxCount` if given.
    pub fn max_count(&self) -> Option<u32> {
        self.attendee.as_ref().and_then(|a| a.max_count)
    }

    /// FHD video or UHD content: these lower the attendee limit.
    pub fn is_high_resolution(&self) -> bool {
        self.video_resolution() == VideoResolution::Fhd
            || self.content_resolution() == ContentResolution::Uhd
    }

    /// The capabilities an attendee gets when the request names none. The documented corner
    /// case: video `None` with content allowed gives Video=Receive, Content=SendReceive, because
    /// content reception needs video reception.
    pub fn default_capabilities(&self) -> Capabilities {
        let video_allowed = self.video_resolution() != VideoResolution::None;
        let content_allowed = self.content_resolution() != ContentResolution::None;
        Capabilities {
            audio: MediaCapability::SendReceive,
            video: match (video_allowed, content_allowed) {
                (true, _) => MediaCapability::SendReceive,
                (false, true) => MediaCapability::Receive,
                (false, false) => MediaCapability::None,
            },
            content: if content_allowed {
                MediaCapability::SendReceive
            } else {
                MediaCapability::None
            },
        }
    }
}

/// `NotificationsConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notifications {
    pub lambda_function_arn: Option<String>,
    pub sns_topic_arn: Option<String>,
    pub sqs_queue_arn: Option<String>,
}

/// A resource tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// The parameters a meeting was created with. Immutable: it is what ClientRequestToken
/// idempotency compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingSpec {
    pub external_meeting_id: String,
    pub meeting_host_id: Option<String>,
    pub media_region: String,
    pub notifications: Option<Notifications>,
    pub features: Option<MeetingFeatures>,
    pub primary_meeting_id: Option<MeetingId>,
    pub tenant_ids: Vec<String>,
    pub tags: Vec<Tag>,
    pub network_type: Option<NetworkType>,
}

impl MeetingSpec {
    /// The features, or the all-defaults value.
    pub fn features(&self) -> MeetingFeatures {
        self.features.clone().unwrap_or_default()
    }
}

/// Which Transcribe engine a transcription configuration names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TranscriptionEngine {
    Transcribe,
    TranscribeMedical,
}

/// A running transcription (producing transcripts is a later feature; the state is recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transcription {
    pub engine: TranscriptionEngine,
    /// The region Transcribe would run in: the configured one, else the meeting's MediaRegion.
    pub region: String,
    /// The validated `TranscriptionConfiguration` as canonical JSON (events carry it as a string).
    pub configuration_json: String,
    pub started_at: EpochMillis,
}

/// A live meeting as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meeting {
    pub id: MeetingId,
    pub spec: MeetingSpec,
    /// Region of the control endpoint that created it (the SigV4 scope region); used in the ARN.
    pub control_region: String,
    pub account_id: String,
    pub client_request_token: Option<String>,
    pub created_at: EpochMillis,
    /// Since when no attendee has been connected; `None` while someone is connected.
    pub idle_since: Option<EpochMillis>,
    /// Current tags (TagResource/UntagResource change these; `spec.tags` keeps the original).
    pub tags: Vec<Tag>,
    pub transcription: Option<Transcription>,
    /// The `Attendees` of the CreateMeetingWithAttendees request that created the meeting
    /// (`None` for CreateMeeting). ClientRequestToken idempotency compares them, so a token
    /// repeated with other attendees, or by the other operation, is a conflict. Records
    /// written before this field existed lack it; a CreateMeetingWithAttendees repeated across
    /// that upgrade then answers Conflict, which is strict but never hands out wrong attendees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_attendees: Option<Vec<RequestedAttendee>>,
}

/// One item of the `Attendees` list of a CreateMeetingWithAttendees request, as
/// ClientRequestToken idempotency compares it. An item that failed validation is kept as its
/// ExternalUserId and the reason: a repeat of the same request fails it the same way, so two
/// items that fail alike are alike to the caller too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestedAttendee {
    Valid {
        external_user_id: String,
        capabilities: Option<Capabilities>,
    },
    Invalid {
        external_user_id: Option<String>,
        reason: String,
    },
}

impl Meeting {
    /// `arn:<partition>:chime:<region>:<account>:meeting/<id>`.
    pub fn arn(&self) -> String {
        meeting_arn(&self.control_region, &self.account_id, self.id)
    }

    /// True for a replica meeting (created with `PrimaryMeetingId`).
    pub fn is_replica(&self) -> bool {
        self.spec.primary_meeting_id.is_some()
    }
}

/// The ARN of a meeting.
pub fn meeting_arn(region: &str, account: &str, id: MeetingId) -> String {
    let partition = if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    };
    format!("arn:{partition}:chime:{region}:{account}:meeting/{id}")
}

/// An attendee as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attendee {
    pub meeting_id: MeetingId,
    pub id: AttendeeId,
    pub external_user_id: String,
    pub join_token: String,
    pub capabilities: Capabilities,
    /// Position in creation order within the meeting.
    pub seq: u64,
}

/// The documented media regions (the model does not enumerate them).
pub const MEDIA_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-south-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ca-central-1",
    "eu-central-1",
    "eu-north-1",
    "eu-south-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "us-gov-east-1",
    "us-gov-west-1",
];
