//! Running a poller round after round until the host stops.

use crate::health::Health;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Runs `round` now and then every `interval` until `stop` turns true. A round answers how
/// many records it queued; a failed round is logged and the next one tries again. `health`
/// is told when the poller starts, each successful round, and when it stops (readiness: a
/// poller without a successful round for long is late).
pub async fn every<F, Fut>(
    name: &'static str,
    interval: Duration,
    health: Arc<Health>,
    mut stop: watch::Receiver<bool>,
    mut round: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<usize>>,
{
    health.poller_started(name, interval);
    // Removed from readiness however the task ends (stopped, or aborted after the grace).
    struct Stopped(&'static str, Arc<Health>);
    impl Drop for Stopped {
        fn drop(&mut self) {
            self.1.poller_stopped(self.0);
        }
    }
    let _stopped = Stopped(name, health.clone());
    loop {
        match round().await {
            Ok(queued) => {
                health.poller_succeeded(name);
                match queued {
                    0 => tracing::debug!(poller = name, "nothing new"),
                    _ => tracing::info!(poller = name, queued, "found changes"),
                }
            }
            Err(e) => {
                tracing::warn!(poller = name, error = %format!("{e:#}"), "round failed; trying again next round")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}
