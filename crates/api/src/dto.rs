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

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MeetingOutput {
    pub meeting_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meeting_host_id: Option<String>,
    pub external_meeting_id: String,
    pub media_region: String,
    pub media_placement: MediaPlacementOutput,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meeting_features: Option<MeetingFeaturesOutput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_meeting_id: Option<String>,
    pub tenant_ids: Vec<String>,
    pub meeting_arn: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MediaPlacementOutput {
    pub audio_host_url: String,
    pub audio_fallback_url: String,
    pub signaling_url: String,
    pub turn_control_url: String,
    pub screen_data_url: String,
    pub screen_viewing_url: String,
    pub screen_sharing_url: String,
    pub event_ingestion_url: String,
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
pub struct AttendeeOutput {
    pub external_user_id: String,
    pub attendee_id: String,
    pub join_token: String,
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
pub struct TagOutput {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MeetingResponse {
    pub meeting: MeetingOutput,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateMeetingWithAttendeesResponse {
    pub meeting: MeetingOutput,
    pub attendees: Vec<AttendeeOutput>,
    pub errors: Vec<CreateAttendeeErrorOutput>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttendeeResponse {
    pub attendee: AttendeeOutput,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchCreateAttendeeResponse {
    pub attendees: Vec<AttendeeOutput>,
    pub errors: Vec<CreateAttendeeErrorOutput>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAttendeesResponse {
    pub attendees: Vec<AttendeeOutput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsForResourceResponse {
    pub tags: Vec<TagOutput>,
}
