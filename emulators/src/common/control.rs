//! The control endpoints every emulator serves under `/_emulator/` (never faulted):
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/_emulator/faults` | the current [`FaultConfig`] |
//! | PUT | `/_emulator/faults` | replace it (400 with the reason if a rate is out of range) |
//! | GET | `/_emulator/clock` | `{"now": …, "offset_seconds": …}` |
//! | POST | `/_emulator/clock/advance` | `{"seconds": n}`: move emulated time forward |

use super::clock::EmulatedClock;
use super::faults::{FaultConfig, Faults};
use super::server::error_response;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

#[derive(Clone)]
struct ControlState {
    faults: Faults,
    clock: EmulatedClock,
}

/// The control routes, to merge into an emulator's router.
pub fn router(faults: Faults, clock: EmulatedClock) -> Router {
    Router::new()
        .route("/_emulator/faults", get(get_faults).put(put_faults))
        .route("/_emulator/clock", get(get_clock))
        .route("/_emulator/clock/advance", post(advance_clock))
        .with_state(ControlState { faults, clock })
}

async fn get_faults(State(state): State<ControlState>) -> Json<FaultConfig> {
    Json(state.faults.get())
}

async fn put_faults(
    State(state): State<ControlState>,
    Json(config): Json<FaultConfig>,
) -> Response {
    match state.faults.set(config) {
        Ok(()) => Json(state.faults.get()).into_response(),
        Err(reason) => error_response(StatusCode::BAD_REQUEST, "BadRequest", &reason),
    }
}

async fn get_clock(State(state): State<ControlState>) -> Json<serde_json::Value> {
    Json(json!({
        "now": state.clock.now(),
        "offset_seconds": state.clock.offset().num_seconds(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    seconds: i64,
}

async fn advance_clock(
    State(state): State<ControlState>,
    Json(advance): Json<Advance>,
) -> Response {
    if advance.seconds < 0 {
        return error_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "seconds must not be negative: emulated time only moves forward",
        );
    }
    state
        .clock
        .advance(chrono::Duration::seconds(advance.seconds));
    get_clock(State(state)).await.into_response()
}
