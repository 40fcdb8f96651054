//! "How can Microsoft help?" (a choice column) ↔ `inviteContext.assistanceRequestCode`.
//!
//! The six documented codes map 1:1 to the connector's six choices. Option values default to
//! `100000000 + n` (the Dataverse default publisher's option prefix) and can be overridden per
//! code with `help-option.<code>`; a code Partner Center adds later can be mapped the same way.

use crate::MappingError;
use crate::settings::Settings;

/// The documented codes, in the order of the connector's picklist, with their default values.
pub const CODES: [(&str, i64); 6] = [
    ("WorkloadSpecificValueProposition", 100_000_000),
    ("CustomerTechnicalArchitecture", 100_000_001),
    ("ProofOfConceptOrDemo", 100_000_002),
    ("QuotesOrLicensing", 100_000_003),
    ("PostSalesCustomerSuccess", 100_000_004),
    ("GeneralOrOther", 100_000_005),
];

/// The option value for a referral's code; `Ok(None)` when no help is asked (`Unknown`/`None`).
pub fn option_for_code(settings: &Settings, code: &str) -> Result<Option<i64>, MappingError> {
    if code.eq_ignore_ascii_case("Unknown") || code.eq_ignore_ascii_case("None") {
        return Ok(None);
    }
    if let Some((_, value)) = settings.help_options.iter().find(|(c, _)| *c == code) {
        return Ok(Some(*value));
    }
    match settings.extra_help_option(code)? {
        Some(value) => Ok(Some(value)),
        None => Err(MappingError::Reject(format!(
            "referral field \"inviteContext.assistanceRequestCode\" has the unknown value \
             \"{code}\"; map it with the configuration key \"help-option.{code}\""
        ))),
    }
}

/// The code for an opportunity's option value; `None` when the value is not a known choice.
pub fn code_for_option(settings: &Settings, value: i64) -> Option<&'static str> {
    settings
        .help_options
        .iter()
        .find(|(_, v)| *v == value)
        .map(|(code, _)| *code)
}
