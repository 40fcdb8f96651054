//! Connecting a host to the emulators: the host configuration with both services, secrets in
//! files readable only by their owner, the Partner Center emulator's certificate trusted
//! explicitly, and the webhooks of both services registered with the host. `cosell sandbox`
//! uses it, and so do the end-to-end tests, so both run the same configuration.

use crate::config::{HostConfig, Secret};
use crate::connections::partner_center::{
    PartnerCenterClient, PartnerCenterSettings, sign_in_command,
};
use crate::runtime::Direction;
use crate::setup::{register_dataverse_webhook, register_partner_center_webhooks};
use crate::sinks::configured::dataverse_client;
use anyhow::{Context as _, Result};
use cosell_emulators::common::server::RunningEmulator;
use cosell_emulators::dataverse::Dataverse;
use cosell_emulators::partner_center::{PartnerCenter, RunningPartnerCenter};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Two running emulators, by handle and URL.
pub struct Emulators<'a> {
    /// The Partner Center emulator (its configuration and refresh token).
    pub partner_center: &'a PartnerCenter,
    /// The token endpoint, the Referrals API and the control endpoints.
    pub partner_center_url: String,
    /// The Webhooks API.
    pub partner_center_webhooks_url: String,
    /// The Dataverse emulator (its configuration).
    pub dataverse: &'a Dataverse,
    /// The Dataverse emulator's base URL: its token endpoint, Web API and control endpoints.
    pub dataverse_url: String,
}

impl<'a> Emulators<'a> {
    /// The two emulators as they are serving: their handles and their listeners' URLs.
    pub fn running(
        partner_center: &'a PartnerCenter,
        partner_center_server: &RunningPartnerCenter,
        dataverse: &'a Dataverse,
        dataverse_server: &RunningEmulator,
    ) -> Self {
        Self {
            partner_center,
            partner_center_url: partner_center_server.url(),
            partner_center_webhooks_url: partner_center_server.webhooks_url(),
            dataverse,
            dataverse_url: dataverse_server.url(),
        }
    }
}

/// What differs between the sandbox and a test.
pub struct HostWiring {
    /// `admin.listen` of the host.
    pub admin_listen: SocketAddr,
    /// `webhooks.listen` of the host.
    pub webhooks_listen: SocketAddr,
    /// `pollers.dataverse_interval_secs`: seconds between Dataverse change-tracking reads
    /// (0 = off).
    pub dataverse_poll_secs: u64,
    /// `pollers.partner_center_interval_secs`: seconds between Partner Center reconciliations
    /// (0 = off).
    pub partner_center_poll_secs: u64,
    /// More TOML: `[sync]`, `[sync.conflicts]` tables.
    pub extra: String,
    /// The `[[pipelines.*]]` tables.
    pub pipelines: String,
    /// `[state] url`: a PostgreSQL database; `None` keeps the state in `cosell.db` (SQLite)
    /// beside the configuration.
    pub state_url: Option<String>,
}

/// The `[[pipelines.*]]` tables of the two default steps, on these component files.
pub fn default_pipelines(referral_to_opportunity: &Path, opportunity_to_referral: &Path) -> String {
    pipelines_with_added_steps(referral_to_opportunity, opportunity_to_referral, &[])
}

/// [`default_pipelines`], each default step followed by the `added` steps of its direction
/// (name and first component).
pub fn pipelines_with_added_steps(
    referral_to_opportunity: &Path,
    opportunity_to_referral: &Path,
    added: &[(Direction, &str, &Path)],
) -> String {
    let mut text = String::new();
    for (direction, default_step, default_component) in [
        (
            Direction::PartnerCenterToCrm,
            "referral-to-opportunity",
            referral_to_opportunity,
        ),
        (
            Direction::CrmToPartnerCenter,
            "opportunity-to-referral",
            opportunity_to_referral,
        ),
    ] {
        let steps = std::iter::once((default_step, default_component)).chain(
            added
                .iter()
                .filter(|(d, _, _)| *d == direction)
                .map(|(_, name, component)| (*name, *component)),
        );
        for (step, component) in steps {
            text.push_str(&format!(
                "[[pipelines.{direction}]]\nstep = {}\ncomponent = {}\n\n",
                toml_string(step),
                toml_string(&component.display().to_string()),
            ));
        }
    }
    text
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// Writes `value` to `dir/name`, readable only by its owner; answers the path.
fn secret_file(dir: &Path, name: &str, value: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    crate::config::write_owner_only(&path, value.as_bytes())?;
    Ok(path)
}

/// Writes the secrets, the emulator's certificate and `cosell.toml` into `dir`; answers the
/// configuration file's path.
pub async fn write_host_config(
    dir: &Path,
    emulators: &Emulators<'_>,
    wiring: &HostWiring,
) -> Result<PathBuf> {
    // Absolute, so the paths in the file mean the same from the file's own directory.
    let dir = &std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).with_context(|| format!("creating {}", secrets.display()))?;
    let (pc, dv) = (
        emulators.partner_center.config(),
        emulators.dataverse.config(),
    );
    let pc_secret = secret_file(&secrets, "partner-center-client-secret", &pc.client_secret)?;
    let pc_refresh = secret_file(
        &secrets,
        "partner-center-refresh-token",
        &emulators.partner_center.refresh_token(),
    )?;
    let dv_secret = secret_file(&secrets, "dataverse-client-secret", &dv.client_secret)?;
    let hook_key = secret_file(
        &secrets,
        "dataverse-webhook-key",
        &crate::domain::ids::new_uuid(),
    )?;
    let certificate = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?
        .get(format!(
            "{}/_emulator/certificate.pem",
            emulators.partner_center_url
        ))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .context("downloading the Partner Center emulator's certificate")?
        .text()
        .await?;
    let certificate_path = dir.join("partner-center-emulator.pem");
    std::fs::write(&certificate_path, certificate)?;
    let text = format!(
        r#"# Written for the emulators (cosell sandbox); edit a copy to run `cosell serve` yourself.
[admin]
listen = "{admin}"
token_env = "COSELL_ADMIN_TOKEN"

[state]
{state}

[deploy]
watch_dir = "drop"

[partner_center]
# The emulators listen over plain http on loopback; real services are https only.
allow_http = true
base_url = "{pc_url}"
webhooks_url = "{pc_webhooks_url}"
token_url = "{pc_url}/{pc_tenant}/oauth2/token"
client_id = "{pc_client}"
client_secret = {{ file = "{pc_secret}" }}
refresh_token = {{ file = "{pc_refresh}" }}

[partner_center.webhooks]
# The emulator serves its certificate over http on loopback and it does not chain to
# Microsoft: it is trusted explicitly.
certificate_hosts = ["127.0.0.1"]
allow_http = true
trusted_certificates = ["{certificate}"]

[dataverse]
allow_http = true  # the Dataverse emulator, on loopback
url = "{dv_url}"
token_url = "{dv_url}/{dv_tenant}/oauth2/v2.0/token"
client_id = "{dv_client}"
client_secret = {{ file = "{dv_secret}" }}

[webhooks]
listen = "{webhooks}"

[webhooks.dataverse]
kind = "http-header"
name = "x-cosell-key"
value = {{ file = "{hook_key}" }}

[pollers]
dataverse_interval_secs = {dv_poll}
partner_center_interval_secs = {pc_poll}

{extra}

{pipelines}"#,
        admin = wiring.admin_listen,
        state = match &wiring.state_url {
            Some(url) => format!("url = {}", toml_string(url)),
            None => r#"path = "cosell.db""#.to_owned(),
        },
        webhooks = wiring.webhooks_listen,
        pc_url = emulators.partner_center_url,
        pc_webhooks_url = emulators.partner_center_webhooks_url,
        pc_tenant = pc.tenant_id,
        pc_client = pc.client_id,
        pc_secret = pc_secret.display(),
        pc_refresh = pc_refresh.display(),
        certificate = certificate_path.display(),
        dv_url = emulators.dataverse_url,
        dv_tenant = dv.tenant_id,
        dv_client = dv.client_id,
        dv_secret = dv_secret.display(),
        hook_key = hook_key.display(),
        dv_poll = wiring.dataverse_poll_secs,
        pc_poll = wiring.partner_center_poll_secs,
        extra = wiring.extra,
        pipelines = wiring.pipelines,
    );
    let path = dir.join("cosell.toml");
    // Readable only by its owner: a state URL may carry the database's password.
    crate::config::write_owner_only(&path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The solution the sandbox provisions Dataverse in (the emulator has it, with publisher
/// prefix `cosell`).
pub const SANDBOX_SOLUTION: &str = "cosell";

/// Provisions the Dataverse emulator as `cosell dataverse provision --solution cosell` does.
pub async fn provision(config: &HostConfig) -> Result<()> {
    let dv = dataverse_client(config)?;
    let prefix = crate::setup::publisher_prefix(config, None)?;
    crate::setup::provision(&dv, SANDBOX_SOLUTION, &prefix)
        .await
        .context("provisioning the Dataverse emulator")?;
    Ok(())
}

/// Registers the host's webhook URLs with both emulators through their real APIs, with a
/// sign-in of its own (the host's refresh token stays the host's).
pub async fn register_webhooks(
    config: &HostConfig,
    emulators: &Emulators<'_>,
    webhooks: SocketAddr,
) -> Result<()> {
    let pc = emulators.partner_center.config();
    let client = PartnerCenterClient::new(PartnerCenterSettings {
        base_url: emulators.partner_center_url.clone(),
        webhooks_url: emulators.partner_center_webhooks_url.clone(),
        token_url: format!(
            "{}/{}/oauth2/token",
            emulators.partner_center_url, pc.tenant_id
        ),
        client_id: pc.client_id.clone(),
        client_secret: Secret::new(pc.client_secret.clone()),
        refresh_token: Secret::new(emulators.partner_center.refresh_token()),
        timeout: Duration::from_secs(10),
        max_retries: 3,
        sign_in_command: sign_in_command(config.source_file.as_deref()),
    })?;
    register_partner_center_webhooks(
        &client,
        &format!("http://{webhooks}/webhooks/partner-center"),
        false,
        false,
        |note| tracing::info!("{note}"),
    )
    .await
    .context("registering the host's webhook with the Partner Center emulator")?;
    let dv = dataverse_client(config)?;
    register_dataverse_webhook(
        config,
        &dv,
        &format!("http://{webhooks}/webhooks/dataverse"),
    )
    .await
    .context("registering the host's webhook with the Dataverse emulator")?;
    Ok(())
}
