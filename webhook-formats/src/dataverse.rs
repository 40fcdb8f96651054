//! A Dataverse webhook step's `RemoteExecutionContext`. Only `PrimaryEntityName` and
//! `PrimaryEntityId` are used: the engine reads the opportunity itself, so a delivery's
//! possibly stale image (and its 256 KB truncation) never matters, and what is stored in the
//! queue is a small payload cosell writes itself, never the sender's body.

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
    let id = context["PrimaryEntityId"]
        .as_str()
        .filter(|id| plausible_id(id))
        .ok_or(ContextError::NoId)?;
    Ok(Context::Opportunity {
        id: id.to_ascii_lowercase(),
        // Kept only as a short name (Create, Update, Win…): the sender's text is never stored.
        message: context["MessageName"]
            .as_str()
            .filter(|m| m.len() <= 64 && m.chars().all(|c| c.is_ascii_alphanumeric()))
            .map_or(Value::Null, |m| Value::String(m.to_owned())),
    })
}

impl Context {
    /// The payload stored in the queue for an opportunity event (None for other tables).
    pub fn queue_payload(&self) -> Option<String> {
        match self {
            Context::Opportunity { id, message } => {
                Some(serde_json::json!({"MessageName": message, "PrimaryEntityId": id}).to_string())
            }
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
}
