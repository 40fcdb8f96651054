//! The documents mapping steps exchange: the JSON Schemas in `schema/`, the Python and
//! TypeScript types generated from them, the SDK's typed `Referral` and `Opportunity` and the
//! SDK's copy of the contract, all checked against each other and against every fixture of
//! the repository (the default mapping's cases, the scaffolds' and the examples' own).
//!
//! Fixtures are case directories (`<case>/input.json`, optional `current.json`,
//! `expected.json`, `context.json`); a case's direction is `context.json`'s `direction`, or the
//! name of the `partner-center-to-crm` / `crm-to-partner-center` folder it sits in. The input
//! of partner-center-to-crm is a referral and its current and expected documents are
//! opportunities; the reverse for crm-to-partner-center.
//!
//! Regenerate the committed types with `COSELL_UPDATE_TYPES=1 cargo test -p cosell --test schemas`.

use cosell::schema_types;
use cosell_mapping::{Opportunity, Referral};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn committed_types_are_generated_from_the_schemas() {
    let update = std::env::var_os("COSELL_UPDATE_TYPES").is_some();
    for (path, generated) in [
        (
            schema_types::PYTHON_TYPES_PATH,
            schema_types::python().unwrap(),
        ),
        (
            schema_types::TYPESCRIPT_TYPES_PATH,
            schema_types::typescript().unwrap(),
        ),
    ] {
        let path = repo().join(path);
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale: regenerate it with `COSELL_UPDATE_TYPES=1 cargo test -p cosell --test schemas`",
            path.display()
        );
    }
}

#[test]
fn the_sdk_carries_the_contract_unchanged() {
    let contract = std::fs::read_to_string(repo().join("wit/mapping.wit")).unwrap();
    let sdk_copy =
        std::fs::read_to_string(repo().join("guest-mappings/sdk/wit/mapping.wit")).unwrap();
    assert!(
        contract == sdk_copy,
        "guest-mappings/sdk/wit/mapping.wit differs from wit/mapping.wit: copy the contract into the SDK"
    );
}

/// Which schema a document must follow.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Referral,
    Opportunity,
}

/// One fixture document: where it is and what it must be.
struct Document {
    path: PathBuf,
    role: Role,
    value: Value,
}

/// Every document of every fixture case under the repository's fixture roots.
fn fixture_documents() -> Vec<Document> {
    let mut roots = vec![repo().join("guest-mappings/fixtures")];
    for parent in ["guest-mappings/scaffold", "guest-mappings/examples"] {
        for entry in std::fs::read_dir(repo().join(parent)).into_iter().flatten() {
            roots.push(entry.unwrap().path().join("fixtures"));
        }
    }
    let mut cases = Vec::new();
    for root in roots {
        find_cases(&root, &mut cases);
    }
    let mut documents = Vec::new();
    for case in cases {
        // A template's case without a direction serves either direction (the project's
        // placeholders pick the types), so its documents must follow both schemas.
        let (inputs, outputs): (&[Role], &[Role]) = match direction_of(&case).as_deref() {
            Some("partner-center-to-crm") => (&[Role::Referral], &[Role::Opportunity]),
            Some("crm-to-partner-center") => (&[Role::Opportunity], &[Role::Referral]),
            None if case.starts_with(repo().join("guest-mappings/scaffold")) => (
                &[Role::Referral, Role::Opportunity],
                &[Role::Referral, Role::Opportunity],
            ),
            other => panic!(
                "{}: no known direction ({other:?}): give it a context.json or a direction folder",
                case.display()
            ),
        };
        for (file, roles) in [
            ("input.json", inputs),
            ("current.json", outputs),
            ("expected.json", outputs),
        ] {
            let path = case.join(file);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let value: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            for &role in roles {
                documents.push(Document {
                    path: path.clone(),
                    role,
                    value: value.clone(),
                });
            }
        }
    }
    documents
}

fn find_cases(dir: &Path, cases: &mut Vec<PathBuf>) {
    if dir.join("input.json").is_file() {
        cases.push(dir.to_path_buf());
        return;
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for entry in entries.into_iter().filter(|p| p.is_dir()) {
        find_cases(&entry, cases);
    }
}

/// The case's direction: its `context.json`'s, else the direction folder it is in.
fn direction_of(case: &Path) -> Option<String> {
    if let Ok(text) = std::fs::read_to_string(case.join("context.json")) {
        let context: Value = serde_json::from_str(&text).unwrap();
        if let Some(direction) = context["direction"].as_str() {
            return Some(direction.to_owned());
        }
    }
    case.ancestors()
        .filter_map(|dir| dir.file_name()?.to_str())
        .find(|name| matches!(*name, "partner-center-to-crm" | "crm-to-partner-center"))
        .map(str::to_owned)
}

fn schema(role: Role) -> Value {
    serde_json::from_str(match role {
        Role::Referral => schema_types::REFERRAL_SCHEMA,
        Role::Opportunity => schema_types::OPPORTUNITY_SCHEMA,
    })
    .unwrap()
}

/// Validates `value` against the subset of JSON Schema the two schemas use (`type`,
/// `properties`, `items`, `anyOf`, `$ref` to `#/$defs`); every object is open. Returns the
/// JSON pointers and reasons of the mismatches.
fn validate(root: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference
            .strip_prefix("#/$defs/")
            .expect("only #/$defs references");
        return validate(root, &root["$defs"][name], value, at, errors);
    }
    if let Some(options) = schema.get("anyOf").and_then(Value::as_array) {
        let fits = options.iter().any(|option| {
            let mut inner = Vec::new();
            validate(root, option, value, at, &mut inner);
            inner.is_empty()
        });
        if !fits {
            errors.push(format!("{at}: {value} matches none of the allowed shapes"));
        }
        return;
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => panic!("bad 'type' in the schema at {at}"),
        };
        let fits = types.iter().any(|ty| match *ty {
            "string" => value.is_string(),
            "number" => value.is_number(),
            "integer" => value.is_i64() || value.is_u64(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            "object" => value.is_object(),
            "array" => value.is_array(),
            other => panic!("unsupported type '{other}' in the schema at {at}"),
        });
        if !fits {
            errors.push(format!("{at}: {value} is not {}", types.join(" or ")));
            return;
        }
    }
    if let (Some(properties), Some(object)) = (
        schema.get("properties").and_then(Value::as_object),
        value.as_object(),
    ) {
        for (name, property) in properties {
            if let Some(field) = object.get(name) {
                validate(root, property, field, &format!("{at}/{name}"), errors);
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            validate(root, items, item, &format!("{at}/{i}"), errors);
        }
    }
}

fn schema_errors(role: Role, value: &Value) -> Vec<String> {
    let schema = schema(role);
    let mut errors = Vec::new();
    validate(&schema, &schema, value, "", &mut errors);
    errors
}

#[test]
fn every_fixture_document_follows_the_schema_of_its_role() {
    let documents = fixture_documents();
    for role in [Role::Referral, Role::Opportunity] {
        assert!(
            documents.iter().any(|d| d.role == role),
            "no {role:?} documents found among the fixtures: is the case-directory layout in place?"
        );
    }
    let mut failures = Vec::new();
    for document in &documents {
        for error in schema_errors(document.role, &document.value) {
            failures.push(format!(
                "{} ({:?}): {error}",
                document.path.display(),
                document.role
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "fixture documents that break their schema:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_validator_reports_a_document_of_the_wrong_shape() {
    let bad = serde_json::json!({
        "name": 7,
        "customerProfile": {"address": {"country": ["NL"]}},
        "team": [{"email": false}],
        "links": {"anything": "goes"}
    });
    assert_eq!(
        schema_errors(Role::Referral, &bad),
        [
            "/customerProfile: {\"address\":{\"country\":[\"NL\"]}} matches none of the allowed shapes",
            "/name: 7 is not string or null",
            "/team/0/email: false is not string or null",
        ]
    );
    assert_eq!(
        schema_errors(Role::Opportunity, &serde_json::json!({"statecode": 1.5})),
        ["/statecode: 1.5 is not integer or null"]
    );
}

#[test]
fn every_fixture_document_survives_the_sdk_types_unchanged() {
    let documents = fixture_documents();
    assert!(!documents.is_empty(), "no fixture documents found");
    let mut failures = Vec::new();
    for document in &documents {
        let again = match document.role {
            Role::Referral => serde_json::from_value::<Referral>(document.value.clone())
                .map(|typed| serde_json::to_value(typed).unwrap()),
            Role::Opportunity => serde_json::from_value::<Opportunity>(document.value.clone())
                .map(|typed| serde_json::to_value(typed).unwrap()),
        };
        match again {
            Ok(again) if again == document.value => {}
            Ok(again) => failures.push(format!(
                "{}: changed by a round trip through {:?}:\n{}",
                document.path.display(),
                document.role,
                cosell::pipeline::output_diff::diff(&document.value, &again)
                    .map(|d| d.text)
                    .unwrap_or_default()
            )),
            Err(error) => failures.push(format!(
                "{}: does not parse as {:?}: {error}",
                document.path.display(),
                document.role
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
