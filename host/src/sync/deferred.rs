//! Store writes a run leaves to the worker that settles its event.
//!
//! Every store call from async code is handed to the blocking pool and awaited
//! ([`crate::store::off_runtime()`]): two thread wake-ups, a good part of what a change costs
//! on a small machine. The pipeline run kept for `cosell mapping replay` is a write nothing in
//! the run reads back, and its failure must not fail the record, so a worker's run leaves it
//! here and the worker writes it in the hand-over that settles the event. Should the engine
//! ever map a record outside a worker's run, nothing collects: it gets the run back and saves
//! it at once, as before.

use crate::store::LastRun;
use std::cell::RefCell;
use std::future::Future;

tokio::task_local! {
    /// The pipeline runs of the worker's current run, in the order they ran.
    static LEFT_FOR_SETTLE: RefCell<Vec<LastRun>>;
}

/// Runs `run`, collecting the pipeline runs it leaves for the settle; answers its output and
/// them.
pub(crate) async fn collecting<F: Future>(run: F) -> (F::Output, Vec<LastRun>) {
    LEFT_FOR_SETTLE
        .scope(RefCell::new(Vec::new()), async move {
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
    let _ = LEFT_FOR_SETTLE.try_with(|left| left.borrow_mut().extend(last.take()));
    last
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
        let records: Vec<_> = left.iter().map(|l| l.record.as_str()).collect();
        assert_eq!(records, ["referral:1", "referral:2"]);
        // Outside a worker's run, the caller gets it back to save.
        let kept = leave_for_settle(run("referral:3")).expect("given back");
        assert_eq!(kept.record, "referral:3");
    }
}
