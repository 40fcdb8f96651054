//! The last hour of a few numbers, for the overview's charts: a task reads the host's
//! metrics every [`INTERVAL`] and keeps the readings in memory (a restart starts an empty
//! chart; Prometheus keeps the long history).

use super::snapshot::Snapshot;
use std::collections::VecDeque;
use std::sync::{Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the sampler reads the metrics.
pub const INTERVAL: Duration = Duration::from_secs(15);
/// How far back the charts go.
pub const WINDOW: Duration = Duration::from_secs(60 * 60);

/// The numbers of one reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Unix seconds.
    pub at: f64,
    /// `cosell_sync_events_total` of changes made in Partner Center (flowing to the CRM).
    pub from_partner_center: f64,
    /// … of changes made in Dataverse (flowing to Partner Center).
    pub from_dataverse: f64,
    /// `cosell_queue_events{state="pending"}`.
    pub pending: f64,
    /// `cosell_queue_events{state="dead"}`.
    pub dead: f64,
}

impl Reading {
    /// The reading of `snapshot`, taken at `at` (unix seconds).
    pub fn of(snapshot: &Snapshot, at: f64) -> Self {
        let events = |side| {
            snapshot
                .sum("cosell_sync_events_total", &[("side", side)])
                .unwrap_or(0.0)
        };
        let queue = |state| {
            snapshot
                .sum("cosell_queue_events", &[("state", state)])
                .unwrap_or(0.0)
        };
        Self {
            at,
            from_partner_center: events("partner-center"),
            from_dataverse: events("dataverse"),
            pending: queue("pending"),
            dead: queue("dead"),
        }
    }
}

/// Unix seconds now.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The readings of the last [`WINDOW`], oldest first.
#[derive(Default)]
pub struct History {
    readings: Mutex<VecDeque<Reading>>,
}

impl History {
    /// Keeps `reading`, forgetting those older than [`WINDOW`].
    pub fn push(&self, reading: Reading) {
        let mut readings = self.readings.lock().unwrap_or_else(|p| p.into_inner());
        readings.push_back(reading);
        let oldest = reading.at - WINDOW.as_secs_f64();
        while readings.front().is_some_and(|r| r.at < oldest) {
            readings.pop_front();
        }
    }

    /// The kept readings, oldest first.
    pub fn readings(&self) -> Vec<Reading> {
        self.readings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }
}

/// Events per minute between consecutive readings, each placed at the later one's time;
/// a counter that went down (the host restarted) gives no point.
pub fn per_minute(readings: &[Reading], value: impl Fn(&Reading) -> f64) -> Vec<(f64, f64)> {
    readings
        .windows(2)
        .filter_map(|pair| {
            let (a, b) = (&pair[0], &pair[1]);
            let (dv, dt) = (value(b) - value(a), b.at - a.at);
            (dv >= 0.0 && dt > 0.0).then(|| (b.at, dv / dt * 60.0))
        })
        .collect()
}

/// Reads the metrics every [`INTERVAL`] into `history` while the console lives (`console`
/// is weak: the task ends when the console is dropped with its router).
pub fn spawn_sampler(console: Weak<super::Console>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no async runtime: the console's charts stay empty");
        return;
    };
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(console) = console.upgrade() else {
                return;
            };
            let state = console.admin.clone();
            let text = tokio::task::spawn_blocking(move || crate::admin::handlers::scrape(&state))
                .await
                .unwrap_or_default();
            console
                .history
                .push(Reading::of(&Snapshot::parse(&text), now()));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(at: f64, events: f64) -> Reading {
        Reading {
            at,
            from_partner_center: events,
            from_dataverse: 0.0,
            pending: 0.0,
            dead: 0.0,
        }
    }

    #[test]
    fn rates_are_per_minute_and_a_restart_gives_no_point() {
        let readings = [
            reading(0.0, 0.0),
            reading(30.0, 10.0),
            reading(60.0, 2.0),
            reading(90.0, 4.0),
        ];
        assert_eq!(
            per_minute(&readings, |r| r.from_partner_center),
            [(30.0, 20.0), (90.0, 4.0)]
        );
    }

    #[test]
    fn readings_older_than_the_window_are_forgotten() {
        let history = History::default();
        history.push(reading(0.0, 0.0));
        history.push(reading(10.0, 0.0));
        history.push(reading(WINDOW.as_secs_f64() + 5.0, 0.0));
        let kept: Vec<f64> = history.readings().iter().map(|r| r.at).collect();
        assert_eq!(kept, [10.0, WINDOW.as_secs_f64() + 5.0]);
    }
}
