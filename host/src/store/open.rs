//! The one way to open "the configured store": `[state] path` is a SQLite file, `[state] url`
//! a PostgreSQL database. Callers get the two traits, and how the host's replicas share it
//! ([`super::replica_set`]), and never branch on the backend.

use super::postgres::PgReplicaSet;
use super::replica_set::{Alone, ReplicaSet};
use super::{DeploymentStore, SyncStore};
use crate::config::{StateBackend, StateConfig};
use anyhow::{Context as _, Result};
use std::sync::Arc;

/// The configured store, as the traits the host uses.
#[derive(Clone)]
pub struct StateStore {
    /// Mapping versions and activations.
    pub deployments: Arc<dyn DeploymentStore>,
    /// The queue, links, cursors, credentials and audit trail.
    pub sync: Arc<dyn SyncStore>,
    /// Where it is, for messages (a PostgreSQL URL without its password).
    pub location: String,
    /// The replicas sharing it (leadership, deployments); joined by `cosell serve` only.
    pub replicas: Arc<dyn ReplicaSet>,
}

impl StateStore {
    /// One store serving both traits.
    pub fn new<S>(store: S, location: impl Into<String>) -> Self
    where
        S: DeploymentStore + SyncStore + 'static,
    {
        let store = Arc::new(store);
        Self {
            deployments: store.clone(),
            sync: store,
            location: location.into(),
            replicas: Arc::new(Alone),
        }
    }

    /// The same store, shared with other replicas as `replicas` says.
    pub fn with_replicas(mut self, replicas: Arc<dyn ReplicaSet>) -> Self {
        self.replicas = replicas;
        self
    }
}

/// Opens (creating or upgrading its schema if needed) the store `[state]` names.
pub fn open(state: &StateConfig) -> Result<StateStore> {
    let location = state.describe();
    let store = match state.backend()? {
        StateBackend::Sqlite(path) => {
            StateStore::new(super::sqlite::SqliteStore::open(path)?, location)
        }
        StateBackend::Postgres(_) => {
            let connector = super::postgres::Connector::new(state, "cosell")?;
            StateStore::new(
                super::postgres::PgStore::open(state)
                    .with_context(|| format!("opening {location}"))?,
                location,
            )
            .with_replicas(Arc::new(PgReplicaSet::new(connector)))
        }
    };
    Ok(store)
}
