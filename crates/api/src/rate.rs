//! Per-operation API rate limits (token buckets), like Chime's default of 10 requests per
//! second with a burst of 20 for each operation.

use std::collections::HashMap;

use crate::route::Operation;

/// Token bucket per operation. Time is passed in (milliseconds).
#[derive(Debug, Clone)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: HashMap<Operation, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated_ms: u64,
}

impl RateLimiter {
    /// `per_second` tokens refill each second, up to `burst`.
    pub fn new(per_second: f64, burst: u32) -> Self {
        RateLimiter {
            per_second,
            burst: f64::from(burst),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `op`; false when the operation is over its rate.
    pub fn try_acquire(&mut self, op: Operation, now_ms: u64) -> bool {
        let bucket = self.buckets.entry(op).or_insert(Bucket {
            tokens: self.burst,
            updated_ms: now_ms,
        });
        let elapsed = now_ms.saturating_sub(bucket.updated_ms) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.updated_ms = bucket.updated_ms.max(now_ms);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let mut r = RateLimiter::new(10.0, 20);
        let granted = (0..30)
            .filter(|_| r.try_acquire(Operation::GetMeeting, 0))
            .count();
        assert_eq!(granted, 20);
        // Another operation has its own bucket.
        assert!(r.try_acquire(Operation::CreateMeeting, 0));
        // 100 ms later one more token has accrued.
        assert!(!r.try_acquire(Operation::GetMeeting, 50));
        assert!(r.try_acquire(Operation::GetMeeting, 100));
        assert!(!r.try_acquire(Operation::GetMeeting, 100));
        // One second later: ten more.
        let granted = (0..30)
            .filter(|_| r.try_acquire(Operation::GetMeeting, 1100))
            .count();
        assert_eq!(granted, 10);
    }
}
