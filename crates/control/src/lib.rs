//! Sans-IO domain core of Carillon's control plane.
//!
//! This crate knows what meetings and attendees are and which rules govern them (quotas,
//! idempotency, capabilities versus meeting features, replica meetings, lifecycle timers). It
//! knows nothing about HTTP, JSON, SQL or sockets:
//!
//! * time comes in as an argument (`now`, epoch milliseconds), so tests use a simulated clock;
//! * randomness comes from an injected [`rand::RngCore`], so tests are deterministic;
//! * results go out as return values plus queued [`Change`]s (for the store) and [`Notice`]s
//!   (for the live meeting plane), which the caller drains after every call.
//!
//! The wire format (routes, JSON, validation of shapes) lives in `carillon-api`; persistence in
//! `carillon-store`.

pub mod error;
pub mod event;
pub mod ids;
pub mod model;
pub mod plane;

pub use error::ControlError;
pub use event::{
    Event, EventAttendee, EventId, EventKind, EventMeeting, EventTarget, EventTranscription,
};
pub use ids::{AttendeeId, InvalidGuid, MeetingId, is_guid};
pub use model::*;
pub use plane::{
    AttendeeItem, AttendeePage, AttendeeRequest, BatchOutcome, Caller, Change, ControlPlane,
    CreateMeeting, EndReason, Limits, Notice, Snapshot, attendee_id_of_token, check_capabilities,
};
