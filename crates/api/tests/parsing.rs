//! Property tests of the REST pipeline, outside input first:
//! `route` → `parse_command` → `execute` → `render`.
//!
//! * `route` and `parse_command` never panic, whatever the method, path, query and body, and
//!   every failure is an AWS-shaped 4xx with a message;
//! * commands that parse, run against a real `ControlPlane` seeded with meetings and
//!   attendees (requests reuse their ids part of the time), never panic; domain errors map to a
//!   status below 500, and every reply renders as JSON without a single `null` (the browser
//!   client crashes on nulls), or as an empty body;
//! * a stateful test drives the control plane with random sequences of valid operations and
//!   checks its invariants after every step.

use std::collections::HashSet;

use carillon_api::parse::encode_next_token;
use carillon_api::{
    ApiError, Exception, Operation, Placement, Query, Reply, Route, api_error, exception_of,
    execute, parse_command, render, route,
};
use carillon_control::{
    AttendeeFeatures, AttendeeId, AttendeeRequest, Caller, Capabilities, ControlError,
    ControlPlane, CreateMeeting, EpochMillis, Limits, MEDIA_REGIONS, MediaCapability, Meeting,
    MeetingFeatures, MeetingId, MeetingSpec, Tag, VideoFeatures, VideoResolution,
};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Map, Value};

const GUID: &str = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
const START: EpochMillis = 1_700_000_000_000;
const MINUTE: u64 = 60_000;

fn owned(values: &'static [&'static str]) -> impl Strategy<Value = String> + Clone {
    select(values).prop_map(str::to_owned)
}

// ----------------------------------------------------------------------------------------
// Regressions
// ----------------------------------------------------------------------------------------

/// Regression (found by the fuzzer): the reserved-prefix check once sliced by bytes and panicked
/// when byte 4 fell inside a multi-byte character.
#[test]
fn external_ids_with_multibyte_characters_near_the_prefix() {
    let m = "4101582d-72d2-451b-8ac0-f0f127992713";
    let cases = [
        (
            Route::CreateMeeting,
            r#"{"MediaRegion":"us-east-1","ExternalMeetingId":"abcÀ"}"#,
        ),
        (
            Route::CreateMeeting,
            r#"{"MediaRegion":"us-east-1","ExternalMeetingId":"ok-id","MeetingHostId":"xyzÿ"}"#,
        ),
        (
            Route::CreateAttendee(m.parse().unwrap()),
            r#"{"ExternalUserId":"Zoë-user"}"#,
        ),
        (
            Route::BatchCreateAttendee(m.parse().unwrap()),
            r#"{"Attendees":[{"ExternalUserId":"abcÀ"}]}"#,
        ),
    ];
    for (route, body) in cases {
        // Every character is allowed by the ExternalId pattern, so these are valid requests.
        let parsed = parse_command(
            route,
            &Query::default(),
            body.as_bytes(),
            Exception::BadRequest,
        );
        assert!(parsed.is_ok(), "{body}: {parsed:?}");
    }
}

// ----------------------------------------------------------------------------------------
// Checks shared by the properties
// ----------------------------------------------------------------------------------------

fn find_null(v: &Value, at: &str) -> Option<String> {
    match v {
        Value::Null => Some(at.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| find_null(item, &format!("{at}[{i}]"))),
        Value::Object(members) => members
            .iter()
            .find_map(|(k, v)| find_null(v, &format!("{at}.{k}"))),
        _ => None,
    }
}

/// A failure the client sees: 4xx, a message, and a JSON body with the short code.
fn check_client_error(e: &ApiError) -> Result<(), TestCaseError> {
    let status = e.exception.status();
    prop_assert!((400..500).contains(&status), "status {status} for {e:?}");
    prop_assert!(!e.message.trim().is_empty(), "empty message: {e:?}");
    let body: Value = serde_json::from_slice(&e.body("req-1"))
        .map_err(|err| TestCaseError::fail(format!("error body is not JSON: {err}")))?;
    prop_assert_eq!(body["Code"].as_str(), Some(e.exception.code()));
    prop_assert_eq!(body["Message"].as_str(), Some(e.message.as_str()));
    prop_assert_eq!(find_null(&body, "$"), None);
    Ok(())
}

/// A domain failure: never a ServiceFailure, and a client error once mapped.
fn check_domain_error(e: ControlError) -> Result<(), TestCaseError> {
    prop_assert_ne!(exception_of(&e), Exception::ServiceFailure, "{:?}", e);
    check_client_error(&api_error(e, Exception::BadRequest))
}

/// A rendered success: 200 with a JSON object free of nulls (or empty), or 204 and empty.
fn check_rendered(reply: &Reply, placement: &Placement) -> Result<(), TestCaseError> {
    let (status, body) = render(reply, placement);
    match status {
        204 => prop_assert!(body.is_empty(), "204 with a body"),
        200 if body.is_empty() => prop_assert!(
            matches!(
                reply,
                Reply::Ok | Reply::TranscriptionStarted { .. } | Reply::TranscriptionStopped { .. }
            ),
            "{reply:?}"
        ),
        200 => {
            let json: Value = serde_json::from_slice(&body)
                .map_err(|err| TestCaseError::fail(format!("reply is not JSON: {err}")))?;
            prop_assert!(json.is_object(), "{json}");
            prop_assert_eq!(find_null(&json, "$"), None, "{}", json);
        }
        other => prop_assert!(false, "unexpected status {other}"),
    }
    Ok(())
}

fn method_of(op: Operation) -> &'static str {
    match op {
        Operation::GetMeeting
        | Operation::GetAttendee
        | Operation::ListAttendees
        | Operation::ListTagsForResource => "GET",
        Operation::DeleteMeeting | Operation::DeleteAttendee => "DELETE",
        Operation::BatchUpdateAttendeeCapabilitiesExcept
        | Operation::UpdateAttendeeCapabilities => "PUT",
        _ => "POST",
    }
}

/// Method, path and `operation=` literal of an operation, for the given labels.
fn request_line(op: Operation, m: &str, a: &str) -> (&'static str, String, Option<&'static str>) {
    let (path, literal) = match op {
        Operation::CreateMeeting => ("/meetings".to_owned(), None),
        Operation::CreateMeetingWithAttendees => ("/meetings".to_owned(), Some("create-attendees")),
        Operation::GetMeeting | Operation::DeleteMeeting => (format!("/meetings/{m}"), None),
        Operation::CreateAttendee | Operation::ListAttendees => {
            (format!("/meetings/{m}/attendees"), None)
        }
        Operation::BatchCreateAttendee => {
            (format!("/meetings/{m}/attendees"), Some("batch-create"))
        }
        Operation::GetAttendee | Operation::DeleteAttendee => {
            (format!("/meetings/{m}/attendees/{a}"), None)
        }
        Operation::BatchUpdateAttendeeCapabilitiesExcept => (
            format!("/meetings/{m}/attendees/capabilities"),
            Some("batch-update-except"),
        ),
        Operation::UpdateAttendeeCapabilities => {
            (format!("/meetings/{m}/attendees/{a}/capabilities"), None)
        }
        Operation::StartMeetingTranscription => {
            (format!("/meetings/{m}/transcription"), Some("start"))
        }
        Operation::StopMeetingTranscription => {
            (format!("/meetings/{m}/transcription"), Some("stop"))
        }
        Operation::TagResource => ("/tags".to_owned(), Some("tag-resource")),
        Operation::UntagResource => ("/tags".to_owned(), Some("untag-resource")),
        Operation::ListTagsForResource => ("/tags".to_owned(), None),
    };
    (method_of(op), path, literal)
}

fn route_for(op: Operation, m: MeetingId, a: AttendeeId) -> Route {
    match op {
        Operation::CreateMeeting => Route::CreateMeeting,
        Operation::CreateMeetingWithAttendees => Route::CreateMeetingWithAttendees,
        Operation::GetMeeting => Route::GetMeeting(m),
        Operation::DeleteMeeting => Route::DeleteMeeting(m),
        Operation::CreateAttendee => Route::CreateAttendee(m),
        Operation::BatchCreateAttendee => Route::BatchCreateAttendee(m),
        Operation::GetAttendee => Route::GetAttendee(m, a),
        Operation::ListAttendees => Route::ListAttendees(m),
        Operation::DeleteAttendee => Route::DeleteAttendee(m, a),
        Operation::BatchUpdateAttendeeCapabilitiesExcept => {
            Route::BatchUpdateAttendeeCapabilitiesExcept(m)
        }
        Operation::UpdateAttendeeCapabilities => Route::UpdateAttendeeCapabilities(m, a),
        Operation::StartMeetingTranscription => Route::StartMeetingTranscription(m),
        Operation::StopMeetingTranscription => Route::StopMeetingTranscription(m),
        Operation::TagResource => Route::TagResource,
        Operation::UntagResource => Route::UntagResource,
        Operation::ListTagsForResource => Route::ListTagsForResource,
    }
}

// ----------------------------------------------------------------------------------------
// Generators: methods, paths, queries
// ----------------------------------------------------------------------------------------

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => owned(&["GET", "POST", "PUT", "DELETE"]),
        1 => owned(&["PATCH", "HEAD", "OPTIONS", "CONNECT", "get", "post", "", " GET"]),
        1 => "\\PC{0,8}",
    ]
}

/// A GUID with one character replaced, inserted or removed.
fn near_guid() -> impl Strategy<Value = String> {
    (
        GUID,
        0usize..36,
        owned(&["g", "", "-", "00", "é", "٣", "Ａ", " ", "{", "%41"]),
    )
        .prop_map(|(mut g, i, r)| {
            g.replace_range(i..i + 1, &r);
            g
        })
}

/// Percent escapes, valid or not as UTF-8 (`%FF`, truncated sequences, stray '%').
fn escapes() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        any::<u8>().prop_map(|b| format!("%{b:02X}")),
        any::<u8>().prop_map(|b| format!("%{b:02x}")),
        owned(&[
            "%FF",
            "%C3",
            "%C3%A9",
            "%E2%82",
            "%E2%82%AC",
            "%F0%9F%98",
            "%F0%9F%98%80",
            "%ED%A0%80",
            "%C0%AF",
            "%",
            "%G1",
            "%2",
            "%%",
            "%2F",
            "%2e",
            "%00",
        ]),
        "[a-z0-9]{1,3}",
        // A GUID written entirely in escapes still names the GUID.
        GUID.prop_map(|g| g.bytes().map(|b| format!("%{b:02X}")).collect()),
    ];
    prop::collection::vec(piece, 1..5).prop_map(|v| v.concat())
}

fn path_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => owned(&["meetings", "attendees", "capabilities", "transcription", "tags"]),
        4 => GUID,
        1 => GUID.prop_map(|g| g.to_uppercase()),
        2 => near_guid(),
        3 => escapes(),
        2 => "\\PC{0,12}",
        1 => "[a-zA-Z0-9._~-]{0,8}",
        1 => owned(&["", ".", "..", "MEETINGS", "meetings ", "tags?x"]),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => prop::collection::vec(path_segment(), 0..7)
            .prop_map(|s| format!("/{}", s.join("/"))),
        1 => prop::collection::vec(path_segment(), 0..5).prop_map(|s| s.join("/")),
        1 => prop::collection::vec(path_segment(), 1..4)
            .prop_map(|s| format!("/{}/", s.join("/"))),
        1 => any::<String>(),
    ]
}

const OPERATION_LITERALS: &[&str] = &[
    "create-attendees",
    "batch-create",
    "batch-update-except",
    "start",
    "stop",
    "tag-resource",
    "untag-resource",
    "bogus",
    "",
    "START",
];

fn query_param() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => owned(OPERATION_LITERALS).prop_map(|o| format!("operation={o}")),
        1 => owned(OPERATION_LITERALS).prop_map(|o| format!("Operation={o}")),
        1 => owned(OPERATION_LITERALS).prop_map(|o| format!("op%65ration={o}")),
        1 => "[0-9 +-]{0,5}".prop_map(|n| format!("max-results={n}")),
        1 => "[A-Za-z0-9_=-]{0,24}".prop_map(|t| format!("next-token={t}")),
        1 => "\\PC{0,20}".prop_map(|a| format!("arn={a}")),
        2 => (escapes(), escapes()).prop_map(|(k, v)| format!("{k}={v}")),
        1 => "[a-z=&+%;]{0,6}",
        1 => owned(&["operation", "operation=", "=", "&", "operation=start&operation=stop"]),
    ]
}

fn raw_query() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::collection::vec(query_param(), 0..4).prop_map(|v| v.join("&")),
        1 => any::<String>(),
    ]
}

// ----------------------------------------------------------------------------------------
// Generators: JSON
// ----------------------------------------------------------------------------------------

/// Member names of the model (and near misses), so that objects hit the real fields.
const MEMBER_NAMES: &[&str] = &[
    "ClientRequestToken",
    "MediaRegion",
    "MeetingHostId",
    "ExternalMeetingId",
    "NotificationsConfiguration",
    "LambdaFunctionArn",
    "SnsTopicArn",
    "SqsQueueArn",
    "MeetingFeatures",
    "Audio",
    "Video",
    "Content",
    "Attendee",
    "EchoReduction",
    "MaxResolution",
    "MaxCount",
    "PrimaryMeetingId",
    "TenantIds",
    "Tags",
    "Key",
    "Value",
    "MediaPlacementNetworkType",
    "Attendees",
    "ExternalUserId",
    "Capabilities",
    "ExcludedAttendeeIds",
    "AttendeeId",
    "TranscriptionConfiguration",
    "EngineTranscribeSettings",
    "EngineTranscribeMedicalSettings",
    "LanguageCode",
    "IdentifyLanguage",
    "LanguageOptions",
    "PreferredLanguage",
    "Region",
    "Specialty",
    "Type",
    "ResourceARN",
    "TagKeys",
    "mediaRegion",
    "",
];

const INTERESTING_STRINGS: &[&str] = &[
    "us-east-1",
    "us-gov-west-1",
    "mars-1",
    "SendReceive",
    "Send",
    "Receive",
    "None",
    "none",
    "HD",
    "FHD",
    "UHD",
    "AVAILABLE",
    "UNAVAILABLE",
    "Ipv4Only",
    "DualStack",
    "en-US",
    "en-US,de-DE",
    "auto",
    "PII",
    "PHI",
    "PRIMARYCARE",
    "CONVERSATION",
    "aws:reserved",
    "AWS:Reserved",
    "arn:aws:chime:us-east-1:000000000000:meeting/4101582d-72d2-451b-8ac0-f0f127992713",
    "arn:",
    "arn",
    "4101582d-72d2-451b-8ac0-f0f127992713",
    "Zoë «Ñ» (1)",
    "abcÀ",
    "ab\u{0}cd",
    "😀😀",
    "\u{FEFF}",
    "\u{202E}",
    "aaaa",
    "x",
    "",
    " ",
];

const LENGTHS: &[usize] = &[
    1, 2, 3, 4, 5, 63, 64, 65, 128, 129, 200, 256, 257, 1011, 1012, 1024, 1025, 4096, 4097, 5000,
];

fn json_string() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        4 => owned(INTERESTING_STRINGS),
        2 => "\\PC{0,24}",
        1 => any::<String>(),
        2 => "[a-zA-Z0-9 _@.:/+=,-]{0,16}",
        1 => "[a-zÀ-ÿ«»]{1,8}",
        1 => (select(LENGTHS), select(&['a', 'À', '😀', ' ', '\u{0}', '-'][..]))
            .prop_map(|(n, c)| std::iter::repeat_n(c, n).collect()),
        1 => GUID,
    ]
}

fn json_number() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-300i64..300).prop_map(Value::from),
        // NaN and infinities become null here, which is fine: null is a value too.
        any::<f64>().prop_map(Value::from),
        select(
            &[
                i64::MIN,
                i64::MAX,
                -1,
                0,
                1,
                25,
                26,
                100,
                101,
                250,
                251,
                4_294_967_296
            ][..]
        )
        .prop_map(Value::from),
    ]
}

fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        2 => json_number(),
        4 => json_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((owned(MEMBER_NAMES), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
    .boxed()
}

fn json_object() -> impl Strategy<Value = Value> {
    prop::collection::vec((owned(MEMBER_NAMES), json_value()), 0..8)
        .prop_map(|members| Value::Object(members.into_iter().collect()))
}

fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("a Value serialises")
}

/// Hand-written bodies for what a Value cannot express (duplicate keys, huge numbers, lone
/// surrogates, odd whitespace) or rarely hits.
const NASTY_BODIES: &[&str] = &[
    "",
    " \r\n\t",
    "\u{c}",
    "\u{c}{}",
    "\u{FEFF}{}",
    "{}",
    "{} ",
    "{}{}",
    "{} x",
    "{",
    "}",
    "null",
    "[]",
    "\"x\"",
    "1",
    r#"{"MediaRegion":"us-east-1","MediaRegion":"us-east-1"}"#,
    r#"{"MeetingFeatures":{"Attendee":{"MaxCount":1e400}}}"#,
    r#"{"MeetingFeatures":{"Attendee":{"MaxCount":18446744073709551616}}}"#,
    r#"{"MeetingFeatures":{"Attendee":{"MaxCount":-9223372036854775809}}}"#,
    r#"{"MeetingFeatures":{"Attendee":{"MaxCount":4294967297}}}"#,
    r#"{"MeetingFeatures":{"Attendee":{"MaxCount":2.5}}}"#,
    r#"{"MeetingFeatures":{"Attendee":{"MaxCount":-0}}}"#,
    r#"{"ExternalMeetingId":"\ud800","MediaRegion":"us-east-1"}"#,
    r#"{"ExternalUserId":"\udc00\ud800"}"#,
    r#"{"ExternalUserId":"a\u0000b"}"#,
    r#"{"Tags":null,"TenantIds":null,"Attendees":null}"#,
    r#"{"Attendees":[null]}"#,
    r#"{"Attendees":[{}]}"#,
    r#"{"Attendees":{}}"#,
    r#"{"Capabilities":{"Audio":null,"Video":"None","Content":"None"}}"#,
    r#"{"TranscriptionConfiguration":{}}"#,
    r#"{"TranscriptionConfiguration":null}"#,
    r#"{"ResourceARN":"arn:","TagKeys":[]}"#,
    r#"{"ResourceARN":"arn:","Tags":[{"Key":"a","Value":"b"},{"Key":"a","Value":"c"}]}"#,
];

fn deep_nesting() -> impl Strategy<Value = Vec<u8>> {
    (
        1usize..3000,
        select(
            &[
                (r#"{"X":"#, "}"),
                (r#"{"Attendees":["#, "]}"),
                (r#"{"Tags":[{"Key":"#, "}]}"),
                ("[", "]"),
                (r#"{"MeetingFeatures":{"Audio":"#, "}}"),
            ][..],
        ),
    )
        .prop_map(|(depth, (open, close))| {
            let mut body = open.repeat(depth).into_bytes();
            body.extend_from_slice(b"1");
            body.extend_from_slice(close.repeat(depth).as_bytes());
            body
        })
}

/// Any body at all: JSON of every shape, truncated or with trailing bytes, and raw bytes.
fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => json_object().prop_map(|v| to_bytes(&v)),
        2 => json_value().prop_map(|v| to_bytes(&v)),
        1 => json_object().prop_map(|v| serde_json::to_vec_pretty(&v).expect("serialises")),
        2 => any::<Vec<u8>>(),
        1 => (json_object(), any::<Index>()).prop_map(|(v, cut)| {
            let b = to_bytes(&v);
            b[..cut.index(b.len() + 1)].to_vec()
        }),
        1 => (json_object(), prop::collection::vec(any::<u8>(), 1..4)).prop_map(|(v, tail)| {
            let mut b = to_bytes(&v);
            b.extend(tail);
            b
        }),
        2 => owned(NASTY_BODIES).prop_map(String::into_bytes),
        1 => deep_nesting(),
    ]
}

// ----------------------------------------------------------------------------------------
// Generators: requests shaped like the model, with references to live ids
// ----------------------------------------------------------------------------------------

/// Placeholders resolved against the live state when the request runs: `@@M<i>` (meeting
/// id), `@@A<i>` (attendee id), `@@R<i>` (meeting ARN), `@@T<seq>` (a NextToken of the
/// request's meeting) and `@@X<i>:<seq>` (a NextToken of any meeting).
fn meeting_ref() -> impl Strategy<Value = String> + Clone {
    (0usize..8).prop_map(|i| format!("@@M{i}"))
}

fn attendee_ref() -> impl Strategy<Value = String> + Clone {
    (0usize..16).prop_map(|i| format!("@@A{i}"))
}

fn arn_ref() -> impl Strategy<Value = String> + Clone {
    (0usize..8).prop_map(|i| format!("@@R{i}"))
}

fn s(strategy: impl Strategy<Value = String> + 'static) -> BoxedStrategy<Value> {
    strategy.prop_map(Value::String).boxed()
}

type Member = BoxedStrategy<Option<(String, Value)>>;

/// A member with weights for a well-formed value, any JSON value, and absence.
fn member(name: &'static str, valid: BoxedStrategy<Value>, weights: [u32; 3]) -> Member {
    let [valid_weight, junk_weight, absent_weight] = weights;
    prop_oneof![
        valid_weight => valid.prop_map(move |v| Some((name.to_owned(), v))),
        junk_weight => json_value().prop_map(move |v| Some((name.to_owned(), v))),
        absent_weight => Just(None),
    ]
    .boxed()
}

/// A required member: almost always there and well-formed.
fn req(name: &'static str, valid: BoxedStrategy<Value>) -> Member {
    member(name, valid, [40, 1, 1])
}

/// An optional member: there about half of the time.
fn opt(name: &'static str, valid: BoxedStrategy<Value>) -> Member {
    member(name, valid, [20, 1, 20])
}

fn object(members: Vec<Member>) -> BoxedStrategy<Value> {
    members
        .prop_map(|members| Value::Object(members.into_iter().flatten().collect::<Map<_, _>>()))
        .boxed()
}

fn list(item: BoxedStrategy<Value>, sizes: std::ops::Range<usize>) -> BoxedStrategy<Value> {
    prop::collection::vec(item, sizes)
        .prop_map(Value::Array)
        .boxed()
}

fn external_id() -> BoxedStrategy<Value> {
    s(prop_oneof![
        12 => owned(&["alice", "Alice", "ALICE", "bob", "carol", "dave", "eve", "mallory"]),
        6 => "[a-zA-Z0-9 _@.+=,-]{2,12}",
        2 => "[a-zA-ZÀ-ÿ«» ]{2,6}",
        1 => owned(&["x", "aws:reserved", "AWS:x", "semi;colon", "😀😀", "tab\there"]),
        1 => (60usize..70).prop_map(|n| "u".repeat(n)),
    ])
}

fn capability() -> BoxedStrategy<Value> {
    s(prop_oneof![
        20 => owned(&["SendReceive", "Send", "Receive", "None"]),
        1 => owned(&["sendreceive", "", "All"]),
    ])
}

fn capabilities() -> BoxedStrategy<Value> {
    object(vec![
        req("Audio", capability()),
        req("Video", capability()),
        req("Content", capability()),
    ])
}

fn attendee_body() -> BoxedStrategy<Value> {
    object(vec![
        req("ExternalUserId", external_id()),
        opt("Capabilities", capabilities()),
    ])
}

fn attendee_list(max: usize) -> BoxedStrategy<Value> {
    prop_oneof![
        20 => list(attendee_body(), 1..6),
        1 => list(attendee_body(), 0..1),
        1 => list(attendee_body(), max..max + 2),
    ]
    .boxed()
}

fn tag_key() -> BoxedStrategy<Value> {
    s(prop_oneof![
        12 => owned(&["k1", "k2", "k3", "Team", "cost/centre"]),
        4 => "[a-zA-Z+=._:/-]{1,12}",
        1 => owned(&["aws:x", ""]),
        1 => "\\PC{0,8}",
    ])
}

fn tags() -> BoxedStrategy<Value> {
    let tag = object(vec![
        req("Key", tag_key()),
        req(
            "Value",
            s(prop_oneof![
                12 => "[a-zA-Z0-9 _.:/=+@-]{0,12}",
                1 => "\\PC{0,8}",
            ]),
        ),
    ]);
    prop_oneof![
        20 => list(tag.clone(), 0..5),
        1 => list(tag, 50..52),
    ]
    .boxed()
}

fn id_or_junk(reference: impl Strategy<Value = String> + Clone + 'static) -> BoxedStrategy<Value> {
    s(prop_oneof![
        12 => reference,
        1 => GUID,
        1 => json_string(),
    ])
}

fn create_meeting_body(with_attendees: bool) -> BoxedStrategy<Value> {
    let resolution = |values: &'static [&'static str]| {
        object(vec![opt(
            "MaxResolution",
            s(prop_oneof![12 => owned(values), 1 => json_string()]),
        )])
    };
    let features = object(vec![
        opt(
            "Audio",
            object(vec![opt(
                "EchoReduction",
                s(
                    prop_oneof![12 => owned(&["AVAILABLE", "UNAVAILABLE"]), 1 => owned(&["available"])],
                ),
            )]),
        ),
        opt("Video", resolution(&["None", "HD", "FHD"])),
        opt("Content", resolution(&["None", "FHD", "UHD"])),
        opt(
            "Attendee",
            object(vec![opt(
                "MaxCount",
                prop_oneof![
                    12 => (1i64..30).prop_map(Value::from),
                    1 => (-5i64..300).prop_map(Value::from),
                ]
                .boxed(),
            )]),
        ),
    ]);
    let arn = || {
        s(prop_oneof![
            12 => owned(&["arn:aws:sns:us-east-1:000000000000:topic"]),
            4 => "arn[a-z:/._-]{1,10}",
            1 => "\\PC{0,10}",
        ])
    };
    let mut members = vec![
        opt(
            "ClientRequestToken",
            s(prop_oneof![
                12 => owned(&["tok-a", "tok-b", "tok-c"]),
                4 => "[-_a-zA-Z0-9]{2,64}",
                1 => "[-_a-zA-Z0-9]{0,70}",
                1 => "\\PC{0,6}",
            ]),
        ),
        req(
            "MediaRegion",
            s(prop_oneof![20 => owned(MEDIA_REGIONS), 1 => owned(&["mars-1", "", "US-EAST-1"])]),
        ),
        req("ExternalMeetingId", external_id()),
        opt("MeetingHostId", external_id()),
        opt(
            "NotificationsConfiguration",
            object(vec![
                opt("LambdaFunctionArn", arn()),
                opt("SnsTopicArn", arn()),
                opt("SqsQueueArn", arn()),
            ]),
        ),
        opt("MeetingFeatures", features),
        // Absent most of the time: replicas end with their primary and take no new primaries.
        member("PrimaryMeetingId", id_or_junk(meeting_ref()), [4, 1, 20]),
        opt(
            "TenantIds",
            list(
                s(prop_oneof![
                    12 => "[-_!@#$a-zA-Z0-9]{2,12}",
                    1 => "\\PC{0,8}",
                    1 => Just("aaaa".to_owned()),
                ]),
                1..4,
            ),
        ),
        opt("Tags", tags()),
        opt(
            "MediaPlacementNetworkType",
            s(prop_oneof![12 => owned(&["Ipv4Only", "DualStack"]), 1 => owned(&["ipv6"])]),
        ),
    ];
    if with_attendees {
        members.push(req("Attendees", attendee_list(20)));
    }
    object(members)
}

fn transcription_body() -> BoxedStrategy<Value> {
    let language = || {
        s(prop_oneof![
            12 => owned(&["en-US", "de-DE", "ja-JP"]),
            1 => owned(&["xx-XX", "en-us"]),
        ])
    };
    // The cross-field rules: LanguageCode, or IdentifyLanguage with LanguageOptions.
    let identify = prop_oneof![
        3 => object(vec![req("LanguageCode", language())]),
        2 => object(vec![
            req("IdentifyLanguage", Just(Value::Bool(true)).boxed()),
            req(
                "LanguageOptions",
                s(prop_oneof![12 => owned(&["en-US,de-DE", "en-US, ja-JP"]), 1 => owned(&["en-US", "xx"])]),
            ),
            member("PreferredLanguage", language(), [4, 1, 20]),
        ]),
        1 => object(vec![
            opt("LanguageCode", language()),
            opt("IdentifyLanguage", any::<bool>().prop_map(Value::Bool).boxed()),
            opt("LanguageOptions", s(owned(&["en-US,de-DE", "en-US", "xx"]))),
            opt("PreferredLanguage", language()),
        ]),
    ];
    let extras = object(vec![
        opt(
            "Region",
            s(
                prop_oneof![12 => owned(&["auto", "us-east-1", "eu-west-2"]), 1 => owned(&["af-south-1"])],
            ),
        ),
        member(
            "ContentIdentificationType",
            s(owned(&["PII", "PHI"])),
            [2, 1, 20],
        ),
        member("ContentRedactionType", s(owned(&["PII"])), [2, 1, 20]),
        member(
            "PiiEntityTypes",
            s(owned(&["NAME,ADDRESS", "name"])),
            [2, 1, 20],
        ),
        opt("VocabularyName", s("[a-z]{1,5}")),
        opt(
            "PartialResultsStability",
            s(prop_oneof![12 => owned(&["low", "high"]), 1 => owned(&["HIGH"])]),
        ),
    ]);
    let standard = (identify, extras)
        .prop_map(|(mut a, b)| {
            if let (Value::Object(a), Value::Object(b)) = (&mut a, b) {
                a.extend(b);
            }
            a
        })
        .boxed();
    let medical = object(vec![
        req(
            "LanguageCode",
            s(prop_oneof![12 => owned(&["en-US"]), 1 => owned(&["fr-FR"])]),
        ),
        req(
            "Specialty",
            s(prop_oneof![12 => owned(&["PRIMARYCARE", "ONCOLOGY"]), 1 => owned(&["GP"])]),
        ),
        req(
            "Type",
            s(prop_oneof![12 => owned(&["CONVERSATION", "DICTATION"]), 1 => owned(&["CHAT"])]),
        ),
        opt("Region", s(owned(&["auto", "us-east-1", "eu-west-2"]))),
        member(
            "ContentIdentificationType",
            s(owned(&["PHI", "PII"])),
            [2, 1, 20],
        ),
    ]);
    let config = prop_oneof![
        12 => object(vec![req("EngineTranscribeSettings", standard.clone())]),
        12 => object(vec![req("EngineTranscribeMedicalSettings", medical.clone())]),
        1 => object(vec![
            opt("EngineTranscribeSettings", standard),
            opt("EngineTranscribeMedicalSettings", medical),
        ]),
    ]
    .boxed();
    object(vec![req("TranscriptionConfiguration", config)])
}

fn shaped_body(op: Operation) -> BoxedStrategy<Value> {
    match op {
        Operation::CreateMeeting => create_meeting_body(false),
        Operation::CreateMeetingWithAttendees => create_meeting_body(true),
        Operation::CreateAttendee => attendee_body(),
        Operation::BatchCreateAttendee => object(vec![req("Attendees", attendee_list(100))]),
        Operation::BatchUpdateAttendeeCapabilitiesExcept => object(vec![
            req(
                "ExcludedAttendeeIds",
                prop_oneof![
                    12 => list(object(vec![req("AttendeeId", id_or_junk(attendee_ref()))]), 1..4),
                    1 => list(object(vec![req("AttendeeId", id_or_junk(attendee_ref()))]), 0..1),
                ]
                .boxed(),
            ),
            req("Capabilities", capabilities()),
        ]),
        Operation::UpdateAttendeeCapabilities => object(vec![req("Capabilities", capabilities())]),
        Operation::StartMeetingTranscription => transcription_body(),
        Operation::TagResource => object(vec![
            req("ResourceARN", id_or_junk(arn_ref())),
            req("Tags", tags()),
        ]),
        Operation::UntagResource => object(vec![
            req("ResourceARN", id_or_junk(arn_ref())),
            req("TagKeys", list(tag_key(), 0..4)),
        ]),
        _ => prop_oneof![4 => Just(Value::Object(Map::new())), 1 => json_object()].boxed(),
    }
}

/// The extra query parameters of an operation (besides the `operation=` literal).
fn shaped_query(op: Operation) -> BoxedStrategy<Vec<(String, String)>> {
    match op {
        Operation::ListAttendees => (
            prop_oneof![
                1 => Just(None),
                4 => (1i64..6).prop_map(|n| Some(n.to_string())),
                1 => "[0-9 +-]{0,4}".prop_map(Some),
            ],
            prop_oneof![
                1 => Just(None),
                3 => (0u64..12).prop_map(|seq| Some(format!("@@T{seq}"))),
                1 => ((0usize..8), (0u64..12)).prop_map(|(i, seq)| Some(format!("@@X{i}:{seq}"))),
                1 => "[A-Za-z0-9_=-]{0,24}".prop_map(Some),
            ],
        )
            .prop_map(|(max, token)| {
                let mut q = Vec::new();
                if let Some(max) = max {
                    q.push(("max-results".to_owned(), max));
                }
                if let Some(token) = token {
                    q.push(("next-token".to_owned(), token));
                }
                q
            })
            .boxed(),
        Operation::ListTagsForResource => prop_oneof![
            6 => arn_ref().prop_map(|arn| vec![("arn".to_owned(), arn)]),
            1 => "\\PC{0,12}".prop_map(|arn| vec![("arn".to_owned(), arn)]),
            1 => Just(Vec::new()),
        ]
        .boxed(),
        _ => prop_oneof![
            8 => Just(Vec::new()),
            1 => ("[a-z-]{1,8}", "\\PC{0,8}").prop_map(|kv| vec![kv]),
        ]
        .boxed(),
    }
}

#[derive(Debug, Clone)]
enum Label {
    /// Index into the live ids of the world.
    Known(usize),
    /// A GUID that names nothing (most likely).
    Random(String),
}

fn label() -> impl Strategy<Value = Label> {
    prop_oneof![
        5 => (0usize..16).prop_map(Label::Known),
        1 => GUID.prop_map(Label::Random),
    ]
}

#[derive(Debug, Clone)]
struct Request {
    op: Operation,
    meeting: Label,
    attendee: Label,
    upper_case_labels: bool,
    query: Vec<(String, String)>,
    body: Result<Value, Vec<u8>>,
    validation: Exception,
    /// Milliseconds that pass before this request.
    wait: u64,
}

fn request() -> impl Strategy<Value = Request> {
    select(&Operation::ALL[..]).prop_flat_map(|op| {
        (
            label(),
            label(),
            any::<bool>(),
            shaped_query(op),
            prop_oneof![8 => shaped_body(op).prop_map(Ok), 1 => any_body().prop_map(Err)],
            select(&[Exception::BadRequest, Exception::Validation][..]),
            prop_oneof![4 => 0u64..1_000, 1 => 0u64..4 * MINUTE],
        )
            .prop_map(
                move |(meeting, attendee, upper_case_labels, query, body, validation, wait)| {
                    Request {
                        op,
                        meeting,
                        attendee,
                        upper_case_labels,
                        query,
                        body,
                        validation,
                        wait,
                    }
                },
            )
    })
}

// ----------------------------------------------------------------------------------------
// The world the requests run in
// ----------------------------------------------------------------------------------------

struct World {
    plane: ControlPlane,
    caller: Caller,
    placement: Placement,
    now: EpochMillis,
    limits: Limits,
    /// Every meeting ever created (ended ones included), and its ARN.
    meetings: Vec<(MeetingId, String)>,
    attendees: Vec<(MeetingId, AttendeeId)>,
}

fn spec(external: &str) -> MeetingSpec {
    MeetingSpec {
        external_meeting_id: external.into(),
        meeting_host_id: None,
        media_region: "us-east-1".into(),
        notifications: None,
        features: None,
        primary_meeting_id: None,
        tenant_ids: vec![],
        tags: vec![],
        network_type: None,
    }
}

impl World {
    /// Two primaries (one without video), a replica, and a few attendees.
    fn new(seed: u64, limits: Limits, region: &str) -> World {
        let mut world = World {
            plane: ControlPlane::new(
                limits.clone(),
                "000000000000".into(),
                Box::new(StdRng::seed_from_u64(seed)),
            ),
            caller: Caller {
                region: region.into(),
            },
            placement: Placement::new("http://127.0.0.1:8080", 40000),
            now: START,
            limits,
            meetings: Vec::new(),
            attendees: Vec::new(),
        };
        let mut no_video = spec("no-video");
        no_video.features = Some(MeetingFeatures {
            video: Some(VideoFeatures {
                max_resolution: Some(VideoResolution::None),
            }),
            attendee: Some(AttendeeFeatures { max_count: Some(3) }),
            ..MeetingFeatures::default()
        });
        no_video.tags = vec![Tag {
            key: "k1".into(),
            value: "v".into(),
        }];
        for spec in [spec("standup"), no_video] {
            let m = world.create(spec);
            for user in ["alice", "bob", "carol"] {
                let a = world
                    .plane
                    .create_attendee(
                        m,
                        AttendeeRequest {
                            external_user_id: user.into(),
                            capabilities: None,
                        },
                        START,
                    )
                    .expect("seed attendee");
                world.attendees.push((m, a.id));
            }
        }
        let mut replica = spec("replica");
        replica.primary_meeting_id = Some(world.meetings[0].0);
        world.create(replica);
        world
    }

    fn create(&mut self, spec: MeetingSpec) -> MeetingId {
        let m = self
            .plane
            .create_meeting(
                CreateMeeting {
                    client_request_token: None,
                    spec,
                },
                &self.caller,
                self.now,
            )
            .expect("seed meeting");
        self.learn_meeting(&m);
        m.id
    }

    fn learn_meeting(&mut self, m: &Meeting) {
        if !self.meetings.iter().any(|(id, _)| *id == m.id) {
            self.meetings.push((m.id, m.arn()));
        }
    }

    fn learn_attendee(&mut self, m: MeetingId, a: AttendeeId) {
        if !self.attendees.contains(&(m, a)) {
            self.attendees.push((m, a));
        }
    }

    fn meeting(&self, label: &Label) -> String {
        match label {
            Label::Known(i) => self.meetings[i % self.meetings.len()].0.to_string(),
            Label::Random(g) => g.clone(),
        }
    }

    fn attendee(&self, label: &Label) -> String {
        match label {
            Label::Known(i) => self.attendees[i % self.attendees.len()].1.to_string(),
            Label::Random(g) => g.clone(),
        }
    }

    /// An attendee of `meeting` when it has any, so that attendee labels mostly hit.
    fn attendee_of(&self, label: &Label, meeting: &str) -> String {
        let theirs: Vec<AttendeeId> = self
            .attendees
            .iter()
            .filter(|(m, _)| m.to_string() == meeting)
            .map(|(_, a)| *a)
            .collect();
        match label {
            Label::Known(i) if !theirs.is_empty() => theirs[i % theirs.len()].to_string(),
            other => self.attendee(other),
        }
    }

    /// Replaces the `@@` placeholders by live values.
    fn resolve_str(&self, s: &str) -> String {
        let index = |digits: &str| digits.parse::<usize>().unwrap_or(0);
        if let Some(i) = s.strip_prefix("@@M") {
            self.meeting(&Label::Known(index(i)))
        } else if let Some(i) = s.strip_prefix("@@A") {
            self.attendee(&Label::Known(index(i)))
        } else if let Some(i) = s.strip_prefix("@@R") {
            self.meetings[index(i) % self.meetings.len()].1.clone()
        } else if let Some(rest) = s.strip_prefix("@@X") {
            let (i, seq) = rest.split_once(':').unwrap_or((rest, "0"));
            let meeting = self.meetings[index(i) % self.meetings.len()].0;
            encode_next_token(meeting, seq.parse().unwrap_or(0))
        } else {
            s.to_owned()
        }
    }

    fn resolve(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.resolve_str(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.resolve(v)).collect()),
            Value::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.clone(), self.resolve(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn learn(&mut self, reply: &Reply) {
        match reply {
            Reply::Meeting(m) => self.learn_meeting(m),
            Reply::MeetingWithAttendees {
                meeting, attendees, ..
            } => {
                self.learn_meeting(meeting);
                for a in attendees {
                    self.learn_attendee(a.meeting_id, a.id);
                }
            }
            Reply::Attendee(a) => self.learn_attendee(a.meeting_id, a.id),
            Reply::Attendees { attendees, .. } | Reply::AttendeePage { attendees, .. } => {
                for a in attendees {
                    self.learn_attendee(a.meeting_id, a.id);
                }
            }
            Reply::Tags(_)
            | Reply::Ok
            | Reply::TranscriptionStarted { .. }
            | Reply::TranscriptionStopped { .. }
            | Reply::NoContent => {}
        }
    }

    /// Runs one request through the whole pipeline and checks every step.
    fn run(&mut self, req: &Request) -> Result<(), TestCaseError> {
        self.now += req.wait;
        let m = self.meeting(&req.meeting);
        let a = self.attendee_of(&req.attendee, &m);
        let (m, a) = if req.upper_case_labels {
            (m.to_uppercase(), a.to_uppercase())
        } else {
            (m, a)
        };
        let (method, path, literal) = request_line(req.op, &m, &a);
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(literal) = literal {
            query.append_pair("operation", literal);
        }
        for (k, v) in &req.query {
            let v = match v.strip_prefix("@@T") {
                Some(seq) => encode_next_token(
                    m.parse().expect("labels are GUIDs"),
                    seq.parse().unwrap_or(0),
                ),
                None => self.resolve_str(v),
            };
            if k != "operation" {
                query.append_pair(k, &v);
            }
        }
        let raw_query = query.finish();
        let query = Query::parse(&raw_query);
        let routed = route(method, &path, &query)
            .map_err(|e| TestCaseError::fail(format!("{method} {path}?{raw_query}: {e}")))?;
        let expected = route_for(
            req.op,
            m.parse().expect("labels are GUIDs"),
            a.parse().expect("labels are GUIDs"),
        );
        prop_assert_eq!(routed, expected);

        let body = match &req.body {
            Ok(json) => to_bytes(&self.resolve(json)),
            Err(raw) => raw.clone(),
        };
        let command = match parse_command(routed, &query, &body, req.validation) {
            Ok(command) => command,
            Err(e) => return check_client_error(&e),
        };
        let result = execute(&mut self.plane, command, &self.caller, self.now);
        // Drained by the server after every call, whatever the result.
        self.plane.take_changes();
        self.plane.take_notices();
        prop_assert!(self.plane.meeting_count() <= self.limits.max_active_meetings);
        match result {
            Ok(reply) => {
                self.learn(&reply);
                check_rendered(&reply, &self.placement)
            }
            Err(e) => check_domain_error(e),
        }
    }
}

fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(Limits::default()),
        Just(Limits {
            max_active_meetings: 5,
            max_replicas_per_primary: 2,
            max_attendees: 6,
            max_tags: 4,
            ..Limits::default()
        }),
    ]
}

// ----------------------------------------------------------------------------------------
// Properties: route, parse_command, execute, render
// ----------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Any method, path and query: a route whose method fits its operation, or a 4xx.
    #[test]
    fn route_never_panics_and_fails_with_4xx(
        method in method(),
        path in path(),
        raw_query in raw_query(),
    ) {
        match route(&method, &path, &Query::parse(&raw_query)) {
            Ok(r) => prop_assert_eq!(method_of(r.operation()), method.as_str()),
            Err(e) => check_client_error(&e)?,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    /// Every route, any body (bytes or JSON of any shape), any query: a command or a 4xx.
    #[test]
    fn parse_command_never_panics_and_fails_with_4xx(
        op in select(&Operation::ALL[..]),
        m in GUID,
        a in GUID,
        raw_query in raw_query(),
        body in any_body(),
        validation in select(&[Exception::BadRequest, Exception::Validation][..]),
    ) {
        let route = route_for(op, m.parse().unwrap(), a.parse().unwrap());
        if let Err(e) = parse_command(route, &Query::parse(&raw_query), &body, validation) {
            check_client_error(&e)?;
        }
    }

    /// Bodies shaped like the model (so that many parse), on any route.
    #[test]
    fn parse_command_on_shaped_bodies(
        (op, body) in (select(&Operation::ALL[..]), select(&Operation::ALL[..]))
            .prop_flat_map(|(op, body_op)| (Just(op), shaped_body(body_op))),
        seed in any::<u64>(),
    ) {
        let world = World::new(seed, Limits::default(), "us-east-1");
        let body = to_bytes(&world.resolve(&body));
        let route = route_for(op, world.meetings[0].0, world.attendees[0].1);
        if let Err(e) = parse_command(route, &Query::default(), &body, Exception::BadRequest) {
            check_client_error(&e)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(800))]

    /// Sequences of requests through the whole pipeline against a seeded control plane.
    #[test]
    fn pipeline_never_panics_and_replies_without_nulls(
        seed in any::<u64>(),
        limits in limits(),
        region in owned(&["us-east-1", "eu-west-2", "us-gov-west-1"]),
        requests in prop::collection::vec(request(), 1..12),
    ) {
        let mut world = World::new(seed, limits, &region);
        for req in &requests {
            world.run(req)?;
        }
    }
}

// ----------------------------------------------------------------------------------------
// Stateful test of the control plane
// ----------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    CreateMeeting {
        token: Option<u8>,
        primary: Option<usize>,
        max_count: Option<u32>,
        video_none: bool,
        tags: Vec<u8>,
    },
    CreateAttendee {
        meeting: usize,
        user: u8,
        upper: bool,
        caps: Option<Capabilities>,
    },
    BatchCreate {
        meeting: usize,
        users: Vec<u8>,
    },
    DeleteAttendee {
        meeting: usize,
        attendee: usize,
        bogus: bool,
    },
    DeleteMeeting {
        meeting: usize,
    },
    UpdateCapabilities {
        meeting: usize,
        attendee: usize,
        caps: Capabilities,
    },
    UpdateCapabilitiesExcept {
        meeting: usize,
        excluded: Vec<usize>,
        caps: Capabilities,
    },
    Tag {
        meeting: usize,
        keys: Vec<u8>,
    },
    Untag {
        meeting: usize,
        keys: Vec<u8>,
    },
    List {
        meeting: usize,
        page: usize,
    },
    Connect {
        meeting: usize,
        attendee: usize,
    },
    Disconnect {
        connection: usize,
    },
    /// Time passes, then the server's timer sweeps.
    Advance {
        ms: u64,
    },
}

fn media_capability() -> impl Strategy<Value = MediaCapability> {
    select(MediaCapability::ALL)
}

fn caps() -> impl Strategy<Value = Capabilities> {
    (media_capability(), media_capability(), media_capability()).prop_map(
        |(audio, video, content)| Capabilities {
            audio,
            video,
            content,
        },
    )
}

fn op() -> impl Strategy<Value = Op> {
    let i = || 0usize..32;
    prop_oneof![
        3 => (
            prop::option::weighted(0.3, 0u8..3),
            prop::option::weighted(0.3, i()),
            prop::option::weighted(0.3, 1u32..5),
            prop::bool::weighted(0.2),
            prop::collection::vec(0u8..6, 0..3),
        )
            .prop_map(|(token, primary, max_count, video_none, tags)| Op::CreateMeeting {
                token,
                primary,
                max_count,
                video_none,
                tags,
            }),
        5 => (i(), 0u8..10, any::<bool>(), prop::option::weighted(0.3, caps())).prop_map(
            |(meeting, user, upper, caps)| Op::CreateAttendee {
                meeting,
                user,
                upper,
                caps,
            }
        ),
        2 => (i(), prop::collection::vec(0u8..10, 1..5))
            .prop_map(|(meeting, users)| Op::BatchCreate { meeting, users }),
        2 => (i(), i(), prop::bool::weighted(0.2)).prop_map(|(meeting, attendee, bogus)| {
            Op::DeleteAttendee {
                meeting,
                attendee,
                bogus,
            }
        }),
        1 => i().prop_map(|meeting| Op::DeleteMeeting { meeting }),
        1 => (i(), i(), caps()).prop_map(|(meeting, attendee, caps)| Op::UpdateCapabilities {
            meeting,
            attendee,
            caps,
        }),
        1 => (i(), prop::collection::vec(i(), 0..3), caps()).prop_map(
            |(meeting, excluded, caps)| Op::UpdateCapabilitiesExcept {
                meeting,
                excluded,
                caps,
            }
        ),
        1 => (i(), prop::collection::vec(0u8..6, 0..4))
            .prop_map(|(meeting, keys)| Op::Tag { meeting, keys }),
        1 => (i(), prop::collection::vec(0u8..6, 0..3))
            .prop_map(|(meeting, keys)| Op::Untag { meeting, keys }),
        1 => (i(), 1usize..5).prop_map(|(meeting, page)| Op::List { meeting, page }),
        1 => (i(), i()).prop_map(|(meeting, attendee)| Op::Connect { meeting, attendee }),
        1 => i().prop_map(|connection| Op::Disconnect { connection }),
        2 => prop_oneof![4 => 0u64..MINUTE, 2 => 0u64..10 * MINUTE, 1 => 0u64..40 * MINUTE]
            .prop_map(|ms| Op::Advance { ms }),
    ]
}

/// What the test knows of one meeting it created.
#[derive(Debug)]
struct ModelMeeting {
    id: MeetingId,
    arn: String,
    primary: Option<MeetingId>,
    /// Live attendees in creation order, with their lower-cased ExternalUserId.
    attendees: Vec<(AttendeeId, String)>,
    /// Every attendee this meeting ever had, for ids that must no longer resolve.
    deleted: Vec<AttendeeId>,
    live: bool,
}

struct Model {
    plane: ControlPlane,
    limits: Limits,
    caller: Caller,
    now: EpochMillis,
    meetings: Vec<ModelMeeting>,
    connections: Vec<(MeetingId, AttendeeId)>,
}

const USERS: &[&str] = &[
    "alice", "bob", "carol", "dave", "eve", "frank", "grace", "heidi", "ivan", "judy",
];

impl Model {
    fn pick(&self, i: usize) -> Option<usize> {
        (!self.meetings.is_empty()).then(|| i % self.meetings.len())
    }

    /// An error is fine as long as it is a client error; a ServiceFailure never is.
    fn allow(e: &ControlError) -> Result<(), TestCaseError> {
        prop_assert_ne!(exception_of(e), Exception::ServiceFailure, "{:?}", e);
        Ok(())
    }

    fn record_attendee(
        &mut self,
        index: usize,
        a: &carillon_control::Attendee,
    ) -> Result<(), TestCaseError> {
        let m = &mut self.meetings[index];
        prop_assert_eq!(a.meeting_id, m.id);
        let lower = a.external_user_id.to_lowercase();
        match m.attendees.iter().find(|(_, user)| *user == lower) {
            // ExternalUserId is idempotent: the same user gets the same attendee back.
            Some((existing, _)) => prop_assert_eq!(*existing, a.id),
            None => {
                prop_assert!(
                    !m.deleted.contains(&a.id),
                    "a deleted attendee id came back"
                );
                m.attendees.push((a.id, lower));
            }
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let now = self.now;
        match op {
            Op::CreateMeeting {
                token,
                primary,
                max_count,
                video_none,
                tags,
            } => {
                let mut spec = spec("stateful");
                spec.primary_meeting_id = primary
                    .and_then(|p| self.pick(p))
                    .map(|p| self.meetings[p].id);
                if max_count.is_some() || *video_none {
                    spec.features = Some(MeetingFeatures {
                        video: video_none.then_some(VideoFeatures {
                            max_resolution: Some(VideoResolution::None),
                        }),
                        attendee: max_count.map(|n| AttendeeFeatures { max_count: Some(n) }),
                        ..MeetingFeatures::default()
                    });
                }
                spec.tags = tags
                    .iter()
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .map(|k| Tag {
                        key: format!("k{k}"),
                        value: "v".into(),
                    })
                    .collect();
                spec.tags.sort_by(|a, b| a.key.cmp(&b.key));
                let request = CreateMeeting {
                    client_request_token: token.map(|t| format!("token-{t}")),
                    spec,
                };
                match self.plane.create_meeting(request, &self.caller, now) {
                    Ok(m) => {
                        if let Some(known) = self.meetings.iter().find(|k| k.id == m.id) {
                            // Idempotent replay of a live meeting.
                            prop_assert!(known.live);
                        } else {
                            self.meetings.push(ModelMeeting {
                                id: m.id,
                                arn: m.arn(),
                                primary: m.spec.primary_meeting_id,
                                attendees: Vec::new(),
                                deleted: Vec::new(),
                                live: true,
                            });
                        }
                    }
                    Err(e) => Self::allow(&e)?,
                }
            }
            Op::CreateAttendee {
                meeting,
                user,
                upper,
                caps,
            } => {
                let Some(index) = self.pick(*meeting) else {
                    return Ok(());
                };
                let name = USERS[*user as usize % USERS.len()];
                let request = AttendeeRequest {
                    external_user_id: if *upper {
                        name.to_uppercase()
                    } else {
                        name.into()
                    },
                    capabilities: *caps,
                };
                match self
                    .plane
                    .create_attendee(self.meetings[index].id, request, now)
                {
                    Ok(a) => self.record_attendee(index, &a)?,
                    Err(e) => Self::allow(&e)?,
                }
            }
            Op::BatchCreate { meeting, users } => {
                let Some(index) = self.pick(*meeting) else {
                    return Ok(());
                };
                let items = users
                    .iter()
                    .map(|u| {
                        Ok(AttendeeRequest {
                            external_user_id: USERS[*u as usize % USERS.len()].into(),
                            capabilities: None,
                        })
                    })
                    .collect();
                match self
                    .plane
                    .batch_create_attendee(self.meetings[index].id, items, now)
                {
                    Ok(outcome) => {
                        for a in &outcome.attendees {
                            self.record_attendee(index, a)?;
                        }
                        for (_, e) in &outcome.errors {
                            Self::allow(e)?;
                        }
                    }
                    Err(e) => Self::allow(&e)?,
                }
            }
            Op::DeleteAttendee {
                meeting,
                attendee,
                bogus,
            } => {
                let Some(index) = self.pick(*meeting) else {
                    return Ok(());
                };
                let m = &self.meetings[index];
                let target = match (bogus, m.attendees.len()) {
                    (false, n) if n > 0 => Some(m.attendees[attendee % n].0),
                    _ => m.deleted.first().copied(),
                };
                let Some(target) = target else {
                    return Ok(());
                };
                match self.plane.delete_attendee(m.id, target, now) {
                    Ok(()) => {
                        let m = &mut self.meetings[index];
                        prop_assert!(m.live);
                        let before = m.attendees.len();
                        m.attendees.retain(|(a, _)| *a != target);
                        prop_assert_eq!(m.attendees.len() + 1, before);
                        m.deleted.push(target);
                    }
                    Err(e) => {
                        Self::allow(&e)?;
                        // A live attendee of a live meeting is always deletable.
                        prop_assert!(
                            !(m.live && m.attendees.iter().any(|(a, _)| *a == target)),
                            "{:?}",
                            e
                        );
                    }
                }
            }
            Op::DeleteMeeting { meeting } => {
                let Some(index) = self.pick(*meeting) else {
                    return Ok(());
                };
                let m = &self.meetings[index];
                match self.plane.delete_meeting(m.id, now) {
                    Ok(()) => prop_assert!(m.live),
                    Err(e) => {
                        Self::allow(&e)?;
                        prop_assert!(!m.live, "live meeting not deletable: {:?}", e);
                    }
                }
            }
            Op::UpdateCapabilities {
                meeting,
                attendee,
                caps,
            } => {
                let Some(index) = self.pick(*meeting) else {
                    return Ok(());
                };
                let m = &self.meetings[index];
                let Some(&(target, _)) = m.attendees.get(attendee % m.attendees.len().max(1))
                else {
                    return Ok(());
                };
                match self
                    .plane
                    .update_attendee_capabilities(m.id, target, *caps, now)
                {
                    Ok(a) => prop_assert_eq!(a.capabilities, *caps),
                    Err(e) => Self::allow(&e)?,
                }
            }
            Op::UpdateCapabilitiesExcept {
                meeting,
                excluded,
                caps,
            } => {
                let Some(index) = self.pick(*meeting) else {
                    return Ok(());
                };
                let m = &self.meetings[index];
                let excluded: Vec<AttendeeId> = excluded
                    .iter()
                    .filter_map(|i| m.attendees.get(i % m.attendees.len().max(1)))
                    .map(|(a, _)| *a)
                    .collect();
                if let Err(e) = self
                    .plane
                    .batch_update_capabilities_except(m.id, &excluded, *caps, now)
                {
                    Self::allow(&e)?;
                }
            }
            Op::Tag { meeting, keys } => {
                let Some(index) = self.pick(*meeting) else {
                    return Ok(());
                };
                let tags = keys
                    .iter()
                    .map(|k| Tag {
                        key: format!("k{k}"),
                        value: "w".into(),
                    })
                    .collect();
                let arn = self.meetings[index].arn.clone();
                if let Err(e) = self.plane.tag_resource(&arn, tags, now) {
                    Self::allow(&e)?;
                }
                if let Ok(tags) = self.plane.list_tags(&arn, now) {
                    prop_assert!(tags.len() <= self.limits.max_tags);
                }
            }
            Op::Untag { meeting, keys } => {
                let Some(index) = self.pick(*meeting) else {
                    return Ok(());
                };
                let keys: Vec<String> = keys.iter().map(|k| format!("k{k}")).collect();
                let arn = self.meetings[index].arn.clone();
                match self.plane.untag_resource(&arn, &keys, now) {
                    Ok(()) => {
                        let left = self.plane.list_tags(&arn, now).unwrap_or_default();
                        prop_assert!(left.iter().all(|t| !keys.contains(&t.key)));
                    }
                    Err(e) => Self::allow(&e)?,
                }
            }
            Op::List { meeting, page } => {
                if let Some(index) = self.pick(*meeting) {
                    self.check_paging(index, *page)?;
                }
            }
            Op::Connect { meeting, attendee } => {
                let Some(index) = self.pick(*meeting) else {
                    return Ok(());
                };
                let m = &self.meetings[index];
                if let Some(&(a, _)) = m.attendees.get(attendee % m.attendees.len().max(1)) {
                    self.plane.attendee_connected(m.id, a, now);
                    self.connections.push((m.id, a));
                }
            }
            Op::Disconnect { connection } => {
                if !self.connections.is_empty() {
                    let (m, a) = self
                        .connections
                        .swap_remove(connection % self.connections.len());
                    self.plane.attendee_disconnected(m, a, now);
                }
            }
            Op::Advance { ms } => {
                self.now += ms;
                self.plane.sweep(self.now);
            }
        }
        self.plane.take_changes();
        self.plane.take_notices();
        Ok(())
    }

    /// Pages through ListAttendees with `page` items at a time: every attendee exactly once,
    /// in creation order, as the model expects.
    fn check_paging(&mut self, index: usize, page: usize) -> Result<(), TestCaseError> {
        let id = self.meetings[index].id;
        let mut after = None;
        let mut seen = Vec::new();
        let mut last_seq = None;
        for _ in 0..1_000 {
            let result = self.plane.list_attendees(id, after, page, self.now);
            let listed = match result {
                Ok(listed) => listed,
                Err(e) => {
                    Self::allow(&e)?;
                    prop_assert!(
                        !self.meetings[index].live,
                        "live meeting not listable: {:?}",
                        e
                    );
                    return Ok(());
                }
            };
            prop_assert!(listed.attendees.len() <= page);
            for a in &listed.attendees {
                prop_assert!(last_seq < Some(a.seq), "not in creation order");
                last_seq = Some(a.seq);
                seen.push(a.id);
            }
            match listed.next_after {
                Some(next) => {
                    prop_assert_eq!(listed.attendees.len(), page, "short page before the end");
                    after = Some(next);
                }
                None => {
                    let expected: Vec<AttendeeId> = self.meetings[index]
                        .attendees
                        .iter()
                        .map(|(a, _)| *a)
                        .collect();
                    prop_assert_eq!(seen, expected);
                    return Ok(());
                }
            }
        }
        prop_assert!(false, "paging did not end");
        Ok(())
    }

    /// Learns which meetings ended on their own (timers, a primary's end) and checks the
    /// invariants of the whole plane.
    fn check_invariants(&mut self, page: usize) -> Result<(), TestCaseError> {
        let now = self.now;
        for m in &mut self.meetings {
            let live = match self.plane.get_meeting(m.id, now) {
                Ok(got) => {
                    prop_assert_eq!(got.id, m.id);
                    true
                }
                Err(ControlError::MeetingNotFound(_)) => false,
                Err(e) => return Err(TestCaseError::fail(format!("get_meeting: {e:?}"))),
            };
            // A meeting never comes back once ended.
            prop_assert!(m.live || !live, "meeting {} came back", m.id);
            if m.live && !live {
                m.live = false;
                let gone = m.attendees.drain(..).map(|(a, _)| a);
                m.deleted.extend(gone);
            }
        }
        let live: HashSet<MeetingId> = self
            .meetings
            .iter()
            .filter(|m| m.live)
            .map(|m| m.id)
            .collect();
        prop_assert_eq!(self.plane.meeting_count(), live.len());
        prop_assert!(self.plane.meeting_count() <= self.limits.max_active_meetings);
        for m in &self.meetings {
            if let (true, Some(primary)) = (m.live, m.primary) {
                prop_assert!(
                    live.contains(&primary),
                    "replica {} outlived {}",
                    m.id,
                    primary
                );
            }
        }
        for index in 0..self.meetings.len() {
            let (id, is_live) = (self.meetings[index].id, self.meetings[index].live);
            if !is_live {
                continue;
            }
            let all = self
                .plane
                .list_attendees(id, None, usize::MAX, now)
                .map_err(|e| TestCaseError::fail(format!("list_attendees: {e:?}")))?;
            prop_assert_eq!(all.next_after, None);
            for a in &all.attendees {
                let got = self.plane.get_attendee(id, a.id, now);
                prop_assert_eq!(got.as_ref(), Ok(a));
            }
            for gone in &self.meetings[index].deleted {
                let got = self.plane.get_attendee(id, *gone, now);
                prop_assert!(
                    matches!(got, Err(ControlError::AttendeeNotFound { .. })),
                    "deleted attendee {} of {}: {:?}",
                    gone,
                    id,
                    got
                );
            }
            self.check_paging(index, page)?;
        }
        self.plane.take_changes();
        self.plane.take_notices();
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(800))]

    #[test]
    fn control_plane_invariants_hold_over_random_sequences(
        seed in any::<u64>(),
        max_active_meetings in 2usize..6,
        max_attendees in 2usize..8,
        page in 1usize..5,
        ops in prop::collection::vec(op(), 5..60),
    ) {
        let limits = Limits {
            max_active_meetings,
            max_replicas_per_primary: 2,
            max_attendees,
            max_tags: 4,
            idle_timeout_ms: 15 * MINUTE,
            max_duration_ms: 120 * MINUTE,
            ..Limits::default()
        };
        let mut model = Model {
            plane: ControlPlane::new(
                limits.clone(),
                "000000000000".into(),
                Box::new(StdRng::seed_from_u64(seed)),
            ),
            limits,
            caller: Caller { region: "us-east-1".into() },
            now: START,
            meetings: Vec::new(),
            connections: Vec::new(),
        };
        for op in &ops {
            model.apply(op)?;
            model.check_invariants(page)?;
        }
    }
}
