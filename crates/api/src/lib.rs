//! The wire contract of `chime-sdk-meetings` (rest-json, API 2021-07-15), sans IO.
//!
//! A request goes through four pure steps, and the HTTP adapter only moves bytes between them:
//!
//! 1. [`route`]: method, path and the `?operation=` literal → [`Route`];
//! 2. [`parse_command`]: body and query → a validated [`Command`] (no state needed, so it runs
//!    outside the control-plane lock);
//! 3. [`execute`]: the command against a `carillon_control::ControlPlane` → [`Reply`];
//! 4. [`render`]: the reply → status and JSON body; errors render through [`ApiError`], the one
//!    table from failures to AWS exception names, statuses and short codes.

pub mod dto;
pub mod error;
pub mod ops;
pub mod parse;
pub mod rate;
pub mod route;
pub mod transcription;
pub mod validate;

pub use error::{ApiError, Exception, exception_of};
pub use ops::{ItemError, Placement, Reply, api_error, execute, render};
pub use parse::{Command, parse_command};
pub use rate::RateLimiter;
pub use route::{Operation, Query, Route, route};
