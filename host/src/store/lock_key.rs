//! Which events of the queue run one at a time: every event carries a lock key, and a worker
//! claims an event only while no other event with its key is running.
//!
//! Both records of a linked pair share one key, so a referral's change and its opportunity's
//! never run at the same time; an opportunity not linked yet has a key of its own.

use super::{Link, Side, SyncStore};

/// The lock key of a record: both records of a linked pair share `referral:<id>`, so their
/// events never run at the same time.
pub fn lock_key(store: &dyn SyncStore, side: Side, record_id: &str) -> anyhow::Result<String> {
    Ok(match side {
        Side::PartnerCenter => format!("referral:{record_id}"),
        Side::Dataverse => {
            opportunity_lock_key(record_id, store.link_by_opportunity(record_id)?.as_ref())
        }
    })
}

/// The lock key of opportunity `opportunity_id`, whose link (if it has one) is `link`.
pub fn opportunity_lock_key(opportunity_id: &str, link: Option<&Link>) -> String {
    match link.and_then(|l| l.referral_id.as_deref()) {
        Some(referral) => format!("referral:{referral}"),
        None => format!("opportunity:{opportunity_id}"),
    }
}
