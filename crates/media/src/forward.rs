//! Sequence-number and timestamp rewriting for forwarded video RTP.
//!
//! Video is forwarded packet by packet (str0m in RTP mode): a packet is read once and written
//! to every receiver's send stream without depacketizing or repacketizing it. Each receiver's
//! m-line is one RTP stream of ours, but the publisher behind it changes when the receiver
//! resubscribes, so sequence numbers and timestamps are rebased per binding:
//!
//! - sequence numbers keep the publisher's gaps (the receiver NACKs what was lost) and continue
//!   ours across a change of publisher, so a receiver never sees one number twice;
//! - a packet older than the first one forwarded for the current binding is dropped (it would
//!   map onto numbers already used for the previous publisher);
//! - timestamps continue ours with a one-frame step at a change of publisher.
//!
//! Our numbers start below 65,536: the SRTP rollover counter starts at zero on both sides.
//!
//! Packets of a frame are held until the frame's last packet (the marker bit) and then
//! forwarded together ([`FrameHold`]): each receiver's share of the frame then leaves in one
//! segmented send instead of one system call per packet, and the frame is complete no later
//! than it would have been (a receiver can only decode it once the last packet is there).

use std::sync::Arc;
use std::time::{Duration, Instant};

/// 90 kHz ticks of one frame at 30 fps: the timestamp step at a change of publisher.
const SWITCH_STEP: u32 = 3000;

/// How long packets wait for their frame's last packet (which may be lost).
pub const HOLD_LIMIT: Duration = Duration::from_millis(10);

/// One received RTP packet of a published video, as forwarded.
#[derive(Debug, Clone)]
pub struct RtpPayload {
    /// The publisher's extended sequence number.
    pub seq: u64,
    /// RTP timestamp on the codec's clock (90 kHz for video).
    pub time: u32,
    /// The last packet of a frame.
    pub marker: bool,
    pub payload: Arc<[u8]>,
}

/// The packets of a publisher's current frame that arrived so far.
#[derive(Debug, Clone, Default)]
pub struct FrameHold {
    packets: Vec<RtpPayload>,
    since: Option<Instant>,
    /// Highest sequence number seen: an older one is a retransmission or reordered.
    newest: Option<u64>,
}

impl FrameHold {
    /// Holds `packet`, or returns what is held with it when it ends its frame (marker bit),
    /// belongs to another frame than the held ones (their last packet was lost), or is older
    /// than a packet already seen (a retransmission, whose frame's end has passed): those go
    /// now rather than wait.
    pub fn push(&mut self, packet: RtpPayload, now: Instant) -> Option<Vec<RtpPayload>> {
        let other_frame = self.packets.first().is_some_and(|p| p.time != packet.time);
        let late = self.newest.is_some_and(|n| packet.seq < n);
        self.newest = Some(self.newest.map_or(packet.seq, |n| n.max(packet.seq)));
        let ends = packet.marker || other_frame || late;
        self.packets.push(packet);
        if ends {
            return Some(self.release());
        }
        self.since.get_or_insert(now);
        None
    }

    /// When the held packets must go even without their frame's last packet.
    pub fn deadline(&self) -> Option<Instant> {
        self.since.map(|t| t + HOLD_LIMIT)
    }

    /// The held packets, if their deadline has passed.
    pub fn take_due(&mut self, now: Instant) -> Option<Vec<RtpPayload>> {
        if self.deadline().is_some_and(|d| d <= now) {
            Some(self.release())
        } else {
            None
        }
    }

    fn release(&mut self) -> Vec<RtpPayload> {
        self.since = None;
        std::mem::take(&mut self.packets)
    }
}

/// Where one outgoing stream stands.
#[derive(Debug, Clone, Default)]
pub struct Rebase {
    /// The stream of the current binding and its first forwarded packet's (extended) number.
    binding: Option<Binding>,
    /// Highest outgoing sequence number used so far (0: none).
    last_seq: u64,
    last_time: u32,
}

#[derive(Debug, Clone, Copy)]
struct Binding {
    stream: u32,
    first_in: u64,
    /// Outgoing number of `first_in`.
    first_out: u64,
    /// Added to the publisher's timestamps.
    time_offset: u32,
}

impl Rebase {
    /// The outgoing sequence number and timestamp for a packet of `stream` with the
    /// publisher's extended sequence number `seq` and timestamp `time`, or `None` when the
    /// packet must not be forwarded (older than this binding's first packet).
    pub fn map(&mut self, stream: u32, seq: u64, time: u32) -> Option<(u64, u32)> {
        let binding = match self.binding {
            Some(b) if b.stream == stream => b,
            _ => {
                let time_offset = if self.last_seq == 0 {
                    0
                } else {
                    self.last_time.wrapping_add(SWITCH_STEP).wrapping_sub(time)
                };
                let b = Binding {
                    stream,
                    first_in: seq,
                    first_out: self.last_seq + 1,
                    time_offset,
                };
                self.binding = Some(b);
                b
            }
        };
        let out_seq = binding.first_out + seq.checked_sub(binding.first_in)?;
        let out_time = time.wrapping_add(binding.time_offset);
        if out_seq > self.last_seq {
            self.last_seq = out_seq;
            self.last_time = out_time;
        }
        Some((out_seq, out_time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u64, time: u32, marker: bool) -> RtpPayload {
        RtpPayload {
            seq,
            time,
            marker,
            payload: Arc::from(vec![0u8; 10]),
        }
    }

    fn seqs(run: Option<Vec<RtpPayload>>) -> Vec<u64> {
        run.unwrap_or_default().iter().map(|p| p.seq).collect()
    }

    #[test]
    fn a_frame_is_held_until_its_last_packet() {
        let t0 = Instant::now();
        let mut hold = FrameHold::default();
        assert!(hold.push(packet(1, 100, false), t0).is_none());
        assert!(hold.push(packet(2, 100, false), t0).is_none());
        assert_eq!(hold.deadline(), Some(t0 + HOLD_LIMIT));
        assert_eq!(seqs(hold.push(packet(3, 100, true), t0)), vec![1, 2, 3]);
        assert_eq!(hold.deadline(), None);
        // A one-packet frame goes at once.
        assert_eq!(seqs(hold.push(packet(4, 200, true), t0)), vec![4]);
    }

    #[test]
    fn a_lost_last_packet_delays_its_frame_by_the_hold_limit_at_most() {
        let t0 = Instant::now();
        let mut hold = FrameHold::default();
        hold.push(packet(1, 100, false), t0);
        assert!(hold.take_due(t0 + HOLD_LIMIT / 2).is_none());
        assert_eq!(seqs(hold.take_due(t0 + HOLD_LIMIT)), vec![1]);
        assert!(hold.take_due(t0 + HOLD_LIMIT * 2).is_none());
        // The next frame's first packet also releases a frame whose end was lost.
        hold.push(packet(2, 100, false), t0);
        assert_eq!(seqs(hold.push(packet(4, 200, false), t0)), vec![2, 4]);
    }

    #[test]
    fn a_retransmission_goes_at_once() {
        let t0 = Instant::now();
        let mut hold = FrameHold::default();
        assert_eq!(
            seqs(hold.push(packet(1, 100, false), t0)),
            Vec::<u64>::new()
        );
        assert_eq!(seqs(hold.push(packet(3, 100, true), t0)), vec![1, 3]);
        // Packet 2 of that frame, resent after its frame ended: nothing to wait for.
        assert_eq!(seqs(hold.push(packet(2, 100, false), t0)), vec![2]);
        assert_eq!(hold.deadline(), None);
    }

    #[test]
    fn numbers_start_at_one_and_keep_the_publishers_gaps() {
        let mut r = Rebase::default();
        assert_eq!(r.map(7, 40_000, 1000), Some((1, 1000)));
        assert_eq!(r.map(7, 40_001, 1000), Some((2, 1000)));
        // 40_002 lost: the gap stays so the receiver asks for it.
        assert_eq!(r.map(7, 40_003, 4000), Some((4, 4000)));
        // The retransmission arrives late and takes its own number.
        assert_eq!(r.map(7, 40_002, 1000), Some((3, 1000)));
    }

    #[test]
    fn a_new_publisher_continues_the_numbers_and_the_clock() {
        let mut r = Rebase::default();
        r.map(7, 100, 9000);
        r.map(7, 101, 12_000);
        assert_eq!(r.map(9, 5, 777), Some((3, 15_000)));
        assert_eq!(r.map(9, 6, 3777), Some((4, 18_000)));
        // A late packet from before the new binding's first one is dropped.
        assert_eq!(r.map(9, 4, 0), None);
        // Back to the first publisher: continues again, no number used twice.
        assert_eq!(r.map(7, 102, 15_000).map(|(s, _)| s), Some(5));
    }

    proptest::proptest! {
        /// Whatever the arrival order (reordered, repeated, alternating publishers), one
        /// outgoing number is never given to two different packets, and numbers stay below
        /// 65,536 for a stream's first tens of thousands of packets.
        #[test]
        fn no_outgoing_number_is_used_for_two_different_packets(
            arrivals in proptest::collection::vec((proptest::bool::weighted(0.15), 0u64..4), 1..500),
            bases in (0u64..60_000, 0u64..60_000),
        ) {
            let mut r = Rebase::default();
            // Outgoing number -> (binding run, publisher's number) that took it.
            let mut taken = std::collections::HashMap::new();
            let mut base = [bases.0, bases.1];
            let (mut run, mut current) = (0u32, None);
            for (other, jitter) in arrivals {
                let which = usize::from(other);
                // Mostly in order, sometimes two back or one ahead, sometimes repeated.
                let seq = (base[which] + jitter).saturating_sub(2);
                base[which] += 1;
                if current != Some(which) {
                    run += 1;
                    current = Some(which);
                }
                if let Some((out, _)) = r.map(which as u32 + 1, seq, 0) {
                    proptest::prop_assert!((1..65_536).contains(&out));
                    let first = *taken.entry(out).or_insert((run, seq));
                    proptest::prop_assert_eq!(first, (run, seq), "number {} reused", out);
                }
            }
        }
    }
}
