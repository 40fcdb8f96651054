//! The overview: events per minute each way, the queue, dead letters, the last webhook of
//! each source, each service's state, and charts of the last hour; every number read from the
//! host's own metrics (the names docs/metrics.md lists), "—" where a metric is not there.

use super::super::Console;
use super::super::chart::{self, Chart};
use super::super::history::{self, Reading};
use super::super::session::Session;
use super::super::snapshot::Snapshot;
use super::mappings::{StepRow, step_rows};
use super::{Chrome, ago, duration, number, render};
use crate::admin::AdminState;
use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use std::sync::Arc;

/// The two services, by the label value the metrics use.
const SERVICES: [(&str, &str); 2] = [
    ("partner-center", "Partner Center"),
    ("dataverse", "Dataverse"),
];

/// Rates are measured over at least this long when the history allows.
const RATE_SPAN_SECS: f64 = 60.0;

struct Stat {
    id: &'static str,
    label: &'static str,
    value: String,
}

struct ServiceRow {
    name: &'static str,
    state: String,
    pauses: String,
    throttled: String,
    requests: String,
    token_failures: String,
    last_webhook: String,
}

struct PollerRow {
    name: String,
    last_success: String,
}

#[derive(Template)]
#[template(path = "console/overview.html")]
struct Overview {
    chrome: Chrome,
    stats: Vec<Stat>,
    services: Vec<ServiceRow>,
    pollers: Vec<PollerRow>,
    steps: Vec<StepRow>,
    charts: Vec<Chart>,
    width: f64,
    height: f64,
}

/// `GET /console/overview`
pub(crate) async fn page(
    State(state): State<AdminState>,
    Extension(console): Extension<Arc<Console>>,
    Extension(session): Extension<Session>,
) -> Response {
    let scrape_state = state.clone();
    let text = tokio::task::spawn_blocking(move || crate::admin::handlers::scrape(&scrape_state))
        .await
        .unwrap_or_default();
    let snapshot = Snapshot::parse(&text);
    let now = history::now();
    let sampled = console.history.readings();
    let mut readings = sampled.clone();
    readings.push(Reading::of(&snapshot, now));
    render(&Overview {
        chrome: Chrome::new("overview", &session),
        stats: stats(&snapshot, &readings),
        services: services(&snapshot, now),
        pollers: snapshot
            .label_values("cosell_poller_last_success_timestamp_seconds", "poller")
            .into_iter()
            .map(|poller| PollerRow {
                last_success: ago(
                    snapshot.sum(
                        "cosell_poller_last_success_timestamp_seconds",
                        &[("poller", &poller)],
                    ),
                    now,
                ),
                name: poller,
            })
            .collect(),
        steps: step_rows(&state),
        charts: charts(&sampled, &readings, now),
        width: chart::WIDTH,
        height: chart::HEIGHT,
    })
}

/// Events per minute of `value` from the newest reading back to the newest one at least
/// [`RATE_SPAN_SECS`] older (or the oldest there is); "—" with a single reading.
fn rate(readings: &[Reading], value: impl Fn(&Reading) -> f64) -> String {
    let Some(last) = readings.last() else {
        return "—".to_owned();
    };
    let base = readings
        .iter()
        .rev()
        .find(|r| last.at - r.at >= RATE_SPAN_SECS)
        .or_else(|| readings.first())
        .filter(|r| last.at > r.at);
    match base {
        Some(base) if value(last) >= value(base) => {
            chart::format_number((value(last) - value(base)) / (last.at - base.at) * 60.0)
        }
        _ => "—".to_owned(),
    }
}

fn stats(snapshot: &Snapshot, readings: &[Reading]) -> Vec<Stat> {
    let queue = |state| snapshot.sum("cosell_queue_events", &[("state", state)]);
    let dead = snapshot
        .sum("cosell_dead_letters", &[])
        .or_else(|| queue("dead"));
    vec![
        Stat {
            id: "rate-pc",
            label: "Events/min Partner Center → CRM",
            value: rate(readings, |r| r.from_partner_center),
        },
        Stat {
            id: "rate-dv",
            label: "Events/min CRM → Partner Center",
            value: rate(readings, |r| r.from_dataverse),
        },
        Stat {
            id: "pending",
            label: "Queue: pending",
            value: number(queue("pending")),
        },
        Stat {
            id: "running",
            label: "Queue: running",
            value: number(queue("running")),
        },
        Stat {
            id: "parked",
            label: "Queue: parked",
            value: number(queue("parked")),
        },
        Stat {
            id: "oldest",
            label: "Oldest pending event",
            // The gauge reads 0 with nothing waiting; "0 s" would suggest an event is.
            value: match (
                queue("pending"),
                snapshot.sum("cosell_queue_oldest_pending_age_seconds", &[]),
            ) {
                (Some(0.0), _) => "none waiting".to_owned(),
                (_, Some(age)) => duration(age),
                (_, None) => "—".to_owned(),
            },
        },
        Stat {
            id: "dead",
            label: "Dead letters",
            value: number(dead),
        },
    ]
}

fn services(snapshot: &Snapshot, now: f64) -> Vec<ServiceRow> {
    SERVICES
        .iter()
        .map(|&(label, name)| {
            let service = [("service", label)];
            ServiceRow {
                name,
                state: match snapshot.sum("cosell_service_paused", &service) {
                    Some(p) if p > 0.0 => "paused".to_owned(),
                    Some(_) => "running".to_owned(),
                    None => "—".to_owned(),
                },
                pauses: number(snapshot.sum("cosell_service_pauses_total", &service)),
                throttled: number(snapshot.sum(
                    "cosell_service_requests_total",
                    &[("service", label), ("status", "429")],
                )),
                requests: number(snapshot.sum("cosell_service_requests_total", &service)),
                token_failures: number(
                    snapshot.sum("cosell_token_refresh_failures_total", &service),
                ),
                last_webhook: ago(
                    snapshot.sum(
                        "cosell_webhook_last_received_timestamp_seconds",
                        &[("source", label)],
                    ),
                    now,
                ),
            }
        })
        .collect()
}

/// The rates are drawn from the sampler's readings only (evenly spaced: a reading taken
/// seconds after the last would make a spike of a few events); the queue also from now.
fn charts(sampled: &[Reading], readings: &[Reading], now: f64) -> Vec<Chart> {
    let queue = |value: fn(&Reading) -> f64| -> Vec<(f64, f64)> {
        readings.iter().map(|r| (r.at, value(r))).collect()
    };
    vec![
        Chart::new(
            "Events per minute",
            now,
            vec![
                (
                    "Partner Center → CRM",
                    "line-a",
                    history::per_minute(sampled, |r| r.from_partner_center),
                ),
                (
                    "CRM → Partner Center",
                    "line-b",
                    history::per_minute(sampled, |r| r.from_dataverse),
                ),
            ],
        ),
        Chart::new(
            "Queue",
            now,
            vec![
                ("pending", "line-a", queue(|r| r.pending)),
                ("dead", "line-b", queue(|r| r.dead)),
            ],
        ),
    ]
}
