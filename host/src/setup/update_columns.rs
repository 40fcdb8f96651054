//! Which opportunity columns the Dataverse Update step filters on (`filteringattributes`).
//!
//! Without a filter Dataverse sends cosell every update of every opportunity, including the
//! many a CRM makes that no mapping reads, and cosell's own write-backs of the Audit and
//! Referral Link columns. With it, an update reaches cosell only when it touched a column the
//! crm-to-partner-center pipeline reads. The list is the columns the default mapping reads,
//! named as each crm-to-partner-center step's config names them (`column-prefix` and the
//! `column.*` keys, except the columns cosell itself writes: Audit and Referral Link), plus any
//! a step lists in `watch-columns` (comma-separated) because its custom mapping reads them.
//! Changes the filter hides are still found by the change-tracking poller.

use crate::config::HostConfig;
use std::collections::BTreeSet;

/// Standard opportunity columns the default crm-to-partner-center mapping reads.
const STANDARD: [&str; 10] = [
    "name",
    "description",
    "estimatedvalue",
    "estimatedclosedate",
    "transactioncurrencyid",
    "customerid",
    "parentcontactid",
    "statecode",
    "statuscode",
    "address1_country",
];

/// cosell's own columns the default mapping reads, by their `column.*` key and suffix.
const COSELL: [(&str, &str); 4] = [
    ("column.sync", "syncwithpartnercenter"),
    ("column.referral-identifier", "referralidentifier"),
    ("column.help", "howcanmicrosofthelp"),
    ("column.products", "products"),
];

/// The `filteringattributes` of the Update step: a comma-separated, sorted list.
pub fn filtering_attributes(config: &HostConfig) -> String {
    let mut columns: BTreeSet<String> = STANDARD.iter().map(|c| (*c).to_owned()).collect();
    let steps = &config.pipelines.crm_to_partner_center;
    let default_prefix = config.sync.column_prefix.clone();
    let configs: Vec<_> = match steps.is_empty() {
        true => vec![Default::default()],
        false => steps.iter().map(|s| s.config.clone()).collect(),
    };
    for step in configs {
        let prefix = step
            .get("column-prefix")
            .cloned()
            .unwrap_or_else(|| default_prefix.clone());
        for (key, suffix) in COSELL {
            let column = step
                .get(key)
                .cloned()
                .unwrap_or(format!("{prefix}{suffix}"));
            columns.insert(column.to_ascii_lowercase());
        }
        for key in ["column.deal-value", "column.country"] {
            if let Some(column) = step.get(key) {
                columns.insert(column.to_ascii_lowercase());
            }
        }
        for column in step
            .get("watch-columns")
            .into_iter()
            .flat_map(|l| l.split(','))
        {
            let column = column.trim().to_ascii_lowercase();
            if !column.is_empty() {
                columns.insert(column);
            }
        }
    }
    columns.into_iter().collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pipelines: &str) -> HostConfig {
        let dir = tempfile::tempdir().unwrap();
        let component = dir.path().join("c.wasm");
        std::fs::write(&component, b"\0asm").unwrap();
        let text = format!(
            "[state]\npath = \"s.db\"\n{}",
            pipelines.replace("COMPONENT", &component.display().to_string())
        );
        let path = dir.path().join("cosell.toml");
        std::fs::write(&path, text).unwrap();
        HostConfig::load(&path).unwrap()
    }

    #[test]
    fn the_default_mapping_columns_without_cosells_own_write_backs() {
        let list = filtering_attributes(&config(
            "[[pipelines.crm-to-partner-center]]\nstep = \"o\"\ncomponent = \"COMPONENT\"\n",
        ));
        let columns: Vec<&str> = list.split(',').collect();
        for wanted in [
            "cosell_howcanmicrosofthelp",
            "cosell_syncwithpartnercenter",
            "estimatedvalue",
            "statecode",
            "name",
        ] {
            assert!(columns.contains(&wanted), "{list}");
        }
        assert!(
            !list.contains("cosell_audit") && !list.contains("referrallink"),
            "{list}"
        );
    }

    #[test]
    fn a_steps_column_names_and_watch_columns_are_followed() {
        let list = filtering_attributes(&config(
            "[[pipelines.crm-to-partner-center]]\nstep = \"o\"\ncomponent = \"COMPONENT\"\n\
             [pipelines.crm-to-partner-center.config]\ncolumn-prefix = \"new_\"\n\
             \"column.help\" = \"new_Assist\"\n\"watch-columns\" = \"new_region, budgetamount\"\n",
        ));
        for wanted in [
            "new_assist",
            "new_syncwithpartnercenter",
            "new_region",
            "budgetamount",
        ] {
            assert!(list.split(',').any(|c| c == wanted), "{wanted} in {list}");
        }
        assert!(!list.contains("cosell_"), "{list}");
    }
}
