//! The seam between one host's state and the replicas sharing it: [`ReplicaSet`], which a
//! store backend provides (as it provides its [`super::CustomerLocks`]), and what a replica
//! gets from joining ([`Membership`]: leadership and the others' deployments).
//!
//! - [`Alone`] (SQLite: one host per state file): always the leader; deployments only ever
//!   happen in this process, so there is nothing to follow.
//! - `postgres::PgReplicaSet` (PostgreSQL): leadership by a session advisory lock, the
//!   others' activations by `LISTEN`.
//!
//! What a host does with its membership (leader-only tasks, following deployments) is
//! [`crate::replicas`]'s.

use anyhow::Result;
use tokio::sync::{mpsc, watch};

/// What a replica hears about the deployments of the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A version of this step was activated (by any replica, this one included).
    Activated(String),
    /// Notices may have been missed (the notification connection was (re)opened): every
    /// step's active version should be checked.
    MaybeMissed,
}

/// The replicas sharing this host's state database.
pub trait ReplicaSet: Send + Sync {
    /// Joins as `replica_id`: starts contending for leadership and, where other replicas can
    /// deploy, listening for their activations. Called once, by `cosell serve`; the setup
    /// commands open the store without joining.
    fn join(&self, replica_id: &str) -> Result<Membership>;
}

/// This host's part among the replicas, until [`Membership::leave`] or drop.
pub struct Membership {
    /// True while this replica is the leader.
    pub leader: watch::Receiver<bool>,
    /// The activations announced by the store; `None` when no other process can deploy.
    pub notices: Option<mpsc::UnboundedReceiver<Notice>>,
    /// `None` once left.
    pub(crate) stop: Option<Box<dyn Leave>>,
}

/// How a membership ends: the leadership released, the listening stopped.
pub(crate) trait Leave: Send + Sync {
    fn signal(&self);
    fn wait(self: Box<Self>);
}

impl Membership {
    /// Gives up leadership (closing the lock's connection, so another replica can take it at
    /// once) and stops listening; answers once both connections are closed.
    pub async fn leave(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.signal();
            let _ = tokio::task::spawn_blocking(move || stop.wait()).await;
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        if let Some(stop) = &self.stop {
            stop.signal();
        }
    }
}

/// One host on its own state (SQLite): always the leader, nothing to follow.
pub struct Alone;

/// Keeps the leadership channel open: [`Alone`] stays the leader until the host stops.
struct KeepLeading(#[allow(dead_code)] watch::Sender<bool>);

impl Leave for KeepLeading {
    fn signal(&self) {}
    fn wait(self: Box<Self>) {}
}

impl ReplicaSet for Alone {
    fn join(&self, replica_id: &str) -> Result<Membership> {
        tracing::debug!(replica_id, "one host on its own state: always the leader");
        let (leading, leader) = watch::channel(true);
        Ok(Membership {
            leader,
            notices: None,
            stop: Some(Box::new(KeepLeading(leading))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_host_on_its_own_state_is_always_the_leader_and_follows_nothing() {
        let membership = Alone.join("solo").unwrap();
        assert!(*membership.leader.borrow());
        assert!(membership.notices.is_none());
        let mut leader = membership.leader.clone();
        membership.leave().await;
        // Leaving at shutdown ends the channel without ever turning leadership off.
        assert!(*leader.borrow_and_update());
    }
}
