//! End-to-end tests of the mixer with real Opus audio: sine tones are encoded into RTP-like
//! packets, mixed, and the mixer's output is decoded and analysed with Goertzel filters.
//! Time is simulated; nothing sleeps.

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use audiopus::coder::{Decoder, Encoder};
use audiopus::{Application, Bitrate, Channels, SampleRate};
use carillon_mixer::{MixFrame, Mixer, MixerConfig, SourceId};
use proptest::prelude::*;

const FRAME: usize = 960;
const RATE: f64 = 48_000.0;

fn at(t0: Instant, tick: u32) -> Instant {
    t0 + Duration::from_millis(20 * u64::from(tick))
}

fn mixer(cfg: MixerConfig) -> Mixer {
    Mixer::new(cfg).expect("mixer")
}

/// A sender producing a continuous sine tone as Opus packets.
struct Speaker {
    id: SourceId,
    encoder: Encoder,
    freq: f64,
    amp: f64,
    sample: u64,
    ts: u32,
    packet_samples: usize,
}

impl Speaker {
    fn new(id: SourceId, freq: f64, amp: f64, ts0: u32) -> Speaker {
        Speaker::with_packet(id, freq, amp, ts0, FRAME)
    }

    fn with_packet(id: SourceId, freq: f64, amp: f64, ts0: u32, packet_samples: usize) -> Speaker {
        let mut encoder =
            Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip).unwrap();
        encoder.set_bitrate(Bitrate::BitsPerSecond(32_000)).unwrap();
        Speaker {
            id,
            encoder,
            freq,
            amp,
            sample: 0,
            ts: ts0,
            packet_samples,
        }
    }

    /// The RFC 6464 level a browser would report for this tone.
    fn level(&self) -> u8 {
        if self.amp == 0.0 {
            return 127;
        }
        let rms = self.amp / std::f64::consts::SQRT_2;
        (-20.0 * rms.log10()).round().clamp(0.0, 127.0) as u8
    }

    /// The next packet: (RTP timestamp, payload).
    fn next_packet(&mut self) -> (u32, Vec<u8>) {
        let pcm: Vec<f32> = (0..self.packet_samples)
            .map(|i| {
                let t = (self.sample + i as u64) as f64 / RATE;
                (self.amp * (2.0 * std::f64::consts::PI * self.freq * t).sin()) as f32
            })
            .collect();
        self.sample += self.packet_samples as u64;
        let mut out = vec![0u8; 1500];
        let n = self.encoder.encode_float(&pcm, &mut out).unwrap();
        out.truncate(n);
        let ts = self.ts;
        self.ts = self.ts.wrapping_add(self.packet_samples as u32);
        (ts, out)
    }

    /// Sends the next packet with its natural level.
    fn speak(&mut self, m: &mut Mixer, now: Instant) {
        let level = self.level();
        self.speak_with_level(m, Some(level), now);
    }

    fn speak_with_level(&mut self, m: &mut Mixer, level: Option<u8>, now: Instant) {
        let (ts, payload) = self.next_packet();
        m.push(self.id, ts, &payload, level, now);
    }
}

/// A listener's decoder and everything it heard.
struct Ear {
    decoder: Decoder,
    pcm: Vec<f32>,
}

impl Ear {
    fn new() -> Ear {
        Ear {
            decoder: Decoder::new(SampleRate::Hz48000, Channels::Mono).unwrap(),
            pcm: Vec::new(),
        }
    }

    fn hear(&mut self, packet: &[u8]) {
        assert!(!packet.is_empty(), "a packet every frame");
        let mut buf = [0f32; 5760];
        let n = self
            .decoder
            .decode_float(Some(packet), &mut buf[..], false)
            .expect("mixer output is valid Opus");
        assert_eq!(n, FRAME, "20 ms per packet");
        self.pcm.extend_from_slice(&buf[..n]);
    }

    fn frames(&self) -> usize {
        self.pcm.len() / FRAME
    }

    /// Tone amplitude at `freq` over the last `frames` frames.
    fn amp(&self, freq: f64, frames: usize) -> f64 {
        let start = self.pcm.len() - frames * FRAME;
        tone_amplitude(&self.pcm[start..], freq)
    }

    /// Tone amplitude at `freq` in frame `index`.
    fn frame_amp(&self, index: usize, freq: f64) -> f64 {
        tone_amplitude(&self.pcm[index * FRAME..(index + 1) * FRAME], freq)
    }

    fn peak(&self, frames: usize) -> f32 {
        let start = self.pcm.len() - frames * FRAME;
        self.pcm[start..].iter().fold(0.0, |m, x| m.max(x.abs()))
    }
}

/// Goertzel filter: amplitude of the sinusoid at `freq` in `x`.
fn tone_amplitude(x: &[f32], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / RATE;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / x.len() as f64
}

fn mixed_set(frame: &MixFrame) -> HashSet<SourceId> {
    frame.mixed.iter().copied().collect()
}

fn check_frame_shape(frame: &MixFrame, top_k: usize) {
    assert!(!frame.shared.is_empty());
    assert!(frame.mixed.len() <= top_k);
    let ids: Vec<SourceId> = frame.minus_one.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, frame.mixed, "one minus-one packet per mixed source");
    for (id, packet) in &frame.minus_one {
        assert!(!packet.is_empty());
        assert_eq!(frame.for_listener(*id), packet.as_slice());
    }
}

#[test]
fn speakers_hear_the_others_but_not_themselves() {
    let t0 = Instant::now();
    let mut m = mixer(MixerConfig::default());
    let mut speakers = [
        Speaker::new(1, 440.0, 0.2, 1000),
        Speaker::new(2, 660.0, 0.15, 5_000_000),
        Speaker::new(3, 880.0, 0.1, 77),
    ];
    for s in &speakers {
        m.add_source(s.id);
    }
    let mut ears: Vec<Ear> = speakers.iter().map(|_| Ear::new()).collect();
    let mut pure = Ear::new();
    const PURE_LISTENER: SourceId = 1000;
    for tick in 0..80 {
        let now = at(t0, tick);
        for s in &mut speakers {
            s.speak(&mut m, now);
        }
        let frame = m.tick(now);
        check_frame_shape(frame, 3);
        if tick >= 3 {
            assert_eq!(mixed_set(frame), HashSet::from([1, 2, 3]), "tick {tick}");
        }
        for (s, ear) in speakers.iter().zip(&mut ears) {
            ear.hear(frame.for_listener(s.id));
        }
        assert_eq!(frame.for_listener(PURE_LISTENER), frame.shared.as_slice());
        pure.hear(frame.for_listener(PURE_LISTENER));
    }

    let window = 40;
    for (s, ear) in speakers.iter().zip(&ears) {
        let own = ear.amp(s.freq, window);
        for other in speakers.iter().filter(|o| o.id != s.id) {
            let heard = ear.amp(other.freq, window);
            assert!(
                heard > 0.6 * other.amp && heard < 1.4 * other.amp,
                "speaker {} hears {} Hz at {heard:.4} (sent {})",
                s.id,
                other.freq,
                other.amp
            );
            assert!(
                own < heard / 30.0,
                "speaker {} hears itself at {own:.5} vs others {heard:.4}",
                s.id
            );
        }
        assert!(own < 0.003, "speaker {} hears itself at {own:.5}", s.id);
    }
    for s in &speakers {
        let heard = pure.amp(s.freq, window);
        assert!(
            heard > 0.6 * s.amp && heard < 1.4 * s.amp,
            "pure listener hears {} Hz at {heard:.4} (sent {})",
            s.freq,
            s.amp
        );
    }
}

#[test]
fn only_the_loudest_top_k_are_heard_and_the_set_follows_changes() {
    let t0 = Instant::now();
    let mut m = mixer(MixerConfig::default());
    let mut speakers = [
        Speaker::new(10, 440.0, 0.2, 0),
        Speaker::new(11, 620.0, 0.15, 0),
        Speaker::new(12, 810.0, 0.1, 0),
        Speaker::new(13, 1030.0, 0.05, 0),
        Speaker::new(14, 1270.0, 0.03, 0),
    ];
    for s in &speakers {
        m.add_source(s.id);
    }
    let mut pure = Ear::new();
    let mut tick = 0;
    let mut run = |m: &mut Mixer, speakers: &mut [Speaker], ticks: u32, pure: &mut Ear| {
        let mut sets = Vec::new();
        for _ in 0..ticks {
            let now = at(t0, tick);
            for s in speakers.iter_mut() {
                s.speak(m, now);
            }
            let frame = m.tick(now);
            check_frame_shape(frame, 3);
            pure.hear(&frame.shared);
            sets.push(mixed_set(frame));
            tick += 1;
        }
        sets
    };

    // Phase 1: the three loudest.
    let sets = run(&mut m, &mut speakers, 60, &mut pure);
    for set in &sets[5..] {
        assert_eq!(*set, HashSet::from([10, 11, 12]));
    }
    for s in &speakers[..3] {
        assert!(pure.amp(s.freq, 40) > 0.6 * s.amp, "{} Hz missing", s.freq);
    }
    for s in &speakers[3..] {
        let a = pure.amp(s.freq, 40);
        assert!(a < 0.003, "{} Hz leaked at {a:.5}", s.freq);
    }

    // Phase 2: speaker 13 becomes slightly louder than speaker 12 (by 1 dB): within the
    // hysteresis, the mix does not change.
    speakers[3].amp = 0.11;
    let sets = run(&mut m, &mut speakers, 50, &mut pure);
    assert!(sets.iter().all(|set| *set == HashSet::from([10, 11, 12])));

    // Phase 3: speaker 14 becomes the loudest by far: it enters, the quietest mixed leaves.
    speakers[4].amp = 0.3;
    let sets = run(&mut m, &mut speakers, 60, &mut pure);
    let changed_at = sets
        .iter()
        .position(|set| set.contains(&14))
        .expect("speaker 14 enters the mix");
    assert!(changed_at <= 3, "took {changed_at} ticks");
    for set in &sets[changed_at..] {
        assert_eq!(*set, HashSet::from([10, 11, 14]));
    }
    assert!(pure.amp(1270.0, 40) > 0.6 * 0.3);
    assert!(pure.amp(440.0, 40) > 0.6 * 0.2);
    assert!(pure.amp(810.0, 40) < 0.003, "speaker 12 left the mix");
    assert!(pure.amp(1030.0, 40) < 0.003);
    assert!(m.level(14).unwrap() < m.level(12).unwrap());
}

#[test]
fn muted_sources_are_never_mixed_and_silence_is_still_sent() {
    let t0 = Instant::now();
    let mut m = mixer(MixerConfig::default());
    let mut talking = [
        Speaker::new(1, 440.0, 0.2, 0),
        Speaker::new(2, 660.0, 0.2, 0),
    ];
    // Muted by level: they even send a tone, but with level 127 they must not be mixed.
    let mut muted = [
        Speaker::new(3, 880.0, 0.3, 0),
        Speaker::new(4, 1100.0, 0.3, 0),
    ];
    for s in talking.iter().chain(&muted) {
        m.add_source(s.id);
    }
    let mut pure = Ear::new();
    for tick in 0..60 {
        let now = at(t0, tick);
        for s in &mut talking {
            s.speak(&mut m, now);
        }
        for s in &mut muted {
            s.speak_with_level(&mut m, Some(127), now);
        }
        let frame = m.tick(now);
        check_frame_shape(frame, 3);
        assert!(!frame.is_mixed(3) && !frame.is_mixed(4));
        pure.hear(&frame.shared);
    }
    assert!(pure.amp(440.0, 40) > 0.12 && pure.amp(660.0, 40) > 0.12);
    assert!(pure.amp(880.0, 40) < 0.002 && pure.amp(1100.0, 40) < 0.002);
    assert_eq!(m.level(3), Some(127));
    // Muted sources are never decoded.
    assert!(!m.stats(3).unwrap().decoding);

    // Now everyone is silent: no one is mixed, yet a tiny valid packet is sent every tick.
    for s in talking.iter_mut().chain(&mut muted) {
        s.amp = 0.0;
    }
    let mut sizes = Vec::new();
    for tick in 60..160 {
        let now = at(t0, tick);
        for s in talking.iter_mut().chain(&mut muted) {
            s.speak_with_level(&mut m, Some(127), now);
        }
        let frame = m.tick(now);
        check_frame_shape(frame, 3);
        if tick >= 100 {
            assert!(frame.mixed.is_empty(), "tick {tick}: {:?}", frame.mixed);
            assert_eq!(frame.for_listener(1), frame.shared.as_slice());
            sizes.push(frame.shared.len());
        }
        pure.hear(&frame.shared);
    }
    assert!(pure.peak(40) < 1e-3, "silence decodes to {}", pure.peak(40));
    assert!(sizes.iter().all(|&n| n < 40), "silence packets {sizes:?}");

    // With no sources at all, silence too.
    let mut empty = mixer(MixerConfig::default());
    let mut ear = Ear::new();
    for tick in 0..20 {
        let frame = empty.tick(at(t0, tick));
        check_frame_shape(frame, 3);
        assert!(frame.mixed.is_empty());
        ear.hear(frame.for_listener(42));
    }
    assert!(ear.peak(20) < 1e-3);
}

#[test]
fn a_group_never_hears_any_of_its_sources() {
    // Attendee 1 speaks (440 Hz) and shares a tab with sound (660 Hz, source 2 in group 1);
    // attendee 3 speaks at 880 Hz.
    let t0 = Instant::now();
    let mut m = mixer(MixerConfig::default());
    let mut speakers = [
        Speaker::new(1, 440.0, 0.2, 1000),
        Speaker::new(2, 660.0, 0.15, 40),
        Speaker::new(3, 880.0, 0.1, 77),
    ];
    m.add_source(1);
    m.add_source_in_group(2, 1);
    m.add_source(3);
    let (mut group1, mut group3) = (Ear::new(), Ear::new());
    for tick in 0..60 {
        let now = at(t0, tick);
        for s in &mut speakers {
            s.speak(&mut m, now);
        }
        let frame = m.tick(now);
        if tick >= 3 {
            assert_eq!(mixed_set(frame), HashSet::from([1, 2, 3]), "tick {tick}");
            let groups: HashSet<SourceId> = frame.minus_one.iter().map(|(g, _)| *g).collect();
            assert_eq!(groups, HashSet::from([1, 3]), "one minus mix per group");
        }
        group1.hear(frame.for_listener(1));
        group3.hear(frame.for_listener(3));
    }
    assert!(group1.amp(880.0, 20) > 0.05);
    assert!(
        group1.amp(440.0, 20) < 0.01,
        "the sharer does not hear itself"
    );
    assert!(group1.amp(660.0, 20) < 0.01, "nor its own shared tab");
    assert!(group3.amp(440.0, 20) > 0.1 && group3.amp(660.0, 20) > 0.07);
    assert!(group3.amp(880.0, 20) < 0.01);
    // Removing the content source keeps the attendee's own minus-one mix going.
    m.remove_source(2);
    let frame = m.tick(at(t0, 60));
    assert!(frame.minus_one.iter().any(|(g, _)| *g == 1));
}

#[test]
fn jitter_buffer_absorbs_reordering_duplicates_and_loss() {
    let jitter = 2;
    let t0 = Instant::now();
    let mut m = mixer(MixerConfig {
        jitter_frames: jitter,
        ..MixerConfig::default()
    });
    let mut a = Speaker::new(7, 440.0, 0.2, 123_456);
    m.add_source(7);
    let level = a.level();
    let packets: Vec<(u32, Vec<u8>)> = (0..120).map(|_| a.next_packet()).collect();

    // Delivery schedule: packet k normally arrives just before tick k.
    let mut schedule: Vec<Vec<usize>> = (0..120).map(|k| vec![k]).collect();
    // 20 and 21 arrive swapped (20 one frame late).
    schedule[20] = vec![21];
    schedule[21] = vec![20];
    // 30 is duplicated a tick later, 40 twice in the same tick.
    schedule[31] = vec![31, 30];
    schedule[40] = vec![40, 40];
    // 50 is lost.
    schedule[50] = vec![];
    // 60 arrives 3 frames late: after its playout time (jitter is 2 frames).
    schedule[60] = vec![];
    schedule[63] = vec![63, 60];
    // 70 arrives exactly 2 frames late, in a burst, out of order: just in time.
    schedule[70] = vec![];
    schedule[72] = vec![72, 70];

    let mut pure = Ear::new();
    let mut first_mixed = None;
    for (tick, arrivals) in schedule.iter().enumerate() {
        let tick = tick as u32;
        let now = at(t0, tick);
        for &k in arrivals {
            let (ts, payload) = &packets[k];
            m.push(7, *ts, payload, Some(level), now);
        }
        let frame = m.tick(now);
        check_frame_shape(frame, 3);
        pure.hear(&frame.shared);
        if frame.is_mixed(7) {
            first_mixed.get_or_insert(tick);
        } else {
            assert!(
                first_mixed.is_none(),
                "dropped out of the mix at tick {tick}"
            );
        }
        let buffered = m.stats(7).unwrap().buffered_samples as usize;
        if tick >= jitter && ![20, 50, 60, 70].contains(&tick) {
            assert_eq!(buffered, jitter as usize * FRAME, "tick {tick}");
        } else {
            assert!(buffered <= (jitter as usize + 1) * FRAME, "tick {tick}");
        }
    }
    // Playout starts jitter_frames ticks after the first packet.
    assert_eq!(first_mixed, Some(jitter));

    let stats = m.stats(7).unwrap();
    assert_eq!(stats.duplicates, 2);
    assert_eq!(stats.late, 1, "{stats:?}");
    assert_eq!(stats.missing_frames, 2, "50 lost and 60 late: {stats:?}");
    assert_eq!(stats.packets, 118);
    assert_eq!(stats.resyncs, 0);

    // Continuous audio: every frame after the start carries the tone, concealed ones too.
    for frame in 6..pure.frames() {
        let a = pure.frame_amp(frame, 440.0);
        assert!(a > 0.05, "frame {frame}: 440 Hz at {a:.4}");
    }
}

#[test]
fn rtp_timestamp_wraparound() {
    let t0 = Instant::now();
    let mut m = mixer(MixerConfig::default());
    let mut speakers = [
        Speaker::new(1, 440.0, 0.2, u32::MAX - 10 * FRAME as u32 + 17),
        Speaker::new(2, 660.0, 0.2, u32::MAX - 3),
    ];
    for s in &speakers {
        m.add_source(s.id);
    }
    let mut pure = Ear::new();
    let mut ear1 = Ear::new();
    for tick in 0..60 {
        let now = at(t0, tick);
        for s in &mut speakers {
            s.speak(&mut m, now);
        }
        let frame = m.tick(now);
        if tick >= 1 {
            assert_eq!(mixed_set(frame), HashSet::from([1, 2]), "tick {tick}");
        }
        pure.hear(&frame.shared);
        ear1.hear(frame.for_listener(1));
    }
    assert!(speakers[0].ts < 1_000_000, "the timestamps wrapped");
    for id in [1, 2] {
        let stats = m.stats(id).unwrap();
        assert_eq!(
            (
                stats.late,
                stats.missing_frames,
                stats.resyncs,
                stats.trimmed
            ),
            (0, 0, 0, 0),
            "{stats:?}"
        );
    }
    for frame in 4..pure.frames() {
        assert!(pure.frame_amp(frame, 440.0) > 0.1, "frame {frame}");
        assert!(pure.frame_amp(frame, 660.0) > 0.1, "frame {frame}");
    }
    assert!(ear1.amp(440.0, 40) < 0.003);
    assert!(ear1.amp(660.0, 40) > 0.12);
}

#[test]
fn stopped_sources_leave_and_removed_sources_never_return() {
    let t0 = Instant::now();
    let cfg = MixerConfig::default();
    let max_concealed = cfg.max_concealed_frames;
    let mut m = mixer(cfg);
    let mut speakers = [
        Speaker::new(1, 440.0, 0.2, 0),
        Speaker::new(2, 660.0, 0.2, 0),
        Speaker::new(3, 880.0, 0.2, 0),
    ];
    for s in &speakers {
        m.add_source(s.id);
    }
    let mut pure = Ear::new();
    let mut left_at = None;
    for tick in 0..160 {
        let now = at(t0, tick);
        for s in &mut speakers {
            // Speaker 1 stops sending at tick 40.
            if s.id == 1 && tick >= 40 {
                continue;
            }
            s.speak(&mut m, now);
        }
        if tick == 80 {
            m.remove_source(2);
            assert_eq!(m.level(2), None);
            assert_eq!(m.stats(2), None);
        }
        let frame = m.tick(now);
        check_frame_shape(frame, 3);
        pure.hear(&frame.shared);
        if tick >= 40 && !frame.is_mixed(1) {
            left_at.get_or_insert(tick);
        }
        if left_at.is_some() {
            assert!(!frame.is_mixed(1), "speaker 1 came back at tick {tick}");
        }
        if tick >= 80 {
            assert!(!frame.is_mixed(2), "removed speaker 2 mixed at tick {tick}");
            assert_eq!(frame.for_listener(2), frame.shared.as_slice());
        } else if tick >= 2 {
            assert!(frame.is_mixed(2));
        }
        if tick >= 2 {
            assert!(frame.is_mixed(3));
        }
    }
    let left_at = left_at.expect("speaker 1 left the mix");
    // Jitter delay + concealment budget + one tick.
    assert!(
        left_at <= 40 + 1 + max_concealed + 1,
        "speaker 1 left only at tick {left_at}"
    );
    assert_eq!(m.level(1), Some(127));
    assert!(!m.stats(1).unwrap().playing);
    assert!(pure.amp(440.0, 40) < 0.003);
    assert!(pure.amp(660.0, 40) < 0.003);
    assert!(pure.amp(880.0, 40) > 0.12);
    assert_eq!(m.source_count(), 2);

    // Speaker 1 resumes: it comes back after the jitter delay.
    let mut back = false;
    for tick in 160..170 {
        let now = at(t0, tick);
        speakers[0].speak(&mut m, now);
        speakers[2].speak(&mut m, now);
        back |= m.tick(now).is_mixed(1);
    }
    assert!(back, "speaker 1 resumed");
}

#[test]
fn packets_of_10_and_60_ms_are_played_continuously() {
    let t0 = Instant::now();
    let mut m = mixer(MixerConfig::default());
    let mut long = Speaker::with_packet(1, 440.0, 0.2, 9_000, 3 * FRAME);
    let mut short = Speaker::with_packet(2, 660.0, 0.2, 4_000_000_000, FRAME / 2);
    m.add_source(1);
    m.add_source(2);
    let mut pure = Ear::new();
    for tick in 0..90 {
        let now = at(t0, tick);
        // A 60 ms packet is sent once its 60 ms have been captured.
        if tick % 3 == 2 {
            long.speak(&mut m, now);
        }
        short.speak(&mut m, now);
        short.speak(&mut m, now);
        let frame = m.tick(now);
        check_frame_shape(frame, 3);
        pure.hear(&frame.shared);
    }
    for id in [1, 2] {
        let stats = m.stats(id).unwrap();
        assert_eq!(
            (stats.late, stats.missing_frames, stats.invalid),
            (0, 0, 0),
            "source {id}: {stats:?}"
        );
    }
    for frame in 8..pure.frames() {
        assert!(pure.frame_amp(frame, 440.0) > 0.1, "frame {frame}");
        assert!(pure.frame_amp(frame, 660.0) > 0.1, "frame {frame}");
    }
}

#[test]
fn late_ticks_catch_up_one_frame_per_call() {
    let t0 = Instant::now();
    let mut m = mixer(MixerConfig::default());
    let mut s = Speaker::new(1, 440.0, 0.2, 0);
    m.add_source(1);
    let mut pure = Ear::new();
    for tick in 0..40 {
        let now = at(t0, tick);
        s.speak(&mut m, now);
        // Every 10th tick the caller is a frame late: packets pile up, then it catches up.
        if tick % 10 == 9 {
            continue;
        }
        let frame = m.tick(now);
        pure.hear(&frame.shared);
        if tick % 10 == 0 && tick > 0 {
            let frame = m.tick(now);
            pure.hear(&frame.shared);
        }
    }
    let stats = m.stats(1).unwrap();
    assert_eq!((stats.late, stats.missing_frames), (0, 0), "{stats:?}");
    for frame in 4..pure.frames() {
        assert!(pure.frame_amp(frame, 440.0) > 0.1, "frame {frame}");
    }
}

/// Two speakers whose packets arrive 1 ms and 11 ms after the ticks wait ~19 and ~9 ms for
/// them. Once a window has settled, the mixer says how much earlier the ticks could come;
/// moving them that much (as the engine does) plays every frame of both — none late, missing
/// or dropped — and the speaker due last now arrives just the playout margin ahead.
#[test]
fn the_ticks_can_move_earlier_to_meet_the_speakers_packets() {
    let t0 = Instant::now();
    let ms = |n: u64| Duration::from_millis(n);
    let cfg = MixerConfig::default();
    let (margin, window) = (cfg.playout_margin, cfg.shrink_after_frames);
    let mut m = mixer(cfg);
    let mut speakers = [
        Speaker::new(1, 440.0, 0.2, 0),
        Speaker::new(2, 660.0, 0.2, 9_000),
    ];
    for s in &speakers {
        m.add_source(s.id);
    }
    let periods = 4 * u64::from(window);
    let arrivals = (0..periods).flat_map(|n| [(t0 + ms(20 * n + 1), 0), (t0 + ms(20 * n + 11), 1)]);
    let mut ear = Ear::new();
    let mut next_tick = t0 + ms(20);
    let mut moves = Vec::new();
    for (at, who) in arrivals {
        while next_tick <= at {
            ear.hear(&m.tick(next_tick).shared);
            if let Some(advance) = m.tick_advance()
                && advance >= ms(2)
            {
                moves.push(advance);
                next_tick -= advance;
                m.ticks_moved();
            }
            next_tick += ms(20);
        }
        speakers[who].speak(&mut m, at);
    }
    // Speaker 2 had 9 ms of slack: the ticks move 5 ms earlier, once, leaving it the margin.
    assert_eq!(moves, [ms(9) - margin]);
    assert_eq!(m.tick_advance(), Some(Duration::ZERO));
    for id in [1, 2] {
        let stats = m.stats(id).unwrap();
        assert_eq!(
            (
                stats.late,
                stats.missing_frames,
                stats.rewinds,
                stats.shrinks
            ),
            (0, 0, 0, 0),
            "source {id}: {stats:?}"
        );
    }
    let heard = ear.frames();
    assert!(heard as u64 >= periods - 1, "{heard} frames");
    for frame in 2..heard {
        assert!(
            ear.frame_amp(frame, 440.0) > 0.05,
            "440 Hz in frame {frame}"
        );
        assert!(
            ear.frame_amp(frame, 660.0) > 0.05,
            "660 Hz in frame {frame}"
        );
    }
}

#[test]
fn garbage_payloads_are_treated_as_loss() {
    let t0 = Instant::now();
    let mut m = mixer(MixerConfig::default());
    let mut s = Speaker::new(1, 440.0, 0.2, 0);
    m.add_source(1);
    let level = s.level();
    let mut pure = Ear::new();
    for tick in 0..40 {
        let now = at(t0, tick);
        let (ts, payload) = s.next_packet();
        match tick {
            // Not Opus at all (code-3 TOC without its frame count byte).
            10 => m.push(1, ts, &[0xff], Some(level), now),
            // Empty.
            20 => m.push(1, ts, &[], Some(level), now),
            _ => m.push(1, ts, &payload, Some(level), now),
        }
        let frame = m.tick(now);
        if tick >= 1 {
            assert!(frame.is_mixed(1), "tick {tick}");
        }
        pure.hear(&frame.shared);
    }
    let stats = m.stats(1).unwrap();
    assert_eq!(stats.invalid, 2, "{stats:?}");
    assert_eq!(stats.missing_frames, 2, "{stats:?}");
    for frame in 4..pure.frames() {
        assert!(pure.frame_amp(frame, 440.0) > 0.1, "frame {frame}");
    }
}

/// Valid Opus packets for the property test (mutated or not).
fn valid_packets() -> &'static [Vec<u8>] {
    static PACKETS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    PACKETS.get_or_init(|| {
        let mut v = Vec::new();
        for (i, samples) in [120, 240, 480, 960, 1920, 2880].into_iter().enumerate() {
            let mut s = Speaker::with_packet(0, 300.0 + 100.0 * i as f64, 0.3, 0, samples);
            v.push(s.next_packet().1);
            v.push(s.next_packet().1);
        }
        v
    })
}

#[derive(Clone, Debug)]
enum Op {
    Add(SourceId),
    Remove(SourceId),
    Push {
        id: SourceId,
        ts: u32,
        payload: Vec<u8>,
        level: Option<u8>,
    },
    PushValid {
        id: SourceId,
        seq: u32,
        packet: usize,
        flip: Option<(usize, u8)>,
        level: Option<u8>,
    },
    Tick(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0u32..6).prop_map(Op::Add),
        1 => (0u32..6).prop_map(Op::Remove),
        4 => (
            0u32..6,
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..200),
            proptest::option::of(any::<u8>()),
        )
            .prop_map(|(id, ts, payload, level)| Op::Push { id, ts, payload, level }),
        4 => (
            0u32..6,
            0u32..40,
            0usize..12,
            proptest::option::of((any::<usize>(), any::<u8>())),
            proptest::option::of(any::<u8>()),
        )
            .prop_map(|(id, seq, packet, flip, level)| Op::PushValid { id, seq, packet, flip, level }),
        3 => (0u16..80).prop_map(Op::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Arbitrary payloads, timestamps, levels and sources never panic, and every tick still
    /// yields a well-formed frame.
    #[test]
    fn arbitrary_input_never_panics(
        ops in proptest::collection::vec(op(), 1..80),
        jitter in 0u32..3,
        top_k in 1usize..4,
    ) {
        let t0 = Instant::now();
        let mut m = mixer(MixerConfig { jitter_frames: jitter, top_k, ..MixerConfig::default() });
        for id in 0..3 {
            m.add_source(id);
        }
        let mut now = t0;
        let valid = valid_packets();
        for op in ops {
            match op {
                Op::Add(id) => m.add_source(id),
                Op::Remove(id) => m.remove_source(id),
                Op::Push { id, ts, payload, level } => m.push(id, ts, &payload, level, now),
                Op::PushValid { id, seq, packet, flip, level } => {
                    let mut payload = valid[packet].clone();
                    if let Some((at, byte)) = flip {
                        let at = at % payload.len();
                        payload[at] ^= byte;
                    }
                    m.push(id, seq.wrapping_mul(960).wrapping_sub(4800), &payload, level, now);
                }
                Op::Tick(ms) => {
                    now += Duration::from_millis(u64::from(ms));
                    let frame = m.tick(now);
                    check_frame_shape(frame, top_k);
                    let mut ear = Ear::new();
                    ear.hear(&frame.shared);
                    for (_, packet) in &frame.minus_one {
                        ear.hear(packet);
                    }
                    for id in 0..6 {
                        if let Some(level) = m.level(id) {
                            prop_assert!(level <= 127);
                        }
                    }
                }
            }
        }
    }
}
