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
    assert_eq!(carillon_store::schema_version(&path).unwrap(), Some(3));
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

// ----- the events outbox -----

const QUEUE: &str = "sqs:arn:aws:sqs:us-east-1:000000000000:q";
const HOOK: &str = "webhook:http://127.0.0.1:9/hook";

fn outbox_plane() -> ControlPlane {
    let mut p = plane();
    p.set_event_targets(vec![EventTarget::Webhook("http://127.0.0.1:9/hook".into())]);
    p
}

fn keys_of(deliveries: &[carillon_store::Delivery]) -> Vec<(u64, String)> {
    deliveries
        .iter()
        .map(|d| (d.seq, d.event.kind.event_type().to_owned()))
        .collect()
}

#[test]
fn events_are_written_with_their_change_and_survive_a_reopen() {
    use carillon_store::Settlement;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carillon.db");
    let caller = Caller {
        region: "us-east-1".into(),
    };
    let mut p = outbox_plane();
    let meeting = {
        let store = SqliteStore::open(&path, Synchronous::Normal).unwrap();
        let m = p
            .create_meeting(
                CreateMeeting {
                    client_request_token: None,
                    spec: spec("m"),
                },
                &caller,
                1_000,
            )
            .unwrap();
        for i in 0..3 {
            p.create_attendee(
                m.id,
                AttendeeRequest {
                    external_user_id: format!("u{i}"),
                    capabilities: None,
                },
                1_001,
            )
            .unwrap();
        }
        store.commit(p.take_changes()).wait().unwrap();
        // The commit raised the signal for both targets.
        let mut raised: Vec<String> = store.outbox_signal().take_targets().into_iter().collect();
        raised.sort();
        assert_eq!(raised, vec![QUEUE.to_owned(), HOOK.to_owned()]);
        m
    };
    // After a restart: the meeting and its four events, for both targets.
    let store = SqliteStore::open(&path, Synchronous::Normal).unwrap();
    assert_eq!(store.load().unwrap().attendees.len(), 3);
    let mut targets = store.outbox_targets().unwrap();
    targets.sort();
    assert_eq!(targets, vec![QUEUE.to_owned(), HOOK.to_owned()]);
    let due = store.outbox_due(HOOK, 5_000, 100).unwrap();
    assert_eq!(due.len(), 4);
    assert_eq!(due[0].event.kind, EventKind::MeetingStarted);
    assert_eq!(due[0].event.meeting_id, meeting.id);
    assert!(due.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(due.iter().all(|d| d.attempts == 0 && d.target == HOOK));
    // Paging: a limit of 3, then the rest.
    assert_eq!(store.outbox_due(HOOK, 5_000, 3).unwrap().len(), 3);

    // Delivered to the webhook: gone for it, still pending for the queue.
    let delivered: Vec<Settlement> = due
        .iter()
        .take(2)
        .map(|d| Settlement::Delivered {
            seq: d.seq,
            target: HOOK.into(),
        })
        .collect();
    // One retry later, one abandoned.
    let mut settlements = delivered;
    settlements.push(Settlement::Retry {
        seq: due[2].seq,
        target: HOOK.into(),
        next_attempt: 9_000,
        error: "HTTP 503".into(),
    });
    settlements.push(Settlement::Abandon {
        seq: due[3].seq,
        target: HOOK.into(),
        at: 6_000,
        error: "too old".into(),
    });
    store.outbox_settle(settlements).wait().unwrap();
    assert!(store.outbox_due(HOOK, 5_000, 100).unwrap().is_empty());
    assert_eq!(store.outbox_next_due(HOOK).unwrap(), Some(9_000));
    let retried = store.outbox_due(HOOK, 9_000, 100).unwrap();
    assert_eq!(keys_of(&retried), keys_of(&due[2..3]));
    assert_eq!(retried[0].attempts, 1);
    let counts = store.outbox_counts().unwrap();
    let hook = counts.iter().find(|c| c.target == HOOK).unwrap();
    assert_eq!((hook.pending, hook.abandoned), (1, 1));
    let queue = counts.iter().find(|c| c.target == QUEUE).unwrap();
    assert_eq!((queue.pending, queue.abandoned), (4, 0));

    // The queue gets everything: events whose every delivery is settled disappear.
    let all: Vec<Settlement> = store
        .outbox_due(QUEUE, 0, 100)
        .unwrap()
        .iter()
        .map(|d| Settlement::Delivered {
            seq: d.seq,
            target: QUEUE.into(),
        })
        .collect();
    assert_eq!(all.len(), 4);
    store.outbox_settle(all).wait().unwrap();
    assert_eq!(store.outbox_next_due(QUEUE).unwrap(), None);
    assert_eq!(store.outbox_targets().unwrap(), vec![HOOK.to_owned()]);
    // Pruning keeps recent abandoned deliveries, then removes them and their events.
    store.outbox_prune(6_000).wait().unwrap();
    assert_eq!(store.outbox_counts().unwrap().len(), 1);
    store.outbox_prune(6_001).wait().unwrap();
    let hook = &store.outbox_counts().unwrap()[0];
    assert_eq!((hook.pending, hook.abandoned), (1, 0));
    // The last delivery goes: the outbox is empty, and stays so after a reopen.
    store
        .outbox_settle(vec![Settlement::Delivered {
            seq: due[2].seq,
            target: HOOK.into(),
        }])
        .wait()
        .unwrap();
    drop(store);
    let store = SqliteStore::open(&path, Synchronous::Normal).unwrap();
    assert!(store.outbox_counts().unwrap().is_empty());
    assert!(store.outbox_targets().unwrap().is_empty());
    let conn = rusqlite_count(&path);
    assert_eq!(conn, (0, 0));
}

#[test]
fn abandon_older_gives_up_a_whole_backlog() {
    use carillon_store::Settlement;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carillon.db");
    let store = SqliteStore::open(&path, Synchronous::Normal).unwrap();
    let mut p = outbox_plane();
    let caller = Caller {
        region: "us-east-1".into(),
    };
    for (i, now) in [(0, 100u64), (1, 200), (2, 300)] {
        p.create_meeting(
            CreateMeeting {
                client_request_token: None,
                spec: spec(&format!("m{i}")),
            },
            &caller,
            now,
        )
        .unwrap();
    }
    store.commit(p.take_changes()).wait().unwrap();
    store
        .outbox_settle(vec![Settlement::AbandonOlder {
            target: HOOK.into(),
            created_before: 250,
            at: 1_000,
            error: "down for too long".into(),
        }])
        .wait()
        .unwrap();
    let hook = store
        .outbox_counts()
        .unwrap()
        .into_iter()
        .find(|c| c.target == HOOK)
        .unwrap();
    assert_eq!((hook.pending, hook.abandoned), (1, 2));
    assert_eq!(store.outbox_due(HOOK, 0, 10).unwrap()[0].event.time, 300);
    // Far-future times saturate instead of wrapping.
    store.outbox_prune(u64::MAX).wait().unwrap();
    let hook = store
        .outbox_counts()
        .unwrap()
        .into_iter()
        .find(|c| c.target == HOOK)
        .unwrap();
    assert_eq!(hook.abandoned, 0);
}

/// (events, deliveries) rows in the file, read with a separate connection.
fn rusqlite_count(path: &std::path::Path) -> (i64, i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let events = conn
        .query_row("SELECT COUNT(*) FROM outbox_events", [], |r| r.get(0))
        .unwrap();
    let deliveries = conn
        .query_row("SELECT COUNT(*) FROM outbox_deliveries", [], |r| r.get(0))
        .unwrap();
    (events, deliveries)
}

#[test]
fn migrations_keep_existing_data() {
    // A database as the first release left it: schema 1 with a meeting and two attendees.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carillon.db");
    let meeting = {
        let mut p = plane();
        let caller = Caller {
            region: "us-east-1".into(),
        };
        let m = p
            .create_meeting(
                CreateMeeting {
                    client_request_token: None,
                    spec: spec("old"),
                },
                &caller,
                0,
            )
            .unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../migrations/sqlite/0001_initial.sql"))
            .unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL);
             INSERT INTO schema_migrations VALUES (1, 'initial', 0);",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO meetings (meeting_id, created_at, record) VALUES (?1, 0, ?2)",
            rusqlite::params![m.id.to_string(), serde_json::to_string(&m).unwrap()],
        )
        .unwrap();
        for (seq, id) in [
            (1, "61d83b5d-598d-319f-f4b3-b2062ed873cc"),
            (2, "71d83b5d-598d-319f-f4b3-b2062ed873cc"),
        ] {
            conn.execute(
                "INSERT INTO attendees VALUES (?1, ?2, ?3, 'user', 'token', 'SendReceive', 'Receive', 'None')",
                rusqlite::params![id, m.id.to_string(), seq],
            )
            .unwrap();
        }
        m
    };
    let store = SqliteStore::open(&path, Synchronous::Normal).unwrap();
    let snapshot = store.load().unwrap();
    assert_eq!(snapshot.meetings, vec![meeting.clone()]);
    assert_eq!(snapshot.attendees.len(), 2);
    assert_eq!(
        snapshot.attendees[1].capabilities.video,
        MediaCapability::Receive
    );
    // The migrated tables take new writes.
    store
        .commit(vec![Change::RemoveAttendee(
            meeting.id,
            snapshot.attendees[0].id,
        )])
        .wait()
        .unwrap();
    drop(store);
    let store = SqliteStore::open(&path, Synchronous::Normal).unwrap();
    assert_eq!(store.load().unwrap().attendees.len(), 1);
    assert_eq!(carillon_store::schema_version(&path).unwrap(), Some(3));
}
