//! Prometheus metrics of the host, served on `/metrics`. Every metric is listed, with its
//! labels and the on-call question it answers, in docs/metrics.md (a test keeps the two in
//! step).

use crate::runtime::{CacheOutcome, CallErrorKind, CallReport};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    step: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    step: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeployLabels {
    step: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabels {
    side: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntakeLabels {
    source: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowLabels {
    step: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: String,
    operation: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    service: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PollerLabels {
    poller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PauseLabels {
    service: String,
    cause: String,
}

/// The host's metrics and their registry.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// The name of every metric registered, in order (the documentation test compares it
    /// with what `encode` shows).
    registered: Mutex<Vec<String>>,
    calls: Family<CallLabels, Counter>,
    call_seconds: Family<StepLabels, Histogram>,
    fuel: Family<StepLabels, Histogram>,
    active_version: Family<VersionLabels, Gauge>,
    deployments: Family<DeployLabels, Counter>,
    shadow_calls: Family<ShadowLabels, Counter>,
    component_cache: Family<ResultLabels, Counter>,
    syncs: Family<SyncLabels, Counter>,
    sync_seconds: Family<SyncLabels, Histogram>,
    echoes: Counter,
    intake: Family<IntakeLabels, Counter>,
    intake_batch: Histogram,
    queue: Family<QueueLabels, Gauge>,
    service_paused: Family<ServiceLabels, Gauge>,
    service_pauses: Family<PauseLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<OperationLabels, Histogram>,
    token_failures: Family<ServiceLabels, Counter>,
    poller_success: Family<PollerLabels, Gauge>,
    oldest_pending: Gauge<f64, AtomicU64>,
    dead_letters: Gauge,
    webhook_received: Family<SourceLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric of the host registered.
    pub fn new() -> Self {
        let calls = Family::<CallLabels, Counter>::default();
        let call_seconds = Family::<StepLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_005, 2.0, 20))
        });
        let fuel = Family::<StepLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(10_000.0, 4.0, 12))
        });
        let active_version = Family::<VersionLabels, Gauge>::default();
        let deployments = Family::<DeployLabels, Counter>::default();
        let shadow_calls = Family::<ShadowLabels, Counter>::default();
        let component_cache = Family::<ResultLabels, Counter>::default();
        let syncs = Family::<SyncLabels, Counter>::default();
        let sync_seconds = Family::<SyncLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        let echoes = Counter::default();
        let intake = Family::<IntakeLabels, Counter>::default();
        let intake_batch = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        let queue = Family::<QueueLabels, Gauge>::default();
        let service_paused = Family::<ServiceLabels, Gauge>::default();
        let service_pauses = Family::<PauseLabels, Counter>::default();
        let requests = Family::<RequestLabels, Counter>::default();
        // 10 ms to about 80 s: a fast read, up to a request waiting out its timeout.
        let request_seconds = Family::<OperationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 14))
        });
        let token_failures = Family::<ServiceLabels, Counter>::default();
        let poller_success = Family::<PollerLabels, Gauge>::default();
        let oldest_pending = Gauge::<f64, AtomicU64>::default();
        let dead_letters = Gauge::default();
        let webhook_received = Family::<SourceLabels, Gauge>::default();
        let mut registry = Registry::with_prefix("cosell");
        let mut registered = Vec::new();
        add(
            &mut registry,
            &mut registered,
            "service_requests",
            "HTTP requests sent to a Microsoft service (partner-center, dataverse), each attempt counted, by operation and status (the HTTP status, or error when no answer came)",
            requests.clone(),
        );
        add(
            &mut registry,
            &mut registered,
            "service_request_seconds",
            "Time from sending one request to a Microsoft service to reading its whole answer (or giving up on it), by service and operation",
            request_seconds.clone(),
        );
        add(
            &mut registry,
            &mut registered,
            "token_refresh_failures",
            "Access token requests that failed after the token endpoint's retries, by service: the service's calls fail until one succeeds",
            token_failures.clone(),
        );
        add(
            &mut registry,
            &mut registered,
            "poller_last_success_timestamp_seconds",
            "When each poller (dataverse-changes, partner-center-reconcile) last finished a round without error, in seconds since the epoch; only the leader polls",
            poller_success.clone(),
        );
        add(
            &mut registry,
            &mut registered,
            "queue_oldest_pending_age_seconds",
            "How long the oldest pending sync event has waited since it was received, read when scraped (0 when nothing is pending)",
            oldest_pending.clone(),
        );
        add(
            &mut registry,
            &mut registered,
            "dead_letters",
            "Sync events that failed every attempt and wait for a replay, read when scraped",
            dead_letters.clone(),
        );
        add(
            &mut registry,
            &mut registered,
            "webhook_last_received_timestamp_seconds",
            "When the last authenticated webhook delivery of each source (partner-center, dataverse) arrived, in seconds since the epoch",
            webhook_received.clone(),
        );
        add(
            &mut registry,
            &mut registered,
            "service_paused",
            "1 while the sync engine holds its events because a service (partner-center, dataverse) is unavailable, 0 while it answers",
            service_paused.clone(),
        );
        add(
            &mut registry,
            &mut registered,
            "service_pauses",
            "Times a service was found unavailable and the sync engine paused, by service and cause (no_answer: refused or dropped connections, timeouts; server_error: 5xx)",
            service_pauses.clone(),
        );
        add(
            &mut registry,
            &mut registered,
            "sync_events",
            "Queue events processed, by the side that changed and the outcome (created, updated, unchanged, echo, skipped, rejected, retry, dead_letter, parked, paused)",
            syncs.clone(),
        );
        add(
            &mut registry,
            &mut registered,
            "sync_event_seconds",
            "Time to process one queue event, reads and writes included",
            sync_seconds.clone(),
        );
        add(
            &mut registry,
            &mut registered,
            "sync_echoes_suppressed",
            "Events recognised as cosell's own writes coming back, and not written again",
            echoes.clone(),
        );
        add(
            &mut registry,
            &mut registered,
            "queue_events",
            "Sync events in the queue by state (pending, running, dead, parked), read when scraped",
            queue.clone(),
        );
        add(
            &mut registry,
            &mut registered,
            "intake_events",
            "Notifications received by source (partner-center-webhook, dataverse-webhook, dataverse-changes, partner-center-reconcile) and result (queued, coalesced, ignored, refused)",
            intake.clone(),
        );
        add(
            &mut registry,
            &mut registered,
            "intake_batch_events",
            "Webhook events stored by one transaction of the intake (group commit): one flush to disk for all of them",
            intake_batch.clone(),
        );
        add(
            &mut registry,
            &mut registered,
            "mapping_calls",
            "Mapping step calls by outcome (ok, rejected, skipped, failed, limit_<name>, trapped, invalid_output, instantiation)",
            calls.clone(),
        );
        add(
            &mut registry,
            &mut registered,
            "mapping_call_seconds",
            "Wall time of one mapping step call, instantiation included",
            call_seconds.clone(),
        );
        add(
            &mut registry,
            &mut registered,
            "mapping_fuel_used",
            "Fuel (WebAssembly instructions, weighted) used by one call",
            fuel.clone(),
        );
        add(
            &mut registry,
            &mut registered,
            "mapping_active_version",
            "1 for the version each step is serving",
            active_version.clone(),
        );
        add(
            &mut registry,
            &mut registered,
            "mapping_deployments",
            "Deploy and rollback attempts by result",
            deployments.clone(),
        );
        add(
            &mut registry,
            &mut registered,
            "shadow_calls",
            "Calls of a step's shadow version beside the active one, by outcome: identical, different, failed (no output where the active version had one, or another error), skipped (every call slot was busy)",
            shadow_calls.clone(),
        );
        add(
            &mut registry,
            &mut registered,
            "component_cache",
            "Component loads (start-up, deploy, rollback, drop directory) by what the artifact cache did: hit (no compilation), miss (compiled and stored), error (unusable entry or failed write; compiled)",
            component_cache.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            registered: Mutex::new(registered),
            calls,
            call_seconds,
            fuel,
            active_version,
            deployments,
            shadow_calls,
            component_cache,
            syncs,
            sync_seconds,
            echoes,
            intake,
            intake_batch,
            queue,
            service_paused,
            service_pauses,
            requests,
            request_seconds,
            token_failures,
            poller_success,
            oldest_pending,
            dead_letters,
            webhook_received,
        }
    }

    /// Sets the gauge of parked events (`cosell_queue_events{state="parked"}`).
    pub fn set_parked(&self, parked: u64) {
        self.queue
            .get_or_create(&QueueLabels {
                state: "parked".to_owned(),
            })
            .set(parked as i64);
    }

    /// Marks a service paused (unavailable) or answering.
    pub fn set_service_paused(&self, service: &str, paused: bool) {
        self.service_paused
            .get_or_create(&ServiceLabels {
                service: service.to_owned(),
            })
            .set(i64::from(paused));
    }

    /// Counts a pause of a service found unavailable.
    pub fn record_service_pause(&self, service: &str, cause: &str) {
        self.service_pauses
            .get_or_create(&PauseLabels {
                service: service.to_owned(),
                cause: cause.to_owned(),
            })
            .inc();
    }

    /// Sets the queue gauges from `counts`, read at `now`: events by state, the dead letters
    /// and the age of the oldest pending event.
    pub fn set_queue(&self, counts: &crate::store::QueueCounts, now: SystemTime) {
        for (state, n) in [
            ("pending", counts.pending),
            ("running", counts.running),
            ("dead", counts.dead),
        ] {
            self.queue
                .get_or_create(&QueueLabels {
                    state: state.to_owned(),
                })
                .set(n as i64);
        }
        self.set_parked(counts.parked);
        self.dead_letters.set(counts.dead as i64);
        let age_ms = counts
            .oldest_pending_ms
            .map(|at| (unix_millis(now) - at).max(0))
            .unwrap_or(0);
        self.oldest_pending.set(age_ms as f64 / 1000.0);
    }

    /// Counts one HTTP exchange with a Microsoft service: `status` is the answer's status
    /// code, `None` when no answer came.
    pub fn record_request(
        &self,
        service: &str,
        operation: &str,
        status: Option<u16>,
        elapsed: Duration,
    ) {
        let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        self.requests
            .get_or_create(&RequestLabels {
                service: service.to_owned(),
                operation: operation.to_owned(),
                status,
            })
            .inc();
        self.request_seconds
            .get_or_create(&OperationLabels {
                service: service.to_owned(),
                operation: operation.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a failed access token request of `service`.
    pub fn record_token_failure(&self, service: &str) {
        self.token_failures
            .get_or_create(&ServiceLabels {
                service: service.to_owned(),
            })
            .inc();
    }

    /// Records that `poller` finished a round without error at `at`.
    pub fn set_poller_success(&self, poller: &str, at: SystemTime) {
        self.poller_success
            .get_or_create(&PollerLabels {
                poller: poller.to_owned(),
            })
            .set(unix_millis(at) / 1000);
    }

    /// Counts one processed queue event.
    pub fn record_sync(&self, side: &str, outcome: &str, elapsed: std::time::Duration) {
        let labels = SyncLabels {
            side: side.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.syncs.get_or_create(&labels).inc();
        self.sync_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts an echo recognised and dropped.
    pub fn record_echo(&self) {
        self.echoes.inc();
    }

    /// Counts a notification received. A webhook delivery that was not refused (so it was
    /// authenticated) also moves its source's last-received time.
    pub fn record_intake(&self, source: &str, result: &str) {
        self.intake
            .get_or_create(&IntakeLabels {
                source: source.to_owned(),
                result: result.to_owned(),
            })
            .inc();
        let webhook = match source {
            "partner-center-webhook" => "partner-center",
            "dataverse-webhook" => "dataverse",
            _ => return,
        };
        if result != "refused" {
            self.webhook_received
                .get_or_create(&SourceLabels {
                    source: webhook.to_owned(),
                })
                .set(unix_millis(SystemTime::now()) / 1000);
        }
    }

    /// Records how many webhook events one intake transaction stored.
    pub fn record_intake_batch(&self, events: usize) {
        self.intake_batch.observe(events as f64);
    }

    /// Counts one finished call.
    pub fn record_call(&self, step: &str, report: &CallReport) {
        let outcome = match &report.result {
            Ok(_) => "ok".to_owned(),
            Err(err) => outcome_label(&err.kind),
        };
        self.calls
            .get_or_create(&CallLabels {
                step: step.to_owned(),
                outcome,
            })
            .inc();
        let labels = StepLabels {
            step: step.to_owned(),
        };
        self.call_seconds
            .get_or_create(&labels)
            .observe(report.stats.duration.as_secs_f64());
        self.fuel
            .get_or_create(&labels)
            .observe(report.stats.fuel_used as f64);
    }

    /// Marks `version` as the one `step` serves (and `previous` as no longer serving).
    pub fn set_active_version(&self, step: &str, version: &str, previous: Option<&str>) {
        if let Some(previous) = previous {
            self.active_version
                .get_or_create(&VersionLabels {
                    step: step.to_owned(),
                    version: previous.to_owned(),
                })
                .set(0);
        }
        self.active_version
            .get_or_create(&VersionLabels {
                step: step.to_owned(),
                version: version.to_owned(),
            })
            .set(1);
    }

    /// Counts a deploy or rollback attempt.
    pub fn record_deployment(&self, step: &str, result: &str) {
        self.deployments
            .get_or_create(&DeployLabels {
                step: step.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// Counts one call of a step's shadow version by its outcome.
    pub fn record_shadow_call(&self, step: &str, outcome: &str) {
        self.shadow_calls
            .get_or_create(&ShadowLabels {
                step: step.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts one component load by what the artifact cache did; nothing without a cache.
    pub fn record_component_load(&self, outcome: CacheOutcome) {
        if outcome == CacheOutcome::Disabled {
            return;
        }
        self.component_cache
            .get_or_create(&ResultLabels {
                result: outcome.label().to_owned(),
            })
            .inc();
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Milliseconds since the epoch (0 for a time before it).
fn unix_millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Registers `metric` as `name` and notes its name in `registered`.
fn add(
    registry: &mut Registry,
    registered: &mut Vec<String>,
    name: &str,
    help: &str,
    metric: impl prometheus_client::registry::Metric,
) {
    registered.push(name.to_owned());
    registry.register(name, help, metric);
}

fn outcome_label(kind: &CallErrorKind) -> String {
    match kind {
        CallErrorKind::LimitExceeded { limit, .. } => format!("limit_{}", limit.label()),
        other => other.label().to_owned(),
    }
}

impl Metrics {
    /// Registers a metric owned by the module that updates it (which then keeps its labels
    /// to itself), served on `/metrics` with the others, under the `cosell_` prefix.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .register(name, help, metric);
        self.registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name.to_owned());
    }

    /// The name (without the `cosell_` prefix and suffixes) of every metric registered.
    pub fn registered(&self) -> Vec<String> {
        self.registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_authenticated_webhook_moves_its_last_received_time_and_a_refused_one_does_not() {
        let m = Metrics::new();
        m.record_intake("dataverse-webhook", "refused");
        m.record_intake("partner-center-reconcile", "queued");
        assert!(
            !m.encode()
                .contains("cosell_webhook_last_received_timestamp_seconds{"),
            "{}",
            m.encode()
        );
        m.record_intake("dataverse-webhook", "ignored");
        m.record_intake("partner-center-webhook", "queued");
        let text = m.encode();
        for source in ["dataverse", "partner-center"] {
            let line = text
                .lines()
                .find(|l| {
                    l.starts_with(&format!(
                        "cosell_webhook_last_received_timestamp_seconds{{source=\"{source}\"}}"
                    ))
                })
                .unwrap_or_else(|| panic!("no {source} line in {text}"));
            let at: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            let now = SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            assert!((now - at).abs() <= 5, "{line}");
        }
    }
}
