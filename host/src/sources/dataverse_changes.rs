//! The Dataverse change-tracking poller: a safety net behind the webhook.
//!
//! Every `pollers.dataverse_interval_secs` it reads `opportunities` with the stored delta link
//! and queues every changed row. The first run takes a delta link without queueing the rows
//! that exist (unless `pollers.initial_sync`), so a new installation starts from now. The
//! delta link is saved only after the rows are queued: a crash re-reads, never skips.

use super::intake::Intake;
use crate::connections::dataverse::DataverseClient;
use crate::store::Side;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const CURSOR: &str = "dataverse-opportunity-delta";
const ORIGIN: &str = "dataverse-changes";

/// One poll: answers how many rows were queued.
pub async fn poll_once(
    dv: &DataverseClient,
    intake: &Intake,
    initial_sync: bool,
) -> anyhow::Result<usize> {
    let store = intake.store().clone();
    let link = store.cursor(CURSOR)?;
    let first = link.is_none();
    let page = dv
        .track_changes("opportunities", "opportunityid,modifiedon", link.as_deref())
        .await?;
    let mut queued = 0;
    if !first || initial_sync {
        for row in &page.changed {
            if let Some(id) = row["opportunityid"].as_str() {
                intake.accept(
                    Side::Dataverse,
                    &id.to_ascii_lowercase(),
                    ORIGIN,
                    &row.to_string(),
                )?;
                queued += 1;
            }
        }
    }
    if !page.deleted.is_empty() {
        tracing::info!(
            count = page.deleted.len(),
            "opportunities deleted in Dataverse; their referrals are left as they are"
        );
    }
    store.set_cursor(CURSOR, &page.delta_link)?;
    Ok(queued)
}

/// Polls until `stop` turns true.
pub async fn run(
    dv: DataverseClient,
    intake: Arc<Intake>,
    every: Duration,
    initial_sync: bool,
    stop: watch::Receiver<bool>,
) {
    super::schedule::every("dataverse-changes", every, stop, || {
        poll_once(&dv, &intake, initial_sync)
    })
    .await
}
