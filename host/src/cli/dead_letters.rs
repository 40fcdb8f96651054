//! `cosell dead-letters list | replay`, through a running host's admin API.

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
