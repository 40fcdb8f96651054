//! `sandbox.json`: where every part of a running sandbox is, for scripts, tests and people.

use super::SandboxOptions;
use crate::config::Secret;
use crate::server::RunningHost;
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
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// A delegated refresh token (Partner Center only: its Referrals API needs App+User).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Fault injection and the emulated clock: `<url>/_emulator/...`.
    pub control_url: String,
}

/// The host of the sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostEndpoints {
    pub admin_url: String,
    pub admin_token: String,
    /// The host configuration the sandbox wrote (and the host runs).
    pub config: String,
    /// Where the host receives both services' webhooks.
    pub webhook_url: Option<String>,
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
    pub partner_center: ServiceEndpoints,
    pub dataverse: ServiceEndpoints,
    pub host: HostEndpoints,
    /// The process running all of it (emulators and host share one process).
    pub pid: u32,
    pub started_at: String,
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
        host: &RunningHost,
        token: &Secret,
        config_path: &Path,
        options: &SandboxOptions,
    ) -> Self {
        Self {
            partner_center,
            dataverse,
            host: HostEndpoints {
                admin_url: format!("http://{}", host.admin_addr),
                admin_token: token.expose().to_owned(),
                config: config_path.display().to_string(),
                webhook_url: host.webhook_addr.map(|a| format!("http://{a}")),
            },
            pid: std::process::id(),
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
