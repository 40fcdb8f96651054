//! `[host]`: who this host is among the replicas of one state database, and how it follows
//! the deployments the others make (`crate::replicas`).

use serde::Deserialize;
use std::time::Duration;

/// `[host]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicaConfig {
    /// This replica's name in `/healthz`, the logs and PostgreSQL's `application_name`
    /// (`--replica-id` overrides it). Unset: the machine's host name, so a host restarted on
    /// its machine is the same replica and takes back at once the events its previous run
    /// left running. Unique among running replicas: each holds a liveness lock under it
    /// (`store/postgres/liveness.rs`), and a second one under an id in use is refused at start
    /// (after waiting a few seconds for a previous run to let go of it), so two replicas on one
    /// machine need ids of their own.
    pub replica_id: Option<String>,
    /// Seconds between two comparisons of every step's active version in the state database
    /// with the one this replica serves: the fallback for an activation notice missed while
    /// the notification connection was down (PostgreSQL only). At least 1.
    pub deployment_check_secs: u64,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            replica_id: None,
            deployment_check_secs: 5,
        }
    }
}

impl ReplicaConfig {
    /// The replica id: the configured one, else the host name.
    pub fn replica_id(&self) -> String {
        match &self.replica_id {
            Some(id) if !id.trim().is_empty() => id.trim().to_owned(),
            _ => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty())
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_else(|| "cosell".to_owned()),
        }
    }

    /// How often the active versions are compared with the store's.
    pub fn deployment_check(&self) -> Duration {
        Duration::from_secs(self.deployment_check_secs.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host restarted on its machine is the same replica (so it takes back at once what its
    /// previous run left running): the default id is the host name, with nothing of the
    /// process in it.
    #[test]
    fn the_default_id_is_the_machines_and_survives_a_restart() {
        let config = ReplicaConfig::default();
        let id = config.replica_id();
        assert!(!id.is_empty());
        assert!(
            !id.contains(&std::process::id().to_string()),
            "{id} names this process"
        );
        if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            assert_eq!(id, host.trim());
        }
        let named = ReplicaConfig {
            replica_id: Some(" cosell-a ".into()),
            ..ReplicaConfig::default()
        };
        assert_eq!(named.replica_id(), "cosell-a");
    }
}
