//! Whether Partner Center and Dataverse are answering: one circuit breaker per service.
//!
//! One failure to reach a service (no answer, a timeout, a 5xx after its client's own
//! retries) is an ordinary transient failure of its event. `sync.outage_failures` of them in a
//! row are an outage: the service is *paused*. While a service is paused no worker claims an
//! event (every event reads the records on both sides, so each needs both services), and the
//! events that were running when it went down go back to the queue without spending an
//! attempt: an outage ends in no dead letter however long it lasts. When the pause ends one
//! worker *probes* the service with a cheap read; any answer (a 404 is an answer) resumes the
//! work, another failure doubles the pause, up to `sync.outage_pause_max_ms`.
//!
//! A failure belongs to the service whose client failed, read or write, whatever side the
//! event came from: the error types of the two clients say which (see
//! [`super::outcome::SyncError::Unavailable`]), so one service's outage never marks the other
//! one down.

use super::outcome::OutageCause;
use crate::config::SyncConfig;
use crate::metrics::Metrics;
use crate::store::Side;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a worker waits while another one probes a paused service.
const PROBE_WAIT: Duration = Duration::from_millis(200);

/// What a worker may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Both services are answering: claim an event.
    Open,
    /// This service's pause is over and this worker is the one to probe it.
    Probe(Side),
    /// A service is paused (or being probed): claim nothing for this long.
    Wait(Duration),
}

/// What an unavailability failure of an event means for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// An isolated failure: retried like any transient one, spending an attempt.
    Counted,
    /// Part of an outage: the event goes back without spending an attempt.
    Outage,
}

#[derive(Debug)]
enum State {
    Answering,
    Paused { until: Instant },
    Probing,
}

#[derive(Debug)]
struct Breaker {
    state: State,
    /// Unavailability failures in a row while answering.
    failures: u32,
    /// The next pause.
    pause: Duration,
    /// When the outage began.
    since: Option<Instant>,
}

/// The two breakers and their settings.
pub struct Availability {
    breakers: [Mutex<Breaker>; 2],
    threshold: u32,
    first_pause: Duration,
    max_pause: Duration,
    metrics: Arc<Metrics>,
}

fn index(service: Side) -> usize {
    match service {
        Side::PartnerCenter => 0,
        Side::Dataverse => 1,
    }
}

const SERVICES: [Side; 2] = [Side::PartnerCenter, Side::Dataverse];

impl Availability {
    /// Both services answering, with the outage settings of `config`.
    pub fn new(config: &SyncConfig, metrics: Arc<Metrics>) -> Self {
        let first_pause = Duration::from_millis(config.outage_pause_ms.max(1));
        let breaker = || {
            Mutex::new(Breaker {
                state: State::Answering,
                failures: 0,
                pause: first_pause,
                since: None,
            })
        };
        for service in SERVICES {
            metrics.set_service_paused(service.as_str(), false);
        }
        Self {
            breakers: [breaker(), breaker()],
            threshold: config.outage_failures.max(1),
            first_pause,
            max_pause: Duration::from_millis(config.outage_pause_max_ms).max(first_pause),
            metrics,
        }
    }

    fn breaker(&self, service: Side) -> std::sync::MutexGuard<'_, Breaker> {
        // A breaker holds plain values that are never left half-updated.
        self.breakers[index(service)]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a worker may claim an event now, must probe a service first, or must wait.
    pub fn gate(&self) -> Gate {
        let now = Instant::now();
        let mut wait: Option<Duration> = None;
        for service in SERVICES {
            let mut breaker = self.breaker(service);
            let this_wait = match breaker.state {
                State::Answering => continue,
                State::Probing => PROBE_WAIT,
                State::Paused { until } if until <= now => {
                    breaker.state = State::Probing;
                    return Gate::Probe(service);
                }
                State::Paused { until } => until - now,
            };
            wait = Some(wait.map_or(this_wait, |w| w.min(this_wait)));
        }
        wait.map_or(Gate::Open, Gate::Wait)
    }

    /// Whether every service answers: [`Self::gate`] would be open. Unlike it, this never
    /// hands the caller a probe.
    pub fn all_answering(&self) -> bool {
        SERVICES.iter().all(|service| !self.is_paused(*service))
    }

    /// Whether a service is paused or being probed.
    pub fn is_paused(&self, service: Side) -> bool {
        !matches!(self.breaker(service).state, State::Answering)
    }

    /// An event could not reach `service`. Answers whether this is part of an outage.
    pub fn failed(&self, service: Side, cause: OutageCause, reason: &str) -> Failure {
        let mut breaker = self.breaker(service);
        if !matches!(breaker.state, State::Answering) {
            // It was running when the pause began.
            return Failure::Outage;
        }
        breaker.failures += 1;
        if breaker.failures < self.threshold {
            return Failure::Counted;
        }
        let pause = breaker.pause;
        breaker.state = State::Paused {
            until: Instant::now() + pause,
        };
        breaker.since = Some(Instant::now());
        drop(breaker);
        tracing::warn!(
            service = service.as_str(),
            cause = cause.label(),
            failures_in_a_row = self.threshold,
            pause_ms = pause.as_millis() as u64,
            reason,
            "service unavailable: no event is claimed until a probe gets an answer; events keep their attempts"
        );
        self.metrics.set_service_paused(service.as_str(), true);
        self.metrics
            .record_service_pause(service.as_str(), cause.label());
        Failure::Outage
    }

    /// An event was processed without an unavailability failure: both services answered.
    pub fn answered(&self) {
        for service in SERVICES {
            let mut breaker = self.breaker(service);
            if matches!(breaker.state, State::Answering) {
                breaker.failures = 0;
                breaker.pause = self.first_pause;
            }
        }
    }

    /// The probe of `service` ended: with an answer (`None`), or unavailable again.
    pub fn probed(&self, service: Side, failure: Option<(OutageCause, &str)>) {
        let mut breaker = self.breaker(service);
        match failure {
            None => {
                let down_for = breaker.since.take().map(|at| at.elapsed());
                breaker.state = State::Answering;
                breaker.failures = 0;
                // The pause stays as long as it grew until an event gets through
                // (`answered`), so a service that flaps is probed less and less often.
                drop(breaker);
                tracing::warn!(
                    service = service.as_str(),
                    down_for_ms = down_for.map(|d| d.as_millis() as u64),
                    "service answers again: claiming events"
                );
                self.metrics.set_service_paused(service.as_str(), false);
            }
            Some((cause, reason)) => {
                let pause = (breaker.pause * 2).min(self.max_pause);
                breaker.pause = pause;
                breaker.state = State::Paused {
                    until: Instant::now() + pause,
                };
                drop(breaker);
                tracing::info!(
                    service = service.as_str(),
                    cause = cause.label(),
                    pause_ms = pause.as_millis() as u64,
                    reason,
                    "service still unavailable; probing again after the pause"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn availability(failures: u32, pause_ms: u64) -> Availability {
        let config = SyncConfig {
            outage_failures: failures,
            outage_pause_ms: pause_ms,
            outage_pause_max_ms: pause_ms * 4,
            ..SyncConfig::default()
        };
        Availability::new(&config, Arc::new(Metrics::new()))
    }

    const DOWN: OutageCause = OutageCause::ServerError;

    #[test]
    fn failures_in_a_row_pause_only_the_service_that_failed_and_a_probe_resumes_it() {
        let a = availability(3, 60_000);
        assert_eq!(a.failed(Side::Dataverse, DOWN, "503"), Failure::Counted);
        // An answered event in between: the count starts again.
        a.answered();
        assert_eq!(a.failed(Side::Dataverse, DOWN, "503"), Failure::Counted);
        assert_eq!(a.failed(Side::Dataverse, DOWN, "503"), Failure::Counted);
        assert_eq!(a.gate(), Gate::Open);
        assert_eq!(a.failed(Side::Dataverse, DOWN, "503"), Failure::Outage);
        assert!(a.is_paused(Side::Dataverse) && !a.is_paused(Side::PartnerCenter));
        assert!(matches!(a.gate(), Gate::Wait(w) if w > Duration::from_secs(50)));
        // Events in flight when it went down keep their attempts.
        assert_eq!(a.failed(Side::Dataverse, DOWN, "503"), Failure::Outage);
        let metrics = a.metrics.encode();
        assert!(
            metrics.contains(r#"cosell_service_paused{service="dataverse"} 1"#),
            "{metrics}"
        );
        assert!(
            metrics.contains(
                r#"cosell_service_pauses_total{service="dataverse",cause="server_error"} 1"#
            ),
            "{metrics}"
        );
    }

    #[test]
    fn one_worker_probes_after_the_pause_which_doubles_while_the_service_stays_down() {
        let a = availability(1, 20);
        assert_eq!(
            a.failed(Side::PartnerCenter, OutageCause::NoAnswer, "refused"),
            Failure::Outage
        );
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(a.gate(), Gate::Probe(Side::PartnerCenter));
        // The others wait for the probe.
        assert_eq!(a.gate(), Gate::Wait(PROBE_WAIT));
        a.probed(
            Side::PartnerCenter,
            Some((OutageCause::NoAnswer, "refused")),
        );
        assert!(matches!(a.gate(), Gate::Wait(w) if w > Duration::from_millis(25)));
        std::thread::sleep(Duration::from_millis(45));
        assert_eq!(a.gate(), Gate::Probe(Side::PartnerCenter));
        a.probed(Side::PartnerCenter, None);
        assert_eq!(a.gate(), Gate::Open);
        assert!(
            a.metrics
                .encode()
                .contains(r#"cosell_service_paused{service="partner-center"} 0"#)
        );
    }
}
