//! The operator's HTTP API: health, metrics, and (behind a bearer token) the mapping steps.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/livez` | liveness: 200 while the process answers (no token) |
//! | GET | `/readyz` | readiness: 200 `{"ready": true, "reasons": []}`, or 503 with the reasons ([`crate::health`]; no token) |
//! | GET | `/healthz` | the replica's id and whether it leads, the version each step serves and, when syncing, the queue; 200 while the process answers (kept for existing probes; no token) |
//! | GET | `/metrics` | Prometheus metrics (no token) |
//! | GET | `/admin/v1/steps` | every step, its direction and active version |
//! | GET | `/admin/v1/steps/{step}/versions` | stored versions of a step |
//! | POST | `/admin/v1/steps/{step}/versions` | deploy: body is the `.wasm` file |
//! | POST | `/admin/v1/steps/{step}/rollback` | body `{"to": "<hash or prefix>"}` or empty |
//! | PUT | `/admin/v1/steps/{step}/shadow` | shadow deploy: body is the `.wasm` file (validated, stored, run beside the active version, never written) |
//! | GET | `/admin/v1/steps/{step}/shadow` | this replica's shadow report (seen, identical, different, failed, skipped, examples) |
//! | POST | `/admin/v1/steps/{step}/shadow/promote` | activate the shadow version (like a deploy) and end the shadow |
//! | DELETE | `/admin/v1/steps/{step}/shadow` | end the shadow |
//! | GET | `/admin/v1/steps/{step}/config` | the step's config in force and its revision |
//! | PUT | `/admin/v1/steps/{step}/config` | `{"set": {..}, "unset": [..]}` or `{"revert_to": n}`: validated on the sample, stored as a new revision, swapped in |
//! | GET | `/admin/v1/steps/{step}/config/history` | every config revision, newest first |
//! | POST | `/admin/v1/records/{record}/replay?step=` | run a record's last pipeline run again (body: empty, or a candidate `.wasm` for `step`) and diff it against what that run produced |
//! | POST | `/admin/v1/pipelines/{direction}/run` | run a record through a pipeline (preview) |
//! | GET | `/admin/v1/queue` | sync events pending, running, dead |
//! | GET | `/admin/v1/queue/events?state=&limit=` | the events pending and/or running, one by one |
//! | GET | `/admin/v1/dead-letters` | events that failed every attempt, with the reason |
//! | POST | `/admin/v1/dead-letters/replay` | `{"ids": [..]}` or `{"all": true}`: queue them again |
//! | GET | `/admin/v1/audit?record=&outcome=&since=&until=&conflicts=&limit=&before=` | a page of the audit trail, newest first, and `next` (the `before` of the next page) |
//! | GET, POST | `/console/…` | the operator's web console (its own sign-in; see [`console`]) |
//!
//! Errors are JSON `{"error": "<what went wrong and what to do>"}` with a fitting status.

pub mod audit_search;
mod auth;
pub mod console;
mod handlers;
mod mapping_handlers;
mod queue_events;
mod sync_handlers;

pub use auth::{MIN_TOKEN_LEN, check_token};

use crate::config::Secret;
use crate::deploy::Deployer;
use crate::metrics::Metrics;
use crate::store::SyncStore;
use crate::store::Wakeup;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use std::sync::Arc;

/// What the handlers share.
#[derive(Clone)]
pub struct AdminState {
    /// Deploys, rolls back and lists the step versions; also reaches the pipelines.
    pub deployer: Arc<Deployer>,
    /// The host's metrics, served on `/metrics` and read by the console.
    pub metrics: Arc<Metrics>,
    /// The admin token: the bearer token of every `/admin/v1` request, and what a console
    /// sign-in must give.
    pub token: Arc<Secret>,
    /// The sync engine's state, when syncing is configured.
    pub sync_store: Option<Arc<dyn SyncStore>>,
    /// Wakes the sync workers (after a replay).
    pub wakeup: Option<Wakeup>,
    /// This replica's id (`[host] replica_id`), shown by `/healthz`.
    pub replica_id: Arc<str>,
    /// Whether this replica is the leader (runs the pollers and retention).
    pub leader: tokio::sync::watch::Receiver<bool>,
    /// The web console's sessions, when the console is on (`[admin] console`).
    pub console: Option<console::SessionSettings>,
    /// What `/readyz` answers from.
    pub health: Arc<crate::health::Health>,
}

/// The largest request body the admin API reads: the largest component any step accepts (a
/// step's own limits may allow more than `[limits]`) plus multipart/JSON overhead; anything
/// bigger is answered 413 before it is read into memory.
fn body_limit(state: &AdminState) -> usize {
    let pipelines = state.deployer.pipelines();
    let largest = pipelines
        .steps()
        .map(|step| step.limits.max_component_bytes)
        .chain([pipelines.runtime().limits().max_component_bytes])
        .max()
        .unwrap_or_default();
    usize::try_from(largest).unwrap_or(usize::MAX) + 64 * 1024
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    let body_limit = body_limit(&state);
    let protected = Router::new()
        .route("/steps", get(handlers::list_steps))
        .route(
            "/steps/{step}/versions",
            get(handlers::list_versions).post(handlers::deploy),
        )
        .route("/steps/{step}/rollback", post(handlers::rollback))
        .route(
            "/steps/{step}/versions/{version}/pin",
            axum::routing::put(handlers::pin).delete(handlers::unpin),
        )
        .route(
            "/steps/{step}/shadow",
            get(mapping_handlers::shadow_report)
                .put(mapping_handlers::deploy_shadow)
                .delete(mapping_handlers::discard),
        )
        .route(
            "/steps/{step}/shadow/promote",
            post(mapping_handlers::promote),
        )
        .route("/records/{record}/replay", post(mapping_handlers::replay))
        .route(
            "/steps/{step}/config",
            get(mapping_handlers::get_config).put(mapping_handlers::change_config),
        )
        .route(
            "/steps/{step}/config/history",
            get(mapping_handlers::config_history),
        )
        .route("/pipelines/{direction}/run", post(handlers::run_pipeline))
        .route("/queue", get(sync_handlers::queue))
        .route("/queue/events", get(queue_events::list))
        .route("/dead-letters", get(sync_handlers::dead_letters))
        .route("/dead-letters/replay", post(sync_handlers::replay))
        .route("/audit", get(sync_handlers::audit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_bearer,
        ));
    let mut router = Router::new()
        .route("/livez", get(handlers::live))
        .route("/readyz", get(handlers::ready))
        .route("/healthz", get(handlers::health))
        .route("/metrics", get(handlers::metrics))
        .nest("/admin/v1", protected);
    // The console signs in with the token and keeps a session cookie of its own, so it is
    // outside the bearer layer.
    if let Some(settings) = state.console {
        router = router.nest("/console", console::router(&state, settings));
    }
    router
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}
