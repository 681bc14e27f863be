//! The delivery workers: one task per target, each paging through its own due deliveries in
//! the outbox, so a slow or refusing target never holds up another one.
//!
//! ```text
//! store commit with events ──outbox signal──► Dispatcher ──poke──► worker(target)
//!                                                                    │ outbox_due (a page)
//!                                                                    │ deliver, ≤ concurrency in flight
//!                                                                    │ outbox_settle (delivered / retry / abandon)
//!                                                                    └ idle: sleep until the next due time or a poke
//! ```
//!
//! Memory is bounded by one page per target whatever the backlog: the backlog stays in the
//! store. A crash loses nothing: a delivery is removed only after it succeeded, so what was
//! in flight is sent again after the restart (at least once; the envelope `id` is stable).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carillon_control::{EpochMillis, EventTarget};
use carillon_store::{Delivery, Settlement, Store, StoreError};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::policy::{Policy, TargetState, Verdict};
use crate::sinks::Deliver;

/// The current time in epoch milliseconds (the server's lifecycle clock).
pub type Clock = Arc<dyn Fn() -> EpochMillis + Send + Sync>;

/// How often the per-target counts are logged (when there is something to say).
const REPORT_EVERY: Duration = Duration::from_secs(30);
/// How often abandoned deliveries older than the policy's max age are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// A worker with nothing pending for this long ends (a new event starts it again).
const IDLE_EXIT: Duration = Duration::from_secs(600);
/// A failing target is logged at most this often (besides its first failure).
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Counters of one target since the last report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    pub delivered: u64,
    pub failed: u64,
    pub abandoned: u64,
}

/// Totals per target since start (tests and benchmarks read them).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    pub delivered: u64,
    pub failed: u64,
    pub abandoned: u64,
}

struct Worker {
    key: String,
    poked: AtomicBool,
    wake: Notify,
    since_report: Mutex<Counters>,
    totals: Mutex<Totals>,
}

/// Owns the workers. Start it with [`Dispatcher::start`]; stop it with
/// [`Dispatcher::shutdown`].
pub struct Dispatcher {
    store: Arc<dyn Store>,
    sink: Arc<dyn Deliver>,
    policy: Policy,
    clock: Clock,
    workers: Mutex<HashMap<String, Arc<Worker>>>,
    tasks: Mutex<Option<JoinSet<()>>>,
}

impl Dispatcher {
    /// Starts delivering: workers for the backlog left by a previous run, and for every
    /// target that gets events from now on.
    pub fn start(
        store: Arc<dyn Store>,
        sink: Arc<dyn Deliver>,
        policy: Policy,
        clock: Clock,
    ) -> Arc<Dispatcher> {
        let dispatcher = Arc::new(Dispatcher {
            store,
            sink,
            policy,
            clock,
            workers: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Some(JoinSet::new())),
        });
        let d = dispatcher.clone();
        dispatcher.spawn(async move { d.listen().await });
        let d = dispatcher.clone();
        dispatcher.spawn(async move { d.report_loop().await });
        let d = dispatcher.clone();
        dispatcher.spawn(async move { d.prune_loop().await });
        dispatcher
    }

    /// Stops every task (what was in flight is delivered again on the next start).
    pub fn shutdown(&self) {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(tasks);
    }

    /// Totals per target since start.
    pub fn totals(&self) -> HashMap<String, Totals> {
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|w| (w.key.clone(), lock(&w.totals).clone()))
            .collect()
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Some(tasks) = self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            // Reap finished tasks so the set stays small.
            while tasks.try_join_next().is_some() {}
            tasks.spawn(task);
        }
    }

    async fn listen(self: Arc<Self>) {
        let store = self.store.clone();
        match blocking(move || store.outbox_targets()).await {
            Ok(targets) => {
                if !targets.is_empty() {
                    tracing::info!(
                        targets = targets.len(),
                        "resuming event delivery of the outbox backlog"
                    );
                }
                for t in targets {
                    self.poke(t);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the outbox targets"),
        }
        loop {
            let signal = self.store.outbox_signal();
            signal.wait().await;
            for t in signal.take_targets() {
                self.poke(t);
            }
        }
    }

    /// Wakes the worker of `key`, starting it if needed.
    fn poke(self: &Arc<Self>, key: String) {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let (worker, fresh) = match workers.get(&key) {
            Some(w) => (w.clone(), false),
            None => {
                let w = Arc::new(Worker {
                    key: key.clone(),
                    poked: AtomicBool::new(false),
                    wake: Notify::new(),
                    since_report: Mutex::new(Counters::default()),
                    totals: Mutex::new(Totals::default()),
                });
                workers.insert(key, w.clone());
                (w, true)
            }
        };
        worker.poked.store(true, Ordering::SeqCst);
        worker.wake.notify_one();
        drop(workers);
        if fresh {
            let d = self.clone();
            self.spawn(async move { d.work(worker).await });
        }
    }

    /// Ends an idle worker unless it was poked meanwhile (checked under the map lock that
    /// `poke` takes, so no wake-up is lost).
    fn retire(&self, worker: &Worker) -> bool {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if worker.poked.load(Ordering::SeqCst) {
            return false;
        }
        workers.remove(&worker.key);
        true
    }

    async fn work(self: Arc<Self>, worker: Arc<Worker>) {
        let key = worker.key.clone();
        let Some(target) = EventTarget::from_key(&key) else {
            // Written by another version: nothing here can deliver it.
            tracing::error!(
                target = key,
                "unknown event target in the outbox: giving it up"
            );
            let now = (self.clock)();
            let settle = self.store.outbox_settle(vec![Settlement::AbandonOlder {
                target: key.clone(),
                created_before: u64::MAX,
                at: now,
                error: "unknown target kind".into(),
            }]);
            let _ = settle.await;
            self.retire(&worker);
            return;
        };
        let target = Arc::new(target);
        // However this task ends (retired, aborted at shutdown, panicked), its target is left
        // listening, so that the next worker for it is woken by new events.
        let _listening = Listening {
            store: self.store.clone(),
            key: key.clone(),
        };
        let mut state = TargetState::default();
        let mut idle_since = Instant::now();
        let mut last_failure_log: Option<Instant> = None;
        loop {
            worker.poked.store(false, Ordering::SeqCst);
            let now = (self.clock)();
            let signal = self.store.outbox_signal();
            if let Some(until) = state.paused_until(now) {
                // It reads the outbox when the pause ends: commits need not wake it.
                signal.set_quiet(&key, true);
                tokio::time::sleep(Duration::from_millis(until - now)).await;
                continue;
            }
            // Listening from before this read on, so no event committed after it is missed.
            signal.set_quiet(&key, false);
            let store = self.store.clone();
            let (k, page) = (key.clone(), self.policy.page);
            let due = blocking(move || store.outbox_due(&k, now, page)).await;
            let due = match due {
                Ok(due) => due,
                Err(e) => {
                    tracing::error!(target = key, error = %e, "cannot read the outbox");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if due.is_empty() {
                let store = self.store.clone();
                let k = key.clone();
                let wait = match blocking(move || store.outbox_next_due(&k)).await {
                    Ok(Some(at)) => Duration::from_millis(at.saturating_sub(now).max(10)),
                    Ok(None) => {
                        if idle_since.elapsed() >= IDLE_EXIT && self.retire(&worker) {
                            return;
                        }
                        IDLE_EXIT
                    }
                    Err(e) => {
                        tracing::error!(target = key, error = %e, "cannot read the outbox");
                        Duration::from_secs(1)
                    }
                };
                tokio::select! {
                    _ = worker.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            idle_since = Instant::now();
            // Busy: it reads the outbox again after this page.
            signal.set_quiet(&key, true);
            self.deliver_page(&worker, &target, &mut state, due, &mut last_failure_log)
                .await;
        }
    }

    /// Delivers one page with up to the permitted concurrency, then records the outcomes in
    /// one commit. Deliveries not attempted (the target started failing) stay as they were.
    async fn deliver_page(
        &self,
        worker: &Worker,
        target: &Arc<EventTarget>,
        state: &mut TargetState,
        page: Vec<Delivery>,
        last_failure_log: &mut Option<Instant>,
    ) {
        let key = &worker.key;
        let mut queue: VecDeque<Delivery> = page.into();
        let mut in_flight: JoinSet<(Delivery, Result<(), String>)> = JoinSet::new();
        let mut settlements = Vec::new();
        let mut abandoned_older = false;
        let mut counters = Counters::default();
        loop {
            let now = (self.clock)();
            let permits = state
                .permits(&self.policy, now)
                .saturating_sub(in_flight.len());
            for _ in 0..permits {
                let Some(delivery) = queue.pop_front() else {
                    break;
                };
                let sink = self.sink.clone();
                let target = target.clone();
                in_flight.spawn(async move {
                    let result = sink.deliver(&target, &delivery.event).await;
                    (delivery, result)
                });
            }
            let Some(joined) = in_flight.join_next().await else {
                break;
            };
            let Ok((delivery, result)) = joined else {
                // A panicking adapter: the delivery stays pending and is tried again.
                continue;
            };
            let now = (self.clock)();
            match result {
                Ok(()) => {
                    if state.succeeded() {
                        tracing::info!(target = key, "event delivery recovered");
                        *last_failure_log = None;
                    }
                    counters.delivered += 1;
                    settlements.push(Settlement::Delivered {
                        seq: delivery.seq,
                        target: key.clone(),
                    });
                }
                Err(error) => {
                    counters.failed += 1;
                    let first = state.failed(&self.policy, now, rand::random());
                    let log_now =
                        first || last_failure_log.is_none_or(|t| t.elapsed() >= FAILURE_LOG_EVERY);
                    if log_now {
                        tracing::warn!(
                            target = key,
                            event = %delivery.event.id,
                            attempts = delivery.attempts + 1,
                            failures_in_a_row = state.consecutive_failures(),
                            error,
                            "event delivery failed; retrying with backoff"
                        );
                        *last_failure_log = Some(Instant::now());
                    }
                    let verdict = self.policy.on_failure(
                        delivery.event.time,
                        delivery.attempts,
                        now,
                        rand::random(),
                    );
                    match verdict {
                        Verdict::Retry { next_attempt } => settlements.push(Settlement::Retry {
                            seq: delivery.seq,
                            target: key.clone(),
                            next_attempt,
                            error,
                        }),
                        Verdict::Abandon => {
                            counters.abandoned += 1;
                            tracing::warn!(
                                target = key,
                                event = %delivery.event.id,
                                attempts = delivery.attempts + 1,
                                error,
                                "event delivery given up: the event is too old"
                            );
                            if !abandoned_older {
                                // The target has failed for longer than events are kept:
                                // give up its other too-old deliveries at once rather than
                                // one probe at a time.
                                abandoned_older = true;
                                settlements.push(Settlement::AbandonOlder {
                                    target: key.clone(),
                                    created_before: now.saturating_sub(self.policy.max_age_ms),
                                    at: now,
                                    error: error.clone(),
                                });
                            }
                            settlements.push(Settlement::Abandon {
                                seq: delivery.seq,
                                target: key.clone(),
                                at: now,
                                error,
                            });
                        }
                    }
                }
            }
        }
        if let Err(e) = self.store.outbox_settle(settlements).await {
            // The outcomes are lost, not the events: they are delivered again.
            tracing::error!(target = key, error = %e, "cannot record event deliveries");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        add(&mut lock(&worker.since_report), &counters);
        let mut totals = lock(&worker.totals);
        totals.delivered += counters.delivered;
        totals.failed += counters.failed;
        totals.abandoned += counters.abandoned;
    }

    async fn report_loop(self: Arc<Self>) {
        let mut interval = tokio::time::interval(REPORT_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            interval.tick().await;
            let since: Vec<(String, Counters)> = self
                .workers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .map(|w| (w.key.clone(), std::mem::take(&mut *lock(&w.since_report))))
                .collect();
            let store = self.store.clone();
            let counts = match blocking(move || store.outbox_counts()).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot count the outbox");
                    continue;
                }
            };
            let mut rows: HashMap<String, (u64, u64, Counters)> = HashMap::new();
            for c in counts {
                rows.insert(c.target, (c.pending, c.abandoned, Counters::default()));
            }
            for (key, counters) in since {
                rows.entry(key).or_default().2 = counters;
            }
            let mut rows: Vec<_> = rows.into_iter().collect();
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            for (target, (pending, abandoned_total, c)) in rows {
                if pending == 0 && c == Counters::default() {
                    continue;
                }
                tracing::info!(
                    target,
                    pending,
                    delivered = c.delivered,
                    failed = c.failed,
                    abandoned = c.abandoned,
                    abandoned_kept = abandoned_total,
                    "event delivery (last {} s)",
                    REPORT_EVERY.as_secs()
                );
            }
        }
    }

    async fn prune_loop(self: Arc<Self>) {
        let mut interval = tokio::time::interval(PRUNE_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let now = (self.clock)();
            let before = now.saturating_sub(self.policy.max_age_ms);
            if let Err(e) = self.store.outbox_prune(before).await {
                tracing::error!(error = %e, "cannot prune the outbox");
            }
        }
    }
}

/// Marks a target listening (not quiet) when dropped.
struct Listening {
    store: Arc<dyn Store>,
    key: String,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.store.outbox_signal().set_quiet(&self.key, false);
    }
}

fn add(into: &mut Counters, c: &Counters) {
    into.delivered += c.delivered;
    into.failed += c.failed;
    into.abandoned += c.abandoned;
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a store read on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(StoreError::Database(format!("outbox read panicked: {e}"))))
}
