//! Partner Center's side of setup: the tenant's one webhook registration, which may be shared
//! with other applications, so registering keeps the events cosell does not handle (the union
//! is registered, with cosell's URL) unless the caller asks to replace them.

use crate::connections::partner_center::webhooks::WebhookRegistration;
use crate::connections::partner_center::{PartnerCenterClient, PartnerCenterError};
use anyhow::{Context as _, Result};
use serde_json::Value;

/// The Partner Center events cosell handles.
pub const PARTNER_CENTER_EVENTS: [&str; 4] = [
    "referral-created",
    "referral-updated",
    "related-referral-created",
    "related-referral-updated",
];

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
