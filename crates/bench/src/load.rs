//! Keep-alive HTTP/1.1 connections and the closed-loop drivers: each connection sends its
//! next request as soon as the previous response has been read in full.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::sign::{Op, Prepared};
use crate::stats::Latencies;

type Sender = SendRequest<Full<Bytes>>;

/// Opens one keep-alive connection (TCP_NODELAY) and drives it on the runtime.
async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes the connection; a failure
        // surfaces as an error of the request in flight.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one request and reads the whole response.
async fn exchange(sender: &mut Sender, prepared: &Prepared) -> Result<(StatusCode, Bytes), String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("connection lost: {e}"))?;
    let response = sender
        .send_request(prepared.request())
        .await
        .map_err(|e| format!("{}: {e}", prepared.op.name()))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{}: reading the body: {e}", prepared.op.name()))?
        .to_bytes();
    Ok((status, body))
}

fn describe_error(op: Op, status: StatusCode, body: &[u8]) -> String {
    format!(
        "{} answered {status}: {}",
        op.name(),
        String::from_utf8_lossy(body)
    )
}

/// Sends every request once over `connections` connections (set-up work, not measured) and
/// returns the response bodies in request order. Any non-2xx answer is an error.
pub async fn send_all(
    addr: SocketAddr,
    connections: usize,
    requests: Vec<Prepared>,
) -> Result<Vec<Bytes>, String> {
    let requests = Arc::new(requests);
    let cursor = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections.clamp(1, requests.len().max(1)) {
        let mut sender = connect(addr).await?;
        let (requests, cursor) = (requests.clone(), cursor.clone());
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            loop {
                let i = cursor.fetch_add(1, Ordering::Relaxed);
                let Some(prepared) = requests.get(i) else {
                    break;
                };
                let (status, body) = exchange(&mut sender, prepared).await?;
                if !status.is_success() {
                    return Err(describe_error(prepared.op, status, &body));
                }
                answers.push((i, body));
            }
            Ok::<_, String>(answers)
        }));
    }
    let mut answers = Vec::with_capacity(requests.len());
    for task in tasks {
        answers.extend(task.await.map_err(|e| format!("worker failed: {e}"))??);
    }
    answers.sort_unstable_by_key(|(i, _)| *i);
    Ok(answers.into_iter().map(|(_, body)| body).collect())
}

/// The requests of a timed phase, handed out in order to whichever connection is free.
pub struct Plan {
    requests: Vec<Arc<Prepared>>,
    /// Repeat the list forever (idempotent requests) instead of stopping at its end.
    cyclic: bool,
    cursor: AtomicUsize,
}

impl Plan {
    pub fn once(requests: Vec<Arc<Prepared>>) -> Plan {
        Plan {
            requests,
            cyclic: false,
            cursor: AtomicUsize::new(0),
        }
    }

    pub fn repeat(requests: Vec<Arc<Prepared>>) -> Plan {
        Plan {
            requests,
            cyclic: true,
            cursor: AtomicUsize::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.requests.len()
    }

    fn next(&self) -> Option<&Prepared> {
        let i = self.cursor.fetch_add(1, Ordering::Relaxed);
        if self.cyclic {
            self.requests.get(i % self.requests.len().max(1))
        } else {
            self.requests.get(i)
        }
        .map(|p| &**p)
    }
}

/// What a timed phase measured.
pub struct PhaseResult {
    /// Latencies (µs) of the requests sent and answered inside the measurement window.
    pub latencies: Latencies,
    /// Length of the measurement window (shorter than asked if the plan ran out).
    pub window: Duration,
    /// The plan ran out of requests before the end of the phase.
    pub exhausted: bool,
    /// Responses received over the whole phase, warm-up included.
    pub answered: u64,
    /// Responses outside 2xx over the whole phase (warm-up included), and the first one.
    pub errors: u64,
    pub first_error: Option<String>,
}

impl PhaseResult {
    pub fn throughput(&self) -> f64 {
        self.latencies.count() as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// Adds another run of the same phase: its requests and its measurement window.
    pub fn merge(&mut self, other: PhaseResult) {
        self.latencies.merge(other.latencies);
        self.window += other.window;
        self.exhausted |= other.exhausted;
        self.answered += other.answered;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

struct WorkerResult {
    latencies: Latencies,
    exhausted: bool,
    last_done: Instant,
    answered: u64,
    errors: u64,
    first_error: Option<String>,
}

/// Runs a closed loop on `connections` connections: `warmup` unmeasured, then `duration`
/// measured. A request counts when it was sent after the warm-up and answered before the end.
pub async fn run_timed(
    addr: SocketAddr,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    plan: Arc<Plan>,
) -> Result<PhaseResult, String> {
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(connect(addr).await?);
    }
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|sender| tokio::spawn(worker(sender, plan.clone(), measure_from, end)))
        .collect();

    let mut latencies = Latencies::default();
    let mut exhausted = false;
    let mut last_done = measure_from;
    let mut answered = 0;
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        let result = task.await.map_err(|e| format!("worker failed: {e}"))??;
        latencies.merge(result.latencies);
        exhausted |= result.exhausted;
        last_done = last_done.max(result.last_done);
        answered += result.answered;
        errors += result.errors;
        if first_error.is_none() {
            first_error = result.first_error;
        }
    }
    if exhausted && last_done <= measure_from {
        return Err(format!(
            "the plan ({} requests) ran out during the warm-up",
            plan.len()
        ));
    }
    let window = if exhausted {
        last_done.min(end) - measure_from
    } else {
        duration
    };
    Ok(PhaseResult {
        latencies,
        window,
        exhausted,
        answered,
        errors,
        first_error,
    })
}

async fn worker(
    mut sender: Sender,
    plan: Arc<Plan>,
    measure_from: Instant,
    end: Instant,
) -> Result<WorkerResult, String> {
    let mut result = WorkerResult {
        latencies: Latencies::default(),
        exhausted: false,
        last_done: measure_from,
        answered: 0,
        errors: 0,
        first_error: None,
    };
    while Instant::now() < end {
        let Some(prepared) = plan.next() else {
            result.exhausted = true;
            break;
        };
        let sent = Instant::now();
        let (status, body) = exchange(&mut sender, prepared).await?;
        let done = Instant::now();
        result.answered += 1;
        if !status.is_success() {
            result.errors += 1;
            if result.first_error.is_none() {
                result.first_error = Some(describe_error(prepared.op, status, &body));
            }
        }
        if sent >= measure_from && done <= end {
            result.latencies.record(prepared.op, done - sent);
            result.last_done = done;
        }
    }
    Ok(result)
}
