//! Access tokens that expire while records flow both ways are refreshed, and every record
//! still syncs exactly once.

use super::*;
use std::time::Instant;

/// Whether every opportunity has its referral and every referral its opportunity, each with
/// the last value written on its own side.
async fn all_synced(
    env: &SyncEnv,
    outbound: &[(String, f64)],
    inbound: &[(String, f64)],
) -> Option<()> {
    for (oid, value) in outbound {
        let rid = referral_id_of(&env.opportunity(oid).await)?;
        let r = env.pc.referral(&rid)?;
        if r["details"]["dealValue"].as_f64() != Some(*value) {
            return None;
        }
    }
    for (rid, value) in inbound {
        let found = env.opportunities_for_referral(rid).await;
        if found.first()?["estimatedvalue"].as_f64() != Some(*value) {
            return None;
        }
    }
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_expiring_mid_run_are_refreshed_without_losing_work() {
    SyncEnv::run_polling_every("", 0, |env| async move {
        const ROUNDS: u32 = 4;
        const PER_ROUND: u32 = 5;
        let started = Instant::now();
        let pc_before = env.pc.tokens().issued();
        let mut outbound: Vec<(String, f64)> = Vec::new();
        let mut inbound: Vec<(String, f64)> = Vec::new();
        let mut updates = 0;
        // Round 0 warms the host up (both tokens cached); each later round jumps the clocks.
        for round in 0..=ROUNDS {
            // Updates of the previous round's records, in flight with this round's creates.
            let previous_out = outbound.len().saturating_sub(PER_ROUND as usize);
            for (oid, value) in outbound.iter_mut().skip(previous_out) {
                *value += 1000.0;
                env.seller
                    .update("opportunities", oid, &json!({"estimatedvalue": *value}), None)
                    .await
                    .unwrap();
                updates += 1;
            }
            let previous_in = inbound.len().saturating_sub(PER_ROUND as usize);
            for (rid, value) in inbound.iter_mut().skip(previous_in) {
                *value += 1000.0;
                env.pc
                    .microsoft()
                    .update(rid, json!({"details": {"dealValue": *value}}))
                    .unwrap();
                updates += 1;
            }
            for i in 0..PER_ROUND {
                let postal = 10_000 + round * 100 + i;
                let oid =
                    new_opportunity(&env, &format!("Expiry out {round}-{i}"), postal, json!({}))
                        .await;
                outbound.push((oid, 25000.0));
                let rid = incoming_referral(&env, &format!("Expiry in {round}-{i}"), postal + 50);
                inbound.push((rid, 10000.0));
            }
            if round > 0 {
                // While this round's records are in flight, every access token either service
                // has issued expires (they live an hour). The host's cache still thinks its
                // tokens good, so its next calls get 401s.
                env.pc.clock().advance(chrono::TimeDelta::seconds(3601));
                env.dv.clock().advance(chrono::TimeDelta::seconds(3601));
            }
            // The round settles before the next, so the next jump again catches tokens in use.
            let done = wait_until(Duration::from_secs(60), || {
                all_synced(&env, &outbound, &inbound)
            })
            .await;
            assert!(
                done.is_some(),
                "round {round}: not every record synced after the tokens expired\nhost log:\n{}",
                tail(&env.host_log(), 80)
            );
        }
        let total = ((ROUNDS + 1) * PER_ROUND) as usize;
        // No duplicates: one referral per opportunity, one opportunity per referral.
        let referrals = env.pc.referrals();
        let mut duplicates = 0;
        for (oid, _) in &outbound {
            let n = referrals
                .iter()
                .filter(|r| r["externalReferenceId"] == oid.as_str())
                .count();
            duplicates += n - 1;
        }
        for (rid, _) in &inbound {
            duplicates += env.opportunities_for_referral(rid).await.len() - 1;
        }
        assert_eq!(duplicates, 0);
        // Nothing dead-lettered, nothing left in the queue.
        let dead = env.admin_get("/admin/v1/dead-letters").await;
        assert_eq!(dead["dead_letters"], json!([]), "{dead}");
        let queue = env.admin_get("/admin/v1/queue").await;
        assert_eq!(queue["dead"].as_u64().unwrap_or(0), 0, "{queue}");

        let log = env.host_log();
        let pc_401 = log.matches("Partner Center answered 401").count();
        let dv_401 = log.matches("Dataverse answered 401").count();
        let pc_after = env.pc.tokens().issued();
        let pc_refreshes = pc_after.refresh.len() - pc_before.refresh.len();
        // Every jump caught the host with tokens in use, on both sides.
        assert!(pc_401 >= ROUNDS as usize, "{pc_401} Partner Center 401s");
        assert!(dv_401 >= ROUNDS as usize, "{dv_401} Dataverse 401s");
        assert!(pc_refreshes as u32 >= ROUNDS, "{pc_refreshes} Partner Center refreshes");
        println!(
            "token expiry: {total} records CRM -> PC and {total} PC -> CRM, {updates} updates, {ROUNDS} clock jumps past the 1 h token lifetime with records in flight; 401s met by the host: Partner Center {pc_401}, Dataverse {dv_401}; Partner Center token refreshes (rotated refresh tokens): {pc_refreshes}; losses = 0, duplicates = 0, dead letters = 0; in {:?}",
            started.elapsed()
        );
    })
    .await;
}
