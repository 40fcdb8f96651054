//! {{name}}: a cosell mapping step ({{direction}}) written in Rust with the cosell-mapping SDK.
//!
//! cosell calls the step once per record with the {{input_type}} and, when the record already
//! exists on the other side, the current {{output_type}}; it writes the {{output_type}} the step
//! returns. The SDK parses and serialises the documents (fields this code does not know are
//! kept), so the step works on typed values. Refuse a record with an error:
//! `MappingError::Reject` (the record is bad: retrying will not help), `MappingError::Skip`
//! (deliberately not synced) or `MappingError::Fail` (transient: cosell retries it later).
//!
//! This starter maps a few fields (`Field` values keep "absent", `null` and a value apart:
//! `.value()`, `.as_str()`, `x.into()`). Both directions are here; the one for {{input_type}} →
//! {{output_type}} runs (see `MapRecord`), delete the other. Use `ctx.timestamp`, never a
//! clock: a re-run of the same record must give the same output.
//!
//! Build: `./build.sh`. Test: `cosell mapping test dist/{{name_snake}}.wasm --fixtures fixtures`.

use cosell_mapping::serde_json::Value;
use cosell_mapping::{
    Context, Currency, Details, MappingError, Opportunity, Referral, Step, config, log,
};

/// The step: `cosell_mapping::export_step!` at the bottom makes it the component's `map`.
struct Mapping;

impl Step for Mapping {
    type Input = {{input_type}};
    type Current = {{output_type}};
    type Output = {{output_type}};

    fn map(
        ctx: &Context,
        input: {{input_type}},
        current: Option<{{output_type}}>,
    ) -> Result<{{output_type}}, MappingError> {
        let output = input.map_record(current)?;
        let name = output.name.as_str().unwrap_or("");
        log::info(&format!("{{name}} mapped {name:?} ({})", ctx.event));
        Ok(output)
    }
}

cosell_mapping::export_step!(Mapping);

/// One record of one direction: the input type names the direction.
trait MapRecord: Sized {
    /// The document written on the other side.
    type Output;
    /// Maps the record, given the counterpart as it is now (if there is one).
    fn map_record(self, current: Option<Self::Output>) -> Result<Self::Output, MappingError>;
}

/// partner-center-to-crm: the opportunity's name, value, currency and close date from a
/// Partner Center referral.
impl MapRecord for Referral {
    type Output = Opportunity;

    fn map_record(self, current: Option<Opportunity>) -> Result<Opportunity, MappingError> {
        let Some(name) = self.name.as_str().filter(|name| !name.trim().is_empty()) else {
            return Err(MappingError::Reject("the referral has no name".into()));
        };
        let prefix = config::get_or("name-prefix", "");
        let mut opportunity = Opportunity {
            name: format!("{prefix}{name}").into(),
            ..Opportunity::default()
        };
        let details = self.details.value().cloned().unwrap_or_default();
        if let Some(value) = details.deal_value.value() {
            opportunity.estimatedvalue = Value::from(amount(value)?).into();
        }
        if let Some(currency) = details.currency.as_str() {
            opportunity.transactioncurrencyid = Currency {
                isocurrencycode: currency.to_uppercase().into(),
                ..Currency::default()
            }
            .into();
        }
        if let Some(closing) = details.closing_date_time.as_str() {
            opportunity.estimatedclosedate = closing.chars().take(10).collect::<String>().into();
        }
        if current.is_none() {
            // Only a new opportunity gets a description: an existing one keeps the seller's own.
            let id = self.id.as_str().unwrap_or_default();
            opportunity.description = format!("Partner Center referral {id}").into();
        }
        Ok(opportunity)
    }
}

/// crm-to-partner-center: a Partner Center referral's name and deal details from a CRM
/// opportunity marked to sync.
impl MapRecord for Opportunity {
    type Output = Referral;

    fn map_record(self, current: Option<Referral>) -> Result<Referral, MappingError> {
        if self.column("cosell_syncwithpartnercenter") != Some(&Value::Bool(true)) {
            return Err(MappingError::Skip(
                "the opportunity is not marked to sync with Partner Center".into(),
            ));
        }
        let Some(name) = self.name.as_str().filter(|name| !name.trim().is_empty()) else {
            return Err(MappingError::Reject("the opportunity has no name".into()));
        };
        let mut details = Details::default();
        if let Some(value) = self.estimatedvalue.value() {
            details.deal_value = Value::from(amount(value)?).into();
        }
        let currency = self
            .transactioncurrencyid
            .value()
            .and_then(|c| c.isocurrencycode.as_str());
        if let Some(currency) = currency {
            details.currency = currency.to_uppercase().into();
        }
        let mut referral = Referral {
            name: name.to_owned().into(),
            details: details.into(),
            ..Referral::default()
        };
        if let Some(current) = current {
            // An update names the referral it changes.
            referral.id = current.id;
            referral.e_tag = current.e_tag;
        }
        Ok(referral)
    }
}

/// A money amount: a JSON number, or a string holding one.
fn amount(value: &Value) -> Result<f64, MappingError> {
    let parsed = match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| MappingError::Reject(format!("the amount {value} is not a number")))
}
