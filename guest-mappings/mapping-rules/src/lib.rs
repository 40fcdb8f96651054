//! The default field mapping between a Partner Center referral and a Dataverse opportunity.
//!
//! This is a plain Rust library so the same logic runs natively (tests, benchmarks) and inside
//! the default WebAssembly components in `guest-mappings/components`, which only wrap it.
//! Documents go in and come out as JSON text, exactly as they cross the component boundary.
//!
//! The mapping is pure: no clock, no randomness, no I/O. The same context, input, `current`
//! document and configuration always give the same output bytes. Every mapped field, every
//! configuration key and every choice made where the public documentation stops is listed in
//! `docs/mapping.md`.
//!
//! Module map (one responsibility each):
//! - [`keys`]: the configuration keys and their defaults; `settings` resolves them.
//! - `json`: reading and writing fields of untyped JSON documents, with field-naming errors.
//! - `read`: typed views that borrow from the JSON text (only the members read are parsed).
//! - `referral`: the typed view of the referral the referral → opportunity mapping reads.
//! - `values`: money, currency, date, country and name normalisation.
//! - `status`: referral status/substatus ↔ opportunity statecode/statuscode.
//! - `assistance`: "How can Microsoft help?" ↔ `inviteContext.assistanceRequestCode`.
//! - `customer`: customer profile ↔ account and contacts.
//! - `audit`: the audit trail line written to the opportunity.
//! - `to_opportunity` and `to_referral`: the two directions.

#![warn(missing_docs)]

use std::collections::BTreeMap;

mod assistance;
mod audit;
mod customer;
mod json;
pub mod keys;
mod read;
mod referral;
mod settings;
mod status;
mod to_opportunity;
mod to_referral;
mod values;

/// Which way a record is travelling (mirrors `cosell:mapping/types.direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A Partner Center referral on its way to the CRM.
    PartnerCenterToCrm,
    /// A CRM opportunity on its way to Partner Center.
    CrmToPartnerCenter,
}

/// What the host tells a step about the call (mirrors `cosell:mapping/types.context`).
#[derive(Debug, Clone)]
pub struct Context {
    /// The sync direction of the pipeline (informational; each function knows its direction).
    pub direction: Direction,
    /// The triggering event, e.g. `referral-created`; written into the audit trail.
    pub event: String,
    /// The tenant the record belongs to (not used by the default mapping).
    pub tenant: String,
    /// The configured step name (not used by the default mapping).
    pub mapping_name: String,
    /// The deployed component's content hash; written into the audit trail.
    pub mapping_version: String,
    /// RFC 3339 UTC time chosen by the host; the mapping never reads a clock.
    pub timestamp: String,
}

/// Why no output was produced (mirrors `cosell:mapping/types.mapping-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingError {
    /// The record is bad (malformed JSON, missing or invalid required data); retrying won't help.
    Reject(String),
    /// The record is deliberately not synced (e.g. Sync with Partner Center is not Yes).
    Skip(String),
    /// Something the operator can fix went wrong (invalid configuration); retry later.
    Fail(String),
}

/// Read-only operator configuration of the step (mirrors the `config` import).
pub trait Config {
    /// The value of `key`, if the operator set it.
    fn get(&self, key: &str) -> Option<String>;
}

/// A plain map is a configuration (handy for tests and native callers).
impl Config for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        BTreeMap::get(self, key).cloned()
    }
}

/// Partner Center referral (JSON) → Dataverse opportunity (JSON).
///
/// `current_opportunity` is the opportunity as it exists now, when there is one. The output is
/// the set of opportunity columns to write (nested objects are expanded lookups the host
/// resolves, see `docs/mapping.md`); columns the referral does not carry are left out, so
/// values already in the CRM are never clobbered.
pub fn referral_to_opportunity(
    ctx: &Context,
    referral: &str,
    current_opportunity: Option<&str>,
    config: &dyn Config,
) -> Result<String, MappingError> {
    to_opportunity::map(ctx, referral, current_opportunity, config)
}

/// Dataverse opportunity (JSON) → Partner Center referral (JSON).
///
/// `current_referral` is the referral as it exists now, when there is one: its fields (id,
/// eTag, …) are kept and only the fields the opportunity owns are set.
pub fn opportunity_to_referral(
    ctx: &Context,
    opportunity: &str,
    current_referral: Option<&str>,
    config: &dyn Config,
) -> Result<String, MappingError> {
    to_referral::map(ctx, opportunity, current_referral, config)
}
