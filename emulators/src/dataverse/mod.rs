//! The Dataverse emulator: the Web API (`/api/data/v9.2/`, also answered under `v9.0`/`v9.1`),
//! its Metadata API for custom columns, `$batch`, change tracking, service protection limits,
//! webhooks, and the OAuth client-credentials token endpoint — following §4, §5 and §5b of
//! `../shared/reference/partner-center-and-dataverse-apis.md`.
//!
//! | method | path | what |
//! |---|---|---|
//! | POST | `/{tenant}/oauth2/v2.0/token` | client-credentials token (form-encoded, §4.2) |
//! | GET/POST | `/api/data/v9.2/{set}` | list (with `$select`, `$filter`, `$orderby`, paging, change tracking) / create |
//! | GET/PATCH/DELETE | `/api/data/v9.2/{set}({id or alternate key})` | retrieve / update-upsert / delete |
//! | POST | `/api/data/v9.2/$batch` | multipart batch with change sets |
//! | POST | `/api/data/v9.2/WinOpportunity`, `LoseOpportunity` | close an opportunity |
//! | GET | `/api/data/v9.2/WhoAmI` | the caller's ids |
//! | GET/POST | `/api/data/v9.2/EntityDefinitions(LogicalName='x')[/Attributes[(…)]]` | Metadata API |
//! | * | `/_emulator/*` | faults and clock ([`crate::common::control`]) |
//! | GET | `/_emulator/service-protection` | [`limits::ProtectionStats`]: admitted, refused, early requests |
//!
//! Entity sets: `opportunities`, `accounts`, `contacts`, `leads`, `transactioncurrencies`,
//! `serviceendpoints`, `sdkmessages`, `sdkmessagefilters`, `sdkmessageprocessingsteps`.
//! Every Web API request needs a bearer token from the token endpoint (401 otherwise, with
//! `WWW-Authenticate: Bearer authorization_uri=…`) and passes the service protection limits.
//!
//! Choices where the reference stops: the 401 carries the usual error body (code
//! `0x80072560`) besides `WWW-Authenticate`; the token endpoint checks the tenant (400
//! `AADSTS90002` otherwise) but not the scope; one global lock serialises requests (the
//! emulator is about behaviour, not throughput).
//!
//! Modules: [`api`] the request/response vocabulary every handler shares, [`schema`] tables and columns, [`metadata`] the Metadata API ([`metadata_read`] its reads, [`metadata_filter`] their `$filter`), [`record`] a row and the rules on its values, [`records`] the store, [`query`] query options,
//! [`handlers`] CRUD, [`charge`] emulated execution time, [`index`] equality indexes for `$filter`, [`expand`] `$expand`, [`batch`], [`bulk`] CreateMultiple/UpdateMultiple/UpsertMultiple, [`change_tracking`], [`limits`], [`actions`] state rules and
//! Win/Lose, [`webhooks`].

pub mod actions;
pub mod api;
pub mod batch;
pub mod bulk;
pub mod change_tracking;
pub mod charge;
pub mod expand;
pub mod handlers;
pub mod index;
// Above every other module (it runs requests through the handlers), so the index's tests
// live here rather than in `index`, which the store below the handlers is built on.
#[cfg(test)]
mod index_tests;
pub mod limits;
pub mod metadata;
pub mod metadata_filter;
pub mod metadata_read;
pub mod query;
pub mod record;
pub mod records;
pub mod schema;
pub mod seed;
pub mod webhooks;

pub use charge::ExecutionCharge;
pub use limits::ServiceProtectionLimits;

use crate::common::clock::EmulatedClock;
use crate::common::faults::Faults;
use crate::common::server::{self, RunningEmulator, ServedOverTls};
use crate::common::tls::SelfSignedTls;
use crate::common::tokens::{TokenIssuer, TokenRequest};
use api::{ApiRequest, ApiResponse, Ctx};
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Json, Router};
use records::Store;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// How the emulator is set up.
#[derive(Debug, Clone)]
pub struct DataverseConfig {
    /// Where [`Dataverse::serve`] listens (port 0: a free one).
    pub listen: SocketAddr,
    /// The Entra tenant in the token endpoint's path.
    pub tenant_id: String,
    /// The application user's client id and secret.
    pub client_id: String,
    pub client_secret: String,
    /// How long tokens live (emulated time).
    pub token_lifetime: chrono::Duration,
    pub limits: ServiceProtectionLimits,
    /// The emulated execution time of each operation, counted by the execution-time limit
    /// besides the real time ([`ExecutionCharge::zero`] counts real time alone).
    pub execution_charge: ExecutionCharge,
    /// The environment's domain, sent as `x-ms-dynamics-organization`.
    pub organization_domain: String,
    /// The organisation's unique name (`OrganizationName` in webhook contexts).
    pub organization_name: String,
    /// Timeout of one webhook POST (documented: 60 s).
    pub webhook_timeout: std::time::Duration,
    /// Seed of the fault generator.
    pub fault_seed: u64,
    /// How long a change-tracking delta token stays usable, in emulated time (Dataverse's
    /// default `Organization.ExpireChangeTrackingInDays` is 7 days).
    pub change_tracking_expiry: chrono::Duration,
    /// Whether the tables take the bulk messages (`CreateMultiple`, `UpdateMultiple`,
    /// `UpsertMultiple`). `false` is an environment where none does, every one answered as a
    /// table without the message is: how a client's fallback to `$batch` is tested.
    pub bulk_messages: bool,
}

impl Default for DataverseConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tenant_id: "00000000-0000-0000-0000-00000000c05e".into(),
            client_id: "cosell-dataverse-app".into(),
            client_secret: "cosell-dataverse-secret".into(),
            token_lifetime: chrono::Duration::hours(1),
            limits: ServiceProtectionLimits::default(),
            execution_charge: ExecutionCharge::default(),
            change_tracking_expiry: chrono::Duration::days(7),
            organization_domain: "cosell-emulator.crm.dynamics.com".into(),
            organization_name: "cosellemulator".into(),
            webhook_timeout: std::time::Duration::from_secs(60),
            fault_seed: 0x5eed,
            bulk_messages: true,
        }
    }
}

struct Inner {
    config: DataverseConfig,
    clock: EmulatedClock,
    faults: Faults,
    tokens: TokenIssuer,
    limiter: limits::Limiter,
    store: Mutex<Store>,
    org: webhooks::Organization,
    base_currency: Uuid,
    queue: tokio::sync::mpsc::UnboundedSender<Vec<webhooks::Delivery>>,
    /// Committed writes, for observers ([`Dataverse::observe_writes`]).
    observed: tokio::sync::broadcast::Sender<ObservedWrite>,
    receiver: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Vec<webhooks::Delivery>>>>,
}

/// How many committed writes an observer may fall behind before it loses the oldest.
const OBSERVED_WRITES_BUFFER: usize = 65_536;

/// A write as it committed, for [`Dataverse::observe_writes`].
#[derive(Debug, Clone)]
pub struct ObservedWrite {
    /// When it committed (this process's monotonic clock, not the emulated one).
    pub at: std::time::Instant,
    /// The SDK message: `Create`, `Update`, …
    pub message: String,
    pub entity: String,
    pub id: Uuid,
    /// The columns the write set (stored form), including the primary id.
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// The emulator. Cloning shares it.
#[derive(Clone)]
pub struct Dataverse {
    inner: Arc<Inner>,
}

impl Dataverse {
    /// A Dataverse with the built-in tables, currencies and SDK message rows, and no data.
    pub fn new(config: DataverseConfig) -> Self {
        let clock = EmulatedClock::new();
        let tokens = TokenIssuer::new(clock.clone(), config.token_lifetime);
        tokens.register_client(&config.client_id, &config.client_secret);
        let mut store = Store::new(schema::Schema::builtin());
        let base_currency = seed::system_rows(&mut store);
        let (queue, receiver) = tokio::sync::mpsc::unbounded_channel();
        let org = webhooks::Organization {
            id: Uuid::new_v4(),
            name: config.organization_name.clone(),
            domain: config.organization_domain.clone(),
            user_id: Uuid::new_v4(),
            business_unit_id: Uuid::new_v4(),
        };
        Self {
            inner: Arc::new(Inner {
                limiter: limits::Limiter::new(config.limits.clone(), clock.clone()),
                faults: Faults::new(config.fault_seed),
                config,
                clock,
                tokens,
                store: Mutex::new(store),
                org,
                base_currency,
                queue,
                observed: tokio::sync::broadcast::channel(OBSERVED_WRITES_BUFFER).0,
                receiver: Mutex::new(Some(receiver)),
            }),
        }
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &DataverseConfig {
        &self.inner.config
    }

    /// The fault settings (also `PUT /_emulator/faults`).
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// The emulated clock (also `/_emulator/clock`).
    pub fn clock(&self) -> &EmulatedClock {
        &self.inner.clock
    }

    /// How clients have fared against the service protection limits (also
    /// `GET /_emulator/service-protection`).
    pub fn service_protection(&self) -> limits::ProtectionStats {
        self.inner.limiter.stats()
    }

    /// Every write committed from now on (creates, updates, upserts, closes; also those made
    /// through [`Dataverse::with_store`]), as it commits. Benchmarks use it to time when a
    /// record lands; a receiver that falls more than 65,536 writes behind loses the oldest.
    pub fn observe_writes(&self) -> tokio::sync::broadcast::Receiver<ObservedWrite> {
        self.inner.observed.subscribe()
    }

    /// The token issuer (to mint tokens in-process).
    pub fn tokens(&self) -> &TokenIssuer {
        &self.inner.tokens
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.inner.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the store (for tests and seeding), then hands its writes to webhooks.
    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let mut store = self.store();
        let out = f(&mut store);
        self.flush(&mut store);
        out
    }

    /// The API, token and control routes.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/api/data/{version}/{*rest}", any(api))
            .route(
                "/_emulator/service-protection",
                axum::routing::get(service_protection),
            )
            .with_state(self.clone());
        api.merge(crate::common::control::router(
            self.inner.faults.clone(),
            self.inner.clock.clone(),
        ))
    }

    /// Serves on `config.listen` and starts the webhook deliverer (once).
    pub async fn serve(&self) -> std::io::Result<RunningEmulator> {
        self.serve_with(None).await
    }

    /// [`serve`](Self::serve) over HTTPS with `tls`'s certificate: the URLs it writes (next
    /// links, `OData-EntityId`) are then `https://` too.
    pub async fn serve_tls(&self, tls: SelfSignedTls) -> std::io::Result<RunningEmulator> {
        self.serve_with(Some(tls)).await
    }

    async fn serve_with(&self, tls: Option<SelfSignedTls>) -> std::io::Result<RunningEmulator> {
        let receiver = self
            .inner
            .receiver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(receiver) = receiver {
            tokio::spawn(webhooks::deliver(
                receiver,
                self.inner.faults.clone(),
                self.inner.config.webhook_timeout,
            ));
        }
        server::serve_with(
            self.router(),
            self.inner.config.listen,
            self.inner.faults.clone(),
            tls,
        )
        .await
    }

    /// Does in-process what `cosell dataverse provision --solution cosell` does through the
    /// Metadata API: the cosell custom columns on opportunity (Sync with Partner Center,
    /// Referral Identifier, Referral Link, How can Microsoft help?, Products, Audit; prefix
    /// `cosell_`, as docs/mapping.md names them), the alternate key on Referral Identifier and
    /// change tracking on opportunity. For tests that are not about provisioning; a fresh
    /// emulator has none of these, as a fresh environment has not. Idempotent.
    pub fn provision_cosell(&self) {
        let mut store = self.store();
        for body in seed::cosell_columns() {
            let _ = store.schema.add_attribute("opportunity", &body);
        }
        let _ = store.add_alternate_key("opportunity", vec!["cosell_referralidentifier".into()]);
        if let Some(def) = store.schema.entities.get_mut("opportunity") {
            Arc::make_mut(def).change_tracking = true;
        }
    }

    /// Creates `accounts` accounts (each with a contact) and `opportunities` open opportunities
    /// linked to them; the same `seed` gives the same rows and ids.
    pub fn seed_demo_data(&self, accounts: usize, opportunities: usize, seed: u64) {
        let now = records::timestamp(self.inner.clock.now());
        let mut store = self.store();
        seed::demo_data(
            &mut store,
            accounts,
            opportunities,
            seed,
            self.inner.base_currency,
            &now,
        );
        store.pending.clear();
    }

    fn ctx(&self, headers: &HeaderMap, over_tls: bool) -> Ctx {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| self.inner.config.listen.to_string());
        Ctx {
            base: format!(
                "{}://{host}/api/data/v9.2/",
                if over_tls { "https" } else { "http" }
            ),
            now: self.inner.clock.now(),
            base_currency: self.inner.base_currency,
            user_id: self.inner.org.user_id,
            business_unit_id: self.inner.org.business_unit_id,
            organization_id: self.inner.org.id,
            change_tracking_expiry: self.inner.config.change_tracking_expiry,
            bulk_messages: self.inner.config.bulk_messages,
        }
    }

    /// Hands the committed writes to the webhook deliverer.
    fn flush(&self, store: &mut Store) {
        if store.pending.is_empty() {
            return;
        }
        let now = self.inner.clock.now();
        let events = std::mem::take(&mut store.pending);
        if self.inner.observed.receiver_count() > 0 {
            let at = std::time::Instant::now();
            for event in &events {
                let _ = self.inner.observed.send(ObservedWrite {
                    at,
                    message: event.message.clone(),
                    entity: event.entity.clone(),
                    id: event.id,
                    attributes: event.attributes.clone(),
                });
            }
        }
        let deliveries: Vec<_> = events
            .iter()
            .flat_map(|e| webhooks::resolve(store, e, &self.inner.org, now))
            .collect();
        if !deliveries.is_empty() {
            let _ = self.inner.queue.send(deliveries);
        }
    }
}

async fn token(
    State(dv): State<Dataverse>,
    Path(tenant): Path<String>,
    Form(request): Form<TokenRequest>,
) -> Response {
    if tenant != dv.inner.config.tenant_id {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": "invalid_request",
                "error_description": format!("AADSTS90002: Tenant '{tenant}' not found."),
            })),
        )
            .into_response();
    }
    match dv.inner.tokens.token_endpoint(&request) {
        Ok(token) => Json(token).into_response(),
        Err((status, body)) => (status, Json(body)).into_response(),
    }
}

fn to_http(response: ApiResponse) -> Response {
    let mut builder = Response::builder()
        .status(response.status)
        .header("OData-Version", "4.0");
    for (k, v) in &response.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    match response.body {
        Some(body) => builder
            .header(
                header::CONTENT_TYPE,
                "application/json; odata.metadata=minimal",
            )
            .body(Body::from(body.to_string())),
        None => builder.body(Body::empty()),
    }
    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn api(
    State(dv): State<Dataverse>,
    Path((version, rest)): Path<(String, String)>,
    tls: Option<Extension<ServedOverTls>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !["v9.0", "v9.1", "v9.2"].contains(&version.as_str()) {
        return to_http(ApiResponse::error(
            StatusCode::NOT_FOUND,
            "0x8006088a",
            format!("The API version '{version}' is not supported."),
        ));
    }
    let claims = match dv.inner.tokens.check(&headers) {
        Ok(claims) => claims,
        Err(error) => {
            let mut response = to_http(ApiResponse::error(
                StatusCode::UNAUTHORIZED,
                "0x80072560",
                format!("The user is not authenticated: {error}."),
            ));
            let challenge = format!(
                "Bearer authorization_uri=https://login.microsoftonline.com/{}/oauth2/authorize, resource_id=https://{}/",
                dv.inner.config.tenant_id, dv.inner.config.organization_domain
            );
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
            return response;
        }
    };
    let mut permit = match dv.inner.limiter.acquire(&claims.client_id) {
        Ok(permit) => permit,
        Err(response) => return to_http(response),
    };
    let ctx = dv.ctx(&headers, tls.is_some());
    let mut response = if rest == "$batch" && method == Method::POST {
        let mut store = dv.store();
        store.take_operations();
        let answer = batch::run(&mut store, &ctx, &headers, &body);
        permit.charge(
            dv.inner
                .config
                .execution_charge
                .of(&store.take_operations()),
        );
        dv.flush(&mut store);
        match answer {
            Ok(answer) => Response::builder()
                .status(answer.status)
                .header("OData-Version", "4.0")
                .header(header::CONTENT_TYPE, answer.content_type)
                .body(Body::from(answer.body))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
            Err(error) => to_http(error),
        }
    } else {
        let request = ApiRequest {
            method,
            path: query::decode_path(
                uri.path()
                    .split_once(&format!("/api/data/{version}/"))
                    .map(|(_, rest)| rest)
                    .unwrap_or(&rest),
            ),
            query: uri.query().unwrap_or_default().to_owned(),
            headers,
            body: body.to_vec(),
        };
        let mut store = dv.store();
        store.take_operations();
        let response = handlers::execute(&mut store, &ctx, &request);
        permit.charge(
            dv.inner
                .config
                .execution_charge
                .of(&store.take_operations()),
        );
        if !response.is_success() {
            store.pending.clear();
        }
        dv.flush(&mut store);
        to_http(response)
    };
    let remaining = [
        (
            "x-ms-ratelimit-burst-remaining-xrm-requests",
            permit.remaining_requests.to_string(),
        ),
        (
            "x-ms-ratelimit-time-remaining-xrm-requests",
            permit.remaining_ms.to_string(),
        ),
    ];
    for (name, value) in remaining {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    drop(permit);
    response
}

async fn service_protection(State(dv): State<Dataverse>) -> Json<limits::ProtectionStats> {
    Json(dv.service_protection())
}
