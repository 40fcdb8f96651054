//! Store writes a run leaves to the worker that settles its event.
//!
//! Every store call from async code is handed to the blocking pool and awaited
//! ([`crate::store::off_runtime()`]): two thread wake-ups, a good part of what a change costs
//! on a small machine. Two writes of a run need not be made on their own:
//!
//! - the pipeline runs kept for `cosell mapping replay`: nothing in the run reads them back,
//!   and a failure to keep one must not fail the record;
//! - the link's last save, once the run has written to the other side: nothing in the run
//!   reads or saves the link after it.
//!
//! A run's marks on the opportunities it writes ([`crate::store::writes_in_flight`]) are held
//! here too, so that they last until the settle has recorded the write.
//!
//! So a worker's run leaves them here, and the worker writes them with the event's settle, in
//! its hand-over to the store (on SQLite in its transaction). Should the engine ever run
//! outside a worker, nothing collects: each is given back to the caller, who saves it at once.

use crate::store::writes_in_flight::InFlight;
use crate::store::{LastRun, Link};
use std::cell::RefCell;
use std::future::Future;

/// What a worker's run left for the settle of its event.
#[derive(Debug, Default)]
pub(crate) struct LeftForSettle {
    /// The pipeline runs, in the order they ran.
    pub runs: Vec<LastRun>,
    /// The link as the run last saved it, if it left the save to the settle.
    pub link: Option<Link>,
    /// The run's marks on the opportunities it wrote: released when this is dropped, after
    /// the settle.
    pub marks: Vec<InFlight>,
}

tokio::task_local! {
    /// What the worker's current run left for its settle.
    static LEFT_FOR_SETTLE: RefCell<LeftForSettle>;
}

/// Runs `run`, collecting what it leaves for the settle; answers its output and that.
pub(crate) async fn collecting<F: Future>(run: F) -> (F::Output, LeftForSettle) {
    LEFT_FOR_SETTLE
        .scope(RefCell::new(LeftForSettle::default()), async move {
            let output = run.await;
            let left = LEFT_FOR_SETTLE.with(|left| left.take());
            (output, left)
        })
        .await
}

/// Leaves `last` to the settle of the worker's event; answers it back when no worker collects
/// (the caller saves it itself).
pub(crate) fn leave_for_settle(last: LastRun) -> Option<LastRun> {
    let mut last = Some(last);
    // `try_with` fails outside `collecting`: `last` stays with the caller.
    let _ = LEFT_FOR_SETTLE.try_with(|left| left.borrow_mut().runs.extend(last.take()));
    last
}

/// Holds `mark` until the settle of the worker's event; outside a worker it is released at
/// once (nothing records the write later than the caller does).
pub(crate) fn hold_until_settle(mark: InFlight) {
    let mut mark = Some(mark);
    let _ = LEFT_FOR_SETTLE.try_with(|left| left.borrow_mut().marks.extend(mark.take()));
}

/// Leaves the run's last save of `link` to the settle of the worker's event (a later one
/// replaces it); answers it back when no worker collects (the caller saves it itself).
pub(crate) fn leave_link_for_settle(link: Link) -> Option<Link> {
    let mut link = Some(link);
    let _ = LEFT_FOR_SETTLE.try_with(|left| left.borrow_mut().link = link.take());
    link
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(record: &str) -> LastRun {
        LastRun {
            record: record.to_owned(),
            direction: "partner-center-to-crm".to_owned(),
            event: "referral-updated".to_owned(),
            tenant: "t".to_owned(),
            input: "{}".to_owned(),
            current: None,
            config_revision: None,
            output: None,
            error: None,
            at: "2026-12-06T00:00:00.000Z".to_owned(),
        }
    }

    #[tokio::test]
    async fn a_workers_run_leaves_its_pipeline_runs_and_others_keep_theirs() {
        let ((), left) = collecting(async {
            assert!(leave_for_settle(run("referral:1")).is_none());
            tokio::task::yield_now().await;
            assert!(leave_for_settle(run("referral:2")).is_none());
        })
        .await;
        let records: Vec<_> = left.runs.iter().map(|l| l.record.as_str()).collect();
        assert_eq!(records, ["referral:1", "referral:2"]);
        // Outside a worker's run, the caller gets it back to save.
        let kept = leave_for_settle(run("referral:3")).expect("given back");
        assert_eq!(kept.record, "referral:3");
    }

    #[tokio::test]
    async fn a_workers_run_leaves_its_last_link_save_and_others_save_theirs() {
        let link = |opportunity: &str| Link {
            opportunity_id: Some(opportunity.to_owned()),
            ..Link::default()
        };
        let ((), left) = collecting(async {
            assert!(leave_link_for_settle(link("o1")).is_none());
            tokio::task::yield_now().await;
            assert!(leave_link_for_settle(link("o2")).is_none());
        })
        .await;
        assert_eq!(left.link, Some(link("o2")), "the last save is the one kept");
        assert!(left.runs.is_empty());
        assert_eq!(leave_link_for_settle(link("o3")), Some(link("o3")));
    }

    #[tokio::test]
    async fn a_workers_marks_last_until_what_it_left_is_dropped() {
        let writes = crate::store::WritesInFlight::default();
        let ((), left) = collecting(async {
            hold_until_settle(writes.mark("o1"));
            tokio::task::yield_now().await;
        })
        .await;
        assert!(writes.is_marked("o1"), "held for the settle");
        drop(left);
        assert!(!writes.is_marked("o1"), "released with what the run left");
        // Outside a worker nothing settles later: released at once.
        hold_until_settle(writes.mark("o2"));
        assert!(!writes.is_marked("o2"));
    }
}
