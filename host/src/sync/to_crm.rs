//! A referral changed in Partner Center → create or update its opportunity.
//!
//! The event only names the referral, so it is fetched. An unlinked referral whose
//! `externalReferenceId` names an existing opportunity is that opportunity's (cosell created
//! it); the Microsoft-targeted half of a co-sell pair is not a deal of its own; a closed
//! referral never seen before is not imported. Otherwise the PC → CRM pipeline maps it, and
//! only the columns the opportunity does not already hold, minus conflicts the CRM wins,
//! are written.

use super::compare::{at, holds};
use super::conflicts::columns_to_write;
use super::create_intent::{self, plain_columns};
use super::outcome::Mapped;
use super::write_intent;
use super::{Done, SyncEngine, SyncError};
use crate::domain::fingerprint::{self, unmarked};
use crate::runtime::Direction;
use crate::sinks::SinkError;
use crate::sinks::partner_center::targets_microsoft;
use crate::store::{Link, QueuedEvent};
use serde_json::{Map, Value};

const DIRECTION: Direction = Direction::PartnerCenterToCrm;

/// How a referral's sync ended.
enum Synced {
    /// Done, for better or worse.
    Done(Done),
    /// Its create was refused: an opportunity already carries the referral id. Its link, to
    /// sync the referral onto instead.
    AlreadyThere(Link),
}

impl Synced {
    /// The second pass of a refused create never creates, so never ends refused again; were it
    /// to, the event ends as skipped rather than loop.
    fn into_done(self) -> Done {
        match self {
            Synced::Done(done) => done,
            Synced::AlreadyThere(link) => Done::new(
                "skipped",
                format!(
                    "opportunity {} carries the referral already",
                    link.opportunity_id.unwrap_or_default()
                ),
            ),
        }
    }
}

/// The event name a Partner Center notification carried, for the mapping's context.
fn event_name(event: &QueuedEvent) -> String {
    serde_json::from_str::<Value>(&event.payload)
        .ok()
        .and_then(|v| v["EventName"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "referral-updated".into())
}

fn is_guid(text: &str) -> bool {
    text.len() == 36 && text.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

impl SyncEngine {
    pub(super) async fn referral_changed(&self, event: &QueuedEvent) -> Result<Done, SyncError> {
        let id = event.record_id.as_str();
        let referral = match self.referrals.read(id).await {
            Ok(r) => r,
            // An event can arrive before its referral is readable. A referral cosell has never
            // seen is retried (and dead-lettered if it never appears); one it has linked
            // before is gone.
            Err(SinkError::NotFound(_)) if self.store.link_by_referral(id)?.is_none() => {
                return Err(SyncError::transient(format!(
                    "referral {id} is not readable (yet)"
                )));
            }
            Err(SinkError::NotFound(_)) => {
                return Ok(Done::new(
                    "skipped",
                    format!("referral {id} no longer exists"),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let doc = referral.body;
        if targets_microsoft(&doc) {
            return Ok(Done::new(
                "skipped",
                "the Microsoft-targeted half of a co-sell referral",
            ));
        }
        let link = match self.link_by_referral(id).await? {
            Some(link) if link.opportunity_id.is_some() => link,
            // A link without its opportunity (a failure was recorded before one was made) may
            // still have one: a create whose answer was lost, or made by a run that stopped
            // before it saved the link.
            Some(link) => Link {
                id: link.id,
                last_error: link.last_error,
                ..self.adopt_opportunity(id, &doc).await?
            },
            None => self.adopt_opportunity(id, &doc).await?,
        };
        match self.sync_referral(event, &doc, link).await? {
            Synced::Done(done) => Ok(done),
            // Once at most: the adopted link names an opportunity, so its run creates none.
            Synced::AlreadyThere(adopted) => Box::pin(self.sync_referral(event, &doc, adopted))
                .await
                .map(Synced::into_done),
        }
    }

    /// Syncs referral `doc` (of `event`) onto the opportunity `link` names, or a new one.
    async fn sync_referral(
        &self,
        event: &QueuedEvent,
        doc: &Value,
        mut link: Link,
    ) -> Result<Synced, SyncError> {
        let id = event.record_id.as_str();
        // A PATCH of the other direction that ended before its result was saved: its values
        // are cosell's own, not Microsoft's change (see `write_intent`).
        write_intent::settle_referral(&mut link, doc);
        let pc_hash = fingerprint::referral(doc);
        if link.pc_hash.as_deref() == Some(pc_hash.as_str()) && link.last_error.is_none() {
            self.metrics.record_echo();
            return Ok(Synced::Done(Done::new(
                "echo",
                "the referral is as last synced",
            )));
        }
        let current = match &link.opportunity_id {
            Some(oid) => match self.opportunities.read(oid).await? {
                Some(row) => {
                    if create_intent::is_pending(&link) {
                        // An earlier run created it and died before linking it.
                        create_intent::landed(&mut link, &row.body);
                    }
                    // An update an earlier run wrote without saving its result.
                    write_intent::settle_opportunity(&mut link, &row.body);
                    Some(row)
                }
                // An earlier run's create that never landed: made again, under its id.
                None if create_intent::is_pending(&link) => None,
                None => {
                    return Ok(Synced::Done(Done::new(
                        "skipped",
                        format!("the linked opportunity {oid} was deleted"),
                    )));
                }
            },
            None => None,
        };
        if current.is_none() && doc["status"] == "Closed" {
            return Ok(Synced::Done(Done::new(
                "skipped",
                "a closed referral is not imported",
            )));
        }
        // Serialised once: the mapping's input is also the snapshot kept in the link.
        let doc_text = doc.to_string();
        let mapped = self
            .map(
                DIRECTION,
                &format!("referral:{id}"),
                &event_name(event),
                doc_text.clone(),
                current.as_ref().map(|r| r.body.to_string()),
            )
            .await?;
        let output = match mapped {
            Mapped::Skipped(reason) => return Ok(Synced::Done(Done::new("skipped", reason))),
            Mapped::Output(text) => match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(map)) => map,
                _ => {
                    return Err(SyncError::transient(
                        "the mapping's output is not a JSON object of columns",
                    ));
                }
            },
        };
        // The link as the store should hold it until an update's result is known.
        let on_record = link.clone();
        link.referral_id = Some(id.to_owned());
        link.pc_hash = Some(pc_hash);
        link.pc_snapshot = Some(doc_text);
        match current {
            None => self.create_opportunity(link, output).await,
            Some(row) => self
                .update_opportunity(link, &on_record, output, doc, row)
                .await
                .map(Synced::Done),
        }
    }

    /// The link of a referral cosell created from an opportunity (found through
    /// `externalReferenceId`), of an opportunity created from this referral before a crash
    /// (found through its Referral Identifier column), or a new link.
    async fn adopt_opportunity(&self, referral_id: &str, doc: &Value) -> Result<Link, SyncError> {
        let fresh = Link {
            referral_id: Some(referral_id.to_owned()),
            ..Link::default()
        };
        let Some(oid) = doc["externalReferenceId"].as_str().filter(|s| is_guid(s)) else {
            // An opportunity created from this referral by a run that stopped before it saved
            // the link carries the referral id: adopt it instead of creating a second one.
            // Where that id is an alternate key, Dataverse refuses the second one itself, and
            // the create looks it up only then (`adopt_refused_create`).
            let column = self.config.column("referralidentifier");
            if self.opportunities.referral_id_is_key(&column).await {
                return Ok(fresh);
            }
            let found = self
                .opportunities
                .find_by_referral_id(&column, referral_id)
                .await?;
            return Ok(Link {
                opportunity_id: found,
                ..fresh
            });
        };
        // Before the link: the run creating this referral saves it before it ends the intent.
        if let Some(wait) = self.referral_awaits_its_opportunity(referral_id, oid)? {
            return Err(wait);
        }
        if let Some(link) = self.link_by_opportunity(oid).await? {
            return match &link.referral_id {
                Some(other) if other != referral_id => Err(SyncError::Rejected(format!(
                    "referral {referral_id} names opportunity {oid}, which is linked to referral {other}"
                ))),
                _ => Ok(link),
            };
        }
        Ok(match self.opportunities.read(oid).await? {
            Some(_) => Link {
                opportunity_id: Some(oid.to_owned()),
                ..fresh
            },
            None => fresh,
        })
    }

    async fn create_opportunity(
        &self,
        mut link: Link,
        mut columns: Map<String, Value>,
    ) -> Result<Synced, SyncError> {
        self.mark_name_synced(&mut columns);
        let oid = match (columns.get("opportunityid"), &link.opportunity_id) {
            (Some(Value::String(chosen)), _) => chosen.clone(),
            (_, Some(pending)) if create_intent::is_pending(&link) => pending.clone(),
            _ => crate::domain::ids::new_uuid(),
        };
        columns.insert("opportunityid".into(), Value::String(oid.clone()));
        let written = columns.clone();
        // Recorded before the create, so a run after a crash knows what this one wrote.
        link.id = Some(
            self.save_link(&create_intent::before_create(&link, &oid, &written))
                .await?,
        );
        self.mark_written(&oid);
        let oid = match self.opportunities.create(columns).await {
            Ok(oid) => oid,
            Err(SinkError::Changed(reason)) => {
                return self.adopt_refused_create(link, reason).await;
            }
            Err(e) => return Err(e.into()),
        };
        let row = self.opportunities.read(&oid).await?;
        link.opportunity_id = Some(oid.clone());
        link.last_error = None;
        link.crm_hash = None;
        if let Some(row) = &row {
            let changed = changed_since_written(&row.body, &written);
            if changed.is_empty() {
                link.crm_hash = Some(fingerprint::opportunity(&row.body, &self.volatile()));
                link.crm_snapshot = Some(row.body.to_string());
            } else {
                // A seller edited the new opportunity between cosell's create and its read:
                // what cosell wrote is what is in sync, and without a fingerprint on record
                // the seller's edit is processed (and sent on) instead of taken as synced.
                tracing::debug!(opportunity = %oid, ?changed, "changed between create and read-back");
                link.crm_snapshot =
                    Some(create_intent::as_written(&row.body, &written).to_string());
            }
        }
        self.save_link_at_settle(&link).await?;
        let rid = link.referral_id.unwrap_or_default();
        Ok(Synced::Done(Done::new(
            "created",
            format!("opportunity {oid} from referral {rid}"),
        )))
    }

    /// A create Dataverse refused with 412: where the referral id is an alternate key, an
    /// opportunity carrying it exists (made by a run that lost its link, or by a backfill).
    /// Its link, unsynced, in place of the create, for this run to update it with the
    /// referral's values (in this run, which holds the referral's key, so the opportunity's own
    /// event cannot take its values for the seller's first). Any other 412 (nothing carries the
    /// referral id) is the create's failure, retried.
    async fn adopt_refused_create(&self, link: Link, reason: String) -> Result<Synced, SyncError> {
        let rid = link.referral_id.clone().unwrap_or_default();
        let column = self.config.column("referralidentifier");
        let Some(found) = self
            .opportunities
            .find_by_referral_id(&column, &rid)
            .await?
        else {
            return Err(SyncError::transient(reason));
        };
        tracing::debug!(
            referral = %rid,
            opportunity = %found,
            "Dataverse refused a second opportunity for the referral; the one carrying it is linked"
        );
        Ok(Synced::AlreadyThere(Link {
            id: link.id,
            referral_id: link.referral_id,
            opportunity_id: Some(found),
            ..Link::default()
        }))
    }

    /// Writes the columns of `output` that Partner Center changed to the opportunity. `on_record`
    /// is the link as the store holds it before this run's result: what is saved, with the
    /// update's record, before the update is sent.
    async fn update_opportunity(
        &self,
        mut link: Link,
        on_record: &Link,
        output: Map<String, Value>,
        referral: &Value,
        row: crate::sinks::dataverse::Row,
    ) -> Result<Done, SyncError> {
        let oid = link.opportunity_id.clone().unwrap_or_default();
        let snapshot: Option<Value> = link
            .crm_snapshot
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok());
        // Columns the opportunity already holds as the mapping wants them, although the last
        // synced state differs: cosell's own write whose answer was lost (or the seller made
        // the same change). They are in sync now, whatever else happens to this run.
        let caught_up: Vec<String> = output
            .iter()
            .filter(|(column, wanted)| {
                !column.contains('@')
                    && row.body.get(column.as_str()) == Some(*wanted)
                    && snapshot.as_ref().and_then(|s| s.get(column.as_str())) != Some(*wanted)
            })
            .map(|(column, _)| column.clone())
            .collect();
        let marks = self.marks();
        let (mut write, conflicts) = columns_to_write(
            &self.config.conflicts,
            output,
            referral,
            &row.body,
            snapshot.as_ref(),
            |held, wanted| unmarked(held, &marks) == unmarked(wanted, &marks),
        );
        // The mapping's audit line describes the change; alone it is no change.
        if write.len() == 1 && write.contains_key(self.audit_column()) {
            write.clear();
        }
        for c in &conflicts {
            self.audit(
                &format!(
                    "referral:{}",
                    link.referral_id.as_deref().unwrap_or_default()
                ),
                DIRECTION,
                "conflict",
                &format!("{} changed on both sides; {} wins", c.field, c.winner),
            );
        }
        let changed: Vec<String> = write
            .keys()
            .filter(|k| *k != self.audit_column())
            .cloned()
            .collect();
        self.mark_name_synced(&mut write);
        let had_error = link.last_error.take().is_some();
        // The state read back after the write counts as synced only if the seller had no
        // unsynced changes before (the fingerprint on record) and made none meanwhile
        // (everything but the written columns is as it was). Otherwise the old fingerprint and
        // snapshot stay, so the seller's change is still processed and brings itself over.
        let volatile = self.volatile();
        let written: Vec<&str> = changed
            .iter()
            .map(String::as_str)
            .chain(["name", "statecode", "statuscode", self.audit_column()])
            .collect();
        let synced_before = link.crm_hash.as_deref()
            == Some(fingerprint::opportunity(&row.body, &volatile).as_str());
        let others_before = fingerprint::opportunity_except(&row.body, &volatile, &written);
        let first_snapshot = link.crm_snapshot.is_none().then(|| row.body.to_string());
        let after = if write.is_empty() {
            if had_error {
                self.note_success(
                    &oid,
                    &row,
                    Some("in sync with Partner Center again"),
                    Map::new(),
                )
                .await?;
            }
            row
        } else {
            // Recorded before it is sent: should this run end before it saves the result, the
            // next one tells cosell's own write from the seller's change (see `write_intent`).
            write_intent::record_update(&mut link, &write, referral);
            self.save_write_intent(&mut link, on_record).await?;
            // The write's answer is the state after it; only a closing or a lookup needs a read.
            self.mark_written(&oid);
            let written = self
                .opportunities
                .update(&oid, write, &row.body, row.etag.as_deref())
                .await?;
            write_intent::clear(&mut link);
            match written {
                Some(after) => after,
                None => self.opportunities.read(&oid).await?.unwrap_or(row),
            }
        };
        let untouched =
            others_before == fingerprint::opportunity_except(&after.body, &volatile, &written);
        if synced_before && untouched {
            link.crm_hash = Some(fingerprint::opportunity(&after.body, &volatile));
            link.crm_snapshot = Some(after.body.to_string());
        } else if let Some(base) = link.crm_snapshot.clone().or(first_snapshot) {
            // The seller has changes not synced yet, so the fingerprint stays and they are
            // still sent on; but the columns just written are in sync now. Left at their old
            // values in the snapshot, cosell's own write would look like the seller's change
            // next time: a false conflict that could keep Microsoft's next value out, and
            // send the old one back to Partner Center.
            let mut snapshot: Value = serde_json::from_str(&base).unwrap_or_default();
            if let Value::Object(snapshot) = &mut snapshot {
                for column in changed.iter().chain(&caught_up) {
                    for key in [column.clone(), format!("_{column}_value")] {
                        if let Some(value) = after.body.get(&key) {
                            snapshot.insert(key, value.clone());
                        }
                    }
                }
            }
            link.crm_snapshot = Some(snapshot.to_string());
        }
        self.save_link_at_settle(&link).await?;
        if changed.is_empty() {
            return Ok(Done::new(
                "unchanged",
                "the opportunity already holds the referral's values",
            ));
        }
        Ok(Done::new(
            "updated",
            format!("opportunity {oid}: {}", changed.join(", ")),
        ))
    }
}

/// What shows that someone else wrote to the opportunity between cosell's create and `row`,
/// its read-back: a plain column cosell wrote that no longer holds its value, or a
/// modification stamp later than the creation stamp (for columns cosell did not write).
fn changed_since_written<'a>(row: &Value, written: &'a Map<String, Value>) -> Vec<&'a str> {
    let mut changed: Vec<&str> = plain_columns(written)
        .filter(|(column, value)| !holds(at(row, &format!("/{column}")), value))
        .map(|(column, _)| column.as_str())
        .collect();
    if let (Some(created), Some(modified)) = (row["createdon"].as_str(), row["modifiedon"].as_str())
        && created != modified
    {
        changed.push("modifiedon");
    }
    changed
}
