//! Faults on demand: what the reliability tests inject into an emulator.
//!
//! API answers: a rate of 5xx answers, added latency, dropped connections (the TCP connection is
//! closed without an answer) and 429 storms with `Retry-After`; and the ambiguous failures of a
//! write that was applied but whose answer never arrived (500 or a dropped connection after the
//! write), which a client must not take as "nothing happened". Webhook deliveries: drops,
//! duplicates and reordering; reads that lag writes. Set them in-process with [`Faults::set`] or over HTTP through the
//! control endpoint (`PUT /_emulator/faults`, see [`super::control`]). All rates are 0..=1.

use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The faults an emulator injects. The default injects none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Share of API requests answered with a 5xx (503 Service Unavailable).
    pub error_rate: f64,
    /// Latency added to every API request, in milliseconds.
    pub latency_ms: u64,
    /// Share of API requests whose connection is closed without an answer.
    pub drop_rate: f64,
    /// Share of API requests answered 429 with `Retry-After: retry_after_secs`.
    pub throttle_rate: f64,
    /// The `Retry-After` of injected 429s, in seconds.
    pub retry_after_secs: u64,
    /// Share of webhook deliveries silently not sent.
    pub webhook_drop_rate: f64,
    /// Share of webhook deliveries sent twice.
    pub webhook_duplicate_rate: f64,
    /// Deliver queued webhook events in shuffled order instead of the order they happened.
    pub webhook_reorder: bool,
    /// Partner Center only: a new referral answers 404 to `GET` by id for this long after it
    /// was created, like a service whose reads lag its writes, so its `referral-created` event
    /// can arrive before the referral is readable.
    pub read_lag_ms: u64,
    /// Share of writes (POST, PUT, PATCH, DELETE; not token requests) that are applied and
    /// then answered 500 Internal Server Error instead of their real answer.
    pub applied_error_rate: f64,
    /// Share of writes that are applied and then have their connection closed without an
    /// answer, as a timeout after the service committed would look.
    pub applied_drop_rate: f64,
    /// Latency added to the answer of every write after it was applied, in milliseconds: an
    /// answer slow on its way back, in which the client can stop (or crash) with the write
    /// made and its answer unseen.
    pub answer_latency_ms: u64,
}

impl FaultConfig {
    /// The two ways every write's answer can be lost once the write is applied: answered 500,
    /// and the connection dropped. What a test of "no duplicate on a lost answer" runs through.
    pub fn every_answer_lost() -> [FaultConfig; 2] {
        [
            FaultConfig {
                applied_error_rate: 1.0,
                ..FaultConfig::default()
            },
            FaultConfig {
                applied_drop_rate: 1.0,
                ..FaultConfig::default()
            },
        ]
    }

    /// Checks that every rate is between 0 and 1.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("error_rate", self.error_rate),
            ("drop_rate", self.drop_rate),
            ("throttle_rate", self.throttle_rate),
            ("webhook_drop_rate", self.webhook_drop_rate),
            ("webhook_duplicate_rate", self.webhook_duplicate_rate),
            ("applied_error_rate", self.applied_error_rate),
            ("applied_drop_rate", self.applied_drop_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1, got {rate}"));
            }
        }
        Ok(())
    }
}

/// What to do with one API request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFault {
    /// Serve it normally (after `latency`).
    None,
    /// Answer 503.
    ServerError,
    /// Answer 429 with this `Retry-After` in seconds.
    Throttle(u64),
    /// Close the connection without answering.
    Drop,
}

/// What to do with the answer of one write, after it was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterWriteFault {
    /// Send the real answer.
    None,
    /// Answer 500 instead: the write stays applied.
    ServerError,
    /// Close the connection without answering: the write stays applied.
    Drop,
}

/// What to do with one webhook delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryFault {
    Deliver,
    Drop,
    Duplicate,
}

/// How many faults an emulator has injected so far, by kind: what a drill reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Injected {
    pub server_errors: u64,
    pub dropped_connections: u64,
    pub throttled: u64,
    pub webhooks_dropped: u64,
    pub webhooks_duplicated: u64,
    /// Writes applied and then answered 500.
    pub applied_then_failed: u64,
    /// Writes applied and then dropped without an answer.
    pub applied_then_dropped: u64,
}

impl Injected {
    /// Injected API faults (5xx, dropped connections, 429s, failures after an applied write).
    pub fn api(&self) -> u64 {
        self.server_errors
            + self.dropped_connections
            + self.throttled
            + self.applied_then_failed
            + self.applied_then_dropped
    }
}

/// The live fault settings of one emulator, shared by its handlers. Cloning shares them.
#[derive(Debug, Clone)]
pub struct Faults {
    config: Arc<Mutex<FaultConfig>>,
    rng: Arc<Mutex<StdRng>>,
    injected: Arc<Mutex<Injected>>,
}

impl Default for Faults {
    fn default() -> Self {
        Self::new(0x5eed)
    }
}

impl Faults {
    /// No faults, with a seeded generator so a fault drill is repeatable.
    pub fn new(seed: u64) -> Self {
        Self {
            config: Arc::new(Mutex::new(FaultConfig::default())),
            rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
            injected: Arc::default(),
        }
    }

    /// Replaces the fault settings.
    pub fn set(&self, config: FaultConfig) -> Result<(), String> {
        config.validate()?;
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    /// The current fault settings.
    pub fn get(&self) -> FaultConfig {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn roll(&self, rate: f64) -> bool {
        rate > 0.0
            && self
                .rng
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .random::<f64>()
                < rate
    }

    /// Decides the fault of one API request, and the latency to add before it.
    pub fn for_request(&self) -> (RequestFault, Duration) {
        let config = self.get();
        let latency = Duration::from_millis(config.latency_ms);
        let fault = if self.roll(config.drop_rate) {
            RequestFault::Drop
        } else if self.roll(config.error_rate) {
            RequestFault::ServerError
        } else if self.roll(config.throttle_rate) {
            RequestFault::Throttle(config.retry_after_secs.max(1))
        } else {
            RequestFault::None
        };
        let mut injected = self.injected.lock().unwrap_or_else(|p| p.into_inner());
        match fault {
            RequestFault::Drop => injected.dropped_connections += 1,
            RequestFault::ServerError => injected.server_errors += 1,
            RequestFault::Throttle(_) => injected.throttled += 1,
            RequestFault::None => {}
        }
        (fault, latency)
    }

    /// Decides what happens to the answer of a write that was just applied.
    pub fn after_write(&self) -> AfterWriteFault {
        let config = self.get();
        let fault = if self.roll(config.applied_drop_rate) {
            AfterWriteFault::Drop
        } else if self.roll(config.applied_error_rate) {
            AfterWriteFault::ServerError
        } else {
            AfterWriteFault::None
        };
        let mut injected = self.injected.lock().unwrap_or_else(|p| p.into_inner());
        match fault {
            AfterWriteFault::Drop => injected.applied_then_dropped += 1,
            AfterWriteFault::ServerError => injected.applied_then_failed += 1,
            AfterWriteFault::None => {}
        }
        fault
    }

    /// Decides the fault of one webhook delivery.
    pub fn for_delivery(&self) -> DeliveryFault {
        let config = self.get();
        let fault = if self.roll(config.webhook_drop_rate) {
            DeliveryFault::Drop
        } else if self.roll(config.webhook_duplicate_rate) {
            DeliveryFault::Duplicate
        } else {
            DeliveryFault::Deliver
        };
        let mut injected = self.injected.lock().unwrap_or_else(|p| p.into_inner());
        match fault {
            DeliveryFault::Drop => injected.webhooks_dropped += 1,
            DeliveryFault::Duplicate => injected.webhooks_duplicated += 1,
            DeliveryFault::Deliver => {}
        }
        fault
    }

    /// The faults injected so far.
    pub fn injected(&self) -> Injected {
        *self.injected.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts `events` in delivery order: as they happened, or shuffled when reordering is on.
    pub fn order_deliveries<T>(&self, events: &mut [T]) {
        if self.get().webhook_reorder {
            use rand::seq::SliceRandom;
            events.shuffle(&mut *self.rng.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_honoured_and_validated() {
        let faults = Faults::new(1);
        assert_eq!(faults.for_request().0, RequestFault::None);
        faults
            .set(FaultConfig {
                error_rate: 1.0,
                ..FaultConfig::default()
            })
            .unwrap();
        assert_eq!(faults.for_request().0, RequestFault::ServerError);
        faults
            .set(FaultConfig {
                throttle_rate: 0.5,
                retry_after_secs: 7,
                ..FaultConfig::default()
            })
            .unwrap();
        let throttled = (0..1000)
            .filter(|_| faults.for_request().0 == RequestFault::Throttle(7))
            .count();
        assert!((350..650).contains(&throttled), "{throttled}");
        let injected = faults.injected();
        assert_eq!(injected.server_errors, 1);
        assert_eq!(injected.throttled, throttled as u64);
        let bad = FaultConfig {
            drop_rate: 1.5,
            ..FaultConfig::default()
        };
        assert!(faults.set(bad).unwrap_err().contains("drop_rate"));
    }

    #[test]
    fn after_write_faults_are_counted() {
        let faults = Faults::new(3);
        assert_eq!(faults.after_write(), AfterWriteFault::None);
        faults
            .set(FaultConfig {
                applied_drop_rate: 1.0,
                ..FaultConfig::default()
            })
            .unwrap();
        assert_eq!(faults.after_write(), AfterWriteFault::Drop);
        faults
            .set(FaultConfig {
                applied_error_rate: 1.0,
                ..FaultConfig::default()
            })
            .unwrap();
        assert_eq!(faults.after_write(), AfterWriteFault::ServerError);
        let injected = faults.injected();
        assert_eq!(
            (injected.applied_then_dropped, injected.applied_then_failed),
            (1, 1)
        );
        let bad = FaultConfig {
            applied_error_rate: -0.1,
            ..FaultConfig::default()
        };
        assert!(faults.set(bad).unwrap_err().contains("applied_error_rate"));
    }
}
