//! Makes a workspace member's `Cargo.toml` stand alone, for crates vendored into a project
//! outside the repository: every `key.workspace = true` (package fields, dependencies, lints)
//! is replaced by the value the workspace defines, so cargo builds the copy without the
//! repository's workspace.

use anyhow::{Context as _, Result, bail};
use toml::{Table, Value};

/// `member` with its workspace inheritance resolved from `workspace` (both manifests' text).
pub(super) fn standalone(member: &str, workspace: &str) -> Result<String> {
    let mut manifest: Table = member.parse().context("the vendored crate's Cargo.toml")?;
    let workspace: Table = workspace.parse().context("the workspace's Cargo.toml")?;
    let section = |name: &str| -> Table {
        workspace
            .get("workspace")
            .and_then(|w| w.get(name))
            .and_then(Value::as_table)
            .cloned()
            .unwrap_or_default()
    };
    if let Some(Value::Table(package)) = manifest.get_mut("package") {
        let defined = section("package");
        for (key, value) in package.iter_mut() {
            if inherits(value) {
                *value = defined
                    .get(key)
                    .cloned()
                    .with_context(|| format!("the workspace defines no package.{key}"))?;
            }
        }
    }
    let defined = section("dependencies");
    for kind in ["dependencies", "dev-dependencies", "build-dependencies"] {
        if let Some(Value::Table(dependencies)) = manifest.get_mut(kind) {
            for (name, value) in dependencies.iter_mut() {
                if inherits(value) {
                    *value = inherited_dependency(name, value, &defined)?;
                }
            }
        }
    }
    if manifest.get("lints").is_some_and(inherits) {
        manifest.insert("lints".into(), Value::Table(section("lints")));
    }
    Ok(toml::to_string(&manifest)?)
}

fn inherits(value: &Value) -> bool {
    value.get("workspace").and_then(Value::as_bool) == Some(true)
}

/// The workspace's definition of a dependency, with the member's own keys (features,
/// optional) added as cargo does.
fn inherited_dependency(name: &str, member: &Value, defined: &Table) -> Result<Value> {
    let mut spec = match defined.get(name) {
        Some(Value::String(version)) => {
            let mut table = Table::new();
            table.insert("version".into(), Value::String(version.clone()));
            table
        }
        Some(Value::Table(table)) => table.clone(),
        _ => bail!("the workspace defines no dependency `{name}`"),
    };
    if spec.contains_key("path") {
        bail!("dependency `{name}` is a path in the workspace; it cannot be vendored on its own");
    }
    for (key, value) in member.as_table().into_iter().flatten() {
        match key.as_str() {
            "workspace" => {}
            "features" => {
                let mut features = spec
                    .get("features")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                features.extend(value.as_array().cloned().unwrap_or_default());
                spec.insert(key.clone(), Value::Array(features));
            }
            _ => {
                spec.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(Value::Table(spec))
}

#[cfg(test)]
mod tests {
    #[test]
    fn inherited_fields_and_dependencies_are_resolved() {
        let member = r#"
            [package]
            name = "x"
            edition.workspace = true
            [dependencies]
            serde_json = { workspace = true, features = ["alloc"] }
            wit-bindgen.workspace = true
        "#;
        let workspace = r#"
            [workspace.package]
            edition = "2024"
            [workspace.dependencies]
            serde_json = { version = "1", default-features = false, features = ["std"] }
            wit-bindgen = "=0.61.1"
        "#;
        let out: toml::Table = super::standalone(member, workspace)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(out["package"]["edition"].as_str(), Some("2024"));
        let json = &out["dependencies"]["serde_json"];
        assert_eq!(json["version"].as_str(), Some("1"));
        assert_eq!(json["features"].as_array().unwrap().len(), 2);
        assert!(json.get("workspace").is_none());
        assert_eq!(
            out["dependencies"]["wit-bindgen"]["version"].as_str(),
            Some("=0.61.1")
        );
    }
}
