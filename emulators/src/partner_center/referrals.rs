//! The Referrals API `/v1.0/engagements/referrals` (reference §1.4–§1.10, §5b): the store and
//! the writes every caller shares (the partner's API calls and the Microsoft side alike). The
//! HTTP handlers are in [`super::referrals_http`]; this doc describes the behaviour of both.
//!
//! - List: the OData envelope `{"@odata.context", "@odata.count", "value", "@odata.nextLink"}`
//!   with the subset in [`super::odata`]. `$top` is the page size (as in the docs' examples;
//!   default `default_page_size`, 100); `$skip` is honoured; `$count`/`$expand` are accepted
//!   and ignored. `@odata.count` is the number of matches over all pages. The next page is an
//!   opaque `$skiptoken` carrying the query and offset (base64url JSON); without `$orderby` the
//!   order is creation order.
//! - Create (`POST`, 201): `type`, `customerProfile`, `consent` and `details` are required. The
//!   server sets `id`, `engagementId`, `eTag`, timestamps, `direction: Outgoing`, the
//!   organisation and `links`. A partner-created referral is its own, so it starts
//!   `Active/Accepted` (the docs' sample sent `New/Pending` and got `Active/Accepted`). The second
//!   step of a co-sell referral names the first one's `engagementId` and targets
//!   `{"type":"BusinessProfileLocation","id":"msft"}`: an unknown `engagementId`, or a Microsoft
//!   target without one, is a 400.
//! - `PATCH`: JSON Patch, replace/add only; `If-Match` optional; 204, or 200 with the body when
//!   `Prefer: return=representation`. Server-owned members (`id`, `eTag`, timestamps, …) are
//!   read-only (400). `PUT`: `If-Match` required — without it 428 `preconditionRequired` (the
//!   code is not documented); server-owned members are taken from the stored referral, and a
//!   body still carrying `links` is a 400 (the docs say to remove it).
//! - Every write: a new `eTag`, `updatedDateTime`; `acceptedDateTime`/`closedDateTime` when the
//!   status becomes Active/Closed; the [`super::status`] table (400 `invalidStatusTransition`);
//!   the documented 412 body on an `If-Match` mismatch (`*` matches anything). A `dealValue`
//!   sent as a numeric string (as in the docs' PATCH sample) is stored as a number.
//! - Expiry: an Incoming referral still `New` (Pending or Received: not responded to) 14 days
//!   (`referral_expiry`) after creation becomes `Closed/Expired`, applied lazily before every
//!   read and write, dated at its expiry instant, with a `referral-updated` event.

use super::webhooks::WebhookEvent;
use super::{Inner, status};
use crate::common::server::error_response;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Members only the server writes.
pub const READ_ONLY: [&str; 11] = [
    "id",
    "engagementId",
    "eTag",
    "createdDateTime",
    "updatedDateTime",
    "acceptedDateTime",
    "closedDateTime",
    "expirationDateTime",
    "direction",
    "organizationId",
    "links",
];

/// Why a referral operation failed; becomes the HTTP answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    NotFound(String),
    BadRequest(String),
    Transition(String),
    PreconditionFailed,
    PreconditionRequired,
}

/// Whether a referral is one that expires: incoming and New.
fn may_expire(r: &Value) -> bool {
    r["direction"] == "Incoming" && r["status"] == "New"
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::NotFound(id) => error_response(
                StatusCode::NOT_FOUND,
                "notFound",
                &format!("The referral '{id}' was not found."),
            ),
            ApiError::BadRequest(m) => error_response(StatusCode::BAD_REQUEST, "badRequest", &m),
            ApiError::Transition(m) => {
                error_response(StatusCode::BAD_REQUEST, "invalidStatusTransition", &m)
            }
            ApiError::PreconditionRequired => error_response(
                StatusCode::PRECONDITION_REQUIRED,
                "preconditionRequired",
                "An If-Match header with the referral's eTag is required for PUT.",
            ),
            ApiError::PreconditionFailed => (
                StatusCode::PRECONDITION_FAILED,
                Json(json!({"error": {
                    "code": "preconditionFailed",
                    "message": "A precondition provided in the request (such as an if-match header) does not match the resource's current state.",
                    "target": "ETag",
                    "innerError": {
                        "code": "99918",
                        "message": "One of the specified pre-condition is not met. Etag value did not Match",
                        "details": null
                    }
                }})),
            )
                .into_response(),
        }
    }
}

/// The referrals, in creation order.
#[derive(Debug, Default)]
pub struct Store {
    items: Vec<Value>,
    index: HashMap<String, usize>,
    /// No referral seen by the last expiry scan is due before this (`None`: scan). Saves
    /// scanning every referral on every request, which grew with the store.
    next_due: Option<DateTime<Utc>>,
    /// Referrals put since, that may be due (incoming and New): checked one by one.
    unchecked: Vec<usize>,
}

impl Store {
    /// A referral by id.
    pub fn get(&self, id: &str) -> Option<&Value> {
        self.index.get(id).map(|&i| &self.items[i])
    }
    /// Adds or replaces a referral (by its `id`).
    pub fn put(&mut self, referral: Value) {
        let id = referral["id"].as_str().unwrap_or_default().to_owned();
        let i = match self.index.get(&id) {
            Some(&i) => i,
            None => {
                self.index.insert(id, self.items.len());
                self.items.push(Value::Null);
                self.items.len() - 1
            }
        };
        if may_expire(&referral) {
            self.unchecked.push(i);
        }
        self.items[i] = referral;
    }
    /// All referrals in creation order.
    pub fn all(&self) -> &[Value] {
        &self.items
    }
}

/// A timestamp as the service writes it.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn new_etag() -> String {
    format!("\"{}\"", uuid::Uuid::new_v4())
}

fn bare_etag(tag: &str) -> &str {
    let tag = tag.trim();
    tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"')
}

fn state_of(referral: &Value) -> (String, String) {
    let s = |k: &str| referral[k].as_str().unwrap_or("None").to_owned();
    (s("status"), s("substatus"))
}

fn normalise(referral: &mut Value) {
    if let Some(v) = referral.pointer_mut("/details/dealValue")
        && let Some(n) = v.as_str().and_then(|s| s.trim().parse::<f64>().ok())
    {
        *v = json!(n);
    }
}

pub(crate) fn require_members(referral: &Value) -> Result<(), ApiError> {
    if !referral.is_object() {
        return Err(ApiError::BadRequest(
            "the body must be a referral object".into(),
        ));
    }
    for member in ["customerProfile", "consent", "details"] {
        if !referral[member].is_object() {
            return Err(ApiError::BadRequest(format!("'{member}' is required")));
        }
    }
    match referral["type"].as_str() {
        Some("Independent" | "Shared") => Ok(()),
        _ => Err(ApiError::BadRequest(
            "'type' is required: Independent or Shared".into(),
        )),
    }
}

impl Inner {
    /// The URL of a referral on this emulator.
    pub(crate) fn referral_uri(&self, id: &str) -> String {
        format!("{}/v1.0/engagements/referrals/{id}", self.base_url())
    }

    fn emit(&self, name: &str, id: &str, at: DateTime<Utc>) {
        let event = WebhookEvent::new(name, "referral", self.referral_uri(id), at);
        self.webhooks.enqueue(event);
    }

    fn links(&self, id: &str, engagement: &str) -> Value {
        json!({
            "relatedReferrals": {
                "uri": format!("{}/v1.0/engagements/referrals?$filter=engagementId eq '{engagement}'", self.base_url()),
                "method": "GET"
            },
            "self": {"uri": self.referral_uri(id), "method": "GET"}
        })
    }

    /// When referral `r` expires, if it is one that can (incoming and New).
    fn due_at(&self, r: &Value) -> Option<DateTime<Utc>> {
        if !may_expire(r) {
            return None;
        }
        r["expirationDateTime"]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc))
            .or_else(|| {
                r["createdDateTime"]
                    .as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .map(|d| d.with_timezone(&Utc) + self.config.referral_expiry)
            })
    }

    /// Closes every due Incoming `New` referral as `Expired` (see the module doc).
    pub(crate) fn expire_due(&self) {
        let now = self.clock.now();
        let mut expired = Vec::new();
        {
            let mut store = self.lock_store();
            if let Some(mut next) = store.next_due {
                for i in std::mem::take(&mut store.unchecked) {
                    if let Some(at) = self.due_at(&store.items[i]) {
                        next = next.min(at);
                    }
                }
                store.next_due = Some(next);
                if now < next {
                    return;
                }
            }
            let mut next = DateTime::<Utc>::MAX_UTC;
            let mut due: Vec<(Value, DateTime<Utc>)> = Vec::new();
            for r in store.all() {
                match self.due_at(r) {
                    Some(at) if at <= now => due.push((r.clone(), at)),
                    Some(at) => next = next.min(at),
                    None => {}
                }
            }
            for (mut r, at) in due {
                r["status"] = json!("Closed");
                r["substatus"] = json!("Expired");
                r["closedDateTime"] = json!(timestamp(at));
                r["updatedDateTime"] = json!(timestamp(at));
                r["eTag"] = json!(new_etag());
                expired.push((r["id"].as_str().unwrap_or_default().to_owned(), at));
                store.put(r);
            }
            store.unchecked.clear();
            store.next_due = Some(next);
        }
        for (id, at) in expired {
            self.emit("referral-updated", &id, at);
        }
    }

    /// Stores a new referral: sets the server-owned members, emits `referral-created`.
    pub(crate) fn insert_new(&self, mut referral: Value) -> Value {
        let now = self.clock.now();
        let id = referral["id"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let engagement = referral["engagementId"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        normalise(&mut referral);
        let created = referral["createdDateTime"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| timestamp(now));
        let fields = [
            ("id", json!(id)),
            ("engagementId", json!(engagement)),
            ("eTag", json!(new_etag())),
            ("createdDateTime", json!(created)),
            (
                "updatedDateTime",
                referral
                    .get("updatedDateTime")
                    .cloned()
                    .unwrap_or(json!(created)),
            ),
            ("links", self.links(&id, &engagement)),
        ];
        for (k, v) in fields {
            referral[k] = v;
        }
        for (k, default) in [
            ("team", json!([])),
            ("target", json!([])),
            ("tags", json!([])),
        ] {
            if referral[k].is_null() {
                referral[k] = default;
            }
        }
        self.lock_store().put(referral.clone());
        self.emit("referral-created", &id, now);
        referral
    }

    /// The partner's create (`POST /v1.0/engagements/referrals`).
    pub(crate) fn create_outgoing(&self, mut body: Value) -> Result<Value, ApiError> {
        require_members(&body)?;
        let engagement = body["engagementId"].as_str().map(str::to_owned);
        let targets_msft = body["target"].as_array().is_some_and(|t| {
            t.iter()
                .any(|x| x["type"] == "BusinessProfileLocation" && x["id"] == "msft")
        });
        match &engagement {
            Some(e) => {
                let store = self.lock_store();
                let Some(first) = store.all().iter().find(|r| r["engagementId"] == e.as_str())
                else {
                    return Err(ApiError::BadRequest(format!(
                        "engagementId '{e}' does not belong to an existing referral"
                    )));
                };
                if targets_msft && first["type"] != "Shared" {
                    return Err(ApiError::BadRequest(
                        "a referral for Microsoft must join a Shared referral's engagement".into(),
                    ));
                }
            }
            None if targets_msft => {
                return Err(ApiError::BadRequest(
                    "a referral targeting Microsoft (msft) is the second step of a co-sell: create the Shared referral first and pass its engagementId".into(),
                ));
            }
            None => {}
        }
        let obj = body.as_object_mut().expect("checked above");
        for k in READ_ONLY {
            if k != "engagementId" {
                obj.remove(k);
            }
        }
        let now = timestamp(self.clock.now());
        let (s, sub) = state_of(&body);
        let (s, sub) = match (s.as_str(), sub.as_str()) {
            ("None" | "New", _) | ("Active", _) => ("Active".to_owned(), "Accepted".to_owned()),
            _ => (s, sub),
        };
        status::check_state(&s, &sub).map_err(ApiError::Transition)?;
        body["status"] = json!(s);
        body["substatus"] = json!(sub);
        body["direction"] = json!("Outgoing");
        body["organizationId"] = json!(self.config.organization_id);
        body["organizationName"] = json!(self.config.organization_name);
        if s == "Active" {
            body["acceptedDateTime"] = json!(now);
        }
        if s == "Closed" {
            body["closedDateTime"] = json!(now);
        }
        Ok(self.insert_new(body))
    }

    /// Every write: checks existence, `If-Match`, the change `edit` makes, the status table;
    /// stamps the server members and emits `referral-updated`. `edit` gets a copy.
    pub(crate) fn write(
        &self,
        id: &str,
        if_match: Option<&str>,
        edit: impl FnOnce(&Value, &mut Value) -> Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        self.expire_due();
        let now = self.clock.now();
        let updated = {
            let mut store = self.lock_store();
            let current = store
                .get(id)
                .cloned()
                .ok_or_else(|| ApiError::NotFound(id.to_owned()))?;
            if let Some(tag) = if_match
                && tag.trim() != "*"
                && bare_etag(tag) != bare_etag(current["eTag"].as_str().unwrap_or_default())
            {
                return Err(ApiError::PreconditionFailed);
            }
            let mut next = current.clone();
            edit(&current, &mut next)?;
            normalise(&mut next);
            if !next.is_object() {
                return Err(ApiError::BadRequest(
                    "the referral must stay an object".into(),
                ));
            }
            let (from, to) = (state_of(&current), state_of(&next));
            status::check_transition((&from.0, &from.1), (&to.0, &to.1))
                .map_err(ApiError::Transition)?;
            if to.0 == "Active" && from.0 != "Active" {
                next["acceptedDateTime"] = json!(timestamp(now));
            }
            if to.0 == "Closed" {
                next["closedDateTime"] = json!(timestamp(now));
            }
            next["eTag"] = json!(new_etag());
            next["updatedDateTime"] = json!(timestamp(now));
            store.put(next.clone());
            next
        };
        self.emit("referral-updated", id, now);
        Ok(updated)
    }

    /// Whether a read by id sees `referral` yet: not while it is younger than the injected
    /// `read_lag_ms` (emulated time).
    pub(crate) fn readable(&self, referral: &Value) -> bool {
        let lag = self.faults.get().read_lag_ms;
        if lag == 0 {
            return true;
        }
        let created = referral["createdDateTime"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
        created.is_none_or(|at| {
            at.with_timezone(&Utc) + chrono::Duration::milliseconds(lag as i64) <= self.clock.now()
        })
    }

    /// A referral by id, after applying due expiries.
    pub(crate) fn get_referral(&self, id: &str) -> Option<Value> {
        self.expire_due();
        self.lock_store().get(id).cloned()
    }
}
