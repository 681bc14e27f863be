//! Latency samples and their percentiles, and the formatting of the numbers.

use std::time::Duration;

use crate::sign::Op;

/// Per-request latencies in microseconds, one list per operation.
#[derive(Default)]
pub struct Latencies {
    per_op: [Vec<u32>; Op::ALL.len()],
}

impl Latencies {
    pub fn record(&mut self, op: Op, latency: Duration) {
        let micros = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        self.per_op[op.index()].push(micros);
    }

    pub fn merge(&mut self, other: Latencies) {
        for (mine, theirs) in self.per_op.iter_mut().zip(other.per_op) {
            mine.extend(theirs);
        }
    }

    pub fn count(&self) -> usize {
        self.per_op.iter().map(Vec::len).sum()
    }

    /// Percentiles over every operation together.
    pub fn overall(&self) -> Summary {
        Summary::of(self.per_op.iter().flatten().copied().collect())
    }

    /// Percentiles of one operation.
    pub fn of(&self, op: Op) -> Summary {
        Summary::of(self.per_op[op.index()].clone())
    }
}

/// Percentiles of a set of samples (nearest rank), in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub count: usize,
    pub p50: u32,
    pub p99: u32,
    pub max: u32,
    pub mean: f64,
}

impl Summary {
    fn of(mut samples: Vec<u32>) -> Summary {
        samples.sort_unstable();
        let count = samples.len();
        let rank = |q: f64| -> u32 {
            if count == 0 {
                return 0;
            }
            let index = ((q * count as f64).ceil() as usize).clamp(1, count) - 1;
            samples[index]
        };
        let mean = if count == 0 {
            0.0
        } else {
            samples.iter().map(|&s| f64::from(s)).sum::<f64>() / count as f64
        };
        Summary {
            count,
            p50: rank(0.50),
            p99: rank(0.99),
            max: samples.last().copied().unwrap_or(0),
            mean,
        }
    }
}

/// Microseconds as milliseconds, e.g. `1.234 ms`.
pub fn ms(micros: u32) -> String {
    format!("{:.3} ms", f64::from(micros) / 1000.0)
}

/// A count with thousands separators, e.g. `12,345`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes as MB (10^6) with the MiB value alongside.
pub fn megabytes(bytes: u64) -> String {
    format!(
        "{:.1} MB ({:.1} MiB)",
        bytes as f64 / 1e6,
        bytes as f64 / (1024.0 * 1024.0)
    )
}
