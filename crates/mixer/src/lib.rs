//! Sans-IO audio mixer for Carillon.
//!
//! The Amazon Chime SDK browser client plays exactly one audio track, so the server mixes:
//! every listener receives one Opus stream holding the loudest speakers except themselves.
//!
//! The [`Mixer`] takes received Opus packets ([`Mixer::push`]) and, once per frame
//! ([`Mixer::tick`]), produces a [`MixFrame`]: one `shared` Opus packet for everyone who is
//! not being mixed and one minus-one packet per mixed speaker. It does no I/O and reads no
//! clock: time is an argument.
//!
//! Cost model: speakers are ranked by the RFC 6464 audio level carried in the RTP header
//! extension, so only the `top_k` selected sources are decoded (plus, briefly, those that
//! just left the mix, and sources that send no level at all, which are decoded to measure
//! one). Per tick that is about `top_k` decodes and `top_k + 1` encodes; every other source
//! costs O(1) bookkeeping.

mod dsp;
mod jitter;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use audiopus::coder::{Decoder, Encoder, GenericCtl};
use audiopus::{Application, Bitrate, Channels, SampleRate};

use crate::jitter::{BufferPool, JitterBuffer, MAX_PACKET_SAMPLES, Next, Playout, Pushed, State};

/// The caller's id for a sender (its audio stream id).
pub type SourceId = u32;

/// Opus over RTP always uses a 48 kHz clock; the mixer decodes and encodes at that rate.
pub const SAMPLE_RATE: u32 = 48_000;

/// RFC 6464 level of digital silence (−127 dBov).
pub const SILENT_LEVEL: u8 = 127;

/// Room for the largest single Opus packet (1275 bytes) with margin.
const MAX_OPUS_PACKET: usize = 1500;

/// At or below this loudness (RFC 6464 level, −60 dBov) a mixed source is quiet enough for
/// the adaptive playout to drop one of its frames.
const QUIET_LEVEL: u8 = 60;

/// Spare payload buffers kept for reuse.
const PAYLOAD_POOL: usize = 4096;

#[derive(Clone, Debug)]
pub struct MixerConfig {
    /// Speakers mixed at once.
    pub top_k: usize,
    /// Must be 48 000 (the Opus RTP clock).
    pub sample_rate: u32,
    /// Frame duration produced per tick: 10, 20, 40 or 60 ms.
    pub frame_ms: u32,
    /// Encoder bitrate of the mixed streams.
    pub bitrate_bps: i32,
    /// Fixed extra playout delay in frames: a source starts playing this many ticks after
    /// the first tick its first packet reaches with `playout_margin` to spare.
    pub jitter_frames: u32,
    /// A packet should arrive at least this long before the tick that plays it (zero: any
    /// arrival before the tick is in time).
    pub playout_margin: Duration,
    /// Adapt the delay to the arrival times: a late packet with nothing queued behind it
    /// moves the playout point back (the delay grows by its lateness, at most
    /// `max_queue_frames` frames), and a delay that was more than a frame longer than needed
    /// for `shrink_after_frames` ticks is cut by one frame while the source is quiet or not
    /// mixed (or anyway after two such windows in a row). Off: the delay is fixed at the
    /// start of a playout.
    pub adaptive_playout: bool,
    /// See `adaptive_playout`.
    pub shrink_after_frames: u32,
    /// A source whose queue spans more than this many frames is trimmed back to
    /// `jitter_frames + 1` (clock drift, bursts).
    pub max_queue_frames: u32,
    /// A source is a candidate only while its smoothed level is below this (0 loud … 127
    /// silent). 127 means any sound at all.
    pub silence_level: u8,
    /// Bonus in dB given to sources already in the mix when ranking, so near-equal speakers
    /// do not swap places every frame.
    pub hysteresis_db: u8,
    /// A source with no packet for this long is not live: never mixed, level 127.
    pub source_timeout: Duration,
    /// Consecutive frames concealed (Opus PLC/FEC) before a source counts as silent.
    pub max_concealed_frames: u32,
    /// Frames a source keeps its decoder (still decoding) and its minus-one encoder after it
    /// leaves the mix, so that coming back does not reset codec state.
    pub linger_frames: u32,
    /// Opus encoder complexity, 0 (cheapest) … 10.
    pub encoder_complexity: u8,
}

impl Default for MixerConfig {
    fn default() -> MixerConfig {
        MixerConfig {
            top_k: 3,
            sample_rate: SAMPLE_RATE,
            frame_ms: 20,
            bitrate_bps: 40_000,
            jitter_frames: 0,
            playout_margin: Duration::from_millis(4),
            adaptive_playout: true,
            shrink_after_frames: 50,
            max_queue_frames: 10,
            silence_level: SILENT_LEVEL,
            hysteresis_db: 6,
            source_timeout: Duration::from_millis(200),
            max_concealed_frames: 5,
            linger_frames: 25,
            encoder_complexity: 5,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MixerError {
    #[error("invalid mixer configuration: {0}")]
    InvalidConfig(&'static str),
    #[error("opus: {0}")]
    Codec(String),
}

fn codec_err(e: audiopus::Error) -> MixerError {
    MixerError::Codec(e.to_string())
}

/// Counters and state of one source, for diagnostics and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Packets accepted into the jitter buffer.
    pub packets: u64,
    /// Packets dropped because a packet with the same timestamp was queued.
    pub duplicates: u64,
    /// Packets dropped because they arrived after their playout time.
    pub late: u64,
    /// Payloads that are not Opus (empty, unparsable) or that the decoder rejected: treated
    /// as loss.
    pub invalid: u64,
    /// Packets dropped by trimming an overlong queue.
    pub trimmed: u64,
    /// Playouts restarted because the timestamps jumped far back.
    pub resyncs: u64,
    /// Late packets that made the playout delay grow (adaptive playout).
    pub rewinds: u64,
    /// Frames dropped unplayed to cut an excess playout delay (adaptive playout).
    pub shrinks: u64,
    /// Ticks in which (part of) the source's frame was missing: concealed with PLC/FEC when
    /// the source was being decoded.
    pub missing_frames: u64,
    /// Ticks in which the source's frame was decoded.
    pub decoded_frames: u64,
    /// Audio queued ahead of the playout point, in 48 kHz samples (gaps included, decoded
    /// but unplayed samples included). In steady state `jitter_frames` frames.
    pub buffered_samples: u32,
    /// Whether playout has started (the jitter delay has passed).
    pub playing: bool,
    /// Whether the source currently holds a decoder.
    pub decoding: bool,
}

/// The output of one tick.
#[derive(Clone, Debug, Default)]
pub struct MixFrame {
    /// Opus packet for every listener who is not one of `mixed` (the mix of all mixed
    /// speakers). Encoded once, shared by all those listeners.
    pub shared: Vec<u8>,
    /// The sources in this frame's mix (at most `top_k`), loudest first.
    pub mixed: Vec<SourceId>,
    /// For each group with a mixed source: the Opus packet of the mix without that group's
    /// sources (a source added with [`Mixer::add_source`] is a group of its own, named by its
    /// id).
    pub minus_one: Vec<(SourceId, Vec<u8>)>,
}

impl MixFrame {
    /// The packet to send to a listener of group `listener`: its minus-one mix if the group
    /// is mixed, else `shared`. (An empty packet means encoding failed; send nothing this
    /// frame.)
    pub fn for_listener(&self, listener: SourceId) -> &[u8] {
        self.minus_one
            .iter()
            .find(|(id, _)| *id == listener)
            .map_or(self.shared.as_slice(), |(_, p)| p.as_slice())
    }

    /// Whether `id` is in this frame's mix.
    pub fn is_mixed(&self, id: SourceId) -> bool {
        self.mixed.contains(&id)
    }
}

struct Source {
    id: SourceId,
    /// Listeners of this group never hear it (an attendee and its content share).
    group: SourceId,
    jb: JitterBuffer,
    decoder: Option<Decoder>,
    /// Decoded samples beyond the current frame (packets longer than a frame).
    fifo: Vec<f32>,
    /// This tick's decoded frame.
    frame: Vec<f32>,
    /// Samples per frame. `frame` is allocated on first decode: most sources of a large
    /// meeting never speak.
    frame_len: usize,
    frame_ready: bool,
    playing: bool,
    live: bool,
    /// Smoothed loudness in dB above −127 dBov (`127 − level`).
    loudness: f32,
    last_packet: Option<Instant>,
    /// The latest packet carried no audio level: decode every frame and measure RMS.
    measure_rms: bool,
    /// Consecutive ticks with concealment.
    plc_run: u32,
    in_mix: bool,
    selected: bool,
    /// Ticks left to keep decoding after leaving the mix.
    linger: u32,
    stats: SourceStats,
}

impl Source {
    fn new(id: SourceId, group: SourceId, cfg: &MixerConfig, frame: usize) -> Source {
        Source {
            id,
            group,
            jb: JitterBuffer::new(
                frame as u32,
                Playout {
                    jitter_frames: cfg.jitter_frames,
                    margin: cfg.playout_margin,
                    adaptive: cfg.adaptive_playout,
                    shrink_window: cfg.shrink_after_frames,
                    max_rewind: cfg.max_queue_frames.saturating_sub(cfg.jitter_frames + 1)
                        * frame as u32,
                },
                cfg.max_queue_frames,
            ),
            decoder: None,
            fifo: Vec::new(),
            frame: Vec::new(),
            frame_len: frame,
            frame_ready: false,
            playing: false,
            live: false,
            loudness: 0.0,
            last_packet: None,
            measure_rms: false,
            plc_run: 0,
            in_mix: false,
            selected: false,
            linger: 0,
            stats: SourceStats::default(),
        }
    }

    fn is_live(&self, now: Option<Instant>, timeout: Duration) -> bool {
        match (self.last_packet, now) {
            (Some(last), Some(now)) => now.saturating_duration_since(last) <= timeout,
            _ => false,
        }
    }

    fn level(&self, now: Option<Instant>, timeout: Duration) -> u8 {
        if self.is_live(now, timeout) {
            dsp::loudness_to_level(self.loudness)
        } else {
            SILENT_LEVEL
        }
    }

    /// Decodes (or conceals) exactly one frame into `self.frame`.
    fn produce(&mut self, scratch: &mut [f32], pool: &mut BufferPool, max_concealed: u32) {
        let n = self.frame_len;
        self.frame.resize(n, 0.0);
        let from_fifo = n.min(self.fifo.len());
        self.frame[..from_fifo].copy_from_slice(&self.fifo[..from_fifo]);
        self.fifo.drain(..from_fifo);
        let mut out = from_fifo;
        let mut concealed = false;
        let conceal_silently = self.plc_run >= max_concealed;
        while out < n {
            let want = (n - out) as u32;
            let next = self.jb.next(want, pool);
            let produced = match (next, self.decoder.as_mut()) {
                (Next::Packet { skip }, Some(decoder)) => {
                    let result = match self.jb.front_payload() {
                        Some(payload) => decoder.decode_float(Some(payload), &mut *scratch, false),
                        None => Ok(0),
                    };
                    match result {
                        Ok(decoded) if decoded > skip as usize => {
                            self.jb.consume_front(decoded as u32, pool);
                            skip as usize..decoded
                        }
                        _ => {
                            // Garbage or undecodable: treat as loss.
                            self.stats.invalid += 1;
                            self.jb.drop_front(pool);
                            continue;
                        }
                    }
                }
                (Next::Fec { len } | Next::Conceal { len }, Some(decoder)) if !conceal_silently => {
                    concealed = true;
                    let len = len as usize;
                    let out_buf = &mut scratch[..len];
                    let result = match (next, self.jb.front_payload()) {
                        (Next::Fec { .. }, Some(payload)) => {
                            decoder.decode_float(Some(payload), &mut *out_buf, true)
                        }
                        _ => decoder.decode_float(None::<&[u8]>, &mut *out_buf, false),
                    };
                    if !matches!(result, Ok(d) if d == len) {
                        out_buf.fill(0.0);
                    }
                    self.jb.advance(len as u32);
                    0..len
                }
                (Next::Packet { .. }, None) => {
                    // No decoder (cannot happen: produce is only called with one); skip it.
                    self.jb.drop_front(pool);
                    continue;
                }
                (Next::Fec { len } | Next::Conceal { len }, _) => {
                    concealed = true;
                    let len = len as usize;
                    scratch[..len].fill(0.0);
                    self.jb.advance(len as u32);
                    0..len
                }
            };
            let chunk = &scratch[produced];
            let take = chunk.len().min(n - out);
            self.frame[out..out + take].copy_from_slice(&chunk[..take]);
            self.fifo.extend_from_slice(&chunk[take..]);
            out += take;
        }
        self.frame_ready = true;
        self.stats.decoded_frames += 1;
        self.end_frame(concealed);
    }

    /// Moves past one frame without decoding.
    fn skip_frame(&mut self, pool: &mut BufferPool) {
        let n = self.frame_len;
        let from_fifo = n.min(self.fifo.len());
        self.fifo.drain(..from_fifo);
        let covered = if from_fifo < n {
            self.jb.skip((n - from_fifo) as u32, pool)
        } else {
            true
        };
        self.end_frame(!covered);
    }

    fn end_frame(&mut self, missing: bool) {
        if missing {
            self.plc_run = self.plc_run.saturating_add(1);
            self.stats.missing_frames += 1;
        } else {
            self.plc_run = 0;
        }
    }
}

/// A minus-one encoder, kept while its source is mixed and `linger_frames` after.
struct MinusOneEncoder {
    id: SourceId,
    encoder: Encoder,
    idle: u32,
}

/// The audio mixer. See the crate documentation.
pub struct Mixer {
    cfg: MixerConfig,
    /// Samples per frame.
    frame_len: usize,
    sources: Vec<Source>,
    index: HashMap<SourceId, usize>,
    pool: BufferPool,
    spare_decoders: Vec<Decoder>,
    spare_encoders: Vec<Encoder>,
    shared_encoder: Encoder,
    minus_one_encoders: Vec<MinusOneEncoder>,
    /// (score, source index) of this tick's selection, loudest first.
    selection: Vec<(f32, usize)>,
    scratch: Vec<f32>,
    total: Vec<f32>,
    clipped: Vec<f32>,
    spare_packets: Vec<Vec<u8>>,
    frame: MixFrame,
    last_now: Option<Instant>,
    /// Groups with a mixed source in the current tick (scratch).
    groups: Vec<SourceId>,
    /// When the latest tick ran, to tell how close a packet arrives to the next one.
    last_tick: Option<Instant>,
    /// One tick.
    frame_dur: Duration,
}

impl std::fmt::Debug for Mixer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mixer")
            .field("cfg", &self.cfg)
            .field("sources", &self.sources.len())
            .field("mixed", &self.frame.mixed)
            .finish_non_exhaustive()
    }
}

impl Mixer {
    pub fn new(config: MixerConfig) -> Result<Mixer, MixerError> {
        if config.sample_rate != SAMPLE_RATE {
            return Err(MixerError::InvalidConfig(
                "sample_rate must be 48000 (the Opus RTP clock)",
            ));
        }
        if ![10, 20, 40, 60].contains(&config.frame_ms) {
            return Err(MixerError::InvalidConfig(
                "frame_ms must be 10, 20, 40 or 60",
            ));
        }
        if !(1..=32).contains(&config.top_k) {
            return Err(MixerError::InvalidConfig("top_k must be within 1 ..= 32"));
        }
        if !(500..=512_000).contains(&config.bitrate_bps) {
            return Err(MixerError::InvalidConfig(
                "bitrate_bps must be within 500 ..= 512000",
            ));
        }
        if config.max_queue_frames > 500 || config.jitter_frames >= config.max_queue_frames {
            return Err(MixerError::InvalidConfig(
                "jitter_frames must be below max_queue_frames, which must be at most 500",
            ));
        }
        if config.encoder_complexity > 10 {
            return Err(MixerError::InvalidConfig(
                "encoder_complexity must be 0 ..= 10",
            ));
        }
        let frame_len = (SAMPLE_RATE / 1000 * config.frame_ms) as usize;
        let shared_encoder = new_encoder(&config)?;
        Ok(Mixer {
            frame_len,
            sources: Vec::new(),
            index: HashMap::new(),
            pool: BufferPool::new(PAYLOAD_POOL),
            spare_decoders: Vec::new(),
            spare_encoders: Vec::new(),
            shared_encoder,
            minus_one_encoders: Vec::with_capacity(config.top_k * 2),
            selection: Vec::with_capacity(config.top_k + 1),
            scratch: vec![0.0; MAX_PACKET_SAMPLES as usize],
            total: vec![0.0; frame_len],
            clipped: vec![0.0; frame_len],
            spare_packets: Vec::new(),
            frame: MixFrame {
                shared: Vec::with_capacity(MAX_OPUS_PACKET),
                mixed: Vec::with_capacity(config.top_k),
                minus_one: Vec::with_capacity(config.top_k),
            },
            last_now: None,
            groups: Vec::with_capacity(config.top_k),
            last_tick: None,
            frame_dur: Duration::from_millis(u64::from(config.frame_ms)),
            cfg: config,
        })
    }

    pub fn config(&self) -> &MixerConfig {
        &self.cfg
    }

    /// Registers a sender that may be mixed (an attendee allowed to send audio, a content
    /// share), in a group of its own. Adding a known id does nothing.
    pub fn add_source(&mut self, id: SourceId) {
        self.add_source_in_group(id, id);
    }

    /// Registers a sender in `group`: a listener of that group hears the mix without every
    /// source of the group (an attendee's voice and the audio of its content share). Adding a
    /// known id does nothing.
    pub fn add_source_in_group(&mut self, id: SourceId, group: SourceId) {
        if self.index.contains_key(&id) {
            return;
        }
        tracing::debug!(source = id, group, "mixer: source added");
        self.index.insert(id, self.sources.len());
        self.sources
            .push(Source::new(id, group, &self.cfg, self.frame_len));
    }

    /// Forgets a sender: it is never mixed again (until added anew), and its packets are
    /// ignored.
    pub fn remove_source(&mut self, id: SourceId) {
        let Some(i) = self.index.remove(&id) else {
            return;
        };
        tracing::debug!(source = id, "mixer: source removed");
        let mut source = self.sources.swap_remove(i);
        if let Some(moved) = self.sources.get(i) {
            self.index.insert(moved.id, i);
        }
        source.jb.clear(&mut self.pool);
        if let Some(decoder) = source.decoder.take() {
            self.spare_decoders.push(decoder);
            self.spare_decoders.truncate(self.cfg.top_k * 2);
        }
        let group = source.group;
        let group_left = self.sources.iter().any(|s| s.group == group);
        if !group_left && let Some(pos) = self.minus_one_encoders.iter().position(|e| e.id == group)
        {
            let e = self.minus_one_encoders.swap_remove(pos);
            self.recycle_encoder(e.encoder);
        }
    }

    /// Number of registered sources.
    pub fn source_count(&self) -> usize {
        self.sources.len()
    }

    /// One received Opus packet: RTP timestamp (48 kHz clock), payload, and the RFC 6464
    /// audio level (0 loudest … 127 silence) from the `ssrc-audio-level` header extension if
    /// present. Packets of unknown sources are ignored; payloads that are not Opus count as
    /// loss.
    pub fn push(
        &mut self,
        id: SourceId,
        rtp_timestamp: u32,
        payload: &[u8],
        audio_level: Option<u8>,
        now: Instant,
    ) {
        let Some(&i) = self.index.get(&id) else {
            return;
        };
        self.observe(now);
        let source = &mut self.sources[i];
        source.last_packet = Some(now);

        let samples = if payload.is_empty() {
            0
        } else {
            audiopus::packet::nb_samples(payload, SampleRate::Hz48000).unwrap_or(0)
        };
        let valid = samples > 0
            && samples <= MAX_PACKET_SAMPLES as usize
            && samples % jitter::GRANULE as usize == 0;
        let frames20 = if valid { samples as f32 / 960.0 } else { 1.0 };

        let until_tick = self.last_tick.map(|t| {
            (t + self.frame_dur)
                .checked_duration_since(now)
                .unwrap_or_default()
        });
        let mut duplicate = false;
        if valid {
            match source.jb.push(
                rtp_timestamp,
                samples as u32,
                payload,
                now,
                until_tick,
                &mut self.pool,
            ) {
                Pushed::Queued | Pushed::Started => source.stats.packets += 1,
                Pushed::Duplicate => {
                    source.stats.duplicates += 1;
                    duplicate = true;
                }
                Pushed::Late => source.stats.late += 1,
                Pushed::Trimmed(dropped) => {
                    tracing::trace!(source = id, dropped, "mixer: queue trimmed");
                    source.stats.packets += 1;
                    source.stats.trimmed += u64::from(dropped);
                    source.fifo.clear();
                }
                Pushed::Resynced => {
                    tracing::debug!(source = id, "mixer: timestamps jumped back, resync");
                    source.stats.packets += 1;
                    source.stats.resyncs += 1;
                    source.fifo.clear();
                }
                Pushed::Rewound => {
                    tracing::trace!(source = id, "mixer: late packet, playout delay grows");
                    source.stats.packets += 1;
                    source.stats.rewinds += 1;
                    source.fifo.clear();
                }
            }
        } else {
            source.stats.invalid += 1;
        }

        if !duplicate {
            match audio_level {
                Some(level) => {
                    source.measure_rms = false;
                    let observed = f32::from(SILENT_LEVEL - level.min(SILENT_LEVEL));
                    source.loudness = dsp::smooth(source.loudness, observed, frames20);
                }
                None => source.measure_rms = true,
            }
        }
    }

    /// Whether a source in the mix has been sending steadily (its latest packet within two
    /// frames) but the frame the next tick would play has not arrived yet. The caller may
    /// hold the tick back a little for it: concealing that frame would instead grow the
    /// speaker's delay by a whole frame once the packet arrives.
    pub fn awaits_mixed_frame(&self, now: Instant) -> bool {
        let recent = self.frame_dur * 2;
        self.sources.iter().any(|s| {
            s.in_mix
                && s.fifo.len() < s.frame_len
                && s.last_packet
                    .is_some_and(|t| now.saturating_duration_since(t) <= recent)
                && s.jb.frame_missing()
        })
    }

    /// How much earlier the ticks could come with every mixed source still in time: the
    /// smallest settled slack (see the jitter buffer) of the sources in the mix, less the
    /// playout margin. `None` while nothing is mixed or a mixed source has no settled slack
    /// yet.
    ///
    /// Why: the delay of each source is cut in whole frames only, so a speaker whose packets
    /// happen to arrive just after the ticks waits nearly a frame for every one of them, for
    /// the whole call. Moving the ticks earlier by this much (then calling
    /// [`Mixer::ticks_moved`]) takes that wait off every mixed speaker at once, plays every
    /// frame, and drops none.
    pub fn tick_advance(&self) -> Option<Duration> {
        let mut least: Option<Duration> = None;
        for s in self.sources.iter().filter(|s| s.in_mix) {
            let slack = s.jb.settled_slack()?;
            least = Some(least.map_or(slack, |l| l.min(slack)));
        }
        least.map(|l| l.saturating_sub(self.cfg.playout_margin))
    }

    /// The caller moved its ticks earlier: slack measured before is stale.
    pub fn ticks_moved(&mut self) {
        for s in &mut self.sources {
            s.jb.ticks_moved();
        }
    }

    /// Produces the next frame. Call every `frame_ms`; when late, call once per missed frame.
    pub fn tick(&mut self, now: Instant) -> &MixFrame {
        self.tick_scheduled(now, now)
    }

    /// [`Mixer::tick`] for the tick that was due at `scheduled` (at or before `now`): how
    /// early packets arrived is measured against the tick grid, not against when the caller
    /// got round to the tick, so a busy caller does not take its own lateness for slack.
    pub fn tick_scheduled(&mut self, now: Instant, scheduled: Instant) -> &MixFrame {
        self.observe(now);
        self.last_tick = self.last_now;
        let tick_time = self.last_now.unwrap_or(now);
        let grid_time = scheduled.min(tick_time);
        let now = self.last_now;
        let timeout = self.cfg.source_timeout;
        let max_concealed = self.cfg.max_concealed_frames;
        let frame20 = self.cfg.frame_ms as f32 / 20.0;

        // Pass 1: playout state, liveness, and RMS levels for sources without the extension.
        for s in &mut self.sources {
            s.frame_ready = false;
            s.live = s.is_live(now, timeout);
            if !s.live {
                s.loudness = 0.0;
            }
            s.playing = s.jb.begin_tick(grid_time);
            // Cut an excess delay where dropping a frame is not heard: the source is not in
            // the mix, or quiet; or, when it has lasted, wherever it is (a talker who never
            // pauses would otherwise keep it for good).
            if s.playing
                && s.fifo.is_empty()
                && s.jb.may_shrink()
                && (!s.in_mix
                    || dsp::loudness_to_level(s.loudness) >= QUIET_LEVEL
                    || s.jb.excess_persists())
            {
                s.jb.shrink(&mut self.pool);
                s.stats.shrinks += 1;
            }
            if s.measure_rms && s.playing && ensure_decoder(s, &mut self.spare_decoders) {
                s.produce(&mut self.scratch, &mut self.pool, max_concealed);
                let observed = f32::from(SILENT_LEVEL - dsp::rms_level(&s.frame));
                s.loudness = dsp::smooth(s.loudness, observed, frame20);
            }
        }

        // Pass 2: pick the loudest top_k candidates (with a bonus for those already mixed).
        self.select();

        // Pass 3: decode the selected (and lingering) sources, skip everyone else.
        for s in &mut self.sources {
            if s.playing {
                let wants_decode =
                    s.selected || s.measure_rms || (s.decoder.is_some() && s.linger > 0);
                if s.frame_ready {
                    // Already decoded in pass 1.
                } else if wants_decode && ensure_decoder(s, &mut self.spare_decoders) {
                    s.produce(&mut self.scratch, &mut self.pool, max_concealed);
                } else {
                    s.selected = false;
                    s.skip_frame(&mut self.pool);
                }
                if s.plc_run >= max_concealed && s.jb.is_empty() && s.fifo.is_empty() {
                    // The stream stopped: end the playout; the next packet restarts it.
                    s.jb.go_idle(&mut self.pool);
                    s.plc_run = 0;
                }
            }
            if s.selected {
                s.linger = self.cfg.linger_frames;
            } else if s.decoder.is_some() && !s.measure_rms {
                if s.linger == 0 {
                    if let Some(mut decoder) = s.decoder.take()
                        && self.spare_decoders.len() < self.cfg.top_k * 2
                    {
                        let _ = decoder.reset_state();
                        self.spare_decoders.push(decoder);
                    }
                } else {
                    s.linger -= 1;
                }
            }
            s.in_mix = s.selected;
        }
        // A selected source that lost its decoder (allocation failure) is not mixed.
        let sources = &self.sources;
        self.selection.retain(|&(_, i)| sources[i].frame_ready);

        self.mix_and_encode();
        &self.frame
    }

    /// The frame produced by the latest tick.
    pub fn frame(&self) -> &MixFrame {
        &self.frame
    }

    /// Smoothed level (0 loud … 127 silent) of a source, for the roster's volume indicators.
    /// Sources with no recent packets report 127; unknown sources `None`.
    pub fn level(&self, id: SourceId) -> Option<u8> {
        let &i = self.index.get(&id)?;
        Some(self.sources[i].level(self.last_now, self.cfg.source_timeout))
    }

    /// Diagnostics of a source.
    pub fn stats(&self, id: SourceId) -> Option<SourceStats> {
        let &i = self.index.get(&id)?;
        let s = &self.sources[i];
        let mut stats = s.stats;
        stats.late += s.jb.overtaken;
        stats.buffered_samples = s.jb.buffered().saturating_add(s.fifo.len() as u32);
        stats.playing = s.jb.state() == State::Playing;
        stats.decoding = s.decoder.is_some();
        Some(stats)
    }

    fn observe(&mut self, now: Instant) {
        self.last_now = Some(match self.last_now {
            Some(last) if last > now => last,
            _ => now,
        });
    }

    fn select(&mut self) {
        let k = self.cfg.top_k;
        let bonus = f32::from(self.cfg.hysteresis_db);
        let silence = self.cfg.silence_level;
        let max_concealed = self.cfg.max_concealed_frames;
        self.selection.clear();
        for (i, s) in self.sources.iter_mut().enumerate() {
            s.selected = false;
            if !s.playing || !s.live || s.plc_run >= max_concealed {
                continue;
            }
            if dsp::loudness_to_level(s.loudness) >= silence {
                continue;
            }
            let score = s.loudness + if s.in_mix { bonus } else { 0.0 };
            if self.selection.len() == k
                && self
                    .selection
                    .last()
                    .is_some_and(|&(worst, _)| score <= worst)
            {
                continue;
            }
            let pos = self
                .selection
                .iter()
                .position(|&(other, _)| score > other)
                .unwrap_or(self.selection.len());
            self.selection.insert(pos, (score, i));
            self.selection.truncate(k);
        }
        for &(_, i) in &self.selection {
            self.sources[i].selected = true;
        }
    }

    fn mix_and_encode(&mut self) {
        let Mixer {
            cfg,
            sources,
            selection,
            total,
            clipped,
            frame,
            shared_encoder,
            minus_one_encoders,
            spare_encoders,
            spare_packets,
            groups,
            ..
        } = self;

        total.fill(0.0);
        for &(_, i) in selection.iter() {
            for (t, x) in total.iter_mut().zip(&sources[i].frame) {
                *t += *x;
            }
        }
        for (c, t) in clipped.iter_mut().zip(total.iter()) {
            *c = dsp::soft_clip(*t);
        }
        encode(shared_encoder, clipped, &mut frame.shared);

        frame.mixed.clear();
        frame
            .mixed
            .extend(selection.iter().map(|&(_, i)| sources[i].id));
        // One minus-one mix per group with a mixed source, in selection order.
        groups.clear();
        for &(_, i) in selection.iter() {
            if !groups.contains(&sources[i].group) {
                groups.push(sources[i].group);
            }
        }
        while frame.minus_one.len() > groups.len() {
            if let Some((_, buf)) = frame.minus_one.pop() {
                spare_packets.push(buf);
            }
        }
        while frame.minus_one.len() < groups.len() {
            let buf = spare_packets
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(MAX_OPUS_PACKET));
            frame.minus_one.push((0, buf));
        }

        for e in minus_one_encoders.iter_mut() {
            e.idle = e.idle.saturating_add(1);
        }
        for ((id, packet), &group) in frame.minus_one.iter_mut().zip(groups.iter()) {
            *id = group;
            let pos = match minus_one_encoders.iter().position(|e| e.id == group) {
                Some(pos) => pos,
                None => {
                    let encoder = match spare_encoders.pop() {
                        Some(mut encoder) => {
                            let _ = encoder.reset_state();
                            Ok(encoder)
                        }
                        None => new_encoder(cfg),
                    };
                    match encoder {
                        Ok(encoder) => {
                            minus_one_encoders.push(MinusOneEncoder {
                                id: group,
                                encoder,
                                idle: 0,
                            });
                            minus_one_encoders.len() - 1
                        }
                        Err(e) => {
                            tracing::warn!(group, error = %e, "mixer: no minus-one encoder");
                            packet.clear();
                            continue;
                        }
                    }
                }
            };
            let e = &mut minus_one_encoders[pos];
            e.idle = 0;
            clipped.copy_from_slice(total);
            for &(_, i) in selection
                .iter()
                .filter(|&&(_, i)| sources[i].group == group)
            {
                for (c, x) in clipped.iter_mut().zip(&sources[i].frame) {
                    *c -= *x;
                }
            }
            for c in clipped.iter_mut() {
                *c = dsp::soft_clip(*c);
            }
            encode(&e.encoder, clipped, packet);
        }

        let linger = cfg.linger_frames;
        let mut j = 0;
        while j < minus_one_encoders.len() {
            if minus_one_encoders[j].idle > linger {
                let e = minus_one_encoders.swap_remove(j);
                if spare_encoders.len() < cfg.top_k {
                    spare_encoders.push(e.encoder);
                }
            } else {
                j += 1;
            }
        }
    }

    fn recycle_encoder(&mut self, encoder: Encoder) {
        if self.spare_encoders.len() < self.cfg.top_k {
            self.spare_encoders.push(encoder);
        }
    }
}

/// The mixed streams are encoded CELT-only (Opus's restricted low-delay mode): 2.5 ms of
/// encoder look-ahead instead of 6.5 ms, on every mixed frame everyone hears, and about a third
/// of the encoding CPU of the speech modes (measured: 46 µs instead of 134 µs per 20 ms frame
/// at complexity 5; listeners decode it in 18 µs instead of 26). The speech modes' gain is at
/// low bitrates, which a server-to-listener stream does not need: the bitrate is a little
/// higher instead (40 kb/s by default).
fn new_encoder(cfg: &MixerConfig) -> Result<Encoder, MixerError> {
    let mut encoder = Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::LowDelay)
        .map_err(codec_err)?;
    encoder
        .set_bitrate(Bitrate::BitsPerSecond(cfg.bitrate_bps))
        .map_err(codec_err)?;
    encoder
        .set_complexity(cfg.encoder_complexity)
        .map_err(codec_err)?;
    // DTX off: listeners must get a packet every frame, silence included.
    encoder
        .set_encoder_ctl_request(audiopus::ffi::OPUS_SET_DTX_REQUEST, 0)
        .map_err(codec_err)?;
    Ok(encoder)
}

fn ensure_decoder(s: &mut Source, spare: &mut Vec<Decoder>) -> bool {
    if s.decoder.is_none() {
        s.decoder = match spare.pop() {
            Some(decoder) => Some(decoder),
            None => match Decoder::new(SampleRate::Hz48000, Channels::Mono) {
                Ok(decoder) => Some(decoder),
                Err(e) => {
                    tracing::warn!(source = s.id, error = %e, "mixer: cannot create decoder");
                    None
                }
            },
        };
    }
    s.decoder.is_some()
}

fn encode(encoder: &Encoder, pcm: &[f32], out: &mut Vec<u8>) {
    out.resize(MAX_OPUS_PACKET, 0);
    match encoder.encode_float(pcm, out.as_mut_slice()) {
        Ok(len) => out.truncate(len),
        Err(e) => {
            tracing::warn!(error = %e, "mixer: encode failed");
            out.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn silent_packet() -> Vec<u8> {
        let encoder = new_encoder(&MixerConfig::default()).unwrap();
        let mut out = Vec::new();
        encode(&encoder, &[0.0; 960], &mut out);
        out
    }

    #[test]
    fn config_is_validated() {
        let bad = [
            MixerConfig {
                sample_rate: 16_000,
                ..MixerConfig::default()
            },
            MixerConfig {
                frame_ms: 25,
                ..MixerConfig::default()
            },
            MixerConfig {
                top_k: 0,
                ..MixerConfig::default()
            },
            MixerConfig {
                jitter_frames: 10,
                ..MixerConfig::default()
            },
            MixerConfig {
                encoder_complexity: 11,
                ..MixerConfig::default()
            },
        ];
        for cfg in bad {
            assert!(matches!(Mixer::new(cfg), Err(MixerError::InvalidConfig(_))));
        }
        assert!(Mixer::new(MixerConfig::default()).is_ok());
    }

    /// A mixed speaker's frame that is due but not here is awaited; a quiet, unmixed
    /// source's is not, nor one that stopped sending.
    #[test]
    fn a_late_frame_of_a_mixed_speaker_is_awaited() {
        let mut m = Mixer::new(MixerConfig {
            top_k: 1,
            ..MixerConfig::default()
        })
        .unwrap();
        let (packet, ms) = (silent_packet(), Duration::from_millis);
        let t0 = Instant::now() + ms(100);
        m.add_source(1);
        m.add_source(2);
        // Speaker 1 (level 20) is in the mix; source 2 (level 120, quiet) is not.
        let speak = |m: &mut Mixer, id: SourceId, frame: u32, at: Instant| {
            let level = if id == 1 { 20 } else { 120 };
            m.push(id, frame * 960, &packet, Some(level), at);
        };
        for tick in 0..10u32 {
            let now = t0 + ms(20 * u64::from(tick));
            speak(&mut m, 1, tick, now - ms(6));
            speak(&mut m, 2, tick, now - ms(6));
            m.tick(now);
        }
        assert_eq!(m.frame().mixed, vec![1]);
        let next = t0 + ms(200);
        // Frame 10 of both is due at `next`; neither has arrived.
        assert!(m.awaits_mixed_frame(next));
        speak(&mut m, 2, 10, next);
        assert!(m.awaits_mixed_frame(next), "still waiting for speaker 1");
        speak(&mut m, 1, 10, next + ms(2));
        assert!(!m.awaits_mixed_frame(next + ms(2)));
        m.tick(next + ms(2));
        // A speaker silent for longer than two frames is not waited for.
        assert!(!m.awaits_mixed_frame(next + ms(80)));
    }

    /// Near-equal speakers alternating by a couple of dB do not swap in and out of the mix.
    #[test]
    fn hysteresis_prevents_flapping() {
        let mut m = Mixer::new(MixerConfig {
            top_k: 1,
            jitter_frames: 0,
            ..MixerConfig::default()
        })
        .unwrap();
        let packet = silent_packet();
        let t0 = Instant::now();
        m.add_source(1);
        m.add_source(2);
        let mut changes = 0;
        let mut last = Vec::new();
        for tick in 0..100u32 {
            let now = t0 + Duration::from_millis(20 * u64::from(tick));
            let (l1, l2) = if tick % 2 == 0 { (30, 32) } else { (33, 30) };
            m.push(1, tick * 960, &packet, Some(l1), now);
            m.push(2, tick * 960, &packet, Some(l2), now);
            let mixed = m.tick(now).mixed.clone();
            assert_eq!(mixed.len(), 1);
            if mixed != last {
                changes += 1;
                last = mixed;
            }
        }
        assert_eq!(changes, 1, "selection flapped");

        // A clearly louder speaker does take over.
        let other = if last == [1] { 2 } else { 1 };
        for tick in 100..110u32 {
            let now = t0 + Duration::from_millis(20 * u64::from(tick));
            m.push(other, tick * 960, &packet, Some(10), now);
            m.push(3 - other, tick * 960, &packet, Some(30), now);
            m.tick(now);
        }
        assert_eq!(m.frame().mixed, vec![other]);
    }

    #[test]
    fn only_selected_sources_are_decoded() {
        let mut m = Mixer::new(MixerConfig {
            top_k: 2,
            jitter_frames: 0,
            ..MixerConfig::default()
        })
        .unwrap();
        let packet = silent_packet();
        let t0 = Instant::now();
        for id in 0..20 {
            m.add_source(id);
        }
        for tick in 0..10u32 {
            let now = t0 + Duration::from_millis(20 * u64::from(tick));
            for id in 0..20 {
                let level = match id {
                    3 => 20,
                    7 => 25,
                    9 => 30,
                    _ => 127,
                };
                m.push(id, tick * 960, &packet, Some(level), now);
            }
            m.tick(now);
        }
        assert_eq!(m.frame().mixed, vec![3, 7]);
        for id in 0..20 {
            let stats = m.stats(id).unwrap();
            assert_eq!(stats.decoding, id == 3 || id == 7, "source {id}");
            assert!(stats.playing);
        }
        assert_eq!(m.level(3), Some(20));
        assert_eq!(m.level(0), Some(127));
        assert_eq!(m.level(99), None);
    }

    #[test]
    fn sources_without_level_extension_are_measured() {
        let mut m = Mixer::new(MixerConfig {
            jitter_frames: 0,
            ..MixerConfig::default()
        })
        .unwrap();
        let encoder = new_encoder(&MixerConfig::default()).unwrap();
        let t0 = Instant::now();
        m.add_source(1);
        m.add_source(2);
        let mut tone = Vec::new();
        let silence = silent_packet();
        let mut phase = 0.0f32;
        for tick in 0..30u32 {
            let now = t0 + Duration::from_millis(20 * u64::from(tick));
            let pcm: Vec<f32> = (0..960)
                .map(|_| {
                    phase += 2.0 * std::f32::consts::PI * 500.0 / 48_000.0;
                    0.3 * phase.sin()
                })
                .collect();
            encode(&encoder, &pcm, &mut tone);
            m.push(1, tick * 960, &tone, None, now);
            m.push(2, tick * 960, &silence, None, now);
            m.tick(now);
        }
        assert_eq!(m.frame().mixed, vec![1]);
        // 0.3 peak sine: rms 0.212 -> 13.5 dBov.
        let level = m.level(1).unwrap();
        assert!((12..=16).contains(&level), "level {level}");
        assert_eq!(m.level(2), Some(127));
    }
}
