//! Change tracking (§4.9): a GET with `Prefer: odata.track-changes` answers the rows plus an
//! `@odata.deltaLink` carrying `$deltatoken`; calling that link answers the rows created or
//! changed since, `$deletedEntity` rows for deletions, and a new delta link.
//!
//! The token is `<row version>!<timestamp>` like the real service's `919058!08/22/2017 08:21:20`:
//! every write bumps an org-wide version, so "changed since" is "version greater than the
//! token's". Choices where the reference stops: tokens do not expire (the real default is 7 days);
//! a row created and deleted between two calls shows up as deleted only; paging of a delta answer
//! is not implemented (the whole delta comes in one page).

use super::handlers::{ApiResponse, Ctx};
use super::query;
use super::records::{ApiResult, Store, bad_request, to_json};
use super::schema::EntityDef;
use axum::http::StatusCode;
use serde_json::{Value, json};

/// Rejects the query options change tracking does not support.
pub fn check_options(def: &EntityDef, params: &[(String, String)]) -> ApiResult<()> {
    if !def.change_tracking {
        return Err(bad_request(
            "0x80060888",
            format!(
                "Change tracking is not enabled for entity '{}'.",
                def.logical_name
            ),
        ));
    }
    for option in ["$filter", "$orderby", "$expand", "$top"] {
        if params.iter().any(|(k, _)| k == option) {
            return Err(bad_request(
                "0x80060888",
                format!(
                    "The \"{option}\" query parameter isn't supported when Change Tracking is enabled."
                ),
            ));
        }
    }
    Ok(())
}

/// The delta link for the current state of the store.
pub fn delta_link(store: &Store, ctx: &Ctx, def: &EntityDef, select: Option<&[String]>) -> String {
    let token = format!("{}!{}", store.version, ctx.now.format("%m/%d/%Y %H:%M:%S"));
    let select = select
        .map(|s| format!("$select={}&", query::encode(&s.join(","))))
        .unwrap_or_default();
    format!(
        "{}{}?{select}$deltatoken={}",
        ctx.base,
        def.entity_set,
        query::encode(&token)
    )
}

/// Answers a `$deltatoken` request.
pub fn delta(
    store: &Store,
    ctx: &Ctx,
    def: &EntityDef,
    select: Option<&[String]>,
    token: &str,
) -> ApiResult<ApiResponse> {
    let since: u64 = token
        .split('!')
        .next()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            bad_request(
                "0x80060888",
                format!("The delta token '{token}' is not valid."),
            )
        })?;
    let mut value: Vec<Value> = store.tables[&def.logical_name]
        .values()
        .filter(|r| r.version > since)
        .map(|r| to_json(def, r, select, false))
        .collect();
    value.extend(
        store
            .deleted
            .iter()
            .filter(|d| d.entity == def.logical_name && d.version > since)
            .map(|d| {
                json!({
                    "@odata.context": format!("{}$metadata#{}/$deletedEntity", ctx.base, def.entity_set),
                    "id": d.id,
                    "reason": "deleted",
                })
            }),
    );
    let context = match select {
        Some(s) => format!(
            "{}$metadata#{}({})/$delta",
            ctx.base,
            def.entity_set,
            s.join(",")
        ),
        None => format!("{}$metadata#{}/$delta", ctx.base, def.entity_set),
    };
    Ok(ApiResponse::json(
        StatusCode::OK,
        json!({
            "@odata.context": context,
            "@odata.deltaLink": delta_link(store, ctx, def, select),
            "value": value,
        }),
    )
    .with_header("Preference-Applied", "odata.track-changes"))
}
