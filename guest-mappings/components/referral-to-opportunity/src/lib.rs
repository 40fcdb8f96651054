//! The default `referral-to-opportunity` mapping step: a thin component wrapper around
//! `mapping_rules::referral_to_opportunity`. All mapping logic lives in `mapping-rules`.

use cosell_mapping::{Context, Mapping, MappingError};

struct ReferralToOpportunity;

impl Mapping for ReferralToOpportunity {
    fn map(ctx: Context, input: String, current: Option<String>) -> Result<String, MappingError> {
        cosell_mapping::rules::run(mapping_rules::referral_to_opportunity, ctx, input, current)
    }
}

cosell_mapping::export_mapping!(ReferralToOpportunity);
