//! `cosell mapping config <step>`: show a step's config and its revision on a running host,
//! change it without a restart (`--set`, `--unset`), list its revisions (`--history`), or go
//! back to one (`--revert-to`).

use super::AdminArgs;
use super::admin_client::{client, send_with, url};
use anyhow::Result;
use clap::Args;
use serde_json::{Value, json};
use std::fmt::Write as _;

/// `cosell mapping config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The step.
    pub step: String,
    /// Set KEY to VALUE (repeatable). The new config is checked on the step's sample record
    /// through its active version first; refused, nothing changes.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub set: Vec<(String, String)>,
    /// Remove KEY (repeatable).
    #[arg(long, value_name = "KEY")]
    pub unset: Vec<String>,
    /// List every revision of the step's config, newest first.
    #[arg(long, conflicts_with_all = ["set", "unset", "revert_to"])]
    pub history: bool,
    /// Make revision N's config the step's config again (as a new revision).
    #[arg(long, value_name = "N", conflicts_with_all = ["set", "unset"])]
    pub revert_to: Option<i64>,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub admin: AdminArgs,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))
}

/// Runs the command.
pub(super) async fn run(args: &ConfigArgs) -> Result<i32> {
    let path = format!("/steps/{}/config", args.step);
    let http = client()?;
    let request = if args.history {
        http.get(url(&args.admin, &format!("{path}/history")))
    } else if args.set.is_empty() && args.unset.is_empty() && args.revert_to.is_none() {
        http.get(url(&args.admin, &path))
    } else {
        let body = match args.revert_to {
            Some(n) => json!({ "revert_to": n }),
            None => json!({
                "set": args.set.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                "unset": args.unset,
            }),
        };
        http.put(url(&args.admin, &path))
            .header("x-cosell-changed-by", who())
            .json(&body)
    };
    let (json, history) = (args.json, args.history);
    send_with(request, &args.admin, |answer| {
        if json {
            println!("{}", serde_json::to_string_pretty(answer)?);
        } else if history {
            print!("{}", render_history(answer));
        } else {
            print!("{}", render_state(answer));
        }
        Ok(())
    })
    .await
}

/// The user and machine running the command, kept with the revision.
fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    if host.is_empty() {
        user
    } else {
        format!("{user}@{host}")
    }
}

fn render_config(out: &mut String, config: &Value) {
    match config.as_object() {
        Some(map) if !map.is_empty() => {
            for (key, value) in map {
                let _ = writeln!(out, "  {key} = {}", value.as_str().unwrap_or_default());
            }
        }
        _ => out.push_str("  (empty)\n"),
    }
}

fn render_state(answer: &Value) -> String {
    let mut out = String::new();
    let stored = &answer["stored"];
    let _ = writeln!(
        out,
        "step {}: config revision {} ({} by {}, {})",
        answer["step"].as_str().unwrap_or_default(),
        answer["revision"],
        stored["source"].as_str().unwrap_or("?"),
        stored["changed_by"].as_str().unwrap_or("?"),
        stored["at"].as_str().unwrap_or("?"),
    );
    render_config(&mut out, &answer["config"]);
    out
}

fn render_history(answer: &Value) -> String {
    let mut out = String::new();
    for revision in answer["revisions"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "revision {}  {}  {} by {}",
            revision["revision"],
            revision["at"].as_str().unwrap_or_default(),
            revision["source"].as_str().unwrap_or_default(),
            revision["changed_by"].as_str().unwrap_or_default(),
        );
        render_config(&mut out, &revision["config"]);
    }
    out
}
