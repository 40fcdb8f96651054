//! `cosell mapping shadow | promote | discard` and `mapping deploy --shadow`: a candidate run
//! beside a step's active version on live records, its report, and its end.

use super::AdminArgs;
use super::admin_client::{client, send, send_with, url};
use anyhow::{Context as _, Result};
use clap::Args;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// `cosell mapping shadow <step>`.
#[derive(Debug, Args)]
pub struct ShadowArgs {
    /// The step whose shadow to report on.
    pub step: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Wait until the shadow has seen at least N records (checked every half second), then
    /// report; after --timeout, report what there is and exit 1.
    #[arg(long, value_name = "N")]
    pub until_seen: Option<u64>,
    /// How long --until-seen waits, in seconds.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 60,
        requires = "until_seen"
    )]
    pub timeout: u64,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// `cosell mapping promote <step>` / `cosell mapping discard <step>`.
#[derive(Debug, Args)]
pub struct ShadowStepArgs {
    /// The step.
    pub step: String,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// `cosell mapping deploy <step> <file> --shadow`.
pub(super) async fn deploy(admin: &AdminArgs, step: &str, component: &Path) -> Result<i32> {
    let bytes =
        std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
    let request = client()?
        .put(url(admin, &format!("/steps/{step}/shadow")))
        .header(reqwest::header::CONTENT_TYPE, "application/wasm")
        .body(bytes);
    send(request, admin).await
}

/// `cosell mapping shadow <step> [--json] [--until-seen N]`.
pub(super) async fn report(args: &ShadowArgs) -> Result<i32> {
    let http = client()?;
    let report_url = url(&args.admin, &format!("/steps/{}/shadow", args.step));
    if let Some(wanted) = args.until_seen {
        let deadline = Instant::now() + Duration::from_secs(args.timeout);
        let mut waited = false;
        loop {
            // A failing request is reported by the final `send_with` below.
            let seen = seen_so_far(&http, &report_url, &args.admin).await;
            if seen.is_none_or(|seen| seen >= wanted) {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "error: the shadow saw {} of {wanted} records within {} s; the report so far:",
                    seen.unwrap_or(0),
                    args.timeout
                );
                waited = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if waited {
            let shown = print_report(http.get(&report_url), args).await?;
            return Ok(shown.max(1));
        }
    }
    print_report(http.get(&report_url), args).await
}

/// The records the shadow has seen, or `None` when the admin API does not answer a report.
async fn seen_so_far(http: &reqwest::Client, report_url: &str, admin: &AdminArgs) -> Option<u64> {
    let token = admin.token().ok()?;
    let response = http
        .get(report_url)
        .bearer_auth(token.expose())
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body: Value = response.json().await.ok()?;
    body["report"]["records_seen"].as_u64()
}

async fn print_report(request: reqwest::RequestBuilder, args: &ShadowArgs) -> Result<i32> {
    let json = args.json;
    send_with(request, &args.admin, |body| {
        if json {
            println!("{}", serde_json::to_string_pretty(body)?);
        } else {
            print!("{}", render(body));
        }
        Ok(())
    })
    .await
}

/// `cosell mapping promote <step>`.
pub(super) async fn promote(args: &ShadowStepArgs) -> Result<i32> {
    let request = client()?.post(url(
        &args.admin,
        &format!("/steps/{}/shadow/promote", args.step),
    ));
    send(request, &args.admin).await
}

/// `cosell mapping discard <step>`.
pub(super) async fn discard(args: &ShadowStepArgs) -> Result<i32> {
    let request = client()?.delete(url(&args.admin, &format!("/steps/{}/shadow", args.step)));
    send(request, &args.admin).await
}

/// The report as text: the counts, then the examples of differences and failures.
fn render(body: &Value) -> String {
    let report = &body["report"];
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let count = |key: &str| report[key].as_u64().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "step {}: shadow version {}\nreplica {}, counting since {} (counts are per replica, in memory)",
        text(&body["step"]),
        text(&report["version"]),
        text(&body["replica_id"]),
        text(&report["since"]),
    );
    for key in [
        "records_seen",
        "identical",
        "different",
        "failed",
        "skipped",
    ] {
        let _ = writeln!(out, "  {:<13} {}", key.replace('_', " "), count(key));
    }
    let examples = report["different_examples"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !examples.is_empty() {
        let _ = writeln!(out, "\ndifferent (first {}):", examples.len());
        for example in &examples {
            let changed: Vec<String> = example["changed"]
                .as_array()
                .map(|a| a.iter().map(text).collect())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {}  changed: {}",
                text(&example["record"]),
                changed.join(", ")
            );
            for line in text(&example["diff"]).lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    let failures = report["failure_examples"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !failures.is_empty() {
        let _ = writeln!(out, "\nfailed (first {}):", failures.len());
        for failure in &failures {
            let _ = writeln!(
                out,
                "  {}  {}",
                text(&failure["record"]),
                text(&failure["error"])
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_report_shows_the_counts_and_each_example() {
        let body = json!({"step": "s", "replica_id": "r1", "report": {
            "version": "sha256:ab", "since": "2026-12-06T10:00:00.000Z", "records_seen": 3,
            "identical": 1, "different": 1, "failed": 1, "skipped": 0,
            "different_examples": [{"record": "referral:R-1", "changed": ["/name"], "diff": "-a\n+b\n"}],
            "failure_examples": [{"record": "referral:R-2", "error": "trapped: boom"}]}});
        let text = render(&body);
        assert!(text.contains("shadow version sha256:ab"), "{text}");
        assert!(text.contains("records seen  3"), "{text}");
        assert!(text.contains("referral:R-1  changed: /name"), "{text}");
        assert!(text.contains("    +b"), "{text}");
        assert!(text.contains("referral:R-2  trapped: boom"), "{text}");
    }
}
