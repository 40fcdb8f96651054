//! The default `opportunity-to-referral` mapping step: a thin component wrapper around
//! `mapping_rules::opportunity_to_referral`. All mapping logic lives in `mapping-rules`.

use cosell_mapping::{Context, Mapping, MappingError};

struct OpportunityToReferral;

impl Mapping for OpportunityToReferral {
    fn map(ctx: Context, input: String, current: Option<String>) -> Result<String, MappingError> {
        cosell_mapping::rules::run(mapping_rules::opportunity_to_referral, ctx, input, current)
    }
}

cosell_mapping::export_mapping!(OpportunityToReferral);
