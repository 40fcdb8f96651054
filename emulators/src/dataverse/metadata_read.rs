//! The Metadata API's reads, as Dataverse's own clients make them: `GET EntityDefinitions`
//! with `$select` and `$filter`, one table by `(LogicalName='x')` or `(<MetadataId>)` with
//! `$select` and `$expand=Attributes`, its `Attributes` (all, or one by `(LogicalName='y')` or
//! `(<MetadataId>)`) with `$select` and `$filter`, and the type-cast forms that carry choice
//! options, such as
//! `…/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)`.
//!
//! As documented: metadata is never paged (every match in the first answer); `MetadataId` is
//! always returned; an enum is compared as `Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist'`;
//! `OptionSet` is a navigation property of the choice types, so it comes only with `$expand` on
//! a cast. Choices where the documentation stops (docs/emulators.md lists them): `$top`,
//! `$skip`, `$orderby`, `$count`, `$search` and `$apply` are 400 (`0x80060888`, "The query
//! parameter $top is not supported"); the string functions are 501 (`0x8006088a`); only `eq`,
//! `ne`, `and`, `or`, `not` and parentheses filter, strings compared exactly; a property the
//! type does not have is 400 in `$select` and `$filter` alike.

use super::api::{ApiRequest, ApiResponse, ApiResult, Ctx, bad_request};
use super::query::parse_query;
use super::schema::{ChoiceOption, ColumnDef, ColumnKind, EntityDef, attribute_json};
use crate::common::odata::Expr;
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

/// The properties of an EntityMetadata this emulator answers (besides `Attributes`, `Keys`).
const ENTITY_PROPERTIES: &[&str] = &[
    "MetadataId",
    "LogicalName",
    "SchemaName",
    "EntitySetName",
    "LogicalCollectionName",
    "PrimaryIdAttribute",
    "PrimaryNameAttribute",
    "ChangeTrackingEnabled",
    "IsCustomEntity",
    "IsPrivate",
    "IsActivity",
    "OwnershipType",
    "DisplayName",
    "DisplayCollectionName",
    "Description",
];

/// The properties every AttributeMetadata has.
const ATTRIBUTE_PROPERTIES: &[&str] = &[
    "MetadataId",
    "LogicalName",
    "SchemaName",
    "EntityLogicalName",
    "AttributeType",
    "AttributeTypeName",
    "IsCustomAttribute",
    "IsPrimaryId",
    "IsPrimaryName",
    "IsValidForCreate",
    "IsValidForUpdate",
    "IsValidForRead",
    "RequiredLevel",
    "DisplayName",
    "Description",
];

/// The query options no metadata read takes.
const UNSUPPORTED_OPTIONS: &[&str] = &["$top", "$skip", "$orderby", "$count", "$search", "$apply"];

/// The empty label, as the Metadata API writes one.
fn no_label() -> Value {
    json!({"LocalizedLabels": [], "UserLocalizedLabel": null})
}

/// A label in the organisation's one language (1033).
fn label(text: &str) -> Value {
    let localized = json!({
        "Label": text, "LanguageCode": 1033, "IsManaged": false,
        "MetadataId": uuid::Uuid::new_v4(), "HasChanged": null,
    });
    json!({"LocalizedLabels": [localized.clone()], "UserLocalizedLabel": localized})
}

/// A table's EntityMetadata.
pub fn entity_json(def: &EntityDef) -> Map<String, Value> {
    let business =
        ["opportunity", "account", "contact", "lead"].contains(&def.logical_name.as_str());
    let value = json!({
        "MetadataId": def.metadata_id,
        "LogicalName": def.logical_name,
        "SchemaName": def.schema_name(),
        "EntitySetName": def.entity_set,
        "LogicalCollectionName": def.entity_set,
        "PrimaryIdAttribute": def.primary_id,
        "PrimaryNameAttribute": def.primary_name,
        "ChangeTrackingEnabled": def.change_tracking,
        "IsCustomEntity": false,
        "IsPrivate": false,
        "IsActivity": false,
        "OwnershipType": if business { "UserOwned" } else { "OrganizationOwned" },
        "DisplayName": no_label(),
        "DisplayCollectionName": no_label(),
        "Description": no_label(),
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The derived type of a column (`PicklistAttributeMetadata`) and its type-specific
/// properties.
fn derived(column: &ColumnDef) -> (&'static str, &'static [&'static str]) {
    match &column.kind {
        ColumnKind::String { .. } => ("StringAttributeMetadata", &["MaxLength", "Format"]),
        ColumnKind::Memo { .. } => ("MemoAttributeMetadata", &["MaxLength", "Format"]),
        ColumnKind::Picklist { .. } => (
            "PicklistAttributeMetadata",
            &["OptionSet", "GlobalOptionSet"],
        ),
        ColumnKind::MultiSelect { .. } => (
            "MultiSelectPicklistAttributeMetadata",
            &["OptionSet", "GlobalOptionSet"],
        ),
        ColumnKind::State => ("StateAttributeMetadata", &["OptionSet"]),
        ColumnKind::Status => ("StatusAttributeMetadata", &["OptionSet"]),
        ColumnKind::Boolean => ("BooleanAttributeMetadata", &["OptionSet"]),
        ColumnKind::Lookup { .. } => ("LookupAttributeMetadata", &["Targets"]),
        ColumnKind::DateOnly | ColumnKind::DateTime => ("DateTimeAttributeMetadata", &["Format"]),
        ColumnKind::Integer => ("IntegerAttributeMetadata", &[]),
        ColumnKind::Decimal => ("DecimalAttributeMetadata", &[]),
        ColumnKind::Money => ("MoneyAttributeMetadata", &[]),
        ColumnKind::PrimaryKey | ColumnKind::Uniqueidentifier => {
            ("UniqueIdentifierAttributeMetadata", &[])
        }
        ColumnKind::ReadOnly => ("AttributeMetadata", &[]),
    }
}

/// A column's AttributeMetadata, with the properties of its derived type (but its option
/// set, which is expanded).
pub fn attribute_full(def: &EntityDef, column: &ColumnDef) -> Map<String, Value> {
    let Value::Object(mut map) = attribute_json(def, column) else {
        return Map::new();
    };
    let type_name = match column.kind {
        ColumnKind::MultiSelect { .. } => "MultiSelectPicklistType".to_owned(),
        _ => format!("{}Type", map["AttributeType"].as_str().unwrap_or_default()),
    };
    let generated = matches!(column.kind, ColumnKind::ReadOnly | ColumnKind::PrimaryKey);
    let extra = json!({
        "AttributeTypeName": {"Value": type_name},
        "IsPrimaryId": column.logical_name == def.primary_id,
        "IsPrimaryName": column.logical_name == def.primary_name,
        "IsValidForCreate": !generated && column.kind != ColumnKind::State,
        "IsValidForUpdate": !generated,
        "IsValidForRead": true,
        "RequiredLevel": {"Value": if column.logical_name == def.primary_name { "ApplicationRequired" } else { "None" },
                          "CanBeChanged": true, "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"},
        "DisplayName": no_label(),
        "Description": no_label(),
    });
    map.extend(extra.as_object().cloned().unwrap_or_default());
    match &column.kind {
        ColumnKind::String { max_length } | ColumnKind::Memo { max_length } => {
            map.insert("MaxLength".into(), json!(max_length));
            map.insert("Format".into(), json!("Text"));
        }
        ColumnKind::Lookup { targets } => {
            map.insert("Targets".into(), json!(targets));
        }
        ColumnKind::DateOnly => {
            map.insert("Format".into(), json!("DateOnly"));
        }
        ColumnKind::DateTime => {
            map.insert("Format".into(), json!("DateAndTime"));
        }
        _ => {}
    }
    map
}

/// A choice column's option set (`None` for a column without options).
fn option_set(def: &EntityDef, column: &ColumnDef) -> Option<Value> {
    let option = |value: i64, text: &str| {
        json!({
            "Value": value, "Color": null, "IsManaged": false, "ExternalValue": null,
            "ParentValues": [], "Tag": null, "IsHidden": false, "MetadataId": null,
            "HasChanged": null,
            "Label": if text.is_empty() { no_label() } else { label(text) },
            "Description": no_label(),
        })
    };
    let listed = |options: &[ChoiceOption]| -> Vec<Value> {
        options.iter().map(|o| option(o.value, &o.label)).collect()
    };
    let (kind, options) = match &column.kind {
        ColumnKind::Picklist { options } | ColumnKind::MultiSelect { options } => {
            ("Picklist", listed(options))
        }
        ColumnKind::State => ("State", def.states.keys().map(|s| option(*s, "")).collect()),
        ColumnKind::Status => (
            "Status",
            def.states
                .iter()
                .flat_map(|(state, statuses)| {
                    statuses.iter().map(move |s| {
                        let mut o = option(*s, "");
                        o["State"] = json!(state);
                        o
                    })
                })
                .collect(),
        ),
        ColumnKind::Boolean => {
            return Some(json!({
                "MetadataId": column.metadata_id, "Name": format!("{}_{}", def.logical_name, column.logical_name),
                "IsGlobal": false, "OptionSetType": "Boolean",
                "TrueOption": option(1, "Yes"), "FalseOption": option(0, "No"),
            }));
        }
        _ => return None,
    };
    Some(json!({
        "MetadataId": column.metadata_id,
        "Name": format!("{}_{}", def.logical_name, column.logical_name),
        "IsGlobal": false,
        "IsCustomOptionSet": column.custom,
        "OptionSetType": kind,
        "Options": options,
        "DisplayName": no_label(),
        "Description": no_label(),
    }))
}

/// The query options of one metadata read (or of one expanded navigation property).
#[derive(Debug, Default)]
struct ReadOptions {
    select: Option<Vec<String>>,
    filter: Option<Expr>,
    expand: Vec<(String, ReadOptions)>,
}

/// Splits `text` at `separator`s outside parentheses and quotes.
fn split_top(text: &str, separator: char) -> Vec<&str> {
    let (mut depth, mut quoted, mut start, mut parts) = (0i32, false, 0, Vec::new());
    for (i, c) in text.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            c if c == separator && !quoted && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// The error for a property `type_name` does not have.
fn unknown_property(name: &str, type_name: &str) -> ApiResponse {
    bad_request(
        "0x80060888",
        format!(
            "Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{type_name}'."
        ),
    )
}

/// Parses options given as `(name, value)` pairs, checking property names against
/// `properties` of `type_name` and expansions against `navigation`.
fn read_options(
    pairs: &[(String, String)],
    type_name: &str,
    properties: &[&str],
    navigation: &[&str],
) -> ApiResult<ReadOptions> {
    let mut options = ReadOptions::default();
    for (name, value) in pairs {
        match name.as_str() {
            "$select" => {
                let names: Vec<String> = split_top(value, ',')
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                if let Some(bad) = names.iter().find(|n| !properties.contains(&n.as_str())) {
                    return Err(unknown_property(bad, type_name));
                }
                options.select = Some(names);
            }
            "$filter" => {
                options.filter = Some(super::metadata_filter::parse(value, properties, |name| {
                    unknown_property(name, type_name)
                })?);
            }
            "$expand" => {
                for item in split_top(value, ',') {
                    let (property, inner) = match item.find('(') {
                        Some(open) => (&item[..open], item[open + 1..].trim_end_matches(')')),
                        None => (item, ""),
                    };
                    if !navigation.contains(&property) {
                        return Err(unknown_property(property, type_name));
                    }
                    let inner: Vec<(String, String)> = split_top(inner, ';')
                        .into_iter()
                        .filter_map(|o| o.split_once('='))
                        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                        .collect();
                    let (inner_type, inner_properties): (&str, &[&str]) = match property {
                        "Attributes" => ("AttributeMetadata", ATTRIBUTE_PROPERTIES),
                        _ => (
                            "OptionSetMetadata",
                            &[
                                "Options",
                                "MetadataId",
                                "Name",
                                "IsGlobal",
                                "OptionSetType",
                                "TrueOption",
                                "FalseOption",
                            ],
                        ),
                    };
                    options.expand.push((
                        property.to_owned(),
                        read_options(&inner, inner_type, inner_properties, &[])?,
                    ));
                }
            }
            option if UNSUPPORTED_OPTIONS.contains(&option) => {
                return Err(bad_request(
                    "0x80060888",
                    format!("The query parameter {option} is not supported"),
                ));
            }
            _ => {}
        }
    }
    Ok(options)
}

/// `item` with only the selected properties (and always `MetadataId` and `@odata.type`).
fn project(mut item: Map<String, Value>, select: Option<&[String]>) -> Map<String, Value> {
    if let Some(select) = select {
        item.retain(|k, _| k == "MetadataId" || k == "@odata.type" || select.contains(k));
    }
    item
}

/// The `(a,b,Nav(c))` suffix of a context URL for `options`.
fn context_select(options: &ReadOptions) -> String {
    let mut parts: Vec<String> = options.select.clone().unwrap_or_default();
    for (property, inner) in &options.expand {
        match &inner.select {
            Some(s) => parts.push(format!("{property}({})", s.join(","))),
            None => parts.push(property.clone()),
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("({})", parts.join(","))
    }
}

/// One column as a read with `options` (and a cast, if the path had one) shows it.
fn attribute_item(
    def: &EntityDef,
    column: &ColumnDef,
    options: &ReadOptions,
) -> Map<String, Value> {
    let mut item = project(attribute_full(def, column), options.select.as_deref());
    for (property, inner) in &options.expand {
        let set = option_set(def, column).map(|set| match (set, &inner.select) {
            (Value::Object(set), select) => Value::Object(project(set, select.as_deref())),
            (other, _) => other,
        });
        item.insert(property.clone(), set.unwrap_or(Value::Null));
    }
    item
}

/// A table's attributes as a collection read shows them: `cast` keeps one derived type.
fn attribute_items(def: &EntityDef, cast: Option<&str>, options: &ReadOptions) -> Vec<Value> {
    def.columns
        .values()
        .filter(|c| cast.is_none_or(|t| derived(c).0 == t))
        .filter(|c| passes(&attribute_full(def, c), options))
        .map(|c| Value::Object(attribute_item(def, c, options)))
        .collect()
}

/// Whether a definition, with all its properties, passes the read's `$filter`.
fn passes(definition: &Map<String, Value>, options: &ReadOptions) -> bool {
    options
        .filter
        .as_ref()
        .is_none_or(|f| super::metadata_filter::matches(definition, f))
}

/// The properties and navigation properties a read of `cast` (or of any attribute) may name.
fn attribute_type(cast: Option<&str>) -> ApiResult<(String, Vec<&'static str>, Vec<&'static str>)> {
    let Some(cast) = cast else {
        return Ok((
            "AttributeMetadata".into(),
            ATTRIBUTE_PROPERTIES.to_vec(),
            Vec::new(),
        ));
    };
    let specific: &[&str] = match cast {
        "StringAttributeMetadata" | "MemoAttributeMetadata" => &["MaxLength", "Format"],
        "LookupAttributeMetadata" => &["Targets"],
        "DateTimeAttributeMetadata" => &["Format"],
        "PicklistAttributeMetadata"
        | "MultiSelectPicklistAttributeMetadata"
        | "StateAttributeMetadata"
        | "StatusAttributeMetadata"
        | "BooleanAttributeMetadata"
        | "IntegerAttributeMetadata"
        | "DecimalAttributeMetadata"
        | "MoneyAttributeMetadata"
        | "UniqueIdentifierAttributeMetadata" => &[],
        other => {
            return Err(bad_request(
                "0x80060888",
                format!(
                    "'Microsoft.Dynamics.CRM.{other}' is not a type of attribute this emulator knows."
                ),
            ));
        }
    };
    let navigation: Vec<&str> = match cast {
        "PicklistAttributeMetadata" | "MultiSelectPicklistAttributeMetadata" => {
            vec!["OptionSet", "GlobalOptionSet"]
        }
        "StateAttributeMetadata" | "StatusAttributeMetadata" | "BooleanAttributeMetadata" => {
            vec!["OptionSet"]
        }
        _ => Vec::new(),
    };
    let mut properties = ATTRIBUTE_PROPERTIES.to_vec();
    properties.extend_from_slice(specific);
    Ok((cast.to_owned(), properties, navigation))
}

/// `GET EntityDefinitions[?$select&$filter]`: every table that matches, unpaged.
pub fn list_entities<'a>(
    defs: impl Iterator<Item = &'a EntityDef>,
    ctx: &Ctx,
    request: &ApiRequest,
) -> ApiResult<ApiResponse> {
    let options = read_options(
        &parse_query(&request.query),
        "EntityMetadata",
        ENTITY_PROPERTIES,
        &["Attributes"],
    )?;
    let value: Vec<Value> = defs
        .filter(|def| passes(&entity_json(def), &options))
        .map(|def| Value::Object(entity_item(def, &options)))
        .collect();
    Ok(ApiResponse::json(
        StatusCode::OK,
        json!({
            "@odata.context": format!("{}$metadata#EntityDefinitions{}", ctx.base, context_select(&options)),
            "value": value,
        }),
    ))
}

fn entity_item(def: &EntityDef, options: &ReadOptions) -> Map<String, Value> {
    let mut item = project(entity_json(def), options.select.as_deref());
    for (property, inner) in &options.expand {
        item.insert(
            property.clone(),
            Value::Array(attribute_items(def, None, inner)),
        );
    }
    item
}

/// `GET EntityDefinitions(<key>)[?$select&$expand=Attributes]`.
pub fn one_entity(def: &EntityDef, ctx: &Ctx, request: &ApiRequest) -> ApiResult<ApiResponse> {
    let options = read_options(
        &parse_query(&request.query),
        "EntityMetadata",
        ENTITY_PROPERTIES,
        &["Attributes"],
    )?;
    if options.filter.is_some() {
        return Err(bad_request(
            "0x80060888",
            "$filter applies to collections, not to one table's definition.",
        ));
    }
    let mut item = entity_item(def, &options);
    item.insert(
        "@odata.context".into(),
        json!(format!(
            "{}$metadata#EntityDefinitions{}/$entity",
            ctx.base,
            context_select(&options)
        )),
    );
    Ok(ApiResponse::json(StatusCode::OK, Value::Object(item)))
}

/// The type a read of attributes is of (`cast`, or any attribute) and its options.
fn attribute_read(cast: Option<&str>, request: &ApiRequest) -> ApiResult<(String, ReadOptions)> {
    let (type_name, properties, navigation) = attribute_type(cast)?;
    let query = parse_query(&request.query);
    let options = read_options(&query, &type_name, &properties, &navigation)?;
    Ok((type_name, options))
}

/// The path segment of a cast (`/Microsoft.Dynamics.CRM.PicklistAttributeMetadata`), if any.
fn cast_segment(cast: Option<&str>) -> String {
    cast.map(|c| format!("/Microsoft.Dynamics.CRM.{c}"))
        .unwrap_or_default()
}

/// `GET EntityDefinitions(<key>)/Attributes[/<cast>]`: the table's columns (of that type).
pub fn attributes(
    def: &EntityDef,
    key: &str,
    cast: Option<&str>,
    ctx: &Ctx,
    request: &ApiRequest,
) -> ApiResult<ApiResponse> {
    let (_, options) = attribute_read(cast, request)?;
    let cast_segment = cast_segment(cast);
    Ok(ApiResponse::json(
        StatusCode::OK,
        json!({
            "@odata.context": format!("{}$metadata#EntityDefinitions({key})/Attributes{cast_segment}{}", ctx.base, context_select(&options)),
            "value": attribute_items(def, cast, &options),
        }),
    ))
}

/// `GET EntityDefinitions(<key>)/Attributes(<key>)[/<cast>]`: one column; a cast to a type
/// the column is not is 404, as for a missing column.
pub fn one_attribute(
    def: &EntityDef,
    column: &ColumnDef,
    cast: Option<&str>,
    ctx: &Ctx,
    request: &ApiRequest,
) -> ApiResult<ApiResponse> {
    let (type_name, options) = attribute_read(cast, request)?;
    if cast.is_some_and(|c| c != derived(column).0) {
        return Err(ApiResponse::error(
            StatusCode::NOT_FOUND,
            "0x80040217",
            format!(
                "The attribute '{}' is not a {type_name}.",
                column.logical_name
            ),
        ));
    }
    if options.filter.is_some() {
        return Err(bad_request(
            "0x80060888",
            "$filter applies to collections, not to one attribute.",
        ));
    }
    let mut item = attribute_item(def, column, &options);
    let cast_segment = cast_segment(cast);
    item.insert(
        "@odata.context".into(),
        json!(format!(
            "{}$metadata#EntityDefinitions('{}')/Attributes{cast_segment}{}/$entity",
            ctx.base,
            def.logical_name,
            context_select(&options)
        )),
    );
    Ok(ApiResponse::json(StatusCode::OK, Value::Object(item)))
}
