//! `GET /admin/v1/queue/events?state=pending|running|all&limit=50`: the events waiting and
//! running, one by one (`/admin/v1/queue` only counts them), for `cosell queue`.

use super::AdminState;
use super::handlers::ApiError;
use super::sync_handlers::{internal, sync_store};
use crate::store::QueueFilter;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

/// The events listed when the request names no limit.
const DEFAULT_LIMIT: usize = 50;
/// The most events one answer lists.
const MAX_LIMIT: usize = 10_000;

#[derive(Deserialize)]
pub(super) struct EventsQuery {
    state: Option<String>,
    limit: Option<usize>,
}

/// Answers `{"counts": {...}, "events": [...]}`: the queue's counts (so a listing cut by its
/// limit still says how many there are) and the events of the requested state, running ones
/// first, then waiting ones in the order the workers take them.
pub(super) async fn list(
    State(state): State<AdminState>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let store = sync_store(&state)?;
    let filter = match q.state.as_deref() {
        None => QueueFilter::All,
        Some(name) => QueueFilter::parse(name).ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown state `{name}`: use state={} (parked events and dead letters are \
                     listed by /admin/v1/dead-letters)",
                    QueueFilter::NAMES
                ),
            )
        })?,
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let counts = store.queue_counts().map_err(internal)?;
    let events = store.queued_events(filter, limit).map_err(internal)?;
    Ok(Json(json!({ "counts": counts, "events": events })))
}
