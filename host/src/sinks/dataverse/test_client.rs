//! A client of an in-process Dataverse emulator, for the sink's tests.

use crate::connections::dataverse::{DataverseClient, DataverseSettings};
use cosell_emulators::common::server::RunningEmulator;
use cosell_emulators::dataverse::Dataverse;
use std::time::Duration;

/// A client of `dv`, served at `server`, with the emulator's own app credentials.
pub(super) fn client(dv: &Dataverse, server: &RunningEmulator) -> DataverseClient {
    DataverseClient::new(DataverseSettings {
        url: server.url(),
        token_url: format!(
            "{}/{}/oauth2/v2.0/token",
            server.url(),
            dv.config().tenant_id
        ),
        client_id: dv.config().client_id.clone(),
        client_secret: crate::config::Secret::new(dv.config().client_secret.clone()),
        scope: None,
        timeout: Duration::from_secs(10),
        max_retries: 3,
        max_concurrency: 8,
    })
    .unwrap()
}
