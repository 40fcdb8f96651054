//! Change tracking (§4.9): a GET with `Prefer: odata.track-changes` answers the rows plus an
//! `@odata.deltaLink` carrying `$deltatoken`; calling that link answers the rows created or
//! changed since, `$deletedEntity` rows for deletions, and a new delta link.
//!
//! The token is `<row version>!<timestamp>` like the real service's `919058!08/22/2017 08:21:20`:
//! every write bumps an org-wide version, so "changed since" is "version greater than the
//! token's". A token older than the configured age (7 days by default, as Dataverse's
//! `Organization.ExpireChangeTrackingInDays`) is refused with 400: the documentation names the
//! age but not the error, so the error is this emulator's choice and a client must take any
//! refusal of its delta link as "read the table again". A delta answer is paged like a query
//! (`Prefer: odata.maxpagesize`, at most 5,000 a page): rows and deletions in the order they
//! happened, an `@odata.nextLink` on every page but the last, and the new `@odata.deltaLink`
//! only on the last. A row created and deleted between two calls shows up as deleted only.

use super::api::{ApiResponse, ApiResult, Ctx, bad_request};
use super::query;
use super::records::{Store, to_json};
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

/// The largest delta page (as for queries).
pub const MAX_PAGE: usize = 5000;

/// Which page of a delta answer is asked for.
#[derive(Debug, Clone, Copy)]
pub struct DeltaPage {
    /// `Prefer: odata.maxpagesize`, at most [`MAX_PAGE`].
    pub size: usize,
    /// Changes already answered on earlier pages (`$skiptoken`).
    pub offset: usize,
}

/// Answers a `$deltatoken` request.
pub fn delta(
    store: &Store,
    ctx: &Ctx,
    def: &EntityDef,
    select: Option<&[String]>,
    token: &str,
    page: DeltaPage,
) -> ApiResult<ApiResponse> {
    if !def.change_tracking {
        return Err(bad_request(
            "0x80060888",
            format!(
                "Change tracking is not enabled for entity '{}'.",
                def.logical_name
            ),
        ));
    }
    let invalid = || {
        bad_request(
            "0x80060888",
            format!("The delta token '{token}' is not valid."),
        )
    };
    let (version, issued) = token.split_once('!').ok_or_else(invalid)?;
    let since: u64 = version.trim().parse().map_err(|_| invalid())?;
    let issued = chrono::NaiveDateTime::parse_from_str(issued.trim(), "%m/%d/%Y %H:%M:%S")
        .map_err(|_| invalid())?
        .and_utc();
    if ctx.now - issued > ctx.change_tracking_expiry {
        return Err(bad_request(
            "0x80060888",
            format!(
                "The change tracking token has expired: it is older than {} days. Read the table again without a $deltatoken.",
                ctx.change_tracking_expiry.num_days()
            ),
        ));
    }
    // Rows and deletions in the order they happened, so pages read at different moments
    // still see every change: a later write moves its row to the end.
    let mut changes: Vec<(u64, Value)> = store.tables[&def.logical_name]
        .values()
        .filter(|r| r.version > since)
        .map(|r| (r.version, to_json(def, r, select, false)))
        .collect();
    changes.extend(
        store
            .deleted
            .iter()
            .filter(|d| d.entity == def.logical_name && d.version > since)
            .map(|d| {
                (d.version, json!({
                    "@odata.context": format!("{}$metadata#{}/$deletedEntity", ctx.base, def.entity_set),
                    "id": d.id,
                    "reason": "deleted",
                }))
            }),
    );
    changes.sort_by_key(|(version, _)| *version);
    let size = page.size.clamp(1, MAX_PAGE);
    let more = changes.len() > page.offset + size;
    let value: Vec<Value> = changes
        .into_iter()
        .skip(page.offset)
        .take(size)
        .map(|(_, v)| v)
        .collect();
    let context = match select {
        Some(s) => format!(
            "{}$metadata#{}({})/$delta",
            ctx.base,
            def.entity_set,
            s.join(",")
        ),
        None => format!("{}$metadata#{}/$delta", ctx.base, def.entity_set),
    };
    let mut body = json!({"@odata.context": context, "value": value});
    if more {
        let select = select
            .map(|s| format!("$select={}&", query::encode(&s.join(","))))
            .unwrap_or_default();
        body["@odata.nextLink"] = json!(format!(
            "{}{}?{select}$deltatoken={}&$skiptoken={}",
            ctx.base,
            def.entity_set,
            query::encode(token),
            page.offset + size
        ));
    } else {
        body["@odata.deltaLink"] = json!(delta_link(store, ctx, def, select));
    }
    Ok(ApiResponse::json(StatusCode::OK, body)
        .with_header("Preference-Applied", "odata.track-changes"))
}
