//! The Microsoft side: what a Microsoft seller does to referrals, for tests and `cosell
//! sandbox`, in-process ([`MicrosoftSide`]) and over HTTP (never faulted, no token needed):
//!
//! | method | path | what |
//! |---|---|---|
//! | POST | `/_emulator/microsoft/referrals` | a new incoming referral (body: members to override) → 201 |
//! | PATCH | `/_emulator/microsoft/referrals/{id}` | a seller's edit (body: JSON merge patch) → 200 |
//! | POST | `/_emulator/microsoft/referrals/{id}/accept` | → Active/Accepted |
//! | POST | `/_emulator/microsoft/referrals/{id}/decline` | → Closed/Declined (body optional `{"statusReason"}`) |
//! | POST | `/_emulator/microsoft/referrals/{id}/close` | → Closed/Won or Lost (body `{"won": bool}`) |
//! | POST | `/_emulator/microsoft/seed` | `{"count", "seed"}`: [`MicrosoftSide::seed_demo_data`] |
//! | GET | `/_emulator/refresh-token` | `{"refresh_token"}`: a delegated refresh token for cosell |
//!
//! Every change goes through the same write path as the partner's API (status table, new
//! eTag, webhook events). An incoming referral is `Shared`, `SalesQualified`, `New/Pending`,
//! invited by `msft` (reference §1.6, §1.9) and expires 14 days after creation. Seeded demo data
//! is written straight to the store without webhook events (it stands for history that existed
//! before cosell registered); it is deterministic for a seed except that its timestamps are
//! relative to the emulated now.

use super::referrals::{ApiError, timestamp};
use super::{Inner, PartnerCenter};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use chrono::Duration;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// RFC 7386 JSON merge patch: objects merge recursively, `null` removes, the rest replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// Acts as a Microsoft seller on the emulator's referrals.
#[derive(Clone)]
pub struct MicrosoftSide {
    pub(crate) inner: Arc<Inner>,
}

impl MicrosoftSide {
    fn template(&self) -> Value {
        let now = self.inner.clock.now();
        let config = &self.inner.config;
        json!({
            "name": "Contoso Manufacturing - Dynamics 365 Sales rollout",
            "organizationId": config.organization_id,
            "organizationName": config.organization_name,
            "type": "Shared",
            "qualification": "SalesQualified",
            "direction": "Incoming",
            "status": "New",
            "substatus": "Pending",
            "customerProfile": {
                "name": "Contoso Manufacturing",
                "size": "51to250employees",
                "address": {"addressLine1": "1 Main Street", "city": "Redmond", "state": "WA",
                            "postalCode": "98052", "country": "US"},
                "team": [{"firstName": "Avery", "lastName": "Customer", "email": "avery@contoso.example",
                          "phoneNumber": "+1 425 555 0100"}],
                "ids": []
            },
            "consent": {"consentToShareReferralWithMicrosoftSellers": true, "consentToContact": true,
                        "consentToToShareInfoWithOthers": true},
            "details": {
                "notes": "Customer asked for help with a Dynamics 365 Sales rollout.",
                "dealValue": 50000,
                "currency": "USD",
                "closingDateTime": timestamp(now + Duration::days(90)),
                "requirements": {
                    "industries": [{"id": "Manufacturing"}],
                    "products": [{"id": "Dynamics365Enterprise"}],
                    "services": [{"id": "DeploymentOrMigration"}],
                    "solutions": [{"id": "SOL-Microsoft365", "name": "Microsoft 365", "type": "Name"}]
                }
            },
            "team": [{"firstName": "Sam", "lastName": "Seller", "email": "sam.seller@microsoft.example",
                      "phoneNumber": "+1 425 555 0199"}],
            "inviteContext": {"notes": "Please engage with the customer.", "assistanceRequestCode": "GeneralOrOther",
                              "invitedBy": {"organizationId": "msft", "organizationName": "Microsoft"}},
            "target": [{"type": "BusinessProfileLocation", "id": config.organization_id}],
            "trackingInfo": {"microsoftMsxId": "7-ABCDEFGHIJ"}
        })
    }

    /// A new incoming referral from a Microsoft seller: a realistic one with `overrides`
    /// merged in (RFC 7386). Emits `referral-created`.
    pub fn create_incoming(&self, overrides: Value) -> Value {
        let mut referral = self.template();
        merge(&mut referral, &overrides);
        referral["direction"] = json!("Incoming");
        if referral["status"] == "New" {
            let created = self.inner.clock.now();
            referral["expirationDateTime"] =
                json!(timestamp(created + self.inner.config.referral_expiry));
        }
        for k in ["id", "eTag", "createdDateTime", "updatedDateTime"] {
            referral.as_object_mut().map(|o| o.remove(k));
        }
        self.inner.insert_new(referral)
    }

    /// A seller's edit: `merge_patch` (RFC 7386) applied with the usual checks.
    /// Server-owned members (`id`, `eTag`, timestamps, …) in the patch are ignored.
    pub fn update(&self, id: &str, mut merge_patch: Value) -> Result<Value, ApiError> {
        if let Some(o) = merge_patch.as_object_mut() {
            for k in super::referrals::READ_ONLY {
                o.remove(k);
            }
        }
        self.inner.write(id, None, |_, next| {
            merge(next, &merge_patch);
            Ok(())
        })
    }

    /// Moves a referral to `status`/`substatus` (the status table applies).
    pub fn set_state(&self, id: &str, status: &str, substatus: &str) -> Result<Value, ApiError> {
        self.update(id, json!({"status": status, "substatus": substatus}))
    }

    /// Accepts: Active/Accepted.
    pub fn accept(&self, id: &str) -> Result<Value, ApiError> {
        self.set_state(id, "Active", "Accepted")
    }

    /// Declines: Closed/Declined, with an optional `statusReason`.
    pub fn decline(&self, id: &str, reason: Option<&str>) -> Result<Value, ApiError> {
        let mut patch = json!({"status": "Closed", "substatus": "Declined"});
        if let Some(reason) = reason {
            patch["statusReason"] = json!(reason);
        }
        self.update(id, patch)
    }

    /// Closes as Won or Lost.
    pub fn close(&self, id: &str, won: bool) -> Result<Value, ApiError> {
        self.set_state(id, "Closed", if won { "Won" } else { "Lost" })
    }

    /// Creates `count` realistic referrals cycling through every state (Incoming New/Pending,
    /// New/Received, Active/Accepted both ways, Closed Won/Lost/Declined/Expired), deterministic
    /// for `seed`. No webhook events (see the module doc).
    pub fn seed_demo_data(&self, count: usize, seed: u64) {
        const CUSTOMERS: [&str; 10] = [
            "Contoso",
            "Fabrikam",
            "Northwind Traders",
            "Adventure Works",
            "Tailspin Toys",
            "Wide World Importers",
            "Litware",
            "Proseware",
            "Woodgrove Bank",
            "Alpine Ski House",
        ];
        const COUNTRIES: [(&str, &str, &str); 5] = [
            ("US", "Seattle", "98101"),
            ("GB", "London", "EC1A 1BB"),
            ("DE", "Berlin", "10115"),
            ("FR", "Paris", "75001"),
            ("AU", "Sydney", "2000"),
        ];
        const PRODUCTS: [&str; 5] = [
            "Azure",
            "Microsoft365",
            "Dynamics365Enterprise",
            "PowerBI",
            "Teams",
        ];
        const STATES: [(&str, &str, &str); 8] = [
            ("Incoming", "New", "Pending"),
            ("Incoming", "New", "Received"),
            ("Incoming", "Active", "Accepted"),
            ("Outgoing", "Active", "Accepted"),
            ("Incoming", "Closed", "Won"),
            ("Outgoing", "Closed", "Lost"),
            ("Incoming", "Closed", "Declined"),
            ("Incoming", "Closed", "Expired"),
        ];
        let mut rng = StdRng::seed_from_u64(seed);
        let now = self.inner.clock.now();
        for i in 0..count {
            let (direction, status, substatus) = STATES[i % STATES.len()];
            let customer = *CUSTOMERS.choose(&mut rng).expect("not empty");
            let (country, city, postal) = *COUNTRIES.choose(&mut rng).expect("not empty");
            let product = *PRODUCTS.choose(&mut rng).expect("not empty");
            let id = uuid::Builder::from_random_bytes(rng.random::<[u8; 16]>()).into_uuid();
            let engagement = uuid::Builder::from_random_bytes(rng.random::<[u8; 16]>()).into_uuid();
            let age_days = if status == "New" {
                rng.random_range(0..13)
            } else {
                rng.random_range(15..120)
            };
            let created =
                now - Duration::days(age_days) - Duration::minutes(rng.random_range(0..1440));
            let updated = if status == "New" {
                created
            } else {
                created + Duration::days(rng.random_range(1..14))
            };
            let mut r = self.template();
            merge(
                &mut r,
                &json!({
                    "id": id.to_string(),
                    "engagementId": engagement.to_string(),
                    "name": format!("{customer} - {product} opportunity #{}", i + 1),
                    "direction": direction,
                    "type": if i % 3 == 0 { "Independent" } else { "Shared" },
                    "status": status,
                    "substatus": substatus,
                    "createdDateTime": timestamp(created),
                    "updatedDateTime": timestamp(updated),
                    "eTag": format!("\"{}\"", uuid::Builder::from_random_bytes(rng.random::<[u8; 16]>()).into_uuid()),
                    "customerProfile": {"name": customer, "address": {"city": city, "postalCode": postal, "country": country},
                                        "team": [{"firstName": "Demo", "lastName": format!("Contact{}", i + 1),
                                                  "email": format!("contact{}@{}.example", i + 1, customer.to_lowercase().replace(' ', ""))}]},
                    "details": {"dealValue": rng.random_range(5..500) * 1000, "currency": "USD",
                                "closingDateTime": timestamp(created + Duration::days(rng.random_range(30..180))),
                                "requirements": {"products": [{"id": product}]}},
                    "trackingInfo": {"microsoftMsxId": format!("7-{:010}", rng.random_range(0..10_000_000_000u64))}
                }),
            );
            if direction == "Outgoing" {
                r.as_object_mut().map(|o| o.remove("inviteContext"));
            }
            if status == "New" {
                r["expirationDateTime"] =
                    json!(timestamp(created + self.inner.config.referral_expiry));
            }
            if status != "New" && substatus != "Expired" && substatus != "Declined" {
                r["acceptedDateTime"] = json!(timestamp(created + Duration::hours(6)));
            }
            if status == "Closed" {
                let closed = if substatus == "Expired" {
                    created + self.inner.config.referral_expiry
                } else {
                    updated
                };
                r["closedDateTime"] = json!(timestamp(closed));
                r["updatedDateTime"] = json!(timestamp(closed));
            }
            r["links"] =
                json!({"self": {"uri": self.inner.referral_uri(&id.to_string()), "method": "GET"}});
            self.inner.lock_store().put(r);
        }
    }
}

fn answer(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(r) => Json(r).into_response(),
        Err(e) => e.into_response(),
    }
}

fn side(inner: Arc<Inner>) -> MicrosoftSide {
    MicrosoftSide { inner }
}

async fn create(State(inner): State<Arc<Inner>>, body: Option<Json<Value>>) -> Response {
    let overrides = body.map(|Json(v)| v).unwrap_or(json!({}));
    (
        StatusCode::CREATED,
        Json(side(inner).create_incoming(overrides)),
    )
        .into_response()
}

async fn update(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    answer(side(inner).update(&id, body))
}

async fn accept(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    answer(side(inner).accept(&id))
}

#[derive(Deserialize, Default)]
struct Decline {
    #[serde(default, rename = "statusReason")]
    status_reason: Option<String>,
}

async fn decline(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    body: Option<Json<Decline>>,
) -> Response {
    let reason = body.map(|Json(d)| d).unwrap_or_default().status_reason;
    answer(side(inner).decline(&id, reason.as_deref()))
}

#[derive(Deserialize)]
struct Close {
    won: bool,
}

async fn close(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    Json(body): Json<Close>,
) -> Response {
    answer(side(inner).close(&id, body.won))
}

#[derive(Deserialize)]
struct Seed {
    count: usize,
    #[serde(default)]
    seed: u64,
}

async fn seed(State(inner): State<Arc<Inner>>, Json(body): Json<Seed>) -> Response {
    side(inner).seed_demo_data(body.count, body.seed);
    Json(json!({"created": body.count})).into_response()
}

async fn refresh_token(State(inner): State<Arc<Inner>>) -> Response {
    let pc = PartnerCenter { inner };
    Json(json!({"refresh_token": pc.refresh_token()})).into_response()
}

/// The Microsoft-side routes (to merge before the state is applied).
pub(crate) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route("/_emulator/microsoft/referrals", post(create))
        .route("/_emulator/microsoft/referrals/{id}", patch(update))
        .route("/_emulator/microsoft/referrals/{id}/accept", post(accept))
        .route("/_emulator/microsoft/referrals/{id}/decline", post(decline))
        .route("/_emulator/microsoft/referrals/{id}/close", post(close))
        .route("/_emulator/microsoft/seed", post(seed))
        .route("/_emulator/refresh-token", get(refresh_token))
}
