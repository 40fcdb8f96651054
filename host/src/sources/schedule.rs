//! Running a poller round after round until the host stops.

use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// Runs `round` now and then every `interval` until `stop` turns true. A round answers how
/// many records it queued; a failed round is logged and the next one tries again.
pub async fn every<F, Fut>(
    name: &'static str,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    mut round: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<usize>>,
{
    loop {
        match round().await {
            Ok(0) => tracing::debug!(poller = name, "nothing new"),
            Ok(queued) => tracing::info!(poller = name, queued, "found changes"),
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
