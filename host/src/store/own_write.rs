//! Telling the echo of cosell's own Dataverse write from the delivery alone, without reading
//! the opportunity.
//!
//! A Dataverse webhook for a create or update carries the row's version after that write (the
//! `Target`'s `RowVersion`, kept in the queued payload; a coalesced event loses it). When that
//! is the version of the state the link records as synced (its snapshot, whose fingerprint is
//! the one on record), the delivery announces exactly a state cosell already holds as in sync:
//! reading the row would find that state (the run ends as an echo) or a later one, whose own
//! delivery comes next (and a lost delivery is caught by the change-tracking poller). Anything
//! else reads the row as before: no version, another version, a snapshot that is not the
//! synced state, a failure on record, a replayed dead letter.
//!
//! Two places ask: the intake, before it stores a webhook delivery (an echo is acknowledged
//! and never queued, so it costs no claim, run or settle), and the engine, for an event the
//! intake stored because the link did not record the version yet when it arrived (the run
//! that wrote it had not saved its result).

use super::{Link, QueuedEvent, REPLAY_ORIGIN};
use crate::domain::fingerprint::{self, Volatile};
use serde_json::Value;

/// Whether `event` announces the state `link` records as synced (see the module doc).
pub(crate) fn announces_synced_state(
    event: &QueuedEvent,
    link: &Link,
    volatile: &Volatile<'_>,
) -> bool {
    event.origin != REPLAY_ORIGIN
        && delivered_version(&event.payload)
            .is_some_and(|delivered| is_synced_version(&delivered, link, volatile))
}

/// Whether `delivered`, the version a delivery for `link`'s opportunity names, is the version
/// of the state `link` records as synced (see the module doc).
pub(crate) fn is_synced_version(delivered: &str, link: &Link, volatile: &Volatile<'_>) -> bool {
    if link.last_error.is_some() {
        return false;
    }
    let (Some(hash), Some(snapshot)) = (link.crm_hash.as_deref(), link.crm_snapshot.as_deref())
    else {
        return false;
    };
    let Ok(snapshot) = serde_json::from_str::<Value>(snapshot) else {
        return false;
    };
    let synced = version_of(&snapshot);
    if synced.as_deref() != Some(delivered) {
        tracing::debug!(
            opportunity = link.opportunity_id.as_deref().unwrap_or_default(),
            delivered,
            synced = synced.as_deref().unwrap_or("none"),
            "the delivery names another version than the one last synced; reading the row"
        );
        return false;
    }
    fingerprint::opportunity(&snapshot, volatile) == hash
}

/// The `RowVersion` a Dataverse delivery carried, from the queued payload.
fn delivered_version(payload: &str) -> Option<String> {
    let payload: Value = serde_json::from_str(payload).ok()?;
    payload["RowVersion"].as_str().map(str::to_owned)
}

/// A row's version: its `versionnumber` column, else the number in its `@odata.etag`
/// (`W/"12345"`).
fn version_of(row: &Value) -> Option<String> {
    match &row["versionnumber"] {
        Value::Number(n) => return Some(n.to_string()),
        Value::String(s) if !s.is_empty() => return Some(s.clone()),
        _ => {}
    }
    let etag = row["@odata.etag"].as_str()?;
    let digits = etag.strip_prefix("W/\"")?.strip_suffix('"')?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn volatile() -> Volatile<'static> {
        Volatile {
            audit_column: "cosell_audit",
            marks: [" ✔", " ⚠"],
        }
    }

    fn event(payload: Value, origin: &str) -> QueuedEvent {
        QueuedEvent {
            id: 1,
            side: crate::store::Side::Dataverse,
            record_id: "o".into(),
            lock_key: "opportunity:o".into(),
            origin: origin.into(),
            payload: payload.to_string(),
            attempts: 1,
            received_at: String::new(),
        }
    }

    fn synced_link(row: &Value) -> Link {
        Link {
            crm_hash: Some(fingerprint::opportunity(row, &volatile())),
            crm_snapshot: Some(row.to_string()),
            ..Link::default()
        }
    }

    #[test]
    fn only_the_synced_version_with_its_fingerprint_on_record_is_an_echo() {
        let row = json!({"name": "Deal", "versionnumber": 42, "@odata.etag": "W/\"42\""});
        let link = synced_link(&row);
        let webhook = |version: &str| {
            event(
                json!({"MessageName": "Update", "RowVersion": version}),
                "dataverse-webhook",
            )
        };
        assert!(announces_synced_state(&webhook("42"), &link, &volatile()));
        // Another version, no version (a coalesced event), a replay, a failure on record.
        assert!(!announces_synced_state(&webhook("43"), &link, &volatile()));
        let coalesced = event(json!({"MessageName": "Update"}), "dataverse-webhook");
        assert!(!announces_synced_state(&coalesced, &link, &volatile()));
        let replay = event(json!({"RowVersion": "42"}), REPLAY_ORIGIN);
        assert!(!announces_synced_state(&replay, &link, &volatile()));
        let failed = Link {
            last_error: Some("refused".into()),
            ..link.clone()
        };
        assert!(!announces_synced_state(
            &webhook("42"),
            &failed,
            &volatile()
        ));
        // A snapshot that is not the state on record (the seller's change is not synced yet).
        let behind = Link {
            crm_hash: Some(fingerprint::opportunity(
                &json!({"name": "Old"}),
                &volatile(),
            )),
            ..link
        };
        assert!(!announces_synced_state(
            &webhook("42"),
            &behind,
            &volatile()
        ));
    }

    #[test]
    fn the_version_comes_from_versionnumber_or_the_etag() {
        assert_eq!(
            version_of(&json!({"versionnumber": 7})).as_deref(),
            Some("7")
        );
        assert_eq!(
            version_of(&json!({"@odata.etag": "W/\"915244\""})).as_deref(),
            Some("915244")
        );
        assert_eq!(version_of(&json!({"@odata.etag": "\"abc\""})), None);
        assert_eq!(version_of(&json!({})), None);
    }
}
