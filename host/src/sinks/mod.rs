//! Sinks: where mapped records are written. [`dataverse`] writes opportunities (resolving the
//! lookups the mapping names by value, closing through Win/LoseOpportunity) and the seller's
//! write-backs; [`partner_center`] creates referrals (two-step for co-sell) and patches them.
//! [`configured`] builds the two clients from the configuration. A Dataverse sink's failure
//! is a [`SinkError`]; the engine decides what it means for the event.

pub mod configured;
pub mod dataverse;
mod error;
pub mod partner_center;

pub use error::SinkError;
