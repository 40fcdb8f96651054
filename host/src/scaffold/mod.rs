//! What `cosell mapping new` writes: a mapping project outside the repository, made from the
//! template directories embedded in the binary ([`embedded`]) with the contract, the schemas,
//! the generated types, the vendored crates (Rust) and fixtures added.
//!
//! Template mechanics: every file of `scaffold/<lang>/` (and, with `--from-default`, of the
//! overlay `scaffold/<lang>-from-default/`, whose files replace or add to the base ones) is
//! copied with the placeholders of [`Placeholders`] replaced; a `*.tmpl` file loses its suffix
//! (so cargo or npm do not pick up a template's manifest inside this repository).
//!
//! Fixtures: a fresh project keeps the template's own hand-written `fixtures/` (a template may
//! keep them per direction, `fixtures/<direction>/<case>/`: only the project's are written). With
//! `--from-default` they are replaced by the repository's cases of the direction: unchanged for
//! Rust (the project IS the default mapping, edited); for Python and JavaScript, whose step runs
//! after the default mapping in the pipeline, each case's input is the default mapping's
//! expected output, and the expected output is that same document (the template starts as a
//! step that changes nothing), so the fixtures show exactly what the author's edits change.

pub mod embedded;
mod manifest;

use crate::runtime::Direction;
use anyhow::{Context as _, Result, bail};
use std::collections::BTreeMap;

/// The languages a project can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, built for `wasm32-unknown-unknown`; the vendored SDK crate has the document types.
    Rust,
    /// Python, built into a component with componentize-py.
    Python,
    /// JavaScript, built into a component with componentize-js.
    Js,
}

impl Lang {
    /// The template directory's name.
    pub fn key(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }
}

/// What the project is.
#[derive(Debug, Clone)]
pub struct Request {
    /// kebab-case, `[a-z][a-z0-9-]*` (see [`check_name`]).
    pub name: String,
    /// The language the step is written in.
    pub lang: Lang,
    /// The direction the step maps.
    pub direction: Direction,
    /// Start from the default mapping (`--from-default`) instead of a small example.
    pub from_default: bool,
}

/// A project's files, by path relative to its directory, and notes for the user.
#[derive(Debug, Default)]
pub struct Project {
    /// The files' contents, by path relative to the project's directory.
    pub files: BTreeMap<String, Vec<u8>>,
    /// What the user should know about the project, e.g. a part this build could not write.
    pub notes: Vec<String>,
}

/// The values the templates' `{{...}}` placeholders take.
pub struct Placeholders(Vec<(&'static str, String)>);

impl Placeholders {
    /// The placeholders of `request`.
    pub fn new(request: &Request) -> Self {
        let (input, output) = match request.direction {
            Direction::PartnerCenterToCrm => ("Referral", "Opportunity"),
            Direction::CrmToPartnerCenter => ("Opportunity", "Referral"),
        };
        Self(vec![
            ("{{name}}", request.name.clone()),
            ("{{name_snake}}", request.name.replace('-', "_")),
            ("{{direction}}", request.direction.to_string()),
            ("{{input_type}}", input.to_owned()),
            ("{{output_type}}", output.to_owned()),
            ("{{cosell_version}}", env!("CARGO_PKG_VERSION").to_owned()),
        ])
    }

    /// `bytes` with every placeholder replaced (files that are not UTF-8 are copied as they are).
    pub fn apply(&self, bytes: &[u8]) -> Vec<u8> {
        match std::str::from_utf8(bytes) {
            Ok(text) => {
                let mut text = text.to_owned();
                for (placeholder, value) in &self.0 {
                    text = text.replace(placeholder, value);
                }
                text.into_bytes()
            }
            Err(_) => bytes.to_vec(),
        }
    }
}

/// Names become directories, crate, module and file names: kebab-case, a letter first.
pub fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--")
        && name.len() <= 64;
    if !well_formed {
        bail!(
            "`{name}` is not a valid mapping name: use 1-64 characters of a-z, 0-9 and single `-`, starting with a letter (e.g. `deal-size-tiers`)"
        );
    }
    Ok(())
}

/// Every file of the project `request` asks for.
pub fn plan(request: &Request) -> Result<Project> {
    check_name(&request.name)?;
    let mut project = Project::default();
    let placeholders = Placeholders::new(request);
    let lang = request.lang.key();
    let mut layers = vec![format!("scaffold/{lang}")];
    if request.from_default {
        layers.push(format!("scaffold/{lang}-from-default"));
    }
    for layer in &layers {
        let mut found = false;
        for (path, bytes) in embedded::dir(layer) {
            found = true;
            // --from-default brings the repository's fixtures instead of the template's.
            if request.from_default && path.starts_with("fixtures/") {
                continue;
            }
            let Some(path) = for_direction(path, request.direction) else {
                continue;
            };
            let path = path.strip_suffix(".tmpl").unwrap_or(&path);
            let path = String::from_utf8(placeholders.apply(path.as_bytes()))
                .expect("placeholders keep UTF-8 text UTF-8");
            project.files.insert(path, placeholders.apply(bytes));
        }
        if !found {
            bail!(
                "this cosell has no {lang} template (guest-mappings/{layer}/ did not exist when it was built); choose another --lang{}",
                if request.from_default {
                    " or leave out --from-default"
                } else {
                    ""
                }
            );
        }
    }
    add_contract(&mut project);
    add_types(request.lang, &mut project);
    if request.lang == Lang::Rust {
        vendor(
            &mut project,
            "sdk",
            "cosell-mapping",
            "workspace/components/Cargo.toml",
        )
        .context("vendoring the guest SDK (cosell-mapping)")?;
        if request.from_default {
            vendor(
                &mut project,
                "mapping-rules",
                "mapping-rules",
                "workspace/root/Cargo.toml",
            )
            .context("vendoring the default mapping's rules library")?;
        }
    }
    if request.from_default {
        add_default_fixtures(request, &mut project)?;
    }
    Ok(project)
}

/// A template's `fixtures/<direction>/<case>/...` is written as `fixtures/<case>/...` for the
/// project's direction and left out for the other, so one template carries hand-written cases
/// for both directions; every other path is kept.
fn for_direction(path: &str, direction: Direction) -> Option<String> {
    let Some(rest) = path.strip_prefix("fixtures/") else {
        return Some(path.to_owned());
    };
    for other in [Direction::PartnerCenterToCrm, Direction::CrmToPartnerCenter] {
        if let Some(case) = rest.strip_prefix(&format!("{other}/")) {
            return (other == direction).then(|| format!("fixtures/{case}"));
        }
    }
    Some(path.to_owned())
}

/// `wit/mapping.wit` and the JSON Schemas of the two documents.
fn add_contract(project: &mut Project) {
    let wit = embedded::file("wit").expect("build.rs always embeds wit/mapping.wit");
    project.files.insert("wit/mapping.wit".into(), wit.to_vec());
    let mut schemas = 0;
    for (path, bytes) in embedded::dir("schema") {
        if !path.contains('/') && path.ends_with(".schema.json") {
            project
                .files
                .insert(format!("schema/{path}"), bytes.to_vec());
            schemas += 1;
        }
    }
    if schemas == 0 {
        project.notes.push(
            "this cosell was built without the documents' JSON Schemas: schema/ is not written"
                .into(),
        );
    }
}

/// The generated types of the documents for Python (beside `app.py`) and JavaScript (beside
/// `src/mapping.js`, which imports them as `./cosell-types`).
fn add_types(lang: Lang, project: &mut Project) {
    let (name, destination) = match lang {
        Lang::Python => ("cosell_types.py", "cosell_types.py"),
        Lang::Js => ("cosell-types.d.ts", "src/cosell-types.d.ts"),
        Lang::Rust => return, // the SDK crate carries the typed documents
    };
    match embedded::file(&format!("schema/types/{name}")) {
        Some(bytes) => {
            project.files.insert(destination.into(), bytes.to_vec());
        }
        None => project.notes.push(format!(
            "this cosell was built without the generated types: {name} is not written (the step builds without it; editors lose the document types)"
        )),
    }
}

/// The crate embedded under `root`, as `vendor/<name>/`, its manifest made standalone.
fn vendor(project: &mut Project, root: &str, name: &str, workspace: &str) -> Result<()> {
    let workspace = embedded::file(workspace)
        .map(String::from_utf8_lossy)
        .with_context(|| format!("{workspace} was not embedded"))?;
    let mut found = false;
    for (path, bytes) in embedded::dir(root) {
        found = true;
        let bytes = if path == "Cargo.toml" {
            let text = manifest::standalone(&String::from_utf8_lossy(bytes), &workspace)?;
            format!(
                "# Vendored by `cosell mapping new` (cosell {}): a copy, so the project builds on its own.\n{text}",
                env!("CARGO_PKG_VERSION")
            )
            .into_bytes()
        } else {
            bytes.to_vec()
        };
        project.files.insert(format!("vendor/{name}/{path}"), bytes);
    }
    if !found {
        bail!(
            "this cosell was built without guest-mappings/{root}; build cosell from a checkout that has it"
        );
    }
    Ok(())
}

/// The repository's cases of the direction, as the project's `fixtures/` (see the module doc).
fn add_default_fixtures(request: &Request, project: &mut Project) -> Result<()> {
    let prefix = format!("fixtures/{}", request.direction);
    let mut cases: BTreeMap<&str, BTreeMap<&str, &[u8]>> = BTreeMap::new();
    for (path, bytes) in embedded::dir(&prefix) {
        if let Some((case, file)) = path.split_once('/') {
            cases.entry(case).or_default().insert(file, bytes);
        }
    }
    if cases.is_empty() {
        bail!("this cosell was built without the repository's fixtures ({prefix}/)");
    }
    for (case, files) in cases {
        let mut write = |file: &str, bytes: &[u8]| {
            project
                .files
                .insert(format!("fixtures/{case}/{file}"), bytes.to_vec());
        };
        if request.lang == Lang::Rust {
            for (file, bytes) in files {
                write(file, bytes);
            }
            continue;
        }
        // A later step sees the default's output; a refused record never reaches it.
        let Some(output) = files.get("expected.json") else {
            continue;
        };
        write("input.json", output);
        write("expected.json", output);
        for file in ["current.json", "context.json"] {
            if let Some(bytes) = files.get(file) {
                write(file, bytes);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kebab_case() {
        for good in ["a", "deal-size-tiers", "x2"] {
            check_name(good).unwrap();
        }
        for bad in ["", "Deal", "2x", "a_b", "a-", "a--b", "a b", "../x"] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_rules_library_is_vendored_without_the_workspace_or_its_tests() {
        let mut project = Project::default();
        vendor(
            &mut project,
            "mapping-rules",
            "mapping-rules",
            "workspace/root/Cargo.toml",
        )
        .unwrap();
        let manifest =
            String::from_utf8(project.files["vendor/mapping-rules/Cargo.toml"].clone()).unwrap();
        assert!(!manifest.contains("workspace"), "{manifest}");
        let parsed: toml::Table = manifest.parse().unwrap();
        assert_eq!(parsed["package"]["edition"].as_str(), Some("2024"));
        assert!(
            project
                .files
                .contains_key("vendor/mapping-rules/src/lib.rs")
        );
        assert!(
            !project.files.keys().any(|k| k.contains("/tests/")),
            "the library's tests read the repository's fixtures: not vendored"
        );
    }

    #[test]
    fn template_fixtures_per_direction_keep_only_the_projects() {
        let to_crm = Direction::PartnerCenterToCrm;
        assert_eq!(
            for_direction("fixtures/partner-center-to-crm/a/input.json", to_crm).as_deref(),
            Some("fixtures/a/input.json")
        );
        assert_eq!(
            for_direction("fixtures/crm-to-partner-center/a/input.json", to_crm),
            None
        );
        assert_eq!(
            for_direction("fixtures/a/input.json", to_crm).as_deref(),
            Some("fixtures/a/input.json")
        );
        assert_eq!(for_direction("app.py", to_crm).as_deref(), Some("app.py"));
    }

    #[test]
    fn placeholders_follow_the_direction() {
        let request = Request {
            name: "my-step".into(),
            lang: Lang::Python,
            direction: Direction::CrmToPartnerCenter,
            from_default: false,
        };
        let text = Placeholders::new(&request)
            .apply(b"{{name}} {{name_snake}} {{direction}} {{input_type}}->{{output_type}}");
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "my-step my_step crm-to-partner-center Opportunity->Referral"
        );
    }
}
