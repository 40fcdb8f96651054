//! `[retention]`: how much of what cosell accumulates it keeps. The audit trail, the stored
//! mapping versions and the per-customer locks would otherwise grow for the host's lifetime;
//! the host prunes them periodically (`crate::retention`).

use serde::Deserialize;
use std::time::Duration;

/// `[retention]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Seconds between two prunings; the first runs when the host starts. 0 = never prune.
    pub interval_secs: u64,
    /// Audit entries older than this many days are deleted. 0 = no age limit.
    pub audit_max_age_days: u64,
    /// At most this many audit entries are kept, the newest. 0 = no count limit.
    pub audit_max_entries: u64,
    /// Stored versions kept per step: the most recently activated ones. The active version
    /// and pinned versions (`cosell mapping pin`) are kept besides, whatever this says.
    pub mapping_versions: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            interval_secs: 3600,
            audit_max_age_days: 90,
            audit_max_entries: 1_000_000,
            mapping_versions: 20,
        }
    }
}

impl RetentionConfig {
    /// How often pruning runs; `None` when it is switched off.
    pub fn interval(&self) -> Option<Duration> {
        (self.interval_secs > 0).then(|| Duration::from_secs(self.interval_secs))
    }
}
