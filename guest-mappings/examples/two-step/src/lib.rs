//! Example customer step `stamp-team`, the second step of a two-step pipeline: the default
//! `referral-to-opportunity` mapping runs first, then this step stamps two of the customer's own
//! columns on the opportunity it made, from the step's config:
//!
//! - `team-column` (default `contoso_owningteam`) ← `owner-team` (required: a step without it
//!   is misconfigured, so the call fails and is retried once the config is fixed);
//! - `region-column` (default `contoso_region`) ← the `region.<country>` config value for the
//!   customer's country (`customerid_account.address1_country`), else `region.default`, else
//!   the column is left out.
//!
//! Everything else the default mapping wrote passes through unchanged (the typed
//! `Opportunity` keeps every column it does not name). See README.md next to this file.

use cosell_mapping::{Context, MappingError, Opportunity, Step, config, log, serde_json::Value};

struct StampTeam;

impl Step for StampTeam {
    type Input = Opportunity;
    type Current = Value; // the opportunity in the CRM, not needed here
    type Output = Opportunity;

    fn map(
        ctx: &Context,
        mut opportunity: Opportunity,
        _current: Option<Value>,
    ) -> Result<Opportunity, MappingError> {
        let Some(team) = config::get("owner-team") else {
            return Err(MappingError::Fail(format!(
                "step '{}' has no 'owner-team' in its config: set it",
                ctx.mapping_name
            )));
        };
        opportunity.set_column(&config::get_or("team-column", "contoso_owningteam"), team);

        let country = opportunity
            .customerid_account
            .value()
            .and_then(|account| account.address1_country.as_str())
            .map(str::to_uppercase);
        let region = country
            .as_deref()
            .and_then(|country| config::get(&format!("region.{country}")))
            .or_else(|| config::get("region.default"));
        match region {
            Some(region) => {
                opportunity.set_column(&config::get_or("region-column", "contoso_region"), region)
            }
            None => log::warn(&format!(
                "no region for country {}: set region.{0} or region.default",
                country.as_deref().unwrap_or("(none)")
            )),
        }
        Ok(opportunity)
    }
}

cosell_mapping::export_step!(StampTeam);
