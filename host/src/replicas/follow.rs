//! Keeping this replica's pipelines on the active versions of the store, which any replica
//! may change: at each notice, and every `[host] deployment_check_secs` for the notices missed.

use super::Notice;
use crate::deploy::{DeployError, Deployer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Follows `notices` and checks every step each `every`, until the notices end.
pub async fn follow(
    deployer: Arc<Deployer>,
    mut notices: mpsc::UnboundedReceiver<Notice>,
    every: Duration,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        let steps = tokio::select! {
            notice = notices.recv() => match notice {
                Some(Notice::Activated(step)) => vec![step],
                Some(Notice::MaybeMissed) => step_names(&deployer),
                None => return,
            },
            _ = ticks.tick() => step_names(&deployer),
        };
        for step in steps {
            match deployer.follow_store(&step).await {
                Ok(_) => {}
                // A notice of another installation sharing the database's channel.
                Err(DeployError::UnknownStep(_)) => {}
                Err(err) => {
                    tracing::warn!(%step, error = %err, "could not load the step's active version from the state database; the loaded one keeps serving, tried again at the next check")
                }
            }
        }
    }
}

fn step_names(deployer: &Deployer) -> Vec<String> {
    deployer
        .pipelines()
        .steps()
        .map(|step| step.name.to_string())
        .collect()
}
