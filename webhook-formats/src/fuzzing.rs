//! The fuzz targets' entry points and input layouts. `fuzz/fuzz_targets/*.rs` call these
//! functions and nothing else, and `tests/fuzz_inputs.rs` feeds them the saved inputs
//! (`fuzz/seeds/<target>/`, the genuine deliveries the fuzzer starts from, and
//! `fuzz/regressions/<target>/`, every input that ever crashed a target) in `make test`, so a
//! crash found once stays fixed without needing a fuzz build.
//!
//! Each entry point runs the same code as the webhook handlers, checks what must hold for any
//! input (the invariants below, as assertions: a failed one is a crash the fuzzer reports),
//! and answers `Ok` for an accepted delivery or `Err(reason)` for a refused one.

use crate::certificate::{self, CertificatePolicy};
use crate::dataverse::{self, Context};
use crate::ids::plausible_id;
use crate::partner_center::{self, Event};
use crate::signature::{DeliveryProof, RejectedDelivery, SignatureKey};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::time::{Duration, SystemTime};

/// Target `partner_center_event`: `data` is a delivery body (after its signature held).
/// Invariant: an accepted referral event names a plausible id that its `ResourceUri` ends with.
pub fn partner_center_event(data: &[u8]) -> Result<(), String> {
    match partner_center::parse_event(data) {
        Ok(Event::Referral { id, .. }) => {
            assert!(plausible_id(&id), "an implausible id {id:?} was accepted");
            // In the decoded body, not the raw bytes: JSON escapes (`\u0058`) are fine.
            let decoded = serde_json::from_slice::<serde_json::Value>(data).unwrap_or_default();
            let named = decoded.as_object().is_some_and(|members| {
                members.iter().any(|(key, value)| {
                    key.eq_ignore_ascii_case("ResourceUri")
                        && value.as_str().is_some_and(|uri| uri.contains(id.as_str()))
                })
            });
            assert!(named, "the id {id:?} is not in the event's ResourceUri");
            Ok(())
        }
        Ok(Event::Ignored { .. }) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Target `dataverse_context`: `data` is a `RemoteExecutionContext` body (after its
/// credential held). Invariant: an accepted opportunity has a lowercase plausible id, and the
/// payload stored for it is JSON naming that id.
pub fn dataverse_context(data: &[u8]) -> Result<(), String> {
    let context = dataverse::parse_context(data).map_err(|e| e.to_string())?;
    if let Context::Opportunity { id, .. } = &context {
        assert!(plausible_id(id), "an implausible id {id:?} was accepted");
        assert_eq!(*id, id.to_ascii_lowercase(), "the id is not lowercase");
        let payload = context
            .queue_payload()
            .expect("an opportunity has a payload");
        let stored: serde_json::Value =
            serde_json::from_str(&payload).expect("the stored payload is JSON");
        assert_eq!(stored["PrimaryEntityId"], id.as_str());
        if let Some(version) = stored.get("RowVersion") {
            let digits = version.as_str().expect("a RowVersion is kept as text");
            assert!(
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
                "a RowVersion that is not a number was kept: {digits:?}"
            );
        }
    }
    Ok(())
}

/// Where the signature target's inputs say their certificate comes from (the emulator's
/// `x-ms-certificate-url` is on 127.0.0.1 over http; the kept seeds name paths under `/`
/// other than the documented prefix, and refusing them would stop the fuzzer short of the
/// signature check).
pub fn signature_policy() -> CertificatePolicy {
    CertificatePolicy {
        allowed_hosts: vec!["127.0.0.1".into()],
        path_prefix: "/".into(),
        allow_http: true,
        ..CertificatePolicy::default()
    }
}

/// The moment certificates are judged at, fixed so that a saved input behaves the same on any
/// day (2026-12-01T00:00:00Z).
pub fn signature_now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_083_200)
}

/// Target `signature`: a whole delivery as the verifier sees it, laid out as
/// `name: value\n` header lines, an empty line, the certificate's length (4 bytes, big
/// endian) and bytes (what `x-ms-certificate-url` would serve), then the body; missing parts
/// are empty. Runs header parsing, the URL policy, certificate judgement and the RSA-SHA256
/// check in the handler's order. Invariant: a refusal is a 400 or a 401.
pub fn signature(data: &[u8]) -> Result<(), String> {
    let input = SignatureInput::decode(data);
    let checked = (|| {
        let proof = DeliveryProof::from_headers(&input.headers)?;
        let policy = signature_policy();
        let unauthorized =
            |e: certificate::CertificateError| RejectedDelivery::unauthorized(e.to_string());
        certificate::check_url(&policy, &proof.certificate_url).map_err(unauthorized)?;
        let accepted = certificate::accept(&policy, input.certificate, signature_now())
            .map_err(unauthorized)?;
        proof.verify(&SignatureKey::new(&accepted.key), input.body)
    })();
    checked.map_err(|rejected| {
        assert!(
            rejected.status == 400 || rejected.status == 401,
            "refused with {}",
            rejected.status
        );
        assert!(!rejected.reason.is_empty(), "refused without a reason");
        rejected.reason
    })
}

/// A decoded input of the `signature` target.
pub struct SignatureInput<'a> {
    pub headers: HeaderMap,
    pub certificate: &'a [u8],
    pub body: &'a [u8],
}

impl<'a> SignatureInput<'a> {
    /// Reads the layout described at [`signature`]; lines that are not a valid header are
    /// skipped (the HTTP server would not have passed them on).
    pub fn decode(data: &'a [u8]) -> Self {
        let (head, rest) = match data.windows(2).position(|w| w == b"\n\n") {
            // No header lines at all: the input starts with the empty line.
            _ if data.first() == Some(&b'\n') => (&[][..], &data[1..]),
            Some(at) => (&data[..at], &data[at + 2..]),
            None => (data, &[][..]),
        };
        let mut headers = HeaderMap::new();
        for line in head.split(|b| *b == b'\n') {
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                continue;
            };
            let name = HeaderName::from_bytes(&line[..colon]);
            let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii());
            if let (Ok(name), Ok(value)) = (name, value) {
                headers.append(name, value);
            }
        }
        let (length, rest) = match rest.split_first_chunk::<4>() {
            Some((length, rest)) => (u32::from_be_bytes(*length) as usize, rest),
            None => (0, rest),
        };
        let (certificate, body) = rest.split_at(length.min(rest.len()));
        Self {
            headers,
            certificate,
            body,
        }
    }

    /// The layout of a delivery, for writing seeds from captured deliveries.
    pub fn encode(headers: &[(&str, &[u8])], certificate: &[u8], body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(&(certificate.len() as u32).to_be_bytes());
        out.extend_from_slice(certificate);
        out.extend_from_slice(body);
        out
    }
}
