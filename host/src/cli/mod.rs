//! The `cosell` command line: `serve`, `sandbox`, `mapping test | new | deploy [--shadow] |
//! shadow | promote | discard | replay | config | list | rollback`,
//! `queue`, `dead-letters list | replay`, `audit`, `backfill`, and the setup commands
//! `partner-center login | register-webhooks`, `dataverse provision | register-webhook`.
//!
//! The doc comments of the commands and their flags are the `--help` text, written for a
//! terminal: `[partner_center]` there is a section of the configuration file and
//! `<data-dir>` a placeholder, not rustdoc's links and tags.
#![allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::invalid_html_tags,
    rustdoc::bare_urls
)]

mod admin_client;
mod backfill;
mod config_check;
mod login;
mod mapping_config;
mod mapping_fixtures;
mod mapping_new;
mod mapping_replay;
mod mapping_shadow;
mod mapping_test;
mod queue;
#[cfg(feature = "sandbox")]
mod sandbox;
mod serve;
pub mod setup;
mod sync_admin;

use crate::runtime::Direction;
use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// cosell keeps Microsoft Partner Center co-sell referrals and Dynamics 365 opportunities in
/// sync. Every field mapping runs as a sandboxed WebAssembly component you can test locally
/// and hot-swap into a running host.
#[derive(Debug, Parser)]
#[command(name = "cosell", version, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "COSELL_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Plain text lines, coloured when stderr is a terminal.
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

/// The commands of `cosell`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the host: the mapping runtime and the admin API (deploy, list, rollback, health,
    /// metrics) and, with [partner_center] and [dataverse] configured, the sync engine (webhook
    /// listener, pollers, queue workers). Stops cleanly on Ctrl-C or SIGTERM, finishing the
    /// events in hand.
    Serve {
        /// The host's TOML configuration (see cosell.example.toml).
        #[arg(long, short, env = "COSELL_CONFIG")]
        config: PathBuf,
        /// This replica's id in /healthz and the logs (overrides `[host] replica_id`;
        /// default: the host name). Unique among the replicas running on one PostgreSQL
        /// state: a second one under an id in use is refused.
        #[arg(long)]
        replica_id: Option<String>,
    },
    /// Run the whole product on this machine: the Partner Center and Dataverse emulators,
    /// seeded with realistic data, and the host with the default mappings syncing them (both
    /// emulators' webhooks registered with it), all on loopback.
    /// Writes the endpoints and secrets to <data-dir>/sandbox.json. Ctrl-C stops it.
    #[cfg(feature = "sandbox")]
    Sandbox(sandbox::SandboxArgs),
    /// Show the sync events a running host has pending and running (running ones first, then
    /// pending ones in the order they run): id, side, record, attempts, when each runs next or
    /// which replica runs it, and its last error.
    Queue(queue::QueueArgs),
    /// Work with mapping components: test them locally, deploy (or shadow-deploy beside the
    /// active version, then promote or discard), replay a record, change a step's config, list
    /// and roll back.
    #[command(subcommand)]
    Mapping(MappingCommand),
    /// Show and replay sync events that failed every attempt.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLettersCommand),
    /// Show the sync audit trail of a running host, newest first, a page at a time: what was
    /// created, updated, skipped, refused or retried, and every conflict; filter by record,
    /// outcome, time range or conflicts only.
    Audit {
        /// Which events to show.
        #[command(flatten)]
        filters: sync_admin::AuditArgs,
        /// The running host to ask.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Create the Dataverse opportunities of the referrals already in Partner Center, in bulk
    /// ($batch requests), for a partner connecting cosell to existing referrals. Referrals
    /// already linked or whose opportunity exists are skipped, so it is safe to run again and
    /// next to a running host. Prints progress on stderr and a summary; exits 1 if any
    /// referral failed.
    Backfill(backfill::BackfillArgs),
    /// Partner Center setup.
    #[command(subcommand, name = "partner-center")]
    PartnerCenter(PartnerCenterCommand),
    /// Dataverse setup.
    #[command(subcommand)]
    Dataverse(DataverseCommand),
    /// Check a configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// The commands of `cosell config`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check that a configuration is ready to run and say what to fix: keys and values,
    /// secrets readable (never printed), components present, state directory writable, a
    /// Partner Center sign-in; with --online also tokens from both services, the webhook
    /// registrations and Dataverse's provisioning. Exits 1 when anything needs fixing.
    Check {
        /// The host's TOML configuration (see cosell.example.toml).
        #[arg(long, short, env = "COSELL_CONFIG")]
        config: PathBuf,
        /// Also ask Partner Center and Dataverse (tokens, registrations, provisioning).
        #[arg(long)]
        online: bool,
        /// The public base URL of the webhook listener (behind your TLS proxy), e.g.
        /// https://cosell.example.com: the registrations must deliver there.
        #[arg(long, requires = "online")]
        public_url: Option<String>,
    },
}

/// The commands of `cosell dead-letters`.
#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// List the dead letters of a running host (record, attempts, last error), and its parked
    /// events (record, step, version, reason: they run again when the step gets another
    /// version).
    List {
        /// The running host to ask.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Queue dead letters again (after the cause is fixed, e.g. a fixed mapping deployed).
    Replay {
        /// The ids to replay (from `cosell dead-letters list`).
        ids: Vec<i64>,
        /// Replay every dead letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// The running host to ask.
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// The commands of `cosell partner-center`.
#[derive(Debug, Subcommand)]
pub enum PartnerCenterCommand {
    /// Sign in to Partner Center as a user with a Referrals role (the OAuth device-code flow:
    /// open the page it prints, enter the code) and keep the refresh token in the state
    /// database, where the host and the other commands find it. Run it again when Partner
    /// Center refuses the kept token. With --status, show whose sign-in is kept and when it was
    /// obtained and last refreshed (never the token).
    Login {
        /// The host's TOML configuration (see cosell.example.toml).
        #[arg(long, short, env = "COSELL_CONFIG")]
        config: PathBuf,
        /// Show the kept sign-in instead of signing in.
        #[arg(long)]
        status: bool,
    },
    /// Register cosell's webhook URL for referral-created, referral-updated,
    /// related-referral-created and related-referral-updated.
    RegisterWebhooks {
        /// The host's TOML configuration (see cosell.example.toml).
        #[arg(long, short, env = "COSELL_CONFIG")]
        config: PathBuf,
        /// The public URL of `/webhooks/partner-center` (behind your TLS proxy).
        #[arg(long)]
        url: String,
        /// Replace the tenant's registration, removing events other applications registered
        /// (printed first). Without it, those events are kept: Partner Center keeps one
        /// registration per tenant, and the union is registered with this URL.
        #[arg(long, alias = "overwrite")]
        replace: bool,
        /// Then have Partner Center send a test event and report whether it arrived (the host
        /// must be running behind the URL).
        #[arg(long)]
        validate: bool,
    },
}

/// The commands of `cosell dataverse`.
#[derive(Debug, Subcommand)]
pub enum DataverseCommand {
    /// Make Dataverse ready for cosell inside a solution: its custom columns on opportunity, the
    /// alternate key on the referral identifier and change tracking on opportunity (only what is
    /// missing; safe to re-run).
    Provision {
        /// The host's TOML configuration (see cosell.example.toml).
        #[arg(long, short, env = "COSELL_CONFIG")]
        config: PathBuf,
        /// The unique name of the solution the columns, the key and the change-tracking
        /// setting go into (create it first, with your publisher, in make.powerapps.com).
        #[arg(long)]
        solution: String,
        /// The customization prefix of that solution's publisher (default: the configured
        /// column prefix without its `_`, e.g. `cosell`); it must match the column prefix.
        #[arg(long)]
        publisher_prefix: Option<String>,
    },
    /// Create or update the `cosell` service endpoint and its steps on opportunity Create,
    /// Update, Win and Lose, authenticated as [webhooks.dataverse] says.
    RegisterWebhook {
        /// The host's TOML configuration (see cosell.example.toml).
        #[arg(long, short, env = "COSELL_CONFIG")]
        config: PathBuf,
        /// The public URL of `/webhooks/dataverse`.
        #[arg(long)]
        url: String,
    },
}

/// The commands of `cosell mapping`.
#[derive(Debug, Subcommand)]
pub enum MappingCommand {
    /// Run a component on one record under the production limits. Prints the output JSON on
    /// stdout and fuel, memory, time and the guest's logs on stderr. Exits 1 if the mapping
    /// fails (rejects, skips, fails, traps or hits a limit). With --fixtures DIR, runs every
    /// case of a fixtures directory instead: one line per case (PASS/FAIL/UPDATED, fuel, peak
    /// memory, time), a diff of each mismatch, a summary; exits 1 if any case fails.
    Test(mapping_test::TestArgs),
    /// Start a mapping project outside this repository: the step's source in Rust, Python or
    /// JavaScript, a one-command ./build.sh, the contract, the documents' schemas and types,
    /// fixtures with expected outputs and a README.
    New(mapping_new::NewArgs),
    /// Deploy a new version of a step to a running host (validated before it goes live).
    Deploy {
        /// The step to deploy to, e.g. referral-to-opportunity.
        step: String,
        /// The .wasm file (a component, or a core module built with wit-bindgen).
        component: PathBuf,
        /// Validate and store it as the step's shadow instead of activating it: it then runs
        /// beside the active version on every live record, its outputs compared and never
        /// written (see `cosell mapping shadow`, `promote`, `discard`).
        #[arg(long)]
        shadow: bool,
        /// The running host to deploy to.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List the steps of a running host, or the stored versions of one step.
    List {
        /// Show the versions of this step instead of all steps.
        step: Option<String>,
        /// The running host to ask.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Re-activate an earlier version of a step on a running host.
    Rollback {
        /// The step to roll back.
        step: String,
        /// The version to go back to (full `sha256:` hash or a unique prefix). Default: the
        /// version that was active before the current one.
        #[arg(long)]
        to: Option<String>,
        /// The running host to change.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show a step's config on a running host and its revision, or change it without a
    /// restart (--set, --unset: checked on the step's sample first, stored as a new revision),
    /// list its revisions (--history), or go back to one (--revert-to).
    Config(mapping_config::ConfigArgs),
    /// Report on a step's shadow version on the replica answering: records seen, identical,
    /// different (with examples: record, changed JSON pointers, diff) and failed (with the
    /// error), and calls skipped because the host was busy.
    Shadow(mapping_shadow::ShadowArgs),
    /// Activate a step's shadow version (validated again, like a deploy) and end the shadow.
    Promote(mapping_shadow::ShadowStepArgs),
    /// End a step's shadow version; the active version is unchanged.
    Discard(mapping_shadow::ShadowStepArgs),
    /// Run a record's last pipeline run on a running host again, through the active pipeline
    /// or with a candidate in place of one step; print the output (stdout) and its diff against
    /// what that run produced (stderr). Nothing is synced. Exits 0 when the output is the same,
    /// 2 when it differs, 1 on an error.
    Replay(mapping_replay::ReplayArgs),
    /// Keep a stored version of a step whatever the retention (`retention.mapping_versions`).
    Pin {
        /// The step.
        step: String,
        /// The version (full `sha256:` hash or a unique prefix).
        #[arg(value_name = "VERSION")]
        hash: String,
        /// The running host to change.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Let retention delete a pinned version again once it is neither active nor recent.
    Unpin {
        /// The step.
        step: String,
        /// The version (full `sha256:` hash or a unique prefix).
        #[arg(value_name = "VERSION")]
        hash: String,
        /// The running host to change.
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// How to reach a running host's admin API.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// The admin API's base URL.
    #[arg(
        long,
        env = "COSELL_ADMIN_URL",
        default_value = "http://127.0.0.1:8686"
    )]
    pub admin_url: String,
    /// Refused: a token on the command line shows in the process list and the shell history.
    /// Kept as a hidden flag so that using it gets an error saying what to do instead.
    #[arg(long, alias = "admin-token", hide = true)]
    pub token: Option<String>,
    /// A file holding the admin bearer token. Without it the token is read from the
    /// environment variable COSELL_ADMIN_TOKEN.
    #[arg(long, env = "COSELL_ADMIN_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

impl AdminArgs {
    /// The admin token, from `--token-file` or `COSELL_ADMIN_TOKEN`; never from the command
    /// line itself.
    pub fn token(&self) -> Result<crate::config::Secret> {
        if self.token.is_some() {
            anyhow::bail!(
                "--token is refused: a token on the command line is visible to every user in the process list and stays in the shell history; set COSELL_ADMIN_TOKEN, or put the token in a file and pass --token-file <path> (or set COSELL_ADMIN_TOKEN_FILE)"
            );
        }
        match &self.token_file {
            Some(file) => crate::config::Secret::from_file(file),
            None => crate::config::Secret::from_env("COSELL_ADMIN_TOKEN"),
        }
        .context("reading the admin token")
    }
}

/// Directions as accepted on the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    /// Partner Center referrals to CRM opportunities.
    #[default]
    PartnerCenterToCrm,
    /// CRM opportunities to Partner Center referrals.
    CrmToPartnerCenter,
}

impl From<DirectionArg> for Direction {
    fn from(value: DirectionArg) -> Self {
        match value {
            DirectionArg::PartnerCenterToCrm => Direction::PartnerCenterToCrm,
            DirectionArg::CrmToPartnerCenter => Direction::CrmToPartnerCenter,
        }
    }
}

impl Command {
    /// Whether the command runs until it is stopped (`serve`, `sandbox`) rather than once:
    /// those log at info by default, the one-shot commands only warn, so their own output
    /// stays readable.
    pub fn runs_until_stopped(&self) -> bool {
        match self {
            Command::Serve { .. } => true,
            #[cfg(feature = "sandbox")]
            Command::Sandbox(_) => true,
            _ => false,
        }
    }
}

/// Runs the parsed command; returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Serve { config, replica_id } => {
            serve::serve(&config, replica_id).await.map(|()| 0)
        }
        #[cfg(feature = "sandbox")]
        Command::Sandbox(args) => sandbox::run(args).await.map(|()| 0),
        Command::Queue(args) => queue::run(args).await,
        Command::Mapping(MappingCommand::Test(args)) => mapping_test::run(args).await,
        Command::Mapping(MappingCommand::New(args)) => mapping_new::run(args),
        Command::Mapping(MappingCommand::Deploy {
            step,
            component,
            shadow: false,
            admin,
        }) => admin_client::deploy(&admin, &step, &component).await,
        Command::Mapping(MappingCommand::Deploy {
            step,
            component,
            shadow: true,
            admin,
        }) => mapping_shadow::deploy(&admin, &step, &component).await,
        Command::Mapping(MappingCommand::Shadow(args)) => mapping_shadow::report(&args).await,
        Command::Mapping(MappingCommand::Promote(args)) => mapping_shadow::promote(&args).await,
        Command::Mapping(MappingCommand::Discard(args)) => mapping_shadow::discard(&args).await,
        Command::Mapping(MappingCommand::Replay(args)) => mapping_replay::run(&args).await,
        Command::Mapping(MappingCommand::Config(args)) => mapping_config::run(&args).await,
        Command::Mapping(MappingCommand::List { step, admin }) => {
            admin_client::list(&admin, step.as_deref()).await
        }
        Command::Mapping(MappingCommand::Rollback { step, to, admin }) => {
            admin_client::rollback(&admin, &step, to.as_deref()).await
        }
        Command::Mapping(MappingCommand::Pin { step, hash, admin }) => {
            admin_client::pin(&admin, &step, &hash, true).await
        }
        Command::Mapping(MappingCommand::Unpin { step, hash, admin }) => {
            admin_client::pin(&admin, &step, &hash, false).await
        }
        Command::Audit { filters, admin } => sync_admin::audit(&admin, &filters).await,
        Command::DeadLetters(DeadLettersCommand::List { admin }) => sync_admin::list(&admin).await,
        Command::Backfill(args) => backfill::run(args).await,
        Command::DeadLetters(DeadLettersCommand::Replay { ids, all, admin }) => {
            sync_admin::replay(&admin, &ids, all).await
        }
        Command::PartnerCenter(PartnerCenterCommand::RegisterWebhooks {
            config,
            url,
            replace,
            validate,
        }) => setup::register_webhooks_command(&config, &url, replace, validate).await,
        Command::PartnerCenter(PartnerCenterCommand::Login { config, status }) => {
            login::run(&config, status).await
        }
        Command::Dataverse(DataverseCommand::Provision {
            config,
            solution,
            publisher_prefix,
        }) => setup::provision_command(&config, &solution, publisher_prefix.as_deref()).await,
        Command::Config(ConfigCommand::Check {
            config,
            online,
            public_url,
        }) => config_check::run(&config, online, public_url.as_deref()).await,
        Command::Dataverse(DataverseCommand::RegisterWebhook { config, url }) => {
            setup::register_dataverse_webhook_command(&config, &url).await
        }
    }
}
