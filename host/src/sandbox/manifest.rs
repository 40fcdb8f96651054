//! `sandbox.json`: where every part of a running sandbox is, for scripts, tests and people.

use super::SandboxOptions;
use anyhow::Result;
use cosell_emulators::common::server::RunningEmulator;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How to reach one emulated Microsoft service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceEndpoints {
    /// Base URL of the emulator (its API paths are the real service's).
    pub url: String,
    /// Partner Center only: the Webhooks API's base URL (another host at Microsoft, another
    /// listener here).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub webhooks_url: Option<String>,
    /// The OAuth token endpoint.
    pub token_url: String,
    /// The emulated tenant's id (part of `token_url`).
    pub tenant_id: String,
    /// The application id the emulator knows cosell by.
    pub client_id: String,
    /// The application's client secret, in clear (an emulator's, never a real one).
    pub client_secret: String,
    /// A delegated refresh token (Partner Center only: its Referrals API needs App+User).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Fault injection and the emulated clock: `<url>/_emulator/...`.
    pub control_url: String,
}

/// The host of the sandbox; with `--replicas`, the load balancer in front of the replicas.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostEndpoints {
    /// The admin API's base URL.
    pub admin_url: String,
    /// The admin API's bearer token, in clear.
    pub admin_token: String,
    /// The host configuration the sandbox wrote (and the host runs; with `--replicas`, the one
    /// every replica's configuration is made from).
    pub config: String,
    /// Where the host receives both services' webhooks.
    pub webhook_url: Option<String>,
}

/// One replica (`--replicas`): a `cosell serve` process of its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaEndpoints {
    /// Its replica id, as `/healthz` says it.
    pub id: String,
    /// Its own admin API (the load balancer's is `host.admin_url`).
    pub admin_url: String,
    /// Its own webhook listener.
    pub webhook_url: String,
    /// The process id of its `cosell serve`.
    pub pid: u32,
    /// Its configuration and its log.
    pub config: String,
    /// The path of its log file.
    pub log: String,
}

/// The load balancer (HAProxy) in front of the replicas.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BalancerEndpoints {
    /// Its admin API frontend (the same as `host.admin_url`).
    pub admin_url: String,
    /// Its webhook frontend, registered with both emulators (the same as `host.webhook_url`).
    pub webhook_url: String,
    /// HAProxy's process id.
    pub pid: u32,
    /// Its configuration (the shipped template, filled in) and its log.
    pub config: String,
    /// The path of its log file.
    pub log: String,
}

/// What was seeded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seeded {
    pub referrals: usize,
    pub accounts: usize,
    pub opportunities: usize,
    pub seed: u64,
}

/// The contents of `<data-dir>/sandbox.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxManifest {
    /// The Partner Center emulator.
    pub partner_center: ServiceEndpoints,
    /// The Dataverse emulator.
    pub dataverse: ServiceEndpoints,
    /// The host, or with `--replicas` the load balancer in front of the replicas.
    pub host: HostEndpoints,
    /// The sandbox's process: the emulators and the host (or, with `--replicas`, the parent
    /// of the replicas and the load balancer). Ctrl-C (SIGINT) or SIGTERM to it stops it all.
    pub pid: u32,
    /// With `--replicas`: every replica.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub replicas: Vec<ReplicaEndpoints>,
    /// With `--replicas`: the load balancer.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub load_balancer: Option<BalancerEndpoints>,
    /// With `--state-url`: the state's PostgreSQL database, its password (if any) as `***`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub state_url: Option<String>,
    /// When the sandbox started: RFC 3339, UTC, to the second.
    pub started_at: String,
    /// What was seeded into the emulators.
    pub seeded: Seeded,
}

/// The application an emulator knows cosell as.
pub(super) struct AppIdentity {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
}

impl ServiceEndpoints {
    /// The endpoints of an emulator serving at `server`; `token_path` follows the tenant id.
    pub(super) fn new(
        server: &RunningEmulator,
        app: AppIdentity,
        token_path: &str,
        refresh_token: Option<String>,
    ) -> Self {
        Self {
            url: server.url(),
            webhooks_url: None,
            token_url: format!("{}/{}/{token_path}", server.url(), app.tenant_id),
            tenant_id: app.tenant_id,
            client_id: app.client_id,
            client_secret: app.client_secret,
            refresh_token,
            control_url: format!("{}/_emulator", server.url()),
        }
    }
}

impl ServiceEndpoints {
    /// The same endpoints with the Webhooks API at `url`.
    pub(super) fn with_webhooks_url(self, url: String) -> Self {
        Self {
            webhooks_url: Some(url),
            ..self
        }
    }
}

impl SandboxManifest {
    pub(super) fn new(
        partner_center: ServiceEndpoints,
        dataverse: ServiceEndpoints,
        host: HostEndpoints,
        options: &SandboxOptions,
    ) -> Self {
        Self {
            partner_center,
            dataverse,
            host,
            pid: std::process::id(),
            replicas: Vec::new(),
            load_balancer: None,
            state_url: options.state_url.as_deref().map(crate::config::redacted),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            seeded: Seeded {
                referrals: options.referrals,
                accounts: options.accounts,
                opportunities: options.opportunities,
                seed: options.seed,
            },
        }
    }

    /// Writes the manifest atomically, readable only by its owner from its first byte, since
    /// it holds the admin token and the emulators' secrets.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::config::write_owner_only(path, serde_json::to_string_pretty(self)?.as_bytes())
    }
}
