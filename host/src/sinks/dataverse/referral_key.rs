//! Whether cosell's Referral Identifier column is an alternate key Dataverse enforces on
//! opportunity.
//!
//! Where it is, Dataverse itself refuses a second opportunity carrying a referral's id (412,
//! "A record with matching key values already exists."). So a referral's first create needs
//! no query beforehand for an opportunity that already carries its id (one made by a run that
//! lost its link, or by a backfill): the create is refused, and only then is that opportunity
//! looked up and adopted. Where it is not (an environment `cosell dataverse provision` has not
//! prepared, or a key whose index is not built yet), every such create is preceded by the
//! query, as before.
//!
//! The answer is read from the Metadata API and kept for [`RECHECK`]: a key added later is used
//! from then on, and a key removed is noticed as soon. A failed read counts as no key (the
//! query is always correct, only one request dearer) until the next check.

use crate::connections::dataverse::DataverseClient;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an answer is kept.
pub const RECHECK: Duration = Duration::from_secs(300);

/// The last answer: for which column, whether it is a key, and when it was read.
#[derive(Debug, Default)]
pub(super) struct ReferralKey {
    known: Mutex<Option<(String, bool, Instant)>>,
}

impl ReferralKey {
    /// Whether `column` alone is an active alternate key of opportunity.
    pub(super) async fn is_key(&self, client: &DataverseClient, column: &str) -> bool {
        if let Some((known_column, is_key, at)) = &*self.lock()
            && known_column == column
            && at.elapsed() < RECHECK
        {
            return *is_key;
        }
        let is_key = match client.active_alternate_keys("opportunity").await {
            Ok(keys) => keys
                .iter()
                .any(|key| key.len() == 1 && key[0].eq_ignore_ascii_case(column)),
            Err(err) => {
                tracing::warn!(
                    "reading the alternate keys of opportunity: {err}; until the next check, each \
                     new referral's opportunity is looked up by {column} before it is created"
                );
                false
            }
        };
        tracing::debug!(column, is_key, "the referral identifier's alternate key");
        *self.lock() = Some((column.to_owned(), is_key, Instant::now()));
        is_key
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(String, bool, Instant)>> {
        // The value is replaced whole, so a panic elsewhere cannot leave it half written.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::super::OpportunitySink;
    use super::super::test_client::client;
    use crate::sinks::SinkError;
    use crate::store::InProcessCustomerLocks;
    use cosell_emulators::dataverse::{Dataverse, DataverseConfig};
    use serde_json::{Map, Value, json};
    use std::sync::Arc;

    const COLUMN: &str = "cosell_referralidentifier";

    #[tokio::test]
    async fn the_key_is_used_once_provisioned_and_makes_dataverse_refuse_a_second_opportunity() {
        let dv = Dataverse::new(DataverseConfig::default());
        let server = dv.serve().await.expect("the Dataverse emulator starts");
        let sink = || {
            OpportunitySink::new(
                client(&dv, &server),
                Arc::new(InProcessCustomerLocks::default()),
            )
        };
        let unprovisioned = sink();
        assert!(
            !unprovisioned.referral_id_is_key(COLUMN).await,
            "a fresh environment has no key"
        );
        dv.provision_cosell();
        assert!(
            !unprovisioned.referral_id_is_key(COLUMN).await,
            "an answer is kept until it is checked again"
        );
        let provisioned = sink();
        assert!(provisioned.referral_id_is_key(COLUMN).await);
        assert!(
            !provisioned.referral_id_is_key("cosell_referrallink").await,
            "another column is no key"
        );

        // What the key stands in for: the second opportunity for one referral is refused.
        let columns = |name: &str| -> Map<String, Value> {
            match json!({"name": name, COLUMN: "referral-1"}) {
                Value::Object(columns) => columns,
                _ => unreachable!(),
            }
        };
        provisioned.create(columns("First")).await.unwrap();
        let second = provisioned.create(columns("Second")).await;
        assert!(
            matches!(second, Err(SinkError::Changed(_))),
            "refused with 412: {second:?}"
        );
    }
}
