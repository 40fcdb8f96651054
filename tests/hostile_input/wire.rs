//! Hostile input on the wire: requests sent whole or over raw connections (with a length or
//! chunked), a bait server counting its hits, a tap that captures deliveries and replays
//! them, half-sent connections held open, and `/healthz` probes.

use super::catalogue::{Body, DV, Hostile, PC};
use crate::support::sync_env::SyncEnv;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `request` to the listener at `base` (`http://127.0.0.1:port`); the status, or why
/// there was none.
pub(crate) async fn send(
    client: &reqwest::Client,
    base: &str,
    request: &Hostile,
) -> Result<u16, String> {
    match &request.body {
        Body::Bytes(bytes) => {
            let mut builder = client
                .post(format!("{base}{}{}", request.path, request.query))
                .body(bytes.clone());
            for (name, value) in &request.headers {
                builder = builder.header(name, value);
            }
            builder
                .send()
                .await
                .map(|r| r.status().as_u16())
                .map_err(|e| format!("{e:?}"))
        }
        Body::Sized(size) => raw(base, request, *size, false).await,
        Body::Chunked(size) => raw(base, request, *size, true).await,
    }
}

/// A request of `size` bytes over a raw connection, `chunked` (no length anywhere) or with a
/// `Content-Length`, read concurrently so the early 413 is seen even while the body is still
/// being written.
async fn raw(base: &str, request: &Hostile, size: usize, chunked: bool) -> Result<u16, String> {
    let addr = base.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut read, mut write) = stream.into_split();
    let framing = if chunked {
        "transfer-encoding: chunked".to_owned()
    } else {
        format!("content-length: {size}")
    };
    let mut head = format!(
        "POST {}{} HTTP/1.1\r\nhost: {addr}\r\n{framing}\r\n",
        request.path, request.query
    );
    for (name, value) in &request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    // The writer hands its half back instead of dropping it: dropping it would half-close
    // the connection, and hyper (without `half_close`) drops a request whose client closed
    // its side before the answer was written.
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 16 * 1024];
        let mut sent = 0;
        while sent < size {
            let n = chunk.len().min(size - sent);
            if chunked {
                write.write_all(format!("{n:x}\r\n").as_bytes()).await?;
            }
            write.write_all(&chunk[..n]).await?;
            if chunked {
                write.write_all(b"\r\n").await?;
            }
            sent += n;
        }
        if chunked {
            write.write_all(b"0\r\n\r\n").await?;
        }
        std::io::Result::Ok(write)
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let status = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let n = read.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed without an answer".to_owned());
            }
            answer.extend_from_slice(&buf[..n]);
            if let Some(line) = answer
                .split(|b| *b == b'\n')
                .next()
                .filter(|_| answer.contains(&b'\n'))
            {
                let line = String::from_utf8_lossy(line);
                return line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or(format!("odd status line {line}"));
            }
        }
    })
    .await
    .map_err(|_| "no answer within 20 s".to_owned())?;
    writer.abort();
    status
}

/// A server that counts requests: the bait for certificate URLs that must never be fetched.
pub(crate) async fn counting_server() -> (u16, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { "not a certificate" }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, hits)
}

/// A delivery as captured on the wire between a service and the host.
#[derive(Clone, Debug)]
pub(crate) struct Captured {
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) status: u16,
}

/// A pass-through in front of the host's webhook listener that keeps a copy of every delivery.
pub(crate) async fn tap(host: String) -> (String, Arc<Mutex<Vec<Captured>>>) {
    let captured: Arc<Mutex<Vec<Captured>>> = Arc::default();
    let kept = captured.clone();
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (client, host, kept) = (client.clone(), host.clone(), kept.clone());
            async move {
                let target = format!(
                    "{host}{}",
                    uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
                );
                let mut request = client.post(target).body(body.to_vec());
                let mut copied = Vec::new();
                for (name, value) in &headers {
                    if ["host", "content-length", "connection", "transfer-encoding"]
                        .contains(&name.as_str())
                    {
                        continue;
                    }
                    request = request.header(name, value);
                    copied.push((
                        name.to_string(),
                        value.to_str().unwrap_or_default().to_owned(),
                    ));
                }
                let status = request
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(502);
                kept.lock().unwrap().push(Captured {
                    path: uri.path().to_owned(),
                    headers: copied,
                    body: body.to_vec(),
                    status,
                });
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, captured)
}

/// Replays `delivery` to the host as it was captured (less the headers named in `drop`).
pub(crate) async fn replay(
    client: &reqwest::Client,
    env: &SyncEnv,
    delivery: &Captured,
    drop: &[&str],
) -> u16 {
    let mut request = client
        .post(format!("{}{}", env.webhooks_url, delivery.path))
        .body(delivery.body.clone());
    for (name, value) in delivery
        .headers
        .iter()
        .filter(|(n, _)| !drop.contains(&n.as_str()))
    {
        request = request.header(name, value);
    }
    request.send().await.unwrap().status().as_u16()
}

/// Awaits every future in `futures` concurrently (on this task); their outputs, in order.
pub(crate) async fn futures_join<F: std::future::Future<Output = u16>>(
    futures: Vec<F>,
) -> Vec<u16> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out = vec![0; pinned.len()];
    let mut pending: Vec<usize> = (0..pinned.len()).collect();
    std::future::poll_fn(|cx| {
        pending.retain(|&i| match pinned[i].as_mut().poll(cx) {
            std::task::Poll::Ready(status) => {
                out[i] = status;
                false
            }
            std::task::Poll::Pending => true,
        });
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out
}

/// `n` sequential `/healthz` latencies of the listener at `base`.
pub(crate) async fn probe_healthz(base: &str, n: usize) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        let ok = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        assert!(ok, "/healthz answers");
        out.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    out
}

/// `n` connections that send half a request head (held until the host's header-read timeout
/// closes them; a whole head without credentials would be refused at once).
pub(crate) async fn hold_connections(base: &str, n: usize) -> Vec<tokio::net::TcpStream> {
    let addr = base.trim_start_matches("http://");
    let mut held = Vec::new();
    for i in 0..n {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let path = if i % 2 == 0 { PC } else { DV };
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        held.push(stream);
    }
    held
}

/// How a connection held open against the listener behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Holding {
    /// Connects and sends nothing.
    Idle,
    /// Sends a request head a byte every 500 ms, never finishing it (slowloris).
    SlowHead,
    /// Sends a whole head promising a body, with well-formed signature headers (so it passes
    /// the checks made before the body), then the body a byte every 500 ms.
    SlowBody,
}

/// How a held connection ended.
pub(crate) struct Held {
    /// How long after opening the host closed it (`None`: still open after the bound).
    pub(crate) closed_after: Option<Duration>,
    /// When the host closed it.
    pub(crate) closed_at: Option<Instant>,
    /// The status the host answered before closing, if it answered.
    pub(crate) status: Option<u16>,
}

/// A connection opened (and established) now and then held as `how` by a task of its own,
/// which ends when the host closes the connection or after `bound`. Only an end of stream or
/// a reset from the host counts as closed: the test never closes these itself.
pub(crate) async fn hold(
    base: &str,
    how: Holding,
    certificate_url: &str,
    bound: Duration,
) -> tokio::task::JoinHandle<Held> {
    let addr = base.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let (opening, trickle): (String, &'static [u8]) = match how {
        Holding::Idle => (String::new(), b""),
        Holding::SlowHead => (format!("POST {PC} HTTP/1.1\r\nhost: {addr}\r\n"), b"x"),
        Holding::SlowBody => (
            format!(
                "POST {PC} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
                 content-length: 100000\r\nauthorization: Signature AAAA\r\n\
                 x-ms-signature-algorithm: rsa-sha256\r\nx-ms-certificate-url: {certificate_url}\r\n\r\n"
            ),
            b" ",
        ),
    };
    if !opening.is_empty() {
        write.write_all(opening.as_bytes()).await.unwrap();
    }
    tokio::spawn(async move {
        let started = Instant::now();
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let status = |answer: &[u8]| {
            let line = String::from_utf8_lossy(answer);
            line.split_whitespace().nth(1).and_then(|s| s.parse().ok())
        };
        while started.elapsed() < bound {
            tokio::select! {
                read = read.read(&mut buf) => match read {
                    // An answer (408 to a slow body) may come first; the close follows.
                    Ok(n) if n > 0 => answer.extend_from_slice(&buf[..n]),
                    // End of stream or reset: the host closed it.
                    _ => return Held { closed_after: Some(started.elapsed()), closed_at: Some(Instant::now()), status: status(&answer) },
                },
                _ = tick.tick() => {
                    if !trickle.is_empty() && write.write_all(trickle).await.is_err() {
                        return Held { closed_after: Some(started.elapsed()), closed_at: Some(Instant::now()), status: status(&answer) };
                    }
                }
                () = tokio::time::sleep(bound.saturating_sub(started.elapsed())) => break,
            }
        }
        // Kept open until here, so a close seen above was the host's.
        drop(write);
        Held {
            closed_after: None,
            closed_at: None,
            status: status(&answer),
        }
    })
}

/// Raises this process's soft limit of open files to `needed` (within the hard limit), for
/// tests that hold thousands of connections; the host started afterwards inherits it.
pub(crate) fn raise_open_file_limit(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < needed as libc::rlim_t {
            limit.rlim_cur = (needed as libc::rlim_t).min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    assert!(
        limit.rlim_cur >= needed as libc::rlim_t,
        "this test needs {needed} open files; the hard limit is {} (raise it: ulimit -Hn)",
        limit.rlim_max
    );
}
