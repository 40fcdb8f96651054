//! Unit tests of the certificate policy: URL checks (no network), certificate judgement, file
//! loading and the cache bound. Downloads and caching over HTTP are in
//! `tests/partner_center_webhook_signature.rs`.

use super::*;
use cosell_emulators::partner_center::signing::SigningMaterial;

fn policy(hosts: &[&str], allow_http: bool) -> CertificatePolicy {
    CertificatePolicy {
        allowed_hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        allow_http,
        ..CertificatePolicy::default()
    }
}

/// A self-signed ECDSA certificate with organisation `org` (issuer = subject), valid in
/// `years` (rcgen's default validity when None).
fn self_signed(org: &str, years: Option<(i32, i32)>) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["cert.example".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, org);
    if let Some((from, until)) = years {
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(until, 1, 1);
    }
    params.self_signed(&key).unwrap().der().to_vec()
}

#[test]
fn urls_are_checked_before_any_fetch() {
    let prod = CertificatePolicy::default();
    let good = "https://3psostorageacct.blob.core.windows.net/cert/pcnotifications-dispatch.microsoft.com.cer";
    assert!(check_url(&prod, good).is_ok());
    assert!(
        check_url(&prod, &good.replace("3pso", "3PSO")).is_ok(),
        "host case"
    );
    for bad in [
        "http://3psostorageacct.blob.core.windows.net/cert/a.cer",
        "https://evil.example/cert/a.cer",
        "https://3psostorageacct.blob.core.windows.net.evil.example/a.cer",
        "https://user:pw@3psostorageacct.blob.core.windows.net/cert/a.cer",
        "https://3psostorageacct.blob.core.windows.net/cert/a.cer?x=1",
        "https://3psostorageacct.blob.core.windows.net/cert/a.cer#f",
        "https://3psostorageacct.blob.core.windows.net/other/a.cer",
        "https://3psostorageacct.blob.core.windows.net/cert/../other/a.cer",
        "https://3psostorageacct.blob.core.windows.net/cert/%2e%2e/other/a.cer",
        "https://3psostorageacct.blob.core.windows.net/certs/a.cer",
        "https://3psostorageacct.blob.core.windows.net/cert/",
        "https://3psostorageacct.blob.core.windows.net/a.cer",
        "ftp://3psostorageacct.blob.core.windows.net/cert/a.cer",
        "file:///etc/passwd",
        "not a url",
    ] {
        let err = check_url(&prod, bad).expect_err(bad);
        assert!(
            matches!(err, CertificateError::UrlRefused(_)),
            "{bad}: {err}"
        );
    }
    let nobody = policy(&[], true);
    assert!(
        check_url(
            &nobody,
            "https://3psostorageacct.blob.core.windows.net/cert/a"
        )
        .is_err()
    );
    let sandbox = policy(&["127.0.0.1", "[::1]"], true);
    assert!(check_url(&sandbox, "http://127.0.0.1:8080/cert/c.cer").is_ok());
    assert!(check_url(&sandbox, "http://[::1]:8080/cert/c.cer").is_ok());
    assert!(check_url(&sandbox, "http://localhost:8080/cert/c.cer").is_err());
    assert!(check_url(&sandbox, "http://127.0.0.1:8080/_emulator/c.cer").is_err());
    let elsewhere = CertificatePolicy {
        path_prefix: "/keys/".into(),
        ..sandbox
    };
    assert!(check_url(&elsewhere, "http://127.0.0.1:8080/keys/c.cer").is_ok());
    assert!(check_url(&elsewhere, "http://127.0.0.1:8080/cert/c.cer").is_err());
}

#[test]
fn the_emulator_certificate_passes_the_issuer_check_and_when_pinned() {
    let material = SigningMaterial::get();
    let open = policy(&[], false);
    let accepted = accept(&open, material.certificate_der(), SystemTime::now()).unwrap();
    assert_eq!(&accepted.key, material.public_key());
    assert!(
        accepted.not_after.is_some(),
        "checked, so its expiry counts"
    );
    let from_pem = accept(
        &open,
        material.certificate_pem().as_bytes(),
        SystemTime::now(),
    );
    assert_eq!(
        &from_pem.unwrap().key,
        material.public_key(),
        "PEM works too"
    );
    let pinned = CertificatePolicy {
        pinned: vec![material.certificate_der().to_vec()],
        ..open
    };
    let accepted = accept(
        &pinned,
        material.certificate_pem().as_bytes(),
        SystemTime::now(),
    );
    assert!(
        accepted.unwrap().not_after.is_none(),
        "pinned: trusted as is"
    );
}

#[test]
fn foreign_issuers_expired_certificates_and_non_rsa_keys_are_refused() {
    let open = policy(&[], false);
    let now = SystemTime::now();
    let contoso = self_signed("Contoso Ltd", None);
    let err = accept(&open, &contoso, now).expect_err("not Microsoft");
    assert!(err.to_string().contains("issuer"), "{err}");
    // Only an exact organisation attribute counts, not a substring of another one.
    let lookalike = self_signed("Microsoft Corporation Ltd", None);
    assert!(accept(&open, &lookalike, now).is_err());
    let expired = self_signed("Microsoft Corporation", Some((2000, 2001)));
    let err = accept(&open, &expired, now).expect_err("expired");
    assert!(err.to_string().contains("validity"), "{err}");
    let future = self_signed("Microsoft Corporation", Some((2200, 2201)));
    assert!(accept(&open, &future, now).is_err(), "not yet valid");
    // Issuer and dates fine, but an ECDSA key cannot verify an RSA signature.
    let ecdsa = self_signed("Microsoft Corporation", None);
    let err = accept(&open, &ecdsa, now).expect_err("not RSA");
    assert!(err.to_string().contains("RSA"), "{err}");
    // Pinning trusts a foreign issuer, and the key is then what makes it unusable.
    let pinned = CertificatePolicy {
        pinned: vec![contoso.clone()],
        ..open
    };
    let err = accept(&pinned, &contoso, now).expect_err("still ECDSA");
    assert!(err.to_string().contains("RSA"), "{err}");
    assert!(accept(&pinned, b"garbage", now).is_err());
}

#[test]
fn certificate_files_load_from_pem_and_der_and_garbage_is_an_error() {
    let material = SigningMaterial::get();
    let dir = tempfile::tempdir().unwrap();
    let (pem, der, bad) = (
        dir.path().join("c.pem"),
        dir.path().join("c.cer"),
        dir.path().join("x"),
    );
    std::fs::write(&pem, material.certificate_pem()).unwrap();
    std::fs::write(&der, material.certificate_der()).unwrap();
    std::fs::write(&bad, "hello").unwrap();
    assert_eq!(
        load_certificate_file(&pem).unwrap(),
        material.certificate_der()
    );
    assert_eq!(
        load_certificate_file(&der).unwrap(),
        material.certificate_der()
    );
    assert!(load_certificate_file(&bad).is_err());
    assert!(load_certificate_file(&dir.path().join("missing")).is_err());
}

#[test]
fn pinned_certificates_must_be_der_and_the_cache_stays_bounded() {
    let bad = CertificatePolicy {
        pinned: vec![b"not a certificate".to_vec()],
        ..CertificatePolicy::default()
    };
    assert!(CertificateStore::new(bad).is_err());
    let store = CertificateStore::new(CertificatePolicy::default()).unwrap();
    for i in 0..3 * MAX_CACHED_URLS {
        store.slot(&format!("https://h/{i}.cer")).unwrap();
    }
    let kept = store.slots.lock().unwrap().len();
    assert!(kept <= MAX_CACHED_URLS, "{kept} slots");
    let a = store.slot("https://h/again.cer").unwrap();
    assert!(
        Arc::ptr_eq(&a, &store.slot("https://h/again.cer").unwrap()),
        "one slot per URL"
    );
}

#[test]
fn a_certificate_in_use_is_never_evicted_for_a_new_url() {
    let store = CertificateStore::new(CertificatePolicy::default()).unwrap();
    let key = Arc::new(SignatureKey::new(SigningMaterial::get().public_key()));
    let good = |ttl: Duration| {
        Entry::Good(Cached {
            key: key.clone(),
            good_until: Instant::now() + ttl,
        })
    };
    let genuine = store.slot("https://h/genuine.cer").unwrap();
    *genuine.try_lock().unwrap() = good(Duration::from_secs(3600));
    // Fill the rest with certificates past their TTL: they may go, the genuine one may not.
    for i in 1..MAX_CACHED_URLS {
        *store
            .slot(&format!("https://h/old-{i}.cer"))
            .unwrap()
            .try_lock()
            .unwrap() = good(Duration::ZERO);
    }
    for i in 0..10 * MAX_CACHED_URLS {
        let _ = store.slot(&format!("https://h/forged-{i}.cer"));
    }
    let again = store.slot("https://h/genuine.cer").unwrap();
    assert!(
        Arc::ptr_eq(&genuine, &again),
        "the genuine certificate stayed"
    );
    // A cache full of certificates within their TTL refuses a new URL rather than evict one.
    for i in 1..MAX_CACHED_URLS {
        let _ = store.slot(&format!("https://h/fresh-{i}.cer")).map(|s| {
            *s.try_lock().unwrap() = good(Duration::from_secs(3600));
        });
    }
    let err = store.slot("https://h/one-more.cer").err().expect("refused");
    assert!(matches!(err, CertificateError::Throttled(_)), "{err}");
    assert!(Arc::ptr_eq(
        &genuine,
        &store.slot("https://h/genuine.cer").unwrap()
    ));
}

#[test]
fn the_new_url_budget_refills_slowly() {
    let mut budget = NewUrlBudget::full();
    let start = budget.refilled_at;
    let taken = (0..100).filter(|_| budget.take(start)).count();
    assert_eq!(taken, NEW_URL_BURST as usize);
    assert!(
        budget.take(start + NEW_URL_REFILL),
        "one more after the refill time"
    );
    assert!(!budget.take(start + NEW_URL_REFILL));
}

/// A 1024-bit RSA public key (PKCS#1 DER), for a certificate rcgen signs with another key.
struct SmallRsaKey(Vec<u8>);

impl rcgen::PublicKeyData for SmallRsaKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &rcgen::SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

#[test]
fn rsa_keys_under_2048_bits_are_refused_even_when_pinned() {
    use rsa::pkcs1::EncodeRsaPublicKey as _;
    let small = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
    let pkcs1 = small.to_public_key().to_pkcs1_der().unwrap().into_vec();
    let issuer_key = rcgen::KeyPair::generate().unwrap();
    let issuer = rcgen::CertificateParams::new(vec!["issuer.example".to_owned()])
        .unwrap()
        .self_signed(&issuer_key)
        .unwrap();
    let der = rcgen::CertificateParams::new(vec!["cert.example".to_owned()])
        .unwrap()
        .signed_by(&SmallRsaKey(pkcs1), &issuer, &issuer_key)
        .unwrap()
        .der()
        .to_vec();
    let pinned = CertificatePolicy {
        pinned: vec![der.clone()],
        ..policy(&[], false)
    };
    let err = accept(&pinned, &der, SystemTime::now()).expect_err("1024 bits");
    assert!(err.to_string().contains("at least 2048"), "{err}");
}
