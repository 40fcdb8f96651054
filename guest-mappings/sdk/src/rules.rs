//! Run the default mapping (the `mapping-rules` library) from a step: the default components
//! are this plus nothing, and a `--from-default` project calls [`apply`] and then changes the
//! output. Conversions between the WIT types and the library's own types live here.

use crate::{Context, Direction, MappingError};

/// The signature shared by `mapping_rules::referral_to_opportunity` and
/// `mapping_rules::opportunity_to_referral`.
pub type RuleFn = fn(
    &mapping_rules::Context,
    &str,
    Option<&str>,
    &dyn mapping_rules::Config,
) -> Result<String, mapping_rules::MappingError>;

/// `mapping_rules::Config` backed by the `config` import.
///
/// It asks the host for the list of keys once, and for a value only when the key is set: the
/// default mapping looks up some 25 keys per record, and an operator sets few or none, so this
/// saves a host call per key that is not set (the configuration cannot change during a call).
pub struct HostConfig {
    /// The keys the operator set, sorted (as the `keys` import returns them).
    keys: Vec<String>,
}

impl HostConfig {
    /// Reads the list of keys from the host.
    pub fn new() -> Self {
        Self {
            keys: crate::config::keys(),
        }
    }
}

impl Default for HostConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl mapping_rules::Config for HostConfig {
    fn get(&self, key: &str) -> Option<String> {
        let is_set = self.keys.binary_search_by(|k| k.as_str().cmp(key)).is_ok();
        if is_set {
            crate::config::get(key)
        } else {
            None
        }
    }
}

impl From<Context> for mapping_rules::Context {
    fn from(ctx: Context) -> Self {
        mapping_rules::Context {
            direction: match ctx.direction {
                Direction::PartnerCenterToCrm => mapping_rules::Direction::PartnerCenterToCrm,
                Direction::CrmToPartnerCenter => mapping_rules::Direction::CrmToPartnerCenter,
            },
            event: ctx.event,
            tenant: ctx.tenant,
            mapping_name: ctx.mapping_name,
            mapping_version: ctx.mapping_version,
            timestamp: ctx.timestamp,
        }
    }
}

impl From<mapping_rules::MappingError> for MappingError {
    fn from(error: mapping_rules::MappingError) -> Self {
        match error {
            mapping_rules::MappingError::Reject(why) => MappingError::Reject(why),
            mapping_rules::MappingError::Skip(why) => MappingError::Skip(why),
            mapping_rules::MappingError::Fail(why) => MappingError::Fail(why),
        }
    }
}

/// Runs a `mapping-rules` function (e.g. `mapping_rules::referral_to_opportunity`) on a call's
/// arguments with the step's config, and returns its output document as JSON text.
pub fn apply(
    rule: RuleFn,
    ctx: &Context,
    input: &str,
    current: Option<&str>,
) -> Result<String, MappingError> {
    let ctx = mapping_rules::Context::from(ctx.clone());
    rule(&ctx, input, current, &HostConfig::new()).map_err(MappingError::from)
}

/// [`apply`] on the raw arguments of [`Mapping::map`](crate::Mapping::map), without copying
/// them: what the default components run.
pub fn run(
    rule: RuleFn,
    ctx: Context,
    input: String,
    current: Option<String>,
) -> Result<String, MappingError> {
    let ctx = mapping_rules::Context::from(ctx);
    rule(&ctx, &input, current.as_deref(), &HostConfig::new()).map_err(MappingError::from)
}
