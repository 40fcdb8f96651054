//! Running an emulator: an HTTP/1.1 server on a loopback port with the faults applied in
//! front of the routes, and a clean stop.
//!
//! The accept loop is hyper's own rather than `axum::serve` because a dropped connection
//! fault needs the service to fail, which closes the connection without an answer; axum's
//! server only takes infallible services.

use super::faults::{AfterWriteFault, Faults, RequestFault};
use super::tls::SelfSignedTls;
use axum::Router;
use axum::body::Body;
use axum::http::Method;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

/// Paths that faults never touch: the control endpoints must work during a fault drill.
pub const CONTROL_PREFIX: &str = "/_emulator/";

/// The Partner Center emulator's signing certificate (under Microsoft's documented `/cert/`
/// path) stands for a file on Microsoft's storage host, another service than the APIs whose
/// outages the faults model, so faults do not touch it either.
pub const CERTIFICATE_PREFIX: &str = "/cert/";

fn faults_apply(path: &str) -> bool {
    !path.starts_with(CONTROL_PREFIX) && !path.starts_with(CERTIFICATE_PREFIX)
}

/// Marks a request that came over TLS (a request extension), so a service can write its own
/// URLs with `https`.
#[derive(Debug, Clone, Copy)]
pub struct ServedOverTls;

/// A running emulator. Dropping it does not stop it; call [`RunningEmulator::stop`].
pub struct RunningEmulator {
    /// Where it listens.
    pub addr: SocketAddr,
    scheme: &'static str,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningEmulator {
    /// The base URL, e.g. `http://127.0.0.1:41234` (`https://` when served over TLS).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Stops accepting, closes open connections and waits for the server task.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Serves `router` on `addr` (use port 0 for a free one) with `faults` in front of it.
pub async fn serve(
    router: Router,
    addr: SocketAddr,
    faults: Faults,
) -> std::io::Result<RunningEmulator> {
    serve_with(router, addr, faults, None).await
}

/// [`serve`], over HTTPS when `tls` is given (each connection's handshake in its own task,
/// so a slow one holds up no other).
pub async fn serve_with(
    router: Router,
    addr: SocketAddr,
    faults: Faults,
    tls: Option<SelfSignedTls>,
) -> std::io::Result<RunningEmulator> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let (router, faults, tls) = (router.clone(), faults.clone(), tls.clone());
                    connections.spawn(async move {
                        let over_tls = tls.is_some();
                        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                            if over_tls {
                                request.extensions_mut().insert(ServedOverTls);
                            }
                            handle(router.clone(), faults.clone(), request)
                        });
                        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                        match tls {
                            None => {
                                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                            }
                            Some(tls) => {
                                let Ok(stream) = tls.acceptor().accept(stream).await else { return };
                                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    });
                }
                _ = stopped.changed() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        connections.abort_all();
    });
    Ok(RunningEmulator {
        addr,
        scheme,
        stop,
        task,
    })
}

async fn handle(
    router: Router,
    faults: Faults,
    request: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    if faults_apply(request.uri().path()) {
        let (fault, latency) = faults.for_request();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match fault {
            RequestFault::None => {}
            RequestFault::Drop => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "injected fault: connection dropped",
                ));
            }
            RequestFault::ServerError => {
                return Ok(error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "Injected fault: the service is temporarily unavailable.",
                ));
            }
            RequestFault::Throttle(seconds) => {
                let mut response = error_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "Injected fault: too many requests, retry after the Retry-After interval.",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                return Ok(response);
            }
        }
    }
    let after_write = is_faultable_write(&request);
    let response = router
        .oneshot(request.map(Body::new))
        .await
        .unwrap_or_else(|never| match never {});
    if !after_write {
        return Ok(response);
    }
    // The write has run (and committed, whatever its answer): only the answer is late or lost.
    let answer_latency = faults.get().answer_latency_ms;
    if answer_latency > 0 {
        tokio::time::sleep(Duration::from_millis(answer_latency)).await;
    }
    match faults.after_write() {
        AfterWriteFault::None => Ok(response),
        AfterWriteFault::Drop => Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "injected fault: connection dropped after the write was applied",
        )),
        AfterWriteFault::ServerError => Ok(error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "Injected fault: an internal error occurred after the request was processed.",
        )),
    }
}

/// Writes whose answer an "applied, then failed" fault may replace: every POST, PUT, PATCH and
/// DELETE outside the control endpoints, except token requests (a lost answer to a
/// refresh-token grant would burn a single-use token, which no client can recover from and
/// no drill means to test).
fn is_faultable_write(request: &Request<Incoming>) -> bool {
    let path = request.uri().path();
    [Method::POST, Method::PUT, Method::PATCH, Method::DELETE].contains(request.method())
        && faults_apply(path)
        && !path.contains("/oauth2/")
}

/// A JSON error answer in the `{"error": {"code", "message"}}` shape both services use.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(body.to_string()))
        .expect("a static response is valid")
}
