//! State rules and the opportunity close actions (§4.3).
//!
//! - Create: `statecode` must be absent or 0 (§4.3: not valid for create); `statuscode` must
//!   belong to state 0 and defaults to its first value; a new opportunity without a currency gets
//!   the base currency (USD), as the real service does with the organisation's base currency.
//! - Update: `statuscode` must belong to the (new) `statecode`; a won or lost opportunity is
//!   read-only except for reactivation (`statecode` 0); an opportunity is closed only through
//!   `WinOpportunity` / `LoseOpportunity` (a PATCH of `statecode` 1/2 answers 400). Other
//!   tables (lead, account, …) may change state by PATCH (the SetState message).
//! - `POST WinOpportunity` / `LoseOpportunity` with `{"Status": n, "OpportunityClose":
//!   {"subject", "opportunityid@odata.bind", "actualrevenue"?, "actualend"?}}` → 204; sets
//!   `statecode` 1 (Won, `Status` 3 or -1) or 2 (Lost, `Status` 4/5 or -1), `actualclosedate`
//!   and `actualvalue` (`actualrevenue`, else `estimatedvalue` when won, else 0).
//!
//! Choices where the reference stops: error codes/messages of the state rules, no
//! `opportunityclose` row is stored, and the webhook message of a close is `Update` plus `Win`
//! or `Lose`.

use super::api::{self, ApiResponse, ApiResult, Ctx, bad_request};
use super::records::{self, Store, WriteEvent};
use super::schema::EntityDef;
use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use uuid::Uuid;

fn state_error(message: String) -> ApiResponse {
    bad_request("0x80040203", message)
}

fn status_for(def: &EntityDef, state: i64, status: Option<i64>) -> ApiResult<i64> {
    let allowed = def.states.get(&state).ok_or_else(|| {
        state_error(format!(
            "{state} is not a valid statecode for {}.",
            def.logical_name
        ))
    })?;
    match status {
        None | Some(-1) => Ok(allowed[0]),
        Some(s) if allowed.contains(&s) => Ok(s),
        Some(s) => Err(state_error(format!(
            "{s} is not a valid status code for state code {}State.{state} on {}.",
            def.logical_name, def.logical_name
        ))),
    }
}

/// Applies the create rules and defaults to a new row's values.
pub fn on_create(
    store: &Store,
    ctx: &Ctx,
    def: &EntityDef,
    values: &mut Map<String, Value>,
) -> ApiResult<()> {
    let state = values.get("statecode").and_then(Value::as_i64).unwrap_or(0);
    if state != 0 && ["opportunity", "lead"].contains(&def.logical_name.as_str()) {
        return Err(state_error(format!(
            "statecode {state} is not valid for create of {}: create it open, then close it.",
            def.logical_name
        )));
    }
    let status = status_for(def, state, values.get("statuscode").and_then(Value::as_i64))?;
    values.insert("statecode".into(), json!(state));
    values.insert("statuscode".into(), json!(status));
    if def.logical_name == "opportunity"
        && values
            .get("transactioncurrencyid")
            .is_none_or(Value::is_null)
        && store
            .get("transactioncurrency", &ctx.base_currency)
            .is_some()
    {
        values.insert(
            "transactioncurrencyid".into(),
            json!({"id": ctx.base_currency, "entity": "transactioncurrency"}),
        );
    }
    Ok(())
}

/// Applies the update rules to the values written into row `id`.
pub fn on_update(
    store: &Store,
    def: &EntityDef,
    id: &Uuid,
    values: &mut Map<String, Value>,
) -> ApiResult<()> {
    let current = &store.get(&def.logical_name, id).expect("exists").values;
    let current_state = current
        .get("statecode")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let new_state = values.get("statecode").and_then(Value::as_i64);
    let new_status = values.get("statuscode").and_then(Value::as_i64);
    if def.logical_name == "opportunity" {
        if matches!(new_state, Some(1) | Some(2)) && current_state == 0 {
            return Err(state_error(
                "Use the WinOpportunity or LoseOpportunity action to close an opportunity.".into(),
            ));
        }
        let reactivating = new_state == Some(0);
        if current_state != 0 && !reactivating {
            return Err(state_error(format!(
                "The opportunity {id} is closed (statecode {current_state}) and cannot be modified; reactivate it first (statecode 0)."
            )));
        }
    }
    match (new_state, new_status) {
        (None, None) => {}
        (state, status) => {
            let state = state.unwrap_or(current_state);
            let status = status_for(def, state, status)?;
            values.insert("statecode".into(), json!(state));
            values.insert("statuscode".into(), json!(status));
        }
    }
    Ok(())
}

/// `POST WinOpportunity` / `POST LoseOpportunity`.
pub fn close_opportunity(
    store: &mut Store,
    ctx: &Ctx,
    body: &Value,
    won: bool,
) -> ApiResult<ApiResponse> {
    let action = if won {
        "WinOpportunity"
    } else {
        "LoseOpportunity"
    };
    let close = body
        .get("OpportunityClose")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            bad_request(
                "0x80040203",
                format!("{action}: OpportunityClose is required."),
            )
        })?;
    let bind = close
        .get("opportunityid@odata.bind")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad_request(
                "0x80040203",
                format!("{action}: OpportunityClose.opportunityid@odata.bind is required."),
            )
        })?;
    let status = body.get("Status").and_then(Value::as_i64);
    let set_and_key = bind.rsplit("/api/data/v9.2/").next().unwrap_or(bind);
    let set_and_key = set_and_key.trim_start_matches('/');
    let (set, key, _) = api::split_path(set_and_key);
    if set != "opportunities" {
        return Err(bad_request(
            "0x80040203",
            format!("{action}: opportunityid@odata.bind must point at /opportunities(<id>)."),
        ));
    }
    let key = api::parse_key(key.unwrap_or_default())?;
    let Some(id) = store.resolve("opportunity", &key)? else {
        return Err(match key {
            api::Key::Id(id) => api::not_found("opportunity", &id),
            _ => api::not_found("opportunity", &Uuid::nil()),
        });
    };
    let def = store.def("opportunity").clone();
    let current = store
        .get("opportunity", &id)
        .expect("resolved")
        .values
        .clone();
    if current
        .get("statecode")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        != 0
    {
        return Err(state_error(format!(
            "The opportunity {id} is already closed: reactivate it before closing it again."
        )));
    }
    let state = if won { 1 } else { 2 };
    let status = status_for(&def, state, status)?;
    let revenue = close
        .get("actualrevenue")
        .and_then(Value::as_f64)
        .or_else(|| {
            won.then(|| current.get("estimatedvalue").and_then(Value::as_f64))
                .flatten()
        })
        .unwrap_or(0.0);
    let end = close
        .get("actualend")
        .and_then(Value::as_str)
        .and_then(|s| s.get(..10))
        .map(str::to_owned)
        .unwrap_or_else(|| ctx.now.format("%Y-%m-%d").to_string());
    let mut values = Map::new();
    values.insert("statecode".into(), json!(state));
    values.insert("statuscode".into(), json!(status));
    values.insert("actualclosedate".into(), json!(end));
    values.insert(
        "actualvalue".into(),
        if revenue.fract() == 0.0 {
            json!(revenue as i64)
        } else {
            json!(revenue)
        },
    );
    store.write(
        "opportunity",
        id,
        values.clone(),
        false,
        &records::timestamp(ctx.now),
    );
    values.insert("opportunityid".into(), json!(id));
    store.pending.push(WriteEvent {
        message: if won { "Win" } else { "Lose" }.into(),
        entity: "opportunity".into(),
        id,
        attributes: values,
        row_version: None,
    });
    Ok(ApiResponse::empty(StatusCode::NO_CONTENT))
}
