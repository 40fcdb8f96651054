//! The link of a claimed event's record, read in the hand-over to the store that claimed it.
//!
//! Every run starts by reading its record's link, and every store call from async code is a
//! hand-over to the blocking pool and back: two thread wake-ups, about as much CPU on a small
//! machine as the read itself. The claim is such a hand-over already, so the worker reads the
//! link there and the run's first read of that link takes it instead of asking the store.
//!
//! It is the state the run would read: the worker holds the record's lock key from the claim
//! on, and only a run holding it saves the link. A run that saves the link before its first
//! read of it (none does today) reads from the store again. Outside a worker's run (nothing
//! read at a claim), every read goes to the store.

use crate::store::{Link, QueuedEvent, Side, SyncStore};
use std::cell::RefCell;
use std::future::Future;

/// The link of one record, as the claim of its event found it (`None`: not linked).
#[derive(Debug)]
pub(crate) struct LinkAtClaim {
    side: Side,
    record_id: String,
    link: Option<Link>,
}

tokio::task_local! {
    /// The link the claim of the current run's event read, until the run takes it.
    static AT_CLAIM: RefCell<Option<LinkAtClaim>>;
}

/// Reads the link of `event`'s record, in the store call that claimed it.
pub(crate) fn read(store: &dyn SyncStore, event: &QueuedEvent) -> anyhow::Result<LinkAtClaim> {
    Ok(LinkAtClaim {
        side: event.side,
        record_id: event.record_id.clone(),
        link: super::link_in(store, event.side, &event.record_id)?,
    })
}

/// Runs `run` with `found` (what the claim read) for its first read of that link.
pub(crate) async fn within<F: Future>(found: Option<LinkAtClaim>, run: F) -> F::Output {
    AT_CLAIM.scope(RefCell::new(found), run).await
}

/// The link of record `id` on `side` as the claim read it, once: `Some` the first time the
/// run asks for that record, `None` afterwards, for any other record, or outside a run.
pub(crate) fn take(side: Side, id: &str) -> Option<Option<Link>> {
    AT_CLAIM
        .try_with(|found| {
            let mut found = found.borrow_mut();
            match found.as_ref() {
                Some(at) if at.side == side && at.record_id == id => found.take().map(|at| at.link),
                _ => None,
            }
        })
        .ok()
        .flatten()
}

/// Forgets what the claim read: the run is saving the link, so a later read goes to the store.
pub(crate) fn forget() {
    let _ = AT_CLAIM.try_with(|found| found.borrow_mut().take());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(side: Side, id: &str, opportunity: &str) -> LinkAtClaim {
        LinkAtClaim {
            side,
            record_id: id.to_owned(),
            link: Some(Link {
                opportunity_id: Some(opportunity.to_owned()),
                ..Link::default()
            }),
        }
    }

    #[tokio::test]
    async fn the_first_read_of_the_claimed_record_takes_the_link_and_later_ones_go_to_the_store() {
        within(Some(found(Side::PartnerCenter, "r1", "o1")), async {
            assert_eq!(take(Side::Dataverse, "r1"), None, "another side");
            assert_eq!(take(Side::PartnerCenter, "r2"), None, "another record");
            let link = take(Side::PartnerCenter, "r1").expect("taken");
            assert_eq!(link.unwrap().opportunity_id.as_deref(), Some("o1"));
            assert_eq!(take(Side::PartnerCenter, "r1"), None, "only once");
        })
        .await;
        assert_eq!(take(Side::PartnerCenter, "r1"), None, "outside a run");
    }

    #[tokio::test]
    async fn a_run_that_saves_the_link_reads_it_from_the_store_afterwards() {
        within(Some(found(Side::Dataverse, "o1", "o1")), async {
            forget();
            assert_eq!(take(Side::Dataverse, "o1"), None);
        })
        .await;
    }
}
