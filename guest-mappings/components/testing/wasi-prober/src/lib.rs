//! Test guest `wasi-prober`: a mapping step whose world adds WASI 0.2 imports (environment,
//! preopens, sockets, stdout/stderr, clocks, random). The host should refuse to link it, or link
//! WASI stubs that give nothing away; `map` reports what the guest could observe:
//!
//! ```json
//! {"env": [["K","V"]...], "args": [...], "cwd": null, "preopens": ["/..."],
//!  "tcp": "ok" | "error: <code>", "tcp_connect": "...", "dns": "...",
//!  "wall_clock_seconds": n, "monotonic_ns": n, "random": n,
//!  "stdout": "ok" | "error: ...", "stderr": "ok" | "error: ..."}
//! ```
//!
//! It writes "hello from stdout" / "hello from stderr" to stdout / stderr.

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        // Only the WASI imports; `map` is exported through guest-glue (`export_mapping!`).
        path: "wit",
        world: "cosell:testing/wasi-prober-imports@0.1.0",
        generate_all,
    });
}

use bindings::wasi::cli::{environment, stderr, stdout};
use bindings::wasi::clocks::{monotonic_clock, wall_clock};
use bindings::wasi::filesystem::preopens;
use bindings::wasi::io::poll;
use bindings::wasi::random::random;
use bindings::wasi::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
use bindings::wasi::sockets::{instance_network, ip_name_lookup, tcp_create_socket};
use guest_glue::{Context, Mapping, MappingError};
use serde_json::{Value, json};

/// How long the prober waits for a DNS answer or a TCP connection, if the host allows either.
const WAIT_NS: u64 = 1_000_000_000;

struct Prober;

impl Mapping for Prober {
    fn map(ctx: Context, _input: String, _current: Option<String>) -> Result<String, MappingError> {
        guest_glue::log::info(&format!("wasi-prober: probing for {}", ctx.mapping_name));

        let stdout = write_line(stdout::get_stdout(), "hello from stdout\n");
        let stderr = write_line(stderr::get_stderr(), "hello from stderr\n");

        let env: Vec<Value> = environment::get_environment()
            .into_iter()
            .map(|(k, v)| json!([k, v]))
            .collect();
        let args = environment::get_arguments();
        let cwd = environment::initial_cwd();
        let preopens: Vec<String> = preopens::get_directories()
            .into_iter()
            .map(|(_descriptor, name)| name)
            .collect();

        let network = instance_network::instance_network();
        let (tcp, tcp_connect) = match tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4)
        {
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
        });
        Ok(report.to_string())
    }
}

/// Writes `line` to `stream`: "ok" or "error: ...".
fn write_line(stream: bindings::wasi::io::streams::OutputStream, line: &str) -> String {
    match stream.blocking_write_and_flush(line.as_bytes()) {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("error: {e:?}"),
    }
}

/// Waits for `ready` at most `WAIT_NS`; true if it became ready.
fn wait(ready: &poll::Pollable) -> bool {
    let timeout = monotonic_clock::subscribe_duration(WAIT_NS);
    poll::poll(&[ready, &timeout]).contains(&0)
}

guest_glue::export_mapping!(Prober);
