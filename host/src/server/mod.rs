//! Assembling and running the host: runtime, store, pipelines, deployer, admin API, watcher,
//! and, when both services are configured, the sync engine ([`engine`]) with its webhook
//! listener. Both listeners run on runtimes of their own and are served within their
//! section's limits ([`crate::listener`]).

mod engine;

use crate::admin::{self, AdminState};
use crate::config::{HostConfig, Secret};
use crate::deploy::{self, Deployer, watch_dir::DropDirectory};
use crate::listener::Listener;
use crate::metrics::Metrics;
use crate::runtime::{ArtifactCache, ArtifactKey, MappingRuntime};
use crate::store::{ARTIFACT_CACHE_SECRET, DeploymentStore};
use anyhow::{Context as _, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running host.
pub struct RunningHost {
    /// Where the admin API listens (useful when the config asked for port 0).
    pub admin_addr: SocketAddr,
    /// Deploys, rolls back and lists the step versions of this host.
    pub deployer: Arc<Deployer>,
    /// Where the webhooks listen, when syncing is configured.
    pub webhook_addr: Option<SocketAddr>,
    sync: Option<engine::SyncParts>,
    shutdown: oneshot::Sender<()>,
    server: Listener,
    watcher: Option<JoinHandle<()>>,
    retention: Option<JoinHandle<()>>,
    /// Loads the versions other replicas activate (PostgreSQL only), and keeps `cosell_leader`;
    /// and the store's write check (readiness).
    followers: Vec<JoinHandle<()>>,
    membership: crate::replicas::Membership,
}

/// Starts the host described by `config`, with `token` guarding the admin API.
pub async fn start(config: HostConfig, token: Secret) -> Result<RunningHost> {
    // The bind rule is checked here too, not only when a file is loaded, so a configuration
    // built in code cannot expose the admin API by accident; before anything starts.
    config.admin.validate()?;
    crate::admin::check_token(&token)?;
    let metrics = Arc::new(Metrics::new());
    let limits = config.limits.clone();
    let pool_memory = config.largest_step_memory();
    let cache_dir = config.artifact_cache.directory(&config.state);
    let cache_max_bytes = config.artifact_cache.max_bytes();
    let state = crate::store::open(&config.state)?;
    let store: Arc<dyn DeploymentStore> = state.deployments.clone();
    let cache_key = match cache_dir {
        Some(_) => Some(ArtifactKey::new(
            &store
                .host_secret(ARTIFACT_CACHE_SECRET)
                .context("reading the artifact cache's secret from the state database")?,
        )),
        None => None,
    };
    let runtime = Arc::new(
        tokio::task::spawn_blocking(move || {
            // Sized for the largest memory any step may use (per-step limits).
            let runtime = MappingRuntime::with_pool_memory(limits, pool_memory)?;
            anyhow::Ok(match (cache_dir, cache_key) {
                (Some(dir), Some(key)) => with_artifact_cache(runtime, dir, cache_max_bytes, key),
                _ => runtime,
            })
        })
        .await??,
    );
    let boot = {
        let (pipelines, store, metrics, runtime) = (
            config.pipelines.clone(),
            store.clone(),
            metrics.clone(),
            runtime.clone(),
        );
        tokio::task::spawn_blocking(move || {
            deploy::bootstrap(&pipelines, runtime, store.as_ref(), metrics)
        })
        .await??
    };
    let deployer = Arc::new(Deployer::new(
        boot.pipelines,
        store,
        boot.samples,
        metrics.clone(),
    ));

    // Among the replicas of the state: leadership, and the deployments of the others.
    let replica_id: Arc<str> = config.host.replica_id().into();
    let mut membership = state
        .replicas
        .join(&replica_id)
        .context("joining the replicas of the state database")?;
    // Before any worker claims: its claims are taken back at once if this process dies.
    claim_as(&state.sync, &replica_id).await?;
    let leader = membership.leader.clone();
    // What `/readyz` answers; the store's write check starts now, the rest report as they
    // start (crate::health).
    let health = crate::health::Health::new(metrics.clone(), leader.clone());
    let store_check =
        crate::health::store_check::spawn(state.sync.clone(), &replica_id, health.clone());
    let mut followers = vec![crate::replicas::observe_leadership(
        leader.clone(),
        &metrics,
    )];
    followers.push(store_check);
    if let Some(notices) = membership.notices.take() {
        followers.push(tokio::spawn(crate::replicas::follow::follow(
            deployer.clone(),
            notices,
            config.host.deployment_check(),
        )));
    }

    let watcher = match &config.deploy.watch_dir {
        Some(dir) => {
            let drop_dir = DropDirectory::new(dir.clone(), deployer.clone())?;
            Some(tokio::spawn(drop_dir.run(config.deploy.watch_interval())))
        }
        None => None,
    };

    let sync = match &config.partner_center {
        Some(_) => Some(
            engine::start(
                &config,
                state.sync.clone(),
                deployer.pipelines().clone(),
                metrics.clone(),
                leader.clone(),
                health.clone(),
            )
            .await
            .context("starting the sync engine")?,
        ),
        None => {
            tracing::info!(
                "no [partner_center] and [dataverse]: serving mappings only, not syncing"
            );
            None
        }
    };

    if let Some(sync) = &sync {
        deployer.on_activation(sync.requeue_parked_hook());
    }

    let retention =
        crate::retention::Retention::new(config.retention.clone(), deployer.clone(), &metrics);
    let retention = match &sync {
        Some(sync) => retention.with_sync(sync.store.clone(), sync.lookups.clone()),
        None => retention,
    }
    .while_leader(leader.clone())
    .spawn();

    let admin_limits = config.admin.limits()?;
    let app = admin::router(AdminState {
        deployer: deployer.clone(),
        metrics,
        token: Arc::new(token),
        sync_store: sync.as_ref().map(|s| s.store.clone()),
        wakeup: sync.as_ref().map(|s| s.wakeup.clone()),
        replica_id: replica_id.clone(),
        leader,
        console: config
            .admin
            .console
            .then(|| admin::console::SessionSettings {
                idle: std::time::Duration::from_secs(config.admin.session_idle_secs),
                max: std::time::Duration::from_secs(config.admin.session_max_secs),
                secure: config.admin.behind_tls,
            }),
        health,
    });
    let (shutdown, shutdown_rx) = oneshot::channel::<()>();
    // On a runtime of its own, so `/healthz` and `/metrics` answer even while every thread
    // of the main runtime waits on the store.
    let server = Listener::start(
        "cosell-admin",
        "admin.listen",
        config.admin.listen,
        app,
        admin_limits,
        async {
            let _ = shutdown_rx.await;
        },
    )?;
    let admin_addr = server.addr;
    tracing::info!(%admin_addr, replica_id = %replica_id, allocator = ?deployer.pipelines().runtime().allocator(), "cosell host is serving");
    Ok(RunningHost {
        admin_addr,
        deployer,
        webhook_addr: sync.as_ref().map(|s| s.webhook_addr),
        sync,
        shutdown,
        server,
        watcher,
        retention,
        followers,
        membership,
    })
}

/// `runtime` with its artifact cache in `dir`; without one, and a warning, when the directory
/// cannot be made private: the cache only saves time, so it never stops the host.
fn with_artifact_cache(
    runtime: MappingRuntime,
    dir: std::path::PathBuf,
    max_bytes: u64,
    key: ArtifactKey,
) -> MappingRuntime {
    match ArtifactCache::open(&dir, max_bytes, key) {
        Ok(cache) => {
            tracing::debug!(dir = %dir.display(), max_bytes, "artifact cache ready");
            runtime.with_artifact_cache(cache)
        }
        Err(err) => {
            tracing::warn!(error = %format!("{err:#}"), "running without the artifact cache: every load compiles (fix the directory, or set artifact_cache.enabled = false to silence this)");
            runtime
        }
    }
}

impl RunningHost {
    /// Stops accepting requests, lets in-flight ones finish, stops the watcher, and leaves
    /// the replicas (giving up leadership).
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.shutdown.send(());
        if let Some(watcher) = self.watcher {
            watcher.abort();
        }
        if let Some(retention) = self.retention {
            retention.abort();
        }
        for follower in self.followers {
            follower.abort();
        }
        if let Some(sync) = self.sync {
            sync.shutdown().await;
        }
        // After the pollers stopped: another replica may take over at once.
        self.membership.leave().await;
        self.server
            .stopped()
            .await
            .context("the admin API server failed")?;
        Ok(())
    }
}

/// How long a replica starting under an id in use waits for it: the previous run of this
/// replica, restarted at once by its supervisor, may still be closing its sessions.
const ID_RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Claims as replica `id` ([`crate::store::SyncStore::claim_as`]), waiting up to
/// [`ID_RELEASE_WAIT`] while the id is held by another session.
async fn claim_as(sync: &Arc<dyn crate::store::SyncStore>, id: &Arc<str>) -> Result<()> {
    let started = std::time::Instant::now();
    let mut logged = false;
    loop {
        let (store, claimer) = (sync.clone(), id.clone());
        let joined = tokio::task::spawn_blocking(move || store.claim_as(&claimer)).await?;
        match joined {
            Ok(()) => return Ok(()),
            Err(err)
                if err.downcast_ref::<crate::store::ReplicaIdInUse>().is_some()
                    && started.elapsed() < ID_RELEASE_WAIT =>
            {
                if !logged {
                    tracing::warn!(replica_id = %id, "{err:#}; waiting up to {ID_RELEASE_WAIT:?} for it to be released");
                    logged = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(err) => return Err(err.context("joining the replicas of the state database")),
        }
    }
}
