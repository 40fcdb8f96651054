//! Mapping steps: each step's versions and which is active, deploy by upload (with the
//! validation report), rollback, and the step's sample record through two versions side by
//! side. Deploy and rollback are the deployer's, as for the JSON API.

use super::super::csrf::{self, CheckedForm};
use super::super::session::Session;
use super::{Chrome, problem, render, short};
use crate::admin::AdminState;
use crate::admin::handlers::ApiError;
use crate::deploy::{DeployError, DeployReport, DeploySource, SampleTrial};
use crate::runtime::Direction;
use crate::store::VersionSummary;
use askama::Template;
use axum::Extension;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

/// A step of a pipeline with its active version (the mappings list and the overview).
pub(super) struct StepRow {
    pub(super) name: String,
    pub(super) direction: &'static str,
    pub(super) position: usize,
    pub(super) version: String,
    pub(super) size: usize,
    /// The step's effective limits, in short (fuel, memory, time).
    pub(super) limits: String,
}

#[derive(Template)]
#[template(path = "console/mappings.html")]
struct Mappings {
    chrome: Chrome,
    steps: Vec<StepRow>,
}

/// `GET /console/mappings`
pub(crate) async fn list(
    State(state): State<AdminState>,
    Extension(session): Extension<Session>,
) -> Response {
    let steps = step_rows(&state);
    render(&Mappings {
        chrome: Chrome::new("mappings", &session),
        steps,
    })
}

/// Every step of both pipelines, in order, with its active version.
pub(super) fn step_rows(state: &AdminState) -> Vec<StepRow> {
    state
        .deployer
        .pipelines()
        .in_order()
        .map(|(direction, position, step)| {
            let active = step.active();
            StepRow {
                name: step.name.to_string(),
                direction: match direction {
                    Direction::PartnerCenterToCrm => "Partner Center → CRM",
                    Direction::CrmToPartnerCenter => "CRM → Partner Center",
                },
                position,
                version: short(&active.version),
                size: active.size,
                limits: format!(
                    "fuel {}, memory {} MiB, {} ms",
                    step.limits.fuel,
                    step.limits.memory_bytes / (1024 * 1024),
                    step.limits.timeout_ms
                ),
            }
        })
        .collect()
}

struct VersionRow {
    version: String,
    short: String,
    size: u64,
    source: String,
    uploaded_at: String,
    last_activated_at: String,
    active: bool,
    pinned: bool,
}

impl From<VersionSummary> for VersionRow {
    fn from(v: VersionSummary) -> Self {
        Self {
            short: short(&v.version),
            version: v.version,
            size: v.size,
            source: v.source,
            uploaded_at: v.uploaded_at,
            last_activated_at: v.last_activated_at.unwrap_or_default(),
            active: v.active,
            pinned: v.pinned,
        }
    }
}

#[derive(Template)]
#[template(path = "console/step.html")]
struct StepPage {
    chrome: Chrome,
    step: String,
    versions: Vec<VersionRow>,
    /// The versions preselected for the comparison: the active one and the one before.
    compare_a: String,
    compare_b: String,
}

#[derive(Deserialize)]
pub(crate) struct StepNotice {
    flash: Option<String>,
}

fn versions(state: &AdminState, step: &str) -> Result<Vec<VersionRow>, ApiError> {
    let mut versions: Vec<VersionSummary> = state.deployer.versions(step)?;
    // Most recently activated first: what an operator rolls back to is on top.
    versions.sort_by(|a, b| {
        b.active
            .cmp(&a.active)
            .then(b.last_activated_at.cmp(&a.last_activated_at))
            .then(b.uploaded_at.cmp(&a.uploaded_at))
    });
    Ok(versions.into_iter().map(VersionRow::from).collect())
}

/// `GET /console/mappings/{step}`
pub(crate) async fn step(
    State(state): State<AdminState>,
    Extension(session): Extension<Session>,
    Path(step): Path<String>,
    Query(notice): Query<StepNotice>,
) -> Response {
    let chrome = Chrome::new("mappings", &session).with_flash(notice.flash);
    match versions(&state, &step) {
        Ok(versions) => {
            let pick = |i: usize| {
                versions
                    .get(i)
                    .map(|v| v.version.clone())
                    .unwrap_or_default()
            };
            let (compare_a, compare_b) = (pick(0), pick(1));
            render(&StepPage {
                chrome,
                step,
                versions,
                compare_a,
                compare_b,
            })
        }
        Err(err) => problem(chrome, "No such step", err),
    }
}

#[derive(Template)]
#[template(path = "console/report.html")]
struct Report {
    chrome: Chrome,
    step: String,
    action: &'static str,
    report: DeployReport,
    sample_outcome: String,
    /// The whole report, as the JSON API answers it.
    json: String,
}

fn report_page(
    session: &Session,
    action: &'static str,
    result: Result<DeployReport, DeployError>,
    step: String,
) -> Response {
    let chrome = Chrome::new("mappings", session);
    match result {
        Ok(report) => render(&Report {
            chrome,
            step,
            action,
            sample_outcome: report.sample.as_ref().map_or_else(
                || "not run (the version was active already)".to_owned(),
                |s| s.outcome.clone(),
            ),
            json: serde_json::to_string_pretty(&report).unwrap_or_default(),
            report,
        }),
        Err(err) => {
            let title = match action {
                "deploy" => "Deploy refused: the active version keeps serving",
                _ => "Rollback not done: the active version keeps serving",
            };
            problem(chrome, title, ApiError::from(err))
        }
    }
}

/// `POST /console/mappings/{step}/deploy`: a `multipart/form-data` upload whose first field
/// is `_csrf` and whose `wasm` field is the component.
pub(crate) async fn deploy(
    State(state): State<AdminState>,
    Extension(session): Extension<Session>,
    Path(step): Path<String>,
    mut form: Multipart,
) -> Response {
    if let Err(refusal) = csrf::check_multipart(&session, &mut form).await {
        return refusal;
    }
    let mut wasm = None;
    loop {
        match form.next_field().await {
            Ok(Some(field)) if field.name() == Some("wasm") => match field.bytes().await {
                Ok(bytes) => {
                    wasm = Some(bytes);
                    break;
                }
                Err(err) => {
                    return problem(
                        Chrome::new("mappings", &session),
                        "Upload not read",
                        ApiError(err.status(), format!("the upload could not be read: {err}")),
                    );
                }
            },
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(err) => {
                return problem(
                    Chrome::new("mappings", &session),
                    "Upload not read",
                    ApiError(err.status(), format!("the upload could not be read: {err}")),
                );
            }
        }
    }
    let Some(wasm) = wasm.filter(|w| !w.is_empty()) else {
        return problem(
            Chrome::new("mappings", &session),
            "Nothing to deploy",
            ApiError(
                StatusCode::BAD_REQUEST,
                "choose a .wasm file (a mapping component) to upload".into(),
            ),
        );
    };
    let result = state
        .deployer
        .deploy(&step, wasm.to_vec(), DeploySource::AdminApi)
        .await;
    report_page(&session, "deploy", result, step)
}

#[derive(Deserialize)]
pub(crate) struct RollbackForm {
    /// A version; empty or absent: the one active before the current one.
    to: Option<String>,
}

/// `POST /console/mappings/{step}/rollback`
pub(crate) async fn rollback(
    State(state): State<AdminState>,
    Extension(session): Extension<Session>,
    Path(step): Path<String>,
    CheckedForm(form): CheckedForm<RollbackForm>,
) -> Response {
    let to = form.to.filter(|t| !t.trim().is_empty());
    let result = state.deployer.rollback(&step, to.as_deref()).await;
    report_page(&session, "rollback", result, step)
}

#[derive(Deserialize)]
pub(crate) struct CompareQuery {
    a: String,
    b: String,
}

struct Side {
    version: String,
    short: String,
    ok: bool,
    text: String,
}

impl From<SampleTrial> for Side {
    fn from(trial: SampleTrial) -> Self {
        let (ok, text) = match trial.output {
            Ok(output) => (true, super::pretty(&output)),
            Err(error) => (false, error),
        };
        Self {
            short: short(&trial.version),
            version: trial.version,
            ok,
            text,
        }
    }
}

#[derive(Template)]
#[template(path = "console/compare.html")]
struct Compare {
    chrome: Chrome,
    step: String,
    sides: Vec<Side>,
    same: bool,
}

/// `GET /console/mappings/{step}/compare?a=<version>&b=<version>`
pub(crate) async fn compare(
    State(state): State<AdminState>,
    Extension(session): Extension<Session>,
    Path(step): Path<String>,
    Query(query): Query<CompareQuery>,
) -> Response {
    let chrome = Chrome::new("mappings", &session);
    let mut sides = Vec::new();
    // One call time for both sides, so only the versions differ.
    let at = chrono::Utc::now();
    for version in [&query.a, &query.b] {
        match state.deployer.try_sample(&step, version, at).await {
            Ok(trial) => sides.push(Side::from(trial)),
            Err(err) => return problem(chrome, "Cannot compare", ApiError::from(err)),
        }
    }
    let same = sides[0].ok == sides[1].ok && sides[0].text == sides[1].text;
    render(&Compare {
        chrome,
        step,
        sides,
        same,
    })
}
