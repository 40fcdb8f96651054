//! One Web API request against the store: routing (paths and keys read by [`super::api`]),
//! create (POST), retrieve and list (GET),
//! update/upsert (PATCH) with `If-Match` / `If-None-Match`, and delete (§4.1, §4.5, §4.6,
//! §4.7). `$batch` parts run through [`execute`] too.
//!
//! Answers follow §4.5: POST → 204 + `OData-EntityId` (201 + row with
//! `Prefer: return=representation`); PATCH → 204 (200 or 201 with the row when asked);
//! `If-Match: *` on a missing row → 404 (code `""`, "x With Id = … Does Not Exist"); a stale
//! `If-Match` etag → 412 ("The version of the existing record doesn't match the RowVersion
//! property provided."); `If-None-Match: *` on an existing row → 412 ("A record with matching key
//! values already exists."); `If-None-Match: <etag>` on a GET of an unchanged row → 304.
//! Choices where the reference stops: creating a row whose id is taken (a POST naming it) also
//! answers that 412, never overwriting the row; a PATCH whose body names another primary key
//! than its URL is 400.

use super::api::{
    ApiRequest, ApiResponse, ApiResult, Ctx, Key, bad_request, entity_url, max_page_size,
    not_found, parse_body, parse_key, prefer, split_path,
};
use super::record::Record;
use super::records::{self, Store, to_json};
use super::schema::EntityDef;
use super::{actions, change_tracking, query};
use axum::http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

fn has_prefer(headers: &HeaderMap, what: &str) -> bool {
    prefer(headers).iter().any(|p| p == what)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn annotations(headers: &HeaderMap) -> bool {
    prefer(headers)
        .iter()
        .any(|p| p.starts_with("odata.include-annotations"))
}

/// Runs one request against the store.
pub fn execute(store: &mut Store, ctx: &Ctx, request: &ApiRequest) -> ApiResponse {
    match route(store, ctx, request) {
        Ok(response) | Err(response) => response,
    }
}

fn route(store: &mut Store, ctx: &Ctx, request: &ApiRequest) -> ApiResult<ApiResponse> {
    let path = request.path.trim_matches('/');
    let method = &request.method;
    match path {
        "" => {
            let sets: Vec<Value> = store
                .schema
                .entities
                .values()
                .map(|e| json!({"name": e.entity_set, "kind": "EntitySet", "url": e.entity_set}))
                .collect();
            return Ok(ApiResponse::json(
                StatusCode::OK,
                json!({"@odata.context": format!("{}$metadata", ctx.base), "value": sets}),
            ));
        }
        "WhoAmI" | "WhoAmI()" if method == Method::GET => {
            return Ok(ApiResponse::json(
                StatusCode::OK,
                json!({
                    "@odata.context": format!("{}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse", ctx.base),
                    "BusinessUnitId": ctx.business_unit_id,
                    "UserId": ctx.user_id,
                    "OrganizationId": ctx.organization_id,
                }),
            ));
        }
        "WinOpportunity" | "LoseOpportunity" if method == Method::POST => {
            let body = parse_body(&request.body)?;
            return actions::close_opportunity(store, ctx, &body, path == "WinOpportunity");
        }
        _ => {}
    }
    if path == "EntityDefinitions" {
        return super::metadata::handle_collection(store, ctx, request);
    }
    if let Some(rest) = path.strip_prefix("EntityDefinitions(") {
        return super::metadata::handle(store, ctx, request, rest);
    }
    if let Some((set, action)) = path.split_once('/')
        && let Some(message) = super::bulk::Message::parse(action)
        && let Some(def) = store.schema.by_set(set).cloned()
    {
        // The executor is handed in rather than imported by bulk: each target runs back
        // through this router, and bulk stays below it.
        return super::bulk::run(store, ctx, &def, request, message, execute);
    }
    let (set, key, property) = split_path(path);
    let Some(def) = store.schema.by_set(set).cloned() else {
        return Err(ApiResponse::error(
            StatusCode::NOT_FOUND,
            "0x8006088a",
            format!("Resource not found for the segment '{set}'."),
        ));
    };
    if property.is_some() {
        return Err(ApiResponse::error(
            StatusCode::NOT_IMPLEMENTED,
            "0x8006088a",
            "Single-property addressing is not supported by this emulator.",
        ));
    }
    match (key, method.clone()) {
        (None, Method::GET) => {
            let response = list(store, ctx, &def, request)?;
            let rows = response
                .body
                .as_ref()
                .and_then(|b| b["value"].as_array())
                .map_or(0, Vec::len);
            store.operations.query_pages += 1;
            store.operations.query_rows += rows as u64;
            Ok(response)
        }
        (None, Method::POST) => create(store, ctx, &def, request, parse_body(&request.body)?),
        (Some(key), Method::GET) => retrieve(store, ctx, &def, request, &parse_key(key)?),
        (Some(key), Method::PATCH) => upsert(store, ctx, &def, request, &parse_key(key)?),
        (Some(key), Method::DELETE) => delete(store, &def, request, &parse_key(key)?),
        _ => Err(ApiResponse::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "0x80060888",
            format!("The method {method} is not allowed on '{path}'."),
        )),
    }
}

/// One record as the Web API returns it on its own: the selected columns, lookup annotations
/// when asked for, and the `@odata.context` of a single entity.
fn entity_body(
    ctx: &Ctx,
    store: &Store,
    def: &EntityDef,
    record: &Record,
    request: &ApiRequest,
    select: Option<&[String]>,
) -> Value {
    let annotate = annotations(&request.headers);
    let mut body = to_json(def, record, select, annotate);
    if annotate {
        records::format_lookups(store, def, record, &mut body);
    }
    body["@odata.context"] = json!(format!("{}$metadata#{}/$entity", ctx.base, def.entity_set));
    body
}

fn select_of(def: &EntityDef, request: &ApiRequest) -> ApiResult<Option<Vec<String>>> {
    query::parse_query(&request.query)
        .into_iter()
        .find(|(k, _)| k == "$select")
        .map(|(_, v)| query::parse_select(def, &v))
        .transpose()
}

fn expand_of(
    store: &Store,
    def: &EntityDef,
    request: &ApiRequest,
) -> ApiResult<Vec<super::expand::Expand>> {
    Ok(query::parse_query(&request.query)
        .into_iter()
        .find(|(k, _)| k == "$expand")
        .map(|(_, v)| super::expand::parse(store, def, &v))
        .transpose()?
        .unwrap_or_default())
}

fn representation(
    store: &Store,
    ctx: &Ctx,
    def: &EntityDef,
    request: &ApiRequest,
    id: &Uuid,
    status: StatusCode,
) -> ApiResult<ApiResponse> {
    let select = select_of(def, request)?;
    let record = store.get(&def.logical_name, id).expect("just written");
    let body = entity_body(ctx, store, def, record, request, select.as_deref());
    Ok(ApiResponse::json(status, body)
        .with_header("OData-EntityId", entity_url(ctx, def, id))
        .with_header("Preference-Applied", "return=representation"))
}

fn created_or_updated(
    store: &Store,
    ctx: &Ctx,
    def: &EntityDef,
    request: &ApiRequest,
    id: &Uuid,
    created: bool,
) -> ApiResult<ApiResponse> {
    if has_prefer(&request.headers, "return=representation") {
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        return representation(store, ctx, def, request, id, status);
    }
    Ok(ApiResponse::empty(StatusCode::NO_CONTENT)
        .with_header("OData-EntityId", entity_url(ctx, def, id)))
}

fn duplicate() -> ApiResponse {
    ApiResponse::error(
        StatusCode::PRECONDITION_FAILED,
        "0x80040237",
        "A record with matching key values already exists.",
    )
}

fn insert(
    store: &mut Store,
    ctx: &Ctx,
    def: &EntityDef,
    id: Option<Uuid>,
    mut values: serde_json::Map<String, Value>,
) -> ApiResult<Uuid> {
    let from_body = values
        .get(&def.primary_id)
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok());
    let id = id.or(from_body).unwrap_or_else(Uuid::new_v4);
    if store.get(&def.logical_name, &id).is_some() {
        return Err(duplicate());
    }
    actions::on_create(store, ctx, def, &mut values)?;
    store.check_unique(&def.logical_name, &id, &values)?;
    store.write(
        &def.logical_name,
        id,
        values,
        true,
        &records::timestamp(ctx.now),
    );
    Ok(id)
}

fn create(
    store: &mut Store,
    ctx: &Ctx,
    def: &EntityDef,
    request: &ApiRequest,
    body: Value,
) -> ApiResult<ApiResponse> {
    let values = store.convert(&def.logical_name, &body)?;
    let id = insert(store, ctx, def, None, values)?;
    created_or_updated(store, ctx, def, request, &id, true)
}

fn retrieve(
    store: &mut Store,
    ctx: &Ctx,
    def: &EntityDef,
    request: &ApiRequest,
    key: &Key,
) -> ApiResult<ApiResponse> {
    store.operations.retrieves += 1;
    let Some(id) = store.resolve(&def.logical_name, key)? else {
        return Err(missing(def, key, "0x80040217"));
    };
    let record = store.get(&def.logical_name, &id).expect("resolved");
    if header(&request.headers, "if-none-match") == Some(record.etag().as_str()) {
        return Ok(ApiResponse::empty(StatusCode::NOT_MODIFIED));
    }
    let select = select_of(def, request)?;
    let expand = expand_of(store, def, request)?;
    let mut body = entity_body(ctx, store, def, record, request, select.as_deref());
    super::expand::apply(store, def, record, &mut body, &expand);
    Ok(ApiResponse::json(StatusCode::OK, body))
}

fn missing(def: &EntityDef, key: &Key, code: &str) -> ApiResponse {
    match key {
        Key::Id(id) => {
            let mut r = not_found(&def.logical_name, id);
            r.body = Some(
                json!({"error": {"code": code, "message": format!("{} With Id = {id} Does Not Exist", def.logical_name)}}),
            );
            r
        }
        Key::Alternate(parts) => {
            let ids: Vec<String> = parts.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            ApiResponse::error(
                StatusCode::NOT_FOUND,
                code,
                format!(
                    "{} With Ids = {} Does Not Exist",
                    def.logical_name,
                    ids.join(",")
                ),
            )
        }
    }
}

fn check_if_match(
    store: &Store,
    def: &EntityDef,
    request: &ApiRequest,
    key: &Key,
    existing: Option<Uuid>,
) -> ApiResult<()> {
    if let Some(expected) = header(&request.headers, "if-match") {
        let Some(id) = existing else {
            return Err(missing(def, key, ""));
        };
        let etag = store.get(&def.logical_name, &id).expect("exists").etag();
        if expected != "*" && !expected.split(',').any(|e| e.trim() == etag) {
            return Err(ApiResponse::error(
                StatusCode::PRECONDITION_FAILED,
                "0x80060882",
                "The version of the existing record doesn't match the RowVersion property provided.",
            ));
        }
    }
    Ok(())
}

fn upsert(
    store: &mut Store,
    ctx: &Ctx,
    def: &EntityDef,
    request: &ApiRequest,
    key: &Key,
) -> ApiResult<ApiResponse> {
    let existing = store.resolve(&def.logical_name, key)?;
    check_if_match(store, def, request, key, existing)?;
    if header(&request.headers, "if-none-match") == Some("*") && existing.is_some() {
        return Err(duplicate());
    }
    let body = parse_body(&request.body)?;
    let mut values = store.convert(&def.logical_name, &body)?;
    check_body_id(def, key, &values)?;
    match existing {
        Some(id) => {
            values.remove(&def.primary_id);
            actions::on_update(store, def, &id, &mut values)?;
            // The alternate-key columns of the row after the write (all the check reads; a
            // copy of the whole row per update cost more than the check).
            let current = &store.get(&def.logical_name, &id).expect("exists").values;
            let merged: serde_json::Map<String, Value> = def
                .alternate_keys
                .iter()
                .flatten()
                .filter_map(|c| Some((c.clone(), values.get(c).or(current.get(c))?.clone())))
                .collect();
            store.check_unique(&def.logical_name, &id, &merged)?;
            store.write(
                &def.logical_name,
                id,
                values,
                false,
                &records::timestamp(ctx.now),
            );
            created_or_updated(store, ctx, def, request, &id, false)
        }
        None => {
            let id = match key {
                Key::Id(id) => Some(*id),
                Key::Alternate(parts) => {
                    for (column, value) in parts {
                        if *column == def.primary_id {
                            continue;
                        }
                        // The key's values are written into the new row (§4.6 upsert).
                        let converted =
                            store.convert(&def.logical_name, &json!({ column: value }))?;
                        values.extend(converted);
                    }
                    parts
                        .iter()
                        .find(|(c, _)| *c == def.primary_id)
                        .and_then(|(_, v)| v.as_str())
                        .and_then(|s| Uuid::parse_str(s).ok())
                }
            };
            let id = insert(store, ctx, def, id, values)?;
            created_or_updated(store, ctx, def, request, &id, true)
        }
    }
}

/// A PATCH whose body names another primary key than its URL is refused (400), whether it
/// would update or create: the row the request means is ambiguous.
fn check_body_id(
    def: &EntityDef,
    key: &Key,
    values: &serde_json::Map<String, Value>,
) -> ApiResult<()> {
    let in_body = values
        .get(&def.primary_id)
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok());
    match (key, in_body) {
        (Key::Id(id), Some(other)) if *id != other => Err(bad_request(
            "0x80040203",
            "Entity Id must be the same as the value set in property bag.",
        )),
        _ => Ok(()),
    }
}

fn delete(
    store: &mut Store,
    def: &EntityDef,
    request: &ApiRequest,
    key: &Key,
) -> ApiResult<ApiResponse> {
    let existing = store.resolve(&def.logical_name, key)?;
    check_if_match(store, def, request, key, existing)?;
    let Some(id) = existing else {
        return Err(missing(def, key, "0x80040217"));
    };
    store.delete(&def.logical_name, &id);
    Ok(ApiResponse::empty(StatusCode::NO_CONTENT))
}

fn list(
    store: &mut Store,
    ctx: &Ctx,
    def: &EntityDef,
    request: &ApiRequest,
) -> ApiResult<ApiResponse> {
    let params = query::parse_query(&request.query);
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let select = param("$select")
        .map(|s| query::parse_select(def, s))
        .transpose()?;
    if let Some(token) = param("$deltatoken") {
        let page = change_tracking::DeltaPage {
            size: max_page_size(&request.headers).unwrap_or(change_tracking::MAX_PAGE),
            offset: param("$skiptoken")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
        };
        return change_tracking::delta(store, ctx, def, select.as_deref(), token, page);
    }
    let track = has_prefer(&request.headers, "odata.track-changes");
    if track {
        change_tracking::check_options(def, &params)?;
    }
    let filter = param("$filter")
        .map(|f| query::parse_filter(def, f))
        .transpose()?;
    let orderby = param("$orderby")
        .map(|o| query::parse_orderby(def, o))
        .transpose()?
        .unwrap_or_default();
    let expand = expand_of(store, def, request)?;
    let table = &store.tables[&def.logical_name];
    let keep = |r: &&Record| {
        filter
            .as_ref()
            .map(|f| query::matches(def, &r.values, f))
            .unwrap_or(true)
    };
    // The equality indexes narrow the rows down (in table order) when the filter allows;
    // the whole filter still decides each row.
    let candidates = filter
        .as_ref()
        .and_then(|f| store.filter_candidates(def, f));
    let mut rows: Vec<&Record> = match &candidates {
        Some(ids) => ids
            .iter()
            .filter_map(|id| table.get(id))
            .filter(keep)
            .collect(),
        None => table.values().filter(keep).collect(),
    };
    if !orderby.is_empty() {
        rows.sort_by(|a, b| query::order(def, &a.values, &b.values, &orderby));
    }
    let max_page = max_page_size(&request.headers);
    let top = param("$top").and_then(|t| t.parse::<usize>().ok());
    if let (Some(top), None) = (top, max_page) {
        rows.truncate(top);
    }
    let page_size = max_page.unwrap_or(5000).clamp(1, 5000);
    let offset = param("$skiptoken")
        .and_then(|t| t.split("offset=\"").nth(1))
        .and_then(|t| t.split('"').next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    let annotate = annotations(&request.headers);
    let value: Vec<Value> = rows
        .iter()
        .skip(offset)
        .take(page_size)
        .map(|r| {
            let mut json = to_json(def, r, select.as_deref(), annotate);
            if annotate {
                records::format_lookups(store, def, r, &mut json);
            }
            super::expand::apply(store, def, r, &mut json, &expand);
            json
        })
        .collect();
    let context = match &select {
        Some(s) => format!("{}$metadata#{}({})", ctx.base, def.entity_set, s.join(",")),
        None => format!("{}$metadata#{}", ctx.base, def.entity_set),
    };
    let mut body = json!({"@odata.context": context, "value": value});
    if param("$count") == Some("true") {
        // §4.7: the count is capped at 5000.
        body["@odata.count"] = json!(rows.len().min(5000));
    }
    let mut response_headers = Vec::new();
    if let Some(n) = max_page {
        response_headers.push((
            "Preference-Applied".to_owned(),
            format!("odata.maxpagesize={n}"),
        ));
    }
    if offset + page_size < rows.len() {
        let page_number = offset / page_size + 2;
        let cookie = format!(
            "<cookie pagenumber=\"{page_number}\" offset=\"{}\" istracking=\"False\" />",
            offset + page_size
        );
        let mut next: Vec<String> = params
            .iter()
            .filter(|(k, _)| k != "$skiptoken")
            .map(|(k, v)| format!("{}={}", query::encode(k), query::encode(v)))
            .collect();
        next.push(format!("$skiptoken={}", query::encode(&cookie)));
        body["@odata.nextLink"] =
            json!(format!("{}{}?{}", ctx.base, def.entity_set, next.join("&")));
    } else if track {
        body["@odata.deltaLink"] = json!(change_tracking::delta_link(
            store,
            ctx,
            def,
            select.as_deref()
        ));
    }
    if track {
        response_headers.push((
            "Preference-Applied".to_owned(),
            "odata.track-changes".to_owned(),
        ));
    }
    let mut response = ApiResponse::json(StatusCode::OK, body);
    response.headers = response_headers;
    Ok(response)
}
