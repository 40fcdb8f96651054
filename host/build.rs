//! Embeds what `cosell mapping new` writes into a new project, so the binary works anywhere:
//! the scaffold templates, the contract, the JSON Schemas and generated types, the guest SDK,
//! the default mapping's rules library (and the manifests of the workspaces those two inherit
//! from) and the repository's fixtures. Generates `$OUT_DIR/embedded_files.rs`, a table of
//! `(path, bytes)` keyed by a short root name (see `ROOTS`).
//!
//! A build script rather than a directory-embedding macro for two reasons: cargo reruns it when
//! anything under the roots changes (a macro would keep a stale template), and it skips what a
//! developer's build leaves inside a template (`target/`, `node_modules/`, `.venv/`, `dist/`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// (key prefix, path relative to the repository root). Missing roots embed nothing, so the
/// binary builds before every template exists.
const ROOTS: [(&str, &str); 8] = [
    ("scaffold", "guest-mappings/scaffold"),
    ("wit", "wit/mapping.wit"),
    ("schema", "schema"),
    ("sdk", "guest-mappings/sdk"),
    ("mapping-rules", "guest-mappings/mapping-rules"),
    ("fixtures", "guest-mappings/fixtures"),
    ("workspace/root/Cargo.toml", "Cargo.toml"),
    (
        "workspace/components/Cargo.toml",
        "guest-mappings/components/Cargo.toml",
    ),
];

/// Directories never embedded: build products and local environments.
const SKIPPED_DIRS: [&str; 6] = [
    "target",
    "node_modules",
    ".venv",
    "dist",
    "__pycache__",
    ".git",
];

/// The roots whose `tests/` stay behind: the libraries' tests read the repository's fixtures
/// by relative path, so they cannot run from a vendored copy.
const WITHOUT_TESTS: [&str; 2] = ["sdk", "mapping-rules"];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let repo = manifest_dir.parent().unwrap().to_path_buf();
    let mut files = Vec::new();
    for (key, relative) in ROOTS {
        let path = repo.join(relative);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(&path, key, &mut files);
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
    files.sort();
    let mut out = String::from(
        "/// Embedded by build.rs: (key, bytes).\npub static FILES: &[(&str, &[u8])] = &[\n",
    );
    for (key, path) in &files {
        writeln!(
            out,
            "    ({key:?}, include_bytes!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let target = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("embedded_files.rs");
    std::fs::write(target, out).unwrap();
}

fn collect(path: &Path, key: &str, files: &mut Vec<(String, PathBuf)>) {
    if path.is_file() {
        files.push((key.to_owned(), path.to_path_buf()));
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = entry.path();
        let skipped = SKIPPED_DIRS.contains(&name.as_str())
            || (name == "tests" && WITHOUT_TESTS.contains(&key));
        if child.is_dir() && skipped {
            continue;
        }
        collect(&child, &format!("{key}/{name}"), files);
    }
}
