//! What cosell needs in each service before it can sync, made by the setup commands and by
//! `cosell sandbox` alike: the webhook registrations of both services ([`partner_center`],
//! [`dataverse`]) and cosell's columns in Dataverse; [`update_columns`] is which columns the
//! Dataverse Update step filters on.

pub mod dataverse;
pub mod partner_center;
pub mod update_columns;

pub use dataverse::{
    ENDPOINT_NAME, KeyAndTracking, Provisioned, column_definitions, find_one, key_and_tracking,
    missing_columns, provision, publisher_prefix, register_dataverse_webhook,
};
pub use partner_center::{
    PARTNER_CENTER_EVENTS, RegistrationOutcome, register_partner_center_webhooks,
};
