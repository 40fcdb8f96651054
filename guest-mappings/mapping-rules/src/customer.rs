//! The customer: referral `customerProfile` ↔ the opportunity's account and contacts.
//!
//! On the opportunity side the customer is the expanded lookup `customerid_account` (account
//! columns, with its contacts under `contact_customer_accounts`), exactly the shape a Dataverse
//! read with `$expand` returns. The host resolves it to a real account when writing.

use serde_json::{Map, Value};

use crate::MappingError;
use crate::json::{self, Doc};
use crate::read::RawObject;
use crate::referral::CustomerProfile;
use crate::settings::Columns;
use crate::values;

/// Referral address field → account column (the country column is configurable).
const ADDRESS: [(&str, &str); 5] = [
    ("addressLine1", "address1_line1"),
    ("addressLine2", "address1_line2"),
    ("city", "address1_city"),
    ("state", "address1_stateorprovince"),
    ("postalCode", "address1_postalcode"),
];

/// Referral team member field → contact column.
const MEMBER: [(&str, &str); 5] = [
    ("firstName", "firstname"),
    ("lastName", "lastname"),
    ("email", "emailaddress1"),
    ("phoneNumber", "telephone1"),
    ("title", "jobtitle"),
];

/// Lookup navigation property of the opportunity's account customer.
pub const ACCOUNT: &str = "customerid_account";
/// Collection of the account's contacts inside [`ACCOUNT`].
pub const CONTACTS: &str = "contact_customer_accounts";
/// Lookup navigation property of the opportunity's primary contact.
const PRIMARY_CONTACT: &str = "parentcontactid";
/// Formatted value (the account name) of the customer lookup, when the host asks for it.
const CUSTOMER_NAME_ANNOTATION: &str =
    "_customerid_value@OData.Community.Display.V1.FormattedValue";

/// Whether the opportunity already has a customer (then the CRM owns it).
pub fn has_customer(opportunity: &RawObject) -> bool {
    [
        "customerid_account",
        "customerid_contact",
        "_customerid_value",
    ]
    .iter()
    .any(|key| opportunity.has(key))
}

/// The expanded account for a referral's customer profile (name, address, contacts).
pub fn account_from_referral(
    profile: &CustomerProfile,
    cols: &Columns,
) -> Result<Value, MappingError> {
    let mut account = Map::new();
    let name = profile
        .name
        .required(Doc::Referral, &["customerProfile", "name"])?;
    account.insert("name".into(), name.into());
    for (field, column) in ADDRESS {
        let path = ["customerProfile", "address", field];
        if let Some(v) = profile.address.field(field).string(Doc::Referral, &path)? {
            account.insert(column.into(), v.into());
        }
    }
    let path = ["customerProfile", "address", "country"];
    if let Some(c) = profile.address.country.string(Doc::Referral, &path)? {
        let code = values::country(c, || Doc::Referral.describe(&path))?;
        account.insert(cols.country.clone(), code.into());
    }
    let contacts: Vec<Value> = profile
        .team
        .iter()
        .map(|m| non_empty_fields(MEMBER.iter().map(|(f, c)| (m.field(f).as_str(), *c))))
        .filter(|c| !c.is_empty())
        .map(Value::Object)
        .collect();
    if !contacts.is_empty() {
        account.insert(CONTACTS.into(), Value::Array(contacts));
    }
    Ok(Value::Object(account))
}

/// The referral `customerProfile` for an opportunity, merged over the current referral's
/// profile (fields the opportunity does not own, like `size` or `ids`, are kept).
pub fn profile_from_opportunity(
    opportunity: &Map<String, Value>,
    cols: &Columns,
    current: Option<Map<String, Value>>,
) -> Result<Map<String, Value>, MappingError> {
    let empty = Map::new();
    let account = json::object(opportunity, &[ACCOUNT]).unwrap_or(&empty);
    let mut profile = current.unwrap_or_default();

    let name = match json::string(account, &["name"], Doc::Opportunity)? {
        Some(n) => n,
        None => json::string(opportunity, &[CUSTOMER_NAME_ANNOTATION], Doc::Opportunity)?
            .ok_or_else(|| {
                MappingError::Reject(format!(
                    "{} (the customer company name) is required",
                    Doc::Opportunity.describe(&[ACCOUNT, "name"])
                ))
            })?,
    };
    profile.insert("name".into(), name.into());

    let mut address = match profile.remove("address") {
        Some(Value::Object(address)) => address,
        _ => Map::new(),
    };
    for (field, column) in ADDRESS {
        if let Some(v) = json::string(account, &[column], Doc::Opportunity)? {
            address.insert(field.into(), v.into());
        }
    }
    let country_path = [ACCOUNT, cols.country.as_str()];
    match json::string(account, &[cols.country.as_str()], Doc::Opportunity)? {
        Some(c) => {
            let code = values::country(c, || Doc::Opportunity.describe(&country_path))?;
            address.insert("country".into(), code.into());
        }
        None if address.get("country").and_then(Value::as_str).is_some() => {}
        None => {
            return Err(MappingError::Reject(format!(
                "{} (the customer country) is required",
                Doc::Opportunity.describe(&country_path)
            )));
        }
    }
    profile.insert("address".into(), Value::Object(address));

    // The current team is moved into the new one when it has members to carry; otherwise a
    // `team` the opportunity adds no one to is left exactly as it was.
    let current_team = profile.remove("team");
    let (carried, left) = match current_team {
        Some(Value::Array(members)) if members.iter().any(Value::is_object) => (members, None),
        other => (Vec::new(), other),
    };
    let team = team_from_opportunity(opportunity, account, carried);
    if !team.is_empty() {
        profile.insert("team".into(), Value::Array(team));
    } else if let Some(left) = left {
        profile.insert("team".into(), left);
    }
    Ok(profile)
}

/// The referral's customer team: the current referral's members first (each updated from a
/// matching CRM contact, other fields such as `contactPreference` kept), then the opportunity's
/// other contacts, primary contact (`parentcontactid`) first. Members are never removed:
/// Partner Center's PATCH only supports `add` and `replace`.
fn team_from_opportunity(
    opportunity: &Map<String, Value>,
    account: &Map<String, Value>,
    current: Vec<Value>,
) -> Vec<Value> {
    let primary = json::object(opportunity, &[PRIMARY_CONTACT]).into_iter();
    let others = account
        .get(CONTACTS)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object);
    let mut team: Vec<Map<String, Value>> = current
        .into_iter()
        .filter_map(|m| match m {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .collect();
    let mut seen: Vec<Map<String, Value>> = Vec::new();
    for contact in primary.chain(others) {
        let owned = rename(contact, MEMBER.iter().map(|(f, c)| (*c, *f)));
        if owned.is_empty() || seen.iter().any(|m| same_person(m, &owned)) {
            continue;
        }
        seen.push(owned.clone());
        match team.iter_mut().find(|m| same_person(m, &owned)) {
            Some(member) => member.extend(owned),
            None => team.push(owned),
        }
    }
    team.into_iter().map(Value::Object).collect()
}

/// Copies the non-empty string fields `from` → `to` of an object.
fn rename<'a>(
    obj: &Map<String, Value>,
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
) -> Map<String, Value> {
    non_empty_fields(pairs.map(|(from, to)| (obj.get(from).and_then(Value::as_str), to)))
}

/// An object of the given (string value, field name) pairs, the values trimmed, the empty or
/// missing ones left out.
fn non_empty_fields<'v, 'k>(
    pairs: impl Iterator<Item = (Option<&'v str>, &'k str)>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (value, to) in pairs {
        if let Some(v) = value.and_then(json::trimmed) {
            out.insert(to.into(), v.into());
        }
    }
    out
}

/// Same email (case-insensitive), or same first and last name when either has no email.
fn same_person(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    let field = |m: &Map<String, Value>, k: &str| {
        m.get(k)
            .and_then(Value::as_str)
            .map(|s| s.trim().to_lowercase())
    };
    match (field(a, "email"), field(b, "email")) {
        (Some(x), Some(y)) if !x.is_empty() && !y.is_empty() => x == y,
        _ => {
            field(a, "firstName") == field(b, "firstName")
                && field(a, "lastName") == field(b, "lastName")
        }
    }
}
