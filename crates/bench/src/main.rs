//! `carillon-loadgen`: starts a carillon server, measures the control plane (unsigned
//! `/healthz` baseline, the signed REST mix, memory with 250 meetings × 250 attendees) and
//! prints the numbers next to the performance targets.
//!
//! Exit status: 0 when every phase ran (whether or not the targets are met), 1 on errors
//! (the server did not start or crashed, a request failed, a non-2xx answer).

mod load;
mod mix;
mod procfs;
mod server;
mod sign;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::load::{PhaseResult, Plan, run_timed};
use crate::procfs::{CpuMark, CpuUse};
use crate::server::{MAX_ACTIVE_MEETINGS, Server};
use crate::sign::{Op, Signer};
use crate::stats::{megabytes, ms, thousands};

/// The signed mix, in equal shares.
const MIX: [Op; 4] = [
    Op::CreateMeeting,
    Op::CreateAttendee,
    Op::GetAttendee,
    Op::ListAttendees,
];
/// Targets of the control plane.
const TARGET_SIGNED_RPS: f64 = 20_000.0;
const TARGET_HEALTHZ_SHARE: f64 = 0.40;
const TARGET_P99_US: u32 = 5_000;
const TARGET_P99_CONNECTIONS: usize = 32;
const TARGET_RSS_BYTES: u64 = 150_000_000;
/// The memory phase: meetings × attendees stored.
const FILL_MEETINGS: usize = 250;
const FILL_ATTENDEES: usize = 250;
/// CreateMeeting requests the mix may send: they all stay active during the run.
const MAX_MIX_CREATES: usize = MAX_ACTIVE_MEETINGS - 3_000;

#[derive(Debug, Parser)]
#[command(
    name = "carillon-loadgen",
    about = "Control-plane load generator for carillon"
)]
struct Args {
    /// The carillon binary to start (a release build).
    #[arg(long)]
    server_bin: PathBuf,
    /// Concurrent keep-alive connections (closed loop: one request in flight on each).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Measured length of each timed phase.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured warm-up before each timed phase.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Worker threads of the load generator (1: a current-thread runtime, which leaves the
    /// most CPU to the server on a small machine).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Requests of each operation to pre-sign for the mix (default: sized from the /healthz
    /// throughput, at most 97,000 so that every meeting created fits the server's quota).
    #[arg(long)]
    mix_requests: Option<usize>,
    /// Afterwards, also run each operation of the mix alone (diagnostics: a fresh server per
    /// operation, same connections and durations).
    #[arg(long)]
    per_op: bool,
    /// The /healthz baseline and the signed mix alternate in this many rounds, each measuring
    /// `--duration / rounds`, so that the machine's drifts and bursts fall on both alike.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

/// Warm-up of the rounds after the first (the connections are new, the server is warm).
const LATER_WARMUP: Duration = Duration::from_millis(500);

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 10s, 500ms, 1m)"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.connections == 0
        || args.duration.is_zero()
        || args.client_threads == 0
        || args.rounds == 0
    {
        eprintln!(
            "carillon-loadgen: --connections, --duration, --client-threads and --rounds must be > 0"
        );
        return ExitCode::from(2);
    }
    // The mix is signed before its first round and must stay valid (the server's 15-minute
    // skew) until its last, with the baseline's rounds in between.
    if 2 * (args.warmup + args.duration) > Duration::from_secs(12 * 60) {
        eprintln!("carillon-loadgen: --warmup + --duration must stay under 6 minutes");
        return ExitCode::from(2);
    }
    let runtime = if args.client_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.client_threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("carillon-loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\ncarillon-loadgen: ERROR: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<(), String> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("carillon-loadgen");
    println!("  server binary   {}", args.server_bin.display());
    println!("  machine cores   {cores} (client and server share them)");
    println!(
        "  load            {} connections, closed loop, {} warm-up + {} measured per phase ({} alternating rounds of baseline and mix)",
        args.connections,
        humantime::format_duration(args.warmup),
        humantime::format_duration(args.duration),
        args.rounds
    );
    println!(
        "  client runtime  {}",
        if args.client_threads == 1 {
            "tokio current-thread (1 thread)".to_owned()
        } else {
            format!("tokio multi-thread ({} workers)", args.client_threads)
        }
    );

    let mut server = Server::start(&args.server_bin)?;
    println!(
        "  server          http://{} (pid {}, RSS {})",
        server.addr,
        server.pid(),
        megabytes(server.rss_bytes()?)
    );

    // Phases 1 and 2: the unsigned baseline and the signed mix, alternating in rounds.
    let rounds = args.rounds;
    let slice = args.duration / rounds;
    let warmup_of = |round: u32| {
        if round == 0 {
            args.warmup
        } else {
            args.warmup.min(LATER_WARMUP)
        }
    };
    let signer = Signer::new(&server.addr.to_string())?;
    let healthz = Arc::new(signer.unsigned(Op::Healthz, "/healthz")?);
    let healthz = Arc::new(Plan::repeat(vec![healthz]));
    let mut baseline: Option<PhaseResult> = None;
    let mut signed: Option<PhaseResult> = None;
    let mut mix = None;
    for round in 0..rounds {
        let warmup = warmup_of(round);
        println!(
            "\n== Phase 1, round {}/{rounds}: GET /healthz (unsigned baseline)",
            round + 1
        );
        let (result, _) = timed_phase(&server, healthz.clone(), warmup, slice, args).await?;
        fail_on_errors("/healthz", &result)?;
        print_phase(&result, &[]);
        merge_into(&mut baseline, result);
        server.check_alive()?;

        let mix = match &mut mix {
            Some(mix) => mix,
            None => {
                // Sized from the first baseline round, for every round of the mix.
                let mix_secs = (0..rounds)
                    .map(|r| (warmup_of(r) + slice).as_secs_f64())
                    .sum::<f64>();
                let rps = baseline.as_ref().map_or(0.0, PhaseResult::throughput);
                let per_op = args
                    .mix_requests
                    .unwrap_or_else(|| (rps * mix_secs * 1.1 / 4.0).ceil() as usize)
                    .clamp(1_000, MAX_MIX_CREATES);
                let started = Instant::now();
                let prepared = mix::prepare(server.addr, &signer, &MIX, per_op).await?;
                println!(
                    "  set-up          {} pool meetings ({} seed attendees each, CreateAttendee spread so no meeting exceeds {}), {} requests pre-signed in {:.1} s",
                    prepared.pool_meetings,
                    mix::SEED_ATTENDEES,
                    mix::MAX_ATTENDEES_PER_MEETING,
                    thousands((4 * prepared.per_op) as f64),
                    started.elapsed().as_secs_f64()
                );
                mix.insert(prepared)
            }
        };
        println!(
            "\n== Phase 2, round {}/{rounds}: signed mix (25% each CreateMeeting, CreateAttendee, GetAttendee, ListAttendees)",
            round + 1
        );
        let (result, _) = timed_phase(&server, mix.plan.clone(), warmup, slice, args).await?;
        fail_on_errors("the signed mix", &result)?;
        print_phase(&result, &MIX);
        merge_into(&mut signed, result);
        server.check_alive()?;
    }
    let (Some(baseline), Some(signed)) = (baseline, signed) else {
        return Err("no round ran".to_owned());
    };
    println!("\n== Phases 1 and 2, all {rounds} rounds");
    println!("  -- GET /healthz");
    print_phase(&baseline, &[]);
    println!("  -- signed mix");
    print_phase(&signed, &MIX);
    let share = signed.throughput() / baseline.throughput().max(1e-9);
    println!("  vs /healthz     {:.1} %", share * 100.0);
    println!("  non-2xx         {}", signed.errors);
    println!(
        "  server RSS      {} after the mix",
        megabytes(server.rss_bytes()?)
    );
    server.stop();

    // Phase 3: memory, on a fresh server so nothing but 250 × 250 is stored.
    println!(
        "\n== Phase 3: memory ({FILL_MEETINGS} meetings × {FILL_ATTENDEES} attendees, fresh server)"
    );
    let mut server = Server::start(&args.server_bin)?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = server.rss_bytes()?;
    println!("  RSS before      {}", megabytes(rss_before));
    let started = Instant::now();
    let signer = Signer::new(&server.addr.to_string())?;
    let meetings = mix::create_meetings(server.addr, &signer, "fill", FILL_MEETINGS).await?;
    let attendees = mix::fill_meetings(server.addr, &signer, &meetings, FILL_ATTENDEES).await?;
    if attendees != FILL_MEETINGS * FILL_ATTENDEES {
        return Err(format!(
            "the fill created {attendees} attendees, expected {}",
            FILL_MEETINGS * FILL_ATTENDEES
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.check_alive()?;
    let rss_after = server.rss_bytes()?;
    println!(
        "  filled          {} meetings, {} attendees ({} BatchCreateAttendee calls) in {:.1} s",
        meetings.len(),
        thousands(attendees as f64),
        FILL_MEETINGS * FILL_ATTENDEES.div_ceil(100),
        started.elapsed().as_secs_f64()
    );
    println!("  RSS after       {}", megabytes(rss_after));
    server.stop();

    if args.per_op {
        per_op_diagnostics(args, baseline.throughput()).await?;
    }

    print_summary(args, cores, &baseline, &signed, share, rss_after);
    Ok(())
}

/// Each operation of the mix alone, on a fresh server each: where the server's time goes.
async fn per_op_diagnostics(args: &Args, healthz_rps: f64) -> Result<(), String> {
    println!("\n== Diagnostics: each operation alone (fresh server each)");
    let mut rows = Vec::new();
    for op in MIX {
        let mut server = Server::start(&args.server_bin)?;
        let signer = Signer::new(&server.addr.to_string())?;
        // Only CreateMeeting is bounded by the active-meeting quota.
        let most = if op == Op::CreateMeeting {
            MAX_MIX_CREATES
        } else {
            usize::MAX
        };
        let count = ((healthz_rps * (args.warmup + args.duration).as_secs_f64() * 1.1).ceil()
            as usize)
            .clamp(1_000, most);
        let plan = mix::prepare(server.addr, &signer, &[op], count).await?.plan;
        println!("  -- {}", op.name());
        // `plan` outlives the phase: freeing it is not the load generator's CPU time.
        let (result, cpu) =
            timed_phase(&server, plan.clone(), args.warmup, args.duration, args).await?;
        fail_on_errors(op.name(), &result)?;
        server.check_alive()?;
        server.stop();
        rows.push((op, result, cpu));
    }
    println!(
        "  {:<16} {:>12} {:>11} {:>11} {:>14} {:>10}",
        "operation", "req/s", "p50", "p99", "server µs/req", "server cores"
    );
    for (op, result, cpu) in &rows {
        let all = result.latencies.overall();
        println!(
            "  {:<16} {:>12} {:>11} {:>11} {:>14.1} {:>10.2}",
            op.name(),
            thousands(result.throughput()),
            ms(all.p50),
            ms(all.p99),
            cpu.server * 1e6 / result.answered.max(1) as f64,
            cpu.cores(cpu.server)
        );
    }
    Ok(())
}

/// Runs a timed phase and prints the CPU both processes used meanwhile.
async fn timed_phase(
    server: &Server,
    plan: Arc<Plan>,
    warmup: Duration,
    duration: Duration,
    args: &Args,
) -> Result<(PhaseResult, CpuUse), String> {
    let plan_len = plan.len();
    let mark = CpuMark::start(server.pid())?;
    let result = run_timed(server.addr, args.connections, warmup, duration, plan).await?;
    let cpu = mark.finish()?;
    if result.exhausted {
        println!(
            "  note            the {} pre-signed requests ran out: measured over {:.2} s instead of {:.2} s (see --mix-requests)",
            thousands(plan_len as f64),
            result.window.as_secs_f64(),
            duration.as_secs_f64()
        );
    }
    let per_request = |seconds: f64| seconds * 1e6 / (result.answered.max(1) as f64);
    println!(
        "  cpu             server {:.2} cores ({:.1} µs/request), load generator {:.2} cores ({:.1} µs/request), other processes {:.2} cores",
        cpu.cores(cpu.server),
        per_request(cpu.server),
        cpu.cores(cpu.client),
        per_request(cpu.client),
        cpu.cores(cpu.other),
    );
    let threads: Vec<String> = cpu
        .server_threads
        .iter()
        .filter(|(_, times)| cpu.cores(times.running) >= 0.005)
        .map(|(name, times)| {
            format!(
                "{name} {:.2} cores ({:.1} µs/request, waited for a CPU {:.2} cores)",
                cpu.cores(times.running),
                per_request(times.running),
                cpu.cores(times.waiting)
            )
        })
        .collect();
    println!("  server threads  {}", threads.join("; "));
    println!(
        "  client threads  {:.2} cores, waited for a CPU {:.2} cores",
        cpu.cores(cpu.client_threads.running),
        cpu.cores(cpu.client_threads.waiting)
    );
    if cpu.cores(cpu.other) > 0.2 {
        println!(
            "  WARNING         other processes kept {:.2} cores busy during this phase: the numbers are disturbed",
            cpu.cores(cpu.other)
        );
    }
    Ok((result, cpu))
}

/// Non-2xx answers make the run fail: the numbers would not mean anything.
/// Adds one round's result to the phase's total.
fn merge_into(total: &mut Option<PhaseResult>, round: PhaseResult) {
    match total {
        Some(total) => total.merge(round),
        None => *total = Some(round),
    }
}

fn fail_on_errors(phase: &str, result: &PhaseResult) -> Result<(), String> {
    match (&result.first_error, result.errors) {
        (_, 0) => Ok(()),
        (first, n) => Err(format!(
            "{n} non-2xx responses during {phase}; first: {}",
            first.as_deref().unwrap_or("?")
        )),
    }
}

fn print_phase(result: &PhaseResult, ops: &[Op]) {
    let all = result.latencies.overall();
    println!(
        "  throughput      {} req/s ({} requests in {:.2} s)",
        thousands(result.throughput()),
        thousands(all.count as f64),
        result.window.as_secs_f64()
    );
    println!(
        "  latency         p50 {}   p99 {}   mean {}   max {}",
        ms(all.p50),
        ms(all.p99),
        ms(all.mean.round() as u32),
        ms(all.max)
    );
    if !ops.is_empty() {
        println!(
            "  {:<20} {:>10} {:>12} {:>12} {:>12}",
            "operation", "requests", "p50", "p99", "max"
        );
        for &op in ops {
            let s = result.latencies.of(op);
            println!(
                "  {:<20} {:>10} {:>12} {:>12} {:>12}",
                op.name(),
                thousands(s.count as f64),
                ms(s.p50),
                ms(s.p99),
                ms(s.max)
            );
        }
    }
}

fn print_summary(
    args: &Args,
    cores: usize,
    baseline: &PhaseResult,
    signed: &PhaseResult,
    share: f64,
    rss: u64,
) {
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let p99 = signed.latencies.overall().p99;
    let p99_target = if args.connections == TARGET_P99_CONNECTIONS {
        format!("p99 <= 5 ms at {TARGET_P99_CONNECTIONS} connections")
    } else {
        format!(
            "p99 <= 5 ms at {TARGET_P99_CONNECTIONS} connections (ran {})",
            args.connections
        )
    };
    let rows = [
        (
            "signed mix >= 20,000 req/s".to_owned(),
            format!("{} req/s", thousands(signed.throughput())),
            signed.throughput() >= TARGET_SIGNED_RPS,
        ),
        (
            "mix >= 40% of /healthz throughput".to_owned(),
            format!(
                "{:.1} % ({} req/s)",
                share * 100.0,
                thousands(baseline.throughput())
            ),
            share >= TARGET_HEALTHZ_SHARE,
        ),
        (p99_target, ms(p99), p99 <= TARGET_P99_US),
        (
            format!("RSS <= 150 MB with {FILL_MEETINGS}x{FILL_ATTENDEES} stored"),
            megabytes(rss),
            rss <= TARGET_RSS_BYTES,
        ),
        (
            "non-2xx responses = 0".to_owned(),
            signed.errors.to_string(),
            signed.errors == 0,
        ),
    ];
    println!(
        "\n== Summary ({cores} cores, {} connections)",
        args.connections
    );
    println!("  {:<48} {:<26} result", "target", "measured");
    println!("  {}", "-".repeat(82));
    for (target, measured, ok) in rows {
        println!("  {target:<48} {measured:<26} {}", verdict(ok));
    }
}
