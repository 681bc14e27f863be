//! Replica viewers that only listen give up their `str0m::Rtc` ("hibernate"), and get an
//! equivalent one back, on the same live connection, when they need it again.
//!
//! Why: a replica meeting exists to reach large audiences, and most of its viewers only
//! listen. What such a connection needs from the server is small: answers to the browser's
//! ICE checks ([`crate::stun`]) and the mixed audio, which the engine seals itself anyway
//! ([`crate::srtp`]). The `Rtc` is most of what a viewer costs in memory (see
//! docs/benchmarks.md), and its timers a part of the CPU.
//!
//! What a viewer needs the `Rtc` back for (a new SDP offer, a video subscription, promotion
//! into the primary) must happen on the same connection: amazon-chime-sdk-js demotes itself
//! on any reconnect. So the connection keeps what builds an equivalent `Rtc` ([`Replay`]):
//! - the local ICE credentials (the certificate is the node's), and the client's nominating
//!   STUN request as received: handed to the new `Rtc`, it nominates the same pair again;
//! - every SDP offer accepted, replayed in order with str0m's random generator seeded as the
//!   first time ([`seeded`]), so that the new `Rtc` picks the same SSRCs and would answer
//!   exactly the same;
//! - the DTLS keys and peer certificate: the new `Rtc` gets a DTLS instance that is already
//!   connected ([`crate::srtp::with_resumed_dtls`]);
//! - the rollover counter of the client's audio ([`SeqTracker`]), which a new SRTP receive
//!   context cannot infer (it would assume 0 once the client's sequence numbers wrapped);
//! - the next unused SRTCP index: a new `Rtc` starts at 0 again, and its RTCP is moved past
//!   the indices already used ([`Replay::outgoing`]) so that no AES-GCM nonce is used twice.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::IceCreds;
use str0m::crypto::dtls::SrtpProfile;

use crate::session::MediaLines;
use crate::srtp::{RtpSealer, SrtcpReindexer, SrtpKeys, srtcp_index};
use crate::stun;

/// A hibernated connection whose client sent no valid ICE check for this long is gone, as
/// str0m's ICE-lite agent would also conclude (the browser checks every few seconds).
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(15);

/// A connection hibernates only this long after its DTLS handshake completed: if our last
/// handshake flight was lost, the client retransmits its own within this time and must find
/// the `Rtc` still there to answer.
pub const SETTLE_BEFORE_HIBERNATING: Duration = Duration::from_secs(4);

/// Offers kept for a replay; a connection renegotiated more often than this stays awake.
pub const MAX_OFFERS: usize = 16;

/// What a replica connection keeps, while awake, to be able to hibernate and wake.
#[derive(Debug)]
pub struct Replay {
    /// Our ICE credentials on this connection.
    pub ice: IceCreds,
    /// Seeds str0m's random generator when the `Rtc` is built (`seed`) and before the k-th
    /// offer is accepted (`seed + 1 + k`).
    pub seed: u64,
    /// The offers accepted, as given to str0m.
    pub offers: Vec<String>,
    /// More offers than [`MAX_OFFERS`] came: this connection cannot be replayed.
    pub overflowed: bool,
    /// The client's latest binding request with USE-CANDIDATE, and where it came from.
    pub nomination: Option<(SocketAddr, Vec<u8>)>,
    /// When str0m reported the connection (ICE and DTLS) up.
    pub connected_at: Option<Instant>,
    pub client_rtp: SeqTracker,
    /// Video went out on this connection: str0m numbered its retransmissions itself, from 0
    /// in every `Rtc`, so a rebuilt one would reuse their SRTP nonces. It stays awake.
    pub sent_video: bool,
    /// The next SRTCP index this connection has not sent (every `Rtc` starts at 0).
    pub srtcp_next: u32,
    /// Set in a rebuilt `Rtc`: moves its SRTCP past the indices already used.
    pub reindexer: Option<SrtcpReindexer>,
}

impl Replay {
    pub fn new(seed: u64, ice: IceCreds) -> Replay {
        Replay {
            ice,
            seed,
            offers: Vec::new(),
            overflowed: false,
            nomination: None,
            connected_at: None,
            client_rtp: SeqTracker::default(),
            sent_video: false,
            srtcp_next: 0,
            reindexer: None,
        }
    }

    /// The seed for the next offer to accept.
    pub fn next_offer_seed(&self) -> u64 {
        self.seed.wrapping_add(1 + self.offers.len() as u64)
    }

    pub fn record_offer(&mut self, offer: String) {
        if self.offers.len() < MAX_OFFERS {
            self.offers.push(offer);
        } else {
            self.overflowed = true;
        }
    }

    /// Whether everything a replay needs is there, and the handshake settled.
    pub fn ready(&self, now: Instant) -> bool {
        !self.overflowed
            && !self.sent_video
            && !self.offers.is_empty()
            && self.nomination.is_some()
            && self
                .connected_at
                .is_some_and(|t| now.saturating_duration_since(t) >= SETTLE_BEFORE_HIBERNATING)
    }

    /// A datagram from the client that reached this connection: notes a nominating request
    /// and the client's RTP sequence numbers.
    pub fn observe(&mut self, source: SocketAddr, datagram: &[u8]) {
        if stun::is_stun(datagram) {
            if let Ok(request) =
                stun::parse_binding_request(datagram, &self.ice.ufrag, &self.ice.pass)
                && request.use_candidate
            {
                self.nomination = Some((source, datagram.to_vec()));
            }
        } else {
            self.client_rtp.observe(datagram);
        }
    }

    /// A datagram the `Rtc` sends: its SRTCP moved past the indices earlier `Rtc`s of this
    /// connection used, and the next free index noted. `None`: it must not leave (RTCP that
    /// cannot be moved would reuse a nonce).
    pub fn outgoing(&mut self, datagram: Vec<u8>, profile: Option<SrtpProfile>) -> Option<Vec<u8>> {
        let is_rtcp = matches!(datagram.first(), Some(128..=191))
            && matches!(datagram.get(1), Some(192..=223));
        if !is_rtcp {
            return Some(datagram);
        }
        let datagram = match &self.reindexer {
            Some(reindexer) => reindexer.reindex(&datagram)?,
            None => datagram,
        };
        if let Some(index) = profile.and_then(|p| srtcp_index(p, &datagram)) {
            self.srtcp_next = self.srtcp_next.max(index.wrapping_add(1));
        }
        Some(datagram)
    }
}

/// Runs `f` with str0m's (thread-local, non-cryptographic) random generator seeded with
/// `seed`, then puts the generator back where it was.
pub fn seeded<T>(seed: u64, f: impl FnOnce() -> T) -> T {
    let saved = fastrand::get_seed();
    fastrand::seed(seed);
    let out = f();
    fastrand::seed(saved);
    out
}

/// The extended sequence number of the client's latest RTP stream (its audio: a replica
/// viewer sends nothing else before promotion).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SeqTracker {
    ssrc: u32,
    highest: Option<u64>,
}

impl SeqTracker {
    /// Takes the sequence number of an RTP datagram (SRTP headers are in the clear); RTCP
    /// and anything else is ignored.
    pub fn observe(&mut self, datagram: &[u8]) {
        let [first, second, s0, s1, _, _, _, _, i0, i1, i2, i3, ..] = *datagram else {
            return;
        };
        // RFC 7983/5761: RTP and RTCP are 128..=191; RTCP's packet types are 192..=223.
        if !(128..=191).contains(&first) || (192..=223).contains(&second) {
            return;
        }
        let ssrc = u32::from_be_bytes([i0, i1, i2, i3]);
        let seq = u64::from(u16::from_be_bytes([s0, s1]));
        let extended = match self.highest {
            // The rollover counter that puts `seq` closest to the highest seen (RFC 3711
            // §3.3.1): a jump of more than half the range is a wrap one way or the other.
            Some(highest) if ssrc == self.ssrc => {
                let (roc, low) = (highest >> 16, highest & 0xffff);
                let roc = if low > seq && low - seq > 0x8000 {
                    roc + 1
                } else if seq > low && seq - low > 0x8000 {
                    roc.saturating_sub(1)
                } else {
                    roc
                };
                (roc << 16) | seq
            }
            _ => {
                self.ssrc = ssrc;
                self.highest = Some(seq);
                return;
            }
        };
        if self.highest.is_some_and(|h| extended > h) {
            self.highest = Some(extended);
        }
    }

    /// The stream's SSRC and rollover counter, once a packet was seen.
    pub fn roc(&self) -> Option<(u32, u64)> {
        self.highest.map(|h| (self.ssrc, h >> 16))
    }
}

/// A replica viewer's connection without its `Rtc`.
pub struct Hibernated {
    pub replay: Box<Replay>,
    pub keys: SrtpKeys,
    pub sealer: RtpSealer,
    /// Where the mixed audio goes (the pair the client uses).
    pub destination: SocketAddr,
    pub lines: MediaLines,
    /// The client's latest valid ICE check.
    pub last_check: Instant,
}

impl Hibernated {
    /// A datagram from the client; returns the answer to send back, if any (a STUN success
    /// response). Everything else the client sends (its audio, RTCP, DTLS) goes nowhere
    /// while it only views.
    pub fn on_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        datagram: &[u8],
    ) -> Option<Vec<u8>> {
        if !stun::is_stun(datagram) {
            if (128..=191).contains(&datagram.first().copied().unwrap_or(0)) {
                // Symmetric RTP: the address the client sends media from is where it listens.
                self.destination = source;
            }
            self.replay.client_rtp.observe(datagram);
            return None;
        }
        let ice = &self.replay.ice;
        match stun::parse_binding_request(datagram, &ice.ufrag, &ice.pass) {
            Ok(request) => {
                self.last_check = now;
                if request.use_candidate {
                    self.replay.nomination = Some((source, datagram.to_vec()));
                }
                Some(stun::binding_success(
                    &request.transaction_id,
                    source,
                    &self.replay.ice.pass,
                ))
            }
            Err(e) => {
                tracing::debug!(error = %e, "STUN request refused");
                None
            }
        }
    }

    /// Whether a datagram from an address not seen yet belongs to this connection: a valid
    /// ICE check with our credentials.
    pub fn accepts(&self, datagram: &[u8]) -> bool {
        stun::is_stun(datagram)
            && stun::parse_binding_request(datagram, &self.replay.ice.ufrag, &self.replay.ice.pass)
                .is_ok()
    }

    /// Whether the client still checks the connection.
    pub fn alive(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_check) < CONSENT_TIMEOUT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 111];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0; 20]);
        p
    }

    #[test]
    fn the_rollover_counter_follows_the_wraps_and_ignores_reordering_and_rtcp() {
        let mut t = SeqTracker::default();
        assert_eq!(t.roc(), None);
        for seq in [65_530u16, 65_533, 65_535, 0, 65_534, 2, 3] {
            t.observe(&rtp(seq, 7));
        }
        assert_eq!(t.roc(), Some((7, 1)));
        // RTCP (a receiver report) and short datagrams change nothing.
        let mut rr = rtp(0, 7);
        rr[1] = 201;
        t.observe(&rr);
        t.observe(&[0x80, 111, 0]);
        assert_eq!(t.roc(), Some((7, 1)));
        // Around the clock once more.
        for seq in (4..=65_535u16).step_by(1000).chain([65_535, 1]) {
            t.observe(&rtp(seq, 7));
        }
        assert_eq!(t.roc(), Some((7, 2)));
        // A new SSRC starts over.
        t.observe(&rtp(9, 8));
        assert_eq!(t.roc(), Some((8, 0)));
    }

    proptest::proptest! {
        /// Datagrams straight from the network: any bytes, in any order.
        #[test]
        fn the_tracker_never_panics_and_its_counter_only_grows(
            datagrams in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..40), 0..64)
        ) {
            let mut t = SeqTracker::default();
            let mut last: Option<(u32, u64)> = None;
            for d in &datagrams {
                t.observe(d);
                let now = t.roc();
                if let (Some((s0, r0)), Some((s1, r1))) = (last, now) && s0 == s1 {
                    proptest::prop_assert!(r1 >= r0);
                }
                last = now;
            }
        }

        #[test]
        fn what_an_rtc_sends_never_panics_the_srtcp_bookkeeping(
            datagram in proptest::collection::vec(proptest::num::u8::ANY, 0..200)
        ) {
            let ice = IceCreds { ufrag: "u".into(), pass: "p".into() };
            let mut replay = Replay::new(1, ice);
            let out = replay.outgoing(datagram.clone(), Some(SrtpProfile::AEAD_AES_128_GCM));
            // Without a reindexer a datagram leaves as it is.
            proptest::prop_assert_eq!(out, Some(datagram));
        }

        #[test]
        fn a_stream_in_order_counts_every_wrap(start in 0u16.., packets in 1usize..140_000) {
            let mut t = SeqTracker::default();
            for i in 0..packets {
                t.observe(&rtp(start.wrapping_add(i as u16), 3));
            }
            let wraps = (u64::from(start) + packets as u64 - 1) >> 16;
            proptest::prop_assert_eq!(t.roc(), Some((3, wraps)));
        }
    }

    #[test]
    fn seeded_runs_repeat_and_leave_the_generator_as_it_was() {
        let before = fastrand::get_seed();
        let a = seeded(42, || (fastrand::u32(..), fastrand::u64(..)));
        let b = seeded(42, || (fastrand::u32(..), fastrand::u64(..)));
        assert_eq!(a, b);
        assert_eq!(fastrand::get_seed(), before);
    }
}
