//! Meeting event delivery for Carillon.
//!
//! The control plane writes each event to the store's outbox in the same transaction as the
//! state change that caused it (`carillon_control::Change::Event`). This crate takes it from
//! there:
//!
//! * [`envelope`]: the exact EventBridge JSON (`Chime Meeting State Change`) of an event;
//! * [`policy`]: the retry schedule and per-target health, sans IO;
//! * [`signature`]: the webhook signature (`X-Carillon-Signature`);
//! * [`sinks`]: the adapters (webhook POST, SQS, SNS, Lambda, EventBridge through the AWS SDK);
//! * [`worker`]: the [`Dispatcher`] and its per-target workers, which page through the
//!   outbox, deliver at least once, and record the outcomes.

pub mod envelope;
pub mod policy;
pub mod signature;
pub mod sinks;
pub mod worker;

pub use envelope::{Envelope, body_of};
pub use policy::{Backoff, Policy, TargetState, Verdict};
pub use sinks::{Deliver, SinkSettings, Sinks};
pub use worker::{Clock, Dispatcher, Totals};
