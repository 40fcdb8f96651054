//! Dataverse opportunity → Partner Center referral.
//!
//! The output is a referral in Partner Center's documented shape. Given the current referral,
//! it is that referral (id, eTag, links, … kept) with only the fields the opportunity owns set.

use serde_json::{Map, Value, json};

use crate::json::{self, Doc};
use crate::settings::Settings;
use crate::status::{self, Stage};
use crate::{Config, Context, MappingError, assistance, customer, values};

type Object = Map<String, Value>;

/// See [`crate::opportunity_to_referral`].
pub fn map(
    _ctx: &Context,
    opportunity: &str,
    current: Option<&str>,
    config: &dyn Config,
) -> Result<String, MappingError> {
    let s = Settings::load(config)?;
    let opp = json::parse_object(opportunity, "opportunity")?;
    let cur = match current {
        Some(text) => Some(json::parse_object(text, "current referral")?),
        None => None,
    };
    let cols = &s.cols;
    sync_gate(&opp, &s)?;
    let cur_stage = match &cur {
        Some(c) => closed_gate(c)?,
        None => None,
    };

    let name = values::strip_sync_mark(json::required(&opp, &["name"], Doc::Opportunity)?);
    if name.is_empty() {
        return Err(MappingError::Reject(format!(
            "{} is required",
            Doc::Opportunity.describe(&["name"])
        )));
    }
    let opportunity_id = json::required(&opp, &["opportunityid"], Doc::Opportunity)?;
    let cur_type = cur.as_ref().and_then(|c| c.get("type")?.as_str());
    let cur_shared = cur_type == Some("Shared");
    let is_new = cur.is_none();
    // The output is the current referral, changed in place (moved, not copied): each part
    // the opportunity owns is read from it before it is replaced.
    let mut out = cur.unwrap_or_default();
    let cur_profile = match out.remove("customerProfile") {
        Some(Value::Object(profile)) => Some(profile),
        _ => None,
    };
    let profile = customer::profile_from_opportunity(&opp, cols, cur_profile)?;

    let help_path = [cols.help.as_str()];
    let help = match json::integer(&opp, &help_path, Doc::Opportunity)? {
        None => None,
        Some(v) => Some(assistance::code_for_option(&s, v).ok_or_else(|| {
            MappingError::Reject(format!(
                "{} has the value {v}, which is not a configured choice (help-option.*)",
                Doc::Opportunity.describe(&help_path)
            ))
        })?),
    };
    let shared = help.is_some() || cur_shared;

    if is_new {
        let id_path = [cols.referral_identifier.as_str()];
        if let Some(id) = json::string(&opp, &id_path, Doc::Opportunity)? {
            out.insert("id".into(), id.into());
        }
        out.insert("qualification".into(), "SalesQualified".into());
        out.insert(
            "consent".into(),
            json!({
                "consentToToShareInfoWithOthers": shared,
                "consentToContact": shared,
                "consentToShareReferralWithMicrosoftSellers": shared,
            }),
        );
    } else if shared {
        // Once visible to Microsoft sellers a referral cannot be made private again.
        let path = ["consent", "consentToShareReferralWithMicrosoftSellers"];
        json::set(&mut out, &path, true.into());
    }
    out.insert("name".into(), name.into());
    out.insert("externalReferenceId".into(), opportunity_id.into());
    let kind = if shared { "Shared" } else { "Independent" };
    out.insert("type".into(), kind.into());
    let has_contact = profile
        .get("team")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());
    out.insert("customerProfile".into(), Value::Object(profile));

    details(&opp, is_new, &s, &mut out)?;

    if let Some(code) = help {
        let has_solution = json::get(&out, &["details", "requirements", "solutions"])
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if !has_solution {
            return Err(MappingError::Reject(format!(
                "{} needs at least one solution id when How can Microsoft help? (\"{}\") is set",
                Doc::Opportunity.describe(&[cols.products.as_str()]),
                cols.help
            )));
        }
        if !has_contact {
            return Err(MappingError::Reject(format!(
                "a customer contact (opportunity column \"parentcontactid\" or \
                 \"customerid_account.contact_customer_accounts\") is required when \
                 How can Microsoft help? (\"{}\") is set",
                cols.help
            )));
        }
        json::set(
            &mut out,
            &["inviteContext", "assistanceRequestCode"],
            code.into(),
        );
    }

    let statecode = json::integer(&opp, &["statecode"], Doc::Opportunity)?;
    let statuscode = json::integer(&opp, &["statuscode"], Doc::Opportunity)?;
    if let Some(state) = statecode {
        let stage = status::from_opportunity(state, statuscode, cur_stage, &s.status)?;
        let (status, substatus) = stage.referral_pair();
        // A pending referral keeps its own New substatus (Pending or Received).
        if !(stage == Stage::Pending && cur_stage == Some(Stage::Pending)) {
            out.insert("status".into(), status.into());
            out.insert("substatus".into(), substatus.into());
        }
    }

    // The referral written is about as large as the current one, or the opportunity.
    json::to_text(&out, current.map_or(opportunity.len(), str::len) + 256)
}

/// Only opportunities whose Sync column is Yes go to Partner Center.
fn sync_gate(opp: &Object, s: &Settings) -> Result<(), MappingError> {
    match json::get(opp, &[&s.cols.sync]) {
        Some(v) if s.is_sync_yes(v) => Ok(()),
        Some(v) => Err(MappingError::Skip(format!(
            "Sync with Partner Center (\"{}\") is {v}, not Yes ({})",
            s.cols.sync, s.sync_yes
        ))),
        None => Err(MappingError::Skip(format!(
            "Sync with Partner Center (\"{}\") is not set",
            s.cols.sync
        ))),
    }
}

/// A closed referral is terminal in Partner Center: nothing may change it any more.
/// Otherwise returns the current referral's stage.
fn closed_gate(cur: &Object) -> Result<Option<Stage>, MappingError> {
    let status = json::string(cur, &["status"], Doc::Referral)?;
    if status == Some("Closed") {
        let id = json::string(cur, &["id"], Doc::Referral)?.unwrap_or("(no id)");
        let sub = json::string(cur, &["substatus"], Doc::Referral)?.unwrap_or("None");
        return Err(MappingError::Skip(format!(
            "referral {id} is closed ({sub}) in Partner Center; a closed referral cannot change"
        )));
    }
    let substatus = json::string(cur, &["substatus"], Doc::Referral)?;
    Ok(status::from_referral(status, substatus).unwrap_or(None))
}

/// Deal value, currency, closing date, notes and solutions, merged into `out.details`.
///
/// `out` starts as the current referral (empty when `is_new`); a field the opportunity does
/// not set keeps the current referral's value.
fn details(opp: &Object, is_new: bool, s: &Settings, out: &mut Object) -> Result<(), MappingError> {
    // Read each current value just before its field is written, so it is still the current one.
    let cur_str = |out: &Object, path: &[&str]| {
        (!is_new)
            .then(|| json::get(out, path)?.as_str().map(str::to_owned))
            .flatten()
    };
    let value_path = [s.cols.deal_value.as_str()];
    if let Some(v) = json::get(opp, &value_path) {
        let value = values::amount(v, || Doc::Opportunity.describe(&value_path))?;
        json::set(out, &["details", "dealValue"], Value::Number(value));
    }

    let currency_path = ["transactioncurrencyid", "isocurrencycode"];
    let currency = match json::string(opp, &currency_path, Doc::Opportunity)? {
        Some(c) => Some(values::currency(c, || {
            Doc::Opportunity.describe(&currency_path)
        })?),
        None => cur_str(out, &["details", "currency"]).or_else(|| s.default_currency.clone()),
    };
    match currency {
        Some(c) => json::set(out, &["details", "currency"], c.into()),
        None if json::get(out, &["details", "dealValue"]).is_some() => {
            return Err(MappingError::Reject(format!(
                "{} is required when {} is set (or configure \"default-currency\")",
                Doc::Opportunity.describe(&currency_path),
                Doc::Opportunity.describe(&value_path)
            )));
        }
        None => {}
    }

    let date_path = ["estimatedclosedate"];
    if let Some(d) = json::string(opp, &date_path, Doc::Opportunity)? {
        let date = values::date(d, || Doc::Opportunity.describe(&date_path))?;
        let closing = match cur_str(out, &["details", "closingDateTime"]) {
            Some(existing) if existing.starts_with(&date) => existing,
            _ => format!("{date}T00:00:00Z"),
        };
        json::set(out, &["details", "closingDateTime"], closing.into());
    }

    if let Some(notes) = json::string(opp, &["description"], Doc::Opportunity)? {
        json::set(out, &["details", "notes"], notes.into());
    }

    let products_path = [s.cols.products.as_str()];
    if let Some(text) = json::string(opp, &products_path, Doc::Opportunity)? {
        let ids = values::split_ids(text);
        if !ids.is_empty() {
            let path = ["details", "requirements", "solutions"];
            let existing: Vec<Value> = match json::take(out, &path) {
                Some(Value::Array(items)) if !is_new => items,
                _ => Vec::new(),
            };
            let solutions: Vec<Value> = ids.iter().map(|id| solution(id, &existing)).collect();
            json::set(out, &path, Value::Array(solutions));
        }
    }
    Ok(())
}

/// The referral solution for an id: the current referral's entry when it has one, else a
/// catalogue reference (`Name` for `SOL-…` ids, `Category` for category names).
fn solution(id: &str, existing: &[Value]) -> Value {
    if let Some(found) = existing
        .iter()
        .find(|s| s.get("id").and_then(Value::as_str) == Some(id))
    {
        return found.clone();
    }
    let kind = if id.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("SOL-")) {
        "Name"
    } else {
        "Category"
    };
    json!({ "id": id, "type": kind })
}
