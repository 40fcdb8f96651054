//! The operator's web console on the admin listener, under `/console`: sign in with the admin
//! token, then see the host at a glance (overview), deploy, compare and roll back mapping
//! versions, preview a pipeline, replay dead letters and search the audit trail.
//!
//! Server-rendered HTML (askama templates in `host/templates/console/`, compiled into the
//! binary), no script, one vendored stylesheet, and a Content-Security-Policy of
//! `default-src 'self'`: nothing is loaded from another origin. Every change goes through the
//! same functions as the JSON API (`Deployer::deploy`, `Deployer::rollback`,
//! [`super::handlers::preview`], [`super::sync_handlers::replay_dead_letters`]).
//!
//! | route | what |
//! |---|---|
//! | `GET/POST /console/sign-in`, `POST /console/sign-out` | sessions ([`session`]) |
//! | `GET /console/overview` | events, queue, dead letters, webhooks, services, charts of the last hour |
//! | `GET /console/mappings`, `GET /console/mappings/{step}` | steps and their versions |
//! | `POST /console/mappings/{step}/deploy` (upload), `…/rollback` | change the active version |
//! | `GET /console/mappings/{step}/compare?a=&b=` | the sample record through two versions |
//! | `GET/POST /console/preview` | run a pipeline on a pasted or recent record |
//! | `GET /console/dead-letters`, `POST /console/dead-letters/replay` | inspect, replay |
//! | `GET /console/audit` | search the audit trail |
//!
//! Every route but sign-in and the stylesheet needs a session; every POST needs the session's
//! CSRF token ([`csrf`]).

mod chart;
pub mod csrf;
pub mod history;
mod pages;
pub mod session;
pub mod snapshot;

pub use session::SessionSettings;

use super::AdminState;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use std::sync::Arc;

/// What the console's handlers share besides [`AdminState`].
pub struct Console {
    pub(crate) admin: AdminState,
    /// The signed-in browsers of this replica.
    pub sessions: session::Sessions,
    /// The last hour of readings behind the overview's charts.
    pub history: history::History,
}

/// The vendored stylesheet.
const STYLESHEET: &str = include_str!("../../../assets/console/console.css");

/// The console's routes, to nest under `/console`; starts the sampler of the overview's
/// charts on the current runtime (it ends when the router is dropped).
pub fn router(state: &AdminState, settings: SessionSettings) -> Router<AdminState> {
    let console = Arc::new(Console {
        admin: state.clone(),
        sessions: session::Sessions::new(settings),
        history: history::History::default(),
    });
    history::spawn_sampler(Arc::downgrade(&console));
    let signed_in = Router::new()
        .route("/", get(|| async { Redirect::to("/console/overview") }))
        .route("/overview", get(pages::overview::page))
        .route("/mappings", get(pages::mappings::list))
        .route("/mappings/{step}", get(pages::mappings::step))
        .route("/mappings/{step}/deploy", post(pages::mappings::deploy))
        .route("/mappings/{step}/rollback", post(pages::mappings::rollback))
        .route("/mappings/{step}/compare", get(pages::mappings::compare))
        .route(
            "/preview",
            get(pages::preview::form).post(pages::preview::run),
        )
        .route("/dead-letters", get(pages::dead_letters::list))
        .route("/dead-letters/replay", post(pages::dead_letters::replay))
        .route("/audit", get(pages::audit::search))
        .route("/sign-out", post(pages::sign_in::sign_out))
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            require_session,
        ));
    Router::new()
        .route(
            "/sign-in",
            get(pages::sign_in::form).post(pages::sign_in::sign_in),
        )
        .route("/assets/console.css", get(stylesheet))
        .merge(signed_in)
        .layer(axum::Extension(console))
        .layer(axum::middleware::map_response(security_headers))
}

/// Lets a request through only with a live session (put in its extensions for the
/// handlers); otherwise sends the browser to sign in, having changed nothing. A POST a browser
/// marks as cross-site is refused here, before its body is read.
async fn require_session(
    State(console): State<Arc<Console>>,
    mut request: Request,
    next: Next,
) -> Response {
    let session =
        session::cookie_of(request.headers()).and_then(|cookie| console.sessions.find(&cookie));
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD);
    let refusal = match &session {
        None => Some(Redirect::to("/console/sign-in?expired=1").into_response()),
        Some(_) if changes => csrf::cross_site(request.headers()),
        Some(_) => None,
    };
    if let Some(refusal) = refusal {
        // Read what the browser is still sending (an upload) so it sees the answer, not a
        // reset connection.
        super::auth::discard(request.into_body(), super::body_limit(&console.admin)).await;
        return refusal;
    }
    request
        .extensions_mut()
        .insert(session.expect("checked above"));
    next.run(request).await
}

/// `GET /console/assets/console.css`
async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// Headers of every console answer: nothing from another origin, no framing, no caching
/// of pages that show the host's data.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
