//! What the seller sees in the CRM: a line in the opportunity's Audit column for every sync
//! cosell makes or fails to make, and a mark at the end of the name (✔ synced, ✖ failed;
//! `sync.success_mark`/`sync.failure_mark`).
//!
//! Notes go only to open opportunities (closed ones are read-only in Dataverse) and are
//! written with the eTag just read, so they never overwrite a seller's edit. They change only
//! what the fingerprint ignores, so their echo is recognised.

use super::{SyncEngine, SyncError};
use crate::config::SyncConfig;
use crate::domain::fingerprint::unmarked;
use crate::sinks::dataverse::Row;
use serde_json::{Map, Value, json};

/// `existing` with `line` appended, keeping the last `max_lines` lines.
pub fn append_line(existing: Option<&str>, line: &str, max_lines: usize) -> String {
    let mut lines: Vec<&str> = existing
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines.push(line);
    let skip = lines.len().saturating_sub(max_lines.max(1));
    lines[skip..].join("\n")
}

/// `name` ending in `mark` (and no other sync mark).
pub fn marked(name: &str, mark: &str, marks: &[&str; 2]) -> String {
    let base = unmarked(name, marks);
    if mark.is_empty() {
        base.to_owned()
    } else {
        format!("{base} {mark}")
    }
}

/// Gives the `name` column in `columns`, if any, the success mark of `config`.
pub fn mark_name_synced(columns: &mut Map<String, Value>, config: &SyncConfig) {
    if let Some(name) = columns.get("name").and_then(Value::as_str) {
        let marks = [config.success_mark.as_str(), config.failure_mark.as_str()];
        let wanted = marked(name, &config.success_mark, &marks);
        columns.insert("name".into(), json!(wanted));
    }
}

fn stamped(text: &str) -> String {
    format!(
        "{} cosell: {text}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

impl SyncEngine {
    /// The success and failure marks.
    pub(crate) fn marks(&self) -> [&str; 2] {
        [&self.config.success_mark, &self.config.failure_mark]
    }

    /// Gives the `name` column in `columns`, if any, the success mark.
    pub(crate) fn mark_name_synced(&self, columns: &mut Map<String, Value>) {
        mark_name_synced(columns, &self.config);
    }

    /// The columns that give `opportunity` the `mark` and, if given, a new audit line.
    fn note_columns(
        &self,
        opportunity: &Value,
        mark: &str,
        line: Option<&str>,
    ) -> Map<String, Value> {
        let mut columns = Map::new();
        if let Some(name) = opportunity["name"].as_str() {
            let wanted = marked(name, mark, &self.marks());
            if wanted != name {
                columns.insert("name".into(), json!(wanted));
            }
        }
        if let Some(line) = line {
            let audit = self.audit_column();
            let text = append_line(
                opportunity[audit].as_str(),
                &stamped(line),
                self.config.audit_max_lines,
            );
            columns.insert(audit.to_owned(), json!(text));
        }
        columns
    }

    /// Marks a synced opportunity ✔ and adds `line` (with `extra` columns such as the referral
    /// id) to its Audit column. Answers `false` when a seller's edit got in the way (412) and
    /// nothing was written.
    pub(crate) async fn note_success(
        &self,
        id: &str,
        row: &Row,
        line: Option<&str>,
        mut extra: Map<String, Value>,
    ) -> Result<bool, SyncError> {
        if row.body["statecode"].as_i64().unwrap_or(0) != 0 {
            return Ok(true);
        }
        extra.extend(self.note_columns(&row.body, &self.config.success_mark, line));
        Ok(self
            .opportunities
            .note(id, extra, row.etag.as_deref())
            .await?)
    }

    /// Marks an opportunity ✖ and writes the reason to its Audit column. Answers the
    /// opportunity as read, when it exists.
    pub(crate) async fn note_failure(
        &self,
        id: &str,
        reason: &str,
    ) -> Result<Option<Row>, SyncError> {
        let Some(row) = self.opportunities.read(id).await? else {
            return Ok(None);
        };
        let line = format!("could not sync: {reason}");
        let audit = row.body[self.audit_column()].as_str().unwrap_or_default();
        let shown = audit
            .lines()
            .last()
            .is_some_and(|last| last.ends_with(&line))
            && row.body["name"].as_str().is_some_and(|n| {
                self.config.failure_mark.is_empty() || n.ends_with(&self.config.failure_mark)
            });
        // Writing the same failure again would only wake the webhook again.
        if row.body["statecode"].as_i64().unwrap_or(0) == 0 && !shown {
            let columns = self.note_columns(&row.body, &self.config.failure_mark, Some(&line));
            self.opportunities
                .note(id, columns, row.etag.as_deref())
                .await?;
        }
        Ok(Some(row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_column_keeps_the_newest_lines() {
        let text = append_line(Some("a\nb\nc"), "d", 3);
        assert_eq!(text, "b\nc\nd");
        assert_eq!(append_line(None, "x", 20), "x");
        assert_eq!(marked("Deal ✖", "✔", &["✔", "✖"]), "Deal ✔");
        assert_eq!(marked("Deal ✔", "", &["✔", "✖"]), "Deal");
    }
}
