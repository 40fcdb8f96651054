//! Serving a router to clients that may be hostile: both listeners (the webhooks, which face
//! the internet through a TLS proxy, and the admin API) go through [`serve`].
//!
//! What a client can hold, and for how long, is bounded ([`ListenerLimits`]):
//!
//! - **connections**: at most `max_connections` are open; further ones wait in the kernel's
//!   accept queue (not in memory) until one closes;
//! - **header read**: a connection that has not sent a whole request head within
//!   `header_read_timeout` (a fresh one, or a kept-alive one between requests) is closed, so
//!   idle and slowly-sending connections free their slot by themselves;
//! - **body**: a request body not in full within `body_timeout` of its head fails (408 at the
//!   webhooks, see `sources::read_body`), however slowly or steadily it trickles;
//! - **whole request**: a request not answered within `request_timeout` is answered 503
//!   (retry), whatever it was waiting for (a trickling body, the store);
//! - **in flight**: at most `max_in_flight` requests are handled at once; beyond that the
//!   answer is 503 with `Retry-After` at once, instead of queueing them in memory.
//!
//! HTTP/1.1 only: both real senders (Partner Center, Dataverse) and the TLS proxy in front
//! speak it, and every protocol served is one more to harden.

pub use crate::config::ListenerLimits;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Sleep;
use tower::ServiceExt as _;

/// Serves `app` on `listener` within `limits` until `shutdown` completes; then stops
/// accepting, lets the requests being handled finish (closing idle connections at once) and
/// returns once every connection is closed, or after `request_timeout` at most.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let ListenerLimits {
        header_read_timeout,
        max_connections,
        request_timeout,
        ..
    } = limits;
    let service = Limited::new(app, &limits);
    // One permit per open connection, held by its task: the accept loop waits for a free one.
    let open = Arc::new(Semaphore::new(max_connections));
    let (closing, closing_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = open.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    accept_failed(err).await;
                    continue;
                }
            },
        };
        let connection = Connection {
            service: service.clone(),
            header_read_timeout,
            closing: closing_rx.clone(),
            _permit: permit,
        };
        tokio::spawn(connection.serve(stream));
    }
    drop(listener);
    let _ = closing.send(true);
    // Every permit back means every connection closed; bounded, like any wait here.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(request_timeout, open.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            ?request_timeout,
            "stopped with connections still open (a request outlived the request timeout)"
        );
    }
    Ok(())
}

/// An accept that failed. Errors of one connection (reset before it was accepted) are
/// skipped; others (too many open files) are waited out for a moment rather than spun on.
async fn accept_failed(err: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %err, "accepting a connection failed; retrying in 1 s (if this is \"too many open files\", raise the file limit (ulimit -n) or lower max_connections)");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// What every connection of one listener shares: the router and the request limits.
#[derive(Clone)]
struct Limited {
    app: Router,
    /// One permit per request being handled (`max_in_flight`).
    in_flight: Arc<Semaphore>,
    limits: ListenerLimits,
}

impl Limited {
    fn new(app: Router, limits: &ListenerLimits) -> Self {
        Self {
            app,
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            limits: *limits,
        }
    }

    /// Handles one request within the limits: 503 at once beyond `max_in_flight` (a sender
    /// retries; queueing would hold memory for it), 503 after `request_timeout`.
    async fn handle(self, request: Request<Incoming>) -> Result<Response, Infallible> {
        let Ok(_in_flight) = self.in_flight.try_acquire_owned() else {
            return Ok(unavailable(format!(
                "busy: {} requests are being handled; send it again shortly",
                self.limits.max_in_flight
            )));
        };
        let request =
            request.map(|body| Body::new(DeadlineBody::new(body, self.limits.body_timeout)));
        match tokio::time::timeout(self.limits.request_timeout, self.app.oneshot(request)).await {
            Ok(answered) => answered,
            Err(_) => Ok(unavailable(format!(
                "the request was not answered within {} ms; send it again",
                self.limits.request_timeout.as_millis()
            ))),
        }
    }
}

/// A 503 that asks to come back in a second.
fn unavailable(text: String) -> Response {
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, text).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// A request body that fails with [`BodyTimedOut`] unless it has arrived in full by its
/// deadline. A deadline for the whole body rather than for each piece: a sender trickling a
/// byte a second would otherwise hold its slot for as long as it likes.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = hyper::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body did not arrive in full within the listener's `body_timeout_ms`.
#[derive(Debug)]
pub struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in full within body_timeout_ms")
    }
}

impl std::error::Error for BodyTimedOut {}

/// One accepted connection and what it needs.
struct Connection {
    service: Limited,
    header_read_timeout: Duration,
    closing: watch::Receiver<bool>,
    /// Its slot among `max_connections`, given back when the connection closes.
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve(mut self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        let service = self.service;
        let connection = builder.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |request| service.clone().handle(request)),
        );
        let mut connection = std::pin::pin!(connection);
        let served = tokio::select! {
            served = connection.as_mut() => served,
            () = async {
                // The guard it returns is not `Send`: dropped here, before any await.
                let _ = self.closing.wait_for(|closing| *closing).await;
            } => {
                // Finishes the request being handled, closes an idle connection at once.
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(err) = served {
            // A client that timed out, went away or sent garbage: its own business.
            tracing::debug!(error = %err, "connection ended with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Serves `app` within `limits` on a free loopback port until the returned sender is
    /// dropped or sent to.
    async fn start(
        app: Router,
        limits: ListenerLimits,
    ) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, app, limits, async {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    fn limits() -> ListenerLimits {
        ListenerLimits {
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            max_connections: 16,
            max_in_flight: 16,
        }
    }

    /// A router whose `/wait` answers once `release` is notified.
    fn waiting(release: Arc<tokio::sync::Notify>) -> Router {
        Router::new().route(
            "/wait",
            get(move || async move {
                release.notified().await;
                "done"
            }),
        )
    }

    #[tokio::test]
    async fn requests_beyond_max_in_flight_are_answered_503_at_once() {
        let release = Arc::new(tokio::sync::Notify::new());
        let (addr, _stop) = start(
            waiting(release.clone()),
            ListenerLimits {
                max_in_flight: 2,
                ..limits()
            },
        )
        .await;
        let url = format!("http://{addr}/wait");
        let held: Vec<_> = (0..2)
            .map(|_| tokio::spawn(reqwest::get(url.clone())))
            .collect();
        // Bounded wait until both are being handled (the third must then be shed).
        let mut shed = None;
        for _ in 0..200 {
            let answer = reqwest::get(&url).await.unwrap();
            if answer.status() == StatusCode::SERVICE_UNAVAILABLE {
                shed = Some(answer);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let shed = shed.expect("a third request was shed");
        assert_eq!(shed.headers()[header::RETRY_AFTER], "1");
        assert!(shed.text().await.unwrap().contains("busy"));
        release.notify_waiters();
        for request in held {
            // Released (or, when notified before it waited, still answered by the timeout).
            let status = request.await.unwrap().unwrap().status();
            assert!(status.is_success() || status == StatusCode::SERVICE_UNAVAILABLE);
        }
    }

    #[tokio::test]
    async fn a_request_not_answered_within_request_timeout_gets_503() {
        let release = Arc::new(tokio::sync::Notify::new());
        let (addr, _stop) = start(
            waiting(release),
            ListenerLimits {
                request_timeout: Duration::from_millis(200),
                ..limits()
            },
        )
        .await;
        let answer = reqwest::get(format!("http://{addr}/wait")).await.unwrap();
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(answer.text().await.unwrap().contains("200 ms"));
    }

    #[tokio::test]
    async fn a_body_not_in_full_within_body_timeout_fails_to_read() {
        let app = Router::new().route(
            "/upload",
            post(|body: Body| async move {
                match axum::body::to_bytes(body, usize::MAX).await {
                    Ok(bytes) => format!("read {}", bytes.len()),
                    Err(err) => format!(
                        "timed out: {}",
                        std::iter::successors(
                            Some(&err as &(dyn std::error::Error + 'static)),
                            |e| e.source()
                        )
                        .any(|e| e.is::<BodyTimedOut>())
                    ),
                }
            }),
        );
        let (addr, _stop) = start(
            app,
            ListenerLimits {
                body_timeout: Duration::from_millis(300),
                ..limits()
            },
        )
        .await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc")
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("answered and closed")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.contains("timed out: true"), "{answer}");
    }

    #[tokio::test]
    async fn connections_beyond_max_connections_wait_and_idle_ones_are_closed() {
        let (addr, _stop) = start(
            Router::new().route("/", get(|| async { "ok" })),
            ListenerLimits {
                max_connections: 1,
                header_read_timeout: Duration::from_millis(500),
                ..limits()
            },
        )
        .await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let mut waiting = TcpStream::connect(addr).await.unwrap();
        waiting
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        // Not served while the idle one holds the only slot...
        let mut answer = Vec::new();
        let early =
            tokio::time::timeout(Duration::from_millis(200), waiting.read_to_end(&mut answer))
                .await;
        assert!(early.is_err(), "answered beyond max_connections");
        // ...which the header-read timeout frees: the idle one is closed by the server,
        // and the waiting one then served.
        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf))
            .await
            .expect("the idle connection was closed");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        tokio::time::timeout(Duration::from_secs(10), waiting.read_to_end(&mut answer))
            .await
            .expect("served once a slot was free")
            .unwrap();
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    }
}
