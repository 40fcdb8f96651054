//! Several cosell replicas on one state database: who is the leader, and how a deployment
//! made on one replica reaches the others.
//!
//! The seam is [`ReplicaSet`], chosen with the store in [`crate::store::open`]:
//!
//! - [`Alone`] (SQLite: one host per state file): always the leader; deployments only ever
//!   happen in this process, so there is nothing to follow.
//! - [`crate::store::postgres::PgReplicaSet`] (PostgreSQL): the leader is whoever holds a session advisory
//!   lock on a dedicated connection; the others try again every 2 s, so when the leader dies
//!   (its session ends and the server releases the lock) another takes over within seconds.
//!   Each replica also listens for the activations the store announces (`NOTIFY`) and loads
//!   the new active version, and compares every step's active version with the store's every
//!   `[host] deployment_check_secs` in case a notice was missed.
//!
//! What only the leader runs ([`leader_tasks`]): the pollers (Dataverse change tracking,
//! Partner Center reconciliation) and the pruning of shared state by retention. Everything
//! else (webhooks, queue workers, the admin API) runs on every replica.
//! [`follow`] keeps a replica's pipelines on the store's active versions.

pub mod follow;
pub mod leader_tasks;

use crate::metrics::Metrics;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::store::replica_set::{Alone, Membership, Notice, ReplicaSet};

/// Keeps `cosell_leader` (1 while this replica leads, else 0) on `leader`.
pub fn observe_leadership(mut leader: watch::Receiver<bool>, metrics: &Metrics) -> JoinHandle<()> {
    let gauge = Gauge::<i64>::default();
    metrics.register(
        "leader",
        "1 while this replica is the leader (runs the pollers and retention), 0 otherwise",
        gauge.clone(),
    );
    tokio::spawn(async move {
        loop {
            gauge.set(i64::from(*leader.borrow_and_update()));
            if leader.changed().await.is_err() {
                return;
            }
        }
    })
}
