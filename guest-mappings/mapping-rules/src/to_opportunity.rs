//! Partner Center referral → Dataverse opportunity.
//!
//! The output holds only the columns this mapping owns and the referral actually carries, so
//! writing it never clobbers CRM data and never drops a customer's own columns.

use serde_json::{Map, Value, json};

use crate::json::{self, Doc};
use crate::settings::Settings;
use crate::status::{self, Stage};
use crate::{Config, Context, MappingError, assistance, audit, customer, values};

type Object = Map<String, Value>;

/// See [`crate::referral_to_opportunity`].
pub fn map(
    ctx: &Context,
    referral: &str,
    current: Option<&str>,
    config: &dyn Config,
) -> Result<String, MappingError> {
    let s = Settings::load(config)?;
    let r = json::parse_object(referral, "referral")?;
    let cur = match current {
        Some(text) => Some(json::parse_object(text, "current opportunity")?),
        None => None,
    };
    if let Some(cur) = &cur {
        sync_gate(cur, &s)?;
    }
    let cols = &s.cols;
    let mut out = Object::new();

    let id = json::required(&r, &["id"], Doc::Referral)?;
    out.insert(cols.referral_identifier.clone(), id.into());
    out.insert(
        cols.referral_link.clone(),
        s.link_template.replace("{id}", id).into(),
    );

    let name = json::required(&r, &["name"], Doc::Referral)?;
    let current_name = cur.as_ref().and_then(|c| c.get("name")?.as_str());
    // Leave a name that differs only by the connector's ✔/✖ mark alone.
    if current_name.map(values::strip_sync_mark) != Some(name) {
        out.insert("name".into(), name.into());
    }

    if cur.is_none() {
        out.insert(cols.sync.clone(), s.sync_yes.clone());
        if let Some(ext) = json::string(&r, &["externalReferenceId"], Doc::Referral)?
            && values::is_guid(ext)
        {
            out.insert("opportunityid".into(), ext.to_ascii_lowercase().into());
        }
    }

    details(&r, &s, &mut out)?;
    help(&r, &s, &mut out)?;
    let stage = status_columns(&r, cur.as_ref(), &s, &mut out)?;

    if !cur.as_ref().is_some_and(customer::has_customer) {
        let account = customer::account_from_referral(&r, cols)?;
        out.insert(customer::ACCOUNT.into(), account);
    }

    let changed: Vec<&str> = out
        .iter()
        .filter(|(k, v)| !json::contained(v, cur.as_ref().and_then(|c| c.get(k.as_str()))))
        .map(|(k, _)| k.as_str())
        .collect();
    if !changed.is_empty() {
        let state = stage
            .map(|st| {
                let (status, sub) = st.referral_pair();
                format!(" ({status}/{sub})")
            })
            .unwrap_or_default();
        let summary = match cur {
            None => format!("created from Partner Center referral {id}{state}"),
            Some(_) => format!(
                "updated from Partner Center referral {id}{state}: {}",
                changed.join(", ")
            ),
        };
        let existing = cur.as_ref().and_then(|c| c.get(&cols.audit)?.as_str());
        let trail = audit::append(ctx, existing, &summary, s.audit_max_lines);
        out.insert(cols.audit.clone(), trail.into());
    }

    serde_json::to_string(&Value::Object(out)).map_err(|e| MappingError::Fail(e.to_string()))
}

/// An existing opportunity whose Sync column is set to anything but Yes is not updated.
fn sync_gate(cur: &Object, s: &Settings) -> Result<(), MappingError> {
    match json::get(cur, &[&s.cols.sync]) {
        Some(v) if !s.is_sync_yes(v) => Err(MappingError::Skip(format!(
            "the existing opportunity has Sync with Partner Center (\"{}\") = {v}, not Yes ({})",
            s.cols.sync, s.sync_yes
        ))),
        _ => Ok(()),
    }
}

/// Deal value, currency, closing date, notes and solutions.
fn details(r: &Object, s: &Settings, out: &mut Object) -> Result<(), MappingError> {
    let path = ["details", "dealValue"];
    if let Some(v) = json::get(r, &path) {
        let value = values::amount(v, &Doc::Referral.describe(&path))?;
        out.insert(s.cols.deal_value.clone(), Value::Number(value));
    }
    let path = ["details", "currency"];
    if let Some(c) = json::string(r, &path, Doc::Referral)? {
        let code = values::currency(c, &Doc::Referral.describe(&path))?;
        out.insert(
            "transactioncurrencyid".into(),
            json!({ "isocurrencycode": code }),
        );
    }
    let path = ["details", "closingDateTime"];
    if let Some(d) = json::string(r, &path, Doc::Referral)? {
        let date = values::date(d, &Doc::Referral.describe(&path))?;
        out.insert("estimatedclosedate".into(), date.into());
    }
    if let Some(notes) = json::string(r, &["details", "notes"], Doc::Referral)? {
        out.insert("description".into(), notes.into());
    }
    let solutions = json::get(r, &["details", "requirements", "solutions"]);
    let ids: Vec<&str> = solutions
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|sol| sol.get("id")?.as_str())
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .collect();
    if !ids.is_empty() {
        out.insert(s.cols.products.clone(), ids.join(", ").into());
    }
    Ok(())
}

/// "How can Microsoft help?" from the invite context.
fn help(r: &Object, s: &Settings, out: &mut Object) -> Result<(), MappingError> {
    let path = ["inviteContext", "assistanceRequestCode"];
    if let Some(code) = json::string(r, &path, Doc::Referral)?
        && let Some(value) = assistance::option_for_code(s, code)?
    {
        out.insert(s.cols.help.clone(), value.into());
    }
    Ok(())
}

/// `statecode`/`statuscode`, moving the opportunity forward only: a pending referral does
/// not undo an acceptance made in the CRM, an open referral does not reopen a closed
/// opportunity, and an accepted referral keeps a customised open `statuscode`.
fn status_columns(
    r: &Object,
    cur: Option<&Object>,
    s: &Settings,
    out: &mut Object,
) -> Result<Option<Stage>, MappingError> {
    let status = json::string(r, &["status"], Doc::Referral)?;
    let substatus = json::string(r, &["substatus"], Doc::Referral)?;
    let Some(stage) = status::from_referral(status, substatus)? else {
        return Ok(None);
    };
    let (state, code) = match cur {
        Some(c) => (
            json::integer(c, &["statecode"], Doc::Opportunity)?,
            json::integer(c, &["statuscode"], Doc::Opportunity)?,
        ),
        None => (None, None),
    };
    let write = match (stage, state) {
        (_, None) => true,
        (st, _) if st.is_closed() => true,
        (Stage::Accepted, Some(0)) => code.is_none_or(|c| c == s.status.pending),
        _ => false,
    };
    if write {
        let (statecode, statuscode) = stage.opportunity_pair(&s.status);
        out.insert("statecode".into(), statecode.into());
        out.insert("statuscode".into(), statuscode.into());
    }
    Ok(Some(stage))
}
