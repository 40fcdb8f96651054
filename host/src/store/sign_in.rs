//! The Partner Center sign-in kept in the state database: the newest (rotated) refresh token,
//! and about it, never the token itself: who signed in, when it was obtained and last
//! refreshed, where it came from, and the SHA-256 of the `[partner_center] refresh_token` value
//! last read from the configuration.
//!
//! Which refresh token the host starts with ([`starting_refresh_token`]):
//!
//! - a configured value whose hash differs from the one recorded is new (the operator put a new
//!   token in the file): it replaces the kept one;
//! - otherwise the kept one, which rotated since (the configured one is spent);
//! - with neither, the host cannot start: the error names `cosell partner-center login`.
//!
//! Only the hash of the configured value is recorded, so the state never holds a second copy
//! of a token. A state written before hashes were kept (token, no record) keeps its token and
//! records the configured value's hash: that value was read before.

use super::SyncStore;
use crate::config::{PartnerCenterConfig, Secret};
use crate::connections::partner_center::auth::RefreshTokenKeeper;
use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Where the newest Partner Center refresh token is kept (they are single use).
pub const REFRESH_TOKEN_CREDENTIAL: &str = "partner-center-refresh-token";

/// Where the [`SignIn`] record is kept.
pub const SIGN_IN_CREDENTIAL: &str = "partner-center-sign-in";

/// Where a kept refresh token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// `cosell partner-center login`.
    Login,
    /// `[partner_center] refresh_token` in the configuration file.
    Config,
}

/// What is known about the kept refresh token (never the token).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignIn {
    /// Who signed in, when known (a login's `id_token`).
    pub user: Option<String>,
    /// Where the kept refresh token came from; `None` when the record does not say.
    pub origin: Option<Origin>,
    /// When the chain of refresh tokens was obtained (RFC 3339).
    pub obtained_at: Option<String>,
    /// When a refresh last rotated it (RFC 3339).
    pub refreshed_at: Option<String>,
    /// SHA-256 (hex) of the configured refresh token last read.
    pub config_sha256: Option<String>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The SHA-256 (hex) of a secret, to recognise it without keeping it.
pub fn fingerprint(token: &Secret) -> String {
    hex::encode(Sha256::digest(token.expose().as_bytes()))
}

impl SignIn {
    /// The record kept in `store`, if any.
    pub fn load(store: &dyn SyncStore) -> Result<Option<SignIn>> {
        match store.credential(SIGN_IN_CREDENTIAL)? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .context("reading the Partner Center sign-in record in the state database"),
        }
    }

    fn save(&self, store: &dyn SyncStore) -> Result<()> {
        store.set_credential(SIGN_IN_CREDENTIAL, &serde_json::to_string(self)?)
    }
}

/// Keeps a completed `cosell partner-center login`: the refresh token, and who and when;
/// `configured` (the configuration's refresh token, if it has one) is recorded as read, so it
/// does not replace the new sign-in at the next start.
pub fn keep_login(
    store: &dyn SyncStore,
    refresh_token: &Secret,
    user: Option<String>,
    configured: Option<&Secret>,
) -> Result<()> {
    let previous = SignIn::load(store)?.unwrap_or_default();
    store.set_credential(REFRESH_TOKEN_CREDENTIAL, refresh_token.expose())?;
    SignIn {
        user,
        origin: Some(Origin::Login),
        obtained_at: Some(now()),
        refreshed_at: None,
        config_sha256: configured.map(fingerprint).or(previous.config_sha256),
    }
    .save(store)
}

/// The refresh token the Partner Center client starts with (see the module docs); records
/// what it decided. `sign_in_command` is named when there is none.
pub fn starting_refresh_token(
    pc: &PartnerCenterConfig,
    store: &dyn SyncStore,
    sign_in_command: &str,
) -> Result<Secret> {
    let configured = pc
        .refresh_token
        .as_ref()
        .map(|r| r.read("partner_center.refresh_token"))
        .transpose()?;
    let kept = store.credential(REFRESH_TOKEN_CREDENTIAL)?.map(Secret::new);
    let record = SignIn::load(store)?;
    match (configured, kept) {
        (None, Some(kept)) => Ok(kept),
        (None, None) => bail!(
            "Partner Center has no sign-in: run `{sign_in_command}` (or set [partner_center] \
             refresh_token to a delegated refresh token)"
        ),
        (Some(configured), kept) => {
            let hash = fingerprint(&configured);
            let read_before = match (&record, &kept) {
                (Some(r), Some(_)) => r.config_sha256.as_deref() == Some(hash.as_str()),
                // A state from before the hashes: its kept token is the newer one.
                (None, Some(_)) => true,
                (_, None) => false,
            };
            if let (true, Some(kept)) = (read_before, kept) {
                if record.is_none() {
                    SignIn {
                        origin: Some(Origin::Config),
                        config_sha256: Some(hash),
                        ..SignIn::default()
                    }
                    .save(store)?;
                }
                return Ok(kept);
            }
            if record.is_some() {
                tracing::info!(
                    "[partner_center] refresh_token changed since it was last read; it replaces the refresh token kept in the state database"
                );
            }
            store.set_credential(REFRESH_TOKEN_CREDENTIAL, configured.expose())?;
            SignIn {
                user: None,
                origin: Some(Origin::Config),
                obtained_at: Some(now()),
                refreshed_at: None,
                config_sha256: Some(hash),
            }
            .save(store)?;
            Ok(configured)
        }
    }
}

/// Partner Center refresh tokens kept in the state database: every rotated one is saved (and
/// the record's `refreshed_at` moved), and the newest is offered when the one in hand is
/// refused.
pub struct StoredRefreshToken(pub Arc<dyn SyncStore>);

impl RefreshTokenKeeper for StoredRefreshToken {
    fn load(&self) -> Option<Secret> {
        match self.0.credential(REFRESH_TOKEN_CREDENTIAL) {
            Ok(token) => token.map(Secret::new),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "could not read the kept Partner Center refresh token");
                None
            }
        }
    }

    fn save(&self, token: &Secret) {
        if let Err(e) = self
            .0
            .set_credential(REFRESH_TOKEN_CREDENTIAL, token.expose())
        {
            tracing::error!(error = %format!("{e:#}"), "could not keep the rotated Partner Center refresh token");
            return;
        }
        let refreshed = SignIn::load(&*self.0).and_then(|record| {
            SignIn {
                refreshed_at: Some(now()),
                ..record.unwrap_or_default()
            }
            .save(&*self.0)
        });
        if let Err(e) = refreshed {
            tracing::warn!(error = %format!("{e:#}"), "could not record when the Partner Center refresh token was refreshed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretRef;
    use crate::store::testing::store_tests;

    fn config(dir: &std::path::Path, token: Option<&str>) -> PartnerCenterConfig {
        let refresh_token = token.map(|t| {
            let path = dir.join("rt");
            std::fs::write(&path, t).unwrap();
            SecretRef {
                env: None,
                file: Some(path),
            }
        });
        let text = r#"base_url = "https://api.partner.microsoft.com"
token_url = "https://login.microsoftonline.com/t/oauth2/token"
client_id = "app"
client_secret = { env = "UNUSED" }"#;
        let mut pc: PartnerCenterConfig = toml::from_str(text).unwrap();
        pc.refresh_token = refresh_token;
        pc
    }

    fn start(pc: &PartnerCenterConfig, store: &dyn SyncStore) -> String {
        starting_refresh_token(pc, store, "cosell partner-center login --config c.toml")
            .unwrap()
            .expose()
            .to_owned()
    }

    store_tests! {
    fn a_changed_configured_token_replaces_the_kept_one_and_an_unchanged_one_does_not(handle) {
        let dir = tempfile::tempdir().unwrap();
        let store: &dyn SyncStore = &**handle;
        let pc = config(dir.path(), Some("rt-config-1"));
        assert_eq!(start(&pc, store), "rt-config-1");
        // The host rotates it.
        let host: Arc<dyn SyncStore> = handle.reopen();
        StoredRefreshToken(host).save(&Secret::new("rt-rotated"));
        assert_eq!(
            start(&pc, store),
            "rt-rotated",
            "the spent configured token is not reused"
        );
        let pc = config(dir.path(), Some("rt-config-2"));
        assert_eq!(
            start(&pc, store),
            "rt-config-2",
            "a new configured token wins"
        );
        let record = SignIn::load(store).unwrap().unwrap();
        assert_eq!(
            record.config_sha256,
            Some(fingerprint(&Secret::new("rt-config-2")))
        );
        // Never the value a second time: the record holds no token.
        let text = store.credential(SIGN_IN_CREDENTIAL).unwrap().unwrap();
        assert!(!text.contains("rt-config"), "{text}");
    }

    fn without_a_configured_token_the_login_is_used_or_the_error_names_the_command(handle) {
        let dir = tempfile::tempdir().unwrap();
        let store: &dyn SyncStore = &**handle;
        let pc = config(dir.path(), None);
        let err =
            starting_refresh_token(&pc, store, "cosell partner-center login --config c.toml")
                .unwrap_err();
        assert!(
            format!("{err:#}").contains("cosell partner-center login --config c.toml"),
            "{err:#}"
        );
        keep_login(
            store,
            &Secret::new("rt-login"),
            Some("alice@contoso.example".into()),
            None,
        )
        .unwrap();
        assert_eq!(start(&pc, store), "rt-login");
        // A login next to an unchanged configured token is not undone by it.
        let with_token = config(dir.path(), Some("rt-old-config"));
        keep_login(
            store,
            &Secret::new("rt-login-2"),
            None,
            Some(&Secret::new("rt-old-config")),
        )
        .unwrap();
        assert_eq!(start(&with_token, store), "rt-login-2");
    }

    fn a_state_from_before_the_record_keeps_its_token(handle) {
        let dir = tempfile::tempdir().unwrap();
        let store: &dyn SyncStore = &**handle;
        store
            .set_credential(REFRESH_TOKEN_CREDENTIAL, "rt-kept-long-ago")
            .unwrap();
        let pc = config(dir.path(), Some("rt-spent-config"));
        assert_eq!(start(&pc, store), "rt-kept-long-ago");
        assert_eq!(start(&pc, store), "rt-kept-long-ago");
    }
    }
}
