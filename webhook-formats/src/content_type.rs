//! Which `Content-Type` a webhook delivery may carry. Both services send `application/json`
//! (Partner Center documents it; Dataverse sends it with every service endpoint call).
//!
//! Decisions:
//! - **No header at all is accepted**: the body still has to parse as the expected JSON, and a
//!   proxy in front of cosell may drop the header; refusing it would lose genuine deliveries
//!   for no safety gain.
//! - **A present header must be JSON**: the media type (before any `;` parameters, trimmed,
//!   case-insensitive) is `application/json` or a `+json` suffix type. Anything else
//!   (`text/plain`, `multipart/form-data`, a form post, `application/jsonx`) is 415: a sender
//!   saying it sends something else is not one of the two services, and answering 415 rather
//!   than guessing keeps the decision visible in the sender's logs.
//! - A header that is not visible ASCII is treated as not JSON.

/// Whether a delivery whose `Content-Type` header is `value` (None: absent; `Err`: not
/// readable text) may be read as JSON.
pub fn is_json(value: Option<Result<&str, ()>>) -> bool {
    let Some(value) = value else { return true };
    let Ok(value) = value else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let subtype = subtype.to_ascii_lowercase();
    kind.eq_ignore_ascii_case("application")
        && (subtype == "json" || (subtype.len() > 5 && subtype.ends_with("+json")))
}

/// [`is_json`] of the `Content-Type` in `headers`.
pub fn headers_are_json(headers: &http::HeaderMap) -> bool {
    is_json(
        headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().map_err(|_| ())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_or_nothing() {
        for good in [
            None,
            Some(Ok("application/json")),
            Some(Ok("Application/JSON; charset=utf-8")),
            Some(Ok(" application/json ;charset=UTF-8")),
            Some(Ok("application/cloudevents+json")),
        ] {
            assert!(is_json(good), "{good:?}");
        }
        for bad in [
            Some(Ok("text/plain")),
            Some(Ok("multipart/form-data; boundary=x")),
            Some(Ok("application/x-www-form-urlencoded")),
            Some(Ok("application/jsonx")),
            Some(Ok("application/+json")),
            Some(Ok("text/json")),
            Some(Ok("")),
            Some(Ok("json")),
            Some(Err(())),
        ] {
            assert!(!is_json(bad), "{bad:?}");
        }
    }
}
