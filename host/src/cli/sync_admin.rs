//! `cosell dead-letters list | replay` and `cosell audit`, through a running host's admin API.

use super::AdminArgs;
use super::admin_client::{client, send, url};
use anyhow::Result;
use serde_json::json;

/// Prints the dead letters.
pub async fn list(admin: &AdminArgs) -> Result<i32> {
    let request = client()?.get(url(admin, "/dead-letters"));
    send(request, admin).await
}

/// Queues dead letters again: these ids, or all.
pub async fn replay(admin: &AdminArgs, ids: &[i64], all: bool) -> Result<i32> {
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

/// Prints the audit trail, newest first: one record's (`referral:<id>`, `opportunity:<id>`)
/// or every record's.
pub async fn audit(admin: &AdminArgs, record: Option<&str>, limit: usize) -> Result<i32> {
    let mut query = vec![("limit", limit.to_string())];
    if let Some(record) = record {
        query.push(("record", record.to_owned()));
    }
    let request = client()?.get(url(admin, "/audit")).query(&query);
    send(request, admin).await
}
