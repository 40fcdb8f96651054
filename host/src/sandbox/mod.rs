//! `cosell sandbox`: the whole product on one machine, without a Microsoft account. Built only
//! with the `sandbox` feature (on by default), since it carries both emulators.
//!
//! Starts the Partner Center emulator (two listeners: its token endpoint and Referrals API, and
//! its Webhooks API, two hosts at Microsoft), the Dataverse emulator (crate `cosell-emulators`) and the host
//! (embedded SQLite store, default mappings deployed), all on loopback, seeds a realistic data
//! set, and writes where everything is to `<data-dir>/sandbox.json` so scripts and tests can
//! find it. The host syncs the two emulators: both services' webhooks are registered with it
//! (through their real APIs, as `cosell partner-center register-webhooks` and
//! `cosell dataverse register-webhook` do), and the pollers run as in production.
//!
//! With `--replicas N` (and `--state-url`, a PostgreSQL database, when N > 1), the host is N
//! `cosell serve` processes on one state behind HAProxy ([`replica_set`], [`balancer`]): both
//! emulators deliver their webhooks to the balancer, and the admin API is the balancer's.

mod balancer;
mod children;
mod manifest;
mod ports;
mod replica_set;
pub mod wiring;

pub use balancer::{Backend as BalancedReplica, find as find_haproxy, render as haproxy_config};
pub use manifest::{
    BalancerEndpoints, HostEndpoints, ReplicaEndpoints, SandboxManifest, ServiceEndpoints,
};
pub use replica_set::{ReplicaOptions, replica_config};

use manifest::AppIdentity;
use ports::HeldPort;
use replica_set::ReplicaSet;

use crate::config::{HostConfig, Secret};
use crate::domain::ids::new_uuid;
use crate::server::RunningHost;
use anyhow::{Context as _, Result, bail};
use cosell_emulators::common::server::RunningEmulator;
use cosell_emulators::dataverse::{Dataverse, DataverseConfig};
use cosell_emulators::partner_center::{PartnerCenter, PartnerCenterConfig, RunningPartnerCenter};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// What the sandbox starts and seeds.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Where the state database, the host config and `sandbox.json` go.
    pub data_dir: PathBuf,
    /// Where the default mapping components are (`guest-mappings/dist`).
    pub components_dir: PathBuf,
    /// The admin API's address (port 0: any free port).
    pub admin_listen: SocketAddr,
    /// The webhook listener's address (port 0: any free port).
    pub webhooks_listen: SocketAddr,
    /// The emulators' addresses (Partner Center's Webhooks API has a listener of its own).
    pub partner_center_listen: SocketAddr,
    /// The Partner Center emulator's Webhooks API (a listener of its own).
    pub partner_center_webhooks_listen: SocketAddr,
    /// The Dataverse emulator's address.
    pub dataverse_listen: SocketAddr,
    /// Referrals seeded into Partner Center.
    pub referrals: usize,
    /// Accounts and opportunities seeded into Dataverse.
    pub accounts: usize,
    /// Opportunities seeded into Dataverse.
    pub opportunities: usize,
    /// Seed of the generated data: the same seed gives the same data set.
    pub seed: u64,
    /// The admin token; a random one is made when absent.
    pub admin_token: Option<Secret>,
    /// `[state] url`: a PostgreSQL database for the host's state; `None` keeps it in SQLite in
    /// the data directory.
    pub state_url: Option<String>,
    /// Several replicas behind a load balancer instead of one host in this process; the admin
    /// and webhook addresses above are then the balancer's.
    pub replicas: Option<ReplicaOptions>,
    /// Steps added after the default step of a direction, each starting as a pass-through
    /// (its output is its input) until a version is deployed to it: where a customer's own
    /// step goes, so it can be shadow-tested and promoted without forking the default mapping.
    pub added_steps: Vec<AddedStep>,
}

/// A step `cosell sandbox --add-step` puts after the default step of its direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedStep {
    /// The direction whose pipeline gets the step.
    pub direction: crate::runtime::Direction,
    /// The step's name: lower-case letters, digits and dashes, and not a default step's name.
    pub name: String,
}

impl std::str::FromStr for AddedStep {
    type Err = String;

    /// `partner-center-to-crm:<name>` or `crm-to-partner-center:<name>`.
    fn from_str(text: &str) -> Result<Self, String> {
        let usage = || {
            format!(
                "`{text}` is not DIRECTION:STEP, e.g. partner-center-to-crm:my-fields \
                 (DIRECTION is partner-center-to-crm or crm-to-partner-center; STEP is lower-case \
                 letters, digits and dashes)"
            )
        };
        let (direction, name) = text.split_once(':').ok_or_else(usage)?;
        let direction = match direction {
            "partner-center-to-crm" => crate::runtime::Direction::PartnerCenterToCrm,
            "crm-to-partner-center" => crate::runtime::Direction::CrmToPartnerCenter,
            _ => return Err(usage()),
        };
        let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid || ["referral-to-opportunity", "opportunity-to-referral"].contains(&name) {
            return Err(usage());
        }
        Ok(Self {
            direction,
            name: name.to_owned(),
        })
    }
}

/// A running sandbox.
pub struct RunningSandbox {
    /// Where everything is: what was written to `sandbox.json`.
    pub manifest: SandboxManifest,
    /// The path `sandbox.json` was written to.
    pub manifest_path: PathBuf,
    host: Hosts,
    partner_center: RunningPartnerCenter,
    dataverse: RunningEmulator,
}

/// What syncs the emulators: one host in this process, or replicas behind a balancer.
enum Hosts {
    InProcess(Box<RunningHost>),
    Replicas(ReplicaSet),
}

/// Starts both emulators and the host, seeds the data and writes `sandbox.json`.
pub async fn start(options: SandboxOptions) -> Result<RunningSandbox> {
    // A chosen token is checked before the emulators start, not only when the host does, so a
    // short one fails fast with nothing to tear down; so are the replicas' needs.
    if let Some(token) = &options.admin_token {
        crate::admin::check_token(token)?;
    }
    let haproxy = match &options.replicas {
        Some(replicas) => Some(check_replicas(replicas, options.state_url.as_deref())?),
        None => None,
    };
    // The balancer's frontends need their ports before the host's configuration is written;
    // they are held until HAProxy starts.
    let balancer_ports = match haproxy {
        Some(_) => Some((
            HeldPort::concrete(options.admin_listen)?,
            HeldPort::concrete(options.webhooks_listen)?,
        )),
        None => None,
    };
    let (admin_listen, webhooks_listen) = match &balancer_ports {
        Some((admin, webhooks)) => (admin.addr(), webhooks.addr()),
        None => (options.admin_listen, options.webhooks_listen),
    };
    std::fs::create_dir_all(&options.data_dir).with_context(|| {
        format!(
            "creating the sandbox data directory {}",
            options.data_dir.display()
        )
    })?;
    let components = DefaultComponents::find(&options.components_dir, &options.added_steps)?;

    let pc_config = PartnerCenterConfig {
        listen: options.partner_center_listen,
        webhooks_listen: options.partner_center_webhooks_listen,
        ..PartnerCenterConfig::default()
    };
    let pc_app = AppIdentity {
        tenant_id: pc_config.tenant_id.clone(),
        client_id: pc_config.client_id.clone(),
        client_secret: pc_config.client_secret.clone(),
    };
    let partner_center = PartnerCenter::new(pc_config);
    partner_center.seed_demo_data(options.referrals, options.seed);
    let pc_server = partner_center.serve().await.with_context(|| {
        format!(
            "starting the Partner Center emulator on {} and {}",
            options.partner_center_listen, options.partner_center_webhooks_listen
        )
    })?;

    let dv_config = DataverseConfig {
        listen: options.dataverse_listen,
        ..DataverseConfig::default()
    };
    let dv_app = AppIdentity {
        tenant_id: dv_config.tenant_id.clone(),
        client_id: dv_config.client_id.clone(),
        client_secret: dv_config.client_secret.clone(),
    };
    let dataverse = Dataverse::new(dv_config);
    let dv_server = dataverse.serve().await.with_context(|| {
        format!(
            "starting the Dataverse emulator on {}",
            options.dataverse_listen
        )
    })?;

    let token = options
        .admin_token
        .clone()
        .unwrap_or_else(|| Secret::new(format!("sandbox-{}", new_uuid())));
    let emulators = wiring::Emulators::running(&partner_center, &pc_server, &dataverse, &dv_server);
    let config_path = wiring::write_host_config(
        &options.data_dir,
        &emulators,
        &wiring::HostWiring {
            admin_listen,
            webhooks_listen,
            dataverse_poll_secs: 30,
            partner_center_poll_secs: 60,
            extra: "[sync]\nretry_base_ms = 500".into(),
            pipelines: components.pipelines_text(&options.added_steps),
            state_url: options.state_url.clone(),
        },
    )
    .await?;
    let config = HostConfig::load(&config_path)?;
    // Provisioned as an operator would (`cosell dataverse provision --solution cosell`), then
    // seeded: the seeded opportunities use the columns it creates.
    wiring::provision(&config).await?;
    dataverse.seed_demo_data(options.accounts, options.opportunities, options.seed);
    let (host, endpoints) = match (&options.replicas, haproxy, balancer_ports) {
        (Some(replicas), Some(haproxy), Some(balancer_ports)) => {
            let set = ReplicaSet::start(
                replicas,
                &haproxy,
                &config_path,
                &options.data_dir,
                balancer_ports,
                &token,
            )
            .await?;
            if let Err(err) = wiring::register_webhooks(&config, &emulators, set.webhooks).await {
                set.stop().await;
                return Err(err);
            }
            let endpoints = HostEndpoints {
                admin_url: format!("http://{}", set.admin),
                admin_token: token.expose().to_owned(),
                config: config_path.display().to_string(),
                webhook_url: Some(format!("http://{}", set.webhooks)),
            };
            (Hosts::Replicas(set), endpoints)
        }
        _ => {
            let host = crate::server::start(config.clone(), token.clone()).await?;
            if let Some(addr) = host.webhook_addr {
                wiring::register_webhooks(&config, &emulators, addr).await?;
            }
            let endpoints = HostEndpoints {
                admin_url: format!("http://{}", host.admin_addr),
                admin_token: token.expose().to_owned(),
                config: config_path.display().to_string(),
                webhook_url: host.webhook_addr.map(|a| format!("http://{a}")),
            };
            (Hosts::InProcess(Box::new(host)), endpoints)
        }
    };

    let mut manifest = SandboxManifest::new(
        ServiceEndpoints::new(
            &pc_server.api,
            pc_app,
            "oauth2/token",
            Some(partner_center.refresh_token()),
        )
        .with_webhooks_url(pc_server.webhooks_url()),
        ServiceEndpoints::new(&dv_server, dv_app, "oauth2/v2.0/token", None),
        endpoints,
        &options,
    );
    if let Hosts::Replicas(set) = &host {
        let (replicas, balancer) = set.endpoints();
        manifest.replicas = replicas;
        manifest.load_balancer = Some(balancer);
    }
    let manifest_path = options.data_dir.join("sandbox.json");
    manifest.write(&manifest_path)?;
    Ok(RunningSandbox {
        manifest,
        manifest_path,
        host,
        partner_center: pc_server,
        dataverse: dv_server,
    })
}

impl RunningSandbox {
    /// Stops the host, then the emulators, and removes `sandbox.json` (its process id and
    /// ports would be stale).
    pub async fn stop(self) -> Result<()> {
        let host = match self.host {
            Hosts::InProcess(host) => host.shutdown().await,
            Hosts::Replicas(set) => {
                set.stop().await;
                Ok(())
            }
        };
        self.partner_center.stop().await;
        self.dataverse.stop().await;
        let _ = std::fs::remove_file(&self.manifest_path);
        host
    }
}

/// Checks what `--replicas` needs before anything starts; answers the HAProxy executable.
fn check_replicas(replicas: &ReplicaOptions, state_url: Option<&str>) -> Result<PathBuf> {
    if replicas.count == 0 {
        bail!("--replicas must be at least 1");
    }
    if replicas.count > 1 && state_url.is_none() {
        bail!(
            "--replicas {} needs --state-url postgres://…: replicas share their state (queue, \
             leader, deployments) through one PostgreSQL database, and a SQLite file belongs \
             to one host",
            replicas.count
        );
    }
    balancer::find(&replicas.haproxy)
}

/// The default components the sandbox deploys.
struct DefaultComponents {
    referral_to_opportunity: PathBuf,
    opportunity_to_referral: PathBuf,
    /// `pass_through.wasm`, the first version of every added step (only looked for when there
    /// is one).
    pass_through: Option<PathBuf>,
}

impl DefaultComponents {
    fn find(dir: &Path, added_steps: &[AddedStep]) -> Result<Self> {
        let wanted = |file: &str| -> Result<PathBuf> {
            let path = dir.join(file);
            if !path.is_file() {
                bail!(
                    "the default mapping component {} is missing: build the components with `make guests` (or pass --components-dir)",
                    path.display()
                );
            }
            Ok(std::path::absolute(&path)?)
        };
        Ok(Self {
            referral_to_opportunity: wanted("referral_to_opportunity.wasm")?,
            opportunity_to_referral: wanted("opportunity_to_referral.wasm")?,
            pass_through: match added_steps.is_empty() {
                true => None,
                false => Some(wanted("pass_through.wasm")?),
            },
        })
    }

    /// The pipeline part of the host configuration: the default steps, each followed by the
    /// steps added to its direction.
    fn pipelines_text(&self, added_steps: &[AddedStep]) -> String {
        let added: Vec<(crate::runtime::Direction, &str, &Path)> = added_steps
            .iter()
            .filter_map(|step| {
                let component = self.pass_through.as_deref()?;
                Some((step.direction, step.name.as_str(), component))
            })
            .collect();
        wiring::pipelines_with_added_steps(
            &self.referral_to_opportunity,
            &self.opportunity_to_referral,
            &added,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Direction;

    #[test]
    fn an_added_step_names_its_direction_and_a_valid_step_name() {
        let step: AddedStep = "partner-center-to-crm:my-fields".parse().unwrap();
        assert_eq!(step.direction, Direction::PartnerCenterToCrm);
        assert_eq!(step.name, "my-fields");
        for bad in [
            "my-fields",
            "crm:my-fields",
            "partner-center-to-crm:My Fields",
            "partner-center-to-crm:",
            "crm-to-partner-center:opportunity-to-referral",
        ] {
            let err = bad.parse::<AddedStep>().unwrap_err();
            assert!(err.contains("DIRECTION:STEP"), "{bad}: {err}");
        }
    }

    #[test]
    fn added_steps_run_after_the_default_step_of_their_direction() {
        let components = DefaultComponents {
            referral_to_opportunity: "/c/r2o.wasm".into(),
            opportunity_to_referral: "/c/o2r.wasm".into(),
            pass_through: Some("/c/pass_through.wasm".into()),
        };
        let added = [
            "partner-center-to-crm:my-fields".parse().unwrap(),
            "crm-to-partner-center:my-referral-fields".parse().unwrap(),
        ];
        let text = components.pipelines_text(&added);
        let config: toml::Value = toml::from_str(&text).unwrap();
        let steps = |direction: &str| -> Vec<(String, String)> {
            config["pipelines"][direction]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let field = |k: &str| s[k].as_str().unwrap().to_owned();
                    (field("step"), field("component"))
                })
                .collect()
        };
        assert_eq!(
            steps("partner-center-to-crm"),
            [
                ("referral-to-opportunity".into(), "/c/r2o.wasm".into()),
                ("my-fields".into(), "/c/pass_through.wasm".into())
            ]
        );
        assert_eq!(
            steps("crm-to-partner-center"),
            [
                ("opportunity-to-referral".into(), "/c/o2r.wasm".into()),
                ("my-referral-fields".into(), "/c/pass_through.wasm".into())
            ]
        );
    }
}
