//! Test guest `renamed-referral-to-opportunity`: the default `referral-to-opportunity` step
//! (the same `mapping_rules` call) with exactly one change: the opportunity's `name` is
//! prefixed with `[v2] `. It stands for a candidate version that changes one field, which a
//! shadow deploy must report as `different` at `/name` (and a replay must show), while the
//! records keep being written as the active version maps them (`tests/shadow.rs`).

use cosell_mapping::{Context, Mapping, MappingError};

struct RenamedReferralToOpportunity;

impl Mapping for RenamedReferralToOpportunity {
    fn map(ctx: Context, input: String, current: Option<String>) -> Result<String, MappingError> {
        let output =
            cosell_mapping::rules::run(mapping_rules::referral_to_opportunity, ctx, input, current)?;
        let mut doc: serde_json::Value = serde_json::from_str(&output)
            .map_err(|err| MappingError::Fail(format!("the default mapping's output: {err}")))?;
        if let Some(name) = doc.get("name").and_then(|n| n.as_str()) {
            doc["name"] = serde_json::Value::String(format!("[v2] {name}"));
        }
        Ok(doc.to_string())
    }
}

cosell_mapping::export_mapping!(RenamedReferralToOpportunity);
