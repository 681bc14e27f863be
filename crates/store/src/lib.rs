//! Persistence for Carillon.
//!
//! The control plane keeps its working state in memory (`carillon_control::ControlPlane`) and
//! emits a [`Change`] for every mutation. A [`Store`] makes those changes durable and gives them
//! back at start-up as a [`Snapshot`]. The contract:
//!
//! * `commit` takes changes in the order the control plane produced them; callers submit them
//!   while still holding the control-plane lock, so the store sees them in that order.
//! * The returned [`CommitTicket`] resolves once the changes are durable; only then does the
//!   server answer the client. A store may group many submissions into one transaction.
//! * `RemoveMeeting` also removes that meeting's attendees.
//! * `Event` writes the event to the outbox with one pending delivery per target, in the same
//!   transaction as the changes submitted with it: an event exists if and only if its state
//!   change was committed.
//!
//! The outbox methods serve the delivery workers (`carillon-events`):
//!
//! * reads (`outbox_targets`, `outbox_due`, `outbox_next_due`, `outbox_counts`) block the
//!   calling thread briefly and never wait for the writer (call them from a blocking task);
//! * writes (`outbox_settle`, `outbox_prune`) go through the same ordered commit path as the
//!   changes and resolve once durable;
//! * [`Store::outbox_signal`] is raised after every commit that added events, with their
//!   targets, so idle workers wake up without polling.
//!
//! [`SqliteStore`] is the embedded default. A PostgreSQL backend implements the same trait.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use carillon_control::{Change, EpochMillis, Event, Snapshot};

mod legacy;
pub mod record;
mod sqlite;

pub use sqlite::{SqliteStore, Synchronous, schema_version};

/// A persistence failure. The message is for the server log, not for API clients.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store is shut down")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// Durable storage of the control plane's state.
pub trait Store: Send + Sync + 'static {
    /// Everything persisted. Called once at start-up.
    fn load(&self) -> Result<Snapshot, StoreError>;

    /// Submits changes for a durable commit; see the crate docs for the ordering contract.
    fn commit(&self, changes: Vec<Change>) -> CommitTicket;

    /// Targets that have pending (not yet delivered, not abandoned) deliveries.
    fn outbox_targets(&self) -> Result<Vec<String>, StoreError>;

    /// Up to `limit` pending deliveries of `target` whose next attempt is due at `now`,
    /// the earliest due first (then in event order).
    fn outbox_due(
        &self,
        target: &str,
        now: EpochMillis,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// When the next pending delivery of `target` is due (`None`: nothing pending).
    fn outbox_next_due(&self, target: &str) -> Result<Option<EpochMillis>, StoreError>;

    /// Pending and abandoned deliveries per target (a full scan: for periodic reports).
    fn outbox_counts(&self) -> Result<Vec<TargetCounts>, StoreError>;

    /// Records delivery outcomes. A delivered event whose last delivery this was is removed.
    fn outbox_settle(&self, settlements: Vec<Settlement>) -> CommitTicket;

    /// Removes deliveries abandoned before `dead_before`, and events with no delivery left.
    fn outbox_prune(&self, dead_before: EpochMillis) -> CommitTicket;

    /// Raised after each commit that added events.
    fn outbox_signal(&self) -> &OutboxSignal;
}

/// One pending delivery of an event to a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The event's position in the outbox.
    pub seq: u64,
    /// The target key (`carillon_control::EventTarget::key`).
    pub target: String,
    /// Failed attempts so far.
    pub attempts: u32,
    pub event: Event,
}

/// The outcome of one delivery attempt (or a decision about a target's backlog).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Delivered: the delivery is removed.
    Delivered { seq: u64, target: String },
    /// Failed: one more attempt counted, the next one not before `next_attempt`.
    Retry {
        seq: u64,
        target: String,
        next_attempt: EpochMillis,
        error: String,
    },
    /// Failed and given up (too old): kept as abandoned until pruned.
    Abandon {
        seq: u64,
        target: String,
        at: EpochMillis,
        error: String,
    },
    /// Gives up every pending delivery of `target` whose event happened before
    /// `created_before` (a target that has been failing for longer than events are kept).
    AbandonOlder {
        target: String,
        created_before: EpochMillis,
        at: EpochMillis,
        error: String,
    },
}

/// Deliveries of one target, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetCounts {
    pub target: String,
    pub pending: u64,
    pub abandoned: u64,
}

/// Wakes the delivery workers when events are committed, and tells them for which targets.
/// The set of targets is bounded by the number of distinct targets; a notification sent
/// while nobody waits is kept (`tokio::sync::Notify::notify_one`).
///
/// A worker that is busy (delivering a page, or backing off from a failing target) reads the
/// outbox again on its own when it is done, so it marks itself quiet and commits for its
/// target wake nobody: under load the API path pays no task wake-up per commit for events.
/// A worker marks itself listening *before* its last read of the outbox, so an event
/// committed after that read always wakes it.
#[derive(Debug, Default)]
pub struct OutboxSignal {
    notify: tokio::sync::Notify,
    state: Mutex<SignalState>,
}

#[derive(Debug, Default)]
struct SignalState {
    /// Targets that got events since the dispatcher last looked.
    raised: HashSet<String>,
    /// Targets whose worker will look at the outbox again without being told.
    quiet: HashSet<String>,
}

impl OutboxSignal {
    /// Called by a store after a commit that added events for `targets`.
    pub fn raise<'a>(&self, targets: impl IntoIterator<Item = &'a str>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut wake = false;
        for t in targets {
            if state.quiet.contains(t) {
                continue;
            }
            wake = true;
            if !state.raised.contains(t) {
                state.raised.insert(t.to_owned());
            }
        }
        drop(state);
        if wake {
            self.notify.notify_one();
        }
    }

    /// Waits until raised (returns at once if it was raised since the last wait).
    pub async fn wait(&self) {
        self.notify.notified().await;
    }

    /// The targets that got events since the last call.
    pub fn take_targets(&self) -> HashSet<String> {
        std::mem::take(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()).raised)
    }

    /// A worker says whether it will read the outbox of `target` again on its own (`true`)
    /// or needs to be told about new events (`false`, the default).
    pub fn set_quiet(&self, target: &str, quiet: bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !quiet {
            state.quiet.remove(target);
        } else if !state.quiet.contains(target) {
            state.quiet.insert(target.to_owned());
        }
    }
}

/// Resolves when a commit is durable (or failed).
pub struct CommitTicket(Ticket);

enum Ticket {
    Done(Option<Result<(), StoreError>>),
    Pending(tokio::sync::oneshot::Receiver<Result<(), StoreError>>),
}

impl CommitTicket {
    /// A ticket that is already resolved (nothing to write).
    pub fn ready(result: Result<(), StoreError>) -> Self {
        CommitTicket(Ticket::Done(Some(result)))
    }

    fn pending(rx: tokio::sync::oneshot::Receiver<Result<(), StoreError>>) -> Self {
        CommitTicket(Ticket::Pending(rx))
    }

    /// Waits without an async runtime (start-up and tests).
    pub fn wait(self) -> Result<(), StoreError> {
        match self.0 {
            Ticket::Done(result) => result.unwrap_or(Ok(())),
            Ticket::Pending(rx) => rx.blocking_recv().unwrap_or(Err(StoreError::Closed)),
        }
    }
}

impl Future for CommitTicket {
    type Output = Result<(), StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            Ticket::Done(result) => Poll::Ready(result.take().unwrap_or(Ok(()))),
            Ticket::Pending(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(StoreError::Closed))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raised_now(signal: &OutboxSignal) -> bool {
        // `wait` returns at once only if a notification is stored.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            tokio::time::timeout(std::time::Duration::from_millis(20), signal.wait())
                .await
                .is_ok()
        })
    }

    #[test]
    fn a_quiet_target_wakes_nobody_and_a_listening_one_does() {
        let signal = OutboxSignal::default();
        signal.raise(["webhook:a"]);
        assert!(raised_now(&signal));
        assert_eq!(signal.take_targets().len(), 1);
        // Busy worker: no wake-up, nothing to take.
        signal.set_quiet("webhook:a", true);
        signal.raise(["webhook:a"]);
        assert!(!raised_now(&signal));
        assert!(signal.take_targets().is_empty());
        // Another target still wakes the dispatcher, for that target only.
        signal.raise(["webhook:a", "sqs:b"]);
        assert!(raised_now(&signal));
        assert_eq!(
            signal.take_targets().into_iter().collect::<Vec<_>>(),
            ["sqs:b"]
        );
        // Listening again: woken.
        signal.set_quiet("webhook:a", false);
        signal.raise(["webhook:a"]);
        assert!(raised_now(&signal));
    }
}
