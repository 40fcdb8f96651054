//! `POST /webhooks/partner-center`: a Partner Center Webhooks API delivery.
//!
//! The signature is checked over the raw body first ([`super::signature`]): 401/400 and
//! nothing stored when it fails. The body is `{EventName, ResourceUri, ResourceName, AuditUri,
//! ResourceChangeUtcDate}` (member names read case-insensitively: the docs write PascalCase,
//! the swagger camelCase). The event only names the referral (the last segment of
//! `ResourceUri`); the engine fetches it. The 200 goes back only after the event is stored.
//! `test-created` (a validation event) is answered 200 and not stored.

use crate::sources::intake::plausible_id;
use crate::sources::{WebhookState, answer};
use crate::store::Side;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

const ORIGIN: &str = "partner-center-webhook";
const REFERRAL_EVENTS: [&str; 4] = [
    "referral-created",
    "referral-updated",
    "related-referral-created",
    "related-referral-updated",
];

/// A member of `body` by name, ignoring case.
fn member<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

/// The referral id an event names: the last path segment of its resource URI.
pub fn referral_id(resource_uri: &str) -> Option<&str> {
    let path = resource_uri.split(['?', '#']).next()?;
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|id| plausible_id(id))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
}

/// The handler.
pub async fn receive(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(verifier) = &state.partner_center else {
        state.intake.record_unqueued(ORIGIN, "refused");
        return answer(
            StatusCode::NOT_FOUND,
            "Partner Center is not configured on this host",
        );
    };
    if let Err(rejected) = verifier.verify(&headers, &body).await {
        tracing::warn!(reason = %rejected.reason, status = rejected.status, "refused a Partner Center delivery");
        state.intake.record_unqueued(ORIGIN, "refused");
        let status = StatusCode::from_u16(rejected.status).unwrap_or(StatusCode::UNAUTHORIZED);
        return answer(status, rejected.reason);
    }
    if !is_json(&headers) {
        state.intake.record_unqueued(ORIGIN, "refused");
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a Partner Center event is application/json",
        );
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        state.intake.record_unqueued(ORIGIN, "refused");
        return answer(StatusCode::BAD_REQUEST, "the body is not a JSON event");
    };
    let name = member(&event, "EventName").unwrap_or_default();
    if !REFERRAL_EVENTS.contains(&name) {
        state.intake.record_unqueued(ORIGIN, "ignored");
        return answer(StatusCode::OK, format!("event `{name}` needs nothing"));
    }
    let Some(id) = member(&event, "ResourceUri").and_then(referral_id) else {
        state.intake.record_unqueued(ORIGIN, "refused");
        return answer(
            StatusCode::BAD_REQUEST,
            "ResourceUri does not name a referral",
        );
    };
    let payload = String::from_utf8_lossy(&body);
    match state
        .intake
        .accept_async(
            Side::PartnerCenter,
            id.to_owned(),
            ORIGIN,
            payload.to_string(),
        )
        .await
    {
        Ok(_) => answer(StatusCode::OK, "stored"),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "could not store a Partner Center event");
            // Partner Center retries a failed delivery.
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "the event could not be stored; send it again",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_referral_id_is_the_last_segment_and_nothing_odd() {
        assert_eq!(
            referral_id("https://api.partner.microsoft.com/v1.0/engagements/referrals/abc-1"),
            Some("abc-1")
        );
        assert_eq!(referral_id("http://x/referrals/abc/?q=1"), Some("abc"));
        assert_eq!(referral_id("http://x/referrals/..%2f"), None);
        assert_eq!(referral_id(""), None);
    }
}
