//! `cosell mapping replay <record>`: a record's last pipeline run on a running host, run again
//! through the active pipeline or with a candidate in place of one step; prints the output and
//! its diff against what that run produced. Nothing is synced.

use super::AdminArgs;
use super::admin_client::{client, send_with, url};
use anyhow::{Context as _, Result};
use clap::Args;
use std::path::PathBuf;

/// `cosell mapping replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The record: `referral:<id>`, `opportunity:<id>`, or a bare id (either), as in
    /// `cosell audit`.
    pub record: String,
    /// A candidate component to run in place of a step's active version.
    #[arg(long)]
    pub wasm: Option<PathBuf>,
    /// The step the candidate replaces (needed when the pipeline has several steps).
    #[arg(long, requires = "wasm")]
    pub step: Option<String>,
    /// Print the whole answer as JSON (output, what was written, diff) on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Runs the replay. Prints the output document on stdout and the diff on stderr (or
/// everything as JSON with `--json`); exits 0 when the output is what was written, 2 when it
/// differs, 1 on an error.
pub(super) async fn run(args: &ReplayArgs) -> Result<i32> {
    let body = match &args.wasm {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => Vec::new(),
    };
    let record = percent_encode(&args.record);
    let mut request = client()?
        .post(url(&args.admin, &format!("/records/{record}/replay")))
        .header(reqwest::header::CONTENT_TYPE, "application/wasm")
        .body(body);
    if let Some(step) = &args.step {
        request = request.query(&[("step", step)]);
    }
    let mut differs = false;
    let json = args.json;
    let code = send_with(request, &args.admin, |answer| {
        differs = !answer["diff"].is_null();
        if json {
            println!("{}", serde_json::to_string_pretty(answer)?);
            return Ok(());
        }
        match (&answer["output"], answer["error"].as_str()) {
            (_, Some(error)) => eprintln!("the replay produced no output: {error}"),
            (output, None) => println!("{}", serde_json::to_string_pretty(output)?),
        }
        let ran_at = answer["ran_at"].as_str().unwrap_or("?");
        match answer["diff"]["text"].as_str() {
            None if answer["error"].is_null() => {
                eprintln!("same output as the run of {ran_at} (no difference)")
            }
            None => eprintln!("the run of {ran_at} was refused the same way (no difference)"),
            Some(text) => {
                eprintln!("differs from the run of {ran_at} (expected = then, actual = now):");
                eprint!("{text}");
            }
        }
        Ok(())
    })
    .await?;
    Ok(if code == 0 && differs { 2 } else { code })
}

/// `record` as one path segment (ids are GUIDs or Partner Center ids; `:` is allowed).
fn percent_encode(record: &str) -> String {
    record
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
