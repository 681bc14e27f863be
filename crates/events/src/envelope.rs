//! The EventBridge envelope of a `Chime Meeting State Change`, built from the domain record.
//!
//! The same JSON goes to every target: the SQS message body, the SNS message, the Lambda
//! payload, the webhook body; EventBridge gets the `detail` as the entry's `Detail`.

use std::time::{Duration, UNIX_EPOCH};

use carillon_control::{Event, EventAttendee};
use serde::Serialize;

/// `detail-type` of every meeting event.
pub const DETAIL_TYPE: &str = "Chime Meeting State Change";
/// `source` of every meeting event.
pub const SOURCE: &str = "aws.chime";

/// The envelope, in the field order EventBridge uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Envelope<'a> {
    pub version: &'static str,
    pub id: String,
    #[serde(rename = "detail-type")]
    pub detail_type: &'static str,
    pub source: &'static str,
    pub account: &'a str,
    /// ISO-8601 UTC with seconds: `2022-03-21T12:00:00Z`.
    pub time: String,
    pub region: &'a str,
    pub resources: [&'a str; 0],
    pub detail: Detail<'a>,
}

/// `detail`. Absent members are omitted, never `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Detail<'a> {
    pub version: &'static str,
    pub event_type: &'static str,
    /// Epoch milliseconds, a JSON number.
    pub timestamp: u64,
    pub meeting_id: String,
    pub external_meeting_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attendee_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_type: Option<&'static str>,
    pub media_region: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcription_region: Option<&'a str>,
    /// The transcription configuration as a JSON *string*.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcription_configuration: Option<&'a str>,
}

impl<'a> Envelope<'a> {
    /// The envelope of `event`.
    pub fn of(event: &'a Event) -> Envelope<'a> {
        Envelope {
            version: "0",
            id: event.id.to_string(),
            detail_type: DETAIL_TYPE,
            source: SOURCE,
            account: &event.meeting.account,
            time: iso8601_seconds(event.time),
            region: &event.meeting.control_region,
            resources: [],
            detail: Detail {
                version: "0",
                event_type: event.kind.event_type(),
                timestamp: event.time,
                meeting_id: event.meeting.meeting_id.to_string(),
                external_meeting_id: &event.meeting.external_meeting_id,
                attendee_id: event.attendee.as_ref().map(EventAttendee::attendee_id),
                external_user_id: event.attendee.as_ref().map(|a| a.external_user_id.as_str()),
                network_type: event.kind.has_network_type().then_some("Voip"),
                media_region: &event.meeting.media_region,
                transcription_region: event.transcription.as_ref().map(|t| t.region.as_str()),
                transcription_configuration: event
                    .transcription
                    .as_ref()
                    .map(|t| t.configuration_json.as_str()),
            },
        }
    }

    /// The JSON text sent to SQS, SNS, Lambda and webhooks.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an envelope always serializes")
    }

    /// The JSON of `detail` alone (EventBridge's `Detail`).
    pub fn detail_json(&self) -> String {
        serde_json::to_string(&self.detail).expect("a detail always serializes")
    }
}

/// The JSON body of `event`.
pub fn body_of(event: &Event) -> String {
    Envelope::of(event).to_json()
}

/// `2022-03-21T12:00:00Z` for epoch milliseconds (sub-second part dropped).
pub fn iso8601_seconds(epoch_ms: u64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(epoch_ms / 1000);
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use carillon_control::{EventKind, EventMeeting, EventTarget, EventTranscription, MeetingId};
    use std::sync::Arc;

    fn event(kind: EventKind) -> Event {
        Event {
            id: "5ee6265a-0a40-404e-98fd-a3b4bdd78483".parse().unwrap(),
            kind,
            time: 1_647_864_000_123,
            meeting: Arc::new(EventMeeting {
                meeting_id: "1e7f9f2c-5a52-4a8e-9a52-4f3a0c2d2713"
                    .parse::<MeetingId>()
                    .unwrap(),
                external_meeting_id: "standup".into(),
                media_region: "eu-west-2".into(),
                control_region: "us-east-1".into(),
                account: "111122223333".into(),
                targets: vec![EventTarget::EventBridge],
            }),
            attendee: None,
            transcription: None,
        }
    }

    fn alice(content: bool) -> Option<EventAttendee> {
        Some(EventAttendee {
            id: "61d83b5d-598d-319f-f4b3-b2062ed873cc".parse().unwrap(),
            content,
            external_user_id: if content { "alice#content" } else { "alice" }.into(),
        })
    }

    #[test]
    fn meeting_started_envelope_is_exact() {
        let e = event(EventKind::MeetingStarted);
        assert_eq!(
            body_of(&e),
            concat!(
                r#"{"version":"0","id":"5ee6265a-0a40-404e-98fd-a3b4bdd78483","#,
                r#""detail-type":"Chime Meeting State Change","source":"aws.chime","#,
                r#""account":"111122223333","time":"2022-03-21T12:00:00Z","region":"us-east-1","#,
                r#""resources":[],"detail":{"version":"0","eventType":"chime:MeetingStarted","#,
                r#""timestamp":1647864000123,"meetingId":"1e7f9f2c-5a52-4a8e-9a52-4f3a0c2d2713","#,
                r#""externalMeetingId":"standup","mediaRegion":"eu-west-2"}}"#
            )
        );
    }

    #[test]
    fn attendee_joined_has_network_type() {
        let mut e = event(EventKind::AttendeeJoined);
        e.attendee = alice(false);
        let v: serde_json::Value = serde_json::from_str(&body_of(&e)).unwrap();
        let d = &v["detail"];
        assert_eq!(d["eventType"], "chime:AttendeeJoined");
        assert_eq!(d["attendeeId"], "61d83b5d-598d-319f-f4b3-b2062ed873cc");
        assert_eq!(d["externalUserId"], "alice");
        assert_eq!(d["networkType"], "Voip");
        assert!(d["timestamp"].is_u64());
        // Video events carry no networkType.
        let mut e = event(EventKind::AttendeeVideoStarted);
        e.attendee = alice(false);
        let v: serde_json::Value = serde_json::from_str(&body_of(&e)).unwrap();
        assert!(v["detail"].get("networkType").is_none());
    }

    #[test]
    fn content_share_events_use_the_content_attendee() {
        let mut e = event(EventKind::AttendeeContentJoined);
        e.attendee = alice(true);
        let v: serde_json::Value = serde_json::from_str(&body_of(&e)).unwrap();
        let d = &v["detail"];
        assert_eq!(
            d["attendeeId"],
            "61d83b5d-598d-319f-f4b3-b2062ed873cc#content"
        );
        assert_eq!(d["externalUserId"], "alice#content");
        assert_eq!(d["networkType"], "Voip");
        let mut e = event(EventKind::AttendeeContentVideoStarted);
        e.attendee = alice(true);
        let v: serde_json::Value = serde_json::from_str(&body_of(&e)).unwrap();
        assert!(v["detail"].get("networkType").is_none());
    }

    #[test]
    fn transcription_configuration_is_a_json_string() {
        let mut e = event(EventKind::TranscriptionStarted);
        e.transcription = Some(EventTranscription {
            region: "eu-west-2".into(),
            configuration_json: r#"{"EngineTranscribeSettings":{"LanguageCode":"en-US"}}"#.into(),
        });
        let v: serde_json::Value = serde_json::from_str(&body_of(&e)).unwrap();
        assert_eq!(v["detail"]["transcriptionRegion"], "eu-west-2");
        let config: serde_json::Value =
            serde_json::from_str(v["detail"]["transcriptionConfiguration"].as_str().unwrap())
                .unwrap();
        assert_eq!(config["EngineTranscribeSettings"]["LanguageCode"], "en-US");
        let detail: serde_json::Value =
            serde_json::from_str(&Envelope::of(&e).detail_json()).unwrap();
        assert_eq!(detail, v["detail"]);
    }

    #[test]
    fn time_is_utc_seconds() {
        assert_eq!(iso8601_seconds(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601_seconds(1_709_251_199_999), "2024-02-29T23:59:59Z");
    }
}
