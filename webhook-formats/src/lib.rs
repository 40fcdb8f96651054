//! What cosell's webhook listener reads out of a delivery, and nothing else: no network, no
//! async runtime, no store, no WebAssembly. The `cosell` host calls these functions from its
//! handlers (`host/src/sources/`) and re-exports them; the fuzz targets in `fuzz/` call the
//! very same functions.
//!
//! Why a crate of its own: a cargo-fuzz build compiles every dependency with coverage
//! instrumentation. Reached through `cosell`, that would be wasmtime and cranelift (10+ minutes
//! on two cores, every CI run); reached here, it is serde_json, rsa, x509-cert and url (about a
//! minute). Keeping the parsing pure also keeps every decision about hostile bytes in one place
//! that can be fed millions of inputs.
//!
//! - [`ids`]: what a record id may look like (no path or query tricks).
//! - [`content_type`]: which `Content-Type` headers a JSON delivery may carry.
//! - [`partner_center`]: a Partner Center Webhooks API event → the referral it names.
//! - [`dataverse`]: a Dataverse `RemoteExecutionContext` → the opportunity it names.
//! - [`signature`]: the signature headers of a Partner Center delivery and the RSA-SHA256
//!   check of the raw body; [`signature::RejectedDelivery`] carries the 400/401 to answer.
//! - [`certificate`]: which certificate URLs may be fetched and whether a downloaded
//!   certificate is trusted ([`certificate::CertificatePolicy`]).
//! - [`fuzzing`]: the input layouts of the fuzz targets, shared with the regression tests
//!   that replay saved inputs in `make test`.

pub mod certificate;
pub mod content_type;
pub mod dataverse;
pub mod fuzzing;
pub mod ids;
pub mod partner_center;
pub mod signature;
