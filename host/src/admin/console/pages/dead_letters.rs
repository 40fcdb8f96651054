//! Dead letters (events that failed every attempt) and parked events: inspect, replay one or
//! all, with the replay the JSON API and `cosell dead-letters replay` use.

use super::super::csrf::CheckedForm;
use super::super::session::Session;
use super::{Chrome, problem, render};
use crate::admin::AdminState;
use crate::admin::sync_handlers::{internal, replay_dead_letters, sync_store};
use crate::store::{DeadLetter, ParkedEvent};
use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

/// At most this many of each are listed.
const LIMIT: usize = 500;

#[derive(Template)]
#[template(path = "console/dead_letters.html")]
struct DeadLetters {
    chrome: Chrome,
    letters: Vec<DeadLetter>,
    parked: Vec<ParkedEvent>,
}

#[derive(Deserialize)]
pub(crate) struct Notice {
    replayed: Option<u64>,
}

/// `GET /console/dead-letters`
pub(crate) async fn list(
    State(state): State<AdminState>,
    Extension(session): Extension<Session>,
    Query(notice): Query<Notice>,
) -> Response {
    let chrome = Chrome::new("dead-letters", &session).with_flash(
        notice
            .replayed
            .map(|n| format!("{n} dead letter(s) queued again.")),
    );
    let listed = sync_store(&state).and_then(|store| {
        Ok((
            store.dead_letters(LIMIT).map_err(internal)?,
            store.parked(LIMIT).map_err(internal)?,
        ))
    });
    match listed {
        Ok((letters, parked)) => render(&DeadLetters {
            chrome,
            letters,
            parked,
        }),
        Err(err) => problem(chrome, "No dead letters here", err),
    }
}

#[derive(Deserialize)]
pub(crate) struct ReplayForm {
    /// One dead letter, or…
    id: Option<i64>,
    /// …all of them (`all=1`).
    all: Option<String>,
}

/// `POST /console/dead-letters/replay`
pub(crate) async fn replay(
    State(state): State<AdminState>,
    Extension(session): Extension<Session>,
    CheckedForm(form): CheckedForm<ReplayForm>,
) -> Response {
    let ids = match (form.id, form.all.is_some()) {
        (Some(id), false) => Some(vec![id]),
        (None, true) => None,
        _ => {
            return problem(
                Chrome::new("dead-letters", &session),
                "Nothing replayed",
                crate::admin::handlers::ApiError(
                    StatusCode::BAD_REQUEST,
                    "replay one dead letter (its button) or all of them".into(),
                ),
            );
        }
    };
    match replay_dead_letters(&state, ids.as_deref()) {
        Ok(replayed) => {
            Redirect::to(&format!("/console/dead-letters?replayed={replayed}")).into_response()
        }
        Err(err) => problem(
            Chrome::new("dead-letters", &session),
            "Nothing replayed",
            err,
        ),
    }
}
