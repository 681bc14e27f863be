//! `carillon-eventbench`: what meeting events cost and how fast they flow.
//!
//! 1. **Delivery rate**: a backlog of events is built while the webhook sink refuses (503),
//!    then the sink accepts and the time to drain the backlog is measured: events delivered
//!    per second to a webhook on loopback (target: >= 5,000/s).
//! 2. **Outbox cost**: CreateAttendee throughput, closed loop, side by side on fresh servers
//!    of the same binary, in interleaved rounds (A, B, C, A, B, C, ...) so that the machine's
//!    noise hits every variant alike: meetings with no event target (baseline); meetings with
//!    a NotificationsConfiguration whose SQS endpoint is unreachable (the outbox writes,
//!    deliveries deferred); a node with a webhook that receives every event live (outbox
//!    writes and deliveries). Reported as the ratio of the mean throughputs (and of each
//!    round's pair, and of the server CPU per request). Target: ratio >= 0.90 (<= 10 % loss)
//!    with a notification target.
//!
//! Exit status: 0 when every phase ran (whether or not the targets are met), 1 on errors.

#[allow(dead_code)]
#[path = "load.rs"]
mod load;
#[allow(dead_code)]
#[path = "procfs.rs"]
mod procfs;
#[allow(dead_code)]
#[path = "server.rs"]
mod server;
#[allow(dead_code)]
#[path = "sign.rs"]
mod sign;
#[allow(dead_code)]
#[path = "stats.rs"]
mod stats;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http::Method;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::load::{Plan, run_timed, send_all};
use crate::server::Server;
use crate::sign::{Op, Prepared, Signer};
use crate::stats::{ms, thousands};

const TARGET_EVENTS_PER_SECOND: f64 = 5_000.0;
const TARGET_LOSS: f64 = 0.10;
const SECRET: &str = "eventbench-secret";
/// CreateAttendee requests per meeting (Chime allows 250).
const PER_MEETING: usize = 200;

#[derive(Debug, Parser)]
#[command(
    name = "carillon-eventbench",
    about = "Meeting-event delivery rate and outbox cost for carillon"
)]
struct Args {
    /// The carillon binary to start (a release build).
    #[arg(long)]
    server_bin: PathBuf,
    /// Events in the backlog of the delivery-rate phase.
    #[arg(long, default_value_t = 50_000)]
    backlog: usize,
    /// Concurrent connections of the CreateAttendee phases.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Measured length of each CreateAttendee phase.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured warm-up before each CreateAttendee phase.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Rounds of the three CreateAttendee variants (interleaved, to even out machine noise).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 10s, 500ms)"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("carillon-eventbench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\ncarillon-eventbench: ERROR: {e}");
            ExitCode::FAILURE
        }
    }
}

// ----- the webhook sink -----

/// Counts deliveries; answers 503 while `refuse` is set. Runs on its own thread and runtime so
/// the load generator's loop does not slow it down.
struct Sink {
    addr: SocketAddr,
    refuse: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    ids: Arc<Mutex<HashSet<String>>>,
    first: Arc<Mutex<Option<Instant>>>,
    last: Arc<Mutex<Option<Instant>>>,
}

impl Sink {
    fn start() -> Result<Sink, String> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let sink = Sink {
            addr,
            refuse: Arc::new(AtomicBool::new(false)),
            accepted: Arc::new(AtomicU64::new(0)),
            refused: Arc::new(AtomicU64::new(0)),
            ids: Arc::new(Mutex::new(HashSet::new())),
            first: Arc::new(Mutex::new(None)),
            last: Arc::new(Mutex::new(None)),
        };
        let (refuse, accepted, refused, ids, first, last) = (
            sink.refuse.clone(),
            sink.accepted.clone(),
            sink.refused.clone(),
            sink.ids.clone(),
            sink.first.clone(),
            sink.last.clone(),
        );
        std::thread::Builder::new()
            .name("webhook-sink".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        let (refuse, accepted, refused, ids, first, last) = (
                            refuse.clone(),
                            accepted.clone(),
                            refused.clone(),
                            ids.clone(),
                            first.clone(),
                            last.clone(),
                        );
                        tokio::spawn(async move {
                            let service =
                                hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                                    let refusing = refuse.load(Ordering::Relaxed);
                                    if refusing {
                                        refused.fetch_add(1, Ordering::Relaxed);
                                    } else {
                                        let now = Instant::now();
                                        first.lock().unwrap().get_or_insert(now);
                                        *last.lock().unwrap() = Some(now);
                                        accepted.fetch_add(1, Ordering::Relaxed);
                                        if let Some(id) = req
                                            .headers()
                                            .get("x-carillon-event-id")
                                            .and_then(|v| v.to_str().ok())
                                        {
                                            ids.lock().unwrap().insert(id.to_owned());
                                        }
                                    }
                                    async move {
                                        // The body is small; hyper discards what is not read.
                                        let status = if refusing { 503 } else { 204 };
                                        let mut response =
                                            hyper::Response::new(Full::new(Bytes::new()));
                                        *response.status_mut() =
                                            hyper::StatusCode::from_u16(status)
                                                .expect("valid status");
                                        Ok::<_, std::convert::Infallible>(response)
                                    }
                                });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                });
            })
            .map_err(|e| e.to_string())?;
        Ok(sink)
    }

    fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    fn unique(&self) -> usize {
        self.ids.lock().unwrap().len()
    }
}

// ----- requests -----

fn create_meeting(signer: &Signer, i: usize, queue: Option<&str>) -> Result<Prepared, String> {
    let mut body = json!({
        "ClientRequestToken": uuid::Uuid::new_v4().simple().to_string(),
        "MediaRegion": "us-east-1",
        "ExternalMeetingId": format!("eventbench-{i}"),
    });
    if let Some(queue) = queue {
        body["NotificationsConfiguration"] = json!({ "SqsQueueArn": queue });
    }
    signer.sign(
        Op::CreateMeeting,
        Method::POST,
        "/meetings",
        body.to_string(),
    )
}

async fn create_meetings(
    addr: SocketAddr,
    signer: &Signer,
    count: usize,
    queue: Option<&str>,
) -> Result<Vec<String>, String> {
    let requests = (0..count)
        .map(|i| create_meeting(signer, i, queue))
        .collect::<Result<Vec<_>, _>>()?;
    send_all(addr, 8, requests)
        .await?
        .iter()
        .map(|body| {
            let v: serde_json::Value =
                serde_json::from_slice(body).map_err(|e| format!("CreateMeeting: {e}"))?;
            v["Meeting"]["MeetingId"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| "CreateMeeting answered without a MeetingId".to_owned())
        })
        .collect()
}

fn create_attendee(signer: &Signer, meeting: &str, user: usize) -> Result<Prepared, String> {
    signer.sign(
        Op::CreateAttendee,
        Method::POST,
        &format!("/meetings/{meeting}/attendees"),
        json!({ "ExternalUserId": format!("u-{user}") }).to_string(),
    )
}

fn batch_create(signer: &Signer, meeting: &str, from: usize, n: usize) -> Result<Prepared, String> {
    let attendees: Vec<serde_json::Value> = (from..from + n)
        .map(|u| json!({ "ExternalUserId": format!("b-{u}") }))
        .collect();
    signer.sign(
        Op::BatchCreateAttendee,
        Method::POST,
        &format!("/meetings/{meeting}/attendees?operation=batch-create"),
        json!({ "Attendees": attendees }).to_string(),
    )
}

// ----- phases -----

async fn run(args: &Args) -> Result<(), String> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("carillon-eventbench");
    println!("  server binary   {}", args.server_bin.display());
    println!("  machine cores   {cores} (server, sink and load generator share them)");
    let rate = delivery_rate(args).await?;
    let variants = outbox_cost(args).await?;

    let baseline = variants[0].throughput;
    let loss = |v: f64| 1.0 - v / baseline.max(1e-9);
    println!("\n== Summary ({cores} cores)");
    println!("  {:<58} {:<22} result", "target", "measured");
    println!("  {}", "-".repeat(90));
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!(
        "  {:<58} {:<22} {}",
        "webhook deliveries >= 5,000 events/s (backlog drain)",
        format!("{} events/s", thousands(rate)),
        verdict(rate >= TARGET_EVENTS_PER_SECOND)
    );
    let outbox = &variants[1];
    println!(
        "  {:<58} {:<22} {}",
        "CreateAttendee, outbox on / no target >= 0.90 (<= 10 % loss)",
        format!(
            "{:.3} ({:.1} % loss)",
            outbox.throughput / baseline.max(1e-9),
            loss(outbox.throughput) * 100.0
        ),
        verdict(loss(outbox.throughput) <= TARGET_LOSS)
    );
    println!(
        "  {:<58} {:<22} info",
        "  (same, per-round pairs: median ratio)",
        format!("{:.3}", median(&outbox.round_ratios)),
    );
    println!(
        "  {:<58} {:<22} info",
        "  (server CPU per request, outbox on / no target)",
        format!(
            "{:.3} ({:+.1} µs)",
            outbox.cpu_us / variants[0].cpu_us.max(1e-9),
            outbox.cpu_us - variants[0].cpu_us
        ),
    );
    println!(
        "  {:<58} {:<22} info",
        "  (every event also delivered live to a webhook)",
        format!(
            "{:.3} ({:.1} % loss)",
            variants[2].throughput / baseline.max(1e-9),
            loss(variants[2].throughput) * 100.0
        ),
    );
    Ok(())
}

/// One CreateAttendee variant, averaged over the rounds.
struct Variant {
    name: &'static str,
    /// Mean requests per second.
    throughput: f64,
    /// Mean server CPU per answered request, in microseconds.
    cpu_us: f64,
    /// Each round's throughput divided by the baseline's of the same round.
    round_ratios: Vec<f64>,
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Phase 1: drain a backlog into the webhook sink.
async fn delivery_rate(args: &Args) -> Result<f64, String> {
    println!(
        "\n== Phase 1: delivery rate (backlog of ~{} events, webhook on loopback)",
        thousands(args.backlog as f64)
    );
    let sink = Sink::start()?;
    sink.refuse.store(true, Ordering::SeqCst);
    let url = sink.url();
    let mut server = Server::start_with(
        &args.server_bin,
        &["--webhook", &url],
        &[("CARILLON_WEBHOOK_SECRET", SECRET)],
    )?;
    let signer = Signer::new(&server.addr.to_string())?;
    // 100 attendees per BatchCreateAttendee, 200 per meeting: one event per attendee, one per
    // meeting.
    let meetings = args.backlog.div_ceil(PER_MEETING + 1);
    let ids = create_meetings(server.addr, &signer, meetings, None).await?;
    let mut batches = Vec::new();
    for (m, meeting) in ids.iter().enumerate() {
        for start in (0..PER_MEETING).step_by(100) {
            batches.push(batch_create(
                &signer,
                meeting,
                m * PER_MEETING + start,
                100,
            )?);
        }
    }
    let started = Instant::now();
    send_all(server.addr, 8, batches).await?;
    let events = meetings * (PER_MEETING + 1);
    println!(
        "  backlog         {} events written in {:.1} s while the sink answered 503 ({} refusals)",
        thousands(events as f64),
        started.elapsed().as_secs_f64(),
        sink.refused.load(Ordering::Relaxed)
    );
    sink.refuse.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(300);
    while sink.unique() < events {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {events} events arrived within 300 s",
                sink.unique()
            ));
        }
        server.check_alive()?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = sink.first.lock().unwrap().ok_or("no delivery")?;
    let last = sink.last.lock().unwrap().ok_or("no delivery")?;
    let window = last.duration_since(first).as_secs_f64().max(1e-6);
    let accepted = sink.accepted.load(Ordering::Relaxed);
    let rate = events as f64 / window;
    println!(
        "  drained         {} events in {:.2} s: {} events/s ({} deliveries, {} duplicates)",
        thousands(events as f64),
        window,
        thousands(rate),
        thousands(accepted as f64),
        accepted.saturating_sub(events as u64)
    );
    server.stop();
    Ok(rate)
}

/// Phase 2: CreateAttendee throughput without and with event targets.
async fn outbox_cost(args: &Args) -> Result<Vec<Variant>, String> {
    println!(
        "\n== Phase 2: CreateAttendee throughput ({} connections, {} warm-up + {} measured, {} rounds)",
        args.connections,
        humantime::format_duration(args.warmup),
        humantime::format_duration(args.duration),
        args.rounds
    );
    // An SQS endpoint nobody listens on: the outbox is written, deliveries fail fast and the
    // worker backs off, so this measures what writing the events costs.
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        l.local_addr().map_err(|e| e.to_string())?.port()
    };
    let dead_endpoint = format!("http://127.0.0.1:{dead_port}");
    let queue = "arn:aws:sqs:us-east-1:000000000000:eventbench";
    let sink = Sink::start()?;
    let webhook = sink.url();
    let names = [
        "no event target",
        "NotificationsConfiguration (SQS, deferred)",
        "webhook, delivered live",
    ];
    let mut sums = [0.0f64; 3];
    let mut cpu_sums = [0.0f64; 3];
    let mut ratios: [Vec<f64>; 3] = Default::default();
    for round in 0..args.rounds {
        let mut this_round = [0.0f64; 3];
        for (v, name) in names.iter().enumerate() {
            let (flags, env, queue): (Vec<&str>, Vec<(&str, &str)>, Option<&str>) = match v {
                0 => (vec![], vec![], None),
                1 => (
                    vec![],
                    vec![
                        ("AWS_ACCESS_KEY_ID", "bench"),
                        ("AWS_SECRET_ACCESS_KEY", "bench"),
                        ("AWS_REGION", "us-east-1"),
                        ("AWS_ENDPOINT_URL_SQS", &dead_endpoint),
                        ("AWS_EC2_METADATA_DISABLED", "true"),
                    ],
                    Some(queue),
                ),
                _ => (
                    vec!["--webhook", &webhook],
                    vec![("CARILLON_WEBHOOK_SECRET", SECRET)],
                    None,
                ),
            };
            let before = sink.unique();
            let mut server = Server::start_with(&args.server_bin, &flags, &env)?;
            let signer = Signer::new(&server.addr.to_string())?;
            // Enough pre-signed requests for a fast server; each meeting gets at most 200.
            let count = 150_000usize;
            let meetings =
                create_meetings(server.addr, &signer, count / PER_MEETING, queue).await?;
            let requests = (0..count)
                .map(|i| create_attendee(&signer, &meetings[i % meetings.len()], i).map(Arc::new))
                .collect::<Result<Vec<_>, _>>()?;
            let plan = Arc::new(Plan::once(requests));
            let mark = crate::procfs::CpuMark::start(server.pid())?;
            let result = run_timed(
                server.addr,
                args.connections,
                args.warmup,
                args.duration,
                plan,
            )
            .await?;
            let cpu = mark.finish()?;
            server.check_alive()?;
            if result.errors > 0 {
                return Err(format!(
                    "{} non-2xx answers; first: {}",
                    result.errors,
                    result.first_error.unwrap_or_default()
                ));
            }
            let all = result.latencies.overall();
            println!(
                "  round {} {:<44} {:>8} req/s   p50 {:>9}   p99 {:>9}{}",
                round + 1,
                name,
                thousands(result.throughput()),
                ms(all.p50),
                ms(all.p99),
                if v == 2 {
                    format!("   ({} events at the sink)", sink.unique() - before)
                } else {
                    String::new()
                }
            );
            // Where the server's CPU went, per answered request.
            let per = |seconds: f64| seconds * 1e6 / result.answered.max(1) as f64;
            let threads: Vec<String> = cpu
                .server_threads
                .iter()
                .filter(|(_, t)| t.running > 0.0)
                .map(|(name, t)| format!("{name} {:.1}", per(t.running)))
                .collect();
            println!(
                "          server {:.1} µs/request ({}); other processes {:.2} cores",
                per(cpu.server),
                threads.join(", "),
                cpu.cores(cpu.other)
            );
            sums[v] += result.throughput();
            cpu_sums[v] += per(cpu.server);
            this_round[v] = result.throughput();
            server.stop();
        }
        for v in 0..3 {
            ratios[v].push(this_round[v] / this_round[0].max(1e-9));
        }
    }
    let rounds = args.rounds.max(1) as f64;
    let out: Vec<Variant> = names
        .iter()
        .zip(sums.iter().zip(cpu_sums.iter()).zip(ratios))
        .map(|(name, ((s, c), round_ratios))| Variant {
            name,
            throughput: s / rounds,
            cpu_us: c / rounds,
            round_ratios,
        })
        .collect();
    println!("  mean over {} rounds:", args.rounds);
    for v in &out {
        let ratios: Vec<String> = v.round_ratios.iter().map(|r| format!("{r:.3}")).collect();
        println!(
            "    {:<50} {:>8} req/s  ratio {:.3} ({:+.1} %)  {:.1} µs/request  rounds [{}]",
            v.name,
            thousands(v.throughput),
            v.throughput / out[0].throughput.max(1e-9),
            (v.throughput / out[0].throughput.max(1e-9) - 1.0) * 100.0,
            v.cpu_us,
            ratios.join(" ")
        );
    }
    Ok(out)
}
