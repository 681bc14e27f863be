//! Meeting lifecycle timers (with the test clock) and persistence across restarts.

use aws_sdk_chimesdkmeetings::types::{CreateAttendeeRequestItem, Tag};

use crate::harness::Server;

#[tokio::test]
async fn meetings_end_when_idle_or_too_old() {
    let server = Server::start(&[]);
    let client = server.client();
    let create = |name: &'static str| {
        client
            .create_meeting()
            .media_region("us-east-1")
            .external_meeting_id(name)
            .send()
    };
    let idle = create("idle").await.unwrap().meeting.unwrap();
    server.advance_clock(4 * 60).await;
    let young = create("young").await.unwrap().meeting.unwrap();
    client
        .get_meeting()
        .meeting_id(idle.meeting_id().unwrap())
        .send()
        .await
        .unwrap();
    server.advance_clock(61).await;
    let err = client
        .get_meeting()
        .meeting_id(idle.meeting_id().unwrap())
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_not_found_exception());
    client
        .get_meeting()
        .meeting_id(young.meeting_id().unwrap())
        .send()
        .await
        .unwrap();
    server.advance_clock(5 * 60).await;
    let err = client
        .get_meeting()
        .meeting_id(young.meeting_id().unwrap())
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_not_found_exception());
}

#[tokio::test]
async fn configured_idle_timeout() {
    let server = Server::start(&[
        "--meeting-idle-timeout",
        "30s",
        "--meeting-max-duration",
        "1h",
    ]);
    let client = server.client();
    let m = client
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("short")
        .send()
        .await
        .unwrap();
    let id = m.meeting().unwrap().meeting_id().unwrap();
    server.advance_clock(29).await;
    client.get_meeting().meeting_id(id).send().await.unwrap();
    server.advance_clock(2).await;
    assert!(client.get_meeting().meeting_id(id).send().await.is_err());
}

async fn populate(server: &Server) -> (String, String, Vec<(String, String)>, String) {
    let client = server.client();
    let primary = client
        .create_meeting_with_attendees()
        .client_request_token("persist-1")
        .media_region("eu-central-1")
        .external_meeting_id("persisted")
        .tags(Tag::builder().key("team").value("blue").build().unwrap())
        .attendees(
            CreateAttendeeRequestItem::builder()
                .external_user_id("alice")
                .build()
                .unwrap(),
        )
        .attendees(
            CreateAttendeeRequestItem::builder()
                .external_user_id("bob")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let meeting_id = primary.meeting().unwrap().meeting_id().unwrap().to_owned();
    let replica = client
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("persisted-replica")
        .primary_meeting_id(&meeting_id)
        .send()
        .await
        .unwrap();
    let replica_id = replica.meeting().unwrap().meeting_id().unwrap().to_owned();
    let tokens = primary
        .attendees()
        .iter()
        .map(|a| {
            (
                a.attendee_id().unwrap().to_owned(),
                a.join_token().unwrap().to_owned(),
            )
        })
        .collect();
    client
        .start_meeting_transcription()
        .meeting_id(&meeting_id)
        .transcription_configuration(
            aws_sdk_chimesdkmeetings::types::TranscriptionConfiguration::builder()
                .engine_transcribe_settings(
                    aws_sdk_chimesdkmeetings::types::EngineTranscribeSettings::builder()
                        .language_code(
                            aws_sdk_chimesdkmeetings::types::TranscribeLanguageCode::EnUs,
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let arn = primary.meeting().unwrap().meeting_arn().unwrap().to_owned();
    (meeting_id, replica_id, tokens, arn)
}

async fn check_restored(
    server: &Server,
    meeting_id: &str,
    replica_id: &str,
    tokens: &[(String, String)],
    arn: &str,
) {
    let client = server.client();
    let got = client
        .get_meeting()
        .meeting_id(meeting_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.meeting().unwrap().external_meeting_id(),
        Some("persisted")
    );
    // MediaPlacement follows the new process's ports.
    assert!(
        got.meeting()
            .unwrap()
            .media_placement()
            .unwrap()
            .signaling_url()
            .unwrap()
            .contains(&server.addr)
    );
    let replica = client
        .get_meeting()
        .meeting_id(replica_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        replica.meeting().unwrap().primary_meeting_id(),
        Some(meeting_id)
    );
    let list = client
        .list_attendees()
        .meeting_id(meeting_id)
        .send()
        .await
        .unwrap();
    let restored: Vec<(String, String)> = list
        .attendees()
        .iter()
        .map(|a| {
            (
                a.attendee_id().unwrap().to_owned(),
                a.join_token().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(restored, tokens);
    let tags = client
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags().len(), 1);
    // The idempotency record survived: the same token returns the same meeting.
    let again = client
        .create_meeting_with_attendees()
        .client_request_token("persist-1")
        .media_region("eu-central-1")
        .external_meeting_id("persisted")
        .tags(Tag::builder().key("team").value("blue").build().unwrap())
        .attendees(
            CreateAttendeeRequestItem::builder()
                .external_user_id("alice")
                .build()
                .unwrap(),
        )
        .attendees(
            CreateAttendeeRequestItem::builder()
                .external_user_id("bob")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(again.meeting().unwrap().meeting_id(), Some(meeting_id));
    let again_tokens: Vec<&str> = again
        .attendees()
        .iter()
        .map(|a| a.join_token().unwrap())
        .collect();
    assert_eq!(
        again_tokens,
        tokens.iter().map(|t| t.1.as_str()).collect::<Vec<_>>()
    );
    // The join tokens still authenticate.
    let response = server
        .raw(
            "POST",
            "/v1/client-events",
            &[
                ("authorization", &format!("Bearer {}", tokens[0].1)),
                ("content-type", "application/json"),
            ],
            br#"{"metadata":{},"events":[]}"#,
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
}

#[tokio::test]
async fn everything_survives_a_graceful_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let (meeting_id, replica_id, tokens, arn) = populate(&server).await;
    server.stop(false);
    let server = Server::start_in(dir.path(), &[]);
    check_restored(&server, &meeting_id, &replica_id, &tokens, &arn).await;
}

#[tokio::test]
async fn everything_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let (meeting_id, replica_id, tokens, arn) = populate(&server).await;
    server.stop(true);
    let server = Server::start_in(dir.path(), &[]);
    check_restored(&server, &meeting_id, &replica_id, &tokens, &arn).await;
}

#[tokio::test]
async fn end_timers_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let client = server.client();
    // Create the meeting 3 minutes ahead of the real time, so its stored timer base differs from
    // anything a restart could recompute.
    server.advance_clock(3 * 60).await;
    let m = client
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("timer")
        .send()
        .await
        .unwrap();
    let id = m.meeting().unwrap().meeting_id().unwrap().to_owned();
    server.stop(true);
    // The new process's clock starts at real time again.
    let server = Server::start_in(dir.path(), &[]);
    let client = server.client();
    // Five minutes after the restart: a timer reset at restart would have fired, the stored one
    // (three minutes later) has not.
    server.advance_clock(5 * 60 + 1).await;
    client.get_meeting().meeting_id(&id).send().await.unwrap();
    server.advance_clock(3 * 60).await;
    let err = client
        .get_meeting()
        .meeting_id(&id)
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_not_found_exception());
    server.stop(false);
    // An ended meeting stays ended after another restart.
    let server = Server::start_in(dir.path(), &[]);
    let err = server
        .client()
        .get_meeting()
        .meeting_id(&id)
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_not_found_exception());
}

#[tokio::test]
async fn maximum_duration() {
    let server = Server::start(&[
        "--meeting-idle-timeout",
        "48h",
        "--meeting-max-duration",
        "24h",
    ]);
    let client = server.client();
    let m = client
        .create_meeting()
        .media_region("us-east-1")
        .external_meeting_id("long")
        .send()
        .await
        .unwrap();
    let id = m.meeting().unwrap().meeting_id().unwrap();
    server.advance_clock(24 * 3600 - 5).await;
    client.get_meeting().meeting_id(id).send().await.unwrap();
    server.advance_clock(10).await;
    assert!(client.get_meeting().meeting_id(id).send().await.is_err());
}

#[tokio::test]
async fn transcription_state_is_logged_and_survives_restarts() {
    use aws_sdk_chimesdkmeetings::types::{
        EngineTranscribeMedicalSettings, TranscribeMedicalLanguageCode, TranscribeMedicalRegion,
        TranscribeMedicalSpecialty, TranscribeMedicalType, TranscriptionConfiguration,
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_logged(dir.path(), &[]);
    let client = server.client();
    let meeting_id = client
        .create_meeting()
        .media_region("eu-central-1")
        .external_meeting_id("transcribed")
        .send()
        .await
        .unwrap()
        .meeting
        .unwrap()
        .meeting_id
        .unwrap();
    client
        .start_meeting_transcription()
        .meeting_id(&meeting_id)
        .transcription_configuration(
            TranscriptionConfiguration::builder()
                .engine_transcribe_medical_settings(
                    EngineTranscribeMedicalSettings::builder()
                        .language_code(TranscribeMedicalLanguageCode::EnUs)
                        .specialty(TranscribeMedicalSpecialty::Cardiology)
                        .r#type(TranscribeMedicalType::Dictation)
                        .region(TranscribeMedicalRegion::UsWest2)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    // The start is logged with the meeting, the engine, the region and the settings.
    server.wait_for_log(&[
        "transcription started",
        &meeting_id,
        "TranscribeMedical",
        "us-west-2",
        "Specialty=CARDIOLOGY",
    ]);

    // A graceful restart, then a crash: the recorded state is still there, which the stop
    // after them proves by logging what it stopped.
    server.stop(false);
    let server = Server::start_logged(dir.path(), &[]);
    server.stop(true);
    let server = Server::start_logged(dir.path(), &[]);
    let client = server.client();
    client
        .stop_meeting_transcription()
        .meeting_id(&meeting_id)
        .send()
        .await
        .unwrap();
    server.wait_for_log(&[
        "transcription stopped",
        &meeting_id,
        "TranscribeMedical",
        "us-west-2",
        "Type=DICTATION",
    ]);
    // Stopped is persisted as well: after another restart nothing is running.
    server.stop(false);
    let server = Server::start_logged(dir.path(), &[]);
    server
        .client()
        .stop_meeting_transcription()
        .meeting_id(&meeting_id)
        .send()
        .await
        .unwrap();
    server.wait_for_log(&["none was running", &meeting_id]);
}
