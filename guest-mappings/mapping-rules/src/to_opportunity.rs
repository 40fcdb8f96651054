//! Partner Center referral → Dataverse opportunity.
//!
//! The output holds only the columns this mapping owns and the referral actually carries, so
//! writing it never clobbers CRM data and never drops a customer's own columns.
//!
//! The referral is read into its typed view ([`Referral`]) and the current opportunity is kept
//! as unparsed columns ([`RawObject`]): neither becomes a `Value` tree.

use serde_json::{Map, Value, json};

use crate::json::{self, Doc};
use crate::read::{self, RawObject};
use crate::referral::Referral;
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
    let r: Referral = read::parse(referral, "referral")?;
    let cur: Option<RawObject> = match current {
        Some(text) => Some(read::parse(text, "current opportunity")?),
        None => None,
    };
    if let Some(cur) = &cur {
        sync_gate(cur, &s)?;
    }
    let cols = &s.cols;
    let mut out = Object::new();

    let id = r.id.required(Doc::Referral, &["id"])?;
    out.insert(cols.referral_identifier.clone(), id.into());
    out.insert(
        cols.referral_link.clone(),
        s.link_template.replace("{id}", id).into(),
    );

    let name = r.name.required(Doc::Referral, &["name"])?;
    let current_name = cur.as_ref().and_then(|c| c.string("name"));
    // Leave a name that differs only by the connector's ✔/✖ mark alone.
    if current_name.as_deref().map(values::strip_sync_mark) != Some(name) {
        out.insert("name".into(), name.into());
    }

    if cur.is_none() {
        out.insert(cols.sync.clone(), s.sync_yes.clone());
        if let Some(ext) = r
            .external_reference_id
            .string(Doc::Referral, &["externalReferenceId"])?
            && values::is_guid(ext)
        {
            out.insert("opportunityid".into(), ext.to_ascii_lowercase().into());
        }
    }

    details(&r, &s, &mut out)?;
    help(&r, &s, &mut out)?;
    let stage = status_columns(&r, cur.as_ref(), &s, &mut out)?;

    if !cur.as_ref().is_some_and(customer::has_customer) {
        let account = customer::account_from_referral(&r.customer_profile, cols)?;
        out.insert(customer::ACCOUNT.into(), account);
    }

    let changed: Vec<&str> = out
        .iter()
        .filter(|(k, v)| !json::contained(v, cur.as_ref().and_then(|c| c.value(k)).as_ref()))
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
        let existing = cur.as_ref().and_then(|c| c.string(&cols.audit));
        let trail = audit::append(ctx, existing.as_deref(), &summary, s.audit_max_lines);
        out.insert(cols.audit.clone(), trail.into());
    }

    // The columns are smaller than the referral they come from (with a long audit trail aside).
    json::to_text(&out, referral.len())
}

/// An existing opportunity whose Sync column is set to anything but Yes is not updated.
fn sync_gate(cur: &RawObject, s: &Settings) -> Result<(), MappingError> {
    match cur.get(&s.cols.sync) {
        Some(v) if !s.is_sync_yes(&v) => Err(MappingError::Skip(format!(
            "the existing opportunity has Sync with Partner Center (\"{}\") = {v}, not Yes ({})",
            s.cols.sync, s.sync_yes
        ))),
        _ => Ok(()),
    }
}

/// Deal value, currency, closing date, notes and solutions.
fn details(r: &Referral, s: &Settings, out: &mut Object) -> Result<(), MappingError> {
    let d = &r.details;
    let path = ["details", "dealValue"];
    if let Some(v) = d.deal_value.to_value() {
        let value = values::amount(&v, || Doc::Referral.describe(&path))?;
        out.insert(s.cols.deal_value.clone(), Value::Number(value));
    }
    let path = ["details", "currency"];
    if let Some(c) = d.currency.string(Doc::Referral, &path)? {
        let code = values::currency(c, || Doc::Referral.describe(&path))?;
        out.insert(
            "transactioncurrencyid".into(),
            json!({ "isocurrencycode": code }),
        );
    }
    let path = ["details", "closingDateTime"];
    if let Some(date) = d.closing_date_time.string(Doc::Referral, &path)? {
        let date = values::date(date, || Doc::Referral.describe(&path))?;
        out.insert("estimatedclosedate".into(), date.into());
    }
    if let Some(notes) = d.notes.string(Doc::Referral, &["details", "notes"])? {
        out.insert("description".into(), notes.into());
    }
    let ids: Vec<&str> = d
        .requirements
        .solutions
        .iter()
        .filter_map(|sol| sol.id.as_str())
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .collect();
    if !ids.is_empty() {
        out.insert(s.cols.products.clone(), ids.join(", ").into());
    }
    Ok(())
}

/// "How can Microsoft help?" from the invite context.
fn help(r: &Referral, s: &Settings, out: &mut Object) -> Result<(), MappingError> {
    let path = ["inviteContext", "assistanceRequestCode"];
    let code = &r.invite_context.assistance_request_code;
    if let Some(code) = code.string(Doc::Referral, &path)?
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
    r: &Referral,
    cur: Option<&RawObject>,
    s: &Settings,
    out: &mut Object,
) -> Result<Option<Stage>, MappingError> {
    let status = r.status.string(Doc::Referral, &["status"])?;
    let substatus = r.substatus.string(Doc::Referral, &["substatus"])?;
    let Some(stage) = status::from_referral(status, substatus)? else {
        return Ok(None);
    };
    let (state, code) = match cur {
        Some(c) => (
            json::integer_of(
                c.get("statecode").as_ref(),
                &["statecode"],
                Doc::Opportunity,
            )?,
            json::integer_of(
                c.get("statuscode").as_ref(),
                &["statuscode"],
                Doc::Opportunity,
            )?,
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
