//! Hostile input to the webhook listener of a running `cosell serve` (issue 5): for both
//! endpoints, malformed JSON, wrong content types, bodies over the limit (with a length and
//! chunked), missing or bad signatures and credentials, certificate URLs off the allow-list;
//! each is refused with its status and none enqueues anything. A genuine delivery captured on
//! the wire and replayed is acknowledged like a retry and writes nothing a second time. A
//! flood of hostile requests with held-open connections neither crashes the host nor stops it
//! answering and syncing. Each test prints the figures it proved.
//!
//! With `COSELL_WRITE_FUZZ_SEEDS=1`, the replay test also writes the deliveries it captured
//! into `fuzz/seeds/` (the fuzz targets' starting corpus; see fuzz/README.md).

mod support;

use cosell_emulators::partner_center::signing::SigningMaterial;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::sync_env::{SETTLE, SyncEnv, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Over `webhooks.max_body_bytes` (256 KiB, the default the test host runs with).
const OVER_LIMIT: usize = 300 * 1024;

/// Intake results (queued, coalesced, refused, ignored) of both webhooks.
async fn intake(env: &SyncEnv) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for source in ["partner-center-webhook", "dataverse-webhook"] {
        for result in ["queued", "coalesced", "refused", "ignored"] {
            let n = env
                .metric(
                    "cosell_intake_events_total",
                    &[("source", source), ("result", result)],
                )
                .await;
            out.insert(format!("{source}/{result}"), n);
        }
    }
    out
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

#[derive(Clone)]
enum Body {
    Bytes(Vec<u8>),
    /// This many bytes, announced with `Content-Length`, written over a raw connection
    /// while the answer is read (the 413 comes before the body is read, and a client that
    /// only reads after writing may see the connection close instead).
    Sized(usize),
    /// This many bytes sent with `Transfer-Encoding: chunked` and no length.
    Chunked(usize),
}

/// One hostile request and the status it must get.
#[derive(Clone)]
struct Hostile {
    what: String,
    path: &'static str,
    query: String,
    headers: Vec<(String, String)>,
    body: Body,
    expect: u16,
}

const PC: &str = "/webhooks/partner-center";
const DV: &str = "/webhooks/dataverse";

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// What the hostile requests need to know about the environment.
struct Setting {
    cert_url: String,
    dv_key: String,
    pc_port: u16,
    /// A certificate server on 127.0.0.1 named as `localhost` (not on the allow-list): it
    /// counts the downloads it serves, which must stay 0.
    bait_url: String,
}

impl Setting {
    fn new(env: &SyncEnv, bait_url: String) -> Self {
        Setting {
            cert_url: format!("{}/_emulator/certificate.cer", env.pc_url),
            dv_key: std::fs::read_to_string(env.dir.path().join("secrets/dataverse-webhook-key"))
                .unwrap(),
            pc_port: env.pc_url.rsplit(':').next().unwrap().parse().unwrap(),
            bait_url,
        }
    }

    /// Headers that make `body` a genuinely signed Partner Center delivery, plus `extra`.
    fn signed(&self, body: &[u8], extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let signature = format!("Signature {}", SigningMaterial::get().sign_base64(body));
        let mut headers = h(&[
            ("authorization", &signature),
            ("x-ms-certificate-url", &self.cert_url),
            ("x-ms-signature-algorithm", "rsa-sha256"),
        ]);
        headers.extend(h(extra));
        headers
    }

    /// Every hostile request, for both endpoints.
    fn catalogue(&self) -> Vec<Hostile> {
        let json = ("content-type", "application/json");
        // A well-formed event for a referral that exists nowhere: were it stored, it would show.
        let event = json!({"EventName": "referral-created", "ResourceUri": "http://x/v1.0/engagements/referrals/hostile-1",
                           "ResourceName": "Referral", "AuditUri": null, "ResourceChangeUtcDate": "2026-12-02T00:00:00.0000000+00:00"})
        .to_string()
        .into_bytes();
        let deep = "[".repeat(10_000).into_bytes();
        let bad_utf8 = b"{\"EventName\": \"\xff\xfe\"}".to_vec();
        let malformed = b"{\"EventName\": \"referral-created\", ".to_vec();
        let mut list = Vec::new();
        let mut pc = |what: &str, headers: Vec<(String, String)>, body: Body, expect: u16| {
            list.push(Hostile {
                what: format!("partner-center: {what}"),
                path: PC,
                query: String::new(),
                headers,
                body,
                expect,
            });
        };
        let signed = |body: &[u8], extra: &[(&str, &str)]| self.signed(body, extra);
        pc(
            "malformed JSON (signed)",
            signed(&malformed, &[json]),
            Body::Bytes(malformed.clone()),
            400,
        );
        pc(
            "invalid UTF-8 (signed)",
            signed(&bad_utf8, &[json]),
            Body::Bytes(bad_utf8.clone()),
            400,
        );
        pc(
            "10,000 nested arrays (signed)",
            signed(&deep, &[json]),
            Body::Bytes(deep.clone()),
            400,
        );
        let traversal = json!({"EventName": "referral-updated", "ResourceUri": "http://x/referrals/..%2f..%2fadmin"}).to_string().into_bytes();
        pc(
            "a ResourceUri naming no referral (signed)",
            signed(&traversal, &[json]),
            Body::Bytes(traversal),
            400,
        );
        let number = json!({"EventName": "referral-created", "ResourceUri": 42})
            .to_string()
            .into_bytes();
        pc(
            "a ResourceUri that is a number (signed)",
            signed(&number, &[json]),
            Body::Bytes(number),
            400,
        );
        pc(
            "text/plain (signed event)",
            signed(&event, &[("content-type", "text/plain")]),
            Body::Bytes(event.clone()),
            415,
        );
        pc(
            "multipart/form-data (signed event)",
            signed(
                &event,
                &[("content-type", "multipart/form-data; boundary=x")],
            ),
            Body::Bytes(event.clone()),
            415,
        );
        pc(
            "a form post (signed event)",
            signed(
                &event,
                &[("content-type", "application/x-www-form-urlencoded")],
            ),
            Body::Bytes(event.clone()),
            415,
        );
        pc(
            "application/jsonx (signed event)",
            signed(&event, &[("content-type", "application/jsonx")]),
            Body::Bytes(event.clone()),
            415,
        );
        pc(
            "no content type, malformed JSON (signed)",
            signed(&malformed, &[]),
            Body::Bytes(malformed.clone()),
            400,
        );
        let cert = self.cert_url.as_str();
        let unsigned = |extra: &[(&str, &str)]| {
            let mut headers = h(&[
                json,
                ("x-ms-certificate-url", cert),
                ("x-ms-signature-algorithm", "rsa-sha256"),
            ]);
            headers.extend(h(extra));
            headers
        };
        pc(
            "no signature",
            unsigned(&[]),
            Body::Bytes(event.clone()),
            401,
        );
        let other = format!("Signature {}", SigningMaterial::get().sign_base64(b"{}"));
        pc(
            "another body's signature",
            unsigned(&[("authorization", &other)]),
            Body::Bytes(event.clone()),
            401,
        );
        let random = format!("Signature {}", base64_of(&[7u8; 256]));
        pc(
            "a random 256-byte signature",
            unsigned(&[("authorization", &random)]),
            Body::Bytes(event.clone()),
            401,
        );
        pc(
            "a bearer token for a signature",
            unsigned(&[("authorization", "Bearer abc.def.ghi")]),
            Body::Bytes(event.clone()),
            401,
        );
        pc(
            "a signature that is not base64",
            unsigned(&[("x-ms-signature", "Signature ***")]),
            Body::Bytes(event.clone()),
            401,
        );
        let mut no_url = signed(&event, &[json]);
        no_url.retain(|(k, _)| k != "x-ms-certificate-url");
        pc(
            "no certificate URL",
            no_url,
            Body::Bytes(event.clone()),
            400,
        );
        let mut no_algorithm = signed(&event, &[json]);
        no_algorithm.retain(|(k, _)| k != "x-ms-signature-algorithm");
        pc(
            "no algorithm",
            no_algorithm,
            Body::Bytes(event.clone()),
            400,
        );
        let mut sha1 = signed(&event, &[json]);
        sha1.retain(|(k, _)| k != "x-ms-signature-algorithm");
        sha1.extend(h(&[("x-ms-signature-algorithm", "rsa-sha1")]));
        pc("algorithm rsa-sha1", sha1, Body::Bytes(event.clone()), 400);
        let with_cert = |url: &str| {
            let mut headers = signed(&event, &[json]);
            headers.retain(|(k, _)| k != "x-ms-certificate-url");
            headers.push(("x-ms-certificate-url".into(), url.to_owned()));
            headers
        };
        pc(
            "a certificate host off the allow-list",
            with_cert("https://attacker.example/cert.cer"),
            Body::Bytes(event.clone()),
            401,
        );
        pc(
            "a certificate at localhost (not on the allow-list)",
            with_cert(&self.bait_url),
            Body::Bytes(event.clone()),
            401,
        );
        pc(
            "a file:// certificate URL",
            with_cert("file:///etc/passwd"),
            Body::Bytes(event.clone()),
            401,
        );
        pc(
            "a certificate URL with a query",
            with_cert(&format!("{cert}?x=1")),
            Body::Bytes(event.clone()),
            401,
        );
        let missing = format!("http://127.0.0.1:{}/_emulator/missing.cer", self.pc_port);
        pc(
            "an allowed host without that certificate",
            with_cert(&missing),
            Body::Bytes(event.clone()),
            401,
        );
        pc(
            "over the limit, with a length",
            h(&[json]),
            Body::Sized(OVER_LIMIT),
            413,
        );
        pc(
            "over the limit, chunked",
            h(&[json]),
            Body::Chunked(OVER_LIMIT),
            413,
        );

        let key = self.dv_key.as_str();
        let context = json!({"PrimaryEntityName": "opportunity", "PrimaryEntityId": "7f3c2a52-0000-4000-8000-00000000dead",
                             "MessageName": "Update"})
        .to_string()
        .into_bytes();
        let mut dv =
            |what: &str, query: &str, headers: Vec<(String, String)>, body: Body, expect: u16| {
                list.push(Hostile {
                    what: format!("dataverse: {what}"),
                    path: DV,
                    query: query.to_owned(),
                    headers,
                    body,
                    expect,
                });
            };
        let keyed = |extra: &[(&str, &str)]| {
            let mut headers = h(&[("x-cosell-key", key)]);
            headers.extend(h(extra));
            headers
        };
        dv("no key", "", h(&[json]), Body::Bytes(context.clone()), 401);
        dv(
            "a wrong key",
            "",
            h(&[json, ("x-cosell-key", "wrong")]),
            Body::Bytes(context.clone()),
            401,
        );
        dv(
            "the key in the query, not the header",
            &format!("?code={key}"),
            h(&[json]),
            Body::Bytes(context.clone()),
            401,
        );
        dv(
            "malformed JSON",
            "",
            keyed(&[json]),
            Body::Bytes(malformed.clone()),
            400,
        );
        dv(
            "invalid UTF-8",
            "",
            keyed(&[json]),
            Body::Bytes(bad_utf8.clone()),
            400,
        );
        dv(
            "10,000 nested arrays",
            "",
            keyed(&[json]),
            Body::Bytes(deep.clone()),
            400,
        );
        for (what, id) in [
            ("a path for an id", json!("../../etc/passwd")),
            ("a number for an id", json!(7)),
            ("a 101-character id", json!("a".repeat(101))),
        ] {
            let body = json!({"PrimaryEntityName": "opportunity", "PrimaryEntityId": id})
                .to_string()
                .into_bytes();
            dv(what, "", keyed(&[json]), Body::Bytes(body), 400);
        }
        dv(
            "text/plain",
            "",
            keyed(&[("content-type", "text/plain")]),
            Body::Bytes(context.clone()),
            415,
        );
        dv(
            "multipart/form-data",
            "",
            keyed(&[("content-type", "multipart/form-data; boundary=x")]),
            Body::Bytes(context.clone()),
            415,
        );
        dv(
            "no content type, malformed JSON",
            "",
            keyed(&[]),
            Body::Bytes(malformed.clone()),
            400,
        );
        dv(
            "over the limit, with a length",
            "",
            keyed(&[json]),
            Body::Sized(OVER_LIMIT),
            413,
        );
        dv(
            "over the limit, chunked",
            "",
            keyed(&[json]),
            Body::Chunked(OVER_LIMIT),
            413,
        );
        dv(
            "over the limit, without the key",
            "",
            h(&[json]),
            Body::Sized(OVER_LIMIT),
            413,
        );
        list
    }
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Sends `request` to the listener at `base` (`http://127.0.0.1:port`); the status, or why
/// there was none.
async fn send(client: &reqwest::Client, base: &str, request: &Hostile) -> Result<u16, String> {
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
async fn counting_server() -> (u16, Arc<AtomicUsize>) {
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

/// Waits until the queue has nothing pending or running, twice 500 ms apart (a delivery may
/// still be on its way when the queue first looks empty).
async fn quiet(env: &SyncEnv) {
    let idle = || async {
        let q = env.admin_get("/admin/v1/queue").await;
        q["pending"] == 0 && q["running"] == 0
    };
    let settled = wait_until(SETTLE, || async {
        if !idle().await {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        idle().await.then_some(())
    })
    .await;
    assert!(settled.is_some(), "the queue settles\n{}", env.host_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_to_both_webhooks_are_refused_and_enqueue_nothing() {
    SyncEnv::run_polling_every("", 0, |env| async move {
        let (bait_port, bait_hits) = counting_server().await;
        let setting = Setting::new(&env, format!("http://localhost:{bait_port}/cert.cer"));
        let catalogue = setting.catalogue();
        let before = intake(&env).await;
        let client = reqwest::Client::new();
        let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
        let mut wrong = Vec::new();
        for request in &catalogue {
            let got = send(&client, &env.webhooks_url, request).await;
            match got {
                Ok(status) => *by_status.entry(status).or_default() += 1,
                Err(_) => *by_status.entry(0).or_default() += 1,
            }
            if got != Ok(request.expect) {
                wrong.push(format!("{}: expected {}, got {got:?}", request.what, request.expect));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}\n{}", env.host_log());
        let after = intake(&env).await;
        let queue = env.admin_get("/admin/v1/queue").await;
        let enqueued: f64 = ["queued", "coalesced"]
            .iter()
            .flat_map(|r| ["partner-center-webhook", "dataverse-webhook"].map(|s| delta(&before, &after, &format!("{s}/{r}"))))
            .sum();
        let refused = delta(&before, &after, "partner-center-webhook/refused") + delta(&before, &after, "dataverse-webhook/refused");
        let over_limit = catalogue.iter().filter(|r| r.expect == 413).count();
        println!(
            "hostile input: {} requests sent ({} partner-center, {} dataverse), refused by status {by_status:?}, \
             counted refused by the handlers {refused} (+{over_limit} stopped at the body limit before them), \
             enqueued = {enqueued}, queue {queue}, certificate downloads from off-list hosts = {}",
            catalogue.len(),
            catalogue.iter().filter(|r| r.path == PC).count(),
            catalogue.iter().filter(|r| r.path == DV).count(),
            bait_hits.load(Ordering::SeqCst)
        );
        assert_eq!(enqueued, 0.0, "nothing was enqueued");
        assert_eq!(refused as usize, catalogue.len() - over_limit, "every other request reached a handler and was refused there");
        assert_eq!((queue["pending"].as_u64(), queue["running"].as_u64(), queue["dead"].as_u64()), (Some(0), Some(0), Some(0)));
        assert_eq!(bait_hits.load(Ordering::SeqCst), 0, "a host off the allow-list is never contacted");
        let healthz = reqwest::get(format!("{}/healthz", env.webhooks_url)).await.unwrap();
        assert!(healthz.status().is_success(), "the host is still up");
        assert!(!env.host_log().contains("panicked"), "no panic in the host\n{}", env.host_log());
    })
    .await;
}

/// A delivery as captured on the wire between a service and the host.
#[derive(Clone, Debug)]
struct Captured {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
}

/// A pass-through in front of the host's webhook listener that keeps a copy of every delivery.
async fn tap(host: String) -> (String, Arc<Mutex<Vec<Captured>>>) {
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
async fn replay(
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

/// Sync runs that wrote something (created or updated a record), on either side.
async fn writes(env: &SyncEnv) -> f64 {
    let mut n = 0.0;
    for outcome in ["created", "updated"] {
        n += env
            .metric("cosell_sync_events_total", &[("outcome", outcome)])
            .await;
    }
    n
}

/// Writes the captured deliveries as the fuzz targets' seeds (only with COSELL_WRITE_FUZZ_SEEDS).
async fn write_seeds(pc: &[Captured], dv: &[Captured]) {
    if std::env::var_os("COSELL_WRITE_FUZZ_SEEDS").is_none() {
        return;
    }
    let seeds = support::repo_root().join("fuzz/seeds");
    for (dir, deliveries) in [("partner_center_event", pc), ("dataverse_context", dv)] {
        std::fs::create_dir_all(seeds.join(dir)).unwrap();
        for (i, d) in deliveries.iter().enumerate() {
            let event: Value = serde_json::from_slice(&d.body).unwrap();
            let name = event["EventName"]
                .as_str()
                .or(event["MessageName"].as_str())
                .unwrap_or("event")
                .to_ascii_lowercase();
            std::fs::write(seeds.join(dir).join(format!("{i}-{name}.json")), &d.body).unwrap();
        }
    }
    std::fs::create_dir_all(seeds.join("signature")).unwrap();
    for (i, d) in pc.iter().enumerate() {
        let url = &d
            .headers
            .iter()
            .find(|(n, _)| n == "x-ms-certificate-url")
            .unwrap()
            .1;
        let cert = reqwest::get(url.as_str())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let headers: Vec<(&str, &[u8])> = d
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        let input = webhook_formats::fuzzing::SignatureInput::encode(&headers, &cert, &d.body);
        std::fs::write(
            seeds.join("signature").join(format!("{i}-delivery.bin")),
            input,
        )
        .unwrap();
    }
    println!(
        "wrote {} + {} + {} fuzz seeds under {}",
        pc.len(),
        dv.len(),
        pc.len(),
        seeds.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_genuine_delivery_is_acknowledged_and_writes_nothing_twice() {
    SyncEnv::run_polling_every("", 0, |env| async move {
        // Route both services' deliveries through a tap, to capture them exactly as sent.
        let (tap_url, captured) = tap(env.webhooks_url.clone()).await;
        let pc_hook = format!("{tap_url}{PC}");
        env.cosell(&["partner-center", "register-webhooks", "--url", &pc_hook, "--overwrite"]);
        let dv_hook = format!("{tap_url}{DV}");
        env.cosell(&["dataverse", "register-webhook", "--url", &dv_hook]);

        // A Microsoft referral becomes an opportunity; then Microsoft raises the deal value.
        let referral = env.pc.microsoft().create_incoming(json!({"name": "Replay target", "details": {"dealValue": 1000, "currency": "USD"}}));
        let rid = referral["id"].as_str().unwrap().to_owned();
        let opp = wait_until(SETTLE, || async { env.opportunities_for_referral(&rid).await.into_iter().next() })
            .await
            .unwrap_or_else(|| panic!("an opportunity for {rid}\n{}", env.host_log()));
        let oid = opp["opportunityid"].as_str().unwrap().to_owned();
        quiet(&env).await;
        env.pc.microsoft().update(&rid, json!({"details": {"dealValue": 2000}})).unwrap();
        env.wait_opportunity(&oid, "the raised deal value", |o| o["estimatedvalue"].as_f64() == Some(2000.0)).await;
        quiet(&env).await;

        let deliveries = captured.lock().unwrap().clone();
        let pc: Vec<Captured> = deliveries.iter().filter(|d| d.path == PC && d.status == 200).cloned().collect();
        let dv: Vec<Captured> = deliveries.iter().filter(|d| d.path == DV && d.status == 200).cloned().collect();
        let created = pc
            .iter()
            .find(|d| String::from_utf8_lossy(&d.body).contains("referral-created"))
            .unwrap_or_else(|| panic!("the referral-created delivery was captured: {deliveries:#?}"))
            .clone();
        let opportunity_create = dv
            .iter()
            .find(|d| String::from_utf8_lossy(&d.body).contains("\"Create\""))
            .unwrap_or_else(|| panic!("the opportunity's Create delivery was captured: {deliveries:#?}"))
            .clone();
        write_seeds(&pc, &dv).await;

        // What must not change: the records, their versions, the counts and the writes.
        let referral_etag = env.pc.referral(&rid).unwrap()["eTag"].clone();
        let opportunity_etag = env.etag(&oid).await;
        let referrals = env.pc.referrals().len();
        let writes_before = writes(&env).await;
        let runs_before = env.metric( "cosell_sync_events_total", &[]).await;
        let intake_before = intake(&env).await;

        // The stale referral-created (older than the update) and the opportunity's Create, each
        // sent again 20 times: 10 at once, then 10 one after the other; and once more without
        // a content type (a proxy may drop it; the body and signature are what count).
        const TIMES: usize = 20;
        let client = reqwest::Client::new();
        let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
        for delivery in [&created, &opportunity_create] {
            let burst: Vec<_> = (0..TIMES / 2).map(|_| replay(&client, &env, delivery, &[])).collect();
            for status in futures_join(burst).await {
                *statuses.entry(status).or_default() += 1;
            }
            for _ in 0..TIMES / 2 {
                *statuses.entry(replay(&client, &env, delivery, &[]).await).or_default() += 1;
            }
            *statuses.entry(replay(&client, &env, delivery, &["content-type"]).await).or_default() += 1;
        }
        let sent = 2 * (TIMES + 1);
        quiet(&env).await;

        let intake_after = intake(&env).await;
        let stored: f64 = ["partner-center-webhook", "dataverse-webhook"].iter().map(|s| delta(&intake_before, &intake_after, &format!("{s}/queued"))).sum();
        let coalesced: f64 = ["partner-center-webhook", "dataverse-webhook"].iter().map(|s| delta(&intake_before, &intake_after, &format!("{s}/coalesced"))).sum();
        let runs = env.metric( "cosell_sync_events_total", &[]).await - runs_before;
        let extra_writes = writes(&env).await - writes_before;
        let opportunities = env.opportunities_for_referral(&rid).await;
        println!(
            "replays: {sent} genuine deliveries re-sent ({} partner-center referral-created, {} dataverse Create), answered {statuses:?}; \
             stored {stored} + coalesced {coalesced}; sync runs {runs}; writes = {extra_writes}; referrals {} -> {}; \
             opportunities for the referral = {}; referral eTag unchanged = {}; opportunity etag unchanged = {}",
            TIMES + 1,
            TIMES + 1,
            referrals,
            env.pc.referrals().len(),
            opportunities.len(),
            env.pc.referral(&rid).unwrap()["eTag"] == referral_etag,
            env.etag(&oid).await == opportunity_etag,
        );
        assert_eq!(statuses.get(&200), Some(&sent), "a replay is acknowledged as a retry would be");
        assert_eq!(extra_writes, 0.0, "no sync run wrote anything\n{}", env.host_log());
        assert_eq!(env.pc.referrals().len(), referrals, "no second referral");
        assert_eq!(opportunities.len(), 1, "no second opportunity");
        assert_eq!(env.pc.referral(&rid).unwrap()["eTag"], referral_etag, "the referral was not written");
        assert_eq!(env.etag(&oid).await, opportunity_etag, "the opportunity was not written");
        assert_eq!(env.opportunity(&oid).await["estimatedvalue"].as_f64(), Some(2000.0), "a stale replay rolls nothing back");
    })
    .await;
}

/// Awaits every future in `futures` concurrently (on this task); their outputs, in order.
async fn futures_join<F: std::future::Future<Output = u16>>(futures: Vec<F>) -> Vec<u16> {
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
async fn probe_healthz(base: &str, n: usize) -> Vec<Duration> {
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

/// (median, max) of `samples`.
fn median_max(samples: &[Duration]) -> (Duration, Duration) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    (sorted[sorted.len() / 2], *sorted.last().unwrap())
}

/// A Microsoft referral created now: how long until its opportunity exists.
async fn genuine_sync(env: &SyncEnv, name: &str) -> Duration {
    let started = Instant::now();
    let referral = env.pc.microsoft().create_incoming(json!({"name": name}));
    let rid = referral["id"].as_str().unwrap().to_owned();
    let synced = wait_until(SETTLE, || async {
        env.opportunities_for_referral(&rid)
            .await
            .into_iter()
            .next()
    })
    .await;
    assert!(
        synced.is_some(),
        "{name}: the genuine referral was synced within {SETTLE:?}\n{}",
        env.host_log()
    );
    started.elapsed()
}

/// `n` connections that send half a request (headers promising a body that never comes).
async fn hold_connections(base: &str, n: usize) -> Vec<tokio::net::TcpStream> {
    let addr = base.trim_start_matches("http://");
    let mut held = Vec::new();
    for i in 0..n {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let path = if i % 2 == 0 { PC } else { DV };
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{{\"Event"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        held.push(stream);
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_hostile_requests_neither_crashes_nor_slows_the_host() {
    SyncEnv::run_polling_every("", 0, |env| async move {
        // At least MIN_FLOOD requests, and on until the genuine referral is synced (MAX_FLOOD
        // at most), so the whole genuine sync happens under the flood.
        const MIN_FLOOD: usize = 1_500;
        const MAX_FLOOD: usize = 5_000;
        const AT_ONCE: usize = 32;
        const HELD: usize = 50;
        let (bait_port, bait_hits) = counting_server().await;
        let catalogue = Arc::new(Setting::new(&env, format!("http://localhost:{bait_port}/cert.cer")).catalogue());

        // Before: /healthz and one genuine referral synced, on a quiet host.
        let (base_median, base_max) = median_max(&probe_healthz(&env.webhooks_url, 40).await);
        let base_sync = genuine_sync(&env, "Before the flood").await;
        quiet(&env).await;

        let held = hold_connections(&env.webhooks_url, HELD).await;
        let intake_before = intake(&env).await;
        let delivered = |env: &SyncEnv| env.pc.webhooks().deliveries().iter().filter(|d| d.outcome == "delivered").count();
        let delivered_before = delivered(&env);
        let flooding = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let genuine_done = Arc::new(std::sync::atomic::AtomicBool::new(false));

        // The flood: the catalogue over and over, AT_ONCE requests in flight.
        let flood = {
            let (catalogue, base, flooding, genuine_done) = (catalogue.clone(), env.webhooks_url.clone(), flooding.clone(), genuine_done.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let client = reqwest::Client::new();
                let gate = Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
                let mut tasks = tokio::task::JoinSet::new();
                let mut sent = 0;
                while sent < MAX_FLOOD && (sent < MIN_FLOOD || !genuine_done.load(Ordering::SeqCst)) {
                    let i = sent;
                    sent += 1;
                    let permit = gate.clone().acquire_owned().await.unwrap();
                    let (client, base, request) = (client.clone(), base.clone(), catalogue[i % catalogue.len()].clone());
                    tasks.spawn(async move {
                        let got = send(&client, &base, &request).await;
                        drop(permit);
                        (request.expect, request.path, got)
                    });
                }
                let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
                let mut unexpected = Vec::new();
                let mut over_limit = 0;
                while let Some(done) = tasks.join_next().await {
                    let (expect, path, got) = done.unwrap();
                    over_limit += usize::from(expect == 413);
                    let key = got.as_ref().map(u16::to_string).unwrap_or_else(|_| "no answer".into());
                    *by_status.entry(key).or_default() += 1;
                    if got != Ok(expect) {
                        unexpected.push(format!("{path}: expected {expect}, got {got:?}"));
                    }
                }
                flooding.store(false, Ordering::SeqCst);
                (sent, by_status, unexpected, over_limit, started.elapsed())
            })
        };
        // Meanwhile: /healthz every 10 ms, and a genuine referral synced.
        let prober = {
            let (base, flooding) = (env.webhooks_url.clone(), flooding.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut latencies = Vec::new();
                let mut failures = 0;
                while flooding.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let answer = tokio::time::timeout(Duration::from_secs(10), client.get(format!("{base}/healthz")).send()).await;
                    match answer {
                        Ok(Ok(r)) if r.status().is_success() => latencies.push(started.elapsed()),
                        _ => failures += 1,
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (latencies, failures)
            })
        };
        let flood_sync = genuine_sync(&env, "During the flood").await;
        genuine_done.store(true, Ordering::SeqCst);
        let (sent, by_status, unexpected, over_limit, flood_time) = flood.await.unwrap();
        let (latencies, probe_failures) = prober.await.unwrap();
        quiet(&env).await;

        let intake_after = intake(&env).await;
        let refused = delta(&intake_before, &intake_after, "partner-center-webhook/refused") + delta(&intake_before, &intake_after, "dataverse-webhook/refused");
        let pc_stored = delta(&intake_before, &intake_after, "partner-center-webhook/queued") + delta(&intake_before, &intake_after, "partner-center-webhook/coalesced");
        let genuine_pc = delivered(&env) - delivered_before;
        let (median, max) = if latencies.is_empty() { (Duration::ZERO, Duration::ZERO) } else { median_max(&latencies) };
        let still_held = held.len();
        drop(held);
        let (after_median, after_max) = median_max(&probe_healthz(&env.webhooks_url, 20).await);
        println!(
            "hostile flood: {sent} requests ({AT_ONCE} at a time, {} kinds) in {flood_time:?} with {still_held} half-sent connections held open; \
             answers {by_status:?}; refused by the handlers {refused} (+{over_limit} at the body limit); hostile enqueued = {}; \
             /healthz during the flood: {} probes, median {median:?}, max {max:?}, failed {probe_failures} (before: median {base_median:?}, max {base_max:?}; after: median {after_median:?}, max {after_max:?}); \
             a genuine referral synced in {flood_sync:?} during the flood ({base_sync:?} before); certificate downloads from off-list hosts = {}",
            catalogue.len(),
            pc_stored - genuine_pc as f64,
            latencies.len(),
            bait_hits.load(Ordering::SeqCst),
        );
        assert!(unexpected.is_empty(), "every hostile request got its refusal: {unexpected:#?}");
        assert_eq!(refused as usize, sent - over_limit, "every hostile request that reached a handler was refused");
        assert!(pc_stored <= genuine_pc as f64, "only genuine deliveries were stored ({pc_stored} stored, {genuine_pc} genuine)");
        assert_eq!(probe_failures, 0, "/healthz answered throughout the flood");
        assert!(max < Duration::from_secs(5), "/healthz never took 5 s during the flood (max {max:?})");
        assert_eq!(bait_hits.load(Ordering::SeqCst), 0);
        assert!(!env.host_log().contains("panicked"), "no panic in the host\n{}", env.host_log());
    })
    .await;
}
