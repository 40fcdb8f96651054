//! The host's readiness: what `/readyz` answers, from what the parts of the host report.
//!
//! [`Health`] is given to the admin API when the server is built; the parts report into it
//! (or are read by it) as they run, so answering `/readyz` costs a lock and a few comparisons,
//! never a request to a service or to the store:
//!
//! | input | reported by | not ready while |
//! |---|---|---|
//! | store writable | [`store_check`], a tiny write every [`STORE_CHECK_INTERVAL`] | the last write failed, none succeeded yet, or none succeeded for [`STORE_STALE_AFTER`] (a write hanging on a lock) |
//! | tokens obtainable | the clients' token requests ([`crate::connections::telemetry`]) | a service's last token request failed (cleared by its next success) |
//! | pollers fresh | the pollers' rounds ([`crate::sources::schedule`]) | on the leader only: a poller had no successful round for [`poller_stale_after`] of its interval |
//! | webhook listener up | its serving flag ([`crate::listener`]) | it stopped serving |
//! | no side paused | the sync engine's outage breakers ([`crate::sync::availability`]) | a service is paused or being probed |
//!
//! A host that does not sync (no `[partner_center]`/`[dataverse]`) only has the store input.
//! [`Health`] also mirrors what it is told into the metrics a dashboard needs
//! (`cosell_poller_last_success_timestamp_seconds`, `cosell_token_refresh_failures_total`,
//! `cosell_service_requests_total`).

pub mod store_check;

use crate::connections::telemetry::Observer;
use crate::metrics::Metrics;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

pub use store_check::{STORE_CHECK_INTERVAL, STORE_STALE_AFTER};

/// How long a poller may go without a successful round before the leader is not ready: three
/// of its intervals (two rounds missed) and a minute for a slow round (paging, retries).
pub fn poller_stale_after(interval: Duration) -> Duration {
    interval * 3 + Duration::from_secs(60)
}

/// The answer of `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// Whether the host is ready: `/readyz` answers 200 when it is, 503 when not.
    pub ready: bool,
    /// Why not, one line each, naming the part and what to look at; empty when ready.
    pub reasons: Vec<String>,
}

/// Reads whether each service is paused: `(service, paused)`.
pub type PauseSource = Box<dyn Fn() -> Vec<(&'static str, bool)> + Send + Sync>;

/// Where the parts of the host report; see the module doc.
pub struct Health {
    metrics: Arc<Metrics>,
    leader: watch::Receiver<bool>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    store: StoreState,
    /// The services whose last token request failed, with why.
    token_failures: BTreeMap<&'static str, String>,
    pollers: BTreeMap<&'static str, PollerState>,
    webhook_listener: Option<Arc<AtomicBool>>,
    pauses: Option<PauseSource>,
}

#[derive(Default)]
struct StoreState {
    last_success: Option<Instant>,
    /// The last check's error, when it failed.
    last_error: Option<String>,
}

struct PollerState {
    stale_after: Duration,
    interval: Duration,
    /// The last successful round, or when the poller started (a poller just started is not
    /// late yet).
    fresh_since: Instant,
}

impl Health {
    /// Nothing reported yet: not ready until the first store check succeeds. `leader` says
    /// whether this replica leads (runs the pollers).
    pub fn new(metrics: Arc<Metrics>, leader: watch::Receiver<bool>) -> Arc<Self> {
        Arc::new(Self {
            metrics,
            leader,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state holds plain values that are never left half-updated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the host is ready now, and why not.
    pub fn readiness(&self) -> Readiness {
        self.readiness_at(Instant::now())
    }

    fn readiness_at(&self, now: Instant) -> Readiness {
        let state = self.state();
        let mut reasons = Vec::new();
        match (&state.store.last_error, state.store.last_success) {
            (Some(error), _) => reasons.push(format!(
                "store: not writable: {error} (see the host log; is the disk full, or the database down or read-only?)"
            )),
            (None, None) => reasons.push(
                "store: not checked yet (the first write check runs as the host starts)".into(),
            ),
            (None, Some(at)) if now.saturating_duration_since(at) > STORE_STALE_AFTER => {
                reasons.push(format!(
                    "store: no write succeeded for {} s (a write is hanging: is the database locked by another process, or unreachable?)",
                    now.saturating_duration_since(at).as_secs()
                ))
            }
            _ => {}
        }
        for (service, error) in &state.token_failures {
            reasons.push(format!("{service}: cannot get an access token: {error}"));
        }
        if *self.leader.borrow() {
            for (poller, p) in &state.pollers {
                let late = now.saturating_duration_since(p.fresh_since);
                if late > p.stale_after {
                    reasons.push(format!(
                        "poller {poller}: no successful round for {} s (threshold {} s: 3 × its {} s interval + 60 s; see the host log)",
                        late.as_secs(),
                        p.stale_after.as_secs(),
                        p.interval.as_secs()
                    ));
                }
            }
        }
        if let Some(up) = &state.webhook_listener
            && !up.load(Ordering::Relaxed)
        {
            reasons.push("webhook listener: not serving (see the host log)".into());
        }
        if let Some(pauses) = &state.pauses {
            for (service, paused) in pauses() {
                if paused {
                    reasons.push(format!(
                        "{service}: paused: it stopped answering, no event is claimed until a probe gets an answer (see cosell_service_pauses_total)"
                    ));
                }
            }
        }
        Readiness {
            ready: reasons.is_empty(),
            reasons,
        }
    }

    /// The store write check ended: `Ok` or why it failed.
    pub fn store_checked(&self, result: Result<(), String>) {
        self.store_checked_at(result, Instant::now());
    }

    fn store_checked_at(&self, result: Result<(), String>, at: Instant) {
        let mut state = self.state();
        match result {
            Ok(()) => {
                state.store.last_success = Some(at);
                state.store.last_error = None;
            }
            Err(error) => state.store.last_error = Some(error),
        }
    }

    /// A poller started (at each leadership): it is late after [`poller_stale_after`] of
    /// `interval` without a successful round.
    pub fn poller_started(&self, poller: &'static str, interval: Duration) {
        self.poller_started_at(poller, interval, Instant::now());
    }

    fn poller_started_at(&self, poller: &'static str, interval: Duration, at: Instant) {
        self.state().pollers.insert(
            poller,
            PollerState {
                stale_after: poller_stale_after(interval),
                interval,
                fresh_since: at,
            },
        );
    }

    /// A poller finished a round without error.
    pub fn poller_succeeded(&self, poller: &'static str) {
        self.poller_succeeded_at(poller, Instant::now());
        self.metrics.set_poller_success(poller, SystemTime::now());
    }

    fn poller_succeeded_at(&self, poller: &'static str, at: Instant) {
        if let Some(p) = self.state().pollers.get_mut(poller) {
            p.fresh_since = at;
        }
    }

    /// A poller stopped (leadership lost, or the host stops): it no longer counts.
    pub fn poller_stopped(&self, poller: &'static str) {
        self.state().pollers.remove(poller);
    }

    /// Watches the webhook listener's serving flag.
    pub fn watch_webhook_listener(&self, serving: Arc<AtomicBool>) {
        self.state().webhook_listener = Some(serving);
    }

    /// Reads whether a service is paused from `pauses` at each readiness check.
    pub fn watch_pauses(&self, pauses: PauseSource) {
        self.state().pauses = Some(pauses);
    }
}

impl Observer for Health {
    fn request(
        &self,
        service: &'static str,
        operation: &'static str,
        status: Option<u16>,
        elapsed: Duration,
    ) {
        self.metrics
            .record_request(service, operation, status, elapsed);
    }

    fn token(&self, service: &'static str, result: Result<(), &str>) {
        let mut state = self.state();
        match result {
            Ok(()) => {
                state.token_failures.remove(service);
            }
            Err(error) => {
                state.token_failures.insert(service, error.to_owned());
                drop(state);
                self.metrics.record_token_failure(service);
            }
        }
    }
}

#[cfg(test)]
mod tests;
