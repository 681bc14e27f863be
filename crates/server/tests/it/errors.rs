//! Every error class a client can provoke, as the SDK surfaces it.

use aws_sdk_chimesdkmeetings::error::ProvideErrorMetadata;
use aws_sdk_chimesdkmeetings::types::{
    AttendeeCapabilities, AttendeeFeatures, MediaCapabilities, MeetingFeaturesConfiguration,
};

use crate::harness::Server;

const NO_MEETING: &str = "00000000-0000-4000-8000-000000000000";

#[tokio::test]
async fn validation_errors_are_bad_requests_that_say_what_is_wrong() {
    let server = Server::start(&[]);
    let client = server.client();
    let long = "x".repeat(65);
    let cases: Vec<(&str, &str, &str, &str)> = vec![
        // (MediaRegion, ExternalMeetingId, ClientRequestToken, expected text)
        ("mars-1", "ok-id", "tok-1", "MediaRegion"),
        ("us-east-1", &long, "tok-2", "ExternalMeetingId"),
        ("us-east-1", "aws:reserved", "tok-3", "reserved prefix"),
        ("us-east-1", "semi;colon", "tok-4", "ExternalMeetingId"),
        ("us-east-1", "ok-id", "bad token!", "ClientRequestToken"),
    ];
    for (region, external, token, expected) in cases {
        let err = client
            .create_meeting()
            .media_region(region)
            .external_meeting_id(external)
            .client_request_token(token)
            .send()
            .await
            .unwrap_err();
        let err = err.into_service_error();
        assert!(err.is_bad_request_exception(), "{err:?}");
        assert!(
            err.message().unwrap().contains(expected),
            "{:?}",
            err.message()
        );
        assert!(err.meta().code() == Some("BadRequestException"));
    }
    let err = client
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("tenants")
        .tenant_ids("aaaa-repeats")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.message().unwrap().contains("TenantIds[0]"), "{err:?}");

    let meeting = client
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("m1")
        .send()
        .await
        .unwrap()
        .meeting
        .unwrap();
    let id = meeting.meeting_id().unwrap();
    let err = client
        .create_attendee()
        .meeting_id(id)
        .external_user_id("u".repeat(65))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_bad_request_exception());
    let err = client
        .update_attendee_capabilities()
        .meeting_id(id)
        .attendee_id(NO_MEETING)
        .capabilities(
            AttendeeCapabilities::builder()
                .audio(MediaCapabilities::from("Loud"))
                .video(MediaCapabilities::None)
                .content(MediaCapabilities::None)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_bad_request_exception());
    assert!(err.message().unwrap().contains("Loud"), "{err:?}");
    let err = client
        .list_attendees()
        .meeting_id(id)
        .max_results(101)
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_bad_request_exception());
    let err = client
        .get_meeting()
        .meeting_id("not-a-guid")
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_bad_request_exception());
    let err = client
        .start_meeting_transcription()
        .meeting_id(id)
        .transcription_configuration(
            aws_sdk_chimesdkmeetings::types::TranscriptionConfiguration::builder().build(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_bad_request_exception());
    assert!(err.message().unwrap().contains("EngineTranscribeSettings"));
}

#[tokio::test]
async fn not_found_for_unknown_meetings_and_attendees() {
    let server = Server::start(&[]);
    let client = server.client();
    let err = client
        .get_meeting()
        .meeting_id(NO_MEETING)
        .send()
        .await
        .unwrap_err();
    let err = err.into_service_error();
    assert!(err.is_not_found_exception());
    assert!(err.message().unwrap().contains(NO_MEETING));
    assert!(
        client
            .delete_meeting()
            .meeting_id(NO_MEETING)
            .send()
            .await
            .unwrap_err()
            .into_service_error()
            .is_not_found_exception()
    );
    assert!(
        client
            .create_attendee()
            .meeting_id(NO_MEETING)
            .external_user_id("someone")
            .send()
            .await
            .unwrap_err()
            .into_service_error()
            .is_not_found_exception()
    );
    let meeting = client
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("mm")
        .send()
        .await
        .unwrap()
        .meeting
        .unwrap();
    let id = meeting.meeting_id().unwrap();
    for err in [
        client
            .get_attendee()
            .meeting_id(id)
            .attendee_id(NO_MEETING)
            .send()
            .await
            .unwrap_err()
            .into_service_error()
            .is_not_found_exception(),
        client
            .delete_attendee()
            .meeting_id(id)
            .attendee_id(NO_MEETING)
            .send()
            .await
            .unwrap_err()
            .into_service_error()
            .is_not_found_exception(),
        client
            .stop_meeting_transcription()
            .meeting_id(NO_MEETING)
            .send()
            .await
            .unwrap_err()
            .into_service_error()
            .is_not_found_exception(),
    ] {
        assert!(err);
    }
}

#[tokio::test]
async fn active_meeting_quota() {
    let server = Server::start(&["--max-active-meetings", "3"]);
    let client = server.client();
    for i in 0..3 {
        client
            .create_meeting()
            .media_region("us-east-1")
            .external_meeting_id(format!("m{i}"))
            .send()
            .await
            .unwrap();
    }
    let err = client
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("m4")
        .send()
        .await
        .unwrap_err();
    let raw_status = err.raw_response().map(|r| r.status().as_u16());
    let err = err.into_service_error();
    assert!(err.is_limit_exceeded_exception(), "{err:?}");
    assert_eq!(raw_status, Some(400));
}

#[tokio::test]
async fn authentication_failures_are_forbidden() {
    let server = Server::start(&[]);
    let wrong_secret = server.client_with("AKIDCARILLONDEV", "not-the-secret", "us-east-1");
    let err = wrong_secret
        .get_meeting()
        .meeting_id(NO_MEETING)
        .send()
        .await
        .unwrap_err();
    let err = err.into_service_error();
    assert!(err.is_forbidden_exception(), "{err:?}");
    assert!(
        err.message().unwrap().contains("signature"),
        "{:?}",
        err.message()
    );
    let unknown = server.client_with("AKIDUNKNOWN", "whatever", "us-east-1");
    let err = unknown
        .get_meeting()
        .meeting_id(NO_MEETING)
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_forbidden_exception());

    // Only a plausible region can be the scope region (it goes into meeting ARNs): anything
    // else is refused before the signature is even checked, with a message that says so.
    let long = format!("us-{}-1", "x".repeat(40));
    for region in [
        "local",
        "US-EAST-1",
        "us-east",
        "us-east-1a",
        "eu-1",
        long.as_str(),
    ] {
        let client = server.client_with("AKIDCARILLONDEV", "carillon-dev-secret", region);
        let err = client
            .create_meeting()
            .media_region("us-east-1")
            .external_meeting_id("bad-region")
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            err.raw_response().map(|r| r.status().as_u16()),
            Some(403),
            "{region}"
        );
        let err = err.into_service_error();
        assert!(err.is_forbidden_exception(), "{region}: {err:?}");
        assert!(
            err.message().unwrap().contains("not a valid region"),
            "{region}: {:?}",
            err.message()
        );
    }

    // Any plausible region is accepted and ends up in the meeting ARN.
    let client = server.client_with("AKIDCARILLONDEV", "carillon-dev-secret", "ap-southeast-1");
    let meeting = client
        .create_meeting()
        .media_region("ap-southeast-1")
        .external_meeting_id("sg")
        .send()
        .await
        .unwrap()
        .meeting
        .unwrap();
    assert!(
        meeting
            .meeting_arn()
            .unwrap()
            .starts_with("arn:aws:chime:ap-southeast-1:000000000000:meeting/")
    );
}

#[tokio::test]
async fn configured_credentials_replace_the_development_pair() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        dir.path(),
        &[],
        &[
            ("CARILLON_CREDENTIALS", "AKIDTEAM:team-secret"),
            ("CARILLON_ACCOUNT_ID", "111122223333"),
        ],
    );
    let team = server.client_with("AKIDTEAM", "team-secret", "us-east-1");
    let meeting = team
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("team")
        .send()
        .await
        .unwrap()
        .meeting
        .unwrap();
    assert!(meeting.meeting_arn().unwrap().contains(":111122223333:"));
    let dev = server.client();
    let err = dev
        .get_meeting()
        .meeting_id(meeting.meeting_id().unwrap())
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_forbidden_exception());
}

#[tokio::test]
async fn rate_limits_when_enabled() {
    let server = Server::start(&["--api-rate-limit", "--api-rate", "1", "--api-burst", "3"]);
    let client = server.client();
    let mut throttled = 0;
    for _ in 0..6 {
        match client.get_meeting().meeting_id(NO_MEETING).send().await {
            Err(e) => {
                let e = e.into_service_error();
                if e.is_throttling_exception() {
                    throttled += 1;
                } else {
                    assert!(e.is_not_found_exception(), "{e:?}");
                }
            }
            Ok(_) => panic!("no such meeting"),
        }
    }
    assert!(throttled >= 2, "throttled {throttled}");
    // Other operations have their own bucket.
    let err = client
        .delete_meeting()
        .meeting_id(NO_MEETING)
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_not_found_exception());
}

#[tokio::test]
async fn validation_exception_mode() {
    // On/off settings read 1/0 from the environment.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(dir.path(), &[], &[("CARILLON_VALIDATION_EXCEPTION", "1")]);
    let client = server.client();
    let err = client
        .create_meeting()
        .media_region("mars-1")
        .external_meeting_id("x1")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.meta().code(), Some("ValidationException"));
    assert!(err.message().unwrap().contains("MediaRegion"));
}

#[tokio::test]
async fn max_count_cannot_exceed_the_configured_attendee_limit() {
    let server = Server::start(&["--max-attendees", "10"]);
    let client = server.client();
    let create = |max_count: i32| {
        client
            .create_meeting()
            .media_region("us-east-1")
            .external_meeting_id("capped")
            .meeting_features(
                MeetingFeaturesConfiguration::builder()
                    .attendee(AttendeeFeatures::builder().max_count(max_count).build())
                    .build(),
            )
            .send()
    };
    let err = create(11).await.unwrap_err().into_service_error();
    assert!(err.is_bad_request_exception(), "{err:?}");
    let message = err.message().unwrap();
    assert!(
        message.contains("MaxCount") && message.contains("at most 10"),
        "{message}"
    );
    // The model's own range still applies first.
    let err = create(251).await.unwrap_err().into_service_error();
    assert!(err.is_bad_request_exception(), "{err:?}");
    create(10).await.unwrap();
}

#[tokio::test]
async fn out_of_range_settings_refuse_to_start() {
    for (args, expected) in [
        (
            &["--max-attendees", "0"][..],
            "max-attendees must be between 1 and 250",
        ),
        (
            &["--max-attendees", "251"][..],
            "max-attendees must be between 1 and 250",
        ),
        (
            &["--high-resolution-max-attendees", "300"][..],
            "high-resolution-max-attendees must be between 1 and 250",
        ),
        (
            &["--max-active-meetings", "0"][..],
            "max-active-meetings must be between",
        ),
        (
            &["--meeting-idle-timeout", "0s"][..],
            "meeting-idle-timeout must be between",
        ),
        (
            &["--public-url", "meet.example.com"][..],
            "public-url must be an http:// or https:// URL",
        ),
        (
            &["--public-url", "ftp://meet.example.com"][..],
            "public-url must be",
        ),
        (&["--public-url", "https://"][..], "public-url must be"),
    ] {
        let stderr = Server::refuses_to_start(args);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
