//! Typed steps: the [`Step`] trait and [`run`], which does the JSON parsing and serialising
//! around it so a step only sees its own types.

use crate::config::short_type_name;
use crate::{Context, MappingError};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A mapping step on typed documents. Export it with [`export_step!`](crate::export_step).
///
/// Use [`Referral`](crate::Referral) and [`Opportunity`](crate::Opportunity) for the documents
/// cosell syncs, your own `#[derive(Deserialize, Serialize)]` types for a shape of your own
/// pipeline, or [`serde_json::Value`] to take any JSON.
pub trait Step {
    /// The input document (the previous step's output, or the source record).
    type Input: DeserializeOwned;
    /// The counterpart record on the destination side, when there is one (e.g. the opportunity
    /// as it is in the CRM when a referral is updated).
    type Current: DeserializeOwned;
    /// The output document.
    type Output: Serialize;

    /// Maps one record. `current` is `None` when the destination has no counterpart yet.
    fn map(
        ctx: &Context,
        input: Self::Input,
        current: Option<Self::Current>,
    ) -> Result<Self::Output, MappingError>;
}

/// Parses `input` and `current` into the step's types, runs it and serialises its output.
///
/// An input or current document that does not parse is a [`MappingError::Reject`] (the
/// record is bad; retrying will not help) that says which document, which type and where it
/// failed.
pub fn run<S: Step>(
    ctx: &Context,
    input: &str,
    current: Option<&str>,
) -> Result<String, MappingError> {
    let input = parse::<S::Input>("input", input)?;
    let current = current
        .map(|text| parse::<S::Current>("current", text))
        .transpose()?;
    to_json(&S::map(ctx, input, current)?)
}

/// Writes an output document as JSON text (a failure is a [`MappingError::Fail`]).
pub fn to_json<T: Serialize>(output: &T) -> Result<String, MappingError> {
    serde_json::to_string(output).map_err(|error| {
        MappingError::Fail(format!(
            "the step's output ({}) could not be written as JSON: {error}",
            short_type_name::<T>()
        ))
    })
}

/// Parses one document, naming it in the error.
pub fn parse<T: DeserializeOwned>(which: &str, text: &str) -> Result<T, MappingError> {
    serde_json::from_str(text).map_err(|error| {
        MappingError::Reject(format!(
            "the {which} document is not a valid {}: {error}",
            short_type_name::<T>()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Direction, Opportunity, Referral};

    /// Names the opportunity after the referral, keeps everything else of `current`.
    struct NameFromReferral;

    impl Step for NameFromReferral {
        type Input = Referral;
        type Current = Opportunity;
        type Output = Opportunity;

        fn map(
            _ctx: &Context,
            referral: Referral,
            current: Option<Opportunity>,
        ) -> Result<Opportunity, MappingError> {
            let mut opportunity = current.unwrap_or_default();
            opportunity.name = referral.name.clone();
            Ok(opportunity)
        }
    }

    fn ctx() -> Context {
        Context {
            direction: Direction::PartnerCenterToCrm,
            event: "test".into(),
            tenant: "test".into(),
            mapping_name: "name-from-referral".into(),
            mapping_version: "sha256:test".into(),
            timestamp: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn a_typed_step_keeps_the_fields_it_does_not_know() {
        let output = run::<NameFromReferral>(
            &ctx(),
            r#"{"id": "r1", "name": "Adventure Works"}"#,
            Some(r#"{"opportunityid": "o1", "name": null, "contoso_territory": "Benelux"}"#),
        )
        .unwrap();
        let output: serde_json::Value = serde_json::from_str(&output).unwrap();
        assert_eq!(
            output,
            serde_json::json!({"opportunityid": "o1", "name": "Adventure Works", "contoso_territory": "Benelux"})
        );
    }

    #[test]
    fn an_input_that_does_not_parse_is_rejected_with_the_type_and_the_place() {
        let Err(MappingError::Reject(message)) =
            run::<NameFromReferral>(&ctx(), r#"{"id": 7}"#, None)
        else {
            panic!("expected a Reject");
        };
        assert!(
            message.starts_with(
                "the input document is not a valid Referral: invalid type: integer `7`"
            ),
            "{message}"
        );
        let Err(MappingError::Reject(message)) = run::<NameFromReferral>(&ctx(), "{}", Some("[1]"))
        else {
            panic!("expected a Reject");
        };
        assert!(
            message.starts_with("the current document is not a valid Opportunity"),
            "{message}"
        );
    }
}
