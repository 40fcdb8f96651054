//! Admin routes of the sync engine: the queue, dead letters and the audit trail.

use super::AdminState;
use super::handlers::ApiError;
use crate::store::SyncStore;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

pub(super) fn sync_store(state: &AdminState) -> Result<&Arc<dyn SyncStore>, ApiError> {
    state.sync_store.as_ref().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "syncing is not configured on this host: add [partner_center] and [dataverse]".into(),
        )
    })
}

pub(super) fn internal(e: anyhow::Error) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
}

/// `GET /admin/v1/queue`: events waiting, running and dead.
pub async fn queue(State(state): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let counts = sync_store(&state)?.queue_counts().map_err(internal)?;
    Ok(Json(json!(counts)))
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
    record: Option<String>,
}

/// `GET /admin/v1/dead-letters`: the dead letters, and the parked events (each with the step
/// and version it failed on, and why), which run again by themselves when another version of
/// that step is activated.
pub async fn dead_letters(
    State(state): State<AdminState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let store = sync_store(&state)?;
    let limit = q.limit.unwrap_or(100).min(10_000);
    let letters = store.dead_letters(limit).map_err(internal)?;
    let parked = store.parked(limit).map_err(internal)?;
    Ok(Json(json!({ "dead_letters": letters, "parked": parked })))
}

#[derive(Deserialize)]
pub struct ReplayBody {
    ids: Option<Vec<i64>>,
    #[serde(default)]
    all: bool,
}

/// `POST /admin/v1/dead-letters/replay`: `{"ids": [..]}` or `{"all": true}`.
pub async fn replay(
    State(state): State<AdminState>,
    Json(body): Json<ReplayBody>,
) -> Result<Json<Value>, ApiError> {
    let store = sync_store(&state)?;
    let ids = match (&body.ids, body.all) {
        (Some(ids), false) if !ids.is_empty() => Some(ids.as_slice()),
        (None, true) => None,
        _ => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "send {\"ids\": [1, 2]} or {\"all\": true}".into(),
            ));
        }
    };
    let replayed = store.replay_dead_letters(ids).map_err(internal)?;
    if let Some(wakeup) = &state.wakeup {
        wakeup.notify_waiters();
    }
    Ok(Json(json!({ "replayed": replayed })))
}

/// `GET /admin/v1/audit?record=referral:<id>&limit=50`.
pub async fn audit(
    State(state): State<AdminState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let entries = sync_store(&state)?
        .audit_trail(q.record.as_deref(), q.limit.unwrap_or(50).min(10_000))
        .map_err(internal)?;
    Ok(Json(json!({ "audit": entries })))
}
