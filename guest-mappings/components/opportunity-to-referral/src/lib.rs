//! The default `opportunity-to-referral` mapping step: a thin component wrapper around
//! `mapping_rules::opportunity_to_referral`. All mapping logic lives in `mapping-rules`.

use guest_glue::{Context, Mapping, MappingError};

struct OpportunityToReferral;

impl Mapping for OpportunityToReferral {
    fn map(ctx: Context, input: String, current: Option<String>) -> Result<String, MappingError> {
        guest_glue::rules::run(mapping_rules::opportunity_to_referral, ctx, input, current)
    }
}

guest_glue::export_mapping!(OpportunityToReferral);
