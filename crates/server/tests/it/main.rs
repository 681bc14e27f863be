//! Black-box tests: the real `carillon` binary driven by the official AWS SDK for Rust.

mod harness;

mod api;
mod errors;
mod events;
mod lifecycle;
mod media;
mod raw_http;
mod store_failure;
