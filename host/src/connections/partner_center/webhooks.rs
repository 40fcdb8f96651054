//! The Partner Center Webhooks API: the tenant's one registration (reference §2), on its own
//! host (`webhooks_url`) with tokens for its own audience ([`Audience::Webhooks`]).

use super::client::PartnerCenterClient;
use super::{Audience, PartnerCenterError, Result};
use reqwest::Method;
use serde_json::{Value, json};

const REGISTRATION: &str = "/webhooks/v1/registration";

/// A webhook registration as Partner Center answers it (member names are PascalCase in the
/// docs and camelCase in the swagger: both are read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRegistration {
    /// Where the events go.
    pub url: String,
    /// The event names registered.
    pub events: Vec<String>,
    /// Signatures in `x-ms-signature` instead of `Authorization`.
    pub signature_in_ms_header: bool,
}

impl WebhookRegistration {
    fn from_json(body: &Value) -> Result<Self> {
        let member = |name: &str| {
            body.as_object().and_then(|o| {
                o.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
            })
        };
        let url = member("webhookUrl")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                PartnerCenterError::InvalidResponse(format!(
                    "a webhook registration without WebhookUrl: {body}"
                ))
            })?
            .to_owned();
        let events = member("webhookEvents")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let signature_in_ms_header = member("signatureTokenToMsSignatureHeader")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(Self {
            url,
            events,
            signature_in_ms_header,
        })
    }

    fn to_json(&self) -> Value {
        let mut body = json!({ "WebhookUrl": self.url, "WebhookEvents": self.events });
        if self.signature_in_ms_header {
            body["SignatureTokenToMsSignatureHeader"] = json!(true);
        }
        body
    }
}

impl PartnerCenterClient {
    /// One Webhooks API call to `path` (under `webhooks_url`, with a Webhooks-audience token);
    /// answers the body. Every Webhooks API call is reported as operation `webhooks` (they are
    /// the setup commands' few).
    async fn webhooks_api(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.webhooks_url());
        let (_, answer) = self
            .call_api(
                Audience::Webhooks,
                "webhooks",
                method,
                &url,
                body,
                &[],
                what,
            )
            .await?;
        Ok(answer)
    }

    /// The tenant's registration, if any.
    pub async fn webhook_registration(&self) -> Result<Option<WebhookRegistration>> {
        match self
            .webhooks_api(Method::GET, REGISTRATION, None, "webhook registration")
            .await
        {
            Ok(body) => Ok(Some(WebhookRegistration::from_json(&body)?)),
            Err(PartnerCenterError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates the registration (POST). Partner Center keeps one per tenant: when one exists
    /// the answer is 409, [`PartnerCenterError::Conflict`].
    pub async fn create_webhook_registration(
        &self,
        registration: &WebhookRegistration,
    ) -> Result<Value> {
        self.write_registration(Method::POST, registration).await
    }

    /// Replaces the tenant's registration, whatever it was (PUT).
    pub async fn replace_webhook_registration(
        &self,
        registration: &WebhookRegistration,
    ) -> Result<Value> {
        self.write_registration(Method::PUT, registration).await
    }

    async fn write_registration(
        &self,
        method: Method,
        registration: &WebhookRegistration,
    ) -> Result<Value> {
        self.webhooks_api(
            method,
            REGISTRATION,
            Some(&registration.to_json()),
            "webhook registration",
        )
        .await
    }
}

const EVENTS: &str = "/webhooks/v1/registration/events";
const VALIDATION: &str = "/webhooks/v1/registration/validationEvents";

impl PartnerCenterClient {
    /// The event names a registration may ask for.
    pub async fn webhook_events(&self) -> Result<Vec<String>> {
        let body = self
            .webhooks_api(Method::GET, EVENTS, None, "webhook events")
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
        let body = self
            .webhooks_api(
                Method::POST,
                VALIDATION,
                Some(&json!({})),
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
        let path = format!("{VALIDATION}/{correlation_id}");
        self.webhooks_api(Method::GET, &path, None, "webhook validation")
            .await
    }
}
