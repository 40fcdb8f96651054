//! The Dataverse change-tracking poller: a safety net behind the webhook.
//!
//! Every `pollers.dataverse_interval_secs` it reads `opportunities` with the stored delta link
//! and queues every changed row. The first run takes a delta link without queueing the rows
//! that exist (unless `pollers.initial_sync`), so a new installation starts from now. The
//! delta link is saved only after the rows are queued: a crash re-reads, never skips.
//!
//! Delta links expire (Dataverse keeps changes for `ExpireChangeTrackingInDays`, 7 days by
//! default), for example after the host was stopped for a week. A refused delta link is
//! recovered with a full read, queueing every opportunity modified since the last successful
//! poll (less [`RECOVERY_OVERLAP`] for the two clocks; every one when that time is unknown),
//! and a fresh delta link: the engine compares both sides, so a row queued needlessly writes
//! nothing. It is logged once, as a warning.

use super::intake::Intake;
use crate::connections::dataverse::{DataverseClient, DataverseError};
use crate::store::Side;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const CURSOR: &str = "dataverse-opportunity-delta";
/// When the delta link in [`CURSOR`] was saved (RFC 3339, the host's clock).
const CURSOR_AT: &str = "dataverse-opportunity-delta-at";
/// How far before the last successful poll a recovery reaches back.
pub const RECOVERY_OVERLAP: chrono::TimeDelta = chrono::TimeDelta::minutes(10);
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
    let mut since = None;
    let page = match dv
        .track_changes("opportunities", SELECT, link.as_deref())
        .await
    {
        Err(DataverseError::BadRequest { message, .. }) if link.is_some() => {
            let last = store
                .cursor(CURSOR_AT)?
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&chrono::Utc) - RECOVERY_OVERLAP);
            tracing::warn!(
                %message,
                since = ?last,
                "Dataverse refused the saved delta link (change tracking keeps changes for a limited time); reading every opportunity again and queueing those modified since the last poll"
            );
            since = Some(last);
            dv.track_changes("opportunities", SELECT, None).await?
        }
        other => other?,
    };
    let mut queued = 0;
    if !first || initial_sync {
        for row in page.changed.iter().filter(|row| match since {
            Some(Some(since)) => modified_since(row, since),
            _ => true,
        }) {
            if let Some(id) = row["opportunityid"].as_str() {
                intake.accept_alone(
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
    store.set_cursor(CURSOR_AT, &chrono::Utc::now().to_rfc3339())?;
    Ok(queued)
}

/// The columns read: the id to queue and the modification time a recovery filters on.
const SELECT: &str = "opportunityid,modifiedon";

/// Whether `row` was modified at or after `since` (unreadable: yes, to lose nothing).
fn modified_since(row: &serde_json::Value, since: chrono::DateTime<chrono::Utc>) -> bool {
    row["modifiedon"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_none_or(|t| t.with_timezone(&chrono::Utc) >= since)
}

/// Polls until `stop` turns true.
pub async fn run(
    dv: DataverseClient,
    intake: Arc<Intake>,
    every: Duration,
    initial_sync: bool,
    health: Arc<crate::health::Health>,
    stop: watch::Receiver<bool>,
) {
    super::schedule::every("dataverse-changes", every, health, stop, || {
        poll_once(&dv, &intake, initial_sync)
    })
    .await
}
