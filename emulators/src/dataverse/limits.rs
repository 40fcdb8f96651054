//! Service protection limits (§4.11): per user (here: per OAuth client id), over a sliding
//! window of emulated time, three limits — number of requests, combined execution time, and
//! concurrent requests. Over a limit the Web API answers `429 Too Many Requests` with
//! `Retry-After` (seconds) and the documented error codes and messages.
//!
//! A request's execution time is the time the emulator really spent on it plus the emulated
//! charge of its operations ([`super::charge`], [`Permit::charge`]), so the execution-time
//! limit binds as it would against the real service.
//!
//! Choices where the reference stops: a `$batch` counts as one request; `Retry-After` is the
//! time until enough of the window has passed for the client to be under the limit again: the
//! oldest request leaving it for the request limit, as much execution time as is over the limit
//! for the execution-time limit (at least 1 s; 1 s for the concurrency limit, which the real
//! service returns "immediately"); the debug headers
//! `x-ms-ratelimit-burst-remaining-xrm-requests` and `x-ms-ratelimit-time-remaining-xrm-requests`
//! are sent on every answer that passed.

use super::api::ApiResponse;
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
    /// The sum of `execution`, kept as entries come and go: summing the window on every
    /// request cost time in proportion to the requests of the last 300 s.
    execution_total: Duration,
    concurrent: usize,
    /// The end of the last `Retry-After` this client was given.
    told_to_wait_until: Option<DateTime<Utc>>,
    /// Requests that arrived before it, since the refusal that started the current episode.
    early_in_episode: u64,
}

impl UserWindow {
    fn execution_used(&self) -> Duration {
        self.execution_total
    }
}

/// How well clients respect the limits: what the reliability drills assert on. An *episode*
/// starts with a 429 to a client that was not told to wait; a request that arrives before the
/// `Retry-After` it was given has passed is *early*. A client that honours `Retry-After` sends
/// none, except requests already on their way when the 429 reached it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ProtectionStats {
    /// Requests admitted.
    pub admitted: u64,
    /// Requests answered 429 by the limits (injected faults are not counted).
    pub refused: u64,
    /// Throttling episodes.
    pub episodes: u64,
    /// Requests that arrived while their client had been told to wait.
    pub early_requests: u64,
    /// The most early requests of one client in one episode.
    pub max_early_requests_in_episode: u64,
    /// Execution time of the admitted requests, summed, in milliseconds (what the execution
    /// time limit counts), for the share of the quota a client used.
    pub execution_ms: u64,
}

/// Counts requests per client and refuses those over a limit.
#[derive(Debug, Clone)]
pub struct Limiter {
    limits: ServiceProtectionLimits,
    clock: EmulatedClock,
    users: Arc<Mutex<HashMap<String, UserWindow>>>,
    stats: Arc<Mutex<ProtectionStats>>,
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
    /// Emulated execution time charged on top of the real time ([`Permit::charge`]).
    charged: std::time::Duration,
}

impl Permit {
    /// Adds `time` of emulated execution time to this request (counted when it ends).
    pub fn charge(&mut self, time: std::time::Duration) {
        self.charged += time;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let elapsed =
            Duration::from_std(self.started.elapsed() + self.charged).unwrap_or(Duration::zero());
        let now = self.limiter.clock.now();
        let mut users = self.limiter.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(user) = users.get_mut(&self.client) {
            user.concurrent = user.concurrent.saturating_sub(1);
            user.execution.push_back((now, elapsed));
            user.execution_total += elapsed;
        }
        drop(users);
        let mut stats = self.limiter.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.execution_ms += elapsed.num_milliseconds().max(0) as u64;
    }
}

impl Limiter {
    /// A limiter over `clock`.
    pub fn new(limits: ServiceProtectionLimits, clock: EmulatedClock) -> Self {
        Self {
            limits,
            clock,
            users: Default::default(),
            stats: Default::default(),
        }
    }

    /// Admits one request of `client`, or answers the 429.
    pub fn acquire(&self, client: &str) -> Result<Permit, ApiResponse> {
        let now = self.clock.now();
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let user = users.entry(client.to_owned()).or_default();
        let early = user.told_to_wait_until.is_some_and(|until| now < until);
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        if early {
            user.early_in_episode += 1;
            stats.early_requests += 1;
            stats.max_early_requests_in_episode = stats
                .max_early_requests_in_episode
                .max(user.early_in_episode);
        }
        if let Err((code, message, retry_after)) = self.check(user, now) {
            let retry_after = retry_after.max(1);
            if !early {
                stats.episodes += 1;
                user.early_in_episode = 0;
            }
            stats.refused += 1;
            user.told_to_wait_until = Some(now + Duration::seconds(retry_after));
            return Err(
                ApiResponse::error(StatusCode::TOO_MANY_REQUESTS, code, message)
                    .with_header("Retry-After", retry_after.to_string()),
            );
        }
        stats.admitted += 1;
        let used = user.execution_used();
        user.requests.push_back(now);
        user.concurrent += 1;
        Ok(Permit {
            limiter: self.clone(),
            client: client.to_owned(),
            started: std::time::Instant::now(),
            remaining_requests: self.limits.requests - user.requests.len(),
            remaining_ms: (self.limits.execution_time - used).num_milliseconds(),
            charged: std::time::Duration::ZERO,
        })
    }

    /// What the limiter has admitted and refused so far, over all clients.
    pub fn stats(&self) -> ProtectionStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The limit `user` is over at `now`, if any: its error code, message and `Retry-After`
    /// in seconds.
    fn check(&self, user: &mut UserWindow, now: DateTime<Utc>) -> Result<(), Refusal> {
        let window = self.limits.window;
        while user.requests.front().is_some_and(|t| *t + window <= now) {
            user.requests.pop_front();
        }
        while user
            .execution
            .front()
            .is_some_and(|(t, _)| *t + window <= now)
        {
            if let Some((_, d)) = user.execution.pop_front() {
                user.execution_total -= d;
            }
        }
        let seconds_until = |t: DateTime<Utc>| {
            let ms = (t + window - now).num_milliseconds();
            (ms + 999) / 1000
        };
        if user.concurrent >= self.limits.concurrent {
            return Err((
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
            return Err((
                "0x80072322",
                format!(
                    "Number of requests exceeded the limit of {} over time window of {} seconds.",
                    self.limits.requests,
                    window.num_seconds()
                ),
                seconds_until(oldest),
            ));
        }
        let mut used = user.execution_used();
        if used >= self.limits.execution_time {
            // Wait until enough execution time has left the window to be under the limit
            // again, and no longer: a client that honours it can use the whole quota.
            let mut until = now;
            for (t, d) in &user.execution {
                if used < self.limits.execution_time {
                    break;
                }
                used -= *d;
                until = *t;
            }
            return Err((
                "0x80072321",
                format!(
                    "Combined execution time of incoming requests exceeded limit of {} milliseconds over time window of {} seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.",
                    self.limits.execution_time.num_milliseconds(),
                    window.num_seconds()
                ),
                seconds_until(until),
            ));
        }
        Ok(())
    }
}

/// A refusal: error code, message, `Retry-After` seconds.
type Refusal = (&'static str, String, i64);

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

    fn retry_after(refused: &ApiResponse) -> i64 {
        let (_, value) = refused
            .headers
            .iter()
            .find(|(k, _)| k == "Retry-After")
            .expect("a Retry-After");
        value.parse().unwrap()
    }

    #[test]
    fn charged_execution_time_counts_and_retry_after_waits_until_under_the_limit() {
        let limiter = limits(52, 100_000);
        let run = |seconds: u64| {
            let mut permit = limiter.acquire("app").unwrap();
            permit.charge(std::time::Duration::from_secs(seconds));
        };
        run(10);
        limiter.clock.advance(Duration::seconds(100));
        run(20);
        limiter.clock.advance(Duration::seconds(100));
        run(85);
        // 115 s used of 100: the first request leaving the window (in 100 s) is not enough,
        // the second (in 200 s) is.
        let refused = limiter.acquire("app").unwrap_err();
        assert_eq!(code(&refused), "0x80072321");
        let retry = retry_after(&refused);
        assert!((199..=201).contains(&retry), "{retry}");
        assert_eq!(limiter.stats().execution_ms / 1000, 115);
        limiter.clock.advance(Duration::seconds(retry));
        assert!(limiter.acquire("app").is_ok());
    }

    #[test]
    fn requests_inside_a_retry_after_are_counted_as_early() {
        let limiter = Limiter::new(
            ServiceProtectionLimits {
                requests: 2,
                execution_time: Duration::minutes(20),
                concurrent: 52,
                window: Duration::seconds(10),
            },
            EmulatedClock::new(),
        );
        drop(limiter.acquire("app").unwrap());
        drop(limiter.acquire("app").unwrap());
        assert!(limiter.acquire("app").is_err(), "over the request limit");
        assert!(
            limiter.acquire("app").is_err(),
            "sent before the Retry-After passed"
        );
        let stats = limiter.stats();
        assert_eq!((stats.admitted, stats.refused, stats.episodes), (2, 2, 1));
        assert_eq!(stats.early_requests, 1);
        assert_eq!(stats.max_early_requests_in_episode, 1);
        // A client that waits as told is not early, and is admitted once the window moved on.
        limiter.clock.advance(Duration::seconds(11));
        assert!(limiter.acquire("app").is_ok());
        assert_eq!(limiter.stats().early_requests, 1);
    }
}
