//! Resolves the operator's configuration (see [`crate::keys`]) into typed settings.

use serde_json::Value;

use crate::assistance::CODES;
use crate::keys;
use crate::{Config, MappingError};

/// Logical names of the opportunity (and account) columns the mapping writes or reads.
#[derive(Debug, Clone)]
pub struct Columns {
    /// Sync with Partner Center.
    pub sync: String,
    /// Referral Identifier.
    pub referral_identifier: String,
    /// Referral Link.
    pub referral_link: String,
    /// How can Microsoft help?
    pub help: String,
    /// Products (solution ids).
    pub products: String,
    /// Audit.
    pub audit: String,
    /// Deal value (Money).
    pub deal_value: String,
    /// Account column with the two-letter country code.
    pub country: String,
}

/// Opportunity `statuscode` values per stage.
#[derive(Debug, Clone)]
pub struct StatusCodes {
    /// Open, referral waiting to be accepted.
    pub pending: i64,
    /// Open, referral accepted.
    pub accepted: i64,
    /// Won.
    pub won: i64,
    /// Lost.
    pub lost: i64,
    /// Declined.
    pub declined: i64,
    /// Expired.
    pub expired: i64,
}

/// Everything the mapping takes from configuration, with defaults applied.
pub struct Settings<'a> {
    config: &'a dyn Config,
    /// Column names.
    pub cols: Columns,
    /// The Sync column's Yes value.
    pub sync_yes: Value,
    /// Option value of each documented assistance code.
    pub help_options: Vec<(&'static str, i64)>,
    /// Status codes.
    pub status: StatusCodes,
    /// Referral Link template containing `{id}`.
    pub link_template: String,
    /// Lines kept in the Audit column.
    pub audit_max_lines: usize,
    /// Currency for opportunities that carry none.
    pub default_currency: Option<String>,
}

impl<'a> Settings<'a> {
    /// Reads and validates every key; an unusable value is a `Fail` naming the key.
    pub fn load(config: &'a dyn Config) -> Result<Self, MappingError> {
        let get = |key: &str| config.get(key).map(|v| v.trim().to_owned());
        let prefix = get(keys::COLUMN_PREFIX).unwrap_or_else(|| keys::DEFAULT_COLUMN_PREFIX.into());
        check_name(keys::COLUMN_PREFIX, &prefix)?;
        let column = |key: &str, default: String| -> Result<String, MappingError> {
            let name = get(key).unwrap_or(default);
            check_name(key, &name)?;
            Ok(name)
        };
        let cols = Columns {
            sync: column(keys::COLUMN_SYNC, format!("{prefix}syncwithpartnercenter"))?,
            referral_identifier: column(
                keys::COLUMN_REFERRAL_IDENTIFIER,
                format!("{prefix}referralidentifier"),
            )?,
            referral_link: column(keys::COLUMN_REFERRAL_LINK, format!("{prefix}referrallink"))?,
            help: column(keys::COLUMN_HELP, format!("{prefix}howcanmicrosofthelp"))?,
            products: column(keys::COLUMN_PRODUCTS, format!("{prefix}products"))?,
            audit: column(keys::COLUMN_AUDIT, format!("{prefix}audit"))?,
            deal_value: column(keys::COLUMN_DEAL_VALUE, "estimatedvalue".into())?,
            country: column(keys::COLUMN_COUNTRY, "address1_country".into())?,
        };
        let sync_yes = match get(keys::SYNC_YES_VALUE) {
            None => Value::Bool(true),
            Some(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        };
        let mut help_options = Vec::with_capacity(CODES.len());
        for (code, default) in CODES {
            let key = format!("{}{code}", keys::HELP_OPTION_PREFIX);
            let value = integer(&key, get(&key))?.unwrap_or(default);
            if let Some((other, _)) = help_options.iter().find(|(_, v)| *v == value) {
                return Err(MappingError::Fail(format!(
                    "configuration: \"{key}\" and \"{}{other}\" have the same value {value}",
                    keys::HELP_OPTION_PREFIX
                )));
            }
            help_options.push((code, value));
        }
        let code = |key: &str, default: i64| Ok(integer(key, get(key))?.unwrap_or(default));
        let status = StatusCodes {
            pending: code(keys::STATUSCODE_PENDING, 2)?,
            accepted: code(keys::STATUSCODE_ACCEPTED, 1)?,
            won: code(keys::STATUSCODE_WON, 3)?,
            lost: code(keys::STATUSCODE_LOST, 5)?,
            declined: code(keys::STATUSCODE_DECLINED, 4)?,
            expired: code(keys::STATUSCODE_EXPIRED, 4)?,
        };
        if status.pending == status.accepted {
            return Err(MappingError::Fail(format!(
                "configuration: \"{}\" and \"{}\" must differ",
                keys::STATUSCODE_PENDING,
                keys::STATUSCODE_ACCEPTED
            )));
        }
        let link_template = get(keys::REFERRAL_LINK_TEMPLATE)
            .unwrap_or_else(|| keys::DEFAULT_REFERRAL_LINK_TEMPLATE.into());
        if !link_template.contains("{id}") {
            return Err(MappingError::Fail(format!(
                "configuration: \"{}\" must contain {{id}}",
                keys::REFERRAL_LINK_TEMPLATE
            )));
        }
        let audit_max_lines = match integer(keys::AUDIT_MAX_LINES, get(keys::AUDIT_MAX_LINES))? {
            None => 20,
            Some(n) if n >= 1 => n as usize,
            Some(n) => {
                return Err(MappingError::Fail(format!(
                    "configuration: \"{}\" must be at least 1, not {n}",
                    keys::AUDIT_MAX_LINES
                )));
            }
        };
        let default_currency = match get(keys::DEFAULT_CURRENCY) {
            None => None,
            Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {
                Some(c.to_ascii_uppercase())
            }
            Some(c) => {
                return Err(MappingError::Fail(format!(
                    "configuration: \"{}\" must be an ISO 4217 code, not \"{c}\"",
                    keys::DEFAULT_CURRENCY
                )));
            }
        };
        Ok(Settings {
            config,
            cols,
            sync_yes,
            help_options,
            status,
            link_template,
            audit_max_lines,
            default_currency,
        })
    }

    /// The option value configured for an assistance code outside the documented six.
    pub fn extra_help_option(&self, code: &str) -> Result<Option<i64>, MappingError> {
        let key = format!("{}{code}", keys::HELP_OPTION_PREFIX);
        integer(&key, self.config.get(&key).map(|v| v.trim().to_owned()))
    }

    /// Whether a Sync column value means Yes.
    pub fn is_sync_yes(&self, value: &Value) -> bool {
        crate::json::same(value, &self.sync_yes)
    }
}

fn integer(key: &str, value: Option<String>) -> Result<Option<i64>, MappingError> {
    match value {
        None => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            MappingError::Fail(format!(
                "configuration: \"{key}\" must be an integer, not \"{text}\""
            ))
        }),
    }
}

fn check_name(key: &str, name: &str) -> Result<(), MappingError> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(())
    } else {
        Err(MappingError::Fail(format!(
            "configuration: \"{key}\" must be a logical name (letters, digits, _), not \"{name}\""
        )))
    }
}
