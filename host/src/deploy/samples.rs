//! The sample record each new version runs on before activation.
//!
//! A step may name its own sample in the configuration; otherwise the built-in sample of its
//! direction is used: a realistic referral or opportunity from `guest-mappings/fixtures` for the
//! first step of a pipeline, and the default mapping's output for that record for a later step
//! (the documented way to customise is a step after the default mapping, which receives the
//! default's output, not the record itself).

use crate::config::StepSpec;
use crate::runtime::Direction;
use anyhow::{Context as _, Result};

const SAMPLE_REFERRAL: &str = include_str!(
    "../../../guest-mappings/fixtures/partner-center-to-crm/referral-sample/input.json"
);
const SAMPLE_OPPORTUNITY: &str = include_str!(
    "../../../guest-mappings/fixtures/crm-to-partner-center/opportunity-sample/input.json"
);
/// The default mapping's outputs for the two samples (the fixtures' expected outputs).
const SAMPLE_REFERRAL_MAPPED: &str = include_str!(
    "../../../guest-mappings/fixtures/partner-center-to-crm/referral-sample/expected.json"
);
const SAMPLE_OPPORTUNITY_MAPPED: &str = include_str!(
    "../../../guest-mappings/fixtures/crm-to-partner-center/opportunity-sample/expected.json"
);

/// The built-in sample input of a direction.
pub fn builtin_sample(direction: Direction) -> &'static str {
    match direction {
        Direction::PartnerCenterToCrm => SAMPLE_REFERRAL,
        Direction::CrmToPartnerCenter => SAMPLE_OPPORTUNITY,
    }
}

/// The built-in sample input of a step after the first of a direction's pipeline: the default
/// mapping's output for [`builtin_sample`].
pub fn builtin_later_sample(direction: Direction) -> &'static str {
    match direction {
        Direction::PartnerCenterToCrm => SAMPLE_REFERRAL_MAPPED,
        Direction::CrmToPartnerCenter => SAMPLE_OPPORTUNITY_MAPPED,
    }
}

/// The sample for a configured step at `position` (0-based) of its pipeline: its own file, or
/// the built-in one for that position.
pub fn sample_for(spec: &StepSpec, direction: Direction, position: usize) -> Result<String> {
    match &spec.sample {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!(
                    "reading the sample of step `{}` from {}",
                    spec.step,
                    path.display()
                )
            })?;
            serde_json::from_str::<serde::de::IgnoredAny>(&text).with_context(|| {
                format!(
                    "the sample of step `{}` ({}) is not JSON",
                    spec.step,
                    path.display()
                )
            })?;
            Ok(text)
        }
        None if position == 0 => Ok(builtin_sample(direction).to_owned()),
        None => Ok(builtin_later_sample(direction).to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn spec() -> StepSpec {
        toml::from_str("step = \"s\"\ncomponent = \"s.wasm\"").unwrap()
    }

    fn sample(direction: Direction, position: usize) -> Value {
        serde_json::from_str(&sample_for(&spec(), direction, position).unwrap()).unwrap()
    }

    #[test]
    fn a_later_step_is_validated_on_what_the_default_mapping_makes_of_the_sample() {
        let first = sample(Direction::PartnerCenterToCrm, 0);
        let later = sample(Direction::PartnerCenterToCrm, 1);
        assert!(first["customerProfile"].is_object(), "a referral first");
        assert!(later["statecode"].is_number(), "then an opportunity");
        assert_eq!(later["cosell_referralidentifier"], first["id"]);
        let first = sample(Direction::CrmToPartnerCenter, 0);
        let later = sample(Direction::CrmToPartnerCenter, 2);
        assert!(first["statecode"].is_number(), "an opportunity first");
        assert!(later["customerProfile"].is_object(), "then a referral");
    }
}
