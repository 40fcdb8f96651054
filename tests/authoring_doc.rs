//! docs/authoring.md, followed verbatim: each language's walk-through (Python, JavaScript,
//! Rust), from nothing to a deployed, shadow-tested and promoted mapping, run command by command
//! in a fresh directory (the sandbox it starts included), each command's output checked against
//! what the guide shows. A guide that drifts from the product fails here. The walk-throughs use
//! the sandbox's fixed ports, as a reader does, so they run one at a time (nextest's
//! `walkthrough` group).

mod support;

use std::time::Duration;
use support::repo_root;
use support::walkthrough::{Shell, Step, matches, steps};

/// Bounds each command (the first scaffold build installs componentize-py from PyPI, and a
/// Python component takes tens of seconds to compile on 2 cores).
const COMMAND_LIMIT: Duration = Duration::from_secs(900);

fn guide() -> String {
    std::fs::read_to_string(repo_root().join("docs/authoring.md")).expect("docs/authoring.md")
}

/// Runs the walk-through `tag` of the guide in a fresh directory.
fn follow(tag: &str) {
    let steps = steps(&guide(), tag);
    assert!(
        steps
            .iter()
            .filter(|s| matches!(s, Step::Run { .. }))
            .count()
            >= 8,
        "the {tag} walk-through of docs/authoring.md has its commands in `console` blocks"
    );
    let dir = tempfile::tempdir().unwrap();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_cosell"));
    let components = repo_root().join("guest-mappings/dist");
    let guest_target = support::shared_guest_target();
    let mut shell = Shell::start(
        dir.path(),
        binary.parent().unwrap(),
        &[
            // What the guide tells a reader who installed the package or built the components.
            ("COSELL_COMPONENTS_DIR", components.to_str().unwrap()),
            ("COSELL_ADMIN_TOKEN", ""),
            // A build cache only (the Rust project's build.sh honours it): the scaffold tests
            // share it, so the guest's standard library and dependencies compile once.
            ("CARGO_TARGET_DIR", guest_target.to_str().unwrap()),
        ],
    );
    shell.follow(&steps, COMMAND_LIMIT);
}

#[test]
fn the_python_walkthrough_of_the_authoring_guide_works_as_written() {
    follow("python");
}

#[test]
fn the_javascript_walkthrough_of_the_authoring_guide_works_as_written() {
    follow("js");
}

#[test]
fn the_rust_walkthrough_of_the_authoring_guide_works_as_written() {
    follow("rust");
}

const DOC: &str = "\
Intro.

```console
$ echo one
one
$ printf 'a\\nb\\nc\\n' \\
    | cat
a
…
c
```

```console python fails
$ false
```

```console js
$ echo js only
```

```python file=app.py
print('hi')
```

```rust file=src/lib.rs rust
fn main() {}
```
";

#[test]
fn the_walkthrough_reader_takes_commands_outputs_tags_and_files() {
    let python = steps(DOC, "python");
    assert_eq!(python.len(), 4, "{python:#?}");
    assert!(
        matches!(&python[0], Step::Run { command, output, .. } if command == "echo one" && output == &["one"])
    );
    assert!(
        matches!(&python[1], Step::Run { command, .. } if command == "printf 'a\\nb\\nc\\n' \\\n    | cat")
    );
    assert!(matches!(&python[2], Step::Run { fails: true, .. }));
    assert!(
        matches!(&python[3], Step::Write { path, contents } if path == "app.py" && contents == "print('hi')\n")
    );
    assert_eq!(steps(DOC, "js").len(), 4);
    let rust = steps(DOC, "rust");
    assert!(
        matches!(rust.last(), Some(Step::Write { path, .. }) if path == "src/lib.rs"),
        "a file block tagged for one walk-through is written in that one only: {rust:#?}"
    );
}

#[test]
fn shown_output_matches_real_output_with_ellipses() {
    let shown = |s: &str| s.lines().map(str::to_owned).collect::<Vec<_>>();
    assert!(matches(&shown("a\n…\nc"), "a\nb\nc"));
    assert!(matches(&shown("fuel … of 100"), "x\nfuel 12 of 100"));
    assert!(
        !matches(&shown("a\nc"), "a\nb\nc"),
        "shown lines run together"
    );
    assert!(!matches(&shown("c\n…\na"), "a\nb\nc"), "in order");
    assert!(!matches(&shown("fuel … of 100"), "fuel 12 of 1000"));
}

#[test]
fn the_shell_keeps_directory_and_variables_between_commands() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let mut shell = Shell::start(dir.path(), dir.path(), &[]);
    let steps = steps(
        "```console\n$ cd sub && export X=42\n$ echo \"$X in $(basename $PWD)\"\n42 in sub\n$ sh -c 'echo oops >&2; exit 3'\noops\n```\n",
        "any",
    );
    shell.follow(&steps[..2], Duration::from_secs(10));
    let (status, printed) = shell.run("sh -c 'echo oops >&2; exit 3'", Duration::from_secs(10));
    assert_eq!((status, printed.as_str()), (3, "oops"));
}
