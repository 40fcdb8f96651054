//! `cosell partner-center login [--status]`: the first sign-in to Partner Center (the
//! device-code flow, [`crate::connections::partner_center::device_login`]), kept in the state
//! database where rotated refresh tokens already live ([`crate::store::sign_in`]); `--status`
//! shows whose sign-in is kept and when it was obtained and last refreshed, never the token.

use crate::config::HostConfig;
use crate::connections::partner_center::device_login::DeviceLogin;
use crate::connections::partner_center::sign_in_command;
use crate::store::StateStore;
use crate::store::SyncStore;
use crate::store::sign_in::{self, Origin, REFRESH_TOKEN_CREDENTIAL, SignIn};
use anyhow::{Context as _, Result};
use std::io::Write as _;
use std::path::Path;

/// Runs the command; answers the exit code.
pub(super) async fn run(config_path: &Path, status: bool) -> Result<i32> {
    let config = HostConfig::load(config_path)?;
    let pc = config.partner_center.as_ref().with_context(|| {
        format!(
            "{} has no [partner_center]: add its base_url, token_url, client_id and client_secret first",
            config_path.display()
        )
    })?;
    let state = crate::store::open(&config.state)?;
    let store = &*state.sync;
    if status {
        return show_status(&state, config_path);
    }
    let login = DeviceLogin::new(
        &pc.token_url,
        &pc.client_id,
        Some(pc.client_secret.read("partner_center.client_secret")?),
    )?;
    let prompt = login.start().await?;
    println!("{}", prompt.message);
    let _ = std::io::stdout().flush();
    let signed_in = login.finish(&prompt).await?;
    // The configured token (if any) counts as read: it must not replace this sign-in at the
    // next start. An unreadable one is simply not recorded.
    let configured = pc
        .refresh_token
        .as_ref()
        .and_then(|r| r.read("partner_center.refresh_token").ok());
    sign_in::keep_login(
        store,
        &signed_in.refresh_token,
        signed_in.user.clone(),
        configured.as_ref(),
    )?;
    println!(
        "signed in as {}; the refresh token is kept in {}, where every cosell command and host on it finds it",
        signed_in
            .user
            .as_deref()
            .unwrap_or("(a user the sign-in did not name)"),
        state.location
    );
    Ok(0)
}

fn show_status(state: &StateStore, config_path: &Path) -> Result<i32> {
    let store: &dyn SyncStore = &*state.sync;
    let has_token = store.credential(REFRESH_TOKEN_CREDENTIAL)?.is_some();
    let record = SignIn::load(store)?;
    if !has_token {
        println!(
            "no Partner Center sign-in is kept in {}; run `{}`",
            state.location,
            sign_in_command(Some(config_path))
        );
        return Ok(1);
    }
    let record = record.unwrap_or_default();
    let user = record.user.as_deref().unwrap_or(match record.origin {
        Some(Origin::Config) | None => {
            "unknown (the refresh token came from [partner_center] refresh_token, not a login)"
        }
        Some(Origin::Login) => "unknown (the sign-in did not name its user)",
    });
    let how = match record.origin {
        Some(Origin::Login) => "by `cosell partner-center login`",
        Some(Origin::Config) => "from [partner_center] refresh_token",
        None => "(how is not recorded)",
    };
    println!("Partner Center sign-in kept in {}", state.location);
    println!("  user:           {user}");
    println!(
        "  obtained:       {} {how}",
        record.obtained_at.as_deref().unwrap_or("unknown")
    );
    println!(
        "  last refreshed: {}",
        record.refreshed_at.as_deref().unwrap_or("never")
    );
    Ok(0)
}
