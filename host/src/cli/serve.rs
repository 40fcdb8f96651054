//! `cosell serve`: runs the host until Ctrl-C or SIGTERM.

use crate::config::HostConfig;
use anyhow::Result;
use std::path::Path;

pub(super) async fn serve(config_path: &Path, replica_id: Option<String>) -> Result<()> {
    let mut config = HostConfig::load(config_path)?;
    if replica_id.is_some() {
        config.host.replica_id = replica_id;
    }
    let token = config.admin.token()?;
    let host = crate::server::start(config, token).await?;
    eprintln!(
        "cosell is serving; admin API on http://{} (Ctrl-C to stop)",
        host.admin_addr
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    host.shutdown().await
}

/// Resolves on Ctrl-C or SIGTERM.
pub(super) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
