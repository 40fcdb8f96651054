//! The Partner Center emulator: the Referrals API (reference §1), the Webhooks API with signed
//! deliveries (§2), the OAuth token endpoint (§1.2, with the device-code sign-in) and the
//! Microsoft-side operations, served through [`crate::common::server::serve`] so faults apply.
//!
//! The two APIs are two hosts at Microsoft (`api.partner.microsoft.com` and
//! `api.partnercenter.microsoft.com`), so the emulator serves them on **two listeners**
//! ([`PartnerCenter::serve`] answers both URLs). The main one:
//!
//! | method | path | module |
//! |---|---|---|
//! | POST | `/{tenant}/oauth2/token`, `/{tenant}/oauth2/v2.0/token` | here (form-encoded) |
//! | POST | `/{tenant}/oauth2/v2.0/devicecode` | here, [`crate::common::device_code`] |
//! | GET, POST | `/v1.0/engagements/referrals` | [`referrals_http`], [`referrals`] |
//! | GET, PATCH, PUT | `/v1.0/engagements/referrals/{id}` | [`referrals_http`], [`referrals`] |
//! | GET | `/cert/pcnotifications-dispatch.microsoft.com.cer` (DER), `/_emulator/certificate.pem` | [`signing`] |
//! | GET | `/_emulator/webhooks/deliveries`, `/_emulator/webhooks/parked` | [`webhooks`] |
//! | GET, POST | `/_emulator/device-codes`, `/_emulator/device-codes/{user_code}/approve\|deny` | here |
//! | * | `/_emulator/microsoft/...`, `GET /_emulator/refresh-token` | [`microsoft`] |
//! | * | `/_emulator/faults`, `/_emulator/clock[/advance]` | [`crate::common::control`] |
//!
//! The Webhooks API listener serves `/webhooks/v1/registration` (+ `/events`,
//! `/validationEvents[/{id}]`, [`webhooks`]) and the same control endpoints; the main
//! listener answers 404 there, as the referrals host would.
//!
//! Tokens: `grant_type=refresh_token` (delegated App+User; get one from
//! [`PartnerCenter::refresh_token`]), the device-code grant, or `client_credentials` with the
//! configured client id and secret (app-only). Each request must name its resource
//! (`resource` or `scope`; [`crate::common::tokens`]). The tenant path segment must be the
//! configured tenant id, `common` or `organizations`. The v1 endpoint answers `expires_in` as a
//! string, as Entra ID's v1 does.
//!
//! Each API takes only tokens for its own audience ([`REFERRALS_AUDIENCE`],
//! [`WEBHOOKS_AUDIENCE`]): a token for the other one (or any other resource) gets **401**
//! `invalid_token`, as a missing, unknown or expired token does (with `WWW-Authenticate:
//! Bearer`). The Referrals API takes App+User tokens only (the docs say so): an app-only token
//! for its audience gets **403** `Forbidden` (the token is valid, the kind is not allowed). The
//! Webhooks API takes both kinds.

pub mod json_patch;
pub mod microsoft;
pub mod odata;
pub mod referrals;
pub mod referrals_http;
pub mod signing;
pub mod status;
pub mod webhooks;

pub use microsoft::MicrosoftSide;

use crate::common::clock::EmulatedClock;
use crate::common::control;
use crate::common::faults::Faults;
use crate::common::server::{self, RunningEmulator, error_response};
use crate::common::tokens::{Claims, Grant, TokenError, TokenIssuer, TokenRequest, endpoint_error};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// The resource of Referrals API tokens (reference §1.2).
pub const REFERRALS_AUDIENCE: &str = "https://api.partner.microsoft.com";

/// The resource of Webhooks API tokens (reference §2.1).
pub const WEBHOOKS_AUDIENCE: &str = "https://api.partnercenter.microsoft.com";

/// Which of the two APIs a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Referrals,
    Webhooks,
}

impl Api {
    fn audience(self) -> &'static str {
        match self {
            Api::Referrals => REFERRALS_AUDIENCE,
            Api::Webhooks => WEBHOOKS_AUDIENCE,
        }
    }
}

/// How a Partner Center emulator is set up.
#[derive(Debug, Clone)]
pub struct PartnerCenterConfig {
    /// Where to listen: the token endpoint, the Referrals API and the control endpoints
    /// (port 0: any free port).
    pub listen: SocketAddr,
    /// Where the Webhooks API listens (port 0: any free port).
    pub webhooks_listen: SocketAddr,
    /// The `interval` device-code sign-ins are issued with (Entra ID: 5 s).
    pub device_code_interval: std::time::Duration,
    /// The partner's Entra tenant id (the token endpoint's path segment).
    pub tenant_id: String,
    /// The registered application's client id.
    pub client_id: String,
    /// Its secret, for `client_credentials`.
    pub client_secret: String,
    /// How long access tokens live, in emulated time.
    pub token_lifetime: chrono::Duration,
    /// The first retry waits this long; each later one twice the previous.
    pub webhook_retry_base: std::time::Duration,
    /// Delivery attempts before an event is parked (Partner Center: 10).
    pub webhook_max_attempts: u32,
    /// How long one delivery attempt may take.
    pub webhook_timeout: std::time::Duration,
    /// Deliveries in flight at once. Partner Center's dispatch concurrency is not documented;
    /// 1 (the default) sends one event at a time, in the order the changes happened. More
    /// lets a load test offer a receiver more than one sender can (benchmarks use 16); order
    /// is then only the order in which deliveries start.
    pub webhook_concurrency: usize,
    /// How long an unanswered incoming referral stays New (Partner Center: 14 days).
    pub referral_expiry: chrono::Duration,
    /// Page size when a list names no `$top`.
    pub default_page_size: usize,
    /// Whether the path of the documented `@odata.nextLink` (`/v1.0/referrals`, without
    /// `/engagements`) answers with the next page. Whether the live service serves it is not
    /// known, so by default it answers 404 and a client must fall back to the link's
    /// `$skiptoken` on the list's own path.
    pub serve_next_link_path: bool,
    /// The base URL to put in links and `x-ms-certificate-url` (default: the bound address).
    pub public_url: Option<String>,
    /// The Webhooks API's base URL, in validation events' `ResourceUri` (default: the bound
    /// address of `webhooks_listen`).
    pub public_webhooks_url: Option<String>,
    /// The partner organisation's id and name, set on its referrals.
    pub organization_id: String,
    pub organization_name: String,
    /// Seed of the fault dice.
    pub fault_seed: u64,
}

impl Default for PartnerCenterConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            webhooks_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            device_code_interval: std::time::Duration::from_secs(5),
            tenant_id: "00000000-0000-4000-8000-0000000000aa".into(),
            client_id: "00000000-0000-4000-8000-0000000000bb".into(),
            client_secret: "emulator-secret".into(),
            token_lifetime: chrono::Duration::hours(1),
            webhook_retry_base: std::time::Duration::from_secs(1),
            webhook_max_attempts: 10,
            webhook_timeout: std::time::Duration::from_secs(10),
            webhook_concurrency: 1,
            referral_expiry: chrono::Duration::days(14),
            default_page_size: 100,
            serve_next_link_path: false,
            public_url: None,
            public_webhooks_url: None,
            organization_id: "3e1f0a4c-5b6d-4e7f-8a9b-0c1d2e3f4a5b".into(),
            organization_name: "Fourth Coffee Partners".into(),
            fault_seed: 0x5eed,
        }
    }
}

/// The shared state behind every handler.
pub(crate) struct Inner {
    pub(crate) config: PartnerCenterConfig,
    pub(crate) clock: EmulatedClock,
    pub(crate) faults: Faults,
    pub(crate) tokens: TokenIssuer,
    pub(crate) store: Mutex<referrals::Store>,
    pub(crate) webhooks: webhooks::Webhooks,
    base_url: Mutex<String>,
    webhooks_base_url: Mutex<String>,
}

impl Inner {
    pub(crate) fn lock_store(&self) -> MutexGuard<'_, referrals::Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn base_url(&self) -> String {
        self.base_url
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The Webhooks API's base URL.
    pub(crate) fn webhooks_base_url(&self) -> String {
        self.webhooks_base_url
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Checks the bearer token for `api`: a token for another audience is 401 like an unknown
/// one; on the Referrals API an app-only token is 403.
#[allow(
    clippy::result_large_err,
    reason = "the error is the HTTP answer, built once per refused request"
)]
pub(crate) fn authorize(inner: &Inner, headers: &HeaderMap, api: Api) -> Result<Claims, Response> {
    // RFC 6750 §3.1: no error code when the request carried no token at all.
    let unauthorized = |message: &str, challenge: &'static str| {
        let mut response = error_response(StatusCode::UNAUTHORIZED, "Unauthorized", message);
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        response
    };
    const INVALID: &str = "Bearer error=\"invalid_token\"";
    match inner.tokens.check(headers) {
        Ok(claims) if claims.audience != api.audience() => Err(unauthorized(
            &format!(
                "The bearer token is for '{}', not this API ('{}'): request a token for this resource.",
                claims.audience,
                api.audience()
            ),
            INVALID,
        )),
        Ok(claims) if api == Api::Referrals && claims.grant != Grant::RefreshToken => {
            Err(error_response(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "The Referrals API accepts App+User (delegated) tokens only; this token is app-only.",
            ))
        }
        Ok(claims) => Ok(claims),
        Err(e @ TokenError::Missing) => Err(unauthorized(&e.to_string(), "Bearer")),
        Err(e) => Err(unauthorized(&e.to_string(), INVALID)),
    }
}

#[allow(
    clippy::result_large_err,
    reason = "the error is the HTTP answer, built once per refused request"
)]
fn known_tenant(inner: &Inner, tenant: &str) -> Result<(), Response> {
    if tenant != inner.config.tenant_id && tenant != "common" && tenant != "organizations" {
        let (status, body) = endpoint_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("AADSTS90002: Tenant '{tenant}' not found."),
        );
        return Err((status, Json(body)).into_response());
    }
    Ok(())
}

fn token_answer(inner: &Inner, tenant: &str, request: &TokenRequest, v1: bool) -> Response {
    if let Err(refused) = known_tenant(inner, tenant) {
        return refused;
    }
    match inner.tokens.token_endpoint(request) {
        Ok(token) => {
            let mut body = serde_json::to_value(&token).expect("serialisable");
            if v1 {
                body["expires_in"] = json!(token.expires_in.to_string());
                body["resource"] = json!(request.resource.clone().unwrap_or_default());
            } else {
                body["scope"] = json!(request.scope.clone().unwrap_or_default());
            }
            Json(body).into_response()
        }
        Err((status, body)) => (status, Json(body)).into_response(),
    }
}

async fn token_v1(
    State(inner): State<Arc<Inner>>,
    Path(tenant): Path<String>,
    Form(request): Form<TokenRequest>,
) -> Response {
    token_answer(&inner, &tenant, &request, true)
}

async fn token_v2(
    State(inner): State<Arc<Inner>>,
    Path(tenant): Path<String>,
    Form(request): Form<TokenRequest>,
) -> Response {
    token_answer(&inner, &tenant, &request, false)
}

/// The device authorization request's form.
#[derive(serde::Deserialize)]
struct DeviceCodeRequest {
    client_id: Option<String>,
    scope: Option<String>,
}

/// `POST /{tenant}/oauth2/v2.0/devicecode`: starts a sign-in (the client must be registered
/// and name a scope, as Entra ID requires).
async fn device_code(
    State(inner): State<Arc<Inner>>,
    Path(tenant): Path<String>,
    Form(request): Form<DeviceCodeRequest>,
) -> Response {
    if let Err(refused) = known_tenant(&inner, &tenant) {
        return refused;
    }
    let refuse = |code: &str, description: &str| {
        let (status, body) = endpoint_error(StatusCode::BAD_REQUEST, code, description);
        (status, Json(body)).into_response()
    };
    let Some(client_id) = request.client_id.filter(|c| !c.is_empty()) else {
        return refuse(
            "invalid_request",
            "AADSTS900144: The request body must contain the following parameter: 'client_id'.",
        );
    };
    if client_id != inner.config.client_id {
        return refuse(
            "unauthorized_client",
            &format!(
                "AADSTS700016: Application with identifier '{client_id}' was not found in the directory."
            ),
        );
    }
    let Some(scope) = request.scope.filter(|s| !s.trim().is_empty()) else {
        return refuse(
            "invalid_request",
            "AADSTS900144: The request body must contain the following parameter: 'scope'.",
        );
    };
    Json(inner.tokens.device_codes().start(&client_id, &scope)).into_response()
}

/// `GET /_emulator/device-codes`: the sign-ins waiting for a user.
async fn pending_sign_ins(State(inner): State<Arc<Inner>>) -> Response {
    Json(inner.tokens.device_codes().pending()).into_response()
}

/// `POST /_emulator/device-codes/{user_code}/approve` with `{"user": "…"}`: that user signs in.
async fn approve_sign_in(
    State(inner): State<Arc<Inner>>,
    Path(user_code): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> Response {
    let Some(user) = body["user"].as_str().filter(|u| !u.is_empty()) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "badRequest",
            "Send {\"user\": \"name@tenant\"}: the user who signs in.",
        );
    };
    decided(inner.tokens.device_codes().approve(&user_code, user))
}

/// `POST /_emulator/device-codes/{user_code}/deny`: the user declines.
async fn deny_sign_in(State(inner): State<Arc<Inner>>, Path(user_code): Path<String>) -> Response {
    decided(inner.tokens.device_codes().deny(&user_code))
}

fn decided(found: bool) -> Response {
    if found {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error_response(
            StatusCode::NOT_FOUND,
            "notFound",
            "No pending, unexpired sign-in has this user code.",
        )
    }
}

/// Echoes `MS-RequestId` and `MS-CorrelationId` (new GUIDs when the request has none) and sets
/// `Request-ID`, as the Partner REST headers page and the referral samples show (§1.3).
async fn request_ids(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let pick = |headers: &HeaderMap, name: &str| {
        headers.get(name).cloned().unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .expect("a GUID is a header value")
        })
    };
    let request_id = pick(request.headers(), "ms-requestid");
    let correlation = pick(request.headers(), "ms-correlationid");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert("ms-requestid", request_id.clone());
    headers.insert("ms-correlationid", correlation);
    headers.insert("request-id", request_id);
    response
}

/// A running Partner Center emulator: its two listeners.
pub struct RunningPartnerCenter {
    /// The token endpoint, the Referrals API and the control endpoints.
    pub api: RunningEmulator,
    /// The Webhooks API.
    pub webhooks: RunningEmulator,
}

impl RunningPartnerCenter {
    /// The main listener's base URL (token endpoint, Referrals API, `/_emulator/`).
    pub fn url(&self) -> String {
        self.api.url()
    }

    /// The Webhooks API's base URL.
    pub fn webhooks_url(&self) -> String {
        self.webhooks.url()
    }

    /// Stops both listeners.
    pub async fn stop(self) {
        self.webhooks.stop().await;
        self.api.stop().await;
    }
}

/// A Partner Center emulator. Cloning shares it.
#[derive(Clone)]
pub struct PartnerCenter {
    pub(crate) inner: Arc<Inner>,
}

impl PartnerCenter {
    /// An emulator with no referrals and no webhook registration.
    pub fn new(config: PartnerCenterConfig) -> Self {
        let clock = EmulatedClock::new();
        let tokens = TokenIssuer::new(clock.clone(), config.token_lifetime);
        tokens.register_client(&config.client_id, &config.client_secret);
        tokens
            .device_codes()
            .set_interval(config.device_code_interval);
        let base = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.listen));
        let webhooks_base = config
            .public_webhooks_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.webhooks_listen));
        Self {
            inner: Arc::new(Inner {
                faults: Faults::new(config.fault_seed),
                config,
                clock,
                tokens,
                store: Default::default(),
                webhooks: Default::default(),
                base_url: Mutex::new(base),
                webhooks_base_url: Mutex::new(webhooks_base),
            }),
        }
    }

    /// The main listener's routes: the token endpoint, the Referrals API, the Microsoft side
    /// and the control endpoints.
    pub fn router(&self) -> Router {
        use referrals_http as r;
        use webhooks as w;
        let router = Router::new();
        let router = match self.inner.config.serve_next_link_path {
            true => router.route("/v1.0/referrals", get(r::list)),
            false => router,
        };
        router
            .route("/{tenant}/oauth2/token", post(token_v1))
            .route("/{tenant}/oauth2/v2.0/token", post(token_v2))
            .route("/{tenant}/oauth2/v2.0/devicecode", post(device_code))
            .route("/v1.0/engagements/referrals", get(r::list).post(r::create))
            .route(
                "/v1.0/engagements/referrals/{id}",
                get(r::get_one).patch(r::patch).put(r::put),
            )
            .route("/_emulator/webhooks/deliveries", get(w::deliveries))
            .route("/_emulator/webhooks/parked", get(w::parked))
            .route(signing::CERTIFICATE_PATH, get(w::certificate_der))
            .route("/_emulator/certificate.pem", get(w::certificate_pem))
            .route("/_emulator/device-codes", get(pending_sign_ins))
            .route(
                "/_emulator/device-codes/{user_code}/approve",
                post(approve_sign_in),
            )
            .route(
                "/_emulator/device-codes/{user_code}/deny",
                post(deny_sign_in),
            )
            .merge(microsoft::routes())
            .layer(axum::middleware::from_fn(request_ids))
            .with_state(self.inner.clone())
            .merge(self.control_router())
    }

    /// The Webhooks API listener's routes (and the control endpoints).
    pub fn webhooks_router(&self) -> Router {
        use webhooks as w;
        Router::new()
            .route(
                "/webhooks/v1/registration",
                get(w::get_registration)
                    .post(w::post_registration)
                    .put(w::put_registration),
            )
            .route("/webhooks/v1/registration/events", get(w::get_events))
            .route(
                "/webhooks/v1/registration/validationEvents",
                post(w::post_validation),
            )
            .route(
                "/webhooks/v1/registration/validationEvents/{id}",
                get(w::get_validation),
            )
            .layer(axum::middleware::from_fn(request_ids))
            .with_state(self.inner.clone())
            .merge(self.control_router())
    }

    fn control_router(&self) -> Router {
        control::router(self.inner.faults.clone(), self.inner.clock.clone())
    }

    /// Binds `config.listen` and `config.webhooks_listen`, serves both routers with faults
    /// applied, and starts the webhook deliverer. Links, `x-ms-certificate-url` and validation
    /// events then use the bound addresses (unless `public_url`/`public_webhooks_url` are set).
    pub async fn serve(&self) -> std::io::Result<RunningPartnerCenter> {
        // Generate the signing key off the async threads before the first delivery needs it.
        let _ = tokio::task::spawn_blocking(signing::SigningMaterial::get).await;
        let faults = self.inner.faults.clone();
        let api = server::serve(self.router(), self.inner.config.listen, faults.clone()).await?;
        let webhooks = match server::serve(
            self.webhooks_router(),
            self.inner.config.webhooks_listen,
            faults,
        )
        .await
        {
            Ok(running) => running,
            Err(e) => {
                api.stop().await;
                return Err(e);
            }
        };
        let set = |url: &Mutex<String>, value: String| {
            *url.lock().unwrap_or_else(|p| p.into_inner()) = value;
        };
        if self.inner.config.public_url.is_none() {
            set(&self.inner.base_url, api.url());
        }
        if self.inner.config.public_webhooks_url.is_none() {
            set(&self.inner.webhooks_base_url, webhooks.url());
        }
        webhooks::start_deliverer(&self.inner);
        Ok(RunningPartnerCenter { api, webhooks })
    }

    /// Starts the webhook deliverer without [`PartnerCenter::serve`] (when the router is served
    /// some other way; needs a tokio runtime). Does nothing if it already runs.
    pub fn start_webhook_deliverer(&self) {
        webhooks::start_deliverer(&self.inner);
    }

    /// A fresh delegated refresh token for the configured client (single use: each token
    /// answer carries its replacement), of [`crate::common::tokens::DEFAULT_USER`].
    pub fn refresh_token(&self) -> String {
        self.inner
            .tokens
            .grant_refresh_token(&self.inner.config.client_id)
    }

    /// Completes the pending device-code sign-in with `user_code` as `user` (what the user
    /// does in the browser); false when no such sign-in is pending.
    pub fn approve_sign_in(&self, user_code: &str, user: &str) -> bool {
        self.inner.tokens.device_codes().approve(user_code, user)
    }

    /// The token issuer (to list the tokens it handed out).
    pub fn tokens(&self) -> &TokenIssuer {
        &self.inner.tokens
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &PartnerCenterConfig {
        &self.inner.config
    }

    /// Its faults.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// Its emulated clock.
    pub fn clock(&self) -> &EmulatedClock {
        &self.inner.clock
    }

    /// Its webhook state: registration, delivery log, parked events.
    pub fn webhooks(&self) -> &webhooks::Webhooks {
        &self.inner.webhooks
    }

    /// Creates `count` demo referrals in every state, deterministic for `seed`.
    pub fn seed_demo_data(&self, count: usize, seed: u64) {
        self.microsoft().seed_demo_data(count, seed);
    }

    /// In-process Microsoft seller operations.
    pub fn microsoft(&self) -> MicrosoftSide {
        MicrosoftSide {
            inner: self.inner.clone(),
        }
    }

    /// A referral by id, as the API would answer it (expiry applied).
    pub fn referral(&self, id: &str) -> Option<serde_json::Value> {
        self.inner.get_referral(id)
    }

    /// All referrals in creation order (expiry applied).
    pub fn referrals(&self) -> Vec<serde_json::Value> {
        self.inner.expire_due();
        self.inner.lock_store().all().to_vec()
    }
}
