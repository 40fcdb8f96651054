//! Sinks: where mapped records are written. [`dataverse`] writes opportunities (resolving the
//! lookups the mapping names by value, closing through Win/LoseOpportunity) and the seller's
//! write-backs; [`partner_center`] creates referrals (two-step for co-sell) and patches them.

pub mod dataverse;
pub mod partner_center;
