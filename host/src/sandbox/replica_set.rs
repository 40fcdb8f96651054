//! `cosell sandbox --replicas N`: N `cosell serve` processes on one state, each a replica
//! with its own id (`sandbox-1`…), admin and webhook ports, artifact cache and log, all made
//! from the sandbox's host configuration.
//!
//! Processes rather than hosts in the sandbox's own process: that is how replicas run in
//! production (one process each, nothing shared but the database), so a replica can be killed
//! (SIGKILL) to watch another take over, and one replica's crash cannot take the others with it.

use super::balancer::{self, Backend};
use super::children::Supervised;
use super::manifest::{BalancerEndpoints, ReplicaEndpoints};
use super::ports::HeldPort;
use crate::config::Secret;
use anyhow::{Context as _, Result, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::process::Command;

/// How long a replica has to answer `/healthz` after it starts (it may compile the mappings
/// and migrate the database first).
const START_LIMIT: Duration = Duration::from_secs(120);

/// What `--replicas` asks for.
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// How many replicas (at least 1; more than 1 needs a PostgreSQL state).
    pub count: usize,
    /// The `cosell` executable the replicas run (`cosell serve`).
    pub executable: PathBuf,
    /// The HAProxy executable: a bare name is looked for on `PATH` and in `/usr/sbin`.
    pub haproxy: PathBuf,
}

/// The replicas and the load balancer in front of them, running.
pub(super) struct ReplicaSet {
    replicas: Vec<Replica>,
    balancer: Supervised,
    balancer_config: PathBuf,
    /// The balancer's frontends.
    pub admin: SocketAddr,
    pub webhooks: SocketAddr,
}

impl ReplicaSet {
    /// Starts the replicas of the host configured in `base_config`, then HAProxy in front of
    /// them with its frontends on `admin` and `webhooks` (held until HAProxy starts, so no
    /// replica is given one of them), and waits until the balancer answers `/healthz`.
    pub(super) async fn start(
        options: &ReplicaOptions,
        haproxy: &Path,
        base_config: &Path,
        data_dir: &Path,
        (admin, webhooks): (HeldPort, HeldPort),
        token: &Secret,
    ) -> Result<Self> {
        let replicas = start(
            &options.executable,
            base_config,
            data_dir,
            options.count,
            token,
        )
        .await?;
        let backends: Vec<Backend<'_>> = replicas
            .iter()
            .map(|r| Backend {
                id: &r.id,
                admin: r.admin,
                webhooks: r.webhooks,
            })
            .collect();
        let dir = std::path::absolute(data_dir)?;
        let (admin, webhooks) = (admin.release(), webhooks.release());
        let (balancer, balancer_config) =
            match balancer::start(haproxy, &dir, admin, webhooks, &backends).await {
                Ok(started) => started,
                Err(err) => {
                    stop(replicas).await;
                    return Err(err);
                }
            };
        let set = Self {
            replicas,
            balancer,
            balancer_config,
            admin,
            webhooks,
        };
        if let Err(err) = set.until_balanced().await {
            let log = set.balancer.log.clone();
            set.stop().await;
            return Err(err.context(format!(
                "HAProxy did not start; its log is {}",
                log.display()
            )));
        }
        tracing::info!(
            "HAProxy (pid {}) balances http://{admin} and http://{webhooks} over {} replicas",
            set.balancer.pid,
            set.replicas.len()
        );
        Ok(set)
    }

    /// Waits until a request through the balancer's admin frontend reaches a replica.
    async fn until_balanced(&self) -> Result<()> {
        let url = format!("http://{}/healthz", self.admin);
        until_answers(&url, &self.balancer, Duration::from_secs(30)).await
    }

    /// The replicas and the balancer, for the manifest.
    pub(super) fn endpoints(&self) -> (Vec<ReplicaEndpoints>, BalancerEndpoints) {
        let replicas = self
            .replicas
            .iter()
            .map(|r| ReplicaEndpoints {
                id: r.id.clone(),
                admin_url: format!("http://{}", r.admin),
                webhook_url: format!("http://{}", r.webhooks),
                pid: r.process.pid,
                config: r.config.display().to_string(),
                log: r.process.log.display().to_string(),
            })
            .collect();
        let balancer = BalancerEndpoints {
            admin_url: format!("http://{}", self.admin),
            webhook_url: format!("http://{}", self.webhooks),
            pid: self.balancer.pid,
            config: self.balancer_config.display().to_string(),
            log: self.balancer.log.display().to_string(),
        };
        (replicas, balancer)
    }

    /// Stops the balancer (no new requests), then every replica.
    pub(super) async fn stop(self) {
        match self.balancer.stop().await {
            Ok(_) => tracing::info!("HAProxy stopped"),
            Err(err) => tracing::warn!("stopping HAProxy: {err:#}"),
        }
        stop(self.replicas).await;
    }
}

/// One running replica.
pub(super) struct Replica {
    pub id: String,
    pub admin: SocketAddr,
    pub webhooks: SocketAddr,
    pub config: PathBuf,
    pub process: Supervised,
}

/// The configuration of replica `id`: the sandbox's `base` configuration with listeners and
/// an artifact cache of its own (in `dir`), and no drop directory (one deployment, through the
/// admin API, reaches every replica; several replicas watching one directory would each deploy
/// it).
pub fn replica_config(
    base: &str,
    dir: &Path,
    admin: SocketAddr,
    webhooks: SocketAddr,
) -> Result<String> {
    let mut table: toml::Table = base
        .parse()
        .context("reading the sandbox's host configuration")?;
    let section = |table: &mut toml::Table, name: &str| -> Result<toml::Table> {
        match table.remove(name) {
            Some(toml::Value::Table(t)) => Ok(t),
            None => Ok(toml::Table::new()),
            Some(_) => bail!("`{name}` is not a table in the sandbox's host configuration"),
        }
    };
    let mut admin_table = section(&mut table, "admin")?;
    admin_table.insert("listen".into(), admin.to_string().into());
    table.insert("admin".into(), admin_table.into());
    let mut webhooks_table = section(&mut table, "webhooks")?;
    webhooks_table.insert("listen".into(), webhooks.to_string().into());
    table.insert("webhooks".into(), webhooks_table.into());
    let mut cache = section(&mut table, "artifact_cache")?;
    cache.insert(
        "dir".into(),
        dir.join("compiled").display().to_string().into(),
    );
    table.insert("artifact_cache".into(), cache.into());
    let mut deploy = section(&mut table, "deploy")?;
    deploy.remove("watch_dir");
    if !deploy.is_empty() {
        table.insert("deploy".into(), deploy.into());
    }
    Ok(format!(
        "# Replica configuration written by `cosell sandbox --replicas`, from ../../cosell.toml.\n{}",
        toml::to_string(&table)?
    ))
}

/// Starts replicas `sandbox-1`…`sandbox-<count>` of the host configured in `base_config`, one
/// after the other (the first migrates a new database; the others find it done), each ready
/// (its `/healthz` answering) before the next starts.
async fn start(
    executable: &Path,
    base_config: &Path,
    data_dir: &Path,
    count: usize,
    token: &Secret,
) -> Result<Vec<Replica>> {
    let base = std::fs::read_to_string(base_config)
        .with_context(|| format!("reading {}", base_config.display()))?;
    let mut replicas: Vec<Replica> = Vec::with_capacity(count);
    for n in 1..=count {
        let started = start_one(executable, &base, data_dir, &format!("sandbox-{n}"), token).await;
        match started {
            Ok(replica) => replicas.push(replica),
            Err(err) => {
                stop(replicas).await;
                return Err(err);
            }
        }
    }
    Ok(replicas)
}

async fn start_one(
    executable: &Path,
    base: &str,
    data_dir: &Path,
    id: &str,
    token: &Secret,
) -> Result<Replica> {
    let dir = std::path::absolute(data_dir.join("replicas").join(id))?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let loopback = std::net::Ipv4Addr::LOCALHOST.into();
    let (admin, webhooks) = (HeldPort::free_on(loopback)?, HeldPort::free_on(loopback)?);
    let config = dir.join("cosell.toml");
    crate::config::write_owner_only(
        &config,
        replica_config(base, &dir, admin.addr(), webhooks.addr())?.as_bytes(),
    )?;
    let (admin, webhooks) = (admin.release(), webhooks.release());
    let mut command = Command::new(executable);
    command
        .arg("serve")
        .arg("--replica-id")
        .arg(id)
        .arg("--config")
        .arg(&config)
        .env("COSELL_ADMIN_TOKEN", token.expose())
        .env_remove("COSELL_CONFIG");
    let process = Supervised::spawn(format!("replica {id}"), command, &dir.join("cosell.log"))?;
    let replica = Replica {
        id: id.to_owned(),
        admin,
        webhooks,
        config,
        process,
    };
    if let Err(err) = until_healthy(&replica).await {
        let log = replica.process.log.clone();
        let _ = replica.process.stop().await;
        return Err(err.context(format!(
            "replica {id} did not start; its log is {}",
            log.display()
        )));
    }
    tracing::info!(
        "replica {id} is up (pid {}), admin API on http://{admin}",
        replica.process.pid
    );
    Ok(replica)
}

/// Waits until `replica` answers `/healthz` with 200.
async fn until_healthy(replica: &Replica) -> Result<()> {
    let url = format!("http://{}/healthz", replica.admin);
    until_answers(&url, &replica.process, START_LIMIT).await
}

/// Waits until `url`, served by `process`, answers 200 (asked every 200 ms); fails when the
/// process exits first or `limit` passes.
async fn until_answers(url: &str, process: &Supervised, limit: Duration) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let started = Instant::now();
    loop {
        if process.has_exited() {
            bail!("it exited");
        }
        if let Ok(response) = http.get(url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!("{url} did not answer within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stops every replica, all at once; failures are logged.
async fn stop(replicas: Vec<Replica>) {
    futures_util::future::join_all(replicas.into_iter().map(|replica| async move {
        let name = replica.process.name.clone();
        // One that exited on its own was reported when it did.
        let had_exited = replica.process.has_exited();
        match replica.process.stop().await {
            _ if had_exited => {}
            Ok(status) if status.success() => tracing::info!("{name} stopped"),
            Ok(status) => tracing::warn!("{name} stopped: {status}"),
            Err(err) => tracing::warn!("stopping {name}: {err:#}"),
        }
    }))
    .await;
}
