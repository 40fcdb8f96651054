//! The Dataverse opportunity, typed: the standard columns the default mapping reads and writes
//! (see the project's `docs/mapping.md`), with the expanded customer account, its contacts, the
//! primary contact and the currency. Custom columns (`<prefix>_*`, e.g. `cosell_audit` or
//! `contoso_territory`), OData annotations and every other column are kept in `extra`: read
//! and write them with [`Opportunity::column`] and [`Opportunity::set_column`].

use crate::Field;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A Dataverse `opportunity` row as the Web API returns it (with `$expand`) or takes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Opportunity {
    /// The row's id (a GUID).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub opportunityid: Field<String>,
    /// The topic.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub name: Field<String>,
    /// The description.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub description: Field<String>,
    /// The estimated revenue: a number, though some senders write it as a string (kept as
    /// JSON).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub estimatedvalue: Field<Value>,
    /// The estimated close date (`YYYY-MM-DD`).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub estimatedclosedate: Field<String>,
    /// Status: 0 open, 1 won, 2 lost.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub statecode: Field<i64>,
    /// Status reason (an option-set value; the customisable ones are config keys).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub statuscode: Field<i64>,
    /// The currency (expanded `transactioncurrencyid`).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub transactioncurrencyid: Field<Currency>,
    /// The customer account (expanded `customerid_account`) with its contacts.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub customerid_account: Field<Account>,
    /// The primary contact (expanded `parentcontactid`).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub parentcontactid: Field<Contact>,
    /// Every other column: custom columns (`cosell_*`, `contoso_*`, ...), lookups
    /// (`_ownerid_value`), OData annotations (`@odata.etag`, `...@OData.Community...`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Opportunity {
    /// The value of a column kept in [`extra`](Self::extra), e.g. `column("cosell_audit")`.
    pub fn column(&self, name: &str) -> Option<&Value> {
        self.extra.get(name)
    }

    /// Sets a column kept in [`extra`](Self::extra), e.g.
    /// `set_column("contoso_territory", "Benelux")` (use [`Value::Null`] to clear it in the CRM).
    pub fn set_column(&mut self, name: &str, value: impl Into<Value>) {
        self.extra.insert(name.to_owned(), value.into());
    }

    /// The custom columns whose logical name starts with `<prefix>_` (a publisher prefix such
    /// as `cosell` or `contoso`), in name order.
    pub fn custom_columns<'a>(
        &'a self,
        prefix: &str,
    ) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        let start = format!("{prefix}_");
        self.extra
            .iter()
            .filter(move |(name, _)| name.starts_with(&start) && !name.contains('@'))
            .map(|(name, value)| (name.as_str(), value))
    }
}

/// The opportunity's currency.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Currency {
    /// The currency row's id.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub transactioncurrencyid: Field<String>,
    /// ISO 4217 code, e.g. `EUR`.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub isocurrencycode: Field<String>,
    /// Every other column, kept as it is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The customer account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// The account row's id.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub accountid: Field<String>,
    /// The company name.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub name: Field<String>,
    /// First street line.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub address1_line1: Field<String>,
    /// Second street line.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub address1_line2: Field<String>,
    /// City.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub address1_city: Field<String>,
    /// State or province.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub address1_stateorprovince: Field<String>,
    /// Postal code.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub address1_postalcode: Field<String>,
    /// Country (the default mapping writes ISO 3166-1 alpha-2 codes).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub address1_country: Field<String>,
    /// The account's contacts (expanded `contact_customer_accounts`).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub contact_customer_accounts: Field<Vec<Contact>>,
    /// Every other column, kept as it is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A contact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    /// The contact row's id.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub contactid: Field<String>,
    /// First name.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub firstname: Field<String>,
    /// Last name.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub lastname: Field<String>,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub emailaddress1: Field<String>,
    /// Phone number.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub telephone1: Field<String>,
    /// Job title.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub jobtitle: Field<String>,
    /// Every other column, kept as it is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn custom_columns_and_annotations_land_in_extra_and_survive() {
        let document = json!({
            "@odata.etag": "W/\"1\"",
            "opportunityid": "o1",
            "estimatedvalue": 415000.0,
            "statecode": 0,
            "cosell_audit": null,
            "contoso_territory": "Benelux",
            "contoso_territory@OData.Community.Display.V1.FormattedValue": "Benelux",
            "customerid_account": {"name": "Woodgrove", "contact_customer_accounts": [{"firstname": "Lotte", "mobilephone": "1"}]},
        });
        let mut opportunity: Opportunity = serde_json::from_value(document.clone()).unwrap();
        assert_eq!(opportunity.column("cosell_audit"), Some(&Value::Null));
        let contoso: Vec<_> = opportunity
            .custom_columns("contoso")
            .map(|(name, _)| name)
            .collect();
        assert_eq!(contoso, ["contoso_territory"]);
        assert_eq!(serde_json::to_value(&opportunity).unwrap(), document);
        opportunity.set_column("contoso_region", "EMEA");
        assert_eq!(
            serde_json::to_value(&opportunity).unwrap()["contoso_region"],
            "EMEA"
        );
    }
}
