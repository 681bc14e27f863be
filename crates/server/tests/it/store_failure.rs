//! A store that fails on demand, under an in-process node: a failed commit answers 503
//! (`Retry-After`, `ServiceUnavailableException`) and memory follows the store again, so the
//! change that was not persisted is gone; mutations in flight behind it fail too.
//!
//! The test double wraps the real SQLite store: only `commit` can be told to fail.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use carillon_control::{
    Caller, Change, CreateMeeting, EpochMillis, MeetingId, MeetingSpec, Snapshot,
};
use carillon_server::app::CommitError;
use carillon_server::{Config, Node, ServeArgs};
use carillon_store::{
    CommitTicket, Delivery, OutboxSignal, Settlement, SqliteStore, Store, StoreError, Synchronous,
    TargetCounts,
};

use crate::harness::{AKID, SECRET, sdk_client};

struct FlakyStore {
    inner: SqliteStore,
    /// The next commit fails without reaching the database.
    fail_next: AtomicBool,
    /// Meetings whose commit was refused.
    refused: Mutex<Vec<MeetingId>>,
}

impl FlakyStore {
    fn open(dir: &std::path::Path) -> FlakyStore {
        FlakyStore {
            inner: SqliteStore::open(&dir.join("carillon.db"), Synchronous::Normal).unwrap(),
            fail_next: AtomicBool::new(false),
            refused: Mutex::new(Vec::new()),
        }
    }

    fn refused(&self) -> Vec<MeetingId> {
        self.refused.lock().unwrap().clone()
    }
}

impl Store for FlakyStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        self.inner.load()
    }

    fn commit(&self, changes: Vec<Change>) -> CommitTicket {
        if self.fail_next.swap(false, Ordering::SeqCst) {
            let mut refused = self.refused.lock().unwrap();
            for change in &changes {
                if let Change::PutMeeting(m) = change {
                    refused.push(m.id);
                }
            }
            return CommitTicket::ready(Err(StoreError::Database("injected failure".into())));
        }
        self.inner.commit(changes)
    }

    fn outbox_targets(&self) -> Result<Vec<String>, StoreError> {
        self.inner.outbox_targets()
    }

    fn outbox_due(
        &self,
        target: &str,
        now: EpochMillis,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.inner.outbox_due(target, now, limit)
    }

    fn outbox_next_due(&self, target: &str) -> Result<Option<EpochMillis>, StoreError> {
        self.inner.outbox_next_due(target)
    }

    fn outbox_counts(&self) -> Result<Vec<TargetCounts>, StoreError> {
        self.inner.outbox_counts()
    }

    fn outbox_settle(&self, settlements: Vec<Settlement>) -> CommitTicket {
        self.inner.outbox_settle(settlements)
    }

    fn outbox_prune(&self, dead_before: EpochMillis) -> CommitTicket {
        self.inner.outbox_prune(dead_before)
    }

    fn outbox_signal(&self) -> &OutboxSignal {
        self.inner.outbox_signal()
    }
}

/// A node on the flaky store, serving on an ephemeral port; dropped with the runtime.
async fn start(store: Arc<FlakyStore>, dir: &std::path::Path) -> (Node, String) {
    let args = ServeArgs {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(dir.to_owned()),
        ..Default::default()
    };
    let config = Config::resolve(args, None).unwrap();
    let node = Node::start_with_store(config, store).await.unwrap();
    let url = format!("http://{}", node.http_addr);
    (node, url)
}

#[tokio::test]
async fn a_failed_commit_answers_503_and_memory_forgets_the_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FlakyStore::open(dir.path()));
    let (node, url) = start(store.clone(), dir.path()).await;
    tokio::spawn(node.run(std::future::pending()));
    let client = sdk_client(&url, AKID, SECRET, "us-east-1");

    store.fail_next.store(true, Ordering::SeqCst);
    let err = client
        .create_meeting()
        .client_request_token("flaky-token-1")
        .media_region("us-east-1")
        .external_meeting_id("not-persisted")
        .send()
        .await
        .unwrap_err();
    let raw = err.raw_response().expect("an HTTP answer");
    assert_eq!(raw.status().as_u16(), 503);
    assert_eq!(raw.headers().get("retry-after"), Some("1"));
    assert_eq!(
        raw.headers().get("x-amzn-errortype"),
        Some("ServiceUnavailableException")
    );
    assert!(err.into_service_error().is_service_unavailable_exception());

    // The meeting existed in memory for a moment; now memory equals the store again.
    let refused = store.refused();
    assert_eq!(refused.len(), 1);
    let err = client
        .get_meeting()
        .meeting_id(refused[0].to_string())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_not_found_exception(), "{err:?}");

    // The retry (same token: the SDK's retry would reuse it) succeeds and is persisted.
    let meeting = client
        .create_meeting()
        .client_request_token("flaky-token-1")
        .media_region("us-east-1")
        .external_meeting_id("not-persisted")
        .send()
        .await
        .unwrap()
        .meeting
        .unwrap();
    let id = meeting.meeting_id().unwrap();
    assert_ne!(id, refused[0].to_string());
    client.get_meeting().meeting_id(id).send().await.unwrap();
    let stored = store.inner.load().unwrap();
    assert_eq!(stored.meetings.len(), 1);
    assert_eq!(stored.meetings[0].id.to_string(), id);
}

#[tokio::test]
async fn mutations_in_flight_behind_a_failed_commit_fail_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FlakyStore::open(dir.path()));
    let (node, _url) = start(store.clone(), dir.path()).await;
    let app = node.app.clone();
    let caller = Caller {
        region: "us-east-1".into(),
    };
    let request = |name: &str| CreateMeeting {
        client_request_token: None,
        spec: MeetingSpec {
            external_meeting_id: name.into(),
            meeting_host_id: None,
            media_region: "us-east-1".into(),
            notifications: None,
            features: None,
            primary_meeting_id: None,
            tenant_ids: vec![],
            tags: vec![],
            network_type: None,
        },
    };
    let now = app.clock.now_ms();

    // Two mutations applied back to back (a current-thread runtime: nothing runs in between);
    // the first one's commit fails, the second one's succeeds.
    store.fail_next.store(true, Ordering::SeqCst);
    let (first, first_pending) = app.mutate(|p| p.create_meeting(request("lost"), &caller, now));
    let (second, second_pending) =
        app.mutate(|p| p.create_meeting(request("behind"), &caller, now));
    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(matches!(
        first_pending.finish().await,
        Err(CommitError::Store(_))
    ));
    // It was applied on top of the lost meeting, so its request cannot claim success, even
    // though its own commit went through.
    assert!(matches!(
        second_pending.finish().await,
        Err(CommitError::RolledBack)
    ));
    // Memory equals the store: the lost meeting is gone, the committed one is there.
    let stored: Vec<MeetingId> = store
        .inner
        .load()
        .unwrap()
        .meetings
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(stored, vec![second.id]);
    assert!(app.plane().get_meeting(first.id, now).is_err());
    assert!(app.plane().get_meeting(second.id, now).is_ok());
    assert!(!app.is_recovering());

    // What comes after the rebuild is judged on its own.
    let (third, third_pending) = app.mutate(|p| p.create_meeting(request("after"), &caller, now));
    third_pending.finish().await.unwrap();
    assert!(app.plane().get_meeting(third.unwrap().id, now).is_ok());
}
