//! Data messages: validation, the per-meeting throttle, and the buffer of messages with a
//! lifetime that late joiners and reconnecting clients receive.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use carillon_signaling::proto::SdkDataMessagePayload;

/// Limits the client library documents (and enforces on its side).
pub const MAX_DATA_BYTES: usize = 2048;
pub const MAX_TOPIC_LEN: usize = 36;
/// Messages kept for replay, and for how long at most.
pub const MAX_RETAINED: usize = 1024;
pub const MAX_RETENTION: Duration = Duration::from_secs(300);

/// Topic `^[a-zA-Z0-9_-]{1,36}$` and data ≤ 2048 bytes (the lifetime is unsigned on the wire).
/// The sender's identity fields are ignored: the server stamps them.
pub fn is_valid(message: &SdkDataMessagePayload) -> bool {
    let topic_ok = message.topic.as_deref().is_some_and(|t| {
        !t.is_empty()
            && t.len() <= MAX_TOPIC_LEN
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    let data_ok = message
        .data
        .as_ref()
        .is_none_or(|d| d.len() <= MAX_DATA_BYTES);
    topic_ok && data_ok
}

/// Token bucket: `rate` messages per second with a burst of `burst`.
#[derive(Debug, Clone)]
pub struct Throttle {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl Throttle {
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        Throttle {
            rate,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            updated: now,
        }
    }

    /// Takes a token; false when the meeting is over its message rate.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.updated = self.updated.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A stamped message kept for replay.
#[derive(Debug, Clone)]
struct Retained {
    message: SdkDataMessagePayload,
    expires: Instant,
}

/// Messages with a lifetime, newest last.
#[derive(Debug, Default)]
pub struct Retention {
    messages: VecDeque<Retained>,
}

impl Retention {
    /// Keeps a stamped message if it asked for a lifetime.
    pub fn keep(&mut self, message: &SdkDataMessagePayload, now: Instant) {
        if let Some(ms) = message.lifetime_ms {
            self.keep_for(message, ms, now);
        }
    }

    /// Keeps a stamped message for `remaining_ms` (a message already kept elsewhere for part
    /// of its lifetime: a feed snapshot).
    pub fn keep_for(&mut self, message: &SdkDataMessagePayload, remaining_ms: u32, now: Instant) {
        if remaining_ms == 0 {
            return;
        }
        let lifetime = Duration::from_millis(u64::from(remaining_ms)).min(MAX_RETENTION);
        if self.messages.len() == MAX_RETAINED {
            self.messages.pop_front();
        }
        self.messages.push_back(Retained {
            message: message.clone(),
            expires: now + lifetime,
        });
    }

    /// Every message still within its lifetime, with the milliseconds it has left.
    pub fn snapshot(&mut self, now: Instant) -> Vec<(SdkDataMessagePayload, u32)> {
        self.messages.retain(|m| m.expires > now);
        self.messages
            .iter()
            .map(|m| {
                let left = m.expires.saturating_duration_since(now).as_millis();
                (
                    m.message.clone(),
                    u32::try_from(left).unwrap_or(u32::MAX).max(1),
                )
            })
            .collect()
    }

    /// Whether any message is still within its lifetime (expired ones are dropped).
    pub fn holds_messages(&mut self, now: Instant) -> bool {
        self.messages.retain(|m| m.expires > now);
        !self.messages.is_empty()
    }

    /// Unexpired messages not sent by `receiver` (messages are never echoed to their sender).
    pub fn replay(&mut self, receiver: &str, now: Instant) -> Vec<SdkDataMessagePayload> {
        self.messages.retain(|m| m.expires > now);
        self.messages
            .iter()
            .filter(|m| m.message.sender_attendee_id.as_deref() != Some(receiver))
            .map(|m| m.message.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str, len: usize, lifetime: Option<u32>) -> SdkDataMessagePayload {
        SdkDataMessagePayload {
            topic: Some(topic.into()),
            data: Some(vec![0; len]),
            lifetime_ms: lifetime,
            ..Default::default()
        }
    }

    #[test]
    fn validation() {
        assert!(is_valid(&msg("chat", 10, None)));
        assert!(is_valid(&msg("a-b_C9", MAX_DATA_BYTES, Some(0))));
        assert!(!is_valid(&msg("", 1, None)));
        assert!(!is_valid(&msg("bad topic", 1, None)));
        assert!(!is_valid(&msg(&"t".repeat(37), 1, None)));
        assert!(!is_valid(&msg("chat", MAX_DATA_BYTES + 1, None)));
    }

    #[test]
    fn throttle_bursts_then_refills() {
        let t0 = Instant::now();
        let mut t = Throttle::new(100.0, 200, t0);
        assert_eq!((0..300).filter(|_| t.allow(t0)).count(), 200);
        assert_eq!(
            (0..300)
                .filter(|_| t.allow(t0 + Duration::from_millis(500)))
                .count(),
            50
        );
    }

    #[test]
    fn retention_expires_and_skips_the_sender() {
        let t0 = Instant::now();
        let mut r = Retention::default();
        let mut a = msg("chat", 1, Some(1000));
        a.sender_attendee_id = Some("alice".into());
        r.keep(&a, t0);
        r.keep(&msg("chat", 1, None), t0);
        assert_eq!(r.replay("bob", t0).len(), 1);
        assert_eq!(r.replay("alice", t0).len(), 0);
        assert_eq!(r.replay("bob", t0 + Duration::from_secs(2)).len(), 0);
        let mut long = msg("chat", 1, Some(3_600_000));
        long.sender_attendee_id = Some("x".into());
        r.keep(&long, t0);
        assert_eq!(r.replay("bob", t0 + Duration::from_secs(299)).len(), 1);
        assert_eq!(r.replay("bob", t0 + Duration::from_secs(301)).len(), 0);
    }
}
