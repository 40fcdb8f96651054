//! The audit trail: what the sync engine did to which record, searched by record, outcome,
//! time range, conflicts only.

use super::super::session::Session;
use super::{Chrome, problem, render};
use crate::admin::AdminState;
use crate::admin::handlers::ApiError;
use crate::admin::sync_handlers::{internal, sync_store};
use crate::store::{AuditEntry, SyncStore};
use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

/// At most this many entries are shown.
const LIMIT: usize = 200;

/// The outcomes an entry can have, for the form's choice.
const OUTCOMES: [&str; 10] = [
    "created",
    "updated",
    "unchanged",
    "echo",
    "skipped",
    "conflict",
    "rejected",
    "retry",
    "parked",
    "dead-letter",
];

/// The search form (every field optional; empty fields are no filter).
#[derive(Debug, Default, Deserialize)]
pub struct Search {
    #[serde(default)]
    record: String,
    #[serde(default)]
    outcome: String,
    /// RFC 3339 or a date (`2026-12-06`), inclusive.
    #[serde(default)]
    since: String,
    /// RFC 3339 or a date, exclusive.
    #[serde(default)]
    until: String,
    conflicts: Option<String>,
}

/// An outcome of the form's choice, and whether it is the one searched for.
struct Choice {
    value: &'static str,
    selected: bool,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct Audit {
    chrome: Chrome,
    search: Search,
    outcomes: Vec<Choice>,
    entries: Vec<AuditEntry>,
    conflicts: bool,
}

/// The entries `search` asks for, newest first.
fn find(store: &dyn SyncStore, search: &Search) -> Result<Vec<AuditEntry>, ApiError> {
    let field = |text: &str| Some(text.trim()).filter(|t| !t.is_empty()).map(str::to_owned);
    let (record, outcome, since, until) = (
        field(&search.record),
        field(&search.outcome),
        field(&search.since),
        field(&search.until),
    );
    let conflicts = search.conflicts.is_some();
    // The trail's timestamps are RFC 3339 UTC text, so they compare as text.
    let entries = store
        .audit_trail(record.as_deref(), 10_000)
        .map_err(internal)?
        .into_iter()
        .filter(|e| outcome.as_ref().is_none_or(|o| &e.outcome == o))
        .filter(|e| !conflicts || e.outcome == "conflict")
        .filter(|e| since.as_ref().is_none_or(|s| e.at.as_str() >= s.as_str()))
        .filter(|e| until.as_ref().is_none_or(|u| e.at.as_str() < u.as_str()))
        .take(LIMIT)
        .collect();
    Ok(entries)
}

/// `GET /console/audit?record=&outcome=&since=&until=&conflicts=1`
pub async fn search(
    State(state): State<AdminState>,
    Extension(session): Extension<Session>,
    Query(search): Query<Search>,
) -> Response {
    let chrome = Chrome::new("audit", &session);
    let store = match sync_store(&state) {
        Ok(store) => store.clone(),
        Err(err) => return problem(chrome, "No audit trail here", err),
    };
    match find(store.as_ref(), &search) {
        Ok(entries) => render(&Audit {
            chrome,
            outcomes: OUTCOMES
                .iter()
                .map(|&value| Choice {
                    value,
                    selected: search.outcome == value,
                })
                .collect(),
            entries,
            conflicts: search.conflicts.is_some(),
            search,
        }),
        Err(err) => problem(chrome, "Search failed", err),
    }
}
