//! Both emulators and a host configuration written for them, with no host running: the
//! setting of tests of the commands an operator runs before or beside a host (sign-in,
//! registrations, provisioning, `config check`).

use super::guest_path;
use cosell::sandbox::wiring::{Emulators, HostWiring, default_pipelines, write_host_config};
use cosell_emulators::common::server::RunningEmulator;
use cosell_emulators::dataverse::{Dataverse, DataverseConfig};
use cosell_emulators::partner_center::{PartnerCenter, PartnerCenterConfig, RunningPartnerCenter};
use std::path::PathBuf;

/// The emulators, running, and the configuration file (`cosell.toml` in `dir`).
pub struct CommandsEnv {
    pub pc: PartnerCenter,
    pub pc_server: RunningPartnerCenter,
    pub dv: Dataverse,
    pub dv_server: RunningEmulator,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl CommandsEnv {
    /// Starts the emulators (Partner Center with `pc`) and writes a configuration for them as
    /// `cosell sandbox` does, pollers off.
    pub async fn start(pc: PartnerCenterConfig) -> Self {
        Self::start_with(pc, DataverseConfig::default()).await
    }

    /// [`CommandsEnv::start`] with Dataverse's settings too.
    pub async fn start_with(pc: PartnerCenterConfig, dv: DataverseConfig) -> Self {
        let pc = PartnerCenter::new(pc);
        let pc_server = pc.serve().await.expect("Partner Center starts");
        let dv = Dataverse::new(dv);
        let dv_server = dv.serve().await.expect("Dataverse starts");
        let dir = tempfile::tempdir().unwrap();
        let emulators = Emulators::running(&pc, &pc_server, &dv, &dv_server);
        let wiring = HostWiring {
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            webhooks_listen: "127.0.0.1:0".parse().unwrap(),
            dataverse_poll_secs: 0,
            partner_center_poll_secs: 0,
            extra: String::new(),
            pipelines: default_pipelines(
                &guest_path("referral_to_opportunity.wasm"),
                &guest_path("opportunity_to_referral.wasm"),
            ),
            state_url: None,
        };
        let config = write_host_config(dir.path(), &emulators, &wiring)
            .await
            .expect("the configuration is written");
        Self {
            pc,
            pc_server,
            dv,
            dv_server,
            dir,
            config,
        }
    }
}
