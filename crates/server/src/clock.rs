//! The lifecycle clock. Production reads the system time; with `--test-clock` a test can move
//! it forward over HTTP, so lifecycle tests never sleep. SigV4 always uses the real time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest single step of the test clock: ten years, far beyond any lifecycle timer, and small
/// enough that the millisecond arithmetic below has room to spare.
pub const MAX_ADVANCE_SECONDS: i64 = 10 * 366 * 24 * 3600;

/// Largest total offset of the test clock: a hundred years. Epoch milliseconds then stay far
/// below `i64::MAX` (about 292 million years), so `now_ms` cannot overflow.
const MAX_OFFSET_MS: i64 = 100 * 366 * 24 * 3600 * 1000;

/// Why the test clock refused to move.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvanceError {
    #[error("the clock is not adjustable (start with --test-clock)")]
    NotAdjustable,
    #[error("seconds must be between 0 and {MAX_ADVANCE_SECONDS} (got {0})")]
    OutOfRange(i64),
    #[error("the clock cannot move more than 100 years ahead in total")]
    TooFar,
}

/// Wall-clock milliseconds plus an offset that only a test clock ever changes.
#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
    adjustable: bool,
}

impl Clock {
    pub fn system() -> Self {
        Clock::default()
    }

    pub fn adjustable() -> Self {
        Clock {
            offset_ms: AtomicI64::new(0),
            adjustable: true,
        }
    }

    pub fn is_adjustable(&self) -> bool {
        self.adjustable
    }

    /// Epoch milliseconds as the control plane sees them.
    pub fn now_ms(&self) -> u64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let now = real.saturating_add(self.offset_ms.load(Ordering::Relaxed));
        u64::try_from(now).unwrap_or(0)
    }

    /// Moves the clock forward by `seconds` (test clocks only); returns the new time.
    pub fn advance_seconds(&self, seconds: i64) -> Result<u64, AdvanceError> {
        if !self.adjustable {
            return Err(AdvanceError::NotAdjustable);
        }
        if !(0..=MAX_ADVANCE_SECONDS).contains(&seconds) {
            return Err(AdvanceError::OutOfRange(seconds));
        }
        // In range, so this cannot overflow; checked all the same (no panics on input paths).
        let step = seconds.checked_mul(1000).ok_or(AdvanceError::TooFar)?;
        self.offset_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |offset| {
                offset
                    .checked_add(step)
                    .filter(|total| *total <= MAX_OFFSET_MS)
            })
            .map_err(|_| AdvanceError::TooFar)?;
        Ok(self.now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advances_and_refuses_out_of_range_steps() {
        let clock = Clock::adjustable();
        let before = clock.now_ms();
        let after = clock.advance_seconds(60).unwrap();
        assert!(after >= before + 60_000);
        for bad in [-1, i64::MIN, i64::MAX, MAX_ADVANCE_SECONDS + 1] {
            assert_eq!(
                clock.advance_seconds(bad),
                Err(AdvanceError::OutOfRange(bad))
            );
        }
        // Ten steps of ten years reach the hundred-year cap; the eleventh is refused and
        // leaves the clock where it was.
        let mut refused = false;
        for _ in 0..11 {
            refused |= clock.advance_seconds(MAX_ADVANCE_SECONDS).is_err();
        }
        assert!(refused);
        let at_cap = clock.now_ms();
        assert_eq!(
            clock.advance_seconds(MAX_ADVANCE_SECONDS),
            Err(AdvanceError::TooFar)
        );
        assert!(clock.now_ms() >= at_cap);
        assert_eq!(
            Clock::system().advance_seconds(1),
            Err(AdvanceError::NotAdjustable)
        );
    }
}
