//! The load driver's scenarios, one module per figure, and what they share.
//!
//! - [`env`]: both emulators in this process, `cosell serve` in its own (on SQLite, or on
//!   PostgreSQL: [`postgres`]).
//! - [`workload`]: the open-loop stream of Microsoft-side changes and when each lands;
//!   [`measure`]: the warm-up and CPU per change around it; [`procfs`]: process CPU and memory.
//! - [`intake`]: figure 4. [`backfill`]: figure 6. [`latency`]: figures 5 and 7 (host RSS). [`hot_swap`]: figure 3.
//!   [`backends`]: figure 8. [`max_rate`]: figure 9. [`floor`]: figure 10.
//! - [`profile`]: `perf` recordings of the host and the emulators during a load, when asked.

pub mod backends;
pub mod backfill;
pub mod env;
pub mod floor;
pub mod hot_swap;
pub mod intake;
pub mod latency;
pub mod max_rate;
pub mod measure;
pub mod postgres;
pub mod procfs;
pub mod profile;
pub mod workload;

/// The sum of the Prometheus samples of `name` whose labels contain every one of `labels`
/// (e.g. `source="partner-center-webhook"`).
pub fn metric_value(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let matches = (series == name || series.starts_with(&format!("{name}{{")))
                && labels.iter().all(|l| series.contains(l));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::metric_value;

    #[test]
    fn metric_value_sums_the_matching_series_only() {
        let text = "# HELP x\ncosell_intake_events_total{source=\"a\",result=\"queued\"} 3\n\
                    cosell_intake_events_total{source=\"a\",result=\"refused\"} 4\n\
                    cosell_intake_events_total{source=\"b\",result=\"queued\"} 5\n\
                    cosell_intake_events_total_other{source=\"a\",result=\"queued\"} 9\n";
        let name = "cosell_intake_events_total";
        assert_eq!(
            metric_value(text, name, &["source=\"a\"", "result=\"queued\""]),
            3.0
        );
        assert_eq!(metric_value(text, name, &["result=\"queued\""]), 8.0);
    }
}
