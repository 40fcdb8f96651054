//! Admin routes of the sync engine: the queue, dead letters and the audit trail.

use super::AdminState;
use super::audit_search::AuditFilters;
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
pub(super) async fn queue(State(state): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let counts = sync_store(&state)?.queue_counts().map_err(internal)?;
    Ok(Json(json!(counts)))
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    limit: Option<usize>,
}

/// `GET /admin/v1/dead-letters`: the dead letters, and the parked events (each with the step
/// and version it failed on, and why), which run again by themselves when another version of
/// that step is activated.
pub(super) async fn dead_letters(
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
pub(super) struct ReplayBody {
    ids: Option<Vec<i64>>,
    #[serde(default)]
    all: bool,
}

/// `POST /admin/v1/dead-letters/replay`: `{"ids": [..]}` or `{"all": true}`.
pub(super) async fn replay(
    State(state): State<AdminState>,
    Json(body): Json<ReplayBody>,
) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(
        json!({ "replayed": replay_dead_letters(&state, ids)? }),
    ))
}

/// Queues dead letters again (`ids`, or all of them) and wakes the workers; answers how many.
/// The JSON API's replay and the console's.
pub(super) fn replay_dead_letters(
    state: &AdminState,
    ids: Option<&[i64]>,
) -> Result<u64, ApiError> {
    let replayed = sync_store(state)?
        .replay_dead_letters(ids)
        .map_err(internal)?;
    if let Some(wakeup) = &state.wakeup {
        wakeup.notify_waiters();
    }
    Ok(replayed)
}

/// `GET /admin/v1/audit?record=&outcome=&since=&until=&conflicts=&limit=&before=`: one page
/// of the audit trail, newest first, and where the next page starts (`next`, to pass as
/// `before`).
pub(super) async fn audit(
    State(state): State<AdminState>,
    Query(filters): Query<AuditFilters>,
) -> Result<Json<Value>, ApiError> {
    let query = filters
        .to_query(chrono::Utc::now())
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let page = sync_store(&state)?.audit_search(&query).map_err(internal)?;
    Ok(Json(json!({ "audit": page.entries, "next": page.next })))
}
