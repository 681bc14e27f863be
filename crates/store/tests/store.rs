//! The SQLite store against a real database file: round trips, restart, group commit.

use carillon_control::*;
use carillon_store::{SqliteStore, Store, Synchronous};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn plane() -> ControlPlane {
    ControlPlane::new(
        Limits::default(),
        "000000000000".into(),
        Box::new(StdRng::seed_from_u64(1)),
    )
}

fn spec(name: &str) -> MeetingSpec {
    MeetingSpec {
        external_meeting_id: name.into(),
        meeting_host_id: Some("host".into()),
        media_region: "eu-west-2".into(),
        notifications: Some(Notifications {
            sqs_queue_arn: Some("arn:aws:sqs:us-east-1:000000000000:q".into()),
            ..Default::default()
        }),
        features: Some(MeetingFeatures {
            audio: Some(AudioFeatures {
                echo_reduction: Some(FeatureStatus::Available),
            }),
            ..Default::default()
        }),
        primary_meeting_id: None,
        tenant_ids: vec!["tenant-1".into()],
        tags: vec![Tag {
            key: "team".into(),
            value: "blue".into(),
        }],
        network_type: Some(NetworkType::DualStack),
    }
}

#[test]
fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carillon.db");
    let caller = Caller {
        region: "us-east-1".into(),
    };
    let mut p = plane();
    let (meeting, attendees, kept) = {
        let store = SqliteStore::open(&path, Synchronous::Normal).unwrap();
        assert_eq!(store.load().unwrap(), Snapshot::default());
        let m = p
            .create_meeting(
                CreateMeeting {
                    client_request_token: Some("tok".into()),
                    spec: spec("m"),
                },
                &caller,
                1000,
            )
            .unwrap();
        let mut replica_spec = spec("r");
        replica_spec.primary_meeting_id = Some(m.id);
        let r = p
            .create_meeting(
                CreateMeeting {
                    client_request_token: None,
                    spec: replica_spec,
                },
                &caller,
                1000,
            )
            .unwrap();
        let attendees: Vec<Attendee> = (0..5)
            .map(|i| {
                p.create_attendee(
                    m.id,
                    AttendeeRequest {
                        external_user_id: format!("user-{i}"),
                        capabilities: None,
                    },
                    1000,
                )
                .unwrap()
            })
            .collect();
        p.delete_attendee(m.id, attendees[2].id, 1001).unwrap();
        p.update_attendee_capabilities(
            m.id,
            attendees[0].id,
            Capabilities {
                audio: MediaCapability::Receive,
                video: MediaCapability::None,
                content: MediaCapability::None,
            },
            1002,
        )
        .unwrap();
        p.tag_resource(
            &m.arn(),
            vec![Tag {
                key: "env".into(),
                value: "ci".into(),
            }],
            1003,
        )
        .unwrap();
        let gone = p
            .create_meeting(
                CreateMeeting {
                    client_request_token: None,
                    spec: spec("gone"),
                },
                &caller,
                1000,
            )
            .unwrap();
        p.create_attendee(
            gone.id,
            AttendeeRequest {
                external_user_id: "x-user".into(),
                capabilities: None,
            },
            1000,
        )
        .unwrap();
        p.delete_meeting(gone.id, 1004).unwrap();
        store.commit(p.take_changes()).wait().unwrap();
        (
            p.get_meeting(m.id, 1005).unwrap(),
            vec![r],
            p.list_attendees(m.id, None, 100, 1005).unwrap().attendees,
        )
    };
    let store = SqliteStore::open(&path, Synchronous::Normal).unwrap();
    let snapshot = store.load().unwrap();
    assert_eq!(snapshot.meetings.len(), 2);
    assert_eq!(
        snapshot
            .meetings
            .iter()
            .find(|x| x.id == meeting.id)
            .unwrap(),
        &meeting
    );
    assert_eq!(
        snapshot
            .meetings
            .iter()
            .find(|x| x.id == attendees[0].id)
            .unwrap(),
        &attendees[0]
    );
    let mut loaded: Vec<Attendee> = snapshot.attendees.clone();
    loaded.sort_by_key(|a| a.seq);
    assert_eq!(loaded, kept);
    assert_eq!(carillon_store::schema_version(&path).unwrap(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_are_grouped_and_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carillon.db");
    let store = std::sync::Arc::new(SqliteStore::open(&path, Synchronous::Normal).unwrap());
    let plane = std::sync::Arc::new(std::sync::Mutex::new(plane()));
    let caller = Caller {
        region: "us-east-1".into(),
    };
    let meeting = {
        let mut p = plane.lock().unwrap();
        let m = p
            .create_meeting(
                CreateMeeting {
                    client_request_token: None,
                    spec: spec("m"),
                },
                &caller,
                0,
            )
            .unwrap();
        (m, store.commit(p.take_changes()))
    };
    let meeting = {
        let (m, ticket) = meeting;
        ticket.await.unwrap();
        m
    };
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        let plane = plane.clone();
        tasks.push(tokio::spawn(async move {
            let ticket = {
                let mut p = plane.lock().unwrap();
                p.create_attendee(
                    meeting.id,
                    AttendeeRequest {
                        external_user_id: format!("u-{i}"),
                        capabilities: None,
                    },
                    0,
                )
                .unwrap();
                store.commit(p.take_changes())
            };
            ticket.await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    drop(store);
    let reopened = SqliteStore::open(&path, Synchronous::Full).unwrap();
    assert_eq!(reopened.load().unwrap().attendees.len(), 200);
}
