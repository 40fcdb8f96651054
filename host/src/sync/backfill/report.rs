//! What a backfill did: [`BackfillReport`], the running totals a progress callback sees and the
//! summary at the end, and [`Outcome`], what became of one referral.

use crate::store::Link;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// A referral that was not written, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordFailure {
    /// The referral's id in Partner Center.
    pub referral_id: String,
    /// Why it was not written.
    pub reason: String,
}

/// The totals of a backfill, so far (for progress) or in the end.
///
/// Every referral read from the source ends in exactly one of `created`, `would_create` (dry
/// run), `already_there`, `skipped`, `refused` or `failed`, so [`processed`](Self::processed)
/// adds them up.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackfillReport {
    /// A dry run: nothing was written, `would_create` counts what would have been.
    pub dry_run: bool,
    /// Opportunities created (each linked in the state store).
    pub created: u64,
    /// Of `created`, those closed as won or lost in the same change set as their create.
    pub closed: u64,
    /// Dry run: referrals that mapped and would be created.
    pub would_create: u64,
    /// Referrals already linked in the state store, or whose opportunity (with their referral
    /// id) exists in Dataverse: nothing written.
    pub already_there: u64,
    /// Of `already_there`, opportunities found with the referral id but no link: their link was
    /// saved (ids only, so the sync engine compares both sides on the next event).
    pub adopted: u64,
    /// Referrals not for import, counted by reason (the Microsoft half of a co-sell pair,
    /// closed ones when asked to skip them, listed twice, skipped by the mapping).
    pub skipped: BTreeMap<String, u64>,
    /// Referrals the mapping rejected, with its reason: nothing written.
    pub refused: Vec<RecordFailure>,
    /// Referrals that could not be written (or whose link could not be saved), with the reason.
    pub failed: Vec<RecordFailure>,
    /// Dataverse requests sent (every attempt, lookups included; a `$batch` is one).
    pub requests: u64,
    /// 429 answers met (each waited for its `Retry-After`).
    pub throttled: u64,
    /// Of `created`, those written by `CreateMultiple` requests (bulk mode).
    pub bulk_created: u64,
    /// Bulk mode: why the run stopped sending `CreateMultiple` and wrote `$batch`es instead
    /// (Dataverse refused the message on the opportunity table).
    pub bulk_refused: Option<String>,
    /// Time since the run started.
    pub elapsed: Duration,
    /// Why reading the referrals stopped early (the rest were not processed).
    pub source_error: Option<String>,
}

impl BackfillReport {
    /// Referrals dealt with so far, whatever their outcome.
    pub fn processed(&self) -> u64 {
        self.created
            + self.would_create
            + self.already_there
            + self.skipped_total()
            + self.refused.len() as u64
            + self.failed.len() as u64
    }

    /// Referrals skipped, all reasons together.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// Referrals processed per second of `elapsed`.
    pub fn records_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.processed() as f64 / secs
        } else {
            0.0
        }
    }

    /// Whether every referral read was dealt with and none failed (refusals are the mapping's
    /// verdict on the record and do not count as failures of the run).
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty() && self.source_error.is_none()
    }

    pub(super) fn add(&mut self, record: RecordOutcome) {
        let RecordOutcome {
            referral_id,
            outcome,
        } = record;
        let failure = |reason| RecordFailure {
            referral_id,
            reason,
        };
        match outcome {
            Outcome::Created { closed, .. } => {
                self.created += 1;
                self.closed += u64::from(closed);
            }
            Outcome::WouldCreate => self.would_create += 1,
            Outcome::AlreadyThere { adopt } => {
                self.already_there += 1;
                self.adopted += u64::from(adopt.is_some() && !self.dry_run);
            }
            Outcome::Skipped(reason) => *self.skipped.entry(reason).or_default() += 1,
            Outcome::Refused(reason) => self.refused.push(failure(reason)),
            Outcome::Failed(reason) => self.failed.push(failure(reason)),
        }
    }
}

/// What became of one referral.
#[derive(Debug)]
pub(super) struct RecordOutcome {
    pub referral_id: String,
    pub outcome: Outcome,
}

#[derive(Debug)]
pub(super) enum Outcome {
    /// Its opportunity was created; `link` is to be saved.
    Created {
        link: Box<Link>,
        closed: bool,
    },
    /// Dry run: it would be created.
    WouldCreate,
    /// Nothing to write; `adopt` is the link to save for an opportunity found without one.
    AlreadyThere {
        adopt: Option<Box<Link>>,
    },
    Skipped(String),
    Refused(String),
    Failed(String),
}

impl RecordOutcome {
    pub(super) fn new(referral_id: impl Into<String>, outcome: Outcome) -> Self {
        Self {
            referral_id: referral_id.into(),
            outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_is_counted_once() {
        let mut report = BackfillReport::default();
        for outcome in [
            Outcome::Created {
                link: Box::default(),
                closed: true,
            },
            Outcome::Created {
                link: Box::default(),
                closed: false,
            },
            Outcome::AlreadyThere { adopt: None },
            Outcome::AlreadyThere {
                adopt: Some(Box::default()),
            },
            Outcome::Skipped("listed twice".into()),
            Outcome::Skipped("listed twice".into()),
            Outcome::Refused("no customer".into()),
            Outcome::Failed("400".into()),
        ] {
            report.add(RecordOutcome::new("r", outcome));
        }
        assert_eq!((report.created, report.closed), (2, 1));
        assert_eq!((report.already_there, report.adopted), (2, 1));
        assert_eq!(report.skipped["listed twice"], 2);
        assert_eq!(report.processed(), 8);
        assert!(!report.is_complete(), "a failure makes the run incomplete");
    }
}
