//! The load balancer in front of the sandbox's replicas: HAProxy from the operating system's
//! packages, on the configuration shipped in `deploy/haproxy/cosell.cfg` with the sandbox's
//! addresses filled in.

use super::children::Supervised;
use anyhow::{Context as _, Result, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::process::Command;

/// The shipped configuration, with `{{placeholders}}` for the addresses.
pub(super) const TEMPLATE: &str = include_str!("../../../deploy/haproxy/cosell.cfg");

/// One replica as the balancer sees it: its id and listeners.
pub struct Backend<'a> {
    /// The replica's id: its `server` name in the HAProxy configuration.
    pub id: &'a str,
    /// Its admin listener.
    pub admin: SocketAddr,
    /// Its webhook listener (health-checked on its admin port).
    pub webhooks: SocketAddr,
}

/// The template with the frontends on `admin` and `webhooks` and a server line a replica.
pub fn render(admin: SocketAddr, webhooks: SocketAddr, replicas: &[Backend<'_>]) -> String {
    let admin_servers: Vec<String> = replicas
        .iter()
        .map(|r| format!("    server {} {} check", r.id, r.admin))
        .collect();
    let webhook_servers: Vec<String> = replicas
        .iter()
        .map(|r| {
            format!(
                "    server {} {} check port {}",
                r.id,
                r.webhooks,
                r.admin.port()
            )
        })
        .collect();
    TEMPLATE
        .replace("{{webhooks_bind}}", &webhooks.to_string())
        .replace("{{admin_bind}}", &admin.to_string())
        .replace("{{webhook_servers}}", &webhook_servers.join("\n"))
        .replace("{{admin_servers}}", &admin_servers.join("\n"))
}

/// The HAProxy executable: `path` as given when it has a directory part, else found on
/// `PATH` or in `/usr/sbin` (not on every user's `PATH`).
pub fn find(path: &Path) -> Result<PathBuf> {
    if path.components().count() > 1 {
        if path.is_file() {
            return Ok(path.to_owned());
        }
        bail!(
            "HAProxy is not at {}: give --haproxy the path of the haproxy executable, or install \
             it (Debian: `apt-get install haproxy`)",
            path.display()
        );
    }
    let dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    dirs.iter()
        .map(PathBuf::as_path)
        .chain([Path::new("/usr/sbin"), Path::new("/usr/local/sbin")])
        .map(|dir| dir.join(path))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!(
                "`{}` was not found on PATH nor in /usr/sbin: --replicas runs the replicas behind \
                 HAProxy; install it (Debian: `apt-get install haproxy`) or pass --haproxy <path>",
                path.display()
            )
        })
}

/// Writes the configuration to `dir/haproxy.cfg`, has HAProxy check it, and starts it in the
/// foreground with its log in `dir/haproxy.log`.
pub(super) async fn start(
    haproxy: &Path,
    dir: &Path,
    admin: SocketAddr,
    webhooks: SocketAddr,
    replicas: &[Backend<'_>],
) -> Result<(Supervised, PathBuf)> {
    let config = dir.join("haproxy.cfg");
    std::fs::write(&config, render(admin, webhooks, replicas))
        .with_context(|| format!("writing {}", config.display()))?;
    let check = Command::new(haproxy)
        .arg("-c")
        .arg("-f")
        .arg(&config)
        .output()
        .await
        .with_context(|| format!("running {} -c", haproxy.display()))?;
    if !check.status.success() {
        bail!(
            "HAProxy rejects {}: {}{}",
            config.display(),
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let mut command = Command::new(haproxy);
    // -db: in the foreground, so the sandbox can watch and stop it.
    command.arg("-db").arg("-f").arg(&config);
    let process = Supervised::spawn("HAProxy".into(), command, &dir.join("haproxy.log"))?;
    Ok((process, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled_in() {
        let text = render(
            "127.0.0.1:8686".parse().unwrap(),
            "127.0.0.1:8689".parse().unwrap(),
            &[
                Backend {
                    id: "sandbox-1",
                    admin: "127.0.0.1:9001".parse().unwrap(),
                    webhooks: "127.0.0.1:9002".parse().unwrap(),
                },
                Backend {
                    id: "sandbox-2",
                    admin: "127.0.0.1:9003".parse().unwrap(),
                    webhooks: "127.0.0.1:9004".parse().unwrap(),
                },
            ],
        );
        assert!(!text.contains("{{"), "{text}");
        assert!(text.contains("bind 127.0.0.1:8689"));
        assert!(text.contains("server sandbox-2 127.0.0.1:9004 check port 9003"));
        assert!(text.contains("server sandbox-1 127.0.0.1:9001 check\n"));
    }
}
