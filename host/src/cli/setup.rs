//! Setup commands: register cosell's webhooks with both services and create its columns.
//!
//! - `cosell partner-center register-webhooks --url …` registers the four referral events. The
//!   tenant has one registration, possibly shared with other applications: events cosell does
//!   not handle are kept (the union is registered, with cosell's URL) unless `--replace`.
//! - `cosell dataverse provision` creates the custom columns that are missing
//!   (`schema/dataverse-columns.json`, with `sync.column_prefix`), idempotently.
//! - `cosell dataverse register-webhook --url …` creates or updates the `cosell` service
//!   endpoint and its steps on opportunity Create, Update, Win and Lose.

use crate::config::{DataverseAuthKind, HostConfig};
use crate::connections::dataverse::DataverseClient;
use crate::connections::partner_center::webhooks::WebhookRegistration;
use crate::connections::partner_center::{PartnerCenterClient, PartnerCenterError};
use crate::sinks::configured::{dataverse_client, partner_center_client};
use crate::sinks::dataverse::lookups::literal;
use anyhow::{Context as _, Result};
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
pub(crate) const ENDPOINT_NAME: &str = "cosell";

fn load(config: &Path) -> Result<HostConfig> {
    HostConfig::load(config)
}

/// What registering did to the tenant's one registration.
#[derive(Debug, Clone)]
pub struct RegistrationOutcome {
    /// Partner Center's answer.
    pub registered: Value,
    /// The registration found before, if any.
    pub previous: Option<WebhookRegistration>,
    /// Events cosell does not handle that were registered and are kept.
    pub kept: Vec<String>,
    /// Events cosell does not handle that `--replace` removed.
    pub removed: Vec<String>,
}

impl RegistrationOutcome {
    /// What a person should know, one line each (for stderr): events kept or removed, and a
    /// URL that changed.
    pub fn notes(&self, url: &str) -> Vec<String> {
        let mut notes = Vec::new();
        let Some(previous) = &self.previous else {
            return notes;
        };
        if !self.removed.is_empty() {
            notes.push(format!(
                "--replace: removed {} from the tenant's webhook registration (they were delivered to {})",
                self.removed.join(", "),
                previous.url
            ));
        }
        if !self.kept.is_empty() {
            notes.push(format!(
                "the tenant's webhook registration already had events cosell does not handle: {}; \
                 they are kept (Partner Center keeps one registration per tenant, so they now go to \
                 {url}, which acknowledges and ignores them); run again with --replace to remove them",
                self.kept.join(", ")
            ));
        }
        if previous.url != url {
            notes.push(format!(
                "the registration pointed at {}; it now points at {url}",
                previous.url
            ));
        }
        notes
    }
}

/// Registers `url` for the referral events (and `test-created`, the validation event, with
/// `validation`). Partner Center keeps one registration per tenant: an existing one keeps its
/// events that cosell does not handle (the union is registered, under cosell's URL), unless
/// `replace`, which removes them. A POST answered 409 (a registration appeared meanwhile) takes
/// the same path. What is kept, removed or redirected is passed to `say` (one line each)
/// before the registration is changed.
pub async fn register_partner_center_webhooks(
    client: &PartnerCenterClient,
    url: &str,
    replace: bool,
    validation: bool,
    say: impl Fn(&str),
) -> Result<RegistrationOutcome> {
    let mut ours: Vec<String> = PARTNER_CENTER_EVENTS
        .iter()
        .map(|e| e.to_string())
        .collect();
    if validation {
        ours.push("test-created".into());
    }
    let mut previous = client
        .webhook_registration()
        .await
        .context("reading the tenant's webhook registration")?;
    if previous.is_none() {
        let registration = WebhookRegistration {
            url: url.to_owned(),
            events: ours.clone(),
            signature_in_ms_header: false,
        };
        match client.create_webhook_registration(&registration).await {
            Ok(registered) => {
                return Ok(RegistrationOutcome {
                    registered,
                    previous: None,
                    kept: Vec::new(),
                    removed: Vec::new(),
                });
            }
            Err(PartnerCenterError::Conflict(_)) => {
                previous = client
                    .webhook_registration()
                    .await
                    .context("reading the webhook registration Partner Center reported (409)")?;
            }
            Err(e) => return Err(e).context("creating the webhook registration"),
        }
    }
    let previous = previous.context(
        "Partner Center answered 409 (a registration exists) but then has none; run the command again",
    )?;
    let foreign: Vec<String> = previous
        .events
        .iter()
        .filter(|e| !ours.iter().any(|o| o.eq_ignore_ascii_case(e)))
        .cloned()
        .collect();
    let (kept, removed) = if replace {
        (Vec::new(), foreign)
    } else {
        (foreign, Vec::new())
    };
    let registration = WebhookRegistration {
        url: url.to_owned(),
        events: ours.into_iter().chain(kept.iter().cloned()).collect(),
        signature_in_ms_header: previous.signature_in_ms_header,
    };
    let mut outcome = RegistrationOutcome {
        registered: Value::Null,
        previous: Some(previous),
        kept,
        removed,
    };
    // Said before the registration changes: what is removed is printed first.
    for note in outcome.notes(url) {
        say(&note);
    }
    outcome.registered = client
        .replace_webhook_registration(&registration)
        .await
        .context("updating the tenant's webhook registration")?;
    Ok(outcome)
}

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

pub(crate) async fn find_one(
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
