//! `POST /webhooks/partner-center`: a Partner Center Webhooks API delivery.
//!
//! The signature headers are checked first, before the body is read (presence and form: 400 or
//! 401, and the connection closed), then the signature over the raw body
//! ([`super::signature`]): 401/400 and nothing stored when it fails, whatever else is wrong
//! with the request (only a declared length over the limit is answered 413 before). Then the
//! content
//! type (415 unless JSON or absent, `webhook_formats::content_type`) and the body
//! (`webhook_formats::partner_center`: the event only names the referral, the last segment of
//! `ResourceUri`; the engine fetches it). The 200 goes back only after the event is stored.
//! `test-created` (a validation event) is answered 200 and not stored. A replayed delivery is
//! treated as Partner Center's own retry would be: stored again (it coalesces with a waiting
//! event of the same referral), and the state-based sync writes nothing for it.

use super::signature::{DeliveryProof, RejectedDelivery};
use crate::sources::{WebhookState, answer, declared_too_large, read_body};
use crate::store::Side;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use webhook_formats::content_type;
use webhook_formats::partner_center::{Event, parse_event};

pub use webhook_formats::partner_center::{REFERRAL_EVENTS, referral_id};

const ORIGIN: &str = "partner-center-webhook";

/// The handler.
pub async fn receive(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(too_large) = declared_too_large(&headers, state.max_body_bytes) {
        state.intake.record_unqueued(ORIGIN, "refused");
        return too_large;
    }
    let Some(verifier) = &state.partner_center else {
        state.intake.record_unqueued(ORIGIN, "refused");
        return answer(
            StatusCode::NOT_FOUND,
            "Partner Center is not configured on this host",
        );
    };
    let proof = match DeliveryProof::from_headers(&headers) {
        Ok(proof) => proof,
        Err(rejected) => return refuse(&state, rejected),
    };
    let body = match read_body(body, state.max_body_bytes).await {
        Ok(body) => body,
        Err(refused) => {
            state.intake.record_unqueued(ORIGIN, "refused");
            return refused;
        }
    };
    if let Err(rejected) = verifier.verify_proof(&proof, &body).await {
        return refuse(&state, rejected);
    }
    if !content_type::headers_are_json(&headers) {
        state.intake.record_unqueued(ORIGIN, "refused");
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a Partner Center event is application/json",
        );
    }
    let id = match parse_event(&body) {
        Ok(Event::Referral { id, .. }) => id,
        Ok(Event::Ignored { name }) => {
            state.intake.record_unqueued(ORIGIN, "ignored");
            return answer(StatusCode::OK, format!("event `{name}` needs nothing"));
        }
        Err(e) => {
            state.intake.record_unqueued(ORIGIN, "refused");
            return answer(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let payload = String::from_utf8_lossy(&body);
    match state
        .intake
        .accept_grouped(Side::PartnerCenter, id, ORIGIN, payload.to_string(), None)
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

/// The answer to a delivery whose signature does not hold (or whose headers do not carry one).
fn refuse(state: &WebhookState, rejected: RejectedDelivery) -> Response {
    tracing::warn!(reason = %rejected.reason, status = rejected.status, "refused a Partner Center delivery");
    state.intake.record_unqueued(ORIGIN, "refused");
    let status = StatusCode::from_u16(rejected.status).unwrap_or(StatusCode::UNAUTHORIZED);
    answer(status, rejected.reason)
}
