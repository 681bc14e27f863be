//! Running a [`Command`] against the control plane, and rendering the reply as JSON.

use carillon_control::{
    Attendee, Caller, ControlError, ControlPlane, EpochMillis, Meeting, MeetingFeatures, MeetingId,
    Tag, Transcription,
};

use crate::dto::*;
use crate::error::{ApiError, Exception, exception_of};
use crate::parse::{Command, encode_next_token};
use crate::transcription::resolve_region;

/// One failed batch item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    pub external_user_id: Option<String>,
    pub error: ControlError,
}

/// What an operation answers, before rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Meeting(Meeting),
    MeetingWithAttendees {
        meeting: Meeting,
        attendees: Vec<Attendee>,
        errors: Vec<ItemError>,
    },
    Attendee(Attendee),
    Attendees {
        attendees: Vec<Attendee>,
        errors: Vec<ItemError>,
    },
    AttendeePage {
        attendees: Vec<Attendee>,
        next_token: Option<String>,
    },
    Tags(Vec<Tag>),
    /// StartMeetingTranscription: 200 with no output members. The state recorded is kept for
    /// the server's log.
    TranscriptionStarted {
        meeting: MeetingId,
        transcription: Transcription,
    },
    /// StopMeetingTranscription: 200 with no output members; `stopped` is what was running.
    TranscriptionStopped {
        meeting: MeetingId,
        stopped: Option<Transcription>,
    },
    /// 200 with no output members.
    Ok,
    /// 204 with an empty body.
    NoContent,
}

/// Runs a command. Call this under the control-plane lock and drain the plane's changes and
/// notices afterwards, whatever the result (a read can end an expired meeting).
pub fn execute(
    plane: &mut ControlPlane,
    command: Command,
    caller: &Caller,
    now: EpochMillis,
) -> Result<Reply, ControlError> {
    Ok(match command {
        Command::CreateMeeting(request) => {
            Reply::Meeting(plane.create_meeting(request, caller, now)?)
        }
        Command::CreateMeetingWithAttendees(request, items) => {
            let (meeting, outcome) =
                plane.create_meeting_with_attendees(request, items, caller, now)?;
            Reply::MeetingWithAttendees {
                meeting,
                attendees: outcome.attendees,
                errors: item_errors(outcome.errors),
            }
        }
        Command::GetMeeting(m) => Reply::Meeting(plane.get_meeting(m, now)?),
        Command::DeleteMeeting(m) => {
            plane.delete_meeting(m, now)?;
            Reply::NoContent
        }
        Command::CreateAttendee(m, request) => {
            Reply::Attendee(plane.create_attendee(m, request, now)?)
        }
        Command::BatchCreateAttendee(m, items) => {
            let outcome = plane.batch_create_attendee(m, items, now)?;
            Reply::Attendees {
                attendees: outcome.attendees,
                errors: item_errors(outcome.errors),
            }
        }
        Command::GetAttendee(m, a) => Reply::Attendee(plane.get_attendee(m, a, now)?),
        Command::ListAttendees {
            meeting,
            after,
            max_results,
        } => {
            let page = plane.list_attendees(meeting, after, max_results, now)?;
            Reply::AttendeePage {
                attendees: page.attendees,
                next_token: page.next_after.map(|seq| encode_next_token(meeting, seq)),
            }
        }
        Command::DeleteAttendee(m, a) => {
            plane.delete_attendee(m, a, now)?;
            Reply::NoContent
        }
        Command::BatchUpdateAttendeeCapabilitiesExcept {
            meeting,
            excluded,
            capabilities,
        } => {
            plane.batch_update_capabilities_except(meeting, &excluded, capabilities, now)?;
            Reply::Ok
        }
        Command::UpdateAttendeeCapabilities(m, a, capabilities) => {
            Reply::Attendee(plane.update_attendee_capabilities(m, a, capabilities, now)?)
        }
        Command::StartMeetingTranscription {
            meeting,
            engine,
            region,
            configuration_json,
        } => {
            let media_region = plane.get_meeting(meeting, now)?.spec.media_region;
            let transcription = Transcription {
                engine,
                region: resolve_region(engine, region.as_deref(), &media_region),
                configuration_json,
                started_at: now,
            };
            plane.start_transcription(meeting, transcription.clone(), now)?;
            Reply::TranscriptionStarted {
                meeting,
                transcription,
            }
        }
        Command::StopMeetingTranscription(m) => Reply::TranscriptionStopped {
            meeting: m,
            stopped: plane.stop_transcription(m, now)?,
        },
        Command::TagResource { arn, tags } => {
            plane.tag_resource(&arn, tags, now)?;
            Reply::NoContent
        }
        Command::UntagResource { arn, keys } => {
            plane.untag_resource(&arn, &keys, now)?;
            Reply::NoContent
        }
        Command::ListTagsForResource { arn } => Reply::Tags(plane.list_tags(&arn, now)?),
    })
}

fn item_errors(errors: Vec<(Option<String>, ControlError)>) -> Vec<ItemError> {
    errors
        .into_iter()
        .map(|(external_user_id, error)| ItemError {
            external_user_id,
            error,
        })
        .collect()
}

/// Turns a domain error into the API error, honouring the validation-exception setting for
/// rule violations.
pub fn api_error(error: ControlError, validation: Exception) -> ApiError {
    let invalid = matches!(error, ControlError::Invalid(_));
    let mut api = ApiError::from(error);
    if invalid {
        api.exception = validation;
    }
    api
}

/// The URLs this server hands out in `MediaPlacement`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// `http(s)://host[:port]` without a trailing slash.
    http_base: String,
    /// The same with `ws(s)://`.
    ws_base: String,
    /// `host:port` of the media UDP socket.
    audio_host: String,
}

impl Placement {
    /// `public_url` is `http://…` or `https://…` (a trailing slash is ignored).
    pub fn new(public_url: &str, media_udp_port: u16) -> Self {
        let http_base = public_url.trim_end_matches('/').to_owned();
        let (ws_base, rest) = match http_base.split_once("://") {
            Some(("https", rest)) => (format!("wss://{rest}"), rest),
            Some((_, rest)) => (format!("ws://{rest}"), rest),
            None => (format!("ws://{http_base}"), http_base.as_str()),
        };
        let authority = rest.split('/').next().unwrap_or(rest);
        // Drop the port: `[v6]:port`, `host:port` or a bare host.
        let host = match authority.strip_prefix('[') {
            Some(v6) => format!("[{}]", v6.split(']').next().unwrap_or(v6)),
            None => authority.split(':').next().unwrap_or(authority).to_owned(),
        };
        Placement {
            audio_host: format!("{host}:{media_udp_port}"),
            ws_base,
            http_base,
        }
    }

    /// The `MediaPlacement` of a meeting, written straight into the response JSON.
    pub fn for_meeting(&self, meeting: &Meeting) -> MediaPlacementOutput<'_> {
        MediaPlacementOutput {
            placement: self,
            id: meeting.id,
        }
    }
}

/// `MediaPlacement`: every URL is formatted into the output as it is serialized.
pub struct MediaPlacementOutput<'a> {
    placement: &'a Placement,
    id: carillon_control::MeetingId,
}

impl serde::Serialize for MediaPlacementOutput<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let (p, id) = (self.placement, self.id);
        let (ws, http) = (&p.ws_base, &p.http_base);
        let mut out = serializer.serialize_struct("MediaPlacement", 8)?;
        out.serialize_field("AudioHostUrl", &p.audio_host)?;
        out.serialize_field("AudioFallbackUrl", &Text(format_args!("{ws}/calls/{id}")))?;
        out.serialize_field("SignalingUrl", &Text(format_args!("{ws}/control/{id}")))?;
        out.serialize_field(
            "TurnControlUrl",
            &Text(format_args!("{http}/v2/turn_sessions")),
        )?;
        out.serialize_field("ScreenDataUrl", &Text(format_args!("{ws}/v2/screen/{id}")))?;
        out.serialize_field(
            "ScreenViewingUrl",
            &Text(format_args!(
                "{ws}/ws/connect?passcode=null&viewer_uuid=null&X-BitHub-Call-Id={id}"
            )),
        )?;
        out.serialize_field(
            "ScreenSharingUrl",
            &Text(format_args!("{ws}/v2/screen/{id}")),
        )?;
        out.serialize_field(
            "EventIngestionUrl",
            &Text(format_args!("{http}/v1/client-events")),
        )?;
        out.end()
    }
}

/// Renders a reply: HTTP status and JSON body (empty for 204 and the output-less 200s).
pub fn render(reply: &Reply, placement: &Placement) -> (u16, Vec<u8>) {
    fn json(value: &impl serde::Serialize) -> Vec<u8> {
        serde_json::to_vec(value).expect("response DTOs always serialise")
    }
    match reply {
        Reply::Meeting(m) => (
            200,
            json(&MeetingResponse {
                meeting: meeting_output(m, placement),
            }),
        ),
        Reply::MeetingWithAttendees {
            meeting,
            attendees,
            errors,
        } => (
            200,
            json(&CreateMeetingWithAttendeesResponse {
                meeting: meeting_output(meeting, placement),
                attendees: attendees.iter().map(attendee_output).collect(),
                errors: errors.iter().map(error_output).collect(),
            }),
        ),
        Reply::Attendee(a) => (
            200,
            json(&AttendeeResponse {
                attendee: attendee_output(a),
            }),
        ),
        Reply::Attendees { attendees, errors } => (
            200,
            json(&BatchCreateAttendeeResponse {
                attendees: attendees.iter().map(attendee_output).collect(),
                errors: errors.iter().map(error_output).collect(),
            }),
        ),
        Reply::AttendeePage {
            attendees,
            next_token,
        } => (
            200,
            json(&ListAttendeesResponse {
                attendees: attendees.iter().map(attendee_output).collect(),
                next_token: next_token.as_deref(),
            }),
        ),
        Reply::Tags(tags) => (
            200,
            json(&ListTagsForResourceResponse {
                tags: tags
                    .iter()
                    .map(|t| TagOutput {
                        key: &t.key,
                        value: &t.value,
                    })
                    .collect(),
            }),
        ),
        Reply::Ok | Reply::TranscriptionStarted { .. } | Reply::TranscriptionStopped { .. } => {
            (200, Vec::new())
        }
        Reply::NoContent => (204, Vec::new()),
    }
}

pub fn meeting_output<'a>(
    m: &'a Meeting,
    placement: &'a Placement,
) -> MeetingOutput<'a, MediaPlacementOutput<'a>> {
    MeetingOutput {
        meeting_id: Text(m.id),
        meeting_host_id: m.spec.meeting_host_id.as_deref(),
        external_meeting_id: &m.spec.external_meeting_id,
        media_region: &m.spec.media_region,
        media_placement: placement.for_meeting(m),
        meeting_features: m.spec.features.as_ref().map(features_output),
        primary_meeting_id: m.spec.primary_meeting_id.map(Text),
        tenant_ids: &m.spec.tenant_ids,
        meeting_arn: m.arn(),
    }
}

fn features_output(f: &MeetingFeatures) -> MeetingFeaturesOutput {
    MeetingFeaturesOutput {
        audio: f.audio.as_ref().map(|a| AudioFeaturesOutput {
            echo_reduction: a.echo_reduction.map(|e| e.as_str()),
        }),
        video: f.video.as_ref().map(|v| ResolutionOutput {
            max_resolution: v.max_resolution.map(|r| r.as_str()),
        }),
        content: f.content.as_ref().map(|c| ResolutionOutput {
            max_resolution: c.max_resolution.map(|r| r.as_str()),
        }),
        attendee: f.attendee.as_ref().map(|a| AttendeeFeaturesOutput {
            max_count: a.max_count,
        }),
    }
}

pub fn attendee_output(a: &Attendee) -> AttendeeOutput<'_> {
    AttendeeOutput {
        external_user_id: &a.external_user_id,
        attendee_id: Text(a.id),
        join_token: &a.join_token,
        capabilities: CapabilitiesOutput {
            audio: a.capabilities.audio.as_str(),
            video: a.capabilities.video.as_str(),
            content: a.capabilities.content.as_str(),
        },
    }
}

fn error_output(e: &ItemError) -> CreateAttendeeErrorOutput {
    CreateAttendeeErrorOutput {
        external_user_id: e.external_user_id.clone(),
        error_code: exception_of(&e.error).code().to_owned(),
        error_message: e.error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_urls_follow_the_public_url() {
        let p = Placement::new("http://127.0.0.1:8080/", 40000);
        assert_eq!(p.audio_host, "127.0.0.1:40000");
        assert_eq!(p.ws_base, "ws://127.0.0.1:8080");
        let p = Placement::new("https://meet.example.com", 3478);
        assert_eq!(p.audio_host, "meet.example.com:3478");
        assert_eq!(p.ws_base, "wss://meet.example.com");
        let p = Placement::new("http://[::1]:8080", 5000);
        assert_eq!(p.audio_host, "[::1]:5000");
    }
}
