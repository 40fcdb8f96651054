//! Preview: run a pipeline on a pasted record, or on a recent one (the record as it was last
//! synced), without syncing anything: the same run as `POST /admin/v1/pipelines/{direction}/run`.

use super::super::csrf::CheckedForm;
use super::super::session::Session;
use super::{Chrome, pretty, problem, render};
use crate::admin::AdminState;
use crate::admin::handlers::{self, ApiError, Preview, RunRequest};
use crate::store::SyncStore;
use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

/// How many recent records are offered.
const RECENT: usize = 10;

struct StepLine {
    step: String,
    version: String,
    stats: String,
}

#[derive(Template)]
#[template(path = "console/preview.html")]
struct PreviewPage {
    chrome: Chrome,
    direction: String,
    document: String,
    current: String,
    recent: Vec<String>,
    /// The output, when a run happened.
    output: Option<String>,
    steps: Vec<StepLine>,
    /// Where the run stopped, when it did.
    stopped: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct Pick {
    /// `referral:<id>` or `opportunity:<id>` of the audit trail.
    record: Option<String>,
}

/// Recent records of the audit trail, newest first, each once.
fn recent(store: Option<&std::sync::Arc<dyn SyncStore>>) -> Vec<String> {
    let Some(store) = store else {
        return Vec::new();
    };
    let mut records: Vec<String> = Vec::new();
    for entry in store.audit_trail(None, 200).unwrap_or_default() {
        if !records.contains(&entry.record) {
            records.push(entry.record);
        }
        if records.len() == RECENT {
            break;
        }
    }
    records
}

/// The record as last synced, and the pipeline it goes through.
fn last_synced(
    store: &std::sync::Arc<dyn SyncStore>,
    record: &str,
) -> Result<(String, String), ApiError> {
    let missing = || {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no synced copy of `{record}`: pick another record or paste one"),
        )
    };
    let internal = |e: anyhow::Error| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"));
    let (direction, snapshot) = match record.split_once(':') {
        Some(("referral", id)) => (
            "partner-center-to-crm",
            store
                .link_by_referral(id)
                .map_err(internal)?
                .and_then(|l| l.pc_snapshot),
        ),
        Some(("opportunity", id)) => (
            "crm-to-partner-center",
            store
                .link_by_opportunity(id)
                .map_err(internal)?
                .and_then(|l| l.crm_snapshot),
        ),
        _ => return Err(missing()),
    };
    let snapshot = snapshot.ok_or_else(missing)?;
    Ok((direction.to_owned(), pretty(&snapshot)))
}

/// `GET /console/preview[?record=referral:<id>]`
pub(crate) async fn form(
    State(state): State<AdminState>,
    Extension(session): Extension<Session>,
    Query(pick): Query<Pick>,
) -> Response {
    let chrome = Chrome::new("preview", &session);
    let store = state.sync_store.as_ref();
    let (direction, document) = match (pick.record.as_deref(), store) {
        (Some(record), Some(store)) => match last_synced(store, record) {
            Ok(found) => found,
            Err(err) => return problem(chrome, "No such record", err),
        },
        _ => (
            "partner-center-to-crm".to_owned(),
            pretty(crate::deploy::samples::builtin_sample(
                crate::runtime::Direction::PartnerCenterToCrm,
            )),
        ),
    };
    render(&PreviewPage {
        chrome,
        direction,
        document,
        current: String::new(),
        recent: recent(store),
        output: None,
        steps: Vec::new(),
        stopped: None,
    })
}

#[derive(Deserialize)]
pub(crate) struct RunForm {
    direction: String,
    document: String,
    #[serde(default)]
    current: String,
}

fn json_field(name: &str, text: &str) -> Result<Value, ApiError> {
    serde_json::from_str(text).map_err(|err| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("the {name} is not JSON ({err}): paste a JSON object"),
        )
    })
}

/// `POST /console/preview`
pub(crate) async fn run(
    State(state): State<AdminState>,
    Extension(session): Extension<Session>,
    CheckedForm(form): CheckedForm<RunForm>,
) -> Response {
    let chrome = Chrome::new("preview", &session);
    let parsed = json_field("record", &form.document).and_then(|document| {
        let current = match form.current.trim() {
            "" => None,
            text => Some(json_field("current counterpart", text)?),
        };
        Ok(RunRequest::of(document, current))
    });
    let result = match parsed {
        Ok(request) => handlers::preview(&state, &form.direction, request).await,
        Err(err) => Err(err),
    };
    let mut page = PreviewPage {
        chrome,
        direction: form.direction,
        document: form.document,
        current: form.current,
        recent: recent(state.sync_store.as_ref()),
        output: None,
        steps: Vec::new(),
        stopped: None,
    };
    let steps = |runs: Vec<crate::pipeline::StepRun>| {
        runs.into_iter()
            .map(|run| StepLine {
                step: run.step,
                version: super::short(&run.version),
                stats: serde_json::to_string(&run.stats).unwrap_or_default(),
            })
            .collect()
    };
    match result {
        Ok(Preview::Done {
            document,
            steps: runs,
        }) => {
            page.output = Some(serde_json::to_string_pretty(&document).unwrap_or_default());
            page.steps = steps(runs);
        }
        Ok(Preview::Stopped(err)) => {
            page.stopped = Some(err.to_string());
            page.steps = steps(err.completed);
        }
        Err(err) => return problem(page.chrome, "Preview not run", err),
    }
    render(&page)
}
