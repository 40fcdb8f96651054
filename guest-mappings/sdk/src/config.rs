//! The operator's configuration of this step (the `config` import): string keys and values,
//! set per step in the host's configuration, read-only during a call.

use crate::MappingError;
use std::str::FromStr;

/// The value of `key`, if the operator set it.
pub fn get(key: &str) -> Option<String> {
    crate::bindings::cosell::mapping::config::get(key)
}

/// Every key the operator set, sorted.
pub fn keys() -> Vec<String> {
    crate::bindings::cosell::mapping::config::keys()
}

/// The value of `key`, or `default` when the operator did not set it.
pub fn get_or(key: &str, default: &str) -> String {
    get(key).unwrap_or_else(|| default.to_owned())
}

/// The value of `key` parsed as a `T` (a number, a bool...), `Ok(None)` when it is not set.
///
/// A value that does not parse is the operator's mistake, not the record's: it is a
/// [`MappingError::Fail`] (the host retries once the configuration is fixed) naming the key
/// and the value.
pub fn parse<T>(key: &str) -> Result<Option<T>, MappingError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    get(key).map(|value| parse_value(key, &value)).transpose()
}

/// Parses one configuration value (the pure half of [`parse`]).
pub(crate) fn parse_value<T>(key: &str, value: &str) -> Result<T, MappingError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    value.trim().parse().map_err(|error| {
        MappingError::Fail(format!(
            "config key '{key}' is '{value}', which is not a valid {}: {error}; fix the step's config",
            short_type_name::<T>()
        ))
    })
}

/// `u32` rather than `core::primitive::u32`, `Opportunity` rather than its module path.
pub(crate) fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_that_does_not_parse_names_the_key_and_fails_the_call() {
        assert!(matches!(parse_value::<u32>("max", " 12 "), Ok(12)));
        let Err(MappingError::Fail(message)) = parse_value::<u32>("max", "twelve") else {
            panic!("expected a Fail");
        };
        assert!(
            message.starts_with("config key 'max' is 'twelve', which is not a valid u32"),
            "{message}"
        );
    }
}
