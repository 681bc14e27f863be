//! Per-source jitter buffer: an RTP-timestamp-ordered packet queue and a playout point.
//!
//! Codec-free: it decides *what* to do for the next stretch of samples (decode a packet,
//! recover it from the next packet's FEC, or conceal a gap) and the caller does it.
//! All timestamps are on the 48 kHz RTP clock and compared with wrap-around arithmetic.

use std::collections::VecDeque;

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
    jitter_frames: u32,
    /// Longest allowed span from the playout point to the end of the newest packet.
    max_span: i64,
    /// A packet this far behind the playout point restarts the playout.
    resync_span: i64,
    /// Packets that were passed over by concealment before they could be played.
    pub(crate) overtaken: u64,
}

impl JitterBuffer {
    pub(crate) fn new(frame: u32, jitter_frames: u32, max_queue_frames: u32) -> JitterBuffer {
        let max_span = i64::from(max_queue_frames) * i64::from(frame);
        JitterBuffer {
            queue: VecDeque::new(),
            state: State::Idle,
            play_ts: 0,
            frame,
            jitter_frames,
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

    fn restart(&mut self, ts: u32, pool: &mut BufferPool) {
        self.clear(pool);
        self.state = State::Waiting(self.jitter_frames);
        self.play_ts = ts;
    }

    /// Queues one packet of `dur` samples (a valid Opus packet duration).
    pub(crate) fn push(
        &mut self,
        ts: u32,
        dur: u32,
        payload: &[u8],
        pool: &mut BufferPool,
    ) -> Pushed {
        let mut outcome = Pushed::Queued;
        if self.state == State::Idle {
            self.restart(ts, pool);
            outcome = Pushed::Started;
        } else {
            let rel = ts_diff(ts, self.play_ts);
            if rel < 0 {
                if -rel > self.resync_span {
                    self.restart(ts, pool);
                    outcome = Pushed::Resynced;
                } else if let State::Waiting(_) = self.state {
                    // An earlier packet overtaken by a later one before playout began:
                    // start from it instead (the trim below bounds how far back).
                    self.play_ts = ts;
                } else if rel + i64::from(dur) <= 0 {
                    return Pushed::Late;
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
        self.queue.insert(pos, Queued { ts, dur, data });

        // Trim an overlong queue (bursts, sender clock faster than ours): jump the playout
        // point ahead so that jitter_frames + 1 frames remain (one is played at the next tick).
        if let Some(last) = self.queue.back() {
            let end = last.end();
            if ts_diff(end, self.play_ts) > self.max_span {
                self.play_ts = end.wrapping_sub((self.jitter_frames + 1) * self.frame);
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

    /// Advances the playout state machine; returns whether the buffer plays this tick.
    pub(crate) fn begin_tick(&mut self) -> bool {
        match self.state {
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
        }
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

    fn jb(jitter: u32) -> (JitterBuffer, BufferPool) {
        (JitterBuffer::new(F, jitter, 10), BufferPool::new(64))
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
        assert_eq!(b.push(t0, F, &[1], &mut pool), Pushed::Started);
        assert!(!b.begin_tick());
        assert_eq!(
            b.push(t0.wrapping_add(2 * F), F, &[3], &mut pool),
            Pushed::Queued
        );
        assert_eq!(
            b.push(t0.wrapping_add(F), F, &[2], &mut pool),
            Pushed::Queued
        );
        assert_eq!(
            b.push(t0.wrapping_add(F), F, &[2], &mut pool),
            Pushed::Duplicate
        );
        assert!(b.begin_tick());
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
        b.push(1000, F, &[1], &mut pool);
        assert!(b.begin_tick());
        assert_eq!(b.next(F, &mut pool), Next::Packet { skip: 0 });
        b.consume_front(F, &mut pool);
        // The packet at 1000 + F is lost; 1000 + 2F arrives: FEC-able gap.
        b.push(1000 + 2 * F, F, &[3], &mut pool);
        assert_eq!(b.next(F, &mut pool), Next::Fec { len: F });
        b.advance(F);
        // The lost packet shows up after its time: late.
        assert_eq!(b.push(1000 + F, F, &[2], &mut pool), Pushed::Late);
        assert_eq!(b.next(F, &mut pool), Next::Packet { skip: 0 });
        b.consume_front(F, &mut pool);
        // Nothing queued: conceal.
        assert_eq!(b.next(F, &mut pool), Next::Conceal { len: F });
        // A two-frame gap is concealed frame by frame, not with FEC.
        b.advance(F);
        b.push(1000 + 6 * F, F, &[7], &mut pool);
        assert_eq!(b.next(F, &mut pool), Next::Conceal { len: F });
    }

    #[test]
    fn earlier_packet_before_playout_moves_start_back() {
        let (mut b, mut pool) = jb(2);
        b.push(10 * F, F, &[2], &mut pool);
        assert!(!b.begin_tick());
        b.push(9 * F, F, &[1], &mut pool);
        assert_eq!(b.play_ts(), 9 * F);
        assert!(!b.begin_tick());
        assert!(b.begin_tick());
        assert_eq!(b.next(F, &mut pool), Next::Packet { skip: 0 });
        assert_eq!(b.front_payload(), Some(&[1][..]));
    }

    #[test]
    fn overlong_queue_is_trimmed_to_target_depth() {
        let (mut b, mut pool) = jb(1);
        b.push(0, F, &[0], &mut pool);
        for i in 1..10 {
            assert_eq!(b.push(i * F, F, &[0], &mut pool), Pushed::Queued);
        }
        // 11 frames > max_queue_frames (10): trimmed to jitter + 1 = 2 frames.
        assert_eq!(b.push(10 * F, F, &[0], &mut pool), Pushed::Trimmed(9));
        assert_eq!(b.len(), 2);
        assert_eq!(b.buffered(), 2 * F);
        assert_eq!(b.play_ts(), 9 * F);
    }

    #[test]
    fn far_backwards_jump_resyncs() {
        let (mut b, mut pool) = jb(1);
        b.push(1_000_000, F, &[0], &mut pool);
        b.begin_tick();
        b.begin_tick();
        assert_eq!(b.state(), State::Playing);
        assert_eq!(b.push(5, F, &[0], &mut pool), Pushed::Resynced);
        assert_eq!(b.state(), State::Waiting(1));
        assert_eq!(b.play_ts(), 5);
    }

    #[test]
    fn skip_consumes_without_decoding() {
        let (mut b, mut pool) = jb(0);
        b.push(0, 3 * F, &[0], &mut pool); // one 60 ms packet
        b.begin_tick();
        assert!(b.skip(F, &mut pool));
        assert!(!b.is_empty(), "packet still covers the next 40 ms");
        assert!(b.skip(F, &mut pool));
        assert!(b.skip(F, &mut pool));
        assert!(b.is_empty());
        assert!(!b.skip(F, &mut pool));
        // Resuming decoding in the middle of a packet skips its first samples.
        b.push(4 * F, 3 * F, &[0], &mut pool);
        b.skip(F, &mut pool);
        assert_eq!(b.next(F, &mut pool), Next::Packet { skip: F });
    }

    #[test]
    fn misaligned_gap_rounds_to_granules() {
        let (mut b, mut pool) = jb(0);
        b.push(0, F, &[0], &mut pool);
        b.begin_tick();
        b.next(F, &mut pool);
        b.consume_front(F, &mut pool);
        b.push(F + 7, F, &[1], &mut pool);
        assert_eq!(b.next(F, &mut pool), Next::Conceal { len: 120 });
        b.advance(120);
        assert_eq!(b.next(F, &mut pool), Next::Packet { skip: 113 });
    }
}
