//! Writing referrals to Partner Center.
//!
//! A co-sell (Shared) referral takes two creates (reference §1.9): the partner's referral,
//! then a "connected" one with the same `engagementId` targeting Microsoft
//! (`{type: BusinessProfileLocation, id: msft}`). An Independent referral is one create.
//! Before creating, the referral naming the opportunity in `externalReferenceId` is looked
//! up, so a create retried after a crash adopts the referral instead of making a second one.

use crate::connections::partner_center::{PartnerCenterClient, Referral, Result};
use serde_json::{Value, json};

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
pub struct ReferralWriter {
    client: PartnerCenterClient,
}

impl ReferralWriter {
    pub fn new(client: PartnerCenterClient) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &PartnerCenterClient {
        &self.client
    }

    /// The partner's referral whose `externalReferenceId` is `opportunity_id`, if one exists.
    pub async fn find_for_opportunity(&self, opportunity_id: &str) -> Result<Option<Referral>> {
        let filter = format!(
            "externalReferenceId eq '{}'",
            opportunity_id.replace('\'', "''")
        );
        let found = self.client.list_referrals(Some(&filter), None).await?;
        match found.into_iter().find(|r| !targets_microsoft(r)) {
            Some(r) => {
                let id = r["id"].as_str().unwrap_or_default().to_owned();
                Ok(Some(self.client.get_referral(&id).await?))
            }
            None => Ok(None),
        }
    }

    /// Creates `referral`; for a Shared one also its Microsoft-targeted half. Answers the
    /// partner's referral as created.
    pub async fn create(&self, referral: &Value) -> Result<Value> {
        let created = self.client.create_referral(referral).await?;
        if referral["type"] == "Shared" {
            self.create_microsoft_half(referral, &created["engagementId"])
                .await?;
        }
        Ok(created)
    }

    /// The second step of a co-sell: `referral` again, in the same engagement, for Microsoft.
    async fn create_microsoft_half(
        &self,
        referral: &Value,
        engagement_id: &Value,
    ) -> Result<Value> {
        let mut connected = referral.clone();
        connected["engagementId"] = engagement_id.clone();
        connected["target"] = json!([{"type": "BusinessProfileLocation", "id": "msft"}]);
        self.client.create_referral(&connected).await
    }

    /// Creates the Microsoft-targeted half of the Shared referral `existing` when it is
    /// missing: a create interrupted between its two steps (a crash, Partner Center down)
    /// finishes here. `wanted` is the mapped referral the half is made from.
    pub async fn ensure_microsoft_half(&self, existing: &Value, wanted: &Value) -> Result<()> {
        let Some(engagement) = existing["engagementId"].as_str() else {
            return Ok(());
        };
        if existing["type"] != "Shared" {
            return Ok(());
        }
        let filter = format!("engagementId eq '{}'", engagement.replace('\'', "''"));
        let siblings = self.client.list_referrals(Some(&filter), None).await?;
        if !siblings.iter().any(targets_microsoft) {
            tracing::info!(
                engagement,
                "creating the missing Microsoft half of a co-sell referral"
            );
            self.create_microsoft_half(wanted, &existing["engagementId"])
                .await?;
        }
        Ok(())
    }

    /// Sends `ops` with `If-Match: etag`; answers the referral as it now is.
    pub async fn patch(&self, id: &str, ops: &[Value], etag: &str) -> Result<Value> {
        self.client.patch_referral(id, ops, Some(etag)).await
    }
}
