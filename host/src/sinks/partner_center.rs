//! Writing referrals to Partner Center.
//!
//! A co-sell (Shared) referral takes two creates: the partner's referral, then a "connected"
//! one with the same `engagementId` targeting Microsoft (`{type: BusinessProfileLocation, id:
//! msft}`). An Independent referral is one create.
//!
//! Partner Center takes no client-chosen id and documents no filter on `externalReferenceId`,
//! so a create whose answer is lost cannot simply be sent again (that makes a duplicate) nor
//! found with a query. Instead the caller records an intent in its own state before the POST
//! ([`crate::store::LinkStore::begin_referral_intent`]), every referral cosell creates carries
//! its opportunity's id in `externalReferenceId` (the documented place for the CRM's own id),
//! and after a lost answer (or a crash with the intent still open) [`ReferralSink::find_created`]
//! lists the newest referrals with the documented `$orderby=createdDateTime desc`, stopping
//! once older than the intent, and matches that id on the client. The Microsoft half is found
//! with the documented `engagementId` filter.

use crate::connections::partner_center::{PartnerCenterClient, PartnerCenterError, Result};
use crate::sinks::SinkError;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// A referral as Partner Center has it, with the eTag to send back: what [`ReferralSink::read`]
/// answers (the engine names it from here, not from the client).
pub use crate::connections::partner_center::Referral;

/// How much older than the intent a referral's `createdDateTime` may look and still be the
/// one that intent created: the two clocks are not the same.
const CLOCK_SKEW_MS: i64 = 10 * 60 * 1000;

/// Creates sent under one call before giving the event back to the queue (each one only
/// after the lookup found nothing).
const CREATE_ATTEMPTS: usize = 3;

/// Page size of the lookup's list.
const LOOKUP_PAGE: u32 = 100;

/// Whether a referral is the Microsoft-targeted half of a co-sell pair.
pub fn targets_microsoft(referral: &Value) -> bool {
    referral["target"].as_array().is_some_and(|targets| {
        targets
            .iter()
            .any(|t| t["type"] == "BusinessProfileLocation" && t["id"] == "msft")
    })
}

/// Creates and updates referrals.
#[derive(Debug, Clone)]
pub struct ReferralSink {
    client: PartnerCenterClient,
}

impl ReferralSink {
    /// A writer through `client`.
    pub fn new(client: PartnerCenterClient) -> Self {
        Self { client }
    }

    /// The referral `id` as Partner Center has it now, with its eTag.
    pub async fn read(&self, id: &str) -> Result<Referral, SinkError> {
        Ok(self.client.get_referral(id).await?)
    }

    /// Whether Partner Center answers: one referral listed (any answer, even a refusal, is
    /// an answer; only a failure to get one is an error).
    pub async fn probe(&self) -> Result<(), SinkError> {
        self.client
            .list_referrals_while(None, None, Some(1), |_| false)
            .await?;
        Ok(())
    }

    /// The partner's referral created for `opportunity_id` since `since_ms` (the intent's
    /// time, milliseconds since the epoch), if Partner Center has one: the newest referrals are
    /// listed (`createdDateTime desc`) until one is older than the intent.
    pub async fn find_created(
        &self,
        opportunity_id: &str,
        since_ms: i64,
    ) -> Result<Option<Referral>, SinkError> {
        Ok(self.created_since(opportunity_id, since_ms).await?)
    }

    /// [`find_created`](Self::find_created) in the client's terms, for the creates that look
    /// up after a lost answer.
    async fn created_since(&self, opportunity_id: &str, since_ms: i64) -> Result<Option<Referral>> {
        let cutoff = since_ms - CLOCK_SKEW_MS;
        let ours = |r: &Value| {
            r["externalReferenceId"].as_str() == Some(opportunity_id) && !targets_microsoft(r)
        };
        let listed = self
            .client
            .list_referrals_while(
                None,
                Some("createdDateTime desc"),
                Some(LOOKUP_PAGE),
                |page| {
                    !page.iter().any(ours)
                        && page.last().is_some_and(|r| !created_before(r, cutoff))
                },
            )
            .await?;
        match listed
            .iter()
            .find(|r| ours(r) && !created_before(r, cutoff))
        {
            Some(r) => {
                let id = r["id"].as_str().unwrap_or_default().to_owned();
                Ok(Some(self.client.get_referral(&id).await?))
            }
            None => Ok(None),
        }
    }

    /// Creates `referral` for `opportunity_id` under an intent begun at `since_ms`; for a
    /// Shared one also its Microsoft-targeted half. A create whose answer is lost is looked up
    /// before it is sent again. Answers the partner's referral as created (or found).
    pub async fn create(
        &self,
        opportunity_id: &str,
        since_ms: i64,
        referral: &Value,
    ) -> Result<Value, SinkError> {
        Ok(self.create_pair(opportunity_id, since_ms, referral).await?)
    }

    /// [`create`](Self::create) in the client's terms: a lost answer is told apart from a
    /// refusal until the end.
    async fn create_pair(
        &self,
        opportunity_id: &str,
        since_ms: i64,
        referral: &Value,
    ) -> Result<Value> {
        let mut referral = referral.clone();
        // The marker the lookup matches: cosell's, whatever the mapping wrote there.
        referral["externalReferenceId"] = json!(opportunity_id);
        let (created, found) = self
            .create_or_find(&referral, || async {
                Ok(self
                    .created_since(opportunity_id, since_ms)
                    .await?
                    .map(|r| r.body))
            })
            .await?;
        if referral["type"] == "Shared" {
            match found {
                // A referral that was there already may have its half too.
                true => self.finish_microsoft_half(&created, &referral).await?,
                false => {
                    let engagement = created["engagementId"].as_str().ok_or_else(|| {
                        PartnerCenterError::InvalidResponse(
                            "a Shared referral was created without an engagementId".into(),
                        )
                    })?;
                    self.create_microsoft_half(&referral, engagement).await?
                }
            }
        }
        Ok(created)
    }

    /// The second step of a co-sell: `referral` again, in the same engagement, for Microsoft.
    /// A create whose answer is lost is looked up in the engagement before it is sent again.
    async fn create_microsoft_half(&self, referral: &Value, engagement: &str) -> Result<()> {
        let mut connected = referral.clone();
        connected["engagementId"] = json!(engagement);
        connected["target"] = json!([{"type": "BusinessProfileLocation", "id": "msft"}]);
        self.create_or_find(&connected, || async {
            Ok(self
                .microsoft_half_exists(engagement)
                .await?
                .then_some(Value::Null))
        })
        .await
        .map(drop)
    }

    /// POSTs `body`, up to [`CREATE_ATTEMPTS`] times; after a lost answer `find` says whether
    /// the create landed after all (its referral) before the POST is sent again. Answers the
    /// referral and whether it was found rather than created.
    async fn create_or_find<F, Fut>(&self, body: &Value, find: F) -> Result<(Value, bool)>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Option<Value>>>,
    {
        let mut lost = String::new();
        for _ in 0..CREATE_ATTEMPTS {
            match self.client.create_referral(body).await {
                Ok(created) => return Ok((created, false)),
                Err(PartnerCenterError::AnswerLost(why)) => {
                    tracing::warn!(
                        why,
                        "the answer to a referral create was lost; looking it up"
                    );
                    if let Some(found) = find().await? {
                        tracing::info!(referral = %found["id"], "found the referral a lost create made");
                        return Ok((found, true));
                    }
                    lost = why;
                }
                Err(e) => return Err(e),
            }
        }
        Err(PartnerCenterError::AnswerLost(lost))
    }

    /// Whether the engagement has its Microsoft-targeted referral (documented filter).
    async fn microsoft_half_exists(&self, engagement: &str) -> Result<bool> {
        let filter = format!(
            "engagementId eq {}",
            crate::connections::odata::quote(engagement)
        );
        let siblings = self.client.list_referrals(Some(&filter), None).await?;
        Ok(siblings.iter().any(targets_microsoft))
    }

    /// Creates the Microsoft-targeted half of the Shared referral `existing` when it is
    /// missing: a create interrupted between its two steps (a crash, Partner Center down)
    /// finishes here. `wanted` is the mapped referral the half is made from.
    pub async fn ensure_microsoft_half(
        &self,
        existing: &Value,
        wanted: &Value,
    ) -> Result<(), SinkError> {
        Ok(self.finish_microsoft_half(existing, wanted).await?)
    }

    /// [`ensure_microsoft_half`](Self::ensure_microsoft_half) in the client's terms.
    async fn finish_microsoft_half(&self, existing: &Value, wanted: &Value) -> Result<()> {
        let Some(engagement) = existing["engagementId"].as_str() else {
            return Ok(());
        };
        if existing["type"] != "Shared" || self.microsoft_half_exists(engagement).await? {
            return Ok(());
        }
        tracing::info!(
            engagement,
            "creating the Microsoft half of a co-sell referral"
        );
        self.create_microsoft_half(wanted, engagement).await
    }

    /// Sends `ops` with `If-Match: etag`; answers the referral as it now is.
    /// A 412 (the referral changed since `etag` was read) is [`SinkError::Changed`].
    pub async fn patch(&self, id: &str, ops: &[Value], etag: &str) -> Result<Value, SinkError> {
        Ok(self.client.patch_referral(id, ops, Some(etag)).await?)
    }
}

/// Whether `referral` was created before `cutoff_ms`; a missing or unreadable time is not.
fn created_before(referral: &Value, cutoff_ms: i64) -> bool {
    referral["createdDateTime"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| t.with_timezone(&Utc).timestamp_millis() < cutoff_ms)
}
