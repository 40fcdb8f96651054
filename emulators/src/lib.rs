//! Local emulators of the two Microsoft services cosell talks to, faithful to their documented
//! behaviour, so the whole product runs, is tested and is benchmarked on one machine:
//!
//! - [`partner_center`]: the Partner Center Referrals API (`/v1.0/engagements/referrals`), the
//!   Webhooks API (`/webhooks/v1/...`) with signed event deliveries, its OAuth token endpoint,
//!   and the "Microsoft side" operations tests use to act as a Microsoft seller.
//! - [`dataverse`]: the Dataverse Web API (`/api/data/v9.2/`), its Metadata API for custom
//!   columns, `$batch`, change tracking, service protection limits and webhooks.
//! - [`common`]: what both share: the emulated clock, fault injection, bearer tokens, the
//!   server harness and the control endpoints under `/_emulator/`.
//!
//! The facts each behaviour is built from are in `../shared/reference/partner-center-and-dataverse-apis.md`
//! (beside this repository); where the public facts stop, each module says what it chose.

pub mod common;
pub mod dataverse;
pub mod partner_center;
