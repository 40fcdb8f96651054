//! The Metadata API (§4.12): `GET EntityDefinitions(LogicalName='x')`, its `Attributes`
//! (list, or one by `MetadataId` or `LogicalName='y'`), and `POST …/Attributes` to create a
//! custom column (204 + `OData-EntityId: …/Attributes(<MetadataId>)`); the column rules are in
//! [`super::schema::Schema::add_attribute`]. Updating or deleting a column is not supported.

use super::handlers::{ApiRequest, ApiResponse, Ctx, parse_body};
use super::records::{ApiResult, Key, Store, bad_request, parse_key};
use super::schema::attribute_json;
use axum::http::{Method, StatusCode};
use serde_json::json;

/// The Metadata API: `EntityDefinitions(LogicalName='x')[/Attributes[(…)]]` (§4.12).
pub fn handle(
    store: &mut Store,
    ctx: &Ctx,
    request: &ApiRequest,
    rest: &str,
) -> ApiResult<ApiResponse> {
    let close = rest
        .find(')')
        .ok_or_else(|| bad_request("0x80060888", "Bad EntityDefinitions key."))?;
    let entity = match parse_key(&rest[..close])? {
        Key::Alternate(parts) if parts.len() == 1 && parts[0].0 == "LogicalName" => {
            parts[0].1.as_str().unwrap_or_default().to_owned()
        }
        _ => {
            return Err(bad_request(
                "0x80060888",
                "Address entity definitions by LogicalName, e.g. EntityDefinitions(LogicalName='opportunity').",
            ));
        }
    };
    let Some(def) = store.schema.entities.get(&entity).cloned() else {
        return Err(ApiResponse::error(
            StatusCode::NOT_FOUND,
            "0x80040217",
            format!("Could not find entity with LogicalName '{entity}'."),
        ));
    };
    let tail = rest[close + 1..].trim_start_matches('/');
    let entity_url = format!("{}EntityDefinitions(LogicalName='{entity}')", ctx.base);
    match (request.method.clone(), tail) {
        (Method::GET, "") => Ok(ApiResponse::json(
            StatusCode::OK,
            json!({
                "@odata.context": format!("{}$metadata#EntityDefinitions/$entity", ctx.base),
                "LogicalName": def.logical_name,
                "EntitySetName": def.entity_set,
                "PrimaryIdAttribute": def.primary_id,
                "PrimaryNameAttribute": def.primary_name,
                "ChangeTrackingEnabled": def.change_tracking,
            }),
        )),
        (Method::GET, "Attributes") => Ok(ApiResponse::json(
            StatusCode::OK,
            json!({
                "@odata.context": format!("{}$metadata#EntityDefinitions('{entity}')/Attributes", ctx.base),
                "value": def.columns.values().map(|c| attribute_json(&def, c)).collect::<Vec<_>>(),
            }),
        )),
        (Method::POST, "Attributes") => {
            let body = parse_body(&request.body)?;
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
            let inner = attr.trim_start_matches("Attributes(").trim_end_matches(')');
            let column = match parse_key(inner)? {
                Key::Id(id) => def.columns.values().find(|c| c.metadata_id == id),
                Key::Alternate(parts) => parts
                    .first()
                    .and_then(|(_, v)| v.as_str())
                    .and_then(|n| def.columns.get(n)),
            };
            match column {
                Some(c) => Ok(ApiResponse::json(StatusCode::OK, attribute_json(&def, c))),
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
