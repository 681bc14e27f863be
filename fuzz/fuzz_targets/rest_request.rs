//! REST requests through the whole sans-IO pipeline of `carillon-api`:
//! `route` → `parse_command` → `execute` → `render`, against a control plane seeded with two
//! meetings (one a replica) and attendees.
//!
//! Input: up to 8 requests separated by two NUL bytes; each request is
//! `METHOD\nPATH\nQUERY\nBODY` (missing parts are empty, the body is the rest, raw bytes).
//! `@M`, `@P`, `@A` and `@R` anywhere in the path, query or body stand for the seeded meeting
//! id, its replica's id, an attendee id and the meeting ARN, so the fuzzer reaches live
//! objects without guessing GUIDs. One simulated minute passes before each request, so the
//! idle timer fires during longer inputs.
//!
//! Beyond "never panics", the target checks the contract: failures are 4xx with a message
//! (domain errors never a ServiceFailure), and replies render to JSON without `null`.

#![no_main]

use carillon_api::{
    Exception, Placement, Query, api_error, exception_of, execute, parse_command, render, route,
};
use carillon_control::{AttendeeRequest, Caller, ControlPlane, CreateMeeting, Limits, MeetingSpec};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;

const START: u64 = 1_700_000_000_000;

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

struct Seeded {
    plane: ControlPlane,
    /// (placeholder, value) pairs.
    labels: Vec<(&'static [u8], String)>,
}

fn seeded() -> Seeded {
    let caller = Caller {
        region: "us-east-1".into(),
    };
    let mut plane = ControlPlane::new(
        Limits::default(),
        "000000000000".into(),
        Box::new(StdRng::seed_from_u64(1)),
    );
    let create = CreateMeeting {
        client_request_token: Some("seed-token".into()),
        spec: spec("seed"),
    };
    let meeting = plane
        .create_meeting(create, &caller, START)
        .expect("seed meeting");
    let mut replica_spec = spec("replica");
    replica_spec.primary_meeting_id = Some(meeting.id);
    let replica = plane
        .create_meeting(
            CreateMeeting {
                client_request_token: None,
                spec: replica_spec,
            },
            &caller,
            START,
        )
        .expect("seed replica");
    let attendee = plane
        .create_attendee(
            meeting.id,
            AttendeeRequest {
                external_user_id: "seed-user".into(),
                capabilities: None,
            },
            START,
        )
        .expect("seed attendee");
    plane.take_changes();
    plane.take_notices();
    Seeded {
        labels: vec![
            (b"@M", meeting.id.to_string()),
            (b"@P", replica.id.to_string()),
            (b"@A", attendee.id.to_string()),
            (b"@R", meeting.arn()),
        ],
        plane,
    }
}

fn substitute(input: &[u8], labels: &[(&'static [u8], String)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    'outer: while let Some((&first, tail)) = rest.split_first() {
        for (label, value) in labels {
            if let Some(after) = rest.strip_prefix(*label) {
                out.extend_from_slice(value.as_bytes());
                rest = after;
                continue 'outer;
            }
        }
        out.push(first);
        rest = tail;
    }
    out
}

fn no_null(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => false,
        serde_json::Value::Array(items) => items.iter().all(no_null),
        serde_json::Value::Object(members) => members.values().all(no_null),
        _ => true,
    }
}

fn check_error(e: &carillon_api::ApiError) {
    let status = e.exception.status();
    assert!((400..500).contains(&status), "status {status}: {e:?}");
    assert!(!e.message.trim().is_empty(), "empty message: {e:?}");
    let body: serde_json::Value =
        serde_json::from_slice(&e.body("fuzz")).expect("error bodies are JSON");
    assert!(no_null(&body), "null in error body: {body}");
}

fuzz_target!(|data: &[u8]| {
    let Seeded { mut plane, labels } = seeded();
    let caller = Caller {
        region: "us-east-1".into(),
    };
    let placement = Placement::new("http://127.0.0.1:8080", 40000);
    let mut now = START;
    let mut rest = data;
    for _ in 0..8 {
        if rest.is_empty() {
            break;
        }
        let (request, next) = match rest.windows(2).position(|w| w == [0, 0]) {
            Some(i) => (&rest[..i], &rest[i + 2..]),
            None => (rest, &[][..]),
        };
        rest = next;
        now += 60_000;

        let mut parts = request.splitn(4, |&b| b == b'\n');
        let method = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        let path = String::from_utf8_lossy(&substitute(parts.next().unwrap_or_default(), &labels))
            .into_owned();
        let raw_query =
            String::from_utf8_lossy(&substitute(parts.next().unwrap_or_default(), &labels))
                .into_owned();
        let body = substitute(parts.next().unwrap_or_default(), &labels);

        let query = Query::parse(&raw_query);
        let routed = match route(&method, &path, &query) {
            Ok(routed) => routed,
            Err(e) => {
                check_error(&e);
                continue;
            }
        };
        let command = match parse_command(routed, &query, &body, Exception::BadRequest) {
            Ok(command) => command,
            Err(e) => {
                check_error(&e);
                continue;
            }
        };
        let result = execute(&mut plane, command, &caller, now);
        plane.take_changes();
        plane.take_notices();
        match result {
            Ok(reply) => {
                let (status, body) = render(&reply, &placement);
                match status {
                    200 if body.is_empty() => {}
                    200 => {
                        let json: serde_json::Value =
                            serde_json::from_slice(&body).expect("replies are JSON");
                        assert!(no_null(&json), "null in reply: {json}");
                    }
                    204 => assert!(body.is_empty(), "204 with a body"),
                    other => panic!("unexpected status {other}"),
                }
            }
            Err(e) => {
                assert_ne!(exception_of(&e), Exception::ServiceFailure, "{e:?}");
                check_error(&api_error(e, Exception::BadRequest));
            }
        }
        assert!(plane.meeting_count() <= Limits::default().max_active_meetings);
    }
});
