//! The Partner Center Webhooks API and the signed event deliveries (reference §2, §5b).
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/webhooks/v1/registration` | the registration, 404 if none |
//! | POST | `/webhooks/v1/registration` | register; 409 if one exists (one per tenant) |
//! | PUT | `/webhooks/v1/registration` | register, overwriting any existing one |
//! | GET | `/webhooks/v1/registration/events` | the event names one can register for |
//! | POST | `/webhooks/v1/registration/validationEvents` | send a `test-created` event → `{correlationId}` |
//! | GET | `/webhooks/v1/registration/validationEvents/{correlationId}` | its per-attempt results |
//! | GET | `/_emulator/webhooks/deliveries` | every delivery attempt and fault (emulator only) |
//! | GET | `/_emulator/webhooks/parked` | events that failed all attempts (emulator only) |
//!
//! Bodies are read with case-insensitive member names (docs send PascalCase, the swagger says
//! camelCase) and answered in the docs' PascalCase. Both App-only and App+User tokens work, for
//! the Webhooks API's audience only. Served on the emulator's second listener.
//!
//! Deliveries (one at a time, or up to `webhook_concurrency` at once): `POST` of `{EventName, ResourceUri, ResourceName, AuditUri, ResourceChangeUtcDate}`
//! to the registered URL, signed as [`super::signing`] says, with `Authorization: Signature <b64>`
//! or, when the registration sets `SignatureTokenToMsSignatureHeader`, `x-ms-signature:
//! Signature <b64>`. A background task takes events from a queue in the order they happened
//! (shuffled when `Faults::webhook_reorder` is on) and sends each once, or not at all / twice
//! as `Faults::for_delivery` decides. A 2xx answer is a success (not documented; assumed). A
//! failed event is retried in its own task, up to `webhook_max_attempts` (10, documented) in all,
//! waiting `webhook_retry_base × 2^(n-2)` before attempt n (the real schedule is not
//! documented), then parked. The registration in force at each attempt is used.
//! `ResourceUri` is the emulator's own `…/v1.0/engagements/referrals/{id}`, so a receiver can
//! GET it (the live value is undocumented; receivers should take the trailing id).
//! Not emitted: `related-referral-*` events (their payload is not documented).

use super::signing::{self, SigningMaterial};
use super::{Api, Inner, authorize};
use crate::common::faults::DeliveryFault;
use crate::common::server::error_response;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use tokio::sync::mpsc;

/// The event names a registration may ask for: the referral events, the validation event and
/// some of Partner Center's other documented events (which the emulator never emits, but a
/// tenant's registration may hold them for another application).
pub const EVENTS: [&str; 8] = [
    "referral-created",
    "referral-updated",
    "related-referral-created",
    "related-referral-updated",
    "test-created",
    "subscription-updated",
    "usagerecords-thresholdExceeded",
    "invoice-ready",
];

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The one webhook registration of the tenant.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Registration {
    pub subscriber_id: String,
    pub webhook_url: String,
    pub webhook_events: Vec<String>,
    pub signature_token_to_ms_signature_header: bool,
    pub last_modified_timestamp: DateTime<Utc>,
}

/// One event as delivered (the documented PascalCase body).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct WebhookEvent {
    pub event_name: String,
    pub resource_uri: String,
    pub resource_name: String,
    pub audit_uri: Option<String>,
    pub resource_change_utc_date: String,
}

impl WebhookEvent {
    /// An event about `resource_uri` that happened at `at`.
    pub fn new(name: &str, resource_name: &str, resource_uri: String, at: DateTime<Utc>) -> Self {
        Self {
            event_name: name.to_owned(),
            resource_uri,
            resource_name: resource_name.to_owned(),
            audit_uri: None,
            // The documented format: 7 fractional digits and an explicit offset.
            resource_change_utc_date: format!("{}+00:00", seven_digits(at)),
        }
    }
}

/// `2018-02-17T00:05:39.5485487`: .NET's round-trip format, 7 fractional digits (chrono has no
/// `%.7f`).
fn seven_digits(at: DateTime<Utc>) -> String {
    format!(
        "{}.{:07}",
        at.format("%Y-%m-%dT%H:%M:%S"),
        at.timestamp_subsec_nanos() / 100
    )
}

/// One delivery attempt or fault, for tests and the sandbox to look at.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    pub event: WebhookEvent,
    /// 1-based attempt number (0 for a dropped event).
    pub attempt: u32,
    /// `delivered`, `failed`, `dropped` (fault) or `duplicated` (fault: a second copy follows).
    pub outcome: String,
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// An event that failed every attempt and was parked (Partner Center's "offline queue").
#[derive(Debug, Clone, Serialize)]
pub struct ParkedEvent {
    pub event: WebhookEvent,
    pub attempts: u32,
    pub last_error: String,
}

#[derive(Debug, Clone)]
struct Queued {
    event: WebhookEvent,
    validation: Option<String>,
}

/// The webhook state of one emulator.
pub struct Webhooks {
    registration: Mutex<Option<Registration>>,
    tx: mpsc::UnboundedSender<Queued>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Queued>>>,
    parked: Mutex<Vec<ParkedEvent>>,
    log: Mutex<Vec<DeliveryRecord>>,
    validations: Mutex<HashMap<String, Value>>,
}

impl Default for Webhooks {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            registration: Mutex::new(None),
            tx,
            rx: Mutex::new(Some(rx)),
            parked: Mutex::default(),
            log: Mutex::default(),
            validations: Mutex::default(),
        }
    }
}

impl Webhooks {
    /// The current registration.
    pub fn registration(&self) -> Option<Registration> {
        lock(&self.registration).clone()
    }

    /// Queues `event` if the registration asks for it (otherwise it is not sent at all).
    pub fn enqueue(&self, event: WebhookEvent) {
        self.enqueue_inner(event, None);
    }

    fn enqueue_inner(&self, event: WebhookEvent, validation: Option<String>) {
        let wanted = self.registration().is_some_and(|r| {
            r.webhook_events
                .iter()
                .any(|e| e.eq_ignore_ascii_case(&event.event_name))
        });
        if wanted {
            let _ = self.tx.send(Queued { event, validation });
        }
    }

    /// Every delivery attempt and fault so far, in order.
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        lock(&self.log).clone()
    }

    /// The parked events.
    pub fn parked(&self) -> Vec<ParkedEvent> {
        lock(&self.parked).clone()
    }

    fn record(&self, record: DeliveryRecord) {
        lock(&self.log).push(record);
    }
}

/// Starts the background deliverer (once; later calls do nothing).
pub(crate) fn start_deliverer(inner: &Arc<Inner>) {
    let Some(rx) = lock(&inner.webhooks.rx).take() else {
        return;
    };
    tokio::spawn(run(Arc::downgrade(inner), rx));
}

async fn run(weak: Weak<Inner>, mut rx: mpsc::UnboundedReceiver<Queued>) {
    // No proxy: receivers are local in every use of the emulator.
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap_or_default();
    let concurrency = weak
        .upgrade()
        .map_or(1, |inner| inner.config.webhook_concurrency.max(1));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(concurrency));
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let Some(inner) = weak.upgrade() else { break };
        inner.faults.order_deliveries(&mut batch);
        for queued in batch {
            match inner.faults.for_delivery() {
                DeliveryFault::Drop => inner.webhooks.record(DeliveryRecord {
                    event: queued.event,
                    attempt: 0,
                    outcome: "dropped".into(),
                    status: None,
                    error: Some("injected fault: delivery dropped".into()),
                }),
                DeliveryFault::Duplicate => {
                    inner.webhooks.record(DeliveryRecord {
                        event: queued.event.clone(),
                        attempt: 0,
                        outcome: "duplicated".into(),
                        status: None,
                        error: None,
                    });
                    deliver(&inner, &client, &queued).await;
                    deliver(&inner, &client, &queued).await;
                }
                DeliveryFault::Deliver if concurrency == 1 => {
                    deliver(&inner, &client, &queued).await
                }
                DeliveryFault::Deliver => {
                    let permit = in_flight
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("the semaphore is never closed");
                    let (inner, client) = (inner.clone(), client.clone());
                    tokio::spawn(async move {
                        deliver(&inner, &client, &queued).await;
                        drop(permit);
                    });
                }
            }
        }
    }
}

/// The first attempt inline (keeping the order on the happy path), retries in their own task.
async fn deliver(inner: &Arc<Inner>, client: &reqwest::Client, queued: &Queued) {
    let body = serde_json::to_vec(&queued.event).expect("an event serialises");
    let Err(mut last_error) = attempt(inner, client, queued, &body, 1).await else {
        return;
    };
    let (inner, client, queued) = (inner.clone(), client.clone(), queued.clone());
    tokio::spawn(async move {
        let max = inner.config.webhook_max_attempts.max(1);
        for n in 2..=max {
            let factor = 1u32 << (n - 2).min(16);
            tokio::time::sleep(inner.config.webhook_retry_base * factor).await;
            match attempt(&inner, &client, &queued, &body, n).await {
                Ok(()) => return,
                Err(e) => last_error = e,
            }
        }
        if let Some(id) = &queued.validation
            && let Some(v) = lock(&inner.webhooks.validations).get_mut(id)
        {
            v["status"] = json!("failed");
        }
        lock(&inner.webhooks.parked).push(ParkedEvent {
            event: queued.event.clone(),
            attempts: max,
            last_error,
        });
    });
}

async fn attempt(
    inner: &Inner,
    client: &reqwest::Client,
    queued: &Queued,
    body: &[u8],
    n: u32,
) -> Result<(), String> {
    let result = match inner.webhooks.registration() {
        None => Err((None, "no webhook registration".to_owned())),
        Some(reg) => {
            let signature = format!("Signature {}", SigningMaterial::get().sign_base64(body));
            let signature_header = if reg.signature_token_to_ms_signature_header {
                "x-ms-signature"
            } else {
                "authorization"
            };
            let sent = client
                .post(&reg.webhook_url)
                .timeout(inner.config.webhook_timeout)
                .header(header::CONTENT_TYPE, "application/json")
                .header(signature_header, signature)
                .header(
                    "x-ms-certificate-url",
                    format!("{}{}", inner.base_url(), signing::CERTIFICATE_PATH),
                )
                .header("x-ms-signature-algorithm", "rsa-sha256")
                .body(body.to_vec())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
                Ok(r) => Err((
                    Some(r.status().as_u16()),
                    format!("answered {}", r.status()),
                )),
                Err(e) => Err((None, e.to_string())),
            }
        }
    };
    let (status, error) = match &result {
        Ok(s) => (Some(*s), None),
        Err((s, e)) => (*s, Some(e.clone())),
    };
    inner.webhooks.record(DeliveryRecord {
        event: queued.event.clone(),
        attempt: n,
        outcome: if result.is_ok() {
            "delivered"
        } else {
            "failed"
        }
        .into(),
        status,
        error: error.clone(),
    });
    if let Some(id) = &queued.validation
        && let Some(v) = lock(&inner.webhooks.validations).get_mut(id)
    {
        let code = status
            .and_then(|s| StatusCode::from_u16(s).ok())
            .and_then(|s| s.canonical_reason())
            .unwrap_or("None");
        if let Some(results) = v["results"].as_array_mut() {
            results.push(json!({
                "responseCode": code,
                "responseMessage": error.clone().unwrap_or_default(),
                "systemError": status.is_none(),
                "dateTimeUtc": seven_digits(inner.clock.now()),
            }));
        }
        if result.is_ok() {
            v["status"] = json!("completed");
        }
    }
    result.map(|_| ()).map_err(|(_, e)| e)
}

fn member<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    body.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

#[allow(
    clippy::result_large_err,
    reason = "the error is the HTTP answer, built once per refused request"
)]
fn parse_registration(inner: &Inner, body: &[u8]) -> Result<Registration, Response> {
    let bad = |m: &str| error_response(StatusCode::BAD_REQUEST, "badRequest", m);
    let body: Value =
        serde_json::from_slice(body).map_err(|e| bad(&format!("invalid JSON: {e}")))?;
    let url = member(&body, "webhookUrl")
        .and_then(Value::as_str)
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .ok_or_else(|| bad("WebhookUrl is required and must be an http(s) URL"))?;
    let events: Vec<String> = member(&body, "webhookEvents")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if events.is_empty() {
        return Err(bad("WebhookEvents must name at least one event"));
    }
    if let Some(unknown) = events
        .iter()
        .find(|e| !EVENTS.iter().any(|k| k.eq_ignore_ascii_case(e)))
    {
        return Err(bad(&format!(
            "'{unknown}' is not a supported webhook event"
        )));
    }
    let flag = member(&body, "signatureTokenToMsSignatureHeader")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Registration {
        subscriber_id: inner.config.tenant_id.clone(),
        webhook_url: url.to_owned(),
        webhook_events: events,
        signature_token_to_ms_signature_header: flag,
        last_modified_timestamp: inner.clock.now(),
    })
}

pub(crate) async fn get_registration(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&inner, &headers, Api::Webhooks) {
        return r;
    }
    match inner.webhooks.registration() {
        Some(r) => Json(r).into_response(),
        None => error_response(
            StatusCode::NOT_FOUND,
            "notFound",
            "No webhook registration exists.",
        ),
    }
}

pub(crate) async fn post_registration(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    write_registration(&inner, &headers, &body, false)
}

pub(crate) async fn put_registration(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    write_registration(&inner, &headers, &body, true)
}

fn write_registration(
    inner: &Inner,
    headers: &HeaderMap,
    body: &[u8],
    overwrite: bool,
) -> Response {
    if let Err(r) = authorize(inner, headers, Api::Webhooks) {
        return r;
    }
    let registration = match parse_registration(inner, body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut current = lock(&inner.webhooks.registration);
    if current.is_some() && !overwrite {
        return error_response(
            StatusCode::CONFLICT,
            "conflict",
            "A webhook registration already exists for this tenant; update it with PUT.",
        );
    }
    *current = Some(registration.clone());
    Json(registration).into_response()
}

pub(crate) async fn get_events(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&inner, &headers, Api::Webhooks) {
        return r;
    }
    Json(EVENTS).into_response()
}

pub(crate) async fn post_validation(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&inner, &headers, Api::Webhooks) {
        return r;
    }
    let Some(reg) = inner.webhooks.registration() else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "badRequest",
            "No webhook registration exists.",
        );
    };
    if !reg
        .webhook_events
        .iter()
        .any(|e| e.eq_ignore_ascii_case("test-created"))
    {
        return error_response(
            StatusCode::BAD_REQUEST,
            "badRequest",
            "Register for the 'test-created' event before posting a validation event.",
        );
    }
    let id = uuid::Uuid::new_v4().to_string();
    lock(&inner.webhooks.validations).insert(
        id.clone(),
        json!({"correlationId": id, "partnerId": inner.config.tenant_id, "status": "pending",
               "callbackUrl": reg.webhook_url, "results": []}),
    );
    let uri = format!(
        "{}/webhooks/v1/registration/validationEvents/{id}",
        inner.webhooks_base_url()
    );
    let event = WebhookEvent::new("test-created", "test", uri, inner.clock.now());
    inner.webhooks.enqueue_inner(event, Some(id.clone()));
    Json(json!({ "correlationId": id })).into_response()
}

pub(crate) async fn get_validation(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorize(&inner, &headers, Api::Webhooks) {
        return r;
    }
    match lock(&inner.webhooks.validations).get(&id) {
        Some(v) => Json(v.clone()).into_response(),
        None => error_response(
            StatusCode::NOT_FOUND,
            "notFound",
            "No such validation event.",
        ),
    }
}

pub(crate) async fn deliveries(State(inner): State<Arc<Inner>>) -> Json<Vec<DeliveryRecord>> {
    Json(inner.webhooks.deliveries())
}

pub(crate) async fn parked(State(inner): State<Arc<Inner>>) -> Json<Vec<ParkedEvent>> {
    Json(inner.webhooks.parked())
}

pub(crate) async fn certificate_der() -> Response {
    (
        [(header::CONTENT_TYPE, "application/pkix-cert")],
        SigningMaterial::get().certificate_der().to_vec(),
    )
        .into_response()
}

pub(crate) async fn certificate_pem() -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        SigningMaterial::get().certificate_pem().to_owned(),
    )
        .into_response()
}
