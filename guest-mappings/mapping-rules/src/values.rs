//! Normalisation of the scalar values both sides share: money, currency, dates, countries,
//! names and solution-id lists.
//!
//! Each check takes the field's description as a closure: it is only worded when the value is
//! rejected, not on every record.

use serde_json::{Number, Value};

use crate::MappingError;

/// A non-negative deal value from a JSON number or a numeric string (Partner Center's PATCH
/// samples send `"10000"`). Whole amounts come out as integers so `50000` stays `50000`.
pub fn amount(value: &Value, field: impl Fn() -> String) -> Result<Number, MappingError> {
    let parsed = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let reject = |why: &str| MappingError::Reject(format!("{} {why}, found {value}", field()));
    let x = parsed
        .filter(|x| x.is_finite())
        .ok_or_else(|| reject("must be a number"))?;
    if x < 0.0 {
        return Err(reject("must not be negative"));
    }
    if x.fract() == 0.0 && x < 9_007_199_254_740_992.0 {
        Ok(Number::from(x as u64))
    } else {
        Number::from_f64(x).ok_or_else(|| reject("must be a number"))
    }
}

/// An ISO 4217 code (three letters), upper-cased.
pub fn currency(code: &str, field: impl Fn() -> String) -> Result<String, MappingError> {
    let code = code.trim();
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(code.to_ascii_uppercase())
    } else {
        Err(MappingError::Reject(format!(
            "{} must be a three-letter ISO 4217 currency code, found \"{code}\"",
            field()
        )))
    }
}

/// An ISO 3166-1 alpha-2 country code, upper-cased.
pub fn country(code: &str, field: impl Fn() -> String) -> Result<String, MappingError> {
    let code = code.trim();
    if code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(code.to_ascii_uppercase())
    } else {
        Err(MappingError::Reject(format!(
            "{} must be a two-letter ISO 3166-1 alpha-2 country code, found \"{code}\"",
            field()
        )))
    }
}

/// The `YYYY-MM-DD` date of a date (`2026-12-15`) or date-time (`2026-12-15T00:00:00Z`) string,
/// as written (no time-zone conversion).
pub fn date(text: &str, field: impl Fn() -> String) -> Result<String, MappingError> {
    let text = text.trim();
    let valid = text.len() >= 10
        && text.is_char_boundary(10)
        && (text.len() == 10 || text[10..].starts_with('T'))
        && valid_date(&text[..10]);
    if valid {
        Ok(text[..10].to_owned())
    } else {
        Err(MappingError::Reject(format!(
            "{} must be a date (YYYY-MM-DD or an RFC 3339 date-time), found \"{text}\"",
            field()
        )))
    }
}

fn valid_date(d: &str) -> bool {
    let b = d.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10)) {
        return false;
    }
    let year: u32 = d[0..4].parse().unwrap_or(0);
    let month: u32 = d[5..7].parse().unwrap_or(0);
    let day: u32 = d[8..10].parse().unwrap_or(0);
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// The opportunity name without the ✔/✖ sync mark the Microsoft connector can append.
pub fn strip_sync_mark(name: &str) -> &str {
    name.trim()
        .trim_end_matches(['✔', '✖', '✓', '✗'])
        .trim_end()
}

/// Solution ids from the Products column: separated by commas, semicolons or line breaks.
pub fn split_ids(text: &str) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for id in text.split([',', ';', '\n', '\r']).map(str::trim) {
        if !id.is_empty() && !ids.iter().any(|x| x == id) {
            ids.push(id.to_owned());
        }
    }
    ids
}

/// Whether `text` is a GUID in Dataverse's form (`8-4-4-4-12` hex digits).
pub fn is_guid(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}
