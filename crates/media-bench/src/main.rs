//! `carillon-media-load`: a browserless media load generator for Carillon.
//!
//! It starts the release `carillon` binary (ephemeral ports, a temporary data directory),
//! creates meetings and attendees through the REST API, and runs simulated Chime SDK clients
//! — WebSocket JOIN → SUBSCRIBE with a str0m offer → ICE/DTLS-SRTP → Opus / VP8 media — all in
//! this one process on a single-threaded runtime, each with its own UDP socket on 127.0.0.1.
//! It measures the server's CPU (`/proc/<pid>/stat` utime + stime over the measurement
//! window), its resident memory per connection, join latency and the added media latency, and
//! prints each against its target. The process's own CPU is reported too: client and server
//! share the machine.
//!
//! Exit status: 0 when the scenarios ran (whether or not targets were met), 1 on a setup error
//! (the server did not start, a client never connected…), 2 on bad arguments.

mod api;
mod client;
mod media;
mod procfs;
mod report;
mod run;
mod rx_stamp;
mod server;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::client::Role;
use crate::report::{Table, common_rows, p50_p99};
use crate::run::{Common, Group, Outcome, Setup};
use crate::stats::Summary;

#[derive(Debug, Parser)]
#[command(
    name = "carillon-media-load",
    about = "Browserless media load generator for Carillon (simulated Chime SDK clients)"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Args)]
struct CommonArgs {
    /// The carillon binary (default: `carillon` beside this executable).
    #[arg(long, global = true)]
    server_bin: Option<PathBuf>,
    /// Media flows this long before the measurement starts.
    #[arg(long, global = true, default_value = "3s", value_parser = duration)]
    warmup: Duration,
    /// Length of the measurement window.
    #[arg(long, global = true, default_value = "10s", value_parser = duration)]
    measure: Duration,
    /// Clients joining at once (WebSocket open → SUBSCRIBE_ACK).
    #[arg(long, global = true, default_value_t = 4)]
    join_concurrency: usize,
    /// Listeners that decrypt and decode their audio to measure latency.
    #[arg(long, global = true, default_value_t = 16)]
    probes: usize,
    /// Give up when not every client has media flowing after this long.
    #[arg(long, global = true, default_value = "180s", value_parser = duration)]
    setup_timeout: Duration,
    /// How often plain receivers (not probes, not senders) drain their sockets once their
    /// media flows.
    #[arg(long, global = true, default_value = "20ms", value_parser = duration)]
    bulk_interval: Duration,
    /// Also write the results as JSON to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// One meeting: speakers and listeners; the mixer's cost, memory, latency and join time.
    Audio(AudioArgs),
    /// One meeting: camera publishers and receivers subscribed to all of them.
    Video(VideoArgs),
    /// One primary with speakers, replicas full of audio-only listeners.
    Replication(ReplicationArgs),
    /// audio, video and replication with their defaults.
    All,
}

#[derive(Debug, Args, Clone)]
struct AudioArgs {
    #[arg(long, default_value_t = 250)]
    attendees: usize,
    #[arg(long, default_value_t = 3)]
    speakers: usize,
    /// Attendees only JOIN and keep their WebSocket (no SUBSCRIBE, no media): the memory and
    /// CPU of the signaling connections alone.
    #[arg(long)]
    signaling_only: bool,
}

impl Default for AudioArgs {
    fn default() -> Self {
        AudioArgs {
            attendees: 250,
            speakers: 3,
            signaling_only: false,
        }
    }
}

#[derive(Debug, Args, Clone)]
struct VideoArgs {
    #[arg(long, default_value_t = 5)]
    publishers: usize,
    #[arg(long, default_value_t = 20)]
    receivers: usize,
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Bytes per VP8 frame (about 1,100 bytes fit one RTP packet).
    #[arg(long, default_value_t = 6000)]
    frame_bytes: usize,
    /// Receivers that decrypt their video to measure latency (the others count packets).
    #[arg(long, default_value_t = 8)]
    video_probes: usize,
    /// Every publisher sends its frames at the same instant: the worst case for the
    /// server's fan-out. By default their frame times are spread evenly over the frame
    /// interval, as independent cameras' would be.
    #[arg(long)]
    aligned_frames: bool,
}

impl Default for VideoArgs {
    fn default() -> Self {
        VideoArgs {
            publishers: 5,
            receivers: 20,
            fps: 30,
            frame_bytes: 6000,
            video_probes: 8,
            aligned_frames: false,
        }
    }
}

#[derive(Debug, Args, Clone)]
struct ReplicationArgs {
    /// Replica listener counts, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1000,2000")]
    listeners: Vec<usize>,
    /// Listeners per replica meeting (at most 250).
    #[arg(long, default_value_t = 250)]
    per_replica: usize,
    #[arg(long, default_value_t = 3)]
    speakers: usize,
}

impl Default for ReplicationArgs {
    fn default() -> Self {
        ReplicationArgs {
            listeners: vec![1000, 2000],
            per_replica: 250,
            speakers: 3,
        }
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// Server flags: generous limits for every scenario.
fn server_args() -> Vec<String> {
    [
        "--max-active-meetings",
        "1000",
        "--max-replicas-per-primary",
        "40",
        "--max-attendees",
        "250",
    ]
    .map(String::from)
    .to_vec()
}

/// Marks `probes` of `n` evenly spread indices.
fn probe_set(n: usize, probes: usize) -> impl Fn(usize) -> bool {
    let step = n.checked_div(probes).unwrap_or(usize::MAX).max(1);
    move |i| probes > 0 && i % step == 0 && i / step < probes
}

fn main() {
    let cli = Cli::parse();
    let server_bin = cli.common.server_bin.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("carillon")))
            .unwrap_or_else(|| PathBuf::from("carillon"))
    });
    if !server_bin.is_file() {
        eprintln!(
            "carillon-media-load: no server binary at {} (use --server-bin)",
            server_bin.display()
        );
        std::process::exit(1);
    }
    let common = Common {
        server_bin,
        warmup: cli.common.warmup,
        measure: cli.common.measure,
        join_concurrency: cli.common.join_concurrency,
        setup_timeout: cli.common.setup_timeout,
        bulk_interval: cli.common.bulk_interval,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("carillon-media-load: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&runtime, async {
        let mut results = serde_json::Map::new();
        let probes = cli.common.probes;
        let scenarios: Vec<Scenario> = match cli.scenario {
            Scenario::All => vec![
                Scenario::Audio(AudioArgs::default()),
                Scenario::Video(VideoArgs::default()),
                Scenario::Replication(ReplicationArgs::default()),
            ],
            s => vec![s],
        };
        let (mut failed_targets, mut setup_errors) = (0, Vec::new());
        for scenario in scenarios {
            let tables = match scenario {
                Scenario::Audio(a) => vec![("audio".to_owned(), audio(&common, &a, probes).await)],
                Scenario::Video(v) => vec![("video".to_owned(), video(&common, &v).await)],
                Scenario::Replication(r) => replication(&common, &r, probes).await,
                Scenario::All => Vec::new(),
            };
            for (key, table) in tables {
                match table {
                    Ok(table) => {
                        failed_targets += table.failed();
                        results.insert(key, serde_json::Value::Object(table.json));
                    }
                    Err(e) => {
                        println!();
                        println!("== {key}: SETUP ERROR: {e}");
                        results.insert(key.clone(), json!({ "setup_error": e }));
                        setup_errors.push(key);
                    }
                }
            }
        }
        println!();
        println!("{failed_targets} target(s) missed (that alone does not fail the run)");
        if !setup_errors.is_empty() {
            println!("setup error(s) in: {}", setup_errors.join(", "));
        }
        (results, setup_errors.is_empty())
    });
    let (results, ok) = result;
    if let Some(path) = &cli.common.json
        && let Err(e) = std::fs::write(
            path,
            serde_json::to_string_pretty(&results).unwrap_or_default(),
        )
    {
        eprintln!("carillon-media-load: cannot write {}: {e}", path.display());
    }
    if !ok {
        std::process::exit(1);
    }
}

/// Shared latency rows for mixed audio.
fn audio_latency_rows(table: &mut Table, o: &Outcome, probes: usize) {
    let s = Summary::of(&o.audio);
    table.check(
        "mixed audio added latency p99",
        "<= 30 ms",
        p50_p99(&o.audio),
        s.count > 0 && s.p99 <= 30_000,
    );
    table.info(
        "audio bursts detected",
        format!(
            "{} onsets at {} probes for {} bursts sent ({} unmatched); codec onset offset {} frame(s) + {} samples",
            o.counters.onsets,
            probes,
            o.counters.bursts_sent,
            o.counters.onsets_unmatched,
            o.calibration.frames,
            o.calibration.sample
        ),
    );
    let per_speaker: Vec<String> = o
        .per_speaker
        .iter()
        .enumerate()
        .map(|(i, sp)| {
            let l = Summary::of(&sp.latency);
            format!(
                "#{i} heard {:.0} % p50 {} p99 {} ms",
                100.0 * sp.heard as f64 / (sp.sent * probes.max(1) as u64).max(1) as f64,
                stats::ms(l.p50),
                stats::ms(l.p99)
            )
        })
        .collect();
    table.info(
        "bursts heard per speaker",
        format!(
            "{} (a burst missing at a probe was lost or concealed)",
            per_speaker.join(", ")
        ),
    );
}

async fn audio(common: &Common, a: &AudioArgs, probes: usize) -> Result<Table, String> {
    let n = a.attendees;
    if a.signaling_only {
        return signaling_only(common, n).await;
    }
    let speakers = a.speakers.min(n);
    let listeners = n - speakers;
    let is_probe = probe_set(listeners, probes);
    let mut clients: Vec<(Role, bool)> = (0..speakers)
        .map(|i| {
            (
                Role::Speaker {
                    index: i,
                    of: speakers,
                },
                false,
            )
        })
        .collect();
    clients.extend((0..listeners).map(|i| (Role::Listener, is_probe(i))));
    let probes = (0..listeners).filter(|i| is_probe(*i)).count();
    let title = format!(
        "audio: 1 meeting, {n} attendees ({speakers} speakers, {listeners} listeners, {probes} latency probes)"
    );
    eprintln!("{title}");
    let o = run::run(
        common,
        Setup {
            server_args: server_args(),
            groups: vec![Group {
                name: "audio".into(),
                replica_of: None,
                clients,
            }],
        },
    )
    .await?;
    let mut t = Table::default();
    let pct = 100.0 * o.server_cpu / o.wall;
    t.check(
        "server CPU, whole meeting",
        "<= 25 % of one core",
        format!("{pct:.1} %"),
        pct <= 25.0,
    );
    t.info(
        "server CPU per attendee",
        format!("{:.1} us/s", 1e6 * o.server_cpu / o.wall / n as f64),
    );
    let rss = o.rss_after.saturating_sub(o.rss_before) as f64 / n as f64 / 1024.0;
    t.check(
        "server RSS per connected attendee",
        "<= 128 KiB",
        format!("{rss:.1} KiB"),
        rss <= 128.0,
    );
    audio_latency_rows(&mut t, &o, probes);
    let join = Summary::of(&o.join);
    t.check(
        "join latency p50 (ws open -> SUBSCRIBE_ACK)",
        "<= 20 ms",
        format!(
            "p50 {} ms, p99 {} ms ({} at once)",
            stats::ms(join.p50),
            stats::ms(join.p99),
            common.join_concurrency
        ),
        join.count == n && join.p50 <= 20_000,
    );
    t.info(
        "mixed audio packets received",
        format!(
            "{:.0}/s (expected {}/s: 50 per attendee)",
            o.counters.rx_audio_packets as f64 / o.wall,
            50 * n
        ),
    );
    common_rows(&mut t, &o);
    t.value(
        "metrics",
        json!({
            "attendees": n, "speakers": speakers,
            "server_cpu_pct": pct,
            "server_cpu_us_per_attendee_s": 1e6 * o.server_cpu / o.wall / n as f64,
            "rss_per_attendee_kib": rss,
            "audio_latency_p50_ms": Summary::of(&o.audio).p50 as f64 / 1000.0,
            "audio_latency_p99_ms": Summary::of(&o.audio).p99 as f64 / 1000.0,
            "join_p50_ms": join.p50 as f64 / 1000.0,
            "client_cpu_pct": 100.0 * o.client_cpu / o.wall,
        }),
    );
    t.print(&title);
    Ok(t)
}

/// Attendees that only hold a joined WebSocket: what the signaling side costs by itself.
async fn signaling_only(common: &Common, n: usize) -> Result<Table, String> {
    let title = format!("signaling only: 1 meeting, {n} attendees joined, no SUBSCRIBE, no media");
    eprintln!("{title}");
    let o = run::run(
        common,
        Setup {
            server_args: server_args(),
            groups: vec![Group {
                name: "signaling".into(),
                replica_of: None,
                clients: vec![(Role::SignalingOnly, false); n],
            }],
        },
    )
    .await?;
    let mut t = Table::default();
    let rss = o.rss_after.saturating_sub(o.rss_before) as f64 / n as f64 / 1024.0;
    t.info("server RSS per joined attendee", format!("{rss:.1} KiB"));
    t.info(
        "server CPU per joined attendee",
        format!("{:.1} us/s", 1e6 * o.server_cpu / o.wall / n as f64),
    );
    common_rows(&mut t, &o);
    t.value(
        "metrics",
        json!({ "attendees": n, "rss_per_attendee_kib": rss }),
    );
    t.print(&title);
    Ok(t)
}

async fn video(common: &Common, v: &VideoArgs) -> Result<Table, String> {
    let is_probe = probe_set(v.receivers, v.video_probes);
    let interval = Duration::from_secs(1) / v.fps.max(1);
    let mut clients: Vec<(Role, bool)> = (0..v.publishers)
        .map(|i| {
            let phase = if v.aligned_frames {
                Duration::ZERO
            } else {
                interval * i as u32 / v.publishers as u32
            };
            (
                Role::Publisher {
                    index: i as u32,
                    fps: v.fps,
                    frame_bytes: v.frame_bytes,
                    phase,
                },
                false,
            )
        })
        .collect();
    clients.extend((0..v.receivers).map(|i| {
        (
            Role::Receiver {
                publishers: v.publishers,
            },
            is_probe(i),
        )
    }));
    let probes = (0..v.receivers).filter(|i| is_probe(*i)).count();
    let title = format!(
        "video: 1 meeting, {} publishers ({} fps, {} B frames) x {} receivers subscribed to all ({probes} latency probes)",
        v.publishers, v.fps, v.frame_bytes, v.receivers
    );
    eprintln!("{title}");
    let o = run::run(
        common,
        Setup {
            server_args: server_args(),
            groups: vec![Group {
                name: "video".into(),
                replica_of: None,
                clients,
            }],
        },
    )
    .await?;
    let mut t = Table::default();
    let packets = o.counters.rx_video_packets as f64;
    let per_core = packets / o.server_cpu.max(1e-9);
    t.info(
        "forwarded video packets",
        format!(
            "{:.0}/s ({:.1} Mbit/s); {:.0} frames/s published",
            packets / o.wall,
            o.counters.rx_video_bytes as f64 * 8.0 / o.wall / 1e6,
            o.counters.tx_video_frames as f64 / o.wall
        ),
    );
    t.check(
        "video packets per server CPU-second",
        ">= 100,000",
        format!(
            "{per_core:.0} (server {:.1} % of a core)",
            100.0 * o.server_cpu / o.wall
        ),
        per_core >= 100_000.0,
    );
    let s = Summary::of(&o.video);
    t.check(
        "video added latency p99",
        "<= 5 ms",
        p50_p99(&o.video),
        s.count > 0 && s.p99 <= 5_000,
    );
    t.info(
        "video frames measured",
        format!("{} at {probes} probes", o.counters.video_frames_measured),
    );
    let n = o.clients as f64;
    t.info(
        "server RSS per client",
        format!(
            "{:.1} KiB",
            o.rss_after.saturating_sub(o.rss_before) as f64 / n / 1024.0
        ),
    );
    common_rows(&mut t, &o);
    t.value(
        "metrics",
        json!({
            "publishers": v.publishers, "receivers": v.receivers, "fps": v.fps, "frame_bytes": v.frame_bytes,
            "video_packets_per_s": packets / o.wall,
            "video_packets_per_server_cpu_s": per_core,
            "server_cpu_pct": 100.0 * o.server_cpu / o.wall,
            "video_latency_p50_ms": s.p50 as f64 / 1000.0,
            "video_latency_p99_ms": s.p99 as f64 / 1000.0,
            "client_cpu_pct": 100.0 * o.client_cpu / o.wall,
        }),
    );
    t.print(&title);
    Ok(t)
}

/// See `replication`: every listener's connection has hibernated by then.
const REPLICATION_MIN_WARMUP: Duration = Duration::from_secs(12);

async fn replication(
    common: &Common,
    r: &ReplicationArgs,
    probes: usize,
) -> Vec<(String, Result<Table, String>)> {
    let mut tables = Vec::new();
    let per_replica = r.per_replica.clamp(1, 250);
    for &listeners in &r.listeners {
        let replicas = listeners.div_ceil(per_replica);
        let key = format!("replication_{listeners}");
        if replicas > 40 {
            tables.push((
                key,
                Err(format!(
                    "{listeners} listeners need {replicas} replicas of {per_replica}; a primary has at most 40"
                )),
            ));
            continue;
        }
        let is_probe = probe_set(listeners, probes);
        let mut groups = vec![Group {
            name: "primary".into(),
            replica_of: None,
            clients: (0..r.speakers)
                .map(|i| {
                    (
                        Role::Speaker {
                            index: i,
                            of: r.speakers,
                        },
                        false,
                    )
                })
                .collect(),
        }];
        for k in 0..replicas {
            let first = k * per_replica;
            let count = per_replica.min(listeners - first);
            groups.push(Group {
                name: format!("replica{k}"),
                replica_of: Some(0),
                clients: (first..first + count)
                    .map(|i| (Role::Listener, is_probe(i)))
                    .collect(),
            });
        }
        let probes = (0..listeners).filter(|i| is_probe(*i)).count();
        let title = format!(
            "replication: 1 primary ({} speakers), {replicas} replicas, {listeners} audio-only replica listeners ({probes} latency probes)",
            r.speakers
        );
        eprintln!("{title}");
        // The server lets a listening viewer's connection hibernate 4-9 s after its handshake
        // (see docs/replication.md): the measurement is of the audience that has settled.
        let settled = Common {
            warmup: common.warmup.max(REPLICATION_MIN_WARMUP),
            ..common.clone()
        };
        let o = match run::run(
            &settled,
            Setup {
                server_args: server_args(),
                groups,
            },
        )
        .await
        {
            Ok(o) => o,
            Err(e) => {
                tables.push((key, Err(e)));
                continue;
            }
        };
        let mut t = Table::default();
        let per_listener = 1e6 * o.server_cpu / o.wall / listeners as f64;
        t.check(
            "server CPU per replica listener",
            "<= 100 us/listener/s",
            format!(
                "{per_listener:.1} us/s (server {:.1} % of a core)",
                100.0 * o.server_cpu / o.wall
            ),
            per_listener <= 100.0,
        );
        let per_packet = 1e6 * o.server_cpu / (o.counters.rx_audio_packets.max(1)) as f64;
        t.info(
            "server CPU per forwarded audio packet",
            format!(
                "{per_packet:.2} us ({:.0} packets/s to clients)",
                o.counters.rx_audio_packets as f64 / o.wall
            ),
        );
        audio_latency_rows(&mut t, &o, probes);
        let rss = o.rss_after.saturating_sub(o.rss_before) as f64 / listeners as f64 / 1024.0;
        t.check(
            "server RSS per listener",
            "<= 64 KiB",
            format!("{rss:.1} KiB"),
            rss <= 64.0,
        );
        common_rows(&mut t, &o);
        t.value(
            "metrics",
            json!({
                "listeners": listeners, "replicas": replicas, "speakers": r.speakers,
                "server_cpu_us_per_listener_s": per_listener,
                "server_cpu_us_per_packet": per_packet,
                "server_cpu_pct": 100.0 * o.server_cpu / o.wall,
                "audio_latency_p50_ms": Summary::of(&o.audio).p50 as f64 / 1000.0,
                "audio_latency_p99_ms": Summary::of(&o.audio).p99 as f64 / 1000.0,
                "rss_per_listener_kib": rss,
                "client_cpu_pct": 100.0 * o.client_cpu / o.wall,
            }),
        );
        t.print(&title);
        tables.push((key, Ok(t)));
    }
    tables
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn probes_are_spread_and_counted() {
        let is_probe = probe_set(1000, 16);
        let picked: Vec<usize> = (0..1000).filter(|i| is_probe(*i)).collect();
        assert_eq!(picked.len(), 16);
        assert_eq!(picked[1], 62);
        let few = probe_set(3, 16);
        assert_eq!((0..3).filter(|i| few(*i)).count(), 3);
        let none = probe_set(10, 0);
        assert_eq!((0..10).filter(|i| none(*i)).count(), 0);
    }

    #[test]
    fn the_cli_parses() {
        Cli::command().debug_assert();
        let cli = Cli::parse_from([
            "carillon-media-load",
            "replication",
            "--listeners",
            "500,1000",
            "--measure",
            "5s",
        ]);
        assert_eq!(cli.common.measure, Duration::from_secs(5));
        assert!(matches!(cli.scenario, Scenario::Replication(r) if r.listeners == [500, 1000]));
    }
}
