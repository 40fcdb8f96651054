//! The JSON Schemas of the documents mapping steps exchange (`schema/referral.schema.json`,
//! `schema/opportunity.schema.json`) and the Python and TypeScript types generated from them
//! (`schema/types/cosell_types.py`, `schema/types/cosell-types.d.ts`), which the Python and
//! JavaScript scaffolds carry.
//!
//! The generator understands the small subset of JSON Schema the two schemas use: `type` (one
//! or a list), `properties`, `items`, `anyOf`, `$ref` to `#/$defs/<Name>` and `description`.
//! Every object is open (`additionalProperties`), so the Python types are `total=False`
//! TypedDicts and the TypeScript interfaces have an index signature. Anything else is an error
//! that names where it is, so a schema change cannot silently produce wrong types.
//!
//! The committed files are checked by `host/tests/schemas.rs`; regenerate them with
//! `COSELL_UPDATE_TYPES=1 cargo test -p cosell --test schemas`.

use anyhow::{Context as _, Result, bail};
use serde_json::{Map, Value};

/// The referral schema (the input of a partner-center-to-crm pipeline).
pub const REFERRAL_SCHEMA: &str = include_str!("../../schema/referral.schema.json");
/// The opportunity schema (the input of a crm-to-partner-center pipeline).
pub const OPPORTUNITY_SCHEMA: &str = include_str!("../../schema/opportunity.schema.json");

/// Where the generated files live, relative to the repository root.
pub const PYTHON_TYPES_PATH: &str = "schema/types/cosell_types.py";
/// Where the generated files live, relative to the repository root.
pub const TYPESCRIPT_TYPES_PATH: &str = "schema/types/cosell-types.d.ts";

const HEADER: &str = "Generated from schema/referral.schema.json and schema/opportunity.schema.json by \
cosell (host/src/schema_types.rs). Do not edit: change the schemas and regenerate with \
`COSELL_UPDATE_TYPES=1 cargo test -p cosell --test schemas`.";

/// A type as the generator sees it.
#[derive(Debug, Clone, PartialEq)]
enum Ty {
    String,
    Number,
    Integer,
    Boolean,
    Null,
    /// A JSON object without a schema of its own (any keys, any values).
    Object,
    Array(Box<Ty>),
    /// A `$defs` entry or a top-level schema, by its title.
    Named(String),
    Union(Vec<Ty>),
}

/// One object type: a schema's top level or a `$defs` entry.
struct Interface {
    name: String,
    description: String,
    fields: Vec<(String, String, Ty)>, // (name, description, type)
}

/// The object types of both schemas, top-level types first, then their `$defs` in order.
fn interfaces() -> Result<Vec<Interface>> {
    let mut out = Vec::new();
    for (file, text) in [
        ("referral.schema.json", REFERRAL_SCHEMA),
        ("opportunity.schema.json", OPPORTUNITY_SCHEMA),
    ] {
        let schema: Value =
            serde_json::from_str(text).with_context(|| format!("schema/{file} is not JSON"))?;
        let name = str_at(&schema, "title", file)?;
        out.push(interface(name, &schema, file)?);
        if let Some(defs) = schema.get("$defs").and_then(Value::as_object) {
            for (name, def) in defs {
                out.push(interface(name, def, &format!("{file}#/$defs/{name}"))?);
            }
        }
    }
    Ok(out)
}

fn str_at<'a>(schema: &'a Value, key: &str, at: &str) -> Result<&'a str> {
    schema
        .get(key)
        .and_then(Value::as_str)
        .with_context(|| format!("{at}: '{key}' must be a string"))
}

fn interface(name: &str, schema: &Value, at: &str) -> Result<Interface> {
    let description = str_at(schema, "description", at)?.to_owned();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .with_context(|| format!("{at}: an object type needs 'properties'"))?;
    let fields = properties
        .iter()
        .map(|(field, property)| {
            let at = format!("{at}/properties/{field}");
            let description = str_at(property, "description", &at)?.to_owned();
            Ok((field.clone(), description, ty(property, &at)?))
        })
        .collect::<Result<_>>()?;
    Ok(Interface {
        name: name.to_owned(),
        description,
        fields,
    })
}

fn ty(schema: &Value, at: &str) -> Result<Ty> {
    let Some(schema) = schema.as_object() else {
        bail!("{at}: a schema must be an object");
    };
    if let Some(reference) = schema.get("$ref") {
        let name = reference
            .as_str()
            .and_then(|r| r.strip_prefix("#/$defs/"))
            .with_context(|| format!("{at}: only '$ref': '#/$defs/<Name>' is supported"))?;
        return Ok(Ty::Named(name.to_owned()));
    }
    if let Some(any_of) = schema.get("anyOf") {
        let options = any_of
            .as_array()
            .with_context(|| format!("{at}: 'anyOf' must be a list"))?;
        return options
            .iter()
            .enumerate()
            .map(|(i, option)| ty(option, &format!("{at}/anyOf/{i}")))
            .collect::<Result<_>>()
            .map(Ty::Union);
    }
    match schema.get("type") {
        Some(Value::String(name)) => primitive(name, schema, at),
        Some(Value::Array(names)) => names
            .iter()
            .map(|name| match name.as_str() {
                Some(name) => primitive(name, schema, at),
                None => bail!("{at}: 'type' lists strings"),
            })
            .collect::<Result<_>>()
            .map(Ty::Union),
        _ => bail!("{at}: needs 'type', 'anyOf' or '$ref'"),
    }
}

fn primitive(name: &str, schema: &Map<String, Value>, at: &str) -> Result<Ty> {
    Ok(match name {
        "string" => Ty::String,
        "number" => Ty::Number,
        "integer" => Ty::Integer,
        "boolean" => Ty::Boolean,
        "null" => Ty::Null,
        "object" => Ty::Object,
        "array" => {
            let items = schema
                .get("items")
                .with_context(|| format!("{at}: an array needs 'items'"))?;
            Ty::Array(Box::new(ty(items, &format!("{at}/items"))?))
        }
        other => bail!("{at}: unsupported type '{other}'"),
    })
}

/// `schema/types/cosell_types.py`: one `TypedDict` (`total=False`) per object type.
pub fn python() -> Result<String> {
    let mut out = format!(
        "\"\"\"Typed documents of cosell mapping steps.\n\n{}\n\nEvery object may carry fields \
         that are not listed (CRMs are customised);\na TypedDict does not forbid them.\n\"\"\"\n\n\
         from __future__ import annotations\n\nfrom typing import Any, TypedDict\n",
        wrap(HEADER, 96, "")
    );
    for interface in interfaces()? {
        out.push_str(&format!(
            "\n\nclass {}(TypedDict, total=False):\n    \"\"\"{}\"\"\"\n",
            interface.name,
            wrap(&interface.description, 92, "    ")
        ));
        for (field, description, ty) in &interface.fields {
            out.push_str(&format!(
                "\n    {field}: {}\n    \"\"\"{}\"\"\"\n",
                python_ty(ty),
                wrap(description, 92, "    ")
            ));
        }
    }
    Ok(out)
}

fn python_ty(ty: &Ty) -> String {
    match ty {
        Ty::String => "str".into(),
        Ty::Number => "float".into(),
        Ty::Integer => "int".into(),
        Ty::Boolean => "bool".into(),
        Ty::Null => "None".into(),
        Ty::Object => "dict[str, Any]".into(),
        Ty::Array(item) => format!("list[{}]", python_ty(item)),
        Ty::Named(name) => name.clone(),
        Ty::Union(options) => options
            .iter()
            .map(python_ty)
            .collect::<Vec<_>>()
            .join(" | "),
    }
}

/// `schema/types/cosell-types.d.ts`: one exported interface per object type, each with an
/// index signature for the fields it does not list.
pub fn typescript() -> Result<String> {
    let mut out = format!(
        "/**\n * Typed documents of cosell mapping steps.\n *\n{}\n */\n",
        wrap(HEADER, 96, " * ")
    );
    for interface in interfaces()? {
        out.push_str(&format!(
            "\n/**\n{}\n */\nexport interface {} {{\n",
            wrap(&interface.description, 96, " * "),
            interface.name
        ));
        for (field, description, ty) in &interface.fields {
            out.push_str(&format!(
                "  /** {} */\n  {field}?: {};\n",
                description.replace("*/", "*\\/"),
                typescript_ty(ty)
            ));
        }
        out.push_str(
            "  /** Fields this type does not list (custom columns, annotations, ...). */\n",
        );
        out.push_str("  [field: string]: unknown;\n}\n");
    }
    Ok(out)
}

fn typescript_ty(ty: &Ty) -> String {
    match ty {
        Ty::String => "string".into(),
        Ty::Number | Ty::Integer => "number".into(),
        Ty::Boolean => "boolean".into(),
        Ty::Null => "null".into(),
        Ty::Object => "Record<string, unknown>".into(),
        Ty::Array(item) => match item.as_ref() {
            Ty::Union(_) => format!("({})[]", typescript_ty(item)),
            _ => format!("{}[]", typescript_ty(item)),
        },
        Ty::Named(name) => name.clone(),
        Ty::Union(options) => options
            .iter()
            .map(typescript_ty)
            .collect::<Vec<_>>()
            .join(" | "),
    }
}

/// Wraps `text` at `width` columns, each line after the first starting with `indent` (the
/// first line is the caller's), or every line when `indent` is a comment prefix.
fn wrap(text: &str, width: usize, indent: &str) -> String {
    let comment = indent.trim() == "*";
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    if comment {
        lines
            .iter()
            .map(|l| format!("{indent}{l}").trim_end().to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        lines.join(&format!("\n{indent}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nullable_references_and_arrays_become_unions() {
        let schema = serde_json::json!({"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}]});
        let ty = ty(&schema, "x").unwrap();
        assert_eq!(python_ty(&ty), "Address | None");
        let list =
            serde_json::json!({"type": ["array", "null"], "items": {"type": ["string", "null"]}});
        assert_eq!(
            typescript_ty(&super::ty(&list, "x").unwrap()),
            "(string | null)[] | null"
        );
    }

    #[test]
    fn an_unsupported_construct_names_its_place() {
        let error = ty(
            &serde_json::json!({"oneOf": []}),
            "referral.schema.json#/properties/x",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            error,
            "referral.schema.json#/properties/x: needs 'type', 'anyOf' or '$ref'"
        );
    }
}
