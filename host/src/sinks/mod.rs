//! Sinks: where mapped records are written, and the only way the engine (`crate::sync`, its
//! backfill included) reaches the services. [`dataverse`] writes opportunities (resolving the
//! lookups the mapping names by value, closing through Win/LoseOpportunity) and the seller's
//! write-backs, and a backfill's many creates at once ([`dataverse::bulk_write`]);
//! [`partner_center`] creates referrals (two-step for co-sell) and patches them. Each
//! re-exports the records it answers ([`dataverse::Row`], [`partner_center::Referral`]).
//! [`configured`] builds the two clients from the configuration. A sink's failure is a
//! [`SinkError`], the clients' errors sorted by what they say; the engine decides what it means
//! for the event.

pub mod configured;
pub mod dataverse;
mod error;
pub mod partner_center;

pub use error::SinkError;
