//! JSON shapes of the API, written from the model's member names (PascalCase, no renames).
//!
//! Inputs take every member as optional and untyped enums as strings, so that validation can
//! say precisely what is missing or wrong. Outputs omit absent members instead of sending
//! `null` (amazon-chime-sdk-js crashes on `"Video": null`).

use serde::{Deserialize, Serialize};

// ----- inputs -----

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateMeetingInput {
    pub client_request_token: Option<String>,
    pub media_region: Option<String>,
    pub meeting_host_id: Option<String>,
    pub external_meeting_id: Option<String>,
    pub notifications_configuration: Option<NotificationsConfigurationInput>,
    pub meeting_features: Option<MeetingFeaturesInput>,
    pub primary_meeting_id: Option<String>,
    pub tenant_ids: Option<Vec<String>>,
    pub tags: Option<Vec<TagInput>>,
    pub media_placement_network_type: Option<String>,
    /// CreateMeetingWithAttendees only.
    pub attendees: Option<Vec<CreateAttendeeInput>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NotificationsConfigurationInput {
    pub lambda_function_arn: Option<String>,
    pub sns_topic_arn: Option<String>,
    pub sqs_queue_arn: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MeetingFeaturesInput {
    pub audio: Option<AudioFeaturesInput>,
    pub video: Option<ResolutionInput>,
    pub content: Option<ResolutionInput>,
    pub attendee: Option<AttendeeFeaturesInput>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AudioFeaturesInput {
    pub echo_reduction: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResolutionInput {
    pub max_resolution: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttendeeFeaturesInput {
    pub max_count: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagInput {
    pub key: Option<String>,
    pub value: Option<String>,
}

/// CreateAttendee body, and one item of the batch lists.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateAttendeeInput {
    pub external_user_id: Option<String>,
    pub capabilities: Option<CapabilitiesInput>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CapabilitiesInput {
    pub audio: Option<String>,
    pub video: Option<String>,
    pub content: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchCreateAttendeeInput {
    pub attendees: Option<Vec<CreateAttendeeInput>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateAttendeeCapabilitiesInput {
    pub capabilities: Option<CapabilitiesInput>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchUpdateAttendeeCapabilitiesExceptInput {
    pub excluded_attendee_ids: Option<Vec<AttendeeIdItemInput>>,
    pub capabilities: Option<CapabilitiesInput>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttendeeIdItemInput {
    pub attendee_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartMeetingTranscriptionInput {
    pub transcription_configuration: Option<TranscriptionConfigurationInput>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TranscriptionConfigurationInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_transcribe_settings: Option<EngineTranscribeSettingsInput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_transcribe_medical_settings: Option<EngineTranscribeMedicalSettingsInput>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EngineTranscribeSettingsInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocabulary_filter_method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocabulary_filter_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocabulary_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_partial_results_stabilization: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_results_stability: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_identification_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_redaction_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pii_entity_types: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language_model_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identify_language: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language_options: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocabulary_names: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocabulary_filter_names: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EngineTranscribeMedicalSettingsInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub specialty: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocabulary_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_identification_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagResourceInput {
    #[serde(rename = "ResourceARN")]
    pub resource_arn: Option<String>,
    pub tags: Option<Vec<TagInput>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UntagResourceInput {
    #[serde(rename = "ResourceARN")]
    pub resource_arn: Option<String>,
    pub tag_keys: Option<Vec<String>>,
}

// ----- outputs -----
//
// Outputs borrow from the domain records and write ids and URLs straight into the JSON
// (`Text`), so rendering a response allocates little beyond the output buffer.

/// Serializes a `Display` value as a JSON string without building a `String` first.
#[derive(Debug, Clone, Copy)]
pub struct Text<T>(pub T);

impl<T: std::fmt::Display> Serialize for Text<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MeetingOutput<'a, P: Serialize> {
    pub meeting_id: Text<carillon_control::MeetingId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meeting_host_id: Option<&'a str>,
    pub external_meeting_id: &'a str,
    pub media_region: &'a str,
    pub media_placement: P,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meeting_features: Option<MeetingFeaturesOutput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_meeting_id: Option<Text<carillon_control::MeetingId>>,
    pub tenant_ids: &'a [String],
    pub meeting_arn: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MeetingFeaturesOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioFeaturesOutput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<ResolutionOutput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<ResolutionOutput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attendee: Option<AttendeeFeaturesOutput>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AudioFeaturesOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub echo_reduction: Option<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResolutionOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_resolution: Option<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttendeeFeaturesOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u32>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttendeeOutput<'a> {
    pub external_user_id: &'a str,
    pub attendee_id: Text<carillon_control::AttendeeId>,
    pub join_token: &'a str,
    pub capabilities: CapabilitiesOutput,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CapabilitiesOutput {
    pub audio: &'static str,
    pub video: &'static str,
    pub content: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateAttendeeErrorOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_user_id: Option<String>,
    pub error_code: String,
    pub error_message: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagOutput<'a> {
    pub key: &'a str,
    pub value: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MeetingResponse<M: Serialize> {
    pub meeting: M,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateMeetingWithAttendeesResponse<'a, M: Serialize> {
    pub meeting: M,
    pub attendees: Vec<AttendeeOutput<'a>>,
    pub errors: Vec<CreateAttendeeErrorOutput>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttendeeResponse<'a> {
    pub attendee: AttendeeOutput<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchCreateAttendeeResponse<'a> {
    pub attendees: Vec<AttendeeOutput<'a>>,
    pub errors: Vec<CreateAttendeeErrorOutput>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAttendeesResponse<'a> {
    pub attendees: Vec<AttendeeOutput<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<&'a str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsForResourceResponse<'a> {
    pub tags: Vec<TagOutput<'a>>,
}
