//! The `carillon` server: configuration, HTTP adapters and the wiring of the sans-IO cores
//! (`carillon-control`, `carillon-api`, `carillon-sigv4`) to the store and the sockets.

pub mod app;
pub mod client_events;
pub mod clock;
pub mod config;
pub mod events;
pub mod media;
pub mod rest;
pub mod udp_send;
pub mod web;
pub mod websocket;

pub use app::{App, Node, StartError, router};
pub use config::{Cli, Command, Config, ServeArgs};
