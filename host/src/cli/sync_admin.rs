//! `cosell dead-letters list | replay` and `cosell audit`, through a running host's admin API.

use super::AdminArgs;
use super::admin_client::{client, send, send_with, url};
use anyhow::Result;
use serde_json::{Value, json};

/// Prints the dead letters.
pub(super) async fn list(admin: &AdminArgs) -> Result<i32> {
    let request = client()?.get(url(admin, "/dead-letters"));
    send(request, admin).await
}

/// Queues dead letters again: these ids, or all.
pub(super) async fn replay(admin: &AdminArgs, ids: &[i64], all: bool) -> Result<i32> {
    let body = if all {
        json!({"all": true})
    } else {
        json!({"ids": ids})
    };
    if !all && ids.is_empty() {
        anyhow::bail!(
            "name the dead letters to replay (their ids, from `cosell dead-letters list`) or pass --all"
        );
    }
    let request = client()?
        .post(url(admin, "/dead-letters/replay"))
        .json(&body);
    send(request, admin).await
}

/// The filters of `cosell audit`.
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// Only this record: `referral:<id>`, `opportunity:<id>`, or a bare id (either).
    pub record: Option<String>,
    /// Only this outcome: created, updated, skipped, conflict, rejected, retry, parked,
    /// dead-letter.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Only entries at or after this time: RFC 3339 (2026-12-06T10:00:00Z), a date
    /// (2026-12-06) or an age (30m, 2h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// Only entries before this time (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Only conflicts: fields both sides changed, and which side won.
    #[arg(long)]
    pub conflicts: bool,
    /// Entries per page.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// The page that starts after this entry (the `--before` the previous page printed).
    #[arg(long)]
    pub before: Option<i64>,
    /// Print the page as the admin API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Prints one page of the audit trail, newest first, and how to ask for the next.
pub(super) async fn audit(admin: &AdminArgs, args: &AuditArgs) -> Result<i32> {
    let mut query = vec![("limit", args.limit.to_string())];
    let optional = [
        ("record", &args.record),
        ("outcome", &args.outcome),
        ("since", &args.since),
        ("until", &args.until),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            query.push((name, value.clone()));
        }
    }
    if args.conflicts {
        query.push(("conflicts", "true".into()));
    }
    if let Some(before) = args.before {
        query.push(("before", before.to_string()));
    }
    let request = client()?.get(url(admin, "/audit")).query(&query);
    send_with(request, admin, |page| {
        if args.json {
            println!("{}", serde_json::to_string_pretty(page)?);
        } else {
            print!("{}", audit_table(page));
        }
        Ok(())
    })
    .await
}

/// The page as aligned columns (time, record, direction, outcome, detail), then a line
/// naming the next page, if any.
fn audit_table(page: &Value) -> String {
    let entries = page["audit"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if entries.is_empty() {
        return "no audit entries match\n".into();
    }
    let text = |e: &Value, key: &str| e[key].as_str().unwrap_or_default().to_owned();
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|e| {
            [
                text(e, "at"),
                text(e, "record"),
                text(e, "direction"),
                text(e, "outcome"),
                text(e, "detail"),
            ]
        })
        .collect();
    let header = ["AT", "RECORD", "DIRECTION", "OUTCOME", "DETAIL"].map(str::to_owned);
    let mut widths = [0usize; 4];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter().zip(row) {
            out.push_str(&format!("{cell:<w$}  ", w = *w));
        }
        out.push_str(&row[4]);
        out.push('\n');
    }
    if let Some(next) = page["next"].as_i64() {
        out.push_str(&format!(
            "more: add --before {next} for the next (older) page\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lines_up_and_names_the_next_page() {
        let page = json!({
            "audit": [
                {"at": "2026-12-06T10:00:00.000Z", "record": "referral:R-1",
                 "direction": "partner-center-to-crm", "outcome": "conflict",
                 "detail": "dealValue changed on both sides; crm wins"},
                {"at": "2026-12-06T09:59:00.000Z", "record": "opportunity:7",
                 "direction": "crm-to-partner-center", "outcome": "updated", "detail": "notes"}
            ],
            "next": 41
        });
        let table = audit_table(&page);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        let column = |line: &str| line.find("conflict").or_else(|| line.find("updated"));
        assert_eq!(
            column(lines[1]),
            column(lines[2]),
            "outcomes line up:\n{table}"
        );
        assert!(lines[3].contains("--before 41"), "{table}");
        assert_eq!(
            audit_table(&json!({"audit": [], "next": null})),
            "no audit entries match\n"
        );
    }
}
