//! What an opportunity create will write, recorded before it is sent.
//!
//! A run that makes an opportunity from a referral chooses its id, saves the link with that id
//! and a snapshot of the columns it is about to write, marked pending, and only then creates
//! it. Should the run die before it links the result (a crash, a SIGKILL, a lost answer),
//! the next run of the referral finds the link:
//! - the opportunity is there: the create landed. Its snapshot is the row as it is now with
//!   the written columns as they were written, so a seller's edit made since shows as the
//!   seller's change (kept, and sent on to Partner Center) instead of being overwritten by the
//!   referral's values, as it would be with no record of what was written;
//! - it is not: the create never landed, and is sent again under the same id (a create names
//!   its row, so a late first attempt makes the second fail rather than a second row).
//!
//! While the mark is on, the opportunity's own events wait for the referral's run (see
//! `pairing.rs`), as they wait for a pair not linked yet.
//!
//! The mark is the link's CRM fingerprint, set to a value no fingerprint takes: a failure
//! recorded on the link meanwhile (its reason, the Partner Center fingerprint) leaves it.

use crate::store::Link;
use serde_json::{Map, Value};

/// The CRM fingerprint of a link whose opportunity create is pending.
const PENDING: &str = "create-pending";

/// Whether `link`'s opportunity was being created when its run last ended.
pub(super) fn is_pending(link: &Link) -> bool {
    link.crm_hash.as_deref() == Some(PENDING)
}

/// The link to save before opportunity `oid` is created with `written`: the referral's
/// fingerprint cleared, so a run after a crash does not take the referral as synced.
pub(super) fn before_create(link: &Link, oid: &str, written: &Map<String, Value>) -> Link {
    let plain: Map<String, Value> = plain_columns(written)
        .map(|(column, value)| (column.clone(), value.clone()))
        .collect();
    Link {
        opportunity_id: Some(oid.to_owned()),
        pc_hash: None,
        crm_hash: Some(PENDING.to_owned()),
        crm_snapshot: Some(Value::Object(plain).to_string()),
        ..link.clone()
    }
}

/// `link` of a pending create that landed, `row` being the opportunity now: no fingerprint
/// (it is not known as synced), and as snapshot the row with the written columns as written.
pub(super) fn landed(link: &mut Link, row: &Value) {
    let written: Map<String, Value> = link
        .crm_snapshot
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    link.crm_hash = None;
    link.crm_snapshot = Some(as_written(row, &written).to_string());
}

/// `row` with the plain columns of `written` as they were written.
pub(super) fn as_written(row: &Value, written: &Map<String, Value>) -> Value {
    let mut synced = row.clone();
    for (column, value) in plain_columns(written) {
        synced[column] = value.clone();
    }
    synced
}

/// The columns a create wrote that are plain values (not lookups, written by value as an
/// object or bound with `@odata.bind`, nor the state, which Dataverse answers in another shape).
pub(super) fn plain_columns(
    written: &Map<String, Value>,
) -> impl Iterator<Item = (&String, &Value)> {
    written.iter().filter(|(column, value)| {
        !value.is_object()
            && !column.contains('@')
            && !column.starts_with("state")
            && !column.starts_with("status")
    })
}
