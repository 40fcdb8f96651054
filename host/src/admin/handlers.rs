//! Handlers of the admin API routes listed in [`super`].

use super::AdminState;
use crate::deploy::{DeployError, DeploySource};
use crate::pipeline::{PipelineError, PipelineInput, StepRun};
use crate::runtime::Direction;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

/// An error answer: a status and a message.
pub(super) struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<DeployError> for ApiError {
    fn from(err: DeployError) -> Self {
        let status = match &err {
            DeployError::UnknownStep(_)
            | DeployError::UnknownVersion { .. }
            | DeployError::NoShadow(_) => StatusCode::NOT_FOUND,
            DeployError::ShadowIsActive { .. } => StatusCode::CONFLICT,
            DeployError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            DeployError::AmbiguousVersion { .. } => StatusCode::BAD_REQUEST,
            DeployError::BadConfig { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            DeployError::NothingToRollBackTo(_) => StatusCode::CONFLICT,
            DeployError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, err.to_string())
    }
}

fn steps_json(state: &AdminState) -> Vec<Value> {
    state
        .deployer
        .pipelines()
        .in_order()
        .map(|(direction, position, step)| {
            let active = step.active();
            json!({
                "step": &*step.name,
                "direction": direction,
                "position": position,
                "active_version": &*active.version,
                "size": active.size,
                "config_keys": step.config().keys().cloned().collect::<Vec<_>>(),
                "config_revision": step.config_revision(),
                "shadow_version": step.shadow().map(|s| s.component.version.to_string()),
                "limits": &*step.limits,
            })
        })
        .collect()
}

/// `GET /livez`: the process answers. Nothing else is checked: a liveness probe that failed
/// on a dependency would restart a host that only waits for it.
pub(super) async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when every readiness input is fine, 503 with the reasons otherwise.
pub(super) async fn ready(State(state): State<AdminState>) -> Response {
    let readiness = state.health.readiness();
    let status = match readiness.ready {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(readiness)).into_response()
}

/// `GET /healthz`
pub(super) async fn health(State(state): State<AdminState>) -> Json<Value> {
    let runtime = state.deployer.pipelines().runtime();
    // Syncing hosts also say how their queue stands (a store error is reported, not hidden).
    let sync = state
        .sync_store
        .as_ref()
        .map(|store| match store.queue_counts() {
            Ok(queue) => json!({"queue": queue}),
            Err(e) => json!({"error": format!("{e:#}")}),
        });
    Json(json!({
        "status": "ok",
        "replica_id": &*state.replica_id,
        "leader": *state.leader.borrow(),
        "allocator": runtime.allocator(),
        "steps": steps_json(&state),
        "sync": sync,
    }))
}

/// The host's metrics as OpenMetrics text, with the gauges that are read when scraped (the
/// queue) brought up to date first. `/metrics` and the console's overview both read this.
pub(crate) fn scrape(state: &AdminState) -> String {
    if let Some(store) = &state.sync_store {
        match store.queue_counts() {
            Ok(c) => state.metrics.set_queue(&c, std::time::SystemTime::now()),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not read the queue for the metrics")
            }
        }
    }
    state.metrics.encode()
}

/// `GET /metrics`
pub(super) async fn metrics(State(state): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        scrape(&state),
    )
        .into_response()
}

/// `GET /admin/v1/steps`
pub(super) async fn list_steps(State(state): State<AdminState>) -> Json<Value> {
    Json(json!({ "steps": steps_json(&state) }))
}

/// `GET /admin/v1/steps/{step}/versions`
pub(super) async fn list_versions(
    State(state): State<AdminState>,
    Path(step): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let versions = state.deployer.versions(&step)?;
    let config_revisions = state.deployer.config_history(&step)?;
    Ok(Json(
        json!({ "step": step, "versions": versions, "config_revisions": config_revisions }),
    ))
}

/// `POST /admin/v1/steps/{step}/versions` with the `.wasm` file as the body.
pub(super) async fn deploy(
    State(state): State<AdminState>,
    Path(step): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if body.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "the request body is empty: send the .wasm file as the body".into(),
        ));
    }
    let report = state
        .deployer
        .deploy(&step, body.to_vec(), DeploySource::AdminApi)
        .await?;
    Ok((StatusCode::OK, Json(report)).into_response())
}

/// `PUT /admin/v1/steps/{step}/versions/{version}/pin`: retention never deletes a pinned
/// version (`version` is a full hash or a unique prefix).
pub(super) async fn pin(
    State(state): State<AdminState>,
    Path((step, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let version = state.deployer.pin(&step, &version).await?;
    Ok(Json(
        json!({ "step": step, "version": version, "pinned": true }),
    ))
}

/// `DELETE /admin/v1/steps/{step}/versions/{version}/pin`: the version is pruned again like
/// any other once it is neither active nor among the most recent.
pub(super) async fn unpin(
    State(state): State<AdminState>,
    Path((step, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (version, was_pinned) = state.deployer.unpin(&step, &version).await?;
    Ok(Json(
        json!({ "step": step, "version": version, "pinned": false, "was_pinned": was_pinned }),
    ))
}

/// Body of a rollback request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RollbackRequest {
    /// A full version hash or a unique prefix; absent: the previously active version.
    pub to: Option<String>,
}

/// `POST /admin/v1/steps/{step}/rollback`
pub(super) async fn rollback(
    State(state): State<AdminState>,
    Path(step): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: RollbackRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RollbackRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|err| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("the body must be {{\"to\": \"<version>\"}} or empty: {err}"),
            )
        })?
    };
    let report = state
        .deployer
        .rollback(&step, request.to.as_deref())
        .await?;
    Ok(Json(report).into_response())
}

/// Body of a pipeline run.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunRequest {
    /// The input document (a referral or an opportunity).
    pub document: Value,
    /// The current counterpart record, if there is one.
    #[serde(default)]
    pub current: Option<Value>,
    #[serde(default = "default_event")]
    pub event: String,
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// RFC 3339; defaults to now.
    #[serde(default)]
    pub timestamp: Option<chrono::DateTime<chrono::Utc>>,
}

impl RunRequest {
    /// A preview of `document` with the defaults of every other field.
    pub(super) fn of(document: Value, current: Option<Value>) -> Self {
        Self {
            document,
            current,
            event: default_event(),
            tenant: default_tenant(),
            timestamp: None,
        }
    }
}

fn default_event() -> String {
    "preview".into()
}

fn default_tenant() -> String {
    "preview".into()
}

/// What a preview run gave: the output document and the steps it went through, or where
/// the pipeline stopped.
pub(super) enum Preview {
    Done {
        document: Value,
        steps: Vec<StepRun>,
    },
    Stopped(PipelineError),
}

/// Runs `request` through the pipeline named `direction` (`partner-center-to-crm` or
/// `crm-to-partner-center`) without syncing anything: the JSON API's run and the console's
/// preview page.
pub(super) async fn preview(
    state: &AdminState,
    direction: &str,
    request: RunRequest,
) -> Result<Preview, ApiError> {
    let direction: Direction = serde_json::from_value(Value::String(direction.to_owned()))
        .map_err(|_| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!(
                    "no pipeline `{direction}`: use partner-center-to-crm or crm-to-partner-center"
                ),
            )
        })?;
    let input = PipelineInput {
        event: request.event,
        tenant: request.tenant,
        timestamp: request.timestamp.unwrap_or_else(chrono::Utc::now),
        document: request.document.to_string(),
        current: request.current.map(|c| c.to_string()),
    };
    match state.deployer.pipelines().run(direction, input).await {
        Ok(output) => {
            // The runtime only passes on JSON within its depth limit, which parses; should that
            // ever not hold, the answer is an error, never a panic in the handler.
            let document: Value = serde_json::from_str(&output.document).map_err(|err| {
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the pipeline's output could not be read back as JSON: {err}"),
                )
            })?;
            Ok(Preview::Done {
                document,
                steps: output.steps,
            })
        }
        Err(err) => Ok(Preview::Stopped(err)),
    }
}

/// `POST /admin/v1/pipelines/{direction}/run`
pub(super) async fn run_pipeline(
    State(state): State<AdminState>,
    Path(direction): Path<String>,
    Json(request): Json<RunRequest>,
) -> Result<Response, ApiError> {
    Ok(match preview(&state, &direction, request).await? {
        Preview::Done { document, steps } => {
            Json(json!({ "document": document, "steps": steps })).into_response()
        }
        Preview::Stopped(err) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "error": err.to_string(),
                "kind": err.error.kind.label(),
                "step": &*err.error.mapping,
                "version": &*err.error.version,
                "completed": err.completed,
            })),
        )
            .into_response(),
    })
}
