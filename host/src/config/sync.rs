//! `[sync]` and `[pollers]`: how the engine works the queue, what it writes where the seller
//! sees it, who wins a conflict, and how often the safety-net pollers run.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// `[sync]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// Records processed at the same time (events of one record are always one at a time).
    pub workers: usize,
    /// Attempts of a failing event before it becomes a dead letter.
    pub max_attempts: u32,
    /// First retry delay in milliseconds; doubles with each attempt, up to five minutes.
    pub retry_base_ms: u64,
    /// The tenant name passed to mapping steps.
    pub tenant: String,
    /// Prefix of cosell's custom columns (the same as the mapping steps' `column-prefix`).
    pub column_prefix: String,
    /// Appended to the opportunity name after a successful sync ("" = none).
    pub success_mark: String,
    /// Appended to the opportunity name after a failed sync ("" = none).
    pub failure_mark: String,
    /// Web link of a referral; `{id}` is replaced.
    pub referral_link_template: String,
    /// Lines kept in the opportunity's Audit column.
    pub audit_max_lines: usize,
    /// Who wins when both sides changed a field since the last sync.
    pub conflicts: ConflictConfig,
    /// Seconds a worker holds a claimed event; after it, another worker takes the event (its
    /// worker died or hangs). A run is cut off at 90% of it, so a live worker never loses
    /// the lease of the event it still works on.
    pub lease_secs: u64,
    /// Failures in a row (no answer, timeout, 5xx after the client's retries) that make a
    /// service count as down: the engine then pauses instead of spending events' attempts.
    pub outage_failures: u32,
    /// The first pause, in milliseconds, before a service that is down is probed; doubles
    /// after each failed probe, up to `outage_pause_max_ms`.
    pub outage_pause_ms: u64,
    /// The longest pause between two probes of a service that is down, in milliseconds.
    pub outage_pause_max_ms: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            workers: 8,
            max_attempts: 8,
            retry_base_ms: 1_000,
            tenant: "default".into(),
            column_prefix: "cosell_".into(),
            success_mark: "✔".into(),
            failure_mark: "✖".into(),
            referral_link_template:
                "https://partner.microsoft.com/dashboard/referrals/v2/opportunities/{id}/details"
                    .into(),
            audit_max_lines: 20,
            conflicts: ConflictConfig::default(),
            lease_secs: 300,
            outage_failures: 3,
            outage_pause_ms: 1_000,
            outage_pause_max_ms: 60_000,
        }
    }
}

impl SyncConfig {
    /// The logical name of one of cosell's columns, e.g. `column("audit")`.
    pub fn column(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.column_prefix)
    }

    /// How long a claimed event is held; at least a second.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(1))
    }

    /// How long one run may take before it is cut off: 90% of the lease, so the worker
    /// settles the event while it still holds it.
    pub fn run_timeout(&self) -> Duration {
        self.lease().mul_f64(0.9)
    }

    /// The delay before retry number `attempt` (1-based).
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let ms = self
            .retry_base_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
        Duration::from_millis(ms.min(300_000))
    }
}

/// Who wins a field both sides changed since the last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Owner {
    /// Partner Center's value is kept.
    PartnerCenter,
    /// The CRM's value is kept.
    Crm,
    /// The side whose record was modified last wins.
    MostRecent,
}

/// `[sync.conflicts]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConflictConfig {
    /// The rule for every field without its own.
    pub default: Owner,
    /// Per field: a Dataverse column (`estimatedvalue`) governs writes to the CRM, a referral
    /// JSON path (`/details/dealValue`) writes to Partner Center.
    pub fields: BTreeMap<String, Owner>,
}

impl Default for ConflictConfig {
    fn default() -> Self {
        Self {
            default: Owner::MostRecent,
            fields: BTreeMap::new(),
        }
    }
}

impl ConflictConfig {
    /// The rule for `field`; a referral path also matches a rule set on one of its parents.
    pub fn owner(&self, field: &str) -> Owner {
        let mut key = field;
        loop {
            if let Some(owner) = self.fields.get(key) {
                return *owner;
            }
            match key.rfind('/') {
                Some(cut) if cut > 0 => key = &key[..cut],
                _ => return self.default,
            }
        }
    }
}

/// `[pollers]`: the safety nets behind the webhooks.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PollersConfig {
    /// Seconds between Dataverse change-tracking reads (0 = off).
    pub dataverse_interval_secs: u64,
    /// Seconds between Partner Center reconciliations (0 = off).
    pub partner_center_interval_secs: u64,
    /// Seconds the reconciliation looks back before its cursor, for clock skew and late writes.
    pub partner_center_overlap_secs: u64,
    /// On the very first run, also sync every opportunity and referral that exists already.
    /// Off by default: a new installation syncs what changes from then on.
    pub initial_sync: bool,
}

impl Default for PollersConfig {
    fn default() -> Self {
        Self {
            dataverse_interval_secs: 60,
            partner_center_interval_secs: 300,
            partner_center_overlap_secs: 120,
            initial_sync: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_rules_fall_back_to_parents_then_the_default() {
        let mut config = ConflictConfig::default();
        config.fields.insert("/details".into(), Owner::Crm);
        config.fields.insert("name".into(), Owner::PartnerCenter);
        assert_eq!(config.owner("/details/dealValue"), Owner::Crm);
        assert_eq!(config.owner("name"), Owner::PartnerCenter);
        assert_eq!(config.owner("/customerProfile/name"), Owner::MostRecent);
    }

    #[test]
    fn retries_back_off_and_are_capped() {
        let sync = SyncConfig::default();
        assert_eq!(sync.retry_delay(1), Duration::from_secs(1));
        assert_eq!(sync.retry_delay(3), Duration::from_secs(4));
        assert_eq!(sync.retry_delay(40), Duration::from_secs(300));
    }
}
