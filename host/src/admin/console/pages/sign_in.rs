//! Signing in with the admin token, and out.

use super::super::Console;
use super::super::csrf::{self, CheckedForm};
use super::super::session::{self, Session};
use super::render;
use crate::admin::AdminState;
use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignIn {
    message: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct Notice {
    expired: Option<String>,
    signed_out: Option<String>,
}

/// `GET /console/sign-in`
pub(crate) async fn form(
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
    Query(notice): Query<Notice>,
) -> Response {
    if session::cookie_of(&headers).is_some_and(|c| console.sessions.find(&c).is_some()) {
        return Redirect::to("/console/overview").into_response();
    }
    let message = if notice.signed_out.is_some() {
        Some("You are signed out.".to_owned())
    } else if notice.expired.is_some() {
        Some("Sign in to continue (your session ended or you were not signed in).".to_owned())
    } else {
        None
    };
    render(&SignIn { message })
}

#[derive(Deserialize)]
pub(crate) struct Credentials {
    #[serde(default)]
    token: String,
}

/// `POST /console/sign-in`: the admin token gives a session.
pub(crate) async fn sign_in(
    State(state): State<AdminState>,
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
    axum::Form(credentials): axum::Form<Credentials>,
) -> Response {
    if let Some(refusal) = csrf::cross_site(&headers) {
        return refusal;
    }
    if !console.sessions.sign_in_allowed() {
        tracing::warn!("console sign-in refused: too many failed sign-ins");
        let message = format!(
            "Too many failed sign-ins: wait a minute and try again (at most {} failures a minute are answered).",
            session::MAX_FAILURES
        );
        return (
            StatusCode::TOO_MANY_REQUESTS,
            render(&SignIn {
                message: Some(message),
            }),
        )
            .into_response();
    }
    if !state.token.matches(credentials.token.trim()) {
        console.sessions.failed_sign_in();
        tracing::warn!("console sign-in with a wrong token");
        return (
            StatusCode::UNAUTHORIZED,
            render(&SignIn {
                message: Some(
                    "That is not the admin token: use the token the host was started with (COSELL_ADMIN_TOKEN or admin.token_file).".to_owned(),
                ),
            }),
        )
            .into_response();
    }
    let (cookie, _) = console.sessions.start();
    tracing::info!("console sign-in");
    (
        [(header::SET_COOKIE, console.sessions.set_cookie(&cookie))],
        Redirect::to("/console/overview"),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(crate) struct Nothing {}

/// `POST /console/sign-out`: the session ends on the host, so its cookie is worthless even if
/// the browser kept a copy.
pub(crate) async fn sign_out(
    Extension(console): Extension<Arc<Console>>,
    Extension(_session): Extension<Session>,
    headers: HeaderMap,
    CheckedForm(Nothing {}): CheckedForm<Nothing>,
) -> Response {
    if let Some(cookie) = session::cookie_of(&headers) {
        console.sessions.end(&cookie);
    }
    (
        [(header::SET_COOKIE, console.sessions.clear_cookie())],
        Redirect::to("/console/sign-in?signed_out=1"),
    )
        .into_response()
}
