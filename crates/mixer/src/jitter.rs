//! Per-source jitter buffer: an RTP-timestamp-ordered packet queue and a playout point.
//!
//! Codec-free: it decides *what* to do for the next stretch of samples (decode a packet,
//! recover it from the next packet's FEC, or conceal a gap) and the caller does it.
//! All timestamps are on the 48 kHz RTP clock and compared with wrap-around arithmetic.
//!
//! Playout delay is adaptive (see [`Playout`]): a playout starts at the first tick its first
//! packet reaches with a safety margin; a packet that arrives after its playout time, with
//! nothing queued behind it, moves the playout point back to it (the delay grows by its
//! lateness); and a delay that stayed a whole frame longer than needed for a while can be
//! cut by one frame ([`JitterBuffer::may_shrink`]). On a quiet network that keeps the delay
//! between the margin and the margin plus one frame, instead of a fixed number of frames.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Windows of excess delay in a row after which the delay is cut even while the source is
/// loud and mixed (see [`JitterBuffer::excess_persists`]).
pub(crate) const PERSISTENT_EXCESS_WINDOWS: u32 = 2;

/// Opus frame durations are multiples of 2.5 ms (120 samples at 48 kHz).
pub(crate) const GRANULE: u32 = 120;
/// The longest Opus packet: 120 ms at 48 kHz.
pub(crate) const MAX_PACKET_SAMPLES: u32 = 5760;

/// Signed distance `a - b` on the wrapping 32-bit RTP clock.
pub(crate) fn ts_diff(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

/// Rounds a sample count up to a whole number of Opus granules (at least one).
pub(crate) fn round_up_granule(n: u32) -> u32 {
    (n.div_ceil(GRANULE).max(1) * GRANULE).min(MAX_PACKET_SAMPLES)
}

/// A recycling pool of payload buffers, so pushing a packet does not allocate once warm.
#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    bufs: Vec<Vec<u8>>,
    max: usize,
}

impl BufferPool {
    pub(crate) fn new(max: usize) -> BufferPool {
        BufferPool {
            bufs: Vec::new(),
            max,
        }
    }

    fn take(&mut self, payload: &[u8]) -> Vec<u8> {
        let mut buf = self.bufs.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(payload);
        buf
    }

    pub(crate) fn give(&mut self, buf: Vec<u8>) {
        if self.bufs.len() < self.max {
            self.bufs.push(buf);
        }
    }
}

#[derive(Debug)]
struct Queued {
    ts: u32,
    dur: u32,
    data: Vec<u8>,
    arrived: Instant,
}

/// How the playout delay adapts to the arrival times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Playout {
    /// Fixed extra frames of delay at the start of a playout.
    pub(crate) jitter_frames: u32,
    /// A packet should arrive at least this long before the tick that plays it. A playout
    /// whose first packet arrives closer to the next tick starts one tick later.
    pub(crate) margin: Duration,
    /// Late packets rewind the playout point, and an excess delay is cut again.
    pub(crate) adaptive: bool,
    /// Ticks over which the smallest slack must exceed a frame plus the margin before the
    /// delay may shrink by one frame.
    pub(crate) shrink_window: u32,
    /// The longest rewind for one late packet, in samples.
    pub(crate) max_rewind: u32,
}

impl Queued {
    fn end(&self) -> u32 {
        self.ts.wrapping_add(self.dur)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// No playout point: the next packet starts a new one.
    Idle,
    /// Buffering: playout starts after this many more ticks.
    Waiting(u32),
    /// Each tick consumes one frame at the playout point.
    Playing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued in an existing playout.
    Queued,
    /// First packet of a new playout (the buffer was idle).
    Started,
    /// Same timestamp as a queued packet: dropped.
    Duplicate,
    /// Entirely before the playout point: dropped.
    Late,
    /// Queued, then the queue was longer than allowed and the playout point jumped ahead,
    /// dropping this many packets. Decoded samples held by the caller are now stale.
    Trimmed(u32),
    /// Far behind the playout point (sender restarted): playout restarted from this packet.
    /// Decoded samples held by the caller are now stale.
    Resynced,
    /// Arrived after its playout time with nothing queued behind it: the playout point moved
    /// back to it, so the delay grew by its lateness. Decoded samples held by the caller are
    /// now stale.
    Rewound,
}

/// What to do for the next stretch of samples at the playout point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Decode the front packet and discard the first `skip` samples of its output
    /// (they lie before the playout point), then call [`JitterBuffer::consume_front`].
    Packet { skip: u32 },
    /// Exactly one packet (of `len` samples) is missing just before the front packet:
    /// recover it from the front packet's in-band FEC, then call [`JitterBuffer::advance`].
    Fec { len: u32 },
    /// Nothing to decode for `len` samples: conceal, then call [`JitterBuffer::advance`].
    Conceal { len: u32 },
}

#[derive(Debug)]
pub(crate) struct JitterBuffer {
    queue: VecDeque<Queued>,
    state: State,
    /// Timestamp of the next sample to be decoded (or skipped).
    play_ts: u32,
    /// Samples per tick.
    frame: u32,
    /// One tick.
    frame_dur: Duration,
    playout: Playout,
    /// Smallest slack (tick time minus arrival time of the packet played) seen in the current
    /// window, and the window's length in ticks. `None`: nothing measured yet, or a tick had
    /// no packet to play (so the delay must not shrink).
    window_min: Option<Duration>,
    window_ticks: u32,
    window_gap: bool,
    /// The latest complete window showed a frame of excess delay (and nothing since
    /// contradicted it).
    excess: bool,
    /// Complete windows in a row that showed excess delay (0 after one that did not).
    excess_windows: u32,
    /// Smallest slack of the latest complete window, if it had no gap and nothing moved the
    /// playout point or the tick grid since (see [`JitterBuffer::settled_slack`]).
    settled: Option<Duration>,
    /// Longest allowed span from the playout point to the end of the newest packet.
    max_span: i64,
    /// A packet this far behind the playout point restarts the playout.
    resync_span: i64,
    /// Packets that were passed over by concealment before they could be played.
    pub(crate) overtaken: u64,
}

impl JitterBuffer {
    pub(crate) fn new(frame: u32, playout: Playout, max_queue_frames: u32) -> JitterBuffer {
        let max_span = i64::from(max_queue_frames) * i64::from(frame);
        JitterBuffer {
            queue: VecDeque::new(),
            state: State::Idle,
            play_ts: 0,
            frame,
            frame_dur: Duration::from_micros(u64::from(frame) * 1_000_000 / 48_000),
            playout,
            window_min: None,
            window_ticks: 0,
            window_gap: false,
            excess: false,
            excess_windows: 0,
            settled: None,
            max_span,
            resync_span: max_span.max(50 * i64::from(frame)),
            overtaken: 0,
        }
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn play_ts(&self) -> u32 {
        self.play_ts
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Samples queued ahead of the playout point (up to the end of the newest packet,
    /// gaps included).
    pub(crate) fn buffered(&self) -> u32 {
        match self.queue.back() {
            Some(last) => ts_diff(last.end(), self.play_ts).max(0) as u32,
            None => 0,
        }
    }

    fn restart(&mut self, ts: u32, until_tick: Option<Duration>, pool: &mut BufferPool) {
        self.clear(pool);
        let close_to_tick = until_tick.is_some_and(|u| u < self.playout.margin);
        self.state = State::Waiting(self.playout.jitter_frames + u32::from(close_to_tick));
        self.play_ts = ts;
        self.reset_window();
    }

    fn reset_window(&mut self) {
        self.window_min = None;
        self.window_ticks = 0;
        self.window_gap = false;
        self.excess = false;
        self.settled = None;
    }

    /// Queues one packet of `dur` samples (a valid Opus packet duration) that arrived at
    /// `now`; `until_tick` is the time left until the next tick, when known.
    pub(crate) fn push(
        &mut self,
        ts: u32,
        dur: u32,
        payload: &[u8],
        now: Instant,
        until_tick: Option<Duration>,
        pool: &mut BufferPool,
    ) -> Pushed {
        let mut outcome = Pushed::Queued;
        if self.state == State::Idle {
            self.restart(ts, until_tick, pool);
            outcome = Pushed::Started;
        } else {
            let rel = ts_diff(ts, self.play_ts);
            if rel < 0 {
                if -rel > self.resync_span {
                    self.restart(ts, until_tick, pool);
                    outcome = Pushed::Resynced;
                } else if let State::Waiting(_) = self.state {
                    // An earlier packet overtaken by a later one before playout began:
                    // start from it instead (the trim below bounds how far back).
                    self.play_ts = ts;
                } else if rel + i64::from(dur) <= 0 {
                    // Late. With nothing queued it was not overtaken but delayed: play it
                    // now and keep the larger delay (the frames in between were concealed).
                    let rewind_ok = self.playout.adaptive
                        && self.queue.is_empty()
                        && -rel <= i64::from(self.playout.max_rewind);
                    if !rewind_ok {
                        return Pushed::Late;
                    }
                    self.play_ts = ts;
                    self.reset_window();
                    outcome = Pushed::Rewound;
                }
            }
        }

        // Sorted insert, searching from the back (packets mostly arrive in order).
        let mut pos = self.queue.len();
        while pos > 0 {
            let d = ts_diff(ts, self.queue[pos - 1].ts);
            if d == 0 {
                return Pushed::Duplicate;
            }
            if d > 0 {
                break;
            }
            pos -= 1;
        }
        let data = pool.take(payload);
        self.queue.insert(
            pos,
            Queued {
                ts,
                dur,
                data,
                arrived: now,
            },
        );

        // Trim an overlong queue (bursts, sender clock faster than ours): jump the playout
        // point ahead so that jitter_frames + 1 frames remain (one is played at the next tick).
        if let Some(last) = self.queue.back() {
            let end = last.end();
            if ts_diff(end, self.play_ts) > self.max_span {
                self.play_ts = end.wrapping_sub((self.playout.jitter_frames + 1) * self.frame);
                self.reset_window();
                let mut dropped = 0;
                while let Some(front) = self.queue.front() {
                    if ts_diff(front.end(), self.play_ts) > 0 {
                        break;
                    }
                    if let Some(p) = self.queue.pop_front() {
                        pool.give(p.data);
                    }
                    dropped += 1;
                }
                return Pushed::Trimmed(dropped);
            }
        }
        outcome
    }

    /// Playing, but nothing queued covers the playout point: the next tick would conceal.
    pub(crate) fn frame_missing(&self) -> bool {
        self.state == State::Playing
            && !self
                .queue
                .iter()
                .any(|p| ts_diff(p.ts, self.play_ts) <= 0 && ts_diff(p.end(), self.play_ts) > 0)
    }

    /// Advances the playout state machine at the tick at `now`; returns whether the buffer
    /// plays this tick.
    pub(crate) fn begin_tick(&mut self, now: Instant) -> bool {
        let playing = match self.state {
            State::Idle => false,
            State::Waiting(0) => {
                self.state = State::Playing;
                true
            }
            State::Waiting(n) => {
                self.state = State::Waiting(n - 1);
                false
            }
            State::Playing => true,
        };
        if playing && self.playout.adaptive {
            self.measure_slack(now);
        }
        playing
    }

    /// Records how long before this tick the last packet it plays arrived: the one with the
    /// frame's last sample (with packets shorter than a frame, the latest of them).
    fn measure_slack(&mut self, now: Instant) {
        let last_sample = self.play_ts.wrapping_add(self.frame - 1);
        let last = self
            .queue
            .iter()
            .find(|p| ts_diff(p.end(), last_sample) > 0)
            .filter(|p| ts_diff(p.ts, last_sample) <= 0);
        match last {
            Some(p) => {
                let slack = now.saturating_duration_since(p.arrived);
                self.window_min = Some(self.window_min.map_or(slack, |m| m.min(slack)));
            }
            // Nothing to play (lost, or late): the delay is not too long.
            None => {
                self.window_gap = true;
                self.excess = false;
                self.excess_windows = 0;
                self.settled = None;
            }
        }
        self.window_ticks = self.window_ticks.saturating_add(1);
        if self.window_ticks >= self.playout.shrink_window.max(1) {
            // Windows follow each other; each verdict holds until the next one.
            let settled = self.window_min.filter(|_| !self.window_gap);
            let excess = settled.is_some_and(|m| m >= self.frame_dur + self.playout.margin);
            self.reset_window();
            self.excess = excess;
            self.settled = settled;
            self.excess_windows = if excess {
                self.excess_windows.saturating_add(1)
            } else {
                0
            };
        }
    }

    /// Whether the delay was at least one frame longer than needed (plus the margin) over
    /// the latest whole window: [`JitterBuffer::shrink`] would have left every packet of the
    /// window in time.
    pub(crate) fn may_shrink(&self) -> bool {
        self.playout.adaptive && self.state == State::Playing && self.excess
    }

    /// Whether the excess delay has lasted [`PERSISTENT_EXCESS_WINDOWS`] windows in a row: a
    /// source that never goes quiet (a continuous talker, music) is cut even while heard,
    /// rather than keeping the extra delay for the rest of the call.
    pub(crate) fn excess_persists(&self) -> bool {
        self.may_shrink() && self.excess_windows >= PERSISTENT_EXCESS_WINDOWS
    }

    /// While playing: the smallest slack (tick time minus arrival) of the packets played over
    /// the latest complete window, when that window had no gap and neither the playout point
    /// nor the tick grid moved since. How much earlier the ticks could come without making
    /// this source late (keeping the playout margin): the slack minus the margin.
    pub(crate) fn settled_slack(&self) -> Option<Duration> {
        if self.state != State::Playing {
            return None;
        }
        self.settled
    }

    /// The ticks were moved earlier: slack measured so far is stale, and so is a verdict of
    /// excess delay.
    pub(crate) fn ticks_moved(&mut self) {
        self.reset_window();
        self.excess_windows = 0;
    }

    /// Cuts the delay by one frame: the frame at the playout point is dropped unplayed.
    pub(crate) fn shrink(&mut self, pool: &mut BufferPool) {
        self.play_ts = self.play_ts.wrapping_add(self.frame);
        self.overtaken += self.drop_passed(pool);
        self.reset_window();
    }

    /// Drops packets that end at or before the playout point.
    fn drop_passed(&mut self, pool: &mut BufferPool) -> u64 {
        let mut n = 0;
        while let Some(front) = self.queue.front() {
            if ts_diff(front.end(), self.play_ts) > 0 {
                break;
            }
            if let Some(p) = self.queue.pop_front() {
                pool.give(p.data);
            }
            n += 1;
        }
        n
    }

    /// Plans the next stretch of at most `want` samples (concealment may round up to a
    /// granule).
    pub(crate) fn next(&mut self, want: u32, pool: &mut BufferPool) -> Next {
        self.overtaken += self.drop_passed(pool);
        match self.queue.front() {
            Some(front) => {
                let rel = ts_diff(front.ts, self.play_ts);
                if rel <= 0 {
                    return Next::Packet {
                        skip: (-rel) as u32,
                    };
                }
                let gap = rel.min(i64::from(MAX_PACKET_SAMPLES)) as u32;
                let len = round_up_granule(gap.min(want));
                if gap == front.dur && len == gap {
                    Next::Fec { len }
                } else {
                    Next::Conceal { len }
                }
            }
            None => Next::Conceal {
                len: round_up_granule(want),
            },
        }
    }

    pub(crate) fn front_payload(&self) -> Option<&[u8]> {
        self.queue.front().map(|p| p.data.as_slice())
    }

    /// The front packet was decoded into `decoded` samples: the playout point moves to its end.
    pub(crate) fn consume_front(&mut self, decoded: u32, pool: &mut BufferPool) {
        if let Some(p) = self.queue.pop_front() {
            let end = p.ts.wrapping_add(decoded);
            if ts_diff(end, self.play_ts) > 0 {
                self.play_ts = end;
            }
            pool.give(p.data);
        }
    }

    /// The front packet could not be decoded: drop it (it becomes a gap).
    pub(crate) fn drop_front(&mut self, pool: &mut BufferPool) {
        if let Some(p) = self.queue.pop_front() {
            pool.give(p.data);
        }
    }

    /// `len` samples were concealed.
    pub(crate) fn advance(&mut self, len: u32) {
        self.play_ts = self.play_ts.wrapping_add(len);
    }

    /// Moves the playout point `len` samples ahead without decoding (a source that is not
    /// mixed). Returns whether any packet covered part of the skipped stretch.
    pub(crate) fn skip(&mut self, len: u32, pool: &mut BufferPool) -> bool {
        self.overtaken += self.drop_passed(pool);
        let new = self.play_ts.wrapping_add(len);
        let covered = self
            .queue
            .front()
            .is_some_and(|front| ts_diff(front.ts, new) < 0);
        self.play_ts = new;
        self.drop_passed(pool);
        covered
    }

    /// Ends the playout; the next packet starts a new one.
    pub(crate) fn go_idle(&mut self, pool: &mut BufferPool) {
        self.clear(pool);
        self.state = State::Idle;
    }

    pub(crate) fn clear(&mut self, pool: &mut BufferPool) {
        for p in self.queue.drain(..) {
            pool.give(p.data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: u32 = 960;

    /// Fixed-delay playout: what the tests below pin down.
    fn fixed(jitter_frames: u32) -> Playout {
        Playout {
            jitter_frames,
            margin: Duration::ZERO,
            adaptive: false,
            shrink_window: 0,
            max_rewind: 0,
        }
    }

    fn jb(jitter: u32) -> (JitterBuffer, BufferPool) {
        (JitterBuffer::new(F, fixed(jitter), 10), BufferPool::new(64))
    }

    /// A fixed instant (the fixed-delay tests ignore arrival times).
    fn t() -> Instant {
        static T: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *T.get_or_init(Instant::now)
    }

    #[test]
    fn ts_diff_wraps() {
        assert_eq!(ts_diff(5, u32::MAX - 4), 10);
        assert_eq!(ts_diff(u32::MAX - 4, 5), -10);
        assert_eq!(ts_diff(7, 7), 0);
    }

    #[test]
    fn granule_rounding() {
        assert_eq!(round_up_granule(0), 120);
        assert_eq!(round_up_granule(1), 120);
        assert_eq!(round_up_granule(960), 960);
        assert_eq!(round_up_granule(961), 1080);
        assert_eq!(round_up_granule(100_000), MAX_PACKET_SAMPLES);
    }

    #[test]
    fn waits_jitter_frames_then_plays_in_order() {
        let (mut b, mut pool) = jb(1);
        let t0 = u32::MAX - 1000; // wraps during the test
        assert_eq!(b.push(t0, F, &[1], t(), None, &mut pool), Pushed::Started);
        assert!(!b.begin_tick(t()));
        assert_eq!(
            b.push(t0.wrapping_add(2 * F), F, &[3], t(), None, &mut pool),
            Pushed::Queued
        );
        assert_eq!(
            b.push(t0.wrapping_add(F), F, &[2], t(), None, &mut pool),
            Pushed::Queued
        );
        assert_eq!(
            b.push(t0.wrapping_add(F), F, &[2], t(), None, &mut pool),
            Pushed::Duplicate
        );
        assert!(b.begin_tick(t()));
        for expect in 1..=3u8 {
            assert_eq!(b.next(F, &mut pool), Next::Packet { skip: 0 });
            assert_eq!(b.front_payload(), Some(&[expect][..]));
            b.consume_front(F, &mut pool);
        }
        assert_eq!(b.play_ts(), t0.wrapping_add(3 * F));
        assert!(b.is_empty());
    }

    #[test]
    fn late_packets_are_dropped_and_gaps_planned() {
        let (mut b, mut pool) = jb(0);
        b.push(1000, F, &[1], t(), None, &mut pool);
        assert!(b.begin_tick(t()));
        assert_eq!(b.next(F, &mut pool), Next::Packet { skip: 0 });
        b.consume_front(F, &mut pool);
        // The packet at 1000 + F is lost; 1000 + 2F arrives: FEC-able gap.
        b.push(1000 + 2 * F, F, &[3], t(), None, &mut pool);
        assert_eq!(b.next(F, &mut pool), Next::Fec { len: F });
        b.advance(F);
        // The lost packet shows up after its time: late.
        assert_eq!(
            b.push(1000 + F, F, &[2], t(), None, &mut pool),
            Pushed::Late
        );
        assert_eq!(b.next(F, &mut pool), Next::Packet { skip: 0 });
        b.consume_front(F, &mut pool);
        // Nothing queued: conceal.
        assert_eq!(b.next(F, &mut pool), Next::Conceal { len: F });
        // A two-frame gap is concealed frame by frame, not with FEC.
        b.advance(F);
        b.push(1000 + 6 * F, F, &[7], t(), None, &mut pool);
        assert_eq!(b.next(F, &mut pool), Next::Conceal { len: F });
    }

    #[test]
    fn earlier_packet_before_playout_moves_start_back() {
        let (mut b, mut pool) = jb(2);
        b.push(10 * F, F, &[2], t(), None, &mut pool);
        assert!(!b.begin_tick(t()));
        b.push(9 * F, F, &[1], t(), None, &mut pool);
        assert_eq!(b.play_ts(), 9 * F);
        assert!(!b.begin_tick(t()));
        assert!(b.begin_tick(t()));
        assert_eq!(b.next(F, &mut pool), Next::Packet { skip: 0 });
        assert_eq!(b.front_payload(), Some(&[1][..]));
    }

    #[test]
    fn overlong_queue_is_trimmed_to_target_depth() {
        let (mut b, mut pool) = jb(1);
        b.push(0, F, &[0], t(), None, &mut pool);
        for i in 1..10 {
            assert_eq!(b.push(i * F, F, &[0], t(), None, &mut pool), Pushed::Queued);
        }
        // 11 frames > max_queue_frames (10): trimmed to jitter + 1 = 2 frames.
        assert_eq!(
            b.push(10 * F, F, &[0], t(), None, &mut pool),
            Pushed::Trimmed(9)
        );
        assert_eq!(b.len(), 2);
        assert_eq!(b.buffered(), 2 * F);
        assert_eq!(b.play_ts(), 9 * F);
    }

    #[test]
    fn far_backwards_jump_resyncs() {
        let (mut b, mut pool) = jb(1);
        b.push(1_000_000, F, &[0], t(), None, &mut pool);
        b.begin_tick(t());
        b.begin_tick(t());
        assert_eq!(b.state(), State::Playing);
        assert_eq!(b.push(5, F, &[0], t(), None, &mut pool), Pushed::Resynced);
        assert_eq!(b.state(), State::Waiting(1));
        assert_eq!(b.play_ts(), 5);
    }

    #[test]
    fn skip_consumes_without_decoding() {
        let (mut b, mut pool) = jb(0);
        b.push(0, 3 * F, &[0], t(), None, &mut pool); // one 60 ms packet
        b.begin_tick(t());
        assert!(b.skip(F, &mut pool));
        assert!(!b.is_empty(), "packet still covers the next 40 ms");
        assert!(b.skip(F, &mut pool));
        assert!(b.skip(F, &mut pool));
        assert!(b.is_empty());
        assert!(!b.skip(F, &mut pool));
        // Resuming decoding in the middle of a packet skips its first samples.
        b.push(4 * F, 3 * F, &[0], t(), None, &mut pool);
        b.skip(F, &mut pool);
        assert_eq!(b.next(F, &mut pool), Next::Packet { skip: F });
    }

    #[test]
    fn misaligned_gap_rounds_to_granules() {
        let (mut b, mut pool) = jb(0);
        b.push(0, F, &[0], t(), None, &mut pool);
        b.begin_tick(t());
        b.next(F, &mut pool);
        b.consume_front(F, &mut pool);
        b.push(F + 7, F, &[1], t(), None, &mut pool);
        assert_eq!(b.next(F, &mut pool), Next::Conceal { len: 120 });
        b.advance(120);
        assert_eq!(b.next(F, &mut pool), Next::Packet { skip: 113 });
    }

    fn adaptive() -> Playout {
        Playout {
            jitter_frames: 0,
            margin: Duration::from_millis(5),
            adaptive: true,
            shrink_window: 10,
            max_rewind: 3 * F,
        }
    }

    const TICK: Duration = Duration::from_millis(20);

    #[test]
    fn a_playout_starts_at_the_first_tick_reached_with_the_margin() {
        let base = t();
        let mut b = JitterBuffer::new(F, adaptive(), 10);
        let mut pool = BufferPool::new(8);
        // 12 ms before the next tick: plays at that tick.
        b.push(0, F, &[0], base, Some(Duration::from_millis(12)), &mut pool);
        assert!(b.begin_tick(base + Duration::from_millis(12)));
        // 2 ms before the next tick (less than the margin): one tick later.
        let mut b = JitterBuffer::new(F, adaptive(), 10);
        b.push(0, F, &[0], base, Some(Duration::from_millis(2)), &mut pool);
        assert!(!b.begin_tick(base + Duration::from_millis(2)));
        assert!(b.begin_tick(base + Duration::from_millis(22)));
    }

    #[test]
    fn a_late_packet_rewinds_and_the_excess_delay_shrinks_again() {
        let base = t();
        let mut b = JitterBuffer::new(F, adaptive(), 10);
        let mut pool = BufferPool::new(8);
        // Packet k arrives 10 ms before tick k.
        let tick = |k: u32| base + TICK * k;
        let arrive = |k: u32| tick(k) - Duration::from_millis(10);
        b.push(
            0,
            F,
            &[0],
            arrive(0),
            Some(Duration::from_millis(10)),
            &mut pool,
        );
        for k in 0..5 {
            if k > 0 {
                b.push(k * F, F, &[0], arrive(k), None, &mut pool);
            }
            assert!(b.begin_tick(tick(k)));
            assert_eq!(b.next(F, &mut pool), Next::Packet { skip: 0 });
            b.consume_front(F, &mut pool);
        }
        // Packet 5 is 15 ms late: tick 5 conceals it, then it arrives with nothing queued.
        assert!(b.begin_tick(tick(5)));
        assert_eq!(b.next(F, &mut pool), Next::Conceal { len: F });
        b.advance(F);
        let late = tick(5) + Duration::from_millis(5);
        assert_eq!(
            b.push(5 * F, F, &[5], late, None, &mut pool),
            Pushed::Rewound
        );
        // It plays at tick 6 (15 ms of slack); every later packet now waits one frame more
        // (30 ms of slack). The first window holds the 15 ms, the second shows the excess.
        for k in 6..26 {
            b.push(k * F, F, &[0], arrive(k), None, &mut pool);
            assert!(b.begin_tick(tick(k)));
            assert_eq!(b.next(F, &mut pool), Next::Packet { skip: 0 });
            b.consume_front(F, &mut pool);
            assert_eq!(b.may_shrink(), k == 25, "tick {k}");
        }
        // At tick 26, cutting one frame (packet 25, unplayed) brings the slack back to 10 ms;
        // no more shrinking.
        b.push(26 * F, F, &[0], arrive(26), None, &mut pool);
        assert!(b.begin_tick(tick(26)));
        b.shrink(&mut pool);
        assert_eq!(b.next(F, &mut pool), Next::Packet { skip: 0 });
        b.consume_front(F, &mut pool);
        assert_eq!(b.play_ts(), 27 * F);
        for k in 27..60 {
            b.push(k * F, F, &[0], arrive(k), None, &mut pool);
            assert!(b.begin_tick(tick(k)));
            assert_eq!(b.next(F, &mut pool), Next::Packet { skip: 0 }, "tick {k}");
            b.consume_front(F, &mut pool);
            assert!(!b.may_shrink());
        }
    }

    #[test]
    fn the_settled_slack_is_that_of_the_last_packet_a_tick_plays() {
        let base = t();
        let mut b = JitterBuffer::new(F, adaptive(), 10);
        let mut pool = BufferPool::new(8);
        let half = F / 2;
        let ms = Duration::from_millis;
        let tick = |k: u32| base + TICK * k;
        // 10 ms packets: the first half of frame k arrives 17 ms before tick k, the second
        // half 7 ms before it. The later one is what limits how early the tick could come.
        // Frame `gap` never arrives.
        let run =
            |b: &mut JitterBuffer, pool: &mut BufferPool, ticks: std::ops::Range<u32>, gap| {
                let mut settled = Vec::new();
                for k in ticks {
                    if k != gap {
                        b.push(k * F, half, &[1], tick(k) - ms(17), Some(ms(17)), pool);
                        b.push(k * F + half, half, &[2], tick(k) - ms(7), None, pool);
                    }
                    assert!(b.begin_tick(tick(k)));
                    settled.push(b.settled_slack());
                    if k == gap {
                        b.skip(F, pool);
                    } else {
                        for _ in 0..2 {
                            assert_eq!(b.next(half, pool), Next::Packet { skip: 0 });
                            b.consume_front(half, pool);
                        }
                    }
                }
                settled
            };
        // The first window (10 ticks) settles at its last tick.
        let settled = run(&mut b, &mut pool, 0..10, u32::MAX);
        assert_eq!(settled[..9], [None; 9]);
        assert_eq!(settled[9], Some(ms(7)));
        // Moving the ticks makes what was measured stale.
        b.ticks_moved();
        assert_eq!(b.settled_slack(), None);
        // A window with a gap settles nothing; the next clean one does.
        let settled = run(&mut b, &mut pool, 10..20, 14);
        assert_eq!(settled, [None; 10]);
        let settled = run(&mut b, &mut pool, 20..30, u32::MAX);
        assert_eq!(settled[9], Some(ms(7)));
    }

    #[test]
    fn an_excess_delay_persists_after_two_windows_in_a_row() {
        let base = t();
        let mut b = JitterBuffer::new(F, adaptive(), 10);
        let mut pool = BufferPool::new(8);
        // Packet k arrives 30 ms before tick k: one frame and the margin more than needed.
        let tick = |k: u32| base + TICK * k;
        let arrive = |k: u32| tick(k) - Duration::from_millis(30);
        b.push(
            0,
            F,
            &[0],
            arrive(0),
            Some(Duration::from_millis(30)),
            &mut pool,
        );
        for k in 0..30 {
            b.push((k + 1) * F, F, &[0], arrive(k + 1), None, &mut pool);
            assert!(b.begin_tick(tick(k)));
            assert_eq!(b.next(F, &mut pool), Next::Packet { skip: 0 });
            b.consume_front(F, &mut pool);
            // Windows of 10 ticks: the first verdict at tick 9, the second at tick 19.
            assert_eq!(b.may_shrink(), k >= 9, "tick {k}");
            assert_eq!(b.excess_persists(), k >= 19, "tick {k}");
        }
        // A window with a gap (a lost packet) starts the count again.
        b.begin_tick(tick(30));
        b.next(F, &mut pool);
        b.consume_front(F, &mut pool);
        assert!(b.begin_tick(tick(31)));
        assert_eq!(b.next(F, &mut pool), Next::Conceal { len: F });
        b.advance(F);
        assert!(!b.excess_persists());
        assert!(!b.may_shrink());
    }

    #[test]
    fn an_overtaken_late_packet_does_not_rewind() {
        let mut b = JitterBuffer::new(F, adaptive(), 10);
        let mut pool = BufferPool::new(8);
        let now = t();
        b.push(0, F, &[0], now, Some(Duration::from_millis(10)), &mut pool);
        b.begin_tick(now);
        b.next(F, &mut pool);
        b.consume_front(F, &mut pool);
        b.push(2 * F, F, &[2], now, None, &mut pool);
        b.begin_tick(now);
        assert_eq!(b.next(F, &mut pool), Next::Fec { len: F });
        b.advance(F);
        // Packet 1 shows up after packet 2 was queued: reordering, not delay.
        assert_eq!(b.push(F, F, &[1], now, None, &mut pool), Pushed::Late);
    }
}
