//! The environment every end-to-end figure runs in: both emulators in this (the driver's)
//! process on loopback, and a real `cosell serve` in a process of its own on a real SQLite file
//! (or, for the backends figure, a PostgreSQL database: [`StateBackend`]), wired exactly as `cosell sandbox` wires it (`cosell::sandbox::wiring`) and set up with the
//! real setup commands. The host is the release binary built next to this one.

use super::postgres::BenchDatabase;
use anyhow::{Context as _, Result, bail};
use cosell::sandbox::wiring::{Emulators, HostWiring, default_pipelines, write_host_config};
use cosell_bench::results::workspace_root;
use cosell_emulators::common::server::RunningEmulator;
use cosell_emulators::dataverse::{Dataverse, DataverseConfig};
use cosell_emulators::partner_center::RunningPartnerCenter;
use cosell_emulators::partner_center::{PartnerCenter, PartnerCenterConfig};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Webhook deliveries the Partner Center emulator has in flight at once.
pub const WEBHOOK_CONCURRENCY: usize = 16;

/// The admin token of the benchmark's host.
pub const ADMIN_TOKEN: &str = "bench-admin-token-4e9a1c7f3b2d8e5a0c6f";

/// Where the host keeps its state.
#[derive(Default)]
pub enum StateBackend {
    /// `[state] path`: a SQLite file in the environment's temporary directory.
    #[default]
    Sqlite,
    /// `[state] url`: a PostgreSQL database (dropped with the environment, after the host).
    Postgres(BenchDatabase),
}

/// How an environment is set up.
#[derive(Default)]
pub struct EnvOptions {
    /// TOML appended to the host configuration (`[sync]` settings).
    pub extra: String,
    /// The Dataverse emulator's configuration.
    pub dataverse: DataverseConfig,
    /// Whether the emulators' webhooks are registered with the host (off when the driver
    /// sends the webhooks itself).
    pub register_webhooks: bool,
    /// Where the host keeps its state.
    pub state: StateBackend,
}

/// Both emulators and a running host.
pub struct BenchEnv {
    pub pc: PartnerCenter,
    pub dv: Dataverse,
    pub pc_url: String,
    pub admin_url: String,
    pub webhooks_url: String,
    pub config_path: PathBuf,
    pub dir: tempfile::TempDir,
    /// The host's state database, when it is PostgreSQL.
    pub database: Option<BenchDatabase>,
    host: Child,
    _servers: (RunningPartnerCenter, RunningEmulator),
}

/// Two different free ports for the host's listeners. Both are held until both are chosen:
/// a port let go at once may be answered again for the second.
fn two_free_ports() -> Result<(u16, u16)> {
    let first = std::net::TcpListener::bind("127.0.0.1:0")?;
    let second = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok((first.local_addr()?.port(), second.local_addr()?.port()))
}

/// The `cosell` binary built next to this driver (same profile).
pub fn cosell_binary() -> Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name("cosell");
    if !path.exists() {
        bail!(
            "{} is missing: build it first with `cargo build --release -p cosell` (make bench does)",
            path.display()
        );
    }
    Ok(path)
}

/// A built guest component, e.g. `referral_to_opportunity.wasm`.
pub fn guest_path(name: &str) -> Result<PathBuf> {
    let path = workspace_root().join("guest-mappings/dist").join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build the guests first with `make guests`",
            path.display()
        );
    }
    Ok(path)
}

impl BenchEnv {
    /// Starts the emulators, writes the host's configuration, runs the setup commands and
    /// starts `cosell serve`, waiting until both of its listeners answer.
    pub async fn start(options: EnvOptions) -> Result<Self> {
        let pc = PartnerCenter::new(PartnerCenterConfig {
            // Microsoft's dispatch is not one event at a time (its concurrency is not
            // documented); a sequential emulator would be the bottleneck, not the host.
            webhook_concurrency: WEBHOOK_CONCURRENCY,
            ..PartnerCenterConfig::default()
        });
        let pc_server = pc
            .serve()
            .await
            .context("starting the Partner Center emulator")?;
        let dv = Dataverse::new(options.dataverse);
        let dv_server = dv
            .serve()
            .await
            .context("starting the Dataverse emulator")?;
        let dir = tempfile::tempdir()?;
        let (webhooks_port, admin_port) = two_free_ports()?;
        let emulators = Emulators::running(&pc, &pc_server, &dv, &dv_server);
        let wiring = HostWiring {
            admin_listen: format!("127.0.0.1:{admin_port}").parse()?,
            webhooks_listen: format!("127.0.0.1:{webhooks_port}").parse()?,
            // Pollers off: only the webhooks move records, so every figure is the push path.
            dataverse_poll_secs: 0,
            partner_center_poll_secs: 0,
            extra: options.extra,
            pipelines: default_pipelines(
                &guest_path("referral_to_opportunity.wasm")?,
                &guest_path("opportunity_to_referral.wasm")?,
            ),
            state_url: match &options.state {
                StateBackend::Sqlite => None,
                StateBackend::Postgres(database) => Some(database.url().to_owned()),
            },
        };
        let config_path = write_host_config(dir.path(), &emulators, &wiring).await?;
        let webhooks_url = format!("http://127.0.0.1:{webhooks_port}");
        cosell(
            &config_path,
            &["dataverse", "provision", "--solution", "cosell"],
        )?;
        if options.register_webhooks {
            let pc_hook = format!("{webhooks_url}/webhooks/partner-center");
            cosell(
                &config_path,
                &["partner-center", "register-webhooks", "--url", &pc_hook],
            )?;
            let dv_hook = format!("{webhooks_url}/webhooks/dataverse");
            cosell(
                &config_path,
                &["dataverse", "register-webhook", "--url", &dv_hook],
            )?;
        }
        let host = start_host(&config_path, dir.path())?;
        let env = BenchEnv {
            pc,
            dv,
            pc_url: pc_server.url(),
            admin_url: format!("http://127.0.0.1:{admin_port}"),
            webhooks_url,
            config_path,
            dir,
            database: match options.state {
                StateBackend::Sqlite => None,
                StateBackend::Postgres(database) => Some(database),
            },
            host,
            _servers: (pc_server, dv_server),
        };
        env.wait_ready().await?;
        Ok(env)
    }

    async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        for url in [
            format!("{}/healthz", self.admin_url),
            format!("{}/healthz", self.webhooks_url),
        ] {
            loop {
                if reqwest::get(&url)
                    .await
                    .is_ok_and(|r| r.status().is_success())
                {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "the host did not come up within 60 s; its log:\n{}",
                        self.host_log()
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// The host's process id (for its memory).
    pub fn host_pid(&self) -> u32 {
        self.host.id()
    }

    /// The host's log so far.
    pub fn host_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host.log")).unwrap_or_default()
    }

    /// The host's Prometheus metrics text.
    pub async fn metrics(&self) -> Result<String> {
        Ok(reqwest::get(format!("{}/metrics", self.admin_url))
            .await?
            .text()
            .await?)
    }
}

impl Drop for BenchEnv {
    fn drop(&mut self) {
        let _ = self.host.kill();
        let _ = self.host.wait();
        // A log asked for (COSELL_BENCH_HOST_LOG) outlives the run's temporary directory.
        if std::env::var_os("COSELL_BENCH_HOST_LOG").is_some() {
            let kept = cosell_bench::results::results_dir().join("host.log");
            if std::fs::create_dir_all(cosell_bench::results::results_dir()).is_ok()
                && std::fs::copy(self.dir.path().join("host.log"), &kept).is_ok()
            {
                eprintln!("host log kept in {}", kept.display());
            }
        }
    }
}

fn start_host(config: &Path, dir: &Path) -> Result<Child> {
    let log = std::fs::File::create(dir.join("host.log"))?;
    Command::new(cosell_binary()?)
        .args(["serve", "--config"])
        .arg(config)
        .env("COSELL_ADMIN_TOKEN", ADMIN_TOKEN)
        // What an operator runs in production (debug logging would be a figure of its own);
        // COSELL_BENCH_HOST_LOG overrides it when a run needs explaining.
        .env(
            "RUST_LOG",
            std::env::var("COSELL_BENCH_HOST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting cosell serve")
}

/// Runs a `cosell` setup command on `config`; fails with its output.
fn cosell(config: &Path, args: &[&str]) -> Result<()> {
    let output = Command::new(cosell_binary()?)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .with_context(|| format!("running cosell {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "cosell {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
