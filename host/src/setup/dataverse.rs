//! Dataverse's side of setup: cosell's custom columns (created when missing, idempotently,
//! with the publisher's prefix), the alternate key and change tracking the sync needs, and
//! the `cosell` service endpoint with its steps on opportunity Create, Update, Win and Lose.

use crate::config::{DataverseAuthKind, HostConfig};
use crate::connections::dataverse::DataverseClient;
use crate::connections::odata::literal;
use anyhow::{Context as _, Result};
use serde_json::{Value, json};

/// The name of cosell's service endpoint in Dataverse.
pub const ENDPOINT_NAME: &str = "cosell";
/// The column definitions with `prefix` instead of `cosell_`.
pub fn column_definitions(prefix: &str) -> Vec<Value> {
    let text = include_str!("../../../schema/dataverse-columns.json")
        .replace("\"cosell_", &format!("\"{prefix}"));
    serde_json::from_str(&text).expect("schema/dataverse-columns.json is a JSON array")
}

/// What [`provision`] created; empty when everything was there.
#[derive(Debug, Default)]
pub struct Provisioned {
    /// The columns created (logical names).
    pub columns: Vec<String>,
    /// Whether the alternate key on the referral identifier was created.
    pub key: bool,
    /// Whether change tracking was turned on for opportunity.
    pub change_tracking: bool,
}

impl Provisioned {
    /// One line per thing created, or a line saying nothing was needed.
    pub fn lines(&self, solution: &str) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.columns.is_empty() {
            lines.push(format!(
                "created in solution {solution}: {}",
                self.columns.join(", ")
            ));
        }
        if self.key {
            lines.push(format!(
                "created the alternate key on the referral identifier in solution {solution}"
            ));
        }
        if self.change_tracking {
            lines.push("turned on change tracking for opportunity".to_owned());
        }
        if lines.is_empty() {
            lines.push("every cosell column, the alternate key and change tracking exist already; nothing to do".into());
        }
        lines
    }
}

/// Makes Dataverse ready for cosell, inside `solution` (whose publisher's customization
/// prefix must be `prefix`, as the columns are named `<prefix>_…`): the missing cosell columns
/// on opportunity, the alternate key on the referral identifier column, and change tracking
/// on opportunity. Safe to run again.
pub async fn provision(dv: &DataverseClient, solution: &str, prefix: &str) -> Result<Provisioned> {
    let column_prefix = format!("{prefix}_");
    let mut done = Provisioned::default();
    for (logical, definition) in missing_columns(dv, &column_prefix).await? {
        dv.create_attribute("opportunity", &definition, solution)
            .await
            .with_context(|| format!("creating column {logical} in solution {solution}"))?;
        done.columns.push(logical);
    }
    let have = key_and_tracking(dv, &column_prefix).await?;
    if !have.key {
        let key_column = format!("{column_prefix}referralidentifier");
        dv.create_alternate_key(
            "opportunity",
            &format!("{column_prefix}ReferralIdentifierKey"),
            &[key_column.as_str()],
            solution,
        )
        .await
        .with_context(|| format!("creating the alternate key on {key_column}"))?;
        done.key = true;
    }
    if !have.change_tracking {
        dv.enable_change_tracking("opportunity", solution)
            .await
            .context("turning on change tracking for opportunity")?;
        done.change_tracking = true;
    }
    Ok(done)
}

/// The cosell columns (logical name, Metadata API definition) opportunity lacks, named with
/// `prefix` (e.g. `cosell_`).
pub async fn missing_columns(dv: &DataverseClient, prefix: &str) -> Result<Vec<(String, Value)>> {
    let existing = dv.attribute_names("opportunity").await?;
    Ok(column_definitions(prefix)
        .into_iter()
        .map(|definition| {
            let logical = definition["SchemaName"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_lowercase();
            (logical, definition)
        })
        .filter(|(logical, _)| {
            !existing
                .iter()
                .any(|name| name.eq_ignore_ascii_case(logical))
        })
        .collect())
}

/// What provisioning adds to opportunity besides the columns, as Dataverse has it now.
#[derive(Debug, Clone, Copy)]
pub struct KeyAndTracking {
    /// The alternate key on `<prefix>referralidentifier` exists.
    pub key: bool,
    /// Change tracking is on.
    pub change_tracking: bool,
}

impl KeyAndTracking {
    /// What is missing, in words (empty when nothing is).
    pub fn missing(&self, prefix: &str) -> Vec<String> {
        let mut missing = Vec::new();
        if !self.key {
            missing.push(format!("the alternate key on {prefix}referralidentifier"));
        }
        if !self.change_tracking {
            missing.push("change tracking on opportunity".to_owned());
        }
        missing
    }
}

/// Reads whether opportunity has the alternate key on `<prefix>referralidentifier` (prefix
/// e.g. `cosell_`) and change tracking.
pub async fn key_and_tracking(dv: &DataverseClient, prefix: &str) -> Result<KeyAndTracking> {
    let key_column = format!("{prefix}referralidentifier");
    let keys = dv.alternate_keys("opportunity").await?;
    Ok(KeyAndTracking {
        key: keys
            .iter()
            .any(|k| k.len() == 1 && k[0].eq_ignore_ascii_case(&key_column)),
        change_tracking: dv.change_tracking_enabled("opportunity").await?,
    })
}

/// The publisher prefix provisioning uses: `given`, which must match the configured column
/// prefix (`[sync] column_prefix`, the mappings' `column-prefix`), or that prefix without its
/// `_`.
pub fn publisher_prefix(config: &HostConfig, given: Option<&str>) -> Result<String> {
    let configured = config.sync.column_prefix.trim_end_matches('_').to_owned();
    match given {
        None => Ok(configured),
        Some(p) if p.trim_end_matches('_').eq_ignore_ascii_case(&configured) => Ok(configured),
        Some(p) => anyhow::bail!(
            "--publisher-prefix {p} does not match the configured column prefix `{}`: \
             cosell reads its columns as `{}…`; set `[sync] column_prefix = \"{p}_\"` and the \
             mappings' `column-prefix = \"{p}_\"` in the configuration, or provision in a \
             solution whose publisher's prefix is `{configured}`",
            config.sync.column_prefix,
            config.sync.column_prefix,
        ),
    }
}

fn authvalue(kind: DataverseAuthKind, name: &str, value: &str) -> String {
    match kind {
        DataverseAuthKind::WebhookKey => value.to_owned(),
        _ => format!(r#"<settings><setting name="{name}" value="{value}" /></settings>"#),
    }
}

/// The id (`id_column`) of the first row of the entity set `set` that matches the OData
/// `filter`, or `None` when no row does.
pub async fn find_one(
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
        // JSON: the RemoteExecutionContext cosell reads (not .NET binary or text XML).
        "messageformat": 2,
    });
    let update_columns = super::update_columns::filtering_attributes(config);
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
        // Asynchronous (mode 1), so a slow or unreachable cosell never holds up a seller's
        // save; its finished system jobs deleted, so they don't fill the environment.
        let mut settings = json!({"mode": 1, "stage": 40, "rank": 1, "asyncautodelete": true});
        if message == "Update" {
            settings["filteringattributes"] = json!(update_columns);
        }
        if let Some(existing) = find_one(
            dv,
            "sdkmessageprocessingsteps",
            "sdkmessageprocessingstepid",
            &format!("name eq {}", literal(&step_name)),
        )
        .await?
        {
            dv.update("sdkmessageprocessingsteps", &existing, &settings, None)
                .await
                .with_context(|| format!("updating the step `{step_name}`"))?;
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
        let mut step = json!({
            "name": step_name,
            "eventhandler_serviceendpoint@odata.bind": format!("/serviceendpoints({endpoint_id})"),
            "sdkmessageid@odata.bind": format!("/sdkmessages({message_id})"),
            "sdkmessagefilterid@odata.bind": format!("/sdkmessagefilters({filter_id})"),
        });
        for (key, value) in settings.as_object().into_iter().flatten() {
            step[key] = value.clone();
        }
        dv.create("sdkmessageprocessingsteps", &step).await?;
    }
    Ok(endpoint_id)
}
