//! Cost of mixing a large meeting: 250 audio sources, 3 speaking (sine tones with a level
//! extension), 247 silent (level 127), for 500 ticks of 20 ms.
//!
//! Run in release: `cargo run --release -p carillon-mixer --example mixer_cost`.
//! Prints the average time per tick (push of all packets of the frame + tick) and the share of
//! one core it represents (time / 20 ms). Not a timed assertion.

use std::time::{Duration, Instant};

use audiopus::coder::Encoder;
use audiopus::{Application, Bitrate, Channels, SampleRate};
use carillon_mixer::{Mixer, MixerConfig};

const SOURCES: u32 = 250;
const SPEAKERS: u32 = 3;
const TICKS: usize = 500;
const FRAME: usize = 960;

/// CPU time consumed by this thread so far (Linux), if available.
fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn encoder() -> Encoder {
    let mut e = Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip).unwrap();
    e.set_bitrate(Bitrate::BitsPerSecond(32_000)).unwrap();
    e
}

fn encode(e: &Encoder, pcm: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; 1500];
    let n = e.encode_float(pcm, &mut out).unwrap();
    out.truncate(n);
    out
}

fn main() {
    // Pre-encode the senders' packets so only the mixer is measured.
    let speech: Vec<Vec<Vec<u8>>> = (0..SPEAKERS)
        .map(|s| {
            let e = encoder();
            let freq = 300.0 + 170.0 * f64::from(s);
            (0..TICKS)
                .map(|t| {
                    let pcm: Vec<f32> = (0..FRAME)
                        .map(|i| {
                            let n = (t * FRAME + i) as f64;
                            (0.2 * (2.0 * std::f64::consts::PI * freq * n / 48_000.0).sin()) as f32
                        })
                        .collect();
                    encode(&e, &pcm)
                })
                .collect()
        })
        .collect();
    let silence = encode(&encoder(), &[0.0; FRAME]);

    let mut mixer = Mixer::new(MixerConfig::default()).expect("mixer");
    for id in 0..SOURCES {
        mixer.add_source(id);
    }

    let t0 = Instant::now();
    let mut push_time = Duration::ZERO;
    let mut tick_time = Duration::ZERO;
    let mut tick_times = Vec::with_capacity(TICKS);
    let mut out_bytes = 0usize;
    let speech_packet = |id: u32, t: usize| speech[id as usize][t].as_slice();
    let cpu_start = thread_cpu_time();
    for t in 0..TICKS {
        let now = t0 + Duration::from_millis(20 * t as u64);
        let ts = (t * FRAME) as u32;
        let start = Instant::now();
        for id in 0..SOURCES {
            if id < SPEAKERS {
                mixer.push(id, ts, speech_packet(id, t), Some(17 + id as u8), now);
            } else {
                mixer.push(id, ts, &silence, Some(127), now);
            }
        }
        let pushed = Instant::now();
        let frame = mixer.tick(now);
        let done = Instant::now();
        out_bytes +=
            frame.shared.len() + frame.minus_one.iter().map(|(_, p)| p.len()).sum::<usize>();
        assert!(frame.mixed.len() <= 3);
        push_time += pushed - start;
        tick_time += done - pushed;
        tick_times.push(done - pushed);
    }
    let cpu = cpu_start.zip(thread_cpu_time()).map(|(a, b)| b - a);

    let per = |d: Duration| d / TICKS as u32;
    let pct = |d: Duration| 100.0 * d.as_secs_f64() / 0.020;
    tick_times.sort();
    let mixed = mixer.frame().mixed.clone();
    let decoding = (0..SOURCES)
        .filter(|&id| mixer.stats(id).is_some_and(|s| s.decoding))
        .count();
    println!(
        "{SOURCES} sources ({SPEAKERS} speaking, {} silent), {TICKS} ticks of 20 ms",
        SOURCES - SPEAKERS
    );
    println!("mixed at the end: {mixed:?}; sources holding a decoder: {decoding}");
    println!(
        "push (all {SOURCES} packets of a frame): {:>8.1} µs/tick = {:.2}% of one core",
        per(push_time).as_secs_f64() * 1e6,
        pct(per(push_time))
    );
    println!(
        "tick (decode + mix + encode):          {:>8.1} µs/tick = {:.2}% of one core (p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs)",
        per(tick_time).as_secs_f64() * 1e6,
        pct(per(tick_time)),
        tick_times[TICKS / 2].as_secs_f64() * 1e6,
        tick_times[TICKS * 99 / 100].as_secs_f64() * 1e6,
        tick_times[TICKS - 1].as_secs_f64() * 1e6,
    );
    println!(
        "total (push + tick):                   {:>8.1} µs/tick = {:.2}% of one core",
        per(push_time + tick_time).as_secs_f64() * 1e6,
        pct(per(push_time + tick_time))
    );
    if let Some(cpu) = cpu {
        println!(
            "thread CPU time (push + tick):         {:>8.1} µs/tick = {:.2}% of one core",
            per(cpu).as_secs_f64() * 1e6,
            pct(per(cpu))
        );
    }
    println!(
        "output: {:.1} bytes/tick across shared + minus-one packets",
        out_bytes as f64 / TICKS as f64
    );

    // Reference: the raw libopus cost of the work a tick does (3 decodes + 4 encodes).
    let (decode, encode_cost) = codec_reference(&speech[0]);
    println!(
        "libopus reference: decode {:.1} µs, encode {:.1} µs per 20 ms frame -> 3 decodes + 4 encodes = {:.1} µs",
        decode.as_secs_f64() * 1e6,
        encode_cost.as_secs_f64() * 1e6,
        (3 * decode + 4 * encode_cost).as_secs_f64() * 1e6
    );
}

/// Average time of one decode and one encode (mixer settings) of a 20 ms frame.
fn codec_reference(packets: &[Vec<u8>]) -> (Duration, Duration) {
    let mut decoder = audiopus::coder::Decoder::new(SampleRate::Hz48000, Channels::Mono).unwrap();
    let mut pcm = vec![0f32; FRAME];
    let start = Instant::now();
    for p in packets {
        decoder
            .decode_float(Some(p.as_slice()), &mut pcm[..], false)
            .unwrap();
    }
    let decode = start.elapsed() / packets.len() as u32;

    let mut e = encoder();
    e.set_complexity(MixerConfig::default().encoder_complexity)
        .unwrap();
    let mut out = vec![0u8; 1500];
    let mut decoder = audiopus::coder::Decoder::new(SampleRate::Hz48000, Channels::Mono).unwrap();
    let mut total = Duration::ZERO;
    for p in packets {
        decoder
            .decode_float(Some(p.as_slice()), &mut pcm[..], false)
            .unwrap();
        let start = Instant::now();
        e.encode_float(&pcm, &mut out).unwrap();
        total += start.elapsed();
    }
    (decode, total / packets.len() as u32)
}
