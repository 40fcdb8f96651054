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

pub mod dataverse_changes;
pub mod dataverse_webhook;
pub mod intake;
pub mod partner_center_reconcile;
pub mod partner_center_webhook;
pub mod schedule;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use intake::Intake;
use std::sync::Arc;

/// What the webhook handlers share.
#[derive(Clone)]
pub struct WebhookState {
    pub intake: Arc<Intake>,
    pub partner_center: Option<Arc<partner_center_webhook::signature::SignatureVerifier>>,
    pub dataverse: Option<Arc<dataverse_webhook::WebhookAuth>>,
}

/// The webhook listener's routes; bodies over `max_body_bytes` get 413.
pub fn router(state: WebhookState, max_body_bytes: usize) -> Router {
    Router::new()
        .route(
            "/webhooks/partner-center",
            post(partner_center_webhook::receiver::receive),
        )
        .route("/webhooks/dataverse", post(dataverse_webhook::receive))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// A short plain-text answer.
pub(crate) fn answer(
    status: axum::http::StatusCode,
    text: impl Into<String>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    (status, text.into()).into_response()
}
