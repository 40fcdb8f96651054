//! The Dataverse client: the Web API (`{url}/api/data/v9.2/`) of a Dynamics 365 environment as
//! an application user (client-credentials auth).
//!
//! - [`client`]: [`DataverseClient`], its shared request loop and the row calls (get, query
//!   with `@odata.nextLink` paging, update with `If-Match`, upsert by alternate key).
//! - [`creates`]: creates that name their row (`PATCH` with `If-None-Match: *`), alone or in a
//!   `$batch`, and find out whether they landed when their answer is lost, so a create is never
//!   made twice.
//! - [`batch`]: `$batch` with one atomic change set or independent requests, or independent
//!   items each a request or a change set of its own (the backfill's creates and closes).
//! - [`bulk`]: the bulk messages `CreateMultiple`, `UpdateMultiple` and `UpsertMultiple`
//!   (many rows of one table per request, all or nothing), creates again never made twice.
//! - [`changes`]: change tracking (`Prefer: odata.track-changes`, `@odata.deltaLink`).
//! - [`actions`]: `WinOpportunity`/`LoseOpportunity` (also as a request of a `$batch`) and the
//!   Metadata API (custom columns).
//! - [`limiter`]: adaptive concurrency (AIMD) under the service protection limits.
//! - [`request`]: one call's request and answer, and the typed error of a failed answer.
//! - [`auth`]: the client-credentials token and its cache.
//! - [`error`]: [`DataverseError`], whose messages say what to do.
//!
//! Every request carries `OData-MaxVersion`/`OData-Version: 4.0`, `Accept: application/json`
//! and `x-ms-client-request-id` (new per logical call, the same on each of its retries). 429s
//! wait `Retry-After` and lower the concurrency; 5xx and connection errors back off with jitter;
//! a POST that may have reached the server is not retried unless it is idempotent, and a create
//! whose answer is lost is looked up before it is sent again. The client
//! counts the requests it sends and the 429s it meets ([`Traffic`]). Secrets are
//! held as [`Secret`] and never logged.

pub mod actions;
pub mod auth;
pub mod batch;
pub mod bulk;
pub mod changes;
pub mod client;
pub mod creates;
pub mod error;
pub mod limiter;
pub mod metadata;
pub mod request;

pub use batch::{BatchItem, BatchRequest, BatchResponse};
pub use bulk::{BulkRow, BulkTable};
pub use changes::ChangePage;
pub use client::{DataverseClient, Row, Traffic};
pub use error::DataverseError;

use crate::secret::Secret;
use std::time::Duration;

/// Where the Dataverse environment is and how to authenticate against it.
#[derive(Debug, Clone)]
pub struct DataverseSettings {
    /// The environment root, e.g. `https://contoso.crm.dynamics.com` (the client appends
    /// `/api/data/v9.2`).
    pub url: String,
    /// The OAuth token endpoint, e.g.
    /// `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`.
    pub token_url: String,
    /// The application user's client id.
    pub client_id: String,
    /// The application's secret.
    pub client_secret: Secret,
    /// The token scope; `None` means `{url}/.default`.
    pub scope: Option<String>,
    /// How long one HTTP request may take.
    pub timeout: Duration,
    /// How many times a call is retried after a 429, a 5xx or a connection error.
    pub max_retries: u32,
    /// The most requests in flight at once (Dataverse allows 52 per user); the limiter lowers
    /// it while Dataverse throttles.
    pub max_concurrency: usize,
}

/// Results of this module.
pub type Result<T, E = DataverseError> = std::result::Result<T, E>;
