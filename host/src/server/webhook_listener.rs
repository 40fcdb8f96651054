//! The webhook listener, served on a tokio runtime of its own.
//!
//! Why: the sync engine's workers call the store from the main runtime's threads, and each of
//! those calls may wait for a disk flush (`synchronous = FULL`, milliseconds) or for the
//! store's connection. Under a webhook storm the workers keep the disk busy, and on a small
//! machine both main runtime threads could be waiting on it at once, leaving no thread to read
//! requests, check signatures or send the acknowledgements of stored events. On threads of its
//! own the listener keeps accepting deliveries and handing them to the intake's writer, whose
//! batches then grow instead of the deliveries waiting in the kernel.

use anyhow::{Context as _, Result};
use axum::Router;
use std::net::SocketAddr;
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The running listener.
pub struct WebhookListener {
    /// Where it listens (the port is the system's choice when `webhooks.listen` asked for 0).
    pub addr: SocketAddr,
    serving: JoinHandle<std::io::Result<()>>,
    runtime: Option<Runtime>,
}

impl WebhookListener {
    /// Binds `listen` and serves `app` until `stop` turns true.
    pub fn start(listen: SocketAddr, app: Router, mut stop: watch::Receiver<bool>) -> Result<Self> {
        let socket = std::net::TcpListener::bind(listen).with_context(|| {
            format!("binding the webhook listener to {listen} (webhooks.listen)")
        })?;
        socket.set_nonblocking(true)?;
        let addr = socket.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("cosell-webhooks")
            .enable_all()
            .build()
            .context("starting the webhook listener's runtime")?;
        let serving = runtime.spawn(async move {
            // Registered with this runtime's reactor, so created on it.
            let socket = tokio::net::TcpListener::from_std(socket)?;
            axum::serve(socket, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                })
                .await
        });
        Ok(Self {
            addr,
            serving,
            runtime: Some(runtime),
        })
    }

    /// Waits until the listener has stopped (after `stop` turned true).
    pub async fn stopped(mut self) {
        let _ = (&mut self.serving).await;
    }
}

impl Drop for WebhookListener {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its threads finish, which is not allowed on an async
        // thread; what it still runs has been told to stop, or is a connection being closed.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
