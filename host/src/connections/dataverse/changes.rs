//! Change tracking: an initial full read with `Prefer: odata.track-changes`, then reads of the
//! `@odata.deltaLink` it answered, each giving the rows changed since and the ids of deleted
//! rows (`$deletedEntity` entries), plus the next delta link. The table must have change
//! tracking enabled; `$filter`, `$orderby`, `$expand` and `$top` are not allowed with it.

use super::Result;
use super::client::DataverseClient;
use super::error::DataverseError;
use serde_json::Value;

/// One round of change tracking.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangePage {
    /// Rows created or updated (every row on the initial read).
    pub changed: Vec<Value>,
    /// Ids of rows deleted since the previous round.
    pub deleted: Vec<String>,
    /// Where the next round starts: pass it back as `delta_link`.
    pub delta_link: String,
}

impl DataverseClient {
    /// Change tracking on `set` with `$select=select`. Without `delta_link` this is the initial
    /// full read; with one (from the previous [`ChangePage`]) it answers what changed since.
    /// Pages (`@odata.nextLink`) are followed; links must stay on the environment's origin.
    pub async fn track_changes(
        &self,
        set: &str,
        select: &str,
        delta_link: Option<&str>,
    ) -> Result<ChangePage> {
        let url = match delta_link {
            Some(link) => self.own_link(link, "")?,
            None => {
                let query = if select.is_empty() {
                    String::new()
                } else {
                    format!("$select={select}")
                };
                self.url(set, &query)?
            }
        };
        let what = format!("changes of {set}");
        let (rows, delta) = self
            .pages("track_changes", url, &what, Some("odata.track-changes"))
            .await?;
        let delta_link = delta.ok_or_else(|| {
            DataverseError::InvalidResponse(format!(
                "{what}: no @odata.deltaLink; enable change tracking on the table"
            ))
        })?;
        self.own_link(&delta_link, "")?;
        let mut page = ChangePage {
            delta_link,
            ..ChangePage::default()
        };
        for row in rows {
            match deleted_id(&row) {
                Some(id) => page.deleted.push(id),
                None => page.changed.push(row),
            }
        }
        tracing::debug!(
            set,
            changed = page.changed.len(),
            deleted = page.deleted.len(),
            "Dataverse changes read"
        );
        Ok(page)
    }
}

/// The id of a `$deletedEntity` entry.
fn deleted_id(row: &Value) -> Option<String> {
    let context = row["@odata.context"].as_str().unwrap_or_default();
    let deleted = context.ends_with("$deletedEntity") || row["reason"] == "deleted";
    deleted.then(|| row["id"].as_str().map(str::to_owned))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deleted_entities_are_told_apart_from_changed_rows() {
        let gone = json!({"@odata.context": "https://x/api/data/v9.2/$metadata#opportunities/$deletedEntity", "id": "g", "reason": "deleted"});
        assert_eq!(deleted_id(&gone).as_deref(), Some("g"));
        let changed = json!({"@odata.etag": "W/\"1\"", "opportunityid": "k", "name": "Kept"});
        assert_eq!(deleted_id(&changed), None);
    }
}
