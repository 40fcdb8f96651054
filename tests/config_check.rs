//! `cosell config check` through the binary: a good configuration passes; each kind of mistake
//! (a missing secret file or variable, an unknown key, a missing component, a bad address, an
//! http service URL) is reported with its fix and exit code 1, never printing a secret; and
//! `--online` against both emulators names every missing setup step (webhooks not registered,
//! columns not provisioned, a registration pointing elsewhere) until the setup commands have
//! run.

mod support;

use support::commands_env::CommandsEnv;

use cosell_emulators::partner_center::PartnerCenterConfig;
use std::path::PathBuf;
use std::process::Command;

/// Both emulators and a host configuration for them (no host runs: only commands).
struct Setup(CommandsEnv);

impl std::ops::Deref for Setup {
    type Target = CommandsEnv;
    fn deref(&self) -> &CommandsEnv {
        &self.0
    }
}

impl Setup {
    async fn start() -> Setup {
        Setup(CommandsEnv::start(PartnerCenterConfig::default()).await)
    }

    /// Runs `cosell <args> --config <file>`: exit code and stdout + stderr.
    fn cosell(&self, args: &[&str]) -> (i32, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_cosell"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env(
                "COSELL_ADMIN_TOKEN",
                "config-check-admin-token-3b8d0f6a1c9e5",
            )
            .output()
            .expect("cosell runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().unwrap_or(-1), text)
    }

    /// `config check` on the configuration changed by `edit`; the file is restored after.
    fn check_edited(&self, edit: impl Fn(&str) -> String) -> (i32, String) {
        let original = std::fs::read_to_string(&self.config).unwrap();
        let edited = edit(&original);
        assert_ne!(edited, original, "the edit changed nothing");
        std::fs::write(&self.config, edited).unwrap();
        let result = self.cosell(&["config", "check"]);
        std::fs::write(&self.config, original).unwrap();
        result
    }

    fn secret_file(&self, name: &str) -> PathBuf {
        self.config.parent().unwrap().join("secrets").join(name)
    }
}

fn assert_problem(what: &str, (code, output): &(i32, String), expected: &[&str]) {
    assert_eq!(*code, 1, "{what}: exit code 1 expected:\n{output}");
    for text in expected {
        assert!(
            output.contains(text),
            "{what}: the output should contain {text:?}:\n{output}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_good_configuration_passes_and_each_mistake_is_named_with_its_fix() {
    let setup = Setup::start().await;
    let client_secret = setup.pc.config().client_secret.clone();

    let (code, output) = setup.cosell(&["config", "check"]);
    assert_eq!(code, 0, "a good configuration passes:\n{output}");
    assert!(output.contains("is ready"), "{output}");

    // A secret file that is not there.
    let dv_secret = setup.secret_file("dataverse-client-secret");
    let saved = std::fs::read(&dv_secret).unwrap();
    std::fs::remove_file(&dv_secret).unwrap();
    let missing_file = setup.cosell(&["config", "check"]);
    std::fs::write(&dv_secret, saved).unwrap();
    assert_problem(
        "missing secret file",
        &missing_file,
        &[
            "dataverse.client_secret",
            "dataverse-client-secret",
            "fix: write the secret into",
        ],
    );

    // A secret in an environment variable that is not set; other secrets are still checked and
    // none is printed.
    let missing_env = setup.check_edited(|text| {
        let line = text
            .lines()
            .find(|l| l.starts_with("client_secret = { file = ") && l.contains("partner-center"))
            .expect("the Partner Center client secret line");
        text.replace(
            line,
            "client_secret = { env = \"CONFIG_CHECK_UNSET_SECRET\" }",
        )
    });
    assert_problem(
        "missing secret variable",
        &missing_env,
        &[
            "partner_center.client_secret",
            "CONFIG_CHECK_UNSET_SECRET",
            "fix: export CONFIG_CHECK_UNSET_SECRET=",
        ],
    );

    // An unknown key.
    let unknown =
        setup.check_edited(|text| text.replace("[state]\n", "[state]\ncolour = \"blue\"\n"));
    assert_problem(
        "unknown key",
        &unknown,
        &["unknown field `colour`", "docs/configuration.md"],
    );

    // A component that is not there.
    let missing_component = setup.check_edited(|text| {
        text.replace(
            "referral_to_opportunity.wasm",
            "referral_to_opportunity_gone.wasm",
        )
    });
    assert_problem(
        "missing component",
        &missing_component,
        &[
            "referral_to_opportunity_gone.wasm",
            "cannot read",
            "fix: correct the path",
        ],
    );

    // An address that does not parse.
    let bad_address = setup.check_edited(|text| {
        let line = text.lines().find(|l| l.starts_with("listen = ")).unwrap();
        text.replacen(line, "listen = \"127.0.0.1:99999\"", 1)
    });
    assert_problem(
        "bad address",
        &bad_address,
        &[
            "listen = \"127.0.0.1:99999\"",
            "invalid socket address syntax",
            "fix: correct the key or value shown above",
        ],
    );

    // An http service URL without `allow_http` for that service: even on loopback.
    let http_url = setup.check_edited(|text| {
        text.replacen(
            "allow_http = true  # the Dataverse emulator, on loopback\n",
            "",
            1,
        )
    });
    assert_problem(
        "http URL",
        &http_url,
        &[
            "dataverse.url",
            "not an https URL",
            "set dataverse.allow_http = true",
        ],
    );
    let http_token_url =
        setup.check_edited(|text| text.replacen("allow_http = true\nbase_url", "base_url", 1));
    assert_problem(
        "http Partner Center URL",
        &http_token_url,
        &["partner_center.base_url", "not an https URL"],
    );

    // An admin token too short to start the host with (from admin.token_file).
    let short_token = setup.secret_file("short-admin-token");
    std::fs::write(&short_token, "short-admin-token").unwrap();
    let short = setup.check_edited(|text| {
        text.replacen(
            "[admin]\n",
            &format!("[admin]\ntoken_file = \"{}\"\n", short_token.display()),
            1,
        )
    });
    assert_problem(
        "short admin token",
        &short,
        &[
            "admin.token_env / admin.token_file",
            "at least 32",
            "openssl rand -hex 32",
        ],
    );
    assert!(!short.1.contains("short-admin-token\n"), "{}", short.1);

    for (what, (_, output)) in [
        ("missing secret file", &missing_file),
        ("missing secret variable", &missing_env),
        ("unknown key", &unknown),
        ("missing component", &missing_component),
    ] {
        assert!(
            !output.contains(&client_secret),
            "{what}: a secret was printed:\n{output}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn online_names_each_missing_setup_step_until_the_setup_commands_ran() {
    let setup = Setup::start().await;
    let public = "http://127.0.0.1:9";
    let online = ["config", "check", "--online", "--public-url", public];

    let before = setup.cosell(&online);
    assert_problem(
        "before setup",
        &before,
        &[
            "no webhook is registered for the tenant",
            "cosell partner-center register-webhooks --url http://127.0.0.1:9/webhooks/partner-center",
            "lacks cosell's columns",
            "cosell dataverse provision --solution",
            "no `cosell` webhook is registered",
            "cosell dataverse register-webhook --url http://127.0.0.1:9/webhooks/dataverse",
        ],
    );

    for args in [
        vec!["dataverse", "provision", "--solution", "cosell"],
        vec![
            "partner-center",
            "register-webhooks",
            "--url",
            "http://127.0.0.1:9/webhooks/partner-center",
        ],
        vec![
            "dataverse",
            "register-webhook",
            "--url",
            "http://127.0.0.1:9/webhooks/dataverse",
        ],
    ] {
        let (code, output) = setup.cosell(&args);
        assert_eq!(code, 0, "{args:?}:\n{output}");
    }

    let (code, output) = setup.cosell(&online);
    assert_eq!(code, 0, "after setup the online check passes:\n{output}");
    assert!(output.contains("checked against both services"), "{output}");

    let (code, output) = setup.cosell(&["config", "check", "--online"]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("the webhook URLs were not compared"),
        "without --public-url a note says the URLs were not compared:\n{output}"
    );

    let elsewhere = setup.cosell(&[
        "config",
        "check",
        "--online",
        "--public-url",
        "https://cosell.contoso.example",
    ]);
    assert_problem(
        "another public URL",
        &elsewhere,
        &[
            "webhooks are delivered to http://127.0.0.1:9/webhooks/partner-center, not to this host's https://cosell.contoso.example/webhooks/partner-center",
            "delivers to http://127.0.0.1:9/webhooks/dataverse, not to this host's https://cosell.contoso.example/webhooks/dataverse",
        ],
    );
}

#[test]
fn config_check_has_help() {
    let output = Command::new(env!("CARGO_BIN_EXE_cosell"))
        .args(["config", "check", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        help.contains("--online") && help.contains("--public-url"),
        "{help}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn online_names_a_missing_sign_in_and_a_refused_secret() {
    let setup = Setup::start().await;
    std::fs::write(
        setup.secret_file("dataverse-client-secret"),
        "not-the-secret",
    )
    .unwrap();
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let without_token: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("refresh_token ="))
        .collect();
    std::fs::write(&setup.config, without_token.join("\n")).unwrap();

    let offline = setup.cosell(&["config", "check"]);
    assert_eq!(
        offline.0, 0,
        "offline, neither a sign-in nor a secret's acceptance is checked:\n{}",
        offline.1
    );
    let online = setup.cosell(&["config", "check", "--online"]);
    assert_problem(
        "no sign-in, wrong Dataverse secret",
        &online,
        &[
            "Partner Center: no sign-in is kept",
            "fix: run `cosell partner-center login --config",
            "Dataverse: no token",
        ],
    );
    assert!(!online.1.contains("not-the-secret"), "{}", online.1);
}
