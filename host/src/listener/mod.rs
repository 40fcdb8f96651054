//! A listener served on a tokio runtime of its own: the webhooks and the admin API each have
//! one.
//!
//! Why: the sync engine's workers call the store from the main runtime's threads, and each of
//! those calls may wait for a disk flush (`synchronous = FULL`, milliseconds) or for the
//! store's connection. Under a webhook storm the workers keep the disk busy, and on a small
//! machine both main runtime threads could be waiting on it at once, leaving no thread to read
//! requests, check signatures or send the acknowledgements of stored events, nor to answer
//! `/healthz` and `/metrics`. On threads of its own the webhook listener keeps accepting
//! deliveries and handing them to the intake's writer, whose batches then grow instead of the
//! deliveries waiting in the kernel; and the admin API keeps telling the operator how things
//! stand.
//!
//! Each is served within its section's limits ([`http`]), which also bounds what one
//! client can hold. The host is assembled around its listeners in `crate::server`.

pub mod http;

use anyhow::{Context as _, Result};
use axum::Router;
use http::ListenerLimits;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// A running listener.
pub struct Listener {
    /// Where it listens (the port is the system's choice when the configuration asked for 0).
    pub addr: SocketAddr,
    serving: JoinHandle<std::io::Result<()>>,
    /// True while it serves (readiness watches the webhook listener's).
    up: Arc<AtomicBool>,
    runtime: Option<Runtime>,
}

impl Listener {
    /// Binds `listen` (the configuration key `key` says so) and serves `app` within `limits`,
    /// on threads named `name`, until `stop` completes.
    pub fn start(
        name: &str,
        key: &str,
        listen: SocketAddr,
        app: Router,
        limits: ListenerLimits,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Self> {
        let socket = std::net::TcpListener::bind(listen)
            .with_context(|| {
                format!("binding {listen} ({key}): is another process listening there, or is the address not this machine's?")
            })?;
        socket.set_nonblocking(true)?;
        let addr = socket.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name(name)
            .enable_all()
            .build()
            .with_context(|| format!("starting the runtime of {name}"))?;
        let up = Arc::new(AtomicBool::new(true));
        let down = LowersOnDrop(up.clone());
        let serving = runtime.spawn(async move {
            // However serving ends (an error, a panic, the stop), the flag goes down.
            let _down = down;
            // Registered with this runtime's reactor, so created on it.
            let socket = tokio::net::TcpListener::from_std(socket)?;
            http::serve(socket, app, limits, stop).await
        });
        Ok(Self {
            addr,
            serving,
            up,
            runtime: Some(runtime),
        })
    }

    /// A flag that is true while the listener serves, false once it stopped (for whatever
    /// reason).
    pub fn serving_flag(&self) -> Arc<AtomicBool> {
        self.up.clone()
    }

    /// Waits until the listener has stopped (after `stop` completed).
    pub async fn stopped(mut self) -> std::io::Result<()> {
        match (&mut self.serving).await {
            Ok(served) => served,
            Err(err) => Err(std::io::Error::other(err)),
        }
    }
}

/// Sets its flag to false when dropped.
struct LowersOnDrop(Arc<AtomicBool>);

impl Drop for LowersOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its threads finish, which is not allowed on an async
        // thread; what it still runs has been told to stop, or is a connection being closed.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
