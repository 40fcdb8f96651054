//! The two service clients as the configuration describes them, for every part of the host
//! that reaches a service: the engine and its sinks, the pollers, backfill, the setup and
//! check commands, the sandbox. Built here, once, so each of them reaches Partner Center and
//! Dataverse the same way (the same refresh-token keeping, timeouts and retries).

use crate::config::HostConfig;
use crate::connections::dataverse::{DataverseClient, DataverseSettings};
use crate::connections::partner_center::{
    PartnerCenterClient, PartnerCenterSettings, sign_in_command,
};
use crate::store::SyncStore;
use crate::store::sign_in::{self, StoredRefreshToken};
use anyhow::{Context as _, Result};
use std::sync::Arc;

/// The Partner Center client of `config`, starting from the refresh token
/// [`sign_in::starting_refresh_token`] picks (the kept one, or a new one from the
/// configuration); each rotated one is stored.
pub fn partner_center_client(
    config: &HostConfig,
    store: Arc<dyn SyncStore>,
) -> Result<PartnerCenterClient> {
    let pc = config
        .partner_center
        .as_ref()
        .context("[partner_center] is not configured")?;
    let sign_in_command = sign_in_command(config.source_file.as_deref());
    let refresh_token = sign_in::starting_refresh_token(pc, &*store, &sign_in_command)?;
    let client = PartnerCenterClient::new(PartnerCenterSettings {
        base_url: pc.base_url.clone(),
        webhooks_url: pc.webhooks_url.clone(),
        token_url: pc.token_url.clone(),
        client_id: pc.client_id.clone(),
        client_secret: pc.client_secret.read("partner_center.client_secret")?,
        refresh_token,
        timeout: pc.timeout(),
        max_retries: pc.max_retries,
        sign_in_command,
    })?;
    client.keep_refresh_tokens(Arc::new(StoredRefreshToken(store)));
    Ok(client)
}

/// The Dataverse client of `config`.
pub fn dataverse_client(config: &HostConfig) -> Result<DataverseClient> {
    let dv = config
        .dataverse
        .as_ref()
        .context("[dataverse] is not configured")?;
    Ok(DataverseClient::new(DataverseSettings {
        url: dv.url.clone(),
        token_url: dv.token_url.clone(),
        client_id: dv.client_id.clone(),
        client_secret: dv.client_secret.read("dataverse.client_secret")?,
        scope: dv.scope.clone(),
        timeout: dv.timeout(),
        max_retries: dv.max_retries,
        max_concurrency: dv.max_concurrency,
    })?)
}
