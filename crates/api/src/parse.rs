//! Request bodies and query strings → validated [`Command`]s. Pure: no state is read here, so
//! parsing runs outside the control-plane lock.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carillon_control::{
    AttendeeFeatures, AttendeeId, AttendeeRequest, AudioFeatures, Capabilities, ContentFeatures,
    ContentResolution, ControlError, CreateMeeting, FeatureStatus, MEDIA_REGIONS, MediaCapability,
    MeetingFeatures, MeetingId, MeetingSpec, NetworkType, Notifications, Tag, TranscriptionEngine,
    VideoFeatures, VideoResolution,
};
use serde::de::DeserializeOwned;

use crate::dto::*;
use crate::error::{ApiError, Exception};
use crate::route::{Query, Route};
use crate::transcription;
use crate::validate::{self, Violations};

/// One batch item: a valid request, or the item's ExternalUserId (when readable) and the reason.
pub use carillon_control::AttendeeItem;

/// A validated operation, ready to run against the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    CreateMeeting(CreateMeeting),
    CreateMeetingWithAttendees(CreateMeeting, Vec<AttendeeItem>),
    GetMeeting(MeetingId),
    DeleteMeeting(MeetingId),
    CreateAttendee(MeetingId, AttendeeRequest),
    BatchCreateAttendee(MeetingId, Vec<AttendeeItem>),
    GetAttendee(MeetingId, AttendeeId),
    ListAttendees {
        meeting: MeetingId,
        after: Option<u64>,
        max_results: usize,
    },
    DeleteAttendee(MeetingId, AttendeeId),
    BatchUpdateAttendeeCapabilitiesExcept {
        meeting: MeetingId,
        excluded: Vec<AttendeeId>,
        capabilities: Capabilities,
    },
    UpdateAttendeeCapabilities(MeetingId, AttendeeId, Capabilities),
    StartMeetingTranscription {
        meeting: MeetingId,
        engine: TranscriptionEngine,
        /// `Region` of the engine settings, if given (`auto` included).
        region: Option<String>,
        configuration_json: String,
    },
    StopMeetingTranscription(MeetingId),
    TagResource {
        arn: String,
        tags: Vec<Tag>,
    },
    UntagResource {
        arn: String,
        keys: Vec<String>,
    },
    ListTagsForResource {
        arn: String,
    },
}

/// Default ListAttendees page size (the model leaves it open; at most 100).
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// Parses and validates one request. `validation` is the exception used for constraint
/// violations (BadRequestException, or ValidationException when configured).
pub fn parse_command(
    route: Route,
    query: &Query,
    body: &[u8],
    validation: Exception,
) -> Result<Command, ApiError> {
    let invalid = |v: Violations| -> Result<(), ApiError> {
        match v.into_message() {
            None => Ok(()),
            Some(message) => Err(ApiError::new(validation, message)),
        }
    };
    match route {
        Route::CreateMeeting => {
            let input: CreateMeetingInput = decode(body)?;
            too_many_tags(input.tags.as_deref(), None)?;
            let mut v = Violations::new();
            let request = create_meeting(&mut v, &input);
            invalid(v)?;
            Ok(Command::CreateMeeting(request.expect("validated")))
        }
        Route::CreateMeetingWithAttendees => {
            let input: CreateMeetingInput = decode(body)?;
            too_many_tags(input.tags.as_deref(), None)?;
            let mut v = Violations::new();
            let request = create_meeting(&mut v, &input);
            let items = v
                .required("Attendees", &input.attendees)
                .filter(|list| v.list_size("Attendees", list, 1, 20))
                .map(|list| attendee_items(list));
            invalid(v)?;
            Ok(Command::CreateMeetingWithAttendees(
                request.expect("validated"),
                items.expect("validated"),
            ))
        }
        Route::GetMeeting(m) => Ok(Command::GetMeeting(m)),
        Route::DeleteMeeting(m) => Ok(Command::DeleteMeeting(m)),
        Route::CreateAttendee(m) => {
            let input: CreateAttendeeInput = decode(body)?;
            let mut v = Violations::new();
            let request = attendee_request(&mut v, "", &input);
            invalid(v)?;
            Ok(Command::CreateAttendee(m, request.expect("validated")))
        }
        Route::BatchCreateAttendee(m) => {
            let input: BatchCreateAttendeeInput = decode(body)?;
            let mut v = Violations::new();
            let items = v
                .required("Attendees", &input.attendees)
                .filter(|list| v.list_size("Attendees", list, 1, 100))
                .map(|list| attendee_items(list));
            invalid(v)?;
            Ok(Command::BatchCreateAttendee(m, items.expect("validated")))
        }
        Route::GetAttendee(m, a) => Ok(Command::GetAttendee(m, a)),
        Route::ListAttendees(m) => {
            let mut v = Violations::new();
            let max_results = match query.get("max-results") {
                None => DEFAULT_PAGE_SIZE,
                Some(raw) => match raw.trim().parse::<i64>() {
                    Ok(n) if v.range("MaxResults", n, 1, 100) => n as usize,
                    Ok(_) => 0,
                    Err(_) => {
                        v.add("MaxResults", "Member must be an integer");
                        0
                    }
                },
            };
            let after = match query.get("next-token") {
                None | Some("") => None,
                Some(token) => match decode_next_token(m, token) {
                    Some(seq) => Some(seq),
                    None => {
                        v.add_rule("The NextToken is not valid for this meeting's ListAttendees");
                        None
                    }
                },
            };
            invalid(v)?;
            Ok(Command::ListAttendees {
                meeting: m,
                after,
                max_results,
            })
        }
        Route::DeleteAttendee(m, a) => Ok(Command::DeleteAttendee(m, a)),
        Route::BatchUpdateAttendeeCapabilitiesExcept(m) => {
            let input: BatchUpdateAttendeeCapabilitiesExceptInput = decode(body)?;
            let mut v = Violations::new();
            let mut excluded = Vec::new();
            if let Some(list) = v.required("ExcludedAttendeeIds", &input.excluded_attendee_ids)
                && v.list_size("ExcludedAttendeeIds", list, 1, 250)
            {
                for (i, item) in list.iter().enumerate() {
                    let field = format!("ExcludedAttendeeIds[{i}].AttendeeId");
                    if let Some(id) = v.required(&field, &item.attendee_id) {
                        match id.parse::<AttendeeId>() {
                            Ok(id) => excluded.push(id),
                            Err(_) => v.add(&field, GUID_CONSTRAINT),
                        }
                    }
                }
            }
            let capabilities =
                capabilities(&mut v, "Capabilities", input.capabilities.as_ref(), true);
            invalid(v)?;
            Ok(Command::BatchUpdateAttendeeCapabilitiesExcept {
                meeting: m,
                excluded,
                capabilities: capabilities.expect("validated"),
            })
        }
        Route::UpdateAttendeeCapabilities(m, a) => {
            let input: UpdateAttendeeCapabilitiesInput = decode(body)?;
            let mut v = Violations::new();
            let capabilities =
                capabilities(&mut v, "Capabilities", input.capabilities.as_ref(), true);
            invalid(v)?;
            Ok(Command::UpdateAttendeeCapabilities(
                m,
                a,
                capabilities.expect("validated"),
            ))
        }
        Route::StartMeetingTranscription(m) => {
            let input: StartMeetingTranscriptionInput = decode(body)?;
            let mut v = Violations::new();
            let parsed = v
                .required(
                    "TranscriptionConfiguration",
                    &input.transcription_configuration,
                )
                .and_then(|config| transcription::validate(&mut v, config));
            invalid(v)?;
            let (engine, region) = parsed.expect("validated");
            let configuration_json = serde_json::to_string(
                input
                    .transcription_configuration
                    .as_ref()
                    .expect("validated"),
            )
            .expect("plain data serialises");
            Ok(Command::StartMeetingTranscription {
                meeting: m,
                engine,
                region,
                configuration_json,
            })
        }
        Route::StopMeetingTranscription(m) => Ok(Command::StopMeetingTranscription(m)),
        Route::TagResource => {
            let input: TagResourceInput = decode(body)?;
            too_many_tags(input.tags.as_deref(), input.resource_arn.as_deref())?;
            let mut v = Violations::new();
            let arn = resource_arn(&mut v, "ResourceARN", input.resource_arn.as_deref());
            let tags = v
                .required("Tags", &input.tags)
                .and_then(|tags| tag_list(&mut v, "Tags", tags));
            invalid(v)?;
            Ok(Command::TagResource {
                arn: arn.expect("validated"),
                tags: tags.expect("validated"),
            })
        }
        Route::UntagResource => {
            let input: UntagResourceInput = decode(body)?;
            let mut v = Violations::new();
            let arn = resource_arn(&mut v, "ResourceARN", input.resource_arn.as_deref());
            if let Some(keys) = v.required("TagKeys", &input.tag_keys)
                && v.list_size("TagKeys", keys, 0, 50)
            {
                for (i, key) in keys.iter().enumerate() {
                    tag_key(&mut v, &format!("TagKeys[{i}]"), key);
                }
            }
            invalid(v)?;
            Ok(Command::UntagResource {
                arn: arn.expect("validated"),
                keys: input.tag_keys.expect("validated"),
            })
        }
        Route::ListTagsForResource => {
            let mut v = Violations::new();
            let arn = resource_arn(&mut v, "ResourceARN", query.get("arn"));
            invalid(v)?;
            Ok(Command::ListTagsForResource {
                arn: arn.expect("validated"),
            })
        }
    }
}

/// Most tags one request (and one meeting) may carry.
pub const MAX_TAGS: usize = 50;

/// More than [`MAX_TAGS`] tags in one request is TooManyTagsException (400), the modeled error
/// for exactly this, rather than a list-size BadRequest; it takes precedence over the other
/// checks of the request because it is the one a client handles specifically. `resource` is
/// the ARN being tagged, reported as `ResourceName`.
fn too_many_tags(tags: Option<&[TagInput]>, resource: Option<&str>) -> Result<(), ApiError> {
    match tags {
        Some(tags) if tags.len() > MAX_TAGS => {
            let mut error = ApiError::new(
                Exception::TooManyTags,
                format!(
                    "The request has {} tags; a resource may have at most {MAX_TAGS}",
                    tags.len()
                ),
            );
            error.resource_name = resource.map(str::to_owned);
            Err(error)
        }
        _ => Ok(()),
    }
}

const GUID_CONSTRAINT: &str = "Member must satisfy regular expression pattern: [a-fA-F0-9]{8}(?:-[a-fA-F0-9]{4}){3}-[a-fA-F0-9]{12}";

/// NextToken of ListAttendees: opaque to clients, bound to its meeting.
pub fn encode_next_token(meeting: MeetingId, after_seq: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{meeting}/{after_seq}"))
}

fn decode_next_token(meeting: MeetingId, token: &str) -> Option<u64> {
    if token.len() > 4096 {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = std::str::from_utf8(&raw).ok()?;
    let (m, seq) = text.split_once('/')?;
    (m.parse::<MeetingId>().ok()? == meeting)
        .then(|| seq.parse().ok())
        .flatten()
}

/// Decodes a JSON body. An empty body is an empty object (required members then report
/// themselves); anything that is not the expected JSON is a BadRequest that says where.
fn decode<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Ok(T::default()),
        Some(b'{') => {}
        // serde would read a struct from a positional array; the API only takes objects.
        Some(_) => {
            return Err(ApiError::bad_request(
                "Invalid request body: expected a JSON object",
            ));
        }
    }
    // The common case: a well-formed body, parsed at full speed. Only a failure pays for the
    // second, path-tracking parse that says where the problem is.
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let what = describe_json_error(&inner);
        if path == "." || path.is_empty() {
            ApiError::bad_request(format!("Invalid request body: {what}"))
        } else {
            ApiError::bad_request(format!("Invalid request body at '{path}': {what}"))
        }
    })?;
    de.end().map_err(|e| {
        ApiError::bad_request(format!("Invalid request body: {}", describe_json_error(&e)))
    })?;
    Ok(value)
}

/// serde's message, with our Rust type names replaced by what the client sent us.
fn describe_json_error(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let mut out = String::with_capacity(message.len());
    let mut rest = message.as_str();
    while let Some(i) = rest.find("struct ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "struct ".len()..];
        let end = after
            .find(|c: char| !c.is_alphanumeric() && c != '_')
            .unwrap_or(after.len());
        out.push_str("a JSON object");
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn create_meeting(v: &mut Violations, input: &CreateMeetingInput) -> Option<CreateMeeting> {
    if let Some(token) = &input.client_request_token
        && v.length("ClientRequestToken", token, 2, 64)
    {
        v.chars(
            "ClientRequestToken",
            token,
            "[-_a-zA-Z0-9]*",
            validate::client_request_token_char,
        );
    }
    let media_region = v.required("MediaRegion", &input.media_region).cloned();
    if let Some(region) = &media_region
        && v.length("MediaRegion", region, 2, 64)
        && !MEDIA_REGIONS.contains(&region.as_str())
    {
        v.add(
            "MediaRegion",
            format!(
                "Member must be one of the media regions: [{}]",
                MEDIA_REGIONS.join(", ")
            ),
        );
    }
    let external_meeting_id = v
        .required("ExternalMeetingId", &input.external_meeting_id)
        .cloned();
    if let Some(id) = &external_meeting_id {
        external_id(v, "ExternalMeetingId", id);
    }
    if let Some(host) = &input.meeting_host_id {
        external_id(v, "MeetingHostId", host);
    }
    let notifications = input.notifications_configuration.as_ref().map(|n| {
        for (field, arn) in [
            (
                "NotificationsConfiguration.LambdaFunctionArn",
                &n.lambda_function_arn,
            ),
            ("NotificationsConfiguration.SnsTopicArn", &n.sns_topic_arn),
            ("NotificationsConfiguration.SqsQueueArn", &n.sqs_queue_arn),
        ] {
            if let Some(arn) = arn {
                target_arn(v, field, arn);
            }
        }
        Notifications {
            lambda_function_arn: n.lambda_function_arn.clone(),
            sns_topic_arn: n.sns_topic_arn.clone(),
            sqs_queue_arn: n.sqs_queue_arn.clone(),
        }
    });
    let features = input
        .meeting_features
        .as_ref()
        .map(|f| meeting_features(v, f));
    let primary_meeting_id = match &input.primary_meeting_id {
        None => Ok(None),
        Some(p) if v.length("PrimaryMeetingId", p, 2, 64) => p.parse::<MeetingId>().map(Some),
        Some(_) => Ok(None),
    };
    let tenant_ids = match &input.tenant_ids {
        None => Vec::new(),
        Some(list) => {
            if v.list_size("TenantIds", list, 1, 5) {
                for (i, t) in list.iter().enumerate() {
                    let field = format!("TenantIds[{i}]");
                    if v.length(&field, t, 2, 256)
                        && (!t.chars().all(validate::tenant_id_char)
                            || validate::has_run_of_four(t))
                    {
                        v.add(
                            &field,
                            r"Member must satisfy regular expression pattern: ^(?!.*?(.)\1{3})[-_!@#$a-zA-Z0-9]*$",
                        );
                    }
                }
            }
            list.clone()
        }
    };
    let tags = match &input.tags {
        None => Some(Vec::new()),
        Some(tags) => tag_list(v, "Tags", tags),
    };
    let network_type = input.media_placement_network_type.as_ref().and_then(|n| {
        v.enum_value(
            "MediaPlacementNetworkType",
            n,
            NetworkType::parse,
            &NetworkType::allowed(),
        )
    });
    if !v.is_empty() {
        return None;
    }
    let primary_meeting_id = match primary_meeting_id {
        Ok(p) => p,
        // A value that cannot name any meeting: report it like an unknown primary.
        Err(_) => {
            v.add_rule(format!(
                "Primary meeting {} not found or has ended",
                input.primary_meeting_id.as_deref().unwrap_or_default()
            ));
            return None;
        }
    };
    Some(CreateMeeting {
        client_request_token: input.client_request_token.clone(),
        spec: MeetingSpec {
            external_meeting_id: external_meeting_id?,
            meeting_host_id: input.meeting_host_id.clone(),
            media_region: media_region?,
            notifications,
            features: features.flatten(),
            primary_meeting_id,
            tenant_ids,
            tags: tags?,
            network_type,
        },
    })
}

/// ExternalUserId / ExternalMeetingId / MeetingHostId rules. The values are sensitive in the
/// model, so messages do not echo them.
fn external_id(v: &mut Violations, field: &str, value: &str) {
    if !v.length(field, value, 2, 64) {
        return;
    }
    if !v.chars(
        field,
        value,
        r##"[-_&@+=,(){}\[\]\/«».:|'"#a-zA-Z0-9À-ÿ\s]*"##,
        validate::external_id_char,
    ) {
        return;
    }
    // `get` keeps the slice on a character boundary (the class allows multi-byte letters).
    if value
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("aws:"))
    {
        v.add(
            field,
            "Member must not start with the reserved prefix 'aws:'",
        );
    }
}

/// `Arn` shape: 1–1024, `^arn[\/\:\-\_\.a-zA-Z0-9]+$`.
fn target_arn(v: &mut Violations, field: &str, arn: &str) {
    if v.length(field, arn, 1, 1024) {
        let ok = arn
            .strip_prefix("arn")
            .is_some_and(|rest| !rest.is_empty() && rest.chars().all(validate::arn_char));
        if !ok {
            v.add(
                field,
                r"Member must satisfy regular expression pattern: ^arn[\/\:\-\_\.a-zA-Z0-9]+$",
            );
        }
    }
}

/// `AmazonResourceName` shape: 1–1011, `^arn:.*`.
fn resource_arn(v: &mut Violations, field: &str, arn: Option<&str>) -> Option<String> {
    let Some(arn) = arn else {
        v.add(field, "Member must not be null");
        return None;
    };
    if v.length(field, arn, 1, 1011) && !arn.starts_with("arn:") {
        v.add(
            field,
            "Member must satisfy regular expression pattern: ^arn:.*",
        );
    }
    Some(arn.to_owned())
}

fn meeting_features(v: &mut Violations, f: &MeetingFeaturesInput) -> Option<MeetingFeatures> {
    let audio = f.audio.as_ref().map(|a| AudioFeatures {
        echo_reduction: a.echo_reduction.as_ref().and_then(|e| {
            v.enum_value(
                "MeetingFeatures.Audio.EchoReduction",
                e,
                FeatureStatus::parse,
                &FeatureStatus::allowed(),
            )
        }),
    });
    let video = f.video.as_ref().map(|r| VideoFeatures {
        max_resolution: r.max_resolution.as_ref().and_then(|e| {
            v.enum_value(
                "MeetingFeatures.Video.MaxResolution",
                e,
                VideoResolution::parse,
                &VideoResolution::allowed(),
            )
        }),
    });
    let content = f.content.as_ref().map(|r| ContentFeatures {
        max_resolution: r.max_resolution.as_ref().and_then(|e| {
            v.enum_value(
                "MeetingFeatures.Content.MaxResolution",
                e,
                ContentResolution::parse,
                &ContentResolution::allowed(),
            )
        }),
    });
    let attendee = f.attendee.as_ref().map(|a| AttendeeFeatures {
        max_count: a.max_count.and_then(|n| {
            v.range("MeetingFeatures.Attendee.MaxCount", n, 1, 250)
                .then_some(n as u32)
        }),
    });
    Some(MeetingFeatures {
        audio,
        video,
        content,
        attendee,
    })
}

fn tag_key(v: &mut Violations, field: &str, key: &str) {
    if v.length(field, key, 1, 128)
        && v.chars(field, key, "^[a-zA-Z+-=._:/]+$", validate::tag_key_char)
        && key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:"))
    {
        v.add(
            field,
            "Member must not start with the reserved prefix 'aws:'",
        );
    }
}

fn tag_list(v: &mut Violations, field: &str, tags: &[TagInput]) -> Option<Vec<Tag>> {
    if !v.list_size(field, tags, 0, MAX_TAGS) {
        return None;
    }
    let mut out = Vec::with_capacity(tags.len());
    for (i, tag) in tags.iter().enumerate() {
        let key_field = format!("{field}[{i}].Key");
        let value_field = format!("{field}[{i}].Value");
        let key = v.required(&key_field, &tag.key);
        let value = v.required(&value_field, &tag.value);
        if let Some(key) = key {
            tag_key(v, &key_field, key);
            if out.iter().any(|t: &Tag| &t.key == key) {
                v.add_rule(format!(
                    "Duplicate tag key in {field}: each Key may appear once"
                ));
            }
        }
        if let Some(value) = value
            && v.length(&value_field, value, 0, 256)
        {
            v.chars(
                &value_field,
                value,
                r"[\s\w+-=\.:/@]*",
                validate::tag_value_char,
            );
        }
        if let (Some(key), Some(value)) = (key, value) {
            out.push(Tag {
                key: key.clone(),
                value: value.clone(),
            });
        }
    }
    Some(out)
}

/// `AttendeeCapabilities`: when present, all three members are required.
fn capabilities(
    v: &mut Violations,
    field: &str,
    input: Option<&CapabilitiesInput>,
    required: bool,
) -> Option<Capabilities> {
    let Some(input) = input else {
        if required {
            v.add(field, "Member must not be null");
        }
        return None;
    };
    let mut one = |name: &str, value: &Option<String>| -> Option<MediaCapability> {
        let member = format!("{field}.{name}");
        let value = v.required(&member, value)?;
        v.enum_value(
            &member,
            value,
            MediaCapability::parse,
            &MediaCapability::allowed(),
        )
    };
    let audio = one("Audio", &input.audio);
    let video = one("Video", &input.video);
    let content = one("Content", &input.content);
    Some(Capabilities {
        audio: audio?,
        video: video?,
        content: content?,
    })
}

fn attendee_request(
    v: &mut Violations,
    prefix: &str,
    input: &CreateAttendeeInput,
) -> Option<AttendeeRequest> {
    let field = format!("{prefix}ExternalUserId");
    let external_user_id = v.required(&field, &input.external_user_id).cloned();
    if let Some(id) = &external_user_id {
        external_id(v, &field, id);
    }
    let caps = capabilities(
        v,
        &format!("{prefix}Capabilities"),
        input.capabilities.as_ref(),
        false,
    );
    if !v.is_empty() {
        return None;
    }
    Some(AttendeeRequest {
        external_user_id: external_user_id?,
        capabilities: caps,
    })
}

fn attendee_items(list: &[CreateAttendeeInput]) -> Vec<AttendeeItem> {
    list.iter()
        .enumerate()
        .map(|(i, item)| {
            let mut v = Violations::new();
            match attendee_request(&mut v, &format!("Attendees[{i}]."), item) {
                Some(request) => Ok(request),
                None => Err((
                    item.external_user_id.clone(),
                    ControlError::Invalid(
                        v.into_message()
                            .unwrap_or_else(|| "Invalid attendee".to_owned()),
                    ),
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(route: Route, body: &str) -> Result<Command, ApiError> {
        parse_command(
            route,
            &Query::default(),
            body.as_bytes(),
            Exception::BadRequest,
        )
    }

    #[test]
    fn create_meeting_minimal_and_errors() {
        let ok = parse(
            Route::CreateMeeting,
            r#"{"ClientRequestToken":"abc","MediaRegion":"us-east-1","ExternalMeetingId":"standup"}"#,
        )
        .unwrap();
        assert!(matches!(ok, Command::CreateMeeting(c) if c.spec.external_meeting_id == "standup"));

        let err = parse(Route::CreateMeeting, r#"{"MediaRegion":"mars-1"}"#).unwrap_err();
        assert_eq!(err.exception, Exception::BadRequest);
        assert!(
            err.message.starts_with("2 validation errors detected"),
            "{}",
            err.message
        );
        assert!(err.message.contains("'MediaRegion'"));
        assert!(err.message.contains("'ExternalMeetingId'"));

        let err = parse(Route::CreateMeeting, r#"{"MediaRegion":5}"#).unwrap_err();
        assert!(err.message.contains("MediaRegion"), "{}", err.message);
        assert!(err.message.contains("invalid type"), "{}", err.message);

        let err = parse(Route::CreateMeeting, "[1,2]").unwrap_err();
        assert!(err.message.contains("a JSON object"), "{}", err.message);
        let err = parse(Route::CreateMeeting, "{} trailing").unwrap_err();
        assert_eq!(err.exception, Exception::BadRequest);
        let err = parse(Route::CreateMeeting, "{\"MediaRegion\":").unwrap_err();
        assert_eq!(err.exception, Exception::BadRequest);
    }

    #[test]
    fn batch_items_fail_individually() {
        let cmd = parse(
            Route::BatchCreateAttendee("4101582d-72d2-451b-8ac0-f0f127992713".parse().unwrap()),
            r#"{"Attendees":[{"ExternalUserId":"ok-user"},{"ExternalUserId":"x"},{"ExternalUserId":"aws:no"},{"ExternalUserId":"caps","Capabilities":{"Audio":"SendReceive"}}]}"#,
        )
        .unwrap();
        let Command::BatchCreateAttendee(_, items) = cmd else {
            panic!()
        };
        assert!(items[0].is_ok());
        assert!(items[1].is_err());
        assert!(items[2].is_err());
        let Err((_, ControlError::Invalid(msg))) = &items[3] else {
            panic!()
        };
        assert!(msg.contains("Capabilities.Video"), "{msg}");
    }

    #[test]
    fn more_than_fifty_tags_is_too_many_tags() {
        let tags = |n: usize| {
            (0..n)
                .map(|i| format!(r#"{{"Key":"k{i}","Value":"v"}}"#))
                .collect::<Vec<_>>()
                .join(",")
        };
        let arn =
            "arn:aws:chime:us-east-1:000000000000:meeting/4101582d-72d2-451b-8ac0-f0f127992713";
        let err = parse(
            Route::TagResource,
            &format!(r#"{{"ResourceARN":"{arn}","Tags":[{}]}}"#, tags(51)),
        )
        .unwrap_err();
        assert_eq!(err.exception, Exception::TooManyTags);
        assert_eq!(err.exception.status(), 400);
        assert_eq!(err.resource_name.as_deref(), Some(arn));
        assert!(
            parse(
                Route::TagResource,
                &format!(r#"{{"ResourceARN":"{arn}","Tags":[{}]}}"#, tags(50)),
            )
            .is_ok()
        );
        for route in [Route::CreateMeeting, Route::CreateMeetingWithAttendees] {
            let body = format!(
                r#"{{"MediaRegion":"us-east-1","ExternalMeetingId":"tagged","Attendees":[{{"ExternalUserId":"ann"}}],"Tags":[{}]}}"#,
                tags(51)
            );
            let err = parse(route, &body).unwrap_err();
            assert_eq!(err.exception, Exception::TooManyTags, "{err}");
            assert_eq!(err.resource_name, None);
        }
    }

    #[test]
    fn next_token_is_bound_to_its_meeting() {
        let m: MeetingId = "4101582d-72d2-451b-8ac0-f0f127992713".parse().unwrap();
        let other: MeetingId = "5101582d-72d2-451b-8ac0-f0f127992713".parse().unwrap();
        let token = encode_next_token(m, 42);
        assert_eq!(decode_next_token(m, &token), Some(42));
        assert_eq!(decode_next_token(other, &token), None);
        assert_eq!(decode_next_token(m, "garbage!"), None);
    }
}
