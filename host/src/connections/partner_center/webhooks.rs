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
