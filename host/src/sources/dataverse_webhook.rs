//! `POST /webhooks/dataverse`: a Dataverse webhook step's `RemoteExecutionContext`.
//!
//! Dataverse authenticates a delivery the way its service endpoint was registered (reference
//! §5.2): `HttpHeader` sends the configured header, `WebhookKey` a `code` query parameter,
//! `HttpQueryString` the configured query parameters. The value is compared in constant time,
//! and checked first, before the body is read: without it the answer is 401 whatever else is
//! wrong (only a declared length over the limit is answered 413 before). Then the content
//! type (415 unless JSON or absent, `webhook_formats::content_type`) and the body
//! (`webhook_formats::dataverse`): only `PrimaryEntityName` and `PrimaryEntityId` are used, the
//! engine reads the opportunity itself, so a delivery's possibly stale image (and its 256 KB
//! truncation) never matters. The `Target`'s `RowVersion` is kept too: a delivery naming the
//! version cosell last synced is its own write's echo, answered 200 and not queued.

use super::intake::Accepted;
use super::{WebhookState, answer, declared_too_large, read_body};
use crate::config::{DataverseAuthKind, Secret};
use crate::store::Side;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use webhook_formats::content_type;
use webhook_formats::dataverse::{Context, parse_context};

const ORIGIN: &str = "dataverse-webhook";

/// How deliveries must authenticate.
pub struct WebhookAuth {
    /// Where the credential is: a header, the `code` query parameter, or a query parameter.
    pub kind: DataverseAuthKind,
    /// Header or query parameter name (`code` for a webhook key).
    pub name: String,
    /// The credential every delivery must carry.
    pub value: Secret,
}

impl WebhookAuth {
    /// Whether the request carries the configured credential.
    pub fn admits(&self, headers: &HeaderMap, query: Option<&str>) -> bool {
        let presented = match self.kind {
            DataverseAuthKind::HttpHeader => headers
                .get(self.name.as_str())
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            DataverseAuthKind::WebhookKey | DataverseAuthKind::QueryString => {
                let name = if self.kind == DataverseAuthKind::WebhookKey {
                    "code"
                } else {
                    self.name.as_str()
                };
                url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.into_owned())
            }
        };
        presented.is_some_and(|p| self.value.matches(&p))
    }
}

/// The handler.
pub async fn receive(
    State(state): State<WebhookState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(too_large) = declared_too_large(&headers, state.max_body_bytes) {
        state.intake.record_unqueued(ORIGIN, "refused");
        return too_large;
    }
    let Some(auth) = &state.dataverse else {
        state.intake.record_unqueued(ORIGIN, "refused");
        return answer(
            StatusCode::NOT_FOUND,
            "[webhooks.dataverse] is not configured on this host",
        );
    };
    if !auth.admits(&headers, query.as_deref()) {
        state.intake.record_unqueued(ORIGIN, "refused");
        return answer(
            StatusCode::UNAUTHORIZED,
            "the delivery does not carry the configured webhook credential",
        );
    }
    if !content_type::headers_are_json(&headers) {
        state.intake.record_unqueued(ORIGIN, "refused");
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a RemoteExecutionContext is application/json",
        );
    }
    let body = match read_body(body, state.max_body_bytes).await {
        Ok(body) => body,
        Err(refused) => {
            state.intake.record_unqueued(ORIGIN, "refused");
            return refused;
        }
    };
    let context = match parse_context(&body) {
        Ok(context) => context,
        Err(e) => {
            state.intake.record_unqueued(ORIGIN, "refused");
            return answer(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let (
        Context::Opportunity {
            id,
            row_version,
            after_commit,
            ..
        },
        Some(payload),
    ) = (&context, context.queue_payload())
    else {
        state.intake.record_unqueued(ORIGIN, "ignored");
        return answer(StatusCode::OK, "not an opportunity; nothing to do");
    };
    // Sent after the write committed, so the run that wrote can settle meanwhile. A
    // synchronous step's write waits for this answer: waiting for its run would hold both.
    if *after_commit && row_version.is_some() {
        state.intake.after_writes_in_flight(id).await;
    }
    match state
        .intake
        .accept_grouped(
            Side::Dataverse,
            id.clone(),
            ORIGIN,
            payload,
            row_version.clone(),
        )
        .await
    {
        Ok(Accepted::Stored(_)) => answer(StatusCode::OK, "stored"),
        Ok(Accepted::OwnWrite) => answer(
            StatusCode::OK,
            "cosell's own write (the version it last synced); nothing to do",
        ),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "could not store a Dataverse event");
            // Dataverse retries once after a 503 (reference §5.5); the poller catches the rest.
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "the event could not be stored; send it again",
            )
        }
    }
}
