//! No import cycles between the rooms of the code: a reader (or a change) can take each module
//! with only what lies below it.
//!
//! For each checked folder, every path a source file names (`crate::a::b`, `super::x`,
//! `use crate::{a, b::c}`, in code and in its tests) is resolved to the child module of that
//! folder it reaches; the children and those references form a graph, and the test fails with
//! every cycle in it, each edge with the files that make it. Run it alone with
//!
//! ```text
//! cargo test -p cosell --test module_cycles
//! ```
//!
//! and add `-- --nocapture` to print each folder's graph, one line per module and what it uses.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The folders whose child modules must not import each other in a cycle, as (crate source
/// root, the folder's module path within that crate).
const CHECKED: &[(&str, &[&str])] = &[
    ("host/src", &[]),
    ("emulators/src", &[]),
    ("emulators/src", &["dataverse"]),
    ("emulators/src", &["partner_center"]),
];

/// A module's dependencies on its siblings: sibling → the files that name it.
type Uses = BTreeMap<String, BTreeSet<String>>;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is in the repository")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, with its module path relative to the crate root `root`.
fn sources(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<String>)>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((path.clone(), module_path(root, &path)));
        }
    }
}

/// The module a file is: `a/b.rs` and `a/b/mod.rs` are `a::b`; `lib.rs` and `main.rs` the root.
fn module_path(root: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(root).expect("under the root");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The source without comments, so a path named in a doc comment is not an import.
fn code_of(source: &str) -> String {
    source
        .lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every absolute module path the code names through `crate::` or `super::`, with `use` trees
/// (`crate::{a, b::{c, d}}`) expanded. `module` is the file's own module path.
fn named_paths(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let bytes: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let starts_word = at == 0 || !is_ident(bytes[at - 1]) && bytes[at - 1] != ':';
        let rest: String = bytes[at..bytes.len().min(at + 7)].iter().collect();
        if starts_word && (rest.starts_with("crate::") || rest.starts_with("super::")) {
            let mut base: Vec<String> = module.to_vec();
            let mut cursor = at;
            if rest.starts_with("crate::") {
                base.clear();
                cursor += "crate::".len();
            } else {
                while bytes[cursor..].starts_with(&['s', 'u', 'p', 'e', 'r', ':', ':']) {
                    base.pop();
                    cursor += "super::".len();
                }
            }
            cursor = tree(&bytes, cursor, base, &mut found);
            at = cursor.max(at + 1);
        } else {
            at += 1;
        }
    }
    found
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Reads a path or a brace group at `at` below `base`, pushing each full path; answers where
/// it ended.
fn tree(
    code: &[char],
    mut at: usize,
    mut base: Vec<String>,
    found: &mut Vec<Vec<String>>,
) -> usize {
    loop {
        while at < code.len() && code[at].is_whitespace() {
            at += 1;
        }
        if at < code.len() && code[at] == '{' {
            at += 1;
            loop {
                at = tree(code, at, base.clone(), found);
                while at < code.len() && code[at].is_whitespace() {
                    at += 1;
                }
                match code.get(at) {
                    Some(',') => at += 1,
                    Some('}') => return at + 1,
                    _ => return at,
                }
                while at < code.len() && code[at].is_whitespace() {
                    at += 1;
                }
                if code.get(at) == Some(&'}') {
                    return at + 1;
                }
            }
        }
        let start = at;
        while at < code.len() && is_ident(code[at]) {
            at += 1;
        }
        if start == at {
            found.push(base);
            return at;
        }
        let segment: String = code[start..at].iter().collect();
        if segment != "self" {
            base.push(segment);
        }
        if code[at..].starts_with(&[':', ':']) {
            at += 2;
        } else {
            found.push(base);
            return at;
        }
    }
}

/// The graph of `folder`'s child modules: child → siblings it names → files.
fn graph(root: &Path, folder: &[String]) -> BTreeMap<String, Uses> {
    let dir = folder
        .iter()
        .fold(root.to_path_buf(), |dir, part| dir.join(part));
    let mut files = Vec::new();
    sources(root, &dir, &mut files);
    let mut graph: BTreeMap<String, Uses> = BTreeMap::new();
    for (file, module) in &files {
        let Some(child) = module.get(folder.len()) else {
            continue; // the folder's own mod.rs: the parent, not a room
        };
        graph.entry(child.clone()).or_default();
        let code = code_of(&fs::read_to_string(file).expect("a readable source file"));
        for path in named_paths(&code, module) {
            let Some(reached) = path.strip_prefix(folder).and_then(|p| p.first()) else {
                continue;
            };
            if reached != child {
                let shown = file.strip_prefix(repository()).unwrap_or(file);
                graph
                    .entry(child.clone())
                    .or_default()
                    .entry(reached.clone())
                    .or_default()
                    .insert(shown.display().to_string());
            }
        }
    }
    // A name that is not a child module (an item of the folder's mod.rs) is no room.
    let rooms: BTreeSet<String> = graph.keys().cloned().collect();
    for uses in graph.values_mut() {
        uses.retain(|to, _| rooms.contains(to));
    }
    graph
}

/// The strongly connected components of more than one module (Tarjan's algorithm).
fn cycles(graph: &BTreeMap<String, Uses>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, Uses>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(walk: &mut Walk<'a>, node: &'a str) {
        let n = walk.index.len();
        walk.index.insert(node, n);
        walk.low.insert(node, n);
        walk.stack.push(node);
        for next in walk.graph[node].keys() {
            let next = next.as_str();
            if !walk.index.contains_key(next) {
                visit(walk, next);
                let low = walk.low[node].min(walk.low[next]);
                walk.low.insert(node, low);
            } else if walk.stack.contains(&next) {
                let low = walk.low[node].min(walk.index[next]);
                walk.low.insert(node, low);
            }
        }
        if walk.low[node] == walk.index[node] {
            let at = walk
                .stack
                .iter()
                .rposition(|m| *m == node)
                .expect("on the stack");
            let component: Vec<String> = walk.stack.drain(at..).map(str::to_owned).collect();
            if component.len() > 1 {
                walk.found.push(component);
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            visit(&mut walk, node);
        }
    }
    walk.found
}

/// A cycle as the edges inside it, each with the files that make it.
fn describe(graph: &BTreeMap<String, Uses>, component: &[String]) -> String {
    let mut text = format!("cycle among {}:\n", component.join(", "));
    for from in component {
        for (to, files) in &graph[from] {
            if component.contains(to) {
                let files: Vec<&str> = files.iter().map(String::as_str).collect();
                text += &format!("  {from} -> {to}  ({})\n", files.join(", "));
            }
        }
    }
    text
}

#[test]
fn no_module_imports_another_that_imports_it_back() {
    let repository = repository();
    let mut failures = String::new();
    for (root, folder) in CHECKED {
        let folder: Vec<String> = folder.iter().map(|s| (*s).to_owned()).collect();
        let graph = graph(&repository.join(root), &folder);
        println!("{root}/{}:", folder.join("/"));
        for (module, uses) in &graph {
            let names: Vec<&str> = uses.keys().map(String::as_str).collect();
            println!("  {module} -> {}", names.join(", "));
        }
        for component in cycles(&graph) {
            failures += &format!(
                "in {root}/{}: {}",
                folder.join("/"),
                describe(&graph, &component)
            );
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

#[test]
fn the_checker_sees_use_trees_super_paths_and_cycles() {
    let module: Vec<String> = vec!["sync".into(), "worker".into()];
    let code = code_of(
        "use crate::{store::{Side, queue}, sinks};\n\
         use super::super::sources::x; // crate::admin in a comment\n\
         let a = crate::config::load();",
    );
    let mut named: Vec<String> = named_paths(&code, &module)
        .into_iter()
        .map(|p| p.join("::"))
        .collect();
    named.sort();
    assert_eq!(
        named,
        [
            "config::load",
            "sinks",
            "sources::x",
            "store::Side",
            "store::queue"
        ]
    );
    let mut graph: BTreeMap<String, Uses> = BTreeMap::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        graph
            .entry(from.into())
            .or_default()
            .insert(to.into(), BTreeSet::new());
        graph.entry(to.into()).or_default();
    }
    let found = cycles(&graph);
    assert_eq!(found.len(), 1, "{found:?}");
    let mut members = found[0].clone();
    members.sort();
    assert_eq!(members, ["a", "b", "c"]);
}

/// The engine's rule (ARCHITECTURE.md): `sync/` (the workers, both directions, backfill)
/// reaches Partner Center and Dataverse only through the sinks, which turn the services'
/// errors into `SinkError` and their requests into operations on records. A path into
/// `connections` from any file under `host/src/sync/` (a `use`, a fully qualified path in
/// code, a `super::` path that resolves there) breaks it; comments may still name it.
#[test]
fn the_engine_reaches_the_services_only_through_the_sinks() {
    let root = repository().join("host/src");
    let mut files = Vec::new();
    sources(&root, &root.join("sync"), &mut files);
    assert!(!files.is_empty(), "host/src/sync has sources");
    let mut failures = String::new();
    for (file, module) in &files {
        let code = code_of(&fs::read_to_string(file).expect("a readable source file"));
        for path in named_paths(&code, module) {
            if path.first().map(String::as_str) == Some("connections") {
                let shown = file.strip_prefix(repository()).unwrap_or(file);
                failures += &format!("  {}: crate::{}\n", shown.display(), path.join("::"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "the engine reaches connections directly, not through the sinks:\n{failures}"
    );
}
