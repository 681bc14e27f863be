//! The workers against a real SQLite outbox and a scripted target: at-least-once across a
//! target outage and a restart, independence of targets, give-up of too-old events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carillon_control::*;
use carillon_events::sinks::Attempt;
use carillon_events::{Backoff, Deliver, Dispatcher, Policy};
use carillon_store::{SqliteStore, Store, Synchronous};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// A target per key that records what arrives and fails while it is "down".
#[derive(Default)]
struct Scripted {
    down: Mutex<HashMap<String, bool>>,
    received: Mutex<Vec<(String, String)>>,
    attempts: AtomicU64,
    slow: AtomicBool,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

impl Scripted {
    fn set_down(&self, key: &str, down: bool) {
        self.down.lock().unwrap().insert(key.to_owned(), down);
    }

    fn ids_for(&self, key: &str) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, id)| id.clone())
            .collect()
    }
}

impl Deliver for Scripted {
    fn deliver<'a>(&'a self, target: &'a EventTarget, event: &'a Event) -> Attempt<'a> {
        Box::pin(async move {
            self.attempts.fetch_add(1, Ordering::Relaxed);
            let key = target.key();
            if self.slow.load(Ordering::Relaxed) {
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_in_flight.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            if self
                .down
                .lock()
                .unwrap()
                .get(&key)
                .copied()
                .unwrap_or(false)
            {
                return Err("503 Service Unavailable".into());
            }
            // The body a real adapter would send must be valid JSON with the same id.
            let body: serde_json::Value =
                serde_json::from_str(&carillon_events::body_of(event)).unwrap();
            assert_eq!(body["id"], event.id.to_string());
            self.received
                .lock()
                .unwrap()
                .push((key, event.id.to_string()));
            Ok(())
        })
    }
}

fn fast_policy() -> Policy {
    Policy {
        event_backoff: Backoff {
            initial_ms: 20,
            max_ms: 200,
        },
        target_backoff: Backoff {
            initial_ms: 10,
            max_ms: 100,
        },
        max_age_ms: 60_000,
        page: 16,
        concurrency: 4,
    }
}

fn clock() -> carillon_events::Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    })
}

const HOOK_A: &str = "http://127.0.0.1:1/a";
const HOOK_B: &str = "http://127.0.0.1:1/b";

fn plane(targets: Vec<EventTarget>) -> ControlPlane {
    let mut p = ControlPlane::new(
        Limits::default(),
        "000000000000".into(),
        Box::new(StdRng::seed_from_u64(3)),
    );
    p.set_event_targets(targets);
    p
}

fn spec(name: &str) -> MeetingSpec {
    MeetingSpec {
        external_meeting_id: name.into(),
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

/// Creates a meeting with `n` attendees and commits it; returns the event ids written.
async fn make_events(p: &mut ControlPlane, store: &dyn Store, n: usize, now: u64) -> Vec<String> {
    let caller = Caller {
        region: "us-east-1".into(),
    };
    let m = p
        .create_meeting(
            CreateMeeting {
                client_request_token: None,
                spec: spec("m"),
            },
            &caller,
            now,
        )
        .unwrap();
    for i in 0..n {
        p.create_attendee(
            m.id,
            AttendeeRequest {
                external_user_id: format!("user-{i}"),
                capabilities: None,
            },
            now,
        )
        .unwrap();
    }
    let changes = p.take_changes();
    let ids = changes
        .iter()
        .filter_map(|c| match c {
            Change::Event(e) => Some(e.id.to_string()),
            _ => None,
        })
        .collect();
    store.commit(changes).await.unwrap();
    ids
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_everything_once_per_target_and_a_down_target_blocks_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("carillon.db"), Synchronous::Normal).unwrap());
    let a = EventTarget::Webhook(HOOK_A.into());
    let b = EventTarget::Webhook(HOOK_B.into());
    let sink = Arc::new(Scripted::default());
    sink.set_down(&b.key(), true);
    let dispatcher = Dispatcher::start(store.clone(), sink.clone(), fast_policy(), clock());
    let mut p = plane(vec![a.clone(), b.clone()]);
    let ids = make_events(&mut p, &*store, 100, clock()()).await;
    assert_eq!(ids.len(), 101);
    // A gets everything while B is down.
    wait_for("A's events", || sink.ids_for(&a.key()).len() == ids.len()).await;
    assert_eq!(sorted(sink.ids_for(&a.key())), sorted(ids.clone()));
    assert!(sink.ids_for(&b.key()).is_empty());
    let pending: HashMap<String, u64> = store
        .outbox_counts()
        .unwrap()
        .into_iter()
        .map(|c| (c.target, c.pending))
        .collect();
    assert_eq!(pending.get(&b.key()), Some(&101));
    assert_eq!(pending.get(&a.key()), None);
    // B comes back: it gets everything, once.
    sink.set_down(&b.key(), false);
    wait_for("B's events", || sink.ids_for(&b.key()).len() == ids.len()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sorted(sink.ids_for(&b.key())), sorted(ids.clone()));
    assert_eq!(sink.ids_for(&a.key()).len(), ids.len());
    // Everything delivered: the outbox is empty again.
    wait_for("an empty outbox", || {
        store.outbox_counts().unwrap().is_empty() && store.outbox_targets().unwrap().is_empty()
    })
    .await;
    let totals = dispatcher.totals();
    assert_eq!(totals[&a.key()].delivered, 101);
    assert_eq!(totals[&b.key()].delivered, 101);
    // While down, B was probed, not flooded: far fewer attempts than events.
    assert!(totals[&b.key()].failed < 60, "{:?}", totals[&b.key()]);
    dispatcher.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carillon.db");
    let a = EventTarget::Webhook(HOOK_A.into());
    let sink = Arc::new(Scripted::default());
    sink.set_down(&a.key(), true);
    let ids = {
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&path, Synchronous::Normal).unwrap());
        let dispatcher = Dispatcher::start(store.clone(), sink.clone(), fast_policy(), clock());
        let mut p = plane(vec![a.clone()]);
        let ids = make_events(&mut p, &*store, 40, clock()()).await;
        wait_for("some failed attempts", || {
            sink.attempts.load(Ordering::Relaxed) >= 3
        })
        .await;
        dispatcher.shutdown();
        ids
    };
    // A new process on the same file, and the target is back.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path, Synchronous::Normal).unwrap());
    assert_eq!(store.outbox_targets().unwrap(), vec![a.key()]);
    sink.set_down(&a.key(), false);
    let dispatcher = Dispatcher::start(store.clone(), sink.clone(), fast_policy(), clock());
    wait_for("the backlog", || sink.ids_for(&a.key()).len() >= ids.len()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sorted(sink.ids_for(&a.key())), sorted(ids));
    dispatcher.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_older_than_max_age_are_given_up_while_failing() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("carillon.db"), Synchronous::Normal).unwrap());
    let a = EventTarget::Webhook(HOOK_A.into());
    let sink = Arc::new(Scripted::default());
    sink.set_down(&a.key(), true);
    let mut p = plane(vec![a.clone()]);
    let now = clock()();
    // Ten events from two minutes ago (older than max age), five fresh ones.
    make_events(&mut p, &*store, 9, now - 120_000).await;
    make_events(&mut p, &*store, 4, now).await;
    let dispatcher = Dispatcher::start(store.clone(), sink.clone(), fast_policy(), clock());
    wait_for("the old events to be given up", || {
        store
            .outbox_counts()
            .unwrap()
            .first()
            .is_some_and(|c| c.abandoned == 10 && c.pending == 5)
    })
    .await;
    // Pruning removes the abandoned deliveries and their events.
    store.outbox_prune(u64::MAX).await.unwrap();
    assert_eq!(store.outbox_counts().unwrap()[0].abandoned, 0);
    sink.set_down(&a.key(), false);
    wait_for("the fresh events", || sink.ids_for(&a.key()).len() == 5).await;
    dispatcher.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_by_the_page_under_a_large_backlog() {
    // 2,000 events for a target that answers slowly: at no time are more than
    // `concurrency` requests in flight, and the worker reads the backlog page by page.
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("carillon.db"), Synchronous::Normal).unwrap());
    let a = EventTarget::Webhook(HOOK_A.into());
    let sink = Arc::new(Scripted::default());
    sink.slow.store(true, Ordering::Relaxed);
    let mut p = plane(vec![a.clone()]);
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.extend(make_events(&mut p, &*store, 199, clock()()).await);
    }
    let policy = Policy {
        page: 64,
        concurrency: 16,
        ..fast_policy()
    };
    let dispatcher = Dispatcher::start(store.clone(), sink.clone(), policy, clock());
    wait_for("the backlog", || sink.ids_for(&a.key()).len() == ids.len()).await;
    assert_eq!(sorted(sink.ids_for(&a.key())), sorted(ids));
    let max = sink.max_in_flight.load(Ordering::SeqCst);
    assert!((2..=16).contains(&max), "{max} in flight at most");
    dispatcher.shutdown();
}
