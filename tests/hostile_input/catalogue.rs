//! The catalogue of hostile requests: for both webhooks, every kind of malformed, oversized,
//! unsigned, badly signed or badly keyed request, each with the status it must get.

use crate::support::sync_env::SyncEnv;
use cosell_emulators::partner_center::signing::SigningMaterial;
use serde_json::json;

/// Over `webhooks.max_body_bytes` (256 KiB, the default the test host runs with).
const OVER_LIMIT: usize = 300 * 1024;

#[derive(Clone)]
pub(crate) enum Body {
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
pub(crate) struct Hostile {
    pub(crate) what: String,
    pub(crate) path: &'static str,
    pub(crate) query: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Body,
    pub(crate) expect: u16,
}

pub(crate) const PC: &str = "/webhooks/partner-center";
pub(crate) const DV: &str = "/webhooks/dataverse";

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// What the hostile requests need to know about the environment.
pub(crate) struct Setting {
    cert_url: String,
    dv_key: String,
    pc_port: u16,
    /// A certificate server on 127.0.0.1 named as `localhost` (not on the allow-list): it
    /// counts the downloads it serves, which must stay 0.
    bait_url: String,
}

impl Setting {
    pub(crate) fn new(env: &SyncEnv, bait_url: String) -> Self {
        Setting {
            cert_url: format!(
                "{}{}",
                env.pc_url,
                cosell_emulators::partner_center::signing::CERTIFICATE_PATH
            ),
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
    pub(crate) fn catalogue(&self) -> Vec<Hostile> {
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
        // Without a length the size is only known by reading, and nothing is read before the
        // signature headers are checked: unsigned, it is refused for those (and not read).
        pc(
            "over the limit, chunked, unsigned",
            h(&[json]),
            Body::Chunked(OVER_LIMIT),
            401,
        );
        pc(
            "over the limit, chunked, signature headers in form",
            signed(b"not this body", &[json]),
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
