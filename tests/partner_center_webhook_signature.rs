//! Signature verification of Partner Center webhook deliveries, against real deliveries of the
//! Partner Center emulator over HTTP: both signature headers, tampering, missing headers, the
//! certificate URL policy (refused before any fetch), the issuer check and pinning, and the
//! certificate cache (one download for many deliveries, concurrent ones included).
//! Certificate downloads are counted by a stub certificate server on 127.0.0.1.

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Redirect;
use axum::routing::{get, post};
use base64::Engine as _;
mod support;

use cosell::connections::partner_center::Audience;
use cosell::connections::partner_center::auth::TokenCache;
use cosell::sources::partner_center_webhook::certificates::{
    CertificatePolicy, load_certificate_file,
};
use cosell::sources::partner_center_webhook::signature::SignatureVerifier;
use cosell_emulators::partner_center::{PartnerCenter, PartnerCenterConfig};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::partner_center_settings;
use tokio::sync::mpsc;

/// Every test is bounded: a hung call fails the test instead of the run.
const BOUND: Duration = Duration::from_secs(60);

type Delivery = (HeaderMap, Bytes);

/// A webhook receiver that records the headers and raw body of each delivery.
async fn receiver() -> (String, mpsc::UnboundedReceiver<Delivery>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let _ = tx.send((headers, body));
            async { "ok" }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Delivery>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a delivery within 20 s")
        .expect("the receiver runs")
}

struct Emulator {
    pc: PartnerCenter,
    running: cosell_emulators::partner_center::RunningPartnerCenter,
    http: reqwest::Client,
    token: String,
}

impl Emulator {
    async fn start() -> Emulator {
        let pc = PartnerCenter::new(PartnerCenterConfig::default());
        let running = pc.serve().await.expect("the emulator starts");
        let http = reqwest::Client::new();
        // The host's own token cache redeems the emulator's refresh token.
        let settings = partner_center_settings(&pc, &running);
        let token = TokenCache::new(&settings)
            .token(&http, Audience::Webhooks, None)
            .await;
        let token = token.expect("a delegated token").expose().to_owned();
        Emulator {
            pc,
            running,
            http,
            token,
        }
    }

    /// Registers (or overwrites) the webhook; `ms_header` puts signatures in x-ms-signature.
    async fn register(&self, url: &str, ms_header: bool) {
        let body = json!({"WebhookUrl": url, "WebhookEvents": ["referral-created", "test-created"],
                          "SignatureTokenToMsSignatureHeader": ms_header});
        let r = self
            .http
            .put(format!(
                "{}/webhooks/v1/registration",
                self.running.webhooks_url()
            ))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "registration: {}", r.status());
    }

    async fn validation_event(&self) {
        let url = format!(
            "{}/webhooks/v1/registration/validationEvents",
            self.running.webhooks_url()
        );
        let r = self.http.post(url).bearer_auth(&self.token).send().await;
        assert!(r.unwrap().status().is_success());
    }

    /// One genuine delivery (a `test-created` event) as the receiver got it.
    async fn one_delivery(&self) -> Delivery {
        let (url, mut rx) = receiver().await;
        self.register(&url, false).await;
        self.validation_event().await;
        next(&mut rx).await
    }
}

/// A certificate host on 127.0.0.1 that counts its downloads: `/cert/cert.cer` answers
/// `bytes` after `delay`, `/cert/moved.cer` redirects to it, and every other name under
/// `/cert/` is 404 (as Microsoft's storage answers a name it does not hold).
async fn cert_server(bytes: Vec<u8>, delay: Duration) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let missing = hits.clone();
    let app = Router::new()
        .route(
            "/cert/cert.cer",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let bytes = bytes.clone();
                async move {
                    tokio::time::sleep(delay).await;
                    bytes
                }
            }),
        )
        .route(
            "/cert/moved.cer",
            get(|| async { Redirect::temporary("/cert/cert.cer") }),
        )
        .route(
            "/cert/{name}",
            get(move || {
                missing.fetch_add(1, Ordering::SeqCst);
                async { axum::http::StatusCode::NOT_FOUND }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, hits)
}

fn sandbox_policy(pinned: Vec<Vec<u8>>) -> CertificatePolicy {
    CertificatePolicy {
        allowed_hosts: vec!["127.0.0.1".into()],
        allow_http: true,
        pinned,
        fetch_timeout: Duration::from_secs(5),
        cache_ttl: Duration::from_secs(3600),
        ..CertificatePolicy::default()
    }
}

fn set(headers: &HeaderMap, name: &'static str, value: &str) -> HeaderMap {
    let mut headers = headers.clone();
    headers.insert(name, HeaderValue::from_str(value).unwrap());
    headers
}

fn without(headers: &HeaderMap, name: &str) -> HeaderMap {
    let mut headers = headers.clone();
    headers.remove(name);
    headers
}

async fn status(verifier: &SignatureVerifier, headers: &HeaderMap, body: &[u8]) -> u16 {
    match verifier.verify(headers, body).await {
        Ok(()) => 200,
        Err(e) => e.status,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genuine_deliveries_pass_in_both_header_forms_and_any_change_fails() {
    tokio::time::timeout(BOUND, async {
        let emu = Emulator::start().await;
        // The emulator's certificate is pinned the way the config will do it: from a PEM file.
        let pem = emu
            .http
            .get(format!("{}/_emulator/certificate.pem", emu.running.url()));
        let pem = pem.send().await.unwrap().text().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("emulator.pem"), pem).unwrap();
        let pinned = load_certificate_file(&dir.path().join("emulator.pem")).unwrap();
        let verifier = SignatureVerifier::new(sandbox_policy(vec![pinned])).unwrap();

        let (url, mut rx) = receiver().await;
        emu.register(&url, false).await;
        emu.validation_event().await;
        let (headers, body) = next(&mut rx).await;
        assert!(
            headers["authorization"]
                .to_str()
                .unwrap()
                .starts_with("Signature ")
        );
        assert!(headers.get("x-ms-signature").is_none());
        verifier.verify(&headers, &body).await.expect("genuine");

        let mut flipped = body.to_vec();
        flipped[body.len() / 2] ^= 0x01;
        assert_eq!(status(&verifier, &headers, &flipped).await, 401);
        let mut extra = body.to_vec();
        extra.push(b' ');
        assert_eq!(
            status(&verifier, &headers, &extra).await,
            401,
            "trailing space"
        );
        assert_eq!(
            status(
                &verifier,
                &without(&headers, "x-ms-signature-algorithm"),
                &body
            )
            .await,
            400
        );
        assert_eq!(
            status(&verifier, &without(&headers, "x-ms-certificate-url"), &body).await,
            400
        );
        assert_eq!(
            status(&verifier, &without(&headers, "authorization"), &body).await,
            401
        );
        let bearer = set(&headers, "authorization", "Bearer abc");
        assert_eq!(status(&verifier, &bearer, &body).await, 401);

        emu.register(&url, true).await;
        emu.pc
            .microsoft()
            .create_incoming(json!({"name": "Signed"}));
        let (ms_headers, ms_body) = next(&mut rx).await;
        let signature = ms_headers["x-ms-signature"].to_str().unwrap().to_owned();
        assert!(signature.starts_with("Signature "), "{signature}");
        assert!(ms_headers.get("authorization").is_none());
        assert_ne!(ms_body, body);
        verifier
            .verify(&ms_headers, &ms_body)
            .await
            .expect("genuine, x-ms-signature");
        let bare = set(
            &ms_headers,
            "x-ms-signature",
            &signature["Signature ".len()..],
        );
        verifier
            .verify(&bare, &ms_body)
            .await
            .expect("a bare base64 x-ms-signature");
        // A genuine signature of another body proves nothing about this one.
        assert_eq!(status(&verifier, &ms_headers, &body).await, 401);
        assert_eq!(
            status(&verifier, &without(&ms_headers, "x-ms-signature"), &ms_body).await,
            401
        );
        assert_eq!(
            verifier.certificates().fetches(),
            1,
            "cached across deliveries"
        );
        emu.running.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_urls_outside_the_policy_are_refused_without_fetching() {
    tokio::time::timeout(BOUND, async {
        let emu = Emulator::start().await;
        let (headers, body) = emu.one_delivery().await;
        let der = cosell_emulators::partner_center::signing::SigningMaterial::get();
        let (base, hits) = cert_server(der.certificate_der().to_vec(), Duration::ZERO).await;
        let port = base.rsplit(':').next().unwrap().to_owned();
        let https_only = CertificatePolicy {
            allow_http: false,
            ..sandbox_policy(vec![])
        };
        let nobody = CertificatePolicy {
            allowed_hosts: vec![],
            ..sandbox_policy(vec![])
        };
        let cases = [
            (
                sandbox_policy(vec![]),
                format!("http://localhost:{port}/cert/cert.cer"),
                "host not allowed",
            ),
            (https_only, format!("{base}/cert/cert.cer"), "http"),
            (nobody, format!("{base}/cert/cert.cer"), "empty allow-list"),
            (
                sandbox_policy(vec![]),
                format!("{base}/cert/cert.cer?v=1"),
                "query",
            ),
            (
                sandbox_policy(vec![]),
                format!("{base}/cert.cer"),
                "outside the path prefix",
            ),
            (
                sandbox_policy(vec![]),
                format!("{base}/cert/../other/cert.cer"),
                "climbing out of the path prefix",
            ),
        ];
        for (policy, url, what) in cases {
            let verifier = SignatureVerifier::new(policy).unwrap();
            let err = verifier
                .verify(&set(&headers, "x-ms-certificate-url", &url), &body)
                .await
                .expect_err(what);
            assert_eq!(err.status, 401, "{what}: {err}");
            assert!(err.reason.contains("refused"), "{what}: {err}");
            assert_eq!(verifier.certificates().fetches(), 0, "{what}");
        }
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "nothing reached the certificate host"
        );

        let verifier = SignatureVerifier::new(sandbox_policy(vec![])).unwrap();
        let moved = set(
            &headers,
            "x-ms-certificate-url",
            &format!("{base}/cert/moved.cer"),
        );
        let err = verifier.verify(&moved, &body).await.expect_err("redirect");
        assert!(
            err.reason.contains("302") || err.reason.contains("307"),
            "{err}"
        );
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "the redirect was not followed"
        );
        // The same certificate from an allowed URL is fine: the refusals were the policy's.
        let good = set(
            &headers,
            "x-ms-certificate-url",
            &format!("{base}/cert/cert.cer"),
        );
        verifier.verify(&good, &body).await.expect("allowed URL");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        emu.running.stop().await;
    })
    .await
    .expect("bounded");
}

/// An RSA key and a self-signed certificate for it with organisation `org`.
fn rsa_certificate(org: &str) -> (rsa::pkcs1v15::SigningKey<rsa::sha2::Sha256>, Vec<u8>) {
    use rsa::pkcs8::EncodePrivateKey;
    let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let pkcs8 = private.to_pkcs8_der().unwrap();
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &pkcs8.as_bytes().into(),
        &rcgen::PKCS_RSA_SHA256,
    )
    .unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["cert.example".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, org);
    let der = params.self_signed(&key).unwrap().der().to_vec();
    (rsa::pkcs1v15::SigningKey::new(private), der)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_not_issued_by_microsoft_is_refused_unless_pinned() {
    tokio::time::timeout(BOUND, async {
        use rsa::signature::{SignatureEncoding, Signer};
        let (key, der) = tokio::task::spawn_blocking(|| rsa_certificate("Contoso Ltd"))
            .await
            .unwrap();
        let (base, hits) = cert_server(der.clone(), Duration::ZERO).await;
        let body = br#"{"EventName":"referral-created"}"#;
        let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(body).to_bytes());
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            format!("Signature {signature}").parse().unwrap(),
        );
        headers.insert(
            "x-ms-certificate-url",
            format!("{base}/cert/cert.cer").parse().unwrap(),
        );
        headers.insert(
            "x-ms-signature-algorithm",
            HeaderValue::from_static("rsa-sha256"),
        );

        let open = SignatureVerifier::new(sandbox_policy(vec![])).unwrap();
        let err = open
            .verify(&headers, body)
            .await
            .expect_err("Contoso is not Microsoft");
        assert_eq!(err.status, 401);
        assert!(err.reason.contains("issuer"), "{err}");
        // Not cached as good, and the refusal is remembered: no second download.
        let again = open
            .verify(&headers, body)
            .await
            .expect_err("still refused");
        assert!(again.reason.contains("issuer"), "{again}");
        assert_eq!(hits.load(Ordering::SeqCst), 1);

        let pinned = SignatureVerifier::new(sandbox_policy(vec![der])).unwrap();
        pinned
            .verify(&headers, body)
            .await
            .expect("pinned, and the signature is good");

        // The emulator's (Microsoft-issued) certificate does not verify Contoso's signature.
        let emulator = cosell_emulators::partner_center::signing::SigningMaterial::get();
        let (ms_base, _) = cert_server(emulator.certificate_der().to_vec(), Duration::ZERO).await;
        let other = set(
            &headers,
            "x-ms-certificate-url",
            &format!("{ms_base}/cert/cert.cer"),
        );
        let err = open.verify(&other, body).await.expect_err("wrong key");
        assert!(err.reason.contains("does not match"), "{err}");
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_is_fetched_once_for_many_deliveries_until_the_ttl() {
    tokio::time::timeout(BOUND, async {
        let emu = Emulator::start().await;
        let (headers, body) = emu.one_delivery().await;
        let material = cosell_emulators::partner_center::signing::SigningMaterial::get();
        let der = material.certificate_der().to_vec();
        // A slow certificate host, so that the concurrent first deliveries overlap the download.
        let (base, hits) = cert_server(der.clone(), Duration::from_millis(300)).await;
        let headers = set(
            &headers,
            "x-ms-certificate-url",
            &format!("{base}/cert/cert.cer"),
        );
        let verifier = Arc::new(SignatureVerifier::new(sandbox_policy(vec![der])).unwrap());
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (v, h, b) = (verifier.clone(), headers.clone(), body.clone());
                tokio::spawn(async move { v.verify(&h, &b).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().expect("genuine");
        }
        for _ in 0..10 {
            verifier
                .verify(&headers, &body)
                .await
                .expect("genuine, cached");
        }
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "one download for 30 deliveries"
        );

        let short = SignatureVerifier::new(CertificatePolicy {
            cache_ttl: Duration::from_secs(1),
            ..sandbox_policy(vec![])
        })
        .unwrap();
        short.verify(&headers, &body).await.expect("genuine");
        short.verify(&headers, &body).await.expect("genuine");
        tokio::time::sleep(Duration::from_millis(1300)).await;
        short.verify(&headers, &body).await.expect("genuine");
        assert_eq!(
            hits.load(Ordering::SeqCst),
            3,
            "fetched again after the TTL only"
        );
        emu.running.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_deliveries_naming_new_certificate_urls_cause_a_bounded_number_of_downloads() {
    use cosell::sources::partner_center_webhook::certificates::NEW_URL_BURST;
    tokio::time::timeout(BOUND, async {
        let emu = Emulator::start().await;
        let (genuine, body) = emu.one_delivery().await;
        let der = cosell_emulators::partner_center::signing::SigningMaterial::get();
        let verifier = Arc::new(
            SignatureVerifier::new(sandbox_policy(vec![der.certificate_der().to_vec()])).unwrap(),
        );
        verifier.verify(&genuine, &body).await.expect("genuine");
        assert_eq!(verifier.certificates().fetches(), 1);

        // An attacker on the allowed host's path prefix: every forged delivery names a new
        // certificate URL, which that host answers 404.
        let (base, hits) = cert_server(Vec::new(), Duration::ZERO).await;
        let mut refused = 0;
        for round in 0..10 {
            let mut forged = tokio::task::JoinSet::new();
            for i in 0..100 {
                let url = format!("{base}/cert/forged-{round}-{i}.cer");
                let (v, h, b) = (
                    verifier.clone(),
                    set(&genuine, "x-ms-certificate-url", &url),
                    body.clone(),
                );
                forged.spawn(async move { v.verify(&h, &b).await });
            }
            while let Some(result) = forged.join_next().await {
                let err = result.unwrap().expect_err("forged");
                assert_eq!(err.status, 401, "{err}");
                refused += 1;
            }
            // Genuine deliveries keep being verified, from the cache.
            verifier
                .verify(&genuine, &body)
                .await
                .expect("genuine during the flood");
        }
        assert_eq!(refused, 1000);
        let forged_downloads = hits.load(Ordering::SeqCst) as u64;
        // The burst, plus one refill if the test ran past the refill interval.
        assert!(
            forged_downloads <= u64::from(NEW_URL_BURST) + 1,
            "{forged_downloads} downloads for 1,000 forged URLs"
        );
        assert_eq!(
            verifier.certificates().fetches(),
            1 + forged_downloads,
            "the genuine certificate was never downloaded again"
        );
        println!(
            "forged certificate URLs: 1,000 deliveries refused (401), {forged_downloads} certificate downloads (bound {}), genuine deliveries verified meanwhile without a new download",
            u64::from(NEW_URL_BURST) + 1
        );
        emu.running.stop().await;
    })
    .await
    .expect("bounded");
}
