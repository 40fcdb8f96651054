//! A Dataverse webhook step's `RemoteExecutionContext`. Only `PrimaryEntityName` and the
//! opportunity's id are used (`PrimaryEntityId`, or for `Win`/`Lose`, which are requests about
//! an `OpportunityClose` rather than a `Target`, the `opportunityid` reference inside the
//! `OpportunityClose` input parameter): the engine reads the opportunity itself, so a delivery's
//! possibly stale image (and its 256 KB truncation) never matters, and what is stored in the
//! queue is a small payload cosell writes itself, never the sender's body.
//!
//! One thing more is kept: the `RowVersion` of a `Create` or `Update` message's `Target` (the
//! row's version after that write, digits only), so the engine can tell the echo of its own
//! write without reading the row ([`Context::Opportunity::row_version`]), and whether the
//! step that sent it runs after the write has committed (`Mode` 1, asynchronous) or inside it
//! (`Mode` 0, synchronous: the write waits for the answer).

use crate::ids::plausible_id;
use serde_json::Value;

/// What a (credential-checked) context asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Context {
    /// An opportunity changed: sync opportunity `id` (lowercase).
    Opportunity {
        id: String,
        /// `MessageName` as sent (any JSON value, `null` when absent), kept for the audit.
        message: Value,
        /// The `Target`'s `RowVersion` of a `Create` or `Update` of this opportunity, when the
        /// delivery carries one (decimal digits, at most 20).
        row_version: Option<String>,
        /// Whether the step runs asynchronously (`Mode` 1): the write committed before this
        /// delivery was sent. `false` for a synchronous step (`Mode` 0), whose write waits for
        /// the answer, and for a context without a `Mode`.
        after_commit: bool,
    },
    /// Another table: acknowledged, nothing stored.
    OtherTable,
}

/// Why a context cannot be used; answered 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    #[error("the body is not a RemoteExecutionContext")]
    NotJson,
    #[error("PrimaryEntityId is missing or not an id")]
    NoId,
}

/// Reads a context body.
pub fn parse_context(body: &[u8]) -> Result<Context, ContextError> {
    let context: Value = serde_json::from_slice(body).map_err(|_| ContextError::NotJson)?;
    if context["PrimaryEntityName"] != "opportunity" {
        return Ok(Context::OtherTable);
    }
    let closing = matches!(context["MessageName"].as_str(), Some("Win" | "Lose"));
    let id = match closing {
        true => closed_opportunity(&context),
        false => context["PrimaryEntityId"].as_str(),
    }
    .filter(|id| plausible_id(id) && !is_nil(id))
    .ok_or(ContextError::NoId)?;
    let row_version = match closing {
        true => None,
        false => target_row_version(&context, id),
    };
    Ok(Context::Opportunity {
        id: id.to_ascii_lowercase(),
        row_version,
        after_commit: context["Mode"] == 1,
        // Kept only as a short name (Create, Update, Win…): the sender's text is never stored.
        message: context["MessageName"]
            .as_str()
            .filter(|m| m.len() <= 64 && m.chars().all(|c| c.is_ascii_alphanumeric()))
            .map_or(Value::Null, |m| Value::String(m.to_owned())),
    })
}

/// The opportunity a Win or Lose closed: `InputParameters` → `OpportunityClose` →
/// `Attributes` → `opportunityid` (an EntityReference). Collections are `{key, value}` arrays.
fn closed_opportunity(context: &Value) -> Option<&str> {
    let close = value_of(&context["InputParameters"], "OpportunityClose")?;
    let reference = value_of(&close["Attributes"], "opportunityid")?;
    (reference["LogicalName"] == "opportunity")
        .then(|| reference["Id"].as_str())
        .flatten()
}

/// The `RowVersion` of the `Target` input parameter, if it is the opportunity `id` and the
/// version is a plain number (anything else is ignored: the engine then reads the row).
fn target_row_version(context: &Value, id: &str) -> Option<String> {
    let target = value_of(&context["InputParameters"], "Target")?;
    let same_row = target["Id"]
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case(id));
    let version = target["RowVersion"].as_str()?;
    (same_row
        && target["LogicalName"] == "opportunity"
        && !version.is_empty()
        && version.len() <= 20
        && version.bytes().all(|b| b.is_ascii_digit()))
    .then(|| version.to_owned())
}

/// The value under `key` in a `[{key, value}]` collection.
fn value_of<'a>(collection: &'a Value, key: &str) -> Option<&'a Value> {
    collection
        .as_array()?
        .iter()
        .find(|pair| pair["key"] == key)
        .map(|pair| &pair["value"])
}

fn is_nil(id: &str) -> bool {
    id.chars().all(|c| c == '0' || c == '-')
}

impl Context {
    /// The payload stored in the queue for an opportunity event (None for other tables).
    pub fn queue_payload(&self) -> Option<String> {
        match self {
            Context::Opportunity {
                id,
                message,
                row_version: None,
                ..
            } => {
                Some(serde_json::json!({"MessageName": message, "PrimaryEntityId": id}).to_string())
            }
            Context::Opportunity {
                id,
                message,
                row_version: Some(version),
                ..
            } => Some(
                serde_json::json!({"MessageName": message, "PrimaryEntityId": id, "RowVersion": version})
                    .to_string(),
            ),
            Context::OtherTable => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opportunities_other_tables_and_bad_ids() {
        let body = br#"{"PrimaryEntityName":"opportunity","PrimaryEntityId":"7F3C2A52-0000-4000-8000-000000000001","MessageName":"Update"}"#;
        let context = parse_context(body).unwrap();
        assert_eq!(
            context.queue_payload().unwrap(),
            r#"{"MessageName":"Update","PrimaryEntityId":"7f3c2a52-0000-4000-8000-000000000001"}"#
        );
        let account = br#"{"PrimaryEntityName":"account","PrimaryEntityId":"x"}"#;
        assert_eq!(parse_context(account), Ok(Context::OtherTable));
        assert_eq!(parse_context(b"{not json"), Err(ContextError::NotJson));
        let bad = br#"{"PrimaryEntityName":"opportunity","PrimaryEntityId":"../../etc"}"#;
        assert_eq!(parse_context(bad), Err(ContextError::NoId));
        assert_eq!(parse_context(b"\"opportunity\""), Ok(Context::OtherTable));
    }

    #[test]
    fn the_targets_row_version_is_kept_when_it_is_the_opportunitys_and_a_number() {
        let with = |target: &str| {
            format!(
                r#"{{"MessageName":"Update","PrimaryEntityName":"opportunity",
                "PrimaryEntityId":"7F3C2A52-0000-4000-8000-000000000001",
                "InputParameters":[{{"key":"Target","value":{target}}}]}}"#
            )
        };
        let version = |body: String| match parse_context(body.as_bytes()).unwrap() {
            Context::Opportunity { row_version, .. } => row_version,
            Context::OtherTable => panic!("an opportunity"),
        };
        let ok = with(
            r#"{"Id":"7f3c2a52-0000-4000-8000-000000000001","LogicalName":"opportunity","RowVersion":"5948260"}"#,
        );
        assert_eq!(version(ok.clone()).as_deref(), Some("5948260"));
        assert!(
            parse_context(ok.as_bytes())
                .unwrap()
                .queue_payload()
                .unwrap()
                .contains(r#""RowVersion":"5948260""#)
        );
        let after_commit = |mode: &str| {
            let body = format!(
                r#"{{"MessageName":"Update","PrimaryEntityName":"opportunity","Mode":{mode},
                "PrimaryEntityId":"7f3c2a52-0000-4000-8000-000000000001"}}"#
            );
            match parse_context(body.as_bytes()).unwrap() {
                Context::Opportunity { after_commit, .. } => after_commit,
                Context::OtherTable => panic!("an opportunity"),
            }
        };
        assert!(after_commit("1"), "an asynchronous step");
        assert!(!after_commit("0"), "a synchronous step: inside the write");
        assert!(!after_commit("null"), "no mode: the stricter reading");
        for ignored in [
            r#"{"Id":"7f3c2a52-0000-4000-8000-000000000001","LogicalName":"opportunity","RowVersion":null}"#,
            r#"{"Id":"7f3c2a52-0000-4000-8000-000000000009","LogicalName":"opportunity","RowVersion":"5"}"#,
            r#"{"Id":"7f3c2a52-0000-4000-8000-000000000001","LogicalName":"account","RowVersion":"5"}"#,
            r#"{"Id":"7f3c2a52-0000-4000-8000-000000000001","LogicalName":"opportunity","RowVersion":"5; drop"}"#,
            r#"{"Id":"7f3c2a52-0000-4000-8000-000000000001","LogicalName":"opportunity","RowVersion":5}"#,
        ] {
            assert_eq!(version(with(ignored)), None, "{ignored}");
        }
    }

    #[test]
    fn win_and_lose_name_the_opportunity_in_their_opportunity_close() {
        let body = br#"{"MessageName":"Win","PrimaryEntityName":"opportunity",
            "PrimaryEntityId":"00000000-0000-0000-0000-000000000000",
            "InputParameters":[
              {"key":"OpportunityClose","value":{"__type":"Entity:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts",
                "Attributes":[{"key":"subject","value":"Won"},
                  {"key":"opportunityid","value":{"__type":"EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts",
                   "Id":"7f3c2a52-0000-4000-8000-000000000002","KeyAttributes":[],"LogicalName":"opportunity","Name":null,"RowVersion":null}}],
                "LogicalName":"opportunityclose"}},
              {"key":"Status","value":{"__type":"OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts","Value":3}}]}"#;
        assert_eq!(
            parse_context(body).unwrap(),
            Context::Opportunity {
                id: "7f3c2a52-0000-4000-8000-000000000002".into(),
                message: Value::String("Win".into()),
                row_version: None,
                after_commit: false,
            }
        );
        // A Lose without its OpportunityClose names no opportunity, whatever PrimaryEntityId says.
        let bare = br#"{"MessageName":"Lose","PrimaryEntityName":"opportunity",
            "PrimaryEntityId":"00000000-0000-0000-0000-000000000000","InputParameters":[]}"#;
        assert_eq!(parse_context(bare), Err(ContextError::NoId));
        let empty_update = br#"{"MessageName":"Update","PrimaryEntityName":"opportunity",
            "PrimaryEntityId":"00000000-0000-0000-0000-000000000000"}"#;
        assert_eq!(parse_context(empty_update), Err(ContextError::NoId));
    }
}
