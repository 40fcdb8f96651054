//! The sync engine end to end: a real `cosell serve` process syncing the two emulators over
//! real HTTP, one test per flow, each run twice: with the host's state in a SQLite file
//! (`…::sqlite`) and in a PostgreSQL database (`…::postgres`). Each test prints the latency it
//! measured (webhook to write on the other side). One module per behaviour, under
//! `sync_flows/`:
//!
//! - `opportunity_to_referral.rs` (flows 1 and 2): an opportunity marked for sync becomes a
//!   Shared referral, shared with Microsoft in a second step, when help is asked for,
//!   Independent otherwise, and its id comes back; the seller's changes are patched onto the
//!   referral, and winning or losing closes it; a referral is shared with Microsoft only when a
//!   seller asks for help;
//! - `referral_to_opportunity.rs` (flows 3 and 4): a Microsoft referral becomes an opportunity,
//!   matching or creating its account, and its updates follow; accepting and declining it in
//!   the CRM answers Microsoft; closings in Partner Center close the opportunity;
//! - `echoes.rs` (flow 5): cosell recognises its own writes, by their version without a read,
//!   and never ping-pongs; the Update step sends only changes to columns the mapping reads;
//! - `conflicts.rs` (flow 6): conflicting changes follow the per-field owner; cosell's own
//!   write is no conflict while a seller's edit waits; a referral changed meanwhile is read
//!   again, not overwritten;
//! - `operations.rs` (flow 7): a failed sync is shown to the seller and retried when fixed;
//!   dead letters are listed and replayed, and the queue listed, with the CLI and the admin
//!   API; setup commands run next to a running host;
//! - `recovery.rs`: a co-sell create interrupted between its two steps is finished; events
//!   stored before a crash are synced after the restart; writes whose answers either side lost
//!   make each record once; an opportunity carrying a referral's id without a link is linked,
//!   not made again; the reconciliation finds referrals whose webhooks were lost; changes
//!   made while the delta link expired are synced after a full read.
//!
//! This file keeps what they share: the seller's opportunities and the pairs they make.

mod support;

#[path = "sync_flows/conflicts.rs"]
mod conflicts;
#[path = "sync_flows/echoes.rs"]
mod echoes;
#[path = "sync_flows/operations.rs"]
mod operations;
#[path = "sync_flows/opportunity_to_referral.rs"]
mod opportunity_to_referral;
#[path = "sync_flows/recovery.rs"]
mod recovery;
#[path = "sync_flows/referral_to_opportunity.rs"]
mod referral_to_opportunity;

use serde_json::{Value, json};
use support::seller;
use support::sync_env::SyncEnv;

const HELP_WORKLOAD: i64 = 100_000_000;

/// A new opportunity marked "Sync with Partner Center"; `help` asks Microsoft for help.
async fn seller_creates_opportunity(env: &SyncEnv, name: &str, help: Option<i64>) -> String {
    seller_creates_opportunity_with(env, name, help, json!({})).await
}

/// [`seller_creates_opportunity`] with `extra` columns set (or cleared with `null`).
async fn seller_creates_opportunity_with(
    env: &SyncEnv,
    name: &str,
    help: Option<i64>,
    extra: Value,
) -> String {
    let mut columns = json!({
        "transactioncurrencyid@odata.bind": format!("/transactioncurrencies({})", env.currency_id("EUR").await),
    });
    if let Some(help) = help {
        columns["cosell_howcanmicrosofthelp"] = json!(help);
    }
    for (column, value) in extra.as_object().unwrap() {
        columns[column] = value.clone();
    }
    let postal = format!("{:05}", name.len() * 97);
    seller::creates_opportunity(env, name, &postal, columns).await
}

fn referral_id_of(opportunity: &Value) -> Option<String> {
    opportunity["cosell_referralidentifier"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Creates an opportunity and waits until its referral exists; answers (opportunity, referral).
async fn synced_pair(env: &SyncEnv, name: &str, help: Option<i64>) -> (String, String) {
    let oid = seller_creates_opportunity(env, name, help).await;
    let opp = env
        .wait_opportunity(&oid, "the referral id written back", |o| {
            referral_id_of(o).is_some()
        })
        .await;
    (oid, referral_id_of(&opp).unwrap())
}

async fn opportunity_for_referral(env: &SyncEnv, rid: &str) -> Option<Value> {
    env.opportunities_for_referral(rid).await.into_iter().next()
}
