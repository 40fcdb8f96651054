//! The plumbing of one request: what a call carries ([`Call`], [`Payload`]), the final
//! [`Answer`] (the shared loop's, [`crate::connections::send`]), and how a failed answer
//! becomes a typed [`DataverseError`] ([`check`]).

use super::Result;
use super::error::{DataverseError, code_of};
use crate::connections::message_of;
pub(crate) use crate::connections::send::{Answer, Replay};
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// What a request carries.
pub(crate) enum Payload<'a> {
    Empty,
    Json(&'a Value),
    Raw { content_type: String, text: String },
}

/// One logical call, sent (and retried) by [`super::DataverseClient::exchange`].
pub(crate) struct Call<'a> {
    pub method: Method,
    /// Absolute URL.
    pub url: String,
    pub payload: Payload<'a>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// When it is sent again after it may have arrived: by default a `POST` only after a
    /// 503 (Dataverse declining it) and anything else after any failure. A create whose
    /// caller finds out whether it landed when its answer is lost ([`super::creates`]) is
    /// [`Replay::BareOnly`]: sent again here only when it surely did not arrive (a refused
    /// connection, a 429, a 503 without a body); any other failure goes back to the caller.
    pub replay: Replay,
    /// Names the resource in errors, e.g. `opportunities(<id>)`.
    pub what: String,
    /// What the call does, from a fixed vocabulary (`get_row`, `batch`, …), in the request
    /// metrics ([`crate::connections::telemetry`]); never an id.
    pub operation: &'static str,
}

impl<'a> Call<'a> {
    pub(crate) fn new(
        operation: &'static str,
        method: Method,
        url: String,
        what: impl Into<String>,
    ) -> Self {
        Self {
            operation,
            replay: Replay::of(&method),
            method,
            url,
            payload: Payload::Empty,
            headers: Vec::new(),
            what: what.into(),
        }
    }

    pub(crate) fn json(mut self, body: &'a Value) -> Self {
        self.payload = Payload::Json(body);
        self
    }

    pub(crate) fn header(mut self, name: &'static str, value: &str) -> Result<Self> {
        let value = HeaderValue::from_str(value).map_err(|_| DataverseError::BadRequest {
            code: String::new(),
            message: format!("{value:?} is not a valid {name} header value"),
        })?;
        self.headers.push((HeaderName::from_static(name), value));
        Ok(self)
    }
}

/// Reading a final answer as Dataverse's.
impl Answer {
    /// The body as JSON (`Null` when empty).
    pub(crate) fn json(&self, what: &str) -> Result<Value> {
        if self.text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&self.text)
            .map_err(|e| DataverseError::InvalidResponse(format!("{what}: not JSON: {e}")))
    }

    /// The id in `OData-EntityId` (`…/set(<id>)`).
    pub(crate) fn entity_id(&self, what: &str) -> Result<String> {
        self.headers
            .get("OData-EntityId")
            .and_then(|v| v.to_str().ok())
            .and_then(id_of_entity_url)
            .ok_or_else(|| {
                DataverseError::InvalidResponse(format!(
                    "{what}: no OData-EntityId with the row id"
                ))
            })
    }
}

/// The id between the last parentheses of an entity URL.
pub(crate) fn id_of_entity_url(url: &str) -> Option<String> {
    let inner = url.trim().strip_suffix(')')?;
    let open = inner.rfind('(')?;
    Some(inner[open + 1..].to_owned()).filter(|id| !id.is_empty())
}

/// Turns a failed final answer into its typed error.
pub(crate) fn check(answer: Answer, what: &str) -> Result<Answer> {
    let status = answer.status;
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        return Ok(answer);
    }
    let message = message_of(&answer.text);
    Err(match status {
        StatusCode::NOT_FOUND => DataverseError::NotFound(format!("{what} ({message})")),
        StatusCode::PRECONDITION_FAILED => {
            DataverseError::PreconditionFailed(format!("{what}: {message}"))
        }
        StatusCode::FORBIDDEN => DataverseError::Forbidden(format!("{what}: {message}")),
        StatusCode::UNAUTHORIZED => DataverseError::Unauthorized(message),
        StatusCode::BAD_REQUEST => DataverseError::BadRequest {
            code: code_of(&answer.text),
            message: format!("{what}: {message}"),
        },
        s => DataverseError::BadRequest {
            code: code_of(&answer.text),
            message: format!("{what} answered {s}: {message}"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_entity_urls() {
        assert_eq!(
            id_of_entity_url(
                "https://x/api/data/v9.2/accounts(00000000-0000-0000-0000-000000000001)"
            )
            .as_deref(),
            Some("00000000-0000-0000-0000-000000000001")
        );
        assert_eq!(id_of_entity_url("https://x/api/data/v9.2/accounts"), None);
    }
}
