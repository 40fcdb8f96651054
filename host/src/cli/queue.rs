//! `cosell queue`: the sync events a running host has waiting and running, as a table (or the
//! admin API's JSON with `--json`), to see what a growing queue is stuck on.

use super::AdminArgs;
use super::admin_client::{client, send_with, url};
use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use serde_json::Value;

/// The longest last error a table row shows (`--json` shows it whole).
const ERROR_CHARS: usize = 80;

/// `cosell queue` options.
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// Which events: pending (waiting for their turn or for a retry), running (claimed by a
    /// worker), or all of both.
    #[arg(long, value_enum, default_value_t = StateArg::All)]
    pub state: StateArg,
    /// At most this many events: running ones first, then pending ones in the order they run.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub limit: u64,
    /// Print the admin API's JSON answer (every field, whole errors) instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// The states `--state` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    Pending,
    Running,
    All,
}

impl StateArg {
    fn name(self) -> &'static str {
        match self {
            StateArg::Pending => "pending",
            StateArg::Running => "running",
            StateArg::All => "all",
        }
    }
}

/// Asks the host for its queued events and prints them.
pub(super) async fn run(args: QueueArgs) -> Result<i32> {
    let request = client()?.get(url(&args.admin, "/queue/events")).query(&[
        ("state", args.state.name().to_owned()),
        ("limit", args.limit.to_string()),
    ]);
    let json = args.json;
    send_with(request, &args.admin, |body| {
        if json {
            println!("{}", serde_json::to_string_pretty(body)?);
        } else {
            print!("{}", render(body, args.state, Utc::now()));
        }
        Ok(())
    })
    .await
}

/// The answer of `/admin/v1/queue/events` as a table, with a line of counts under it.
fn render(body: &Value, state: StateArg, now: DateTime<Utc>) -> String {
    let events = body["events"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let count = |name: &str| body["counts"][name].as_u64().unwrap_or(0);
    let mut out = String::new();
    if events.is_empty() {
        out.push_str(match state {
            StateArg::Pending => "No event is pending.\n",
            StateArg::Running => "No event is running.\n",
            StateArg::All => "No event is pending or running.\n",
        });
    } else {
        let header = [
            "ID",
            "STATE",
            "SIDE",
            "RECORD",
            "ATTEMPTS",
            "NEXT RUN / CLAIMED BY",
            "LAST ERROR",
        ]
        .map(str::to_owned);
        let rows: Vec<[String; 7]> = events.iter().map(|e| row(e, now)).collect();
        out.push_str(&table(&header, &rows));
    }
    let (pending, running) = (count("pending"), count("running"));
    let wanted = match state {
        StateArg::Pending => pending,
        StateArg::Running => running,
        StateArg::All => pending + running,
    };
    out.push_str(&format!(
        "pending {pending}, running {running}, parked {}, dead {} (parked and dead: cosell dead-letters list)\n",
        count("parked"),
        count("dead"),
    ));
    if (events.len() as u64) < wanted {
        out.push_str(&format!(
            "listed {} of {wanted}: --limit shows more\n",
            events.len()
        ));
    }
    out
}

/// One event as the table's cells.
fn row(event: &Value, now: DateTime<Utc>) -> [String; 7] {
    let text = |key: &str| event[key].as_str().unwrap_or_default().to_owned();
    let state = text("state");
    let when = if state == "running" {
        let by = event["claimed_by"].as_str().unwrap_or("this host");
        format!("{by}, since {}", time(&text("available_at"), now))
    } else {
        match DateTime::parse_from_rfc3339(&text("available_at")) {
            Ok(at) if at <= now => "ready".to_owned(),
            _ => time(&text("available_at"), now),
        }
    };
    [
        event["id"].to_string(),
        state,
        text("side"),
        text("record_id"),
        event["attempts"].to_string(),
        when,
        one_line(event["last_error"].as_str().unwrap_or("-")),
    ]
}

/// A stored time (RFC 3339) to the second, with how far it is from now.
fn time(stored: &str, now: DateTime<Utc>) -> String {
    let Ok(at) = DateTime::parse_from_rfc3339(stored) else {
        return stored.to_owned();
    };
    let at = at.with_timezone(&Utc);
    let seconds = (at - now).num_seconds();
    let relative = match seconds {
        0 => "now".to_owned(),
        s if s > 0 => format!("in {}", span(s)),
        s => format!("{} ago", span(-s)),
    };
    format!("{} ({relative})", at.format("%Y-%m-%d %H:%M:%SZ"))
}

/// Seconds as `42s`, `3m12s` or `5h02m`.
fn span(seconds: i64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// An error on one line, cut to [`ERROR_CHARS`].
fn one_line(error: &str) -> String {
    let flat = error.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= ERROR_CHARS {
        flat
    } else {
        let cut: String = flat.chars().take(ERROR_CHARS - 1).collect();
        format!("{cut}…")
    }
}

/// Left-aligned columns two spaces apart; the last one is not padded.
fn table<const N: usize>(header: &[String; N], rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for cells in std::iter::once(header).chain(rows) {
        for (width, cell) in widths.iter_mut().zip(cells) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for cells in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-12-06T03:00:00Z".parse().unwrap()
    }

    fn answer() -> Value {
        json!({
            "counts": {"pending": 5, "running": 1, "parked": 2, "dead": 3},
            "events": [
                {"id": 7, "state": "running", "side": "dataverse", "record_id": "opp-1",
                 "origin": "dataverse-webhook", "attempts": 2,
                 "available_at": "2026-12-06T02:59:18.000Z",
                 "lease_until": "2026-12-06T03:04:18.000Z", "claimed_by": "cosell-2",
                 "last_error": "Partner Center answered 429", "received_at": "2026-12-06T02:58:00.000Z"},
                {"id": 9, "state": "pending", "side": "partner-center", "record_id": "ref-9",
                 "origin": "partner-center-webhook", "attempts": 0,
                 "available_at": "2026-12-06T02:59:59.000Z", "lease_until": null,
                 "claimed_by": null, "last_error": null, "received_at": "2026-12-06T02:59:59.000Z"},
                {"id": 8, "state": "pending", "side": "dataverse", "record_id": "opp-2",
                 "origin": "dataverse-changes", "attempts": 3,
                 "available_at": "2026-12-06T03:02:05.500Z", "lease_until": null,
                 "claimed_by": null,
                 "last_error": format!("Dataverse answered 503:\n{}", "x".repeat(200)),
                 "received_at": "2026-12-06T02:50:00.000Z"}
            ]
        })
    }

    #[test]
    fn the_table_shows_who_runs_what_when_the_rest_runs_and_why_it_failed() {
        let out = render(&answer(), StateArg::All, now());
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("ID  STATE"), "{out}");
        assert!(
            lines[1].contains("cosell-2, since 2026-12-06 02:59:18Z (42s ago)")
                && lines[1].contains("Partner Center answered 429"),
            "{out}"
        );
        assert!(
            lines[2].contains("ref-9") && lines[2].contains("ready"),
            "{out}"
        );
        assert!(lines[2].trim_end().ends_with('-'), "no error yet: {out}");
        // A retry's backoff, and its error on one line, cut.
        assert!(
            lines[3].contains("2026-12-06 03:02:05Z (in 2m05s)")
                && lines[3].contains("Dataverse answered 503: xxx")
                && lines[3].ends_with('…'),
            "{out}"
        );
        assert!(lines[3].chars().count() < 200, "{out}");
        // The columns line up.
        let column = |line: &str| line.find("opp").or_else(|| line.find("ref"));
        assert_eq!(column(lines[1]), lines[0].find("RECORD"), "{out}");
        assert_eq!(column(lines[3]), lines[0].find("RECORD"), "{out}");
        assert!(lines[4].starts_with("pending 5, running 1, parked 2, dead 3"));
        assert_eq!(lines[5], "listed 3 of 6: --limit shows more");
    }

    #[test]
    fn an_empty_listing_says_so_with_the_counts() {
        let out = render(
            &json!({"counts": {"pending": 0, "running": 0, "parked": 0, "dead": 1}, "events": []}),
            StateArg::Running,
            now(),
        );
        assert_eq!(
            out,
            "No event is running.\npending 0, running 0, parked 0, dead 1 (parked and dead: cosell dead-letters list)\n"
        );
    }

    #[test]
    fn a_running_event_on_a_single_host_names_no_replica() {
        let mut answer = answer();
        answer["events"][0]["claimed_by"] = Value::Null;
        let out = render(&answer, StateArg::All, now());
        assert!(out.contains("this host, since"), "{out}");
    }
}
