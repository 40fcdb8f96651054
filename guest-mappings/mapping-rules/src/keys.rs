//! The configuration keys the default mapping reads, with their defaults.
//!
//! Every key is optional. A value that cannot be used (not an integer, a bad column name, …)
//! makes the mapping return `MappingError::Fail` naming the key, so the operator can fix the
//! configuration and the host can retry. `docs/mapping.md` documents each key in context.

/// Publisher prefix of the custom opportunity columns. Default [`DEFAULT_COLUMN_PREFIX`].
pub const COLUMN_PREFIX: &str = "column-prefix";
/// Default publisher prefix of the custom columns.
pub const DEFAULT_COLUMN_PREFIX: &str = "cosell_";

/// Full logical name of "Sync with Partner Center". Default `<prefix>syncwithpartnercenter`.
pub const COLUMN_SYNC: &str = "column.sync";
/// Full logical name of "Referral Identifier". Default `<prefix>referralidentifier`.
pub const COLUMN_REFERRAL_IDENTIFIER: &str = "column.referral-identifier";
/// Full logical name of "Referral Link". Default `<prefix>referrallink`.
pub const COLUMN_REFERRAL_LINK: &str = "column.referral-link";
/// Full logical name of "How can Microsoft help?". Default `<prefix>howcanmicrosofthelp`.
pub const COLUMN_HELP: &str = "column.help";
/// Full logical name of "Products" (solution ids). Default `<prefix>products`.
pub const COLUMN_PRODUCTS: &str = "column.products";
/// Full logical name of "Audit". Default `<prefix>audit`.
pub const COLUMN_AUDIT: &str = "column.audit";
/// Opportunity column holding the deal value (the connector's "Deal value" variable).
/// Default `estimatedvalue`.
pub const COLUMN_DEAL_VALUE: &str = "column.deal-value";
/// Account column holding the ISO 3166-1 alpha-2 country (the connector's "Customer Account
/// Country Code" variable). Default `address1_country`.
pub const COLUMN_COUNTRY: &str = "column.country";

/// JSON value of the Sync column that means Yes. Default `true` (a Yes/No column); set e.g.
/// `100000000` for a choice column. A value that is not JSON is taken as a string.
pub const SYNC_YES_VALUE: &str = "sync-yes-value";

/// Prefix of the keys giving the option value of each "How can Microsoft help?" choice:
/// `help-option.<assistanceRequestCode>`, e.g. `help-option.ProofOfConceptOrDemo`.
pub const HELP_OPTION_PREFIX: &str = "help-option.";

/// `statuscode` of an open opportunity whose referral waits to be accepted. Default `2` (On Hold).
pub const STATUSCODE_PENDING: &str = "statuscode.pending";
/// `statuscode` of an open opportunity whose referral is accepted. Default `1` (In Progress).
pub const STATUSCODE_ACCEPTED: &str = "statuscode.accepted";
/// `statuscode` of a won opportunity. Default `3` (Won).
pub const STATUSCODE_WON: &str = "statuscode.won";
/// `statuscode` of an opportunity whose referral was lost. Default `5` (Out-Sold).
pub const STATUSCODE_LOST: &str = "statuscode.lost";
/// `statuscode` of an opportunity whose referral was declined. Default `4` (Canceled).
pub const STATUSCODE_DECLINED: &str = "statuscode.declined";
/// `statuscode` of an opportunity whose referral expired. Default `4` (Canceled).
pub const STATUSCODE_EXPIRED: &str = "statuscode.expired";

/// Template of the Referral Link; `{id}` is replaced by the referral id.
/// Default [`DEFAULT_REFERRAL_LINK_TEMPLATE`].
pub const REFERRAL_LINK_TEMPLATE: &str = "referral-link-template";
/// Default Referral Link template (the per-referral path is an assumption, see docs).
pub const DEFAULT_REFERRAL_LINK_TEMPLATE: &str =
    "https://partner.microsoft.com/dashboard/referrals/v2/opportunities/{id}/details";

/// How many lines the Audit column keeps (oldest dropped first). Default `20`.
pub const AUDIT_MAX_LINES: &str = "audit-max-lines";

/// ISO 4217 currency used for a new referral when the opportunity carries none. No default:
/// without it such an opportunity is rejected.
pub const DEFAULT_CURRENCY: &str = "default-currency";
