//! An opportunity changed in Dataverse → create or update its referral.
//!
//! A delivery that names the version cosell last synced is its own write's echo and ends
//! there, unread ([`crate::store::own_write`]). Otherwise the opportunity is read with its lookups expanded; if its fingerprint is the one recorded
//! at the last sync (cosell's own write-back coming back, or Dataverse firing on an update
//! that changed nothing) nothing more happens. Otherwise the CRM → PC pipeline maps it over
//! the current referral. A new referral is created (two-step when co-sell) and its id, link,
//! an audit line and the ✔ mark are written back; an existing one gets a JSON Patch of the
//! changed fields only, with `If-Match`. A 412 means Partner Center changed the referral
//! meanwhile: it is read again and the pipeline re-run, a few times.

use super::compare::{apply_ops, patch_ops};
use super::conflicts::ops_to_send;
use super::outcome::Mapped;
use super::sharing;
use super::write_intent;
use super::{Done, SyncEngine, SyncError};
use crate::domain::fingerprint;
use crate::runtime::Direction;
use crate::sinks::SinkError;
use crate::sinks::dataverse::Row;
use crate::sinks::partner_center::Referral;
use crate::store::{Link, QueuedEvent, REPLAY_ORIGIN};
use serde_json::{Map, Value, json};

const DIRECTION: Direction = Direction::CrmToPartnerCenter;
/// Reads and re-runs after a 412 before the event is retried later.
const PRECONDITION_ROUNDS: usize = 3;

impl SyncEngine {
    pub(super) async fn opportunity_changed(&self, event: &QueuedEvent) -> Result<Done, SyncError> {
        let oid = event.record_id.as_str();
        // The echo of cosell's own write, told by the delivery's row version: no read.
        if let Some(link) = self.link_by_opportunity(oid).await?
            && crate::store::own_write::announces_synced_state(event, &link, &self.volatile())
        {
            self.metrics.record_echo();
            return Ok(Done::new(
                "echo",
                "the delivery names the version cosell last synced",
            ));
        }
        let Some(row) = self.opportunities.read(oid).await? else {
            return Ok(Done::new(
                "skipped",
                format!("opportunity {oid} no longer exists"),
            ));
        };
        let (mut link, awaited) = self.opportunity_link(oid, &row.body).await?;
        // An update an earlier run wrote without saving its result (see `write_intent`).
        write_intent::settle_opportunity(&mut link, &row.body);
        let crm_hash = fingerprint::opportunity(&row.body, &self.volatile());
        // A replayed dead letter runs in full even though the record did not change.
        if link.crm_hash.as_deref() == Some(crm_hash.as_str()) && event.origin != REPLAY_ORIGIN {
            self.metrics.record_echo();
            return Ok(match &link.last_error {
                None => Done::new("echo", "the opportunity is as last synced"),
                Some(_) => Done::new(
                    "unchanged",
                    "still as when its sync was refused; waiting for a change",
                ),
            });
        }
        for _ in 0..PRECONDITION_ROUNDS {
            let mut current = match &link.referral_id {
                Some(rid) => match self.referrals.read(rid).await {
                    Ok(r) => Some(r),
                    // Retried, then dead-lettered: a referral cosell just created can be
                    // unreadable for a moment (reads can lag writes), so a 404 is not yet proof
                    // that it is gone.
                    Err(SinkError::NotFound(_)) => {
                        return Err(SyncError::transient(format!(
                            "the linked referral {rid} is not readable in Partner Center (deleted, or not yet readable)"
                        )));
                    }
                    Err(e) => return Err(e.into()),
                },
                None => None,
            };
            // A PATCH an earlier run sent without saving its result (see `write_intent`).
            if let Some(current) = &current {
                write_intent::settle_referral(&mut link, &current.body);
            }
            let Some(mut wanted) = self.map_opportunity(&row, current.as_ref()).await? else {
                return Ok(Done::new("skipped", SKIPPED));
            };
            if let Some(rid) = &awaited {
                return Err(self.opportunity_awaits_its_referral(oid, rid)?);
            }
            let mut adopted = false;
            if current.is_none()
                && let Some(since) = self.store.referral_intent(oid)?
            {
                // An earlier create of this opportunity's referral never saw its answer (lost,
                // or the host stopped): find what it made before creating anything.
                if let Some(found) = self.referrals.find_created(oid, since).await? {
                    self.referrals
                        .ensure_microsoft_half(&found.body, &wanted)
                        .await?;
                    let Some(remapped) = self.map_opportunity(&row, Some(&found)).await? else {
                        return Ok(Done::new("skipped", SKIPPED));
                    };
                    wanted = remapped;
                    current = Some(found);
                    adopted = true;
                }
            }
            if let Some(current) = &current {
                self.hold_back_undecided_sharing(&mut wanted, &current.body, &row.body, &link, oid);
            }
            // The link as the store should hold it until a PATCH's result is known.
            let on_record = link.clone();
            link.crm_hash = Some(crm_hash.clone());
            link.crm_snapshot = Some(row.body.to_string());
            let done = match current {
                None => Some(self.create_referral(&mut link, oid, &row, &wanted).await?),
                Some(current) => {
                    self.patch_referral(&mut link, &on_record, oid, &row, current, &wanted)
                        .await?
                }
            };
            match done {
                Some(done) => {
                    if adopted {
                        self.store.end_referral_intent(oid)?;
                    }
                    return Ok(done);
                }
                None => {
                    // Back to the link on record, with the PATCH's record (settled against the
                    // referral read next).
                    link = write_intent::intent(&link, &on_record);
                    tracing::info!(
                        opportunity = oid,
                        "Partner Center answered 412: reading the referral again and re-running the mapping"
                    )
                }
            }
        }
        Err(SyncError::transient(format!(
            "the referral kept changing while opportunity {oid} was being synced (412 {PRECONDITION_ROUNDS} times)"
        )))
    }

    /// Keeps the mapping from making `current` Shared unless the seller asked Microsoft for
    /// help in the CRM since the last sync (see [`super::sharing`]).
    fn hold_back_undecided_sharing(
        &self,
        wanted: &mut Value,
        current: &Value,
        opportunity: &Value,
        link: &Link,
        oid: &str,
    ) {
        let last_synced: Option<Value> = link
            .crm_snapshot
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok());
        let help = self.config.column("howcanmicrosofthelp");
        if sharing::seller_asked_for_help(opportunity, last_synced.as_ref(), &help) {
            return;
        }
        if sharing::hold_back_sharing(wanted, current) {
            tracing::info!(
                opportunity = oid,
                "not sharing the referral with Microsoft: no seller changed \"How can Microsoft help?\" since the last sync"
            );
        }
    }

    /// The referral id and link columns, where the opportunity does not hold them yet. Every
    /// successful run writes them, so a write-back the seller's edit got in the way of (a 412
    /// on cosell's note) is made good by the next one.
    fn referral_columns(&self, opportunity: &Value, rid: &str) -> Map<String, Value> {
        let link = self.config.referral_link_template.replace("{id}", rid);
        [
            (self.config.column("referralidentifier"), json!(rid)),
            (self.config.column("referrallink"), json!(link)),
        ]
        .into_iter()
        .filter(|(column, value)| &opportunity[column] != value)
        .collect()
    }

    /// Runs the CRM → PC pipeline; `None` when it skips the record.
    async fn map_opportunity(
        &self,
        row: &Row,
        current: Option<&Referral>,
    ) -> Result<Option<Value>, SyncError> {
        let mapped = self
            .map(
                DIRECTION,
                &format!(
                    "opportunity:{}",
                    row.body["opportunityid"].as_str().unwrap_or_default()
                ),
                "opportunity-updated",
                row.body.to_string(),
                current.map(|r| r.body.to_string()),
            )
            .await?;
        match mapped {
            Mapped::Skipped(reason) => {
                tracing::debug!(reason, "CRM -> PC mapping skipped the opportunity");
                Ok(None)
            }
            Mapped::Output(text) => serde_json::from_str::<Value>(&text).map(Some).map_err(|e| {
                SyncError::transient(format!("the mapping's output is not JSON: {e}"))
            }),
        }
    }

    /// The opportunity's link, from the store or from the referral id column it carries; and
    /// that referral id when no saved link names it: the opportunity was made from that
    /// referral by a sync that has not linked them yet, which its event waits for (see
    /// `super::pairing`).
    async fn opportunity_link(
        &self,
        oid: &str,
        opportunity: &Value,
    ) -> Result<(Link, Option<String>), SyncError> {
        let column = self.config.column("referralidentifier");
        let carried = opportunity[&column]
            .as_str()
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned);
        if let Some(link) = self.link_by_opportunity(oid).await? {
            // A link without its referral is a failure recorded before the pair was linked;
            // one whose create is pending belongs to a referral run that has not linked it.
            let awaited = carried
                .filter(|_| link.referral_id.is_none() || super::create_intent::is_pending(&link));
            return Ok((link, awaited));
        }
        let by_referral = match carried.as_deref() {
            Some(rid) => self.link_by_referral(rid).await?,
            None => None,
        };
        if let Some(link) = by_referral {
            return Ok((link, None));
        }
        let link = Link {
            opportunity_id: Some(oid.to_owned()),
            referral_id: carried.clone(),
            ..Link::default()
        };
        Ok((link, carried))
    }

    async fn create_referral(
        &self,
        link: &mut Link,
        oid: &str,
        row: &Row,
        wanted: &Value,
    ) -> Result<Done, SyncError> {
        // Durable before the POST: a lost answer or a crash is looked up, never re-sent blindly.
        let since = self
            .store
            .begin_referral_intent(oid, chrono::Utc::now().timestamp_millis())?;
        let created = self.referrals.create(oid, since, wanted).await?;
        let rid = created["id"]
            .as_str()
            .ok_or_else(|| SyncError::transient("Partner Center created a referral without an id"))?
            .to_owned();
        link.referral_id = Some(rid.clone());
        link.opportunity_id = Some(oid.to_owned());
        link.pc_hash = Some(fingerprint::referral(&created));
        link.pc_snapshot = Some(created.to_string());
        link.last_error = None;
        // The link is saved at once, so the referral is never created twice; but until the id
        // is written back to the opportunity, without the opportunity's fingerprint (see
        // `confirm_written_back`).
        let ids = self.referral_columns(&row.body, &rid);
        let synced = link.crm_hash.take();
        self.save_link(link).await?;
        self.store.end_referral_intent(oid)?;
        let kind = created["type"].as_str().unwrap_or("Independent");
        let line = format!("created {kind} referral {rid} in Partner Center");
        let noted = self.note_success(oid, row, Some(&line), ids).await?;
        self.confirm_written_back(link, synced, noted).await?;
        Ok(Done::new(
            "created",
            format!("referral {rid} ({kind}) from opportunity {oid}"),
        ))
    }

    /// Gives `link` back the opportunity's fingerprint `synced` (held back by
    /// [`withhold_until_written_back`]) once cosell's note wrote the referral id (`noted`).
    ///
    /// Until then the link is saved without it: a note a seller's edit got in the way of (a
    /// 412) or that failed leaves the opportunity without its referral id, and the next event
    /// must run in full and write it, even when that edit changed nothing the fingerprint
    /// covers (a seller's PATCH repeated after its answer was lost, an update that changed
    /// nothing). With the fingerprint on record that event would be taken for an echo, and
    /// the id never written back. A crash in between has the same outcome.
    async fn confirm_written_back(
        &self,
        link: &mut Link,
        synced: Option<String>,
        noted: bool,
    ) -> Result<(), SyncError> {
        if noted && let Some(synced) = synced {
            link.crm_hash = Some(synced);
            self.save_link(link).await?;
        }
        Ok(())
    }

    /// Sends the changed fields of `wanted` with `If-Match`; `None` when Partner Center
    /// answered 412 (the referral changed since it was read). `on_record` is the link as the
    /// store holds it before this run's result: what is saved, with the PATCH's record, before
    /// the PATCH is sent.
    async fn patch_referral(
        &self,
        link: &mut Link,
        on_record: &Link,
        oid: &str,
        row: &Row,
        current: Referral,
        wanted: &Value,
    ) -> Result<Option<Done>, SyncError> {
        let rid = current.body["id"].as_str().unwrap_or_default().to_owned();
        let snapshot: Option<Value> = link
            .pc_snapshot
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok());
        let wanted_ops = patch_ops(&current.body, wanted);
        let holds_wanted = wanted_ops.is_empty();
        let (ops, conflicts) = ops_to_send(
            &self.config.conflicts,
            wanted_ops,
            &current.body,
            &row.body,
            snapshot.as_ref(),
        );
        for c in &conflicts {
            self.audit(
                &format!("referral:{rid}"),
                DIRECTION,
                "conflict",
                &format!("{} changed on both sides; {} wins", c.field, c.winner),
            );
        }
        link.referral_id = Some(rid.clone());
        let had_error = link.last_error.take().is_some();
        // Partner Center changes not yet synced to the CRM keep the old fingerprint, so the
        // referral's own event still brings them over.
        let pc_had_changes =
            link.pc_hash.as_deref() != Some(fingerprint::referral(&current.body).as_str());
        if ops.is_empty() {
            if !pc_had_changes {
                link.pc_hash = Some(fingerprint::referral(&current.body));
                link.pc_snapshot = Some(current.body.to_string());
            } else if holds_wanted && let Some(mut synced) = snapshot.clone() {
                // The referral already holds everything the opportunity dictates, though the
                // last synced state does not: cosell's own PATCH whose answer was lost (or the
                // same change made in Partner Center). Those fields are in sync now; left stale
                // in the snapshot, cosell's own write would look like Microsoft's change and
                // win over the seller's next edit. Anything else Microsoft changed stays unsynced.
                let caught_up = patch_ops(&synced, wanted);
                apply_ops(&mut synced, &caught_up);
                link.pc_snapshot = Some(synced.to_string());
            }
            let ids = self.referral_columns(&row.body, &rid);
            let synced = withhold_until_written_back(link, &ids);
            self.save_link(link).await?;
            if had_error || !ids.is_empty() {
                let line = had_error.then_some("in sync with Partner Center again");
                let noted = self.note_success(oid, row, line, ids).await?;
                self.confirm_written_back(link, synced, noted).await?;
            }
            // Nothing to send: either nothing differs, or Partner Center won every field that
            // does (its conflicts are in the audit trail, its values come over in its own event).
            let detail = if holds_wanted {
                "the referral already holds the opportunity's values"
            } else {
                "Partner Center's values win every field that differs (conflicts in the audit trail)"
            };
            return Ok(Some(Done::new("unchanged", detail)));
        }
        // Recorded before it is sent: should this run end before it saves the result, the next
        // one tells cosell's own write from Microsoft's change (see `write_intent`).
        write_intent::record_patch(link, &ops, &row.body);
        self.save_write_intent(link, on_record).await?;
        let updated = match self.referrals.patch(&rid, &ops, &current.etag).await {
            Ok(updated) => updated,
            // Partner Center changed it since it was read: the caller reads it again (and
            // settles the record against what it reads).
            Err(SinkError::Changed(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        write_intent::clear(link);
        let paths: Vec<&str> = ops.iter().filter_map(|op| op["path"].as_str()).collect();
        // What is now in sync is the last synced referral plus these operations.
        let mut synced = snapshot.unwrap_or_else(|| current.body.clone());
        apply_ops(&mut synced, &ops);
        link.pc_snapshot = Some(synced.to_string());
        if !pc_had_changes {
            link.pc_hash = Some(fingerprint::referral(&updated));
        }
        let ids = self.referral_columns(&row.body, &rid);
        let synced = withhold_until_written_back(link, &ids);
        self.save_link(link).await?;
        let line = format!(
            "sent to Partner Center referral {rid}: {}",
            paths.join(", ")
        );
        let noted = self.note_success(oid, row, Some(&line), ids).await?;
        self.confirm_written_back(link, synced, noted).await?;
        Ok(Some(Done::new(
            "updated",
            format!("referral {rid}: {}", paths.join(", ")),
        )))
    }
}

/// Takes the opportunity's fingerprint off `link` while `ids` (the referral id and link
/// columns the opportunity does not hold yet) are still to be written back; answers it, for
/// [`SyncEngine::confirm_written_back`].
fn withhold_until_written_back(link: &mut Link, ids: &Map<String, Value>) -> Option<String> {
    if ids.is_empty() {
        None
    } else {
        link.crm_hash.take()
    }
}

/// Why a run ended without a referral.
const SKIPPED: &str =
    "the mapping skipped the opportunity (e.g. Sync with Partner Center is not Yes)";
