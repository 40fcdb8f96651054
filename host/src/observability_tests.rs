//! The operator's artefacts against the metrics the host really serves: docs/metrics.md lists
//! exactly the metric families [`Metrics::encode`] shows once every metric has a sample, every
//! query of the Grafana dashboard (deploy/grafana/) and of the alerting rules
//! (deploy/prometheus/) names one of them, and promtool accepts the rules, passes their unit
//! tests and parses every dashboard query.

use crate::metrics::*;
use crate::runtime::{CallReport, CallStats};
use crate::store::QueueCounts;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is in the repository")
        .to_path_buf()
}

fn read(path: &str) -> String {
    let path = repo().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The host's metrics, every one with a sample (prometheus-client leaves families without
/// one out of the exposition), including those other modules register.
async fn exercised() -> Metrics {
    let m = Metrics::new();
    m.record_request("dataverse", "batch", Some(429), Duration::from_millis(20));
    m.record_token_failure("partner-center");
    m.set_poller_success("dataverse-changes", SystemTime::now());
    m.set_queue(
        &QueueCounts {
            pending: 1,
            oldest_pending_ms: Some(0),
            ..QueueCounts::default()
        },
        SystemTime::now(),
    );
    m.record_intake("dataverse-webhook", "queued");
    m.record_intake_batch(3);
    m.record_sync("partner-center", "created", Duration::from_millis(5));
    m.record_echo();
    m.record_call(
        "referral-to-opportunity",
        &CallReport {
            result: Ok("{}".into()),
            stats: CallStats {
                fuel_used: 1000,
                peak_memory_bytes: 0,
                duration: Duration::from_micros(50),
            },
            logs: Vec::new(),
        },
    );
    m.set_active_version("referral-to-opportunity", "abc", None);
    m.record_deployment("referral-to-opportunity", "deploy_ok");
    m.record_shadow_call("referral-to-opportunity", "different");
    m.record_component_load(crate::runtime::CacheOutcome::Hit);
    m.set_service_paused("dataverse", false);
    m.record_service_pause("dataverse", "no_answer");
    let (_leading, leader) = tokio::sync::watch::channel(true);
    crate::replicas::observe_leadership(leader, &m).abort();
    crate::retention::pruned_metric(&m)
        .get_or_create(&crate::retention::PrunedLabels {
            what: "audit_entries",
        })
        .inc();
    m
}

/// Each metric family of `text` by its `# TYPE` line: full name → type.
fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|rest| {
            let (name, kind) = rest.split_once(' ').expect("# TYPE <name> <type>");
            (name.to_owned(), kind.to_owned())
        })
        .collect()
}

/// The name an operator queries a family by: counters end in `_total`.
fn queried_name(name: &str, kind: &str) -> String {
    match kind {
        "counter" => format!("{name}_total"),
        _ => name.to_owned(),
    }
}

/// Every series name a query may use: histograms as `_bucket`, `_sum`, `_count`.
fn series_names(families: &BTreeMap<String, String>) -> BTreeSet<String> {
    families
        .iter()
        .flat_map(|(name, kind)| match kind.as_str() {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|suffix| format!("{name}{suffix}"))
                .collect::<Vec<_>>(),
            _ => vec![queried_name(name, kind)],
        })
        .collect()
}

/// The `cosell_…` names in `text`.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("cosell_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // `cosell_` inside a longer word (e.g. `my_cosell_x`) is not a metric name.
        let preceded = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !preceded {
            found.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    found
}

async fn served() -> BTreeMap<String, String> {
    let m = exercised().await;
    let families = families(&m.encode());
    let missing: Vec<_> = m
        .registered()
        .into_iter()
        .map(|name| format!("cosell_{name}"))
        .filter(|name| !families.contains_key(name))
        .collect();
    assert!(
        missing.is_empty(),
        "registered but not exercised by `exercised()` (give each a sample there): {missing:?}"
    );
    families
}

#[tokio::test]
async fn docs_list_every_metric_the_host_serves_and_no_other() {
    let families = served().await;
    let docs = read("docs/metrics.md");
    let documented: BTreeMap<String, String> = docs
        .lines()
        .filter_map(|line| line.strip_prefix("| `cosell_"))
        .map(|rest| {
            let (name, rest) = rest.split_once('`').expect("| `name` | type |");
            let kind = rest.split('|').nth(1).expect("a type column").trim();
            (format!("cosell_{name}"), kind.to_owned())
        })
        .collect();
    let served: BTreeMap<String, String> = families
        .iter()
        .map(|(name, kind)| (queried_name(name, kind), kind.clone()))
        .collect();
    let undocumented: Vec<_> = served
        .keys()
        .filter(|n| !documented.contains_key(*n))
        .collect();
    let gone: Vec<_> = documented
        .keys()
        .filter(|n| !served.contains_key(*n))
        .collect();
    assert!(
        undocumented.is_empty(),
        "served but not in docs/metrics.md: {undocumented:?}"
    );
    assert!(
        gone.is_empty(),
        "in docs/metrics.md but not served: {gone:?}"
    );
    for (name, kind) in &served {
        assert_eq!(
            &documented[name], kind,
            "the type docs/metrics.md gives {name}"
        );
    }
}

/// Every `expr` in the dashboard, with the panel's title.
fn dashboard_queries() -> Vec<(String, String)> {
    fn walk(value: &serde_json::Value, title: &str, out: &mut Vec<(String, String)>) {
        match value {
            serde_json::Value::Object(map) => {
                let title = map.get("title").and_then(|t| t.as_str()).unwrap_or(title);
                if let Some(expr) = map.get("expr").and_then(|e| e.as_str()) {
                    out.push((title.to_owned(), expr.to_owned()));
                }
                for v in map.values() {
                    walk(v, title, out);
                }
            }
            serde_json::Value::Array(items) => {
                for v in items {
                    walk(v, title, out);
                }
            }
            _ => {}
        }
    }
    let dashboard: serde_json::Value = serde_json::from_str(&read("deploy/grafana/cosell.json"))
        .expect("deploy/grafana/cosell.json is JSON");
    for panel in dashboard["panels"].as_array().expect("panels") {
        if panel["type"] != "row" {
            assert!(
                panel["targets"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t["expr"].is_string())),
                "panel {} has no query",
                panel["title"]
            );
        }
    }
    let mut out = Vec::new();
    walk(&dashboard, "", &mut out);
    out
}

#[tokio::test]
async fn every_dashboard_and_alert_query_names_a_served_metric() {
    let series = series_names(&served().await);
    let queries = dashboard_queries();
    assert!(queries.len() >= 10, "the dashboard has its panels");
    for (title, expr) in &queries {
        let names = names_in(expr);
        assert!(
            !names.is_empty(),
            "panel {title:?} queries no cosell metric: {expr}"
        );
        for name in names {
            assert!(
                series.contains(&name),
                "panel {title:?} queries {name}, which the host does not serve"
            );
        }
    }
    for file in [
        "deploy/prometheus/alerts.yml",
        "deploy/prometheus/alerts_test.yml",
    ] {
        let names = names_in(&read(file));
        assert!(!names.is_empty());
        for name in names {
            assert!(
                series.contains(&name),
                "{file} names {name}, which the host does not serve"
            );
        }
    }
}

/// `promtool` from `PROMTOOL` or the `PATH`.
fn promtool() -> PathBuf {
    if let Some(path) = std::env::var_os("PROMTOOL") {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "promtool not found: install Debian's prometheus package \
                 (apt-get install --no-install-recommends prometheus), or set PROMTOOL to a promtool binary"
            )
        })
}

fn run_promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_accepts_the_alerts_and_their_unit_tests_pass() {
    let dir = repo().join("deploy/prometheus");
    let checked = run_promtool(&["check", "rules", "alerts.yml"], &dir);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = run_promtool(&["test", "rules", "alerts_test.yml"], &dir);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn promtool_parses_every_dashboard_query() {
    // Each query as a recording rule: `check rules` parses its PromQL.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in dashboard_queries().iter().enumerate() {
        let quoted = serde_json::to_string(expr).unwrap();
        rules.push_str(&format!(
            "      - record: cosell_dashboard:query_{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dashboard.yml"), rules).unwrap();
    let checked = run_promtool(&["check", "rules", "dashboard.yml"], dir.path());
    assert!(checked.contains("SUCCESS"), "{checked}");
}
