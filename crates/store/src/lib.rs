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
//!
//! [`SqliteStore`] is the embedded default. A PostgreSQL backend implements the same trait.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use carillon_control::{Change, Snapshot};

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
