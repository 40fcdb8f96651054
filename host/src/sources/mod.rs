//! Sources: where notifications of changes enter cosell, all ending in the [`intake`].
//!
//! - [`partner_center_webhook`]: `POST /webhooks/partner-center`, signed deliveries of the
//!   Partner Center Webhooks API (signature checks in `signature.rs`/`certificates.rs`).
//! - [`dataverse_webhook`]: `POST /webhooks/dataverse`, a Dataverse service endpoint's
//!   `RemoteExecutionContext`.
//! - [`dataverse_changes`]: the poller reading Dataverse change tracking (a safety net).
//! - [`partner_center_reconcile`]: the poller listing referrals updated since its cursor, which
//!   also catches events Partner Center parked after 10 failed deliveries.
//! - [`schedule`]: the round-after-round loop both pollers run in.
//!
//! Both webhooks are served by one listener (`[webhooks] listen`), separate from the admin
//! API, because it faces the internet (through a TLS proxy) and the admin API must not. What
//! the handlers read from a delivery (content type, body, signature headers, certificate
//! checks) is the `webhook_formats` crate: pure code, fuzzed by the targets in `fuzz/`.
//!
//! A delivery's credentials (the Dataverse key; the presence and form of Partner Center's
//! signature headers) are checked before its body is read ([`read_body`]): a request without
//! them is answered at once and its connection closed, so an unauthenticated client cannot
//! make the listener buffer `max_body_bytes` or wait for a body it trickles in.

pub mod dataverse_changes;
pub mod dataverse_webhook;
pub mod intake;
pub mod partner_center_reconcile;
pub mod partner_center_webhook;
pub mod schedule;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use intake::Intake;
use std::sync::Arc;

/// What the webhook handlers share.
#[derive(Clone)]
pub struct WebhookState {
    /// Where accepted deliveries are stored as events.
    pub intake: Arc<Intake>,
    /// Larger bodies are answered 413 (`webhooks.max_body_bytes`).
    pub max_body_bytes: usize,
    /// Checks Partner Center deliveries' signatures; `None` without `[partner_center]`, and
    /// then its deliveries are answered 404.
    pub partner_center: Option<Arc<partner_center_webhook::signature::SignatureVerifier>>,
    /// Checks Dataverse deliveries' credential; `None` without `[webhooks.dataverse]`, and then
    /// its deliveries are answered 404.
    pub dataverse: Option<Arc<dataverse_webhook::WebhookAuth>>,
}

/// The webhook listener's routes.
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route(
            "/webhooks/partner-center",
            post(partner_center_webhook::receiver::receive),
        )
        .route("/webhooks/dataverse", post(dataverse_webhook::receive))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// 413 when the request says its body is longer than `limit`: checked before anything else,
/// since it needs nothing read.
pub(crate) fn declared_too_large(headers: &HeaderMap, limit: usize) -> Option<Response> {
    let length = headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse::<u64>()
        .ok()?;
    (length > limit as u64).then(|| too_large(limit))
}

fn too_large(limit: usize) -> Response {
    answer(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than {limit} bytes (webhooks.max_body_bytes)"),
    )
}

/// Reads a delivery's body (after its credentials were checked), at most `limit` bytes: 413
/// beyond it, 408 when the sender stopped sending for `webhooks.body_timeout_ms`, 400 when the
/// body could not be read otherwise.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, Response> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<LengthLimitError>() => Err(too_large(limit)),
        Err(err) if caused_by::<crate::listener::http::BodyTimedOut>(&*err) => Err(answer(
            StatusCode::REQUEST_TIMEOUT,
            "the body stopped arriving (webhooks.body_timeout_ms); send the delivery again",
        )),
        Err(err) => Err(answer(
            StatusCode::BAD_REQUEST,
            format!("the body could not be read: {err}"),
        )),
    }
}

/// Whether `err` or one of its sources is an `E`.
fn caused_by<E: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(err), |err| err.source()).any(|err| err.is::<E>())
}

/// A short plain-text answer.
pub(crate) fn answer(
    status: axum::http::StatusCode,
    text: impl Into<String>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    (status, text.into()).into_response()
}
