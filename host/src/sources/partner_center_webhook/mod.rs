//! Partner Center webhook deliveries: proving that a delivery comes from Partner Center, then
//! storing the event.
//!
//! - [`receiver`]: the `POST /webhooks/partner-center` handler.
//! - [`signature`]: [`signature::SignatureVerifier`] checks the RSA-SHA256 signature of a
//!   delivery's raw body with the certificate named by `x-ms-certificate-url`, and says which
//!   status (400/401) to answer when it does not hold.
//! - [`certificates`]: which certificate URLs may be fetched ([`certificates::CertificatePolicy`]:
//!   https host allow-list, pinned certificates), how a fetched certificate is judged, and the
//!   per-URL cache ([`certificates::CertificateStore`]).

pub mod certificates;
pub mod receiver;
pub mod signature;
