//! The audit trail: what the sync engine did to which record, searched by record, outcome,
//! time range and conflicts only, a page at a time: the filters of
//! `GET /admin/v1/audit` and `cosell audit` ([`crate::admin::audit_search`]).

use super::super::session::Session;
use super::{Chrome, problem, render};
use crate::admin::AdminState;
use crate::admin::audit_search::AuditFilters;
use crate::admin::handlers::ApiError;
use crate::admin::sync_handlers::{internal, sync_store};
use crate::store::{AUDIT_OUTCOMES, AuditEntry};
use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An outcome of the form's choice, and whether it is the one searched for.
struct Choice {
    value: &'static str,
    selected: bool,
}

/// The form as submitted, to show it again.
struct Form {
    record: String,
    since: String,
    until: String,
    conflicts: bool,
    outcomes: Vec<Choice>,
}

impl Form {
    fn of(filters: &AuditFilters) -> Self {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        let outcome = text(&filters.outcome);
        Self {
            record: text(&filters.record),
            since: text(&filters.since),
            until: text(&filters.until),
            conflicts: filters.conflicts,
            outcomes: AUDIT_OUTCOMES
                .iter()
                .map(|&value| Choice {
                    value,
                    selected: outcome == value,
                })
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct Audit {
    chrome: Chrome,
    form: Form,
    entries: Vec<AuditEntry>,
    /// The link to the next (older) page, if there is one.
    next: Option<String>,
    /// What is wrong with the filters, if anything.
    error: Option<String>,
}

/// The query string of the page after this one: the same filters, `before` = `next`.
fn next_page(filters: &AuditFilters, next: i64) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in [
        ("record", &filters.record),
        ("outcome", &filters.outcome),
        ("since", &filters.since),
        ("until", &filters.until),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.trim().is_empty()) {
            query.append_pair(name, value);
        }
    }
    if filters.conflicts {
        query.append_pair("conflicts", "on");
    }
    if let Some(limit) = filters.limit {
        query.append_pair("limit", &limit.to_string());
    }
    query.append_pair("before", &next.to_string());
    format!("/console/audit?{}", query.finish())
}

/// `GET /console/audit?record=&outcome=&since=&until=&conflicts=on&before=`
pub(crate) async fn search(
    State(state): State<AdminState>,
    Extension(session): Extension<Session>,
    Query(filters): Query<AuditFilters>,
) -> Response {
    let chrome = Chrome::new("audit", &session);
    let store = match sync_store(&state) {
        Ok(store) => store.clone(),
        Err(err) => return problem(chrome, "No audit trail here", err),
    };
    let mut page = Audit {
        chrome,
        form: Form::of(&filters),
        entries: Vec::new(),
        next: None,
        error: None,
    };
    let query = match filters.to_query(chrono::Utc::now()) {
        Ok(query) => query,
        Err(error) => {
            page.error = Some(error);
            return (StatusCode::BAD_REQUEST, render(&page)).into_response();
        }
    };
    match store.audit_search(&query).map_err(internal) {
        Ok(found) => {
            page.entries = found.entries;
            page.next = found.next.map(|next| next_page(&filters, next));
            render(&page)
        }
        Err(ApiError(status, message)) => {
            page.error = Some(message);
            (status, render(&page)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_keeps_the_filters() {
        let filters = AuditFilters {
            record: Some("referral:a b".into()),
            outcome: Some(String::new()),
            conflicts: true,
            ..AuditFilters::default()
        };
        assert_eq!(
            next_page(&filters, 42),
            "/console/audit?record=referral%3Aa+b&conflicts=on&before=42"
        );
    }
}
