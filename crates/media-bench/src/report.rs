//! The summary table: each metric with its target, the measured value and PASS/FAIL.

use serde_json::{Value, json};

use crate::run::Outcome;
use crate::stats::{Summary, ms};

pub struct Row {
    metric: String,
    target: String,
    measured: String,
    /// None: informational.
    pass: Option<bool>,
}

#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
    notes: Vec<String>,
    pub json: serde_json::Map<String, Value>,
}

impl Table {
    /// A metric with a target.
    pub fn check(&mut self, metric: &str, target: &str, measured: String, pass: bool) {
        self.rows.push(Row {
            metric: metric.into(),
            target: target.into(),
            measured,
            pass: Some(pass),
        });
    }

    /// A metric without a target.
    pub fn info(&mut self, metric: &str, measured: String) {
        self.rows.push(Row {
            metric: metric.into(),
            target: "-".into(),
            measured,
            pass: None,
        });
    }

    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    pub fn value(&mut self, key: &str, value: Value) {
        self.json.insert(key.into(), value);
    }

    pub fn failed(&self) -> usize {
        self.rows.iter().filter(|r| r.pass == Some(false)).count()
    }

    pub fn print(&self, title: &str) {
        let checks: Vec<&Row> = self.rows.iter().filter(|r| r.pass.is_some()).collect();
        let width = |f: fn(&Row) -> &str, head: &str| {
            checks
                .iter()
                .map(|r| f(r).chars().count())
                .max()
                .unwrap_or(0)
                .max(head.len())
        };
        let (wm, wt, wv) = (
            width(|r| &r.metric, "metric"),
            width(|r| &r.target, "target"),
            width(|r| &r.measured, "measured"),
        );
        println!();
        println!("== {title}");
        if !checks.is_empty() {
            println!(
                "{:<wm$}  {:<wt$}  {:<wv$}  result",
                "metric", "target", "measured"
            );
            println!("{}", "-".repeat(wm + wt + wv + 12));
            for r in &checks {
                let verdict = if r.pass == Some(true) { "PASS" } else { "FAIL" };
                println!(
                    "{:<wm$}  {:<wt$}  {:<wv$}  {verdict}",
                    r.metric, r.target, r.measured
                );
            }
        }
        println!("raw numbers (measurement window unless noted):");
        let wi = self
            .rows
            .iter()
            .filter(|r| r.pass.is_none())
            .map(|r| r.metric.chars().count())
            .max()
            .unwrap_or(0);
        for r in self.rows.iter().filter(|r| r.pass.is_none()) {
            println!("  {:<wi$}  {}", r.metric, r.measured);
        }
        for n in &self.notes {
            println!("  * {n}");
        }
    }
}

/// Rows every scenario shares: CPU of both sides, packets, memory, latency distributions,
/// server threads. `per` names the unit clients count as (attendee, listener…).
pub fn common_rows(table: &mut Table, o: &Outcome) {
    let c = &o.counters;
    let rate = |n: u64| n as f64 / o.wall;
    table.info(
        "server CPU (all threads)",
        format!(
            "{:.3} s in {:.2} s = {:.1} % of one core ({:.0} % of it in the kernel)",
            o.server_cpu,
            o.wall,
            100.0 * o.server_cpu / o.wall,
            100.0 * o.server_system_cpu / o.server_cpu.max(1e-9)
        ),
    );
    let threads: Vec<String> = o
        .server_threads
        .iter()
        .filter(|(_, cpu)| **cpu > 0.0)
        .map(|(name, cpu)| format!("{name} {:.1} %", 100.0 * cpu / o.wall))
        .collect();
    table.info("server CPU by thread", threads.join(", "));
    table.info(
        "client CPU (this process)",
        format!(
            "{:.3} s = {:.1} % of one core",
            o.client_cpu,
            100.0 * o.client_cpu / o.wall
        ),
    );
    table.info(
        "other processes on the machine",
        format!(
            "{:.1} % of one core (they compete with server and client)",
            100.0 * o.other_cpu / o.wall
        ),
    );
    table.info(
        "packets to clients /s",
        format!(
            "audio {:.0} ({:.1} kB/s), video {:.0} ({:.1} kB/s), rtcp {:.0}, stun/dtls {:.0}; lost (seq gaps) {}",
            rate(c.rx_audio_packets),
            rate(c.rx_audio_bytes) / 1000.0,
            rate(c.rx_video_packets),
            rate(c.rx_video_bytes) / 1000.0,
            rate(c.rx_rtcp),
            rate(c.rx_other),
            c.rx_lost
        ),
    );
    table.info(
        "from clients /s",
        format!(
            "datagrams {:.0} (audio packets {:.0}, video frames {:.0}), send errors {}, ws frames in {:.0}/s",
            rate(c.tx_datagrams),
            rate(c.tx_audio_packets),
            rate(c.tx_video_frames),
            c.tx_errors,
            rate(c.ws_frames)
        ),
    );
    table.info(
        "server RSS",
        format!(
            "{:.1} MiB before clients, {:.1} MiB after (+{:.1} MiB)",
            o.rss_before as f64 / 1048576.0,
            o.rss_after as f64 / 1048576.0,
            o.rss_after.saturating_sub(o.rss_before) as f64 / 1048576.0
        ),
    );
    table.info(
        "join (ws open -> SUBSCRIBE_ACK)",
        Summary::of(&o.join).describe_ms(),
    );
    table.info("  open -> JOIN_ACK", Summary::of(&o.join_ack).describe_ms());
    table.info(
        "  JOIN_ACK -> INDEX",
        Summary::of(&o.index_after_ack).describe_ms(),
    );
    table.info(
        "  SUBSCRIBE -> SUBSCRIBE_ACK",
        Summary::of(&o.subscribe_ack).describe_ms(),
    );
    table.info(
        "ws connect (TCP + upgrade)",
        Summary::of(&o.ws_open).describe_ms(),
    );
    table.info(
        "ICE + DTLS after SUBSCRIBE_ACK",
        Summary::of(&o.ice).describe_ms(),
    );
    table.info(
        "client sender timer lag",
        Summary::of(&o.tick_lag).describe_ms(),
    );
    table.info(
        "probe receive lag (not counted)",
        Summary::of(&o.rx_lag).describe_ms(),
    );
    table.info(
        "setup",
        format!(
            "{} clients connected in {:.1} s; {} dropped after connecting ({} during the window)",
            o.clients,
            o.connect_time.as_secs_f64(),
            o.dropped.len(),
            o.dropped_in_window
        ),
    );
    for f in o.dropped.iter().take(3) {
        table.note(format!("dropped client: {f}"));
    }
    let busy = (o.server_cpu + o.client_cpu + o.other_cpu) / o.wall;
    if busy > 1.6 {
        table.note(format!(
            "the machine was {:.0} % busy (server + client + others, 2 cores): near saturation, the numbers are distorted",
            busy * 50.0
        ));
    }
    table.value(
        "raw",
        json!({
            "clients": o.clients,
            "wall_s": o.wall,
            "server_cpu_s": o.server_cpu,
            "server_system_cpu_s": o.server_system_cpu,
            "client_cpu_s": o.client_cpu,
            "other_cpu_s": o.other_cpu,
            "rx_lost": c.rx_lost,
            "server_threads_cpu_s": o.server_threads,
            "rss_before_bytes": o.rss_before,
            "rss_after_bytes": o.rss_after,
            "rx_audio_packets": c.rx_audio_packets,
            "rx_video_packets": c.rx_video_packets,
            "rx_rtcp": c.rx_rtcp,
            "tx_datagrams": c.tx_datagrams,
            "ws_frames": c.ws_frames,
            "join_us": summary_json(&o.join),
            "ice_us": summary_json(&o.ice),
            "audio_latency_us": summary_json(&o.audio),
            "video_latency_us": summary_json(&o.video),
            "tick_lag_us": summary_json(&o.tick_lag),
            "rx_lag_us": summary_json(&o.rx_lag),
            "dropped": o.dropped.len(),
        }),
    );
}

fn summary_json(samples: &[u64]) -> Value {
    let s = Summary::of(samples);
    json!({"n": s.count, "min": s.min, "p50": s.p50, "p90": s.p90, "p99": s.p99, "max": s.max, "mean": s.mean})
}

/// `p50 x ms, p99 y ms`.
pub fn p50_p99(samples: &[u64]) -> String {
    let s = Summary::of(samples);
    if s.count == 0 {
        return "no samples".into();
    }
    format!("p50 {} ms, p99 {} ms (n={})", ms(s.p50), ms(s.p99), s.count)
}
