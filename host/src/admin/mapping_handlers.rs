//! Handlers of the shadow-version and replay routes listed in [`super`].

use super::AdminState;
use super::handlers::ApiError;
use crate::deploy::DeploySource;
use crate::deploy::replay::{self, ReplayError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

impl From<ReplayError> for ApiError {
    fn from(err: ReplayError) -> Self {
        let status = match &err {
            ReplayError::UnknownRecord(_) => StatusCode::NOT_FOUND,
            ReplayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ReplayError::Candidate(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ReplayError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, err.to_string())
    }
}

/// `PUT /admin/v1/steps/{step}/shadow` with the `.wasm` file as the body: validated like a
/// deploy, stored, and run beside the active version on live records.
pub(super) async fn deploy_shadow(
    State(state): State<AdminState>,
    Path(step): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    if body.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "the request body is empty: send the .wasm file as the body".into(),
        ));
    }
    let report = state
        .deployer
        .deploy_shadow(&step, body.to_vec(), DeploySource::AdminApi)
        .await?;
    Ok(Json(json!(report)))
}

/// `GET /admin/v1/steps/{step}/shadow`: this replica's report of the step's shadow.
pub(super) async fn shadow_report(
    State(state): State<AdminState>,
    Path(step): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let report = state.deployer.shadow_report(&step)?;
    Ok(Json(
        json!({ "step": step, "replica_id": &*state.replica_id, "report": report }),
    ))
}

/// `POST /admin/v1/steps/{step}/shadow/promote`: the shadow becomes the active version.
pub(super) async fn promote(
    State(state): State<AdminState>,
    Path(step): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let report = state.deployer.promote(&step).await?;
    Ok(Json(json!(report)))
}

/// `DELETE /admin/v1/steps/{step}/shadow`: the shadow ends.
pub(super) async fn discard(
    State(state): State<AdminState>,
    Path(step): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let report = state.deployer.discard(&step).await?;
    Ok(Json(json!(report)))
}

/// Query of a replay.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayQuery {
    /// The step the candidate (the body) replaces; default: the pipeline's only step.
    pub step: Option<String>,
}

/// `POST /admin/v1/records/{record}/replay[?step=S]`, the body empty or a candidate `.wasm`:
/// the record's last pipeline run, run again, and its diff against what that run produced.
pub(super) async fn replay(
    State(state): State<AdminState>,
    Path(record): Path<String>,
    Query(query): Query<ReplayQuery>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let store = state.sync_store.clone().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "this host does not sync (no [partner_center] and [dataverse]): it keeps no records to replay".into(),
        )
    })?;
    let run = {
        let record = record.clone();
        tokio::task::spawn_blocking(move || replay::last_run(&*store, &record))
            .await
            .map_err(|err| ApiError(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))??
    };
    if body.is_empty() && query.step.is_some() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "`step` names the step a candidate replaces: send the candidate .wasm as the body, or leave `step` out".into(),
        ));
    }
    let candidate = (!body.is_empty()).then(|| body.to_vec());
    let answer = replay::replay(
        state.deployer.pipelines(),
        run,
        candidate,
        query.step.as_deref(),
    )
    .await?;
    Ok(Json(json!(answer)))
}

/// `GET /admin/v1/steps/{step}/config`: the config in force and its revision.
pub(super) async fn get_config(
    State(state): State<AdminState>,
    Path(step): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(state.deployer.config(&step)?)))
}

/// `GET /admin/v1/steps/{step}/config/history`: every revision, newest first.
pub(super) async fn config_history(
    State(state): State<AdminState>,
    Path(step): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let revisions = state.deployer.config_history(&step)?;
    Ok(Json(json!({ "step": step, "revisions": revisions })))
}

/// `PUT /admin/v1/steps/{step}/config` with `{"set": {..}, "unset": [..]}` or
/// `{"revert_to": n}`; `X-Cosell-Changed-By` names who changed it (kept with the revision;
/// the CLI sends `user@host`).
pub(super) async fn change_config(
    State(state): State<AdminState>,
    Path(step): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let change: crate::deploy::step_config::ConfigChange = serde_json::from_slice(&body)
        .map_err(|err| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body must be {{\"set\": {{\"key\": \"value\"}}, \"unset\": [\"key\"]}} or {{\"revert_to\": <revision>}}: {err}"
                ),
            )
        })?;
    let changed_by = headers
        .get("x-cosell-changed-by")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
        .map_or_else(
            || "an admin API caller".to_owned(),
            |who| who.trim().to_owned(),
        );
    Ok(Json(json!(
        state
            .deployer
            .change_config(&step, change, &changed_by)
            .await?
    )))
}
