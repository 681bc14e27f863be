//! Domain errors. The API layer maps each variant to an AWS exception in one place.

use crate::ids::{AttendeeId, MeetingId};

/// Why a control-plane operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    #[error("Meeting {0} not found")]
    MeetingNotFound(MeetingId),
    #[error("Attendee {attendee} not found in meeting {meeting}")]
    AttendeeNotFound {
        meeting: MeetingId,
        attendee: AttendeeId,
    },
    #[error("Resource {0} not found")]
    ResourceNotFound(String),
    #[error("Primary meeting {0} not found or has ended")]
    PrimaryNotFound(String),
    #[error("Meeting {0} is a replica meeting and cannot be a primary meeting")]
    PrimaryIsReplica(MeetingId),
    #[error("Primary meeting {primary} already has the maximum of {limit} replica meetings")]
    TooManyReplicas { primary: MeetingId, limit: usize },
    #[error("The account already has the maximum of {limit} active meetings")]
    TooManyMeetings { limit: usize },
    #[error("Meeting {meeting} already has the maximum of {limit} attendees")]
    MeetingFull { meeting: MeetingId, limit: usize },
    #[error(
        "ClientRequestToken {token} was already used to create meeting {meeting} with different parameters"
    )]
    IdempotencyMismatch { token: String, meeting: MeetingId },
    #[error("The resource would have {count} tags; the maximum is {limit}")]
    TooManyTags { count: usize, limit: usize },
    /// A request that is well-formed but breaks a domain rule (capabilities versus meeting
    /// features, the high-resolution attendee cap, ...).
    #[error("{0}")]
    Invalid(String),
}
