//! A search of the audit trail, as SQL shared by both backends: which entries match a record,
//! an outcome and a time range, newest first, a page at a time.
//!
//! Only the filters asked for become conditions, so that a search by record walks the
//! `(record, id)` index and a search without filters walks the primary key backwards.

/// What to look for in the audit trail. Every filter is optional; entries come newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// `referral:<id>` or `opportunity:<id>`, or a bare id, which matches either.
    pub record: Option<String>,
    /// One outcome (`created`, `updated`, `conflict`, …).
    pub outcome: Option<String>,
    /// Entries at or after this instant (RFC 3339, UTC, milliseconds, as the trail stores it).
    pub since: Option<String>,
    /// Entries before this instant (same form).
    pub until: Option<String>,
    /// At most this many entries.
    pub limit: usize,
    /// Paging: only entries older than this one (the `next` of the previous page).
    pub before: Option<i64>,
}

/// One page of a search.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditPage {
    /// The entries found, newest first.
    pub entries: Vec<super::AuditEntry>,
    /// Where the next (older) page starts, as [`AuditQuery::before`]; `None` on the last page.
    pub next: Option<i64>,
}

/// How a backend writes its `n`th (1-based) bind placeholder.
pub(super) type Placeholder = fn(usize) -> String;

/// The SQL of `query` (its columns are `id, at, record, direction, outcome, detail`) and its
/// text parameters in placeholder order. One more row than the limit is asked for, so the
/// caller can tell whether another page follows ([`page_of`]).
pub(super) fn search_sql(query: &AuditQuery, placeholder: Placeholder) -> (String, Vec<String>) {
    let mut conditions = Vec::new();
    let mut params = Vec::new();
    let bind = |value: String, params: &mut Vec<String>| {
        params.push(value);
        placeholder(params.len())
    };
    if let Some(record) = &query.record {
        if record.contains(':') {
            let p = bind(record.clone(), &mut params);
            conditions.push(format!("record = {p}"));
        } else {
            let referral = bind(format!("referral:{record}"), &mut params);
            let opportunity = bind(format!("opportunity:{record}"), &mut params);
            conditions.push(format!("record IN ({referral}, {opportunity})"));
        }
    }
    if let Some(outcome) = &query.outcome {
        let p = bind(outcome.clone(), &mut params);
        conditions.push(format!("outcome = {p}"));
    }
    if let Some(since) = &query.since {
        let p = bind(since.clone(), &mut params);
        conditions.push(format!("at >= {p}"));
    }
    if let Some(until) = &query.until {
        let p = bind(until.clone(), &mut params);
        conditions.push(format!("at < {p}"));
    }
    // Integers are written into the text: they cannot carry SQL.
    if let Some(before) = query.before {
        conditions.push(format!("id < {before}"));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT id, at, record, direction, outcome, detail FROM audit_trail {filter} \
         ORDER BY id DESC LIMIT {}",
        query.limit.saturating_add(1).min(i64::MAX as usize)
    );
    (sql, params)
}

/// The page of `rows` (`(id, entry)`, up to one more than `limit`, as [`search_sql`] asks).
pub(super) fn page_of(mut rows: Vec<(i64, super::AuditEntry)>, limit: usize) -> AuditPage {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = if more {
        rows.last().map(|(id, _)| *id)
    } else {
        None
    };
    AuditPage {
        entries: rows.into_iter().map(|(_, entry)| entry).collect(),
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(n: usize) -> String {
        format!("?{n}")
    }

    #[test]
    fn only_the_filters_asked_for_become_conditions() {
        let (sql, params) = search_sql(
            &AuditQuery {
                limit: 10,
                ..Default::default()
            },
            numbered,
        );
        assert!(!sql.contains("WHERE"), "{sql}");
        assert!(sql.ends_with("LIMIT 11"), "{sql}");
        assert!(params.is_empty());

        let (sql, params) = search_sql(
            &AuditQuery {
                record: Some("R-1".into()),
                outcome: Some("conflict".into()),
                since: Some("2026-01-01T00:00:00.000Z".into()),
                before: Some(42),
                limit: 5,
                ..Default::default()
            },
            numbered,
        );
        assert!(
            sql.contains("WHERE record IN (?1, ?2) AND outcome = ?3 AND at >= ?4 AND id < 42"),
            "{sql}"
        );
        assert_eq!(
            params,
            [
                "referral:R-1",
                "opportunity:R-1",
                "conflict",
                "2026-01-01T00:00:00.000Z"
            ]
        );
    }
}
