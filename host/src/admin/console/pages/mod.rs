//! The console's pages: one module per page, each a handler and the askama template it
//! fills; this module has what they share (the frame of every page, error pages, formatting).

pub(super) mod audit;
pub(super) mod dead_letters;
pub(super) mod mappings;
pub(super) mod overview;
pub(super) mod preview;
pub(super) mod sign_in;

use super::session::Session;
use crate::admin::handlers::ApiError;
use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// What the frame of every signed-in page needs: the navigation's current page, the token
/// of the sign-out form, a message to show on top.
pub(super) struct Chrome {
    pub page: &'static str,
    pub csrf: String,
    pub flash: Option<String>,
}

impl Chrome {
    pub(super) fn new(page: &'static str, session: &Session) -> Self {
        Self {
            page,
            csrf: session.csrf.to_string(),
            flash: None,
        }
    }

    pub(super) fn with_flash(mut self, flash: Option<String>) -> Self {
        self.flash = flash;
        self
    }
}

/// A template as an HTML answer (a template that fails to render is a 500 that says so).
pub(super) fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the console could not render this page: {err}"),
        )
            .into_response(),
    }
}

/// The 403 page of a refused change.
#[derive(Template)]
#[template(path = "console/refused.html")]
pub(super) struct Refused {
    pub why: String,
}

/// A page saying what went wrong and what to do.
#[derive(Template)]
#[template(path = "console/problem.html")]
pub(super) struct Problem {
    pub chrome: Chrome,
    pub title: String,
    pub message: String,
}

/// An [`ApiError`] of the shared logic as a page with its status.
pub(super) fn problem(chrome: Chrome, title: &str, error: ApiError) -> Response {
    (
        error.0,
        render(&Problem {
            chrome,
            title: title.to_owned(),
            message: error.1,
        }),
    )
        .into_response()
}

/// A number, or "—" when the metric is not there.
pub(super) fn number(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), super::chart::format_number)
}

/// A duration in seconds for people: `42 s`, `5 min`, `3.5 h`.
pub(super) fn duration(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else if seconds < 2.0 * 3600.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

/// How long ago a unix timestamp was, or "—" (never, or the metric is not there).
pub(super) fn ago(timestamp: Option<f64>, now: f64) -> String {
    match timestamp {
        Some(t) if t > 0.0 => format!("{} ago", duration((now - t).max(0.0))),
        Some(_) => "never".to_owned(),
        None => "—".to_owned(),
    }
}

/// The first 12 hex digits of a version hash (what people compare by eye).
pub(super) fn short(version: &str) -> String {
    version
        .trim_start_matches("sha256:")
        .chars()
        .take(12)
        .collect()
}

/// JSON text pretty-printed when it parses, as it came otherwise.
pub(super) fn pretty(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_durations_read_well() {
        assert_eq!(number(None), "—");
        assert_eq!(number(Some(3.0)), "3");
        assert_eq!(duration(42.0), "42 s");
        assert_eq!(duration(600.0), "10 min");
        assert_eq!(ago(None, 100.0), "—");
        assert_eq!(ago(Some(0.0), 100.0), "never");
        assert_eq!(ago(Some(90.0), 100.0), "10 s ago");
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
    }
}
