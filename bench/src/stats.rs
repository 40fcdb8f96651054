//! Medians, percentiles and spreads of samples. The machines are noisy, so every figure is a
//! median with its interquartile range (or a high percentile for latencies), never a mean of
//! one run.

use std::time::Duration;

/// Percentiles of a set of samples (sorted on construction).
#[derive(Debug, Clone)]
pub struct Summary {
    sorted: Vec<f64>,
}

impl Summary {
    /// A summary of `samples`; NaNs are dropped.
    pub fn new(mut samples: Vec<f64>) -> Self {
        samples.retain(|v| !v.is_nan());
        samples.sort_by(|a, b| a.total_cmp(b));
        Self { sorted: samples }
    }

    /// A summary of durations, in microseconds.
    pub fn of_durations_us(samples: &[Duration]) -> Self {
        Self::new(samples.iter().map(|d| d.as_secs_f64() * 1e6).collect())
    }

    /// How many samples there are.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The `p`-th percentile (0–100), nearest-rank; 0 for no samples.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.sorted.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    /// The median.
    pub fn median(&self) -> f64 {
        self.percentile(50.0)
    }

    /// The largest sample.
    pub fn max(&self) -> f64 {
        self.sorted.last().copied().unwrap_or(0.0)
    }

    /// `IQR a–b unit`, the spread quoted next to a median.
    pub fn iqr_text(&self, unit: &str) -> String {
        format!(
            "IQR {}–{} {unit}",
            short(self.percentile(25.0)),
            short(self.percentile(75.0))
        )
    }
}

/// A number with three significant digits at most (`0.0123`, `1.23`, `12.3`, `123`, `1234`).
pub fn short(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let summary = Summary::new((1..=100).map(f64::from).collect());
        assert_eq!(summary.median(), 50.0);
        assert_eq!(summary.percentile(99.0), 99.0);
        assert_eq!(summary.percentile(100.0), 100.0);
        assert_eq!(summary.percentile(0.0), 1.0);
        assert_eq!(Summary::new(vec![]).median(), 0.0);
    }

    #[test]
    fn short_keeps_three_significant_digits() {
        assert_eq!(short(1234.4), "1234");
        assert_eq!(short(12.345), "12.3");
        assert_eq!(short(1.2345), "1.23");
        assert_eq!(short(0.012345), "0.012");
    }
}
