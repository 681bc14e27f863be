//! `EventIngestionUrl`: the browser client POSTs batches of meeting events here with its join
//! token as bearer. The batches are accepted and logged; they are telemetry, not state.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::app::App;

#[derive(Deserialize)]
pub struct Params {
    beacon: Option<String>,
}

/// CORS preflight: the page is on another origin and sends an Authorization header.
pub async fn preflight(headers: HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    cors(&headers, response.headers_mut());
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    response
}

pub async fn ingest(
    State(app): State<Arc<App>>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (status, message) = accept(&app, &params, &headers, &body);
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "message": message }).to_string(),
    )
        .into_response();
    cors(&headers, response.headers_mut());
    response
}

fn accept(app: &App, params: &Params, headers: &HeaderMap, body: &[u8]) -> (StatusCode, String) {
    if body.len() > crate::rest::MAX_BODY {
        return (StatusCode::PAYLOAD_TOO_LARGE, "batch too large".into());
    }
    let batch: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
    };
    // sendBeacon cannot set headers, so the beacon form carries the token in the body.
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            params.beacon.as_ref()?;
            batch.get("authorization")?.as_str().map(str::to_owned)
        });
    let Some(token) = token else {
        return (
            StatusCode::UNAUTHORIZED,
            "missing Authorization bearer token".into(),
        );
    };
    let token = token.strip_prefix("Bearer ").unwrap_or(&token).trim();
    let now = app.clock.now_ms();
    let Some(attendee) = app.plane().authenticate_any(token, now) else {
        return (
            StatusCode::FORBIDDEN,
            "unknown or expired join token".into(),
        );
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
