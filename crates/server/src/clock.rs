//! The lifecycle clock. Production reads the system time; with `--test-clock` a test can move
//! it forward over HTTP, so lifecycle tests never sleep. SigV4 always uses the real time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

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
            .map_or(0, |d| d.as_millis() as i64);
        (real + self.offset_ms.load(Ordering::Relaxed)).max(0) as u64
    }

    /// Moves the clock forward (test clocks only); returns the new time.
    pub fn advance(&self, ms: i64) -> Option<u64> {
        if !self.adjustable {
            return None;
        }
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
        Some(self.now_ms())
    }
}
