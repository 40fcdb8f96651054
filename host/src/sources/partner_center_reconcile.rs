//! The Partner Center reconciliation: lists referrals updated since its cursor and queues
//! them. It catches what webhooks missed, including events Partner Center parked after 10
//! failed deliveries.
//!
//! The cursor is the newest `updatedDateTime` seen; each run looks back
//! `pollers.partner_center_overlap_secs` before it, for clock skew and writes committed late.
//! A listed referral whose fingerprint is the one its link recorded as synced is not queued:
//! the list already shows it unchanged, and queueing the whole overlap window on every run
//! would keep the queue busy with reads that find nothing to do. The first run starts the
//! cursor at now (unless `pollers.initial_sync`).
//!
//! A referral that failed is different: it has no fingerprint to match, so every re-listing
//! would run it in full again. One that was dead-lettered and has not changed since is left to
//! its dead letter (a replay, or a change announced by a webhook, runs it again); re-queueing it
//! on every run would spend its mapping's limits and stack up a new dead letter each time. A
//! referral waiting for a retry keeps its backoff (see [`RECONCILE_ORIGIN`]).

use super::intake::Intake;
use crate::connections::partner_center::PartnerCenterClient;
use crate::domain::fingerprint;
use crate::store::{RECONCILE_ORIGIN, Side, SyncStore};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const CURSOR: &str = "partner-center-updated-since";
const ORIGIN: &str = RECONCILE_ORIGIN;

/// Dead letters read per run to find the parked referrals (they are exceptional; past this
/// many, the rest are simply re-queued as before).
const DEAD_LETTERS_READ: usize = 10_000;

/// One reconciliation: answers how many referrals were queued.
pub async fn reconcile_once(
    pc: &PartnerCenterClient,
    intake: &Intake,
    overlap: Duration,
    initial_sync: bool,
) -> anyhow::Result<usize> {
    let store = intake.store().clone();
    let cursor = store
        .cursor(CURSOR)?
        .and_then(|c| DateTime::parse_from_rfc3339(&c).ok())
        .map(|c| c.with_timezone(&Utc));
    let since = match cursor {
        Some(c) => c - chrono::Duration::from_std(overlap).unwrap_or_default(),
        None if initial_sync => DateTime::<Utc>::UNIX_EPOCH,
        None => {
            store.set_cursor(
                CURSOR,
                &Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            )?;
            return Ok(0);
        }
    };
    // Filtering on dates is not documented; ordering by updatedDateTime is. Newest first,
    // stopping after the first page that reaches back past `since`.
    let updated = |r: &Value| {
        r["updatedDateTime"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let listed = pc
        .list_referrals_while(None, Some("updatedDateTime desc"), Some(100), |page| {
            page.iter()
                .all(|r| updated(r).is_some_and(|at| at >= since))
        })
        .await?;
    // When the last attempt of each dead-lettered referral started, the newest if it has
    // several letters.
    let mut given_up: HashMap<String, DateTime<Utc>> = HashMap::new();
    // Parked referrals alike: they run again when their step gets another version.
    let letters = store.dead_letters(DEAD_LETTERS_READ)?.into_iter();
    let letters = letters.map(|l| (l.side, l.record_id, l.last_attempt_at));
    let parked = store.parked(DEAD_LETTERS_READ)?.into_iter();
    let parked = parked.map(|p| (p.side, p.record_id, p.last_attempt_at));
    for (side, record_id, last_attempt_at) in letters.chain(parked) {
        let Ok(at) = DateTime::parse_from_rfc3339(&last_attempt_at) else {
            continue;
        };
        if side == Side::PartnerCenter {
            let at = at.with_timezone(&Utc);
            let entry = given_up.entry(record_id).or_insert(at);
            *entry = (*entry).max(at);
        }
    }
    let mut newest = cursor.unwrap_or(since);
    let mut queued = 0;
    let mut parked = 0;
    for referral in listed
        .iter()
        .filter(|r| updated(r).is_some_and(|at| at >= since))
    {
        let Some(id) = referral["id"].as_str() else {
            continue;
        };
        let at = updated(referral);
        newest = newest.max(at.unwrap_or(newest));
        if already_synced(store.as_ref(), id, referral)? {
            continue;
        }
        // Unchanged since its last attempt started (and read it): the dead letter stands for
        // it. (Partner Center's clock against the host's: one running behind could hide a
        // change made during that attempt until the next; keep both on NTP.)
        if given_up
            .get(id)
            .is_some_and(|attempt| at.is_some_and(|at| at < *attempt))
        {
            parked += 1;
            continue;
        }
        intake.accept_alone(Side::PartnerCenter, id, ORIGIN, "{}")?;
        queued += 1;
    }
    if parked > 0 {
        tracing::debug!(
            parked,
            "dead-lettered referrals unchanged since they failed were not re-queued"
        );
    }
    store.set_cursor(CURSOR, &newest.to_rfc3339_opts(SecondsFormat::Millis, true))?;
    Ok(queued)
}

/// Whether the store holds `referral`, as listed, as the version last synced.
fn already_synced(store: &dyn SyncStore, id: &str, referral: &Value) -> anyhow::Result<bool> {
    let fingerprint = fingerprint::referral(referral);
    Ok(store.link_by_referral(id)?.is_some_and(|link| {
        link.last_error.is_none() && link.pc_hash.as_deref() == Some(fingerprint.as_str())
    }))
}

/// Reconciles until `stop` turns true.
pub async fn run(
    pc: PartnerCenterClient,
    intake: Arc<Intake>,
    every: Duration,
    overlap: Duration,
    initial_sync: bool,
    health: Arc<crate::health::Health>,
    stop: watch::Receiver<bool>,
) {
    super::schedule::every("partner-center-reconcile", every, health, stop, || {
        reconcile_once(&pc, &intake, overlap, initial_sync)
    })
    .await
}
