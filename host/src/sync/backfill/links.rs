//! Saving the links of what a backfill created or adopted, many in one transaction, so the
//! sync engine treats those pairs as cosell's.
//!
//! A link is saved only if its referral is not linked to an opportunity by then, checked in
//! the same transaction ([`LinkStore::save_unlinked`]): a running host may have linked it in
//! the meantime (the window `super::existing` describes), to the opportunity the backfill
//! created (the host heard of it first, from Dataverse's webhook, and read both sides: its
//! link is fresher and stands), or to one it created itself (then the backfill's is a second
//! opportunity, reported as a failure to delete, and not linked over the host's).
//!
//! [`LinkStore::save_unlinked`]: crate::store::LinkStore::save_unlinked

use super::Run;
use super::report::{Outcome, RecordOutcome};

impl Run<'_> {
    /// Saves the links of created and adopted opportunities; answers the outcomes, those whose
    /// link could not be saved (or belongs to another opportunity) turned into failures.
    pub(super) fn save_links(&self, mut outcomes: Vec<RecordOutcome>) -> Vec<RecordOutcome> {
        if self.options.dry_run {
            return outcomes;
        }
        let (at, links): (Vec<usize>, Vec<_>) = outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, record)| match &record.outcome {
                Outcome::Created { link, .. } => Some((i, link.as_ref().clone())),
                Outcome::AlreadyThere { adopt: Some(link) } => Some((i, link.as_ref().clone())),
                _ => None,
            })
            .unzip();
        if links.is_empty() {
            return outcomes;
        }
        match self.backfill.store.save_unlinked(&links) {
            Ok(linked) => {
                for ((i, link), linked) in at.into_iter().zip(&links).zip(linked) {
                    let Some(linked) = linked else { continue };
                    let record = &mut outcomes[i];
                    let ours = link.opportunity_id.as_deref().unwrap_or_default();
                    match &record.outcome {
                        // The host linked the same pair first.
                        Outcome::Created { .. } if linked == ours => {}
                        Outcome::Created { .. } => {
                            record.outcome = Outcome::Failed(format!(
                                "the running host created opportunity {linked} for this \
                                 referral while the backfill created {ours}: delete {ours} (the \
                                 host's is linked)"
                            ));
                        }
                        // Linked meanwhile: nothing adopted.
                        _ => record.outcome = Outcome::AlreadyThere { adopt: None },
                    }
                }
            }
            Err(e) => {
                let reason = format!(
                    "its opportunity exists but its link could not be saved in the state store \
                     ({e:#}); a re-run links it"
                );
                for i in at {
                    outcomes[i].outcome = Outcome::Failed(reason.clone());
                }
            }
        }
        outcomes
    }
}
