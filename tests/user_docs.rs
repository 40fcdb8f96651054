//! The user documentation against the code: every configuration key the host accepts and
//! every environment variable it reads is in docs/configuration.md (and the doc names no key
//! that no longer exists), and no user document points outside the repository or at an issue.
//!
//! The keys come from the configuration types themselves: every section refuses unknown keys
//! (`deny_unknown_fields`), and serde's refusal lists the keys it expects, so probing each
//! section with an unknown key reads the accepted ones off the code, nested sections included.

use cosell::config::HostConfig;
use std::collections::BTreeSet;
use std::path::Path;

const PROBE: &str = "zz_not_a_key";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The keys serde expects where `toml` put the unknown [`PROBE`], or `None` when it took it.
fn expected_keys(toml: &str) -> Option<Vec<String>> {
    let error = toml::from_str::<HostConfig>(toml).err()?.to_string();
    if !error.contains(&format!("unknown field `{PROBE}`")) {
        return None;
    }
    let list = error
        .split("expected one of")
        .nth(1)
        .or_else(|| error.split("expected").nth(1))?;
    Some(
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect(),
    )
}

/// Every key path (`section.key`) the configuration accepts, found by probing.
fn config_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut sections = vec![String::new()];
    while let Some(section) = sections.pop() {
        let probes = match section.as_str() {
            "" => vec![format!("{PROBE} = 1")],
            s => vec![
                format!("[{s}]\n{PROBE} = 1"),
                format!("[[{s}]]\n{PROBE} = 1"),
            ],
        };
        let Some(found) = probes.iter().find_map(|p| expected_keys(p)) else {
            continue;
        };
        for key in found {
            let path = match section.as_str() {
                "" => key.clone(),
                s => format!("{s}.{key}"),
            };
            sections.push(path.clone());
            keys.insert(path);
        }
    }
    // A key that turned out to be a section is listed by its own keys.
    let sections: BTreeSet<String> = keys
        .iter()
        .filter(|k| keys.iter().any(|other| other.starts_with(&format!("{k}."))))
        .cloned()
        .collect();
    keys.difference(&sections)
        // A secret (`{ env = … }` or `{ file = … }`) is documented once, by its own key.
        .map(
            |k| match k.strip_suffix(".env").or_else(|| k.strip_suffix(".file")) {
                Some(secret) => secret.to_owned(),
                None => k.clone(),
            },
        )
        .collect()
}

/// The `` `a.b` `` key paths in the first column of docs/configuration.md's tables.
fn documented_keys(doc: &str) -> BTreeSet<String> {
    doc.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|k| !k.starts_with(|c: char| c.is_ascii_uppercase()))
        .map(str::to_owned)
        .collect()
}

/// The `COSELL_…` variables the host's code reads.
fn env_vars() -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    let mut dirs = vec![repo().join("host/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for piece in text.split('"').skip(1).step_by(2) {
                    if piece.starts_with("COSELL_")
                        && piece.len() > 7
                        && piece
                            .chars()
                            .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
                    {
                        vars.insert(piece.to_owned());
                    }
                }
            }
        }
    }
    vars
}

#[test]
fn every_configuration_key_and_environment_variable_is_documented() {
    let doc = std::fs::read_to_string(repo().join("docs/configuration.md")).unwrap();
    let keys = config_keys();
    assert!(keys.len() > 40, "the probe found too few keys: {keys:?}");
    assert!(
        keys.contains("partner_center.webhooks_url") && keys.contains("webhooks.dataverse.kind"),
        "{keys:?}"
    );
    let documented = documented_keys(&doc);
    let missing: Vec<_> = keys.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "keys the code accepts but docs/configuration.md does not document: {missing:?}"
    );
    let stale: Vec<_> = documented
        .iter()
        .filter(|k| !keys.contains(*k) && !k.contains('*') && !k.contains('<'))
        .collect();
    assert!(
        stale.is_empty(),
        "keys docs/configuration.md documents that the code no longer accepts: {stale:?}"
    );
    let vars = env_vars();
    assert!(vars.contains("COSELL_ADMIN_TOKEN"), "{vars:?}");
    let undocumented: Vec<_> = vars
        .iter()
        .filter(|v| !doc.contains(&format!("`{v}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "environment variables not in docs/configuration.md: {undocumented:?}"
    );
}

#[test]
fn user_docs_stand_on_their_own() {
    let mut docs = vec![
        repo().join("README.md"),
        repo().join("ARCHITECTURE.md"),
        repo().join("tests/README.md"),
        repo().join("guest-mappings/README.md"),
        repo().join("cosell.example.toml"),
    ];
    // Files only: docs/console/ holds the console's screenshots.
    for entry in std::fs::read_dir(repo().join("docs")).unwrap().flatten() {
        if entry.path().is_file() {
            docs.push(entry.path());
        }
    }
    let issue = |line: &str| {
        let lower = line.to_ascii_lowercase();
        lower.match_indices("issue").any(|(i, _)| {
            let rest = lower[i + 5..].trim_start_matches([' ', '#', 's']);
            rest.starts_with(|c: char| c.is_ascii_digit())
        })
    };
    let mut found = Vec::new();
    for path in docs.iter().filter(|p| p.exists()) {
        let text = std::fs::read_to_string(path).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.contains("../shared") || line.contains("/work/") || issue(line) {
                found.push(format!("{}:{}: {line}", path.display(), n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "user docs must not point outside the repository or at issues:\n{}",
        found.join("\n")
    );
}

/// docs/authoring.md states the fuel and peak memory of every example and kind of project a
/// mapping author starts from (a promise of the guide: the numbers come from `cosell mapping
/// test`; this checks that none of them goes missing from the table).
#[test]
fn the_authoring_guide_states_the_cost_of_every_example() {
    let guide = std::fs::read_to_string(repo().join("docs/authoring.md")).unwrap();
    let section = guide
        .split("## Limits, fuel and memory")
        .nth(1)
        .expect("docs/authoring.md has a section `Limits, fuel and memory`");
    let rows: Vec<&str> = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .collect();
    for example in [
        "`referral-to-opportunity`",
        "`opportunity-to-referral`",
        "`pass_through`",
        "`stamp-team`",
        "Python example",
        "Python project",
        "JavaScript example",
        "JavaScript project",
        "Rust project, `--from-default`",
        "Rust project, fresh",
    ] {
        let row = rows
            .iter()
            .find(|row| row.contains(example))
            .unwrap_or_else(|| panic!("no row for {example} in the guide's table of costs"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // | step | component | fuel | peak memory | time | compile at deploy |
        assert!(
            cells[3].chars().any(|c| c.is_ascii_digit()),
            "{example}: no fuel in `{row}`"
        );
        assert!(
            cells[4].ends_with("MiB"),
            "{example}: no peak memory in `{row}`"
        );
    }
}
