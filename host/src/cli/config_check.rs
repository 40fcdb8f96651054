//! `cosell config check [--online] [--public-url U]`: finds what would stop a host from starting
//! or syncing, before it is started, and says how to fix each problem.
//!
//! Offline it loads the file with the host's own loader (types, unknown keys, the rules of
//! [`HostConfig::validate`]), then checks what the types cannot: every secret is readable (its
//! value is never printed), every named file exists, every component is a WebAssembly file, the
//! service URLs parse, and the state directory is writable. `--online` then signs in to both
//! services, compares the Partner Center webhook registration with the listener's public URL,
//! and looks for cosell's columns and service endpoint in Dataverse.

use crate::config::{HostConfig, SecretRef};
use crate::connections::odata::literal;
use crate::setup::{
    ENDPOINT_NAME, PARTNER_CENTER_EVENTS, find_one, key_and_tracking, missing_columns,
};
use crate::sinks::configured::{dataverse_client, partner_center_client};
use crate::store::sign_in::REFRESH_TOKEN_CREDENTIAL;
use anyhow::Result;
use std::path::Path;

/// The command that provisions Dataverse.
const PROVISION: &str =
    "run `cosell dataverse provision --solution <unique name>` (docs/production.md)";

/// What was found: problems (each with its fix) and notes (fine, but worth knowing).
#[derive(Debug, Default)]
struct Report {
    problems: Vec<String>,
    notes: Vec<String>,
}

impl Report {
    fn problem(&mut self, what: impl Into<String>) {
        self.problems.push(what.into());
    }

    fn note(&mut self, what: impl Into<String>) {
        self.notes.push(what.into());
    }
}

/// Runs the command; answers the exit code (1 when any problem was found).
pub(super) async fn run(config_path: &Path, online: bool, public_url: Option<&str>) -> Result<i32> {
    let mut report = Report::default();
    match HostConfig::load(config_path) {
        Err(err) => report.problem(format!(
            "{err:#}\n  fix: correct the key or value shown above (see docs/configuration.md for every key, its type and default)"
        )),
        Ok(config) => {
            check_offline(&config, &mut report);
            if online {
                if report.problems.is_empty() {
                    check_online(&config, public_url, &mut report).await;
                } else {
                    report.note("--online was skipped: fix the problems above first");
                }
            }
        }
    }
    for note in &report.notes {
        println!("note: {note}");
    }
    for problem in &report.problems {
        println!("problem: {problem}");
    }
    if report.problems.is_empty() {
        println!(
            "{} is ready{}",
            config_path.display(),
            if online {
                " (checked against both services)"
            } else {
                " (offline checks; add --online to check both services)"
            }
        );
        Ok(0)
    } else {
        println!("{} problem(s) found", report.problems.len());
        Ok(1)
    }
}

fn check_offline(config: &HostConfig, report: &mut Report) {
    check_secrets(config, report);
    for (direction, steps) in config.pipelines.by_direction() {
        for spec in steps {
            let key = format!("pipelines.{direction} step `{}`", spec.step);
            check_component(&key, &spec.component, report);
            if let Some(sample) = &spec.sample {
                check_readable(&format!("{key} sample"), sample, report);
            }
        }
    }
    if let Some(pc) = &config.partner_center {
        // Its URLs were checked by loading it (`HostConfig::validate`).
        for certificate in &pc.webhooks.trusted_certificates {
            check_readable(
                "partner_center.webhooks.trusted_certificates",
                certificate,
                report,
            );
        }
    }
    if let Some(dir) = &config.deploy.watch_dir
        && dir.exists()
        && !dir.is_dir()
    {
        report.problem(format!(
            "deploy.watch_dir {} is not a directory\n  fix: point it at a directory (it is created when missing)",
            dir.display()
        ));
    }
    if let Some(path) = config.state.sqlite_path() {
        check_state_directory(path, report);
    }
}

/// Every secret the configuration names, read (never printed).
fn check_secrets(config: &HostConfig, report: &mut Report) {
    let mut secrets: Vec<(&str, SecretRef)> = vec![(
        "admin.token_env / admin.token_file",
        SecretRef {
            env: config.admin.token_env.clone(),
            file: config.admin.token_file.clone(),
        },
    )];
    if let Some(pc) = &config.partner_center {
        secrets.push(("partner_center.client_secret", pc.client_secret.clone()));
        if let Some(token) = &pc.refresh_token {
            secrets.push(("partner_center.refresh_token", token.clone()));
        }
    }
    if let Some(dv) = &config.dataverse {
        secrets.push(("dataverse.client_secret", dv.client_secret.clone()));
    }
    if let Some(password) = &config.state.password {
        secrets.push(("state.password", password.clone()));
    }
    if let Some(auth) = &config.webhooks.dataverse {
        secrets.push(("webhooks.dataverse.value", auth.value.clone()));
    } else if config.dataverse.is_some() {
        report.note(
            "[webhooks.dataverse] is not set: `cosell dataverse register-webhook` needs it (kind, name, value)",
        );
    }
    for (key, secret) in secrets {
        if let Err(err) = secret.read(key) {
            let fix = match (&secret.file, &secret.env) {
                (Some(file), _) => format!(
                    "write the secret into {} (readable by cosell only: chmod 600)",
                    file.display()
                ),
                (None, Some(var)) => format!("export {var}=<the secret> before starting cosell"),
                (None, None) => {
                    format!("set {key} to {{ env = \"VAR\" }} or {{ file = \"path\" }}")
                }
            };
            report.problem(format!("{key}: {err:#}\n  fix: {fix}"));
        }
    }
    // The host refuses a short admin token at start-up; say so here first.
    if let Ok(token) = config.admin.token()
        && let Err(err) = crate::admin::check_token(&token)
    {
        report.problem(format!(
            "admin.token_env / admin.token_file: {err:#}\n  fix: replace the token with the output of `openssl rand -hex 32`"
        ));
    }
}

fn check_readable(key: &str, path: &Path, report: &mut Report) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(err) => {
            report.problem(format!(
                "{key}: cannot read {}: {err}\n  fix: correct the path (relative paths are relative to the configuration file) or create the file",
                path.display()
            ));
            None
        }
    }
}

fn check_component(key: &str, path: &Path, report: &mut Report) {
    if let Some(bytes) = check_readable(key, path, report)
        && !bytes.starts_with(b"\0asm")
    {
        report.problem(format!(
            "{key}: {} is not a WebAssembly file\n  fix: point `component` at a built .wasm (e.g. guest-mappings/dist/)",
            path.display()
        ));
    }
}

/// The state database's directory (or its nearest existing parent, where it will be created)
/// accepts a new file, and the database itself, if present, opens for writing.
fn check_state_directory(db: &Path, report: &mut Report) {
    let parent = db.parent().unwrap_or(Path::new("."));
    let existing = parent.ancestors().find(|p| p.is_dir()).unwrap_or(parent);
    if let Err(err) = tempfile::NamedTempFile::new_in(existing) {
        report.problem(format!(
            "state.path: the directory {} is not writable: {err}\n  fix: give the user running cosell write access to it, or point state.path elsewhere",
            existing.display()
        ));
        return;
    }
    if db.exists()
        && let Err(err) = std::fs::OpenOptions::new().append(true).open(db)
    {
        report.problem(format!(
            "state.path: {} cannot be opened for writing: {err}\n  fix: give the user running cosell write access to it",
            db.display()
        ));
    }
}

/// The public URL of one of the listener's paths, from `--public-url` (the origin or any URL
/// ending in the path).
fn public(public_url: &str, path: &str) -> String {
    let base = public_url.trim_end_matches('/');
    let base = base
        .strip_suffix("/webhooks/partner-center")
        .or_else(|| base.strip_suffix("/webhooks/dataverse"))
        .unwrap_or(base);
    format!("{base}{path}")
}

async fn check_online(config: &HostConfig, public_url: Option<&str>, report: &mut Report) {
    if config.partner_center.is_none() {
        report.note("no [partner_center] or [dataverse]: the host only serves mappings; nothing to check online");
        return;
    }
    if public_url.is_none() {
        report.note(
            "the webhook URLs were not compared: pass --public-url https://<public host> to check that both services deliver to this host",
        );
    }
    check_partner_center(config, public_url, report).await;
    check_dataverse(config, public_url, report).await;
}

async fn check_partner_center(config: &HostConfig, public_url: Option<&str>, report: &mut Report) {
    let state = match crate::store::open(&config.state) {
        Ok(state) => state,
        Err(err) => {
            let key = match config.state.sqlite_path() {
                Some(_) => "state.path",
                None => "state.url",
            };
            report.problem(format!("{key}: {err:#}"));
            return;
        }
    };
    let configured = config
        .partner_center
        .as_ref()
        .is_some_and(|pc| pc.refresh_token.is_some());
    if !configured && matches!(state.sync.credential(REFRESH_TOKEN_CREDENTIAL), Ok(None)) {
        report.problem(format!(
            "Partner Center: no sign-in is kept in {}\n  fix: run `cosell partner-center login --config {}`",
            state.location,
            config
                .source_file
                .as_deref()
                .unwrap_or(Path::new("cosell.toml"))
                .display()
        ));
        return;
    }
    let client = match partner_center_client(config, state.sync) {
        Ok(client) => client,
        Err(err) => {
            report.problem(format!("Partner Center: {err:#}"));
            return;
        }
    };
    // The Referrals API and the Webhooks API are two token audiences: read one page of each.
    if let Err(err) = client
        .list_referrals_while(None, None, Some(1), |_| false)
        .await
    {
        report.problem(format!(
            "Partner Center: the Referrals API refused: {err:#}\n  fix: check [partner_center] client_id, client_secret, token_url and base_url; the signed-in user must hold the Referrals admin role; run `cosell partner-center login` again if the sign-in was refused"
        ));
        return;
    }
    let registration = match client.webhook_registration().await {
        Ok(registration) => registration,
        Err(err) => {
            report.problem(format!(
                "Partner Center: the Webhooks API refused: {err:#}\n  fix: check [partner_center] webhooks_url, and that the app has the delegated Partner Center permission with admin consent"
            ));
            return;
        }
    };
    let register = format!(
        "run `cosell partner-center register-webhooks --url {}`",
        public_url
            .map(|u| public(u, "/webhooks/partner-center"))
            .unwrap_or_else(|| "https://<public host>/webhooks/partner-center".into())
    );
    let Some(registration) = registration else {
        report.problem(format!(
            "Partner Center: no webhook is registered for the tenant\n  fix: {register}"
        ));
        return;
    };
    let missing: Vec<&str> = PARTNER_CENTER_EVENTS
        .iter()
        .copied()
        .filter(|event| !registration.events.iter().any(|e| e == event))
        .collect();
    if !missing.is_empty() {
        report.problem(format!(
            "Partner Center: the webhook registration lacks {}\n  fix: {register}",
            missing.join(", ")
        ));
    }
    if let Some(public_url) = public_url {
        let expected = public(public_url, "/webhooks/partner-center");
        if registration.url != expected {
            report.problem(format!(
                "Partner Center: webhooks are delivered to {}, not to this host's {expected}\n  fix: {register}",
                registration.url
            ));
        }
    }
}

async fn check_dataverse(config: &HostConfig, public_url: Option<&str>, report: &mut Report) {
    let dv = match dataverse_client(config) {
        Ok(dv) => dv,
        Err(err) => {
            report.problem(format!("Dataverse: {err:#}"));
            return;
        }
    };
    match missing_columns(&dv, &config.sync.column_prefix).await {
        Ok(missing) if missing.is_empty() => {}
        Ok(missing) => report.problem(format!(
            "Dataverse: opportunity lacks cosell's columns {}\n  fix: {PROVISION}",
            missing
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Err(err) => {
            report.problem(format!(
                "Dataverse: no token, or opportunity's columns could not be read: {err:#}\n  fix: check [dataverse] url, client_id, client_secret and token_url, and that the application user has a security role"
            ));
            return;
        }
    }
    let prefix = &config.sync.column_prefix;
    match key_and_tracking(&dv, prefix)
        .await
        .map(|have| have.missing(prefix))
    {
        Ok(missing) if missing.is_empty() => {}
        Ok(missing) => report.problem(format!(
            "Dataverse: opportunity lacks {}\n  fix: {PROVISION}",
            missing.join(" and ")
        )),
        Err(err) => report.note(format!(
            "Dataverse: the alternate keys or change tracking could not be read ({err:#})"
        )),
    }
    let endpoint = dv
        .query(
            "serviceendpoints",
            &format!(
                "$select=serviceendpointid,url&$filter=name eq {}",
                literal(ENDPOINT_NAME)
            ),
        )
        .await;
    let register = format!(
        "run `cosell dataverse register-webhook --url {}`",
        public_url
            .map(|u| public(u, "/webhooks/dataverse"))
            .unwrap_or_else(|| "https://<public host>/webhooks/dataverse".into())
    );
    match endpoint {
        Err(err) => report.problem(format!(
            "Dataverse: the service endpoints could not be read: {err:#}\n  fix: give the application user read access to serviceendpoint"
        )),
        Ok(rows) => match rows.first() {
            None => report.problem(format!(
                "Dataverse: no `{ENDPOINT_NAME}` webhook is registered\n  fix: {register}"
            )),
            Some(row) => {
                let url = row["url"].as_str().unwrap_or_default();
                if let Some(public_url) = public_url {
                    let expected = public(public_url, "/webhooks/dataverse");
                    if url != expected {
                        report.problem(format!(
                            "Dataverse: the `{ENDPOINT_NAME}` webhook delivers to {url}, not to this host's {expected}\n  fix: {register}"
                        ));
                    }
                }
                match find_one(
                    &dv,
                    "sdkmessageprocessingsteps",
                    "sdkmessageprocessingstepid",
                    &format!("name eq {}", literal("cosell: opportunity Update")),
                )
                .await
                {
                    Ok(Some(_)) => {}
                    Ok(None) => report.problem(format!(
                        "Dataverse: the `{ENDPOINT_NAME}` webhook has no step on opportunity Update\n  fix: {register}"
                    )),
                    Err(err) => report.note(format!(
                        "Dataverse: the webhook's steps could not be read ({err:#})"
                    )),
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::public;

    #[test]
    fn the_public_url_may_be_the_origin_or_a_webhook_url() {
        for given in [
            "https://cosell.example",
            "https://cosell.example/",
            "https://cosell.example/webhooks/partner-center",
        ] {
            assert_eq!(
                public(given, "/webhooks/dataverse"),
                "https://cosell.example/webhooks/dataverse"
            );
        }
    }
}
