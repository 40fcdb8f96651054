//! Connections to the outside services `cosell` keeps in sync.
//!
//! Each client owns its authentication (tokens cached and refreshed before expiry), sends the
//! service's tracing headers, puts a timeout on every call and retries what is worth retrying
//! (429 after `Retry-After`, 5xx and connection errors with exponential backoff and jitter).
//!
//! - [`partner_center`]: the Partner Center Referrals API with delegated (App+User) auth.

pub mod partner_center;
