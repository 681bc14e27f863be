//! Latency samples and their percentiles.

/// Percentiles of a set of samples in microseconds (nearest rank).
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub count: usize,
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
}

impl Summary {
    pub fn of(samples: &[u64]) -> Summary {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let count = sorted.len();
        if count == 0 {
            return Summary::default();
        }
        let rank = |q: f64| -> u64 {
            let index = ((q * count as f64).ceil() as usize).clamp(1, count) - 1;
            sorted[index]
        };
        Summary {
            count,
            min: sorted[0],
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: sorted[count - 1],
            mean: sorted.iter().map(|&s| s as f64).sum::<f64>() / count as f64,
        }
    }

    /// `p50 / p90 / p99 / max (n)` in milliseconds.
    pub fn describe_ms(&self) -> String {
        if self.count == 0 {
            return "no samples".into();
        }
        format!(
            "min {} / p50 {} / p90 {} / p99 {} / max {} ms (n={})",
            ms(self.min),
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max),
            self.count
        )
    }
}

/// Microseconds as milliseconds with two decimals.
pub fn ms(micros: u64) -> String {
    format!("{:.2}", micros as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u64> = (1..=100).collect();
        let s = Summary::of(&samples);
        assert_eq!((s.p50, s.p90, s.p99, s.max, s.min), (50, 90, 99, 100, 1));
        assert_eq!(Summary::of(&[]).count, 0);
        assert_eq!(Summary::of(&[7]).p99, 7);
    }
}
