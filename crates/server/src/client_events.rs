//! `EventIngestionUrl`: the browser client POSTs batches of meeting events here with its join
//! token as bearer. The batches are accepted and logged; they are telemetry, not state.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};

use crate::app::App;

/// Request headers allowed when the preflight names none: what amazon-chime-sdk-js sends.
const DEFAULT_ALLOWED_HEADERS: &str = "authorization, content-type";

/// CORS preflight: the page is on another origin and sends an Authorization header. The
/// headers the browser asks about are echoed, so a client (or a proxy in front of it) that
/// adds its own headers is not refused; they grant nothing, the bearer token is what counts.
pub async fn preflight(headers: HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    cors(&headers, response.headers_mut());
    let allowed_headers = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .filter(|v| !v.as_bytes().iter().all(u8::is_ascii_whitespace))
        .cloned()
        .unwrap_or(HeaderValue::from_static(DEFAULT_ALLOWED_HEADERS));
    let h = response.headers_mut();
    // The SDK posts batches with fetch() and, when the page unloads, with sendBeacon():
    // both are POST.
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allowed_headers);
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    // The answer depends on the requested headers too, so caches must key on them.
    h.insert(
        header::VARY,
        HeaderValue::from_static("Origin, Access-Control-Request-Headers"),
    );
    response
}

/// `POST /v1/client-events`. The body is read only once the caller is authenticated, except
/// in the beacon form, where the token travels in the body.
pub async fn ingest(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (status, message) = accept(&app, query.as_deref(), &headers, body).await;
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "message": message }).to_string(),
    )
        .into_response();
    cors(&headers, response.headers_mut());
    response
}

/// Why a body could not be read.
enum BodyError {
    TooLarge,
    Unreadable,
}

async fn read_body(body: Body) -> Result<axum::body::Bytes, BodyError> {
    Limited::new(body, crate::rest::MAX_BODY)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                BodyError::TooLarge
            } else {
                BodyError::Unreadable
            }
        })
}

fn missing_token() -> (StatusCode, String) {
    (
        StatusCode::UNAUTHORIZED,
        "missing Authorization bearer token".into(),
    )
}

async fn accept(
    app: &App,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> (StatusCode, String) {
    let header_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // sendBeacon cannot set headers, so the beacon form carries the token in the body.
    let beacon = query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next() == Some("beacon"))
    });
    // The parsed batch (beacons), or the body still unread (bearer header).
    let (token, batch) = match header_token {
        Some(token) => (token, Err(body)),
        None if beacon => {
            // Nothing but a readable JSON body with a token string authenticates a beacon;
            // anything else is as unauthenticated as a request with no token at all.
            let Ok(bytes) = read_body(body).await else {
                return missing_token();
            };
            let Ok(batch) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                return missing_token();
            };
            let Some(token) = batch
                .get("authorization")
                .and_then(|t| t.as_str())
                .map(str::to_owned)
            else {
                return missing_token();
            };
            (token, Ok(batch))
        }
        None => return missing_token(),
    };
    let token = token.strip_prefix("Bearer ").unwrap_or(&token).trim();
    let now = app.clock.now_ms();
    let Some(attendee) = app.plane().authenticate_any(token, now) else {
        return (
            StatusCode::FORBIDDEN,
            "unknown or expired join token".into(),
        );
    };
    let batch: serde_json::Value = match batch {
        Ok(batch) => batch,
        Err(body) => {
            let bytes = match read_body(body).await {
                Ok(bytes) => bytes,
                Err(BodyError::TooLarge) => {
                    return (StatusCode::PAYLOAD_TOO_LARGE, "batch too large".into());
                }
                Err(BodyError::Unreadable) => {
                    return (StatusCode::BAD_REQUEST, "unreadable body".into());
                }
            };
            match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(e) => return (StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
            }
        }
    };
    let events = batch
        .get("events")
        .and_then(|e| e.as_array())
        .map_or(0, |events| {
            events
                .iter()
                .map(|e| {
                    e.get("payloads")
                        .and_then(|p| p.as_array())
                        .map_or(1, Vec::len)
                })
                .sum::<usize>()
        });
    tracing::debug!(meeting = %attendee.meeting_id, attendee = %attendee.id, events, "client events");
    (StatusCode::OK, "accepted".into())
}

fn cors(request: &HeaderMap, response: &mut HeaderMap) {
    let origin = request
        .get(header::ORIGIN)
        .cloned()
        .unwrap_or(HeaderValue::from_static("*"));
    response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    response.insert(header::VARY, HeaderValue::from_static("Origin"));
}
