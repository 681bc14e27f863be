//! The delivery policy, sans IO: backoff schedules, when to give up, and the per-target state
//! that keeps a failing target from being hammered (or from slowing down the others).
//!
//! Two schedules work together:
//!
//! * **per event**: a failed delivery is retried after an exponential delay (capped, with
//!   jitter) and given up only once the event is older than `max_age` *and* still failing;
//! * **per target**: after a failure the target pauses (exponential, capped, jitter), then
//!   sends a single probe; only a success reopens full concurrency. While a target is down,
//!   each probe is a different event (the earliest due), so the backlog keeps its
//!   never-attempted state and flows as soon as the target is back.

use carillon_control::EpochMillis;

/// Exponential backoff with "equal jitter": half of the capped delay is fixed, half random,
/// so retries spread out but never come sooner than half the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial_ms: u64,
    pub max_ms: u64,
}

impl Backoff {
    /// Delay before retry number `attempt` (1 = after the first failure). `jitter` is a
    /// uniform sample in `[0, 1)`.
    pub fn delay(&self, attempt: u32, jitter: f64) -> u64 {
        let shift = attempt.saturating_sub(1).min(40);
        let full = self
            .initial_ms
            .saturating_mul(1u64 << shift)
            .min(self.max_ms);
        let half = full / 2;
        half + ((full - half) as f64 * jitter.clamp(0.0, 1.0)) as u64
    }
}

/// How deliveries are paced and retried.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Retry schedule of one event at one target.
    pub event_backoff: Backoff,
    /// Pause of a target after consecutive failures.
    pub target_backoff: Backoff,
    /// A failing delivery of an event older than this is given up.
    pub max_age_ms: u64,
    /// Deliveries read from the store at once per target (the in-memory window).
    pub page: usize,
    /// Requests in flight per target while it is healthy.
    pub concurrency: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            event_backoff: Backoff {
                initial_ms: 1_000,
                max_ms: 5 * 60_000,
            },
            target_backoff: Backoff {
                initial_ms: 500,
                max_ms: 60_000,
            },
            // EventBridge's own default retry policy keeps trying for 24 hours.
            max_age_ms: 24 * 60 * 60_000,
            page: 256,
            concurrency: 32,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try again, not before this time.
    Retry { next_attempt: EpochMillis },
    /// Give up (the event is older than `max_age` and still failing).
    Abandon,
}

impl Policy {
    /// The verdict on a failed attempt of an event created at `created_at` that had failed
    /// `attempts_before` times before.
    pub fn on_failure(
        &self,
        created_at: EpochMillis,
        attempts_before: u32,
        now: EpochMillis,
        jitter: f64,
    ) -> Verdict {
        if now.saturating_sub(created_at) >= self.max_age_ms {
            return Verdict::Abandon;
        }
        let delay = self
            .event_backoff
            .delay(attempts_before.saturating_add(1), jitter);
        Verdict::Retry {
            next_attempt: now.saturating_add(delay),
        }
    }
}

/// One target's health, as its worker sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetState {
    consecutive_failures: u32,
    paused_until: EpochMillis,
}

impl TargetState {
    /// How many new requests may start now: none while paused, one probe after failures,
    /// else the policy's concurrency.
    pub fn permits(&self, policy: &Policy, now: EpochMillis) -> usize {
        if now < self.paused_until {
            0
        } else if self.consecutive_failures > 0 {
            1
        } else {
            policy.concurrency.max(1)
        }
    }

    /// Until when the target is paused, if it is at `now`.
    pub fn paused_until(&self, now: EpochMillis) -> Option<EpochMillis> {
        (now < self.paused_until).then_some(self.paused_until)
    }

    /// Failures in a row (0 while healthy).
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// A delivery succeeded. Returns true when this ends a failure streak (recovery).
    pub fn succeeded(&mut self) -> bool {
        let recovered = self.consecutive_failures > 0;
        self.consecutive_failures = 0;
        self.paused_until = 0;
        recovered
    }

    /// A delivery failed: the target pauses. Returns true when this starts a failure streak.
    /// Failures of requests that were already in flight when the pause began count as one:
    /// a burst of concurrent failures must not jump straight to the longest pause.
    pub fn failed(&mut self, policy: &Policy, now: EpochMillis, jitter: f64) -> bool {
        if now < self.paused_until {
            return false;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let pause = policy
            .target_backoff
            .delay(self.consecutive_failures, jitter);
        self.paused_until = self.paused_until.max(now.saturating_add(pause));
        self.consecutive_failures == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let b = Backoff {
            initial_ms: 1_000,
            max_ms: 60_000,
        };
        assert_eq!(b.delay(1, 0.0), 500);
        assert_eq!(b.delay(1, 0.999_999), 999);
        assert_eq!(b.delay(2, 0.0), 1_000);
        assert_eq!(b.delay(3, 0.5), 3_000);
        // Capped from attempt 7 (64 s > 60 s) on, and never overflows.
        assert_eq!(b.delay(7, 0.0), 30_000);
        assert_eq!(b.delay(u32::MAX, 0.0), 30_000);
        assert!(b.delay(u32::MAX, 1.0) <= 60_000);
        // Out-of-range jitter samples are clamped.
        assert_eq!(b.delay(1, -3.0), 500);
        assert_eq!(b.delay(1, 7.0), 1_000);
    }

    #[test]
    fn jitter_spreads_retries() {
        let b = Policy::default().event_backoff;
        let delays: std::collections::BTreeSet<u64> =
            (0..10).map(|i| b.delay(4, f64::from(i) / 10.0)).collect();
        assert_eq!(delays.len(), 10);
        assert!(delays.iter().all(|d| (4_000..=8_000).contains(d)));
    }

    #[test]
    fn events_are_retried_until_too_old_then_abandoned() {
        let p = Policy::default();
        let created = 1_000_000;
        assert_eq!(
            p.on_failure(created, 0, created + 10, 0.0),
            Verdict::Retry {
                next_attempt: created + 10 + 500
            }
        );
        match p.on_failure(created, 30, created + 1_000, 0.0) {
            Verdict::Retry { next_attempt } => {
                assert_eq!(next_attempt, created + 1_000 + 150_000)
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(
            p.on_failure(created, 3, created + p.max_age_ms, 0.0),
            Verdict::Abandon
        );
        // A clock that went backwards is not "old".
        assert!(matches!(
            p.on_failure(created, 0, created - 5, 0.0),
            Verdict::Retry { .. }
        ));
    }

    #[test]
    fn a_failing_target_pauses_then_probes_one_at_a_time() {
        let p = Policy::default();
        let mut t = TargetState::default();
        assert_eq!(t.permits(&p, 0), p.concurrency);
        assert!(t.failed(&p, 1_000, 0.0));
        assert_eq!(t.paused_until(1_000), Some(1_250));
        assert_eq!(t.permits(&p, 1_249), 0);
        assert_eq!(t.permits(&p, 1_250), 1);
        // Requests that were in flight and fail during the pause do not lengthen it.
        assert!(!t.failed(&p, 1_100, 0.0));
        assert_eq!(t.paused_until(1_100), Some(1_250));
        assert_eq!(t.consecutive_failures(), 1);
        // A failed probe does: the pause grows up to the cap.
        assert!(!t.failed(&p, 1_250, 0.0));
        assert_eq!(t.paused_until(1_250), Some(1_750));
        let mut now = 1_750;
        for _ in 0..50 {
            t.failed(&p, now, 1.0);
            now = t.paused_until(now).unwrap();
        }
        assert_eq!(t.consecutive_failures(), 52);
        let before = now;
        t.failed(&p, now, 1.0);
        assert_eq!(t.paused_until(before), Some(before + 60_000));
        // One success reopens full concurrency at once.
        assert!(t.succeeded());
        assert_eq!(t.permits(&p, before + 1), p.concurrency);
        assert!(!t.succeeded());
    }

    #[test]
    fn a_simulated_outage_of_hours_probes_rarely() {
        // A target down for 3 hours, driven by the policy alone: how many requests does it
        // get? The pause is capped at 60 s, so about one probe a minute, not a flood.
        let p = Policy::default();
        let mut t = TargetState::default();
        let mut now = 0u64;
        let mut requests = 0;
        while now < 3 * 3_600_000 {
            let permits = t.permits(&p, now);
            if permits == 0 {
                now = t.paused_until(now).unwrap();
                continue;
            }
            requests += permits;
            t.failed(&p, now, 0.5);
        }
        assert!((150..=300).contains(&requests), "{requests} requests");
    }
}
