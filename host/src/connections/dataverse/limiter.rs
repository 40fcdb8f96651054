//! Adaptive concurrency for Dataverse's service protection limits (AIMD).
//!
//! The [`Limiter`] bounds the client's requests in flight. The bound starts at
//! `max_concurrency`, halves (down to 1) on every 429 that refuses too many concurrent requests
//! (or does not say which limit it is), and grows back by one after a run of successes as long
//! as the bound itself (about one round of requests without throttling), up to
//! `max_concurrency` again. A 429 with `Retry-After` also holds every new request back until
//! then, exactly, since Dataverse refuses all of this user's requests for that long anyway.
//!
//! A 429 of the request-count or execution-time limit ([`Refusal::Quota`]) pauses without
//! lowering the bound: it says the window's quota is spent, not that too much runs at once.
//! Halving there would leave most of the next window's quota unused (a bulk load bound by the
//! execution-time limit needs several requests executing at once to use it), and the bound
//! would take many rounds to grow back.
//!
//! [`Window`] is the arithmetic alone (no clock, no waiting), unit-tested below; [`Limiter`]
//! adds the waiting: [`Limiter::acquire`] returns a [`Permit`] once a slot is free, and the
//! permit frees it when dropped.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The bound and what moves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The ceiling (`max_concurrency`).
    pub max: usize,
    /// The current bound on requests in flight (1..=max).
    pub limit: usize,
    /// Requests in flight now.
    pub in_flight: usize,
    /// Successes since the last change of `limit`.
    pub successes: usize,
}

impl Window {
    /// A window at its ceiling, nothing in flight (`max` below 1 counts as 1).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            max,
            limit: max,
            in_flight: 0,
            successes: 0,
        }
    }

    /// Takes a slot if one is free.
    pub fn try_admit(&mut self) -> bool {
        let free = self.in_flight < self.limit;
        if free {
            self.in_flight += 1;
        }
        free
    }

    /// A request finished (its slot is free again).
    pub fn release(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// A 429: multiplicative decrease, halving down to 1.
    pub fn throttled(&mut self) {
        self.limit = (self.limit / 2).max(1);
        self.successes = 0;
    }

    /// An answer that was not throttled: additive increase by one after `limit` in a row.
    pub fn succeeded(&mut self) {
        self.successes += 1;
        if self.successes >= self.limit {
            self.successes = 0;
            self.limit = (self.limit + 1).min(self.max);
        }
    }
}

/// Which limit a 429 says was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many concurrent requests, or a 429 that does not say (treated alike: fewer in flight).
    Concurrency,
    /// The window's request count or combined execution time is spent
    /// (`0x80072322`, `0x80072321`).
    Quota,
}

impl Refusal {
    /// The refusal a 429's Dataverse error code names.
    pub fn of_code(code: &str) -> Self {
        match code.to_ascii_lowercase().as_str() {
            "0x80072322" | "0x80072321" | "-2147015902" | "-2147015903" => Refusal::Quota,
            _ => Refusal::Concurrency,
        }
    }
}

struct State {
    window: Window,
    paused_until: Option<Instant>,
}

/// The limiter one client shares between its calls.
pub struct Limiter {
    state: Mutex<State>,
    freed: Notify,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("window", &self.lock().window)
            .finish_non_exhaustive()
    }
}

/// A slot for one request in flight; dropping it frees the slot.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.lock().window.release();
        self.limiter.freed.notify_waiters();
    }
}

impl Limiter {
    /// A limiter allowing up to `max_concurrency` requests in flight.
    pub fn new(max_concurrency: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                window: Window::new(max_concurrency),
                paused_until: None,
            }),
            freed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current bound and counters.
    pub fn window(&self) -> Window {
        self.lock().window.clone()
    }

    /// Waits for a pause to end and a slot to be free, then takes the slot.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let pause = {
                let mut state = self.lock();
                match state.paused_until {
                    Some(until) if until > Instant::now() => Some(until),
                    _ => {
                        state.paused_until = None;
                        if state.window.try_admit() {
                            return Permit {
                                limiter: self.clone(),
                            };
                        }
                        None
                    }
                }
            };
            match pause {
                Some(until) => tokio::time::sleep_until(until).await,
                None => freed.await,
            }
        }
    }

    /// A 429 answer: halve the bound (unless it refused a spent quota, see the module doc)
    /// and, with `Retry-After`, hold new requests back until then.
    pub fn throttled(&self, retry_after: Option<Duration>, refusal: Refusal) {
        let mut state = self.lock();
        if refusal == Refusal::Concurrency {
            state.window.throttled();
        }
        if let Some(wait) = retry_after {
            let until = Instant::now() + wait;
            state.paused_until = Some(state.paused_until.map_or(until, |p| p.max(until)));
        }
        tracing::debug!(
            limit = state.window.limit,
            retry_after_ms = retry_after.map(|d| d.as_millis() as u64),
            "Dataverse throttled; concurrency lowered"
        );
    }

    /// An answer that was not throttled (nor a 5xx).
    pub fn succeeded(&self) {
        let mut state = self.lock();
        let before = state.window.limit;
        state.window.succeeded();
        if state.window.limit != before {
            drop(state);
            self.freed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_on_429_down_to_one() {
        let mut w = Window::new(16);
        let limits: Vec<usize> = (0..6)
            .map(|_| {
                w.throttled();
                w.limit
            })
            .collect();
        assert_eq!(limits, [8, 4, 2, 1, 1, 1]);
        assert_eq!(Window::new(0).limit, 1);
    }

    #[test]
    fn grows_by_one_after_a_run_of_successes_up_to_the_ceiling() {
        let mut w = Window::new(4);
        w.throttled();
        w.throttled();
        assert_eq!(w.limit, 1);
        w.succeeded();
        assert_eq!(w.limit, 2, "a run of 1 at limit 1");
        w.succeeded();
        assert_eq!(w.limit, 2, "a run of 2 is needed at limit 2");
        w.succeeded();
        assert_eq!(w.limit, 3);
        for _ in 0..3 {
            w.succeeded();
        }
        assert_eq!(w.limit, 4);
        for _ in 0..100 {
            w.succeeded();
        }
        assert_eq!(w.limit, 4, "never above max_concurrency");
    }

    #[test]
    fn a_429_resets_the_run() {
        let mut w = Window::new(8);
        for _ in 0..7 {
            w.succeeded();
        }
        w.throttled();
        assert_eq!((w.limit, w.successes), (4, 0));
        for _ in 0..3 {
            w.succeeded();
        }
        assert_eq!(w.limit, 4);
        w.succeeded();
        assert_eq!(w.limit, 5);
    }

    #[test]
    fn admits_up_to_the_limit_and_a_release_frees_a_slot() {
        let mut w = Window::new(2);
        assert!(w.try_admit());
        assert!(w.try_admit());
        assert!(!w.try_admit());
        w.release();
        assert!(w.try_admit());
        w.throttled();
        w.release();
        assert!(!w.try_admit(), "1 in flight is the new limit");
    }

    #[tokio::test]
    async fn acquire_waits_for_a_slot_and_for_retry_after() {
        let limiter = Limiter::new(2);
        let a = limiter.acquire().await;
        let b = limiter.acquire().await;
        let waiting = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.acquire().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiting.is_finished(), "no third slot");
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .expect("admitted once a slot is free")
            .unwrap();
        drop(c);
        drop(b);

        // Taken before the pause is set, so the pause's end is at least 300 ms after it: a
        // floor no load can break.
        let started = Instant::now();
        limiter.throttled(Some(Duration::from_millis(300)), Refusal::Concurrency);
        let d = limiter.acquire().await;
        assert!(started.elapsed() >= Duration::from_millis(300), "paused");
        let window = limiter.window();
        assert_eq!((window.limit, window.in_flight), (1, 1));
        let blocked = tokio::time::timeout(Duration::from_millis(50), limiter.acquire()).await;
        assert!(blocked.is_err(), "the halved limit of 1 is full");
        drop(d);
    }

    #[tokio::test]
    async fn a_spent_quota_pauses_for_retry_after_without_lowering_the_bound() {
        assert_eq!(Refusal::of_code("0x80072322"), Refusal::Quota);
        assert_eq!(Refusal::of_code("0x80072321"), Refusal::Quota);
        assert_eq!(Refusal::of_code("0x80072326"), Refusal::Concurrency);
        assert_eq!(Refusal::of_code(""), Refusal::Concurrency);
        let limiter = Limiter::new(4);
        let started = Instant::now();
        limiter.throttled(Some(Duration::from_millis(200)), Refusal::Quota);
        let permits = [
            limiter.acquire().await,
            limiter.acquire().await,
            limiter.acquire().await,
            limiter.acquire().await,
        ];
        assert!(started.elapsed() >= Duration::from_millis(200), "paused");
        assert_eq!(limiter.window().limit, 4, "all four in flight again");
        drop(permits);
    }
}
