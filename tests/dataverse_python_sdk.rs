//! A Dataverse client we did not write against the Dataverse emulator: Microsoft's Python SDK
//! (`PowerPlatform-Dataverse-Client` from PyPI, in a virtualenv of its own under
//! `compat/dataverse-python-sdk/`), unpatched, over HTTPS (the SDK refuses plain HTTP), running
//! `compat/dataverse-python-sdk/suite.py`: table metadata, create, read, update, delete, a
//! choice written by its label, bulk create and update, queries with filters, ordering and
//! paging. If the emulator answers a call differently from the service the SDK was written
//! for, the SDK fails the suite.

mod support;

use cosell_emulators::common::tls::SelfSignedTls;
use cosell_emulators::dataverse::{Dataverse, DataverseConfig};
use std::path::PathBuf;
use std::time::Duration;

/// The suite's bound: a first run of the SDK imports pandas (seconds), the calls are fast.
const BOUND: Duration = Duration::from_secs(180);

fn sdk_dir() -> PathBuf {
    support::repo_root().join("compat/dataverse-python-sdk")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsofts_python_sdk_works_against_the_emulator_unpatched() {
    let python = sdk_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: `make sdk-venv` installs Microsoft's Python SDK there (make test does it)",
        python.display()
    );
    let dv = Dataverse::new(DataverseConfig::default());
    dv.provision_cosell();
    let tls = SelfSignedTls::generate().unwrap();
    let running = dv.serve_tls(tls.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("emulator-ca.pem");
    std::fs::write(&ca, tls.certificate_pem()).unwrap();
    let config = dv.config().clone();

    let run = tokio::process::Command::new(&python)
        .arg(sdk_dir().join("suite.py"))
        .env("DATAVERSE_URL", running.url())
        .env(
            "TOKEN_URL",
            format!("{}/{}/oauth2/v2.0/token", running.url(), config.tenant_id),
        )
        .env("CLIENT_ID", &config.client_id)
        .env("CLIENT_SECRET", &config.client_secret)
        .env("REQUESTS_CA_BUNDLE", &ca)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(BOUND, run)
        .await
        .expect("the SDK suite finishes within its bound")
        .expect("the SDK suite starts");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    println!("{stdout}");
    assert!(
        output.status.success(),
        "Microsoft's Python SDK failed against the emulator:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    running.stop().await;
}
