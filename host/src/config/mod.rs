//! The host's TOML configuration: where state lives, the admin API, limits, pipelines.
//!
//! Relative paths in the file are resolved against the file's own directory, so a config can
//! be run from anywhere. Secrets (the admin token) are never written in the file itself: it
//! names an environment variable or a file that holds them. See `cosell.example.toml`.

mod connections;
mod listener;
mod replica;
mod retention;
mod state;
mod sync;

pub use crate::secret::{Secret, write_owner_only};
pub use connections::{
    DataverseAuthKind, DataverseConfig, DataverseWebhookAuth, PartnerCenterConfig,
    PartnerCenterWebhookConfig, SecretRef, WebhooksConfig,
};
pub use replica::ReplicaConfig;
pub use retention::RetentionConfig;
pub use state::{DEFAULT_STATE_PATH, PoolConfig, StateBackend, StateConfig, redacted};
pub use sync::{ConflictConfig, Owner, PollersConfig, SyncConfig};

pub use listener::ListenerLimits;

use crate::runtime::{Direction, Limits, StepConfig};
use anyhow::{Context as _, Result, bail};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// `[host]`: this replica's id, and how it follows the other replicas' deployments.
    #[serde(default)]
    pub host: ReplicaConfig,
    /// `[admin]`: the operator's HTTP API.
    #[serde(default)]
    pub admin: AdminConfig,
    /// `[state]`: where the durable queue and state live (SQLite or PostgreSQL).
    #[serde(default)]
    pub state: StateConfig,
    /// `[limits]`: what one call of a mapping step may use, unless its step overrides it.
    #[serde(default)]
    pub limits: Limits,
    /// `[deploy]`: the directory watched for components to hot-swap.
    #[serde(default)]
    pub deploy: DeployConfig,
    /// `[artifact_cache]`: compiled components kept on disk.
    #[serde(default)]
    pub artifact_cache: ArtifactCacheConfig,
    /// `[[pipelines.<direction>]]`: the mapping steps of each direction.
    pub pipelines: PipelinesConfig,
    /// Partner Center; without it (or `[dataverse]`) the host only serves mappings.
    pub partner_center: Option<PartnerCenterConfig>,
    /// Dataverse; without it (or `[partner_center]`) the host only serves mappings.
    pub dataverse: Option<DataverseConfig>,
    /// `[webhooks]`: the listener both services deliver to.
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    /// `[sync]`: the engine (workers, retries, conflicts).
    #[serde(default)]
    pub sync: SyncConfig,
    /// `[pollers]`: the change-tracking and reconciliation safety nets behind the webhooks.
    #[serde(default)]
    pub pollers: PollersConfig,
    /// `[retention]`: how long the audit trail, mapping versions and locks are kept.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// The file this configuration was loaded from (set by [`HostConfig::load`]; named in
    /// errors that tell the user which command to run).
    #[serde(skip)]
    pub source_file: Option<PathBuf>,
}

/// `[admin]`: the operator's HTTP API (deploy, list, rollback, health, metrics).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on. Defaults to loopback: expose it deliberately.
    pub listen: SocketAddr,
    /// Must be `true` for `listen` to be anything but a loopback address: the admin API deploys
    /// code into the host, so reaching it from the network is a decision, not a default.
    pub allow_remote: bool,
    /// Environment variable that holds the bearer token.
    pub token_env: Option<String>,
    /// File that holds the bearer token (for container secrets).
    pub token_file: Option<PathBuf>,
    /// The listener's limits (see [`AdminConfig::limits`]).
    pub header_read_timeout_ms: u64,
    /// A request body must arrive in full within this many milliseconds of its head.
    pub body_timeout_ms: u64,
    /// A request not answered within this many milliseconds gets 503 (a deploy compiles and
    /// test-runs its component first).
    pub request_timeout_ms: u64,
    /// Open connections at most; further ones wait to be accepted.
    pub max_connections: usize,
    /// Requests handled at once at most; beyond it the answer is 503.
    pub max_in_flight: usize,
    /// Serve the operator's web console on `/console` of this listener.
    pub console: bool,
    /// A console session ends after this many seconds without a request.
    pub session_idle_secs: u64,
    /// A console session ends this many seconds after sign-in, however active.
    pub session_max_secs: u64,
    /// The listener is reached through TLS (a proxy in front): the console's session cookie
    /// gets the `Secure` attribute, so a browser never sends it over plain HTTP.
    pub behind_tls: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8686)),
            allow_remote: false,
            token_env: Some("COSELL_ADMIN_TOKEN".into()),
            token_file: None,
            header_read_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            // A deploy compiles and test-runs a component before it answers.
            request_timeout_ms: 300_000,
            max_connections: 256,
            max_in_flight: 64,
            console: true,
            session_idle_secs: 30 * 60,
            session_max_secs: 12 * 60 * 60,
            behind_tls: false,
        }
    }
}

impl AdminConfig {
    /// The admin listener's timeouts and caps.
    pub fn limits(&self) -> Result<ListenerLimits> {
        listener::ListenerKeys {
            header_read_timeout_ms: self.header_read_timeout_ms,
            body_timeout_ms: self.body_timeout_ms,
            request_timeout_ms: self.request_timeout_ms,
            max_connections: self.max_connections,
            max_in_flight: self.max_in_flight,
        }
        .limits("admin")
    }

    /// Refuses a non-loopback `listen` unless `allow_remote` says it is meant, and limits
    /// that would disable themselves.
    pub fn validate(&self) -> Result<()> {
        self.limits()?;
        if self.session_idle_secs == 0 || self.session_max_secs == 0 {
            bail!(
                "admin.session_idle_secs and admin.session_max_secs must be at least 1 (seconds); the defaults are 1800 and 43200"
            );
        }
        if !self.listen.ip().is_loopback() && !self.allow_remote {
            bail!(
                "admin.listen = \"{}\" is not a loopback address; the admin API deploys code into the host, so it listens on 127.0.0.1 unless you also set admin.allow_remote = true (and put TLS in front of it)",
                self.listen
            );
        }
        Ok(())
    }

    /// Reads the bearer token from the file or the environment variable.
    pub fn token(&self) -> Result<Secret> {
        if self.token_file.is_none() && self.token_env.is_none() {
            bail!("admin.token_env or admin.token_file must name where the admin token is");
        }
        SecretRef {
            env: self.token_env.clone(),
            file: self.token_file.clone(),
        }
        .read("the admin token")
    }
}

/// `[deploy]`: hot-swap by dropping files into a directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeployConfig {
    /// Directory watched for `<step>.wasm` files. Unset: no directory is watched.
    pub watch_dir: Option<PathBuf>,
    /// How often the directory is scanned, in milliseconds.
    pub watch_interval_ms: u64,
}

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            watch_dir: None,
            watch_interval_ms: 500,
        }
    }
}

impl DeployConfig {
    /// The scan interval, `watch_interval_ms` (at least 10 ms).
    pub fn watch_interval(&self) -> Duration {
        Duration::from_millis(self.watch_interval_ms.max(10))
    }
}

/// `[artifact_cache]`: compiled components kept on disk, so a version compiled once loads
/// again (restart, rollback, re-deploy) without compiling. See `runtime::artifact_cache`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArtifactCacheConfig {
    /// `false`: every load compiles.
    pub enabled: bool,
    /// The cache directory (created 0700). Unset: `compiled/` beside the state database
    /// (with a PostgreSQL `[state] url`: `cosell-state/compiled` beside the configuration file).
    pub dir: Option<PathBuf>,
    /// Bound on the cache's size; the least recently used entries are deleted beyond it.
    pub max_mib: u64,
}

impl Default for ArtifactCacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: None,
            max_mib: crate::runtime::artifact_cache::DEFAULT_MAX_BYTES / (1024 * 1024),
        }
    }
}

impl ArtifactCacheConfig {
    /// The cache directory, or `None` when the cache is disabled.
    pub fn directory(&self, state: &StateConfig) -> Option<PathBuf> {
        if !self.enabled {
            return None;
        }
        Some(self.dir.clone().unwrap_or_else(|| {
            state
                .sqlite_path()
                .and_then(Path::parent)
                .unwrap_or(Path::new("cosell-state"))
                .join("compiled")
        }))
    }

    /// The size bound in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_mib.saturating_mul(1024 * 1024)
    }
}

/// `[pipelines]`: the ordered steps of each direction.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelinesConfig {
    /// `[[pipelines.partner-center-to-crm]]`: the steps that turn a referral into an opportunity,
    /// in order.
    #[serde(rename = "partner-center-to-crm", default)]
    pub partner_center_to_crm: Vec<StepSpec>,
    /// `[[pipelines.crm-to-partner-center]]`: the steps that turn an opportunity into a referral,
    /// in order.
    #[serde(rename = "crm-to-partner-center", default)]
    pub crm_to_partner_center: Vec<StepSpec>,
}

impl PipelinesConfig {
    /// Each direction with its steps, in order.
    pub fn by_direction(&self) -> [(Direction, &[StepSpec]); 2] {
        [
            (Direction::PartnerCenterToCrm, &self.partner_center_to_crm),
            (Direction::CrmToPartnerCenter, &self.crm_to_partner_center),
        ]
    }
}

/// One `[[pipelines.<direction>]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// The step's name, unique in the host: the name deployments and rollbacks use.
    pub step: String,
    /// The component deployed when the store has no version of this step yet.
    pub component: PathBuf,
    /// Sample input run on every new version before it goes live. Defaults to the built-in
    /// sample referral or opportunity of the step's direction for a pipeline's first step, and
    /// to the default mapping's output for that sample for a later step.
    pub sample: Option<PathBuf>,
    /// Operator key/values the step reads through the `config` import.
    #[serde(default)]
    pub config: StepConfig,
    /// This step's own limits: any subset of `[limits]`' keys, overriding them for this step
    /// only (e.g. a Python step's larger memory without raising every step's).
    #[serde(default)]
    pub limits: Option<crate::runtime::LimitsOverride>,
}

impl StepSpec {
    /// The limits every call of this step runs under: `base` (`[limits]`) with the step's
    /// own `limits` over it.
    pub fn effective_limits(&self, base: &Limits) -> Limits {
        match &self.limits {
            Some(over) => over.apply(base),
            None => base.clone(),
        }
    }
}

impl HostConfig {
    /// Reads, parses and checks the file at `path`, resolving relative paths against it.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the configuration file {}", path.display()))?;
        let mut config: HostConfig = toml::from_str(&text)
            .with_context(|| format!("parsing the configuration file {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config
            .validate()
            .with_context(|| format!("checking the configuration file {}", path.display()))?;
        config.source_file = Some(path.to_owned());
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        self.state.resolve(base);
        if self.state.url.is_some() && self.artifact_cache.dir.is_none() {
            // No state file to sit beside: the cache goes where the default file would be.
            self.artifact_cache.dir = Some(base.join("cosell-state/compiled"));
        }
        if let Some(dir) = self.deploy.watch_dir.as_mut() {
            resolve(dir);
        }
        if let Some(dir) = self.artifact_cache.dir.as_mut() {
            resolve(dir);
        }
        if let Some(file) = self.admin.token_file.as_mut() {
            resolve(file);
        }
        if let Some(pc) = self.partner_center.as_mut() {
            pc.client_secret.resolve(base);
            if let Some(token) = pc.refresh_token.as_mut() {
                token.resolve(base);
            }
            pc.webhooks
                .trusted_certificates
                .iter_mut()
                .for_each(resolve);
        }
        if let Some(dv) = self.dataverse.as_mut() {
            dv.client_secret.resolve(base);
        }
        if let Some(auth) = self.webhooks.dataverse.as_mut() {
            auth.value.resolve(base);
        }
        let steps = self
            .pipelines
            .partner_center_to_crm
            .iter_mut()
            .chain(self.pipelines.crm_to_partner_center.iter_mut());
        for step in steps {
            resolve(&mut step.component);
            if let Some(sample) = step.sample.as_mut() {
                resolve(sample);
            }
        }
    }

    /// The limits of the step named `step` ([`StepSpec::effective_limits`]), or `[limits]`
    /// when no step has that name.
    pub fn step_limits(&self, step: &str) -> Limits {
        self.pipelines
            .by_direction()
            .into_iter()
            .flat_map(|(_, specs)| specs.iter())
            .find(|spec| spec.step == step)
            .map_or_else(
                || self.limits.clone(),
                |spec| spec.effective_limits(&self.limits),
            )
    }

    /// The largest `memory_bytes` any step may use: what the instance pool is sized for.
    pub fn largest_step_memory(&self) -> u64 {
        self.pipelines
            .by_direction()
            .into_iter()
            .flat_map(|(_, specs)| specs.iter())
            .map(|spec| spec.effective_limits(&self.limits).memory_bytes)
            .fold(self.limits.memory_bytes, u64::max)
    }

    /// Checks what the types cannot: limits, unique and well-formed step names.
    pub fn validate(&self) -> Result<()> {
        self.admin.validate()?;
        self.state.backend()?;
        self.webhooks.limits()?;
        self.limits.validate().map_err(anyhow::Error::msg)?;
        let mut names = BTreeSet::new();
        for (direction, steps) in self.pipelines.by_direction() {
            for spec in steps {
                check_step_name(&spec.step)?;
                spec.effective_limits(&self.limits)
                    .validate()
                    .map_err(|err| {
                        anyhow::anyhow!(
                            "pipelines.{direction} step `{}`: its limits: {err}",
                            spec.step
                        )
                    })?;
                if !names.insert(spec.step.as_str()) {
                    bail!(
                        "step `{}` appears twice (again in pipelines.{direction}); step names must be unique",
                        spec.step
                    );
                }
            }
        }
        if let Some(pc) = &self.partner_center {
            pc.validate()?;
        }
        if let Some(dv) = &self.dataverse {
            dv.validate()?;
        }
        if self.partner_center.is_some() != self.dataverse.is_some() {
            bail!(
                "syncing needs both [partner_center] and [dataverse]; configure both, or neither to only serve mappings"
            );
        }
        if self.artifact_cache.enabled && self.artifact_cache.max_mib == 0 {
            bail!(
                "artifact_cache.max_mib must be at least 1; to run without the cache, set artifact_cache.enabled = false"
            );
        }
        if self.sync.workers == 0 || self.sync.max_attempts == 0 {
            bail!("sync.workers and sync.max_attempts must be at least 1");
        }
        if !self.sync.referral_link_template.contains("{id}") {
            bail!("sync.referral_link_template must contain {{id}}");
        }
        if names.is_empty() {
            bail!(
                "no pipeline steps are configured: add [[pipelines.partner-center-to-crm]] or [[pipelines.crm-to-partner-center]] entries"
            );
        }
        Ok(())
    }
}

/// Step names appear in URLs and file names: lowercase letters, digits, `-` and `_`.
pub fn check_step_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!("step name `{name}` must be 1-64 characters of a-z, 0-9, `-` and `_`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HostConfig> {
        let config: HostConfig = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn a_minimal_config_gets_sensible_defaults() {
        let config = parse(
            r#"
            [[pipelines.partner-center-to-crm]]
            step = "referral-to-opportunity"
            component = "r2o.wasm"
            config = { column-prefix = "new_" }
            "#,
        )
        .unwrap();
        assert_eq!(config.admin.listen.to_string(), "127.0.0.1:8686");
        assert_eq!(config.limits, Limits::default());
        assert_eq!(
            config.artifact_cache.directory(&config.state),
            Some(PathBuf::from("cosell-state/compiled")),
            "the artifact cache sits beside the state database by default"
        );
        let step = &config.pipelines.partner_center_to_crm[0];
        assert_eq!(step.config.get("column-prefix").unwrap(), "new_");
    }

    #[test]
    fn the_admin_api_stays_on_loopback_unless_remote_access_is_allowed() {
        let with_admin = |admin: &str| {
            parse(&format!(
                "[admin]\n{admin}\n[[pipelines.partner-center-to-crm]]\nstep = \"a\"\ncomponent = \"a.wasm\"\n"
            ))
        };
        let mut refused = 0;
        for listen in ["0.0.0.0:8686", "[::]:8686", "192.0.2.10:8686", "10.0.0.1:1"] {
            let err = with_admin(&format!("listen = \"{listen}\"")).unwrap_err();
            let message = format!("{err:#}");
            assert!(
                message.contains("admin.allow_remote = true") && message.contains(listen),
                "{listen}: {message}"
            );
            refused += 1;
            let allowed = with_admin(&format!("listen = \"{listen}\"\nallow_remote = true"))
                .unwrap_or_else(|e| panic!("{listen} with allow_remote: {e:#}"));
            assert!(allowed.admin.allow_remote);
        }
        for listen in ["127.0.0.1:8686", "127.0.0.2:0", "[::1]:8686"] {
            with_admin(&format!("listen = \"{listen}\"")).unwrap();
        }
        assert!(!with_admin("").unwrap().admin.allow_remote);
        eprintln!(
            "admin bind rule: {refused} non-loopback addresses refused without allow_remote and accepted with it; 3 loopback addresses accepted"
        );
    }

    #[test]
    fn duplicate_and_malformed_step_names_are_refused() {
        let dup = parse(
            r#"
            [[pipelines.partner-center-to-crm]]
            step = "a"
            component = "a.wasm"
            [[pipelines.crm-to-partner-center]]
            step = "a"
            component = "b.wasm"
            "#,
        );
        assert!(format!("{:#}", dup.unwrap_err()).contains("appears twice"));
        let bad = parse(
            r#"
            [[pipelines.partner-center-to-crm]]
            step = "Bad Name"
            component = "a.wasm"
            "#,
        );
        assert!(format!("{:#}", bad.unwrap_err()).contains("must be 1-64 characters"));
    }

    #[test]
    fn unknown_keys_are_refused_rather_than_ignored() {
        let err = parse(
            r#"
            [limits]
            fuell = 5
            [[pipelines.partner-center-to-crm]]
            step = "a"
            component = "a.wasm"
            "#,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("fuell"));
    }
}
