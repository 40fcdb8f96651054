//! A Partner Center Webhooks API event: `{EventName, ResourceUri, ResourceName, AuditUri,
//! ResourceChangeUtcDate}` (member names read case-insensitively: the docs write PascalCase,
//! the swagger camelCase). The event only names the referral (the last path segment of
//! `ResourceUri`); the engine reads the referral itself, so nothing else in the body matters.
//!
//! `ResourceChangeUtcDate` is deliberately not checked for age: Partner Center retries a
//! failed delivery (10 attempts, with growing waits) with the original body, so an old date is
//! what a genuine retry looks like, and a replayed event can only make cosell re-read a record
//! it is entitled to read (the sync is state-based and writes nothing when nothing changed).

use crate::ids::plausible_id;
use serde_json::Value;

/// The events that name a referral to sync.
pub const REFERRAL_EVENTS: [&str; 4] = [
    "referral-created",
    "referral-updated",
    "related-referral-created",
    "related-referral-updated",
];

/// What a (signature-checked) event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A referral event: sync the referral `id`.
    Referral { name: String, id: String },
    /// Any other event (`test-created`, unknown names, no name): acknowledged, nothing stored.
    Ignored { name: String },
}

/// Why an event cannot be used; answered 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the body is not a JSON event")]
    NotJson,
    #[error("ResourceUri does not name a referral")]
    NoReferral,
}

/// Reads an event body.
pub fn parse_event(body: &[u8]) -> Result<Event, EventError> {
    let event: Value = serde_json::from_slice(body).map_err(|_| EventError::NotJson)?;
    let name = member(&event, "EventName").unwrap_or_default().to_owned();
    if !REFERRAL_EVENTS.contains(&name.as_str()) {
        return Ok(Event::Ignored { name });
    }
    let id = member(&event, "ResourceUri")
        .and_then(referral_id)
        .ok_or(EventError::NoReferral)?;
    Ok(Event::Referral {
        name,
        id: id.to_owned(),
    })
}

/// A string member of `body` by name, ignoring case.
fn member<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

/// The referral id an event names: the last path segment of its resource URI.
pub fn referral_id(resource_uri: &str) -> Option<&str> {
    let path = resource_uri.split(['?', '#']).next()?;
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|id| plausible_id(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_referral_id_is_the_last_segment_and_nothing_odd() {
        assert_eq!(
            referral_id("https://api.partner.microsoft.com/v1.0/engagements/referrals/abc-1"),
            Some("abc-1")
        );
        assert_eq!(referral_id("http://x/referrals/abc/?q=1"), Some("abc"));
        assert_eq!(referral_id("http://x/referrals/..%2f"), None);
        assert_eq!(referral_id(""), None);
    }

    #[test]
    fn events_name_a_referral_or_are_ignored() {
        let created = br#"{"eventName":"referral-created","resourceUri":"http://x/referrals/r1"}"#;
        assert_eq!(
            parse_event(created),
            Ok(Event::Referral {
                name: "referral-created".into(),
                id: "r1".into()
            })
        );
        let test = br#"{"EventName":"test-created","ResourceUri":"http://x/y"}"#;
        assert!(matches!(parse_event(test), Ok(Event::Ignored { .. })));
        assert!(matches!(parse_event(b"[]"), Ok(Event::Ignored { .. })));
        assert_eq!(parse_event(b"{not json"), Err(EventError::NotJson));
        let no_uri = br#"{"EventName":"referral-updated"}"#;
        assert_eq!(parse_event(no_uri), Err(EventError::NoReferral));
        let odd = br#"{"EventName":"referral-updated","ResourceUri":"http://x/a b"}"#;
        assert_eq!(parse_event(odd), Err(EventError::NoReferral));
    }
}
