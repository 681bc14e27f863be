//! The signed REST API: bytes in, AWS-shaped bytes out. All protocol logic lives in
//! `carillon-api` and `carillon-sigv4`; this adapter reads the body, verifies the signature,
//! takes the lock, waits for the commit and writes headers.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use carillon_api::transcription::summary as transcription_summary;
use carillon_api::{ApiError, Query, Reply, api_error, execute, parse_command, render, route};
use carillon_control::Caller;
use carillon_sigv4::SignedRequest;
use http_body_util::{BodyExt, Limited};

use crate::app::App;

/// Largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;

pub async fn handle(State(app): State<Arc<App>>, request: Request) -> Response {
    let request_id = new_request_id();
    match serve(&app, request, &request_id).await {
        Ok((status, body)) => respond(status, body, &request_id, None),
        Err(error) => {
            if error.exception.status() >= 500 {
                tracing::warn!(request_id, error = %error, "request failed");
            } else {
                tracing::debug!(request_id, error = %error, "request rejected");
            }
            let body = error.body(&request_id);
            respond(error.exception.status(), body, &request_id, Some(&error))
        }
    }
}

async fn serve(app: &App, request: Request, request_id: &str) -> Result<(u16, Vec<u8>), ApiError> {
    let (parts, body) = request.into_parts();
    if let Some(length) = parts.headers.get(header::CONTENT_LENGTH)
        && length
            .to_str()
            .ok()
            .and_then(|l| l.parse::<usize>().ok())
            .is_some_and(|l| l > MAX_BODY)
    {
        return Err(too_large());
    }
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                ApiError::bad_request("The request body could not be read")
            }
        })?
        .to_bytes();

    let path = parts.uri.path();
    let raw_query = parts.uri.query().unwrap_or("");
    let verified = app
        .verifier
        .verify(
            &SignedRequest {
                method: parts.method.as_str(),
                path,
                query: raw_query,
                headers: &parts.headers,
                body: &body,
            },
            SystemTime::now(),
        )
        .map_err(|e| ApiError::forbidden(e.to_string()))?;

    let query = Query::parse(raw_query);
    let route = route(parts.method.as_str(), path, &query)?;
    if let Some(limiter) = &app.rate_limiter {
        let allowed = limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_acquire(route.operation(), app.clock.now_ms());
        if !allowed {
            return Err(ApiError::new(
                carillon_api::Exception::Throttling,
                format!("Rate exceeded for {}", route.operation().name()),
            ));
        }
    }
    let command = parse_command(route, &query, &body, app.validation)?;
    if app.is_recovering() {
        return Err(ApiError::unavailable(
            "The service is recovering from a storage failure; retry later",
            1,
        ));
    }
    let caller = Caller {
        region: verified.region,
    };
    let now = app.clock.now_ms();
    let (result, pending) = app.mutate(|plane| execute(plane, command, &caller, now));
    if let Err(e) = pending.finish().await {
        tracing::error!(request_id, error = %e, "request not persisted");
        return Err(ApiError::unavailable(
            "The service could not persist the request; retry later",
            1,
        ));
    }
    let reply = result.map_err(|e| api_error(e, app.validation))?;
    log_transcription(request_id, &reply);
    Ok(render(&reply, &app.placement))
}

/// Transcription state changes are logged once durable: there are no transcripts yet, so
/// the log is where an operator sees what a meeting asked for.
fn log_transcription(request_id: &str, reply: &Reply) {
    let (meeting, transcription, what) = match reply {
        Reply::TranscriptionStarted {
            meeting,
            transcription,
        } => (meeting, transcription, "started"),
        Reply::TranscriptionStopped {
            meeting,
            stopped: Some(stopped),
        } => (meeting, stopped, "stopped"),
        Reply::TranscriptionStopped {
            meeting,
            stopped: None,
        } => {
            tracing::info!(
                request_id,
                meeting = %meeting,
                "transcription stop requested; none was running"
            );
            return;
        }
        _ => return,
    };
    tracing::info!(
        request_id,
        meeting = %meeting,
        engine = ?transcription.engine,
        region = %transcription.region,
        settings = %transcription_summary(&transcription.configuration_json),
        "transcription {what}"
    );
}

fn too_large() -> ApiError {
    ApiError::bad_request(format!(
        "The request body is larger than the limit of {MAX_BODY} bytes"
    ))
}

fn respond(status: u16, body: Vec<u8>, request_id: &str, error: Option<&ApiError>) -> Response {
    let has_body = !body.is_empty();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        "x-amzn-RequestId",
        HeaderValue::from_str(request_id).expect("uuid is a valid header value"),
    );
    if has_body {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if let Some(error) = error {
        headers.insert(
            "X-Amzn-ErrorType",
            HeaderValue::from_static(error.exception.name()),
        );
        if let Some(seconds) = error.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
    }
    response
}

/// A random version-4 UUID from the thread-local generator (no syscall per request).
pub fn new_request_id() -> String {
    let bytes: [u8; 16] = rand::random();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}
