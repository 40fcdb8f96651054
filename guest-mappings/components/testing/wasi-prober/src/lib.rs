//! Test guest `wasi-prober`: a mapping step whose world adds WASI 0.2 imports (environment,
//! preopens, sockets, stdout/stderr, clocks, random). The host should refuse to link it, or link
//! WASI stubs that give nothing away; `map` reports what the guest could observe:
//!
//! ```json
//! {"env": [["K","V"]...], "args": [...], "cwd": null, "preopens": ["/..."],
//!  "tcp": "ok" | "error: <code>", "tcp_connect": "...", "dns": "...",
//!  "wall_clock_seconds": n, "monotonic_ns": n, "random": n,
//!  "stdout": "ok" | "error: ...", "stderr": "ok" | "error: ...",
//!  "files": {"<path>": "read N bytes: <text>" | "error: ..."},
//!  "env_lookup": {"<NAME>": "<value>" | null},
//!  "config_keys": [...], "config_lookup": {"<key>": "<value>" | null}}
//! ```
//!
//! The input may name what to try, so a test can aim the prober at the secrets of the host it
//! runs in (its secret files, its state database, `/proc/self/environ`):
//! `{"probe": {"paths": [...], "env": [...], "config": [...]}}`. Without it, a default list of
//! paths and names is tried. Every path is tried from every preopened directory (there should
//! be none: a WASI 0.2 guest can only open files relative to a preopen, so that list is the
//! whole of its file access).
//!
//! It writes "hello from stdout" / "hello from stderr" to stdout / stderr.
//!
//! With `{"sleep": {"ms": N, "via": "block" | "poll" | "instant"}}` it does nothing else but
//! sleep on the monotonic clock, as `std::thread::sleep` does on wasm32-wasip2: it logs
//! "wasi-prober: about to sleep N ms (via …)" through the `log` import, subscribes to the clock
//! (`subscribe-duration`, or `subscribe-instant` for "instant") and waits on the pollable
//! (`block`, or `poll` for "poll"); if it ever wakes up it logs "wasi-prober: woke up" and
//! returns `{"slept_ms": N}`. The host should trap the call at the subscription.

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        // Only the WASI imports; `map` is exported through cosell-mapping (`export_mapping!`).
        path: "wit",
        world: "cosell:testing/wasi-prober-imports@0.1.0",
        generate_all,
    });
}

use bindings::wasi::cli::{environment, stderr, stdout};
use bindings::wasi::clocks::{monotonic_clock, wall_clock};
use bindings::wasi::filesystem::preopens;
use bindings::wasi::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
use bindings::wasi::io::poll;
use bindings::wasi::random::random;
use bindings::wasi::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
use bindings::wasi::sockets::{instance_network, ip_name_lookup, tcp_create_socket};
use cosell_mapping::{Context, Mapping, MappingError};
use serde_json::{Value, json};

/// How long the prober waits for a DNS answer or a TCP connection, if the host allows either.
const WAIT_NS: u64 = 1_000_000_000;

struct Prober;

impl Mapping for Prober {
    fn map(ctx: Context, input: String, _current: Option<String>) -> Result<String, MappingError> {
        if let Some(sleep) = serde_json::from_str::<Value>(&input)
            .ok()
            .and_then(|v| v.get("sleep").cloned())
        {
            return Ok(sleep_on_the_clock(&sleep));
        }
        cosell_mapping::log::info(&format!("wasi-prober: probing for {}", ctx.mapping_name));

        let stdout = write_line(stdout::get_stdout(), "hello from stdout\n");
        let stderr = write_line(stderr::get_stderr(), "hello from stderr\n");

        let env: Vec<Value> = environment::get_environment()
            .into_iter()
            .map(|(k, v)| json!([k, v]))
            .collect();
        let args = environment::get_arguments();
        let cwd = environment::initial_cwd();
        let directories = preopens::get_directories();
        let preopens: Vec<String> = directories.iter().map(|(_, name)| name.clone()).collect();

        let probe = serde_json::from_str::<Value>(&input)
            .ok()
            .and_then(|v| v.get("probe").cloned())
            .unwrap_or(Value::Null);
        let names = |key: &str, default: &[&str]| -> Vec<String> {
            match probe.get(key).and_then(Value::as_array) {
                Some(list) => list
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                None => default.iter().map(|s| s.to_string()).collect(),
            }
        };
        let mut files = serde_json::Map::new();
        for path in names("paths", DEFAULT_PATHS) {
            files.insert(path.clone(), Value::String(read_file(&directories, &path)));
        }
        // `get-environment` is the only way to read a variable; look the names up in it.
        let environment = environment::get_environment();
        let mut env_lookup = serde_json::Map::new();
        for name in names("env", DEFAULT_ENV) {
            let value = environment
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| Value::String(v.clone()))
                .unwrap_or(Value::Null);
            env_lookup.insert(name, value);
        }
        let config_keys = cosell_mapping::config::keys();
        let mut config_lookup = serde_json::Map::new();
        for key in names("config", DEFAULT_CONFIG) {
            let value = cosell_mapping::config::get(&key)
                .map(Value::String)
                .unwrap_or(Value::Null);
            config_lookup.insert(key, value);
        }

        let network = instance_network::instance_network();
        let (tcp, tcp_connect) = match tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4) {
            Err(code) => (format!("error: {}", code.name()), "not tried".to_string()),
            Ok(socket) => {
                // 192.0.2.1 is TEST-NET-1 (documentation only): nothing answers there.
                let remote = IpSocketAddress::Ipv4(Ipv4SocketAddress {
                    port: 9,
                    address: (192, 0, 2, 1),
                });
                let connect = match socket.start_connect(&network, remote) {
                    Err(code) => format!("error: {}", code.name()),
                    Ok(()) => {
                        if wait(&socket.subscribe()) {
                            match socket.finish_connect() {
                                Ok(_) => "connected".to_string(),
                                Err(code) => format!("error: {}", code.name()),
                            }
                        } else {
                            "started (no answer within 1 s)".to_string()
                        }
                    }
                };
                ("ok".to_string(), connect)
            }
        };
        let dns = match ip_name_lookup::resolve_addresses(&network, "example.com") {
            Err(code) => format!("error: {}", code.name()),
            Ok(stream) => {
                if wait(&stream.subscribe()) {
                    match stream.resolve_next_address() {
                        Ok(Some(address)) => format!("resolved: {address:?}"),
                        Ok(None) => "resolved: no address".to_string(),
                        Err(code) => format!("error: {}", code.name()),
                    }
                } else {
                    "started (no answer within 1 s)".to_string()
                }
            }
        };

        let wall = wall_clock::now();
        let report = json!({
            "env": env,
            "args": args,
            "cwd": cwd,
            "preopens": preopens,
            "tcp": tcp,
            "tcp_connect": tcp_connect,
            "dns": dns,
            "wall_clock_seconds": wall.seconds,
            "monotonic_ns": monotonic_clock::now(),
            "random": random::get_random_u64(),
            "stdout": stdout,
            "stderr": stderr,
            "files": files,
            "env_lookup": env_lookup,
            "config_keys": config_keys,
            "config_lookup": config_lookup,
        });
        Ok(report.to_string())
    }
}

/// Paths tried when the input names none: the host's environment and command line, a system
/// file, the root, the working directory and where cosell keeps its secrets and state.
const DEFAULT_PATHS: &[&str] = &[
    "/proc/self/environ",
    "/proc/self/cmdline",
    "/etc/passwd",
    "/",
    ".",
    "secrets/dataverse-client-secret",
    "cosell.db",
];

/// Variables tried when the input names none.
const DEFAULT_ENV: &[&str] = &["COSELL_ADMIN_TOKEN", "PATH", "HOME"];

/// Config keys tried when the input names none (a step sees only its own `config` table).
const DEFAULT_CONFIG: &[&str] = &["token", "admin.token", "client_secret", "refresh_token"];

/// Tries to open and read `path` from every preopened directory: "read N bytes: <text>" from
/// the first that works, else every error, or that there is no directory to open it from.
fn read_file(
    directories: &[(bindings::wasi::filesystem::types::Descriptor, String)],
    path: &str,
) -> String {
    if directories.is_empty() {
        return "error: no preopened directory to open it from".to_string();
    }
    let mut errors = Vec::new();
    for (directory, name) in directories {
        // Paths under a preopen are relative to it.
        let relative = path.trim_start_matches('/');
        let relative = if relative.is_empty() { "." } else { relative };
        match directory.open_at(
            PathFlags::SYMLINK_FOLLOW,
            relative,
            OpenFlags::empty(),
            DescriptorFlags::READ,
        ) {
            Err(code) => errors.push(format!("{name}: {}", code.name())),
            Ok(file) => match file.read(4096, 0) {
                Ok((bytes, _end)) => {
                    return format!(
                        "read {} bytes: {}",
                        bytes.len(),
                        String::from_utf8_lossy(&bytes)
                    );
                }
                Err(code) => errors.push(format!("{name}: opened, read {}", code.name())),
            },
        }
    }
    format!("error: {}", errors.join("; "))
}

/// Writes `line` to `stream`: "ok" or "error: ...".
fn write_line(stream: bindings::wasi::io::streams::OutputStream, line: &str) -> String {
    match stream.blocking_write_and_flush(line.as_bytes()) {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("error: {e:?}"),
    }
}

/// Sleeps as `{"sleep": {...}}` asks (see the module documentation) and says how long it slept.
fn sleep_on_the_clock(sleep: &Value) -> String {
    let ms = sleep.get("ms").and_then(Value::as_u64).unwrap_or(1_000);
    let via = sleep.get("via").and_then(Value::as_str).unwrap_or("block");
    cosell_mapping::log::info(&format!("wasi-prober: about to sleep {ms} ms (via {via})"));
    let duration_ns = ms.saturating_mul(1_000_000);
    let pollable = match via {
        "instant" => {
            monotonic_clock::subscribe_instant(monotonic_clock::now().saturating_add(duration_ns))
        }
        _ => monotonic_clock::subscribe_duration(duration_ns),
    };
    if via == "poll" {
        poll::poll(&[&pollable]);
    } else {
        pollable.block();
    }
    cosell_mapping::log::info("wasi-prober: woke up");
    json!({ "slept_ms": ms }).to_string()
}

/// Waits for `ready` at most `WAIT_NS`; true if it became ready.
fn wait(ready: &poll::Pollable) -> bool {
    let timeout = monotonic_clock::subscribe_duration(WAIT_NS);
    poll::poll(&[ready, &timeout]).contains(&0)
}

cosell_mapping::export_mapping!(Prober);
