//! Connecting the sandbox's host to its emulators: the host configuration with both
//! services, secrets in files readable only by their owner, the Partner Center emulator's
//! certificate trusted explicitly, and the webhooks of both services registered with the host.

use super::SandboxOptions;
use super::manifest::AppIdentity;
use crate::cli::setup::{PARTNER_CENTER_EVENTS, register_dataverse_webhook};
use crate::config::{HostConfig, Secret};
use crate::connections::partner_center::{PartnerCenterClient, PartnerCenterSettings};
use crate::server::sync::dataverse_client;
use anyhow::{Context as _, Result};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The emulators as the host sees them.
pub(super) struct Services {
    pub partner_center_url: String,
    pub partner_center: AppIdentity,
    pub partner_center_refresh_token: String,
    pub dataverse_url: String,
    pub dataverse: AppIdentity,
}

/// Writes `value` to `dir/name`, readable only by its owner; answers the file name.
fn secret_file(dir: &Path, name: &str, value: &str) -> Result<String> {
    let path = dir.join(name);
    std::fs::write(&path, value).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(format!("secrets/{name}"))
}

/// Writes the secrets and the emulator's certificate, and answers the host configuration.
pub(super) async fn write_config(
    options: &SandboxOptions,
    pipelines: &str,
    services: &Services,
) -> Result<String> {
    let secrets = options.data_dir.join("secrets");
    std::fs::create_dir_all(&secrets).with_context(|| format!("creating {}", secrets.display()))?;
    let pc_secret = secret_file(
        &secrets,
        "partner-center-client-secret",
        &services.partner_center.client_secret,
    )?;
    let pc_refresh = secret_file(
        &secrets,
        "partner-center-refresh-token",
        &services.partner_center_refresh_token,
    )?;
    let dv_secret = secret_file(
        &secrets,
        "dataverse-client-secret",
        &services.dataverse.client_secret,
    )?;
    let hook_key = secret_file(&secrets, "dataverse-webhook-key", &super::uuid_like())?;
    let certificate = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?
        .get(format!(
            "{}/_emulator/certificate.pem",
            services.partner_center_url
        ))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .context("downloading the Partner Center emulator's certificate")?
        .text()
        .await?;
    std::fs::write(
        options.data_dir.join("partner-center-emulator.pem"),
        certificate,
    )?;
    Ok(format!(
        r#"# Written by `cosell sandbox`; edit a copy to run `cosell serve` yourself.
[admin]
listen = "{admin}"
token_env = "COSELL_ADMIN_TOKEN"

[state]
path = "cosell.db"

[deploy]
watch_dir = "drop"

[partner_center]
base_url = "{pc}"
token_url = "{pc}/{pc_tenant}/oauth2/token"
client_id = "{pc_client}"
client_secret = {{ file = "{pc_secret}" }}
refresh_token = {{ file = "{pc_refresh}" }}

[partner_center.webhooks]
# The emulator serves its certificate over http on loopback and it does not chain to
# Microsoft: it is trusted explicitly.
certificate_hosts = ["127.0.0.1"]
allow_http = true
trusted_certificates = ["partner-center-emulator.pem"]

[dataverse]
url = "{dv}"
token_url = "{dv}/{dv_tenant}/oauth2/v2.0/token"
client_id = "{dv_client}"
client_secret = {{ file = "{dv_secret}" }}

[webhooks]
listen = "{webhooks}"

[webhooks.dataverse]
kind = "http-header"
name = "x-cosell-key"
value = {{ file = "{hook_key}" }}

[sync]
retry_base_ms = 500

[pollers]
dataverse_interval_secs = 30
partner_center_interval_secs = 60

{pipelines}"#,
        admin = options.admin_listen,
        webhooks = options.webhooks_listen,
        pc = services.partner_center_url,
        pc_tenant = services.partner_center.tenant_id,
        pc_client = services.partner_center.client_id,
        dv = services.dataverse_url,
        dv_tenant = services.dataverse.tenant_id,
        dv_client = services.dataverse.client_id,
    ))
}

/// Registers the host's webhook URLs with both emulators through their real APIs.
pub(super) async fn register_webhooks(
    config: &HostConfig,
    services: &Services,
    refresh_token: String,
    webhooks: SocketAddr,
) -> Result<()> {
    let pc = PartnerCenterClient::new(PartnerCenterSettings {
        base_url: services.partner_center_url.clone(),
        token_url: format!(
            "{}/{}/oauth2/token",
            services.partner_center_url, services.partner_center.tenant_id
        ),
        client_id: services.partner_center.client_id.clone(),
        client_secret: Secret::new(services.partner_center.client_secret.clone()),
        refresh_token: Secret::new(refresh_token),
        timeout: Duration::from_secs(10),
        max_retries: 3,
    })?;
    pc.register_webhook(
        &format!("http://{webhooks}/webhooks/partner-center"),
        &PARTNER_CENTER_EVENTS,
        true,
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
