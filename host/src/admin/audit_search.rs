//! The audit trail's search filters as an operator writes them (query parameters of the admin
//! API, the console's search form, `cosell audit` flags), checked and turned into the store's
//! [`AuditQuery`].
//!
//! Times may be written as RFC 3339 (`2026-12-06T10:00:00Z`), as a date (`2026-12-06`,
//! midnight UTC), as a browser's local date-time field sends it (`2026-12-06T10:00`, taken as
//! UTC) or as an age (`30m`, `2h`, `7d`: that long before now).

use crate::store::{AUDIT_OUTCOMES, AuditQuery};
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde::Deserialize;

/// How many entries a page holds unless asked otherwise, and at most.
pub const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 10_000;

/// The filters of an audit search. Empty strings count as absent, as a submitted form sends
/// its empty fields.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditFilters {
    /// `referral:<id>`, `opportunity:<id>` or a bare id (either).
    pub record: Option<String>,
    /// One of the trail's outcomes.
    pub outcome: Option<String>,
    /// Entries at or after this time.
    pub since: Option<String>,
    /// Entries before this time.
    pub until: Option<String>,
    /// Only conflicts (fields both sides changed, and who won).
    #[serde(default, deserialize_with = "checkbox")]
    pub conflicts: bool,
    /// Entries per page.
    pub limit: Option<usize>,
    /// The page after the one that answered this `next`.
    pub before: Option<i64>,
}

/// A form's checkbox sends `on`; an API caller writes `true`; both mean yes.
fn checkbox<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    match text.as_deref().map(str::trim) {
        None | Some("") | Some("false") | Some("0") | Some("off") => Ok(false),
        Some("true") | Some("1") | Some("on") | Some("yes") => Ok(true),
        Some(other) => Err(serde::de::Error::custom(format!(
            "conflicts: `{other}` is not a yes or no: write true or false"
        ))),
    }
}

fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl AuditFilters {
    /// The store query these filters ask for, `now` being the time ages count back from; or
    /// what is wrong with them, in words that say what to write instead.
    pub fn to_query(&self, now: DateTime<Utc>) -> Result<AuditQuery, String> {
        let mut outcome = present(&self.outcome).map(str::to_owned);
        if let Some(o) = &outcome
            && !AUDIT_OUTCOMES.contains(&o.as_str())
        {
            return Err(format!(
                "outcome `{o}` is not one the audit trail records: use one of {}",
                AUDIT_OUTCOMES.join(", ")
            ));
        }
        if self.conflicts {
            match outcome.as_deref() {
                None | Some("conflict") => outcome = Some("conflict".into()),
                Some(other) => {
                    return Err(format!(
                        "conflicts only and outcome `{other}` exclude each other: drop one"
                    ));
                }
            }
        }
        let since = present(&self.since)
            .map(|t| parse_time("since", t, now))
            .transpose()?;
        let until = present(&self.until)
            .map(|t| parse_time("until", t, now))
            .transpose()?;
        if let (Some(s), Some(u)) = (&since, &until)
            && s >= u
        {
            return Err(format!(
                "since ({s}) is not before until ({u}): the range is empty"
            ));
        }
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(format!("limit must be between 1 and {MAX_LIMIT}"));
        }
        Ok(AuditQuery {
            record: present(&self.record).map(str::to_owned),
            outcome,
            since,
            until,
            limit,
            before: self.before,
        })
    }
}

/// `text` as the trail writes times (RFC 3339, UTC, milliseconds), so that they compare as text.
fn parse_time(name: &str, text: &str, now: DateTime<Utc>) -> Result<String, String> {
    let instant = if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        t.with_timezone(&Utc)
    } else if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M") {
        t.and_utc()
    } else if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S") {
        t.and_utc()
    } else if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
    } else if let Some(age) = parse_age(text) {
        now - age
    } else {
        return Err(format!(
            "{name}: `{text}` is not a time: write RFC 3339 (2026-12-06T10:00:00Z), a date \
             (2026-12-06) or an age (30m, 2h, 7d)"
        ));
    };
    Ok(instant.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// `30s`, `30m`, `2h`, `7d`.
fn parse_age(text: &str) -> Option<chrono::TimeDelta> {
    let (number, unit) = text.split_at(text.len().checked_sub(1)?);
    let n: i64 = number.parse().ok().filter(|n| *n >= 0)?;
    match unit {
        "s" => chrono::TimeDelta::try_seconds(n),
        "m" => chrono::TimeDelta::try_minutes(n),
        "h" => chrono::TimeDelta::try_hours(n),
        "d" => chrono::TimeDelta::try_days(n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn filters(query: &str) -> Result<AuditQuery, String> {
        let uri: axum::http::Uri = format!("/audit?{query}").parse().unwrap();
        let axum::extract::Query(filters) =
            axum::extract::Query::<AuditFilters>::try_from_uri(&uri).map_err(|e| e.body_text())?;
        filters.to_query(now())
    }

    #[test]
    fn every_way_to_write_a_time_lands_on_the_trails_format() {
        for (text, expected) in [
            ("2026-12-06T10:00:00+01:00", "2026-12-06T09:00:00.000Z"),
            ("2026-12-05", "2026-12-05T00:00:00.000Z"),
            ("2026-12-05T08:30", "2026-12-05T08:30:00.000Z"),
            ("2h", "2026-12-06T10:00:00.000Z"),
            ("7d", "2026-11-29T12:00:00.000Z"),
        ] {
            assert_eq!(
                parse_time("since", text, now()).unwrap(),
                expected,
                "{text}"
            );
        }
        let wrong = parse_time("since", "yesterday", now()).unwrap_err();
        assert!(
            wrong.contains("since: `yesterday` is not a time"),
            "{wrong}"
        );
    }

    #[test]
    fn a_submitted_form_with_empty_fields_searches_everything() {
        let q = filters("record=&outcome=&since=&until=").unwrap();
        assert_eq!(
            q,
            AuditQuery {
                limit: DEFAULT_LIMIT,
                ..AuditQuery::default()
            }
        );
    }

    #[test]
    fn conflicts_only_is_the_conflict_outcome_and_refuses_another() {
        assert_eq!(
            filters("conflicts=on").unwrap().outcome.as_deref(),
            Some("conflict")
        );
        let both = filters("conflicts=true&outcome=created").unwrap_err();
        assert!(both.contains("exclude each other"), "{both}");
    }

    #[test]
    fn mistakes_are_named_with_what_to_write() {
        let typo = filters("outcome=create").unwrap_err();
        assert!(typo.contains("use one of created, updated"), "{typo}");
        let range = filters("since=2026-12-06&until=2026-12-05").unwrap_err();
        assert!(range.contains("the range is empty"), "{range}");
        assert!(filters("limit=0").unwrap_err().contains("between 1 and"));
    }
}
