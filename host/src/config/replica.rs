//! `[host]`: who this host is among the replicas of one state database, and how it follows
//! the deployments the others make (`crate::replicas`).

use serde::Deserialize;
use std::time::Duration;

/// `[host]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicaConfig {
    /// This replica's name in `/healthz`, the logs and PostgreSQL's `application_name`
    /// (`--replica-id` overrides it). Unset: the machine's host name and the process id,
    /// which tell the replicas of one machine apart and change at every restart. Unique among
    /// running replicas: each holds a liveness lock under it (`store/postgres/liveness.rs`),
    /// and a second one under an id in use is refused at start.
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
    /// The replica id: the configured one, else `<host name>-<process id>`.
    pub fn replica_id(&self) -> String {
        match &self.replica_id {
            Some(id) if !id.trim().is_empty() => id.trim().to_owned(),
            _ => {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|name| name.trim().to_owned())
                    .filter(|name| !name.is_empty())
                    .or_else(|| std::env::var("HOSTNAME").ok())
                    .unwrap_or_else(|| "cosell".to_owned());
                format!("{host}-{}", std::process::id())
            }
        }
    }

    /// How often the active versions are compared with the store's.
    pub fn deployment_check(&self) -> Duration {
        Duration::from_secs(self.deployment_check_secs.max(1))
    }
}
