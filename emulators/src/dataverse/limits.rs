//! Service protection limits (§4.11): per user (here: per OAuth client id), over a sliding
//! window of emulated time, three limits — number of requests, combined execution time, and
//! concurrent requests. Over a limit the Web API answers `429 Too Many Requests` with
//! `Retry-After` (seconds) and the documented error codes and messages.
//!
//! Choices where the reference stops: a `$batch` counts as one request; `Retry-After` is the
//! time until the oldest request in the window leaves it (at least 1 s; 1 s for the concurrency
//! limit, which the real service returns "immediately"); the debug headers
//! `x-ms-ratelimit-burst-remaining-xrm-requests` and `x-ms-ratelimit-time-remaining-xrm-requests`
//! are sent on every answer that passed.

use super::handlers::ApiResponse;
use crate::common::clock::EmulatedClock;
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// The limits (defaults as documented: 6000 requests and 20 minutes of execution time per
/// 300 s, 52 concurrent requests).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceProtectionLimits {
    pub requests: usize,
    pub execution_time: Duration,
    pub concurrent: usize,
    pub window: Duration,
}

impl Default for ServiceProtectionLimits {
    fn default() -> Self {
        Self {
            requests: 6000,
            execution_time: Duration::minutes(20),
            concurrent: 52,
            window: Duration::seconds(300),
        }
    }
}

#[derive(Debug, Default)]
struct UserWindow {
    requests: VecDeque<DateTime<Utc>>,
    execution: VecDeque<(DateTime<Utc>, Duration)>,
    concurrent: usize,
}

/// Counts requests per client and refuses those over a limit.
#[derive(Debug, Clone)]
pub struct Limiter {
    limits: ServiceProtectionLimits,
    clock: EmulatedClock,
    users: Arc<Mutex<HashMap<String, UserWindow>>>,
}

/// A request in progress; dropping it records its execution time.
#[derive(Debug)]
pub struct Permit {
    limiter: Limiter,
    client: String,
    started: std::time::Instant,
    /// Requests left in the window after this one.
    pub remaining_requests: usize,
    /// Execution time left in the window, in milliseconds.
    pub remaining_ms: i64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let elapsed = Duration::from_std(self.started.elapsed()).unwrap_or(Duration::zero());
        let now = self.limiter.clock.now();
        let mut users = self.limiter.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(user) = users.get_mut(&self.client) {
            user.concurrent = user.concurrent.saturating_sub(1);
            user.execution.push_back((now, elapsed));
        }
    }
}

fn too_many(code: &str, message: String, retry_after: i64) -> ApiResponse {
    ApiResponse::error(StatusCode::TOO_MANY_REQUESTS, code, message)
        .with_header("Retry-After", retry_after.max(1).to_string())
}

impl Limiter {
    /// A limiter over `clock`.
    pub fn new(limits: ServiceProtectionLimits, clock: EmulatedClock) -> Self {
        Self {
            limits,
            clock,
            users: Default::default(),
        }
    }

    /// Admits one request of `client`, or answers the 429.
    pub fn acquire(&self, client: &str) -> Result<Permit, ApiResponse> {
        let now = self.clock.now();
        let window = self.limits.window;
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let user = users.entry(client.to_owned()).or_default();
        while user.requests.front().is_some_and(|t| *t + window <= now) {
            user.requests.pop_front();
        }
        while user
            .execution
            .front()
            .is_some_and(|(t, _)| *t + window <= now)
        {
            user.execution.pop_front();
        }
        let seconds_until = |t: DateTime<Utc>| {
            let ms = (t + window - now).num_milliseconds();
            (ms + 999) / 1000
        };
        if user.concurrent >= self.limits.concurrent {
            return Err(too_many(
                "0x80072326",
                format!(
                    "Number of concurrent requests exceeded the limit of {}.",
                    self.limits.concurrent
                ),
                1,
            ));
        }
        if user.requests.len() >= self.limits.requests {
            let oldest = *user.requests.front().expect("non-empty");
            return Err(too_many(
                "0x80072322",
                format!(
                    "Number of requests exceeded the limit of {} over time window of {} seconds.",
                    self.limits.requests,
                    window.num_seconds()
                ),
                seconds_until(oldest),
            ));
        }
        let used: Duration = user
            .execution
            .iter()
            .fold(Duration::zero(), |sum, (_, d)| sum + *d);
        if used >= self.limits.execution_time {
            let oldest = user.execution.front().map(|(t, _)| *t).unwrap_or(now);
            return Err(too_many(
                "0x80072321",
                format!(
                    "Combined execution time of incoming requests exceeded limit of {} milliseconds over time window of {} seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.",
                    self.limits.execution_time.num_milliseconds(),
                    window.num_seconds()
                ),
                seconds_until(oldest),
            ));
        }
        user.requests.push_back(now);
        user.concurrent += 1;
        Ok(Permit {
            limiter: self.clone(),
            client: client.to_owned(),
            started: std::time::Instant::now(),
            remaining_requests: self.limits.requests - user.requests.len(),
            remaining_ms: (self.limits.execution_time - used).num_milliseconds(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(concurrent: usize, execution_ms: i64) -> Limiter {
        Limiter::new(
            ServiceProtectionLimits {
                requests: 100,
                execution_time: Duration::milliseconds(execution_ms),
                concurrent,
                window: Duration::seconds(300),
            },
            EmulatedClock::new(),
        )
    }

    fn code(response: &ApiResponse) -> String {
        response.body.as_ref().unwrap()["error"]["code"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn concurrency_limit_is_per_client_and_released_on_drop() {
        let limiter = limits(2, 1_200_000);
        let first = limiter.acquire("app").unwrap();
        let _second = limiter.acquire("app").unwrap();
        let refused = limiter.acquire("app").unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(code(&refused), "0x80072326");
        assert!(limiter.acquire("other-app").is_ok());
        drop(first);
        assert!(limiter.acquire("app").is_ok());
    }

    #[test]
    fn execution_time_limit_slides_with_the_clock() {
        let limiter = limits(52, 1);
        let permit = limiter.acquire("app").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(3));
        drop(permit);
        let refused = limiter.acquire("app").unwrap_err();
        assert_eq!(code(&refused), "0x80072321");
        let retry: i64 = refused
            .headers
            .iter()
            .find(|(k, _)| k == "Retry-After")
            .unwrap()
            .1
            .parse()
            .unwrap();
        assert!((1..=300).contains(&retry));
        limiter.clock.advance(Duration::seconds(301));
        assert!(limiter.acquire("app").is_ok());
    }
}
