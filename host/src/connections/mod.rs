//! Connections to the outside services `cosell` keeps in sync.
//!
//! Each client owns its authentication (tokens cached and refreshed before expiry), sends the
//! service's tracing headers, puts a timeout on every call and retries what is worth retrying
//! (429 after `Retry-After`, 5xx and connection errors with exponential backoff and jitter).
//!
//! - [`partner_center`]: the Partner Center Referrals API with delegated (App+User) auth.
//! - [`dataverse`]: the Dataverse Web API (Dynamics 365) with client-credentials auth, `$batch`,
//!   change tracking, the Metadata API and adaptive concurrency under service protection limits.
//! - [`oauth`]: the token endpoint call and token cache entry both clients use.
//! - [`odata`]: OData string literals, quoted (and percent-encoded for a URL) in one place.
//! - [`retry`]: backoff with jitter, `Retry-After` and request ids, shared by both clients.
//! - `send`: the one request loop both clients send through (token, 401, 429, 5xx and
//!   connection errors), with the one rule for when a request that is not idempotent may be
//!   sent again: only when it surely did not reach the service.
//! - [`telemetry`]: what both clients report about each request and token (metrics,
//!   readiness), by a fixed vocabulary of operations.

pub mod dataverse;
pub mod oauth;
pub mod odata;
pub mod partner_center;
pub mod retry;
pub(crate) mod send;
pub mod telemetry;

/// The readable message of an error body: `{"error": {"message"}}` (Partner Center, Dataverse),
/// `{"error_description"}` (Entra ID) or the text itself, shortened.
pub(crate) fn message_of(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let found = parsed.as_ref().and_then(|v| {
        v["error"]["message"]
            .as_str()
            .or_else(|| v["error_description"].as_str())
            .or_else(|| v["message"].as_str())
            .or_else(|| v["error"].as_str())
            .map(str::to_owned)
    });
    found.unwrap_or_else(|| {
        let text = body.trim();
        match text.char_indices().nth(300) {
            Some((i, _)) => format!("{}…", &text[..i]),
            None if text.is_empty() => "(empty body)".into(),
            None => text.to_owned(),
        }
    })
}
