//! {{name}}: the default cosell mapping ({{direction}}, {{input_type}} → {{output_type}}) plus
//! your changes, written in Rust with the cosell-mapping SDK.
//!
//! The step runs the default mapping (the `mapping-rules` library in vendor/mapping-rules, with
//! this step's config), parses its output as a typed {{output_type}} and then applies your
//! changes (the marked spot below). Untouched, it behaves exactly like the default step, which
//! is what the generated `fixtures/` check: after a change, `cosell mapping test` shows the
//! difference, and `--update` records it as the new expectation. (Parsing and writing the
//! typed output costs about a quarter more fuel than the default step alone; work on
//! `serde_json::Value` instead if that matters.)
//!
//! Build: `./build.sh`. Test: `cosell mapping test dist/{{name_snake}}.wasm --fixtures fixtures`.

use cosell_mapping::{Context, Mapping, MappingError, Opportunity, Referral, rules, step};

/// The step: `cosell_mapping::export_mapping!` at the bottom makes it the component's `map`.
struct FromDefault;

impl Mapping for FromDefault {
    fn map(ctx: Context, input: String, current: Option<String>) -> Result<String, MappingError> {
        // 1. The default mapping (its rejects and skips are the step's).
        let rule = <{{input_type}} as DefaultRule>::RULE;
        let output = rules::apply(rule, &ctx, &input, current.as_deref())?;
        #[allow(unused_mut)]
        let mut output: {{output_type}} = step::parse("default mapping's output", &output)?;

        // 2. ───── Your changes here ─────────────────────────────────────────────────────────
        // `output` is the {{output_type}} the default mapping wrote; change it, e.g.
        //     output.name = format!("[Co-sell] {}", output.name.as_str().unwrap_or("")).into();
        // on an Opportunity, custom columns are `output.set_column("contoso_source", "co-sell")`.
        // The input, typed, if you need it:
        //     let record: {{input_type}} = step::parse("input", &input)?;
        // Use ctx.timestamp rather than a clock; return Err(MappingError::Reject(..)) to refuse.
        // ────────────────────────────────────────────────────────────────────────────────────

        step::to_json(&output)
    }
}

cosell_mapping::export_mapping!(FromDefault);

/// The default mapping of each direction, picked by the input type.
trait DefaultRule {
    const RULE: rules::RuleFn;
}

impl DefaultRule for Referral {
    const RULE: rules::RuleFn = mapping_rules::referral_to_opportunity;
}

impl DefaultRule for Opportunity {
    const RULE: rules::RuleFn = mapping_rules::opportunity_to_referral;
}
