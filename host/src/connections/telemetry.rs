//! What the clients tell the host about their traffic: each HTTP exchange (service, operation,
//! status, time) and each access token request's result.
//!
//! A client reports through its [`Telemetry`], which it shares with its token cache; the host
//! attaches its [`Observer`] (metrics, readiness) once, after building the client, so the
//! clients stay usable without one (the CLI's setup commands, the tests).
//!
//! `operation` is a small fixed vocabulary named at each call site (`get_referral`,
//! `query_rows`, `batch`, `token`, …), never a URL or an id, so the metrics' label values stay
//! few whatever the traffic.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Where a client's reports go.
pub trait Observer: Send + Sync {
    /// One HTTP exchange ended: `status` is the answer's status code, `None` when no answer
    /// came (refused or dropped connection, timeout).
    fn request(
        &self,
        service: &'static str,
        operation: &'static str,
        status: Option<u16>,
        elapsed: Duration,
    );

    /// An access token request (after the token endpoint's retries) succeeded (`Ok`) or
    /// failed with the reason given.
    fn token(&self, service: &'static str, result: Result<(), &str>);
}

/// One client's reporting: the service it talks to and, once attached, the observer.
/// Shared (in an `Arc`) by the client, its clones and its token cache.
pub struct Telemetry {
    service: &'static str,
    observer: OnceLock<Arc<dyn Observer>>,
}

impl Telemetry {
    /// Reporting for `service` (`partner-center` or `dataverse`), with no observer yet.
    pub fn new(service: &'static str) -> Arc<Self> {
        Arc::new(Self {
            service,
            observer: OnceLock::new(),
        })
    }

    /// Attaches `observer`; answers false (and keeps the first) when one is attached already.
    pub fn attach(&self, observer: Arc<dyn Observer>) -> bool {
        self.observer.set(observer).is_ok()
    }

    /// Starts timing one exchange of `operation`.
    pub fn start(&self, operation: &'static str) -> Exchange<'_> {
        Exchange {
            telemetry: self,
            operation,
            started: Instant::now(),
        }
    }

    /// Reports a token request's result.
    pub fn token(&self, result: Result<(), &str>) {
        if let Some(observer) = self.observer.get() {
            observer.token(self.service, result);
        }
    }
}

/// One exchange being timed; [`Exchange::answered`] or [`Exchange::failed`] reports it
/// (once: each path of a request loop calls one of them).
pub struct Exchange<'a> {
    telemetry: &'a Telemetry,
    operation: &'static str,
    started: Instant,
}

impl Exchange<'_> {
    /// The exchange ended with an answer of `status`.
    pub fn answered(&self, status: u16) {
        self.report(Some(status));
    }

    /// The exchange ended without an answer.
    pub fn failed(&self) {
        self.report(None);
    }

    fn report(&self, status: Option<u16>) {
        if let Some(observer) = self.telemetry.observer.get() {
            observer.request(
                self.telemetry.service,
                self.operation,
                status,
                self.started.elapsed(),
            );
        }
    }
}
