//! Setup commands: register cosell's webhooks with both services and create its columns.
//!
//! - `cosell partner-center register-webhooks --url …` registers the four referral events. The
//!   tenant has one registration, possibly shared with other applications: events cosell does
//!   not handle are kept (the union is registered, with cosell's URL) unless `--replace`.
//! - `cosell dataverse provision` creates the custom columns that are missing
//!   (`schema/dataverse-columns.json`, with `sync.column_prefix`), idempotently.
//! - `cosell dataverse register-webhook --url …` creates or updates the `cosell` service
//!   endpoint and its steps on opportunity Create, Update, Win and Lose.
//!
//! What each does in the service is [`crate::setup`]'s; these read the configuration and
//! print the outcome.

use crate::config::HostConfig;
use crate::setup::{
    provision, publisher_prefix, register_dataverse_webhook, register_partner_center_webhooks,
};
use crate::sinks::configured::{dataverse_client, partner_center_client};
use anyhow::{Context as _, Result};
use std::path::Path;

fn load(config: &Path) -> Result<HostConfig> {
    HostConfig::load(config)
}

/// `cosell partner-center register-webhooks`; with `validate`, Partner Center then sends a
/// test event and the command reports whether the URL answered.
pub async fn register_webhooks_command(
    config: &Path,
    url: &str,
    replace: bool,
    validate: bool,
) -> Result<i32> {
    let config = load(config)?;
    let store = crate::store::open(&config.state)?.sync;
    let client = partner_center_client(&config, store)?;
    let outcome = register_partner_center_webhooks(&client, url, replace, validate, |note| {
        eprintln!("{note}")
    })
    .await?;
    println!("{}", serde_json::to_string_pretty(&outcome.registered)?);
    if !validate {
        return Ok(0);
    }
    let correlation = client.send_validation_event().await?;
    for _ in 0..30 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let status = client.validation_event(&correlation).await?;
        if let Some(result) = status["results"].as_array().and_then(|r| r.last()) {
            let code = result["responseCode"].as_str().unwrap_or_default();
            if code.eq_ignore_ascii_case("OK") {
                eprintln!("the test event reached {url}");
                return Ok(0);
            }
            eprintln!(
                "the test event to {url} failed: {result}; is `cosell serve` running behind that URL?"
            );
            return Ok(1);
        }
    }
    eprintln!(
        "Partner Center has not delivered the test event to {url} after 15 s (correlation id {correlation})"
    );
    Ok(1)
}

/// `cosell dataverse provision`.
pub async fn provision_command(
    config: &Path,
    solution: &str,
    publisher_prefix_given: Option<&str>,
) -> Result<i32> {
    let config = load(config)?;
    let prefix = publisher_prefix(&config, publisher_prefix_given)?;
    let dv = dataverse_client(&config)?;
    let done = provision(&dv, solution, &prefix).await.with_context(|| {
        format!(
            "provisioning in solution `{solution}` (it must exist, and its publisher's \
             customization prefix must be `{prefix}`; create it in make.powerapps.com under \
             Solutions → New solution)"
        )
    })?;
    for line in done.lines(solution) {
        println!("{line}");
    }
    Ok(0)
}

/// `cosell dataverse register-webhook`.
pub async fn register_dataverse_webhook_command(config: &Path, url: &str) -> Result<i32> {
    let config = load(config)?;
    let dv = dataverse_client(&config)?;
    let id = register_dataverse_webhook(&config, &dv, url).await?;
    println!("service endpoint {id} delivers opportunity Create, Update, Win and Lose to {url}");
    Ok(0)
}
