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
    assert_eq!(carillon_store::schema_version(&path).unwrap(), Some(4));
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
    assert_eq!(due[0].event.meeting.meeting_id, meeting.id);
    // The record read back is the event that was written (the targets are the rows').
    assert_eq!(due[0].event.meeting.account, "000000000000");
    assert_eq!(
        due[1].event.attendee.as_ref().unwrap().external_user_id,
        "u0"
    );
    // Each event has one seq, the same for both of its targets.
    let queue_due = store.outbox_due(QUEUE, 5_000, 100).unwrap();
    assert_eq!(keys_of(&queue_due), keys_of(&due));
    assert_eq!(
        queue_due.iter().map(|d| d.event.id).collect::<Vec<_>>(),
        due.iter().map(|d| d.event.id).collect::<Vec<_>>()
    );
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
    // No row left; the interned target stays until the next prune.
    assert_eq!(rusqlite_count(&path), (0, 1));
    store.outbox_prune(0).wait().unwrap();
    assert_eq!(rusqlite_count(&path), (0, 0));
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

/// (outbox rows, interned targets) in the file, read with a separate connection.
fn rusqlite_count(path: &std::path::Path) -> (i64, i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let rows = conn
        .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
        .unwrap();
    let targets = conn
        .query_row("SELECT COUNT(*) FROM outbox_targets", [], |r| r.get(0))
        .unwrap();
    (rows, targets)
}

#[test]
fn one_row_per_event_and_target_and_targets_are_interned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carillon.db");
    let store = SqliteStore::open(&path, Synchronous::Normal).unwrap();
    let mut p = outbox_plane();
    let caller = Caller {
        region: "us-east-1".into(),
    };
    // The same webhook twice in the global targets: still one row per event for it.
    p.set_event_targets(vec![
        EventTarget::Webhook("http://127.0.0.1:9/hook".into()),
        EventTarget::Webhook("http://127.0.0.1:9/hook".into()),
    ]);
    for i in 0..3 {
        p.create_meeting(
            CreateMeeting {
                client_request_token: None,
                spec: spec(&format!("m{i}")),
            },
            &caller,
            10,
        )
        .unwrap();
        store.commit(p.take_changes()).wait().unwrap();
    }
    // Three events, two targets each; two interned targets.
    assert_eq!(rusqlite_count(&path), (6, 2));
    let conn = rusqlite::Connection::open(&path).unwrap();
    let keys: Vec<String> = conn
        .prepare("SELECT key FROM outbox_targets ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(keys, [QUEUE, HOOK]);
    let blobs: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE typeof(record) = 'blob' AND length(record) < 120",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(blobs, 6, "compact binary records");
    // Event numbers keep increasing across a restart.
    let first: Vec<u64> = store
        .outbox_due(HOOK, 0, 10)
        .unwrap()
        .iter()
        .map(|d| d.seq)
        .collect();
    assert_eq!(first.len(), 3);
    drop(store);
    let store = SqliteStore::open(&path, Synchronous::Normal).unwrap();
    p.create_meeting(
        CreateMeeting {
            client_request_token: None,
            spec: spec("m3"),
        },
        &caller,
        11,
    )
    .unwrap();
    store.commit(p.take_changes()).wait().unwrap();
    let after: Vec<u64> = store
        .outbox_due(HOOK, 0, 10)
        .unwrap()
        .iter()
        .map(|d| d.seq)
        .collect();
    assert_eq!(after.len(), 4);
    assert!(after[3] > first[2]);
    // Pruning drops targets nobody uses any more; new events intern them again.
    let all: Vec<carillon_store::Settlement> = [QUEUE, HOOK]
        .iter()
        .flat_map(|t| {
            store.outbox_due(t, 0, 10).unwrap().into_iter().map(|d| {
                carillon_store::Settlement::Delivered {
                    seq: d.seq,
                    target: t.to_string(),
                }
            })
        })
        .collect();
    store.outbox_settle(all).wait().unwrap();
    store.outbox_prune(0).wait().unwrap();
    assert_eq!(rusqlite_count(&path), (0, 0));
    p.create_meeting(
        CreateMeeting {
            client_request_token: None,
            spec: spec("m4"),
        },
        &caller,
        12,
    )
    .unwrap();
    store.commit(p.take_changes()).wait().unwrap();
    assert_eq!(rusqlite_count(&path), (2, 2));
    assert_eq!(store.outbox_due(HOOK, 0, 10).unwrap().len(), 1);
}

/// A database as version 3 left it, with pending deliveries in the old tables.
fn version_3_database(path: &std::path::Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL);
         INSERT INTO schema_migrations VALUES (1, 'initial', 0), (2, 'outbox', 0), (3, 'clustered tables', 0);",
    )
    .unwrap();
    conn.execute_batch(include_str!("../migrations/sqlite/0001_initial.sql"))
        .unwrap();
    conn.execute_batch(include_str!("../migrations/sqlite/0002_outbox.sql"))
        .unwrap();
    conn.execute_batch(include_str!(
        "../migrations/sqlite/0003_clustered_tables.sql"
    ))
    .unwrap();
    let added = r#"{"id":"5ee6265a-0a40-404e-98fd-a3b4bdd78483","kind":"AttendeeAdded","time":1000,"account":"000000000000","control_region":"us-east-1","media_region":"eu-west-2","meeting_id":"4101582d-72d2-451b-8ac0-f0f127992713","external_meeting_id":"standup","attendee_id":"61d83b5d-598d-319f-f4b3-b2062ed873cc","external_user_id":"alice","transcription":null}"#;
    let content = r#"{"id":"6ee6265a-0a40-404e-98fd-a3b4bdd78483","kind":"AttendeeContentJoined","time":2000,"account":"000000000000","control_region":"us-east-1","media_region":"eu-west-2","meeting_id":"4101582d-72d2-451b-8ac0-f0f127992713","external_meeting_id":"standup","attendee_id":"61d83b5d-598d-319f-f4b3-b2062ed873cc#content","external_user_id":"alice#content","transcription":null}"#;
    conn.execute(
        "INSERT INTO outbox_events (seq, created_at, remaining, record) VALUES (7, 1000, 2, ?1), (9, 2000, 1, ?2), (11, 3000, 1, '{broken')",
        [added, content],
    )
    .unwrap();
    conn.execute_batch(&format!(
        "INSERT INTO outbox_deliveries (target, seq, created_at, attempts, next_attempt, last_error) VALUES
           ('{HOOK}', 7, 1000, 2, 5000, 'HTTP 503'),
           ('{QUEUE}', 7, 1000, 0, 0, NULL),
           ('{HOOK}', 9, 2000, 0, 0, NULL),
           ('{QUEUE}', 11, 3000, 0, 0, NULL);"
    ))
    .unwrap();
}

#[test]
fn migration_4_moves_and_reencodes_pending_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carillon.db");
    version_3_database(&path);
    let store = SqliteStore::open(&path, Synchronous::Normal).unwrap();
    assert_eq!(carillon_store::schema_version(&path).unwrap(), Some(4));
    let mut targets = store.outbox_targets().unwrap();
    targets.sort();
    assert_eq!(targets, [QUEUE, HOOK]);
    // The webhook's deliveries keep their seq, attempts and schedule; the ids are the same.
    let hook = store.outbox_due(HOOK, 10_000, 10).unwrap();
    assert_eq!(
        hook.iter()
            .map(|d| (d.seq, d.attempts, d.event.id.to_string()))
            .collect::<Vec<_>>(),
        [
            (7, 2, "5ee6265a-0a40-404e-98fd-a3b4bdd78483".to_owned()),
            (9, 0, "6ee6265a-0a40-404e-98fd-a3b4bdd78483".to_owned())
        ]
    );
    assert_eq!(store.outbox_due(HOOK, 4_999, 10).unwrap().len(), 1);
    let content = hook[1].event.attendee.as_ref().unwrap();
    assert!(content.content);
    assert_eq!(content.external_user_id, "alice#content");
    assert_eq!(hook[1].event.meeting.media_region, "eu-west-2");
    // The unreadable record is kept, abandoned; the queue's readable one is pending.
    let queue = store.outbox_due(QUEUE, 10_000, 10).unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].event.kind, EventKind::AttendeeAdded);
    let counts = store.outbox_counts().unwrap();
    let q = counts.iter().find(|c| c.target == QUEUE).unwrap();
    assert_eq!((q.pending, q.abandoned), (1, 1));
    // New events continue after the largest seq.
    let mut p = outbox_plane();
    p.create_meeting(
        CreateMeeting {
            client_request_token: None,
            spec: spec("new"),
        },
        &Caller {
            region: "us-east-1".into(),
        },
        20,
    )
    .unwrap();
    store.commit(p.take_changes()).wait().unwrap();
    let hook = store.outbox_due(HOOK, 10_000, 10).unwrap();
    assert_eq!(hook.len(), 3);
    assert!(hook[2].seq > 11);
}
