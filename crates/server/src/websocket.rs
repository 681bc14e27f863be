//! The signaling WebSocket's server side: the HTTP/1.1 upgrade (RFC 6455 §4.2) and how messages
//! are framed on the way out.
//!
//! Why not axum's `WebSocketUpgrade`: a connection's write buffer (tungstenite's) keeps the
//! capacity of the largest message it ever wrote, for the connection's whole life, and a
//! 250-attendee roster snapshot is ~15 KiB (heap-profiled: ~7 KiB per connection on average
//! in a 250-attendee meeting). So a message larger than [`FRAGMENT`] leaves as a fragmented
//! message (RFC 6455 §5.4) and the buffer never holds more than one fragment. axum's `Message`
//! cannot express fragments; a client reassembles them before it sees the message.

use axum::http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::SinkExt;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

/// An accepted signaling WebSocket.
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Largest payload of one outgoing frame; larger messages are fragmented. Most signaling frames
/// are a few hundred bytes; an SDP answer or a big roster takes a few fragments.
pub const FRAGMENT: usize = 1024;

/// Largest message (and frame) accepted from a client. The biggest a Chime client sends is an
/// SDP offer of a few KiB; tungstenite's defaults (64 MiB) would let one client hold that much.
const MAX_INCOMING: usize = 1 << 20;

/// A valid upgrade request, not yet answered.
pub struct Handshake {
    key: HeaderValue,
    protocol: Option<&'static str>,
    on_upgrade: OnUpgrade,
}

impl Handshake {
    /// Checks an upgrade request; `protocol` is the subprotocol echoed when the client offers
    /// it.
    pub fn from_request(parts: &mut Parts, protocol: &'static str) -> Result<Handshake, Refusal> {
        let headers = &parts.headers;
        if parts.method != Method::GET {
            return Err(Refusal::Method);
        }
        if !header_has_token(headers, CONNECTION, "upgrade") {
            return Err(Refusal::Connection);
        }
        if !header_has_token(headers, UPGRADE, "websocket") {
            return Err(Refusal::Upgrade);
        }
        if headers
            .get(SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            != Some(b"13")
        {
            return Err(Refusal::Version);
        }
        let Some(key) = headers.get(SEC_WEBSOCKET_KEY).cloned() else {
            return Err(Refusal::Key);
        };
        let protocol = offered_protocols(headers)
            .any(|p| p == protocol)
            .then_some(protocol);
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err(Refusal::NotUpgradable);
        };
        Ok(Handshake {
            key,
            protocol,
            on_upgrade,
        })
    }

    /// Answers 101 and runs `serve` with the socket once the connection is upgraded.
    pub fn accept<F, Fut>(self, serve: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let socket = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(config()),
                    )
                    .await;
                    serve(socket).await;
                }
                Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
            }
        });
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let headers = response.headers_mut();
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        let accept = derive_accept_key(self.key.as_bytes());
        headers.insert(
            SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
        );
        if let Some(protocol) = self.protocol {
            headers.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
        }
        response
    }
}

/// The subprotocols a client offers (`Sec-WebSocket-Protocol`, comma-separated, possibly in
/// several headers).
pub fn offered_protocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    header_tokens(headers, SEC_WEBSOCKET_PROTOCOL)
}

/// Whether a comma-separated header holds `token` (case-insensitive, as `Connection` and
/// `Upgrade` are compared).
fn header_has_token(headers: &HeaderMap, name: HeaderName, token: &'static str) -> bool {
    header_tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// The non-empty, trimmed items of a comma-separated header, over all its occurrences.
fn header_tokens(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Why a request is not a WebSocket upgrade we can accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Method,
    Connection,
    Upgrade,
    Version,
    Key,
    NotUpgradable,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Refusal::Method => (StatusCode::METHOD_NOT_ALLOWED, "use GET to upgrade"),
            Refusal::Connection => (
                StatusCode::BAD_REQUEST,
                "Connection header did not include 'upgrade'",
            ),
            Refusal::Upgrade => (
                StatusCode::BAD_REQUEST,
                "Upgrade header did not include 'websocket'",
            ),
            Refusal::Version => (
                StatusCode::UPGRADE_REQUIRED,
                "Sec-WebSocket-Version must be 13",
            ),
            Refusal::Key => (StatusCode::BAD_REQUEST, "Sec-WebSocket-Key header missing"),
            Refusal::NotUpgradable => (
                StatusCode::BAD_REQUEST,
                "this connection cannot be upgraded",
            ),
        };
        let mut response = (status, message).into_response();
        if self == Refusal::Version {
            response
                .headers_mut()
                .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        }
        response
    }
}

/// Small buffers: signaling messages are a few hundred bytes (an SDP offer a few KiB: the read
/// buffer grows for a larger message), and the 128 KiB defaults, zeroed on first use, would
/// dominate a connection's memory. The reader reserves this much free space before each read,
/// so a larger value keeps a larger buffer (4096 kept 8 KiB each). Writes go out at once.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_INCOMING))
        .max_frame_size(Some(MAX_INCOMING))
}

/// The frames of one binary message: a single frame up to [`FRAGMENT`] bytes, otherwise a
/// binary frame and continuation frames of at most [`FRAGMENT`] bytes, the last one final.
pub fn binary_frames(message: Bytes) -> impl Iterator<Item = Message> {
    let len = message.len();
    let count = len.div_ceil(FRAGMENT).max(1);
    (0..count).map(move |i| {
        let start = i * FRAGMENT;
        let chunk = message.slice(start..len.min(start + FRAGMENT));
        let opcode = if i == 0 { Data::Binary } else { Data::Continue };
        Message::Frame(Frame::message(chunk, OpCode::Data(opcode), i + 1 == count))
    })
}

/// Sends one binary message, fragmented as [`binary_frames`] says.
pub async fn send_binary(socket: &mut Socket, message: Bytes) -> Result<(), tungstenite::Error> {
    for frame in binary_frames(message) {
        socket.feed(frame).await?;
    }
    socket.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parts(frame: &Message) -> (OpCode, bool, Bytes) {
        let Message::Frame(frame) = frame else {
            panic!("raw frames expected");
        };
        (
            frame.header().opcode,
            frame.header().is_final,
            Bytes::copy_from_slice(frame.payload()),
        )
    }

    #[test]
    fn a_small_message_is_one_final_binary_frame() {
        let frames: Vec<_> = binary_frames(Bytes::from_static(b"hello")).collect();
        assert_eq!(frames.len(), 1);
        assert_eq!(
            parts(&frames[0]),
            (
                OpCode::Data(Data::Binary),
                true,
                Bytes::from_static(b"hello")
            )
        );
        let empty: Vec<_> = binary_frames(Bytes::new()).collect();
        assert_eq!(empty.len(), 1, "an empty message is still a message");
    }

    /// A request with these headers, as axum hands it over (with hyper's upgrade handle).
    fn request(method: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = axum::http::Request::builder()
            .method(method)
            .uri("/control/m");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(()).expect("a valid request");
        let on_upgrade = hyper::upgrade::on(&mut request);
        let (mut parts, ()) = request.into_parts();
        parts.extensions.insert(on_upgrade);
        parts
    }

    const UPGRADE_HEADERS: [(&str, &str); 5] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-protocol", "_aws_wt_session, dG9rZW4"),
    ];

    #[test]
    fn an_upgrade_request_is_accepted_and_answered_101_with_the_subprotocol() {
        let mut parts = request("GET", &UPGRADE_HEADERS);
        let handshake = Handshake::from_request(&mut parts, "_aws_wt_session").expect("valid");
        assert_eq!(handshake.protocol, Some("_aws_wt_session"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let response = rt.block_on(async { handshake.accept(|_| async {}) });
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        // RFC 6455's own example key and answer.
        assert_eq!(
            response.headers()[SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            response.headers()[SEC_WEBSOCKET_PROTOCOL],
            "_aws_wt_session"
        );
        let mut without = request("GET", &UPGRADE_HEADERS[..4]);
        let handshake = Handshake::from_request(&mut without, "_aws_wt_session").expect("valid");
        assert_eq!(handshake.protocol, None, "not offered, not echoed");
    }

    proptest! {
        /// Any header values: never a panic, and accepted exactly when the request is a
        /// version-13 WebSocket upgrade with a key.
        #[test]
        fn handshake_headers_never_panic(
            method in prop::sample::select(vec!["GET", "POST", "PUT"]),
            values in prop::collection::vec(prop::option::of("[ -~]{0,40}"), 5),
        ) {
            let headers: Vec<(&str, &str)> = UPGRADE_HEADERS
                .iter()
                .zip(&values)
                .filter_map(|((name, _), value)| value.as_deref().map(|v| (*name, v)))
                .collect();
            let mut parts = request(method, &headers);
            let result = Handshake::from_request(&mut parts, "_aws_wt_session");
            let has = |name: &str, token: &str| {
                headers.iter().any(|(n, v)| {
                    *n == name && v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
                })
            };
            let valid = method == "GET"
                && has("connection", "upgrade")
                && has("upgrade", "websocket")
                && headers.iter().any(|(n, v)| *n == "sec-websocket-version" && *v == "13")
                && headers.iter().any(|(n, _)| *n == "sec-websocket-key");
            prop_assert_eq!(result.is_ok(), valid);
        }

        /// Reassembled fragments are the message: a binary frame first, continuations after,
        /// only the last final, none larger than a fragment.
        #[test]
        fn fragments_reassemble_to_the_message(len in 0usize..5000, seed in any::<u8>()) {
            let message: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
            let frames: Vec<_> = binary_frames(Bytes::from(message.clone())).collect();
            prop_assert_eq!(frames.len(), len.div_ceil(FRAGMENT).max(1));
            let mut joined = Vec::new();
            for (i, frame) in frames.iter().enumerate() {
                let (opcode, fin, payload) = parts(frame);
                let expected = if i == 0 { Data::Binary } else { Data::Continue };
                prop_assert_eq!(opcode, OpCode::Data(expected));
                prop_assert_eq!(fin, i + 1 == frames.len());
                prop_assert!(payload.len() <= FRAGMENT);
                joined.extend_from_slice(&payload);
            }
            prop_assert_eq!(joined, message);
        }
    }
}
