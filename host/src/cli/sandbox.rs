//! `cosell sandbox`: start the emulators and the host, print where they are, run until Ctrl-C.

use crate::config::Secret;
use crate::sandbox::{self, ReplicaOptions, SandboxOptions};
use anyhow::{Context as _, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Where the state database, the host config and sandbox.json go.
    #[arg(long, default_value = "cosell-sandbox")]
    pub data_dir: PathBuf,
    /// Where the default mapping components are (built by `make guests`; the Debian package
    /// installs them in /usr/share/cosell/mappings).
    #[arg(
        long,
        env = "COSELL_COMPONENTS_DIR",
        default_value = "guest-mappings/dist"
    )]
    pub components_dir: PathBuf,
    /// The host's admin API address.
    #[arg(long, default_value = "127.0.0.1:8686")]
    pub admin_listen: SocketAddr,
    /// Where the host receives both services' webhooks.
    #[arg(long, default_value = "127.0.0.1:8689")]
    pub webhooks_listen: SocketAddr,
    /// The Partner Center emulator's address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8687")]
    pub partner_center_listen: SocketAddr,
    /// The Partner Center emulator's Webhooks API address: another host at Microsoft, so
    /// another listener here (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8690")]
    pub partner_center_webhooks_listen: SocketAddr,
    /// The Dataverse emulator's address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8688")]
    pub dataverse_listen: SocketAddr,
    /// Referrals to seed into Partner Center (all statuses).
    #[arg(long, default_value_t = 300)]
    pub referrals: usize,
    /// Accounts to seed into Dataverse.
    #[arg(long, default_value_t = 40)]
    pub accounts: usize,
    /// Opportunities to seed into Dataverse (all states).
    #[arg(long, default_value_t = 300)]
    pub opportunities: usize,
    /// Seed of the generated data: the same seed gives the same data set.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Keep the host's state in this PostgreSQL database (`postgres://user@host/db`) instead
    /// of SQLite in the data directory.
    #[arg(long, value_name = "URL")]
    pub state_url: Option<String>,
    /// Run N `cosell serve` processes (replicas `sandbox-1`…) on one state behind HAProxy
    /// instead of one host: --admin-listen and --webhooks-listen are then the balancer's, each
    /// replica gets free loopback ports of its own. More than one needs --state-url.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub replicas: Option<u16>,
    /// The HAProxy executable for --replicas (a bare name is looked for on PATH and in
    /// /usr/sbin; Debian: `apt-get install haproxy`).
    #[arg(long, default_value = "haproxy", value_name = "PATH")]
    pub haproxy: PathBuf,
    /// Add a step of your own after the default mapping of a direction, e.g.
    /// `partner-center-to-crm:my-fields` (repeatable). It starts as a pass-through (its output
    /// is its input) until you deploy a version to it, so you can shadow-test and promote your
    /// own step without forking the default mapping.
    #[arg(long = "add-step", value_name = "DIRECTION:STEP")]
    pub add_step: Vec<crate::sandbox::AddedStep>,
}

pub(super) async fn run(args: SandboxArgs) -> Result<()> {
    let admin_token = std::env::var("COSELL_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .map(Secret::new);
    let added_steps = args.add_step;
    let starting = sandbox::start(SandboxOptions {
        data_dir: args.data_dir,
        components_dir: args.components_dir,
        admin_listen: args.admin_listen,
        webhooks_listen: args.webhooks_listen,
        partner_center_listen: args.partner_center_listen,
        partner_center_webhooks_listen: args.partner_center_webhooks_listen,
        dataverse_listen: args.dataverse_listen,
        referrals: args.referrals,
        accounts: args.accounts,
        opportunities: args.opportunities,
        seed: args.seed,
        admin_token,
        state_url: args.state_url,
        replicas: match args.replicas {
            Some(count) => Some(ReplicaOptions {
                count: count.into(),
                executable: std::env::current_exe()
                    .context("finding the cosell executable the replicas run")?,
                haproxy: args.haproxy,
            }),
            None => None,
        },
        added_steps: added_steps.clone(),
    });
    // A Ctrl-C while it starts (replicas take a few seconds each) gives the start-up up: what
    // had started stops with it (the replicas and HAProxy are told to stop when dropped).
    let running = tokio::select! {
        running = starting => running?,
        () = super::serve::shutdown_signal() => {
            eprintln!("stopped before the sandbox was up");
            return Ok(());
        }
    };
    let m = &running.manifest;
    eprintln!("cosell sandbox is running (Ctrl-C to stop)");
    eprintln!(
        "  Partner Center emulator  {:<26} {} referrals",
        m.partner_center.url, m.seeded.referrals
    );
    if let Some(webhooks_api) = &m.partner_center.webhooks_url {
        eprintln!("    its Webhooks API       {webhooks_api}");
    }
    eprintln!(
        "  Dataverse emulator       {:<26} {} accounts, {} opportunities",
        m.dataverse.url, m.seeded.accounts, m.seeded.opportunities
    );
    if let Some(balancer) = &m.load_balancer {
        eprintln!(
            "  {:<24} admin API and webhooks balanced over {} replicas:",
            format!("HAProxy (pid {})", balancer.pid),
            m.replicas.len()
        );
        for replica in &m.replicas {
            eprintln!(
                "    {:<10} pid {:<8} admin {}  log {}",
                replica.id, replica.pid, replica.admin_url, replica.log
            );
        }
    }
    if let Some(state) = &m.state_url {
        eprintln!("  state in {state}");
    }
    eprintln!(
        "  cosell admin API on {} (token in the manifest)",
        m.host.admin_url
    );
    for step in &added_steps {
        eprintln!(
            "  step {} added after the default mapping of {} (a pass-through until you deploy to it)",
            step.name, step.direction
        );
    }
    if let Some(webhooks) = &m.host.webhook_url {
        eprintln!("  cosell webhooks on {webhooks} (registered with both emulators)");
    }
    eprintln!(
        "  endpoints, secrets and pid: {}",
        running.manifest_path.display()
    );
    super::serve::shutdown_signal().await;
    eprintln!("stopping the sandbox");
    running.stop().await
}
