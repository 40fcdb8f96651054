//! Cross-site request forgery defences of the console: every change is a POST whose form
//! carries the session's token in a hidden `_csrf` field (compared in constant time), and a
//! POST a browser marks as coming from another site (`Sec-Fetch-Site`, or an `Origin` that is
//! not this host) is refused before its form is read. A refusal is a 403 page and changes
//! nothing. The session cookie's `SameSite=Strict` is a third, browser-side layer.

use super::pages::{Refused, render};
use super::session::Session;
use crate::admin::AdminState;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

/// The hidden form field that carries the token.
pub const FIELD: &str = "_csrf";

/// A 403 page saying why nothing was done.
pub fn refused(why: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        render(&Refused {
            why: why.to_owned(),
        }),
    )
        .into_response()
}

/// Whether `presented` is the session's token.
fn matches(session: &Session, presented: &str) -> bool {
    !presented.is_empty() && bool::from(session.csrf.as_bytes().ct_eq(presented.as_bytes()))
}

const MISSING: &str = "this form did not carry this session's security token, so nothing was changed. Reload the page and submit the form again (a page kept open from an earlier sign-in has an old token).";

/// Refuses a request a browser says comes from another site; `None` lets it through.
pub fn cross_site(headers: &HeaderMap) -> Option<Response> {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if let Some(site) = fetch_site
        && !matches!(site, "same-origin" | "none")
    {
        return Some(refused(
            "the request came from another site, so nothing was changed.",
        ));
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let (Some(origin), Some(host)) = (origin, host) {
        // `null` is what a sandboxed frame or a redirect chain from elsewhere sends.
        let origin_host = origin
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/'));
        if !origin_host.is_some_and(|o| o.eq_ignore_ascii_case(host)) {
            return Some(refused(
                "the request came from another origin, so nothing was changed.",
            ));
        }
    }
    None
}

/// A URL-encoded form whose `_csrf` field is the session's token: a handler that takes it
/// runs only for a genuine form of this session (otherwise the answer is the 403 page).
pub struct CheckedForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AdminState> for CheckedForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AdminState) -> Result<Self, Response> {
        let session = request
            .extensions()
            .get::<Session>()
            .cloned()
            .ok_or_else(|| refused(MISSING))?;
        let (parts, body) = request.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let token = url::form_urlencoded::parse(&bytes)
            .find(|(name, _)| name == FIELD)
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default();
        if !matches(&session, &token) {
            return Err(refused(MISSING));
        }
        let axum::Form(form) = axum::Form::<T>::from_request(
            Request::from_parts(parts, axum::body::Body::from(bytes)),
            state,
        )
        .await
        .map_err(IntoResponse::into_response)?;
        Ok(CheckedForm(form))
    }
}

/// Reads the first field of an upload form, which must be `_csrf` with the session's token
/// (the form puts it before the file, so it is checked before the file is read).
pub async fn check_multipart(session: &Session, form: &mut Multipart) -> Result<(), Response> {
    let field = form
        .next_field()
        .await
        .map_err(|err| {
            refused(&format!(
                "the form could not be read ({err}); nothing was changed."
            ))
        })?
        .ok_or_else(|| refused(MISSING))?;
    if field.name() != Some(FIELD) {
        return Err(refused(MISSING));
    }
    let token = field.text().await.unwrap_or_default();
    if matches(session, &token) {
        Ok(())
    } else {
        Err(refused(MISSING))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn only_same_origin_posts_pass() {
        let host = ("host", "127.0.0.1:8686");
        for passes in [
            vec![host],
            vec![host, ("origin", "http://127.0.0.1:8686")],
            vec![host, ("sec-fetch-site", "same-origin")],
            vec![host, ("sec-fetch-site", "none")],
        ] {
            assert!(cross_site(&headers(&passes)).is_none(), "{passes:?}");
        }
        for refused in [
            vec![host, ("origin", "http://evil.example")],
            vec![host, ("origin", "null")],
            vec![host, ("origin", "http://127.0.0.1:8687")],
            vec![host, ("sec-fetch-site", "cross-site")],
            vec![host, ("sec-fetch-site", "same-site")],
        ] {
            let answer = cross_site(&headers(&refused)).expect("refused");
            assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{refused:?}");
        }
    }
}
