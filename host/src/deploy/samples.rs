//! The sample record each new version runs on before activation.
//!
//! A step may name its own sample in the configuration; otherwise the built-in sample of its
//! direction is used: a realistic referral or opportunity from `guest-mappings/fixtures`.

use crate::config::StepSpec;
use crate::runtime::Direction;
use anyhow::{Context as _, Result};

const SAMPLE_REFERRAL: &str = include_str!(
    "../../../guest-mappings/fixtures/partner-center-to-crm/referral-sample/input.json"
);
const SAMPLE_OPPORTUNITY: &str = include_str!(
    "../../../guest-mappings/fixtures/crm-to-partner-center/opportunity-sample/input.json"
);

/// The built-in sample input of a direction.
pub fn builtin_sample(direction: Direction) -> &'static str {
    match direction {
        Direction::PartnerCenterToCrm => SAMPLE_REFERRAL,
        Direction::CrmToPartnerCenter => SAMPLE_OPPORTUNITY,
    }
}

/// The sample for a configured step: its own file, or the built-in one.
pub fn sample_for(spec: &StepSpec, direction: Direction) -> Result<String> {
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
        None => Ok(builtin_sample(direction).to_owned()),
    }
}
