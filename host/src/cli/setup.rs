//! Setup commands: register cosell's webhooks with both services and create its columns.
//!
//! - `cosell partner-center register-webhooks --url …` registers the four referral events.
//! - `cosell dataverse provision` creates the custom columns that are missing
//!   (`schema/dataverse-columns.json`, with `sync.column_prefix`), idempotently.
//! - `cosell dataverse register-webhook --url …` creates or updates the `cosell` service
//!   endpoint and its steps on opportunity Create, Update, Win and Lose.

use crate::config::{DataverseAuthKind, HostConfig};
use crate::connections::dataverse::DataverseClient;
use crate::connections::partner_center::PartnerCenterClient;
use crate::server::sync::{dataverse_client, partner_center_client};
use crate::sinks::dataverse::lookups::literal;
use crate::store::sqlite::SqliteStore;
use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use std::path::Path;

/// The Partner Center events cosell handles.
pub const PARTNER_CENTER_EVENTS: [&str; 4] = [
    "referral-created",
    "referral-updated",
    "related-referral-created",
    "related-referral-updated",
];

/// The name of cosell's service endpoint in Dataverse.
const ENDPOINT_NAME: &str = "cosell";

fn load(config: &Path) -> Result<HostConfig> {
    HostConfig::load(config)
}

/// Registers `url` for the referral events (and `test-created`, the validation event, with
/// `validation`).
pub async fn register_partner_center_webhooks(
    client: &PartnerCenterClient,
    url: &str,
    overwrite: bool,
    validation: bool,
) -> Result<Value> {
    if !overwrite && client.webhook_registration().await?.is_some() {
        bail!(
            "Partner Center already has a webhook registration for this tenant; run again with --overwrite to replace it"
        );
    }
    let mut events = PARTNER_CENTER_EVENTS.to_vec();
    if validation {
        events.push("test-created");
    }
    Ok(client.register_webhook(url, &events, overwrite).await?)
}

/// The column definitions with `prefix` instead of `cosell_`.
pub fn column_definitions(prefix: &str) -> Vec<Value> {
    let text = include_str!("../../../schema/dataverse-columns.json")
        .replace("\"cosell_", &format!("\"{prefix}"));
    serde_json::from_str(&text).expect("schema/dataverse-columns.json is a JSON array")
}

/// Creates the missing columns; answers the logical names created.
pub async fn provision(dv: &DataverseClient, prefix: &str) -> Result<Vec<String>> {
    let existing = dv.attribute_names("opportunity").await?;
    let mut created = Vec::new();
    for definition in column_definitions(prefix) {
        let logical = definition["SchemaName"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if existing
            .iter()
            .any(|name| name.eq_ignore_ascii_case(&logical))
        {
            continue;
        }
        dv.create_attribute("opportunity", &definition)
            .await
            .with_context(|| format!("creating column {logical}"))?;
        created.push(logical);
    }
    Ok(created)
}

fn authvalue(kind: DataverseAuthKind, name: &str, value: &str) -> String {
    match kind {
        DataverseAuthKind::WebhookKey => value.to_owned(),
        _ => format!(r#"<settings><setting name="{name}" value="{value}" /></settings>"#),
    }
}

async fn find_one(
    dv: &DataverseClient,
    set: &str,
    id_column: &str,
    filter: &str,
) -> Result<Option<String>> {
    let rows = dv
        .query(set, &format!("$select={id_column}&$filter={filter}"))
        .await?;
    Ok(rows
        .first()
        .and_then(|r| r[id_column].as_str())
        .map(str::to_owned))
}

/// Creates or updates the service endpoint and its Create/Update steps on opportunity.
pub async fn register_dataverse_webhook(
    config: &HostConfig,
    dv: &DataverseClient,
    url: &str,
) -> Result<String> {
    let auth = config
        .webhooks
        .dataverse
        .as_ref()
        .context("[webhooks.dataverse] must say how deliveries authenticate (kind, name, value) before a webhook is registered")?;
    let secret = auth.value.read("webhooks.dataverse.value")?;
    let endpoint = json!({
        "name": ENDPOINT_NAME,
        "contract": 8,
        "url": url,
        "authtype": auth.kind.authtype(),
        "authvalue": authvalue(auth.kind, &auth.name, secret.expose()),
    });
    let endpoint_id = match find_one(
        dv,
        "serviceendpoints",
        "serviceendpointid",
        &format!("name eq {}", literal(ENDPOINT_NAME)),
    )
    .await?
    {
        Some(id) => {
            dv.update("serviceendpoints", &id, &endpoint, None).await?;
            id
        }
        None => dv.create("serviceendpoints", &endpoint).await?,
    };
    // Closing an opportunity runs the Win or Lose message, which an Update step may not see.
    for message in ["Create", "Update", "Win", "Lose"] {
        let step_name = format!("cosell: opportunity {message}");
        if find_one(
            dv,
            "sdkmessageprocessingsteps",
            "sdkmessageprocessingstepid",
            &format!("name eq {}", literal(&step_name)),
        )
        .await?
        .is_some()
        {
            continue;
        }
        let message_id = find_one(
            dv,
            "sdkmessages",
            "sdkmessageid",
            &format!("name eq {}", literal(message)),
        )
        .await?
        .with_context(|| format!("Dataverse has no sdkmessage `{message}`"))?;
        let filter_id = find_one(
            dv,
            "sdkmessagefilters",
            "sdkmessagefilterid",
            &format!(
                "primaryobjecttypecode eq 'opportunity' and _sdkmessageid_value eq {message_id}"
            ),
        )
        .await?
        .with_context(|| format!("Dataverse has no `{message}` filter for opportunity"))?;
        let step = json!({
            "name": step_name,
            "mode": 1,
            "stage": 40,
            "rank": 1,
            "eventhandler_serviceendpoint@odata.bind": format!("/serviceendpoints({endpoint_id})"),
            "sdkmessageid@odata.bind": format!("/sdkmessages({message_id})"),
            "sdkmessagefilterid@odata.bind": format!("/sdkmessagefilters({filter_id})"),
        });
        dv.create("sdkmessageprocessingsteps", &step).await?;
    }
    Ok(endpoint_id)
}

/// `cosell partner-center register-webhooks`; with `validate`, Partner Center then sends a
/// test event and the command reports whether the URL answered.
pub async fn register_webhooks_command(
    config: &Path,
    url: &str,
    overwrite: bool,
    validate: bool,
) -> Result<i32> {
    let config = load(config)?;
    let store = std::sync::Arc::new(SqliteStore::open(&config.state.path)?);
    let client = partner_center_client(&config, store)?;
    let registration = register_partner_center_webhooks(&client, url, overwrite, validate).await?;
    println!("{}", serde_json::to_string_pretty(&registration)?);
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
pub async fn provision_command(config: &Path) -> Result<i32> {
    let config = load(config)?;
    let dv = dataverse_client(&config)?;
    let created = provision(&dv, &config.sync.column_prefix).await?;
    if created.is_empty() {
        println!("every cosell column exists already; nothing to do");
    } else {
        println!("created: {}", created.join(", "));
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
