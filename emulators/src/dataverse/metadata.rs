//! The Metadata API (§4.12): routes its paths; the reads are [`super::metadata_read`]'s. A
//! table is addressed by `(LogicalName='x')` or `(<MetadataId>)`; `POST …/Attributes` creates a
//! custom column (204 + `OData-EntityId: …/Attributes(<MetadataId>)`); the column rules are in
//! [`super::schema::Schema::add_attribute`]. `GET`/`POST …/Keys` list and create alternate
//! keys (EntityKeyMetadata with `KeyAttributes`); `PUT EntityDefinitions(…)` updates a table's
//! definition, of which this emulator applies `ChangeTrackingEnabled` (§4.9: it cannot be
//! turned off again). Updating or deleting a column is not supported.
//!
//! Customizations belong to a solution: the one named by `MSCRM.SolutionUniqueName`, else the
//! environment's Default solution. A column's or key's SchemaName must start with the
//! customization prefix of that solution's publisher and `_` (`new_` for the Default
//! solution); an unknown solution is refused. Dataverse builds a new key's index in the
//! background; here it is active at once, or refused if existing rows share a value.

use super::api::{
    ApiRequest, ApiResponse, ApiResult, Ctx, Key, bad_request, parse_body, parse_key,
};
use super::metadata_read as read;
use super::records::Store;
use super::seed::DEFAULT_SOLUTION;
use axum::http::{Method, StatusCode};
use serde_json::{Map, Value, json};

/// `GET EntityDefinitions[?…]`: every table's definition ([`read::list_entities`]).
pub fn handle_collection(store: &Store, ctx: &Ctx, request: &ApiRequest) -> ApiResult<ApiResponse> {
    if request.method != Method::GET {
        return Err(ApiResponse::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "0x80060888",
            "Create tables with CreateEntities; this emulator has a fixed set of tables.",
        ));
    }
    read::list_entities(
        store.schema.entities.values().map(|d| d.as_ref()),
        ctx,
        request,
    )
}

/// The Metadata API: `EntityDefinitions(<key>)[/Attributes[(…)][/<cast>]]`, `…/Keys`.
pub fn handle(
    store: &mut Store,
    ctx: &Ctx,
    request: &ApiRequest,
    rest: &str,
) -> ApiResult<ApiResponse> {
    let close = rest
        .find(')')
        .ok_or_else(|| bad_request("0x80060888", "Bad EntityDefinitions key."))?;
    let key_text = &rest[..close];
    let entity = match parse_key(key_text)? {
        Key::Alternate(parts) if parts.len() == 1 && parts[0].0 == "LogicalName" => {
            parts[0].1.as_str().unwrap_or_default().to_owned()
        }
        Key::Id(id) => store
            .schema
            .entities
            .values()
            .find(|e| e.metadata_id == id)
            .map(|e| e.logical_name.clone())
            .unwrap_or_else(|| id.to_string()),
        _ => {
            return Err(bad_request(
                "0x80060888",
                "Address entity definitions by LogicalName or MetadataId, e.g. EntityDefinitions(LogicalName='opportunity').",
            ));
        }
    };
    let Some(def) = store.schema.entities.get(&entity).cloned() else {
        return Err(ApiResponse::error(
            StatusCode::NOT_FOUND,
            "0x80040217",
            format!("Could not find entity with LogicalName or MetadataId '{entity}'."),
        ));
    };
    let tail = rest[close + 1..].trim_start_matches('/');
    let entity_url = format!("{}EntityDefinitions(LogicalName='{entity}')", ctx.base);
    let solution = || solution_prefix(store, request);
    match (request.method.clone(), tail) {
        (Method::PUT, "") => {
            let body = parse_body(&request.body)?;
            if body.get("LogicalName").and_then(|v| v.as_str()) != Some(entity.as_str()) {
                return Err(bad_request(
                    "0x80060888",
                    "The body's LogicalName must be the entity the URL names.",
                ));
            }
            solution()?;
            match body.get("ChangeTrackingEnabled").and_then(|v| v.as_bool()) {
                Some(true) => set_change_tracking(store, &entity),
                Some(false) if def.change_tracking => Err(bad_request(
                    "0x80048405",
                    "Change tracking cannot be disabled once it has been enabled.",
                )),
                _ => Ok(()),
            }?;
            Ok(ApiResponse::empty(StatusCode::NO_CONTENT))
        }
        (Method::GET, "Keys") => Ok(ApiResponse::json(
            StatusCode::OK,
            json!({
                "@odata.context": format!("{}$metadata#EntityDefinitions('{entity}')/Keys", ctx.base),
                "value": def.alternate_keys.iter().map(|k| json!({
                    "KeyAttributes": k, "EntityLogicalName": entity, "EntityKeyIndexStatus": "Active",
                })).collect::<Vec<_>>(),
            }),
        )),
        (Method::POST, "Keys") => {
            let body = parse_body(&request.body)?;
            let (solution_name, prefix) = solution()?;
            let schema_name = body["SchemaName"].as_str().unwrap_or_default();
            check_prefix(schema_name, &solution_name, &prefix)?;
            let columns: Vec<String> = body["KeyAttributes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect();
            store
                .add_alternate_key(&entity, columns)
                .map_err(|m| bad_request("0x80048d19", m))?;
            Ok(ApiResponse::empty(StatusCode::NO_CONTENT).with_header(
                "OData-EntityId",
                format!(
                    "{entity_url}/Keys(LogicalName='{}')",
                    schema_name.to_lowercase()
                ),
            ))
        }
        (Method::GET, "") => read::one_entity(&def, ctx, request),
        (Method::GET, "Attributes") => read::attributes(&def, key_text, None, ctx, request),
        (Method::GET, cast) if cast.starts_with("Attributes/") => {
            let cast = cast_of(&cast["Attributes/".len()..])?;
            read::attributes(&def, key_text, Some(cast), ctx, request)
        }
        (Method::POST, "Attributes") => {
            let body = parse_body(&request.body)?;
            let (solution_name, prefix) = solution()?;
            check_prefix(
                body["SchemaName"].as_str().unwrap_or_default(),
                &solution_name,
                &prefix,
            )?;
            let metadata_id = store
                .schema
                .add_attribute(&entity, &body)
                .map_err(|m| bad_request("0x80044363", m))?;
            Ok(ApiResponse::empty(StatusCode::NO_CONTENT).with_header(
                "OData-EntityId",
                format!("{entity_url}/Attributes({metadata_id})"),
            ))
        }
        (Method::GET, attr) if attr.starts_with("Attributes(") => {
            let close = attr.find(')').unwrap_or(attr.len());
            let inner = &attr["Attributes(".len()..close];
            let cast = match attr.get(close + 1..).map(|t| t.trim_start_matches('/')) {
                Some(t) if !t.is_empty() => Some(cast_of(t)?),
                _ => None,
            };
            let column = match parse_key(inner)? {
                Key::Id(id) => def.columns.values().find(|c| c.metadata_id == id),
                Key::Alternate(parts) => parts
                    .first()
                    .and_then(|(_, v)| v.as_str())
                    .and_then(|n| def.columns.get(n)),
            };
            match column {
                Some(c) => read::one_attribute(&def, c, cast, ctx, request),
                None => Err(ApiResponse::error(
                    StatusCode::NOT_FOUND,
                    "0x80040217",
                    format!("Could not find attribute '{inner}' on entity '{entity}'."),
                )),
            }
        }
        _ => Err(ApiResponse::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "0x80060888",
            "This Metadata API operation is not supported by this emulator.",
        )),
    }
}

/// The derived type a cast segment names (`Microsoft.Dynamics.CRM.PicklistAttributeMetadata`).
fn cast_of(segment: &str) -> ApiResult<&str> {
    segment
        .strip_prefix("Microsoft.Dynamics.CRM.")
        .filter(|t| !t.contains('/'))
        .ok_or_else(|| {
            bad_request(
                "0x80060888",
                format!("Resource not found for the segment '{segment}'."),
            )
        })
}

/// The solution a customization goes to (`MSCRM.SolutionUniqueName`, else the Default one)
/// and its publisher's customization prefix.
fn solution_prefix(store: &Store, request: &ApiRequest) -> ApiResult<(String, String)> {
    let name = request
        .headers
        .get("MSCRM.SolutionUniqueName")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(DEFAULT_SOLUTION)
        .to_owned();
    let field = |row: &Map<String, Value>, key: &str| {
        row.get(key).and_then(Value::as_str).map(str::to_owned)
    };
    let solution = store
        .tables
        .get("solution")
        .into_iter()
        .flat_map(|t| t.values())
        .find(|r| field(&r.values, "uniquename").is_some_and(|u| u.eq_ignore_ascii_case(&name)))
        .ok_or_else(|| {
            ApiResponse::error(
                StatusCode::NOT_FOUND,
                "0x8004f00e",
                format!("The solution '{name}' does not exist in this environment."),
            )
        })?;
    let prefix = solution
        .values
        .get("publisherid")
        .and_then(|p| p.get("id"))
        .and_then(Value::as_str)
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .and_then(|id| store.get("publisher", &id))
        .and_then(|p| field(&p.values, "customizationprefix"))
        .unwrap_or_default();
    Ok((name, prefix))
}

/// Refuses a SchemaName that does not start with the publisher's prefix and `_`.
fn check_prefix(schema_name: &str, solution: &str, prefix: &str) -> ApiResult<()> {
    let wanted = format!("{prefix}_");
    let ok = schema_name.len() > wanted.len()
        && schema_name[..wanted.len()].eq_ignore_ascii_case(&wanted);
    match ok {
        true => Ok(()),
        false => Err(bad_request(
            "0x80044363",
            format!(
                "The SchemaName '{schema_name}' must start with '{wanted}', the customization prefix of the publisher of solution '{solution}'."
            ),
        )),
    }
}

fn set_change_tracking(store: &mut Store, entity: &str) -> ApiResult<()> {
    if let Some(def) = store.schema.entities.get_mut(entity) {
        std::sync::Arc::make_mut(def).change_tracking = true;
    }
    Ok(())
}
