//! The Partner Center Webhooks API: the tenant's one registration (reference §2).

use super::client::PartnerCenterClient;
use super::{PartnerCenterError, Result};
use reqwest::Method;
use serde_json::{Value, json};

const REGISTRATION: &str = "/webhooks/v1/registration";

impl PartnerCenterClient {
    /// The current registration, if any.
    pub async fn webhook_registration(&self) -> Result<Option<Value>> {
        let url = format!("{}{REGISTRATION}", self.base_url());
        match self
            .call(Method::GET, &url, None, &[], "webhook registration")
            .await
        {
            Ok((_, body)) => Ok(Some(body)),
            Err(PartnerCenterError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Registers `url` for `events`; with `overwrite` an existing registration is replaced
    /// (PUT), without it an existing one is an error (POST answers 409).
    pub async fn register_webhook(
        &self,
        url: &str,
        events: &[&str],
        overwrite: bool,
    ) -> Result<Value> {
        let endpoint = format!("{}{REGISTRATION}", self.base_url());
        let body = json!({ "WebhookUrl": url, "WebhookEvents": events });
        let method = if overwrite { Method::PUT } else { Method::POST };
        let (_, registered) = self
            .call(method, &endpoint, Some(&body), &[], "webhook registration")
            .await?;
        Ok(registered)
    }
}

const EVENTS: &str = "/webhooks/v1/registration/events";
const VALIDATION: &str = "/webhooks/v1/registration/validationEvents";

impl PartnerCenterClient {
    /// The event names a registration may ask for.
    pub async fn webhook_events(&self) -> Result<Vec<String>> {
        let url = format!("{}{EVENTS}", self.base_url());
        let (_, body) = self
            .call(Method::GET, &url, None, &[], "webhook events")
            .await?;
        Ok(body
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str().map(str::to_owned))
            .collect())
    }

    /// Asks Partner Center to send a `test-created` event to the registered URL; answers the
    /// validation's correlation id.
    pub async fn send_validation_event(&self) -> Result<String> {
        let url = format!("{}{VALIDATION}", self.base_url());
        let (_, body) = self
            .call(
                Method::POST,
                &url,
                Some(&json!({})),
                &[],
                "webhook validation",
            )
            .await?;
        body["correlationId"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| {
                PartnerCenterError::InvalidResponse(
                    "a validation answer without correlationId".into(),
                )
            })
    }

    /// The delivery attempts of a validation event so far.
    pub async fn validation_event(&self, correlation_id: &str) -> Result<Value> {
        let url = format!("{}{VALIDATION}/{correlation_id}", self.base_url());
        let (_, body) = self
            .call(Method::GET, &url, None, &[], "webhook validation")
            .await?;
        Ok(body)
    }
}
