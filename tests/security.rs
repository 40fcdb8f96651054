//! The security promises of issue 5, each proved against running hosts and printing its figures:
//!
//! - the admin API refuses every request without exactly the token (no header, another scheme,
//!   a prefix, an extension, the token in the query string) with the same 401, on every admin
//!   route, and listens on loopback unless `admin.allow_remote` says otherwise;
//! - no secret (client secrets, refresh and access tokens the emulators issued, the Dataverse
//!   webhook key, the admin token, wrong secrets an operator tried) appears in the host's log at
//!   trace level, in any CLI output or error, in the admin API's answers, in the audit trail,
//!   queue or dead letters in the state database, or in the records cosell wrote;
//! - a WASI guest deployed into a running host finds none of the host's files, environment
//!   variables, network or secrets;
//! - access tokens that expire while records flow both ways are refreshed, and every record
//!   still syncs exactly once.
//!
//! Each promise is proved in its own module under `security/` (`admin_api.rs`, `secrets.rs`,
//! `guests.rs`, `token_expiry.rs`); this file keeps what they share: records, the `cosell`
//! binary with everything it prints, and the search for secrets.

mod support;

#[path = "security/admin_api.rs"]
mod admin_api;
#[path = "security/guests.rs"]
mod guests;
#[path = "security/secrets.rs"]
mod secrets;
#[path = "security/token_expiry.rs"]
mod token_expiry;

use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::TOKEN;
use support::seller;
use support::sync_env::{SyncEnv, wait_until};

/// Everything the host logs, minus the code generator's chatter (it logs no secrets and would
/// only make the log huge).
const FULL_LOG: &str = "trace,cranelift=info,wasmtime=info,regalloc2=info,wit_component=info,wit_parser=info,wasmparser=info";

// ---------------------------------------------------------------------------------------------
// Records, as the seller and the Microsoft seller create them.

/// A new opportunity with Sync = Yes; `extra` columns are set (or removed with `null`).
async fn new_opportunity(env: &SyncEnv, name: &str, postal: u32, extra: Value) -> String {
    seller::creates_opportunity(env, name, &format!("{postal:05}"), extra).await
}

/// A referral from a Microsoft seller; answers its id.
fn incoming_referral(env: &SyncEnv, name: &str, postal: u32) -> String {
    let referral = env.pc.microsoft().create_incoming(json!({
        "name": name,
        "customerProfile": {"name": format!("{name} Ltd"), "address": {"postalCode": format!("{postal:05}"), "country": "US"}},
        "details": {"dealValue": 10000, "currency": "USD"}
    }));
    referral["id"].as_str().unwrap().to_owned()
}

fn referral_id_of(opportunity: &Value) -> Option<String> {
    opportunity["cosell_referralidentifier"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Waits up to `limit` for `probe` to answer `Some`; panics with `what` and the host log
/// otherwise.
async fn poll<T, F, Fut>(env: &SyncEnv, limit: Duration, what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match wait_until(limit, probe).await {
        Some(value) => value,
        None => panic!(
            "timed out waiting for {what}\nhost log:\n{}",
            tail(&env.host_log(), 60)
        ),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// The `cosell` binary, with everything it prints kept.

/// What one `cosell` command printed.
struct Run {
    what: String,
    success: bool,
    text: String,
}

/// Runs `cosell args` with `envs`, logging at trace level; keeps stdout and stderr.
fn cosell(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cosell"));
    command
        .args(args)
        .env("COSELL_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", FULL_LOG)
        .stdin(Stdio::null());
    for (k, v) in envs {
        command.env(k, v);
    }
    let output = command.output().expect("cosell runs");
    Run {
        what: format!("cosell {}", args.join(" ")),
        success: output.status.success(),
        text: format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Searching for secrets.

/// Every secret of a run: (what, value).
fn secrets_of(env: &SyncEnv, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut secrets: Vec<(String, String)> = vec![
        ("admin token".into(), TOKEN.into()),
        (
            "Partner Center client secret".into(),
            env.pc.config().client_secret.clone(),
        ),
        (
            "Dataverse client secret".into(),
            env.dv.config().client_secret.clone(),
        ),
        (
            "Dataverse webhook key".into(),
            std::fs::read_to_string(env.dir.path().join("secrets/dataverse-webhook-key"))
                .unwrap()
                .trim()
                .to_owned(),
        ),
    ];
    let pc = env.pc.tokens().issued();
    let dv = env.dv.tokens().issued();
    for (i, t) in pc.access.iter().enumerate() {
        secrets.push((format!("Partner Center access token #{i}"), t.clone()));
    }
    for (i, t) in pc.refresh.iter().enumerate() {
        secrets.push((format!("Partner Center refresh token #{i}"), t.clone()));
    }
    for (i, t) in dv.access.iter().enumerate() {
        secrets.push((format!("Dataverse access token #{i}"), t.clone()));
    }
    for (what, value) in extra {
        secrets.push((what.to_string(), value.to_string()));
    }
    for (what, value) in &secrets {
        assert!(value.len() >= 8, "{what} is too short to grep for: {value}");
    }
    secrets
}

/// Every (place, secret) pair where a secret shows.
fn leaks(places: &[(String, String)], secrets: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (place, text) in places {
        for (what, value) in secrets {
            if text.contains(value.as_str()) {
                found.push(format!("{what} in {place}"));
            }
        }
    }
    found
}

/// The state database as text: every table but `credentials` (which holds the rotated
/// refresh token on purpose) and the stored components.
fn state_database_text(db: &Path) -> Vec<(String, String)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = Vec::new();
    for table in tables {
        if table == "credentials" || table == "mapping_versions" {
            continue;
        }
        let mut statement = conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let columns = statement.column_count();
        let mut text = String::new();
        let mut rows = statement.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..columns {
                let value: rusqlite::types::Value = row.get(i).unwrap();
                text.push_str(&format!("{value:?}\t"));
            }
            text.push('\n');
        }
        out.push((format!("state database table {table}"), text));
    }
    out
}
