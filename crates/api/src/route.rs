//! Routing: method + path + the `operation` query literal → one of the 16 operations.

use std::borrow::Cow;

use carillon_control::{AttendeeId, MeetingId, is_guid};
use percent_encoding::percent_decode_str;

use crate::error::{ApiError, Exception};

/// The 16 operations of `chime-sdk-meetings` (API 2021-07-15), with their URI labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    CreateMeeting,
    CreateMeetingWithAttendees,
    GetMeeting(MeetingId),
    DeleteMeeting(MeetingId),
    CreateAttendee(MeetingId),
    BatchCreateAttendee(MeetingId),
    GetAttendee(MeetingId, AttendeeId),
    ListAttendees(MeetingId),
    DeleteAttendee(MeetingId, AttendeeId),
    BatchUpdateAttendeeCapabilitiesExcept(MeetingId),
    UpdateAttendeeCapabilities(MeetingId, AttendeeId),
    StartMeetingTranscription(MeetingId),
    StopMeetingTranscription(MeetingId),
    TagResource,
    UntagResource,
    ListTagsForResource,
}

impl Route {
    /// The operation name, as in the model.
    pub fn operation(&self) -> Operation {
        match self {
            Route::CreateMeeting => Operation::CreateMeeting,
            Route::CreateMeetingWithAttendees => Operation::CreateMeetingWithAttendees,
            Route::GetMeeting(_) => Operation::GetMeeting,
            Route::DeleteMeeting(_) => Operation::DeleteMeeting,
            Route::CreateAttendee(_) => Operation::CreateAttendee,
            Route::BatchCreateAttendee(_) => Operation::BatchCreateAttendee,
            Route::GetAttendee(..) => Operation::GetAttendee,
            Route::ListAttendees(_) => Operation::ListAttendees,
            Route::DeleteAttendee(..) => Operation::DeleteAttendee,
            Route::BatchUpdateAttendeeCapabilitiesExcept(_) => {
                Operation::BatchUpdateAttendeeCapabilitiesExcept
            }
            Route::UpdateAttendeeCapabilities(..) => Operation::UpdateAttendeeCapabilities,
            Route::StartMeetingTranscription(_) => Operation::StartMeetingTranscription,
            Route::StopMeetingTranscription(_) => Operation::StopMeetingTranscription,
            Route::TagResource => Operation::TagResource,
            Route::UntagResource => Operation::UntagResource,
            Route::ListTagsForResource => Operation::ListTagsForResource,
        }
    }
}

/// Operation names without their labels (rate limiting and logs key on these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    CreateMeeting,
    CreateMeetingWithAttendees,
    GetMeeting,
    DeleteMeeting,
    CreateAttendee,
    BatchCreateAttendee,
    GetAttendee,
    ListAttendees,
    DeleteAttendee,
    BatchUpdateAttendeeCapabilitiesExcept,
    UpdateAttendeeCapabilities,
    StartMeetingTranscription,
    StopMeetingTranscription,
    TagResource,
    UntagResource,
    ListTagsForResource,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 16] = [
        Operation::CreateMeeting,
        Operation::CreateMeetingWithAttendees,
        Operation::GetMeeting,
        Operation::DeleteMeeting,
        Operation::CreateAttendee,
        Operation::BatchCreateAttendee,
        Operation::GetAttendee,
        Operation::ListAttendees,
        Operation::DeleteAttendee,
        Operation::BatchUpdateAttendeeCapabilitiesExcept,
        Operation::UpdateAttendeeCapabilities,
        Operation::StartMeetingTranscription,
        Operation::StopMeetingTranscription,
        Operation::TagResource,
        Operation::UntagResource,
        Operation::ListTagsForResource,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Operation::CreateMeeting => "CreateMeeting",
            Operation::CreateMeetingWithAttendees => "CreateMeetingWithAttendees",
            Operation::GetMeeting => "GetMeeting",
            Operation::DeleteMeeting => "DeleteMeeting",
            Operation::CreateAttendee => "CreateAttendee",
            Operation::BatchCreateAttendee => "BatchCreateAttendee",
            Operation::GetAttendee => "GetAttendee",
            Operation::ListAttendees => "ListAttendees",
            Operation::DeleteAttendee => "DeleteAttendee",
            Operation::BatchUpdateAttendeeCapabilitiesExcept => {
                "BatchUpdateAttendeeCapabilitiesExcept"
            }
            Operation::UpdateAttendeeCapabilities => "UpdateAttendeeCapabilities",
            Operation::StartMeetingTranscription => "StartMeetingTranscription",
            Operation::StopMeetingTranscription => "StopMeetingTranscription",
            Operation::TagResource => "TagResource",
            Operation::UntagResource => "UntagResource",
            Operation::ListTagsForResource => "ListTagsForResource",
        }
    }
}

/// Decoded query parameters, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses a raw query string (`a=b&c=d`, form-urlencoded).
    pub fn parse(raw: &str) -> Self {
        Query(
            form_urlencoded::parse(raw.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Finds the operation for a request. Unknown query parameters are ignored, as AWS does.
pub fn route(method: &str, path: &str, query: &Query) -> Result<Route, ApiError> {
    let segments = split_path(path)?;
    let segs: Vec<&str> = segments.iter().map(|s| s.as_ref()).collect();
    let operation = query.get("operation");
    let route = match (method, segs.as_slice(), operation) {
        ("POST", ["meetings"], Some("create-attendees")) => Route::CreateMeetingWithAttendees,
        ("POST", ["meetings"], None) => Route::CreateMeeting,
        ("GET", ["meetings", m], _) => Route::GetMeeting(meeting_label(m)?),
        ("DELETE", ["meetings", m], _) => Route::DeleteMeeting(meeting_label(m)?),
        ("POST", ["meetings", m, "attendees"], Some("batch-create")) => {
            Route::BatchCreateAttendee(meeting_label(m)?)
        }
        ("POST", ["meetings", m, "attendees"], None) => Route::CreateAttendee(meeting_label(m)?),
        ("GET", ["meetings", m, "attendees"], _) => Route::ListAttendees(meeting_label(m)?),
        // The literal segment wins over the {AttendeeId} label.
        ("PUT", ["meetings", m, "attendees", "capabilities"], Some("batch-update-except")) => {
            Route::BatchUpdateAttendeeCapabilitiesExcept(meeting_label(m)?)
        }
        ("GET", ["meetings", m, "attendees", a], _) => {
            Route::GetAttendee(meeting_label(m)?, attendee_label(a)?)
        }
        ("DELETE", ["meetings", m, "attendees", a], _) => {
            Route::DeleteAttendee(meeting_label(m)?, attendee_label(a)?)
        }
        ("PUT", ["meetings", m, "attendees", a, "capabilities"], _) => {
            Route::UpdateAttendeeCapabilities(meeting_label(m)?, attendee_label(a)?)
        }
        ("POST", ["meetings", m, "transcription"], Some("start")) => {
            Route::StartMeetingTranscription(meeting_label(m)?)
        }
        ("POST", ["meetings", m, "transcription"], Some("stop")) => {
            Route::StopMeetingTranscription(meeting_label(m)?)
        }
        ("POST", ["tags"], Some("tag-resource")) => Route::TagResource,
        ("POST", ["tags"], Some("untag-resource")) => Route::UntagResource,
        ("GET", ["tags"], _) => Route::ListTagsForResource,
        _ => {
            return Err(ApiError::new(
                Exception::UnknownOperation,
                format!(
                    "No chime-sdk-meetings operation matches {method} {path}{}",
                    operation
                        .map(|o| format!(" with operation={o}"))
                        .unwrap_or_default()
                ),
            ));
        }
    };
    Ok(route)
}

fn split_path(path: &str) -> Result<Vec<Cow<'_, str>>, ApiError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(ApiError::bad_request(
            "The request path must start with '/'",
        ));
    };
    rest.split('/')
        .map(|segment| {
            percent_decode_str(segment)
                .decode_utf8()
                .map_err(|_| ApiError::bad_request("The request path is not valid UTF-8"))
        })
        .collect()
}

fn meeting_label(s: &str) -> Result<MeetingId, ApiError> {
    label(s, "MeetingId")
}

fn attendee_label(s: &str) -> Result<AttendeeId, ApiError> {
    label(s, "AttendeeId")
}

fn label<T: std::str::FromStr>(s: &str, name: &str) -> Result<T, ApiError> {
    if !is_guid(s) {
        return Err(ApiError::bad_request(format!(
            "1 validation error detected: Value at '{name}' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-fA-F0-9]{{8}}(?:-[a-fA-F0-9]{{4}}){{3}}-[a-fA-F0-9]{{12}}"
        )));
    }
    s.parse()
        .map_err(|_| ApiError::bad_request(format!("Invalid {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "4101582d-72d2-451b-8ac0-f0f127992713";
    const A: &str = "61d83b5d-598d-319f-f4b3-b2062ed873cc";

    fn r(method: &str, path: &str, query: &str) -> Result<Route, ApiError> {
        route(method, path, &Query::parse(query))
    }

    #[test]
    fn every_route() {
        let m: MeetingId = M.parse().unwrap();
        let a: AttendeeId = A.parse().unwrap();
        let cases = [
            ("POST", "/meetings".to_string(), "", Route::CreateMeeting),
            (
                "POST",
                "/meetings".into(),
                "operation=create-attendees",
                Route::CreateMeetingWithAttendees,
            ),
            ("GET", format!("/meetings/{M}"), "", Route::GetMeeting(m)),
            (
                "DELETE",
                format!("/meetings/{M}"),
                "",
                Route::DeleteMeeting(m),
            ),
            (
                "POST",
                format!("/meetings/{M}/attendees"),
                "",
                Route::CreateAttendee(m),
            ),
            (
                "POST",
                format!("/meetings/{M}/attendees"),
                "operation=batch-create",
                Route::BatchCreateAttendee(m),
            ),
            (
                "GET",
                format!("/meetings/{M}/attendees/{A}"),
                "",
                Route::GetAttendee(m, a),
            ),
            (
                "GET",
                format!("/meetings/{M}/attendees"),
                "max-results=5&next-token=x",
                Route::ListAttendees(m),
            ),
            (
                "DELETE",
                format!("/meetings/{M}/attendees/{A}"),
                "",
                Route::DeleteAttendee(m, a),
            ),
            (
                "PUT",
                format!("/meetings/{M}/attendees/capabilities"),
                "operation=batch-update-except",
                Route::BatchUpdateAttendeeCapabilitiesExcept(m),
            ),
            (
                "PUT",
                format!("/meetings/{M}/attendees/{A}/capabilities"),
                "",
                Route::UpdateAttendeeCapabilities(m, a),
            ),
            (
                "POST",
                format!("/meetings/{M}/transcription"),
                "operation=start",
                Route::StartMeetingTranscription(m),
            ),
            (
                "POST",
                format!("/meetings/{M}/transcription"),
                "operation=stop",
                Route::StopMeetingTranscription(m),
            ),
            (
                "POST",
                "/tags".into(),
                "operation=tag-resource",
                Route::TagResource,
            ),
            (
                "POST",
                "/tags".into(),
                "operation=untag-resource",
                Route::UntagResource,
            ),
            (
                "GET",
                "/tags".into(),
                "arn=arn%3Aaws%3Achime%3Aus-east-1%3A1%3Ameeting%2Fx",
                Route::ListTagsForResource,
            ),
        ];
        for (method, path, query, expected) in cases {
            assert_eq!(
                r(method, &path, query).unwrap(),
                expected,
                "{method} {path}?{query}"
            );
        }
    }

    #[test]
    fn ambiguities_and_rejections() {
        assert_eq!(
            r("POST", "/tags", "").unwrap_err().exception,
            Exception::UnknownOperation
        );
        assert_eq!(
            r("POST", "/meetings", "operation=bogus")
                .unwrap_err()
                .exception,
            Exception::UnknownOperation
        );
        assert_eq!(
            r("PATCH", "/meetings", "").unwrap_err().exception,
            Exception::UnknownOperation
        );
        assert_eq!(
            r("GET", "/meetings/not-a-guid", "").unwrap_err().exception,
            Exception::BadRequest
        );
        assert_eq!(
            r("GET", "", "").unwrap_err().exception,
            Exception::BadRequest
        );
        // Unknown extra query parameters are ignored.
        assert_eq!(r("POST", "/meetings", "x=1").unwrap(), Route::CreateMeeting);
        // The capabilities literal without the batch operation is not an attendee id.
        assert!(r("PUT", &format!("/meetings/{M}/attendees/capabilities"), "").is_err());
    }
}
