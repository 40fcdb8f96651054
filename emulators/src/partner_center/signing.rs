//! The key and certificate webhook deliveries are signed with (reference §2.6).
//!
//! Partner Center signs the exact body bytes with RSA-SHA256 (PKCS#1 v1.5) and names the
//! certificate holding the public key in `x-ms-certificate-url`. The emulator generates one
//! 2048-bit RSA key per process (at first use, shared by every emulator in the process, so
//! tests do not pay for key generation each time) and a self-signed X.509 certificate for it
//! made with `rcgen`, whose subject and issuer carry `O=Microsoft Corporation` (the
//! organisation Microsoft's reference receiver checks) and `CN=pcnotifications-dispatch.emulator.local`.
//! It does NOT chain to a Microsoft root: a receiver's chain check must be relaxed for the
//! emulator (e.g. trust this certificate explicitly).
//!
//! Served as DER at [`CERTIFICATE_PATH`] (what `x-ms-certificate-url` names: the path of
//! Microsoft's documented URL, `/cert/pcnotifications-dispatch.microsoft.com.cer`, so a
//! receiver pinning the documented path prefix accepts it) and as PEM at
//! `GET /_emulator/certificate.pem` (a control endpoint, to trust it from).

use base64::Engine;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::EncodePrivateKey;
use rsa::sha2::Sha256;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::{RsaPrivateKey, RsaPublicKey};
use std::sync::OnceLock;

/// Where the certificate is served (DER), as on Microsoft's storage host.
pub const CERTIFICATE_PATH: &str = "/cert/pcnotifications-dispatch.microsoft.com.cer";

/// The signing key and its certificate.
pub struct SigningMaterial {
    key: SigningKey<Sha256>,
    public: RsaPublicKey,
    cert_der: Vec<u8>,
    cert_pem: String,
}

impl SigningMaterial {
    fn generate() -> Self {
        let private =
            RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key generation works");
        let pkcs8 = private
            .to_pkcs8_der()
            .expect("an RSA key encodes as PKCS#8");
        let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &pkcs8.as_bytes().into(),
            &rcgen::PKCS_RSA_SHA256,
        )
        .expect("rcgen takes an RSA PKCS#8 key");
        let mut params = rcgen::CertificateParams::new(vec![
            "pcnotifications-dispatch.emulator.local".to_owned(),
        ])
        .expect("a valid subject alternative name");
        let mut name = rcgen::DistinguishedName::new();
        name.push(
            rcgen::DnType::CommonName,
            "pcnotifications-dispatch.emulator.local",
        );
        name.push(rcgen::DnType::OrganizationName, "Microsoft Corporation");
        params.distinguished_name = name;
        let cert = params.self_signed(&key_pair).expect("self-signing works");
        Self {
            public: private.to_public_key(),
            key: SigningKey::<Sha256>::new(private),
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
        }
    }

    /// The process-wide material, generated on first use.
    pub fn get() -> &'static SigningMaterial {
        static MATERIAL: OnceLock<SigningMaterial> = OnceLock::new();
        MATERIAL.get_or_init(Self::generate)
    }

    /// The base64 RSA-SHA256 PKCS#1 v1.5 signature of `body`.
    pub fn sign_base64(&self, body: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.key.sign(body).to_bytes())
    }

    /// The public key receivers verify with.
    pub fn public_key(&self) -> &RsaPublicKey {
        &self.public
    }

    /// The certificate, DER-encoded.
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The certificate, PEM-encoded.
    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }
}
