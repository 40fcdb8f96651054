//! The `cosell serve` processes of an end-to-end environment ([`super::sync_env`]): one host
//! on the environment's configuration, or N replicas of it on one PostgreSQL state behind
//! HAProxy, as `cosell sandbox --replicas N` runs them (the same replica configurations and the
//! same balancer configuration, from the library), so a test can kill any replica (SIGKILL)
//! and start it again while the others go on.

use super::sync_env::answers;
use super::{TOKEN, free_addr};
use cosell::sandbox::{BalancedReplica, find_haproxy, haproxy_config, replica_config};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a host has to answer `/healthz` after it starts.
const START_LIMIT: Duration = Duration::from_secs(90);

/// One `cosell serve` process, running or not.
struct Host {
    /// `--replica-id`, for replicas.
    id: Option<String>,
    config: PathBuf,
    admin: SocketAddr,
    webhooks: SocketAddr,
    log: PathBuf,
    child: Option<Child>,
}

/// The hosts of an environment, and HAProxy in front of them when there are several.
pub struct Hosts {
    hosts: Vec<Host>,
    /// HAProxy's configuration, when the hosts are replicas behind it.
    balancer_config: Option<PathBuf>,
    balancer: Option<Child>,
    dir: PathBuf,
    rust_log: String,
}

/// The `host:port` of a loopback URL such as `http://127.0.0.1:8686`.
fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("{url} is not http://<ip>:<port>: {e}"))
}

impl Hosts {
    /// One host on `config`, whose listeners are `admin_url` and `webhooks_url`, logging to
    /// `dir/host.log`.
    pub fn single(dir: &Path, config: &Path, admin_url: &str, webhooks_url: &str) -> Self {
        Self {
            hosts: vec![Host {
                id: None,
                config: config.to_owned(),
                admin: addr_of(admin_url),
                webhooks: addr_of(webhooks_url),
                log: dir.join("host.log"),
                child: None,
            }],
            balancer_config: None,
            balancer: None,
            dir: dir.to_owned(),
            rust_log: String::new(),
        }
    }

    /// `count` replicas (`replica-1`…) of the host configured in `base_config`, whose
    /// listeners (`admin_url`, `webhooks_url`) become HAProxy's frontends; each replica gets
    /// listeners, an artifact cache and a log of its own under `dir/replicas/<id>`.
    pub fn replicas(
        dir: &Path,
        base_config: &Path,
        admin_url: &str,
        webhooks_url: &str,
        count: usize,
    ) -> Self {
        let base = std::fs::read_to_string(base_config).unwrap();
        let hosts: Vec<Host> = (1..=count)
            .map(|n| {
                let id = format!("replica-{n}");
                let replica_dir = dir.join("replicas").join(&id);
                std::fs::create_dir_all(&replica_dir).unwrap();
                let (admin, webhooks) = (free_addr(), free_addr());
                let config = replica_dir.join("cosell.toml");
                let text = replica_config(&base, &replica_dir, admin, webhooks).unwrap();
                std::fs::write(&config, text).unwrap();
                Host {
                    id: Some(id),
                    config,
                    admin,
                    webhooks,
                    log: replica_dir.join("host.log"),
                    child: None,
                }
            })
            .collect();
        let backends: Vec<BalancedReplica<'_>> = hosts
            .iter()
            .map(|h| BalancedReplica {
                id: h.id.as_deref().unwrap(),
                admin: h.admin,
                webhooks: h.webhooks,
            })
            .collect();
        let balancer_config = dir.join("haproxy.cfg");
        let text = haproxy_config(addr_of(admin_url), addr_of(webhooks_url), &backends);
        std::fs::write(&balancer_config, text).unwrap();
        Self {
            hosts,
            balancer_config: Some(balancer_config),
            balancer: None,
            dir: dir.to_owned(),
            rust_log: String::new(),
        }
    }

    /// How many hosts there are (running or not).
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Starts every host that is not running, one after the other (the first migrates a new
    /// database), each answering `/healthz` on both listeners before the next starts; then
    /// HAProxy, if the hosts are replicas and it is not running yet.
    pub async fn start_all(&mut self, rust_log: &str) {
        self.rust_log = rust_log.to_owned();
        for i in 0..self.hosts.len() {
            if self.hosts[i].child.is_none() {
                self.spawn(i);
                self.until_healthy(i, START_LIMIT).await;
            }
        }
        if let Some(config) = &self.balancer_config
            && self.balancer.is_none()
        {
            let haproxy = find_haproxy(Path::new("haproxy")).unwrap();
            let log = std::fs::File::create(self.dir.join("haproxy.log")).unwrap();
            let child = Command::new(haproxy)
                .arg("-db")
                .arg("-f")
                .arg(config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("HAProxy starts");
            self.balancer = Some(child);
        }
    }

    /// Starts host `i` (its log appended to, so the log of an earlier run is kept) without
    /// waiting for it.
    pub fn spawn(&mut self, i: usize) {
        let host = &mut self.hosts[i];
        assert!(host.child.is_none(), "host {i} is running already");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&host.log)
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_cosell"));
        command.arg("serve");
        if let Some(id) = &host.id {
            command.args(["--replica-id", id]);
        }
        let child = command
            .arg("--config")
            .arg(&host.config)
            .env("COSELL_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", &self.rust_log)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cosell serve starts");
        host.child = Some(child);
    }

    /// Waits until host `i` answers `/healthz` on both listeners; panics with its log after
    /// `limit`.
    pub async fn until_healthy(&self, i: usize, limit: Duration) {
        let host = &self.hosts[i];
        for addr in [host.admin, host.webhooks] {
            let url = format!("http://{addr}/healthz");
            assert!(
                answers(&url, limit).await,
                "host {i} did not come up: {}",
                self.log()
            );
        }
    }

    /// Kills host `i` (SIGKILL), if it runs.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.hosts[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills every host, and HAProxy.
    pub fn kill_all(&mut self) {
        for i in 0..self.hosts.len() {
            self.kill(i);
        }
        if let Some(mut balancer) = self.balancer.take() {
            let _ = balancer.kill();
            let _ = balancer.wait();
        }
    }

    /// Whether host `i` was started and not killed.
    pub fn is_running(&self, i: usize) -> bool {
        self.hosts[i].child.is_some()
    }

    /// The process id of host `i`, if it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.hosts[i].child.as_ref().map(Child::id)
    }

    /// The URL of host `i`'s own admin API (not the balancer's).
    pub fn admin_url(&self, i: usize) -> String {
        format!("http://{}", self.hosts[i].admin)
    }

    /// Every host's log, each headed by its name.
    pub fn log(&self) -> String {
        let logs: Vec<String> = self
            .hosts
            .iter()
            .map(|h| std::fs::read_to_string(&h.log).unwrap_or_default())
            .collect();
        match logs.as_slice() {
            [one] => one.clone(),
            _ => self
                .hosts
                .iter()
                .zip(logs)
                .map(|(h, log)| format!("==== {} ====\n{log}", h.id.as_deref().unwrap()))
                .collect(),
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.kill_all();
    }
}
